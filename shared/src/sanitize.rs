//! Rich-text cleaning with a maintained HTML sanitizer (ammonia, an allow-list over html5ever).
//!
//! Scripts, event handlers, `javascript:` and other non-web URLs never survive;
//! `data-miniprogram-path` (Udesk and WeChat mini-program links), links and simple styling do.
//! Links follow [`crate::links`]: `href` an absolute http(s) URL (or `mailto:`/`tel:`), `src` an
//! absolute http(s) URL, `data-miniprogram-path` a mini-program page path; any other value is
//! dropped with its attribute, and relative URLs are dropped.
//!
//! Variables in rich HTML are filled by [`fill`] before cleaning: a value is HTML-escaped, so it
//! shows as typed and cannot add markup; inside a link attribute it is percent-encoded too.

use crate::links;
use crate::render::{placeholders, render_text_escaped, Context, Refusal, RefusalCode};
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
        .url_relative(ammonia::UrlRelative::Deny)
        .link_rel(Some("noopener noreferrer"))
        .attribute_filter(|_tag, attr, value| {
            let keep = match attr {
                "style" => return Some(clean_style(value).into()),
                "href" => links::check_rich_href(value).is_ok(),
                "src" => links::check_web_url(value).is_ok(),
                "data-miniprogram-path" => links::check_miniprogram_path(value).is_ok(),
                _ => true,
            };
            keep.then(|| value.into())
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

/// Attributes whose value is a link: a value inside one is percent-encoded.
fn link_attr(name: &str) -> bool {
    matches!(name, "href" | "src" | "data-miniprogram-path")
}

/// Where the HTML tokenizer is, as far as it decides how a value is escaped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Text,
    TagOpen,
    EndTagOpen,
    TagName,
    BeforeAttr,
    AttrName,
    AfterAttrName,
    BeforeValue,
    DoubleQuoted,
    SingleQuoted,
    Unquoted,
    /// `<!…>` or `<?…>` up to `>`; `<!--` turns into [`State::Comment`].
    Markup,
    Comment,
}

/// A small HTML tokenizer (the states of the HTML standard's tokenizer that matter here), fed
/// with the output as it is built, so each value's context is known where it is inserted.
struct Scanner {
    state: State,
    /// Bytes of the output already read.
    read: usize,
    /// The current attribute's name (lowercase) and where its value starts in the output.
    attr: String,
    value_start: usize,
    /// Characters read in `Markup` (to spot `<!--`), and the last three characters of a comment.
    markup: String,
    tail: [char; 3],
}

/// How a value is written at a placeholder.
enum Slot {
    /// Text, a non-link attribute's value, or a link attribute's whole value (checked by the
    /// sanitizer afterwards): HTML-escaped ([`escape_html`]).
    Escaped,
    /// Part of a link attribute's value: percent-encoded.
    InLink,
}

impl Scanner {
    fn new() -> Self {
        Scanner {
            state: State::Text,
            read: 0,
            attr: String::new(),
            value_start: 0,
            markup: String::new(),
            tail: [' '; 3],
        }
    }

    fn feed(&mut self, out: &str) {
        use State::*;
        for (i, c) in out[self.read..].char_indices() {
            let at = self.read + i;
            let ws = matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ');
            self.state = match (self.state, c) {
                (Text, '<') => TagOpen,
                (Text, _) => Text,
                (TagOpen, c) if c.is_ascii_alphabetic() => TagName,
                (TagOpen, '/') => EndTagOpen,
                (TagOpen, '!' | '?') => {
                    self.markup.clear();
                    Markup
                }
                (TagOpen, '<') => TagOpen,
                (TagOpen, _) => Text,
                (EndTagOpen, c) if c.is_ascii_alphabetic() => TagName,
                (EndTagOpen, '>') => Text,
                (EndTagOpen, _) => {
                    self.markup.clear();
                    self.markup.push('x');
                    Markup
                }
                (TagName, '>') | (BeforeAttr, '>') | (AttrName, '>') | (AfterAttrName, '>') => Text,
                (BeforeValue, '>') | (Unquoted, '>') => Text,
                (TagName, '/') => BeforeAttr,
                (TagName, _) if ws => BeforeAttr,
                (TagName, _) => TagName,
                (BeforeAttr, _) if ws || c == '/' => BeforeAttr,
                (AttrName, '=') | (AfterAttrName, '=') => BeforeValue,
                (AttrName, '/') | (AfterAttrName, '/') => BeforeAttr,
                (AttrName, _) if ws => AfterAttrName,
                (AttrName, c) => {
                    self.attr.extend(c.to_lowercase());
                    AttrName
                }
                (AfterAttrName, _) if ws => AfterAttrName,
                (BeforeAttr, c) | (AfterAttrName, c) => {
                    self.attr.clear();
                    self.attr.extend(c.to_lowercase());
                    AttrName
                }
                (BeforeValue, _) if ws => BeforeValue,
                (BeforeValue, '"') => {
                    self.value_start = at + 1;
                    DoubleQuoted
                }
                (BeforeValue, '\'') => {
                    self.value_start = at + 1;
                    SingleQuoted
                }
                (BeforeValue, _) => {
                    self.value_start = at;
                    Unquoted
                }
                (DoubleQuoted, '"') | (SingleQuoted, '\'') => BeforeAttr,
                (DoubleQuoted, _) => DoubleQuoted,
                (SingleQuoted, _) => SingleQuoted,
                (Unquoted, _) if ws => BeforeAttr,
                (Unquoted, _) => Unquoted,
                (Markup, '>') if self.markup != "--" => Text,
                (Markup, c) => {
                    if self.markup.len() < 2 {
                        self.markup.push(c);
                    }
                    if self.markup == "--" {
                        self.tail = [' '; 3];
                        Comment
                    } else {
                        Markup
                    }
                }
                // `-->`, or `--!>` which browsers accept too
                (Comment, '>') if self.tail[1..] == ['-', '-'] || self.tail == ['-', '-', '!'] => {
                    Text
                }
                (Comment, c) => {
                    self.tail = [self.tail[1], self.tail[2], c];
                    Comment
                }
            };
        }
        self.read = out.len();
    }

    /// How a value at the end of `out` is written; `rest` is the template after the placeholder.
    fn slot(&mut self, out: &str, rest: &str) -> Result<Slot, String> {
        use State::*;
        self.feed(out);
        let ends_value = |quote: Option<char>| match quote {
            Some(q) => rest.starts_with(q),
            None => rest
                .chars()
                .next()
                .is_none_or(|c| matches!(c, '\t' | '\n' | '\x0C' | '\r' | ' ' | '>')),
        };
        let (quote, empty_so_far) = match self.state {
            Text | Markup | Comment => return Ok(Slot::Escaped),
            DoubleQuoted => (Some('"'), self.value_start == out.len()),
            SingleQuoted => (Some('\''), self.value_start == out.len()),
            Unquoted => (None, self.value_start == out.len()),
            BeforeValue => (None, true),
            TagOpen | EndTagOpen | TagName | BeforeAttr | AttrName | AfterAttrName => {
                return Err(
                    "a placeholder inside an HTML tag must be inside an attribute's value (e.g. title=\"{{x}}\")"
                        .into(),
                )
            }
        };
        Ok(
            if !link_attr(&self.attr) || (empty_so_far && ends_value(quote)) {
                Slot::Escaped
            } else {
                Slot::InLink
            },
        )
    }
}

/// `value` as HTML text or attribute value: `& < > " '`, whitespace, `=` and backquote as
/// character references. That is safe in text and in quoted and unquoted attribute values alike,
/// so a value cannot leave its context even where this scanner and a browser's parser would
/// disagree on the context; the sanitizer re-serializes the result (`&#32;` is a space again).
fn escape_html(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            '\t' | '\n' | '\x0C' | '\r' | ' ' | '=' | '`' => {
                out.push_str(&format!("&#{};", c as u32))
            }
            c => out.push(c),
        }
    }
    out
}

fn write(slot: Slot, value: &str) -> String {
    match slot {
        Slot::Escaped => escape_html(value),
        Slot::InLink => links::encode_component(value),
    }
}

/// Substitutes the variables of rich HTML (before [`clean`]): every value HTML-escaped, and
/// percent-encoded inside a link attribute unless it is the attribute's whole value. A
/// placeholder inside a tag but outside an attribute value is refused (`invalid_template`).
pub fn fill(html: &str, ctx: &Context, required: &[&str]) -> Result<String, Refusal> {
    let mut scanner = Scanner::new();
    render_text_escaped(html, ctx, required, &mut |out, value, rest| {
        let slot = scanner
            .slot(out, rest)
            .map_err(|e| Refusal::new(RefusalCode::InvalidTemplate, format!("html: {e}")))?;
        Ok(write(slot, value))
    })
}

/// Checks rich HTML as written in a template (when the template is accepted): every placeholder
/// stands in text or inside an attribute value.
pub fn check_template(html: &str) -> Result<(), String> {
    let mut scanner = Scanner::new();
    let mut out = String::with_capacity(html.len());
    let mut at = 0;
    for p in placeholders(html) {
        out.push_str(&html[at..p.start]);
        let slot = scanner.slot(&out, &html[p.end..])?;
        out.push_str(&write(slot, "0"));
        at = p.end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{check_template, clean, fill};
    use crate::render::Context;

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn values_escaped_by_context() {
        let c = ctx(&[
            ("n", "a<b & c>d"),
            ("q", "x&y z"),
            ("u", "https://img.example/a.png"),
            ("t", "a b=c"),
        ]);
        let filled = fill("<p>{{n}}</p>", &c, &[]).unwrap();
        assert_eq!(filled, "<p>a&lt;b&#32;&amp;&#32;c&gt;d</p>");
        assert_eq!(clean(&filled), "<p>a&lt;b &amp; c&gt;d</p>");
        assert_eq!(
            fill(
                "<a href=\"https://s.example/?q={{q}}\" title='{{n}}'>x</a>",
                &c,
                &[]
            )
            .unwrap(),
            "<a href=\"https://s.example/?q=x%26y%20z\" title='a&lt;b&#32;&amp;&#32;c&gt;d'>x</a>"
        );
        assert_eq!(
            fill("<img src=\"{{u}}\">", &c, &[]).unwrap(),
            "<img src=\"https://img.example/a.png\">"
        );
        assert_eq!(
            fill("<img alt={{t}}>", &c, &[]).unwrap(),
            "<img alt=a&#32;b&#61;c>"
        );
        assert_eq!(
            fill("<!-- {{q}} --!><b title={{q}}>{{q}}</b>", &c, &[]).unwrap(),
            "<!-- x&amp;y&#32;z --!><b title=x&amp;y&#32;z>x&amp;y&#32;z</b>"
        );
        // after a comment closed by --!>, a value in an unquoted link is seen as one again
        assert_eq!(
            fill("<!-- a --!><img src=https://s.example/{{q}}>", &c, &[]).unwrap(),
            "<!-- a --!><img src=https://s.example/x%26y%20z>"
        );
        assert!(fill("<img {{t}}>", &c, &[]).is_err());
        assert!(check_template("<img {{t}}>").is_err());
        assert!(
            check_template("<a href=\"https://s.example/{{q}}\" title={{t}}>{{n}}</a>").is_ok()
        );
    }

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
