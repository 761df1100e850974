//! The agent API `/v1/wx/*` (device token, `Authorization: Bearer`, errors as `ErrorBody`) and
//! the push routes. JSON shapes: docs/wechat.md, "The agent API".

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::ops::{self, Part};
use super::Wx;
use crate::error::{HubError, Result};
use crate::extract::{body, query};
use crate::ids::{self, now_ms};
use crate::ops::Actor;
use quiver_shared::wechat::media;

type St = State<Arc<Wx>>;

/// The authenticated device.
#[derive(Debug)]
pub struct Agent(pub Actor);

impl FromRequestParts<Arc<Wx>> for Agent {
    type Rejection = HubError;

    async fn from_request_parts(parts: &mut Parts, wx: &Arc<Wx>) -> Result<Agent> {
        crate::extract::device(&wx.db, &parts.headers)
            .await
            .map(Agent)
    }
}

async fn apps(State(wx): St, Agent(a): Agent) -> Result<Json<Value>> {
    let u = a.user_id.clone();
    let apps = run!(&wx.db, read, |tx| ops::agent_apps(tx, &u))?;
    Ok(Json(
        json!({"apps": apps.iter().map(|a| a.info()).collect::<Vec<_>>()}),
    ))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ScopeQuery {
    scope: Option<String>,
}

async fn conversations(
    State(wx): St,
    Agent(a): Agent,
    q: std::result::Result<Query<ScopeQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let scope = q.scope.unwrap_or_else(|| "all".into());
    let now = now_ms();
    Ok(Json(run!(&wx.db, read, |tx| ops::list_conversations(
        tx, &a, &scope, now
    ))?))
}

async fn conversation(
    State(wx): St,
    Agent(a): Agent,
    Path(id): Path<String>,
) -> Result<Json<Value>> {
    let now = now_ms();
    Ok(Json(run!(&wx.db, read, |tx| ops::get_conversation(
        tx, &a, &id, now
    ))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    after: Option<i64>,
    limit: Option<i64>,
}

async fn messages(
    State(wx): St,
    Agent(a): Agent,
    Path(id): Path<String>,
    q: std::result::Result<Query<PageQuery>, QueryRejection>,
) -> Result<Json<Value>> {
    let q = query(q)?;
    let (after, limit) = (q.after.unwrap_or(0), q.limit.unwrap_or(100));
    Ok(Json(run!(&wx.db, read, |tx| ops::messages(
        tx, &a, &id, after, limit
    ))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TakeBody {
    #[serde(default)]
    force: bool,
}

async fn take(
    State(wx): St,
    Agent(a): Agent,
    Path(id): Path<String>,
    b: std::result::Result<Json<TakeBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let now = now_ms();
    Ok(Json(run!(&wx.db, write, |tx| ops::take(
        tx, &a, &id, b.force, now
    ))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AssignBody {
    to: Option<String>,
}

async fn assign(
    State(wx): St,
    Agent(a): Agent,
    Path(id): Path<String>,
    b: std::result::Result<Json<AssignBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let now = now_ms();
    Ok(Json(run!(&wx.db, write, |tx| ops::assign(
        tx,
        &a,
        &id,
        b.to.as_deref(),
        now
    ))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ReadBody {
    up_to: i64,
}

async fn read(
    State(wx): St,
    Agent(a): Agent,
    Path(id): Path<String>,
    b: std::result::Result<Json<ReadBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let now = now_ms();
    Ok(Json(run!(&wx.db, write, |tx| ops::read(
        tx, &a, &id, b.up_to, now
    ))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct TypingBody {
    on: bool,
}

async fn typing(
    State(wx): St,
    Agent(a): Agent,
    Path(id): Path<String>,
    b: std::result::Result<Json<TypingBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let now = now_ms();
    let on = b.on;
    let allowed = run!(&wx.db, write, |tx| ops::typing_allowed(
        tx, &a, &id, on, now
    ))?;
    let (sent, errcode) = match allowed {
        Some((app, openid)) => (true, wx.typing(&app, &openid, on).await),
        None => (false, None),
    };
    Ok(Json(json!({"on": on, "sent": sent, "errcode": errcode})))
}

async fn transfer(State(wx): St, Agent(a): Agent, Path(id): Path<String>) -> Result<Json<Value>> {
    let now = now_ms();
    Ok(Json(run!(&wx.db, write, |tx| ops::request_transfer(
        tx, &a, &id, now
    ))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendPart {
    body: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct SendBody {
    idempotency_key: String,
    #[serde(default)]
    seen_inbound_id: Option<i64>,
    parts: Vec<SendPart>,
}

/// Reads a wire body (as `adapters::wechat_mp` encodes it) into a part: one of the four
/// mini-program forms, to the conversation's customer.
fn part(i: usize, text: &str, openid: &str) -> Result<Part> {
    let bad = |m: String| HubError::bad_request(format!("parts[{i}]: {m}"));
    let v: Value = serde_json::from_str(text).map_err(|e| bad(format!("body is not JSON: {e}")))?;
    if v.get("touser").and_then(Value::as_str) != Some(openid) {
        return Err(bad("touser must be the conversation's openid".into()));
    }
    let kind = v
        .get("msgtype")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let field = |o: &str, f: &str| -> Option<String> {
        v.get(o)
            .and_then(|x| x.get(f))
            .and_then(Value::as_str)
            .map(str::to_string)
    };
    let need = |o: &str, f: &str| -> Result<String> {
        field(o, f)
            .filter(|s| !s.is_empty())
            .ok_or_else(|| bad(format!("{o}.{f} is required")))
    };
    let blob_of = |id: &str| -> Result<Option<String>> {
        match id.strip_prefix("sha256:") {
            Some(h) if super::is_sha256(h) => Ok(Some(h.to_string())),
            Some(_) => Err(bad(
                "a sha256: media id needs 64 lowercase hex digits".into()
            )),
            None => Ok(None),
        }
    };
    Ok(match kind.as_str() {
        "text" => Part {
            body: text.into(),
            kind,
            text: Some(need("text", "content")?),
            media_id: None,
            blob: None,
            card: None,
        },
        "image" => {
            let id = need("image", "media_id")?;
            Part {
                body: text.into(),
                kind,
                text: None,
                blob: blob_of(&id)?,
                media_id: Some(id),
                card: None,
            }
        }
        "link" => {
            let card = json!({"title": need("link", "title")?, "description": need("link", "description")?,
                              "url": need("link", "url")?, "thumb_url": need("link", "thumb_url")?});
            Part {
                body: text.into(),
                kind,
                text: None,
                media_id: None,
                blob: None,
                card: Some(card.to_string()),
            }
        }
        "miniprogrampage" => {
            let thumb = need("miniprogrampage", "thumb_media_id")?;
            let card = json!({"title": need("miniprogrampage", "title")?,
                              "pagepath": need("miniprogrampage", "pagepath")?, "thumb_media_id": thumb});
            Part {
                body: text.into(),
                kind,
                text: None,
                blob: blob_of(&thumb)?,
                media_id: Some(thumb),
                card: Some(card.to_string()),
            }
        }
        other => {
            return Err(bad(format!(
                "msgtype {other:?}: a mini program sends text, image, link or miniprogrampage"
            )))
        }
    })
}

async fn send(
    State(wx): St,
    Agent(a): Agent,
    Path(id): Path<String>,
    b: std::result::Result<Json<SendBody>, JsonRejection>,
) -> Result<Json<Value>> {
    let b = body(b)?;
    let key = b.idempotency_key.trim().to_string();
    if key.is_empty() || key.len() > 200 {
        return Err(HubError::bad_request(
            "idempotency_key: 1 to 200 characters",
        ));
    }
    if b.parts.is_empty() || b.parts.len() > 10 {
        return Err(HubError::bad_request("parts: 1 to 10"));
    }
    let (i2, u) = (id.clone(), a.user_id.clone());
    let conv = run!(&wx.db, read, |tx| ops::visible(tx, &u, &i2))?;
    let parts = b
        .parts
        .iter()
        .enumerate()
        .map(|(i, p)| part(i, &p.body, &conv.openid))
        .collect::<Result<Vec<_>>>()?;
    // every referenced blob must be on the hub
    for p in &parts {
        if let Some(h) = &p.blob {
            let h2 = h.clone();
            if run!(&wx.db, read, |tx| ops::blob_head(tx, &h2))?.is_none() {
                return Err(HubError::bad_request(format!(
                    "no blob sha256:{h} on the hub: PUT /v1/wx/blobs/{h} first"
                )));
            }
        }
    }
    if let Some(seen) = b.seen_inbound_id {
        if seen < conv.last_inbound_id {
            tracing::info!(conversation = %id, seen, last = conv.last_inbound_id, "answer sent without the customer's last message seen");
        }
    }
    let now = now_ms();
    let (i2, k2) = (id.clone(), key.clone());
    let rows = run!(&wx.db, write, |tx| ops::reserve(
        tx, &a, &i2, &k2, &parts, now
    ))?;
    wx.kick(&id);
    Ok(Json(json!({ "messages": rows })))
}

async fn put_blob(
    State(wx): St,
    Agent(a): Agent,
    Path(sha): Path<String>,
    headers: HeaderMap,
    bytes: Bytes,
) -> Result<Json<Value>> {
    let u = a.user_id.clone();
    if !run!(&wx.db, read, |tx| ops::is_any_agent(tx, &u))? {
        return Err(HubError::forbidden(
            "only agents of a WeChat app store images",
        ));
    }
    if !super::is_sha256(&sha) {
        return Err(HubError::bad_request(
            "the name is the SHA-256 in 64 lowercase hex digits",
        ));
    }
    if bytes.len() > media::MAX_IMAGE_BYTES {
        return Err(HubError::new(
            "too_large",
            format!("an image is at most {} bytes", media::MAX_IMAGE_BYTES),
        ));
    }
    let declared = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(media::ImageType::from_mime)
        .ok_or_else(|| HubError::bad_request("Content-Type: image/jpeg, image/png or image/gif"))?;
    let sniffed = media::sniff(&bytes)
        .ok_or_else(|| HubError::bad_request("the bytes are not a JPEG, PNG or GIF image"))?;
    if sniffed != declared {
        return Err(HubError::bad_request(format!(
            "the bytes are {}, not {}",
            sniffed.mime(),
            declared.mime()
        )));
    }
    let got = ids::sha256_hex(&bytes);
    if got != sha {
        return Err(HubError::bad_request(format!(
            "the bytes' SHA-256 is {got}, not {sha}"
        )));
    }
    let size = bytes.len();
    let (s, now) = (sha.clone(), now_ms());
    let v = bytes.to_vec();
    run!(&wx.db, write, |tx| ops::blob_put(
        tx,
        &s,
        sniffed.mime(),
        v,
        now
    ))?;
    Ok(Json(
        json!({"sha256": sha, "size": size, "mime": sniffed.mime()}),
    ))
}

async fn get_blob(State(wx): St, Agent(a): Agent, Path(sha): Path<String>) -> Result<Response> {
    let u = a.user_id.clone();
    if !run!(&wx.db, read, |tx| ops::is_any_agent(tx, &u))? {
        return Err(HubError::forbidden(
            "only agents of a WeChat app read images",
        ));
    }
    let s = sha.clone();
    let (mime, bytes) = run!(&wx.db, read, |tx| ops::blob_get(tx, &s))?
        .ok_or_else(|| HubError::not_found(format!("no blob {sha}")))?;
    Ok((
        StatusCode::OK,
        [
            (header::CONTENT_TYPE, mime),
            (
                header::CACHE_CONTROL,
                "private, max-age=31536000, immutable".into(),
            ),
        ],
        bytes,
    )
        .into_response())
}

/// The agent API and the push endpoint, for the hub's main listener.
pub fn routes<S>(wx: Arc<Wx>) -> Router<S> {
    Router::new()
        .route("/v1/wx/apps", get(apps))
        .route("/v1/wx/conversations", get(conversations))
        .route("/v1/wx/conversations/{id}", get(conversation))
        .route("/v1/wx/conversations/{id}/messages", get(messages))
        .route("/v1/wx/conversations/{id}/take", post(take))
        .route("/v1/wx/conversations/{id}/assign", post(assign))
        .route("/v1/wx/conversations/{id}/read", post(read))
        .route("/v1/wx/conversations/{id}/typing", post(typing))
        .route("/v1/wx/conversations/{id}/transfer", post(transfer))
        .route("/v1/wx/conversations/{id}/send", post(send))
        .route("/v1/wx/blobs/{sha}", get(get_blob).put(put_blob))
        .merge(push_routes())
        .with_state(wx)
}

/// Only WeChat's side: `/wx/mp/{NAME}` and `/wx/health` (also the `--wx-listen` listener).
pub fn push_routes() -> Router<Arc<Wx>> {
    Router::new()
        .route(
            "/wx/mp/{name}",
            get(super::push::handle).post(super::push::handle),
        )
        .route("/wx/health", get(super::push::health))
}
