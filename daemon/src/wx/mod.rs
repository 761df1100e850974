//! WeChat conversations, the agent's side (docs/conversations.md, docs/protocol.md "WeChat
//! conversations"): the `wx.*` methods over the hub's agent API (`/v1/wx/*`, docs/wechat.md),
//! with this device's token, on the sync engine's runtime and outside the service lock (each
//! one waits on the network).
//!
//! A reply is rendered here, with the core's `wechat_mp` adapter (`customer.openid` = the
//! conversation's OpenID): a template image (or card cover) known only by URL is fetched
//! ([`media`]), uploaded to the hub as a blob and sent as media id `sha256:HEX`, which the hub
//! turns into a WeChat media id. Every part gets a history row (platform `wechat-mp`) before
//! the hub is asked, and the hub's answer moves it to `sent` or `failed`. The hub's SSE `wx`
//! notes reach the extension as `wx.changed` (the sync engine's event stream relays them).

pub mod display;
pub mod media;

use crate::params::{self, Call, WxCall, WxTemplateParams};
use crate::service::wx::{WxPart, WxTarget, WxTemplate};
use crate::service::{ServiceError, Shared};
use crate::store::HubRow;
use crate::sync::client::{HubClient, HubError};
use crate::sync::Engine;
use crate::{debug, warn};
use base64::Engine as _;
use quiver_shared::adapters::{self, preview, Platform, Target};
use quiver_shared::model::Part;
use quiver_shared::proto::{self, ErrorBody, ErrorCode};
use quiver_shared::render::{Context, RefusalCode};
use quiver_shared::Template;
use reqwest::Method;
use serde_json::{json, Value};
use std::sync::{Arc, Mutex, OnceLock};

/// Serves one `wx.*` request (a whole reply frame).
pub fn serve(engine: &Engine, req: &proto::Request) -> Value {
    let out = match params::parse(req) {
        Ok(Call::Wx(call)) => {
            let shared = engine.shared();
            engine.block_on(run(&shared, call))
        }
        Ok(_) => Err(ServiceError::Internal(format!(
            "{} is not a WeChat method",
            req.method
        ))),
        Err(e) => Err(ServiceError::from(e)),
    };
    match out {
        Ok(v) => proto::reply(&req.id, v),
        Err(e) => {
            let e = ErrorBody::from(e);
            debug!("{} {}: {}", req.method, e.code.as_str(), e.message);
            proto::error_reply(&req.id, &e)
        }
    }
}

async fn run(shared: &Arc<Shared>, call: WxCall) -> Result<Value, ServiceError> {
    let hub = Hub::of(shared)?;
    match call {
        WxCall::Conversations { scope } => {
            hub.call(
                Method::GET,
                &format!("/v1/wx/conversations?scope={scope}"),
                None,
            )
            .await
        }
        WxCall::Conversation { id } => conversation(&hub, &id).await,
        WxCall::Messages { id, after, limit } => {
            let mut r = hub
                .call(
                    Method::GET,
                    &format!("/v1/wx/conversations/{id}/messages?after={after}&limit={limit}"),
                    None,
                )
                .await?;
            let msgs = r["messages"].as_array_mut().map(std::mem::take);
            let msgs = msgs.unwrap_or_default();
            let msgs = decorate(shared, msgs);
            r["messages"] = Value::Array(msgs);
            Ok(r)
        }
        WxCall::Take { id, force } => {
            hub.post(
                &format!("/v1/wx/conversations/{id}/take"),
                json!({ "force": force }),
            )
            .await
        }
        WxCall::Assign { id, to } => {
            hub.post(
                &format!("/v1/wx/conversations/{id}/assign"),
                json!({ "to": to }),
            )
            .await
        }
        WxCall::Read { id, up_to } => {
            hub.post(
                &format!("/v1/wx/conversations/{id}/read"),
                json!({ "up_to": up_to }),
            )
            .await
        }
        WxCall::Typing { id, on } => {
            hub.post(
                &format!("/v1/wx/conversations/{id}/typing"),
                json!({ "on": on }),
            )
            .await
        }
        WxCall::Transfer { id } => {
            hub.post(&format!("/v1/wx/conversations/{id}/transfer"), json!({}))
                .await
        }
        WxCall::Preview(p) => preview_reply(shared, &hub, &p).await,
        WxCall::Reply(p) => reply(shared, &hub, &p).await,
        WxCall::Blob { sha256 } => blob(&hub, &sha256).await,
    }
}

/// The hub this device talks to, and a client for it (kept between requests).
struct Hub {
    row: HubRow,
    client: HubClient,
}

fn clients() -> &'static Mutex<Option<(String, HubClient)>> {
    static C: OnceLock<Mutex<Option<(String, HubClient)>>> = OnceLock::new();
    C.get_or_init(Mutex::default)
}

fn svc_failed() -> ServiceError {
    ServiceError::Internal("the daemon's service failed".into())
}

impl Hub {
    fn of(shared: &Shared) -> Result<Hub, ServiceError> {
        let row = shared.run(|svc, _| svc.wx_hub()).ok_or_else(svc_failed)??;
        let key = format!("{}\n{}\n{:?}", row.url, row.token, row.fingerprint);
        let mut slot = clients().lock().map_err(|_| svc_failed())?;
        let client = match slot.as_ref() {
            Some((k, c)) if *k == key => c.clone(),
            _ => {
                let c = HubClient::new(
                    &row.url,
                    row.fingerprint.as_deref(),
                    Some(row.token.clone()),
                )
                .map_err(|e| unreachable_hub(&row, &e))?;
                *slot = Some((key, c.clone()));
                c
            }
        };
        Ok(Hub { row, client })
    }

    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, String, Vec<u8>), ServiceError> {
        self.client
            .request(method, path, body)
            .await
            .map_err(|e| unreachable_hub(&self.row, &e))
    }

    /// A JSON call; the hub's refusals as protocol errors.
    async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<Value, ServiceError> {
        let body = body.map(|b| ("application/json", b.to_string().into_bytes()));
        let (status, _, bytes) = self.raw(method, path, body).await?;
        if (200..300).contains(&status) {
            if bytes.is_empty() {
                return Ok(json!({}));
            }
            return serde_json::from_slice(&bytes).map_err(|e| ServiceError::Hub {
                message: format!("the hub's answer to {path} is not JSON: {e}"),
                data: Some(json!({ "reason": "bad_reply" })),
            });
        }
        Err(refusal(&self.row, path, status, &bytes))
    }

    async fn post(&self, path: &str, body: Value) -> Result<Value, ServiceError> {
        self.call(Method::POST, path, Some(body)).await
    }
}

fn unreachable_hub(row: &HubRow, e: &HubError) -> ServiceError {
    let reason = match e {
        HubError::Pin(_) => "certificate",
        HubError::Unauthorized(_) => "unauthorized",
        _ => "unreachable",
    };
    ServiceError::Hub {
        message: format!("the hub {}: {e}", row.url),
        data: Some(json!({ "reason": reason })),
    }
}

/// The hub's refusal (`{"error": {"code", "message", ...}}`) as the protocol's error.
fn refusal(row: &HubRow, path: &str, status: u16, body: &[u8]) -> ServiceError {
    let v: Value = serde_json::from_slice(body).unwrap_or(Value::Null);
    let err = &v["error"];
    let code = err["code"].as_str().unwrap_or("");
    let message = err["message"]
        .as_str()
        .map(str::to_string)
        .unwrap_or_else(|| String::from_utf8_lossy(&body[..body.len().min(300)]).into_owned());
    let proto_err = |c: ErrorCode, data: Option<Value>| {
        let mut e = ErrorBody::new(c, format!("the hub: {message}"));
        e.data = data;
        ServiceError::Protocol(e)
    };
    // whatever the hub said beside code and message (a quota refusal, the assignee)
    let mut extra = err.as_object().cloned().unwrap_or_default();
    extra.remove("code");
    extra.remove("message");
    let extra = (!extra.is_empty()).then_some(Value::Object(extra));
    match (status, code) {
        (409, "quota") => {
            let refusal = extra.clone().unwrap_or(Value::Null);
            // the errcode from the details, else from the hub's words ("... (45047)")
            let errcode = refusal["errcode"]
                .as_u64()
                .or_else(|| refusal["refusal"]["errcode"].as_u64())
                .or_else(|| {
                    message
                        .split(|c: char| !c.is_ascii_digit())
                        .find(|w| w.len() == 5 && w.starts_with("450"))
                        .and_then(|w| w.parse().ok())
                });
            let refusal = if refusal["refusal"].is_null() {
                refusal
            } else {
                refusal["refusal"].clone()
            };
            proto_err(
                ErrorCode::QuotaExceeded,
                Some(json!({ "errcode": errcode, "refusal": refusal })),
            )
        }
        (409, _) => proto_err(ErrorCode::Conflict, extra),
        (400 | 413 | 422, _) => proto_err(ErrorCode::InvalidParams, extra),
        (403, _) => proto_err(ErrorCode::Forbidden, extra),
        (404, _) => proto_err(ErrorCode::NotFound, extra),
        (401, _) => ServiceError::Hub {
            message: format!(
                "the hub {} refused this device's token (join again): {message}",
                row.url
            ),
            data: Some(json!({ "reason": "unauthorized" })),
        },
        _ => ServiceError::Hub {
            message: format!("the hub answered {status} to {path}: {message}"),
            data: Some(json!({ "reason": "http", "status": status })),
        },
    }
}

async fn conversation(hub: &Hub, id: &str) -> Result<Value, ServiceError> {
    hub.call(Method::GET, &format!("/v1/wx/conversations/{id}"), None)
        .await
}

/// Each message with its `display` (what the customer saw, [`display::of_message`]); the
/// history rows of this device's replies follow the hub's outcome.
fn decorate(shared: &Shared, msgs: Vec<Value>) -> Vec<Value> {
    let mut done = vec![];
    let out: Vec<Value> = msgs
        .into_iter()
        .map(|mut m| {
            let d = display::of_message(&m);
            if let (Some(key), Some(state)) = (m["idempotency_key"].as_str(), m["state"].as_str()) {
                let part = m["part"].as_u64().unwrap_or(0);
                done.push((
                    format!("wx:{key}:{part}"),
                    state.to_string(),
                    m["error"].as_str().map(str::to_string),
                ));
            }
            m["display"] = serde_json::to_value(d).unwrap_or(Value::Null);
            m
        })
        .collect();
    let finished: Vec<_> = done
        .into_iter()
        .filter(|(_, s, _)| matches!(s.as_str(), "sent" | "failed" | "unknown" | "cancelled"))
        .collect();
    if !finished.is_empty() {
        shared.run(move |svc, now| {
            for (k, s, e) in finished {
                if let Err(e) = svc.wx_history_done(&k, &s, e.as_deref(), now) {
                    warn!("history of {k}: {e}");
                }
            }
        });
    }
    out
}

/// The render context of a conversation: the caller's values, the customer's OpenID, the
/// clock (`now`, unless given) and the agent's zone (`tz`, from the values).
fn context(values: &std::collections::BTreeMap<String, String>, openid: &str, now: u64) -> Context {
    let mut ctx: Context = values.clone();
    ctx.insert(
        adapters::wechat_mp::OPENID_VARIABLE.to_string(),
        openid.to_string(),
    );
    ctx.entry("now".into()).or_insert_with(|| now.to_string());
    ctx
}

fn fallback_mut(p: &mut Part) -> Option<&mut Part> {
    match p {
        Part::Text { fallback, .. }
        | Part::Rich { fallback, .. }
        | Part::Image { fallback, .. }
        | Part::News { fallback, .. }
        | Part::Product { fallback, .. } => fallback.as_deref_mut(),
        Part::Miniprogram(m) => m.fallback.as_deref_mut(),
    }
}

fn empty(v: &Option<String>) -> bool {
    v.as_deref().is_none_or(str::is_empty)
}

/// Images fetched for a reply: the media id each became.
#[derive(Debug, Default)]
struct Filled {
    images: Vec<media::Image>,
    /// Why an image could not be fetched (the part then falls back).
    errors: Vec<String>,
}

/// Fills the media id of every image (and card cover) known only by URL, along each part's
/// fallback chain up to the first rendition WeChat can show: the URL (its variables filled)
/// is fetched and the media id becomes `sha256:HEX`.
async fn fill_media(template: &mut Template, ctx: &Context) -> Filled {
    let target = Target::new(Platform::WechatMp);
    let required: Vec<String> = template
        .required_variables()
        .iter()
        .map(|s| s.to_string())
        .collect();
    let req: Vec<&str> = required.iter().map(String::as_str).collect();
    let mut filled = Filled::default();
    for (i, part) in template.parts.iter_mut().enumerate() {
        let mut node = Some(part);
        while let Some(p) = node {
            let url = match &*p {
                Part::Image { url, media_id, .. } if empty(media_id) && !empty(url) => {
                    filled_url(p, ctx, &req)
                }
                Part::Miniprogram(m)
                    if empty(&m.thumb_media_id) && (!empty(&m.thumb_url) || !empty(&m.pic_url)) =>
                {
                    filled_url(p, ctx, &req)
                }
                _ => None,
            };
            if let Some(url) = url {
                match media::fetch(&url).await {
                    Ok(img) => {
                        let id = display::blob_id(&img.sha256);
                        match p {
                            Part::Image { media_id, .. } => *media_id = Some(id),
                            Part::Miniprogram(m) => m.thumb_media_id = Some(id),
                            _ => {}
                        }
                        if !filled.images.iter().any(|x| x.sha256 == img.sha256) {
                            filled.images.push(img);
                        }
                    }
                    Err(e) => filled.errors.push(format!("part {i}: {e}")),
                }
            }
            if adapters::supports(&target, p).is_ok() {
                break;
            }
            node = fallback_mut(p);
        }
    }
    filled
}

/// The image URL of `p` (an image's `url`, a card's `thumb_url` or `pic_url`) with its
/// variables filled; `None` when a variable has no value (the render says so).
fn filled_url(p: &Part, ctx: &Context, required: &[&str]) -> Option<String> {
    let f = adapters::substitute(p, ctx, required).ok()?;
    match f {
        Part::Image { url, .. } => url,
        Part::Miniprogram(m) => m.thumb_url.or(m.pic_url).filter(|u| !u.is_empty()),
        _ => None,
    }
}

/// The conversation, the template and the context of a preview or reply.
async fn prepare(
    shared: &Shared,
    hub: &Hub,
    p: &WxTemplateParams,
) -> Result<(Value, WxTemplate, Context, Filled), ServiceError> {
    let conv = conversation(hub, &p.id).await?;
    let openid = conv["openid"].as_str().unwrap_or_default().to_string();
    let (lib, id) = (p.library.clone(), p.template.clone());
    let mut tpl = shared
        .run(move |svc, _| svc.wx_template(&lib, &id))
        .ok_or_else(svc_failed)??;
    let ctx = context(&p.values, &openid, shared.now());
    let filled = fill_media(&mut tpl.template, &ctx).await;
    Ok((conv, tpl, ctx, filled))
}

async fn preview_reply(
    shared: &Shared,
    hub: &Hub,
    p: &WxTemplateParams,
) -> Result<Value, ServiceError> {
    let (conv, tpl, ctx, filled) = prepare(shared, hub, p).await?;
    let parts = preview::preview(&Target::new(Platform::WechatMp), &tpl.template, &ctx);
    Ok(json!({
        "conversation": conv["id"],
        "openid": conv["openid"],
        "library": tpl.library,
        "template": tpl.template.id,
        "revision": tpl.revision,
        "parts": parts,
        "media_errors": filled.errors,
    }))
}

async fn reply(shared: &Shared, hub: &Hub, p: &WxTemplateParams) -> Result<Value, ServiceError> {
    let (conv, tpl, ctx, filled) = prepare(shared, hub, p).await?;
    let target = Target::new(Platform::WechatMp);
    let mut wires = vec![];
    for i in 0..tpl.template.parts.len() {
        match adapters::render(&target, &tpl.template, i, &ctx) {
            Ok(w) => wires.push(w),
            Err(r) => {
                let mut msg = format!(
                    "template {:?} part {i} cannot be sent to WeChat: {}",
                    tpl.template.id, r.message
                );
                if r.code == RefusalCode::ChannelUnsupported && !filled.errors.is_empty() {
                    msg.push_str(&format!(" ({})", filled.errors.join("; ")));
                }
                return Err(ServiceError::Protocol(
                    ErrorBody::new(ErrorCode::InvalidParams, msg)
                        .with_data(json!({ "part": i, "refusal": r })),
                ));
            }
        }
    }
    // the images the parts send, uploaded to the hub once each
    for img in &filled.images {
        let id = display::blob_id(&img.sha256);
        if !wires.iter().any(|w| w.wire.contains(&id)) {
            continue;
        }
        let path = format!("/v1/wx/blobs/{}", img.sha256);
        let (status, _, _) = hub.raw(Method::HEAD, &path, None).await?;
        if (200..300).contains(&status) {
            continue;
        }
        let (status, _, body) = hub
            .raw(Method::PUT, &path, Some((img.mime, img.bytes.clone())))
            .await?;
        if !(200..300).contains(&status) {
            return Err(refusal(&hub.row, &path, status, &body));
        }
    }
    let to = WxTarget {
        app: conv["app"].as_str().unwrap_or_default().to_string(),
        conversation: p.id.clone(),
        openid: conv["openid"].as_str().unwrap_or_default().to_string(),
    };
    let parts: Vec<WxPart> = wires
        .iter()
        .enumerate()
        .map(|(i, w)| WxPart {
            key: format!("wx:{}:{i}", p.idempotency_key),
            part_index: i as u32,
            payload: w.wire.clone(),
        })
        .collect();
    {
        let (tpl, to, parts) = (tpl.clone(), to.clone(), parts.clone());
        shared
            .run(move |svc, now| svc.wx_history_begin(&tpl, &to, &parts, now))
            .ok_or_else(svc_failed)??;
    }
    let seen = p
        .seen_inbound_id
        .or_else(|| conv["last_inbound_id"].as_u64())
        .unwrap_or(0);
    let body = json!({
        "idempotency_key": p.idempotency_key,
        "seen_inbound_id": seen,
        "parts": wires.iter().map(|w| json!({ "body": w.wire })).collect::<Vec<_>>(),
    });
    let sent = hub
        .post(&format!("/v1/wx/conversations/{}/send", p.id), body)
        .await;
    let msgs = match sent {
        Ok(mut r) => r["messages"]
            .as_array_mut()
            .map(std::mem::take)
            .unwrap_or_default(),
        Err(e) => {
            // refused before anything went out (quota, not the assignee, a bad part): the
            // rows say why; an unreachable hub leaves them `sending` (the outcome is unknown
            // until the same key is tried again or the thread is read)
            if !matches!(e, ServiceError::Hub { .. }) {
                let why = e.to_string();
                let keys: Vec<String> = parts.iter().map(|x| x.key.clone()).collect();
                shared.run(move |svc, now| {
                    for k in keys {
                        if let Err(e) = svc.wx_history_done(&k, "failed", Some(&why), now) {
                            warn!("history of {k}: {e}");
                        }
                    }
                });
            }
            return Err(e);
        }
    };
    // the hub's rows in part order; the history follows them
    let mut states = vec![];
    for (i, m) in msgs.iter().enumerate() {
        let part = m["part"].as_u64().unwrap_or(i as u64);
        states.push((
            format!("wx:{}:{part}", p.idempotency_key),
            m["state"].as_str().unwrap_or("sending").to_string(),
            m["error"].as_str().map(str::to_string),
        ));
    }
    shared.run(move |svc, now| {
        for (k, s, e) in states {
            if let Err(e) = svc.wx_history_done(&k, &s, e.as_deref(), now) {
                warn!("history of {k}: {e}");
            }
        }
    });
    let msgs = decorate(shared, msgs);
    Ok(json!({
        "conversation": p.id,
        "messages": msgs,
        "parts": wires.iter().enumerate().map(|(i, w)| json!({
            "index": i, "kind": w.kind, "fallback_used": w.fallback_used, "wire": w.wire,
        })).collect::<Vec<_>>(),
    }))
}

/// `wx.blob`: an image's bytes, from this daemon's cache or the hub.
async fn blob(hub: &Hub, sha256: &str) -> Result<Value, ServiceError> {
    let img = match media::cached(sha256) {
        Some(i) => i,
        None => {
            let path = format!("/v1/wx/blobs/{sha256}");
            let (status, ct, bytes) = hub.raw(Method::GET, &path, None).await?;
            if !(200..300).contains(&status) {
                return Err(refusal(&hub.row, &path, status, &bytes));
            }
            if media::sha256_hex(&bytes) != sha256 {
                return Err(ServiceError::Hub {
                    message: format!("the hub's blob {sha256} does not have that hash"),
                    data: Some(json!({ "reason": "bad_reply" })),
                });
            }
            let mime = media::sniff(&bytes).unwrap_or(match ct.as_str() {
                "image/png" => "image/png",
                "image/gif" => "image/gif",
                _ => "image/jpeg",
            });
            let img = media::Image {
                sha256: sha256.to_string(),
                mime,
                bytes,
            };
            media::remember(img.clone());
            img
        }
    };
    Ok(json!({
        "sha256": img.sha256,
        "mime": img.mime,
        "size": img.bytes.len(),
        "data": base64::engine::general_purpose::STANDARD.encode(&img.bytes),
    }))
}
