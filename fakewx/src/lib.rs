//! `quiver-fakewx`: a stateful fake WeChat for Quiver's tests, on 127.0.0.1 only.
//!
//! One process plays both sides of WeChat that a mini program's server meets:
//! - the **API** (`/cgi-bin/...`): stable and classic access tokens with invalidation,
//!   `message/custom/send` with the mini-program body rules, OpenID checks, media checks and the
//!   customer-service quota, typing, temporary media upload and get with the 3-day expiry;
//! - the **pusher** (`POST /__fake/push`): builds a customer's push in the app's format and mode,
//!   signs it, POSTs it to the server under test with WeChat's deadline and retries (3 tries), and
//!   judges the answer as WeChat does (`success` / empty, a transfer reply, or "the service failed").
//!
//! Control endpoints (`/__fake/...`) register apps, inject failures (an errcode, a delay after the
//! request was read, a connection dropped after the request was read), invalidate tokens, move
//! the fake's clock, expire media, choose the quota reading, and return the recorded API calls.
//! The interface is written down in `fakewx/README.md`.
//!
//! It follows the documented formats and error codes of `shared/platform-spec.md` §4 and uses the
//! core's signature and AES code (checked against WeChat's published vectors in `quiver-shared`)
//! to sign and encrypt, so a push it sends is one WeChat would send.
//!
//! It is a test tool: nothing in Quiver's defaults points at it, and it binds loopback only.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Multipart, Path, Query, State};
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, get, post};
use axum::{Json, Router};
use base64::engine::general_purpose::STANDARD as B64;
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use quiver_shared::wechat::crypto::{self, AesKey};

mod push;
mod quota;

pub use push::{PushRequest, PushResult};

const MINUTE_MS: i64 = 60_000;
const DAY_MS: i64 = 24 * 60 * MINUTE_MS;
/// A temporary media id lives 3 days (platform-spec §4.9).
pub const MEDIA_LIFETIME_MS: i64 = 3 * DAY_MS;
/// Stable tokens are pre-rotated 5 minutes before expiry, and a replaced token stays valid 5
/// minutes (platform-spec §4.10).
const TOKEN_GRACE_MS: i64 = 5 * MINUTE_MS;

/// One registered mini program.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppConfig {
    pub appid: String,
    pub secret: String,
    /// The push Token (signatures).
    pub token: String,
    /// The EncodingAESKey (43 characters); required for `compat` and `safe`.
    #[serde(default)]
    pub aes_key: Option<String>,
    /// `plain`, `compat` or `safe`.
    pub mode: String,
    /// `xml` or `json`.
    pub format: String,
    /// Where pushes go (the gateway's `/wx/mp/NAME`).
    pub push_url: String,
    /// The mini program's original id, `ToUserName` of its pushes.
    #[serde(default = "default_original_id")]
    pub original_id: String,
    /// Seconds a new token lives (WeChat: 7200).
    #[serde(default = "default_expires_in")]
    pub token_expires_in: i64,
}

fn default_original_id() -> String {
    "gh_fake0000001".into()
}

fn default_expires_in() -> i64 {
    7200
}

#[derive(Debug, Clone)]
struct TokenInfo {
    appid: String,
    expires_at_ms: i64,
    /// `false` once invalidated (a force refresh, or the control endpoint).
    valid: bool,
    stable: bool,
}

#[derive(Debug, Clone)]
struct Media {
    appid: String,
    bytes: Bytes,
    mime: String,
    created_ms: i64,
    /// Set by `/__fake/expire_media`.
    expired: bool,
    /// Uploaded by the server (as opposed to sent by a customer).
    outbound: bool,
}

/// A recorded API call.
#[derive(Debug, Clone, Serialize)]
pub struct Call {
    pub method: String,
    pub path: String,
    pub query: String,
    pub body: String,
    /// HTTP status answered, `null` when the connection was dropped.
    pub status: Option<u16>,
    pub response: String,
    pub at_ms: i64,
}

#[derive(Debug, Clone)]
enum Injected {
    Errcode(i64),
    Delay(u64),
    Drop,
}

#[derive(Debug, Clone)]
struct Injection {
    path: String,
    remaining: u32,
    what: Injected,
}

/// How the quota reads "counts do not add up" (platform-spec §4.7, research §4.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reading {
    /// Each action resets the count to its own maximum (the core's reading).
    Own,
    /// Each action resets the count to the largest maximum among the actions whose window is
    /// still open.
    Larger,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Stats {
    pub stable_token_calls: u64,
    pub token_calls: u64,
    pub sends_ok: u64,
    pub sends_refused: u64,
    pub uploads: u64,
    pub media_gets: u64,
    pub typing_calls: u64,
    pub pushes: u64,
    pub push_attempts: u64,
}

#[derive(Debug, Default)]
struct User {
    /// (at_ms, is_message): customer actions, from the pushes' CreateTime.
    actions: Vec<(i64, bool)>,
    /// Times of accepted sends.
    sends: Vec<i64>,
    typing_until_ms: i64,
}

struct Inner {
    offset_ms: i64,
    apps: HashMap<String, AppConfig>,
    tokens: HashMap<String, TokenInfo>,
    /// appid -> the current stable token.
    stable: HashMap<String, String>,
    /// appid -> times of force refreshes.
    forced: HashMap<String, Vec<i64>>,
    media: HashMap<String, Media>,
    users: HashMap<(String, String), User>,
    calls: Vec<Call>,
    injections: Vec<Injection>,
    reading: Reading,
    stats: Stats,
    seq: u64,
}

/// The fake's shared state.
pub struct Fake {
    inner: Mutex<Inner>,
    http: reqwest::Client,
    /// The fake's own address (for `PicUrl`s).
    base: Mutex<String>,
}

impl std::fmt::Debug for Fake {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Fake")
    }
}

type St = State<Arc<Fake>>;

fn real_now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

impl Inner {
    fn now_ms(&self) -> i64 {
        real_now_ms() + self.offset_ms
    }

    /// A fresh, unguessable-enough id (a test tool: SHA-256 of a counter and the time).
    fn fresh(&mut self, prefix: &str, len: usize) -> String {
        self.seq += 1;
        let mut h = Sha256::new();
        h.update(self.seq.to_le_bytes());
        h.update(real_now_ms().to_le_bytes());
        h.update(prefix.as_bytes());
        let hex: String = h.finalize().iter().map(|b| format!("{b:02x}")).collect();
        format!("{prefix}{}", &hex[..len.min(hex.len())])
    }

    fn random16(&mut self) -> [u8; 16] {
        self.seq += 1;
        let mut h = Sha256::new();
        h.update(self.seq.to_le_bytes());
        h.update(real_now_ms().to_le_bytes());
        let d = h.finalize();
        let mut r = [0u8; 16];
        r.copy_from_slice(&d[..16]);
        r
    }

    fn mint_token(&mut self, appid: &str, stable: bool, expires_in: i64) -> String {
        let t = self.fresh(if stable { "STK_" } else { "TK_" }, 48);
        let now = self.now_ms();
        self.tokens.insert(
            t.clone(),
            TokenInfo {
                appid: appid.to_string(),
                expires_at_ms: now + expires_in * 1000,
                valid: true,
                stable,
            },
        );
        t
    }

    /// `Ok(appid)` or the errcode: 40001 unknown or invalidated, 42001 expired.
    fn check_token(&self, token: Option<&str>) -> Result<String, i64> {
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(41001);
        };
        match self.tokens.get(token) {
            None => Err(40001),
            Some(t) if !t.valid => Err(40001),
            Some(t) if self.now_ms() >= t.expires_at_ms => Err(42001),
            Some(t) => Ok(t.appid.clone()),
        }
    }

    fn take_injection(&mut self, path: &str) -> Option<Injected> {
        let i = self
            .injections
            .iter()
            .position(|i| i.path == path && i.remaining > 0)?;
        let inj = &mut self.injections[i];
        inj.remaining -= 1;
        let what = inj.what.clone();
        if inj.remaining == 0 {
            self.injections.remove(i);
        }
        Some(what)
    }

    fn last_interaction_ms(&self, key: &(String, String)) -> Option<i64> {
        let u = self.users.get(key)?;
        let a = u.actions.iter().map(|(t, _)| *t).max();
        let s = u.sends.iter().copied().max();
        a.max(s)
    }
}

fn wx_error(errcode: i64) -> Value {
    json!({ "errcode": errcode, "errmsg": format!("{} rid: fake-{errcode}", errmsg(errcode)) })
}

fn errmsg(errcode: i64) -> &'static str {
    quiver_shared::wechat::api::errmsg(errcode).unwrap_or(match errcode {
        40125 => "invalid appsecret",
        45009 => "reach max api daily quota limit",
        41001 => "access_token missing",
        47001 => "data format error",
        44002 => "empty post data",
        40006 => "invalid meida size",
        _ => "error",
    })
}

fn ok_json(v: Value) -> Response {
    (StatusCode::OK, Json(v)).into_response()
}

fn query_get<'a>(q: &'a HashMap<String, String>, k: &str) -> Option<&'a str> {
    q.get(k).map(String::as_str)
}

/// Installs ring as rustls's process-wide crypto provider, unless one is installed already.
/// Only needed when reqwest was built with rustls (a workspace build, where its features are
/// the daemon's and the hub's too); harmless otherwise. The fake itself speaks plain HTTP.
/// (rustls deprecates ring's provider for lacking post-quantum key exchange; ring is the
/// project's choice, `quiver_hub::tls::provider`.)
#[allow(deprecated)]
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

impl Fake {
    pub fn new() -> Arc<Fake> {
        install_crypto_provider();
        Arc::new(Fake {
            inner: Mutex::new(Inner {
                offset_ms: 0,
                apps: HashMap::new(),
                tokens: HashMap::new(),
                stable: HashMap::new(),
                forced: HashMap::new(),
                media: HashMap::new(),
                users: HashMap::new(),
                calls: Vec::new(),
                injections: Vec::new(),
                reading: Reading::Own,
                stats: Stats::default(),
                seq: 0,
            }),
            http: reqwest::Client::builder()
                .no_proxy()
                .build()
                .expect("an HTTP client without TLS builds"),
            base: Mutex::new(String::new()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn record(&self, method: &Method, uri: &Uri, body: String, status: Option<u16>, resp: String) {
        let mut g = self.lock();
        let at_ms = g.now_ms();
        g.calls.push(Call {
            method: method.to_string(),
            path: uri.path().to_string(),
            query: uri.query().unwrap_or("").to_string(),
            body,
            status,
            response: resp,
            at_ms,
        });
    }
}

/// What an API handler decided: a JSON answer, or raw bytes (media/get).
enum Answer {
    Json(Value),
    Bytes { mime: String, bytes: Bytes },
}

/// Applies an injection and records the call around an API handler.
async fn api_call(
    fake: &Arc<Fake>,
    method: Method,
    uri: Uri,
    body_text: String,
    run: impl FnOnce(&mut Inner) -> Answer,
) -> Response {
    let path = uri.path().to_string();
    let injected = fake.lock().take_injection(&path);
    if let Some(Injected::Errcode(code)) = injected {
        let v = wx_error(code);
        fake.record(&method, &uri, body_text, Some(200), v.to_string());
        return ok_json(v);
    }
    // The request was read: WeChat acts on it whatever happens to the answer.
    let answer = {
        let mut g = fake.lock();
        run(&mut g)
    };
    let (resp, text) = match answer {
        Answer::Json(v) => {
            let t = v.to_string();
            (ok_json(v), t)
        }
        Answer::Bytes { mime, bytes } => {
            let t = format!("<{} bytes of {mime}>", bytes.len());
            (
                (
                    StatusCode::OK,
                    [
                        (header::CONTENT_TYPE, mime),
                        (
                            header::CONTENT_DISPOSITION,
                            "attachment; filename=\"media.jpg\"".to_string(),
                        ),
                    ],
                    bytes,
                )
                    .into_response(),
                t,
            )
        }
    };
    match injected {
        Some(Injected::Delay(ms)) => {
            fake.record(&method, &uri, body_text, Some(200), text);
            tokio::time::sleep(Duration::from_millis(ms)).await;
            resp
        }
        Some(Injected::Drop) => {
            fake.record(&method, &uri, body_text, None, String::new());
            // Headers go out, then the body fails: the connection is closed mid-answer, after
            // WeChat acted on the request.
            let failing = futures_util::stream::once(async {
                Err::<Bytes, std::io::Error>(std::io::Error::other("dropped by the fake"))
            });
            Response::builder()
                .status(StatusCode::OK)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from_stream(failing))
                .unwrap_or_else(|_| StatusCode::INTERNAL_SERVER_ERROR.into_response())
        }
        _ => {
            fake.record(&method, &uri, body_text, Some(200), text);
            resp
        }
    }
}

#[derive(Deserialize)]
struct StableTokenReq {
    grant_type: Option<String>,
    appid: Option<String>,
    secret: Option<String>,
    #[serde(default)]
    force_refresh: bool,
}

async fn stable_token(State(fake): St, method: Method, uri: Uri, body: Bytes) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    let recorded = redact_secret(&text);
    api_call(&fake, method, uri, recorded, move |g| {
        g.stats.stable_token_calls += 1;
        let Ok(req) = serde_json::from_str::<StableTokenReq>(&text) else {
            return Answer::Json(wx_error(47001));
        };
        if req.grant_type.as_deref() != Some("client_credential") {
            return Answer::Json(wx_error(40002));
        }
        let appid = req.appid.unwrap_or_default();
        let Some(app) = g.apps.get(&appid).cloned() else {
            return Answer::Json(wx_error(40013));
        };
        if req.secret.as_deref() != Some(app.secret.as_str()) {
            return Answer::Json(wx_error(40125));
        }
        let now = g.now_ms();
        if req.force_refresh {
            let log = g.forced.entry(appid.clone()).or_default();
            log.retain(|t| now - t < DAY_MS);
            if log.len() >= 20 || log.last().is_some_and(|t| now - t < 30_000) {
                return Answer::Json(wx_error(45009));
            }
            log.push(now);
            if let Some(old) = g.stable.remove(&appid) {
                if let Some(t) = g.tokens.get_mut(&old) {
                    t.valid = false;
                }
            }
        }
        let current = g.stable.get(&appid).cloned().and_then(|t| {
            let info = g.tokens.get(&t)?;
            (info.valid && info.expires_at_ms - now > TOKEN_GRACE_MS)
                .then_some((t, info.expires_at_ms))
        });
        let (token, expires_at) = match current {
            Some(c) => c,
            None => {
                // Pre-rotation: the old token stays valid for the grace period.
                if let Some(old) = g.stable.get(&appid).cloned() {
                    if let Some(t) = g.tokens.get_mut(&old) {
                        t.expires_at_ms = t.expires_at_ms.min(now + TOKEN_GRACE_MS);
                    }
                }
                let t = g.mint_token(&appid, true, app.token_expires_in);
                g.stable.insert(appid.clone(), t.clone());
                let exp = g.tokens[&t].expires_at_ms;
                (t, exp)
            }
        };
        Answer::Json(json!({"access_token": token, "expires_in": (expires_at - now) / 1000}))
    })
    .await
}

fn redact_secret(text: &str) -> String {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(mut m)) => {
            if m.contains_key("secret") {
                m.insert("secret".into(), json!("<redacted>"));
            }
            Value::Object(m).to_string()
        }
        _ => text.to_string(),
    }
}

async fn classic_token(
    State(fake): St,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    api_call(&fake, method, uri, String::new(), move |g| {
        g.stats.token_calls += 1;
        if query_get(&q, "grant_type") != Some("client_credential") {
            return Answer::Json(wx_error(40002));
        }
        let appid = query_get(&q, "appid").unwrap_or_default().to_string();
        let Some(app) = g.apps.get(&appid).cloned() else {
            return Answer::Json(wx_error(40013));
        };
        if query_get(&q, "secret") != Some(app.secret.as_str()) {
            return Answer::Json(wx_error(40125));
        }
        // Each call replaces the previous classic token, which survives 5 minutes.
        let now = g.now_ms();
        for t in g.tokens.values_mut() {
            if t.appid == appid && !t.stable {
                t.expires_at_ms = t.expires_at_ms.min(now + TOKEN_GRACE_MS);
            }
        }
        let t = g.mint_token(&appid, false, app.token_expires_in);
        Answer::Json(json!({"access_token": t, "expires_in": app.token_expires_in}))
    })
    .await
}

/// `message/custom/send`: the four mini-program forms (platform-spec §4.6).
fn check_send(g: &mut Inner, appid: &str, body: &str) -> Result<(String, String), i64> {
    let v: Value = serde_json::from_str(body).map_err(|_| 47001)?;
    let touser = v.get("touser").and_then(Value::as_str).unwrap_or("");
    if touser.is_empty() {
        return Err(40003);
    }
    let msgtype = v.get("msgtype").and_then(Value::as_str).unwrap_or("");
    let obj = v.get(msgtype);
    let field = |name: &str| -> Result<String, i64> {
        obj.and_then(|o| o.get(name))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .ok_or(47001)
    };
    let media = match msgtype {
        "text" => {
            field("content")?;
            None
        }
        "image" => Some(field("media_id")?),
        "link" => {
            for f in ["title", "description", "url", "thumb_url"] {
                field(f)?;
            }
            None
        }
        "miniprogrampage" => {
            field("title")?;
            field("pagepath")?;
            Some(field("thumb_media_id")?)
        }
        _ => return Err(40008),
    };
    let key = (appid.to_string(), touser.to_string());
    if !g.users.contains_key(&key) {
        return Err(40003);
    }
    if let Some(m) = media {
        let now = g.now_ms();
        let ok = g.media.get(&m).is_some_and(|x| {
            x.appid == appid && !x.expired && now - x.created_ms < MEDIA_LIFETIME_MS
        });
        if !ok {
            return Err(40007);
        }
    }
    Ok((touser.to_string(), msgtype.to_string()))
}

async fn custom_send(
    State(fake): St,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    api_call(&fake, method, uri, text.clone(), move |g| {
        let appid = match g.check_token(query_get(&q, "access_token")) {
            Ok(a) => a,
            Err(e) => {
                g.stats.sends_refused += 1;
                return Answer::Json(wx_error(e));
            }
        };
        let (touser, _) = match check_send(g, &appid, &text) {
            Ok(x) => x,
            Err(e) => {
                g.stats.sends_refused += 1;
                return Answer::Json(wx_error(e));
            }
        };
        let now = g.now_ms();
        let reading = g.reading;
        let user = g.users.entry((appid, touser)).or_default();
        if let Err(code) = quota::check(reading, &user.actions, &user.sends, now) {
            g.stats.sends_refused += 1;
            return Answer::Json(wx_error(code));
        }
        user.sends.push(now);
        // A message cancels typing.
        user.typing_until_ms = 0;
        g.stats.sends_ok += 1;
        Answer::Json(json!({"errcode": 0, "errmsg": "ok"}))
    })
    .await
}

async fn typing(
    State(fake): St,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    body: Bytes,
) -> Response {
    let text = String::from_utf8_lossy(&body).into_owned();
    api_call(&fake, method, uri, text.clone(), move |g| {
        g.stats.typing_calls += 1;
        let appid = match g.check_token(query_get(&q, "access_token")) {
            Ok(a) => a,
            Err(e) => return Answer::Json(wx_error(e)),
        };
        let Ok(v) = serde_json::from_str::<Value>(&text) else {
            return Answer::Json(wx_error(47001));
        };
        let touser = v
            .get("touser")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string();
        let command = v.get("command").and_then(Value::as_str).unwrap_or("");
        let key = (appid, touser);
        if !g.users.contains_key(&key) {
            return Answer::Json(wx_error(40003));
        }
        let now = g.now_ms();
        match command {
            "Typing" => {
                if g.last_interaction_ms(&key).is_none_or(|t| now - t > 30_000) {
                    return Answer::Json(wx_error(45080));
                }
                let u = g.users.get_mut(&key).expect("checked above");
                if u.typing_until_ms > now {
                    return Answer::Json(wx_error(45081));
                }
                u.typing_until_ms = now + 15_000;
            }
            "CancelTyping" => {
                if let Some(u) = g.users.get_mut(&key) {
                    u.typing_until_ms = 0;
                }
            }
            _ => return Answer::Json(wx_error(45072)),
        }
        Answer::Json(json!({"errcode": 0, "errmsg": "ok"}))
    })
    .await
}

/// The image kinds WeChat takes, by their first bytes.
fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}

const UPLOAD_LIMIT: usize = 10 * 1024 * 1024;

async fn upload(
    State(fake): St,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
    mut multipart: Multipart,
) -> Response {
    let mut file: Option<(Bytes, Option<String>)> = None;
    let mut bad = false;
    loop {
        match multipart.next_field().await {
            Ok(Some(f)) => {
                if f.name() == Some("media") {
                    let filename = f.file_name().map(str::to_string);
                    match f.bytes().await {
                        Ok(b) => file = Some((b, filename)),
                        Err(_) => bad = true,
                    }
                }
            }
            Ok(None) => break,
            Err(_) => {
                bad = true;
                break;
            }
        }
    }
    let summary = match &file {
        Some((b, name)) => format!(
            "multipart media: filename={:?} size={} sha256={}",
            name.as_deref().unwrap_or(""),
            b.len(),
            hex_sha256(b)
        ),
        None => "multipart without a media field".into(),
    };
    api_call(&fake, method, uri, summary, move |g| {
        g.stats.uploads += 1;
        let appid = match g.check_token(query_get(&q, "access_token")) {
            Ok(a) => a,
            Err(e) => return Answer::Json(wx_error(e)),
        };
        if query_get(&q, "type") != Some("image") {
            return Answer::Json(wx_error(40004));
        }
        let Some((bytes, _)) = file.filter(|_| !bad) else {
            return Answer::Json(wx_error(41005));
        };
        if bytes.is_empty() || bytes.len() > UPLOAD_LIMIT {
            return Answer::Json(wx_error(40006));
        }
        let Some(mime) = sniff(&bytes) else {
            return Answer::Json(wx_error(40005));
        };
        let id = g.fresh("MEDIA_", 40);
        let now = g.now_ms();
        g.media.insert(
            id.clone(),
            Media {
                appid,
                bytes,
                mime: mime.into(),
                created_ms: now,
                expired: false,
                outbound: true,
            },
        );
        Answer::Json(json!({"type": "image", "media_id": id, "created_at": now / 1000}))
    })
    .await
}

async fn media_get(
    State(fake): St,
    method: Method,
    uri: Uri,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    api_call(&fake, method, uri, String::new(), move |g| {
        g.stats.media_gets += 1;
        let appid = match g.check_token(query_get(&q, "access_token")) {
            Ok(a) => a,
            Err(e) => return Answer::Json(wx_error(e)),
        };
        let now = g.now_ms();
        match query_get(&q, "media_id").and_then(|id| g.media.get(id)) {
            Some(m) if m.appid == appid && !m.expired && now - m.created_ms < MEDIA_LIFETIME_MS => {
                Answer::Bytes {
                    mime: m.mime.clone(),
                    bytes: m.bytes.clone(),
                }
            }
            _ => Answer::Json(wx_error(40007)),
        }
    })
    .await
}

async fn callback_ip(State(fake): St, method: Method, uri: Uri) -> Response {
    api_call(&fake, method, uri, String::new(), |_| {
        Answer::Json(json!({"ip_list": ["127.0.0.1"]}))
    })
    .await
}

/// The customer's picture behind a push's `PicUrl`.
async fn pic(State(fake): St, Path(id): Path<String>) -> Response {
    let g = fake.lock();
    match g.media.get(&id) {
        Some(m) if !m.outbound => {
            ([(header::CONTENT_TYPE, m.mime.clone())], m.bytes.clone()).into_response()
        }
        _ => StatusCode::NOT_FOUND.into_response(),
    }
}

fn hex_sha256(b: &[u8]) -> String {
    Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

// ---- control ----

/// A JSON body whatever its `Content-Type` says (the control API is for test scripts).
struct J<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for J<T> {
    type Rejection = Response;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(IntoResponse::into_response)?;
        serde_json::from_slice(&bytes)
            .map(J)
            .map_err(|e| bad(format!("body: {e}")))
    }
}

fn bad(msg: impl Into<String>) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": msg.into()}))).into_response()
}

async fn put_app(State(fake): St, body: Bytes) -> Response {
    let app: AppConfig = match serde_json::from_slice(&body) {
        Ok(a) => a,
        Err(e) => return bad(format!("app: {e}")),
    };
    if !matches!(app.mode.as_str(), "plain" | "compat" | "safe") {
        return bad(format!("mode {:?}: plain, compat or safe", app.mode));
    }
    if !matches!(app.format.as_str(), "xml" | "json") {
        return bad(format!("format {:?}: xml or json", app.format));
    }
    if app.mode != "plain" {
        match app.aes_key.as_deref().map(AesKey::from_encoding_aes_key) {
            Some(Ok(_)) => {}
            Some(Err(e)) => return bad(format!("aes_key: {e}")),
            None => return bad(format!("mode {} needs aes_key", app.mode)),
        }
    }
    fake.lock().apps.insert(app.appid.clone(), app);
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct InjectReq {
    path: String,
    #[serde(default = "one")]
    count: u32,
    errcode: Option<i64>,
    delay_ms: Option<u64>,
    #[serde(default)]
    drop: bool,
}

fn one() -> u32 {
    1
}

async fn inject(State(fake): St, body: Bytes) -> Response {
    let r: InjectReq = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("inject: {e}")),
    };
    let what = match (r.errcode, r.delay_ms, r.drop) {
        (Some(c), None, false) => Injected::Errcode(c),
        (None, Some(ms), false) => Injected::Delay(ms),
        (None, None, true) => Injected::Drop,
        _ => return bad("inject: exactly one of errcode, delay_ms, drop"),
    };
    fake.lock().injections.push(Injection {
        path: r.path,
        remaining: r.count,
        what,
    });
    Json(json!({})).into_response()
}

#[derive(Deserialize)]
struct AppidReq {
    appid: String,
}

async fn invalidate_token(State(fake): St, J(r): J<AppidReq>) -> Response {
    let mut g = fake.lock();
    let mut n = 0;
    for t in g.tokens.values_mut() {
        if t.appid == r.appid && t.valid {
            t.valid = false;
            n += 1;
        }
    }
    g.stable.remove(&r.appid);
    Json(json!({"invalidated": n})).into_response()
}

#[derive(Deserialize)]
struct ClockReq {
    advance_ms: i64,
}

async fn clock(State(fake): St, J(r): J<ClockReq>) -> Response {
    let mut g = fake.lock();
    g.offset_ms += r.advance_ms;
    let now = g.now_ms();
    Json(json!({"now_ms": now})).into_response()
}

#[derive(Deserialize)]
struct ExpireReq {
    media_id: Option<String>,
}

async fn expire_media(State(fake): St, J(r): J<ExpireReq>) -> Response {
    let mut g = fake.lock();
    let mut n = 0;
    for (id, m) in g.media.iter_mut() {
        let hit = match &r.media_id {
            Some(x) => x == id,
            None => m.outbound,
        };
        if hit && !m.expired {
            m.expired = true;
            n += 1;
        }
    }
    Json(json!({"expired": n})).into_response()
}

#[derive(Deserialize)]
struct ReadingReq {
    reading: Reading,
}

async fn quota_reading(State(fake): St, J(r): J<ReadingReq>) -> Response {
    fake.lock().reading = r.reading;
    Json(json!({})).into_response()
}

async fn calls(State(fake): St, Query(q): Query<HashMap<String, String>>) -> Response {
    let g = fake.lock();
    let list: Vec<&Call> = g
        .calls
        .iter()
        .filter(|c| q.get("path").is_none_or(|p| &c.path == p))
        .collect();
    Json(json!(list)).into_response()
}

async fn clear_calls(State(fake): St) -> Response {
    fake.lock().calls.clear();
    Json(json!({})).into_response()
}

async fn stats(State(fake): St) -> Response {
    let g = fake.lock();
    let now = g.now_ms();
    let mut v = serde_json::to_value(&g.stats).unwrap_or_default();
    v["now_ms"] = json!(now);
    Json(v).into_response()
}

async fn uploaded(State(fake): St, Path(id): Path<String>) -> Response {
    let g = fake.lock();
    match g.media.get(&id) {
        Some(m) => ([(header::CONTENT_TYPE, m.mime.clone())], m.bytes.clone()).into_response(),
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn do_push(State(fake): St, body: Bytes) -> Response {
    let req: PushRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => return bad(format!("push: {e}")),
    };
    match push::run(&fake, req).await {
        Ok(r) => Json(r).into_response(),
        Err(e) => bad(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct VerifyReq {
    appid: String,
    echostr: Option<String>,
    tamper: Option<String>,
}

async fn verify(State(fake): St, J(r): J<VerifyReq>) -> Response {
    let (app, nonce) = {
        let mut g = fake.lock();
        let Some(app) = g.apps.get(&r.appid).cloned() else {
            return bad(format!("unknown appid {}", r.appid));
        };
        let n = g.fresh("", 10);
        (app, n)
    };
    let ts = (real_now_ms() / 1000).to_string();
    let mut sig = crypto::url_signature(&app.token, &ts, &nonce);
    if r.tamper.as_deref() == Some("signature") {
        sig = push::tamper_hex(&sig);
    }
    let echostr = r.echostr.unwrap_or_else(|| "echo-1234567890".into());
    let res = fake
        .http
        .get(&app.push_url)
        .query(&[
            ("signature", sig.as_str()),
            ("timestamp", &ts),
            ("nonce", &nonce),
            ("echostr", &echostr),
        ])
        .timeout(Duration::from_secs(5))
        .send()
        .await;
    match res {
        Ok(r) => {
            let status = r.status().as_u16();
            let body = r.text().await.unwrap_or_default();
            Json(json!({"status": status, "body": body, "echostr": echostr})).into_response()
        }
        Err(e) => Json(json!({"status": null, "body": "", "error": e.to_string()})).into_response(),
    }
}

async fn not_found(method: Method, uri: Uri, _h: HeaderMap) -> Response {
    (
        StatusCode::NOT_FOUND,
        Json(json!({"errcode": 404, "errmsg": format!("the fake has no {method} {}", uri.path())})),
    )
        .into_response()
}

/// The fake's routes.
pub fn router(fake: Arc<Fake>) -> Router {
    Router::new()
        .route("/cgi-bin/stable_token", post(stable_token))
        .route("/cgi-bin/token", get(classic_token))
        .route("/cgi-bin/message/custom/send", post(custom_send))
        .route("/cgi-bin/message/custom/business/typing", post(typing))
        .route("/cgi-bin/message/custom/typing", post(typing))
        .route("/cgi-bin/media/upload", post(upload))
        .route("/cgi-bin/media/get", get(media_get))
        .route("/cgi-bin/getcallbackip", get(callback_ip))
        .route("/__fake/pic/{id}", get(pic))
        .route("/__fake/apps", post(put_app))
        .route("/__fake/push", post(do_push))
        .route("/__fake/verify", post(verify))
        .route("/__fake/calls", get(calls).delete(clear_calls))
        .route("/__fake/inject", post(inject))
        .route("/__fake/invalidate_token", post(invalidate_token))
        .route("/__fake/clock", post(clock))
        .route("/__fake/expire_media", post(expire_media))
        .route("/__fake/quota_reading", post(quota_reading))
        .route("/__fake/media/{id}", get(uploaded))
        .route("/__fake/stats", get(stats))
        .fallback(any(not_found))
        .layer(axum::extract::DefaultBodyLimit::max(
            UPLOAD_LIMIT + 64 * 1024,
        ))
        .with_state(fake)
}

/// Serves the fake on `listener` until the process ends.
pub async fn serve(listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let addr: SocketAddr = listener.local_addr()?;
    let fake = Fake::new();
    *fake.base.lock().unwrap_or_else(|p| p.into_inner()) = format!("http://{addr}");
    axum::serve(listener, router(fake)).await
}

/// Time since `start` in whole milliseconds.
fn ms_since(start: Instant) -> u64 {
    start.elapsed().as_millis() as u64
}
