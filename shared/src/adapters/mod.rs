//! Platform adapters: a template part to the exact bytes a workspace expects.
//!
//! Flow for one part ([`render`]): check the template's required variables, walk the part's
//! fallback chain to the first rendition the target's channel can show (or refuse with
//! `channel_unsupported` naming why), substitute variables in every text field, then encode
//! in the platform's wire format.

pub mod preview;
pub mod sobot;
pub mod udesk;
pub mod wechat_dkf;
pub mod wechat_mp;

use crate::links::{self, LinkKind};
use crate::model::{Article, MiniProgram, Part, Segment, Template};
use crate::render::{fill_text, Context, Refusal, RefusalCode};
use crate::sanitize;
use serde::{Deserialize, Serialize};

/// The workspaces Quiver sends into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Platform {
    /// Udesk IM workspace assistant (seed 000).
    Udesk,
    /// Sobot agent workbench iframe (seed 001).
    Sobot,
    /// WeChat 多客服 PC client plugin (seed 002).
    WechatDkf,
    /// WeChat mini-program customer-service messages, sent by the daemon (seed 003).
    WechatMp,
}

impl Platform {
    pub const ALL: &'static [Platform] = &[
        Platform::Udesk,
        Platform::Sobot,
        Platform::WechatDkf,
        Platform::WechatMp,
    ];

    pub fn parse(s: &str) -> Result<Platform, Refusal> {
        Platform::ALL
            .iter()
            .copied()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| {
                let known: Vec<&str> = Platform::ALL.iter().map(|p| p.as_str()).collect();
                Refusal::new(
                    RefusalCode::InvalidTarget,
                    format!("unknown platform {s:?} (known: {})", known.join(", ")),
                )
            })
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Platform::Udesk => "udesk",
            Platform::Sobot => "sobot",
            Platform::WechatDkf => "wechat-dkf",
            Platform::WechatMp => "wechat-mp",
        }
    }
}

/// The conversation channel, as far as it decides what a workspace can show.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Channel {
    /// Web chat.
    Web,
    /// A mobile SDK (with `Target::sdk_version`).
    Sdk,
    /// A WeChat mini program.
    Miniprogram,
    /// A WeChat official account.
    Wechat,
    /// Any other channel (Weibo, e-mail, ...): only plain messages.
    Other,
}

impl Channel {
    pub const NAMES: &'static [&'static str] = &["web", "sdk", "miniprogram", "wechat", "other"];

    pub fn parse(s: &str) -> Result<Channel, Refusal> {
        Ok(match s {
            "web" => Channel::Web,
            "sdk" => Channel::Sdk,
            "miniprogram" => Channel::Miniprogram,
            "wechat" => Channel::Wechat,
            "other" => Channel::Other,
            _ => {
                return Err(Refusal::new(
                    RefusalCode::InvalidTarget,
                    format!(
                        "unknown channel {s:?} (known: {})",
                        Channel::NAMES.join(", ")
                    ),
                ))
            }
        })
    }

    pub fn as_str(self) -> &'static str {
        Channel::NAMES[self as usize]
    }
}

/// Where a part is going: the platform, and what is known of the conversation.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Target {
    pub platform: Option<Platform>,
    /// The conversation's channel; unknown means only what every channel shows is sent.
    #[serde(default)]
    pub channel: Option<Channel>,
    /// SDK version `major.minor` for the SDK channel.
    #[serde(default)]
    pub sdk_version: Option<String>,
    /// Query parameters of the assistant frame's URL (Sobot passes `cid`, `uid`, `partnerId`...).
    #[serde(default)]
    pub params: std::collections::BTreeMap<String, String>,
    /// Caller-supplied randomness where a platform wants a fresh value per call
    /// (`head.random` of the 多客服 `PutMsg`). `shared` draws no random numbers itself.
    #[serde(default)]
    pub nonce: Option<String>,
}

impl Target {
    pub fn new(platform: Platform) -> Self {
        Target {
            platform: Some(platform),
            ..Target::default()
        }
    }

    fn platform(&self) -> Result<Platform, Refusal> {
        self.platform
            .ok_or_else(|| Refusal::new(RefusalCode::InvalidTarget, "no platform given"))
    }

    /// The SDK version as (major, minor).
    pub fn sdk(&self) -> Result<Option<(u32, u32)>, Refusal> {
        let Some(v) = &self.sdk_version else {
            return Ok(None);
        };
        let bad = || {
            Refusal::new(
                RefusalCode::InvalidTarget,
                format!("sdk version {v:?} is not of the form MAJOR.MINOR"),
            )
        };
        let mut it = v.trim().split('.');
        let major = it.next().and_then(|x| x.parse().ok()).ok_or_else(bad)?;
        let minor = match it.next() {
            Some(x) => x.parse().map_err(|_| bad())?,
            None => 0,
        };
        Ok(Some((major, minor)))
    }
}

/// How the content script hands the payload to the workspace.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PostAs {
    /// `window.parent.postMessage(wire, "*")` with `wire` as a string (Udesk).
    String,
    /// `window.parent.postMessage(JSON.parse(wire), "*")`: a structured object (Sobot).
    Object,
    /// `window.external.PutMsg(wire)` (WeChat 多客服 client).
    PutMsg,
    /// The body of an HTTPS request made by the daemon (WeChat mini program).
    HttpBody,
}

/// A part in the platform's wire format.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WirePayload {
    pub platform: Platform,
    /// JSON text, byte-exact as the platform expects it.
    pub wire: String,
    pub post_as: PostAs,
    /// The type of the part actually sent (differs from the template's when a fallback was used).
    pub kind: String,
    /// True when a fallback rendition was used.
    pub fallback_used: bool,
}

/// Why a part cannot be shown on a target; `Ok` when it can.
pub fn supports(target: &Target, part: &Part) -> Result<(), Refusal> {
    match target.platform()? {
        Platform::Udesk => udesk::supports(target, part),
        Platform::Sobot => sobot::supports(target, part),
        Platform::WechatDkf => wechat_dkf::supports(target, part),
        Platform::WechatMp => wechat_mp::supports(target, part),
    }
}

/// The context values a platform's wire takes besides the template's placeholders (the send is
/// refused without them): `customer.openid` (`touser`) for wechat-mp.
pub fn context_needs(platform: Platform) -> &'static [&'static str] {
    match platform {
        Platform::WechatMp => &[wechat_mp::OPENID_VARIABLE],
        Platform::Udesk | Platform::Sobot | Platform::WechatDkf => &[],
    }
}

/// The first rendition in `part`'s fallback chain that the target can show.
pub fn choose<'a>(target: &Target, part: &'a Part) -> Result<(&'a Part, bool), Refusal> {
    let mut current = part;
    let mut first_refusal = None;
    loop {
        match supports(target, current) {
            Ok(()) => return Ok((current, !std::ptr::eq(current, part))),
            Err(r) => {
                if r.code != RefusalCode::ChannelUnsupported {
                    return Err(r);
                }
                first_refusal.get_or_insert(r);
            }
        }
        match current.fallback() {
            Some(f) => current = f,
            None => {
                let r = first_refusal.expect("set above");
                let msg = if std::ptr::eq(current, part) {
                    format!("{}; the part names no fallback", r.message)
                } else {
                    format!(
                        "{}; no fallback in its chain can be shown either",
                        r.message
                    )
                };
                return Err(Refusal::new(RefusalCode::ChannelUnsupported, msg));
            }
        }
    }
}

/// Renders part `index` of `template` for `target` with the conversation's context.
pub fn render(
    target: &Target,
    template: &Template,
    index: usize,
    ctx: &Context,
) -> Result<WirePayload, Refusal> {
    let platform = target.platform()?;
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
    let required = template.required_variables();
    for name in &required {
        if ctx.get(*name).is_none_or(|v| v.is_empty()) {
            return Err(Refusal::new(
                RefusalCode::MissingVariable,
                format!("required variable {name} has no value"),
            ));
        }
    }
    let (chosen, fallback_used) = choose(target, part)?;
    let filled = substitute(chosen, ctx, &required)?;
    let (wire, post_as) = match platform {
        Platform::Udesk => udesk::encode(target, &filled, ctx)?,
        Platform::Sobot => sobot::encode(target, &filled, ctx)?,
        Platform::WechatDkf => wechat_dkf::encode(target, &filled, ctx)?,
        Platform::WechatMp => wechat_mp::encode(target, &filled, ctx)?,
    };
    Ok(WirePayload {
        platform,
        wire,
        post_as,
        kind: chosen.kind().to_string(),
        fallback_used,
    })
}

/// Renders part `index` for a platform with no channel information.
pub fn render_part(
    platform: Platform,
    template: &Template,
    index: usize,
    ctx: &Context,
) -> Result<WirePayload, Refusal> {
    render(&Target::new(platform), template, index, ctx)
}

/// A copy of `part` (without its fallback) with variables substituted in every text field.
///
/// Values are written as each field needs (docs/templates.md, "Variables"): as is in plain text,
/// HTML-escaped in rich HTML ([`sanitize::fill`]), percent-encoded in links unless the
/// placeholder is the whole link ([`links::fill`]). Every non-empty link is then checked by its
/// grammar ([`links`]) and refused with `invalid_value` naming the field.
pub fn substitute(part: &Part, ctx: &Context, required: &[&str]) -> Result<Part, Refusal> {
    substitute_with(part, ctx, required, &mut |_, refusal, _| Err(refusal))
}

/// What [`substitute_with`] does where a placeholder has no value: given the variable's name,
/// the refusal the render makes there and whether the field is a link, either that refusal or
/// the text to insert as written.
pub type OnHole<'a> = dyn FnMut(&str, Refusal, bool) -> Result<String, Refusal> + 'a;

/// [`substitute`] with the treatment of a missing value left to `missing`: the render refuses,
/// the preview ([`crate::adapters::preview`]) records the name and leaves a hole.
pub fn substitute_with(
    part: &Part,
    ctx: &Context,
    required: &[&str],
    missing: &mut OnHole<'_>,
) -> Result<Part, Refusal> {
    let missing = &std::cell::RefCell::new(missing);
    // fresh closures per field over a shared borrow, so that the fillers below stay `Fn`
    let hole = |link: bool| move |name: &str, r: Refusal| (missing.borrow_mut())(name, r, link);
    let r = |s: &str| {
        fill_text(
            s,
            ctx,
            required,
            &mut |_, v, _| Ok(v.to_string()),
            &mut hole(false),
        )
    };
    let ro = |s: &Option<String>| s.as_deref().map(r).transpose();
    let link = |kind: LinkKind, s: &str, field: &str| {
        links::fill_with(kind, s, ctx, required, field, &mut hole(true))
    };
    let link_opt = |kind: LinkKind, s: &Option<String>, field: &str| {
        s.as_deref().map(|s| link(kind, s, field)).transpose()
    };
    Ok(match part {
        Part::Text { text, .. } => Part::Text {
            text: r(text)?,
            fallback: None,
        },
        Part::Rich { html, .. } => Part::Rich {
            html: sanitize::fill_with(html, ctx, required, &mut hole(false))?,
            fallback: None,
        },
        Part::Image { url, media_id, .. } => Part::Image {
            url: link_opt(LinkKind::Web, url, "url")?,
            media_id: ro(media_id)?,
            fallback: None,
        },
        Part::News { articles, .. } => Part::News {
            articles: articles
                .iter()
                .enumerate()
                .map(|(i, a)| {
                    Ok(Article {
                        title: r(&a.title)?,
                        digest: r(&a.digest)?,
                        cover: link(LinkKind::Web, &a.cover, &format!("articles[{i}].cover"))?,
                        url: link(LinkKind::Web, &a.url, &format!("articles[{i}].url"))?,
                    })
                })
                .collect::<Result<_, Refusal>>()?,
            fallback: None,
        },
        Part::Product {
            name,
            url,
            image,
            segments,
            ..
        } => Part::Product {
            name: r(name)?,
            url: link_opt(LinkKind::WebOrPage, url, "url")?,
            image: link(LinkKind::Web, image, "image")?,
            segments: segments
                .iter()
                .map(|s| {
                    Ok(Segment {
                        text: r(&s.text)?,
                        ..s.clone()
                    })
                })
                .collect::<Result<_, Refusal>>()?,
            fallback: None,
        },
        Part::Miniprogram(m) => Part::Miniprogram(Box::new(MiniProgram {
            title: r(&m.title)?,
            pagepath: link(LinkKind::Page, &m.pagepath, "pagepath")?,
            thumb_media_id: ro(&m.thumb_media_id)?,
            pic_url: link_opt(LinkKind::Web, &m.pic_url, "pic_url")?,
            name: ro(&m.name)?,
            avatar: link_opt(LinkKind::Web, &m.avatar, "avatar")?,
            thumb_url: link_opt(LinkKind::Web, &m.thumb_url, "thumb_url")?,
            fallback: None,
        })),
    })
}

pub(crate) use crate::json::to_json;

/// A refusal for a field that must not be empty.
pub(crate) fn field_required(field: &str, why: &str) -> Refusal {
    Refusal::new(
        RefusalCode::FieldRequired,
        format!("{field} is required: {why}"),
    )
}
