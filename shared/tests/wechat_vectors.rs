//! Runs every case under `shared/test_data/wechat_dkf/` and `shared/test_data/wechat_mp/`
//! (the main runner, `tests/vectors.rs`, skips both). The case formats are described in each
//! folder's README; a failing case is named by its file.

mod common;

use quiver_shared::wechat::api::{self, TypingCommand};
use quiver_shared::wechat::crypto::{self, AesKey, Crypto, PushQuery};
use quiver_shared::wechat::push::{self, Body};
use quiver_shared::wechat::quota::{self, Interaction, Rules};
use quiver_shared::wechat::reply::{self, SealOptions};
use quiver_shared::wechat::{dkf, Format};
use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

type Res = Result<(), String>;

fn field<T: DeserializeOwned>(case: &Value, name: &str) -> Result<T, String> {
    serde_json::from_value(case.get(name).cloned().ok_or(format!("no `{name}`"))?)
        .map_err(|e| format!("`{name}`: {e}"))
}

fn str_field<'a>(case: &'a Value, name: &str) -> Result<&'a str, String> {
    case.get(name)
        .and_then(Value::as_str)
        .ok_or(format!("`{name}` is not a string"))
}

fn json<T: Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serializable")
}

fn same(what: &str, got: &Value, want: &Value) -> Res {
    if got == want {
        Ok(())
    } else {
        Err(format!("{what}\n  got:  {got}\n  want: {want}"))
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex16(s: &str) -> Result<[u8; 16], String> {
    if s.len() != 32 {
        return Err(format!("random_hex {s:?} is not 16 bytes"));
    }
    let mut out = [0u8; 16];
    for (i, b) in out.iter_mut().enumerate() {
        *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|e| e.to_string())?;
    }
    Ok(out)
}

fn format_of(case: &Value) -> Result<Format, String> {
    field(case, "format")
}

/// `{"ok": <value as JSON>}` or `{"error_contains": "..."}`.
fn ok_or_error<T: Serialize, E: std::fmt::Display>(got: &Result<T, E>, expect: &Value) -> Res {
    match (got, expect.get("ok"), expect.get("error_contains")) {
        (Ok(v), Some(want), None) => same("value", &json(v), want),
        (Err(e), None, Some(needle)) => {
            let needle = needle.as_str().ok_or("error_contains is not a string")?;
            if e.to_string().contains(needle) {
                Ok(())
            } else {
                Err(format!("error {:?} lacks {needle:?}", e.to_string()))
            }
        }
        (Ok(v), _, Some(_)) => Err(format!("want an error, got {}", json(v))),
        (Err(e), Some(_), _) => Err(format!("want a value, got error {e}")),
        _ => Err("expect holds exactly one of `ok` or `error_contains`".into()),
    }
}

/// `{"error_code": -400xx, "message_contains": "..."}` against a crypto error.
fn crypt_error(got: &crypto::CryptError, expect: &Value) -> Res {
    let code = expect["error_code"].as_i64().ok_or("no error_code")?;
    if i64::from(got.code.value()) != code {
        return Err(format!(
            "error code: got {} ({got}), want {code}",
            got.code.value()
        ));
    }
    if let Some(needle) = expect.get("message_contains").and_then(Value::as_str) {
        if !got.message.contains(needle) {
            return Err(format!("error {:?} lacks {needle:?}", got.message));
        }
    }
    Ok(())
}

fn run_reply(case: &Value) -> Res {
    let got = dkf::parse_reply(str_field(case, "input")?);
    let expect = &case["expect"];
    ok_or_error(&got, expect)?;
    if let Ok(r) = &got {
        if let Some(want) = expect.get("is_ok") {
            same("is_ok", &json(&r.is_ok()), want)?;
        }
        if let Some(want) = expect.get("meaning") {
            same("meaning", &json(&r.meaning()), want)?;
        }
    }
    Ok(())
}

fn run_event(case: &Value) -> Res {
    let got = dkf::parse_client_event(str_field(case, "input")?);
    let expect = &case["expect"];
    ok_or_error(&got, expect)?;
    if let (Ok(e), Some(want)) = (&got, expect.get("map_position")) {
        same("map_position", &json(&e.map_position()), want)?;
    }
    Ok(())
}

fn run_push(case: &Value) -> Res {
    let format = format_of(case)?;
    let input = str_field(case, "input")?;
    let got = push::parse_body(input, format);
    let expect = &case["expect"];
    ok_or_error(&got, expect)?;
    match &got {
        Ok(Body::Plain { push } | Body::Compatible { push, .. }) => {
            // The plaintext reader agrees with the body reader.
            let direct = push::parse_push(input, format).map_err(|e| e.to_string())?;
            if &direct != push {
                return Err("parse_push disagrees with parse_body".into());
            }
            if let Some(want) = expect.get("dedupe_key") {
                same("dedupe_key", &json(&push.dedupe_key()), want)?;
            }
        }
        Ok(Body::Encrypted { .. }) => {
            if push::parse_push(input, format).is_ok() {
                return Err("parse_push accepted a bare envelope".into());
            }
        }
        Err(_) => {}
    }
    Ok(())
}

fn run_signature(case: &Value) -> Res {
    let token = str_field(case, "token")?;
    let ts = str_field(case, "timestamp")?;
    let nonce = str_field(case, "nonce")?;
    let want = case["expect"]["signature"]
        .as_str()
        .ok_or("expect.signature is not a string")?;
    let encrypt = case.get("encrypt").and_then(Value::as_str);
    type Verify<'a> = Box<dyn Fn(&str) -> Result<(), crypto::CryptError> + 'a>;
    let (got, verify): (String, Verify) = match encrypt {
        Some(enc) => (
            crypto::msg_signature(token, ts, nonce, enc),
            Box::new(move |s| crypto::verify_msg_signature(token, ts, nonce, enc, s)),
        ),
        None => (
            crypto::url_signature(token, ts, nonce),
            Box::new(move |s| crypto::verify_url_signature(token, ts, nonce, s)),
        ),
    };
    if got != want {
        return Err(format!("signature\n  got:  {got}\n  want: {want}"));
    }
    verify(want).map_err(|e| format!("verify rejects the signature: {e}"))?;
    verify(&want.to_uppercase()).map_err(|e| format!("verify rejects upper-case hex: {e}"))?;
    let mut wrong = want.to_string();
    let last = if wrong.ends_with('0') { "1" } else { "0" };
    wrong.replace_range(wrong.len() - 1.., last);
    match verify(&wrong) {
        Err(e) if e.code.value() == -40001 => {}
        other => return Err(format!("a wrong signature gave {other:?}, want -40001")),
    }
    match verify("") {
        Err(e) if e.code.value() == -40001 => {}
        other => return Err(format!("an empty signature gave {other:?}, want -40001")),
    }
    if let Some(echostr) = case.get("echostr").and_then(Value::as_str) {
        let q = PushQuery::from_pairs([
            ("signature", want),
            ("timestamp", ts),
            ("nonce", nonce),
            ("echostr", echostr),
        ]);
        let got = crypto::verify_url(token, &q).map_err(|e| e.to_string())?;
        if got != echostr {
            return Err(format!("echostr: got {got:?}, want {echostr:?}"));
        }
        let bad = PushQuery {
            signature: wrong,
            ..q.clone()
        };
        if crypto::verify_url(token, &bad).is_ok() {
            return Err("the URL check passed with a wrong signature".into());
        }
    }
    Ok(())
}

fn run_key(case: &Value) -> Res {
    let expect = &case["expect"];
    match AesKey::from_encoding_aes_key(str_field(case, "encoding_aes_key")?) {
        Ok(k) => same(
            "key_hex",
            &json(&hex(k.as_bytes())),
            expect.get("key_hex").ok_or("want an error, got a key")?,
        ),
        Err(e) => crypt_error(&e, expect),
    }
}

fn key_of(case: &Value) -> Result<AesKey, String> {
    AesKey::from_encoding_aes_key(str_field(case, "encoding_aes_key")?).map_err(|e| e.to_string())
}

fn run_encrypt(case: &Value) -> Res {
    let key = key_of(case)?;
    let appid = str_field(case, "appid")?;
    let random = unhex16(str_field(case, "random_hex")?)?;
    let msg = str_field(case, "msg")?;
    let expect = &case["expect"];
    let plain = crypto::plaintext(&random, msg, appid).map_err(|e| e.to_string())?;
    same(
        "padded_plaintext_hex",
        &json(&hex(&plain)),
        &expect["padded_plaintext_hex"],
    )?;
    let want = expect["encrypt"].as_str().ok_or("expect.encrypt")?;
    let got = crypto::encrypt(&key, &random, msg, appid).map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!("encrypt\n  got:  {got}\n  want: {want}"));
    }
    let back = crypto::decrypt(&key, want, appid).map_err(|e| format!("decrypt: {e}"))?;
    if back != msg {
        return Err(format!("decrypt gave {back:?}, want {msg:?}"));
    }
    Ok(())
}

fn run_decrypt(case: &Value) -> Res {
    let key = key_of(case)?;
    let got = crypto::decrypt(&key, str_field(case, "encrypt")?, str_field(case, "appid")?);
    let expect = &case["expect"];
    match (got, expect.get("msg")) {
        (Ok(m), Some(want)) => same("msg", &json(&m), want),
        (Err(e), None) => crypt_error(&e, expect),
        (Ok(m), None) => Err(format!("want an error, got {m:?}")),
        (Err(e), Some(_)) => Err(format!("want a message, got {e}")),
    }
}

fn crypto_of(case: &Value) -> Result<Crypto, String> {
    Crypto::new(
        str_field(case, "token")?,
        str_field(case, "encoding_aes_key")?,
        str_field(case, "appid")?,
    )
    .map_err(|e| e.to_string())
}

fn run_open(case: &Value) -> Res {
    let crypto = crypto_of(case)?;
    let format = format_of(case)?;
    let query_map: std::collections::BTreeMap<String, String> = field(case, "query")?;
    let query = PushQuery::from_pairs(&query_map);
    let expect = &case["expect"];
    let envelope =
        match push::parse_body(str_field(case, "body")?, format).map_err(|e| e.to_string())? {
            Body::Encrypted { envelope } | Body::Compatible { envelope, .. } => envelope,
            Body::Plain { .. } => return Err("the body is not encrypted".into()),
        };
    match (crypto.open(&envelope, &query), expect.get("push")) {
        (Ok(plain), Some(want)) => {
            crypto
                .verify_signature(&query)
                .map_err(|e| format!("plain signature: {e}"))?;
            let p = push::parse_push(&plain, format).map_err(|e| e.to_string())?;
            same("push", &json(&p), want)
        }
        (Err(e), None) => crypt_error(&e, expect),
        (Ok(plain), None) => Err(format!("want an error, got {plain:?}")),
        (Err(e), Some(_)) => Err(format!("want a push, got {e}")),
    }
}

fn run_transfer(case: &Value) -> Res {
    let format = format_of(case)?;
    let p = push::parse_push(str_field(case, "push")?, format).map_err(|e| e.to_string())?;
    let create_time: i64 = field(case, "create_time")?;
    let expect = &case["expect"];
    match (
        reply::transfer_customer_service(&p, format, create_time),
        expect.get("reply"),
    ) {
        (Ok(r), Some(want)) => {
            let want = want.as_str().ok_or("expect.reply is not a string")?;
            if r != want {
                return Err(format!("reply\n  got:  {r}\n  want: {want}"));
            }
            // It reads back with To and From swapped.
            let back =
                push::parse_push(&r, format).map_err(|e| format!("reply reads back: {e}"))?;
            if back.to_user_name != p.from_user_name
                || back.from_user_name != p.to_user_name
                || back.create_time != create_time
                || back.msg_type != reply::TRANSFER_CUSTOMER_SERVICE
            {
                return Err(format!("reply reads back as {back:?}"));
            }
            if let Some(other) = expect.get("same_fields_as").and_then(Value::as_str) {
                let other = push::parse_push(other, format).map_err(|e| e.to_string())?;
                if other != back {
                    return Err(format!("reply {back:?} differs from {other:?}"));
                }
            }
            Ok(())
        }
        (Err(e), None) => same(
            "error",
            &json(&e),
            expect.get("error").ok_or("no expect.error")?,
        ),
        (Ok(r), None) => Err(format!("want an error, got {r}")),
        (Err(e), Some(_)) => Err(format!("want a reply, got {e}")),
    }
}

fn run_seal(case: &Value) -> Res {
    let crypto = crypto_of(case)?;
    let format = format_of(case)?;
    let reply_text = str_field(case, "reply")?;
    let ts: u64 = field(case, "timestamp")?;
    let nonce = str_field(case, "nonce")?;
    let random = unhex16(str_field(case, "random_hex")?)?;
    let options: SealOptions = field(case, "options")?;
    let expect = &case["expect"];
    let want = expect["sealed"].as_str().ok_or("expect.sealed")?;
    let got = reply::seal(&crypto, reply_text, format, ts, nonce, &random, options)
        .map_err(|e| e.to_string())?;
    if got != want {
        return Err(format!("sealed\n  got:  {got}\n  want: {want}"));
    }
    let encrypt = expect["encrypt"].as_str().ok_or("expect.encrypt")?;
    let signature = expect["msg_signature"]
        .as_str()
        .ok_or("expect.msg_signature")?;
    if !got.contains(encrypt) || !got.contains(signature) {
        return Err("the sealed reply lacks expect.encrypt or expect.msg_signature".into());
    }
    crypto::verify_msg_signature(crypto.token(), &ts.to_string(), nonce, encrypt, signature)
        .map_err(|e| e.to_string())?;
    let back = crypto.decrypt(encrypt).map_err(|e| e.to_string())?;
    if back != reply_text {
        return Err(format!("the sealed reply decrypts to {back:?}"));
    }
    Ok(())
}

fn run_typing(case: &Value) -> Res {
    let command: TypingCommand = field(case, "command")?;
    let expect = &case["expect"];
    match (
        api::typing_body(str_field(case, "touser")?, command),
        expect.get("body"),
    ) {
        (Ok(b), Some(want)) => same("body", &json(&b), want),
        (Err(r), None) => common::refusal_matches(&r, expect),
        (Ok(b), None) => Err(format!("want a refusal, got {b}")),
        (Err(r), Some(_)) => Err(format!("want a body, got {r}")),
    }
}

fn run_quota(case: &Value) -> Res {
    let rules: Rules = match case.get("rules") {
        Some(_) => field(case, "rules")?,
        None => Rules::default(),
    };
    let interactions: Vec<Interaction> = field(case, "interactions")?;
    let sends: Vec<u64> = field(case, "sends")?;
    let now: u64 = field(case, "now_ms")?;
    let expect = &case["expect"];
    match quota::check(&rules, &interactions, &sends, now) {
        Ok(a) => same(
            "allowed",
            &json(&a),
            expect
                .get("allowed")
                .ok_or(format!("want a refusal, got {a:?}"))?,
        ),
        Err(r) => {
            same(
                "refused",
                &json(&r),
                expect
                    .get("refused")
                    .ok_or(format!("want allowed, got {r:?}"))?,
            )?;
            same("errcode", &json(&r.errcode()), &expect["errcode"])
        }
    }
}

fn run_errcode(case: &Value) -> Res {
    let table: Vec<(i64, Value, Option<String>)> = field(case, "table")?;
    for (code, action, msg) in table {
        same(
            &format!("classify({code})"),
            &json(&api::classify(code)),
            &action,
        )?;
        same(
            &format!("errmsg({code})"),
            &json(&api::errmsg(code)),
            &json(&msg),
        )?;
    }
    Ok(())
}

fn run_api_result(case: &Value) -> Res {
    let got = api::parse_result(str_field(case, "input")?);
    let expect = &case["expect"];
    ok_or_error(&got, expect)?;
    if let (Ok(r), Some(want)) = (&got, expect.get("action")) {
        same("action", &json(&r.action()), want)?;
    }
    Ok(())
}

fn run_case(case: &Value) -> Res {
    match str_field(case, "case")? {
        "render" => common::run_render(case),
        "reply" => run_reply(case),
        "event" => run_event(case),
        "push" => run_push(case),
        "signature" => run_signature(case),
        "key" => run_key(case),
        "encrypt" => run_encrypt(case),
        "decrypt" => run_decrypt(case),
        "open" => run_open(case),
        "transfer" => run_transfer(case),
        "seal" => run_seal(case),
        "typing" => run_typing(case),
        "quota" => run_quota(case),
        "errcode" => run_errcode(case),
        "api_result" => run_api_result(case),
        other => Err(format!("unknown case kind {other:?}")),
    }
}

fn run_folder(folder: &str, at_least: usize) {
    common::run_cases(&common::case_files(folder), at_least, run_case);
}

#[test]
fn wechat_dkf_vectors() {
    run_folder("wechat_dkf", 50);
}

#[test]
fn wechat_mp_vectors() {
    run_folder("wechat_mp", 100);
}

#[test]
fn notice_argument_is_the_empty_string() {
    // Seed 002: window.external.Notice("");
    assert_eq!(dkf::NOTICE, "Notice");
    assert_eq!(dkf::NOTICE_ARGUMENT, "");
    assert_eq!(dkf::PUT_MSG, "PutMsg");
    assert_eq!(dkf::CLIENT_NOTIFY, "MCS_ClientNotify");
    // Its return value reads like PutMsg's.
    assert!(dkf::parse_reply("{retCode:0,errMsg:“”}").unwrap().is_ok());
}

#[test]
fn interactions_from_pushes() {
    let msg = push::parse_push(
        r#"{"ToUserName":"gh","FromUserName":"o","CreateTime":1700000000,"MsgType":"text","Content":"x","MsgId":1}"#,
        Format::Json,
    )
    .unwrap();
    assert_eq!(
        Interaction::from_push(&msg),
        Some(Interaction::UserMessage {
            at_ms: 1_700_000_000_000
        })
    );
    let enter = push::parse_push(
        r#"{"ToUserName":"gh","FromUserName":"o","CreateTime":1700000001,"MsgType":"event","Event":"user_enter_tempsession"}"#,
        Format::Json,
    )
    .unwrap();
    assert_eq!(
        Interaction::from_push(&enter),
        Some(Interaction::EnterSession {
            at_ms: 1_700_000_001_000
        })
    );
    let other = push::parse_push(
        r#"{"ToUserName":"gh","FromUserName":"o","CreateTime":1,"MsgType":"event","Event":"kf_close_session"}"#,
        Format::Json,
    )
    .unwrap();
    assert_eq!(Interaction::from_push(&other), None);
}

#[test]
fn format_detection() {
    assert_eq!(Format::detect("\u{feff} <xml/>"), Some(Format::Xml));
    assert_eq!(Format::detect("\n{}"), Some(Format::Json));
    assert_eq!(Format::detect("success"), None);
    assert_eq!(
        Format::from_content_type("text/xml; charset=utf-8"),
        Some(Format::Xml)
    );
    assert_eq!(
        Format::from_content_type("application/json"),
        Some(Format::Json)
    );
    assert_eq!(Format::from_content_type("text/plain"), None);
}
