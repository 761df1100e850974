//! What the page's API does (docs/mcs.md, "The page's API"). Every step goes through the
//! service's own methods, so the page's sends are history rows like any other (platform
//! `wechat-dkf`, workspace `mcs`, the customer's OpenID as conversation and customer) and the
//! send meter applies to them.

use super::http::App;
use super::{fresh_random, Customer, MapClick, SendMemo};
use quiver_shared::adapters::{self, Platform, Target};
use quiver_shared::proto::Request;
use quiver_shared::wechat::dkf::{self, ClientEvent};
use quiver_shared::{Context, Template};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The workspace name of the page's sends in the history.
pub const WORKSPACE: &str = "mcs";
/// Search results per request at most.
const MAX_RESULTS: u64 = 50;
/// How long a render waits for the meter's slot before it gives up.
const SLOT_WAIT: Duration = Duration::from_secs(15);
/// Variables one render takes at most, and the longest value.
const MAX_VALUES: usize = 64;
const MAX_VALUE: usize = 4096;
/// The longest raw event string and PutMsg reply read.
const MAX_RAW: usize = 8192;

/// An API error: HTTP status, code, message.
#[derive(Debug)]
pub struct ApiError {
    pub status: u16,
    pub code: String,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, code: &str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code: code.to_string(),
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "bad_request", message)
    }

    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(500, "internal", message)
    }
}

/// Calls a service method as a client would; a daemon error keeps its code.
fn call(app: &App, method: &str, params: Value) -> Result<Value, ApiError> {
    let Value::Object(params) = params else {
        return Err(ApiError::internal("params must be an object"));
    };
    let req = Request {
        id: json!(0),
        method: method.to_string(),
        params,
    };
    let reply = app.shared.call(&req);
    if let Some(r) = reply.get("result") {
        return Ok(r.clone());
    }
    let e = &reply["error"];
    let code = e["code"].as_str().unwrap_or("internal").to_string();
    let status = match code.as_str() {
        "invalid_params" => 400,
        "not_found" => 404,
        "conflict" | "quota_exceeded" | "queue_full" => 409,
        "storage_unavailable" => 503,
        _ => 500,
    };
    Err(ApiError {
        status,
        code,
        message: e["message"]
            .as_str()
            .unwrap_or("the daemon failed")
            .to_string(),
    })
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn customer(app: &App) -> Option<Customer> {
    lock(&app.page).customer.clone()
}

/// The history rows of the page's sends to `openid`, newest first.
fn customer_history(app: &App, openid: &str, limit: u32) -> Result<Vec<Value>, ApiError> {
    let r = call(
        app,
        "history.list",
        json!({"platform": Platform::WechatDkf.as_str(), "customer": openid, "limit": limit}),
    )?;
    Ok(r["rows"].as_array().cloned().unwrap_or_default())
}

fn text_of(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

/// A short label of a part for its button.
fn part_label(part: &quiver_shared::model::Part) -> String {
    use quiver_shared::model::Part;
    let s = match part {
        Part::Text { text, .. } => text.clone(),
        Part::Image { url, .. } => url.clone().unwrap_or_default(),
        Part::News { articles, .. } => articles
            .first()
            .map(|a| a.title.clone())
            .unwrap_or_default(),
        Part::Rich { .. } | Part::Product { .. } | Part::Miniprogram(_) => String::new(),
    };
    let mut out: String = s.chars().take(60).collect();
    if s.chars().count() > 60 {
        out.push('…');
    }
    out
}

/// `GET /mcs/api/search?q=&limit=`: the library's search (every library), with what each part
/// becomes in the 多客服 client.
pub fn search(app: &App, q: &HashMap<String, String>) -> Result<Value, ApiError> {
    let query = q.get("q").cloned().unwrap_or_default();
    if query.len() > 200 {
        return Err(ApiError::bad_request("`q` is longer than 200 bytes"));
    }
    let limit = match q.get("limit") {
        None => 20,
        Some(l) => l
            .parse::<u64>()
            .ok()
            .filter(|n| (1..=MAX_RESULTS).contains(n))
            .ok_or_else(|| ApiError::bad_request(format!("`limit` must be 1 to {MAX_RESULTS}")))?,
    };
    let r = call(
        app,
        "templates.search",
        json!({"query": query, "limit": limit, "library": "*"}),
    )?;
    let sent: HashSet<(String, String)> = match customer(app) {
        Some(c) => customer_history(app, &c.openid, 200)?
            .iter()
            .filter(|row| row["state"] == "sent")
            .map(|row| {
                (
                    row["library"].as_str().unwrap_or("local").to_string(),
                    text_of(&row["template_id"]),
                )
            })
            .collect(),
        None => HashSet::new(),
    };
    let target = Target::new(Platform::WechatDkf);
    let mut results = Vec::new();
    for hit in r["results"].as_array().into_iter().flatten() {
        let Ok(t) = serde_json::from_value::<Template>(hit["template"].clone()) else {
            continue;
        };
        let library = hit["library"].as_str().unwrap_or("local").to_string();
        let parts: Vec<Value> = t
            .parts
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let mut v = json!({"index": i, "kind": p.kind(), "label": part_label(p)});
                match adapters::choose(&target, p) {
                    Ok((chosen, fallback)) => {
                        v["ok"] = json!(true);
                        v["puts"] = json!(chosen.kind());
                        v["fallback"] = json!(fallback);
                    }
                    Err(r) => {
                        v["ok"] = json!(false);
                        v["why"] = json!(r.message);
                    }
                }
                v
            })
            .collect();
        // every variable the template uses (declared or not), except customer.openid, which
        // the current customer fills
        let variables: Vec<Value> = quiver_shared::model::variables(&t)
            .iter()
            .filter(|v| v.name != "customer.openid")
            .map(|v| json!({"name": v.name, "label": v.label, "required": v.required}))
            .collect();
        results.push(json!({
            "library": library,
            "id": t.id,
            "title": t.title,
            "folder": t.folder,
            "variables": variables,
            "parts": parts,
            "sent_before": sent.contains(&(library.clone(), t.id.clone())),
        }));
    }
    Ok(json!({ "results": results }))
}

/// `GET /mcs/api/state`: the current customer, the last map click, the notice, and the page's
/// sends to the current customer.
pub fn state(app: &App) -> Result<Value, ApiError> {
    let (customer, last_map, notice) = {
        let p = lock(&app.page);
        (p.customer.clone(), p.last_map.clone(), p.notice.clone())
    };
    let history = match &customer {
        Some(c) => customer_history(app, &c.openid, 20)?
            .into_iter()
            .map(|row| {
                json!({
                    "send_id": row["send_id"],
                    "library": row["library"],
                    "template_id": row["template_id"],
                    "part_index": row["part_index"],
                    "state": row["state"],
                    "error": row["error"],
                    "queued_at": row["queued_at"],
                })
            })
            .collect(),
        None => Vec::new(),
    };
    Ok(json!({
        "customer": customer,
        "last_map": last_map,
        "notice": notice,
        "history": history,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RenderBody {
    #[serde(default)]
    library: Option<String>,
    #[serde(default)]
    template_id: Option<String>,
    #[serde(default)]
    part: Option<u32>,
    #[serde(default)]
    values: BTreeMap<String, String>,
    /// The agent's offset from UTC in minutes (for `{{date}}`, `{{time}}`).
    #[serde(default)]
    tz: Option<i32>,
    /// Another attempt at this send: the same `PutMsg` string (same `head.random`).
    #[serde(default)]
    retry_of: Option<i64>,
}

fn body<T: serde::de::DeserializeOwned>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("bad body: {e}")))
}

/// `POST /mcs/api/render`: the exact `PutMsg` string of one part, recorded in the history as
/// `sending` once the meter gives its slot.
pub fn render(app: &App, v: Value) -> Result<Value, ApiError> {
    let b: RenderBody = body(v)?;
    let memo = match b.retry_of {
        Some(id) => {
            if b.template_id.is_some() || b.part.is_some() || b.library.is_some() {
                return Err(ApiError::bad_request(
                    "`retry_of` takes no template_id, part or library: it repeats that send",
                ));
            }
            lock(&app.page).memo(id).ok_or_else(|| {
                ApiError::new(
                    404,
                    "not_found",
                    format!("send {id} was not made by this page (or the daemon restarted)"),
                )
            })?
        }
        None => Arc::new(Mutex::new(fresh(app, &b)?)),
    };
    if b.retry_of.is_some() {
        // PutMsg fills the chat the client shows now: never another customer's message
        let now_showing = customer(app).map(|c| c.openid);
        let was = lock(&memo).customer.clone();
        if was != now_showing {
            return Err(ApiError::new(
                409,
                "customer_changed",
                format!(
                    "that send was for {}, the client now shows {}: put it again from the search",
                    was.as_deref().unwrap_or("no customer"),
                    now_showing.as_deref().unwrap_or("no customer")
                ),
            ));
        }
    }
    let (key, params) = {
        let mut m = lock(&memo);
        m.attempts += 1;
        let key = if m.attempts == 1 {
            format!("mcs:{}", m.random)
        } else {
            format!("mcs:{}:{}", m.random, m.attempts)
        };
        let params = json!({
            "idempotency_key": key,
            "platform": Platform::WechatDkf.as_str(),
            "workspace": WORKSPACE,
            "conversation": m.customer,
            "customer": m.customer,
            "template_id": m.template_id,
            "revision": m.revision,
            "part_index": m.part,
            "payload": m.put,
            "library": m.library,
            "begin": true,
        });
        (key, params)
    };
    let r = call(app, "send.reserve", params)?;
    let send_id = r["send_id"]
        .as_i64()
        .ok_or_else(|| ApiError::internal(format!("send.reserve for {key}: no send_id")))?;
    lock(&app.page).remember(send_id, memo.clone());
    if r["go"] != true {
        wait_for_slot(app, send_id, r["delay_ms"].as_u64().unwrap_or(0))?;
    }
    let m = lock(&memo);
    Ok(json!({
        "send_id": send_id,
        "random": m.random,
        "put": m.put,
        "kind": m.kind,
        "fallback_used": m.fallback_used,
        "attempt": m.attempts,
        "customer": m.customer,
    }))
}

/// Waits for the meter (one put per second per customer) and begins the send.
fn wait_for_slot(app: &App, send_id: i64, first_delay: u64) -> Result<(), ApiError> {
    let until = Instant::now() + SLOT_WAIT;
    let mut delay = first_delay;
    loop {
        if Instant::now() + Duration::from_millis(delay) > until {
            let _ = call(app, "send.cancel", json!({"send_id": send_id}));
            return Err(ApiError::new(
                503,
                "busy",
                format!("no slot within {} s; try again", SLOT_WAIT.as_secs()),
            ));
        }
        std::thread::sleep(Duration::from_millis(delay));
        let r = call(app, "send.begin", json!({"send_id": send_id}))?;
        if r["go"] == true {
            return Ok(());
        }
        delay = r["delay_ms"].as_u64().unwrap_or(100).max(1);
    }
}

/// A new send: the template's part rendered with a fresh `head.random`.
fn fresh(app: &App, b: &RenderBody) -> Result<SendMemo, ApiError> {
    let template_id = b
        .template_id
        .clone()
        .ok_or_else(|| ApiError::bad_request("`template_id` is missing"))?;
    let part = b
        .part
        .ok_or_else(|| ApiError::bad_request("`part` is missing"))?;
    let library = b.library.clone().unwrap_or_else(|| "local".to_string());
    if b.values.len() > MAX_VALUES || b.values.values().any(|v| v.len() > MAX_VALUE) {
        return Err(ApiError::bad_request(format!(
            "`values`: at most {MAX_VALUES} values of at most {MAX_VALUE} bytes"
        )));
    }
    if let Some(tz) = b.tz {
        if !(-1440..=1440).contains(&tz) {
            return Err(ApiError::bad_request("`tz` must be -1440 to 1440 minutes"));
        }
    }
    let got = call(
        app,
        "templates.get",
        json!({"id": template_id, "library": library}),
    )?;
    let template: Template = serde_json::from_value(got["template"].clone()).map_err(|_| {
        ApiError::new(
            404,
            "not_found",
            format!("template {template_id:?} was deleted"),
        )
    })?;
    let customer = customer(app).map(|c| c.openid);
    let mut ctx = Context::new();
    for (k, v) in &b.values {
        ctx.insert(k.clone(), v.clone());
    }
    ctx.insert("now".into(), app.shared.now().to_string());
    if let Some(tz) = b.tz {
        ctx.insert("tz".into(), tz.to_string());
    }
    if let Some(c) = &customer {
        ctx.entry("customer.openid".into())
            .or_insert_with(|| c.clone());
    }
    let random =
        fresh_random().map_err(|e| ApiError::internal(format!("reading /dev/urandom: {e}")))?;
    let mut target = Target::new(Platform::WechatDkf);
    target.nonce = Some(random.clone());
    let wire = adapters::render(&target, &template, part as usize, &ctx)
        .map_err(|r| ApiError::new(422, r.code.as_str(), r.message))?;
    Ok(SendMemo {
        random,
        put: wire.wire,
        library,
        template_id,
        revision: template.revision,
        part,
        kind: wire.kind,
        fallback_used: wire.fallback_used,
        customer,
        attempts: 0,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DoneBody {
    send_id: i64,
    /// What `PutMsg` returned (`{retCode:0,errMsg:""}`).
    #[serde(default)]
    reply: Option<String>,
    /// Why there is no reply (the call threw, or `window.external.PutMsg` is missing).
    #[serde(default)]
    error: Option<String>,
}

fn clip(s: &str, n: usize) -> String {
    if s.len() <= n {
        return s.to_string();
    }
    let mut end = n;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// `POST /mcs/api/done`: what `PutMsg` answered, read with `dkf::parse_reply`, recorded.
pub fn done(app: &App, v: Value) -> Result<Value, ApiError> {
    let b: DoneBody = body(v)?;
    if lock(&app.page).memo(b.send_id).is_none() {
        return Err(ApiError::new(
            404,
            "not_found",
            format!("send {} was not made by this page", b.send_id),
        ));
    }
    let mut out = json!({"send_id": b.send_id});
    let (ok, error) = match (&b.reply, &b.error) {
        (Some(reply), None) => {
            if reply.len() > MAX_RAW {
                return Err(ApiError::bad_request(format!(
                    "`reply` is longer than {MAX_RAW} bytes"
                )));
            }
            match dkf::parse_reply(reply) {
                Ok(r) => {
                    out["ret_code"] = json!(r.ret_code);
                    out["err_msg"] = json!(r.err_msg);
                    if r.is_ok() {
                        (true, None)
                    } else {
                        let meaning = r.meaning().unwrap_or("undocumented code");
                        (
                            false,
                            Some(format!(
                                "PutMsg answered retCode {} ({meaning}): {}",
                                r.ret_code,
                                clip(&r.err_msg, 300)
                            )),
                        )
                    }
                }
                Err(e) => (
                    false,
                    Some(format!(
                        "PutMsg's answer is unreadable: {}",
                        clip(&e.to_string(), 300)
                    )),
                ),
            }
        }
        (None, Some(e)) => (false, Some(format!("PutMsg failed: {}", clip(e, 300)))),
        _ => {
            return Err(ApiError::bad_request(
                "give exactly one of `reply` (what PutMsg returned) and `error`",
            ))
        }
    };
    let r = call(
        app,
        "send.done",
        json!({"send_id": b.send_id, "ok": ok, "error": error}),
    )?;
    out["state"] = r["state"].clone();
    if let Some(e) = error {
        out["error"] = json!(e);
    }
    Ok(out)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventBody {
    /// The string the client passed to `MCS_ClientNotify`, unchanged.
    raw: String,
}

/// `POST /mcs/api/event`: an `MCS_ClientNotify` string, read with `dkf::parse_client_event`
/// (never evaluated). `OnUserChange` sets the current customer.
pub fn event(app: &App, v: Value) -> Result<Value, ApiError> {
    let b: EventBody = body(v)?;
    if b.raw.len() > MAX_RAW {
        return Err(ApiError::bad_request(format!(
            "`raw` is longer than {MAX_RAW} bytes"
        )));
    }
    let ev = dkf::parse_client_event(&b.raw)
        .map_err(|e| ApiError::bad_request(clip(&e.to_string(), 500)))?;
    let now = app.shared.now();
    let mut p = lock(&app.page);
    match &ev {
        ClientEvent::UserChange {
            channel_type,
            user_account,
        } => {
            if user_account.len() > 256 {
                return Err(ApiError::bad_request(
                    "the user account is longer than 256 bytes",
                ));
            }
            let same = p
                .customer
                .as_ref()
                .is_some_and(|c| &c.openid == user_account);
            if !same {
                p.customer = Some(Customer {
                    openid: user_account.clone(),
                    channel_type: channel_type.clone(),
                    since_ms: now,
                });
            }
        }
        ClientEvent::MapMsgClick {
            latitude,
            longitude,
            location,
            scale,
        } => {
            p.last_map = Some(MapClick {
                latitude: latitude.clone(),
                longitude: longitude.clone(),
                location: location.clone(),
                scale: scale.clone(),
                at_ms: now,
            });
        }
        ClientEvent::Other { .. } => {}
    }
    let mut event = serde_json::to_value(&ev).unwrap_or(Value::Null);
    if let Value::Object(m) = &mut event {
        m.retain(|_, v| !v.is_null());
    }
    Ok(json!({
        "event": event,
        "customer": p.customer,
    }))
}
