//! The daemon's methods (docs/protocol.md): templates and their search, the send meter wired to
//! the history, history, settings and meter rules. [`Service::handle`] is synchronous and takes
//! the clock as an argument, so every rule is unit-tested with explicit times; [`Shared`] puts
//! it behind a mutex that serializes all requests of all connections (it owns the SQLite
//! connection, the meter and the search index). Events (`library.changed`, `meter.released`,
//! `settings.changed`) are collected while a request runs and handed to the publisher given to
//! [`Shared::new`], which pushes them to every connection that said `hello`.

use crate::params::{self, encode_cursor, Call};
use crate::store::{
    DeleteOutcome, ErrorKind, HistoryFilter, NewSend, PutOutcome, SendRow, SendState, Store,
    StoreError, StoredTemplate,
};
use crate::{debug, info, warn};
use quiver_shared::meter::{meter_key, Begin, Meter, Per, Refusal, Rule, RuleSpec};
use quiver_shared::proto::{
    self, DoneParams, ErrorBody, ErrorCode, ObserveParams, ObservedEvent, ReserveParams,
    SettingsPatch, TemplateImportParams, TemplatePutParams,
};
use quiver_shared::search::{IndexedTemplate, SearchIndex, SearchOptions};
use quiver_shared::wechat::quota::{Interaction, QuotaRefusal};
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
    "history",
    "settings",
    "meter",
    "events",
    "chunks",
];

type Outcome = Result<Value, ErrorBody>;

fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Full => "full",
        ErrorKind::ReadOnly => "read_only",
        ErrorKind::Io => "io",
        ErrorKind::Busy => "busy",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Other => "other",
    }
}

/// A store failure as a protocol error: `storage_unavailable` when the user can fix it (disk
/// full, read-only, IO), else `internal`.
fn internal(e: StoreError) -> ErrorBody {
    if e.is_storage() {
        ErrorBody::new(
            ErrorCode::StorageUnavailable,
            format!("{}. ({})", e.hint(), e.message),
        )
        .with_data(json!({ "kind": kind_name(e.kind) }))
    } else {
        ErrorBody::new(ErrorCode::Internal, format!("store: {e}"))
    }
}

fn not_found(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::NotFound, msg)
}

fn conflict(id: i64, state: SendState, why: &str) -> ErrorBody {
    ErrorBody::new(
        ErrorCode::Conflict,
        format!("send {id} is {}; {why}", state.as_str()),
    )
    .with_data(json!({ "send_id": id, "state": state }))
}

fn quota_error(r: QuotaRefusal) -> ErrorBody {
    ErrorBody::new(ErrorCode::QuotaExceeded, r.to_string()).with_data(json!({
        "errcode": r.errcode(),
        "refusal": r,
    }))
}

/// The platform named first in a meter key (`["udesk","w"]`).
fn key_platform(key: &str) -> Option<String> {
    serde_json::from_str::<Vec<String>>(key)
        .ok()?
        .into_iter()
        .next()
}

/// The effective rule of every platform: built in, or the user's (`meter.rules.set`).
#[derive(Debug)]
struct Rules {
    specs: BTreeMap<&'static str, (RuleSpec, bool)>,
}

impl Rules {
    fn load(store: &Store) -> Result<Rules, StoreError> {
        let mut specs: BTreeMap<&'static str, (RuleSpec, bool)> = Platform::ALL
            .iter()
            .map(|p| (p.as_str(), (RuleSpec::default_for(*p), false)))
            .collect();
        for (platform, json) in store.rules()? {
            let spec = serde_json::from_str::<RuleSpec>(&json)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate().map(|p| (p, s)));
            match spec {
                Ok((p, s)) if p.as_str() == platform => {
                    specs.insert(p.as_str(), (s, true));
                }
                Ok(_) => {
                    warn!("meter rule stored for {platform:?} names another platform; ignored")
                }
                Err(e) => warn!("meter rule stored for {platform:?} is not valid ({e}); ignored"),
            }
        }
        Ok(Rules { specs })
    }

    fn spec(&self, p: Platform) -> &RuleSpec {
        &self.specs[p.as_str()].0
    }

    fn by_name(&self, platform: &str) -> Option<&RuleSpec> {
        self.specs.get(platform).map(|(s, _)| s)
    }

    /// How far back any rule looks (sends, user actions).
    fn lookback_ms(&self) -> u64 {
        self.specs
            .values()
            .map(|(s, _)| s.rule().lookback_ms())
            .max()
            .unwrap_or(0)
    }

    fn to_json(&self) -> Value {
        Value::Array(
            self.specs
                .values()
                .map(|(s, custom)| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["source"] = json!(if *custom { "custom" } else { "default" });
                    v
                })
                .collect(),
        )
    }
}

/// The search index over the library, kept in memory: loaded on first use, updated as templates
/// change, rebuilt lazily (a burst of changes costs one rebuild).
#[derive(Debug, Default)]
struct Library {
    loaded: bool,
    entries: Vec<IndexedTemplate>,
    pos: HashMap<String, usize>,
    index: Option<SearchIndex>,
    built_at: u64,
    usage_changed: bool,
}

impl Library {
    fn load(&mut self, store: &Store) -> Result<(), ErrorBody> {
        if self.loaded {
            return Ok(());
        }
        let rows = store.all_templates().map_err(internal)?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            match serde_json::from_str::<Template>(&row.body_json) {
                Ok(t) => entries.push(indexed(&t, row)),
                Err(e) => warn!(
                    "template {:?} is not readable ({e}); not searchable",
                    row.id
                ),
            }
        }
        self.pos = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        self.entries = entries;
        self.index = None;
        self.loaded = true;
        Ok(())
    }

    fn upsert(&mut self, t: &Template) {
        if !self.loaded {
            return;
        }
        match self.pos.get(&t.id) {
            Some(&i) => {
                let e = &self.entries[i];
                let (usage, last) = (e.usage_count, e.last_used_ms);
                self.entries[i] = IndexedTemplate::from_template(t, usage, last);
            }
            None => {
                self.pos.insert(t.id.clone(), self.entries.len());
                self.entries
                    .push(IndexedTemplate::from_template(t, 0, None));
            }
        }
        self.index = None;
    }

    fn remove(&mut self, id: &str) {
        if let Some(i) = self.pos.remove(id) {
            self.entries.swap_remove(i);
            if let Some(moved) = self.entries.get(i) {
                self.pos.insert(moved.id.clone(), i);
            }
            self.index = None;
        }
    }

    fn used(&mut self, id: &str, now: u64) {
        if let Some(&i) = self.pos.get(id) {
            let e = &mut self.entries[i];
            e.usage_count = e.usage_count.saturating_add(1);
            e.last_used_ms = Some(now);
            self.usage_changed = true;
        }
    }

    fn index(&mut self, now: u64) -> &SearchIndex {
        let stale = self.usage_changed && now.saturating_sub(self.built_at) >= USAGE_REINDEX_MS;
        if self.index.is_none() || stale {
            let t = Instant::now();
            self.index = Some(SearchIndex::build(&self.entries));
            self.built_at = now;
            self.usage_changed = false;
            debug!(
                "search index of {} templates built in {:?}",
                self.entries.len(),
                t.elapsed()
            );
        }
        self.index.get_or_insert_with(|| SearchIndex::build(&[]))
    }
}

fn indexed(t: &Template, row: &StoredTemplate) -> IndexedTemplate {
    IndexedTemplate::from_template(
        t,
        u32::try_from(row.usage_count).unwrap_or(u32::MAX),
        row.last_used_at,
    )
}

/// User settings (`settings.get/set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Settings {
    /// `None`: keep history forever.
    history_retention_days: Option<u32>,
}

const RETENTION_KEY: &str = "history_retention_days";

impl Settings {
    fn load(store: &Store) -> Result<Settings, StoreError> {
        let days = match store.setting(RETENTION_KEY)? {
            None => Some(DEFAULT_RETENTION_DAYS),
            Some(v) => match serde_json::from_str::<Option<u32>>(&v) {
                Ok(d) => d,
                Err(e) => {
                    warn!("setting {RETENTION_KEY} is {v:?} ({e}); using the default");
                    Some(DEFAULT_RETENTION_DAYS)
                }
            },
        };
        Ok(Settings {
            history_retention_days: days,
        })
    }

    fn to_json(self) -> Value {
        json!({
            "history_retention_days": self.history_retention_days,
            "defaults": { "history_retention_days": DEFAULT_RETENTION_DAYS },
        })
    }
}

/// Batches of an import in several requests.
#[derive(Debug)]
struct Staged {
    templates: Vec<Template>,
    /// Their size as JSON (what the byte budgets count).
    bytes: usize,
    touched: u64,
}

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

    /// `meter.released`: something finished or left the queue of `key`; says who is next.
    fn released(&mut self, key: &str, send_id: Option<i64>, state: Option<SendState>, now: u64) {
        let next = self.meter.head(key, now).map(
            |(id, delay)| json!({ "send_id": id, "delay_ms": delay, "not_before_ms": now + delay }),
        );
        let data = json!({
            "key": key,
            "platform": key_platform(key),
            "send_id": send_id,
            "state": state,
            "next": next,
        });
        self.emit("meter.released", data);
    }

    /// Answers one request with a reply or an error reply (a whole frame value).
    pub fn handle(&mut self, req: &proto::Request, now: u64) -> Value {
        self.expire(now);
        let out = params::parse(req).and_then(|call| self.execute(call, now));
        match out {
            Ok(v) => proto::reply(&req.id, v),
            Err(e) => {
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
            Call::TemplatesList { after, limit } => self.templates_list(after, limit),
            Call::TemplatesGet(p) => self.templates_get(&p.id, p.revision),
            Call::TemplatesPut(p) => self.templates_put(*p, now),
            Call::TemplatesDelete(p) => self.templates_delete(&p.id, p.base_revision, now),
            Call::TemplatesRevisions { id, before, limit } => {
                self.templates_revisions(&id, before, limit)
            }
            Call::TemplatesSearch {
                query,
                limit,
                folder,
                tag,
            } => self.templates_search(&query, limit, folder.as_deref(), tag.as_deref(), now),
            Call::TemplatesFacets => self.templates_facets(),
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
            Call::Doctor(_) => Err(ErrorBody::new(
                ErrorCode::Internal,
                "doctor is served by the connection, not the service",
            )),
        }
    }

    /// Gives up on in-flight sends whose lease ran out: `failed`, never re-sent.
    pub fn expire(&mut self, now: u64) {
        let gone = self.meter.expire_keys(now);
        self.close_sends(
            gone,
            SendState::Sending,
            SendState::Failed,
            LEASE_EXPIRED,
            now,
        );
    }

    /// Drops queued sends nobody began long after their slot: `cancelled`, never sent.
    pub fn abandon(&mut self, now: u64) {
        let gone = self.meter.abandon(now);
        self.close_sends(
            gone,
            SendState::Queued,
            SendState::Cancelled,
            ABANDONED,
            now,
        );
    }

    /// Records sends the meter let go of (`from` -> `to` with `why`) and frees their keys.
    fn close_sends(
        &mut self,
        sends: Vec<(i64, String)>,
        from: SendState,
        to: SendState,
        why: &str,
        now: u64,
    ) {
        for (id, key) in sends {
            warn!("send {id}: {why}");
            if let Err(e) = self.store.transition(id, &[from], to, Some(why), now) {
                crate::error!("send {id}: cannot record it as {}: {e}", to.as_str());
            }
            self.released(&key, Some(id), Some(to), now);
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

    // ---- templates ----

    fn templates_list(&mut self, after: Option<String>, limit: usize) -> Outcome {
        let rows = self
            .store
            .templates_after(after.as_deref(), limit + 1)
            .map_err(internal)?;
        let mut templates = Vec::new();
        // Usage of the page's templates that were ever sent, for ranking: beside the templates,
        // not inside them (a template's JSON stays exactly the library format).
        let mut usage = Vec::new();
        let mut bytes = 0;
        let mut last_id = None;
        for row in rows.iter().take(limit) {
            if !templates.is_empty() && bytes + row.body_json.len() > PAGE_BYTES {
                break;
            }
            templates.push(parse_body(&row.id, &row.body_json)?);
            bytes += row.body_json.len() + 1;
            if row.usage_count > 0 {
                let u = json!({"id": row.id, "usage_count": row.usage_count,
                               "last_used_at": row.last_used_at});
                bytes += u.to_string().len() + 1;
                usage.push(u);
            }
            last_id = Some(row.id.as_str());
        }
        let next = if rows.len() > templates.len() {
            last_id.map(encode_cursor)
        } else {
            None
        };
        let version = self.store.library_version().map_err(internal)?;
        Ok(
            json!({ "templates": templates, "usage": usage, "next_cursor": next,
                   "library_version": version }),
        )
    }

    fn template_row(&self, id: &str) -> Result<StoredTemplate, ErrorBody> {
        self.store
            .template(id)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("no template {id:?}")))
    }

    fn templates_get(&mut self, id: &str, revision: Option<u32>) -> Outcome {
        let cur = self.template_row(id)?;
        let (body, rev, created_at) = match revision {
            None => (cur.body_json.clone(), cur.revision, None),
            Some(r) => {
                let (body, at) = self
                    .store
                    .template_revision(id, r)
                    .map_err(internal)?
                    .ok_or_else(|| {
                        not_found(format!(
                            "template {id:?} has no revision {r} (the current one is {})",
                            cur.revision
                        ))
                    })?;
                (body, r, Some(at))
            }
        };
        Ok(json!({
            "template": parse_body(id, &body)?,
            "revision": rev,
            "created_at": created_at,
            "current_revision": cur.revision,
            "deleted_at": cur.deleted_at,
            "updated_at": cur.updated_at,
            "usage_count": cur.usage_count,
            "last_used_at": cur.last_used_at,
        }))
    }

    fn library_changed(&mut self, reason: &str, ids: Vec<String>) {
        let version = self.store.library_version().unwrap_or(0);
        let count = ids.len();
        let ids: Vec<String> = ids.into_iter().take(MAX_EVENT_IDS).collect();
        self.emit(
            "library.changed",
            json!({ "library_version": version, "reason": reason, "ids": ids, "count": count }),
        );
    }

    fn templates_put(&mut self, p: TemplatePutParams, now: u64) -> Outcome {
        let mut t = p.template;
        let out = self
            .store
            .put_template(&t, p.base_revision, now)
            .map_err(internal)?;
        let (revision, created, changed) = match out {
            PutOutcome::Created(r) => (r, true, true),
            PutOutcome::Updated(r) => (r, false, true),
            PutOutcome::Unchanged(r) => (r, false, false),
            PutOutcome::Conflict { current } => {
                return Err(ErrorBody::new(
                    ErrorCode::Conflict,
                    format!(
                        "template {:?} is at revision {current}, not {}: it was changed \
                         elsewhere; reload it",
                        t.id,
                        p.base_revision.unwrap_or(0)
                    ),
                )
                .with_data(json!({ "current_revision": current })))
            }
        };
        if changed {
            t.revision = revision;
            self.library.upsert(&t);
            self.library_changed("put", vec![t.id.clone()]);
        }
        Ok(json!({ "id": t.id, "revision": revision, "created": created, "changed": changed }))
    }

    fn templates_delete(&mut self, id: &str, base: Option<u32>, now: u64) -> Outcome {
        match self
            .store
            .delete_template(id, base, now)
            .map_err(internal)?
        {
            DeleteOutcome::Deleted { revision } => {
                self.library.remove(id);
                self.library_changed("delete", vec![id.to_string()]);
                Ok(json!({ "id": id, "deleted": true, "revision": revision }))
            }
            DeleteOutcome::AlreadyDeleted { revision } => {
                Ok(json!({ "id": id, "deleted": true, "revision": revision }))
            }
            DeleteOutcome::NotFound => Err(not_found(format!("no template {id:?}"))),
            DeleteOutcome::Conflict { current } => Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!("template {id:?} is at revision {current}: it was changed elsewhere"),
            )
            .with_data(json!({ "current_revision": current }))),
        }
    }

    fn templates_revisions(&mut self, id: &str, before: Option<u32>, limit: usize) -> Outcome {
        let cur = self.template_row(id)?;
        let mut revs = self
            .store
            .revisions(id, before, limit + 1)
            .map_err(internal)?;
        let next = if revs.len() > limit {
            revs.truncate(limit);
            revs.last().map(|r| format!("r{}", r.revision))
        } else {
            None
        };
        Ok(json!({
            "id": id,
            "current_revision": cur.revision,
            "deleted_at": cur.deleted_at,
            "revisions": revs,
            "next_cursor": next,
        }))
    }

    fn templates_search(
        &mut self,
        query: &str,
        limit: usize,
        folder: Option<&str>,
        tag: Option<&str>,
        now: u64,
    ) -> Outcome {
        self.library.load(&self.store)?;
        let filtered = folder.is_some() || tag.is_some();
        let index = self.library.index(now);
        let opts = SearchOptions {
            limit: if filtered { index.len() } else { limit },
            now_ms: Some(now),
            boost: None,
        };
        let hits = index.search(query, &opts);
        let ids: Vec<(String, f64, u16, Value, Value)> = hits
            .iter()
            .map(|h| {
                (
                    index.id(h.index).to_string(),
                    h.score,
                    h.relevance,
                    serde_json::to_value(h.matched).unwrap_or_default(),
                    serde_json::to_value(h.quality).unwrap_or_default(),
                )
            })
            .collect();
        let in_folder = |f: &str| match folder {
            None => true,
            Some(want) => f == want || f.strip_prefix(want).is_some_and(|r| r.starts_with('/')),
        };
        let mut results = Vec::new();
        let mut bytes = 0;
        let mut truncated = false;
        for (id, score, relevance, matched, quality) in ids {
            if results.len() >= limit {
                break;
            }
            let Some(&i) = self.library.pos.get(&id) else {
                continue;
            };
            let e = &self.library.entries[i];
            if !in_folder(&e.folder) || tag.is_some_and(|t| !e.tags.iter().any(|x| x == t)) {
                continue;
            }
            let Some(row) = self.store.template(&id).map_err(internal)? else {
                continue;
            };
            if bytes + row.body_json.len() > PAGE_BYTES && !results.is_empty() {
                truncated = true;
                break;
            }
            bytes += row.body_json.len() + 200;
            results.push(json!({
                "id": id,
                "title": e.title,
                "folder": e.folder,
                "tags": e.tags,
                "shortcut": e.shortcut,
                "usage_count": row.usage_count,
                "last_used_at": row.last_used_at,
                "score": score,
                "relevance": relevance,
                "matched": matched,
                "quality": quality,
                "template": parse_body(&id, &row.body_json)?,
            }));
        }
        Ok(json!({ "results": results, "truncated": truncated }))
    }

    fn templates_facets(&mut self) -> Outcome {
        self.library.load(&self.store)?;
        let mut folders: BTreeMap<&str, u32> = BTreeMap::new();
        let mut tags: BTreeMap<&str, u32> = BTreeMap::new();
        for e in &self.library.entries {
            *folders.entry(e.folder.as_str()).or_default() += 1;
            for t in &e.tags {
                *tags.entry(t.as_str()).or_default() += 1;
            }
        }
        let list = |m: BTreeMap<&str, u32>| -> Vec<Value> {
            m.into_iter()
                .map(|(name, count)| json!({ "name": name, "count": count }))
                .collect()
        };
        Ok(json!({
            "templates": self.library.entries.len(),
            "folders": list(folders),
            "tags": list(tags),
        }))
    }

    fn templates_import(&mut self, p: TemplateImportParams, now: u64) -> Outcome {
        let templates = match &p.session {
            None => p.templates,
            Some(session) => {
                if !self.imports.contains_key(session) && self.imports.len() >= MAX_IMPORT_SESSIONS
                {
                    return Err(ErrorBody::new(
                        ErrorCode::Conflict,
                        format!(
                            "{MAX_IMPORT_SESSIONS} imports are in progress already; finish one \
                             or wait {} s for an abandoned one to expire",
                            IMPORT_IDLE_MS / 1000
                        ),
                    ));
                }
                let batch: usize = p.templates.iter().map(Template::serialized_len).sum();
                let others: usize = self
                    .imports
                    .iter()
                    .filter(|(k, _)| *k != session)
                    .map(|(_, s)| s.bytes)
                    .sum();
                let staged = self.imports.entry(session.clone()).or_insert(Staged {
                    templates: Vec::new(),
                    bytes: 0,
                    touched: now,
                });
                staged.touched = now;
                if staged.templates.len() + p.templates.len() > params::MAX_IMPORT {
                    self.imports.remove(session);
                    return Err(params::invalid(format!(
                        "templates.import: more than {} templates in session {session:?}; \
                         the session was dropped",
                        params::MAX_IMPORT
                    )));
                }
                let (session_max, total_max) = self.import_budget;
                if staged.bytes + batch > session_max {
                    self.imports.remove(session);
                    return Err(params::invalid(format!(
                        "templates.import: session {session:?} would hold more than {} MiB of \
                         templates; the session was dropped and nothing was imported",
                        session_max >> 20
                    )));
                }
                if others + staged.bytes + batch > total_max {
                    let mine = staged.bytes;
                    return Err(ErrorBody::new(
                        ErrorCode::Conflict,
                        format!(
                            "templates.import: the imports in progress hold {} MiB and this batch \
                             would pass the {} MiB they may hold together; finish one or wait \
                             {} s for an abandoned one to expire (session {session:?} keeps its \
                             {} MiB)",
                            (others + mine) >> 20,
                            total_max >> 20,
                            IMPORT_IDLE_MS / 1000,
                            mine >> 20
                        ),
                    ));
                }
                staged.bytes += batch;
                staged.templates.extend(p.templates);
                if !p.last {
                    let n = staged.templates.len();
                    return Ok(json!({ "session": session, "staged": n, "committed": false }));
                }
                self.imports
                    .remove(session)
                    .map(|s| s.templates)
                    .unwrap_or_default()
            }
        };
        let mut seen = HashSet::new();
        for (i, t) in templates.iter().enumerate() {
            if !seen.insert(t.id.as_str()) {
                return Err(params::invalid(format!(
                    "templates.import: `templates[{i}].id`: duplicate template id {:?}; nothing \
                     was imported",
                    t.id
                ))
                .with_data(json!({ "field": format!("templates[{i}].id") })));
            }
        }
        let report = self.store.import(&templates, now).map_err(internal)?;
        let changed = report.created + report.updated;
        if changed > 0 {
            for t in &templates {
                self.library.upsert(t);
            }
            self.library_changed("import", templates.iter().map(|t| t.id.clone()).collect());
        }
        let version = self.store.library_version().map_err(internal)?;
        Ok(json!({
            "committed": true,
            "templates": templates.len(),
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "library_version": version,
        }))
    }

    // ---- sends ----

    fn reserve(&mut self, p: ReserveParams, platform: Platform, now: u64) -> Outcome {
        let spec = self.rules.spec(platform).clone();
        if spec.quota.is_some() && p.conversation.as_deref().unwrap_or("").is_empty() {
            return Err(params::invalid(format!(
                "send.reserve: {} sends need `conversation` (the user the quota counts for)",
                platform.as_str()
            )));
        }
        let key = spec.key(&p.workspace, p.conversation.as_deref());
        let new = NewSend {
            idempotency_key: &p.idempotency_key,
            template_id: &p.template_id,
            revision: p.revision,
            part_index: p.part_index,
            platform: &p.platform,
            workspace: &p.workspace,
            conversation: p.conversation.as_deref(),
            customer: p.customer.as_deref(),
            payload: &p.payload,
            meter_key: &key,
        };
        // The row is durable before the meter hears of it and before the reply.
        let (row, created) = self.store.reserve(&new, now).map_err(internal)?;
        let id = row.send_id;
        if !created && row.payload_sha256 != crate::store::sha256_hex(&p.payload) {
            warn!(
                "send {id}: idempotency key {:?} reused with a different payload; refused",
                p.idempotency_key
            );
            return Err(ErrorBody::new(
                ErrorCode::Conflict,
                format!(
                    "idempotency key {:?} belongs to send {id}, whose payload differs: a retry \
                     must repeat the same payload, a new send needs a new key",
                    p.idempotency_key
                ),
            )
            .with_data(json!({ "send_id": id, "state": row.state })));
        }
        let key = self.row_key(&row).unwrap_or(key);
        let rule = self.rule_of_key(&key);
        if row.state != SendState::Queued {
            // a retry of a send that has moved on: the same send, never a second one
            return Ok(json!({
                "send_id": id,
                "delay_ms": 0,
                "not_before_ms": null,
                "state": row.state,
                "replayed": true,
                "error": row.error,
            }));
        }
        match self.meter.try_reserve(&key, rule, id, now) {
            Ok(delay) => Ok(json!({
                "send_id": id,
                "delay_ms": delay,
                "not_before_ms": now + delay,
                "state": "queued",
                "replayed": !created,
            })),
            Err(refusal) => {
                let err = match refusal {
                    Refusal::Quota(r) => quota_error(r),
                    Refusal::QueueFull { limit } => ErrorBody::new(
                        ErrorCode::QueueFull,
                        format!(
                            "{limit} sends are queued for this {} already; wait for them",
                            if spec.per == Per::Workspace {
                                "workspace"
                            } else {
                                "conversation"
                            }
                        ),
                    )
                    .with_data(json!({ "limit": limit })),
                };
                // recorded as failed (never released): a retry of this key gets the same answer
                self.store
                    .refuse(id, &format!("{}: {}", err.code.as_str(), err.message))
                    .map_err(internal)?;
                let mut data = err.data.clone().unwrap_or_else(|| json!({}));
                data["send_id"] = json!(id);
                Err(err.with_data(data))
            }
        }
    }

    fn row(&self, id: i64) -> Result<SendRow, ErrorBody> {
        self.store
            .send(id)
            .map_err(internal)?
            .ok_or_else(|| not_found(format!("no send {id}")))
    }

    fn begin(&mut self, id: i64, now: u64) -> Outcome {
        let row = self.row(id)?;
        match row.state {
            SendState::Queued => {}
            SendState::Sending => {
                return Err(conflict(
                    id,
                    row.state,
                    "it has begun already (its slot was granted); report it with send.done",
                ))
            }
            s => return Err(conflict(id, s, "it cannot begin")),
        }
        let key = self
            .row_key(&row)
            .ok_or_else(|| ErrorBody::new(ErrorCode::Internal, format!("send {id}: no rule")))?;
        let rule = self.rule_of_key(&key);
        match self.meter.begin(id, now) {
            Begin::Go => {
                match self
                    .store
                    .transition(id, &[SendState::Queued], SendState::Sending, None, now)
                {
                    Ok(true) => Ok(json!({ "go": true })),
                    other => {
                        // Not recorded: do not send. Put it back in line (at the end).
                        self.meter.finish(id, now, false);
                        self.meter.reserve(&key, rule, id, now);
                        Err(match other {
                            Err(e) => internal(e),
                            _ => ErrorBody::new(
                                ErrorCode::Internal,
                                format!("send {id} changed state while beginning"),
                            ),
                        })
                    }
                }
            }
            Begin::Wait(ms) => {
                Ok(json!({ "go": false, "delay_ms": ms, "not_before_ms": now + ms }))
            }
            Begin::NotQueued => {
                // queued in the store but unknown to the meter: queue it again
                warn!("send {id} was queued but not metered; queued again");
                let ms = self.meter.reserve(&key, rule, id, now).max(1);
                Ok(json!({ "go": false, "delay_ms": ms, "not_before_ms": now + ms }))
            }
            Begin::Refused(r) => {
                let err = quota_error(r);
                self.store
                    .transition(
                        id,
                        &[SendState::Queued],
                        SendState::Failed,
                        Some(&format!("quota_exceeded: {}", err.message)),
                        now,
                    )
                    .map_err(internal)?;
                self.released(&key, Some(id), Some(SendState::Failed), now);
                Err(err)
            }
        }
    }

    fn done(&mut self, p: DoneParams, now: u64) -> Outcome {
        let row = self.row(p.send_id)?;
        let id = row.send_id;
        let (to, error) = if p.ok {
            (SendState::Sent, None)
        } else {
            let e = p
                .error
                .unwrap_or_else(|| "the browser reported the send as failed".to_string());
            (SendState::Failed, Some(e))
        };
        let key = self.row_key(&row);
        match row.state {
            SendState::Sending => {
                // The interval runs from now, whatever the store says.
                if !self.meter.finish(id, now, p.ok) {
                    debug!("send {id}: done, but the meter had no send in flight");
                }
            }
            SendState::Failed
                if matches!(row.error.as_deref(), Some(LEASE_EXPIRED | RESTARTED)) =>
            {
                // A late report after the lease ran out or the daemon restarted: the outcome was
                // unknown and the browser knows it. Record what happened (once: the row leaves
                // the unknown state), and keep the interval from this moment. The slot is never
                // granted again (`send.begin` refuses a failed send).
                info!(
                    "send {id}: late report after {} (ok={})",
                    if row.error.as_deref() == Some(RESTARTED) {
                        "a daemon restart"
                    } else {
                        "the lease ran out"
                    },
                    p.ok
                );
                if let Some(k) = &key {
                    let rule = self.rule_of_key(k);
                    self.meter.restore_last_done(k, rule, now);
                }
            }
            SendState::Sent if p.ok => return Ok(json!({ "send_id": id, "state": row.state })),
            SendState::Failed if !p.ok => return Ok(json!({ "send_id": id, "state": row.state })),
            SendState::Queued => {
                return Err(conflict(
                    id,
                    row.state,
                    "call send.begin and wait for go first",
                ))
            }
            s => return Err(conflict(id, s, "it cannot be reported done")),
        }
        let moved = self
            .store
            .transition(id, &[row.state], to, error.as_deref(), now)
            .map_err(internal)?;
        if !moved {
            return Err(ErrorBody::new(
                ErrorCode::Internal,
                format!("send {id} changed state while being reported done"),
            ));
        }
        if p.ok && row.part_index == Some(0) {
            if let Some(t) = &row.template_id {
                match self.store.count_use(t, now) {
                    Ok(()) => self.library.used(t, now),
                    Err(e) => warn!("{e}"),
                }
            }
        }
        if let Some(k) = key {
            self.released(&k, Some(id), Some(to), now);
        }
        Ok(json!({ "send_id": id, "state": to }))
    }

    fn cancel(&mut self, id: i64, now: u64) -> Outcome {
        let row = self.row(id)?;
        match row.state {
            SendState::Queued => {
                self.meter.cancel(id);
                let moved = self
                    .store
                    .transition(id, &[SendState::Queued], SendState::Cancelled, None, now)
                    .map_err(internal)?;
                if !moved {
                    return Err(ErrorBody::new(
                        ErrorCode::Internal,
                        format!("send {id} changed state while being cancelled"),
                    ));
                }
                if let Some(k) = self.row_key(&row) {
                    self.released(&k, Some(id), Some(SendState::Cancelled), now);
                }
                Ok(json!({ "send_id": id, "state": SendState::Cancelled }))
            }
            SendState::Cancelled => Ok(json!({ "send_id": id, "state": row.state })),
            s => Err(conflict(id, s, "it can no longer be cancelled")),
        }
    }

    fn history(&mut self, filter: HistoryFilter, limit: usize) -> Outcome {
        let rows = self
            .store
            .history_query(&filter, limit + 1)
            .map_err(internal)?;
        let more = rows.len() > limit;
        let mut out = Vec::with_capacity(rows.len().min(limit));
        let mut bytes = 0;
        let mut truncated = false;
        let mut last = None;
        for row in rows.into_iter().take(limit) {
            let v = serde_json::to_value(&row)
                .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
            let size = v.to_string().len() + 1;
            if !out.is_empty() && bytes + size > PAGE_BYTES {
                truncated = true;
                break;
            }
            bytes += size;
            last = Some(row.send_id);
            out.push(v);
        }
        let next = if more || truncated {
            last.map(|id| format!("h{id}"))
        } else {
            None
        };
        Ok(json!({ "rows": out, "next_cursor": next, "truncated": truncated }))
    }

    // ---- settings and the meter ----

    fn settings_set(&mut self, p: SettingsPatch, now: u64) -> Outcome {
        if let Some(days) = p.history_retention_days {
            let v = serde_json::to_string(&days).unwrap_or_else(|_| "null".into());
            self.store
                .set_setting(RETENTION_KEY, &v)
                .map_err(internal)?;
            self.settings.history_retention_days = days;
            // a shorter retention applies at once
            self.prune(now);
        }
        self.emit("settings.changed", json!({ "what": "settings" }));
        Ok(self.settings.to_json())
    }

    fn observe(&mut self, p: ObserveParams, platform: Platform, now: u64) -> Outcome {
        let spec = self.rules.spec(platform).clone();
        let key = spec.key(&p.workspace, p.conversation.as_deref());
        if spec.quota.is_none() {
            // nothing a user does changes how fast this platform may be sent to
            return Ok(json!({ "key": key, "recorded": false, "quota": null }));
        }
        if p.conversation.as_deref().unwrap_or("").is_empty() {
            return Err(params::invalid(format!(
                "meter.observe: {} needs `conversation` (the user the quota counts for)",
                platform.as_str()
            )));
        }
        let at_ms = p.at_ms.unwrap_or(now).min(now);
        self.store
            .add_meter_event(&key, p.event.as_str(), at_ms)
            .map_err(internal)?;
        let action = match p.event {
            ObservedEvent::UserMessage => Interaction::UserMessage { at_ms },
            ObservedEvent::EnterSession => Interaction::EnterSession { at_ms },
        };
        self.meter.observe(&key, spec.rule(), action);
        let quota = match self.meter.quota(&key, now) {
            Some(Ok(a)) => json!({ "allowed": true, "remaining": a.remaining,
                                   "window_ends_at_ms": a.window_ends_at_ms }),
            Some(Err(r)) => json!({ "allowed": false, "errcode": r.errcode(), "refusal": r }),
            None => Value::Null,
        };
        if self.meter.head(&key, now).is_some() {
            self.released(&key, None, None, now);
        }
        Ok(json!({ "key": key, "recorded": true, "at_ms": at_ms, "quota": quota }))
    }

    fn rules_set(&mut self, spec: RuleSpec, now: u64) -> Outcome {
        let json = serde_json::to_string(&spec)
            .map_err(|e| ErrorBody::new(ErrorCode::Internal, e.to_string()))?;
        self.store
            .set_rule(&spec.platform, &json, now)
            .map_err(internal)?;
        self.rules = Rules::load(&self.store).map_err(internal)?;
        self.retune();
        self.emit("settings.changed", json!({ "what": "meter.rules" }));
        Ok(json!({ "rules": self.rules.to_json() }))
    }

    /// Gives every key the meter tracks its platform's current rule (queued sends too).
    fn retune(&mut self) {
        let rules = &self.rules;
        self.meter
            .set_rules(|key| key_platform(key).and_then(|p| rules.by_name(&p).map(RuleSpec::rule)));
    }

    fn rules_reset(&mut self, platform: Platform) -> Outcome {
        self.store
            .delete_rule(platform.as_str())
            .map_err(internal)?;
        self.rules = Rules::load(&self.store).map_err(internal)?;
        self.retune();
        self.emit("settings.changed", json!({ "what": "meter.rules" }));
        Ok(json!({ "rules": self.rules.to_json() }))
    }
}

fn parse_body(id: &str, body: &str) -> Result<Value, ErrorBody> {
    serde_json::from_str(body).map_err(|e| {
        ErrorBody::new(
            ErrorCode::Internal,
            format!("store: template {id:?} is not valid JSON: {e}"),
        )
    })
}

/// The meter key a send of `platform` to `workspace` / `conversation` has under the built-in
/// rules (for tools and tests).
pub fn default_key(platform: Platform, workspace: &str, conversation: Option<&str>) -> String {
    let spec = RuleSpec::default_for(platform);
    meter_key(platform.as_str(), spec.per, workspace, conversation)
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
    /// Udesk's default interval: one second plus the delivery margin (shared::meter).
    const UDESK_MS: u64 = quiver_shared::meter::Rule::UDESK.min_interval_ms;
    use super::*;
    use crate::store::tests::Scratch;
    use quiver_shared::proto::parse_request;

    fn req(method: &str, params: Value) -> proto::Request {
        let frame = json!({ "id": 1, "method": method, "params": params }).to_string();
        parse_request(frame.as_bytes()).unwrap()
    }

    fn ok(svc: &mut Service, method: &str, params: Value, now: u64) -> Value {
        let r = svc.handle(&req(method, params), now);
        assert!(r.get("error").is_none(), "{method}: {r}");
        r["result"].clone()
    }

    fn err(svc: &mut Service, method: &str, params: Value, now: u64) -> (String, String) {
        let r = svc.handle(&req(method, params), now);
        let e = &r["error"];
        assert!(e.is_object(), "{method}: expected an error, got {r}");
        (
            e["code"].as_str().unwrap().to_string(),
            e["message"].as_str().unwrap().to_string(),
        )
    }

    fn err_full(svc: &mut Service, method: &str, params: Value, now: u64) -> Value {
        let r = svc.handle(&req(method, params), now);
        assert!(
            r["error"].is_object(),
            "{method}: expected an error, got {r}"
        );
        r["error"].clone()
    }

    fn open(s: &Scratch, now: u64) -> Service {
        Service::start(Store::open(&s.db(), now).unwrap(), now).unwrap()
    }

    fn reserve_params(key: &str, ws: &str) -> Value {
        json!({
            "idempotency_key": key, "platform": "udesk", "workspace": ws,
            "template_id": "greeting", "revision": 1, "part_index": 0,
            "payload": format!("{{\"text\":\"{key}\"}}"),
        })
    }

    fn send(
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

    fn events(svc: &mut Service, name: &str) -> Vec<Value> {
        svc.take_events()
            .into_iter()
            .filter(|e| e["event"] == name)
            .map(|e| e["data"].clone())
            .collect()
    }

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

    #[test]
    fn templates_pages_chain_without_gaps() {
        let s = Scratch::new("pages");
        let mut svc = open(&s, 0);
        let all = ok(&mut svc, "templates.list", json!({}), 0);
        let all: Vec<String> = all["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        assert!(all.len() >= 4, "{all:?}");
        let mut seen = vec![];
        let mut cursor = Value::Null;
        loop {
            let mut p = json!({"limit": 2});
            if !cursor.is_null() {
                p["cursor"] = cursor.clone();
            }
            let page = ok(&mut svc, "templates.list", p, 0);
            for t in page["templates"].as_array().unwrap() {
                seen.push(t["id"].as_str().unwrap().to_string());
            }
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert_eq!(seen, all);
        let (code, msg) = err(&mut svc, "templates.list", json!({"cursor": "zz"}), 0);
        assert_eq!(code, "invalid_params");
        assert!(msg.contains("cursor"));
        let (code, _) = err(&mut svc, "templates.list", json!({"limit": 0}), 0);
        assert_eq!(code, "invalid_params");
    }

    #[test]
    fn reserve_validates_fields() {
        let s = Scratch::new("validate");
        let mut svc = open(&s, 0);
        let mut p = reserve_params("k", "w");
        p["platform"] = json!("slack");
        let (code, msg) = err(&mut svc, "send.reserve", p, 0);
        assert_eq!(code, "invalid_params");
        assert!(msg.contains("platform") && msg.contains("slack"), "{msg}");
        let mut p = reserve_params("k", "w");
        p["payload"] = json!("");
        let (_, msg) = err(&mut svc, "send.reserve", p, 0);
        assert!(msg.contains("payload"), "{msg}");
        let mut p = reserve_params("k", "w");
        p["payload"] = json!("x".repeat(MAX_PAYLOAD + 1));
        let (_, msg) = err(&mut svc, "send.reserve", p, 0);
        assert!(msg.contains("payload") && msg.contains("limit"), "{msg}");
        let mut p = reserve_params("k", "w");
        p.as_object_mut().unwrap().remove("workspace");
        let (code, msg) = err(&mut svc, "send.reserve", p, 0);
        assert_eq!(code, "invalid_params");
        assert!(msg.contains("workspace"), "{msg}");
        assert!(ok(&mut svc, "history.list", json!({}), 0)["rows"]
            .as_array()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn three_sends_are_spaced_from_done_and_idempotent() {
        let s = Scratch::new("flow");
        let mut svc = open(&s, 0);
        let t0 = 1_000_000;
        let ids: Vec<i64> = (0..3)
            .map(|i| {
                let r = ok(
                    &mut svc,
                    "send.reserve",
                    reserve_params(&format!("k{i}"), "w"),
                    t0,
                );
                assert_eq!(r["state"], "queued");
                assert_eq!(r["delay_ms"], UDESK_MS * i);
                assert_eq!(r["not_before_ms"], t0 + UDESK_MS * i);
                r["send_id"].as_i64().unwrap()
            })
            .collect();
        let begin = |svc: &mut Service, id: i64, now: u64| {
            ok(svc, "send.begin", json!({"send_id": id}), now)
        };
        assert_eq!(begin(&mut svc, ids[0], t0), json!({"go": true}));
        assert_eq!(begin(&mut svc, ids[1], t0 + 10)["go"], false);
        svc.take_events();
        let r = ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[0], "ok": true}),
            t0 + 100,
        );
        assert_eq!(r, json!({"send_id": ids[0], "state": "sent"}));
        // every connection hears that the slot freed, and who is next
        let rel = events(&mut svc, "meter.released");
        assert_eq!(rel.len(), 1, "{rel:?}");
        assert_eq!(rel[0]["send_id"], ids[0]);
        assert_eq!(rel[0]["state"], "sent");
        assert_eq!(rel[0]["platform"], "udesk");
        assert_eq!(
            rel[0]["next"],
            json!({"send_id": ids[1], "delay_ms": UDESK_MS, "not_before_ms": t0 + 100 + UDESK_MS})
        );
        // repeated done is idempotent
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[0], "ok": true}),
            t0 + 101,
        );
        // done at t0 + 100: the next may go UDESK_MS later, not a millisecond sooner
        let free = t0 + 100 + UDESK_MS;
        let r = begin(&mut svc, ids[1], free - 1);
        assert_eq!(
            r,
            json!({"go": false, "delay_ms": 1, "not_before_ms": free})
        );
        assert_eq!(begin(&mut svc, ids[1], free), json!({"go": true}));
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[1], "ok": false, "error": "tab closed"}),
            free + 100,
        );
        assert_eq!(
            begin(&mut svc, ids[2], free + 100 + UDESK_MS),
            json!({"go": true})
        );
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[2], "ok": true}),
            free + 200 + UDESK_MS,
        );

        // the same idempotency key again (a background that restarted): the same send, no new
        // row, nothing queued, nothing counted
        let r = ok(
            &mut svc,
            "send.reserve",
            reserve_params("k0", "w"),
            t0 + 5000,
        );
        assert_eq!(
            r,
            json!({"send_id": ids[0], "delay_ms": 0, "not_before_ms": null, "state": "sent",
                   "replayed": true, "error": null})
        );
        let e = err_full(
            &mut svc,
            "send.begin",
            json!({"send_id": ids[0]}),
            t0 + 5000,
        );
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["state"], "sent");
        let rows = ok(&mut svc, "history.list", json!({}), t0 + 5000)["rows"].clone();
        let states: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, vec!["sent", "failed", "sent"]);
        assert_eq!(rows[1]["error"], "tab closed");
        // two of the three part-0 sends went out: counted twice, not three times
        let g = ok(&mut svc, "templates.get", json!({"id": "greeting"}), t0);
        assert_eq!(g["usage_count"], 2);
        // templates.list carries the usage of sent templates beside them, for ranking
        let l = ok(&mut svc, "templates.list", json!({}), t0);
        assert_eq!(
            l["usage"],
            json!([{"id": "greeting", "usage_count": 2, "last_used_at": free + 200 + UDESK_MS}])
        );
        assert!(l["templates"][0].get("usage_count").is_none());
        // an edit is a new revision and keeps the usage
        let mut edited = g["template"].clone();
        edited["title"] = json!("Greeting, edited");
        ok(&mut svc, "templates.put", json!({"template": edited}), t0);
        let g = ok(&mut svc, "templates.get", json!({"id": "greeting"}), t0);
        assert_eq!(g["usage_count"], 2);
        assert_eq!(g["template"]["revision"], 2);
        assert_eq!(g["last_used_at"], free + 200 + UDESK_MS);

        // the same key with another payload is a bug in the caller: refused
        let mut p = reserve_params("k1", "w");
        p["payload"] = json!("different");
        let e = err_full(&mut svc, "send.reserve", p, t0 + 6000);
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["send_id"], ids[1]);
    }

    #[test]
    fn state_errors() {
        let s = Scratch::new("states");
        let mut svc = open(&s, 0);
        let (code, _) = err(&mut svc, "send.begin", json!({"send_id": 42}), 0);
        assert_eq!(code, "not_found");
        let id = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        let (code, msg) = err(&mut svc, "send.done", json!({"send_id": id, "ok": true}), 0);
        assert_eq!(code, "conflict");
        assert!(msg.contains("queued"), "{msg}");
        let r = ok(&mut svc, "send.cancel", json!({"send_id": id}), 0);
        assert_eq!(r["state"], "cancelled");
        ok(&mut svc, "send.cancel", json!({"send_id": id}), 0);
        let (code, _) = err(&mut svc, "send.begin", json!({"send_id": id}), 0);
        assert_eq!(code, "conflict");
        // a cancelled send lets the next one go at once
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 0)["go"],
            true
        );
        // a begin retried after go (the reply was lost): the slot is not granted twice
        let e = err_full(&mut svc, "send.begin", json!({"send_id": b}), 1);
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["state"], "sending");
        let (code, _) = err(&mut svc, "send.cancel", json!({"send_id": b}), 1);
        assert_eq!(code, "conflict");
    }

    #[test]
    fn expired_lease_fails_the_send_and_frees_the_key() {
        let s = Scratch::new("lease");
        let mut svc = open(&s, 0);
        let a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": a}), 0)["go"],
            true
        );
        let lease = Rule::UDESK.lease_ms;
        svc.take_events();
        svc.expire(lease);
        let rel = events(&mut svc, "meter.released");
        assert_eq!(rel[0]["send_id"], a);
        assert_eq!(rel[0]["next"]["send_id"], b);
        let rows = ok(&mut svc, "history.list", json!({}), lease)["rows"].clone();
        assert_eq!(rows[1]["state"], "failed");
        assert_eq!(rows[1]["error"], LEASE_EXPIRED);
        assert_eq!(
            ok(
                &mut svc,
                "send.begin",
                json!({"send_id": b}),
                lease + UDESK_MS
            )["go"],
            true
        );
        // a late report of `a` is recorded, and keeps the interval from now
        let r = ok(
            &mut svc,
            "send.done",
            json!({"send_id": a, "ok": true}),
            lease + 1500,
        );
        assert_eq!(r["state"], "sent");
    }

    #[test]
    fn queued_sends_nobody_begins_are_cancelled_not_sent() {
        let s = Scratch::new("abandon");
        let mut svc = open(&s, 0);
        let a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        svc.tick(quiver_shared::meter::QUEUE_ABANDON_MS - 1);
        let rows = ok(&mut svc, "history.list", json!({}), 1)["rows"].clone();
        assert_eq!(rows[0]["state"], "queued");
        svc.tick(quiver_shared::meter::QUEUE_ABANDON_MS);
        let rows = ok(&mut svc, "history.list", json!({}), 1)["rows"].clone();
        assert_eq!(rows[0]["state"], "cancelled");
        assert_eq!(rows[0]["error"], ABANDONED);
        // a browser that comes back late is told, and cannot post it
        let e = err_full(&mut svc, "send.begin", json!({"send_id": a}), 70_000);
        assert_eq!(e["code"], "conflict");
        // the workspace is free for the next send at once
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 70_000)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 70_000)["go"],
            true
        );
    }

    #[test]
    fn restart_fails_sending_and_requeues_queued() {
        let s = Scratch::new("restart");
        let (a, b, c);
        {
            let mut svc = open(&s, 0);
            a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
            b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
            c = ok(&mut svc, "send.reserve", reserve_params("c", "w"), 0)["send_id"].clone();
            assert_eq!(
                ok(&mut svc, "send.begin", json!({"send_id": a}), 500)["go"],
                true
            );
        }
        let mut svc = open(&s, 600);
        let rows = ok(&mut svc, "history.list", json!({}), 600)["rows"].clone();
        assert_eq!(rows[2]["state"], "failed");
        assert_eq!(rows[2]["error"], RESTARTED);
        // a's outcome is unknown: the key restarts as if it was done at the restart (600)
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 600),
            json!({"go": false, "delay_ms": UDESK_MS, "not_before_ms": 600 + UDESK_MS})
        );
        assert_eq!(
            ok(
                &mut svc,
                "send.begin",
                json!({"send_id": c}),
                600 + UDESK_MS
            )["go"],
            false
        );
        assert_eq!(
            ok(
                &mut svc,
                "send.begin",
                json!({"send_id": b}),
                600 + UDESK_MS
            )["go"],
            true
        );
    }

    fn tpl(id: &str, title: &str, text: &str) -> Value {
        json!({"id": id, "title": title, "folder": "Orders/Refunds", "tags": ["refund"],
               "parts": [{"type": "text", "text": text}]})
    }

    #[test]
    fn template_crud_keeps_revisions_and_announces_changes() {
        let s = Scratch::new("crud");
        let mut svc = open(&s, 0);
        svc.take_events();
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "一")}),
            10,
        );
        assert_eq!(
            r,
            json!({"id": "r", "revision": 1, "created": true, "changed": true})
        );
        let ev = events(&mut svc, "library.changed");
        assert_eq!(ev[0]["reason"], "put");
        assert_eq!(ev[0]["ids"], json!(["r"]));
        let v1 = ev[0]["library_version"].as_u64().unwrap();
        // a retried put changes nothing and says so
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "一")}),
            11,
        );
        assert_eq!(r["changed"], false);
        assert!(events(&mut svc, "library.changed").is_empty());
        // an editor that started from revision 1 saves revision 2; a stale one is refused
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "二"), "base_revision": 1}),
            12,
        );
        assert_eq!(r["revision"], 2);
        let e = err_full(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "三"), "base_revision": 1}),
            13,
        );
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["current_revision"], 2);
        let g = ok(
            &mut svc,
            "templates.get",
            json!({"id": "r", "revision": 1}),
            14,
        );
        assert_eq!(g["template"]["parts"][0]["text"], "一");
        assert_eq!(g["current_revision"], 2);
        assert_eq!(g["created_at"], 10);
        let revs = ok(
            &mut svc,
            "templates.revisions",
            json!({"id": "r", "limit": 1}),
            14,
        );
        assert_eq!(revs["revisions"][0]["revision"], 2);
        let more = ok(
            &mut svc,
            "templates.revisions",
            json!({"id": "r", "cursor": revs["next_cursor"]}),
            14,
        );
        assert_eq!(more["revisions"][0]["revision"], 1);
        assert!(more["next_cursor"].is_null());

        // search: pinyin initials of the Chinese title, folder and tag filters
        let hits = ok(&mut svc, "templates.search", json!({"query": "tkzc"}), 15);
        assert_eq!(hits["results"][0]["id"], "r", "{hits}");
        assert_eq!(hits["results"][0]["template"]["revision"], 2);
        let hits = ok(
            &mut svc,
            "templates.search",
            json!({"query": "", "folder": "Orders/Refunds"}),
            15,
        );
        assert_eq!(hits["results"].as_array().unwrap().len(), 1, "{hits}");
        // a folder includes its subfolders (the sample library has two more in Orders)
        let hits = ok(
            &mut svc,
            "templates.search",
            json!({"query": "", "folder": "Orders"}),
            15,
        );
        assert_eq!(hits["results"].as_array().unwrap().len(), 3, "{hits}");
        let hits = ok(
            &mut svc,
            "templates.search",
            json!({"query": "", "tag": "nope"}),
            15,
        );
        assert!(hits["results"].as_array().unwrap().is_empty());
        let f = ok(&mut svc, "templates.facets", json!({}), 15);
        assert!(f["folders"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "Orders/Refunds", "count": 1})));

        // delete: gone from lists and search, revisions kept, a put brings it back
        svc.take_events();
        let d = ok(&mut svc, "templates.delete", json!({"id": "r"}), 20);
        assert_eq!(d, json!({"id": "r", "deleted": true, "revision": 2}));
        let ev = events(&mut svc, "library.changed");
        assert!(ev[0]["library_version"].as_u64().unwrap() > v1);
        let list = ok(&mut svc, "templates.list", json!({}), 20);
        assert!(!list["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "r"));
        let hits = ok(&mut svc, "templates.search", json!({"query": "tkzc"}), 21);
        assert!(hits["results"].as_array().unwrap().is_empty(), "{hits}");
        assert_eq!(
            ok(&mut svc, "templates.get", json!({"id": "r"}), 21)["deleted_at"],
            20
        );
        let (code, _) = err(&mut svc, "templates.delete", json!({"id": "zz"}), 21);
        assert_eq!(code, "not_found");
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "二")}),
            22,
        );
        assert_eq!(r["revision"], 3);
        assert_eq!(
            ok(
                &mut svc,
                "templates.search",
                json!({"query": "tuikuan"}),
                23
            )["results"][0]["id"],
            "r"
        );
    }

    /// Four sessions of unbounded bytes grew the daemon from 12 MB to 544 MB: staging is
    /// bounded in bytes per session and in total, with errors that say so.
    #[test]
    fn import_staging_has_a_byte_budget() {
        let s = Scratch::new("import-bytes");
        let mut svc = open(&s, 0);
        // the real budgets scaled down 16 times (the logic is the same, the test is quick)
        svc.import_budget = (IMPORT_SESSION_BYTES / 16, IMPORT_TOTAL_BYTES / 16);
        let (session_max, total_max) = svc.import_budget;
        // one batch: 16 templates of ~16 KiB
        let body = "x".repeat(4 * 1024);
        let batch = |session: &str, b: usize, last: bool| {
            let templates: Vec<Value> = (0..16)
                .map(|i| {
                    json!({"id": format!("{session}-{b:03}-{i:03}"), "title": "T",
                           "parts": vec![json!({"type": "text", "text": body}); 4]})
                })
                .collect();
            json!({"session": session, "last": last, "templates": templates})
        };
        let per_batch: usize = batch("a", 0, false)["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                serde_json::from_value::<Template>(t.clone())
                    .unwrap()
                    .serialized_len()
            })
            .sum();
        let fits = session_max / per_batch; // batches one session may stage
        for b in 0..fits {
            ok(&mut svc, "templates.import", batch("a", b, false), 1);
        }
        let e = err_full(&mut svc, "templates.import", batch("a", fits, false), 2);
        assert_eq!(e["code"], "invalid_params", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("MiB") && m.contains("dropped"), "{m}");
        assert!(svc.imports.is_empty(), "the session was dropped");
        // all sessions together: the one that would pass the total is refused, the others keep
        // what they staged
        let total_batches = total_max / per_batch;
        let mut staged = 0;
        'fill: for session in ["b", "c", "d"] {
            for b in 0..fits - 1 {
                if staged == total_batches {
                    let e = err_full(&mut svc, "templates.import", batch(session, b, false), 3);
                    assert_eq!(e["code"], "conflict", "{e}");
                    assert!(e["message"].as_str().unwrap().contains("together"), "{e}");
                    break 'fill;
                }
                ok(&mut svc, "templates.import", batch(session, b, false), 3);
                staged += 1;
            }
        }
        assert_eq!(staged, total_batches);
        let held: usize = svc.imports.values().map(|s| s.bytes).sum();
        assert!(held <= total_max, "{held}");
        // a staged session still commits
        let r = ok(
            &mut svc,
            "templates.import",
            json!({"session": "b", "templates": [tpl("last", "L", "x")]}),
            4,
        );
        assert_eq!(r["committed"], true);
    }

    #[test]
    fn imports_in_batches_are_all_or_nothing() {
        let s = Scratch::new("import");
        let mut svc = open(&s, 0);
        let before = ok(&mut svc, "templates.facets", json!({}), 0)["templates"].clone();
        let r = ok(
            &mut svc,
            "templates.import",
            json!({"session": "s", "last": false, "templates": [tpl("a", "A", "1")]}),
            1,
        );
        assert_eq!(r["committed"], false);
        // nothing is visible before the last batch
        let (code, _) = err(&mut svc, "templates.get", json!({"id": "a"}), 1);
        assert_eq!(code, "not_found");
        // a duplicate across batches refuses the whole import
        let e = err_full(
            &mut svc,
            "templates.import",
            json!({"session": "s", "last": true, "templates": [tpl("b", "B", "1"), tpl("a", "A", "2")]}),
            2,
        );
        assert_eq!(e["code"], "invalid_params");
        assert_eq!(e["data"]["field"], "templates[2].id");
        let (code, _) = err(&mut svc, "templates.get", json!({"id": "b"}), 2);
        assert_eq!(code, "not_found");
        // again, correctly
        ok(
            &mut svc,
            "templates.import",
            json!({"session": "t", "last": false, "templates": [tpl("a", "A", "1")]}),
            3,
        );
        svc.take_events();
        let r = ok(
            &mut svc,
            "templates.import",
            json!({"session": "t", "templates": [tpl("b", "B", "1"), tpl("greeting", "Greeting", "changed")]}),
            4,
        );
        assert_eq!(
            (
                r["created"].clone(),
                r["updated"].clone(),
                r["unchanged"].clone()
            ),
            (json!(2), json!(1), json!(0))
        );
        assert_eq!(events(&mut svc, "library.changed")[0]["count"], 3);
        let after = ok(&mut svc, "templates.facets", json!({}), 4)["templates"].clone();
        assert_eq!(after.as_u64().unwrap(), before.as_u64().unwrap() + 2);
        // abandoned sessions expire
        ok(
            &mut svc,
            "templates.import",
            json!({"session": "u", "last": false, "templates": [tpl("c", "C", "1")]}),
            5,
        );
        svc.tick(5 + IMPORT_IDLE_MS);
        assert!(svc.imports.is_empty());
    }

    #[test]
    fn wechat_quota_is_metered_from_observed_user_actions() {
        let s = Scratch::new("wechat");
        let t0 = 1_000 * DAY_MS;
        let mut svc = open(&s, t0);
        // no user action yet: refused, recorded as failed, and a retry gets the same send
        let e = send(&mut svc, "wechat-mp", "m0", Some("openid-1"), t0).unwrap_err();
        assert_eq!(e["code"], "quota_exceeded");
        assert_eq!(e["data"]["errcode"], 45015);
        let id0 = e["data"]["send_id"].clone();
        let r = send(&mut svc, "wechat-mp", "m0", Some("openid-1"), t0).unwrap();
        assert_eq!(
            (r["send_id"].clone(), r["state"].clone()),
            (id0, json!("failed"))
        );
        // wechat-mp needs the user
        let e = send(&mut svc, "wechat-mp", "m1", None, t0).unwrap_err();
        assert_eq!(e["code"], "invalid_params");

        let o = ok(
            &mut svc,
            "meter.observe",
            json!({"platform": "wechat-mp", "workspace": "w", "conversation": "openid-1",
                   "event": "enter_session", "at_ms": t0}),
            t0,
        );
        assert_eq!(o["quota"]["remaining"], 2, "{o}");
        let a = send(&mut svc, "wechat-mp", "m2", Some("openid-1"), t0).unwrap();
        let b = send(&mut svc, "wechat-mp", "m3", Some("openid-1"), t0).unwrap();
        assert_eq!(b["delay_ms"], 1000);
        let e = send(&mut svc, "wechat-mp", "m4", Some("openid-1"), t0).unwrap_err();
        assert_eq!(e["data"]["errcode"], 45047);
        // another user has a quota of its own
        let e = send(&mut svc, "wechat-mp", "m5", Some("openid-2"), t0).unwrap_err();
        assert_eq!(e["data"]["errcode"], 45015);

        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": a["send_id"]}), t0)["go"],
            true
        );
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": a["send_id"], "ok": true}),
            t0 + 10,
        );
        // the daemon restarts: the quota is where it was
        drop(svc);
        let mut svc = open(&s, t0 + 20);
        let e = send(&mut svc, "wechat-mp", "m6", Some("openid-1"), t0 + 20).unwrap_err();
        assert_eq!(
            e["data"]["errcode"], 45047,
            "b is still queued and uses the last one"
        );
        // the minute runs out while b waits: b fails at begin, it is not sent late
        let e = err_full(
            &mut svc,
            "send.begin",
            json!({"send_id": b["send_id"]}),
            t0 + 60_000,
        );
        assert_eq!(e["code"], "quota_exceeded");
        let e = err_full(
            &mut svc,
            "send.begin",
            json!({"send_id": b["send_id"]}),
            t0 + 60_001,
        );
        assert_eq!(
            (e["code"].clone(), e["data"]["state"].clone()),
            (json!("conflict"), json!("failed"))
        );
        // a user message opens 48 h with 5 sends
        let o = ok(
            &mut svc,
            "meter.observe",
            json!({"platform": "wechat-mp", "workspace": "w", "conversation": "openid-1",
                   "event": "user_message"}),
            t0 + 70_000,
        );
        assert_eq!(o["quota"]["remaining"], 5);
        assert_eq!(
            o["quota"]["window_ends_at_ms"],
            t0 + 70_000 + 48 * 3_600_000
        );
        // platforms without a quota ignore user actions
        let o = ok(
            &mut svc,
            "meter.observe",
            json!({"platform": "udesk", "workspace": "w", "event": "user_message"}),
            t0,
        );
        assert_eq!(o["recorded"], false);
    }

    #[test]
    fn sobot_paces_each_conversation_and_rules_are_configurable() {
        let s = Scratch::new("rules");
        let mut svc = open(&s, 0);
        // per conversation by default: two conversations go at once, one waits its second
        let a = send(&mut svc, "sobot", "a", Some("c1"), 0).unwrap();
        let b = send(&mut svc, "sobot", "b", Some("c2"), 0).unwrap();
        let c = send(&mut svc, "sobot", "c", Some("c1"), 0).unwrap();
        assert_eq!(
            (a["delay_ms"].clone(), b["delay_ms"].clone()),
            (json!(0), json!(0))
        );
        assert_eq!(c["delay_ms"], 1000);
        // wechat-dkf has the same conservative default
        let rules = ok(&mut svc, "meter.rules.get", json!({}), 0)["rules"].clone();
        let dkf = rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["platform"] == "wechat-dkf")
            .unwrap()
            .clone();
        assert_eq!(
            dkf,
            json!({"platform": "wechat-dkf", "per": "conversation", "min_interval_ms": 1000,
                   "lease_ms": 15000, "source": "default"})
        );
        // the user slows sobot down to 3 per 10 s per workspace; it survives a restart
        let r = ok(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "sobot", "per": "workspace", "min_interval_ms": 500,
                   "window": {"count": 3, "ms": 10000}}),
            1,
        );
        assert!(r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["platform"] == "sobot" && r["source"] == "custom"));
        let e = err_full(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "udesk", "per": "workspace", "min_interval_ms": 200}),
            1,
        );
        assert_eq!(e["code"], "invalid_params");
        drop(svc);
        let mut svc = open(&s, 10);
        let delays: Vec<u64> = (0..4)
            .map(|i| {
                send(
                    &mut svc,
                    "sobot",
                    &format!("w{i}"),
                    Some(&format!("c{i}")),
                    10,
                )
                .unwrap()["delay_ms"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(delays, vec![0, 500, 1000, 10_000]);
        let r = ok(
            &mut svc,
            "meter.rules.reset",
            json!({"platform": "sobot"}),
            11,
        );
        assert!(r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["source"] == "default"));
    }

    #[test]
    fn a_window_rule_holds_across_a_restart() {
        let s = Scratch::new("window-restart");
        let mut svc = open(&s, 0);
        ok(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "sobot", "per": "workspace", "min_interval_ms": 100,
                   "window": {"count": 2, "ms": 60000}}),
            0,
        );
        for (i, t) in [(0, 1_000), (1, 2_000)] {
            let id =
                send(&mut svc, "sobot", &format!("w{i}"), Some("c"), t).unwrap()["send_id"].clone();
            assert_eq!(
                ok(&mut svc, "send.begin", json!({"send_id": id}), t)["go"],
                true
            );
            ok(
                &mut svc,
                "send.done",
                json!({"send_id": id, "ok": true}),
                t + 50,
            );
        }
        drop(svc);
        // two sends done at 1050 and 2050: the third may go at 61050, restart or not
        let mut svc = open(&s, 3_000);
        let r = send(&mut svc, "sobot", "w2", Some("c"), 3_000).unwrap();
        assert_eq!(r["not_before_ms"], 61_050);
        let id = r["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": id}), 61_049)["go"],
            false
        );
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": id}), 61_050)["go"],
            true
        );
    }

    #[test]
    fn a_changed_rule_paces_sends_already_queued() {
        let s = Scratch::new("retune");
        let mut svc = open(&s, 0);
        let a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": a}), 0)["go"],
            true
        );
        ok(&mut svc, "send.done", json!({"send_id": a, "ok": true}), 0);
        ok(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "udesk", "per": "workspace", "min_interval_ms": 5000}),
            10,
        );
        // b was queued under the old rule (1 s); it now waits 5 s after a
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 1_000)["delay_ms"],
            4_000
        );
        ok(
            &mut svc,
            "meter.rules.reset",
            json!({"platform": "udesk"}),
            1_001,
        );
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), UDESK_MS)["go"],
            true
        );
    }

    #[test]
    fn retention_prunes_old_finished_history() {
        let s = Scratch::new("retention");
        let mut svc = open(&s, 0);
        assert_eq!(
            ok(&mut svc, "settings.get", json!({}), 0)["history_retention_days"],
            DEFAULT_RETENTION_DAYS
        );
        let old = ok(&mut svc, "send.reserve", reserve_params("old", "w"), 0)["send_id"].clone();
        ok(&mut svc, "send.cancel", json!({"send_id": old}), 0);
        ok(&mut svc, "send.reserve", reserve_params("queued", "w2"), 0);
        let now = 40 * DAY_MS;
        let new = ok(&mut svc, "send.reserve", reserve_params("new", "w3"), now)["send_id"].clone();
        // forever: nothing goes
        ok(
            &mut svc,
            "settings.set",
            json!({"history_retention_days": null}),
            now,
        );
        assert_eq!(
            ok(&mut svc, "history.list", json!({}), now)["rows"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        svc.take_events();
        let r = ok(
            &mut svc,
            "settings.set",
            json!({"history_retention_days": 30}),
            now,
        );
        assert_eq!(r["history_retention_days"], 30);
        assert_eq!(events(&mut svc, "settings.changed").len(), 1);
        let rows = ok(&mut svc, "history.list", json!({}), now)["rows"].clone();
        let ids: Vec<&Value> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["send_id"])
            .collect();
        assert_eq!(
            ids.len(),
            2,
            "the old cancelled row went, the queued one stays: {rows}"
        );
        assert_eq!(ids[0], &new);
        drop(svc);
        let mut svc = open(&s, now);
        assert_eq!(
            ok(&mut svc, "settings.get", json!({}), now)["history_retention_days"],
            30
        );
    }

    #[test]
    fn history_pages_and_filters() {
        let s = Scratch::new("hpages");
        let mut svc = open(&s, 0);
        for i in 0..5 {
            let mut p = reserve_params(&format!("k{i}"), &format!("w{i}"));
            p["customer"] = json!(if i % 2 == 0 { "even" } else { "odd" });
            ok(&mut svc, "send.reserve", p, i * 10);
        }
        let page = ok(&mut svc, "history.list", json!({"limit": 2}), 100);
        assert_eq!(page["rows"].as_array().unwrap().len(), 2);
        let rest = ok(
            &mut svc,
            "history.list",
            json!({"limit": 10, "cursor": page["next_cursor"]}),
            100,
        );
        assert_eq!(rest["rows"].as_array().unwrap().len(), 3);
        assert!(rest["next_cursor"].is_null());
        let even = ok(
            &mut svc,
            "history.list",
            json!({"customer": "even", "since_ms": 10}),
            100,
        );
        assert_eq!(even["rows"].as_array().unwrap().len(), 2);
    }
}
