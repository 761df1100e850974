//! Runs every case under `shared/test_data/` (see its README).

use quiver_shared::{render, Context, Library, Platform, Target, Template};
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
    if let Some(lib) = case.get("library") {
        return run_import_case(&case, lib);
    }
    if let Some(html) = case.get("html") {
        return run_sanitize_case(&case, html);
    }
    let target: Target = match (case.get("target"), case.get("platform")) {
        (Some(t), None) => serde_json::from_value(t.clone()).map_err(|e| format!("target: {e}"))?,
        (None, Some(p)) => Target::new(
            Platform::parse(p.as_str().ok_or("platform is not a string")?)
                .map_err(|e| e.to_string())?,
        ),
        _ => return Err("a render case has exactly one of `target` or `platform`".into()),
    };
    let template: Template =
        serde_json::from_value(case["template"].clone()).map_err(|e| format!("template: {e}"))?;
    let ctx: Context =
        serde_json::from_value(case["context"].clone()).map_err(|e| format!("context: {e}"))?;
    let part = case["part"].as_u64().ok_or("no part")? as usize;
    let got = render(&target, &template, part, &ctx);
    let expect = &case["expect"];
    match (got, expect.get("wire"), expect.get("refusal")) {
        (Ok(w), Some(want), None) => {
            if w.wire != want.as_str().ok_or("expect.wire is not a string")? {
                return Err(format!("wire\n  got:  {}\n  want: {}", w.wire, want));
            }
            if let Some(kind) = expect.get("kind").and_then(Value::as_str) {
                if w.kind != kind {
                    return Err(format!("kind: got {}, want {kind}", w.kind));
                }
            }
            if let Some(fb) = expect.get("fallback_used").and_then(Value::as_bool) {
                if w.fallback_used != fb {
                    return Err(format!("fallback_used: got {}, want {fb}", w.fallback_used));
                }
            }
        }
        (Err(r), None, Some(code)) => {
            if r.code.as_str() != code.as_str().ok_or("expect.refusal is not a string")? {
                return Err(format!(
                    "refusal code: got {:?}, want {code}",
                    r.code.as_str()
                ));
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

/// `{"library": "<file text>" | {...}, "expect": {"ok": N} | {"error": {"line", "field", "message_contains"}}}`
fn run_import_case(case: &Value, lib: &Value) -> Result<(), String> {
    let text = match lib {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).map_err(|e| e.to_string())?,
    };
    let expect = &case["expect"];
    match (
        Library::from_json(&text),
        expect.get("ok"),
        expect.get("error"),
    ) {
        (Ok(l), Some(n), None) => {
            if Some(l.templates.len() as u64) != n.as_u64() {
                return Err(format!(
                    "imported {} templates, want {n}",
                    l.templates.len()
                ));
            }
        }
        (Err(e), None, Some(want)) => {
            if let Some(line) = want.get("line").and_then(Value::as_u64) {
                if e.line as u64 != line {
                    return Err(format!("line: got {} ({e}), want {line}", e.line));
                }
            }
            if let Some(field) = want.get("field").and_then(Value::as_str) {
                if e.field != field {
                    return Err(format!("field: got {:?} ({e}), want {field:?}", e.field));
                }
            }
            if let Some(needle) = want.get("message_contains").and_then(Value::as_str) {
                if !e.message.contains(needle) {
                    return Err(format!("message {:?} lacks {needle:?}", e.message));
                }
            }
        }
        (Ok(l), _, Some(_)) => {
            return Err(format!("want an error, imported {}", l.templates.len()))
        }
        (Err(e), Some(_), _) => return Err(format!("want success, got {e}")),
        _ => return Err("expect holds exactly one of `ok` or `error`".into()),
    }
    Ok(())
}

/// `{"html": "...", "expect": {"clean": "..."} | {"absent": [..], "present": [..]}}`
fn run_sanitize_case(case: &Value, html: &Value) -> Result<(), String> {
    let got = quiver_shared::sanitize::clean(html.as_str().ok_or("html is not a string")?);
    let expect = &case["expect"];
    if let Some(want) = expect.get("clean").and_then(Value::as_str) {
        if got != want {
            return Err(format!("clean\n  got:  {got}\n  want: {want}"));
        }
    }
    let lower = got.to_ascii_lowercase();
    for bad in expect
        .get("absent")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let bad = bad.as_str().ok_or("absent holds strings")?;
        if lower.contains(&bad.to_ascii_lowercase()) {
            return Err(format!("{bad:?} survived: {got}"));
        }
    }
    for good in expect
        .get("present")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let good = good.as_str().ok_or("present holds strings")?;
        if !got.contains(good) {
            return Err(format!("{good:?} was lost: {got}"));
        }
    }
    Ok(())
}

#[test]
fn vectors() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("test_data");
    let mut all = vec![];
    cases(&root, &mut all);
    // Folders with their own case format and runner.
    all.retain(|p| {
        !["sobot", "wechat_dkf", "wechat_mp"]
            .iter()
            .any(|own| p.components().any(|c| c.as_os_str() == *own))
    });
    all.sort();
    assert!(
        all.len() >= 8,
        "expected the vector files under {}",
        root.display()
    );
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
