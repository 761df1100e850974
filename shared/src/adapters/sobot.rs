//! Sobot agent workbench (seed 001, platform-spec §2.4–2.5): the docking page posts a
//! **structured object** to `window.parent`:
//!
//! ```json
//! {"cid":"…","uid":"…","msgType":26,"miniPage":{"headimg":"…","name":"…","thumbUrl":"…",
//!  "title":"…","pagepath":"…","thumbMediaId":"…"}}
//! ```
//!
//! The wire is that object's JSON text, keys in the seed's order, posted as
//! [`PostAs::Object`] (the content script `JSON.parse`s it before posting).
//!
//! - msgType 26 (mini-program card) is the only message the workbench documents, so every other
//!   part is refused with `channel_unsupported` and the render flow tries its fallback chain.
//!   The card is a WeChat mini-program message: when the target's channel is known and is not
//!   `miniprogram`, it is refused too. (Sobot does not put the channel in the iframe URL, so the
//!   channel is normally unknown, and then the card is sent.)
//! - `cid` and `uid` are the conversation and visitor ids from the iframe URL's query, i.e.
//!   [`Target::params`] (read as [`WorkbenchContext`] does). Missing → `field_required`.
//! - `miniPage` fields from the part: `headimg` ← `avatar`, `name` ← `name`, `thumbUrl` ←
//!   `thumb_url`, `title`, `pagepath`, `thumbMediaId` ← `thumb_media_id`.
//!   `title`, `pagepath` and `thumbMediaId` are what WeChat delivers to the customer, so an
//!   empty one is refused (`field_required`; Sobot has no picture-URL alternative to the media
//!   id, unlike Udesk's `pic_url`). `headimg`, `name` and `thumbUrl` only decorate the card in
//!   the agent's workbench: an absent or empty one is **left out** of `miniPage` rather than
//!   refused or sent empty. The spec says to send all six (their required status is not
//!   documented, platform-spec §2.4), so templates for Sobot should fill them; the card still
//!   reaches the customer without them.

use super::{field_required, to_json, Channel, PostAs, Target};
use crate::adapters::preview::{common_display, Display};
use crate::model::Part;
use crate::render::{Context, Refusal, RefusalCode};
use crate::sobot::WorkbenchContext;
use serde::Serialize;

/// The workbench message type of a mini-program card.
pub const MSG_TYPE_MINIPROGRAM: u32 = 26;

/// The posted object. Field order is the wire order of the seed's message format block.
#[derive(Serialize)]
struct WorkbenchPost<'a> {
    cid: &'a str,
    uid: &'a str,
    #[serde(rename = "msgType")]
    msg_type: u32,
    #[serde(rename = "miniPage")]
    mini_page: MiniPage<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct MiniPage<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    headimg: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    thumb_url: Option<&'a str>,
    title: &'a str,
    pagepath: &'a str,
    thumb_media_id: &'a str,
}

fn unsupported(part: &Part) -> Refusal {
    Refusal::new(
        RefusalCode::ChannelUnsupported,
        format!(
            "the Sobot workbench documents only msgType 26 mini-program cards; it has no {} message",
            part.kind()
        ),
    )
}

/// Mini-program cards only, and not on a conversation known to be outside a mini program.
pub fn supports(target: &Target, part: &Part) -> Result<(), Refusal> {
    match part {
        Part::Miniprogram(_) => match target.channel {
            None | Some(Channel::Miniprogram) => Ok(()),
            Some(other) => Err(Refusal::new(
                RefusalCode::ChannelUnsupported,
                format!(
                    "Sobot's msgType 26 card is a WeChat mini-program message; this conversation's channel is {}",
                    other.as_str()
                ),
            )),
        },
        _ => Err(unsupported(part)),
    }
}

fn present(v: &Option<String>) -> Option<&str> {
    v.as_deref().filter(|s| !s.is_empty())
}

/// Encodes a part whose variables are already substituted.
pub fn encode(target: &Target, part: &Part, _ctx: &Context) -> Result<(String, PostAs), Refusal> {
    supports(target, part)?;
    let Part::Miniprogram(m) = part else {
        return Err(unsupported(part));
    };
    let frame = WorkbenchContext::from_params(&target.params);
    let cid = frame.cid.as_deref().ok_or_else(|| {
        field_required(
            "cid",
            "Sobot addresses the card by the conversation id, the cid parameter of the assistant iframe's URL",
        )
    })?;
    let uid = frame.uid.as_deref().ok_or_else(|| {
        field_required(
            "uid",
            "Sobot addresses the card by the visitor id, the uid parameter of the assistant iframe's URL",
        )
    })?;
    if m.title.is_empty() {
        return Err(field_required(
            "title",
            "WeChat shows it as the card's title",
        ));
    }
    if m.pagepath.is_empty() {
        return Err(field_required(
            "pagepath",
            "the card opens this page of the mini program",
        ));
    }
    let thumb_media_id = present(&m.thumb_media_id).ok_or_else(|| {
        field_required(
            "thumb_media_id",
            "Sobot passes thumbMediaId to WeChat as the card's cover (a media id of the customer's mini program); \
             it has no picture-URL alternative",
        )
    })?;
    let wire = to_json(&WorkbenchPost {
        cid,
        uid,
        msg_type: MSG_TYPE_MINIPROGRAM,
        mini_page: MiniPage {
            headimg: present(&m.avatar),
            name: present(&m.name),
            thumb_url: present(&m.thumb_url),
            title: &m.title,
            pagepath: &m.pagepath,
            thumb_media_id,
        },
    });
    Ok((wire, PostAs::Object))
}

/// What Sobot's wire carries of a filled part ([`crate::adapters::preview`]): the card's title, path,
/// media id, and the workbench's name, avatar (`headimg`) and cover (`thumbUrl`); no `pic_url`.
pub fn display(part: &Part) -> Display {
    match part {
        Part::Miniprogram(m) => Display::Miniprogram {
            title: m.title.clone(),
            pagepath: m.pagepath.clone(),
            name: present(&m.name).map(str::to_string),
            avatar: present(&m.avatar).map(str::to_string),
            cover: present(&m.thumb_url).map(str::to_string),
            media_id: present(&m.thumb_media_id).map(str::to_string),
        },
        other => common_display(other),
    }
}
