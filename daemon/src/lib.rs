//! `quiver`: the daemon, the native-messaging host and the installer in one binary. This library
//! holds all of it; `main.rs` only calls [`cli::run`]. (A library so that the benchmarks and the
//! fuzz targets reach the store and the parameter checks without a process in between.)
//!
//! Module map: `cli` (argument dispatch and the user commands), `paths` (where files live),
//! `log` (log file/stderr, never stdout), `sys` (the few raw POSIX calls), `store` (SQLite; the
//! only module touching rusqlite), `params` (every request checked into a typed call, no IO),
//! `service` (the protocol methods, the send meter, the search index), `daemon` (socket server,
//! single instance, signals, events), `host` (browser <-> daemon relay), `client` (the CLI's
//! connection to the daemon), `install` (host manifests for every browser), `doctor` (follows
//! the chain browser -> manifest -> host -> daemon), `winpipe` (the Windows transport design,
//! compiled on Windows only).

#![cfg_attr(not(unix), allow(dead_code))]

pub mod cli;
pub mod client;
pub mod daemon;
pub mod doctor;
pub mod host;
pub mod install;
pub mod log;
pub mod params;
pub mod paths;
pub mod service;
pub mod store;
pub mod sys;
#[cfg(windows)]
pub mod winpipe;
pub mod wire_cli;
