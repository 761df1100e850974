//! Rich-text cleaning with a maintained HTML sanitizer (ammonia, an allow-list over html5ever).
//!
//! Scripts, event handlers, `javascript:` and other non-web URLs never survive;
//! `data-miniprogram-path` (Udesk and WeChat mini-program links), links and simple styling do.

use std::collections::{HashMap, HashSet};

/// Tags kept in rich text.
const TAGS: &[&str] = &[
    "a",
    "b",
    "br",
    "div",
    "em",
    "font",
    "h1",
    "h2",
    "h3",
    "h4",
    "hr",
    "i",
    "img",
    "li",
    "ol",
    "p",
    "s",
    "small",
    "span",
    "strong",
    "sub",
    "sup",
    "u",
    "ul",
    "blockquote",
    "code",
    "pre",
];

/// Attributes allowed on every kept tag.
const GENERIC_ATTRS: &[&str] = &[
    "style",
    "data-miniprogram-path",
    "data-miniprogram-appid",
    "title",
];

/// CSS properties kept inside `style` (others are dropped).
const STYLE_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font-size",
    "font-weight",
    "font-style",
    "text-align",
    "text-decoration",
    "line-height",
    "margin",
    "padding",
];

/// Cleans `html` for sending.
pub fn clean(html: &str) -> String {
    let tag_attrs: HashMap<&str, HashSet<&str>> = [
        ("a", ["href", "target"].into_iter().collect()),
        (
            "img",
            ["src", "alt", "width", "height"].into_iter().collect(),
        ),
        ("font", ["color", "size"].into_iter().collect()),
    ]
    .into_iter()
    .collect();
    ammonia::Builder::default()
        .tags(TAGS.iter().copied().collect())
        .generic_attributes(GENERIC_ATTRS.iter().copied().collect())
        .tag_attributes(tag_attrs)
        .url_schemes(["http", "https", "mailto", "tel"].into_iter().collect())
        .link_rel(Some("noopener noreferrer"))
        .attribute_filter(|_tag, attr, value| {
            if attr == "style" {
                Some(clean_style(value).into())
            } else {
                Some(value.into())
            }
        })
        .clean(html)
        .to_string()
}

/// Keeps only allowed `property: value` declarations whose value holds nothing executable.
fn clean_style(style: &str) -> String {
    let mut kept = vec![];
    for decl in style.split(';') {
        let Some((prop, value)) = decl.split_once(':') else {
            continue;
        };
        let prop = prop.trim().to_ascii_lowercase();
        let value = value.trim();
        let lower = value.to_ascii_lowercase();
        let dangerous = [
            "url(",
            "expression",
            "javascript:",
            "\\",
            "@import",
            "behavior",
        ]
        .iter()
        .any(|bad| lower.contains(bad));
        if STYLE_PROPERTIES.contains(&prop.as_str()) && !dangerous && !value.is_empty() {
            kept.push(format!("{prop}:{value}"));
        }
    }
    kept.join(";")
}

#[cfg(test)]
mod tests {
    use super::clean;

    #[test]
    fn keeps_miniprogram_links_and_style() {
        assert_eq!(
            clean("<p style='font-size:18px'>hello world</p>"),
            r#"<p style="font-size:18px">hello world</p>"#
        );
        assert_eq!(
            clean("<a data-miniprogram-path='/path/navigate/to'>Jump</a>"),
            r#"<a data-miniprogram-path="/path/navigate/to" rel="noopener noreferrer">Jump</a>"#
        );
    }
}
