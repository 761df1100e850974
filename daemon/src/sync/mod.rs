//! The sync engine: the daemon's side of team sync (`docs/sync.md`, "The daemon").
//!
//! A tokio runtime of its own (one worker thread) runs one task per joined hub, plus that hub's
//! event stream. A hub's task runs *cycles*: refresh the library list (`/v1/me`) when needed,
//! then for each library pull by cursor until caught up (each page applied with its cursor in
//! one transaction), re-push what the hub lost after an epoch change, push the outbox in order
//! in batches (each batch's results recorded, and their outbox rows deleted, in one
//! transaction), pull again, and compare digests once idle; a library with nothing to push,
//! whose head seq (from a poke or `/v1/me`) is its cursor and whose digest was compared at
//! that seq, is left alone. A cycle runs when something wakes
//! the task: a local edit of a team library (the service's kick), a poke on the event stream,
//! `team.sync`, or the periodic fallback (30 s). A failed cycle is retried with backoff (0.2 s
//! doubling to 5 s; `team.sync` retries at once); edits wait in the outbox meanwhile.
//!
//! The engine never holds the service lock across the network: it reads and writes through
//! [`Shared::run`], on tokio's blocking pool. `team.join`, `team.sync` and `team.status` with
//! `probe` need the network too: the connection's thread hands them to [`Engine::serve`],
//! outside the service lock.

pub mod client;
pub mod invite;
pub mod sse;

use crate::params::{self, Call};
use crate::service::{Probe, ServiceError, Shared};
use crate::store::{HubRow, LibraryRow};
use crate::{debug, info, warn};
use client::{HubClient, HubError};
use quiver_shared::proto::{self, ErrorBody};
use quiver_shared::sync::wire::{Change, ChangesPage, Poke, PushRequest};
use quiver_shared::sync::{MAX_PAGE, MAX_PUSH};
use serde_json::{json, Value};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Bytes of revision bodies in one push (the hub accepts a few MiB per request).
const PUSH_BYTES: usize = 2 * 1024 * 1024;
/// The pull that runs even when no poke came.
const PERIOD: Duration = Duration::from_secs(30);
/// Backoff after a failed cycle or a lost event stream.
const BACKOFF_MIN: Duration = Duration::from_millis(200);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// A revoked token is retried this rarely (a new join is what fixes it).
const UNAUTHORIZED_RETRY: Duration = Duration::from_secs(60);
/// An event stream silent this long is taken for dead (the hub sends heartbeats).
const STREAM_SILENCE: Duration = Duration::from_secs(45);
/// The digest comparison waits until a library has been quiet this long (each one reads every
/// head, here and at the hub): a burst of edits is compared once, after it.
const DIGEST_QUIET: Duration = Duration::from_secs(2);
/// A hub answering 410 more often than this in one pull is broken, not restored.
const MAX_RESETS: u32 = 3;

/// What a hub's last cycle found, for `team.sync`.
#[derive(Debug, Clone, Default)]
struct Report {
    /// The `team.sync` request number the cycle started after.
    force_seen: u64,
    idle: bool,
    error: Option<String>,
}

/// What the tasks share.
#[derive(Debug)]
struct Ctx {
    shared: Arc<Shared>,
    /// Bumped by `team.sync`: every hub runs a cycle now.
    force: watch::Sender<u64>,
    /// Each hub's last cycle.
    reports: Mutex<HashMap<String, Report>>,
    /// Bumped whenever a report is written.
    reported: watch::Sender<u64>,
}

/// Why a service call failed, as a hub error (the cycle stops and is retried).
fn svc_err(e: ServiceError) -> HubError {
    HubError::Bad(format!("daemon: {e}"))
}

impl Ctx {
    /// Runs `f` on the service, off the async worker.
    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::service::Service, u64) -> T + Send + 'static,
    ) -> Option<T> {
        let shared = self.shared.clone();
        tokio::task::spawn_blocking(move || shared.run(f))
            .await
            .ok()
            .flatten()
    }

    /// [`Ctx::db`] of a fallible call, as a hub error.
    async fn dbr<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut crate::service::Service, u64) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, HubError> {
        match self.db(f).await {
            Some(r) => r.map_err(svc_err),
            None => Err(HubError::Bad("the daemon's service failed".into())),
        }
    }

    fn report(&self, hub: &str, r: Report) {
        if let Ok(mut m) = self.reports.lock() {
            m.insert(hub.to_string(), r);
        }
        self.reported.send_modify(|v| *v = v.wrapping_add(1));
    }
}

/// The running engine.
#[derive(Debug)]
pub struct Engine {
    rt: Mutex<Option<tokio::runtime::Runtime>>,
    handle: tokio::runtime::Handle,
    ctx: Arc<Ctx>,
}

impl Engine {
    /// Starts the engine for the service in `shared`: a task per joined hub, and a supervisor
    /// that starts and stops them as hubs are joined and left.
    pub fn start(shared: Arc<Shared>) -> std::io::Result<Engine> {
        // reqwest's rustls wants a process-wide provider for what it sets up itself: ring, as
        // everywhere (quiver_hub::tls::provider)
        let _ = quiver_hub::tls::provider()
            .as_ref()
            .clone()
            .install_default();
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(4)
            .thread_name("quiver-sync")
            .enable_all()
            .build()?;
        let ctx = Arc::new(Ctx {
            shared,
            force: watch::channel(0).0,
            reports: Mutex::new(HashMap::new()),
            reported: watch::channel(0).0,
        });
        rt.spawn(supervise(ctx.clone()));
        Ok(Engine {
            handle: rt.handle().clone(),
            rt: Mutex::new(Some(rt)),
            ctx,
        })
    }

    /// Whether the connection's thread should hand `req` to [`Engine::serve`] (it needs the
    /// network).
    pub fn handles(req: &proto::Request) -> bool {
        match req.method.as_str() {
            "team.join" | "team.sync" | "team.leave" | "team.proposals" | "team.review" => true,
            "team.status" => req.params.get("probe") == Some(&Value::Bool(true)),
            _ => false,
        }
    }

    /// Serves `team.join`, `team.sync`, `team.leave` or `team.status` with `probe` (a whole reply
    /// frame).
    pub fn serve(&self, req: &proto::Request) -> Value {
        let out = match params::parse(req) {
            Ok(Call::TeamJoin(p)) => {
                self.handle
                    .block_on(join(&self.ctx, &p.invite, p.device_name.as_deref()))
            }
            Ok(Call::TeamSync(wait_ms)) => self.handle.block_on(sync_now(&self.ctx, wait_ms)),
            Ok(Call::TeamLeave(p)) => self.handle.block_on(leave(&self.ctx, p)),
            Ok(Call::TeamProposals(p)) => self.handle.block_on(proposals(&self.ctx, p.library)),
            Ok(Call::TeamReview(p)) => self.handle.block_on(review(&self.ctx, p)),
            Ok(Call::TeamStatus(_)) => Ok(self.handle.block_on(probe(&self.ctx))),
            Ok(_) => Err(ServiceError::Internal(format!(
                "{} is not served by the sync engine",
                req.method
            ))),
            Err(e) => Err(ServiceError::from(e)),
        };
        match out {
            Ok(v) => proto::reply(&req.id, v),
            Err(e) => proto::error_reply(&req.id, &ErrorBody::from(e)),
        }
    }

    /// Runs `f` on the engine's runtime and waits for it (the `wx` module's WeChat methods
    /// reach the hub from their thread this way, outside the service lock).
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.handle.block_on(f)
    }

    /// The service the engine works for.
    pub fn shared(&self) -> Arc<Shared> {
        self.ctx.shared.clone()
    }

    /// Stops every task (the daemon is shutting down).
    pub fn shutdown(&self) {
        let rt = self.rt.lock().ok().and_then(|mut r| r.take());
        if let Some(rt) = rt {
            rt.shutdown_timeout(Duration::from_millis(500));
        }
    }
}

/// A hub error as the protocol's error.
fn hub_failure(what: &str, e: &HubError) -> ServiceError {
    let kind = match e {
        HubError::Unreachable(_) => "unreachable",
        HubError::Pin(_) => "certificate",
        HubError::Unauthorized(_) => "unauthorized",
        HubError::Forbidden(_) => "forbidden",
        HubError::NotFound(_) => "not_found",
        HubError::Reset { .. } => "reset",
        HubError::TooLarge(_) => "too_large",
        HubError::Http { .. } => "http",
        HubError::Bad(_) => "bad_reply",
    };
    ServiceError::Hub {
        message: format!("{what}: {e}"),
        data: Some(json!({ "reason": kind })),
    }
}

/// The name this device has in the team unless the user gives one.
fn default_device_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty());
    match (std::env::var("USER").ok().filter(|u| !u.is_empty()), host) {
        (Some(u), Some(h)) => format!("{u}@{h}"),
        (None, Some(h)) => h,
        (Some(u), None) => u,
        (None, None) => "quiver".to_string(),
    }
}

/// `team.join`: redeems the invite at the hub and records the hub, the token and the
/// libraries; the hub's task starts and pulls them.
async fn join(
    ctx: &Arc<Ctx>,
    invite_text: &str,
    name: Option<&str>,
) -> Result<Value, ServiceError> {
    let inv = invite::parse(invite_text)
        .map_err(|e| ServiceError::from(params::invalid(format!("team.join: `invite`: {e}"))))?;
    let url = inv.base_url.clone();
    let device_name = name.map_or_else(default_device_name, str::to_string);
    let client = HubClient::new(&url, inv.fingerprint.as_deref(), None)
        .map_err(|e| hub_failure("team.join", &e))?;
    let me = client
        .join(&inv.code, &device_name)
        .await
        .map_err(|e| hub_failure(&format!("team.join at {url}"), &e))?;
    info!(
        "joined hub {} at {url} as {} (device {})",
        me.hub_id, me.user_name, me.device_id
    );
    let fp = inv.fingerprint.clone();
    ctx.db(move |svc, now| svc.team_joined(&url, fp.as_deref(), &device_name, &me, now))
        .await
        .ok_or_else(|| ServiceError::Internal("the daemon's service failed".into()))?
}

/// `team.sync`: every hub runs a cycle now; waits until all are idle or `wait_ms` passed.
async fn sync_now(ctx: &Arc<Ctx>, wait_ms: u64) -> Result<Value, ServiceError> {
    let start = Instant::now();
    let deadline = start + Duration::from_millis(wait_ms);
    let mut reported = ctx.reported.subscribe();
    let mut request = 0;
    ctx.force.send_modify(|v| {
        *v += 1;
        request = *v;
    });
    let idle = loop {
        reported.borrow_and_update();
        let hubs = ctx
            .db(|svc, _| svc.team_hubs())
            .await
            .ok_or_else(|| ServiceError::Internal("the daemon's service failed".into()))??;
        if hubs.is_empty() {
            return Err(ServiceError::NotFound(
                "this device has not joined a team hub (quiver team join INVITE)".into(),
            ));
        }
        let done = {
            let reports = ctx.reports.lock().map(|m| m.clone()).unwrap_or_default();
            hubs.iter().all(|h| {
                reports
                    .get(&h.hub_id)
                    .is_some_and(|r| r.force_seen >= request && r.idle)
            })
        };
        if done {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        let _ = tokio::time::timeout(left, reported.changed()).await;
    };
    let errors: Vec<Value> = ctx
        .reports
        .lock()
        .map(|m| {
            m.iter()
                .filter_map(|(h, r)| r.error.as_ref().map(|e| json!({"hub": h, "error": e})))
                .collect()
        })
        .unwrap_or_default();
    let mut status = ctx
        .db(|svc, now| svc.team_status(None, None, now))
        .await
        .unwrap_or(Value::Null);
    status["idle"] = json!(idle);
    status["waited_ms"] = json!(start.elapsed().as_millis() as u64);
    status["errors"] = json!(errors);
    Ok(status)
}

/// `team.status` with `probe`: asks every hub now.
/// The hub of a team library, and a client for it.
async fn library_hub(ctx: &Arc<Ctx>, library: &str) -> Result<HubClient, ServiceError> {
    let lib = library.to_string();
    let row = ctx
        .db(move |svc, _| svc.team_library_row(&lib))
        .await
        .ok_or_else(|| ServiceError::Internal("the daemon's service failed".into()))??;
    let hub_id = row
        .filter(|r| r.removed_at.is_none())
        .and_then(|r| r.hub_id)
        .ok_or_else(|| {
            ServiceError::NotFound(format!("no team library {library:?} on this device"))
        })?;
    let hub = ctx
        .db(move |svc, _| svc.team_hub(&hub_id))
        .await
        .ok_or_else(|| ServiceError::Internal("the daemon's service failed".into()))??
        .ok_or_else(|| {
            ServiceError::NotFound(format!("the hub of library {library:?} was left"))
        })?;
    HubClient::new(&hub.url, hub.fingerprint.as_deref(), Some(hub.token))
        .map_err(|e| hub_failure("team", &e))
}

/// A hub's refusal as the protocol's error: its 403 is `forbidden`, its 409 `conflict`.
fn review_failure(what: &str, e: &HubError) -> ServiceError {
    match e {
        HubError::Forbidden(m) => ServiceError::Forbidden(format!("{what}: {m}")),
        HubError::NotFound(m) => ServiceError::NotFound(format!("{what}: {m}")),
        HubError::Http { status: 409, .. } => ServiceError::Conflict(format!("{what}: {e}")),
        other => hub_failure(what, other),
    }
}

/// `team.proposals`: the hub's list of the library's proposals waiting for review (a
/// maintainer sees every one, an editor their own).
async fn proposals(ctx: &Arc<Ctx>, library: String) -> Result<Value, ServiceError> {
    let client = library_hub(ctx, &library).await?;
    let r = client
        .proposals(&library)
        .await
        .map_err(|e| review_failure("team.proposals", &e))?;
    Ok(json!({ "library": library, "proposals": r.revisions }))
}

/// `team.review`: approves or rejects a proposal at the hub, then syncs so that the outcome
/// (the template landed, or the author's draft) reaches this device.
async fn review(
    ctx: &Arc<Ctx>,
    p: quiver_shared::proto::TeamReviewParams,
) -> Result<Value, ServiceError> {
    let client = library_hub(ctx, &p.library).await?;
    let r = client
        .review(&p.library, &p.rev_id, p.approve)
        .await
        .map_err(|e| review_failure("team.review", &e))?;
    ctx.force.send_modify(|v| *v += 1);
    Ok(json!({
        "library": p.library,
        "rev_id": p.rev_id,
        "state": r.state,
        "result": r.result,
        "head_seq": r.head_seq,
    }))
}

/// How long `team.leave` waits for the hub to revoke the device's token.
const REVOKE_WAIT: Duration = Duration::from_secs(5);

/// `team.leave`: the local leave first (it may be refused: edits not pushed yet), then the
/// device's token revoked at the hub, so that a copy of it left on this machine opens nothing.
/// A hub that cannot be reached does not stop the leave: `revoked: false` and why.
async fn leave(
    ctx: &Arc<Ctx>,
    p: quiver_shared::proto::TeamLeaveParams,
) -> Result<Value, ServiceError> {
    let hubs = ctx
        .db(|svc, _| svc.team_hubs())
        .await
        .ok_or_else(|| ServiceError::Internal("the daemon's service failed".into()))??;
    let mut out = ctx
        .db(move |svc, now| svc.leave_team(p, now))
        .await
        .ok_or_else(|| ServiceError::Internal("the daemon's service failed".into()))??;
    let left = out["hub_id"].as_str().unwrap_or_default().to_string();
    let Some(hub) = hubs.into_iter().find(|h| h.hub_id == left) else {
        return Ok(out);
    };
    let revoked = match HubClient::new(&hub.url, hub.fingerprint.as_deref(), Some(hub.token)) {
        Err(e) => Err(e.to_string()),
        Ok(client) => {
            match tokio::time::timeout(REVOKE_WAIT, client.revoke_device(&hub.device_id)).await {
                Ok(Ok(())) => Ok(()),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!(
                    "no answer from {} within {} s",
                    hub.url,
                    REVOKE_WAIT.as_secs()
                )),
            }
        }
    };
    match revoked {
        Ok(()) => out["revoked"] = Value::Bool(true),
        Err(e) => {
            warn!("team.leave: the hub did not revoke this device's token: {e}");
            out["revoked"] = Value::Bool(false);
            out["revoke_error"] = Value::String(e);
        }
    }
    Ok(out)
}

async fn probe(ctx: &Arc<Ctx>) -> Value {
    let hubs = ctx
        .db(|svc, _| svc.team_hubs())
        .await
        .and_then(Result::ok)
        .unwrap_or_default();
    let mut probes: HashMap<String, Probe> = HashMap::new();
    for hub in hubs {
        let mut p = Probe::default();
        let plain = hub.url.starts_with("http://");
        match HubClient::new(
            &hub.url,
            hub.fingerprint.as_deref(),
            Some(hub.token.clone()),
        ) {
            Err(e) => p.error = Some(e.to_string()),
            Ok(client) => match client.me().await {
                Ok(me) => {
                    p.reachable = true;
                    p.certificate = Some(if plain { "plain" } else { "ok" });
                    p.token = Some(true);
                    for l in &me.libraries {
                        p.head_seqs.insert(l.id.clone(), l.head_seq);
                        match client.digest(&l.id).await {
                            Ok(d) => {
                                p.digests.insert(l.id.clone(), d);
                            }
                            Err(e) => p.error = Some(format!("digest of {}: {e}", l.name)),
                        }
                    }
                }
                Err(e) => {
                    match &e {
                        HubError::Unreachable(_) => {}
                        HubError::Pin(_) => {
                            p.reachable = true;
                            p.certificate = Some("mismatch");
                        }
                        HubError::Unauthorized(_) => {
                            p.reachable = true;
                            p.certificate = Some(if plain { "plain" } else { "ok" });
                            p.token = Some(false);
                        }
                        _ => {
                            p.reachable = true;
                            p.certificate = Some(if plain { "plain" } else { "ok" });
                        }
                    }
                    p.error = Some(e.to_string());
                }
            },
        }
        probes.insert(hub.hub_id.clone(), p);
    }
    ctx.db(move |svc, now| svc.team_status(Some(&probes), None, now))
        .await
        .unwrap_or(Value::Null)
}

/// Starts a task for every joined hub and stops the tasks of hubs left.
async fn supervise(ctx: Arc<Ctx>) {
    let Some(mut kick) = ctx.db(|svc, _| svc.kick_receiver()).await else {
        return;
    };
    let mut tasks: HashMap<String, (String, watch::Sender<bool>)> = HashMap::new();
    loop {
        kick.borrow_and_update();
        let hubs: Vec<HubRow> = ctx
            .db(|svc, _| svc.team_hubs())
            .await
            .and_then(Result::ok)
            .unwrap_or_default();
        // a hub joined again gets a new token: its task starts afresh
        let want: HashMap<String, String> = hubs
            .iter()
            .map(|h| (h.hub_id.clone(), format!("{}\n{}", h.url, h.token)))
            .collect();
        tasks.retain(|id, (who, stop)| {
            let keep = want.get(id) == Some(who);
            if !keep {
                let _ = stop.send(true);
            }
            keep
        });
        for (id, who) in want {
            if tasks.contains_key(&id) {
                continue;
            }
            let (stop_tx, stop_rx) = watch::channel(false);
            tokio::spawn(hub_task(ctx.clone(), id.clone(), kick.clone(), stop_rx));
            tasks.insert(id, (who, stop_tx));
        }
        if kick.changed().await.is_err() {
            return;
        }
    }
}

/// A wake-up of a hub's task from its event stream.
#[derive(Debug)]
enum Wake {
    /// The stream (re)connected: anything may have been missed.
    Connected,
    Poke(Poke),
}

fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|t| t.subsec_nanos())
        .unwrap_or(0);
    d + Duration::from_millis(u64::from(nanos % 100))
}

/// One hub: cycles until the hub is left.
async fn hub_task(
    ctx: Arc<Ctx>,
    hub_id: String,
    mut kick: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let (wake_tx, mut wake_rx) = mpsc::unbounded_channel::<Wake>();
    tokio::spawn(events_task(
        ctx.clone(),
        hub_id.clone(),
        wake_tx,
        stop.clone(),
    ));
    let mut force = ctx.force.subscribe();
    let mut backoff = BACKOFF_MIN;
    let mut refresh_me = true;
    let mut client: Option<(String, HubClient)> = None;
    let mut last_force = *force.borrow();
    loop {
        if *stop.borrow() {
            return;
        }
        let force_seen = *force.borrow_and_update();
        let forced = force_seen != last_force;
        if forced {
            // `team.sync` reads the library list too (a library just shared may not have
            // poked yet)
            refresh_me = true;
            last_force = force_seen;
        }
        kick.borrow_and_update();
        let id = hub_id.clone();
        let hub = match ctx.db(move |svc, _| svc.team_hub(&id)).await {
            Some(Ok(Some(h))) => h,
            _ => return,
        };
        let key = format!("{}\n{:?}\n{}", hub.url, hub.fingerprint, hub.token);
        if client.as_ref().map(|(k, _)| k) != Some(&key) {
            match HubClient::new(
                &hub.url,
                hub.fingerprint.as_deref(),
                Some(hub.token.clone()),
            ) {
                Ok(c) => client = Some((key, c)),
                Err(e) => {
                    warn!("hub {}: {e}", hub.hub_id);
                    set_hub(&ctx, &hub.hub_id, "offline", Some(e.to_string()), false).await;
                    ctx.report(
                        &hub.hub_id,
                        Report {
                            force_seen,
                            idle: false,
                            error: Some(e.to_string()),
                        },
                    );
                    wait(&mut stop, &mut force, UNAUTHORIZED_RETRY).await;
                    continue;
                }
            }
        }
        let Some((_, c)) = client.as_ref() else {
            continue;
        };
        let mut pause = PERIOD;
        let began = Instant::now();
        let result = cycle(&ctx, c, &hub, refresh_me, forced).await;
        debug!("hub {}: cycle in {:?}", hub.hub_id, began.elapsed());
        match result {
            Ok((idle, digest_waits)) => {
                if digest_waits {
                    pause = DIGEST_QUIET;
                }
                refresh_me = false;
                backoff = BACKOFF_MIN;
                set_hub(&ctx, &hub.hub_id, "online", None, true).await;
                ctx.report(
                    &hub.hub_id,
                    Report {
                        force_seen,
                        idle,
                        error: None,
                    },
                );
            }
            Err(e) => {
                let state = if matches!(e, HubError::Unauthorized(_)) {
                    "unauthorized"
                } else {
                    "offline"
                };
                debug!("hub {}: sync failed: {e}", hub.hub_id);
                set_hub(&ctx, &hub.hub_id, state, Some(e.to_string()), false).await;
                ctx.report(
                    &hub.hub_id,
                    Report {
                        force_seen,
                        idle: false,
                        error: Some(e.to_string()),
                    },
                );
                refresh_me = true;
                let pause = if state == "unauthorized" {
                    UNAUTHORIZED_RETRY
                } else {
                    jitter(backoff)
                };
                backoff = (backoff * 2).min(BACKOFF_MAX);
                wait(&mut stop, &mut force, pause).await;
                continue;
            }
        }
        // idle until something happens
        tokio::select! {
            r = kick.changed() => if r.is_err() { return },
            r = force.changed() => if r.is_err() { return },
            _ = stop.changed() => return,
            w = wake_rx.recv() => {
                let mut wakes = vec![];
                if let Some(w) = w { wakes.push(w) }
                while let Ok(w) = wake_rx.try_recv() { wakes.push(w) }
                for w in wakes {
                    match w {
                        Wake::Connected => refresh_me = true,
                        Wake::Poke(p) => {
                            let lib = p.library.clone();
                            let known = ctx
                                .db(move |svc, _| svc.team_library_row(&lib))
                                .await
                                .and_then(Result::ok)
                                .flatten()
                                .filter(|l| l.removed_at.is_none());
                            match known {
                                None => refresh_me = true,
                                Some(l) => {
                                    let (lib, seq) = (p.library.clone(), p.head_seq);
                                    if seq > l.last_seq {
                                        ctx.db(move |svc, _| svc.team_head_seq(&lib, seq)).await;
                                    }
                                }
                            }
                        }
                    }
                }
            }
            _ = tokio::time::sleep(pause) => refresh_me = pause == PERIOD,
        }
    }
}

/// Sleeps `d`, or less when the hub is left or `team.sync` asks.
async fn wait(stop: &mut watch::Receiver<bool>, force: &mut watch::Receiver<u64>, d: Duration) {
    tokio::select! {
        _ = tokio::time::sleep(d) => {}
        _ = stop.changed() => {}
        _ = force.changed() => {}
    }
}

async fn set_hub(ctx: &Ctx, hub: &str, state: &'static str, error: Option<String>, ok: bool) {
    let hub = hub.to_string();
    ctx.db(move |svc, now| {
        svc.team_hub_live(&hub, |l| {
            l.state = state;
            if ok {
                l.last_ok_at = Some(now);
                l.last_error = None;
            } else {
                l.last_error = error;
            }
        })
    })
    .await;
}

/// One cycle over every library of the hub. `Ok((idle, digest_waits))`: nothing left to push
/// or pull; a digest comparison waits for a library to be quiet.
async fn cycle(
    ctx: &Arc<Ctx>,
    client: &HubClient,
    hub: &HubRow,
    refresh_me: bool,
    forced: bool,
) -> Result<(bool, bool), HubError> {
    if refresh_me {
        refresh(ctx, client, hub).await?;
    }
    let id = hub.hub_id.clone();
    let libs: Vec<LibraryRow> = ctx
        .dbr(move |svc, _| {
            let all = svc.team_libraries_of(&id)?;
            let mut out = vec![];
            for l in all {
                if svc.team_needs_sync(&l)? {
                    out.push(l);
                }
            }
            Ok(out)
        })
        .await?;
    let mut idle = true;
    let mut digest_waits = false;
    let mut refreshed = false;
    for lib in libs {
        match sync_library(ctx, client, &lib.id, forced).await {
            Ok((done, waits)) => {
                idle &= done;
                digest_waits |= waits;
                note_lib_error(ctx, &lib.id, None).await;
            }
            Err(e @ (HubError::Forbidden(_) | HubError::NotFound(_))) => {
                // no longer a member? the library list says (and purges it)
                note_lib_error(ctx, &lib.id, Some(e.to_string())).await;
                if !refreshed {
                    refresh(ctx, client, hub).await?;
                    refreshed = true;
                }
                let l = lib.id.clone();
                let still = ctx
                    .dbr(move |svc, _| svc.team_library_row(&l))
                    .await?
                    .is_some_and(|l| l.removed_at.is_none());
                if still {
                    warn!("library {}: {e}", lib.id);
                    idle = false;
                }
            }
            Err(e) => {
                note_lib_error(ctx, &lib.id, Some(e.to_string())).await;
                return Err(e);
            }
        }
    }
    Ok((idle, digest_waits))
}

async fn note_lib_error(ctx: &Ctx, lib: &str, error: Option<String>) {
    let lib = lib.to_string();
    ctx.db(move |svc, _| svc.team_lib_live(&lib, |l| l.last_error = error))
        .await;
}

/// `/v1/me`: the library list (new ones added, removed ones purged).
async fn refresh(ctx: &Ctx, client: &HubClient, hub: &HubRow) -> Result<(), HubError> {
    let me = client.me().await?;
    let id = hub.hub_id.clone();
    ctx.dbr(move |svc, now| svc.team_me(&id, &me.libraries, now))
        .await
}

/// Pull, re-push after a reset, push, pull again; then the digest. `Ok((idle, digest
/// waits))`.
async fn sync_library(
    ctx: &Arc<Ctx>,
    client: &HubClient,
    lib: &str,
    forced: bool,
) -> Result<(bool, bool), HubError> {
    for _round in 0..8 {
        if !pull(ctx, client, lib).await? {
            return Ok((true, false)); // purged
        }
        let l = lib.to_string();
        let row = ctx.dbr(move |svc, _| svc.team_library_row(&l)).await?;
        let Some(row) = row.filter(|r| r.removed_at.is_none()) else {
            return Ok((true, false));
        };
        if row.resetting {
            let l = lib.to_string();
            ctx.dbr(move |svc, now| svc.team_requeue(&l, now)).await?;
        }
        match push(ctx, client, lib).await? {
            Pushed::Nothing => return digest_check(ctx, client, lib, forced).await,
            Pushed::Some | Pushed::Reset => continue,
        }
    }
    Ok((false, false))
}

/// Pulls `lib` until caught up. `Ok(false)`: the library was purged.
async fn pull(ctx: &Ctx, client: &HubClient, lib: &str) -> Result<bool, HubError> {
    let mut resets = 0;
    // The next page, asked for while the last one was being applied: (its epoch, its cursor,
    // the answer). Used only if the cursor is where that page starts.
    let mut ahead: Option<(String, i64, Result<ChangesPage, HubError>)> = None;
    loop {
        let l = lib.to_string();
        let row = ctx.dbr(move |svc, _| svc.team_library_row(&l)).await?;
        let Some(row) = row.filter(|r| r.removed_at.is_none()) else {
            return Ok(false);
        };
        let epoch = row.epoch.clone().unwrap_or_default();
        let got = match ahead.take() {
            Some((e, after, got)) if e == epoch && after == row.last_seq => got,
            _ => {
                let t = Instant::now();
                let got = client.changes(lib, &epoch, row.last_seq, MAX_PAGE).await;
                debug!(
                    "library {lib}: page after {} in {:?}",
                    row.last_seq,
                    t.elapsed()
                );
                got
            }
        };
        match got {
            Ok(page) if page.epoch != epoch && !epoch.is_empty() => {
                resets += 1;
                reset(ctx, client, lib, Some(page.epoch.clone()), resets).await?;
            }
            Ok(page) => {
                let more = page.more;
                let changed = !page.changes.is_empty();
                // A page that says more follows: the next one is asked for while this one is
                // applied (the hub's read and the local commit overlap).
                let next = page
                    .changes
                    .iter()
                    .map(Change::seq)
                    .max()
                    .filter(|_| more)
                    .map(|after| (page.epoch.clone(), after));
                let l = lib.to_string();
                let apply = ctx.dbr(move |svc, now| svc.team_apply(&l, &page, now));
                let (applied, fetched) = match &next {
                    Some((e, after)) => {
                        let (a, f) = tokio::join!(apply, client.changes(lib, e, *after, MAX_PAGE));
                        (a, Some(f))
                    }
                    None => (apply.await, None),
                };
                if let (Some((e, after)), Some(f)) = (next, fetched) {
                    ahead = Some((e, after, f));
                }
                let applied = applied?;
                if applied.purged {
                    return Ok(false);
                }
                if changed || !more {
                    let l = lib.to_string();
                    ctx.db(move |svc, now| {
                        svc.team_lib_live(&l, |x| {
                            if changed {
                                x.changed_at = Some(now);
                            }
                            x.caught_up |= !more;
                        })
                    })
                    .await;
                }
                if !more {
                    return Ok(true);
                }
            }
            Err(HubError::Reset { epoch }) => {
                resets += 1;
                reset(ctx, client, lib, epoch, resets).await?;
            }
            Err(e) => return Err(e),
        }
    }
}

/// The library's log changed: its cursor starts again in the new epoch.
async fn reset(
    ctx: &Ctx,
    client: &HubClient,
    lib: &str,
    epoch: Option<String>,
    resets: u32,
) -> Result<(), HubError> {
    if resets > MAX_RESETS {
        return Err(HubError::Bad(format!(
            "the hub reset library {lib} {resets} times in one pull"
        )));
    }
    let epoch = match epoch {
        Some(e) => e,
        None => client
            .me()
            .await?
            .libraries
            .into_iter()
            .find(|l| l.id == lib)
            .map(|l| l.epoch)
            .ok_or_else(|| HubError::NotFound(format!("library {lib}")))?,
    };
    let l = lib.to_string();
    ctx.dbr(move |svc, _| svc.team_reset(&l, &epoch)).await
}

#[derive(Debug, PartialEq, Eq)]
enum Pushed {
    Nothing,
    Some,
    /// The hub's epoch changed: pull again from the start.
    Reset,
}

/// Pushes the outbox of `lib` in order, in batches.
async fn push(ctx: &Ctx, client: &HubClient, lib: &str) -> Result<Pushed, HubError> {
    let mut max = MAX_PUSH;
    let mut pushed = false;
    loop {
        let l = lib.to_string();
        let batch = ctx
            .dbr(move |svc, _| svc.team_outbox(&l, max, PUSH_BYTES))
            .await?;
        if batch.is_empty() {
            return Ok(if pushed {
                Pushed::Some
            } else {
                Pushed::Nothing
            });
        }
        let l = lib.to_string();
        let row = ctx.dbr(move |svc, _| svc.team_library_row(&l)).await?;
        let Some(row) = row else {
            return Ok(Pushed::Nothing);
        };
        let ids: Vec<String> = batch.iter().map(|r| r.rev_id.clone()).collect();
        let req = PushRequest {
            epoch: row.epoch.clone().unwrap_or_default(),
            revisions: batch,
        };
        match client.push(lib, &req).await {
            Ok(reply) => {
                let l = lib.to_string();
                let head = reply.head_seq;
                let results = reply.results;
                let recorded = ctx
                    .dbr(move |svc, _| {
                        let n = svc.team_pushed(&l, &results)?;
                        svc.team_head_seq(&l, head);
                        Ok(n)
                    })
                    .await?;
                if recorded == 0 {
                    return Err(HubError::Bad(format!(
                        "the hub answered a push of {} revisions with none of their results",
                        ids.len()
                    )));
                }
                pushed = true;
            }
            Err(HubError::Reset { epoch }) => {
                reset(ctx, client, lib, epoch, 1).await?;
                return Ok(Pushed::Reset);
            }
            Err(HubError::TooLarge(_)) if max > 1 => max = (max / 2).max(1),
            Err(e) => {
                let msg = e.to_string();
                ctx.db(move |svc, _| svc.team_push_failed(&ids, &msg)).await;
                return Err(e);
            }
        }
    }
}

/// Once a library is idle: compares its digest with the hub's (when the log moved since the
/// last comparison, and it has been quiet for [`DIGEST_QUIET`] unless `forced`).
/// `Ok((idle, digest waits))`.
async fn digest_check(
    ctx: &Ctx,
    client: &HubClient,
    lib: &str,
    forced: bool,
) -> Result<(bool, bool), HubError> {
    let l = lib.to_string();
    let (row, seen, outbox, now) = ctx
        .dbr(move |svc, now| {
            Ok((
                svc.team_library_row(&l)?,
                svc.team_lib_seen(&l),
                svc.team_outbox_len(&l)?,
                now,
            ))
        })
        .await?;
    let Some(row) = row else {
        return Ok((true, false));
    };
    let idle = outbox == 0 && !row.resetting && seen.caught_up;
    if !idle || seen.digest_seq == Some(row.last_seq) {
        return Ok((idle, false));
    }
    let quiet = seen
        .changed_at
        .is_none_or(|t| now.saturating_sub(t) >= DIGEST_QUIET.as_millis() as u64);
    if !forced && !quiet {
        return Ok((idle, true));
    }
    let hub = client.digest(lib).await?;
    let l = lib.to_string();
    ctx.dbr(move |svc, _| {
        let (local, _, _) = svc.team_digest(&l)?;
        let cursor = svc.team_library_row(&l)?.map_or(0, |r| r.last_seq);
        svc.team_lib_live(&l, |x| {
            x.digest_local = Some(local.clone());
            x.digest_hub = Some(hub.digest.clone());
            x.digest_seq = Some(hub.head_seq);
        });
        if hub.head_seq == cursor && hub.digest != local {
            warn!(
                "library {l}: local digest {local} differs from the hub's {} at seq {cursor}",
                hub.digest
            );
        }
        Ok(())
    })
    .await?;
    Ok((idle, false))
}

/// The hub's event stream: pokes wake the hub's task; reconnects with backoff.
async fn events_task(
    ctx: Arc<Ctx>,
    hub_id: String,
    wake: mpsc::UnboundedSender<Wake>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = BACKOFF_MIN;
    loop {
        if *stop.borrow() {
            return;
        }
        let id = hub_id.clone();
        let hub = match ctx.db(move |svc, _| svc.team_hub(&id)).await {
            Some(Ok(Some(h))) => h,
            _ => return,
        };
        let mut connected_at: Option<Instant> = None;
        let connected = async {
            let client = HubClient::new(
                &hub.url,
                hub.fingerprint.as_deref(),
                Some(hub.token.clone()),
            )?;
            let mut resp = client.events().await?;
            set_events(&ctx, &hub_id, true).await;
            connected_at = Some(Instant::now());
            let _ = wake.send(Wake::Connected);
            let mut parser = sse::SseParser::default();
            loop {
                match tokio::time::timeout(STREAM_SILENCE, resp.chunk()).await {
                    Ok(Ok(Some(bytes))) => {
                        for (event, data) in parser.push(&bytes) {
                            if event == "wx" {
                                // the WeChat gateway's note: relayed to every connection as
                                // `wx.changed` (docs/protocol.md, "WeChat conversations")
                                match serde_json::from_str::<Value>(&data) {
                                    Ok(v) if v.is_object() => {
                                        ctx.db(move |svc, _| svc.wx_changed(v)).await;
                                    }
                                    _ => debug!("hub {hub_id}: unreadable wx event {data:?}"),
                                }
                                continue;
                            }
                            if event == "poke" {
                                match serde_json::from_str::<Poke>(&data) {
                                    Ok(p) => {
                                        let _ = wake.send(Wake::Poke(p));
                                    }
                                    Err(e) => debug!("hub {hub_id}: unreadable poke {data:?}: {e}"),
                                }
                            }
                        }
                    }
                    Ok(Ok(None)) => return Ok::<(), HubError>(()),
                    Ok(Err(e)) => return Err(HubError::Unreachable(e.to_string())),
                    Err(_) => {
                        return Err(HubError::Unreachable(format!(
                            "no event for {} s",
                            STREAM_SILENCE.as_secs()
                        )))
                    }
                }
            }
        };
        let result = tokio::select! {
            r = connected => Some(r),
            _ = stop.changed() => None,
        };
        set_events(&ctx, &hub_id, false).await;
        if connected_at.is_some_and(|t| t.elapsed() > Duration::from_secs(10)) {
            backoff = BACKOFF_MIN;
        }
        match result {
            None => return,
            Some(Ok(())) => {}
            Some(Err(e)) => debug!("hub {hub_id}: event stream: {e}"),
        }
        tokio::select! {
            _ = tokio::time::sleep(jitter(backoff)) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

async fn set_events(ctx: &Ctx, hub: &str, on: bool) {
    let hub = hub.to_string();
    ctx.db(move |svc, _| svc.team_hub_live(&hub, |l| l.events = on))
        .await;
}
