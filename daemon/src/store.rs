//! The SQLite store: templates with every revision, the send history, settings, meter rules and
//! the user actions the meter was told about.
//!
//! Architecture invariant: this is the only module that touches rusqlite. Everything else sees
//! plain Rust types and [`StoreError`] (what failed, where, and of which [`ErrorKind`]).
//!
//! Durability: WAL with `synchronous=FULL`, so a history row the daemon reported as written
//! (e.g. `queued` before the `send.reserve` reply) survives a power cut, not only a crash.
//! (`NORMAL` would lose the last transactions on power loss; docs/benchmarks.md has the numbers.)
//!
//! Templates are never destroyed: `put` adds a revision, `delete` marks the template deleted
//! (a tombstone) and keeps its revisions, so history rows can always be resolved to the text
//! that was sent, and a later `put` of the same id brings it back as a new revision.

use quiver_shared::sync::wire::{
    Change, ChangesPage, ConflictInfo, LibraryInfo, PushResult, PushStatus, RevState,
    RevisionRecord, TemplateState,
};
use quiver_shared::sync::{Op, Revision, FORMAT};
use quiver_shared::{Library, Template};
use rusqlite::types::Value as SqlValue;
use rusqlite::{params, params_from_iter, Connection, OptionalExtension, Row, TransactionBehavior};
use serde::Serialize;
use sha2::{Digest, Sha256};
use std::fmt;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// The error of a send whose lease ran out (the browser never reported it done).
pub const LEASE_EXPIRED: &str = "no confirmation from the browser within the lease";
/// The error of a queued send nobody began long after its slot (`cancelled`, never sent).
pub const ABANDONED: &str = "abandoned: the browser did not begin it within 60 s of its slot";
/// The error of a send that was `sending` when the daemon stopped.
pub const RESTARTED: &str = "daemon restarted while sending; outcome unknown";

/// The sample library put into a new database (once).
const SAMPLE_LIBRARY: &str = include_str!("../assets/sample-library.json");

/// Schema migrations, in order. Migration `i` (0-based) brings `PRAGMA user_version` from `i` to
/// `i + 1`. Append only: never edit a migration that has shipped.
const MIGRATIONS: &[&str] = &[
    // 1: initial schema
    r#"
    CREATE TABLE templates (
        id          TEXT PRIMARY KEY NOT NULL,
        title       TEXT NOT NULL,
        folder      TEXT NOT NULL DEFAULT '',
        tags_json   TEXT NOT NULL DEFAULT '[]',
        shortcut    TEXT,
        revision    INTEGER NOT NULL,
        body_json   TEXT NOT NULL,
        usage_count INTEGER NOT NULL DEFAULT 0,
        updated_at  INTEGER NOT NULL
    );
    CREATE TABLE template_revisions (
        template_id TEXT NOT NULL REFERENCES templates(id) ON DELETE CASCADE,
        revision    INTEGER NOT NULL,
        body_json   TEXT NOT NULL,
        created_at  INTEGER NOT NULL,
        PRIMARY KEY (template_id, revision)
    );
    CREATE TABLE history (
        id              INTEGER PRIMARY KEY,
        idempotency_key TEXT UNIQUE NOT NULL,
        template_id     TEXT,
        revision        INTEGER,
        part_index      INTEGER,
        platform        TEXT NOT NULL,
        workspace       TEXT NOT NULL,
        conversation    TEXT,
        customer        TEXT,
        payload         TEXT NOT NULL,
        payload_sha256  TEXT NOT NULL,
        state           TEXT NOT NULL
                        CHECK (state IN ('queued','sending','sent','failed','cancelled')),
        error           TEXT,
        queued_at       INTEGER,
        released_at     INTEGER,
        sent_at         INTEGER
    );
    CREATE INDEX history_by_state ON history(state);
    CREATE INDEX history_by_key ON history(platform, workspace);
    CREATE TABLE meta (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT
    );
    "#,
    // 2: tombstones and recency for templates; meter keys and done times for sends; settings,
    // custom meter rules and observed user actions.
    r#"
    ALTER TABLE templates ADD COLUMN deleted_at INTEGER;
    ALTER TABLE templates ADD COLUMN last_used_at INTEGER;
    ALTER TABLE history ADD COLUMN meter_key TEXT;
    ALTER TABLE history ADD COLUMN done_at INTEGER;
    CREATE INDEX history_by_queued_at ON history(queued_at);
    CREATE INDEX history_by_template ON history(template_id);
    CREATE INDEX history_by_customer ON history(customer);
    CREATE INDEX history_by_done_at ON history(done_at);
    CREATE TABLE settings (
        key   TEXT PRIMARY KEY NOT NULL,
        value TEXT NOT NULL
    );
    CREATE TABLE meter_rules (
        platform   TEXT PRIMARY KEY NOT NULL,
        rule_json  TEXT NOT NULL,
        updated_at INTEGER NOT NULL
    );
    CREATE TABLE meter_events (
        id        INTEGER PRIMARY KEY,
        meter_key TEXT NOT NULL,
        event     TEXT NOT NULL CHECK (event IN ('user_message','enter_session')),
        at_ms     INTEGER NOT NULL
    );
    CREATE INDEX meter_events_by_time ON meter_events(at_ms);
    "#,
    // 3: team sync. Libraries (`local`, the personal one, and team libraries on a hub); templates
    // and their revisions keyed by (library, id), existing ones moved to `local`; team revisions
    // carry their rev_id, parents, op, state, author and hub seq; the outbox of revisions to
    // push; the hub's open conflicts, mirrored; history rows name the library and the rev_id.
    // (The tables are rebuilt for the new keys: child first, so no cascade ever runs.)
    r#"
    CREATE TABLE team_hubs (
        hub_id      TEXT PRIMARY KEY NOT NULL,
        url         TEXT NOT NULL,
        fingerprint TEXT,
        user_id     TEXT NOT NULL,
        user_name   TEXT NOT NULL,
        device_id   TEXT NOT NULL,
        device_name TEXT NOT NULL,
        token       TEXT NOT NULL,
        joined_at   INTEGER NOT NULL
    );
    CREATE TABLE libraries (
        id              TEXT PRIMARY KEY NOT NULL,
        name            TEXT NOT NULL,
        kind            TEXT NOT NULL CHECK (kind IN ('local','team')),
        hub_id          TEXT,
        role            TEXT CHECK (role IN ('viewer','editor','maintainer','owner')),
        epoch           TEXT,
        last_seq        INTEGER NOT NULL DEFAULT 0,
        head_seq        INTEGER NOT NULL DEFAULT 0,
        review_required INTEGER NOT NULL DEFAULT 0,
        resetting       INTEGER NOT NULL DEFAULT 0,
        joined_at       INTEGER,
        removed_at      INTEGER
    );
    INSERT INTO libraries (id, name, kind) VALUES ('local', 'Personal', 'local');
    CREATE TABLE templates3 (
        library     TEXT NOT NULL DEFAULT 'local' REFERENCES libraries(id),
        id          TEXT NOT NULL,
        title       TEXT NOT NULL,
        folder      TEXT NOT NULL DEFAULT '',
        tags_json   TEXT NOT NULL DEFAULT '[]',
        shortcut    TEXT,
        revision    INTEGER NOT NULL,
        body_json   TEXT NOT NULL,
        usage_count INTEGER NOT NULL DEFAULT 0,
        updated_at  INTEGER NOT NULL,
        deleted_at  INTEGER,
        last_used_at INTEGER,
        head_rev    TEXT,
        hub_rev     TEXT,
        hub_deleted INTEGER NOT NULL DEFAULT 0,
        conflicted  INTEGER NOT NULL DEFAULT 0,
        PRIMARY KEY (library, id)
    );
    CREATE TABLE template_revisions3 (
        library      TEXT NOT NULL DEFAULT 'local',
        template_id  TEXT NOT NULL,
        revision     INTEGER NOT NULL,
        body_json    TEXT,
        created_at   INTEGER NOT NULL,
        rev_id       TEXT UNIQUE,
        parents_json TEXT,
        op           TEXT CHECK (op IN ('put','delete')),
        format       INTEGER,
        state        TEXT CHECK (state IN ('pending','draft','head','superseded','conflict',
                                           'proposed','rejected','resolved')),
        author_user  TEXT,
        author_name  TEXT,
        author_device TEXT,
        own          INTEGER NOT NULL DEFAULT 0,
        hub_seq      INTEGER,
        at_ms        INTEGER,
        client_at    INTEGER,
        reason       TEXT,
        PRIMARY KEY (library, template_id, revision),
        FOREIGN KEY (library, template_id) REFERENCES templates3(library, id) ON DELETE CASCADE
    );
    INSERT INTO templates3 (library, id, title, folder, tags_json, shortcut, revision, body_json,
        usage_count, updated_at, deleted_at, last_used_at)
        SELECT 'local', id, title, folder, tags_json, shortcut, revision, body_json,
        usage_count, updated_at, deleted_at, last_used_at FROM templates;
    INSERT INTO template_revisions3 (library, template_id, revision, body_json, created_at)
        SELECT 'local', template_id, revision, body_json, created_at FROM template_revisions
        ORDER BY rowid;
    DROP TABLE template_revisions;
    DROP TABLE templates;
    ALTER TABLE templates3 RENAME TO templates;
    ALTER TABLE template_revisions3 RENAME TO template_revisions;
    CREATE INDEX template_revisions_by_hub_seq ON template_revisions(library, hub_seq);
    CREATE TABLE sync_outbox (
        mid        INTEGER PRIMARY KEY AUTOINCREMENT,
        library    TEXT NOT NULL REFERENCES libraries(id),
        rev_id     TEXT NOT NULL UNIQUE,
        ord        INTEGER NOT NULL,
        created_at INTEGER NOT NULL,
        attempts   INTEGER NOT NULL DEFAULT 0,
        last_error TEXT
    );
    CREATE INDEX sync_outbox_order ON sync_outbox(library, ord);
    CREATE TABLE sync_conflicts (
        library     TEXT NOT NULL,
        id          TEXT NOT NULL,
        template    TEXT NOT NULL,
        head_rev    TEXT NOT NULL,
        other_rev   TEXT NOT NULL,
        base_rev    TEXT,
        fields_json TEXT NOT NULL,
        opened_seq  INTEGER NOT NULL,
        PRIMARY KEY (library, id)
    );
    CREATE INDEX sync_conflicts_by_template ON sync_conflicts(library, template);
    ALTER TABLE history ADD COLUMN library TEXT;
    ALTER TABLE history ADD COLUMN rev_id TEXT;
    UPDATE history SET library = 'local' WHERE template_id IS NOT NULL;
    "#,
];

/// The personal library: never synced.
pub const LOCAL: &str = "local";

/// What kind of failure a [`StoreError`] is: the daemon tells the disk being full or read-only
/// (the user can fix that) from everything else.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The disk (or the file system's quota, or the file size limit) is full.
    Full,
    /// The database or its directory cannot be written.
    ReadOnly,
    /// Reading or writing failed, or the file cannot be opened.
    Io,
    /// Another process holds the database locked beyond the busy timeout.
    Busy,
    /// The file is not a database, or is damaged.
    Corrupt,
    Other,
}

/// A store failure: what was being done, and SQLite's reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoreError {
    pub kind: ErrorKind,
    pub message: String,
}

impl StoreError {
    fn other(message: impl Into<String>) -> StoreError {
        StoreError {
            kind: ErrorKind::Other,
            message: message.into(),
        }
    }

    /// Whether the user can fix it on their machine (space, permissions, a lock).
    pub fn is_storage(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Full | ErrorKind::ReadOnly | ErrorKind::Io | ErrorKind::Busy
        )
    }

    /// One sentence on what to do about it.
    pub fn hint(&self) -> &'static str {
        match self.kind {
            ErrorKind::Full => "the disk is full: free some space; nothing was written",
            ErrorKind::ReadOnly => {
                "the data directory is read-only: make it writable; nothing was written"
            }
            ErrorKind::Io => "the disk reported an error; check it and the data directory",
            ErrorKind::Busy => "another process holds the database; stop it",
            ErrorKind::Corrupt => "the database is damaged; restore it from a backup",
            ErrorKind::Other => "",
        }
    }
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for StoreError {}

pub type Result<T> = std::result::Result<T, StoreError>;

fn kind_of(e: &rusqlite::Error) -> ErrorKind {
    use rusqlite::ErrorCode as C;
    match e.sqlite_error_code() {
        Some(C::DiskFull) => ErrorKind::Full,
        Some(C::ReadOnly) => ErrorKind::ReadOnly,
        Some(C::SystemIoFailure | C::CannotOpen) => ErrorKind::Io,
        Some(C::DatabaseBusy | C::DatabaseLocked) => ErrorKind::Busy,
        Some(C::DatabaseCorrupt | C::NotADatabase) => ErrorKind::Corrupt,
        _ => ErrorKind::Other,
    }
}

/// Adds context to rusqlite errors.
trait Context<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T>;
}

impl<T> Context<T> for rusqlite::Result<T> {
    fn ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| StoreError {
            kind: kind_of(&e),
            message: format!("{}: {e}", what()),
        })
    }
}

/// Every row of `sql`, each read by `map`; an error names `what` at `at` (the database).
fn all_rows<T, P: rusqlite::Params>(
    conn: &Connection,
    at: &str,
    what: &str,
    sql: &str,
    params: P,
    map: impl FnMut(&Row<'_>) -> rusqlite::Result<T>,
) -> Result<Vec<T>> {
    let ctx = || format!("{at}: {what}");
    let mut stmt = conn.prepare_cached(sql).ctx(ctx)?;
    let rows = stmt.query_map(params, map).ctx(ctx)?;
    rows.collect::<rusqlite::Result<Vec<_>>>().ctx(ctx)
}

/// How a commit reaches the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Synchronous {
    /// Production: every commit is on the disk before it returns (survives a power cut).
    Full,
    /// For comparison in the benchmarks only: WAL commits survive a crash of the process but
    /// the last ones may be lost on power loss.
    Normal,
}

/// The state of a send (the `history.state` column), defined with the protocol.
pub use quiver_shared::proto::SendState;

/// What [`Store::finish`] did.
#[derive(Debug)]
pub struct Finished {
    /// Whether the send moved to its outcome (it was in one of the states it could move from).
    pub moved: bool,
    /// Whether the template's use was counted: `None` when none was asked for or the send did
    /// not move, `Some(Err)` when counting failed (and only the count was rolled back).
    pub counted: Option<Result<()>>,
}

/// Counts one use of a template (`usage_count`, `last_used_at`: the palette's ranking).
fn count_use_on(
    conn: &Connection,
    at: &str,
    library: &str,
    template_id: &str,
    now: u64,
) -> Result<()> {
    conn.prepare_cached(
        "UPDATE templates SET usage_count = usage_count + 1, last_used_at = ?3 \
         WHERE library = ?1 AND id = ?2",
    )
    .and_then(|mut stmt| stmt.execute(params![library, template_id, to_i64(now)]))
    .ctx(|| format!("{at}: counting use of {template_id:?}"))?;
    Ok(())
}

fn transition_on(
    conn: &Connection,
    at: &str,
    id: i64,
    from: &[SendState],
    to: SendState,
    error: Option<&str>,
    now: u64,
) -> Result<bool> {
    let from_list = from
        .iter()
        .map(|s| format!("'{}'", s.as_str()))
        .collect::<Vec<_>>()
        .join(",");
    // from_list is built from our own enum names, never from input
    let sql = format!(
        "UPDATE history SET state = ?1, \
         released_at = CASE WHEN ?1 = 'sending' THEN ?2 ELSE released_at END, \
         sent_at = CASE WHEN ?1 = 'sent' THEN ?2 ELSE sent_at END, \
         done_at = CASE WHEN ?1 IN ('sent', 'failed') THEN ?2 ELSE done_at END, \
         error = CASE WHEN ?1 = 'sent' THEN NULL WHEN ?3 IS NOT NULL THEN ?3 ELSE error END \
         WHERE id = ?4 AND state IN ({from_list})"
    );
    let n = conn
        .prepare_cached(&sql)
        .and_then(|mut stmt| stmt.execute(params![to.as_str(), to_i64(now), error, id]))
        .ctx(|| format!("{at}: setting send {id} to {}", to.as_str()))?;
    Ok(n == 1)
}

/// A new send, as `send.reserve` gives it.
#[derive(Debug, Clone)]
pub struct NewSend<'a> {
    pub idempotency_key: &'a str,
    /// The template's library (`local` or a team library).
    pub library: &'a str,
    pub template_id: &'a str,
    pub revision: u32,
    pub part_index: u32,
    pub platform: &'a str,
    pub workspace: &'a str,
    pub conversation: Option<&'a str>,
    pub customer: Option<&'a str>,
    pub payload: &'a str,
    /// The meter key the send is queued under (kept so a restart queues it under the same key).
    pub meter_key: &'a str,
    /// The exact team revision sent (`None` in the local library).
    pub rev_id: Option<&'a str>,
}

/// One history row (the `HistoryRow` of docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SendRow {
    pub send_id: i64,
    pub idempotency_key: String,
    pub template_id: Option<String>,
    pub revision: Option<i64>,
    pub part_index: Option<i64>,
    pub platform: String,
    pub workspace: String,
    pub conversation: Option<String>,
    pub customer: Option<String>,
    pub payload: String,
    pub payload_sha256: String,
    pub state: SendState,
    pub error: Option<String>,
    pub queued_at: Option<i64>,
    pub released_at: Option<i64>,
    pub sent_at: Option<i64>,
    /// When the send was reported done (sent or failed), or given up on.
    pub done_at: Option<i64>,
    #[serde(skip)]
    pub meter_key: Option<String>,
    /// The template's library (`None` for rows without a template).
    pub library: Option<String>,
    /// The exact team revision sent (team libraries only).
    pub rev_id: Option<String>,
}

const SEND_COLUMNS: &str = "id, idempotency_key, template_id, revision, part_index, platform, \
     workspace, conversation, customer, payload, payload_sha256, state, error, queued_at, \
     released_at, sent_at, done_at, meter_key, library, rev_id";

fn send_row(r: &Row<'_>) -> rusqlite::Result<SendRow> {
    let state: String = r.get(11)?;
    let state = SendState::parse(&state).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            11,
            rusqlite::types::Type::Text,
            format!("unknown send state {state:?}").into(),
        )
    })?;
    Ok(SendRow {
        send_id: r.get(0)?,
        idempotency_key: r.get(1)?,
        template_id: r.get(2)?,
        revision: r.get(3)?,
        part_index: r.get(4)?,
        platform: r.get(5)?,
        workspace: r.get(6)?,
        conversation: r.get(7)?,
        customer: r.get(8)?,
        payload: r.get(9)?,
        payload_sha256: r.get(10)?,
        state,
        error: r.get(12)?,
        queued_at: r.get(13)?,
        released_at: r.get(14)?,
        sent_at: r.get(15)?,
        done_at: r.get(16)?,
        meter_key: r.get(17)?,
        library: r.get(18)?,
        rev_id: r.get(19)?,
    })
}

/// History filters (all optional) for [`Store::history_query`].
#[derive(Debug, Clone, Default)]
pub struct HistoryFilter {
    /// Only rows with a smaller id (the page cursor: rows come newest first).
    pub before_id: Option<i64>,
    pub since_ms: Option<u64>,
    pub until_ms: Option<u64>,
    pub template_id: Option<String>,
    pub platform: Option<String>,
    pub workspace: Option<String>,
    pub conversation: Option<String>,
    pub customer: Option<String>,
    pub state: Option<SendState>,
}

/// A stored template: its library, id and the whole template as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateJson {
    pub library: String,
    pub id: String,
    pub body_json: String,
    pub usage_count: u64,
    pub last_used_at: Option<u64>,
}

/// A template with what the store knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub library: String,
    pub id: String,
    pub revision: u32,
    pub body_json: String,
    pub usage_count: u64,
    pub last_used_at: Option<u64>,
    pub updated_at: u64,
    pub deleted_at: Option<u64>,
    /// Team templates: the rev_id of the revision shown.
    pub head_rev: Option<String>,
    /// Team templates: the hub's head as last pulled (`None`: the hub has not got it yet).
    pub hub_rev: Option<String>,
}

/// One revision of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionInfo {
    pub revision: u32,
    pub created_at: u64,
    /// Team revisions: the revision's id, state (`pending`, `draft`, or the hub's state), who
    /// made it, and why it was refused (drafts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rev_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub op: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub author: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// What `put` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    Created(u32),
    Updated(u32),
    /// The template equals its current revision: nothing was written (a retried put is
    /// harmless).
    Unchanged(u32),
    /// `base_revision` is not the current revision.
    Conflict {
        current: u32,
    },
}

/// What `delete` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    Deleted { revision: u32 },
    AlreadyDeleted { revision: u32 },
    NotFound,
    Conflict { current: u32 },
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ImportReport {
    pub created: u32,
    pub updated: u32,
    pub unchanged: u32,
}

/// A send that finished, for restoring the meter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DoneSend {
    pub meter_key: Option<String>,
    pub platform: String,
    pub workspace: String,
    pub conversation: Option<String>,
    pub done_at: u64,
    /// Sent, or given up on with an unknown outcome (so it may have gone out).
    pub went_out: bool,
}

/// A user action recorded by `meter.observe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeterEvent {
    pub meter_key: String,
    pub event: String,
    pub at_ms: u64,
}

/// A hub this daemon joined: where it is, how it is trusted, and who this device is there.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubRow {
    pub hub_id: String,
    /// `https://host:port` (or `http://127.0.0.1:port` for a loopback hub).
    pub url: String,
    /// SHA-256 (lowercase hex) of the hub's certificate, pinned from the invite.
    pub fingerprint: Option<String>,
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    pub device_name: String,
    /// The device's bearer token (the hub keeps only its hash).
    pub token: String,
    pub joined_at: u64,
}

/// A library as the daemon keeps it: `local`, or a team library with its cursor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LibraryRow {
    pub id: String,
    pub name: String,
    /// `local` or `team`.
    pub kind: String,
    pub hub_id: Option<String>,
    /// This user's role (team libraries).
    pub role: Option<String>,
    pub epoch: Option<String>,
    /// The pull cursor: every change up to this seq is applied.
    pub last_seq: i64,
    /// The hub's head seq as last seen.
    pub head_seq: i64,
    pub review_required: bool,
    /// The epoch changed: the library is read again, then what the hub lost is pushed again.
    pub resetting: bool,
    pub joined_at: Option<u64>,
    /// Left, or removed by the team: its templates were purged.
    pub removed_at: Option<u64>,
}

/// Counts of one team library, for `team.status`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LibraryCounts {
    pub templates: u64,
    pub outbox: u64,
    /// When the oldest outbox row was written.
    pub oldest_outbox_at: Option<u64>,
    pub drafts: u64,
    pub conflicts: u64,
}

/// A revision the hub refused (a viewer's edit): kept as a local draft with the reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Draft {
    pub template: String,
    pub rev_id: String,
    pub revision: u32,
    pub reason: Option<String>,
    pub at: Option<u64>,
}

/// What applying a page of changes did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Applied {
    /// Templates whose shown version changed.
    pub shown: Vec<String>,
    /// Revisions written or updated.
    pub revisions: usize,
    /// Open conflicts opened or closed.
    pub conflicts_changed: bool,
    /// This user was removed: the library was purged.
    pub purged: bool,
    /// The library's name, settings or this user's role changed.
    pub library_changed: bool,
}

/// What recording a push's results did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PushRecorded {
    /// Outbox rows done.
    pub recorded: usize,
    /// Revisions refused (denied, invalid): template and reason.
    pub drafts: Vec<(String, String)>,
}

/// One side of a kept conflict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Side {
    pub rev_id: String,
    /// Whether this daemon has the revision (it always has after a full pull).
    pub known: bool,
    /// `put` or `delete`.
    pub op: Option<String>,
    pub body_json: Option<String>,
    pub format: Option<u32>,
    pub author_user: Option<String>,
    pub author_name: Option<String>,
    pub at_ms: Option<i64>,
}

/// A kept conflict (mirrored from the hub) with its sides.
#[derive(Debug, Clone, PartialEq)]
pub struct ConflictRow {
    pub library: String,
    pub id: String,
    pub template: String,
    pub fields: Vec<quiver_shared::sync::Field>,
    pub opened_seq: i64,
    pub head: Side,
    pub other: Side,
    pub base: Option<Side>,
    /// A resolution of this device not yet acknowledged by the hub.
    pub resolving: Option<String>,
}

/// The team state of one template, for the template methods' results.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TeamMeta {
    pub head_rev: Option<String>,
    pub hub_rev: Option<String>,
    /// `synced`, `pending`, `draft`, `proposed` or `conflict`.
    pub sync: &'static str,
    pub author: Option<String>,
    pub changed_at: Option<u64>,
    /// Why the hub refused the revision shown (a local draft), as the hub said it.
    pub reason: Option<String>,
}

/// What a resolution wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resolution {
    pub rev_id: String,
    pub revision: u32,
    /// "Keep both": the other side as a new template (its id and rev_id).
    pub fork: Option<(String, String)>,
}

/// Lower-case hex SHA-256 of the UTF-8 bytes of `s`.
pub fn sha256_hex(s: &str) -> String {
    let digest = Sha256::digest(s.as_bytes());
    let mut out = String::with_capacity(64);
    for b in digest.iter() {
        out.push(char::from(b"0123456789abcdef"[usize::from(b >> 4)]));
        out.push(char::from(b"0123456789abcdef"[usize::from(b & 15)]));
    }
    out
}

fn to_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

fn to_u64(v: i64) -> u64 {
    u64::try_from(v).unwrap_or(0)
}

/// The database.
#[derive(Debug)]
pub struct Store {
    conn: Connection,
    path: PathBuf,
}

impl Store {
    /// Opens (creating if needed) the database at `path`, migrates it, and seeds a new one with
    /// the sample library. `now` (ms since the epoch) stamps the seeded templates.
    pub fn open(path: &Path, now: u64) -> Result<Store> {
        Store::open_with(path, now, Synchronous::Full)
    }

    /// [`Store::open`] with a chosen durability (benchmarks compare them; the daemon uses
    /// `Full`).
    pub fn open_with(path: &Path, now: u64, sync: Synchronous) -> Result<Store> {
        let at = || format!("database {}", path.display());
        let conn = Connection::open(path).ctx(|| format!("cannot open {}", at()))?;
        conn.busy_timeout(Duration::from_secs(5))
            .ctx(|| format!("{}: setting busy_timeout", at()))?;
        // every statement a pulled page runs stays prepared
        conn.set_prepared_statement_cache_capacity(64);
        let mode: String = conn
            .pragma_update_and_check(None, "journal_mode", "WAL", |r| r.get(0))
            .ctx(|| format!("{}: setting journal_mode=WAL", at()))?;
        if !mode.eq_ignore_ascii_case("wal") {
            return Err(StoreError::other(format!(
                "{}: journal_mode=WAL was refused (mode is {mode})",
                at()
            )));
        }
        let sync = match sync {
            Synchronous::Full => "FULL",
            Synchronous::Normal => "NORMAL",
        };
        conn.pragma_update(None, "synchronous", sync)
            .ctx(|| format!("{}: setting synchronous={sync}", at()))?;
        conn.pragma_update(None, "foreign_keys", "ON")
            .ctx(|| format!("{}: enabling foreign keys", at()))?;
        // the WAL is truncated back to this size after checkpoints
        conn.pragma_update(None, "journal_size_limit", 32 * 1024 * 1024)
            .ctx(|| format!("{}: setting journal_size_limit", at()))?;
        let mut store = Store {
            conn,
            path: path.to_path_buf(),
        };
        store.migrate()?;
        store.seed_once(now)?;
        Ok(store)
    }

    fn at(&self) -> String {
        format!("database {}", self.path.display())
    }

    /// The database file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The schema version (`PRAGMA user_version`).
    pub fn schema_version(&self) -> Result<u32> {
        let v: i64 = self
            .conn
            .pragma_query_value(None, "user_version", |r| r.get(0))
            .ctx(|| format!("{}: reading user_version", self.at()))?;
        Ok(u32::try_from(v).unwrap_or(u32::MAX))
    }

    fn migrate(&mut self) -> Result<()> {
        let current = self.schema_version()? as usize;
        if current > MIGRATIONS.len() {
            return Err(StoreError::other(format!(
                "{}: schema version {current} is newer than this build of quiver understands \
                 ({}); upgrade quiver",
                self.at(),
                MIGRATIONS.len()
            )));
        }
        let at = self.at();
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(current) {
            let version = i + 1;
            let tx = self
                .conn
                .transaction_with_behavior(TransactionBehavior::Exclusive)
                .ctx(|| format!("{at}: starting migration {version}"))?;
            tx.execute_batch(sql)
                .ctx(|| format!("{at}: migration {version}"))?;
            tx.pragma_update(None, "user_version", version as i64)
                .ctx(|| format!("{at}: recording schema version {version}"))?;
            tx.commit()
                .ctx(|| format!("{at}: committing migration {version}"))?;
        }
        Ok(())
    }

    /// Puts the sample library into a database that was never seeded. A library the user
    /// emptied later stays empty (`meta.seeded`).
    fn seed_once(&mut self, now: u64) -> Result<()> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting seed"))?;
        let seeded: Option<String> = tx
            .query_row("SELECT value FROM meta WHERE key = 'seeded'", [], |r| {
                r.get(0)
            })
            .optional()
            .ctx(|| format!("{at}: reading meta.seeded"))?;
        if seeded.is_some() {
            return Ok(());
        }
        let lib = Library::from_json(SAMPLE_LIBRARY)
            .map_err(|e| StoreError::other(format!("built-in sample library is invalid: {e}")))?;
        for t in &lib.templates {
            let mut t = t.clone();
            t.revision = 1;
            show_template(&tx, LOCAL, &t, None, now)
                .and_then(|body| add_revision(&tx, LOCAL, &t.id, 1, Some(&body), now, None))
                .ctx(|| format!("{at}: seeding template {:?}", t.id))?;
        }
        tx.execute("INSERT INTO meta (key, value) VALUES ('seeded', '1')", [])
            .ctx(|| format!("{at}: writing meta.seeded"))?;
        tx.commit().ctx(|| format!("{at}: committing seed"))?;
        Ok(())
    }

    /// Runs `PRAGMA integrity_check`; `Ok(())` when the database is sound.
    pub fn integrity_check(&self) -> Result<()> {
        let r: String = self
            .conn
            .query_row("PRAGMA integrity_check", [], |r| r.get(0))
            .ctx(|| format!("{}: integrity check", self.at()))?;
        if r == "ok" {
            Ok(())
        } else {
            Err(StoreError {
                kind: ErrorKind::Corrupt,
                message: format!("{}: integrity check: {r}", self.at()),
            })
        }
    }

    // ---- templates ----

    /// A number that changes whenever the library changes (`library.changed` carries it).
    pub fn library_version(&self) -> Result<u64> {
        let v: Option<String> = self
            .conn
            .query_row(
                "SELECT value FROM meta WHERE key = 'library_version'",
                [],
                |r| r.get(0),
            )
            .optional()
            .ctx(|| format!("{}: reading the library version", self.at()))?;
        Ok(v.and_then(|v| v.parse().ok()).unwrap_or(0))
    }

    /// Up to `limit` templates (not deleted) of `library` (of every library when `None`) after
    /// `after` (a library and an id), in (library, id) order.
    pub fn templates_after(
        &self,
        library: Option<&str>,
        after: Option<(&str, &str)>,
        limit: usize,
    ) -> Result<Vec<TemplateJson>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT library, id, body_json, usage_count, last_used_at FROM templates \
                 WHERE deleted_at IS NULL AND (?1 IS NULL OR library = ?1) \
                 AND (?2 IS NULL OR (library, id) > (?2, ?3)) ORDER BY library, id LIMIT ?4",
            )
            .ctx(|| format!("{}: listing templates", self.at()))?;
        let (al, ai) = match after {
            Some((l, i)) => (Some(l), Some(i)),
            None => (None, None),
        };
        let rows = stmt
            .query_map(params![library, al, ai, limit as i64], |r| {
                Ok(TemplateJson {
                    library: r.get(0)?,
                    id: r.get(1)?,
                    body_json: r.get(2)?,
                    usage_count: to_u64(r.get(3)?),
                    last_used_at: r.get::<_, Option<i64>>(4)?.map(to_u64),
                })
            })
            .ctx(|| format!("{}: listing templates", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading templates", self.at()))
    }

    /// Every template of every library that is not deleted, with its usage (to build the
    /// search index).
    pub fn all_templates(&self) -> Result<Vec<StoredTemplate>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE deleted_at IS NULL \
                 ORDER BY library, id"
            ))
            .ctx(|| format!("{}: reading templates", self.at()))?;
        let rows = stmt
            .query_map([], stored_template)
            .ctx(|| format!("{}: reading templates", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading templates", self.at()))
    }

    /// Template `id` of `library`, deleted or not.
    pub fn template(&self, library: &str, id: &str) -> Result<Option<StoredTemplate>> {
        self.conn
            .query_row(
                &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE library = ?1 AND id = ?2"),
                [library, id],
                stored_template,
            )
            .optional()
            .ctx(|| format!("{}: reading template {library}/{id}", self.at()))
    }

    /// Revision `revision` of template `id`: its JSON (`None` for a team tombstone) and when
    /// it was written.
    pub fn template_revision(
        &self,
        library: &str,
        id: &str,
        revision: u32,
    ) -> Result<Option<(Option<String>, u64)>> {
        self.conn
            .query_row(
                "SELECT body_json, created_at FROM template_revisions \
                 WHERE library = ?1 AND template_id = ?2 AND revision = ?3",
                params![library, id, revision],
                |r| Ok((r.get::<_, Option<String>>(0)?, to_u64(r.get(1)?))),
            )
            .optional()
            .ctx(|| format!("{}: reading revision {revision} of {id:?}", self.at()))
    }

    /// The rev_id of revision `revision` of a team template (`None` for a local one).
    pub fn rev_id_of(&self, library: &str, id: &str, revision: u32) -> Result<Option<String>> {
        let v: Option<Option<String>> = self
            .conn
            .query_row(
                "SELECT rev_id FROM template_revisions \
                 WHERE library = ?1 AND template_id = ?2 AND revision = ?3",
                params![library, id, revision],
                |r| r.get(0),
            )
            .optional()
            .ctx(|| format!("{}: reading revision {revision} of {id:?}", self.at()))?;
        Ok(v.flatten())
    }

    /// Revisions of template `id` below `before` (all when `None`), newest first.
    pub fn revisions(
        &self,
        library: &str,
        id: &str,
        before: Option<u32>,
        limit: usize,
    ) -> Result<Vec<RevisionInfo>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT revision, created_at, rev_id, state, op, author_name, reason \
                 FROM template_revisions WHERE library = ?1 AND template_id = ?2 \
                 AND (?3 IS NULL OR revision < ?3) ORDER BY revision DESC LIMIT ?4",
            )
            .ctx(|| format!("{}: listing revisions of {id:?}", self.at()))?;
        let rows = stmt
            .query_map(params![library, id, before, limit as i64], |r| {
                Ok(RevisionInfo {
                    revision: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    created_at: to_u64(r.get(1)?),
                    rev_id: r.get(2)?,
                    state: r.get(3)?,
                    op: r.get(4)?,
                    author: r.get(5)?,
                    reason: r.get(6)?,
                })
            })
            .ctx(|| format!("{}: listing revisions of {id:?}", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading revisions of {id:?}", self.at()))
    }

    /// Writes `t` as a new revision of its id in `library` (revision 1 for a new id), unless
    /// it equals the current revision. A deleted template is brought back. `base_revision`,
    /// when given, must be the current revision (of a deleted template too). In a team library
    /// the revision gets a rev_id and an outbox row, in the same transaction.
    pub fn put_template(
        &mut self,
        library: &str,
        t: &Template,
        base_revision: Option<u32>,
        now: u64,
    ) -> Result<PutOutcome> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting put"))?;
        let out = put_in(&tx, library, t, base_revision, now)
            .ctx(|| format!("{at}: writing {library}/{}", t.id))?;
        if matches!(out, PutOutcome::Created(_) | PutOutcome::Updated(_)) {
            bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
        }
        tx.commit().ctx(|| format!("{at}: committing put"))?;
        Ok(out)
    }

    /// Marks template `id` of `library` deleted; its revisions are kept. In a team library
    /// the delete is a tombstone revision with an outbox row.
    pub fn delete_template(
        &mut self,
        library: &str,
        id: &str,
        base_revision: Option<u32>,
        now: u64,
    ) -> Result<DeleteOutcome> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting delete"))?;
        let out = delete_in(&tx, library, id, base_revision, now)
            .ctx(|| format!("{at}: deleting {library}/{id}"))?;
        if matches!(out, DeleteOutcome::Deleted { .. }) {
            bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
            tx.commit().ctx(|| format!("{at}: committing delete"))?;
        }
        Ok(out)
    }

    /// Writes every template of an import into `library` in one transaction: all of them or
    /// none.
    pub fn import(
        &mut self,
        library: &str,
        templates: &[Template],
        now: u64,
    ) -> Result<ImportReport> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting import"))?;
        let mut report = ImportReport::default();
        for t in templates {
            match put_in(&tx, library, t, None, now)
                .ctx(|| format!("{at}: importing {:?}", t.id))?
            {
                PutOutcome::Created(_) => report.created += 1,
                PutOutcome::Updated(_) => report.updated += 1,
                PutOutcome::Unchanged(_) => report.unchanged += 1,
                PutOutcome::Conflict { .. } => {}
            }
        }
        if report.created + report.updated > 0 {
            bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
        }
        tx.commit().ctx(|| format!("{at}: committing import"))?;
        Ok(report)
    }

    // ---- history ----

    /// Inserts a `queued` history row for `s`, or finds the row already written under its
    /// idempotency key. Returns the row and whether it is new.
    pub fn reserve(&mut self, s: &NewSend<'_>, now: u64) -> Result<(SendRow, bool)> {
        self.reserve_with(s, now, |_, _| false)
    }

    /// As [`Store::reserve`], and in the same transaction: when the row is `queued` and
    /// `go_now(row, created)` says its slot is granted now, the row is written as `sending`
    /// (`released_at` = `now`), so a free slot costs one commit. Nothing is durable, and the
    /// caller must undo what `go_now` did, if this returns an error.
    pub fn reserve_with(
        &mut self,
        s: &NewSend<'_>,
        now: u64,
        go_now: impl FnOnce(&SendRow, bool) -> bool,
    ) -> Result<(SendRow, bool)> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting reserve"))?;
        // Cached statements: a send's reservation is on the agent's click-to-posted path, and
        // preparing its three statements anew took about as long as running them.
        let inserted = tx
            .prepare_cached(
                "INSERT INTO history (idempotency_key, template_id, revision, part_index, \
                 platform, workspace, conversation, customer, payload, payload_sha256, state, \
                 queued_at, meter_key, library, rev_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, \
                 ?9, ?10, 'queued', ?11, ?12, ?13, ?14) ON CONFLICT(idempotency_key) DO NOTHING",
            )
            .and_then(|mut stmt| {
                stmt.execute(params![
                    s.idempotency_key,
                    s.template_id,
                    s.revision,
                    s.part_index,
                    s.platform,
                    s.workspace,
                    s.conversation,
                    s.customer,
                    s.payload,
                    sha256_hex(s.payload),
                    to_i64(now),
                    s.meter_key,
                    s.library,
                    s.rev_id,
                ])
            })
            .ctx(|| format!("{at}: inserting history row"))?;
        let mut row = tx
            .prepare_cached(&format!(
                "SELECT {SEND_COLUMNS} FROM history WHERE idempotency_key = ?1"
            ))
            .and_then(|mut stmt| stmt.query_row([s.idempotency_key], send_row))
            .ctx(|| format!("{at}: reading history row {:?}", s.idempotency_key))?;
        let created = inserted == 1;
        if row.state == SendState::Queued && go_now(&row, created) {
            let moved = tx
                .prepare_cached(
                    "UPDATE history SET state = 'sending', released_at = ?2 \
                     WHERE id = ?1 AND state = 'queued'",
                )
                .and_then(|mut stmt| stmt.execute(params![row.send_id, to_i64(now)]))
                .ctx(|| format!("{at}: beginning send {}", row.send_id))?;
            if moved != 1 {
                return Err(StoreError::other(format!(
                    "{at}: send {} changed state while beginning",
                    row.send_id
                )));
            }
            row.state = SendState::Sending;
            row.released_at = Some(to_i64(now));
        }
        tx.commit().ctx(|| format!("{at}: committing reserve"))?;
        Ok((row, created))
    }

    /// Records that the reservation of queued send `id` was refused (quota, full queue): it
    /// becomes `failed` with `error`, never released (no `done_at`, so the meter does not count
    /// it). A retry with the same idempotency key finds it and gets the same answer.
    pub fn refuse(&mut self, id: i64, error: &str) -> Result<()> {
        self.conn
            .execute(
                "UPDATE history SET state = 'failed', error = ?2 WHERE id = ?1 \
                 AND state = 'queued'",
                params![id, error],
            )
            .ctx(|| format!("{}: recording the refusal of send {id}", self.at()))?;
        Ok(())
    }

    /// The history row of send `id`.
    pub fn send(&self, id: i64) -> Result<Option<SendRow>> {
        self.conn
            .query_row(
                &format!("SELECT {SEND_COLUMNS} FROM history WHERE id = ?1"),
                [id],
                send_row,
            )
            .optional()
            .ctx(|| format!("{}: reading send {id}", self.at()))
    }

    /// The history row with `key` (a WeChat reply's part).
    pub fn send_by_key(&self, key: &str) -> Result<Option<SendRow>> {
        self.conn
            .query_row(
                &format!("SELECT {SEND_COLUMNS} FROM history WHERE idempotency_key = ?1"),
                [key],
                send_row,
            )
            .optional()
            .ctx(|| format!("{}: reading send {key:?}", self.at()))
    }

    /// Moves send `id` to `to` if it is in one of `from`; returns whether it moved.
    /// `sending` stamps `released_at`; `sent` stamps `sent_at` and `done_at` and clears `error`;
    /// `failed` stamps `done_at` and sets `error`.
    pub fn transition(
        &mut self,
        id: i64,
        from: &[SendState],
        to: SendState,
        error: Option<&str>,
        now: u64,
    ) -> Result<bool> {
        transition_on(&self.conn, &self.at(), id, from, to, error, now)
    }

    /// A send's outcome: [`Store::transition`] and, when the row moved and `used` names a
    /// template `(library, id)`, that template's use counted (a send of its first part), in one
    /// transaction: reporting a send done costs one commit (one `fsync`), not two. A use that
    /// cannot be counted is rolled back alone and returned in [`Finished::counted`]; the outcome
    /// is recorded all the same.
    pub fn finish(
        &mut self,
        id: i64,
        from: &[SendState],
        to: SendState,
        error: Option<&str>,
        now: u64,
        used: Option<(&str, &str)>,
    ) -> Result<Finished> {
        let at = self.at();
        let mut tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting the outcome of send {id}"))?;
        let moved = transition_on(&tx, &at, id, from, to, error, now)?;
        let counted = match used {
            Some((library, template_id)) if moved => {
                let sp = tx
                    .savepoint()
                    .ctx(|| format!("{at}: counting use of {template_id:?}"))?;
                let r = count_use_on(&sp, &at, library, template_id, now);
                if r.is_ok() {
                    sp.commit()
                        .ctx(|| format!("{at}: counting use of {template_id:?}"))?;
                } // else dropped: rolled back to before the count
                Some(r)
            }
            _ => None,
        };
        tx.commit()
            .ctx(|| format!("{at}: committing the outcome of send {id}"))?;
        Ok(Finished { moved, counted })
    }

    /// Fails every send in state `state` with `error`, done at `now` (start-up recovery).
    /// Returns the rows.
    pub fn fail_all_in(&mut self, state: SendState, error: &str, now: u64) -> Result<Vec<i64>> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting recovery"))?;
        let ids = {
            let mut stmt = tx
                .prepare("SELECT id FROM history WHERE state = ?1 ORDER BY id")
                .ctx(|| format!("{at}: finding {} sends", state.as_str()))?;
            let ids = stmt
                .query_map([state.as_str()], |r| r.get::<_, i64>(0))
                .ctx(|| format!("{at}: finding {} sends", state.as_str()))?
                .collect::<rusqlite::Result<Vec<i64>>>()
                .ctx(|| format!("{at}: reading {} sends", state.as_str()))?;
            ids
        };
        tx.execute(
            "UPDATE history SET state = 'failed', error = ?2, done_at = ?3 WHERE state = ?1",
            params![state.as_str(), error, to_i64(now)],
        )
        .ctx(|| format!("{at}: failing {} sends", state.as_str()))?;
        tx.commit().ctx(|| format!("{at}: committing recovery"))?;
        Ok(ids)
    }

    /// Sends still `queued`, oldest first.
    pub fn queued(&self) -> Result<Vec<SendRow>> {
        self.history_where("state = 'queued' ORDER BY id", Vec::new())
    }

    /// The newest `limit` history rows, newest first.
    pub fn history(&self, limit: usize) -> Result<Vec<SendRow>> {
        self.history_query(&HistoryFilter::default(), limit)
    }

    /// Up to `limit` history rows matching `f`, newest first.
    pub fn history_query(&self, f: &HistoryFilter, limit: usize) -> Result<Vec<SendRow>> {
        let mut clauses: Vec<&str> = Vec::new();
        let mut args: Vec<SqlValue> = Vec::new();
        let mut add = |clause: &'static str, v: SqlValue| {
            clauses.push(clause);
            args.push(v);
        };
        if let Some(v) = f.before_id {
            add("id < ?", SqlValue::Integer(v));
        }
        if let Some(v) = f.since_ms {
            add("queued_at >= ?", SqlValue::Integer(to_i64(v)));
        }
        if let Some(v) = f.until_ms {
            add("queued_at < ?", SqlValue::Integer(to_i64(v)));
        }
        let text = |v: &Option<String>| v.clone().map(SqlValue::Text);
        if let Some(v) = text(&f.template_id) {
            add("template_id = ?", v);
        }
        if let Some(v) = text(&f.platform) {
            add("platform = ?", v);
        }
        if let Some(v) = text(&f.workspace) {
            add("workspace = ?", v);
        }
        if let Some(v) = text(&f.conversation) {
            add("conversation = ?", v);
        }
        if let Some(v) = text(&f.customer) {
            add("customer = ?", v);
        }
        if let Some(v) = f.state {
            add("state = ?", SqlValue::Text(v.as_str().to_string()));
        }
        let filter = if clauses.is_empty() {
            "1".to_string()
        } else {
            clauses.join(" AND ")
        };
        args.push(SqlValue::Integer(limit as i64));
        self.history_where(&format!("{filter} ORDER BY id DESC LIMIT ?"), args)
    }

    fn history_where(&self, clause: &str, args: Vec<SqlValue>) -> Result<Vec<SendRow>> {
        let mut stmt = self
            .conn
            .prepare_cached(&format!(
                "SELECT {SEND_COLUMNS} FROM history WHERE {clause}"
            ))
            .ctx(|| format!("{}: listing history", self.at()))?;
        let rows = stmt
            .query_map(params_from_iter(args), send_row)
            .ctx(|| format!("{}: listing history", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading history", self.at()))
    }

    /// Sends that finished at or after `since` (ms), oldest first: the meter restarts from these
    /// so a restart cannot cause a burst. A send without `done_at` (written before schema 2)
    /// counts from its `sent_at` or `released_at`.
    pub fn done_since(&self, since: u64) -> Result<Vec<DoneSend>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT meter_key, platform, workspace, conversation, \
                 COALESCE(done_at, sent_at, released_at) AS t, state, error FROM history \
                 WHERE COALESCE(done_at, sent_at, released_at) >= ?1 \
                 AND state IN ('sent', 'failed') ORDER BY t",
            )
            .ctx(|| format!("{}: reading recent sends", self.at()))?;
        let rows = stmt
            .query_map([to_i64(since)], |r| {
                let state: String = r.get(5)?;
                let error: Option<String> = r.get(6)?;
                let unknown = error
                    .as_deref()
                    .is_some_and(|e| e == LEASE_EXPIRED || e == RESTARTED);
                Ok(DoneSend {
                    meter_key: r.get(0)?,
                    platform: r.get(1)?,
                    workspace: r.get(2)?,
                    conversation: r.get(3)?,
                    done_at: to_u64(r.get(4)?),
                    went_out: state == "sent" || unknown,
                })
            })
            .ctx(|| format!("{}: reading recent sends", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading recent sends", self.at()))
    }

    /// Deletes finished history rows queued before `before` (ms) and user actions older than
    /// `events_before`. Queued and sending rows are never deleted. Returns the history rows
    /// deleted.
    pub fn prune(&mut self, before: Option<u64>, events_before: u64) -> Result<usize> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting prune"))?;
        let n = match before {
            Some(b) => tx
                .execute(
                    "DELETE FROM history WHERE state IN ('sent', 'failed', 'cancelled') \
                     AND queued_at < ?1",
                    [to_i64(b)],
                )
                .ctx(|| format!("{at}: pruning history"))?,
            None => 0,
        };
        tx.execute(
            "DELETE FROM meter_events WHERE at_ms < ?1",
            [to_i64(events_before)],
        )
        .ctx(|| format!("{at}: pruning meter events"))?;
        tx.commit().ctx(|| format!("{at}: committing prune"))?;
        Ok(n)
    }

    // ---- settings, rules, observed actions ----

    /// Setting `key` (JSON text), if set.
    pub fn setting(&self, key: &str) -> Result<Option<String>> {
        self.conn
            .query_row("SELECT value FROM settings WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .optional()
            .ctx(|| format!("{}: reading setting {key:?}", self.at()))
    }

    /// Sets `key` to `value` (JSON text).
    pub fn set_setting(&mut self, key: &str, value: &str) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO settings (key, value) VALUES (?1, ?2) \
                 ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                params![key, value],
            )
            .ctx(|| format!("{}: writing setting {key:?}", self.at()))?;
        Ok(())
    }

    /// Custom meter rules: (platform, rule JSON).
    pub fn rules(&self) -> Result<Vec<(String, String)>> {
        let mut stmt = self
            .conn
            .prepare("SELECT platform, rule_json FROM meter_rules ORDER BY platform")
            .ctx(|| format!("{}: reading meter rules", self.at()))?;
        let rows = stmt
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .ctx(|| format!("{}: reading meter rules", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading meter rules", self.at()))
    }

    /// Stores the custom rule of `platform`.
    pub fn set_rule(&mut self, platform: &str, rule_json: &str, now: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meter_rules (platform, rule_json, updated_at) VALUES (?1, ?2, ?3) \
                 ON CONFLICT(platform) DO UPDATE SET rule_json = excluded.rule_json, \
                 updated_at = excluded.updated_at",
                params![platform, rule_json, to_i64(now)],
            )
            .ctx(|| format!("{}: writing the meter rule of {platform}", self.at()))?;
        Ok(())
    }

    /// Removes the custom rule of `platform` (the built-in one applies again).
    pub fn delete_rule(&mut self, platform: &str) -> Result<bool> {
        let n = self
            .conn
            .execute("DELETE FROM meter_rules WHERE platform = ?1", [platform])
            .ctx(|| format!("{}: removing the meter rule of {platform}", self.at()))?;
        Ok(n == 1)
    }

    /// Records a user action under a meter key.
    pub fn add_meter_event(&mut self, meter_key: &str, event: &str, at_ms: u64) -> Result<()> {
        self.conn
            .execute(
                "INSERT INTO meter_events (meter_key, event, at_ms) VALUES (?1, ?2, ?3)",
                params![meter_key, event, to_i64(at_ms)],
            )
            .ctx(|| format!("{}: recording a user action", self.at()))?;
        Ok(())
    }

    /// User actions at or after `since`, oldest first.
    pub fn meter_events_since(&self, since: u64) -> Result<Vec<MeterEvent>> {
        let mut stmt = self
            .conn
            .prepare(
                "SELECT meter_key, event, at_ms FROM meter_events WHERE at_ms >= ?1 \
                 ORDER BY at_ms, id",
            )
            .ctx(|| format!("{}: reading user actions", self.at()))?;
        let rows = stmt
            .query_map([to_i64(since)], |r| {
                Ok(MeterEvent {
                    meter_key: r.get(0)?,
                    event: r.get(1)?,
                    at_ms: to_u64(r.get(2)?),
                })
            })
            .ctx(|| format!("{}: reading user actions", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading user actions", self.at()))
    }
}

/// Team sync: hubs, libraries and their cursors, the outbox, pulled pages, conflicts.
impl Store {
    fn tx(&mut self, what: &str) -> Result<rusqlite::Transaction<'_>> {
        let at = self.at();
        self.conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting {what}"))
    }

    /// Every hub joined.
    pub fn hubs(&self) -> Result<Vec<HubRow>> {
        all_rows(
            &self.conn,
            &self.at(),
            "reading hubs",
            &format!("SELECT {HUB_COLUMNS} FROM team_hubs ORDER BY joined_at"),
            [],
            hub_row,
        )
    }

    pub fn hub(&self, hub_id: &str) -> Result<Option<HubRow>> {
        self.conn
            .query_row(
                &format!("SELECT {HUB_COLUMNS} FROM team_hubs WHERE hub_id = ?1"),
                [hub_id],
                hub_row,
            )
            .optional()
            .ctx(|| format!("{}: reading hub {hub_id}", self.at()))
    }

    /// Every library, `local` first, then team libraries by name (left ones too).
    pub fn libraries(&self) -> Result<Vec<LibraryRow>> {
        all_rows(
            &self.conn,
            &self.at(),
            "reading libraries",
            &format!("SELECT {LIBRARY_COLUMNS} FROM libraries ORDER BY kind = 'team', name, id"),
            [],
            library_row,
        )
    }

    pub fn library(&self, id: &str) -> Result<Option<LibraryRow>> {
        self.conn
            .query_row(
                &format!("SELECT {LIBRARY_COLUMNS} FROM libraries WHERE id = ?1"),
                [id],
                library_row,
            )
            .optional()
            .ctx(|| format!("{}: reading library {id}", self.at()))
    }

    /// Records a joined hub (a new device there) and the libraries it shares with this user.
    /// Returns the libraries added or back after a removal.
    pub fn join_hub(
        &mut self,
        hub: &HubRow,
        libs: &[LibraryInfo],
        now: u64,
    ) -> Result<Vec<String>> {
        let at = self.at();
        let tx = self.tx("join")?;
        tx.execute(
            &format!(
                "INSERT INTO team_hubs ({HUB_COLUMNS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9) \
                 ON CONFLICT (hub_id) DO UPDATE SET url = excluded.url, \
                 fingerprint = excluded.fingerprint, user_id = excluded.user_id, \
                 user_name = excluded.user_name, device_id = excluded.device_id, \
                 device_name = excluded.device_name, token = excluded.token, \
                 joined_at = excluded.joined_at"
            ),
            params![
                hub.hub_id,
                hub.url,
                hub.fingerprint,
                hub.user_id,
                hub.user_name,
                hub.device_id,
                hub.device_name,
                hub.token,
                to_i64(hub.joined_at)
            ],
        )
        .ctx(|| format!("{at}: recording hub {}", hub.hub_id))?;
        let mut added = vec![];
        for l in libs {
            if upsert_library(&tx, &hub.hub_id, l, now)
                .ctx(|| format!("{at}: recording library {}", l.id))?
                == Upsert::Added
            {
                added.push(l.id.clone());
            }
        }
        tx.commit().ctx(|| format!("{at}: committing join"))?;
        Ok(added)
    }

    /// Brings the libraries of `hub_id` in line with the hub's list (`GET /v1/me`): new ones
    /// are added, roles and settings updated, and the ones this user is no longer a member of
    /// are purged. Returns (added, changed, purged).
    pub fn sync_libraries(
        &mut self,
        hub_id: &str,
        libs: &[LibraryInfo],
        now: u64,
    ) -> Result<(Vec<String>, Vec<String>, Vec<String>)> {
        let at = self.at();
        let tx = self.tx("library list")?;
        let (mut added, mut changed, mut purged) = (vec![], vec![], vec![]);
        for l in libs {
            match upsert_library(&tx, hub_id, l, now)
                .ctx(|| format!("{at}: recording library {}", l.id))?
            {
                Upsert::Added => added.push(l.id.clone()),
                Upsert::Changed => changed.push(l.id.clone()),
                Upsert::Same => {}
            }
        }
        let active: Vec<String> = all_rows(
            &tx,
            &at,
            "reading libraries",
            "SELECT id FROM libraries WHERE hub_id = ?1 AND kind = 'team' AND removed_at IS NULL",
            [hub_id],
            |r| r.get(0),
        )?;
        for id in active {
            if !libs.iter().any(|l| l.id == id) {
                purge_in(&tx, &id, now).ctx(|| format!("{at}: purging library {id}"))?;
                purged.push(id);
            }
        }
        if !purged.is_empty() {
            bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
        }
        tx.commit()
            .ctx(|| format!("{at}: committing library list"))?;
        Ok((added, changed, purged))
    }

    /// Leaves `hub_id`: its libraries are purged (send history stays) and its token forgotten.
    /// Returns the libraries purged.
    pub fn leave_hub(&mut self, hub_id: &str, now: u64) -> Result<Vec<String>> {
        let at = self.at();
        let tx = self.tx("leave")?;
        let ids: Vec<String> = all_rows(
            &tx,
            &at,
            "reading libraries",
            "SELECT id FROM libraries WHERE hub_id = ?1 AND removed_at IS NULL",
            [hub_id],
            |r| r.get(0),
        )?;
        for id in &ids {
            purge_in(&tx, id, now).ctx(|| format!("{at}: purging library {id}"))?;
        }
        tx.execute("DELETE FROM team_hubs WHERE hub_id = ?1", [hub_id])
            .ctx(|| format!("{at}: forgetting hub {hub_id}"))?;
        bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
        tx.commit().ctx(|| format!("{at}: committing leave"))?;
        Ok(ids)
    }

    /// Outbox rows of `library`.
    pub fn outbox_len(&self, library: &str) -> Result<u64> {
        self.conn
            .query_row(
                "SELECT COUNT(*) FROM sync_outbox WHERE library = ?1",
                [library],
                |r| r.get::<_, i64>(0),
            )
            .map(to_u64)
            .ctx(|| format!("{}: counting the outbox", self.at()))
    }

    /// The next revisions to push from `library`, in the order they were made: at most `max`
    /// of them and about `max_bytes` of bodies (at least one).
    pub fn outbox_batch(
        &self,
        library: &str,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Revision>> {
        let at = self.at();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT o.rev_id, r.template_id, r.parents_json, r.op, r.format, r.body_json, \
                 r.client_at FROM sync_outbox o JOIN template_revisions r ON r.rev_id = o.rev_id \
                 WHERE o.library = ?1 ORDER BY o.ord, o.mid LIMIT ?2",
            )
            .ctx(|| format!("{at}: reading the outbox"))?;
        type Row6 = (
            String,
            String,
            Option<String>,
            Option<String>,
            Option<i64>,
            Option<String>,
            Option<i64>,
        );
        let rows = stmt
            .query_map(params![library, max as i64], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })
            .ctx(|| format!("{at}: reading the outbox"))?
            .collect::<rusqlite::Result<Vec<Row6>>>()
            .ctx(|| format!("{at}: reading the outbox"))?;
        let mut out = vec![];
        let mut bytes = 0;
        for (rev_id, template, parents, op, format, body, client_at) in rows {
            let parents: Vec<String> = parents
                .as_deref()
                .map(serde_json::from_str)
                .transpose()
                .map_err(|e| StoreError::other(format!("{at}: revision {rev_id} parents: {e}")))?
                .unwrap_or_default();
            let op = if op.as_deref() == Some("delete") {
                Op::Delete
            } else {
                Op::Put
            };
            let body = match (&op, body) {
                (Op::Put, Some(b)) => {
                    bytes += b.len();
                    let t: Template = serde_json::from_str(&b).map_err(|e| {
                        StoreError::other(format!("{at}: revision {rev_id} body: {e}"))
                    })?;
                    Some(quiver_shared::sync::canonical(&t))
                }
                _ => None,
            };
            out.push(Revision {
                rev_id,
                template,
                parents,
                op,
                format: format.and_then(|f| u32::try_from(f).ok()).unwrap_or(FORMAT),
                body,
                client_at_ms: client_at.unwrap_or(0),
            });
            if bytes >= max_bytes {
                break;
            }
        }
        Ok(out)
    }

    /// Notes a failed push attempt of these outbox rows (they stay).
    pub fn outbox_failed(&mut self, rev_ids: &[String], error: &str) -> Result<()> {
        let at = self.at();
        let tx = self.tx("outbox note")?;
        for r in rev_ids {
            tx.execute(
                "UPDATE sync_outbox SET attempts = attempts + 1, last_error = ?2 WHERE rev_id = ?1",
                params![r, error],
            )
            .ctx(|| format!("{at}: noting a failed push"))?;
        }
        tx.commit()
            .ctx(|| format!("{at}: committing outbox note"))?;
        Ok(())
    }

    /// Records the hub's answer to a push: each revision's state, and its outbox row deleted,
    /// in one transaction. A refused revision (denied, invalid) stays as a local draft with the
    /// reason.
    pub fn record_push(&mut self, library: &str, results: &[PushResult]) -> Result<PushRecorded> {
        let at = self.at();
        let tx = self.tx("push results")?;
        let mut rec = PushRecorded::default();
        for res in results {
            let (state, reason) = match res.status {
                PushStatus::Applied => ("head", None),
                PushStatus::Merged => ("superseded", None),
                PushStatus::Conflict => ("conflict", None),
                PushStatus::Proposed => ("proposed", None),
                PushStatus::Denied | PushStatus::Invalid => (
                    "draft",
                    Some(res.reason.clone().unwrap_or_else(|| match res.status {
                        PushStatus::Denied => "the hub refused the edit".to_string(),
                        _ => "the hub found the revision invalid".to_string(),
                    })),
                ),
            };
            let template: Option<String> = tx
                .query_row(
                    "SELECT r.template_id FROM sync_outbox o JOIN template_revisions r \
                     ON r.rev_id = o.rev_id WHERE o.rev_id = ?1 AND o.library = ?2",
                    params![res.rev_id, library],
                    |r| r.get(0),
                )
                .optional()
                .ctx(|| format!("{at}: reading outbox row {}", res.rev_id))?;
            let Some(template) = template else {
                continue; // not ours to record (already recorded, or not asked)
            };
            tx.execute(
                "UPDATE template_revisions SET state = ?2, hub_seq = COALESCE(?3, hub_seq), \
                 reason = ?4 WHERE rev_id = ?1",
                params![res.rev_id, state, res.seq, reason],
            )
            .ctx(|| format!("{at}: recording revision {}", res.rev_id))?;
            tx.execute("DELETE FROM sync_outbox WHERE rev_id = ?1", [&res.rev_id])
                .ctx(|| format!("{at}: removing outbox row {}", res.rev_id))?;
            rec.recorded += 1;
            if let Some(r) = reason {
                rec.drafts.push((template, r));
            }
        }
        tx.commit()
            .ctx(|| format!("{at}: committing push results"))?;
        Ok(rec)
    }

    /// Applies one page of `library`'s log and moves its cursor, in one transaction. `user_id`
    /// and `device_id` are this device's at the hub (a `member` change removing the user purges
    /// the library; revisions by this device are marked as its own).
    pub fn apply_page(
        &mut self,
        library: &str,
        page: &ChangesPage,
        user_id: &str,
        device_id: &str,
        now: u64,
    ) -> Result<Applied> {
        let at = self.at();
        let tx = self.tx("pull")?;
        let mut applied = Applied::default();
        let mut last: Option<i64> = None;
        for ch in &page.changes {
            let seq = ch.seq();
            match ch {
                Change::Revision {
                    revision, template, ..
                } => {
                    let fresh =
                        apply_revision(&tx, library, seq, revision, device_id, now, &mut applied)
                            .ctx(|| {
                            format!(
                                "{at}: applying revision {} (seq {seq})",
                                revision.revision.rev_id
                            )
                        })?;
                    let fresh = fresh.map(|t| (revision.revision.rev_id.as_str(), t));
                    apply_state(&tx, library, template, fresh, now, &mut applied)
                        .ctx(|| format!("{at}: applying {} (seq {seq})", template.template))?;
                }
                Change::Member {
                    user_id: who, role, ..
                } if who == user_id => match role {
                    None => {
                        purge_in(&tx, library, now)
                            .ctx(|| format!("{at}: purging library {library}"))?;
                        applied.purged = true;
                        break;
                    }
                    Some(r) => {
                        tx.execute(
                            "UPDATE libraries SET role = ?2 WHERE id = ?1",
                            params![library, r.as_str()],
                        )
                        .ctx(|| format!("{at}: recording the role"))?;
                        applied.library_changed = true;
                    }
                },
                Change::Member { .. } => {}
                Change::Library { library: info, .. } => {
                    tx.execute(
                        "UPDATE libraries SET name = ?2, review_required = ?3, role = ?4 \
                         WHERE id = ?1",
                        params![library, info.name, info.review_required, info.role.as_str()],
                    )
                    .ctx(|| format!("{at}: recording the library's settings"))?;
                    applied.library_changed = true;
                }
            }
            last = Some(last.map_or(seq, |l: i64| l.max(seq)));
        }
        // A page that says nothing more follows covers the log up to its head_seq: changes
        // this member may not see (others' proposals) are skipped, not waited for.
        if !page.more {
            last = Some(last.map_or(page.head_seq, |l| l.max(page.head_seq)));
        }
        if !applied.purged {
            tx.execute(
                "UPDATE libraries SET last_seq = MAX(last_seq, COALESCE(?2, last_seq)), \
                 head_seq = MAX(?3, COALESCE(?2, 0)) WHERE id = ?1",
                params![library, last, page.head_seq],
            )
            .ctx(|| format!("{at}: moving the cursor"))?;
        }
        if !applied.shown.is_empty() || applied.purged {
            bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
        }
        tx.commit().ctx(|| format!("{at}: committing the page"))?;
        Ok(applied)
    }

    /// The hub's head seq of `library`, as a poke or `/v1/me` told it.
    pub fn set_head_seq(&mut self, library: &str, head_seq: i64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE libraries SET head_seq = MAX(head_seq, ?2) WHERE id = ?1",
                params![library, head_seq],
            )
            .ctx(|| format!("{}: recording the head seq of {library}", self.at()))?;
        Ok(())
    }

    /// The library's log is not the one the cursor walked (its epoch changed: a hub restored
    /// from a backup, a library re-created): the cursor starts again in `epoch` and what is
    /// known of the hub's state is forgotten, until the library is read again. Nothing local is
    /// deleted: templates, revisions, drafts and the outbox stay.
    pub fn reset_library(&mut self, library: &str, epoch: &str) -> Result<()> {
        let at = self.at();
        let tx = self.tx("reset")?;
        reset_in(&tx, library, epoch).ctx(|| format!("{at}: resetting library {library}"))?;
        tx.commit().ctx(|| format!("{at}: committing reset"))?;
        Ok(())
    }

    /// After a reset, once the library was read again: every revision this device made that
    /// the hub does not have (and that is not in the outbox or a draft) goes back into the
    /// outbox, in the order it was made. Returns how many.
    pub fn requeue_lost(&mut self, library: &str, now: u64) -> Result<usize> {
        let at = self.at();
        let tx = self.tx("re-push")?;
        let n = tx
            .execute(
                "INSERT INTO sync_outbox (library, rev_id, ord, created_at) \
                 SELECT library, rev_id, rowid, ?2 FROM template_revisions \
                 WHERE library = ?1 AND own = 1 AND rev_id IS NOT NULL AND hub_seq IS NULL \
                 AND state <> 'draft' AND rev_id NOT IN (SELECT rev_id FROM sync_outbox) \
                 ORDER BY rowid",
                params![library, to_i64(now)],
            )
            .ctx(|| format!("{at}: queueing lost revisions again"))?;
        tx.execute(
            "UPDATE libraries SET resetting = 0 WHERE id = ?1",
            [library],
        )
        .ctx(|| format!("{at}: ending the reset"))?;
        tx.commit().ctx(|| format!("{at}: committing re-push"))?;
        Ok(n)
    }

    /// The local digest of `library` (`quiver_shared::sync::digest` over what the hub's heads
    /// are as last pulled), with the counts of templates and conflicted ones.
    pub fn library_digest(&self, library: &str) -> Result<(String, u64, u64)> {
        let at = self.at();
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, hub_rev, hub_deleted, conflicted FROM templates \
                 WHERE library = ?1 AND hub_rev IS NOT NULL",
            )
            .ctx(|| format!("{at}: reading heads"))?;
        let rows = stmt
            .query_map([library], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })
            .ctx(|| format!("{at}: reading heads"))?
            .collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{at}: reading heads"))?;
        let conflicts = self
            .conn
            .query_row(
                "SELECT COUNT(*) FROM sync_conflicts WHERE library = ?1",
                [library],
                |r| r.get::<_, i64>(0),
            )
            .ctx(|| format!("{at}: counting conflicts"))?;
        let digest = quiver_shared::sync::digest(rows.iter().map(|(id, h, d, c)| {
            quiver_shared::sync::HeadEntry {
                template: id,
                head_rev: h,
                deleted: *d,
                conflicted: *c,
            }
        }));
        Ok((digest, rows.len() as u64, to_u64(conflicts)))
    }

    /// Counts for `team.status`.
    pub fn library_counts(&self, library: &str) -> Result<LibraryCounts> {
        let at = self.at();
        self.conn
            .query_row(
                "SELECT (SELECT COUNT(*) FROM templates WHERE library = ?1 AND deleted_at IS NULL), \
                 (SELECT COUNT(*) FROM sync_outbox WHERE library = ?1), \
                 (SELECT MIN(created_at) FROM sync_outbox WHERE library = ?1), \
                 (SELECT COUNT(*) FROM template_revisions WHERE library = ?1 AND state = 'draft'), \
                 (SELECT COUNT(*) FROM sync_conflicts WHERE library = ?1)",
                [library],
                |r| {
                    Ok(LibraryCounts {
                        templates: to_u64(r.get(0)?),
                        outbox: to_u64(r.get(1)?),
                        oldest_outbox_at: r.get::<_, Option<i64>>(2)?.map(to_u64),
                        drafts: to_u64(r.get(3)?),
                        conflicts: to_u64(r.get(4)?),
                    })
                },
            )
            .ctx(|| format!("{at}: counting library {library}"))
    }

    /// The drafts of `library` (refused revisions), newest first.
    pub fn drafts(&self, library: &str) -> Result<Vec<Draft>> {
        let at = self.at();
        let mut stmt = self
            .conn
            .prepare(
                "SELECT template_id, rev_id, revision, reason, at_ms FROM template_revisions \
                 WHERE library = ?1 AND state = 'draft' ORDER BY rowid DESC LIMIT 100",
            )
            .ctx(|| format!("{at}: reading drafts"))?;
        let rows = stmt
            .query_map([library], |r| {
                Ok(Draft {
                    template: r.get(0)?,
                    rev_id: r.get(1)?,
                    revision: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
                    reason: r.get(3)?,
                    at: r.get::<_, Option<i64>>(4)?.map(to_u64),
                })
            })
            .ctx(|| format!("{at}: reading drafts"))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{at}: reading drafts"))
    }

    /// The open conflicts of `library` (of every library when `None`), oldest first.
    pub fn conflicts(&self, library: Option<&str>) -> Result<Vec<ConflictRow>> {
        let at = self.at();
        let keys: Vec<(String, String)> = all_rows(
            &self.conn,
            &at,
            "reading conflicts",
            "SELECT library, id FROM sync_conflicts WHERE (?1 IS NULL OR library = ?1) \
             ORDER BY library, opened_seq, id",
            [library],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        let mut out = vec![];
        for (l, id) in keys {
            if let Some(c) = self.conflict(&l, &id)? {
                out.push(c);
            }
        }
        Ok(out)
    }

    /// Conflict `id` of `library`, with its sides.
    pub fn conflict(&self, library: &str, id: &str) -> Result<Option<ConflictRow>> {
        let at = self.at();
        let row: Option<(String, String, String, Option<String>, String, i64)> = self
            .conn
            .query_row(
                "SELECT template, head_rev, other_rev, base_rev, fields_json, opened_seq \
                 FROM sync_conflicts WHERE library = ?1 AND id = ?2",
                [library, id],
                |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                    ))
                },
            )
            .optional()
            .ctx(|| format!("{at}: reading conflict {id}"))?;
        let Some((template, head, other, base, fields, opened_seq)) = row else {
            return Ok(None);
        };
        let resolving: Option<String> = self
            .conn
            .query_row(
                "SELECT r.rev_id FROM sync_outbox o JOIN template_revisions r \
                 ON r.rev_id = o.rev_id WHERE o.library = ?1 AND r.template_id = ?2 \
                 AND json_extract(r.parents_json, '$[1]') = ?3 LIMIT 1",
                params![library, template, other],
                |r| r.get(0),
            )
            .optional()
            .ctx(|| format!("{at}: looking for a resolution of {id}"))?;
        // The head side is the template as it is now (the hub's head, or this device's edit
        // on top of it): what a resolution's first parent must be for the hub to close the
        // conflict. The conflict's own head_rev may be older (a merge moved the head since).
        // While a resolution waits to be pushed, it is the hub's head.
        let now_head: Option<String> = match &resolving {
            None => edit_parent(&self.conn, library, &template),
            Some(_) => self
                .conn
                .query_row(
                    "SELECT hub_rev FROM templates WHERE library = ?1 AND id = ?2",
                    [library, &template],
                    |r| r.get(0),
                )
                .optional()
                .map(Option::flatten),
        }
        .ctx(|| format!("{at}: reading the head of {template:?}"))?;
        let head = now_head.unwrap_or(head);
        let fields = serde_json::from_str(&fields).unwrap_or_default();
        let side = |rev: &str| -> Result<Side> {
            let r: Option<Side> = self
                .conn
                .query_row(
                    "SELECT op, body_json, format, author_user, author_name, at_ms \
                     FROM template_revisions WHERE rev_id = ?1",
                    [rev],
                    |r| {
                        Ok(Side {
                            rev_id: rev.to_string(),
                            known: true,
                            op: r.get(0)?,
                            body_json: r.get(1)?,
                            format: r
                                .get::<_, Option<i64>>(2)?
                                .and_then(|f| u32::try_from(f).ok()),
                            author_user: r.get(3)?,
                            author_name: r.get(4)?,
                            at_ms: r.get(5)?,
                        })
                    },
                )
                .optional()
                .ctx(|| format!("{at}: reading revision {rev}"))?;
            Ok(r.unwrap_or(Side {
                rev_id: rev.to_string(),
                known: false,
                op: None,
                body_json: None,
                format: None,
                author_user: None,
                author_name: None,
                at_ms: None,
            }))
        };
        Ok(Some(ConflictRow {
            library: library.to_string(),
            id: id.to_string(),
            head: side(&head)?,
            other: side(&other)?,
            base: base.as_deref().map(side).transpose()?,
            template,
            fields,
            opened_seq,
            resolving,
        }))
    }

    /// The team state of template `id` of a team library.
    pub fn team_meta(&self, library: &str, id: &str) -> Result<Option<TeamMeta>> {
        let at = self.at();
        self.conn
            .query_row(
                "SELECT t.head_rev, t.hub_rev, t.conflicted, r.state, r.author_name, r.at_ms, \
                 EXISTS (SELECT 1 FROM sync_outbox o JOIN template_revisions p \
                         ON p.rev_id = o.rev_id WHERE o.library = t.library \
                         AND p.template_id = t.id), r.reason \
                 FROM templates t LEFT JOIN template_revisions r ON r.rev_id = t.head_rev \
                 WHERE t.library = ?1 AND t.id = ?2",
                [library, id],
                |r| {
                    let conflicted: bool = r.get(2)?;
                    let state: Option<String> = r.get(3)?;
                    let pending: bool = r.get(6)?;
                    let sync = if conflicted {
                        "conflict"
                    } else if pending {
                        "pending"
                    } else {
                        match state.as_deref() {
                            Some("draft") => "draft",
                            Some("proposed") => "proposed",
                            _ => "synced",
                        }
                    };
                    Ok(TeamMeta {
                        head_rev: r.get(0)?,
                        hub_rev: r.get(1)?,
                        sync,
                        author: r.get(4)?,
                        changed_at: r.get::<_, Option<i64>>(5)?.map(to_u64),
                        reason: if sync == "draft" { r.get(7)? } else { None },
                    })
                },
            )
            .optional()
            .ctx(|| format!("{at}: reading the team state of {library}/{id}"))
    }

    /// An id not used in `library` (deleted templates count): `base-2`, `base-3`, ...
    pub fn free_template_id(&self, library: &str, base: &str) -> Result<String> {
        for n in 2u32.. {
            let id = format!("{base}-{n}");
            let used: bool = self
                .conn
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM templates WHERE library = ?1 AND id = ?2)",
                    [library, &id],
                    |r| r.get(0),
                )
                .ctx(|| format!("{}: looking for a free id", self.at()))?;
            if !used {
                return Ok(id);
            }
        }
        Err(StoreError::other("no free template id"))
    }

    /// Writes the resolution of a kept conflict of template `id`: a revision with parents
    /// `[head, other]` with `content` (`None`: a delete), and for "keep both" `fork`, the other
    /// side as a new template; each with its outbox row, all in one transaction.
    pub fn write_resolution(
        &mut self,
        library: &str,
        id: &str,
        parents: [&str; 2],
        content: Option<&Template>,
        fork: Option<&Template>,
        now: u64,
    ) -> Result<Resolution> {
        let at = self.at();
        let tx = self.tx("resolution")?;
        let out = (|| -> rusqlite::Result<Resolution> {
            let Some(ed) = editor_of(&tx, library)? else {
                return Err(other_err(format!("{library} is not a team library")));
            };
            let n = next_revision(&tx, library, id)?;
            let parents = [parents[0].to_string(), parents[1].to_string()];
            let rev_id = match content {
                Some(t) => {
                    let mut t = t.clone();
                    t.revision = n;
                    let rev = new_rev_id();
                    let body = show_template(&tx, library, &t, Some(&rev), now)?;
                    own_revision(&tx, library, &ed, id, n, Some(&body), &parents, now, rev)?
                }
                None => {
                    let rev =
                        own_revision(&tx, library, &ed, id, n, None, &parents, now, new_rev_id())?;
                    tx.execute(
                        "UPDATE templates SET deleted_at = COALESCE(deleted_at, ?3), \
                         updated_at = ?3, head_rev = ?4 WHERE library = ?1 AND id = ?2",
                        params![library, id, to_i64(now), rev],
                    )?;
                    rev
                }
            };
            let fork = match fork {
                Some(f) => {
                    put_in(&tx, library, f, None, now)?;
                    let rev: Option<String> = tx.query_row(
                        "SELECT head_rev FROM templates WHERE library = ?1 AND id = ?2",
                        [library, &f.id],
                        |r| r.get(0),
                    )?;
                    Some((f.id.clone(), rev.unwrap_or_default()))
                }
                None => None,
            };
            bump_library_version(&tx)?;
            Ok(Resolution {
                rev_id,
                revision: n,
                fork,
            })
        })()
        .ctx(|| format!("{at}: resolving {library}/{id}"))?;
        tx.commit().ctx(|| format!("{at}: committing resolution"))?;
        Ok(out)
    }
}

const HUB_COLUMNS: &str =
    "hub_id, url, fingerprint, user_id, user_name, device_id, device_name, token, joined_at";

fn hub_row(r: &Row<'_>) -> rusqlite::Result<HubRow> {
    Ok(HubRow {
        hub_id: r.get(0)?,
        url: r.get(1)?,
        fingerprint: r.get(2)?,
        user_id: r.get(3)?,
        user_name: r.get(4)?,
        device_id: r.get(5)?,
        device_name: r.get(6)?,
        token: r.get(7)?,
        joined_at: to_u64(r.get(8)?),
    })
}

const LIBRARY_COLUMNS: &str = "id, name, kind, hub_id, role, epoch, last_seq, head_seq, \
     review_required, resetting, joined_at, removed_at";

fn library_row(r: &Row<'_>) -> rusqlite::Result<LibraryRow> {
    Ok(LibraryRow {
        id: r.get(0)?,
        name: r.get(1)?,
        kind: r.get(2)?,
        hub_id: r.get(3)?,
        role: r.get(4)?,
        epoch: r.get(5)?,
        last_seq: r.get(6)?,
        head_seq: r.get(7)?,
        review_required: r.get(8)?,
        resetting: r.get(9)?,
        joined_at: r.get::<_, Option<i64>>(10)?.map(to_u64),
        removed_at: r.get::<_, Option<i64>>(11)?.map(to_u64),
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Upsert {
    Added,
    Changed,
    Same,
}

/// Records a library of `hub_id` as the hub lists it. A library that was left or removed comes
/// back with its cursor from the start.
fn upsert_library(
    tx: &rusqlite::Transaction<'_>,
    hub_id: &str,
    l: &LibraryInfo,
    now: u64,
) -> rusqlite::Result<Upsert> {
    type Cur = (String, Option<String>, bool, Option<i64>, String);
    let cur: Option<Cur> = tx
        .query_row(
            "SELECT name, role, review_required, removed_at, kind FROM libraries WHERE id = ?1",
            [&l.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?)),
        )
        .optional()?;
    match cur {
        Some((_, _, _, _, kind)) if kind != "team" => Err(other_err(format!(
            "the hub's library id {:?} is taken by a local library",
            l.id
        ))),
        None => {
            tx.execute(
                "INSERT INTO libraries (id, name, kind, hub_id, role, epoch, last_seq, head_seq, \
                 review_required, joined_at) VALUES (?1, ?2, 'team', ?3, ?4, ?5, 0, ?6, ?7, ?8)",
                params![
                    l.id,
                    l.name,
                    hub_id,
                    l.role.as_str(),
                    l.epoch,
                    l.head_seq,
                    l.review_required,
                    to_i64(now)
                ],
            )?;
            Ok(Upsert::Added)
        }
        Some((_, _, _, Some(_), _)) => {
            tx.execute(
                "UPDATE libraries SET name = ?2, hub_id = ?3, role = ?4, epoch = ?5, last_seq = 0, \
                 head_seq = ?6, review_required = ?7, resetting = 0, joined_at = ?8, \
                 removed_at = NULL WHERE id = ?1",
                params![
                    l.id,
                    l.name,
                    hub_id,
                    l.role.as_str(),
                    l.epoch,
                    l.head_seq,
                    l.review_required,
                    to_i64(now)
                ],
            )?;
            Ok(Upsert::Added)
        }
        Some((name, role, review, None, _)) => {
            let epoch: Option<String> =
                tx.query_row("SELECT epoch FROM libraries WHERE id = ?1", [&l.id], |r| {
                    r.get(0)
                })?;
            if epoch.as_deref() != Some(l.epoch.as_str()) {
                // the hub's log is another one (restored, re-created): read it again
                reset_in(tx, &l.id, &l.epoch)?;
            }
            tx.execute(
                "UPDATE libraries SET name = ?2, hub_id = ?3, role = ?4, \
                 head_seq = MAX(head_seq, ?5), review_required = ?6 WHERE id = ?1",
                params![
                    l.id,
                    l.name,
                    hub_id,
                    l.role.as_str(),
                    l.head_seq,
                    l.review_required
                ],
            )?;
            let same = name == l.name
                && role.as_deref() == Some(l.role.as_str())
                && review == l.review_required;
            Ok(if same { Upsert::Same } else { Upsert::Changed })
        }
    }
}

/// Starts `library` again in `epoch` (see [`Store::reset_library`]).
fn reset_in(tx: &rusqlite::Transaction<'_>, library: &str, epoch: &str) -> rusqlite::Result<()> {
    tx.execute(
        "UPDATE libraries SET epoch = ?2, last_seq = 0, head_seq = 0, resetting = 1 \
         WHERE id = ?1",
        params![library, epoch],
    )?;
    tx.execute(
        "UPDATE template_revisions SET hub_seq = NULL WHERE library = ?1",
        [library],
    )?;
    tx.execute(
        "UPDATE templates SET hub_rev = NULL, hub_deleted = 0, conflicted = 0 \
         WHERE library = ?1",
        [library],
    )?;
    tx.execute("DELETE FROM sync_conflicts WHERE library = ?1", [library])?;
    Ok(())
}

/// Removes a team library's templates, revisions, conflicts and outbox (its send history
/// stays) and marks it removed.
fn purge_in(tx: &rusqlite::Transaction<'_>, library: &str, now: u64) -> rusqlite::Result<()> {
    tx.execute("DELETE FROM sync_outbox WHERE library = ?1", [library])?;
    tx.execute("DELETE FROM sync_conflicts WHERE library = ?1", [library])?;
    tx.execute(
        "DELETE FROM template_revisions WHERE library = ?1",
        [library],
    )?;
    tx.execute("DELETE FROM templates WHERE library = ?1", [library])?;
    tx.execute(
        "UPDATE libraries SET role = NULL, removed_at = ?2, last_seq = 0, head_seq = 0, \
         resetting = 0 WHERE id = ?1",
        params![library, to_i64(now)],
    )?;
    Ok(())
}

fn rev_state(s: RevState) -> &'static str {
    match s {
        RevState::Head => "head",
        RevState::Superseded => "superseded",
        RevState::Conflict => "conflict",
        RevState::Proposed => "proposed",
        RevState::Rejected => "rejected",
        RevState::Resolved => "resolved",
    }
}

/// A template row for a template first seen in a pulled revision: hidden until a head of it
/// is shown.
fn ensure_template_row(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    id: &str,
    body: Option<&Template>,
    now: u64,
) -> rusqlite::Result<()> {
    let exists: bool = tx.row(
        "SELECT EXISTS (SELECT 1 FROM templates WHERE library = ?1 AND id = ?2)",
        [library, id],
        |r| r.get(0),
    )?;
    if exists {
        return Ok(());
    }
    let body_json = match body {
        Some(t) => serde_json::to_string(t).map_err(json_err)?,
        None => serde_json::json!({"id": id, "title": id, "parts": []}).to_string(),
    };
    tx.exec(
        "INSERT INTO templates (library, id, title, revision, body_json, updated_at, deleted_at) \
         VALUES (?1, ?2, ?3, 0, ?4, ?5, ?5)",
        params![
            library,
            id,
            body.map_or(id, |t| t.title.as_str()),
            body_json,
            to_i64(now)
        ],
    )?;
    Ok(())
}

/// Writes (or updates the hub's record of) one pulled revision.
fn apply_revision(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    seq: i64,
    rec: &RevisionRecord,
    device_id: &str,
    now: u64,
    applied: &mut Applied,
) -> rusqlite::Result<Option<Template>> {
    let r = &rec.revision;
    let state = rev_state(rec.state);
    let before: Option<String> = tx
        .row(
            "SELECT state FROM template_revisions WHERE rev_id = ?1 AND library = ?2",
            [r.rev_id.as_str(), library],
            |row| row.get(0),
        )
        .optional()?
        .flatten();
    // This device's proposal approved (or its draft taken up): the version shown may stay the
    // same, but its team state changes, and whoever shows it must hear so.
    if matches!(before.as_deref(), Some("proposed" | "draft"))
        && before.as_deref() != Some(state)
        && !applied.shown.contains(&r.template)
    {
        applied.shown.push(r.template.clone());
    }
    let n = tx.exec(
        "UPDATE template_revisions SET state = ?2, hub_seq = ?3, at_ms = ?4, author_user = ?5, \
         author_name = ?6, author_device = ?7 WHERE rev_id = ?1 AND library = ?8",
        params![
            r.rev_id,
            state,
            seq,
            rec.received_at_ms,
            rec.author.user_id,
            rec.author.user_name,
            rec.author.device_id,
            library
        ],
    )?;
    applied.revisions += 1;
    if n > 0 {
        return Ok(None);
    }
    let known = r.template_body().ok().flatten();
    ensure_template_row(tx, library, &r.template, known.as_ref(), now)?;
    let revision = next_revision(tx, library, &r.template)?;
    let mut fresh = None;
    let body_json = match (&r.op, known) {
        (Op::Delete, _) => None,
        (Op::Put, Some(mut t)) => {
            t.revision = revision;
            let b = serde_json::to_string(&t).map_err(json_err)?;
            fresh = Some(t);
            Some(b)
        }
        // a newer format (or a body this build cannot read): kept verbatim
        (Op::Put, None) => r.body.as_ref().map(|b| b.to_string()),
    };
    let meta = RevMeta {
        rev_id: &r.rev_id,
        parents: &r.parents,
        op: r.op,
        format: r.format,
        state,
        author_user: &rec.author.user_id,
        author_name: &rec.author.user_name,
        author_device: &rec.author.device_id,
        own: rec.author.device_id == device_id,
        hub_seq: Some(seq),
        at_ms: rec.received_at_ms,
        client_at: r.client_at_ms,
    };
    add_revision(
        tx,
        library,
        &r.template,
        revision,
        body_json.as_deref(),
        now,
        Some(&meta),
    )?;
    Ok(fresh)
}

/// Applies a template's state after a change: the hub's head, deleted flag and open conflicts;
/// and the version shown follows the hub's head unless this device has an edit of it waiting
/// to be pushed.
fn apply_state(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    st: &TemplateState,
    fresh: Option<(&str, Template)>,
    now: u64,
    applied: &mut Applied,
) -> rusqlite::Result<()> {
    let id = st.template.as_str();
    let row: Option<(Option<String>, Option<i64>, bool)> = tx
        .row(
            "SELECT head_rev, deleted_at, conflicted FROM templates WHERE library = ?1 AND id = ?2",
            [library, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let (shown, deleted_at, was_conflicted) = match row {
        Some(r) => r,
        None => {
            ensure_template_row(tx, library, id, None, now)?;
            (None, Some(to_i64(now)), false)
        }
    };
    tx.exec(
        "UPDATE templates SET hub_rev = ?3, hub_deleted = ?4, conflicted = ?5 \
         WHERE library = ?1 AND id = ?2",
        params![
            library,
            id,
            st.head_rev,
            st.deleted,
            !st.conflicts.is_empty()
        ],
    )?;
    if was_conflicted || !st.conflicts.is_empty() {
        mirror_conflicts(tx, library, st, applied)?;
    }
    let pending: bool = tx.row(
        "SELECT EXISTS (SELECT 1 FROM sync_outbox o JOIN template_revisions r \
         ON r.rev_id = o.rev_id WHERE o.library = ?1 AND r.template_id = ?2)",
        [library, id],
        |r| r.get(0),
    )?;
    if pending {
        return Ok(());
    }
    if shown.as_deref() == Some(st.head_rev.as_str()) && deleted_at.is_some() == st.deleted {
        return Ok(());
    }
    // This device's own proposal (waiting for review) or draft (refused) stays shown while the
    // hub's head is still the version it was made from; a new head, an approval (the proposal
    // becomes head) or a rejection shows the hub's head again.
    if let Some(rev) = &shown {
        let mine: Option<(bool, Option<String>, Option<String>)> = tx
            .row(
                "SELECT own, state, json_extract(parents_json, '$[0]') FROM template_revisions \
                 WHERE rev_id = ?1",
                [rev],
                |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
            )
            .optional()?;
        if let Some((true, Some(state), Some(parent))) = mine {
            if (state == "proposed" || state == "draft") && parent == st.head_rev {
                return Ok(());
            }
        }
    }
    // the head just written by this page needs no reading back
    if let Some((rev, t)) = fresh.filter(|(rev, _)| *rev == st.head_rev) {
        if !st.deleted {
            show_template(tx, library, &t, Some(rev), now)?;
            applied.shown.push(id.to_string());
            return Ok(());
        }
    }
    type Head = (i64, Option<String>, Option<String>, Option<i64>);
    let head: Option<Head> = tx
        .row(
            "SELECT revision, body_json, op, format FROM template_revisions \
             WHERE rev_id = ?1 AND library = ?2",
            [&st.head_rev, library],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .optional()?;
    let Some((n, body, op, format)) = head else {
        return Ok(()); // a head this device never got: the next page brings it
    };
    if st.deleted || op.as_deref() == Some("delete") {
        tx.exec(
            "UPDATE templates SET head_rev = ?3, deleted_at = COALESCE(deleted_at, ?4), \
             updated_at = ?4 WHERE library = ?1 AND id = ?2",
            params![library, id, st.head_rev, to_i64(now)],
        )?;
        if deleted_at.is_none() {
            applied.shown.push(id.to_string());
        }
        return Ok(());
    }
    let readable = format.is_none_or(|f| f <= i64::from(FORMAT));
    let t = body
        .filter(|_| readable)
        .and_then(|b| serde_json::from_str::<Template>(&b).ok());
    if let Some(mut t) = t {
        t.revision = u32::try_from(n).unwrap_or(0);
        show_template(tx, library, &t, Some(&st.head_rev), now)?;
        applied.shown.push(id.to_string());
    }
    Ok(())
}

/// Mirrors the hub's open conflicts of a template.
fn mirror_conflicts(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    st: &TemplateState,
    applied: &mut Applied,
) -> rusqlite::Result<()> {
    let id = st.template.as_str();
    let old: Vec<String> = {
        let mut stmt = tx.prepare_cached(
            "SELECT id FROM sync_conflicts WHERE library = ?1 AND template = ?2 ORDER BY id",
        )?;
        let ids = stmt
            .query_map([library, id], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        ids
    };
    let mut new: Vec<&ConflictInfo> = st.conflicts.iter().collect();
    new.sort_by(|a, b| a.id.cmp(&b.id));
    if old
        .iter()
        .map(String::as_str)
        .ne(new.iter().map(|c| c.id.as_str()))
    {
        applied.conflicts_changed = true;
    }
    tx.exec(
        "DELETE FROM sync_conflicts WHERE library = ?1 AND template = ?2",
        [library, id],
    )?;
    for c in new {
        tx.exec(
            "INSERT INTO sync_conflicts (library, id, template, head_rev, other_rev, base_rev, \
             fields_json, opened_seq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8) \
             ON CONFLICT (library, id) DO UPDATE SET template = excluded.template, \
             head_rev = excluded.head_rev, other_rev = excluded.other_rev, \
             base_rev = excluded.base_rev, fields_json = excluded.fields_json, \
             opened_seq = excluded.opened_seq",
            params![
                library,
                c.id,
                id,
                c.head_rev,
                c.other_rev,
                c.base_rev,
                serde_json::to_string(&c.fields).map_err(json_err)?,
                c.opened_seq
            ],
        )?;
    }
    Ok(())
}

const TEMPLATE_COLUMNS: &str = "library, id, revision, body_json, usage_count, last_used_at, \
     updated_at, deleted_at, head_rev, hub_rev";

fn stored_template(r: &Row<'_>) -> rusqlite::Result<StoredTemplate> {
    Ok(StoredTemplate {
        library: r.get(0)?,
        id: r.get(1)?,
        revision: u32::try_from(r.get::<_, i64>(2)?).unwrap_or(0),
        body_json: r.get(3)?,
        usage_count: to_u64(r.get(4)?),
        last_used_at: r.get::<_, Option<i64>>(5)?.map(to_u64),
        updated_at: to_u64(r.get(6)?),
        deleted_at: r.get::<_, Option<i64>>(7)?.map(to_u64),
        head_rev: r.get(8)?,
        hub_rev: r.get(9)?,
    })
}

fn bump_library_version(tx: &rusqlite::Transaction<'_>) -> rusqlite::Result<()> {
    tx.execute(
        "INSERT INTO meta (key, value) VALUES ('library_version', '1') \
         ON CONFLICT(key) DO UPDATE SET value = CAST(CAST(value AS INTEGER) + 1 AS TEXT)",
        [],
    )?;
    Ok(())
}

fn json_err(e: serde_json::Error) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(Box::new(e))
}

/// `execute` and `query_row` through the connection's statement cache: a pulled page runs the
/// same dozen statements for each of up to a thousand changes.
trait Cached {
    fn exec<P: rusqlite::Params>(&self, sql: &str, p: P) -> rusqlite::Result<usize>;
    fn row<T, P: rusqlite::Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        p: P,
        f: F,
    ) -> rusqlite::Result<T>;
}

impl Cached for Connection {
    fn exec<P: rusqlite::Params>(&self, sql: &str, p: P) -> rusqlite::Result<usize> {
        self.prepare_cached(sql)?.execute(p)
    }

    fn row<T, P: rusqlite::Params, F: FnOnce(&Row<'_>) -> rusqlite::Result<T>>(
        &self,
        sql: &str,
        p: P,
        f: F,
    ) -> rusqlite::Result<T> {
        self.prepare_cached(sql)?.query_row(p, f)
    }
}

fn other_err(msg: String) -> rusqlite::Error {
    rusqlite::Error::ToSqlConversionFailure(msg.into())
}

/// Shows `t` (whose `revision` is already set) as template `t.id` of `library`: creates the
/// row or updates (and undeletes) it with its usage kept. `head_rev` is the team revision
/// shown (`None` in the local library).
fn show_template(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    t: &Template,
    head_rev: Option<&str>,
    now: u64,
) -> rusqlite::Result<String> {
    let body = serde_json::to_string(t).map_err(json_err)?;
    let tags = serde_json::to_string(&t.tags).map_err(json_err)?;
    tx.exec(
        "INSERT INTO templates (library, id, title, folder, tags_json, shortcut, revision, \
         body_json, usage_count, updated_at, head_rev) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, 0, ?9, ?10) \
         ON CONFLICT (library, id) DO UPDATE SET title = excluded.title, \
         folder = excluded.folder, tags_json = excluded.tags_json, \
         shortcut = excluded.shortcut, revision = excluded.revision, \
         body_json = excluded.body_json, updated_at = excluded.updated_at, deleted_at = NULL, \
         head_rev = excluded.head_rev",
        params![
            library,
            t.id,
            t.title,
            t.folder,
            tags,
            t.shortcut,
            t.revision,
            body,
            to_i64(now),
            head_rev
        ],
    )?;
    Ok(body)
}

/// What a team revision carries besides its body.
#[derive(Debug)]
struct RevMeta<'a> {
    rev_id: &'a str,
    parents: &'a [String],
    op: Op,
    format: u32,
    state: &'a str,
    author_user: &'a str,
    author_name: &'a str,
    author_device: &'a str,
    own: bool,
    hub_seq: Option<i64>,
    at_ms: i64,
    client_at: i64,
}

/// Adds revision `revision` of template `id` (`body_json` `None`: a tombstone). Returns its
/// rowid (the order revisions were written in).
fn add_revision(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    id: &str,
    revision: u32,
    body_json: Option<&str>,
    now: u64,
    meta: Option<&RevMeta<'_>>,
) -> rusqlite::Result<i64> {
    match meta {
        None => tx.exec(
            "INSERT INTO template_revisions (library, template_id, revision, body_json, \
             created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
            params![library, id, revision, body_json, to_i64(now)],
        )?,
        Some(m) => {
            let parents = serde_json::to_string(m.parents).map_err(json_err)?;
            tx.exec(
                "INSERT INTO template_revisions (library, template_id, revision, body_json, \
                 created_at, rev_id, parents_json, op, format, state, author_user, author_name, \
                 author_device, own, hub_seq, at_ms, client_at) VALUES (?1, ?2, ?3, ?4, ?5, \
                 ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16, ?17)",
                params![
                    library,
                    id,
                    revision,
                    body_json,
                    to_i64(now),
                    m.rev_id,
                    parents,
                    op_str(m.op),
                    m.format,
                    m.state,
                    m.author_user,
                    m.author_name,
                    m.author_device,
                    m.own,
                    m.hub_seq,
                    m.at_ms,
                    m.client_at,
                ],
            )?
        }
    };
    Ok(tx.last_insert_rowid())
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Put => "put",
        Op::Delete => "delete",
    }
}

/// The next revision number of template `id` of `library`.
fn next_revision(tx: &rusqlite::Transaction<'_>, library: &str, id: &str) -> rusqlite::Result<u32> {
    let n: i64 = tx.row(
        "SELECT COALESCE(MAX(revision), 0) + 1 FROM template_revisions \
         WHERE library = ?1 AND template_id = ?2",
        [library, id],
        |r| r.get(0),
    )?;
    Ok(u32::try_from(n).unwrap_or(u32::MAX))
}

/// Who edits a team library on this device.
#[derive(Debug)]
struct Editor {
    user_id: String,
    user_name: String,
    device_id: String,
}

/// The editor of `library` when it is a team library (`None` for the local one). A library
/// that does not exist, or was left, is an error.
fn editor_of(tx: &rusqlite::Transaction<'_>, library: &str) -> rusqlite::Result<Option<Editor>> {
    let row: Option<(String, Option<String>, Option<i64>)> = tx
        .query_row(
            "SELECT kind, hub_id, removed_at FROM libraries WHERE id = ?1",
            [library],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let Some((kind, hub, removed)) = row else {
        return Err(other_err(format!("no library {library:?}")));
    };
    if removed.is_some() {
        return Err(other_err(format!("library {library:?} was left")));
    }
    if kind == "local" {
        return Ok(None);
    }
    let hub = hub.unwrap_or_default();
    tx.query_row(
        "SELECT user_id, user_name, device_id FROM team_hubs WHERE hub_id = ?1",
        [&hub],
        |r| {
            Ok(Some(Editor {
                user_id: r.get(0)?,
                user_name: r.get(1)?,
                device_id: r.get(2)?,
            }))
        },
    )
}

/// The parent of a new edit of a team template: the revision shown, unless it is a draft the
/// hub never got (then the hub's head). `None` for a create.
fn edit_parent(conn: &Connection, library: &str, id: &str) -> rusqlite::Result<Option<String>> {
    let row: Option<(Option<String>, Option<String>, Option<String>)> = conn
        .query_row(
            "SELECT t.head_rev, t.hub_rev, r.state FROM templates t \
             LEFT JOIN template_revisions r ON r.rev_id = t.head_rev \
             WHERE t.library = ?1 AND t.id = ?2",
            [library, id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    Ok(match row {
        None => None,
        Some((head, hub, state)) => match (head, state.as_deref()) {
            (Some(h), Some(s)) if s != "draft" => Some(h),
            _ => hub,
        },
    })
}

/// Writes an edit of this device to a team library: the revision `rev_id` (`pending`) and its
/// outbox row (the template's row exists already). Returns the rev_id.
#[allow(clippy::too_many_arguments)]
fn own_revision(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    ed: &Editor,
    id: &str,
    revision: u32,
    body_json: Option<&str>,
    parents: &[String],
    now: u64,
    rev_id: String,
) -> rusqlite::Result<String> {
    let op = if body_json.is_some() {
        Op::Put
    } else {
        Op::Delete
    };
    let meta = RevMeta {
        rev_id: &rev_id,
        parents,
        op,
        format: FORMAT,
        state: "pending",
        author_user: &ed.user_id,
        author_name: &ed.user_name,
        author_device: &ed.device_id,
        own: true,
        hub_seq: None,
        at_ms: to_i64(now),
        client_at: to_i64(now),
    };
    let ord = add_revision(tx, library, id, revision, body_json, now, Some(&meta))?;
    tx.execute(
        "INSERT INTO sync_outbox (library, rev_id, ord, created_at) VALUES (?1, ?2, ?3, ?4)",
        params![library, rev_id, ord, to_i64(now)],
    )?;
    Ok(rev_id)
}

/// A new revision id: a UUIDv7 (time-ordered), lowercase hyphenated.
pub fn new_rev_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn put_in(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    t: &Template,
    base_revision: Option<u32>,
    now: u64,
) -> rusqlite::Result<PutOutcome> {
    let editor = editor_of(tx, library)?;
    let cur: Option<(i64, String, Option<i64>)> = tx
        .query_row(
            "SELECT revision, body_json, deleted_at FROM templates WHERE library = ?1 AND id = ?2",
            [library, &t.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let mut t = t.clone();
    let created = match cur {
        None => {
            if base_revision.is_some_and(|b| b != 0) {
                return Ok(PutOutcome::Conflict { current: 0 });
            }
            true
        }
        Some((rev, body, deleted)) => {
            let rev = u32::try_from(rev).unwrap_or(0);
            if base_revision.is_some_and(|b| b != rev) {
                return Ok(PutOutcome::Conflict { current: rev });
            }
            t.revision = rev;
            let same = deleted.is_none()
                && serde_json::from_str::<Template>(&body).is_ok_and(|old| old == t);
            if same {
                return Ok(PutOutcome::Unchanged(rev));
            }
            false
        }
    };
    t.revision = next_revision(tx, library, &t.id)?;
    match &editor {
        None => {
            let body = show_template(tx, library, &t, None, now)?;
            add_revision(tx, library, &t.id, t.revision, Some(&body), now, None)?;
        }
        Some(ed) => {
            let parents: Vec<String> = edit_parent(tx, library, &t.id)?.into_iter().collect();
            let rev_id = new_rev_id();
            let body = show_template(tx, library, &t, Some(&rev_id), now)?;
            own_revision(
                tx,
                library,
                ed,
                &t.id,
                t.revision,
                Some(&body),
                &parents,
                now,
                rev_id,
            )?;
        }
    }
    Ok(if created {
        PutOutcome::Created(t.revision)
    } else {
        PutOutcome::Updated(t.revision)
    })
}

fn delete_in(
    tx: &rusqlite::Transaction<'_>,
    library: &str,
    id: &str,
    base_revision: Option<u32>,
    now: u64,
) -> rusqlite::Result<DeleteOutcome> {
    let editor = editor_of(tx, library)?;
    let cur: Option<(i64, Option<i64>)> = tx
        .query_row(
            "SELECT revision, deleted_at FROM templates WHERE library = ?1 AND id = ?2",
            [library, id],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .optional()?;
    let Some((rev, deleted)) = cur else {
        return Ok(DeleteOutcome::NotFound);
    };
    let revision = u32::try_from(rev).unwrap_or(0);
    if base_revision.is_some_and(|b| b != revision) {
        return Ok(DeleteOutcome::Conflict { current: revision });
    }
    if deleted.is_some() {
        return Ok(DeleteOutcome::AlreadyDeleted { revision });
    }
    let head_rev = match &editor {
        None => None,
        Some(ed) => {
            let parents: Vec<String> = edit_parent(tx, library, id)?.into_iter().collect();
            let n = next_revision(tx, library, id)?;
            Some(own_revision(
                tx,
                library,
                ed,
                id,
                n,
                None,
                &parents,
                now,
                new_rev_id(),
            )?)
        }
    };
    tx.execute(
        "UPDATE templates SET deleted_at = ?3, updated_at = ?3, \
         head_rev = COALESCE(?4, head_rev) WHERE library = ?1 AND id = ?2",
        params![library, id, to_i64(now), head_rev],
    )?;
    Ok(DeleteOutcome::Deleted { revision })
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fresh database file in a scratch directory (removed on drop).
    pub(crate) struct Scratch(pub PathBuf);
    impl Scratch {
        pub(crate) fn new(name: &str) -> Scratch {
            use std::sync::atomic::{AtomicU32, Ordering};
            static N: AtomicU32 = AtomicU32::new(0);
            let d = std::env::temp_dir().join(format!(
                "quiver-store-{}-{}-{name}",
                std::process::id(),
                N.fetch_add(1, Ordering::Relaxed)
            ));
            let _ = std::fs::remove_dir_all(&d);
            std::fs::create_dir_all(&d).unwrap();
            Scratch(d)
        }
        pub(crate) fn db(&self) -> PathBuf {
            self.0.join("quiver.db")
        }
    }
    impl Drop for Scratch {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    pub(crate) fn new_send<'a>(key: &'a str, payload: &'a str) -> NewSend<'a> {
        NewSend {
            idempotency_key: key,
            template_id: "greeting",
            revision: 1,
            part_index: 0,
            platform: "udesk",
            workspace: "w1",
            conversation: Some("c1"),
            customer: None,
            payload,
            meter_key: r#"["udesk","w1"]"#,
            library: LOCAL,
            rev_id: None,
        }
    }

    #[test]
    fn sha256_matches_known_vectors() {
        assert_eq!(
            sha256_hex(""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn new_database_is_migrated_wal_and_seeded_once() {
        let s = Scratch::new("seed");
        let st = Store::open(&s.db(), 5).unwrap();
        assert_eq!(st.schema_version().unwrap() as usize, MIGRATIONS.len());
        let mode: String = st
            .conn
            .pragma_query_value(None, "journal_mode", |r| r.get(0))
            .unwrap();
        assert_eq!(mode, "wal");
        let sync: i64 = st
            .conn
            .pragma_query_value(None, "synchronous", |r| r.get(0))
            .unwrap();
        assert_eq!(sync, 2, "synchronous=FULL");
        let all = st.templates_after(None, None, 100).unwrap();
        assert!(all.iter().any(|t| t.id == "greeting"));
        let revs: i64 = st
            .conn
            .query_row("SELECT COUNT(*) FROM template_revisions", [], |r| r.get(0))
            .unwrap();
        assert_eq!(revs as usize, all.len());
        // emptied by the user: reopening does not seed again
        st.conn.execute("DELETE FROM templates", []).unwrap();
        drop(st);
        let st = Store::open(&s.db(), 6).unwrap();
        assert!(st.templates_after(None, None, 100).unwrap().is_empty());
    }

    #[test]
    fn seeded_greeting_has_the_documented_shape() {
        let s = Scratch::new("greeting");
        let st = Store::open(&s.db(), 5).unwrap();
        let g = st.templates_after(None, None, 100).unwrap();
        let g = g.iter().find(|t| t.id == "greeting").unwrap();
        let t: Template = serde_json::from_str(&g.body_json).unwrap();
        assert_eq!(t.title, "Greeting");
        assert_eq!(t.folder, "General");
        assert_eq!(t.tags, vec!["hello", "opening"]);
        assert_eq!(t.shortcut.as_deref(), Some("hi"));
        assert_eq!(
            serde_json::to_value(&t.parts).unwrap(),
            serde_json::json!([{
                "type": "text",
                "text": "Hello {{customer.name|there}}, how can I help you today?"
            }])
        );
        let (tags, folder): (String, String) = st
            .conn
            .query_row(
                "SELECT tags_json, folder FROM templates WHERE id = 'greeting'",
                [],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .unwrap();
        assert_eq!(tags, r#"["hello","opening"]"#);
        assert_eq!(folder, "General");
    }

    #[test]
    fn newer_schema_is_refused() {
        let s = Scratch::new("newer");
        drop(Store::open(&s.db(), 0).unwrap());
        {
            let c = Connection::open(s.db()).unwrap();
            c.pragma_update(None, "user_version", 99).unwrap();
        }
        let e = Store::open(&s.db(), 0).unwrap_err();
        assert!(e.message.contains("schema version 99"), "{e}");
        assert!(e.message.contains(&s.db().display().to_string()), "{e}");
    }

    #[test]
    fn a_reservation_granted_at_once_is_written_as_sending_in_its_own_transaction() {
        let s = Scratch::new("reserve-with");
        let mut st = Store::open(&s.db(), 0).unwrap();
        // granted: `sending` with its release time, in the reply and on disk
        let (a, created) = st
            .reserve_with(&new_send("k1", "hello"), 100, |row, created| {
                assert!(created && row.state == SendState::Queued);
                true
            })
            .unwrap();
        assert!(created);
        assert_eq!((a.state, a.released_at), (SendState::Sending, Some(100)));
        let on_disk = st.send(a.send_id).unwrap().unwrap();
        assert_eq!(
            (on_disk.state, on_disk.released_at),
            (SendState::Sending, Some(100))
        );
        // a replay of a row that is not queued any more is never asked again
        let (b, created) = st
            .reserve_with(&new_send("k1", "hello"), 200, |_, _| panic!("asked again"))
            .unwrap();
        assert!(!created);
        assert_eq!((b.send_id, b.state), (a.send_id, SendState::Sending));
        // not granted: queued, as `reserve` writes it
        let (c, _) = st
            .reserve_with(&new_send("k2", "x"), 300, |_, _| false)
            .unwrap();
        assert_eq!((c.state, c.released_at), (SendState::Queued, None));
        // a queued row replayed may be granted then
        let (d, created) = st
            .reserve_with(&new_send("k2", "x"), 400, |row, created| {
                !created && row.state == SendState::Queued
            })
            .unwrap();
        assert_eq!(
            (d.send_id, d.state, created),
            (c.send_id, SendState::Sending, false)
        );
    }

    #[test]
    fn reserve_is_idempotent_and_transitions_are_guarded() {
        let s = Scratch::new("reserve");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let (a, new) = st.reserve(&new_send("k1", "hello"), 100).unwrap();
        assert!(new);
        assert_eq!(a.state, SendState::Queued);
        assert_eq!(a.queued_at, Some(100));
        assert_eq!(a.payload_sha256, sha256_hex("hello"));
        let (b, new) = st.reserve(&new_send("k1", "other"), 200).unwrap();
        assert!(!new);
        assert_eq!(a, b);
        assert_eq!(st.history(10).unwrap().len(), 1);

        let q = [SendState::Queued];
        assert!(st
            .transition(a.send_id, &q, SendState::Sending, None, 300)
            .unwrap());
        assert!(!st
            .transition(a.send_id, &q, SendState::Sending, None, 301)
            .unwrap());
        let sending = [SendState::Sending];
        assert!(st
            .transition(a.send_id, &sending, SendState::Sent, None, 400)
            .unwrap());
        let row = st.send(a.send_id).unwrap().unwrap();
        assert_eq!(
            (row.state, row.released_at, row.sent_at),
            (SendState::Sent, Some(300), Some(400))
        );
        assert!(st.send(999).unwrap().is_none());

        let (c, _) = st.reserve(&new_send("k2", "x"), 500).unwrap();
        assert!(st
            .transition(c.send_id, &q, SendState::Failed, Some("boom"), 600)
            .unwrap());
        let row = st.send(c.send_id).unwrap().unwrap();
        assert_eq!(
            (row.state, row.error.as_deref()),
            (SendState::Failed, Some("boom"))
        );
        let done = st.done_since(0).unwrap();
        assert_eq!(done.len(), 2, "{done:?}");
        assert_eq!((done[0].done_at, done[0].went_out), (400, true));
        assert_eq!((done[1].done_at, done[1].went_out), (600, false));
        assert_eq!(done[0].meter_key.as_deref(), Some(r#"["udesk","w1"]"#));
    }

    /// Commits in the database's WAL: frames of the current WAL generation (the header's salt)
    /// whose "database size after commit" is set (https://sqlite.org/fileformat2.html#walformat).
    fn wal_commits(db: &Path) -> usize {
        let mut wal = db.as_os_str().to_owned();
        wal.push("-wal");
        let bytes = std::fs::read(PathBuf::from(wal)).unwrap_or_default();
        if bytes.len() < 32 {
            return 0;
        }
        let be = |at: usize| u32::from_be_bytes(bytes[at..at + 4].try_into().unwrap());
        let (page, salt) = (be(8) as usize, (be(16), be(20)));
        (32..)
            .step_by(24 + page)
            .take_while(|at| at + 24 + page <= bytes.len())
            .filter(|&at| (be(at + 8), be(at + 12)) == salt && be(at + 4) != 0)
            .count()
    }

    /// A store with template `x` and a send of it that has begun (`sending`).
    fn begun_send_of_x(name: &str) -> (Scratch, Store, SendRow) {
        let s = Scratch::new(name);
        let mut st = Store::open(&s.db(), 0).unwrap();
        st.import(LOCAL, &[tpl("x", "X", "1")], 1).unwrap();
        let mut n = new_send("k", "p");
        n.template_id = "x";
        let (row, _) = st.reserve(&n, 10).unwrap();
        let q = [SendState::Queued];
        assert!(st
            .transition(row.send_id, &q, SendState::Sending, None, 20)
            .unwrap());
        (s, st, row)
    }

    #[test]
    fn finish_records_the_outcome_and_the_use_in_one_commit() {
        let (s, mut st, row) = begun_send_of_x("finish");
        let sending = [SendState::Sending];
        let before = wal_commits(&s.db());
        assert!(before > 0, "the WAL holds the writes so far");
        let f = st
            .finish(
                row.send_id,
                &sending,
                SendState::Sent,
                None,
                30,
                Some((LOCAL, "x")),
            )
            .unwrap();
        assert!(f.moved);
        assert!(matches!(f.counted, Some(Ok(()))), "{f:?}");
        assert_eq!(wal_commits(&s.db()), before + 1, "one commit for both");
        let done = st.send(row.send_id).unwrap().unwrap();
        assert_eq!((done.state, done.sent_at), (SendState::Sent, Some(30)));
        let t = st.template(LOCAL, "x").unwrap().unwrap();
        assert_eq!((t.usage_count, t.last_used_at), (1, Some(30)));

        // not in a state it can move from: nothing moves, nothing is counted
        let f = st
            .finish(
                row.send_id,
                &sending,
                SendState::Failed,
                Some("late"),
                40,
                Some((LOCAL, "x")),
            )
            .unwrap();
        assert!(!f.moved);
        assert!(f.counted.is_none());
        assert_eq!(
            st.send(row.send_id).unwrap().unwrap().state,
            SendState::Sent
        );
        assert_eq!(st.template(LOCAL, "x").unwrap().unwrap().usage_count, 1);
    }

    #[test]
    fn finish_keeps_the_outcome_when_the_use_cannot_be_counted() {
        let (s, mut st, row) = begun_send_of_x("finish-count");
        st.conn
            .execute_batch(
                "CREATE TRIGGER no_count BEFORE UPDATE OF usage_count ON templates \
                 BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        let f = st
            .finish(
                row.send_id,
                &[SendState::Sending],
                SendState::Sent,
                None,
                30,
                Some((LOCAL, "x")),
            )
            .unwrap();
        assert!(f.moved);
        let e = f.counted.expect("a count was asked for").unwrap_err();
        assert!(e.to_string().contains("counting use of \"x\""), "{e}");
        // the outcome is durable and the store goes on
        drop(st);
        let mut st = Store::open(&s.db(), 50).unwrap();
        assert_eq!(
            st.send(row.send_id).unwrap().unwrap().state,
            SendState::Sent
        );
        assert_eq!(st.template(LOCAL, "x").unwrap().unwrap().usage_count, 0);
        let (other, _) = st.reserve(&new_send("k2", "p"), 60).unwrap();
        assert_eq!(other.state, SendState::Queued);
    }

    #[test]
    fn recovery_helpers() {
        let s = Scratch::new("recover");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let (a, _) = st.reserve(&new_send("a", "1"), 1).unwrap();
        let (b, _) = st.reserve(&new_send("b", "2"), 2).unwrap();
        let (c, _) = st.reserve(&new_send("c", "3"), 3).unwrap();
        st.transition(
            a.send_id,
            &[SendState::Queued],
            SendState::Sending,
            None,
            10,
        )
        .unwrap();
        assert_eq!(
            st.fail_all_in(SendState::Sending, "lost", 20).unwrap(),
            vec![a.send_id]
        );
        assert_eq!(
            st.send(a.send_id).unwrap().unwrap().error.as_deref(),
            Some("lost")
        );
        let q: Vec<i64> = st.queued().unwrap().iter().map(|r| r.send_id).collect();
        assert_eq!(q, vec![b.send_id, c.send_id]);
        assert_eq!(st.done_since(0).unwrap()[0].done_at, 20);
    }

    #[test]
    fn state_check_constraint_holds() {
        let s = Scratch::new("check");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let (a, _) = st.reserve(&new_send("a", "1"), 1).unwrap();
        let e = st.conn.execute(
            "UPDATE history SET state = 'bogus' WHERE id = ?1",
            [a.send_id],
        );
        assert!(e.is_err());
    }

    fn tpl(id: &str, title: &str, text: &str) -> Template {
        serde_json::from_value(serde_json::json!({
            "id": id, "title": title, "tags": ["t"],
            "parts": [{"type": "text", "text": text}],
        }))
        .unwrap()
    }

    #[test]
    fn put_keeps_every_revision_and_is_idempotent() {
        let s = Scratch::new("put");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let v0 = st.library_version().unwrap();
        let a = tpl("a", "A", "one");
        assert_eq!(
            st.put_template(LOCAL, &a, None, 10).unwrap(),
            PutOutcome::Created(1)
        );
        assert_eq!(
            st.put_template(LOCAL, &a, None, 11).unwrap(),
            PutOutcome::Unchanged(1)
        );
        let v1 = st.library_version().unwrap();
        assert_eq!(v1, v0 + 1);
        let a2 = tpl("a", "A", "two");
        assert_eq!(
            st.put_template(LOCAL, &a2, Some(7), 12).unwrap(),
            PutOutcome::Conflict { current: 1 }
        );
        assert_eq!(
            st.put_template(LOCAL, &a2, Some(1), 13).unwrap(),
            PutOutcome::Updated(2)
        );
        let cur = st.template(LOCAL, "a").unwrap().unwrap();
        assert_eq!(cur.revision, 2);
        assert!(cur.body_json.contains("two") && cur.body_json.contains(r#""revision":2"#));
        let (old, at) = st.template_revision(LOCAL, "a", 1).unwrap().unwrap();
        assert!(old.unwrap().contains("one"));
        assert_eq!(at, 10);
        let revs: Vec<u32> = st
            .revisions(LOCAL, "a", None, 10)
            .unwrap()
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(revs, vec![2, 1]);
        assert_eq!(st.revisions(LOCAL, "a", Some(2), 10).unwrap().len(), 1);

        // delete keeps the revisions; listing hides it; a put brings it back as revision 3
        assert_eq!(
            st.delete_template(LOCAL, "a", Some(1), 20).unwrap(),
            DeleteOutcome::Conflict { current: 2 }
        );
        assert_eq!(
            st.delete_template(LOCAL, "a", None, 20).unwrap(),
            DeleteOutcome::Deleted { revision: 2 }
        );
        assert_eq!(
            st.delete_template(LOCAL, "a", None, 21).unwrap(),
            DeleteOutcome::AlreadyDeleted { revision: 2 }
        );
        assert_eq!(
            st.delete_template(LOCAL, "zz", None, 21).unwrap(),
            DeleteOutcome::NotFound
        );
        assert!(!st
            .templates_after(None, None, 100)
            .unwrap()
            .iter()
            .any(|t| t.id == "a"));
        assert!(!st.all_templates().unwrap().iter().any(|t| t.id == "a"));
        assert_eq!(
            st.template(LOCAL, "a").unwrap().unwrap().deleted_at,
            Some(20)
        );
        assert!(st.template_revision(LOCAL, "a", 2).unwrap().is_some());
        assert_eq!(
            st.put_template(LOCAL, &a2, None, 30).unwrap(),
            PutOutcome::Updated(3)
        );
        assert_eq!(st.template(LOCAL, "a").unwrap().unwrap().deleted_at, None);
    }

    #[test]
    fn import_is_all_or_nothing() {
        let s = Scratch::new("import");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let before = st.all_templates().unwrap().len();
        let r = st
            .import(
                LOCAL,
                &[tpl("x", "X", "1"), tpl("greeting", "Greeting", "changed")],
                5,
            )
            .unwrap();
        assert_eq!(
            r,
            ImportReport {
                created: 1,
                updated: 1,
                unchanged: 0
            }
        );
        assert_eq!(st.all_templates().unwrap().len(), before + 1);
        // a failure half way (here: a trigger refusing `y`) writes nothing
        st.conn
            .execute_batch(
                "CREATE TRIGGER no_y BEFORE INSERT ON templates WHEN NEW.id = 'y' \
                 BEGIN SELECT RAISE(ABORT, 'boom'); END;",
            )
            .unwrap();
        let e = st.import(LOCAL, &[tpl("z", "Z", "1"), tpl("y", "Y", "1")], 6);
        assert!(e.is_err());
        assert!(st.template(LOCAL, "z").unwrap().is_none(), "z was written");
    }

    #[test]
    fn history_filters_and_prune() {
        let s = Scratch::new("filters");
        let mut st = Store::open(&s.db(), 0).unwrap();
        for (i, cust) in ["c1", "c2", "c1"].iter().enumerate() {
            let key = format!("k{i}");
            let mut n = new_send(&key, "p");
            n.customer = Some(cust);
            st.reserve(&n, 100 * (i as u64 + 1)).unwrap();
        }
        fn ids_of(st: &Store, f: &HistoryFilter) -> Vec<i64> {
            st.history_query(f, 10)
                .unwrap()
                .iter()
                .map(|r| r.send_id)
                .collect()
        }
        macro_rules! ids {
            ($f:expr) => {
                ids_of(&st, $f)
            };
        }
        assert_eq!(ids!(&HistoryFilter::default()), vec![3, 2, 1]);
        let f = HistoryFilter {
            customer: Some("c1".into()),
            ..Default::default()
        };
        assert_eq!(ids!(&f), vec![3, 1]);
        let f = HistoryFilter {
            since_ms: Some(200),
            until_ms: Some(300),
            ..Default::default()
        };
        assert_eq!(ids!(&f), vec![2]);
        let f = HistoryFilter {
            before_id: Some(3),
            ..Default::default()
        };
        assert_eq!(ids!(&f), vec![2, 1]);
        let f = HistoryFilter {
            state: Some(SendState::Sent),
            ..Default::default()
        };
        assert!(ids!(&f).is_empty());
        // pruning never touches queued rows
        assert_eq!(st.prune(Some(1_000), 0).unwrap(), 0);
        st.transition(1, &[SendState::Queued], SendState::Cancelled, None, 150)
            .unwrap();
        assert_eq!(st.prune(Some(150), 0).unwrap(), 1);
        assert_eq!(ids!(&HistoryFilter::default()), vec![3, 2]);
    }

    #[test]
    fn settings_rules_and_events() {
        let s = Scratch::new("settings");
        let mut st = Store::open(&s.db(), 0).unwrap();
        assert_eq!(st.setting("x").unwrap(), None);
        st.set_setting("x", "1").unwrap();
        st.set_setting("x", "2").unwrap();
        assert_eq!(st.setting("x").unwrap().as_deref(), Some("2"));
        st.set_rule("sobot", "{}", 1).unwrap();
        st.set_rule("sobot", "{\"a\":1}", 2).unwrap();
        assert_eq!(
            st.rules().unwrap(),
            vec![("sobot".into(), "{\"a\":1}".into())]
        );
        assert!(st.delete_rule("sobot").unwrap());
        assert!(!st.delete_rule("sobot").unwrap());
        st.add_meter_event("k", "user_message", 10).unwrap();
        st.add_meter_event("k", "enter_session", 20).unwrap();
        assert!(st.add_meter_event("k", "bogus", 20).is_err());
        assert_eq!(st.meter_events_since(15).unwrap().len(), 1);
        st.prune(None, 15).unwrap();
        assert_eq!(st.meter_events_since(0).unwrap().len(), 1);
        st.integrity_check().unwrap();
    }

    #[test]
    fn schema_1_databases_are_migrated() {
        let s = Scratch::new("migrate");
        {
            let c = Connection::open(s.db()).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.pragma_update(None, "user_version", 1).unwrap();
            c.execute(
                "INSERT INTO history (idempotency_key, platform, workspace, payload,                  payload_sha256, state, queued_at, released_at, sent_at)                  VALUES ('old', 'udesk', 'w', 'p', 'x', 'sent', 1, 2, 3)",
                [],
            )
            .unwrap();
        }
        let st = Store::open(&s.db(), 0).unwrap();
        assert_eq!(st.schema_version().unwrap() as usize, MIGRATIONS.len());
        let d = st.done_since(0).unwrap();
        assert_eq!((d[0].done_at, d[0].meter_key.clone()), (3, None));
    }

    #[test]
    fn schema_2_templates_move_to_the_local_library_with_their_revisions() {
        let s = Scratch::new("migrate3");
        {
            let c = Connection::open(s.db()).unwrap();
            c.execute_batch(MIGRATIONS[0]).unwrap();
            c.execute_batch(MIGRATIONS[1]).unwrap();
            c.pragma_update(None, "user_version", 2).unwrap();
            c.execute_batch(
                "INSERT INTO meta (key, value) VALUES ('seeded', '1');
                 INSERT INTO templates (id, title, revision, body_json, usage_count, updated_at,
                    deleted_at, last_used_at)
                 VALUES ('a', 'A', 2, '{\"id\":\"a\",\"title\":\"A\",\"revision\":2,\"parts\":[{\"type\":\"text\",\"text\":\"two\"}]}', 7, 5, NULL, 9),
                        ('gone', 'G', 1, '{\"id\":\"gone\",\"title\":\"G\",\"revision\":1,\"parts\":[{\"type\":\"text\",\"text\":\"x\"}]}', 0, 5, 6, NULL);
                 INSERT INTO template_revisions (template_id, revision, body_json, created_at)
                 VALUES ('a', 1, '{\"id\":\"a\"}', 1), ('a', 2, '{\"id\":\"a\"}', 2),
                        ('gone', 1, '{\"id\":\"gone\"}', 3);
                 INSERT INTO history (idempotency_key, template_id, revision, platform, workspace,
                    payload, payload_sha256, state) VALUES ('k', 'a', 2, 'udesk', 'w', 'p', 'x', 'sent');",
            )
            .unwrap();
        }
        let mut st = Store::open(&s.db(), 0).unwrap();
        assert_eq!(st.schema_version().unwrap(), 3);
        let a = st.template(LOCAL, "a").unwrap().unwrap();
        assert_eq!((a.revision, a.usage_count, a.last_used_at), (2, 7, Some(9)));
        assert_eq!(
            st.template(LOCAL, "gone").unwrap().unwrap().deleted_at,
            Some(6)
        );
        assert_eq!(st.revisions(LOCAL, "a", None, 10).unwrap().len(), 2);
        let h = st.history(10).unwrap();
        assert_eq!(
            (h[0].library.as_deref(), h[0].rev_id.as_deref()),
            (Some(LOCAL), None)
        );
        // the personal library is there, and still works as before
        assert_eq!(st.library(LOCAL).unwrap().unwrap().kind, "local");
        let t: Template = serde_json::from_value(serde_json::json!(
            {"id": "a", "title": "A", "parts": [{"type": "text", "text": "three"}]}
        ))
        .unwrap();
        assert_eq!(
            st.put_template(LOCAL, &t, Some(2), 10).unwrap(),
            PutOutcome::Updated(3)
        );
        assert_eq!(st.outbox_len(LOCAL).unwrap(), 0);
        st.integrity_check().unwrap();
        let fk: i64 = st
            .conn
            .query_row("SELECT count(*) FROM pragma_foreign_key_check", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(fk, 0);
    }

    #[test]
    fn a_team_edit_is_template_revision_and_outbox_row_or_nothing() {
        let s = Scratch::new("outbox-tx");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let hub = HubRow {
            hub_id: "h".into(),
            url: "http://127.0.0.1:1".into(),
            fingerprint: None,
            user_id: "u".into(),
            user_name: "li".into(),
            device_id: "d".into(),
            device_name: "pc".into(),
            token: "t".into(),
            joined_at: 1,
        };
        let lib = LibraryInfo {
            id: "L".into(),
            name: "team".into(),
            role: quiver_shared::sync::Role::Editor,
            epoch: "e".into(),
            head_seq: 0,
            review_required: false,
        };
        assert_eq!(st.join_hub(&hub, &[lib], 1).unwrap(), vec!["L".to_string()]);
        st.put_template("L", &tpl("a", "A", "1"), None, 2).unwrap();
        let count = |st: &Store| -> (i64, i64, i64) {
            st.conn
                .query_row(
                    "SELECT (SELECT count(*) FROM templates WHERE library = 'L'), \
                     (SELECT count(*) FROM template_revisions WHERE library = 'L'), \
                     (SELECT count(*) FROM sync_outbox)",
                    [],
                    |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
                )
                .unwrap()
        };
        assert_eq!(count(&st), (1, 1, 1));
        // the outbox row cannot be written: neither are the template and its revision
        st.conn
            .execute_batch(
                "CREATE TRIGGER no_outbox BEFORE INSERT ON sync_outbox \
                 BEGIN SELECT RAISE(ABORT, 'disk says no'); END;",
            )
            .unwrap();
        assert!(st.put_template("L", &tpl("a", "A", "2"), None, 3).is_err());
        assert!(st.put_template("L", &tpl("b", "B", "1"), None, 3).is_err());
        assert!(st.delete_template("L", "a", None, 3).is_err());
        assert_eq!(count(&st), (1, 1, 1));
        let a = st.template("L", "a").unwrap().unwrap();
        assert!(a.body_json.contains("\"1\"") && a.deleted_at.is_none());
        // the local library never has an outbox
        st.put_template(LOCAL, &tpl("b", "B", "1"), None, 4)
            .unwrap();
        assert_eq!(count(&st).2, 1);
    }

    #[test]
    fn a_refused_team_edit_is_a_draft_with_the_hub_reason() {
        let s = Scratch::new("draft");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let hub = HubRow {
            hub_id: "h".into(),
            url: "http://127.0.0.1:1".into(),
            fingerprint: None,
            user_id: "u".into(),
            user_name: "viewer".into(),
            device_id: "d".into(),
            device_name: "laptop".into(),
            token: "t".into(),
            joined_at: 1,
        };
        let lib = LibraryInfo {
            id: "lib".into(),
            name: "team".into(),
            role: quiver_shared::sync::Role::Viewer,
            epoch: "e".into(),
            head_seq: 0,
            review_required: false,
        };
        st.join_hub(&hub, &[lib], 1).unwrap();
        let t: Template = serde_json::from_value(serde_json::json!({
            "id": "refund", "title": "Refunds", "parts": [{"type": "text", "text": "Hi"}]
        }))
        .unwrap();
        st.put_template("lib", &t, None, 2).unwrap();
        let meta = st.team_meta("lib", "refund").unwrap().unwrap();
        assert_eq!((meta.sync, meta.reason.as_deref()), ("pending", None));
        let out = st.outbox_batch("lib", 10, 1 << 20).unwrap();
        let why = "your role in \"team\" is viewer: edits stay on this device";
        st.record_push(
            "lib",
            &[PushResult {
                rev_id: out[0].rev_id.clone(),
                status: PushStatus::Denied,
                duplicate: false,
                seq: None,
                head_rev: None,
                merge_rev: None,
                conflict: None,
                fields: vec![],
                reason: Some(why.into()),
            }],
        )
        .unwrap();
        let meta = st.team_meta("lib", "refund").unwrap().unwrap();
        assert_eq!((meta.sync, meta.reason.as_deref()), ("draft", Some(why)));
        assert_eq!(meta.author.as_deref(), Some("viewer"));
    }

    #[test]
    fn errors_are_classified() {
        let s = Scratch::new("ro");
        drop(Store::open(&s.db(), 0).unwrap());
        let c = Connection::open_with_flags(s.db(), rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .unwrap();
        let e = c
            .execute("DELETE FROM history", [])
            .ctx(|| "deleting".into())
            .unwrap_err();
        assert_eq!(e.kind, ErrorKind::ReadOnly, "{e}");
        assert!(e.is_storage());
        assert!(e.hint().contains("read-only"));
    }
}
