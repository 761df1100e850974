//! Udesk IM workspace assistant (seed 000, platform-spec §1): `parent.postMessage` of a JSON string
//! `{"method":"sendMsg","type":..., "content":...}`.
//!
//! Channel table (platform-spec §1.5): text and rich on every channel; product on the web channel
//! and on the SDK channel from SDK 5.1; mini-program cards on mini-program channels only.
//! The seed's table names the card's type `product`; its example (and Udesk) use
//! `miniprogrampage`, which is what is sent.

use super::{field_required, to_json, Channel, PostAs, Target};
use crate::adapters::preview::{common_display, present, Display};
use crate::model::Part;
use crate::render::{Context, Refusal, RefusalCode};
use crate::sanitize;
use serde::Serialize;

/// The `sendMsg` envelope. Field order is the wire order (`method`, `type`, `content`), and
/// serde_json escapes exactly as `JSON.stringify` does, so the bytes match the seed's examples.
#[derive(Serialize)]
struct SendMsg<C: Serialize> {
    method: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    content: C,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct Product<'a> {
    name: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    url: Option<&'a str>,
    img_url: &'a str,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    params: Vec<Param<'a>>,
}

/// A product text segment. `fold` means bold and `break` a line break after it (platform-spec §1.4).
#[derive(Serialize)]
struct Param<'a> {
    text: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    color: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    fold: Option<bool>,
    #[serde(rename = "break", skip_serializing_if = "Option::is_none")]
    line_break: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<u32>,
}

#[derive(Serialize)]
struct MiniProgramPage<'a> {
    title: &'a str,
    pagepath: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumb_media_id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pic_url: Option<&'a str>,
}

fn unsupported(msg: String) -> Refusal {
    Refusal::new(RefusalCode::ChannelUnsupported, msg)
}

/// The channel table.
pub fn supports(target: &Target, part: &Part) -> Result<(), Refusal> {
    let channel = target.channel;
    let name = channel.map_or("an unknown channel", |c| c.as_str());
    match part {
        Part::Text { .. } | Part::Rich { .. } => Ok(()),
        Part::Image { .. } | Part::News { .. } => Err(unsupported(format!(
            "udesk's assistant component has no {} message",
            part.kind()
        ))),
        Part::Product { .. } => match channel {
            Some(Channel::Web) => Ok(()),
            Some(Channel::Sdk) => match target.sdk()? {
                Some(v) if v >= (5, 1) => Ok(()),
                Some((a, b)) => Err(unsupported(format!(
                    "udesk shows product cards on the SDK channel from SDK 5.1 only; this conversation's SDK is {a}.{b}"
                ))),
                None => Err(unsupported(
                    "udesk shows product cards on the SDK channel from SDK 5.1 only; the SDK version is unknown"
                        .into(),
                )),
            },
            _ => Err(unsupported(format!(
                "udesk shows product cards only on the web channel and SDK 5.1+, not on {name}"
            ))),
        },
        Part::Miniprogram(_) => match channel {
            Some(Channel::Miniprogram) => Ok(()),
            _ => Err(unsupported(format!(
                "udesk shows mini-program cards only on mini-program channels, not on {name}"
            ))),
        },
    }
}

/// Encodes a part whose variables are already substituted.
pub fn encode(_target: &Target, part: &Part, _ctx: &Context) -> Result<(String, PostAs), Refusal> {
    let wire = match part {
        Part::Text { text, .. } => {
            if text.is_empty() {
                return Err(field_required("text", "udesk sends no empty text message"));
            }
            to_json(&SendMsg {
                method: "sendMsg",
                kind: "text",
                content: text,
            })
        }
        Part::Rich { html, .. } => {
            let cleaned = sanitize::clean(html);
            if cleaned.trim().is_empty() {
                return Err(field_required(
                    "html",
                    "nothing is left of the rich text after cleaning",
                ));
            }
            to_json(&SendMsg {
                method: "sendMsg",
                kind: "rich",
                content: cleaned,
            })
        }
        Part::Product {
            name,
            url,
            image,
            segments,
            ..
        } => {
            if name.is_empty() {
                return Err(field_required("name", "a udesk product card needs a name"));
            }
            if image.is_empty() {
                return Err(field_required(
                    "image",
                    "a udesk product card needs an image (imgUrl)",
                ));
            }
            to_json(&SendMsg {
                method: "sendMsg",
                kind: "product",
                content: Product {
                    name,
                    url: url.as_deref().filter(|u| !u.is_empty()),
                    img_url: image,
                    params: segments
                        .iter()
                        .map(|s| Param {
                            text: &s.text,
                            color: s.color.as_deref(),
                            fold: s.bold,
                            line_break: s.line_break,
                            size: s.size,
                        })
                        .collect(),
                },
            })
        }
        Part::Miniprogram(m) => {
            let media = m.thumb_media_id.as_deref().filter(|s| !s.is_empty());
            let pic = m.pic_url.as_deref().filter(|s| !s.is_empty());
            if media.is_none() && pic.is_none() {
                return Err(field_required(
                    "thumb_media_id",
                    "a udesk mini-program card needs thumb_media_id or pic_url",
                ));
            }
            to_json(&SendMsg {
                method: "sendMsg",
                kind: "miniprogrampage",
                content: MiniProgramPage {
                    title: &m.title,
                    pagepath: &m.pagepath,
                    thumb_media_id: media,
                    pic_url: pic,
                },
            })
        }
        Part::Image { .. } | Part::News { .. } => {
            return Err(unsupported(format!(
                "udesk's assistant component has no {} message",
                part.kind()
            )))
        }
    };
    Ok((wire, PostAs::String))
}

/// True when a product `url` is a mini-program path rather than a web link (seed 000: a URL that
/// does not start with `http` is opened with `wx.miniProgram.navigateTo`), and a valid one
/// ([`crate::links`]): `javascript:…` is neither a web link nor a path.
pub fn is_miniprogram_path(url: &str) -> bool {
    crate::links::is_miniprogram_path(url)
}

/// What Udesk's wire carries of a filled part ([`crate::adapters::preview`]): a mini-program card's title,
/// path, `thumb_media_id` and `pic_url` (no name or avatar); the rest as written.
pub fn display(part: &Part) -> Display {
    match part {
        Part::Miniprogram(m) => Display::Miniprogram {
            title: m.title.clone(),
            pagepath: m.pagepath.clone(),
            name: None,
            avatar: None,
            cover: present(&m.pic_url),
            media_id: present(&m.thumb_media_id),
        },
        other => common_display(other),
    }
}
