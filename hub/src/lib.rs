//! `quiver hub`: the team-sync hub (`docs/sync.md`). A library that the `quiver` binary
//! delegates `quiver hub ...` to.
//!
//! Module map, lowest first (a module uses only modules above it): `error` (the one error type
//! and its HTTP status and wire code), `ids` (UUIDs, tokens, invite codes, SHA-256, the clock),
//! `config` (`hub.json`), `tls` (the self-signed certificate, the server config, the pinned
//! client config daemons reuse), `pokes` (notes: change notifications inside one process),
//! `store` (the [`store::HubStore`] trait and its SQLite and PostgreSQL stores, migrations,
//! the LISTEN relay), `ops` (every operation, written once over `store::Tx`), `wx` (the WeChat
//! mini-program gateway: its operations over `store::Tx`, WeChat's API, pushes, the agent API;
//! docs/wechat.md), `server` (axum: routes, auth, SSE, serve), `cli` (`quiver hub ...`).

pub mod config;
pub mod error;
pub mod ids;
pub mod pokes;
#[macro_use]
pub mod store;
pub mod cli;
pub mod extract;
pub mod ops;
pub mod server;
pub mod tls;
pub mod wx;
