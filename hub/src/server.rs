//! `quiver hub serve`: the HTTP API of `docs/sync.md` on axum, over TLS (rustls, ring) or, on a
//! loopback address only, plain HTTP. Requests are limited to 4 MiB and 30 s (an SSE stream's
//! body is not: it lives until the client leaves, the token is revoked or the hub stops);
//! replies are gzipped for clients that accept it (not the event stream).
//! SIGTERM or SIGINT stops the hub gracefully: streams end, requests in flight finish.

use std::collections::{HashMap, VecDeque};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{FromRequestParts, Path as UrlPath, Query, State};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use quiver_shared::sync::wire::*;
use serde::Deserialize;
use tokio::sync::{broadcast, watch};

use crate::config::{Database, HubConfig};
use crate::error::{HubError, Result};
use crate::extract::{body, query};
use crate::ids::{self, now_ms};
use crate::ops::{self, Actor, Who};
use crate::pokes::{Bus, Note};
use crate::store::Db;

/// The largest request body.
pub use crate::extract::BODY_LIMIT;
/// How long a request may take (not an SSE stream's body).
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

/// What every handler shares.
#[derive(Debug)]
pub struct App {
    pub db: Db,
    pub hub_id: String,
    /// The invites' `quiver+<base_url>/join#...` and the fingerprint they carry.
    pub base_url: String,
    pub fingerprint: Option<String>,
    pub bus: Bus,
    pub heartbeat: Duration,
    pub stop: watch::Receiver<bool>,
    /// The WeChat gateway (`crate::wx`).
    pub wx: Arc<crate::wx::Wx>,
}

type St = State<Arc<App>>;

/// The authenticated device (`Authorization: Bearer TOKEN`).
struct Auth(Actor);

impl FromRequestParts<Arc<App>> for Auth {
    type Rejection = HubError;

    async fn from_request_parts(
        parts: &mut Parts,
        app: &Arc<App>,
    ) -> std::result::Result<Auth, HubError> {
        crate::extract::device(&app.db, &parts.headers)
            .await
            .map(Auth)
    }
}

async fn health(State(app): St) -> Json<Health> {
    Json(Health {
        ok: true,
        hub_id: app.hub_id.clone(),
    })
}

async fn join(
    State(app): St,
    req: std::result::Result<Json<JoinRequest>, JsonRejection>,
) -> Result<Json<Me>> {
    let req = body(req)?;
    let token = ids::token();
    let hub_id = app.hub_id.clone();
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::join(
        tx, &hub_id, &req, &token, now
    ))?))
}

async fn me(State(app): St, Auth(a): Auth) -> Result<Json<Me>> {
    let hub_id = app.hub_id.clone();
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::me(
        tx, &hub_id, &a, now
    ))?))
}

async fn push(
    State(app): St,
    Auth(a): Auth,
    UrlPath(lib): UrlPath<String>,
    req: std::result::Result<Json<PushRequest>, JsonRejection>,
) -> Result<Json<PushReply>> {
    let req = body(req)?;
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::push(
        tx, &a, &lib, &req, now
    ))?))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ChangesQuery {
    epoch: String,
    #[serde(default)]
    after: i64,
    limit: Option<i64>,
}

async fn changes(
    State(app): St,
    Auth(a): Auth,
    UrlPath(lib): UrlPath<String>,
    q: std::result::Result<Query<ChangesQuery>, QueryRejection>,
) -> Result<Json<ChangesPage>> {
    let q = query(q)?;
    let limit = q.limit.unwrap_or(quiver_shared::sync::MAX_PAGE as i64);
    Ok(Json(run!(&app.db, read, |tx| ops::changes(
        tx, &a, &lib, &q.epoch, q.after, limit
    ))?))
}

async fn digest(
    State(app): St,
    Auth(a): Auth,
    UrlPath(lib): UrlPath<String>,
) -> Result<Json<DigestReply>> {
    let who = Who::Device(a);
    Ok(Json(run!(&app.db, read, |tx| ops::digest(tx, &who, &lib))?))
}

async fn template_revisions(
    State(app): St,
    Auth(a): Auth,
    UrlPath((lib, id)): UrlPath<(String, String)>,
) -> Result<Json<RevisionsReply>> {
    let who = Who::Device(a);
    Ok(Json(run!(&app.db, read, |tx| ops::revisions(
        tx,
        &who,
        &lib,
        Some(&id)
    ))?))
}

async fn proposals(
    State(app): St,
    Auth(a): Auth,
    UrlPath(lib): UrlPath<String>,
) -> Result<Json<RevisionsReply>> {
    let who = Who::Device(a);
    Ok(Json(run!(&app.db, read, |tx| ops::revisions(
        tx, &who, &lib, None
    ))?))
}

async fn conflicts(
    State(app): St,
    Auth(a): Auth,
    UrlPath(lib): UrlPath<String>,
) -> Result<Json<ConflictsReply>> {
    let who = Who::Device(a);
    Ok(Json(run!(&app.db, read, |tx| ops::conflicts(
        tx, &who, &lib
    ))?))
}

async fn review(
    app: Arc<App>,
    a: Actor,
    lib: String,
    rev: String,
    approve: bool,
) -> Result<Json<ReviewReply>> {
    let who = Who::Device(a);
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::review(
        tx, &who, &lib, &rev, approve, now
    ))?))
}

async fn approve(
    State(app): St,
    Auth(a): Auth,
    UrlPath((lib, rev)): UrlPath<(String, String)>,
) -> Result<Json<ReviewReply>> {
    review(app, a, lib, rev, true).await
}

async fn reject(
    State(app): St,
    Auth(a): Auth,
    UrlPath((lib, rev)): UrlPath<(String, String)>,
) -> Result<Json<ReviewReply>> {
    review(app, a, lib, rev, false).await
}

async fn update_library(
    State(app): St,
    Auth(a): Auth,
    UrlPath(lib): UrlPath<String>,
    req: std::result::Result<Json<LibrarySettings>, JsonRejection>,
) -> Result<Json<ChangeReply>> {
    let req = body(req)?;
    let who = Who::Device(a);
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::update_library(
        tx, &who, &lib, &req, now
    ))?))
}

async fn members(
    State(app): St,
    Auth(a): Auth,
    UrlPath(lib): UrlPath<String>,
) -> Result<Json<MembersReply>> {
    let who = Who::Device(a);
    Ok(Json(run!(&app.db, read, |tx| ops::members(
        tx, &who, &lib
    ))?))
}

async fn set_member(
    State(app): St,
    Auth(a): Auth,
    UrlPath((lib, user)): UrlPath<(String, String)>,
    req: std::result::Result<Json<SetRole>, JsonRejection>,
) -> Result<Json<ChangeReply>> {
    let req = body(req)?;
    let who = Who::Device(a);
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::set_member(
        tx,
        &who,
        &lib,
        &user,
        Some(req.role),
        now
    ))?))
}

async fn remove_member(
    State(app): St,
    Auth(a): Auth,
    UrlPath((lib, user)): UrlPath<(String, String)>,
) -> Result<Json<ChangeReply>> {
    let who = Who::Device(a);
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::set_member(
        tx, &who, &lib, &user, None, now
    ))?))
}

async fn admin_libraries(State(app): St, Auth(a): Auth) -> Result<Json<LibrariesReply>> {
    let who = Who::Device(a);
    Ok(Json(run!(&app.db, read, |tx| ops::libraries(tx, &who))?))
}

async fn create_library(
    State(app): St,
    Auth(a): Auth,
    req: std::result::Result<Json<CreateLibrary>, JsonRejection>,
) -> Result<Json<LibraryInfo>> {
    let req = body(req)?;
    let who = Who::Device(a);
    let now = now_ms();
    Ok(Json(run!(&app.db, write, |tx| ops::create_library(
        tx, &who, &req, now
    ))?))
}

/// The invite text for a code.
pub fn invite_text(base_url: &str, fingerprint: Option<&str>, code: &str) -> String {
    Invite {
        base_url: base_url.into(),
        code: code.into(),
        fingerprint: fingerprint.map(str::to_string),
    }
    .to_string()
}

async fn create_invite(
    State(app): St,
    Auth(a): Auth,
    req: std::result::Result<Json<InviteRequest>, JsonRejection>,
) -> Result<Json<InviteReply>> {
    let req = body(req)?;
    let who = Who::Device(a);
    let now = now_ms();
    let (code, expires_at_ms) = run!(&app.db, write, |tx| ops::create_invite(tx, &who, &req, now))?;
    Ok(Json(InviteReply {
        invite: invite_text(&app.base_url, app.fingerprint.as_deref(), &code),
        expires_at_ms,
    }))
}

async fn devices(State(app): St, Auth(a): Auth) -> Result<Json<DevicesReply>> {
    let who = Who::Device(a);
    Ok(Json(run!(&app.db, read, |tx| ops::devices(tx, &who))?))
}

async fn revoke_device(
    State(app): St,
    Auth(a): Auth,
    UrlPath(id): UrlPath<String>,
) -> Result<StatusCode> {
    let who = Who::Device(a);
    let now = now_ms();
    run!(&app.db, write, |tx| ops::revoke_device(tx, &who, &id, now))?;
    Ok(StatusCode::NO_CONTENT)
}

async fn status(State(app): St, Auth(a): Auth) -> Result<Json<ops::HubStatus>> {
    let who = Who::Device(a);
    let now = now_ms();
    Ok(Json(run!(&app.db, read, |tx| ops::status(tx, &who, now))?))
}

async fn not_found() -> HubError {
    HubError::not_found("no such endpoint (see docs/sync.md, HTTP API)")
}

/// A body larger than the limit is refused by tower-http before a handler runs: give it the
/// API's JSON error.
async fn json_413(r: Response) -> Response {
    if r.status() == StatusCode::PAYLOAD_TOO_LARGE
        && r.headers().get(header::CONTENT_TYPE).map(|v| v.as_bytes()) != Some(b"application/json")
    {
        return HubError::new(
            "too_large",
            format!("the request body is larger than {BODY_LIMIT} bytes"),
        )
        .into_response();
    }
    if r.status() == StatusCode::REQUEST_TIMEOUT {
        return HubError::unavailable("the request took too long").into_response();
    }
    r
}

// ---------------------------------------------------------------------------------------------
// SSE

struct Stream {
    app: Arc<App>,
    device: String,
    user: String,
    rx: broadcast::Receiver<Note>,
    libs: HashMap<String, i64>,
    /// The WeChat apps the user answers for (their `wx` events).
    wx_apps: std::collections::HashSet<String>,
    queue: VecDeque<Event>,
    tick: tokio::time::Interval,
    stop: watch::Receiver<bool>,
}

fn poke(library: &str, head_seq: i64) -> Event {
    let data = serde_json::to_string(&Poke {
        library: library.into(),
        head_seq,
    })
    .unwrap_or_default();
    Event::default().event("poke").data(data)
}

/// A `wx` event: `{"conversation","kind","message_id"?}`.
fn wx_event(conversation: &str, kind: &str, message_id: Option<i64>) -> Event {
    let mut v = serde_json::json!({"conversation": conversation, "kind": kind});
    if let Some(id) = message_id {
        v["message_id"] = id.into();
    }
    Event::default().event("wx").data(v.to_string())
}

impl Stream {
    /// Re-reads the device's libraries; false when its token is no longer valid.
    async fn refresh(&mut self) -> bool {
        let device = self.device.clone();
        match run!(&self.app.db, read, |tx| ops::stream_libraries(tx, &device)) {
            Ok(Some(libs)) => {
                self.libs = libs.into_iter().collect();
                let (user, device, now) = (self.user.clone(), self.device.clone(), now_ms());
                match run!(&self.app.db, read, |tx| crate::wx::ops::agent_apps(
                    tx, &user
                )) {
                    Ok(apps) => {
                        self.wx_apps = apps.into_iter().map(|a| a.name).collect();
                        // an agent with an open stream is present (the `no_agent` transfer policy)
                        if !self.wx_apps.is_empty() {
                            let _ = run!(&self.app.db, write, |tx| crate::wx::ops::touch_device(
                                tx, &device, now
                            ));
                        }
                    }
                    Err(e) => tracing::warn!(error = %e, "stream refresh (wx)"),
                }
                true
            }
            Ok(None) => false,
            // The database is away for a moment: keep the stream, try at the next tick.
            Err(e) => {
                tracing::warn!(error = %e, "stream refresh");
                true
            }
        }
    }

    fn poke_all(&mut self) {
        let mut all: Vec<(&String, &i64)> = self.libs.iter().collect();
        all.sort();
        for (l, s) in all {
            self.queue.push_back(poke(l, *s));
        }
    }

    async fn next(&mut self) -> Option<Event> {
        loop {
            if let Some(e) = self.queue.pop_front() {
                return Some(e);
            }
            if *self.stop.borrow() {
                return None;
            }
            tokio::select! {
                _ = self.stop.changed() => return None,
                _ = self.tick.tick() => {
                    if !self.refresh().await {
                        return None;
                    }
                    return Some(Event::default().comment("heartbeat"));
                }
                m = self.rx.recv() => match m {
                    Ok(Note::Poke { library, head_seq }) => {
                        if let Some(s) = self.libs.get_mut(&library) {
                            *s = (*s).max(head_seq);
                            return Some(poke(&library, head_seq));
                        }
                    }
                    Ok(Note::Member { library, head_seq, user }) => {
                        let mine = user == self.user;
                        let followed = self.libs.contains_key(&library);
                        if mine && !self.refresh().await {
                            return None;
                        }
                        if mine || followed {
                            return Some(poke(&library, head_seq));
                        }
                    }
                    Ok(Note::Revoked { device }) => {
                        if device == self.device {
                            return None;
                        }
                    }
                    Ok(Note::Wx { app, conversation, kind, message_id }) => {
                        if self.wx_apps.contains(&app) {
                            return Some(wx_event(&conversation, &kind, message_id));
                        }
                    }
                    Ok(Note::Recheck) | Err(broadcast::error::RecvError::Lagged(_)) => {
                        if !self.refresh().await {
                            return None;
                        }
                        self.poke_all();
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        }
    }
}

/// `GET /v1/events`: `poke` events (data: `Poke`) for the libraries the device's user is a
/// member of, one for each at the start, then one each time a library's log grows; `wx` events
/// for the WeChat apps the user answers for (docs/wechat.md); a `: heartbeat` comment every
/// `heartbeat_secs`. Ends when the token is revoked.
async fn events(State(app): St, Auth(a): Auth) -> Result<Response> {
    let rx = app.bus.subscribe();
    let period = app.heartbeat;
    let mut s = Stream {
        app: app.clone(),
        device: a.device_id.clone(),
        user: a.user_id.clone(),
        rx,
        libs: HashMap::new(),
        wx_apps: Default::default(),
        queue: VecDeque::new(),
        tick: tokio::time::interval_at(tokio::time::Instant::now() + period, period),
        stop: app.stop.clone(),
    };
    if !s.refresh().await {
        return Err(HubError::unauthorized("this device token is not valid"));
    }
    s.poke_all();
    let stream = futures_util::stream::unfold(s, |mut s| async move {
        s.next().await.map(|e| (Ok::<Event, Infallible>(e), s))
    });
    let mut r = Sse::new(stream).into_response();
    r.headers_mut().insert(
        header::CACHE_CONTROL,
        header::HeaderValue::from_static("no-cache"),
    );
    r.headers_mut()
        .insert("x-accel-buffering", header::HeaderValue::from_static("no"));
    Ok(r)
}

/// The API's routes.
pub fn router(app: Arc<App>) -> Router {
    use axum::routing::{delete, patch, put};
    let wx = crate::wx::api::routes(app.wx.clone());
    use tower_http::limit::RequestBodyLimitLayer;
    use tower_http::timeout::TimeoutLayer;
    use tower_http::trace::TraceLayer;
    Router::new()
        .route("/v1/health", get(health))
        .route("/v1/join", post(join))
        .route("/v1/me", get(me))
        .route("/v1/events", get(events))
        .route("/v1/libraries/{lib}", patch(update_library))
        .route("/v1/libraries/{lib}/push", post(push))
        .route("/v1/libraries/{lib}/changes", get(changes))
        .route("/v1/libraries/{lib}/digest", get(digest))
        .route("/v1/libraries/{lib}/conflicts", get(conflicts))
        .route(
            "/v1/libraries/{lib}/templates/{id}/revisions",
            get(template_revisions),
        )
        .route("/v1/libraries/{lib}/proposals", get(proposals))
        .route("/v1/libraries/{lib}/proposals/{rev}/approve", post(approve))
        .route("/v1/libraries/{lib}/proposals/{rev}/reject", post(reject))
        .route("/v1/libraries/{lib}/members", get(members))
        .route(
            "/v1/libraries/{lib}/members/{user}",
            put(set_member).delete(remove_member),
        )
        .route(
            "/v1/admin/libraries",
            get(admin_libraries).post(create_library),
        )
        .route("/v1/admin/invites", post(create_invite))
        .route("/v1/admin/devices", get(devices))
        .route("/v1/admin/devices/{id}/revoke", post(revoke_device))
        .route("/v1/admin/devices/{id}", delete(revoke_device))
        .route("/v1/admin/status", get(status))
        .merge(wx)
        .fallback(not_found)
        .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
        .layer(RequestBodyLimitLayer::new(BODY_LIMIT))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            REQUEST_TIMEOUT,
        ))
        // outside the limit and the timeout: their plain-text replies become the API's JSON
        .layer(axum::middleware::map_response(json_413))
        // gzip when the client asks (Accept-Encoding); never for the event stream
        .layer(tower_http::compression::CompressionLayer::new())
        .layer(TraceLayer::new_for_http())
        .with_state(app)
}

/// The invite base URL and pin of a hub directory's config.
pub fn invite_parts(
    dir: &Path,
    cfg: &HubConfig,
) -> std::result::Result<(String, Option<String>), String> {
    let fp = match &cfg.tls {
        Some(t) if t.pin => {
            let p = dir.join(&t.cert);
            let pem = std::fs::read_to_string(&p)
                .map_err(|e| format!("cannot read {}: {e}", p.display()))?;
            Some(crate::tls::fingerprint_pem(&pem)?)
        }
        _ => None,
    };
    Ok((cfg.public_url.trim_end_matches('/').to_string(), fp))
}

/// Holds the SQLite file's lock for as long as the hub serves: one serving process per file.
fn lock_sqlite(path: &Path) -> std::result::Result<std::fs::File, String> {
    let lock: PathBuf = path.with_extension("lock");
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock)
        .map_err(|e| format!("cannot open {}: {e}", lock.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(format!(
            "another `quiver hub serve` uses {} (one process per SQLite hub; use PostgreSQL for several)",
            path.display()
        )),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(format!("cannot lock {}: {e}", lock.display()))
        }
    }
}

/// Notices what other processes (the `quiver hub` admin commands) wrote into the SQLite file:
/// a library's log moved past what this process announced, or a device was revoked. Then every
/// stream re-checks (PostgreSQL needs none of this: every writer notifies).
async fn watch_sqlite(path: PathBuf, bus: Bus, mut stop: watch::Receiver<bool>) {
    let mut rx = bus.subscribe();
    let mut announced: HashMap<String, i64> = HashMap::new();
    let mut revoked = None;
    let conn = match crate::store::sqlite::watcher_connection(&path) {
        Ok(c) => Arc::new(std::sync::Mutex::new(c)),
        Err(e) => {
            tracing::warn!(error = %e, "sqlite watcher");
            return;
        }
    };
    loop {
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            _ = stop.changed() => return,
        }
        while let Ok(n) = rx.try_recv() {
            match n {
                Note::Poke { library, head_seq }
                | Note::Member {
                    library, head_seq, ..
                } => {
                    let e = announced.entry(library).or_default();
                    *e = (*e).max(head_seq);
                }
                _ => {}
            }
        }
        let c = conn.clone();
        let state = tokio::task::spawn_blocking(move || {
            let c = c.lock().map_err(|_| HubError::internal("watcher lock"))?;
            crate::store::sqlite::watch_state(&c)
        })
        .await;
        let Ok(Ok((libs, now_revoked))) = state else {
            continue;
        };
        let mut moved = revoked.is_some_and(|r| r != now_revoked);
        revoked = Some(now_revoked);
        for (lib, seq) in libs {
            let e = announced.entry(lib).or_insert(seq);
            if seq > *e {
                *e = seq;
                moved = true;
            }
        }
        if moved {
            bus.publish(Note::Recheck);
        }
    }
}

async fn shutdown_signal() {
    let term = async {
        #[cfg(unix)]
        {
            if let Ok(mut s) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                s.recv().await;
                return;
            }
        }
        std::future::pending::<()>().await
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term => {}
    }
}

/// Runs the hub of `dir` until SIGTERM or SIGINT.
pub async fn serve(
    dir: &Path,
    listen: Option<String>,
    wx_listen: Option<String>,
) -> std::result::Result<(), String> {
    let cfg = HubConfig::load(dir)?;
    let listen = listen.unwrap_or_else(|| cfg.listen.clone());
    let addr: SocketAddr = listen
        .parse()
        .map_err(|e| format!("listen address {listen:?}: {e}"))?;
    if cfg.tls.is_none() && !addr.ip().is_loopback() {
        return Err(format!(
            "plain HTTP is only served on a loopback address, not {addr}: give the hub a certificate (quiver hub init without --plain)"
        ));
    }
    let database = cfg.database(dir)?;
    let _lock = match &database {
        Database::Sqlite(p) => Some(lock_sqlite(p)?),
        Database::Postgres(_) => None,
    };
    let bus = Bus::new();
    let db = Db::open(&database, bus.clone())
        .await
        .map_err(|e| format!("database: {}", e.message))?;
    let (stop_tx, stop_rx) = watch::channel(false);
    match (&db, &database) {
        (Db::Pg(s), _) => {
            tokio::spawn(crate::store::pg::listen(s.clone(), stop_rx.clone()));
        }
        (Db::Sqlite(_), Database::Sqlite(p)) => {
            tokio::spawn(watch_sqlite(p.clone(), bus.clone(), stop_rx.clone()));
        }
        _ => {}
    }
    let (base_url, fingerprint) = invite_parts(dir, &cfg)?;
    let wx = crate::wx::Wx::new(
        db.clone(),
        Duration::from_millis(cfg.wx_api_timeout_ms.unwrap_or(10_000).max(1)),
    );
    tokio::spawn(wx.clone().sweeper(stop_rx.clone()));
    let wx_listen = wx_listen.or_else(|| cfg.wx_listen.clone());
    let wx_server = match wx_listen {
        Some(a) => {
            let addr: SocketAddr = a
                .parse()
                .map_err(|e| format!("--wx-listen address {a:?}: {e}"))?;
            let routes = crate::wx::api::push_routes()
                .layer(axum::extract::DefaultBodyLimit::max(BODY_LIMIT))
                .layer(tower_http::timeout::TimeoutLayer::with_status_code(
                    StatusCode::REQUEST_TIMEOUT,
                    REQUEST_TIMEOUT,
                ))
                .with_state(wx.clone());
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|e| format!("cannot serve WeChat pushes on {addr}: {e}"))?;
            let bound = listener.local_addr().map_err(|e| e.to_string())?;
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("quiver hub: WeChat pushes on http://{bound}/wx/mp/NAME\n").as_bytes(),
            );
            let mut stop = stop_rx.clone();
            Some(tokio::spawn(async move {
                let _ = axum::serve(listener, routes)
                    .with_graceful_shutdown(async move {
                        let _ = stop.changed().await;
                    })
                    .await;
            }))
        }
        None => None,
    };
    let app = Arc::new(App {
        db,
        hub_id: cfg.hub_id.clone(),
        base_url,
        fingerprint,
        bus,
        heartbeat: Duration::from_secs(cfg.heartbeat_secs.max(1)),
        stop: stop_rx,
        wx,
    });
    let routes = router(app);
    let handle = axum_server::Handle::new();
    let h = handle.clone();
    tokio::spawn(async move {
        shutdown_signal().await;
        tracing::info!("stopping");
        let _ = stop_tx.send(true);
        h.graceful_shutdown(Some(Duration::from_secs(10)));
    });
    let scheme = if cfg.tls.is_some() { "https" } else { "http" };
    let h = handle.clone();
    tokio::spawn(async move {
        if let Some(a) = h.listening().await {
            tracing::info!(address = %a, "serving");
            let _ = std::io::Write::write_all(
                &mut std::io::stderr(),
                format!("quiver hub: serving on {scheme}://{a}\n").as_bytes(),
            );
        }
    });
    let service = routes.into_make_service();
    let served = match &cfg.tls {
        Some(t) => {
            let read = |f: &str| {
                let p = dir.join(f);
                std::fs::read_to_string(&p).map_err(|e| format!("cannot read {}: {e}", p.display()))
            };
            let sc = crate::tls::server_config(&read(&t.cert)?, &read(&t.key)?)?;
            let rc = axum_server::tls_rustls::RustlsConfig::from_config(Arc::new(sc));
            axum_server::bind_rustls(addr, rc)
                .handle(handle)
                .serve(service)
                .await
        }
        None => axum_server::bind(addr).handle(handle).serve(service).await,
    };
    if let Some(w) = wx_server {
        w.abort();
    }
    tracing::info!("stopped");
    served.map_err(|e| format!("cannot serve on {addr}: {e}"))
}
