//! `quiver`: the daemon, the native-messaging host and the installer in one binary. This library
//! holds all of it; `main.rs` only calls [`cli::run`]. (A library so that the benchmarks and the
//! fuzz targets reach the store and the parameter checks without a process in between.)
//!
//! Module map, lowest first (a module uses only modules above it; `tests/tests/house.rs` fails
//! on an import circle): `sys` (the few raw POSIX calls), `paths` (where files live,
//! [`paths::Locations`]), `log` (log file/stderr, never stdout), `store` (SQLite; the only
//! module touching rusqlite), `install` (host manifests for every browser), `params` (every
//! request checked into a typed call, no IO), `service` (the protocol methods by area:
//! `library`, `import`, `send`, `meter`, `history`, `team`; the search index), `sync` (the team
//! sync engine: the hub client, pinned TLS, invites, the event stream), `wx` (WeChat
//! conversations: the hub's agent API, replies rendered here, the `wx.*` methods), `conv_cli`
//! (`quiver conversations`), `spawn` (starting the
//! daemon and waiting until it serves, for every starter), `client` (the CLI's connection to
//! the daemon), `mcs` (the 多客服 plugin page's loopback HTTP server, off by default),
//! `doctor` (follows the chain browser -> manifest -> host -> daemon), `daemon`
//! (socket server, single instance, signals, events), `host` (browser <-> daemon relay), `args`
//! (command options and output), `wire_cli` (`render`, `session-from`, `unionid`), `cli`
//! (argument dispatch and the user commands), `winpipe` (the Windows transport design,
//! compiled on Windows only).

#![cfg_attr(not(unix), allow(dead_code))]

pub mod args;
pub mod cli;
pub mod client;
pub mod daemon;
pub mod doctor;
pub mod host;
pub mod install;
pub mod log;
pub mod mcs;
/// The logging macros (`crate::info!`, ...): `tracing`'s, set up by [`log::init`].
pub use tracing::{debug, error, info, warn};
pub mod conv_cli;
pub mod params;
pub mod paths;
pub mod service;
pub mod spawn;
pub mod store;
pub mod sync;
pub mod sys;
pub mod team_cli;
#[cfg(windows)]
pub mod winpipe;
pub mod wire_cli;
pub mod wx;
