//! Integration tests against the real `quiver` binary (see `tests/lib.rs` for the harness).

mod cli;
mod conversations;
mod daemon;
mod fast_send;
mod faults;
mod host;
mod house;
mod hub;
mod library;
mod mcs;
mod send;
mod team;
mod wire_cli;
mod wx_gateway;
