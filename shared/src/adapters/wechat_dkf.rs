//! WeChat 多客服 PC client plugin (seed 002, platform-spec §3): `window.external.PutMsg(wire)` with
//! `wire` the JSON string `{"msg":{"head":{"random":"<nonce>"},"body":[{"type":…,"content":…}]}}`.
//! `PutMsg` fills the current chat's input box; the agent still presses send.
//!
//! | part | `type` | `content` |
//! |---|---|---|
//! | text | `0` | `{"text"}` |
//! | image with a `url` | `1` | `{"picUrl"}` |
//! | news | `7` | `[{"title","digest","cover","url"}, …]` (seed 002 says `1`; §3.4 corrects it to `7`) |
//!
//! Rich text, product cards and mini-program cards have no `PutMsg` form, and an image known only
//! by its WeChat `media_id` cannot be put by URL: those are `channel_unsupported`, so the part's
//! fallback chain applies. A field that renders empty is `field_required`.
//!
//! `head.random` is [`Target::nonce`]: the client discards a call whose `random` repeats an earlier
//! one, so the caller passes a fresh decimal string per call (`shared` draws no random numbers).
//! Missing or empty: `field_required`; anything but ASCII digits: `invalid_value`. The official
//! demo uses up to 8 digits (`Math.ceil(Math.random() * 10000000)`); the client's accepted range is
//! undocumented, so keep nonces short.
//!
//! The channel is not consulted: the client serves WeChat official-account users only
//! (`channeltype` 1). Values are passed through unchanged (no trimming); serde_json escapes as
//! `JSON.stringify` does. The reply string and the client's events are read by
//! [`crate::wechat::dkf`].

use super::{field_required, to_json, PostAs, Target};
use crate::adapters::preview::{common_display, present, Display};
use crate::model::Part;
use crate::render::{Context, Refusal, RefusalCode};
use crate::wechat::dkf::{TYPE_IMAGE, TYPE_NEWS, TYPE_TEXT};
use serde::Serialize;

#[derive(Serialize)]
struct PutMsg<'a> {
    msg: Msg<'a>,
}

#[derive(Serialize)]
struct Msg<'a> {
    head: Head<'a>,
    body: [Item<'a>; 1],
}

#[derive(Serialize)]
struct Head<'a> {
    random: &'a str,
}

#[derive(Serialize)]
struct Item<'a> {
    #[serde(rename = "type")]
    kind: u8,
    content: Content<'a>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Content<'a> {
    Text {
        text: &'a str,
    },
    Image {
        #[serde(rename = "picUrl")]
        pic_url: &'a str,
    },
    News(Vec<NewsItem<'a>>),
}

#[derive(Serialize)]
struct NewsItem<'a> {
    title: &'a str,
    digest: &'a str,
    cover: &'a str,
    url: &'a str,
}

fn unsupported(msg: String) -> Refusal {
    Refusal::new(RefusalCode::ChannelUnsupported, msg)
}

/// Text, news, and images with a URL; nothing else.
pub fn supports(_target: &Target, part: &Part) -> Result<(), Refusal> {
    match part {
        Part::Text { .. } | Part::News { .. } => Ok(()),
        Part::Image { url, .. } => {
            if url.as_deref().is_some_and(|u| !u.is_empty()) {
                Ok(())
            } else {
                Err(image_without_url())
            }
        }
        Part::Rich { .. } | Part::Product { .. } | Part::Miniprogram(_) => Err(no_put_msg(part)),
    }
}

fn image_without_url() -> Refusal {
    unsupported(
        "the 多客服 client puts images by URL (picUrl) only; this image has only a media_id".into(),
    )
}

fn no_put_msg(part: &Part) -> Refusal {
    unsupported(format!(
        "the 多客服 client's PutMsg has no {} message (only text, image, news)",
        part.kind()
    ))
}

/// The `head.random` of this call: `target.nonce`, decimal digits.
fn random(target: &Target) -> Result<&str, Refusal> {
    let nonce = target.nonce.as_deref().unwrap_or_default();
    if nonce.is_empty() {
        return Err(field_required(
            "nonce",
            "PutMsg needs a fresh decimal head.random per call (the client discards repeats); pass it as the target's nonce",
        ));
    }
    if !nonce.bytes().all(|b| b.is_ascii_digit()) {
        return Err(Refusal::new(
            RefusalCode::InvalidValue,
            format!(
                "nonce {nonce:?} is not a decimal number (PutMsg head.random takes digits only)"
            ),
        ));
    }
    Ok(nonce)
}

/// Encodes a part whose variables are already substituted.
pub fn encode(target: &Target, part: &Part, _ctx: &Context) -> Result<(String, PostAs), Refusal> {
    // The checks run on the substituted part: a value that rendered empty is `field_required`,
    // a capability the client lacks `channel_unsupported` (as in `supports`).
    let (kind, content) = match part {
        Part::Text { text, .. } => {
            if text.is_empty() {
                return Err(field_required(
                    "text",
                    "the 多客服 client takes no empty text",
                ));
            }
            (TYPE_TEXT, Content::Text { text })
        }
        Part::Image { url, .. } => {
            let Some(url) = url.as_deref() else {
                return Err(image_without_url());
            };
            if url.is_empty() {
                return Err(field_required(
                    "url",
                    "a 多客服 image is put by its URL (picUrl)",
                ));
            }
            (TYPE_IMAGE, Content::Image { pic_url: url })
        }
        Part::News { articles, .. } => {
            if articles.is_empty() {
                return Err(field_required(
                    "articles",
                    "a news message needs at least one article",
                ));
            }
            let mut items = Vec::with_capacity(articles.len());
            for (i, a) in articles.iter().enumerate() {
                if a.title.is_empty() {
                    return Err(field_required(
                        &format!("articles[{i}].title"),
                        "a news article needs a title",
                    ));
                }
                if a.url.is_empty() {
                    return Err(field_required(
                        &format!("articles[{i}].url"),
                        "a news article needs a link",
                    ));
                }
                items.push(NewsItem {
                    title: &a.title,
                    digest: &a.digest,
                    cover: &a.cover,
                    url: &a.url,
                });
            }
            (TYPE_NEWS, Content::News(items))
        }
        Part::Rich { .. } | Part::Product { .. } | Part::Miniprogram(_) => {
            return Err(no_put_msg(part))
        }
    };
    let random = random(target)?;
    let wire = to_json(&PutMsg {
        msg: Msg {
            head: Head { random },
            body: [Item { kind, content }],
        },
    });
    Ok((wire, PostAs::PutMsg))
}

/// What `PutMsg` carries of a filled part ([`crate::adapters::preview`]): an image by its URL only.
pub fn display(part: &Part) -> Display {
    match part {
        Part::Image { url, .. } => Display::Image {
            url: present(url),
            media_id: None,
        },
        other => common_display(other),
    }
}
