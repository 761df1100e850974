//! Runs every case under `shared/test_data/sobot/` (formats in its README.md).

mod common;

use quiver_shared::sobot::{
    decrypt_unionid, encrypt_unionid, parse_workbench_message, verify_sign, SessionFrom,
    UnionIdOptions, WorkbenchContext, WorkbenchMessage,
};
use quiver_shared::Refusal;
use serde_json::{json, Value};

fn s<'a>(case: &'a Value, key: &str) -> Result<&'a str, String> {
    case.get(key)
        .and_then(Value::as_str)
        .ok_or_else(|| format!("`{key}` is missing or not a string"))
}

/// `expect.refusals`: the whole list, in order.
fn match_refusals(got: &[Refusal], want: &Value) -> Result<(), String> {
    let want = want.as_array().ok_or("`refusals` is not a list")?;
    if got.len() != want.len() {
        let list: Vec<String> = got.iter().map(ToString::to_string).collect();
        return Err(format!(
            "{} refusals, want {}:\n    {}",
            got.len(),
            want.len(),
            list.join("\n    ")
        ));
    }
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        common::refusal_matches(g, w).map_err(|e| format!("refusals[{i}]: {e}"))?;
    }
    Ok(())
}

/// build → parse → build gives the same string.
fn stable(built: &str) -> Result<(), String> {
    let again = SessionFrom::parse(built)
        .map_err(|r| format!("built {built:?}, which does not parse: {r}"))?
        .build()
        .map_err(|r| format!("re-parsed {built:?}, which does not build: {r}"))?;
    if again != built {
        return Err(format!("build→parse→build changed\n  {built}\n  {again}"));
    }
    Ok(())
}

fn run_session_from(case: &Value) -> Result<(), String> {
    let input = s(case, "input")?;
    let expect = &case["expect"];
    match (SessionFrom::check(input), expect.get("refusals")) {
        (Ok(()), None) => {
            let parsed = SessionFrom::parse(input)
                .map_err(|r| format!("check passed, parse refused: {r}"))?;
            if let Some(want) = expect.get("value") {
                let got = serde_json::to_value(&parsed).map_err(|e| e.to_string())?;
                if &got != want {
                    return Err(format!("value\n  got:  {got}\n  want: {want}"));
                }
                // The JSON form (what the CLI prints) reads back to the same value.
                let back: SessionFrom =
                    serde_json::from_value(want.clone()).map_err(|e| format!("value: {e}"))?;
                if back != parsed {
                    return Err("value does not deserialize to the parsed struct".into());
                }
            }
            let rebuilt = parsed
                .build()
                .map_err(|r| format!("parsed, but does not build: {r}"))?;
            let want = expect
                .get("rebuilt")
                .and_then(Value::as_str)
                .unwrap_or(input);
            if rebuilt != want {
                return Err(format!("rebuilt\n  got:  {rebuilt}\n  want: {want}"));
            }
            stable(&rebuilt)
        }
        (Err(got), Some(want)) => {
            match_refusals(&got, want)?;
            // parse refuses with the first of them.
            let first = SessionFrom::parse(input)
                .err()
                .ok_or("check refused, parse accepted")?;
            if first != got[0] {
                return Err(format!(
                    "parse refused with {first}, check's first is {}",
                    got[0]
                ));
            }
            Ok(())
        }
        (Ok(()), Some(_)) => Err("want refusals, the string checks".into()),
        (Err(got), None) => {
            let list: Vec<String> = got.iter().map(ToString::to_string).collect();
            Err(format!("want success, got:\n    {}", list.join("\n    ")))
        }
    }
}

fn run_session_from_build(case: &Value) -> Result<(), String> {
    let value: SessionFrom =
        serde_json::from_value(case["value"].clone()).map_err(|e| format!("value: {e}"))?;
    let expect = &case["expect"];
    match (
        value.validate(),
        expect.get("string"),
        expect.get("refusals"),
    ) {
        (Ok(built), Some(want), None) => {
            let want = want.as_str().ok_or("expect.string is not a string")?;
            if built != want {
                return Err(format!("string\n  got:  {built}\n  want: {want}"));
            }
            if value.build().as_deref() != Ok(want) {
                return Err("build differs from validate".into());
            }
            stable(&built)
        }
        (Err(got), None, Some(want)) => {
            match_refusals(&got, want)?;
            let first = value
                .build()
                .err()
                .ok_or("validate refused, build accepted")?;
            if first != got[0] {
                return Err(format!(
                    "build refused with {first}, validate's first is {}",
                    got[0]
                ));
            }
            Ok(())
        }
        (Ok(built), _, Some(_)) => Err(format!("want refusals, built {built}")),
        (Err(got), Some(_), _) => Err(format!("want a string, got refusal {}", got[0])),
        _ => Err("expect holds exactly one of `string` or `refusals`".into()),
    }
}

fn options(case: &Value) -> Result<UnionIdOptions, String> {
    match case.get("options") {
        None => Ok(UnionIdOptions::default()),
        Some(o) => serde_json::from_value(o.clone()).map_err(|e| format!("options: {e}")),
    }
}

fn run_unionid(case: &Value) -> Result<(), String> {
    let (unionid, key, opts) = (s(case, "unionid")?, s(case, "key")?, options(case)?);
    let expect = &case["expect"];
    match (
        encrypt_unionid(unionid, key, &opts),
        expect.get("ciphertext"),
    ) {
        (Ok(got), Some(want)) => {
            let want = want.as_str().ok_or("expect.ciphertext is not a string")?;
            if got != want {
                return Err(format!("ciphertext\n  got:  {got}\n  want: {want}"));
            }
            let back = decrypt_unionid(want, key, &opts).map_err(|r| format!("decrypt: {r}"))?;
            if back != unionid {
                return Err(format!("decrypts to {back:?}"));
            }
            Ok(())
        }
        (Err(r), None) => common::refusal_matches(&r, expect),
        (Ok(got), None) => Err(format!("want a refusal, got {got}")),
        (Err(r), Some(_)) => Err(format!("want a ciphertext, got refusal {r}")),
    }
}

fn run_unionid_decrypt(case: &Value) -> Result<(), String> {
    let (cipher, key, opts) = (s(case, "ciphertext")?, s(case, "key")?, options(case)?);
    let expect = &case["expect"];
    match (decrypt_unionid(cipher, key, &opts), expect.get("unionid")) {
        (Ok(got), Some(want)) if Some(got.as_str()) == want.as_str() => Ok(()),
        (Ok(got), Some(want)) => Err(format!("unionid: got {got:?}, want {want}")),
        (Err(r), None) => common::refusal_matches(&r, expect),
        (Ok(got), None) => Err(format!("want a refusal, got {got:?}")),
        (Err(r), Some(_)) => Err(format!("want a unionid, got refusal {r}")),
    }
}

fn run_sign(case: &Value) -> Result<(), String> {
    let ctx = WorkbenchContext::from_url(s(case, "url")?);
    let sys_num = s(case, "sys_num")?;
    let key = case.get("key").and_then(Value::as_str);
    let expect = &case["expect"];
    match (verify_sign(&ctx, sys_num, key), expect.get("ok")) {
        (Ok(()), Some(Value::Bool(true))) => Ok(()),
        (Err(r), None) => common::refusal_matches(&r, expect),
        (Ok(()), _) => Err("want a refusal, the sign verified".into()),
        (Err(r), Some(_)) => Err(format!("want ok, got refusal {r}")),
    }
}

fn run_workbench_context(case: &Value) -> Result<(), String> {
    let ctx = WorkbenchContext::from_url(s(case, "url")?);
    let got = serde_json::to_value(&ctx).map_err(|e| e.to_string())?;
    let want = &case["expect"]["context"];
    if &got != want {
        return Err(format!("context\n  got:  {got}\n  want: {want}"));
    }
    // The params map (what a Target carries) reads back to the same context.
    if WorkbenchContext::from_params(&ctx.to_params()) != ctx {
        return Err("to_params → from_params changed the context".into());
    }
    if let Some(want) = case["expect"].get("params_object") {
        let got = ctx
            .params_object()
            .map_err(|r| format!("params_object: {r}"))?
            .map_or(Value::Null, Value::Object);
        if &got != want {
            return Err(format!("params_object: got {got}, want {want}"));
        }
    }
    Ok(())
}

fn run_workbench_message(case: &Value) -> Result<(), String> {
    let msg = parse_workbench_message(&case["message"]);
    let got = match &msg {
        None => Value::Null,
        Some(m) => serde_json::to_value(m).map_err(|e| e.to_string())?,
    };
    let want = &case["expect"]["message"];
    if &got != want {
        return Err(format!("message\n  got:  {got}\n  want: {want}"));
    }
    if let Some(url) = case.get("url").and_then(Value::as_str) {
        let Some(WorkbenchMessage::Selected(sel)) = &msg else {
            return Err("`url` given, but the message is not `selected`".into());
        };
        let next = WorkbenchContext::from_url(url).switched(sel);
        let got = serde_json::to_value(&next).map_err(|e| e.to_string())?;
        let want = &case["expect"]["switched"];
        if &got != want {
            return Err(format!("switched\n  got:  {got}\n  want: {want}"));
        }
    }
    Ok(())
}

fn run_case(case: &Value) -> Result<(), String> {
    match s(case, "case")? {
        "render" => common::run_render(case),
        "session_from" => run_session_from(case),
        "session_from_build" => run_session_from_build(case),
        "unionid" => run_unionid(case),
        "unionid_decrypt" => run_unionid_decrypt(case),
        "sign" => run_sign(case),
        "workbench_context" => run_workbench_context(case),
        "workbench_message" => run_workbench_message(case),
        other => Err(format!("unknown case kind {other:?}")),
    }
}

#[test]
fn sobot_vectors() {
    common::run_cases(&common::case_files("sobot"), 50, run_case);
}

/// Every refusal code a Sobot path can produce appears in at least one vector (both directions
/// are covered by the success cases of the same kind).
#[test]
fn sobot_vectors_cover_every_refusal_code() {
    let text: String = common::case_files("sobot")
        .iter()
        .map(|p| std::fs::read_to_string(p).expect("read case"))
        .collect();
    for code in [
        "missing_variable",
        "channel_unsupported",
        "field_required",
        "too_long",
        "invalid_value",
        "invalid_session_from",
    ] {
        assert!(
            text.contains(&json!(code).to_string()),
            "no sobot vector expects {code}"
        );
    }
}
