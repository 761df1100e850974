//! Template variables: `{{customer.name}}` and `{{customer.name|fallback}}`.
//!
//! A variable without a value and without a fallback refuses the render: a raw placeholder never
//! reaches a customer.

use serde::Serialize;
use std::collections::BTreeMap;

/// Values known about the current conversation, keyed by dotted name (`customer.name`).
pub type Context = BTreeMap<String, String>;

/// Why a render or a send was refused. The codes are stable and documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    MissingVariable,
    InvalidTemplate,
    ChannelUnsupported,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::MissingVariable => "missing_variable",
            RefusalCode::InvalidTemplate => "invalid_template",
            RefusalCode::ChannelUnsupported => "channel_unsupported",
        }
    }
}

/// A refusal with a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// Replaces every `{{name}}` / `{{name|fallback}}` in `text`.
pub fn render_text(text: &str, ctx: &Context) -> Result<String, Refusal> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("{{") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find("}}") else {
            return Err(Refusal::new(
                RefusalCode::InvalidTemplate,
                format!(
                    "unclosed placeholder at byte {}: {:?}",
                    text.len() - rest.len() + start,
                    truncate(&rest[start..], 24)
                ),
            ));
        };
        let inner = &after[..end];
        let (name, fallback) = match inner.split_once('|') {
            Some((n, f)) => (n.trim(), Some(f.trim())),
            None => (inner.trim(), None),
        };
        if !valid_name(name) {
            return Err(Refusal::new(
                RefusalCode::InvalidTemplate,
                format!("invalid variable name {name:?} in {{{{{inner}}}}}"),
            ));
        }
        match ctx.get(name).map(|v| v.as_str()).filter(|v| !v.is_empty()) {
            Some(v) => out.push_str(v),
            None => match fallback {
                Some(f) => out.push_str(f),
                None => {
                    return Err(Refusal::new(
                        RefusalCode::MissingVariable,
                        format!("variable {name} has no value and no fallback"),
                    ))
                }
            },
        }
        rest = &after[end + 2..];
    }
    out.push_str(rest);
    Ok(out)
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
