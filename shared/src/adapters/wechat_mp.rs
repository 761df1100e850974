//! WeChat mini-program customer-service messages (seed 003, platform-spec §4.6): the JSON body of
//! `POST https://api.weixin.qq.com/cgi-bin/message/custom/send?access_token=…`, sent by the daemon.
//!
//! | part | `msgtype` | type object |
//! |---|---|---|
//! | text | `text` | `{"content"}` — kept as is, including `<a href data-miniprogram-appid data-miniprogram-path>` links |
//! | image with a `media_id` | `image` | `{"media_id"}` |
//! | news with exactly one article | `link` | `{"title","description"←digest,"url","thumb_url"←cover}` |
//! | mini-program card with a `thumb_media_id` | `miniprogrampage` | `{"title","pagepath","thumb_media_id"}` (no `appid`: that field is the official-account form) |
//!
//! Keys are in the documentation's order: `touser`, `msgtype`, then the type object.
//! `touser` is the context value `customer.openid`; without it the send is refused
//! (`missing_variable`).
//!
//! Decisions:
//! - An image known only by URL, and a card whose cover is only a `pic_url`, are
//!   `channel_unsupported`, not `field_required`: WeChat takes media ids only, and getting one
//!   (`media/upload`, 3-day validity) is IO, the daemon's job. The daemon uploads and fills
//!   `media_id`/`thumb_media_id` before rendering; if it does not, the part's fallback chain
//!   applies (e.g. a text with the link), which a `field_required` would have prevented.
//! - A news part with more than one article is `channel_unsupported` (a link card holds one).
//! - Rich text and product cards have no mini-program form: `channel_unsupported`.
//! - The documentation marks all four link fields and all three card fields required: an empty
//!   one is `field_required`.
//! - The channel is not consulted: this API reaches mini-program users only.

use super::{field_required, to_json, PostAs, Target};
use crate::adapters::preview::{common_display, present, Display};
use crate::model::Part;
use crate::render::{Context, Refusal, RefusalCode};
use serde::Serialize;

/// The context variable holding the user's OpenID.
pub const OPENID_VARIABLE: &str = "customer.openid";

#[derive(Serialize)]
struct Send<'a> {
    touser: &'a str,
    msgtype: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<Text<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image: Option<Image<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    link: Option<Link<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    miniprogrampage: Option<Card<'a>>,
}

#[derive(Serialize)]
struct Text<'a> {
    content: &'a str,
}

#[derive(Serialize)]
struct Image<'a> {
    media_id: &'a str,
}

#[derive(Serialize)]
struct Link<'a> {
    title: &'a str,
    description: &'a str,
    url: &'a str,
    thumb_url: &'a str,
}

#[derive(Serialize)]
struct Card<'a> {
    title: &'a str,
    pagepath: &'a str,
    thumb_media_id: &'a str,
}

fn unsupported(msg: String) -> Refusal {
    Refusal::new(RefusalCode::ChannelUnsupported, msg)
}

fn non_empty(v: &Option<String>) -> bool {
    v.as_deref().is_some_and(|s| !s.is_empty())
}

/// Text; images and cards with a media id; news with one article.
pub fn supports(_target: &Target, part: &Part) -> Result<(), Refusal> {
    match part {
        Part::Text { .. } => Ok(()),
        Part::Image { media_id, .. } => {
            if non_empty(media_id) {
                Ok(())
            } else {
                Err(image_without_media_id())
            }
        }
        Part::News { articles, .. } => {
            if articles.len() <= 1 {
                Ok(())
            } else {
                Err(too_many_articles(articles.len()))
            }
        }
        Part::Miniprogram(m) => {
            if non_empty(&m.thumb_media_id) {
                Ok(())
            } else {
                Err(card_without_thumb())
            }
        }
        Part::Rich { .. } | Part::Product { .. } => Err(no_form(part)),
    }
}

fn image_without_media_id() -> Refusal {
    unsupported(
        "mini-program images are sent by media_id; this image has only a url (upload it with media/upload first)"
            .into(),
    )
}

fn too_many_articles(n: usize) -> Refusal {
    unsupported(format!(
        "a mini-program link card holds one article; this news part has {n}"
    ))
}

fn card_without_thumb() -> Refusal {
    unsupported(
        "a mini-program card's cover is sent as thumb_media_id; this card has none (upload its picture with media/upload first)"
            .into(),
    )
}

fn no_form(part: &Part) -> Refusal {
    unsupported(format!(
        "mini-program customer-service messages have no {} form (only text, image, link, miniprogrampage)",
        part.kind()
    ))
}

fn required<'a>(value: &'a str, field: &str, why: &str) -> Result<&'a str, Refusal> {
    if value.is_empty() {
        Err(field_required(field, why))
    } else {
        Ok(value)
    }
}

/// Encodes a part whose variables are already substituted.
pub fn encode(_target: &Target, part: &Part, ctx: &Context) -> Result<(String, PostAs), Refusal> {
    // The checks run on the substituted part: a value that rendered empty is `field_required`,
    // a form WeChat lacks `channel_unsupported` (as in `supports`).
    if let Part::Rich { .. } | Part::Product { .. } = part {
        return Err(no_form(part));
    }
    let touser = ctx
        .get(OPENID_VARIABLE)
        .map(String::as_str)
        .filter(|v| !v.is_empty())
        .ok_or_else(|| {
            Refusal::new(
                RefusalCode::MissingVariable,
                format!("{OPENID_VARIABLE} has no value: a mini-program message goes to the user's OpenID (touser)"),
            )
        })?;
    let mut send = Send {
        touser,
        msgtype: "",
        text: None,
        image: None,
        link: None,
        miniprogrampage: None,
    };
    match part {
        Part::Text { text, .. } => {
            send.msgtype = "text";
            send.text = Some(Text {
                content: required(text, "text", "WeChat sends no empty text")?,
            });
        }
        Part::Image { media_id, .. } => {
            let media_id = media_id.as_deref().ok_or_else(image_without_media_id)?;
            send.msgtype = "image";
            send.image = Some(Image {
                media_id: required(
                    media_id,
                    "media_id",
                    "a mini-program image is sent by its media_id",
                )?,
            });
        }
        Part::News { articles, .. } => {
            if articles.len() > 1 {
                return Err(too_many_articles(articles.len()));
            }
            let a = articles
                .first()
                .ok_or_else(|| field_required("articles", "a link card needs one article"))?;
            let why = "WeChat requires every field of a link card";
            send.msgtype = "link";
            send.link = Some(Link {
                title: required(&a.title, "articles[0].title", why)?,
                description: required(&a.digest, "articles[0].digest", why)?,
                url: required(&a.url, "articles[0].url", why)?,
                thumb_url: required(&a.cover, "articles[0].cover", why)?,
            });
        }
        Part::Miniprogram(m) => {
            let thumb = m.thumb_media_id.as_deref().ok_or_else(card_without_thumb)?;
            let why = "WeChat requires every field of a mini-program card";
            send.msgtype = "miniprogrampage";
            send.miniprogrampage = Some(Card {
                title: required(&m.title, "title", why)?,
                pagepath: required(&m.pagepath, "pagepath", why)?,
                thumb_media_id: required(thumb, "thumb_media_id", why)?,
            });
        }
        Part::Rich { .. } | Part::Product { .. } => return Err(no_form(part)),
    }
    Ok((to_json(&send), PostAs::HttpBody))
}

/// What the customer-service message carries of a filled part ([`crate::adapters::preview`]): an image by
/// its media id only; a card's title, path and media id (no picture URL, name or avatar).
pub fn display(part: &Part) -> Display {
    match part {
        Part::Image { media_id, .. } => Display::Image {
            url: None,
            media_id: present(media_id),
        },
        Part::Miniprogram(m) => Display::Miniprogram {
            title: m.title.clone(),
            pagepath: m.pagepath.clone(),
            name: None,
            avatar: None,
            cover: None,
            media_id: present(&m.thumb_media_id),
        },
        other => common_display(other),
    }
}
