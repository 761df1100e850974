//! WeChat protocol parts that are not template adapters: pure functions only.
//!
//! - [`dkf`]: the 多客服 PC client plugin bridge (seed 002, platform-spec §3): the `PutMsg`/`Notice`
//!   reply string and the `MCS_ClientNotify` events, read with the tolerant [`literal`] parser.
//! - [`push`]: mini-program message pushes in XML or JSON (platform-spec §4.2, §4.3).
//! - [`crypto`]: URL signatures, `msg_signature`, safe-mode AES (platform-spec §4.4).
//! - [`reply`]: the passive `transfer_customer_service` reply, plain and encrypted (§4.5, §4.4).
//! - [`api`]: the customer-service HTTP API: typing bodies, `errcode` classification (§4.8, §4.11).
//! - [`quota`]: the 45015/45047 send window rules as functions of time (§4.7).
//! - [`token`], [`outcome`], [`media`]: a gateway's pure deciders (research §4.6, §4.7, §4.9):
//!   when to use or refresh an access token, what to do after each API call, how long a cached
//!   upload lives and what an image's bytes are.
//!
//! The template adapters that use these live in `adapters::wechat_dkf` and `adapters::wechat_mp`.
//! Like the rest of the crate this module does no IO, reads no clock and draws no random numbers:
//! times and random bytes are arguments.

#[cfg(feature = "server")]
pub mod api;
#[cfg(feature = "server")]
pub mod crypto;
pub mod dkf;
pub mod literal;
#[cfg(feature = "server")]
pub mod media;
#[cfg(feature = "server")]
pub mod outcome;
#[cfg(feature = "server")]
pub mod push;
#[cfg(feature = "server")]
pub mod quota;
#[cfg(feature = "server")]
pub mod reply;
#[cfg(feature = "server")]
pub mod token;
#[cfg(feature = "server")]
mod xml;

use serde::{Deserialize, Serialize};

/// Why a text from WeChat (a reply string, an event, a push body) could not be read.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ParseError {
    pub message: String,
}

impl ParseError {
    pub(crate) fn new(message: impl Into<String>) -> Self {
        ParseError {
            message: message.into(),
        }
    }
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ParseError {}

/// The data format configured for message pushes (mini-program admin → 消息推送). Replies must use
/// the format of the push (platform-spec §4.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    Xml,
    Json,
}

impl Format {
    /// The format of a body by its first non-blank character (`<` or `{`).
    pub fn detect(body: &str) -> Option<Format> {
        match body
            .trim_start_matches(|c: char| c.is_whitespace() || c == '\u{feff}')
            .chars()
            .next()
        {
            Some('<') => Some(Format::Xml),
            Some('{') => Some(Format::Json),
            _ => None,
        }
    }

    /// The format named by a `Content-Type` header (`text/xml`, `application/json`, ...).
    pub fn from_content_type(content_type: &str) -> Option<Format> {
        let essence = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        if essence.ends_with("/xml") || essence.ends_with("+xml") {
            Some(Format::Xml)
        } else if essence.ends_with("/json") || essence.ends_with("+json") {
            Some(Format::Json)
        } else {
            None
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Format::Xml => "xml",
            Format::Json => "json",
        }
    }
}
