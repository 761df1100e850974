//! What the customer will see: per part, the wire payload exactly as [`render`] produces it and a
//! display model that one drawer can draw without knowing any platform's rules.
//!
//! The display model is made from the rendition the core sends ([`choose`]: the first one in
//! the fallback chain the target can show), with every text filled as on the wire (the same
//! substitution, dates in the context's `tz`), rich HTML reduced to what the sanitizer keeps,
//! and only the fields the platform's wire carries ([`display`], one table per adapter). A
//! variable without a value is listed in `missing` and drawn as a hole (`[name]` in text, left
//! out of links), where the render refuses.

use crate::adapters::{self, choose, render, substitute_with, Platform, Target, WirePayload};
use crate::model::{Part, Template};
use crate::render::{Context, Refusal};
use serde::Serialize;

/// One part as the customer will see it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartPreview {
    /// The part's index in the template.
    pub index: usize,
    /// What [`render`] returns for the part: the payload, or `null` when it refuses.
    pub wire: Option<WirePayload>,
    /// [`render`]'s refusal, or `null` when it renders.
    pub refusal: Option<Refusal>,
    /// The rendition sent, as its position in the fallback chain (0: the part itself), or
    /// `null` when no rendition can be shown on the target.
    pub rendition: Option<usize>,
    /// The sent rendition's type, or `null` with `rendition`.
    pub kind: Option<&'static str>,
    /// Variables without a value that the send needs, in first-use order: declared required
    /// ones, placeholders of the sent rendition without a fallback, and what the platform takes
    /// from the context (`customer.openid` for wechat-mp). Empty when nothing is missing.
    pub missing: Vec<String>,
    /// What to draw, or `null` when nothing would be sent (no rendition fits the target, or the
    /// template is broken: see `refusal`).
    pub display: Option<Display>,
}

/// A part as drawn: its filled texts and the fields the platform sends, nothing else.
/// Serialized with `"kind"` naming the variant (`text`, `rich`, ...).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Display {
    Text {
        text: String,
    },
    /// `html` is exactly what the sanitizer keeps (and the wire carries); `text` its text content.
    Rich {
        html: String,
        text: String,
    },
    /// An image by URL (`url`), or known only by a WeChat media id (nothing to draw from).
    Image {
        url: Option<String>,
        media_id: Option<String>,
    },
    News {
        articles: Vec<ArticleView>,
    },
    Product {
        name: String,
        url: Option<String>,
        image: String,
        segments: Vec<SegmentView>,
    },
    Miniprogram {
        title: String,
        pagepath: String,
        /// The mini program's name and avatar URL (Sobot's workbench shows them).
        name: Option<String>,
        avatar: Option<String>,
        /// The cover as a URL, when the platform sends one (Udesk `pic_url`, Sobot `thumb_url`).
        cover: Option<String>,
        /// The cover as a WeChat media id, when sent.
        media_id: Option<String>,
    },
}

/// One article of a news card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ArticleView {
    pub title: String,
    pub digest: String,
    pub cover: Option<String>,
    pub url: String,
}

/// One styled segment of a product card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SegmentView {
    pub text: String,
    pub color: Option<String>,
    pub bold: bool,
    /// A line break after the segment.
    #[serde(rename = "break")]
    pub line_break: bool,
    pub size: Option<u32>,
}

impl Display {
    /// Every text the drawer shows or links to, for checks (no `{{` may be left).
    pub fn texts(&self) -> Vec<&str> {
        fn opt(v: &Option<String>) -> Option<&str> {
            v.as_deref()
        }
        match self {
            Display::Text { text } => vec![text],
            Display::Rich { html, text } => vec![html, text],
            Display::Image { url, media_id } => {
                [opt(url), opt(media_id)].into_iter().flatten().collect()
            }
            Display::News { articles } => articles
                .iter()
                .flat_map(|a| {
                    [
                        Some(a.title.as_str()),
                        Some(&a.digest),
                        Some(&a.url),
                        opt(&a.cover),
                    ]
                })
                .flatten()
                .collect(),
            Display::Product {
                name,
                url,
                image,
                segments,
            } => [Some(name.as_str()), Some(image), opt(url)]
                .into_iter()
                .flatten()
                .chain(segments.iter().map(|s| s.text.as_str()))
                .collect(),
            Display::Miniprogram {
                title,
                pagepath,
                name,
                avatar,
                cover,
                media_id,
            } => [
                Some(title.as_str()),
                Some(pagepath),
                opt(name),
                opt(avatar),
                opt(cover),
                opt(media_id),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }
}

/// `Some` of a non-empty value.
pub(crate) fn present(v: &Option<String>) -> Option<String> {
    v.as_deref().filter(|s| !s.is_empty()).map(str::to_string)
}

/// The display of a filled part on `platform`: the fields its wire carries.
pub fn display(platform: Platform, filled: &Part) -> Display {
    match platform {
        Platform::Udesk => adapters::udesk::display(filled),
        Platform::Sobot => adapters::sobot::display(filled),
        Platform::WechatDkf => adapters::wechat_dkf::display(filled),
        Platform::WechatMp => adapters::wechat_mp::display(filled),
    }
}

/// The display every platform shares for the fields it carries as they are.
pub(crate) fn common_display(filled: &Part) -> Display {
    match filled {
        Part::Text { text, .. } => Display::Text { text: text.clone() },
        Part::Rich { html, .. } => {
            let html = crate::sanitize::clean(html);
            let text = crate::search::html_text(&html);
            Display::Rich { html, text }
        }
        Part::Image { url, media_id, .. } => Display::Image {
            url: present(url),
            media_id: present(media_id),
        },
        Part::News { articles, .. } => Display::News {
            articles: articles
                .iter()
                .map(|a| ArticleView {
                    title: a.title.clone(),
                    digest: a.digest.clone(),
                    cover: Some(a.cover.clone()).filter(|c| !c.is_empty()),
                    url: a.url.clone(),
                })
                .collect(),
        },
        Part::Product {
            name,
            url,
            image,
            segments,
            ..
        } => Display::Product {
            name: name.clone(),
            url: present(url),
            image: image.clone(),
            segments: segments
                .iter()
                .map(|s| SegmentView {
                    text: s.text.clone(),
                    color: s.color.clone(),
                    bold: s.bold.unwrap_or(false),
                    line_break: s.line_break.unwrap_or(false),
                    size: s.size,
                })
                .collect(),
        },
        Part::Miniprogram(m) => Display::Miniprogram {
            title: m.title.clone(),
            pagepath: m.pagepath.clone(),
            name: present(&m.name),
            avatar: present(&m.avatar),
            cover: present(&m.thumb_url).or_else(|| present(&m.pic_url)),
            media_id: present(&m.thumb_media_id),
        },
    }
}

/// Every part of `template` previewed for `target` with the conversation's context (as
/// [`render`] takes it: values by dotted name, the agent's clock as `now`, ms since the epoch,
/// and zone as `tz`, minutes east of UTC).
pub fn preview(target: &Target, template: &Template, ctx: &Context) -> Vec<PartPreview> {
    (0..template.parts.len())
        .map(|i| preview_part(target, template, i, ctx))
        .collect()
}

/// Part `index` of `template` previewed for `target` (see [`preview`]). An index out of range or
/// a target without a platform give the render's refusal and nothing to draw.
pub fn preview_part(
    target: &Target,
    template: &Template,
    index: usize,
    ctx: &Context,
) -> PartPreview {
    let (wire, refusal) = match render(target, template, index, ctx) {
        Ok(w) => (Some(w), None),
        Err(r) => (None, Some(r)),
    };
    let mut out = PartPreview {
        index,
        wire,
        refusal,
        rendition: None,
        kind: None,
        missing: vec![],
        display: None,
    };
    let (Some(platform), Some(part)) = (target.platform, template.parts.get(index)) else {
        return out;
    };
    let required = template.required_variables();
    let mut missing: Vec<String> = required
        .iter()
        .filter(|n| ctx.get(**n).is_none_or(|v| v.is_empty()))
        .map(|n| n.to_string())
        .collect();
    let note = |name: &str, missing: &mut Vec<String>| {
        if !missing.iter().any(|m| m == name) {
            missing.push(name.to_string());
        }
    };
    if let Ok((chosen, _)) = choose(target, part) {
        out.rendition = Some(chain_position(part, chosen));
        out.kind = Some(chosen.kind());
        let filled = substitute_with(chosen, ctx, &required, &mut |name, _, link| {
            note(name, &mut missing);
            Ok(if link {
                String::new()
            } else {
                format!("[{name}]")
            })
        });
        if let Ok(filled) = filled {
            out.display = Some(display(platform, &filled));
        }
    }
    for name in adapters::context_needs(platform) {
        if ctx.get(*name).is_none_or(|v| v.is_empty()) {
            note(name, &mut missing);
        }
    }
    out.missing = missing;
    out
}

/// The position of `chosen` in `part`'s fallback chain.
fn chain_position(part: &Part, chosen: &Part) -> usize {
    let mut at = part;
    let mut n = 0;
    while !std::ptr::eq(at, chosen) {
        match at.fallback() {
            Some(f) => at = f,
            None => break,
        }
        n += 1;
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adapters::Channel;
    use serde_json::json;

    fn template(parts: serde_json::Value) -> Template {
        let t: Template =
            serde_json::from_value(json!({"id": "t", "title": "T", "parts": parts})).unwrap();
        t.check().unwrap();
        t
    }

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn target(p: Platform, channel: Option<Channel>) -> Target {
        Target {
            channel,
            ..Target::new(p)
        }
    }

    /// The core decides the rendition: the first in the chain the target shows, and the display
    /// is that rendition, filled.
    #[test]
    fn the_rendition_sent_is_the_one_drawn() {
        let t = template(json!([{
            "type": "miniprogram", "title": "Order {{order.id}}", "pagepath": "pages/o?id={{order.id}}",
            "thumb_media_id": "M", "name": "Shop", "avatar": "https://img.example/a.png",
            "fallback": {"type": "product", "name": "Order {{order.id}}", "image": "https://img.example/p.png",
                "segments": [{"text": "¥{{price|?}}", "bold": true, "break": true}],
                "fallback": {"type": "text", "text": "Order {{order.id}}: https://shop.example/o/{{order.id}}"}}}]));
        let c = ctx(&[("order.id", "42")]);
        let cases = [
            (Some(Channel::Miniprogram), 0, "miniprogram"),
            (Some(Channel::Web), 1, "product"),
            (Some(Channel::Wechat), 2, "text"),
        ];
        for (channel, rendition, kind) in cases {
            let tg = target(Platform::Udesk, channel);
            let p = preview_part(&tg, &t, 0, &c);
            assert_eq!(p.rendition, Some(rendition), "{channel:?}");
            assert_eq!(p.kind, Some(kind));
            let wire = p.wire.as_ref().unwrap();
            assert_eq!(Some(wire.kind.as_str()), p.kind);
            assert_eq!(wire.fallback_used, rendition > 0);
            assert_eq!(Some(wire), render(&tg, &t, 0, &c).ok().as_ref());
            assert!(p.missing.is_empty());
        }
        let web = preview_part(&target(Platform::Udesk, Some(Channel::Web)), &t, 0, &c);
        assert_eq!(
            web.display,
            Some(Display::Product {
                name: "Order 42".into(),
                url: None,
                image: "https://img.example/p.png".into(),
                segments: vec![SegmentView {
                    text: "¥?".into(),
                    color: None,
                    bold: true,
                    line_break: true,
                    size: None
                }],
            })
        );
        // Udesk's card carries no name or avatar: none is drawn; Sobot's does.
        let mp = preview_part(
            &target(Platform::Udesk, Some(Channel::Miniprogram)),
            &t,
            0,
            &c,
        );
        let Some(Display::Miniprogram {
            name,
            avatar,
            title,
            pagepath,
            media_id,
            ..
        }) = mp.display
        else {
            panic!("{mp:?}")
        };
        assert_eq!((name, avatar), (None, None));
        assert_eq!(
            (title.as_str(), pagepath.as_str()),
            ("Order 42", "pages/o?id=42")
        );
        assert_eq!(media_id.as_deref(), Some("M"));
        let sobot = Target {
            params: [("cid", "C"), ("uid", "U")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            ..Target::new(Platform::Sobot)
        };
        let sp = preview_part(&sobot, &t, 0, &c);
        assert!(sp.wire.is_some(), "{sp:?}");
        let Some(Display::Miniprogram { name, avatar, .. }) = sp.display else {
            panic!("{sp:?}")
        };
        assert_eq!(name.as_deref(), Some("Shop"));
        assert_eq!(avatar.as_deref(), Some("https://img.example/a.png"));
    }

    #[test]
    fn nothing_is_drawn_when_nothing_can_be_sent() {
        let t = template(json!([{"type": "text", "text": "hi"}]));
        let p = preview_part(&Target::new(Platform::Sobot), &t, 0, &Context::new());
        assert_eq!(
            p.refusal.as_ref().unwrap().code,
            crate::RefusalCode::ChannelUnsupported
        );
        assert_eq!(
            (p.rendition, p.kind, p.display, p.wire),
            (None, None, None, None)
        );
        let out = preview_part(&Target::new(Platform::Udesk), &t, 3, &Context::new());
        assert_eq!(
            out.refusal.unwrap().code,
            crate::RefusalCode::InvalidTemplate
        );
        assert_eq!(out.display, None);
    }

    /// Dates are filled in the agent's zone, as on the wire.
    #[test]
    fn dates_in_the_agents_zone() {
        let t = template(json!([{"type": "text", "text": "{{date}} {{time}} {{weekday}}"}]));
        // 2026-11-21T05:45:04Z, in UTC+8 and UTC-5
        for (tz, want) in [
            ("480", "2026-11-21 13:45 Sat"),
            ("-300", "2026-11-21 00:45 Sat"),
            ("-360", "2026-11-20 23:45 Fri"),
        ] {
            let c = ctx(&[("now", "1795239904000"), ("tz", tz)]);
            let p = preview_part(&Target::new(Platform::Udesk), &t, 0, &c);
            assert_eq!(p.display, Some(Display::Text { text: want.into() }));
            assert!(p.wire.unwrap().wire.contains(want));
        }
    }

    /// Rich HTML is drawn as exactly what the sanitizer keeps, which is what is sent: the
    /// tracking pixel is shown, the script and the handler are not.
    #[test]
    fn rich_html_is_what_the_sanitizer_keeps() {
        let t = template(json!([{"type": "rich", "html":
            "<p onclick=\"steal()\">Hi <b>{{customer.name}}</b></p><img src=\"https://t.example/p.gif?u={{customer.name}}\" width=\"1\" height=\"1\"><script>steal()</script><iframe src=\"https://x.example/\"></iframe>"}]));
        let c = ctx(&[("customer.name", "Ada <3")]);
        let p = preview_part(&Target::new(Platform::Udesk), &t, 0, &c);
        let wire: serde_json::Value = serde_json::from_str(&p.wire.unwrap().wire).unwrap();
        let Some(Display::Rich { html, text }) = p.display else {
            panic!()
        };
        assert_eq!(wire["content"], html.as_str());
        assert!(
            html.contains("<img src=\"https://t.example/p.gif?u=Ada%20%3C3\""),
            "{html}"
        );
        assert!(
            !html.contains("script") && !html.contains("onclick") && !html.contains("iframe"),
            "{html}"
        );
        assert!(html.contains("Ada &lt;3"), "{html}");
        assert_eq!(
            text.split_whitespace().collect::<Vec<_>>().join(" "),
            "Hi Ada <3"
        );
    }

    /// Missing values are listed by name, as the render refuses them; the display keeps a hole
    /// in text and leaves a link out.
    #[test]
    fn missing_variables_are_named() {
        let t: Template = serde_json::from_value(json!({"id": "t", "title": "T",
            "variables": [{"name": "agent.name", "required": true}],
            "parts": [{"type": "text", "text": "Hi {{customer.name|there}}, order {{order.id}} by {{agent.name|us}}"},
                      {"type": "image", "url": "{{img}}", "fallback": {"type": "text", "text": "see {{img}}"}}]}))
        .unwrap();
        t.check().unwrap();
        let udesk = Target::new(Platform::Udesk);
        let p = preview_part(&udesk, &t, 0, &Context::new());
        let r = p.refusal.as_ref().unwrap();
        assert_eq!(r.code, crate::RefusalCode::MissingVariable);
        assert_eq!(
            Some(r),
            render(&udesk, &t, 0, &Context::new()).err().as_ref()
        );
        assert_eq!(p.missing, ["agent.name", "order.id"]);
        assert_eq!(
            p.display,
            Some(Display::Text {
                text: "Hi there, order [order.id] by [agent.name]".into()
            })
        );
        // a link without its value is not drawn
        let dkf = Target {
            nonce: Some("1".into()),
            ..Target::new(Platform::WechatDkf)
        };
        let p = preview_part(&dkf, &t, 1, &ctx(&[("agent.name", "Bo")]));
        assert_eq!(p.missing, ["img"]);
        assert_eq!(
            p.display,
            Some(Display::Image {
                url: None,
                media_id: None
            })
        );
        // what the platform takes from the context is named too
        let p = preview_part(
            &Target::new(Platform::WechatMp),
            &t,
            0,
            &ctx(&[("agent.name", "Bo"), ("order.id", "1")]),
        );
        assert_eq!(p.missing, ["customer.openid"]);
        assert_eq!(p.refusal.unwrap().code, crate::RefusalCode::MissingVariable);
        assert!(p.display.is_some());
    }
}
