//! What the vector runners share: finding case files, running them with one failure report, and
//! the render case, whose format is the same in every folder (test_data/README.md).
#![allow(dead_code)] // each runner uses a part

use quiver_shared::{render, Context, Platform, Refusal, Target, Template};
use serde_json::Value;
use std::path::{Path, PathBuf};

/// The `*.json` case files under `test_data/<folder>` (the whole tree for `""`), sorted.
pub fn case_files(folder: &str) -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let entries =
            std::fs::read_dir(dir).unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()));
        for entry in entries {
            let path = entry.expect("dir entry").path();
            if path.is_dir() {
                walk(&path, out);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("test_data")
        .join(folder);
    let mut all = vec![];
    walk(&root, &mut all);
    all.sort();
    all
}

/// Runs `run` on every case (each must say what it shows in `about`); fails naming every file
/// whose case failed. `at_least` guards against a folder that silently lost its cases.
pub fn run_cases(files: &[PathBuf], at_least: usize, run: impl Fn(&Value) -> Result<(), String>) {
    assert!(
        files.len() >= at_least,
        "expected at least {at_least} vector files, found {}",
        files.len()
    );
    let run_one = |path: &Path| -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
        let case: Value =
            serde_json::from_str(&text).map_err(|e| format!("case is not JSON: {e}"))?;
        if case
            .get("about")
            .and_then(Value::as_str)
            .is_none_or(str::is_empty)
        {
            return Err("every case says what it shows in `about`".into());
        }
        run(&case)
    };
    let failures: Vec<String> = files
        .iter()
        .filter_map(|p| run_one(p).err().map(|e| format!("{}: {e}", p.display())))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} vectors failed:\n{}",
        failures.len(),
        files.len(),
        failures.join("\n")
    );
}

/// `{"refusal" (or "code"): code, "message_contains"?: text}` against one refusal.
pub fn refusal_matches(got: &Refusal, want: &Value) -> Result<(), String> {
    let code = want
        .get("refusal")
        .or_else(|| want.get("code"))
        .and_then(Value::as_str)
        .ok_or("a refusal expectation needs `refusal` (or `code`)")?;
    if got.code.as_str() != code {
        return Err(format!(
            "refusal code: got {} ({}), want {code}",
            got.code.as_str(),
            got.message
        ));
    }
    if let Some(needle) = want.get("message_contains").and_then(Value::as_str) {
        if !got.message.contains(needle) {
            return Err(format!(
                "refusal message {:?} lacks {needle:?}",
                got.message
            ));
        }
    }
    Ok(())
}

/// A render case: `target` (or a bare `platform`), a valid `template`, `part` (default 0),
/// `context` (default none); `expect` is `{"wire", "post_as"?, "kind"?, "fallback_used"?}`
/// (the wire exact, and a JSON object) or a refusal.
pub fn run_render(case: &Value) -> Result<(), String> {
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
    template
        .check()
        .map_err(|(f, m)| format!("the case's template is invalid: {f}: {m}"))?;
    let ctx: Context = match case.get("context") {
        Some(c) => serde_json::from_value(c.clone()).map_err(|e| format!("context: {e}"))?,
        None => Context::new(),
    };
    let part = case
        .get("part")
        .map_or(Some(0), Value::as_u64)
        .ok_or("part is not a number")?;
    let expect = &case["expect"];
    match (
        render(&target, &template, part as usize, &ctx),
        expect.get("wire"),
    ) {
        (Ok(w), Some(want)) => {
            let want = want.as_str().ok_or("expect.wire is not a string")?;
            if w.wire != want {
                return Err(format!("wire\n  got:  {}\n  want: {want}", w.wire));
            }
            // Every platform's wire is a JSON object (a string posted as is, or an object).
            serde_json::from_str::<serde_json::Map<String, Value>>(&w.wire)
                .map_err(|e| format!("wire is not a JSON object: {e}"))?;
            for (key, got) in [
                (
                    "post_as",
                    serde_json::to_value(w.post_as).map_err(|e| e.to_string())?,
                ),
                ("kind", Value::from(w.kind.clone())),
                ("fallback_used", Value::from(w.fallback_used)),
            ] {
                if let Some(want) = expect.get(key) {
                    if &got != want {
                        return Err(format!("{key}: got {got}, want {want}"));
                    }
                }
            }
            Ok(())
        }
        (Err(r), None) => refusal_matches(&r, expect),
        (Ok(w), None) => Err(format!("want a refusal, got wire {}", w.wire)),
        (Err(r), Some(_)) => Err(format!("want wire, got refusal {r}")),
    }
}
