//! Platform adapters: a rendered part to the exact bytes a workspace expects.

pub mod udesk;

use crate::model::Template;
use crate::render::{Context, Refusal, RefusalCode};
use serde::{Deserialize, Serialize};

/// The workspaces Quiver sends into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    Udesk,
}

impl Platform {
    pub fn parse(s: &str) -> Result<Platform, Refusal> {
        match s {
            "udesk" => Ok(Platform::Udesk),
            other => Err(Refusal::new(
                RefusalCode::ChannelUnsupported,
                format!("unknown platform {other:?} (known: udesk)"),
            )),
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Udesk => "udesk",
        }
    }
}

/// How the content script hands the payload to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostAs {
    /// `window.parent.postMessage(wire, "*")` with `wire` as a string (Udesk).
    String,
    /// `window.parent.postMessage(JSON.parse(wire), "*")`: a structured object.
    Object,
}

/// A part in the platform's wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePayload {
    pub platform: Platform,
    /// JSON text, byte-exact as the platform expects it.
    pub wire: String,
    pub post_as: PostAs,
}

/// Renders part `index` of `template` for `platform` with the conversation's context.
pub fn render_part(
    platform: Platform,
    template: &Template,
    index: usize,
    ctx: &Context,
) -> Result<WirePayload, Refusal> {
    let part = template.parts.get(index).ok_or_else(|| {
        Refusal::new(
            RefusalCode::InvalidTemplate,
            format!(
                "template {:?} has {} parts, no part {index}",
                template.id,
                template.parts.len()
            ),
        )
    })?;
    match platform {
        Platform::Udesk => udesk::encode(part, ctx),
    }
}
