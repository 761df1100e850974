//! Every render vector of `shared/test_data/` (in every folder) through the preview: its wire is
//! exactly what `render` gives (payload or refusal), no text it draws holds a placeholder, and a
//! template that does not read the clock (`model::reads_clock`) previews the same at any time.

mod common;

use quiver_shared::model::reads_clock;
use quiver_shared::preview::preview_part;
use quiver_shared::{render, Context, Platform, Target, Template};
use serde_json::Value;
use std::sync::atomic::{AtomicUsize, Ordering};

/// Render vectors whose template reads the clock (so the check below is not vacuous).
static CLOCK_READERS: AtomicUsize = AtomicUsize::new(0);

fn run(case: &Value) -> Result<(), String> {
    let is_render = case.get("template").is_some()
        && case.get("expect").is_some()
        && case.get("case").is_none_or(|c| c == "render");
    if !is_render {
        return Ok(());
    }
    let target: Target = match (case.get("target"), case.get("platform")) {
        (Some(t), _) => serde_json::from_value(t.clone()).map_err(|e| format!("target: {e}"))?,
        (None, Some(p)) => {
            Target::new(Platform::parse(p.as_str().ok_or("platform")?).map_err(|e| e.to_string())?)
        }
        _ => return Err("no target".into()),
    };
    let template: Template =
        serde_json::from_value(case["template"].clone()).map_err(|e| format!("template: {e}"))?;
    let ctx: Context = match case.get("context") {
        Some(c) => serde_json::from_value(c.clone()).map_err(|e| format!("context: {e}"))?,
        None => Context::new(),
    };
    let index = case.get("part").and_then(Value::as_u64).unwrap_or(0) as usize;
    let p = preview_part(&target, &template, index, &ctx);
    match render(&target, &template, index, &ctx) {
        Ok(w) if p.wire.as_ref() != Some(&w) || p.refusal.is_some() => {
            return Err(format!(
                "preview wire {:?} / {:?}, render {w:?}",
                p.wire, p.refusal
            ))
        }
        Err(r) if p.refusal.as_ref() != Some(&r) || p.wire.is_some() => {
            return Err(format!("preview refusal {:?}, render {r:?}", p.refusal))
        }
        _ => {}
    }
    if let Some(w) = &p.wire {
        if p.kind != Some(w.kind.as_str()) || p.rendition.map(|r| r > 0) != Some(w.fallback_used) {
            return Err(format!(
                "rendition {:?} {:?} disagrees with {w:?}",
                p.rendition, p.kind
            ));
        }
        if p.display.is_none() {
            return Err("a part that is sent must be drawn".into());
        }
    }
    if let Some(d) = &p.display {
        if let Some(t) = d.texts().into_iter().find(|t| t.contains("{{")) {
            return Err(format!("drawn text holds a placeholder: {t:?}"));
        }
    }
    // Another time and zone: the same preview unless the template reads the clock.
    let mut later = ctx.clone();
    later.insert("now".into(), "4102444800000".into()); // 2100-01-01
    later.insert("tz".into(), "-600".into());
    let q = preview_part(&target, &template, index, &later);
    let same = serde_json::to_value(&p).ok() == serde_json::to_value(&q).ok();
    if reads_clock(&template) {
        CLOCK_READERS.fetch_add(1, Ordering::Relaxed);
    } else if !same {
        return Err(format!(
            "reads no clock, yet previews differently later: {p:?} / {q:?}"
        ));
    }
    Ok(())
}

#[test]
fn preview_wire_is_render_and_draws_no_placeholder() {
    let files = common::case_files("");
    let render_cases = files
        .iter()
        .filter(|p| {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap();
            v.get("template").is_some() && v.get("case").is_none_or(|c| c == "render")
        })
        .count();
    assert!(render_cases >= 40, "found {render_cases} render vectors");
    common::run_cases(&files, 100, run);
    let clock = CLOCK_READERS.load(Ordering::Relaxed);
    assert!(
        clock >= 1 && clock < render_cases,
        "{clock} of {render_cases} render vectors read the clock"
    );
}
