//! The WeChat mini-program gateway inside the hub (docs/wechat.md): apps configured by the owner,
//! WeChat's pushes on `/wx/mp/{NAME}`, the access token, the outbox and its senders, the media
//! cache, inbound images, and the agent API `/v1/wx/*` that daemons use.
//!
//! Modules, lowest first: `quota` (the two quota readings and learned refusals, pure), `ops`
//! (every database operation over `store::Tx`), `client` (WeChat's HTTP API), this module (the
//! runtime: token manager, media cache, senders, inbound media, the sweeper), `push` (the push
//! endpoint), `api` (the agent API), `cli` (`quiver hub wx ...`).
//!
//! Invariants: secrets are read from the database and never returned or logged; a push is stored
//! before it is answered; a token is dropped only if it is the one that failed, and a call is
//! retried at most once; a send whose request may have reached WeChat is never sent again by the
//! hub; one sender per conversation across processes (the conversation's lease).

pub mod api;
pub mod cli;
pub mod client;
pub mod ops;
pub mod push;
pub mod quota;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use quiver_shared::wechat::media::{self, Validity};
use quiver_shared::wechat::outcome::{self, Action, Endpoint};
use quiver_shared::wechat::token::{self as tok, Cached, Cause, Decision};
use serde_json::Value;

use crate::error::Result;
use crate::ids::{self, now_ms};
use crate::store::Db;
use client::{Client, Reply};
use ops::App;

/// How long a sender holds a conversation's lease without renewing it.
pub const LEASE_MS: i64 = 15_000;
/// How often the sweeper looks for queued parts without a sender and for dead senders' parts.
pub const SWEEP_EVERY: Duration = Duration::from_secs(2);
/// The largest inbound image kept.
pub const MAX_INBOUND: usize = 5 << 20;

/// One upload at a time per (app, sha256).
type Flight = Arc<tokio::sync::Mutex<()>>;

/// The gateway's runtime in one hub process.
#[derive(Debug)]
pub struct Wx {
    pub db: Db,
    pub client: Client,
    /// This process (the lease owner's name).
    pub owner: String,
    tokens: Mutex<HashMap<String, Arc<tokio::sync::Mutex<Option<Cached>>>>>,
    uploads: Mutex<HashMap<(String, String), Flight>>,
    /// Conversations whose sender runs in this process; `true`: kicked again while running.
    senders: Mutex<HashMap<String, bool>>,
    /// Apps as read for pushes, for [`APP_CACHE`] (a push then needs no read transaction).
    apps: Mutex<HashMap<String, (std::time::Instant, App)>>,
}

/// How long a push uses an app's settings as read (`quiver hub wx` changes reach pushes within
/// this).
pub const APP_CACHE: Duration = Duration::from_secs(1);

/// An advisory-lock key for a name (PostgreSQL; shared by every hub process).
fn lock_key(kind: &str, name: &str) -> i64 {
    let h = ids::sha256_hex(format!("quiver-wx:{kind}:{name}").as_bytes());
    i64::from_str_radix(&h[..15], 16).unwrap_or(0)
}

/// Holds a PostgreSQL advisory lock, or nothing on SQLite (one process per file).
struct CrossLock(Option<crate::store::pg::AdvisoryLock>);

impl CrossLock {
    async fn release(self) {
        if let Some(l) = self.0 {
            l.unlock().await;
        }
    }
}

impl Wx {
    pub fn new(db: Db, api_timeout: Duration) -> Arc<Wx> {
        Arc::new(Wx {
            db,
            client: Client::new(api_timeout),
            owner: ids::uuid4(),
            tokens: Mutex::new(HashMap::new()),
            uploads: Mutex::new(HashMap::new()),
            senders: Mutex::new(HashMap::new()),
            apps: Mutex::new(HashMap::new()),
        })
    }

    /// The app a push names (read at most every [`APP_CACHE`]; an unknown name is never cached).
    pub async fn push_app(&self, name: &str) -> Result<Option<App>> {
        if let Some((at, a)) = self
            .apps
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(name)
        {
            if at.elapsed() < APP_CACHE {
                return Ok(Some(a.clone()));
            }
        }
        let n = name.to_string();
        let got = run!(&self.db, read, |tx| ops::get_app(tx, &n))?;
        let mut m = self.apps.lock().unwrap_or_else(|e| e.into_inner());
        match &got {
            Some(a) => {
                m.insert(name.to_string(), (std::time::Instant::now(), a.clone()));
            }
            None => {
                m.remove(name);
            }
        }
        Ok(got)
    }

    async fn cross_lock(&self, kind: &str, name: &str) -> Result<CrossLock> {
        match &self.db {
            Db::Pg(s) => Ok(CrossLock(Some(
                s.advisory_lock(lock_key(kind, name)).await?,
            ))),
            Db::Sqlite(_) => Ok(CrossLock(None)),
        }
    }

    fn slot(&self, app: &str) -> Arc<tokio::sync::Mutex<Option<Cached>>> {
        let mut m = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        m.entry(app.to_string()).or_default().clone()
    }

    // -----------------------------------------------------------------------------------------
    // Tokens (research §4.6)

    /// A token for the app's calls. `rejected`: a call just failed with this token
    /// (40001/40014/42001): it is dropped if it is still the cached one (here and in the
    /// database), and another is fetched unless someone did already. Single flight: one fetch
    /// per app in this process (the slot's mutex) and across processes (an advisory lock).
    pub async fn token(
        &self,
        app: &App,
        rejected: Option<&str>,
    ) -> std::result::Result<String, String> {
        let slot = self.slot(&app.name);
        let mut mem = slot.lock().await;
        let now = now_ms();
        if let Some(failed) = rejected {
            if tok::invalidates(mem.as_ref(), failed) {
                *mem = None;
            }
            let (name, f) = (app.name.clone(), failed.to_string());
            run!(&self.db, write, |tx| ops::invalidate_token(tx, &name, &f))
                .map_err(|e| e.message)?;
        }
        if tok::decide(mem.as_ref(), now) == Decision::Use {
            return Ok(mem.as_ref().map(|c| c.token.clone()).unwrap_or_default());
        }
        let lock = self
            .cross_lock("token", &app.name)
            .await
            .map_err(|e| e.message)?;
        let r = self.token_locked(app, rejected.is_some(), &mut mem).await;
        lock.release().await;
        r
    }

    async fn token_locked(
        &self,
        app: &App,
        rejected: bool,
        mem: &mut Option<Cached>,
    ) -> std::result::Result<String, String> {
        let now = now_ms();
        let name = app.name.clone();
        let row = run!(&self.db, read, |tx| ops::token_row(tx, &name)).map_err(|e| e.message)?;
        let cached = row.map(|r| r.cached);
        let decision = tok::decide(cached.as_ref(), now);
        if decision == Decision::Use {
            *mem = cached.clone();
            return Ok(cached.map(|c| c.token).unwrap_or_default());
        }
        let cause = if rejected {
            Cause::Rejected
        } else {
            Cause::Expiry
        };
        if tok::may_fetch(cached.as_ref().map(|c| c.fetched_at_ms), cause, now).is_err() {
            if decision == Decision::RefreshAhead {
                return Ok(cached.map(|c| c.token).unwrap_or_default());
            }
            return Err(
                "WeChat rejected a token fetched moments ago; not fetching another yet (is the AppSecret right?)"
                    .into(),
            );
        }
        let reply = self
            .client
            .stable_token(&app.api_base, &app.appid, &app.secret, false)
            .await;
        match fetched(&reply, now) {
            Some(c) => {
                let (name, c2) = (app.name.clone(), c.clone());
                run!(&self.db, write, |tx| ops::put_token(tx, &name, &c2))
                    .map_err(|e| e.message)?;
                tracing::info!(app = %app.name, expires_at_ms = c.expires_at_ms, "fetched an access token");
                let t = c.token.clone();
                *mem = Some(c);
                Ok(t)
            }
            None => {
                tracing::warn!(app = %app.name, error = %reply.describe(), "token fetch failed");
                if decision == Decision::RefreshAhead {
                    return Ok(cached.map(|c| c.token).unwrap_or_default());
                }
                Err(format!("cannot get an access token: {}", reply.describe()))
            }
        }
    }

    /// `quiver hub wx token NAME --force`: a forced refresh within the budget (it invalidates
    /// the token for every other user of the stable token).
    pub async fn force_token(&self, app: &App) -> std::result::Result<Cached, String> {
        let slot = self.slot(&app.name);
        let mut mem = slot.lock().await;
        let lock = self
            .cross_lock("token", &app.name)
            .await
            .map_err(|e| e.message)?;
        let r = async {
            let now = now_ms();
            let name = app.name.clone();
            let log =
                run!(&self.db, read, |tx| ops::force_log(tx, &name)).map_err(|e| e.message)?;
            tok::may_force(&log, tok::ForceBudget::DEFAULT, now).map_err(|e| e.to_string())?;
            let name = app.name.clone();
            run!(&self.db, write, |tx| ops::log_force(tx, &name, now)).map_err(|e| e.message)?;
            let reply = self
                .client
                .stable_token(&app.api_base, &app.appid, &app.secret, true)
                .await;
            let c = fetched(&reply, now)
                .ok_or_else(|| format!("the forced refresh failed: {}", reply.describe()))?;
            let (name, c2) = (app.name.clone(), c.clone());
            run!(&self.db, write, |tx| ops::put_token(tx, &name, &c2)).map_err(|e| e.message)?;
            *mem = Some(c.clone());
            Ok(c)
        }
        .await;
        lock.release().await;
        r
    }

    // -----------------------------------------------------------------------------------------
    // Media cache (research §4.9)

    /// The media id of blob `sha` for the app: cached while fresh, else uploaded (once per
    /// (app, sha256) at a time, across processes too). `stale`: WeChat refused this id (40007).
    pub async fn media_id(
        &self,
        app: &App,
        sha: &str,
        stale: Option<&str>,
    ) -> std::result::Result<String, String> {
        let slot = {
            let mut m = self.uploads.lock().unwrap_or_else(|e| e.into_inner());
            m.entry((app.name.clone(), sha.to_string()))
                .or_default()
                .clone()
        };
        let _g = slot.lock().await;
        let lock = self
            .cross_lock("media", &format!("{}:{sha}", app.name))
            .await
            .map_err(|e| e.message)?;
        let r = self.media_locked(app, sha, stale).await;
        lock.release().await;
        r
    }

    async fn media_locked(
        &self,
        app: &App,
        sha: &str,
        stale: Option<&str>,
    ) -> std::result::Result<String, String> {
        let now = now_ms();
        let (name, s) = (app.name.clone(), sha.to_string());
        if let Some(bad) = stale {
            let b = bad.to_string();
            run!(&self.db, write, |tx| ops::media_drop(tx, &name, &s, &b))
                .map_err(|e| e.message)?;
        }
        let (name, s) = (app.name.clone(), sha.to_string());
        let cached =
            run!(&self.db, read, |tx| ops::media_get(tx, &name, &s)).map_err(|e| e.message)?;
        let validity = cached
            .as_ref()
            .map(|(_, exp)| media::validity(*exp, now))
            .unwrap_or(Validity::Expired);
        if let (Validity::Fresh, Some((id, _))) = (validity, &cached) {
            return Ok(id.clone());
        }
        let s = sha.to_string();
        let blob = run!(&self.db, read, |tx| ops::blob_get(tx, &s))
            .map_err(|e| e.message)?
            .ok_or_else(|| {
                format!("no blob sha256:{sha} on the hub (PUT /v1/wx/blobs/{sha} first)")
            })?;
        let (mime, bytes) = blob;
        let ext = media::ImageType::from_mime(&mime)
            .map(|t| t.extension())
            .unwrap_or("jpg");
        let mut token = self.token(app, None).await?;
        let mut retried = false;
        let reply = loop {
            let reply = self
                .client
                .upload(&app.api_base, &token, bytes.clone(), &mime, ext)
                .await;
            match outcome::decide(Endpoint::Upload, reply.outcome, false, retried) {
                Action::RefreshTokenThenRetryOnce => {
                    let t2 = self.token(app, Some(&token)).await?;
                    if !tok::retry_with(&token, &t2) {
                        break reply;
                    }
                    token = t2;
                    retried = true;
                }
                Action::RetryLater => {
                    retried = true;
                    tokio::time::sleep(Duration::from_millis(300)).await;
                }
                _ => break reply,
            }
        };
        let media_id = reply
            .json
            .get("media_id")
            .and_then(Value::as_str)
            .filter(|_| reply.errcode() == Some(0))
            .map(str::to_string);
        let Some(media_id) = media_id else {
            if let (Validity::RefreshAhead, Some((id, _))) = (validity, cached) {
                return Ok(id);
            }
            return Err(format!("the image upload failed: {}", reply.describe()));
        };
        let created_ms = reply
            .json
            .get("created_at")
            .and_then(Value::as_i64)
            .map(|s| s * 1000)
            .unwrap_or(now);
        let expires = media::expires_at(created_ms, now);
        let (name, s, m) = (app.name.clone(), sha.to_string(), media_id.clone());
        run!(&self.db, write, |tx| ops::media_put(
            tx, &name, &s, &m, created_ms, expires
        ))
        .map_err(|e| e.message)?;
        tracing::info!(app = %app.name, sha256 = %sha, "uploaded an image");
        Ok(media_id)
    }

    // -----------------------------------------------------------------------------------------
    // Senders (research §4.7)

    /// Makes sure a sender runs for the conversation (in this process, if it can take the lease).
    pub fn kick(self: &Arc<Self>, conv: &str) {
        {
            let mut m = self.senders.lock().unwrap_or_else(|e| e.into_inner());
            if let Some(again) = m.get_mut(conv) {
                *again = true;
                return;
            }
            m.insert(conv.to_string(), false);
        }
        let wx = self.clone();
        let conv = conv.to_string();
        tokio::spawn(async move {
            wx.run_sender(&conv).await;
        });
    }

    async fn run_sender(self: &Arc<Self>, conv: &str) {
        loop {
            let now = now_ms();
            let (c, o) = (conv.to_string(), self.owner.clone());
            let next = async {
                if !run!(&self.db, write, |tx| ops::lease(
                    tx,
                    &c,
                    &o,
                    now,
                    now + LEASE_MS
                ))? {
                    return Ok(None);
                }
                let (c, o) = (conv.to_string(), self.owner.clone());
                run!(&self.db, write, |tx| ops::next_sending(tx, &c, &o, now))
            }
            .await;
            match next {
                Ok(Some(out)) => {
                    // renew the lease while the part is out, so that only a dead sender loses it
                    let wx = self.clone();
                    let c = conv.to_string();
                    let beat = tokio::spawn(async move {
                        loop {
                            tokio::time::sleep(Duration::from_millis((LEASE_MS / 3) as u64)).await;
                            let (c, o, now) = (c.clone(), wx.owner.clone(), now_ms());
                            let _ = run!(&wx.db, write, |tx| ops::lease(
                                tx,
                                &c,
                                &o,
                                now,
                                now + LEASE_MS
                            ));
                        }
                    });
                    self.send_one(conv, out).await;
                    beat.abort();
                    continue;
                }
                Ok(None) => {}
                Err(e) => tracing::warn!(error = %e, "sender"),
            }
            let (c, o) = (conv.to_string(), self.owner.clone());
            let _ = run!(&self.db, write, |tx| ops::release(tx, &c, &o));
            let mut m = self.senders.lock().unwrap_or_else(|e| e.into_inner());
            match m.get_mut(conv) {
                Some(again) if *again => *again = false,
                _ => {
                    m.remove(conv);
                    return;
                }
            }
        }
    }

    async fn finish(
        &self,
        id: i64,
        state: &str,
        errcode: Option<i64>,
        error: Option<String>,
        body: Option<String>,
    ) {
        let now = now_ms();
        let (s, e, b) = (state.to_string(), error, body);
        if let Err(x) = run!(&self.db, write, |tx| ops::finish(
            tx,
            id,
            &s,
            errcode,
            e.as_deref(),
            b.as_deref(),
            now
        )) {
            tracing::error!(error = %x, message = id, "cannot record a send's outcome");
        }
    }

    /// Sends one part (the row is `sending`): resolves its image, calls WeChat, records the end.
    /// The body goes out exactly as the agent's daemon encoded it, a `sha256:` media id replaced
    /// by WeChat's.
    async fn send_one(&self, conv: &str, out: ops::Outgoing) {
        let app = &out.app;
        let Ok(body) = serde_json::from_str::<Value>(&out.body) else {
            return self
                .finish(
                    out.id,
                    "failed",
                    None,
                    Some("the body is not JSON".into()),
                    None,
                )
                .await;
        };
        let sha = media_ref(&body).map(|(_, h)| h);
        let has_media = sha.is_some();
        let mut retried = false;
        let mut not_written = 0;
        let mut stale: Option<String> = None;
        let mut last_id: Option<String> = None;
        let mut rejected: Option<String> = None;
        loop {
            let wire = match &sha {
                Some(h) => match self.media_id(app, h, stale.take().as_deref()).await {
                    Ok(id) => {
                        last_id = Some(id.clone());
                        out.body.replacen(
                            &format!("\"sha256:{h}\""),
                            &Value::String(id).to_string(),
                            1,
                        )
                    }
                    Err(e) => return self.finish(out.id, "failed", None, Some(e), None).await,
                },
                None => out.body.clone(),
            };
            let token = match self.token(app, rejected.as_deref()).await {
                Ok(t) => t,
                Err(e) => return self.finish(out.id, "failed", None, Some(e), None).await,
            };
            if let Some(r) = &rejected {
                if !tok::retry_with(r, &token) {
                    return self
                        .finish(
                            out.id,
                            "failed",
                            None,
                            Some("WeChat keeps rejecting the access token it hands out (AppSecret changed? a forced refresh may be needed)".into()),
                            None,
                        )
                        .await;
                }
            }
            let reply = self.client.send(&app.api_base, &token, &wire).await;
            let action = outcome::decide(Endpoint::Send, reply.outcome, has_media, retried);
            match action {
                Action::Done => return self.finish(out.id, "sent", Some(0), None, Some(wire)).await,
                Action::RefreshTokenThenRetryOnce => {
                    rejected = Some(token);
                    retried = true;
                }
                Action::ReuploadThenRetryOnce => {
                    // the id WeChat refused is dropped from the cache, and uploaded again
                    stale = last_id.take();
                    retried = true;
                    rejected = None;
                }
                Action::StopUntilUserActs => {
                    let code = reply.errcode().unwrap_or(0);
                    self.finish(out.id, "failed", Some(code), Some(reply.describe()), Some(wire))
                        .await;
                    let (c, k, now) = (conv.to_string(), out.key.clone(), now_ms());
                    if let Err(e) = run!(&self.db, write, |tx| ops::learn(tx, &c, &k, code, now)) {
                        tracing::warn!(error = %e, "learning a quota refusal");
                    }
                    return;
                }
                Action::RetryLater if not_written < 3 => {
                    not_written += 1;
                    tokio::time::sleep(Duration::from_millis(250 << not_written)).await;
                }
                Action::Unknown => {
                    return self
                        .finish(
                            out.id,
                            "unknown",
                            None,
                            Some(format!(
                                "{}: WeChat may or may not have delivered it; not sent again automatically",
                                reply.describe()
                            )),
                            Some(wire),
                        )
                        .await
                }
                _ => {
                    let code = reply.errcode();
                    let why = match code {
                        Some(-1) => "WeChat was busy (-1); it may still have been delivered — send again?".to_string(),
                        Some(c) => format!(
                            "{}{}",
                            reply.describe(),
                            quiver_shared::wechat::api::meaning(c)
                                .map(|m| format!(" ({m})"))
                                .unwrap_or_default()
                        ),
                        None => reply.describe(),
                    };
                    return self.finish(out.id, "failed", code, Some(why), Some(wire)).await;
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Inbound images (research §4.10)

    /// Fetches an image the customer sent (`media/get`) into a blob, soon after the push (the id
    /// dies after 3 days).
    pub fn fetch_inbound(self: &Arc<Self>, app: App, message_id: i64, media_id: String) {
        if media_id.is_empty() {
            return;
        }
        let wx = self.clone();
        tokio::spawn(async move {
            let (sha, error) = match wx.fetch_media(&app, &media_id).await {
                Ok(sha) => (sha, None),
                Err(e) => {
                    tracing::warn!(app = %app.name, error = %e, "inbound image");
                    (String::new(), Some(e))
                }
            };
            let _ = run!(&wx.db, write, |tx| ops::set_inbound_blob(
                tx,
                message_id,
                &sha,
                error.as_deref()
            ));
        });
    }

    async fn fetch_media(&self, app: &App, media_id: &str) -> std::result::Result<String, String> {
        let mut token = self.token(app, None).await?;
        let mut retried = false;
        loop {
            match self
                .client
                .get_media(&app.api_base, &token, media_id, MAX_INBOUND)
                .await
            {
                Ok((ct, bytes)) => {
                    let kind = media::sniff(&bytes)
                        .or_else(|| media::ImageType::from_mime(&ct))
                        .map(|t| t.mime())
                        .unwrap_or("application/octet-stream");
                    let sha = ids::sha256_hex(&bytes);
                    let (s, k, now) = (sha.clone(), kind.to_string(), now_ms());
                    run!(&self.db, write, |tx| ops::blob_put(tx, &s, &k, bytes, now))
                        .map_err(|e| e.message)?;
                    return Ok(sha);
                }
                Err(reply) => {
                    match outcome::decide(Endpoint::GetMedia, reply.outcome, false, retried) {
                        Action::RefreshTokenThenRetryOnce => {
                            let t2 = self.token(app, Some(&token)).await?;
                            if !tok::retry_with(&token, &t2) {
                                return Err(reply.describe());
                            }
                            token = t2;
                            retried = true;
                        }
                        Action::RetryLater => {
                            retried = true;
                            tokio::time::sleep(Duration::from_millis(500)).await;
                        }
                        _ => return Err(format!("media/get: {}", reply.describe())),
                    }
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Typing

    /// Sends `Typing`/`CancelTyping`; WeChat's typing refusals are only logged.
    pub async fn typing(&self, app: &App, openid: &str, on: bool) -> Option<i64> {
        use quiver_shared::wechat::api::{typing_body, TypingCommand};
        let cmd = if on {
            TypingCommand::Typing
        } else {
            TypingCommand::CancelTyping
        };
        let body = typing_body(openid, cmd).ok()?;
        let mut token = self.token(app, None).await.ok()?;
        let mut retried = false;
        loop {
            let reply: Reply = self.client.typing(&app.api_base, &token, &body).await;
            match outcome::decide(Endpoint::Typing, reply.outcome, false, retried) {
                Action::RefreshTokenThenRetryOnce => {
                    let t2 = self.token(app, Some(&token)).await.ok()?;
                    if !tok::retry_with(&token, &t2) {
                        return reply.errcode();
                    }
                    token = t2;
                    retried = true;
                }
                Action::Done => return Some(0),
                _ => {
                    tracing::debug!(app = %app.name, answer = %reply.describe(), "typing");
                    return reply.errcode();
                }
            }
        }
    }

    // -----------------------------------------------------------------------------------------
    // Sweeper

    /// At start: on SQLite (one process per file) every part left `sending` becomes `unknown`;
    /// then every [`SWEEP_EVERY`]: parts of senders whose lease expired become `unknown`, and
    /// conversations with queued parts and no sender get one.
    pub async fn sweeper(self: Arc<Self>, mut stop: tokio::sync::watch::Receiver<bool>) {
        let all = matches!(self.db, Db::Sqlite(_));
        let now = now_ms();
        match run!(&self.db, write, |tx| ops::sweep_sending(tx, now, all)) {
            Ok(n) if n > 0 => {
                tracing::warn!(parts = n, "sends interrupted by a stop are now unknown")
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "sweep"),
        }
        loop {
            let now = now_ms();
            if let Err(e) = run!(&self.db, write, |tx| ops::sweep_sending(tx, now, false)) {
                tracing::warn!(error = %e, "sweep");
            }
            match run!(&self.db, read, |tx| ops::pending_conversations(tx, now)) {
                Ok(convs) => {
                    for c in convs {
                        self.kick(&c);
                    }
                }
                Err(e) => tracing::warn!(error = %e, "sweep"),
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = stop.changed() => return,
            }
        }
    }
}

/// A token from a `stable_token` answer.
fn fetched(reply: &Reply, now: i64) -> Option<Cached> {
    if reply.errcode() != Some(0) {
        return None;
    }
    let token = reply.json.get("access_token")?.as_str()?.to_string();
    let expires_in = reply
        .json
        .get("expires_in")
        .and_then(Value::as_i64)
        .unwrap_or(7200);
    Some(Cached::fetched(token, expires_in, now))
}

/// Where a body names an image by blob (`sha256:<hex>`): (object, field) and the hash.
fn media_ref(body: &Value) -> Option<((&'static str, &'static str), String)> {
    for path in [("image", "media_id"), ("miniprogrampage", "thumb_media_id")] {
        if let Some(s) = body
            .get(path.0)
            .and_then(|o| o.get(path.1))
            .and_then(Value::as_str)
        {
            if let Some(h) = s.strip_prefix("sha256:") {
                return Some((path, h.to_string()));
            }
        }
    }
    None
}

/// Checks a hex SHA-256.
pub fn is_sha256(s: &str) -> bool {
    s.len() == 64
        && s.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
