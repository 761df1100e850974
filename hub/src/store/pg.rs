//! The scale-out store: PostgreSQL through a deadpool of tokio-postgres connections. Several hub
//! processes may share one database; each push transaction serializes on its library's counter
//! row (`UPDATE libraries ... RETURNING`, a row lock held to commit), so commit order is `seq`
//! order and a reader following `seq > cursor` never skips a row (a `bigserial` would: research
//! §4.3 measured 8-22 % skipped under 8 writers). Notes go out with `pg_notify`, which
//! PostgreSQL delivers only on commit; [`listen`] relays them to this process.

use std::future::Future;
use std::str::FromStr;
use std::time::Duration;

use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::types::{ToSql, Type};
use tokio_postgres::NoTls;

use super::{HubStore, Migration, Row, Tx, Val, V};
use crate::error::{HubError, Result};
use crate::pokes::{Bus, Note, CHANNEL};

/// The schema, in order; all of them run in one transaction under an advisory lock, so hubs
/// starting together over one database migrate it once.
pub const MIGRATIONS: &[Migration] = &[
    (
    1,
    "
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE orgs (id TEXT PRIMARY KEY, name TEXT NOT NULL, created_at BIGINT NOT NULL);
CREATE TABLE users (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL UNIQUE,
    admin BOOLEAN NOT NULL DEFAULT FALSE, created_at BIGINT NOT NULL, disabled_at BIGINT);
CREATE TABLE devices (
    id TEXT PRIMARY KEY, user_id TEXT NOT NULL REFERENCES users(id),
    token_sha256 TEXT NOT NULL UNIQUE, name TEXT NOT NULL, created_at BIGINT NOT NULL,
    last_seen_at BIGINT, revoked_at BIGINT);
CREATE TABLE invites (
    code_sha256 TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), user_name TEXT,
    roles TEXT NOT NULL, created_by TEXT, created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL, used_at BIGINT, used_by TEXT);
CREATE TABLE libraries (
    id TEXT PRIMARY KEY, org_id TEXT NOT NULL REFERENCES orgs(id), name TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL DEFAULT 'team', epoch TEXT NOT NULL, head_seq BIGINT NOT NULL DEFAULT 0,
    review_required BOOLEAN NOT NULL DEFAULT FALSE, created_at BIGINT NOT NULL,
    archived_at BIGINT);
CREATE TABLE members (
    library_id TEXT NOT NULL REFERENCES libraries(id), user_id TEXT NOT NULL REFERENCES users(id),
    role TEXT NOT NULL CHECK (role IN ('owner', 'maintainer', 'editor', 'viewer')),
    PRIMARY KEY (library_id, user_id));
CREATE INDEX members_user ON members (user_id);
CREATE TABLE revisions (
    rev_id TEXT PRIMARY KEY, library_id TEXT NOT NULL REFERENCES libraries(id),
    template_id TEXT NOT NULL, parents TEXT NOT NULL, op TEXT NOT NULL, format BIGINT NOT NULL,
    body TEXT, client_at_ms BIGINT NOT NULL, author_user TEXT NOT NULL,
    author_device TEXT NOT NULL, received_at BIGINT NOT NULL, seq BIGINT NOT NULL,
    state TEXT NOT NULL, result TEXT);
CREATE INDEX revisions_template ON revisions (library_id, template_id, seq);
CREATE TABLE changes (
    library_id TEXT NOT NULL REFERENCES libraries(id), seq BIGINT NOT NULL, kind TEXT NOT NULL,
    template_id TEXT, rev_id TEXT, private_to TEXT, subject_user TEXT, data TEXT NOT NULL,
    at BIGINT NOT NULL, PRIMARY KEY (library_id, seq));
CREATE INDEX changes_member ON changes (library_id, subject_user, seq) WHERE subject_user IS NOT NULL;
CREATE TABLE heads (
    library_id TEXT NOT NULL REFERENCES libraries(id), template_id TEXT NOT NULL,
    head_rev TEXT NOT NULL, deleted BOOLEAN NOT NULL, conflicted BOOLEAN NOT NULL,
    PRIMARY KEY (library_id, template_id));
CREATE TABLE conflicts (
    id TEXT PRIMARY KEY, library_id TEXT NOT NULL REFERENCES libraries(id),
    template_id TEXT NOT NULL, head_rev TEXT NOT NULL, other_rev TEXT NOT NULL, base_rev TEXT,
    fields TEXT NOT NULL, opened_seq BIGINT NOT NULL, resolved_seq BIGINT, resolved_by TEXT);
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
    transfer TEXT NOT NULL, agents_all BOOLEAN NOT NULL, original_id TEXT, created_at BIGINT NOT NULL);
CREATE TABLE wx_presence (device_id TEXT PRIMARY KEY REFERENCES devices(id), at_ms BIGINT NOT NULL);
CREATE TABLE wx_app_agents (
    app TEXT NOT NULL, user_id TEXT NOT NULL REFERENCES users(id), PRIMARY KEY (app, user_id));
CREATE TABLE wx_tokens (
    app TEXT PRIMARY KEY, access_token TEXT NOT NULL, expires_at_ms BIGINT NOT NULL,
    fetched_at_ms BIGINT NOT NULL, generation BIGINT NOT NULL, invalid BOOLEAN NOT NULL);
CREATE TABLE wx_token_force_log (app TEXT NOT NULL, at_ms BIGINT NOT NULL);
CREATE TABLE wx_conversations (
    id TEXT PRIMARY KEY, app TEXT NOT NULL, openid TEXT NOT NULL, session_from TEXT,
    assignee TEXT, transfer_pending BOOLEAN NOT NULL DEFAULT FALSE, transferred_until_ms BIGINT,
    read_up_to BIGINT NOT NULL DEFAULT 0, last_message_id BIGINT, last_inbound_id BIGINT NOT NULL DEFAULT 0,
    last_inbound_ms BIGINT, last_outbound_ms BIGINT, learned_errcode BIGINT, learned_at_ms BIGINT,
    lease_owner TEXT, lease_until_ms BIGINT, typing_at_ms BIGINT, created_at BIGINT NOT NULL,
    UNIQUE (app, openid));
CREATE TABLE wx_messages (
    id BIGSERIAL PRIMARY KEY, conversation TEXT NOT NULL, app TEXT NOT NULL,
    dir TEXT NOT NULL CHECK (dir IN ('in', 'out')), at_ms BIGINT NOT NULL, kind TEXT NOT NULL,
    body_text TEXT, media_id TEXT, blob_sha256 TEXT, card TEXT, body TEXT, state TEXT,
    errcode BIGINT, error TEXT, by_user TEXT, idempotency_key TEXT, part BIGINT, from_user TEXT,
    dedupe_key TEXT, quota_action TEXT, quota_at_ms BIGINT, transfer BOOL, sent_at_ms BIGINT,
    UNIQUE (app, from_user, dedupe_key));
CREATE INDEX wx_messages_conversation ON wx_messages (conversation, id);
CREATE UNIQUE INDEX wx_messages_key ON wx_messages (conversation, idempotency_key, part);
CREATE INDEX wx_messages_pending ON wx_messages (state) WHERE state IN ('queued', 'sending');
CREATE TABLE wx_blobs (
    sha256 TEXT PRIMARY KEY, mime TEXT NOT NULL, size BIGINT NOT NULL, bytes BYTEA NOT NULL,
    created_at BIGINT NOT NULL);
CREATE TABLE wx_media (
    app TEXT NOT NULL, sha256 TEXT NOT NULL, media_id TEXT NOT NULL, created_at_ms BIGINT NOT NULL,
    expires_at_ms BIGINT NOT NULL, PRIMARY KEY (app, sha256));
",
    ),
];

/// The advisory lock key the migrations hold (any constant: "quiver" in ASCII).
const MIGRATION_LOCK: i64 = 0x71_75_69_76_65_72;

#[derive(Clone)]
pub struct PgStore {
    pool: Pool,
    url: String,
    bus: Bus,
}

impl std::fmt::Debug for PgStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStore").finish_non_exhaustive()
    }
}

/// A PostgreSQL transaction on a pooled connection it owns. Dropped before it finished (a panic),
/// it takes the connection out of the pool instead of returning it mid-transaction.
pub struct PgTx {
    client: Option<Object>,
}

impl std::fmt::Debug for PgTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgTx").finish_non_exhaustive()
    }
}

impl Drop for PgTx {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            drop(Object::take(c));
        }
    }
}

fn config(url: &str) -> Result<tokio_postgres::Config> {
    tokio_postgres::Config::from_str(url)
        .map_err(|e| HubError::bad_request(format!("database URL: {e}")))
}

impl PgStore {
    pub async fn open(url: &str, bus: Bus) -> Result<PgStore> {
        let mgr = Manager::from_config(
            config(url)?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(16)
            .wait_timeout(Some(Duration::from_secs(30)))
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .build()
            .map_err(|e| HubError::internal(format!("pool: {e}")))?;
        let s = PgStore {
            pool,
            url: url.to_string(),
            bus,
        };
        s.migrate().await?;
        Ok(s)
    }

    async fn client(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| HubError::unavailable(format!("postgresql: {e}")))
    }

    async fn migrate(&self) -> Result<()> {
        let c = self.client().await?;
        c.batch_execute("BEGIN").await?;
        let r: Result<()> = async {
            c.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
                .await?;
            c.batch_execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, applied_at BIGINT NOT NULL)",
            )
            .await?;
            for (version, sql) in MIGRATIONS {
                let n: i64 = c
                    .query_one(
                        "SELECT count(*) FROM schema_migrations WHERE version = $1",
                        &[version],
                    )
                    .await?
                    .get(0);
                if n == 0 {
                    c.batch_execute(sql).await?;
                    c.execute(
                        "INSERT INTO schema_migrations (version, applied_at) VALUES ($1, $2)",
                        &[version, &crate::ids::now_ms()],
                    )
                    .await?;
                }
            }
            let newest: i64 = c
                .query_one(
                    "SELECT coalesce(max(version), 0) FROM schema_migrations",
                    &[],
                )
                .await?
                .get(0);
            let known = MIGRATIONS.last().map(|m| m.0).unwrap_or(0);
            if newest > known {
                return Err(HubError::internal(format!(
                    "the database has schema version {newest}, newer than this quiver knows ({known}): update quiver"
                )));
            }
            Ok(())
        }
        .await;
        match r {
            Ok(()) => c.batch_execute("COMMIT").await?,
            Err(e) => {
                let _ = c.batch_execute("ROLLBACK").await;
                return Err(e);
            }
        }
        Ok(())
    }

    async fn run<F, Fut, R>(&self, begin: &'static str, f: F) -> Result<R>
    where
        F: FnOnce(PgTx) -> Fut + Send + 'static,
        Fut: Future<Output = (PgTx, Result<R>)> + Send + 'static,
        R: Send + 'static,
    {
        let client = self.client().await?;
        // A task of its own: a client that hangs up does not cancel a transaction half-way.
        tokio::spawn(async move {
            client.batch_execute(begin).await?;
            let (mut tx, r) = f(PgTx {
                client: Some(client),
            })
            .await;
            let Some(c) = tx.client.take() else {
                return Err(HubError::internal("transaction without a connection"));
            };
            match r {
                Ok(v) => {
                    c.batch_execute("COMMIT").await?;
                    Ok(v)
                }
                Err(e) => {
                    if c.batch_execute("ROLLBACK").await.is_err() {
                        drop(Object::take(c));
                    }
                    Err(e)
                }
            }
        })
        .await
        .map_err(|e| HubError::internal(format!("transaction task: {e}")))?
    }
}

/// A session-level advisory lock on a pooled connection of its own (held across awaits that are
/// not database work, like a call to WeChat). Dropped without [`AdvisoryLock::unlock`], it closes
/// its connection, which releases the lock.
pub struct AdvisoryLock {
    client: Option<Object>,
    key: i64,
}

impl std::fmt::Debug for AdvisoryLock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AdvisoryLock")
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl AdvisoryLock {
    pub async fn unlock(mut self) {
        if let Some(c) = self.client.take() {
            if c.execute("SELECT pg_advisory_unlock($1)", &[&self.key])
                .await
                .is_err()
            {
                drop(Object::take(c));
            }
        }
    }
}

impl Drop for AdvisoryLock {
    fn drop(&mut self) {
        if let Some(c) = self.client.take() {
            drop(Object::take(c));
        }
    }
}

impl PgStore {
    /// Waits for the advisory lock `key` (every hub process over this database shares it).
    pub async fn advisory_lock(&self, key: i64) -> Result<AdvisoryLock> {
        let c = self.client().await?;
        c.execute("SELECT pg_advisory_lock($1)", &[&key]).await?;
        Ok(AdvisoryLock {
            client: Some(c),
            key,
        })
    }
}

impl HubStore for PgStore {
    type Tx = PgTx;

    fn write<F, Fut, R>(&self, f: F) -> impl Future<Output = Result<R>> + Send
    where
        F: FnOnce(PgTx) -> Fut + Send + 'static,
        Fut: Future<Output = (PgTx, Result<R>)> + Send + 'static,
        R: Send + 'static,
    {
        self.run("BEGIN", f)
    }

    fn read<F, Fut, R>(&self, f: F) -> impl Future<Output = Result<R>> + Send
    where
        F: FnOnce(PgTx) -> Fut + Send + 'static,
        Fut: Future<Output = (PgTx, Result<R>)> + Send + 'static,
        R: Send + 'static,
    {
        self.run("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", f)
    }
}

fn pg_param(v: &V) -> &(dyn ToSql + Sync) {
    match v {
        V::I(i) => i,
        V::T(s) => s,
        V::B(b) => b,
        V::OT(o) => o,
        V::OI(o) => o,
        V::Bytes(b) => b,
    }
}

fn pg_row(r: &tokio_postgres::Row) -> Result<Row> {
    let mut vals = Vec::with_capacity(r.len());
    for (i, col) in r.columns().iter().enumerate() {
        let t = col.type_();
        let v = if *t == Type::INT8 {
            r.try_get::<_, Option<i64>>(i)?.map(Val::Int)
        } else if *t == Type::INT4 {
            r.try_get::<_, Option<i32>>(i)?.map(|v| Val::Int(v.into()))
        } else if *t == Type::BOOL {
            r.try_get::<_, Option<bool>>(i)?.map(Val::Bool)
        } else if *t == Type::TEXT || *t == Type::VARCHAR || *t == Type::NAME {
            r.try_get::<_, Option<String>>(i)?.map(Val::Text)
        } else if *t == Type::BYTEA {
            r.try_get::<_, Option<Vec<u8>>>(i)?.map(Val::Bytes)
        } else {
            return Err(HubError::internal(format!(
                "column {}: unexpected type {t}",
                col.name()
            )));
        };
        vals.push(v.unwrap_or(Val::Null));
    }
    Ok(Row(vals))
}

impl PgTx {
    fn c(&self) -> Result<&Object> {
        self.client
            .as_ref()
            .ok_or_else(|| HubError::internal("transaction without a connection"))
    }
}

impl Tx for PgTx {
    async fn query<'a>(&'a mut self, sql: &'a str, params: &'a [V]) -> Result<Vec<Row>> {
        let c = self.c()?;
        let st = c.prepare_cached(sql).await?;
        let ps: Vec<&(dyn ToSql + Sync)> = params.iter().map(pg_param).collect();
        let rows = c.query(&st, &ps).await?;
        rows.iter().map(pg_row).collect()
    }

    async fn exec<'a>(&'a mut self, sql: &'a str, params: &'a [V]) -> Result<u64> {
        let c = self.c()?;
        let st = c.prepare_cached(sql).await?;
        let ps: Vec<&(dyn ToSql + Sync)> = params.iter().map(pg_param).collect();
        Ok(c.execute(&st, &ps).await?)
    }

    async fn notify(&mut self, note: Note) -> Result<()> {
        let payload = note.payload();
        self.exec("SELECT pg_notify($1, $2)", crate::p![CHANNEL, payload])
            .await
            .map(|_| ())
    }

    fn backend(&self) -> &'static str {
        "postgresql"
    }
}

/// Follows the notes of every hub on this database: one dedicated connection with `LISTEN`
/// (not a pooled one: LISTEN needs a session of its own, and does not work through a
/// transaction-pooling proxy), reconnecting with a growing pause. Notifications sent while it
/// was disconnected are lost, so after each (re)connect it publishes [`Note::Recheck`]: every
/// stream pokes all its libraries and the daemons pull from their cursors.
pub async fn listen(store: PgStore, mut stop: tokio::sync::watch::Receiver<bool>) {
    let mut pause = Duration::from_millis(100);
    loop {
        match listen_once(&store, &mut stop).await {
            Ok(()) => return,
            Err(e) => tracing::warn!(error = %e, "postgresql listener lost; reconnecting"),
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
        pause = (pause * 2).min(Duration::from_secs(5));
    }
}

async fn listen_once(
    store: &PgStore,
    stop: &mut tokio::sync::watch::Receiver<bool>,
) -> std::result::Result<(), String> {
    use futures_util::StreamExt;
    let (client, mut conn) = config(&store.url)
        .map_err(|e| e.message)?
        .connect(NoTls)
        .await
        .map_err(|e| e.to_string())?;
    let (ntx, mut nrx) = tokio::sync::mpsc::unbounded_channel();
    let driver = tokio::spawn(async move {
        let mut messages = futures_util::stream::poll_fn(move |cx| conn.poll_message(cx));
        while let Some(m) = messages.next().await {
            match m {
                Ok(tokio_postgres::AsyncMessage::Notification(n)) => {
                    if ntx.send(Some(n.payload().to_string())).is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    let _ = ntx.send(None);
                    tracing::warn!(error = %e, "postgresql listener connection");
                    return;
                }
            }
        }
        let _ = ntx.send(None);
    });
    let r = async {
        client
            .batch_execute(&format!("LISTEN {CHANNEL}"))
            .await
            .map_err(|e| e.to_string())?;
        tracing::info!("listening for changes on postgresql");
        store.bus.publish(Note::Recheck);
        loop {
            tokio::select! {
                m = nrx.recv() => match m {
                    Some(Some(p)) => {
                        if let Some(n) = Note::parse(&p) {
                            store.bus.publish(n);
                        }
                    }
                    _ => return Err("the listener connection closed".to_string()),
                },
                _ = stop.changed() => return Ok(()),
            }
        }
    }
    .await;
    driver.abort();
    r
}
