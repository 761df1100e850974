//! The daemon's methods (docs/protocol.md): templates and their search, the send meter wired to
//! the history, history, settings and meter rules. [`Service::handle`] is synchronous and takes
//! the clock as an argument, so every rule is unit-tested with explicit times; [`Shared`] puts
//! it behind a mutex that serializes all requests of all connections (it owns the SQLite
//! connection, the meter and the search index). Events (`library.changed`, `meter.released`,
//! `settings.changed`) are collected while a request runs and handed to the publisher given to
//! [`Shared::new`], which pushes them to every connection that said `hello`.
//!
//! By protocol area, each with its tests: `library` (`templates.*`, the search index),
//! `import` (`templates.import`), `send` (`send.*`, leases), `meter` (`meter.*`, rules),
//! `history` (`history.list`, `settings.*`, the prune); `testkit` holds the tests' helpers.

use crate::params::{self, encode_cursor, Call};
use crate::store::{
    DeleteOutcome, HistoryFilter, NewSend, PutOutcome, SendRow, SendState, Store, StoreError,
    StoredTemplate,
};
use crate::{debug, info, warn};
use quiver_shared::meter::{meter_key, Begin, Meter, Per, Refusal, Rule, RuleSpec};
use quiver_shared::proto::{
    self, DoneParams, ErrorBody, ErrorCode, MeterReleased, NextSend, ObserveParams, ObservedEvent,
    ReserveParams, SettingsPatch, TemplateImportParams, TemplatePutParams,
};
use quiver_shared::search::{IndexedTemplate, SearchIndex, SearchOptions};
use quiver_shared::wechat::quota::Interaction;
use quiver_shared::{Platform, Template};
use serde_json::{json, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

pub use crate::params::{MAX_ERROR, MAX_FIELD, MAX_PAYLOAD};
pub use crate::store::{ABANDONED, LEASE_EXPIRED, RESTARTED};

/// List pages stop before their items add up to this many bytes of JSON, so a reply stays well
/// under the browsers' 1 MiB message limit.
pub const PAGE_BYTES: usize = 768 * 1024;
/// History is kept this many days unless the user says otherwise.
pub const DEFAULT_RETENTION_DAYS: u32 = 365;
const DAY_MS: u64 = 86_400_000;
/// Usage counts change with every send; the search index picks them up at most this often.
const USAGE_REINDEX_MS: u64 = 30_000;
/// An import session nobody added to for this long is dropped.
const IMPORT_IDLE_MS: u64 = 5 * 60_000;
const MAX_IMPORT_SESSIONS: usize = 4;
/// Bytes of template JSON one import session may stage (a library of 100,000 ordinary
/// templates is about 36 MB).
pub const IMPORT_SESSION_BYTES: usize = 64 * 1024 * 1024;
/// Bytes of template JSON all import sessions together may stage.
pub const IMPORT_TOTAL_BYTES: usize = 96 * 1024 * 1024;
/// Ids listed in a `library.changed` event (the count says how many changed).
const MAX_EVENT_IDS: usize = 100;

const CAPABILITIES: &[&str] = &[
    "templates",
    "templates.write",
    "search",
    "send",
    "send.reserve.begin",
    "history",
    "settings",
    "meter",
    "events",
    "chunks",
    "team",
    "mcs",
    "wx",
];

type Outcome = Result<Value, ServiceError>;

/// A typed reply as the JSON the wire carries.
fn reply(r: impl serde::Serialize) -> Outcome {
    serde_json::to_value(r).map_err(|e| ServiceError::Internal(format!("reply: {e}")))
}

fn not_found(msg: impl Into<String>) -> ServiceError {
    ServiceError::NotFound(msg.into())
}

fn conflict(id: i64, state: SendState, why: &'static str) -> ServiceError {
    ServiceError::SendState { id, state, why }
}

/// The platform named first in a meter key (`["udesk","w"]`).
fn key_platform(key: &str) -> Option<String> {
    serde_json::from_str::<Vec<String>>(key)
        .ok()?
        .into_iter()
        .next()
}

mod error;
mod history;
mod import;
mod library;
mod meter;
mod send;
mod team;
#[cfg(test)]
mod testkit;
pub mod wx;

pub use error::ServiceError;
use history::Settings;
use import::Staged;
use library::Library;
pub use meter::default_key;
use meter::Rules;
pub use team::{HubLive, LibLive, Probe};

/// The daemon's state: the store, the meter, the rules, the search index.
#[derive(Debug)]
pub struct Service {
    store: Store,
    meter: Meter,
    rules: Rules,
    library: Library,
    settings: Settings,
    imports: HashMap<String, Staged>,
    /// [`IMPORT_SESSION_BYTES`] and [`IMPORT_TOTAL_BYTES`] (smaller in tests).
    import_budget: (usize, usize),
    events: Vec<Value>,
    next_prune: u64,
    /// Bumped when team work is waiting (an edit in a team library, a join, a leave): the
    /// sync engine wakes on it.
    kick: tokio::sync::watch::Sender<u64>,
    /// What the sync engine last saw of each hub and library (`team.status`).
    hub_live: HashMap<String, HubLive>,
    lib_live: HashMap<String, LibLive>,
}

impl Service {
    /// Recovers after a (re)start: sends left `sending` are failed (their outcome is unknown and
    /// they are never re-sent; the meter counts them as done now), old history is pruned, each
    /// meter key restarts from the sends and user actions its rule still looks at, and `queued`
    /// sends are queued again in their original order.
    pub fn start(mut store: Store, now: u64) -> Result<Service, StoreError> {
        let interrupted = store.fail_all_in(SendState::Sending, RESTARTED, now)?;
        for id in &interrupted {
            warn!("send {id} was sending when the daemon stopped; marked failed (outcome unknown)");
        }
        let rules = Rules::load(&store)?;
        let settings = Settings::load(&store)?;
        let mut svc = Service {
            store,
            meter: Meter::new(),
            rules,
            library: Library::default(),
            settings,
            imports: HashMap::new(),
            import_budget: (IMPORT_SESSION_BYTES, IMPORT_TOTAL_BYTES),
            events: Vec::new(),
            next_prune: 0,
            kick: tokio::sync::watch::channel(0).0,
            hub_live: HashMap::new(),
            lib_live: HashMap::new(),
        };
        svc.prune(now);
        let since = now.saturating_sub(svc.rules.lookback_ms());
        for d in svc.store.done_since(since)? {
            let Some(spec) = svc.rules.by_name(&d.platform) else {
                continue;
            };
            let key = d
                .meter_key
                .clone()
                .unwrap_or_else(|| spec.key(&d.workspace, d.conversation.as_deref()));
            let rule = svc.rule_of_key(&key);
            // a wall clock that went backwards must not hold a key for hours
            svc.meter
                .restore_done(&key, rule, d.done_at.min(now), d.went_out);
        }
        for e in svc.store.meter_events_since(since)? {
            let rule = svc.rule_of_key(&e.meter_key);
            let at_ms = e.at_ms.min(now);
            let action = match e.event.as_str() {
                "enter_session" => Interaction::EnterSession { at_ms },
                _ => Interaction::UserMessage { at_ms },
            };
            svc.meter.observe(&e.meter_key, rule, action);
        }
        let queued = svc.store.queued()?;
        for row in &queued {
            match svc.row_key(row) {
                Some(key) => {
                    let rule = svc.rule_of_key(&key);
                    svc.meter.reserve(&key, rule, row.send_id, now);
                }
                None => {
                    let e = format!("platform {:?} is not supported", row.platform);
                    warn!("send {} cannot be queued again: {e}", row.send_id);
                    svc.store.transition(
                        row.send_id,
                        &[SendState::Queued],
                        SendState::Failed,
                        Some(&e),
                        now,
                    )?;
                }
            }
        }
        if !queued.is_empty() {
            info!("{} queued sends restored", queued.len());
        }
        Ok(svc)
    }

    /// The rule of a meter key (by the platform it names).
    fn rule_of_key(&self, key: &str) -> Rule {
        key_platform(key)
            .and_then(|p| self.rules.by_name(&p).map(RuleSpec::rule))
            .unwrap_or(Rule::UDESK)
    }

    /// The meter key of a history row: the one it was queued under.
    fn row_key(&self, row: &SendRow) -> Option<String> {
        if let Some(k) = &row.meter_key {
            return Some(k.clone());
        }
        let spec = self.rules.by_name(&row.platform)?;
        Some(spec.key(&row.workspace, row.conversation.as_deref()))
    }

    /// Events produced since the last call.
    pub fn take_events(&mut self) -> Vec<Value> {
        std::mem::take(&mut self.events)
    }

    fn emit(&mut self, name: &str, data: Value) {
        self.events.push(proto::event(name, data));
    }

    /// After [`Store::finish`]: the library learns of a use the store counted; a count that
    /// failed is logged (the outcome itself was recorded).
    fn counted(
        &mut self,
        used: Option<(&str, &str)>,
        counted: Option<crate::store::Result<()>>,
        now: u64,
    ) {
        match (used, counted) {
            (Some((library, template_id)), Some(Ok(()))) => {
                self.library.used(library, template_id, now)
            }
            (_, Some(Err(e))) => warn!("{e}"),
            _ => {}
        }
    }

    /// `meter.released`: something finished or left the queue of `key`; says who is next.
    fn released(&mut self, key: &str, send_id: Option<i64>, state: Option<SendState>, now: u64) {
        let next = self.meter.head(key, now).map(|(id, delay)| NextSend {
            send_id: id,
            delay_ms: delay,
            not_before_ms: now + delay,
        });
        let data = MeterReleased {
            key: key.to_string(),
            platform: key_platform(key),
            send_id,
            state,
            next,
        };
        self.emit(
            "meter.released",
            serde_json::to_value(data).unwrap_or_default(),
        );
    }

    /// Answers one request with a reply or an error reply (a whole frame value).
    pub fn handle(&mut self, req: &proto::Request, now: u64) -> Value {
        self.expire(now);
        let out = params::parse(req)
            .map_err(ServiceError::from)
            .and_then(|call| self.execute(call, now));
        match out {
            Ok(v) => proto::reply(&req.id, v),
            Err(e) => {
                let e = ErrorBody::from(e);
                debug!("{} {}: {}", req.method, e.code.as_str(), e.message);
                proto::error_reply(&req.id, &e)
            }
        }
    }

    fn execute(&mut self, call: Call, now: u64) -> Outcome {
        match call {
            Call::Hello(p) => {
                proto::negotiate(p.protocol)?;
                Ok(json!({
                    "protocol": proto::PROTOCOL_VERSION,
                    "minor": proto::PROTOCOL_MINOR,
                    "daemon": env!("CARGO_PKG_VERSION"),
                    "capabilities": CAPABILITIES,
                    "methods": params::METHODS,
                    "limits": {
                        "max_frame_to_browser": quiver_shared::frame::MAX_TO_BROWSER,
                        "max_frame_inbound": quiver_shared::frame::MAX_INBOUND_FRAME,
                        "max_page": params::MAX_LIMIT,
                        "max_payload": params::MAX_PAYLOAD,
                    },
                }))
            }
            Call::TemplatesList {
                library,
                after,
                limit,
            } => self.templates_list(library, after, limit),
            Call::TemplatesGet(p) => {
                let lib = p.library.as_deref().unwrap_or(params::LOCAL);
                self.templates_get(lib, &p.id, p.revision)
            }
            Call::TemplatesPut(p) => self.templates_put(*p, now),
            Call::TemplatesDelete(p) => {
                let lib = p.library.as_deref().unwrap_or(params::LOCAL);
                self.templates_delete(lib, &p.id, p.base_revision, now)
            }
            Call::TemplatesRevisions {
                library,
                id,
                before,
                limit,
            } => self.templates_revisions(&library, &id, before, limit),
            Call::TemplatesSearch {
                library,
                query,
                limit,
                folder,
                tag,
            } => self.templates_search(
                library.as_deref(),
                &query,
                limit,
                folder.as_deref(),
                tag.as_deref(),
                now,
            ),
            Call::TemplatesFacets { library } => self.templates_facets(library.as_deref()),
            Call::TemplatesImport(p) => self.templates_import(p, now),
            Call::SendReserve(p, platform) => self.reserve(p, platform, now),
            Call::SendBegin(id) => self.begin(id, now),
            Call::SendDone(p) => self.done(p, now),
            Call::SendCancel(id) => self.cancel(id, now),
            Call::HistoryList { filter, limit } => self.history(filter, limit),
            Call::SettingsGet => Ok(self.settings.to_json()),
            Call::SettingsSet(p) => self.settings_set(p, now),
            Call::MeterObserve(p, platform) => self.observe(p, platform, now),
            Call::MeterRulesGet => Ok(json!({ "rules": self.rules.to_json() })),
            Call::MeterRulesSet(spec) => self.rules_set(spec, now),
            Call::MeterRulesReset(platform) => self.rules_reset(platform),
            Call::Doctor(_) => Err(ServiceError::Internal(
                "doctor is served by the connection, not the service".into(),
            )),
            Call::TeamStatus(p) if !p.probe => {
                Ok(self.team_status(None, p.library.as_deref(), now))
            }
            Call::TeamConflicts(library) => self.team_conflicts(library.as_deref()),
            Call::TeamResolve(p) => self.team_resolve(*p, now),
            Call::TeamLeave(p) => self.team_leave(p, now),
            Call::McsStatus | Call::McsSet(_) | Call::McsNotice(_) => Err(ServiceError::Internal(
                "mcs.* is served by the 多客服 page's controller, not the service".into(),
            )),
            Call::TeamStatus(_)
            | Call::TeamJoin(_)
            | Call::TeamSync(_)
            | Call::TeamProposals(_)
            | Call::TeamReview(_) => Err(ServiceError::Internal(
                "team.join, team.sync and team.status with probe are served by the sync \
                     engine, not the service"
                    .into(),
            )),
            Call::Wx(_) => Err(ServiceError::Internal(
                "wx.* methods are served by the WeChat client (the wx module), not the service"
                    .into(),
            )),
        }
    }

    /// Periodic work: leases, abandoned queued sends, the daily history prune, idle meter keys,
    /// idle imports.
    pub fn tick(&mut self, now: u64) {
        self.expire(now);
        self.abandon(now);
        if now >= self.next_prune {
            self.prune(now);
        }
        self.meter.gc(now);
        self.imports.retain(|session, s| {
            let keep = now.saturating_sub(s.touched) < IMPORT_IDLE_MS;
            if !keep {
                info!("import session {session:?} dropped after {IMPORT_IDLE_MS} ms idle");
            }
            keep
        });
    }

    /// A setting another part of the daemon keeps (the 多客服 page's `mcs`), as JSON text.
    pub fn setting(&self, key: &str) -> Result<Option<String>, StoreError> {
        self.store.setting(key)
    }

    /// Writes such a setting (JSON text).
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<(), StoreError> {
        self.store.set_setting(key, value)
    }

    /// Deletes history older than the retention and user actions no rule looks at any more.
    fn prune(&mut self, now: u64) {
        self.next_prune = now + DAY_MS;
        let before = self
            .settings
            .history_retention_days
            .map(|d| now.saturating_sub(u64::from(d) * DAY_MS));
        let events_before = now.saturating_sub(self.rules.lookback_ms());
        match self.store.prune(before, events_before) {
            Ok(0) => {}
            Ok(n) => info!(
                "pruned {n} history rows older than {} days",
                self.settings.history_retention_days.unwrap_or(0)
            ),
            Err(e) => warn!("pruning history failed (will retry tomorrow): {e}"),
        }
    }
}

/// Milliseconds since the Unix epoch that never go backwards: the wall clock read once at start,
/// then advanced by a monotonic clock. A wall clock stepped back must not stall or burst a meter.
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    epoch_ms: u64,
    start: Instant,
}

impl Clock {
    pub fn new() -> Clock {
        let epoch_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        Clock {
            epoch_ms,
            start: Instant::now(),
        }
    }

    pub fn now(&self) -> u64 {
        self.epoch_ms + self.start.elapsed().as_millis() as u64
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::new()
    }
}

/// The service shared by every connection: each connection's thread calls it directly (no
/// hand-off to another thread on the way: the reply is written by the thread that read the
/// request), and the mutex serializes all requests of all connections. Events are published
/// while the lock is held, so every connection sees them in the order they happened.
pub struct Shared {
    inner: Mutex<Service>,
    clock: Clock,
    publish: Box<dyn Fn(Value) + Send + Sync>,
    /// Set once a request panicked: the daemon stops (the host starts a fresh one).
    broken: AtomicBool,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared").finish_non_exhaustive()
    }
}

impl Shared {
    pub fn new(
        service: Service,
        clock: Clock,
        publish: impl Fn(Value) + Send + Sync + 'static,
    ) -> Shared {
        Shared {
            inner: Mutex::new(service),
            clock,
            publish: Box::new(publish),
            broken: AtomicBool::new(false),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut Service, u64) -> T) -> Option<T> {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            // the guard lives inside: a panic poisons the mutex, and nothing runs on after it
            let mut svc = self.inner.lock().ok()?;
            let out = f(&mut svc, self.clock.now());
            for e in svc.take_events() {
                (self.publish)(e);
            }
            Some(out)
        }));
        match r {
            Ok(Some(v)) => Some(v),
            Ok(None) | Err(_) => {
                if !self.broken.swap(true, Ordering::SeqCst) {
                    crate::error!("the service panicked; the daemon stops");
                }
                None
            }
        }
    }

    /// Answers one request (a whole reply frame value).
    pub fn call(&self, req: &proto::Request) -> Value {
        self.with(|svc, now| svc.handle(req, now))
            .unwrap_or_else(|| {
                proto::error_reply(
                    &req.id,
                    &ErrorBody::new(
                        ErrorCode::Internal,
                        "the daemon failed and is restarting; try again",
                    ),
                )
            })
    }

    /// Runs `f` on the service under the lock (the sync engine's way in); its events are
    /// published. `None` when the service failed.
    pub fn run<T>(&self, f: impl FnOnce(&mut Service, u64) -> T) -> Option<T> {
        self.with(f)
    }

    /// The clock every request is served with.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    /// Periodic work ([`Service::tick`]).
    pub fn tick(&self) {
        self.with(|svc, now| svc.tick(now));
    }

    /// Whether a request panicked (the daemon must stop).
    pub fn is_broken(&self) -> bool {
        self.broken.load(Ordering::SeqCst)
    }
}

/// How often leases, the daily prune and idle state are looked at.
pub const TICK: Duration = Duration::from_millis(250);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testkit::*;

    #[test]
    fn hello_and_unknown_method() {
        let s = Scratch::new("hello");
        let mut svc = open(&s, 0);
        let r = ok(&mut svc, "hello", json!({"protocol": 1, "client": "t"}), 0);
        assert_eq!(r["protocol"], 1);
        assert_eq!(r["minor"], proto::PROTOCOL_MINOR);
        for c in ["templates", "send", "history", "events", "chunks"] {
            assert!(
                r["capabilities"].as_array().unwrap().contains(&json!(c)),
                "{r}"
            );
        }
        assert!(r["methods"]
            .as_array()
            .unwrap()
            .contains(&json!("meter.observe")));
        let e = err_full(&mut svc, "hello", json!({"protocol": 2}), 0);
        assert_eq!(e["code"], "unsupported_protocol");
        assert_eq!(e["data"]["supported"], json!([1]));
        let (code, msg) = err(&mut svc, "nope", json!({}), 0);
        assert_eq!(code, "unknown_method");
        assert!(msg.contains("nope"));
        let (code, msg) = err(&mut svc, "hello", json!({}), 0);
        assert_eq!(code, "invalid_params");
        assert!(msg.contains("protocol"), "{msg}");
    }
}
