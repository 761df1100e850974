//! Runs every case under `shared/test_data/` (see its README).

use quiver_shared::{render_part, Context, Platform, Template};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn cases(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read test_data") {
        let path = entry.expect("dir entry").path();
        if path.is_dir() {
            cases(&path, out);
        } else if path.extension().is_some_and(|e| e == "json") {
            out.push(path);
        }
    }
}

fn run_case(path: &Path) -> Result<(), String> {
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let case: Value = serde_json::from_str(&text).map_err(|e| format!("case is not JSON: {e}"))?;
    let platform = Platform::parse(case["platform"].as_str().ok_or("no platform")?)
        .map_err(|e| e.to_string())?;
    let template: Template =
        serde_json::from_value(case["template"].clone()).map_err(|e| format!("template: {e}"))?;
    let ctx: Context =
        serde_json::from_value(case["context"].clone()).map_err(|e| format!("context: {e}"))?;
    let part = case["part"].as_u64().ok_or("no part")? as usize;
    let got = render_part(platform, &template, part, &ctx);
    let expect = &case["expect"];
    match (got, expect.get("wire"), expect.get("refusal")) {
        (Ok(w), Some(want), None) => {
            if w.wire != want.as_str().ok_or("expect.wire is not a string")? {
                return Err(format!("wire\n  got:  {}\n  want: {}", w.wire, want));
            }
        }
        (Err(r), None, Some(code)) => {
            if r.code.as_str() != code.as_str().ok_or("expect.refusal is not a string")? {
                return Err(format!("refusal code: got {:?}, want {code}", r.code.as_str()));
            }
            if let Some(needle) = expect.get("message_contains").and_then(Value::as_str) {
                if !r.message.contains(needle) {
                    return Err(format!("refusal message {:?} lacks {needle:?}", r.message));
                }
            }
        }
        (Ok(w), _, Some(code)) => return Err(format!("want refusal {code}, got wire {}", w.wire)),
        (Err(r), Some(_), _) => return Err(format!("want wire, got refusal {r}")),
        _ => return Err("expect must hold exactly one of `wire` or `refusal`".into()),
    }
    Ok(())
}

#[test]
fn vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data");
    let mut all = vec![];
    cases(&root, &mut all);
    all.sort();
    assert!(all.len() >= 8, "expected the vector files under {}", root.display());
    let failures: Vec<String> = all
        .iter()
        .filter_map(|p| run_case(p).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        all.len(),
        failures.join("\n")
    );
}
