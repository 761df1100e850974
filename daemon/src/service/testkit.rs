//! Helpers of the service's unit tests.

pub(crate) use super::*;
pub(crate) use crate::store::tests::Scratch;
use quiver_shared::proto::parse_request;

/// Udesk's default interval: one second plus the delivery margin (shared::meter).
pub(crate) const UDESK_MS: u64 = quiver_shared::meter::Rule::UDESK.min_interval_ms;

pub(crate) fn req(method: &str, params: Value) -> proto::Request {
    let frame = json!({ "id": 1, "method": method, "params": params }).to_string();
    parse_request(frame.as_bytes()).unwrap()
}

pub(crate) fn ok(svc: &mut Service, method: &str, params: Value, now: u64) -> Value {
    let r = svc.handle(&req(method, params), now);
    assert!(r.get("error").is_none(), "{method}: {r}");
    r["result"].clone()
}

pub(crate) fn err(svc: &mut Service, method: &str, params: Value, now: u64) -> (String, String) {
    let r = svc.handle(&req(method, params), now);
    let e = &r["error"];
    assert!(e.is_object(), "{method}: expected an error, got {r}");
    (
        e["code"].as_str().unwrap().to_string(),
        e["message"].as_str().unwrap().to_string(),
    )
}

pub(crate) fn err_full(svc: &mut Service, method: &str, params: Value, now: u64) -> Value {
    let r = svc.handle(&req(method, params), now);
    assert!(
        r["error"].is_object(),
        "{method}: expected an error, got {r}"
    );
    r["error"].clone()
}

pub(crate) fn open(s: &Scratch, now: u64) -> Service {
    Service::start(Store::open(&s.db(), now).unwrap(), now).unwrap()
}

pub(crate) fn reserve_params(key: &str, ws: &str) -> Value {
    json!({
        "idempotency_key": key, "platform": "udesk", "workspace": ws,
        "template_id": "greeting", "revision": 1, "part_index": 0,
        "payload": format!("{{\"text\":\"{key}\"}}"),
    })
}

pub(crate) fn send(
    svc: &mut Service,
    platform: &str,
    key: &str,
    conv: Option<&str>,
    now: u64,
) -> Result<Value, Value> {
    let p = json!({
        "idempotency_key": key, "platform": platform, "workspace": "w",
        "conversation": conv, "template_id": "greeting", "revision": 1, "part_index": 0,
        "payload": "p",
    });
    let r = svc.handle(&req("send.reserve", p), now);
    match r.get("error") {
        Some(e) => Err(e.clone()),
        None => Ok(r["result"].clone()),
    }
}

pub(crate) fn events(svc: &mut Service, name: &str) -> Vec<Value> {
    svc.take_events()
        .into_iter()
        .filter(|e| e["event"] == name)
        .map(|e| e["data"].clone())
        .collect()
}

pub(crate) fn tpl(id: &str, title: &str, text: &str) -> Value {
    json!({"id": id, "title": title, "folder": "Orders/Refunds", "tags": ["refund"],
           "parts": [{"type": "text", "text": text}]})
}
