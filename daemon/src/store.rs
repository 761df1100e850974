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
];

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

/// A new send, as `send.reserve` gives it.
#[derive(Debug, Clone)]
pub struct NewSend<'a> {
    pub idempotency_key: &'a str,
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
}

const SEND_COLUMNS: &str = "id, idempotency_key, template_id, revision, part_index, platform, \
     workspace, conversation, customer, payload, payload_sha256, state, error, queued_at, \
     released_at, sent_at, done_at, meter_key";

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

/// A stored template: its id and the whole template as JSON.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TemplateJson {
    pub id: String,
    pub body_json: String,
    pub usage_count: u64,
    pub last_used_at: Option<u64>,
}

/// A template with what the store knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTemplate {
    pub id: String,
    pub revision: u32,
    pub body_json: String,
    pub usage_count: u64,
    pub last_used_at: Option<u64>,
    pub updated_at: u64,
    pub deleted_at: Option<u64>,
}

/// One revision of a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RevisionInfo {
    pub revision: u32,
    pub created_at: u64,
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
            write_template(&tx, &t, now).ctx(|| format!("{at}: seeding template {:?}", t.id))?;
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

    /// Up to `limit` templates (not deleted) with ids after `after`, in id order.
    pub fn templates_after(&self, after: Option<&str>, limit: usize) -> Result<Vec<TemplateJson>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT id, body_json, usage_count, last_used_at FROM templates \
                 WHERE deleted_at IS NULL AND (?1 IS NULL OR id > ?1) ORDER BY id LIMIT ?2",
            )
            .ctx(|| format!("{}: listing templates", self.at()))?;
        let rows = stmt
            .query_map(params![after, limit as i64], |r| {
                Ok(TemplateJson {
                    id: r.get(0)?,
                    body_json: r.get(1)?,
                    usage_count: to_u64(r.get(2)?),
                    last_used_at: r.get::<_, Option<i64>>(3)?.map(to_u64),
                })
            })
            .ctx(|| format!("{}: listing templates", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading templates", self.at()))
    }

    /// Every template that is not deleted, with its usage (to build the search index).
    pub fn all_templates(&self) -> Result<Vec<StoredTemplate>> {
        let mut stmt = self
            .conn
            .prepare(&format!(
                "SELECT {TEMPLATE_COLUMNS} FROM templates WHERE deleted_at IS NULL ORDER BY id"
            ))
            .ctx(|| format!("{}: reading templates", self.at()))?;
        let rows = stmt
            .query_map([], stored_template)
            .ctx(|| format!("{}: reading templates", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading templates", self.at()))
    }

    /// Template `id`, deleted or not.
    pub fn template(&self, id: &str) -> Result<Option<StoredTemplate>> {
        self.conn
            .query_row(
                &format!("SELECT {TEMPLATE_COLUMNS} FROM templates WHERE id = ?1"),
                [id],
                stored_template,
            )
            .optional()
            .ctx(|| format!("{}: reading template {id:?}", self.at()))
    }

    /// Revision `revision` of template `id`: its JSON and when it was written.
    pub fn template_revision(&self, id: &str, revision: u32) -> Result<Option<(String, u64)>> {
        self.conn
            .query_row(
                "SELECT body_json, created_at FROM template_revisions \
                 WHERE template_id = ?1 AND revision = ?2",
                params![id, revision],
                |r| Ok((r.get::<_, String>(0)?, to_u64(r.get(1)?))),
            )
            .optional()
            .ctx(|| format!("{}: reading revision {revision} of {id:?}", self.at()))
    }

    /// Revisions of template `id` below `before` (all when `None`), newest first.
    pub fn revisions(
        &self,
        id: &str,
        before: Option<u32>,
        limit: usize,
    ) -> Result<Vec<RevisionInfo>> {
        let mut stmt = self
            .conn
            .prepare_cached(
                "SELECT revision, created_at FROM template_revisions WHERE template_id = ?1 \
                 AND (?2 IS NULL OR revision < ?2) ORDER BY revision DESC LIMIT ?3",
            )
            .ctx(|| format!("{}: listing revisions of {id:?}", self.at()))?;
        let rows = stmt
            .query_map(params![id, before, limit as i64], |r| {
                Ok(RevisionInfo {
                    revision: u32::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
                    created_at: to_u64(r.get(1)?),
                })
            })
            .ctx(|| format!("{}: listing revisions of {id:?}", self.at()))?;
        rows.collect::<rusqlite::Result<Vec<_>>>()
            .ctx(|| format!("{}: reading revisions of {id:?}", self.at()))
    }

    /// Writes `t` as a new revision of its id (revision 1 for a new id), unless it equals the
    /// current revision. A deleted template is brought back. `base_revision`, when given, must be
    /// the current revision (of a deleted template too).
    pub fn put_template(
        &mut self,
        t: &Template,
        base_revision: Option<u32>,
        now: u64,
    ) -> Result<PutOutcome> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting put"))?;
        let out = put_in(&tx, t, base_revision, now).ctx(|| format!("{at}: writing {:?}", t.id))?;
        if matches!(out, PutOutcome::Created(_) | PutOutcome::Updated(_)) {
            bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
        }
        tx.commit().ctx(|| format!("{at}: committing put"))?;
        Ok(out)
    }

    /// Marks template `id` deleted; its revisions are kept.
    pub fn delete_template(
        &mut self,
        id: &str,
        base_revision: Option<u32>,
        now: u64,
    ) -> Result<DeleteOutcome> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting delete"))?;
        let cur: Option<(i64, Option<i64>)> = tx
            .query_row(
                "SELECT revision, deleted_at FROM templates WHERE id = ?1",
                [id],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .optional()
            .ctx(|| format!("{at}: reading template {id:?}"))?;
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
        tx.execute(
            "UPDATE templates SET deleted_at = ?2, updated_at = ?2 WHERE id = ?1",
            params![id, to_i64(now)],
        )
        .ctx(|| format!("{at}: deleting template {id:?}"))?;
        bump_library_version(&tx).ctx(|| format!("{at}: library version"))?;
        tx.commit().ctx(|| format!("{at}: committing delete"))?;
        Ok(DeleteOutcome::Deleted { revision })
    }

    /// Writes every template of an import in one transaction: all of them or none.
    pub fn import(&mut self, templates: &[Template], now: u64) -> Result<ImportReport> {
        let at = self.at();
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .ctx(|| format!("{at}: starting import"))?;
        let mut report = ImportReport::default();
        for t in templates {
            match put_in(&tx, t, None, now).ctx(|| format!("{at}: importing {:?}", t.id))? {
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

    /// Counts one use of a template (a send of its first part).
    pub fn count_use(&mut self, template_id: &str, now: u64) -> Result<()> {
        self.conn
            .execute(
                "UPDATE templates SET usage_count = usage_count + 1, last_used_at = ?2 \
                 WHERE id = ?1",
                params![template_id, to_i64(now)],
            )
            .ctx(|| format!("{}: counting use of {template_id:?}", self.at()))?;
        Ok(())
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
        let inserted = tx
            .execute(
                "INSERT INTO history (idempotency_key, template_id, revision, part_index, \
                 platform, workspace, conversation, customer, payload, payload_sha256, state, \
                 queued_at, meter_key) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, \
                 'queued', ?11, ?12) ON CONFLICT(idempotency_key) DO NOTHING",
                params![
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
                ],
            )
            .ctx(|| format!("{at}: inserting history row"))?;
        let mut row = tx
            .query_row(
                &format!("SELECT {SEND_COLUMNS} FROM history WHERE idempotency_key = ?1"),
                [s.idempotency_key],
                send_row,
            )
            .ctx(|| format!("{at}: reading history row {:?}", s.idempotency_key))?;
        let created = inserted == 1;
        if row.state == SendState::Queued && go_now(&row, created) {
            let moved = tx
                .execute(
                    "UPDATE history SET state = 'sending', released_at = ?2 \
                     WHERE id = ?1 AND state = 'queued'",
                    params![row.send_id, to_i64(now)],
                )
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
        let n = self
            .conn
            .prepare_cached(&sql)
            .and_then(|mut stmt| stmt.execute(params![to.as_str(), to_i64(now), error, id]))
            .ctx(|| format!("{}: setting send {id} to {}", self.at(), to.as_str()))?;
        Ok(n == 1)
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

const TEMPLATE_COLUMNS: &str =
    "id, revision, body_json, usage_count, last_used_at, updated_at, deleted_at";

fn stored_template(r: &Row<'_>) -> rusqlite::Result<StoredTemplate> {
    Ok(StoredTemplate {
        id: r.get(0)?,
        revision: u32::try_from(r.get::<_, i64>(1)?).unwrap_or(0),
        body_json: r.get(2)?,
        usage_count: to_u64(r.get(3)?),
        last_used_at: r.get::<_, Option<i64>>(4)?.map(to_u64),
        updated_at: to_u64(r.get(5)?),
        deleted_at: r.get::<_, Option<i64>>(6)?.map(to_u64),
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

/// Writes `t` (whose `revision` is already set) as the current revision, creating the row or
/// updating (and undeleting) it with its usage kept, and adds it to the revisions.
fn write_template(tx: &rusqlite::Transaction<'_>, t: &Template, now: u64) -> rusqlite::Result<()> {
    let body = serde_json::to_string(t).map_err(json_err)?;
    let tags = serde_json::to_string(&t.tags).map_err(json_err)?;
    tx.execute(
        "INSERT INTO templates (id, title, folder, tags_json, shortcut, revision, body_json, \
         usage_count, updated_at) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, 0, ?8) \
         ON CONFLICT (id) DO UPDATE SET title = excluded.title, folder = excluded.folder, \
         tags_json = excluded.tags_json, shortcut = excluded.shortcut, \
         revision = excluded.revision, body_json = excluded.body_json, \
         updated_at = excluded.updated_at, deleted_at = NULL",
        params![
            t.id,
            t.title,
            t.folder,
            tags,
            t.shortcut,
            t.revision,
            body,
            to_i64(now)
        ],
    )?;
    tx.execute(
        "INSERT INTO template_revisions (template_id, revision, body_json, created_at) \
         VALUES (?1, ?2, ?3, ?4)",
        params![t.id, t.revision, body, to_i64(now)],
    )?;
    Ok(())
}

fn put_in(
    tx: &rusqlite::Transaction<'_>,
    t: &Template,
    base_revision: Option<u32>,
    now: u64,
) -> rusqlite::Result<PutOutcome> {
    let cur: Option<(i64, String, Option<i64>)> = tx
        .query_row(
            "SELECT revision, body_json, deleted_at FROM templates WHERE id = ?1",
            [&t.id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)),
        )
        .optional()?;
    let mut t = t.clone();
    match cur {
        None => {
            if base_revision.is_some_and(|b| b != 0) {
                return Ok(PutOutcome::Conflict { current: 0 });
            }
            t.revision = 1;
            write_template(tx, &t, now)?;
            Ok(PutOutcome::Created(1))
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
            t.revision = rev + 1;
            write_template(tx, &t, now)?;
            Ok(PutOutcome::Updated(rev + 1))
        }
    }
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
        let all = st.templates_after(None, 100).unwrap();
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
        assert!(st.templates_after(None, 100).unwrap().is_empty());
    }

    #[test]
    fn seeded_greeting_has_the_documented_shape() {
        let s = Scratch::new("greeting");
        let st = Store::open(&s.db(), 5).unwrap();
        let g = st.templates_after(None, 100).unwrap();
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
            st.put_template(&a, None, 10).unwrap(),
            PutOutcome::Created(1)
        );
        assert_eq!(
            st.put_template(&a, None, 11).unwrap(),
            PutOutcome::Unchanged(1)
        );
        let v1 = st.library_version().unwrap();
        assert_eq!(v1, v0 + 1);
        let a2 = tpl("a", "A", "two");
        assert_eq!(
            st.put_template(&a2, Some(7), 12).unwrap(),
            PutOutcome::Conflict { current: 1 }
        );
        assert_eq!(
            st.put_template(&a2, Some(1), 13).unwrap(),
            PutOutcome::Updated(2)
        );
        let cur = st.template("a").unwrap().unwrap();
        assert_eq!(cur.revision, 2);
        assert!(cur.body_json.contains("two") && cur.body_json.contains(r#""revision":2"#));
        let (old, at) = st.template_revision("a", 1).unwrap().unwrap();
        assert!(old.contains("one"));
        assert_eq!(at, 10);
        let revs: Vec<u32> = st
            .revisions("a", None, 10)
            .unwrap()
            .iter()
            .map(|r| r.revision)
            .collect();
        assert_eq!(revs, vec![2, 1]);
        assert_eq!(st.revisions("a", Some(2), 10).unwrap().len(), 1);

        // delete keeps the revisions; listing hides it; a put brings it back as revision 3
        assert_eq!(
            st.delete_template("a", Some(1), 20).unwrap(),
            DeleteOutcome::Conflict { current: 2 }
        );
        assert_eq!(
            st.delete_template("a", None, 20).unwrap(),
            DeleteOutcome::Deleted { revision: 2 }
        );
        assert_eq!(
            st.delete_template("a", None, 21).unwrap(),
            DeleteOutcome::AlreadyDeleted { revision: 2 }
        );
        assert_eq!(
            st.delete_template("zz", None, 21).unwrap(),
            DeleteOutcome::NotFound
        );
        assert!(!st
            .templates_after(None, 100)
            .unwrap()
            .iter()
            .any(|t| t.id == "a"));
        assert!(!st.all_templates().unwrap().iter().any(|t| t.id == "a"));
        assert_eq!(st.template("a").unwrap().unwrap().deleted_at, Some(20));
        assert!(st.template_revision("a", 2).unwrap().is_some());
        assert_eq!(
            st.put_template(&a2, None, 30).unwrap(),
            PutOutcome::Updated(3)
        );
        assert_eq!(st.template("a").unwrap().unwrap().deleted_at, None);
    }

    #[test]
    fn import_is_all_or_nothing() {
        let s = Scratch::new("import");
        let mut st = Store::open(&s.db(), 0).unwrap();
        let before = st.all_templates().unwrap().len();
        let r = st
            .import(
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
        let e = st.import(&[tpl("z", "Z", "1"), tpl("y", "Y", "1")], 6);
        assert!(e.is_err());
        assert!(st.template("z").unwrap().is_none(), "z was written");
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
