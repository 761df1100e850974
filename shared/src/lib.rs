//! Quiver's core, shared by the daemon (native) and the extension (wasm32).
//!
//! Architecture invariant: nothing here does IO, reads a clock or draws random numbers.
//! Time is passed in as milliseconds since the Unix epoch; identifiers are passed in.

pub mod adapters;
pub mod date;
pub mod frame;
mod json;
pub mod jsonpos;
pub mod links;
#[cfg(feature = "server")]
pub mod meter;
pub mod model;
pub use adapters::preview;
pub mod proto;
pub mod render;
pub mod sanitize;
pub mod schema;
pub mod search;
pub mod sobot;
pub mod sync;
pub mod wechat;

pub use adapters::{render, render_part, Channel, Platform, PostAs, Target, WirePayload};
pub use model::{Library, Part, Template};
pub use render::{Context, Refusal, RefusalCode};
