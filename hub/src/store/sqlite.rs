//! The embedded store: one SQLite file (WAL, `synchronous=FULL`), one writer thread that runs
//! every writing transaction with `BEGIN IMMEDIATE` (a deferred transaction that reads and then
//! writes can fail with `SQLITE_BUSY` without the busy handler ever running), and reader
//! connections for reads. Notes are published after the commit. One `quiver hub serve` per file
//! (`serve` holds a lock file); `quiver hub` admin commands may write the file meanwhile
//! (`busy_timeout`), and the server notices their changes (`crate::server`'s watcher).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::sync::{mpsc, Arc, Mutex};

use futures_util::FutureExt;
use rusqlite::types::{Value, ValueRef};
use rusqlite::Connection;

use super::{HubStore, Migration, Row, Tx, Val, V};
use crate::error::{HubError, Result};
use crate::pokes::{Bus, Note};

/// The schema, in order. A migration runs in one transaction with the row that records it.
pub const MIGRATIONS: &[Migration] = &[
    (
    1,
    "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at INTEGER NOT NULL);
CREATE TABLE users (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL UNIQUE,
    admin INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, disabled_at INTEGER);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
    token_sha256 TEXT NOT NULL UNIQUE, name TEXT NOT NULL, created_at INTEGER NOT NULL,
    last_seen_at INTEGER, revoked_at INTEGER);
CREATE TABLE invites (
    code_sha256 TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), user_name TEXT,
    roles TEXT NOT NULL, created_by TEXT, created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL, used_at INTEGER, used_by TEXT);
CREATE TABLE libraries (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'team', epoch TEXT NOT NULL, head_seq INTEGER NOT NULL DEFAULT 0,
    review_required INTEGER NOT NULL DEFAULT 0, created_at INTEGER NOT NULL, archived_at INTEGER);
CREATE TABLE members (
    library_id TEXT NOT NULL REFERENCES libraries(id), user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL CHECK (role IN ('owner', 'maintainer', 'editor', 'viewer')),
    PRIMARY KEY (library_id, user_id));
CREATE INDEX members_user ON members (user_id);
CREATE TABLE revisions (
    rev_id TEXT PRIMARY KEY, library_id TEXT NOT NULL REFERENCES libraries(id),
    template_id TEXT NOT NULL, parents TEXT NOT NULL, op TEXT NOT NULL, format INTEGER NOT NULL,
    body TEXT, client_at_ms INTEGER NOT NULL, author_user TEXT NOT NULL,
    author_device TEXT NOT NULL, received_at INTEGER NOT NULL, seq INTEGER NOT NULL,
    state TEXT NOT NULL, result TEXT);
CREATE INDEX revisions_template ON revisions (library_id, template_id, seq);
CREATE TABLE changes (
    library_id TEXT NOT NULL REFERENCES libraries(id), seq INTEGER NOT NULL, kind TEXT NOT NULL,
    template_id TEXT, rev_id TEXT, private_to TEXT, subject_user TEXT, data TEXT NOT NULL,
    at INTEGER NOT NULL, PRIMARY KEY (library_id, seq)) WITHOUT ROWID;
CREATE INDEX changes_member ON changes (library_id, subject_user, seq) WHERE subject_user IS NOT NULL;
CREATE TABLE heads (
    library_id TEXT NOT NULL REFERENCES libraries(id), template_id TEXT NOT NULL,
    head_rev TEXT NOT NULL, deleted INTEGER NOT NULL, conflicted INTEGER NOT NULL,
    PRIMARY KEY (library_id, template_id)) WITHOUT ROWID;
CREATE TABLE conflicts (
    id TEXT PRIMARY KEY, library_id TEXT NOT NULL REFERENCES libraries(id),
    template_id TEXT NOT NULL, head_rev TEXT NOT NULL, other_rev TEXT NOT NULL, base_rev TEXT,
    fields TEXT NOT NULL, opened_seq INTEGER NOT NULL, resolved_seq INTEGER, resolved_by TEXT);
CREATE INDEX conflicts_open ON conflicts (library_id, template_id) WHERE resolved_seq IS NULL;
",
    ),
    // The WeChat mini-program gateway (`crate::wx`, docs/wechat.md).
    (
        2,
        "
CREATE TABLE wx_apps (
    name TEXT PRIMARY KEY, appid TEXT NOT NULL UNIQUE, secret TEXT NOT NULL, token TEXT NOT NULL,
    aes_key TEXT, mode TEXT NOT NULL CHECK (mode IN ('plain', 'compat', 'safe')),
    format TEXT NOT NULL CHECK (format IN ('xml', 'json')), api_base TEXT NOT NULL,
    transfer TEXT NOT NULL, agents_all INTEGER NOT NULL, original_id TEXT, created_at INTEGER NOT NULL);
CREATE TABLE wx_presence (device_id TEXT PRIMARY KEY REFERENCES devices(id), at_ms INTEGER NOT NULL);
CREATE TABLE wx_app_agents (
    app TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id), PRIMARY KEY (app, user_id));
CREATE TABLE wx_tokens (
    app TEXT PRIMARY KEY, access_token TEXT NOT NULL, expires_at_ms INTEGER NOT NULL,
    fetched_at_ms INTEGER NOT NULL, generation INTEGER NOT NULL, invalid INTEGER NOT NULL);
CREATE TABLE wx_token_force_log (app TEXT NOT NULL, at_ms INTEGER NOT NULL);
CREATE TABLE wx_conversations (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, openid TEXT NOT NULL, session_from TEXT,
    assignee TEXT, transfer_pending INTEGER NOT NULL DEFAULT 0, transferred_until_ms INTEGER,
    read_up_to INTEGER NOT NULL DEFAULT 0, last_message_id INTEGER, last_inbound_id INTEGER NOT NULL DEFAULT 0,
    last_inbound_ms INTEGER, last_outbound_ms INTEGER, learned_errcode INTEGER, learned_at_ms INTEGER,
    lease_owner TEXT, lease_until_ms INTEGER, typing_at_ms INTEGER, created_at INTEGER NOT NULL,
    UNIQUE (app, openid));
CREATE TABLE wx_messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT, conversation TEXT NOT NULL, app TEXT NOT NULL,
    dir TEXT NOT NULL CHECK (dir IN ('in', 'out')), at_ms INTEGER NOT NULL, kind TEXT NOT NULL,
    body_text TEXT, media_id TEXT, blob_sha256 TEXT, card TEXT, body TEXT, state TEXT,
    errcode INTEGER, error TEXT, by_user TEXT, idempotency_key TEXT, part INTEGER, from_user TEXT,
    dedupe_key TEXT, quota_action TEXT, quota_at_ms INTEGER, transfer BOOL, sent_at_ms INTEGER,
    UNIQUE (app, from_user, dedupe_key));
CREATE INDEX wx_messages_conversation ON wx_messages (conversation, id);
CREATE UNIQUE INDEX wx_messages_key ON wx_messages (conversation, idempotency_key, part);
CREATE INDEX wx_messages_pending ON wx_messages (state) WHERE state IN ('queued', 'sending');
CREATE TABLE wx_blobs (
    sha256 TEXT PRIMARY KEY, mime TEXT NOT NULL, size INTEGER NOT NULL, bytes BLOB NOT NULL,
    created_at INTEGER NOT NULL);
CREATE TABLE wx_media (
    app TEXT NOT NULL, sha256 TEXT NOT NULL, media_id TEXT NOT NULL, created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL, PRIMARY KEY (app, sha256));
",
    ),
];

/// `$1` -> `?1`: the shared SQL is written with PostgreSQL's placeholders.
pub fn placeholders(sql: &str) -> String {
    sql.replace('$', "?")
}

type Job = Box<dyn FnOnce(&mut Option<Connection>) + Send>;

/// The SQLite store.
#[derive(Debug, Clone)]
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    readers: Arc<Mutex<Vec<Connection>>>,
    bus: Bus,
}

/// A SQLite transaction; it owns its connection while it runs.
#[derive(Debug)]
pub struct SqliteTx {
    conn: Connection,
    notes: Vec<Note>,
}

fn connect(path: &Path) -> Result<Connection> {
    let c = Connection::open(path)
        .map_err(|e| HubError::internal(format!("cannot open {}: {e}", path.display())))?;
    c.busy_timeout(std::time::Duration::from_secs(10))?;
    c.pragma_update(None, "journal_mode", "WAL")?;
    c.pragma_update(None, "synchronous", "FULL")?;
    c.pragma_update(None, "foreign_keys", "ON")?;
    c.set_prepared_statement_cache_capacity(64);
    Ok(c)
}

fn migrate(c: &mut Connection) -> Result<()> {
    c.execute_batch(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_at INTEGER NOT NULL)",
    )?;
    for (version, sql) in MIGRATIONS {
        let t = c.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let done: i64 = t.query_row(
            "SELECT count(*) FROM schema_migrations WHERE version = ?1",
            [version],
            |r| r.get(0),
        )?;
        if done == 0 {
            t.execute_batch(sql)?;
            t.execute(
                "INSERT INTO schema_migrations (version, applied_at) VALUES (?1, ?2)",
                [*version, crate::ids::now_ms()],
            )?;
        }
        t.commit()?;
    }
    let newest: i64 = c.query_row(
        "SELECT coalesce(max(version), 0) FROM schema_migrations",
        [],
        |r| r.get(0),
    )?;
    let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
    if newest > known {
        return Err(HubError::internal(format!(
            "the database has schema version {newest}, newer than this quiver knows ({known}): update quiver"
        )));
    }
    Ok(())
}

impl SqliteStore {
    pub fn open(path: &Path, bus: Bus) -> Result<SqliteStore> {
        let mut c = connect(path)?;
        migrate(&mut c)?;
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("hub-sqlite-writer".into())
            .spawn(move || {
                let mut conn = Some(c);
                while let Ok(job) = rx.recv() {
                    job(&mut conn);
                }
            })
            .map_err(|e| HubError::internal(format!("cannot start the writer thread: {e}")))?;
        Ok(SqliteStore {
            path: path.to_path_buf(),
            writer: tx,
            readers: Arc::new(Mutex::new(vec![])),
            bus,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
}

/// Runs `f` in a transaction on `conn` to completion (SQLite `Tx` futures never wait).
fn run_tx<F, Fut, R>(
    conn: &mut Option<Connection>,
    path: &Path,
    begin: &str,
    f: F,
) -> (Result<R>, Vec<Note>)
where
    F: FnOnce(SqliteTx) -> Fut,
    Fut: Future<Output = (SqliteTx, Result<R>)>,
{
    let c = match conn.take() {
        Some(c) => c,
        None => match connect(path) {
            Ok(c) => c,
            Err(e) => return (Err(e), vec![]),
        },
    };
    if let Err(e) = c.execute_batch(begin) {
        *conn = Some(c);
        return (Err(e.into()), vec![]);
    }
    let tx = SqliteTx {
        conn: c,
        notes: vec![],
    };
    let Some((tx, r)) = f(tx).now_or_never() else {
        // The connection went with the future; the next job opens another one.
        return (
            Err(HubError::internal("a SQLite operation waited on something")),
            vec![],
        );
    };
    let SqliteTx { conn: c, notes } = tx;
    let out = match r {
        Ok(v) => match c.execute_batch("COMMIT") {
            Ok(()) => (Ok(v), notes),
            Err(e) => {
                let _ = c.execute_batch("ROLLBACK");
                (Err(e.into()), vec![])
            }
        },
        Err(e) => {
            let _ = c.execute_batch("ROLLBACK");
            (Err(e), vec![])
        }
    };
    *conn = Some(c);
    out
}

impl HubStore for SqliteStore {
    type Tx = SqliteTx;

    fn write<F, Fut, R>(&self, f: F) -> impl Future<Output = Result<R>> + Send
    where
        F: FnOnce(SqliteTx) -> Fut + Send + 'static,
        Fut: Future<Output = (SqliteTx, Result<R>)> + Send + 'static,
        R: Send + 'static,
    {
        let (done, rx) = tokio::sync::oneshot::channel();
        let path = self.path.clone();
        let bus = self.bus.clone();
        let sent = self
            .writer
            .send(Box::new(move |conn: &mut Option<Connection>| {
                let (r, notes) = run_tx(conn, &path, "BEGIN IMMEDIATE", f);
                for n in notes {
                    bus.publish(n);
                }
                let _ = done.send(r);
            }));
        async move {
            if sent.is_err() {
                return Err(HubError::unavailable("the SQLite writer has stopped"));
            }
            rx.await
                .map_err(|_| HubError::internal("the SQLite writer dropped an operation"))?
        }
    }

    fn read<F, Fut, R>(&self, f: F) -> impl Future<Output = Result<R>> + Send
    where
        F: FnOnce(SqliteTx) -> Fut + Send + 'static,
        Fut: Future<Output = (SqliteTx, Result<R>)> + Send + 'static,
        R: Send + 'static,
    {
        let path = self.path.clone();
        let readers = self.readers.clone();
        let bus = self.bus.clone();
        async move {
            tokio::task::spawn_blocking(move || {
                let mut conn = readers.lock().ok().and_then(|mut v| v.pop());
                let (r, notes) = run_tx(&mut conn, &path, "BEGIN", f);
                for n in notes {
                    bus.publish(n);
                }
                if let (Some(c), Ok(mut v)) = (conn, readers.lock()) {
                    if v.len() < 8 {
                        v.push(c);
                    }
                }
                r
            })
            .await
            .map_err(|e| HubError::internal(format!("reader task: {e}")))?
        }
    }
}

fn to_value(v: &V) -> Value {
    match v {
        V::I(i) => Value::Integer(*i),
        V::T(s) => Value::Text(s.clone()),
        V::B(b) => Value::Integer(*b as i64),
        V::OT(Some(s)) => Value::Text(s.clone()),
        V::OI(Some(i)) => Value::Integer(*i),
        V::OT(None) | V::OI(None) => Value::Null,
        V::Bytes(b) => Value::Blob(b.clone()),
    }
}

impl SqliteTx {
    fn run_query(&mut self, sql: &str, params: &[V]) -> Result<Vec<Row>> {
        let mut st = self.conn.prepare_cached(&placeholders(sql))?;
        let n = st.column_count();
        let mut rows = st.query(rusqlite::params_from_iter(params.iter().map(to_value)))?;
        let mut out = vec![];
        while let Some(r) = rows.next()? {
            let mut vals = Vec::with_capacity(n);
            for i in 0..n {
                vals.push(match r.get_ref(i)? {
                    ValueRef::Null => Val::Null,
                    ValueRef::Integer(v) => Val::Int(v),
                    ValueRef::Text(t) => Val::Text(String::from_utf8_lossy(t).into_owned()),
                    ValueRef::Blob(b) => Val::Bytes(b.to_vec()),
                    other => {
                        return Err(HubError::internal(format!(
                            "column {i}: unexpected {:?}",
                            other.data_type()
                        )))
                    }
                });
            }
            out.push(Row(vals));
        }
        Ok(out)
    }

    fn run_exec(&mut self, sql: &str, params: &[V]) -> Result<u64> {
        let mut st = self.conn.prepare_cached(&placeholders(sql))?;
        Ok(st.execute(rusqlite::params_from_iter(params.iter().map(to_value)))? as u64)
    }
}

impl Tx for SqliteTx {
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [V],
    ) -> impl Future<Output = Result<Vec<Row>>> + Send + 'a {
        std::future::ready(self.run_query(sql, params))
    }

    fn exec<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [V],
    ) -> impl Future<Output = Result<u64>> + Send + 'a {
        std::future::ready(self.run_exec(sql, params))
    }

    fn notify(&mut self, note: Note) -> impl Future<Output = Result<()>> + Send + '_ {
        self.notes.push(note);
        std::future::ready(Ok(()))
    }

    fn backend(&self) -> &'static str {
        "sqlite"
    }
}

/// The libraries' head sequence numbers as another process may have moved them, and the
/// number of revoked devices: what the server's watcher compares (SQLite only: on PostgreSQL
/// every writer notifies).
pub fn watch_state(conn: &Connection) -> Result<(Vec<(String, i64)>, i64)> {
    let mut st = conn.prepare_cached("SELECT id, head_seq FROM libraries ORDER BY id")?;
    let libs = st
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
        .collect::<std::result::Result<Vec<_>, _>>()?;
    let revoked: i64 = conn.query_row(
        "SELECT count(*) FROM devices WHERE revoked_at IS NOT NULL",
        [],
        |r| r.get(0),
    )?;
    Ok((libs, revoked))
}

/// A separate connection for the watcher.
pub fn watcher_connection(path: &Path) -> Result<Connection> {
    connect(path)
}
