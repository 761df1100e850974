//! Storage: one trait, [`HubStore`], with two implementations, [`sqlite::SqliteStore`] (the
//! embedded default) and [`pg::PgStore`] (scale-out). Each runs an operation in one database
//! transaction through a [`Tx`], a minimal SQL interface (`query`, `exec`, `notify`) over which
//! every operation of the hub (`crate::ops`) is written once: the SQL is shared (PostgreSQL's
//! `$n` placeholders, rewritten to `?n` for SQLite), the schemas and migrations are per backend.
//!
//! A SQLite transaction runs on the store's one writer thread (`BEGIN IMMEDIATE`), or on a
//! reader connection for reads; its `Tx` futures never wait, so the operation is polled to
//! completion there in one go. A PostgreSQL transaction runs on a pooled connection in a task of
//! its own, so that a client that hangs up cannot cut it short.

pub mod pg;
pub mod sqlite;

use std::future::Future;

use crate::error::{HubError, Result};
use crate::pokes::{Bus, Note};

/// A query parameter.
#[derive(Debug, Clone, PartialEq)]
pub enum V {
    I(i64),
    T(String),
    B(bool),
    OT(Option<String>),
    OI(Option<i64>),
    /// Bytes (SQLite BLOB, PostgreSQL BYTEA).
    Bytes(Vec<u8>),
}

impl From<i64> for V {
    fn from(v: i64) -> V {
        V::I(v)
    }
}
impl From<&str> for V {
    fn from(v: &str) -> V {
        V::T(v.to_string())
    }
}
impl From<&String> for V {
    fn from(v: &String) -> V {
        V::T(v.clone())
    }
}
impl From<String> for V {
    fn from(v: String) -> V {
        V::T(v)
    }
}
impl From<bool> for V {
    fn from(v: bool) -> V {
        V::B(v)
    }
}
impl From<Option<String>> for V {
    fn from(v: Option<String>) -> V {
        V::OT(v)
    }
}
impl From<Option<&str>> for V {
    fn from(v: Option<&str>) -> V {
        V::OT(v.map(str::to_string))
    }
}
impl From<Option<i64>> for V {
    fn from(v: Option<i64>) -> V {
        V::OI(v)
    }
}

/// The parameters of a statement: `p![a, b, c]`.
#[macro_export]
macro_rules! p {
    ($($e:expr),* $(,)?) => { &[$($crate::store::V::from($e)),*] };
}

/// A column value as read.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Null,
    Int(i64),
    Text(String),
    Bool(bool),
    Bytes(Vec<u8>),
}

/// One result row.
#[derive(Debug, Clone, PartialEq)]
pub struct Row(pub Vec<Val>);

fn col_err(i: usize, want: &str, got: &Val) -> HubError {
    HubError::internal(format!("column {i}: expected {want}, got {got:?}"))
}

impl Row {
    fn at(&self, i: usize) -> Result<&Val> {
        self.0
            .get(i)
            .ok_or_else(|| HubError::internal(format!("no column {i}")))
    }
    pub fn i(&self, i: usize) -> Result<i64> {
        match self.at(i)? {
            Val::Int(v) => Ok(*v),
            v => Err(col_err(i, "an integer", v)),
        }
    }
    pub fn oi(&self, i: usize) -> Result<Option<i64>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            _ => self.i(i).map(Some),
        }
    }
    pub fn s(&self, i: usize) -> Result<String> {
        match self.at(i)? {
            Val::Text(v) => Ok(v.clone()),
            v => Err(col_err(i, "text", v)),
        }
    }
    pub fn os(&self, i: usize) -> Result<Option<String>> {
        match self.at(i)? {
            Val::Null => Ok(None),
            _ => self.s(i).map(Some),
        }
    }
    /// Bytes (a BLOB / BYTEA column).
    pub fn bytes(&self, i: usize) -> Result<Vec<u8>> {
        match self.at(i)? {
            Val::Bytes(v) => Ok(v.clone()),
            v => Err(col_err(i, "bytes", v)),
        }
    }
    /// A boolean (SQLite stores 0 and 1).
    pub fn b(&self, i: usize) -> Result<bool> {
        match self.at(i)? {
            Val::Bool(v) => Ok(*v),
            Val::Int(v) => Ok(*v != 0),
            v => Err(col_err(i, "a boolean", v)),
        }
    }
}

/// One database transaction, as the operations see it.
pub trait Tx: Send {
    /// Runs a statement (PostgreSQL placeholders `$1`, `$2`, ...) and returns its rows.
    fn query<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [V],
    ) -> impl Future<Output = Result<Vec<Row>>> + Send + 'a;
    /// Runs a statement and returns how many rows it changed.
    fn exec<'a>(
        &'a mut self,
        sql: &'a str,
        params: &'a [V],
    ) -> impl Future<Output = Result<u64>> + Send + 'a;
    /// Announces a note when (and only if) the transaction commits.
    fn notify(&mut self, note: Note) -> impl Future<Output = Result<()>> + Send + '_;
    /// `sqlite` or `postgresql`.
    fn backend(&self) -> &'static str;
}

/// The first row of a query, if any.
pub async fn one<T: Tx>(tx: &mut T, sql: &str, params: &[V]) -> Result<Option<Row>> {
    Ok(tx.query(sql, params).await?.into_iter().next())
}

/// A store: runs operations in transactions. `f` gets the transaction by value and gives it
/// back with its result (so that the future owns it); `Err` rolls back, `Ok` commits.
pub trait HubStore: Send + Sync + 'static {
    type Tx: Tx + 'static;

    /// A transaction that may write (SQLite: `BEGIN IMMEDIATE` on the writer thread).
    fn write<F, Fut, R>(&self, f: F) -> impl Future<Output = Result<R>> + Send
    where
        F: FnOnce(Self::Tx) -> Fut + Send + 'static,
        Fut: Future<Output = (Self::Tx, Result<R>)> + Send + 'static,
        R: Send + 'static;

    /// A read-only transaction (one consistent snapshot on SQLite).
    fn read<F, Fut, R>(&self, f: F) -> impl Future<Output = Result<R>> + Send
    where
        F: FnOnce(Self::Tx) -> Fut + Send + 'static,
        Fut: Future<Output = (Self::Tx, Result<R>)> + Send + 'static,
        R: Send + 'static;
}

/// The store a hub runs on, chosen by the database URL.
#[derive(Debug, Clone)]
pub enum Db {
    Sqlite(sqlite::SqliteStore),
    Pg(pg::PgStore),
}

impl Db {
    pub fn backend(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Pg(_) => "postgresql",
        }
    }

    /// Opens the database and applies its migrations.
    pub async fn open(db: &crate::config::Database, bus: Bus) -> Result<Db> {
        Ok(match db {
            crate::config::Database::Sqlite(p) => Db::Sqlite(sqlite::SqliteStore::open(p, bus)?),
            crate::config::Database::Postgres(url) => Db::Pg(pg::PgStore::open(url, bus).await?),
        })
    }
}

/// Runs an operation of `crate::ops` on whichever store `$db` is:
/// `run!(db, write, |tx| ops::push(tx, ...))`. The body is a future borrowing `tx`.
#[macro_export]
macro_rules! run {
    ($db:expr, $kind:ident, |$tx:ident| $body:expr) => {
        match $db {
            $crate::store::Db::Sqlite(s) => {
                $crate::store::HubStore::$kind(s, move |mut t| async move {
                    let r = {
                        let $tx = &mut t;
                        $body.await
                    };
                    (t, r)
                })
                .await
            }
            $crate::store::Db::Pg(s) => {
                $crate::store::HubStore::$kind(s, move |mut t| async move {
                    let r = {
                        let $tx = &mut t;
                        $body.await
                    };
                    (t, r)
                })
                .await
            }
        }
    };
}

/// A migration: its version and its SQL (several statements).
pub type Migration = (i64, &'static str);
