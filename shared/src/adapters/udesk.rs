//! Udesk IM workspace assistant (seed 000, platform-spec §1): `parent.postMessage` of a JSON string.

use super::{Platform, PostAs, WirePayload};
use crate::model::Part;
use crate::render::{render_text, Context, Refusal};
use serde::Serialize;

/// The `sendMsg` envelope. Field order is the wire order (`method`, `type`, `content`), and
/// serde_json escapes exactly as `JSON.stringify` does, so the bytes match the seed's examples.
#[derive(Serialize)]
struct SendMsg<'a, C: Serialize> {
    method: &'static str,
    #[serde(rename = "type")]
    kind: &'a str,
    content: C,
}

pub fn encode(part: &Part, ctx: &Context) -> Result<WirePayload, Refusal> {
    let wire = match part {
        Part::Text { text } => to_json(&SendMsg {
            method: "sendMsg",
            kind: "text",
            content: render_text(text, ctx)?,
        }),
    };
    Ok(WirePayload {
        platform: Platform::Udesk,
        wire,
        post_as: PostAs::String,
    })
}

fn to_json<T: Serialize>(v: &T) -> String {
    // Serializing these plain structs cannot fail.
    serde_json::to_string(v).expect("serializable envelope")
}
