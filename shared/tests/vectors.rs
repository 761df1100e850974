//! Runs every case under `shared/test_data/` (see its README).

mod common;

use quiver_shared::Library;
use serde_json::Value;

/// Import, sanitizer or render case, by the fields it has.
fn run_case(case: &Value) -> Result<(), String> {
    if let Some(lib) = case.get("library") {
        return run_import_case(case, lib);
    }
    if let Some(html) = case.get("html") {
        return run_sanitize_case(case, html);
    }
    common::run_render(case)
}

/// `{"library": "<file text>" | {...}, "expect": {"ok": N} | {"error": {"line", "field", "message_contains"}}}`
fn run_import_case(case: &Value, lib: &Value) -> Result<(), String> {
    let text = match lib {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).map_err(|e| e.to_string())?,
    };
    let expect = &case["expect"];
    // check_all, for the editor, reports the importer's error first (and nothing for a good file)
    let all = Library::check_all(&text);
    match (Library::from_json(&text), all.first()) {
        (Ok(_), None) => {}
        (Err(e), Some(first)) if &e == first => {}
        // a syntax error: the importer names where it was reading, which is no field
        (Err(e), Some(first))
            if first.field.is_empty()
                && (first.line, first.column, &first.message) == (e.line, e.column, &e.message) => {
        }
        (got, first) => return Err(format!("check_all first {first:?}, from_json {got:?}")),
    }
    let mut seen = std::collections::HashSet::new();
    if let Some(twice) = all.iter().find(|e| !seen.insert((&e.field, &e.message))) {
        return Err(format!("check_all reports {twice} twice"));
    }
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
    let mut all = common::case_files("");
    // Folders with their own case kinds and runner.
    all.retain(|p| {
        !["sobot", "wechat_dkf", "wechat_mp"]
            .iter()
            .any(|own| p.components().any(|c| c.as_os_str() == *own))
    });
    common::run_cases(&all, 60, run_case);
}
