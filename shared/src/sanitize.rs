//! Rich-text cleaning: an allow-list over a maintained WHATWG HTML tokenizer (html5gum).
//!
//! Scripts, event handlers, `javascript:` and other non-web URLs never survive;
//! `data-miniprogram-path` (Udesk and WeChat mini-program links), links and simple styling do.
//! Links follow [`crate::links`]: `href` an absolute http(s) URL (or `mailto:`/`tel:`), `src` an
//! absolute http(s) URL, `data-miniprogram-path` a mini-program page path; any other value is
//! dropped with its attribute, and relative URLs are dropped.
//!
//! Variables in rich HTML are filled by [`fill`] before cleaning: a value is HTML-escaped, so it
//! shows as typed and cannot add markup; inside a link attribute it is percent-encoded too.
//!
//! How: the input is tokenized as the HTML standard says (character references decoded, raw
//! text elements such as `<script>`, `<style>`, `<iframe>` read as text), then written out
//! anew from the tokens alone: allowed tags with allowed attributes, every value and every text
//! escaped, comments and doctypes dropped, the contents of `<script>` and `<style>` dropped, other
//! disallowed tags dropped with their text kept. Nothing of the input is copied through
//! unescaped, so whatever a browser makes of odd markup, it can only ever see the allowed tags.
//! Open tags are closed in order (an end tag closes everything opened after its start tag; the
//! rest are closed at the end), and the usual implied ends apply (`<p>` before a block,
//! `<li>` before `<li>`, a heading before a heading, `<a>` before `<a>`).
//!
//! The same code cleans in the daemon and in the wasm core (one source of behaviour); the cases
//! under `shared/test_data/sanitize/` run through both. A tokenizer, not a tree builder, keeps
//! the wasm core small (ammonia and html5ever were two thirds of it, docs/benchmarks.md).

use crate::links;
use crate::render::{fill_text, placeholders, Context, OnMissing, Refusal, RefusalCode};
use html5gum::emitters::callback::{Callback, CallbackEmitter, CallbackEvent};
use html5gum::{Emitter, ForwardingEmitter, Readable, Reader, Span, Tokenizer};

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

/// Kept tags that have no end tag.
const VOID: &[&str] = &["br", "hr", "img"];

/// Tags whose contents are dropped with them: scripts and styles, and SVG and MathML (foreign
/// content, none of it allowed).
const DROP_CONTENT: &[&str] = &["script", "style", "svg", "math"];

/// Attributes allowed on every kept tag.
const GENERIC_ATTRS: &[&str] = &[
    "style",
    "data-miniprogram-path",
    "data-miniprogram-appid",
    "title",
];

/// Attributes allowed on one tag, besides [`GENERIC_ATTRS`].
fn tag_attrs(tag: &str) -> &'static [&'static str] {
    match tag {
        "a" => &["href", "target"],
        "img" => &["src", "alt", "width", "height"],
        "font" => &["color", "size"],
        _ => &[],
    }
}

/// `rel` given to every kept `<a>`.
const LINK_REL: &str = "noopener noreferrer";

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

/// Start tags that close an open `<p>` first (HTML's "close a p element" list, among blocks).
const CLOSES_P: &[&str] = &[
    "address",
    "article",
    "aside",
    "blockquote",
    "center",
    "details",
    "dialog",
    "dir",
    "div",
    "dl",
    "fieldset",
    "figcaption",
    "figure",
    "footer",
    "form",
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "header",
    "hgroup",
    "hr",
    "main",
    "menu",
    "nav",
    "li",
    "ol",
    "p",
    "pre",
    "section",
    "summary",
    "table",
    "ul",
];

const HEADINGS: &[&str] = &["h1", "h2", "h3", "h4", "h5", "h6"];

/// Cleans `html` for sending.
pub fn clean(html: &str) -> String {
    let mut out = Writer::default();
    for token in tokens(Bytes(html.as_bytes())) {
        out.token(token);
    }
    out.finish()
}

/// The tokens of the input.
fn tokens<'a, R: Readable<'a>>(input: R) -> impl Iterator<Item = Tok> + 'a {
    Tokenizer::new_with_emitter(input, {
        let mut e = CallbackEmitter::new(Collector::default());
        // Raw text and RCDATA elements (`<script>`, `<style>`, `<iframe>`, `<textarea>`...)
        // are read as text up to their end tag, as a browser reads them.
        e.naively_switch_states(true);
        Quiet(e)
    })
    .flatten()
}

/// html5gum's callback emitter without its parse errors, which the sanitizer ignores: the
/// tokenizer then skips its per-byte validation (noncharacters, control characters), which only
/// reports errors and changes no token. That validation is inlined into every state: a tenth of
/// the tokenizer's code in the wasm core (docs/benchmarks.md).
#[derive(Debug)]
struct Quiet(CallbackEmitter<Collector, Tok>);

impl ForwardingEmitter for Quiet {
    type Token = Tok;

    fn inner(&mut self) -> &mut impl Emitter<Token = Self::Token> {
        &mut self.0
    }

    #[inline]
    fn should_emit_errors(&mut self) -> bool {
        false
    }
}

/// The input for html5gum, read a byte at a time. html5gum's own `StringReader` searches for the
/// end of a run of text a word at a time, code that it inlines into every state of its machine
/// with that state's stop bytes: fast on large documents, and half of the tokenizer's code in
/// the wasm core (docs/benchmarks.md). A part's rich text is small (at most `model::limits::BODY`
/// bytes), so this reader leaves `read_until` at the trait's default, which reads one byte; the
/// tokens are the same (tested below).
#[derive(Debug)]
struct Bytes<'a>(&'a [u8]);

impl Reader for Bytes<'_> {
    type Error = std::convert::Infallible;

    fn read_byte(&mut self) -> Result<Option<u8>, Self::Error> {
        Ok(self.0.split_first().map(|(first, rest)| {
            self.0 = rest;
            *first
        }))
    }

    fn try_read_string(&mut self, s: &[u8], case_sensitive: bool) -> Result<bool, Self::Error> {
        match self.0.get(..s.len()) {
            Some(next) if next == s || (!case_sensitive && next.eq_ignore_ascii_case(s)) => {
                self.0 = &self.0[s.len()..];
                Ok(true)
            }
            _ => Ok(false),
        }
    }
}

/// One token of the input, with owned, decoded text.
#[derive(Debug)]
#[cfg_attr(test, derive(PartialEq))]
enum Tok {
    Start {
        name: String,
        attrs: Vec<(String, String)>,
    },
    End {
        name: String,
    },
    Text(String),
}

/// Turns html5gum's events into [`Tok`]s, keeping attributes in source order (the first of
/// duplicates wins, as in the standard).
#[derive(Debug, Default)]
struct Collector {
    name: String,
    attrs: Vec<(String, String)>,
    /// Index in `attrs` of the attribute being read; `None` for a duplicate.
    current: Option<usize>,
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

impl Callback<Tok, ()> for Collector {
    fn handle_event(&mut self, event: CallbackEvent<'_>, _span: Span<()>) -> Option<Tok> {
        match event {
            CallbackEvent::OpenStartTag { name } => {
                self.name = text(name);
                self.attrs.clear();
                self.current = None;
                None
            }
            CallbackEvent::AttributeName { name } => {
                let name = text(name);
                self.current = if self.attrs.iter().any(|(n, _)| *n == name) {
                    None
                } else {
                    self.attrs.push((name, String::new()));
                    Some(self.attrs.len() - 1)
                };
                None
            }
            CallbackEvent::AttributeValue { value } => {
                if let Some(i) = self.current {
                    self.attrs[i].1.push_str(&String::from_utf8_lossy(value));
                }
                None
            }
            CallbackEvent::CloseStartTag { .. } => Some(Tok::Start {
                name: std::mem::take(&mut self.name),
                attrs: std::mem::take(&mut self.attrs),
            }),
            CallbackEvent::EndTag { name } => {
                self.attrs.clear();
                Some(Tok::End { name: text(name) })
            }
            CallbackEvent::String { value } => Some(Tok::Text(text(value))),
            CallbackEvent::Comment { .. }
            | CallbackEvent::Doctype { .. }
            | CallbackEvent::Error(_) => None,
        }
    }
}

/// Writes the clean output from tokens.
#[derive(Debug, Default)]
struct Writer {
    out: String,
    /// Kept tags opened and not yet closed, outermost first.
    open: Vec<&'static str>,
    /// Inside a [`DROP_CONTENT`] tag: its name and how deep, until its end tag.
    dropping: Option<(String, usize)>,
    /// Just after `<pre>`: a first newline is not content (as HTML parses it).
    after_pre: bool,
}

impl Writer {
    fn token(&mut self, token: Tok) {
        if let Some((name, depth)) = &mut self.dropping {
            match &token {
                // HTML leaves SVG and MathML at these tags (the "breakout" list).
                Tok::Start { name: n, attrs }
                    if (name == "svg" || name == "math") && breaks_out(n, attrs) =>
                {
                    self.dropping = None;
                    self.after_pre = false;
                    let (n, attrs) = (n.clone(), attrs.clone());
                    return self.start(&n, &attrs);
                }
                Tok::Start { name: n, .. } if n == name => *depth += 1,
                Tok::End { name: n } if n == name => {
                    *depth -= 1;
                    if *depth == 0 {
                        self.dropping = None;
                    }
                }
                _ => {}
            }
            return;
        }
        let after_pre = std::mem::take(&mut self.after_pre);
        match token {
            Tok::Text(t) => {
                let t = match t.strip_prefix('\n') {
                    Some(rest) if after_pre => rest,
                    _ => &t,
                };
                escape_text(t, &mut self.out)
            }
            Tok::Start { name, attrs } => self.start(&name, &attrs),
            Tok::End { name } => {
                if let Some(at) = self.open.iter().rposition(|t| *t == name) {
                    self.close_to(at);
                } else if name == "p" {
                    // A stray `</p>` is an empty paragraph in HTML, `</br>` a line break.
                    self.out.push_str("<p></p>");
                } else if name == "br" {
                    self.out.push_str("<br>");
                }
            }
        }
    }

    fn start(&mut self, name: &str, attrs: &[(String, String)]) {
        if DROP_CONTENT.contains(&name) {
            self.dropping = Some((name.to_string(), 1));
            return;
        }
        self.implied_ends(name);
        let Some(&tag) = TAGS.iter().find(|t| **t == name) else {
            return;
        };
        self.out.push('<');
        self.out.push_str(tag);
        for (attr, value) in attrs {
            if let Some(value) = filter_attr(tag, attr, value) {
                self.out.push(' ');
                self.out.push_str(attr);
                self.out.push_str("=\"");
                escape_attr(&value, &mut self.out);
                self.out.push('"');
            }
        }
        if tag == "a" {
            self.out.push_str(" rel=\"");
            self.out.push_str(LINK_REL);
            self.out.push('"');
        }
        self.out.push('>');
        if !VOID.contains(&tag) {
            self.open.push(tag);
        }
        self.after_pre = tag == "pre";
    }

    /// The end tags a start tag implies on the kept tags.
    fn implied_ends(&mut self, name: &str) {
        if name == "li" {
            // The nearest open `li`, unless a list or another block holding it comes first.
            for i in (0..self.open.len()).rev() {
                match self.open[i] {
                    "li" => {
                        self.close_to(i);
                        break;
                    }
                    "div" | "p" | "a" | "b" | "em" | "font" | "i" | "s" | "small" | "span"
                    | "strong" | "sub" | "sup" | "u" | "code" => continue,
                    _ => break,
                }
            }
        }
        if CLOSES_P.contains(&name) {
            if let Some(at) = self.open.iter().rposition(|t| *t == "p") {
                self.close_to(at);
            }
        }
        if HEADINGS.contains(&name) && self.open.last().is_some_and(|t| HEADINGS.contains(t)) {
            self.close_to(self.open.len() - 1);
        }
        if name == "a" {
            if let Some(at) = self.open.iter().rposition(|t| *t == "a") {
                self.close_to(at);
            }
        }
    }

    /// Closes the open tag at `at` and every tag opened inside it.
    fn close_to(&mut self, at: usize) {
        while self.open.len() > at {
            if let Some(tag) = self.open.pop() {
                self.out.push_str("</");
                self.out.push_str(tag);
                self.out.push('>');
            }
        }
    }

    fn finish(mut self) -> String {
        self.close_to(0);
        self.out
    }
}

/// Start tags that end SVG or MathML content (HTML's parsing rules for foreign content).
fn breaks_out(tag: &str, attrs: &[(String, String)]) -> bool {
    const BREAKOUT: &[&str] = &[
        "b",
        "big",
        "blockquote",
        "body",
        "br",
        "center",
        "code",
        "dd",
        "div",
        "dl",
        "dt",
        "em",
        "embed",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "head",
        "hr",
        "i",
        "img",
        "li",
        "listing",
        "menu",
        "meta",
        "nobr",
        "ol",
        "p",
        "pre",
        "ruby",
        "s",
        "small",
        "span",
        "strong",
        "strike",
        "sub",
        "sup",
        "table",
        "tt",
        "u",
        "ul",
        "var",
    ];
    BREAKOUT.contains(&tag)
        || (tag == "font"
            && attrs
                .iter()
                .any(|(a, _)| matches!(a.as_str(), "color" | "face" | "size")))
}

/// The value to keep for `attr` on `tag`, or `None` to drop the attribute.
fn filter_attr(tag: &str, attr: &str, value: &str) -> Option<String> {
    if !GENERIC_ATTRS.contains(&attr) && !tag_attrs(tag).contains(&attr) {
        return None;
    }
    match attr {
        "href" if links::check_rich_href(value).is_err() => None,
        "src" if links::check_web_url(value).is_err() => None,
        "data-miniprogram-path" if links::check_miniprogram_path(value).is_err() => None,
        "style" => Some(clean_style(value)),
        _ => Some(value.to_string()),
    }
}

/// Text as HTML's serializer writes it.
fn escape_text(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\u{a0}' => out.push_str("&nbsp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => {}
            c => out.push(c),
        }
    }
}

/// An attribute value (inside double quotes) as HTML's serializer writes it.
fn escape_attr(s: &str, out: &mut String) {
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '\u{a0}' => out.push_str("&nbsp;"),
            '"' => out.push_str("&quot;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '\0' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
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
    fill_with(html, ctx, required, &mut |_, refusal| Err(refusal))
}

/// [`fill`] with the treatment of a missing value left to `missing` (see
/// [`crate::render::fill_text`]); what it returns is inserted as written.
pub fn fill_with(
    html: &str,
    ctx: &Context,
    required: &[&str],
    missing: &mut OnMissing<'_>,
) -> Result<String, Refusal> {
    let mut scanner = Scanner::new();
    fill_text(
        html,
        ctx,
        required,
        &mut |out, value, rest| {
            let slot = scanner
                .slot(out, rest)
                .map_err(|e| Refusal::new(RefusalCode::InvalidTemplate, format!("html: {e}")))?;
            Ok(write(slot, value))
        },
        missing,
    )
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
    use super::{check_template, clean, fill, tokens, Bytes};
    use crate::render::Context;

    /// The byte-at-a-time reader gives the tokens html5gum's own reader gives, on every input of
    /// the sanitizer's cases and on what makes readers differ (runs of text cut at each stop
    /// byte, CR and CRLF, NUL, references, raw text, case-insensitive `DOCTYPE`/`CDATA`).
    #[test]
    fn byte_reader_reads_what_html5gums_reader_reads() {
        let mut inputs: Vec<String> = [
            "plain text only",
            "a\r\nb\rc\n\rd\r",
            "<p title=\"x\r\ny\" data-a='1\0'>t\0u</p>",
            "<a href=x>&amp;&lt&notin;&notit;&#x41;&#65;&#0;&#xD800;&bogus;</a>",
            "<script>if (a < b) { x = '</scr' + 'ipt>'; }</script>after",
            "<textarea><b>&amp;</b></textarea><style>p{}</style><title>&lt;</title>",
            "<!DOCTYPE html><!doctype x PUBLIC 'a' \"b\"><![CDATA[x]]><!-- c -- >-->",
            "<IMG SRC=\"https://e.x/a.png\" ALT = 'a' /><br/><p\tclass=a\x0cid=b>",
            "<p>unclosed <b attr=\"unterminated",
            "</>< p>&#x110000;<?pi?></p x=1>",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/test_data/sanitize");
        for entry in std::fs::read_dir(dir).unwrap() {
            let text = std::fs::read_to_string(entry.unwrap().path()).unwrap();
            let case: serde_json::Value = serde_json::from_str(&text).unwrap();
            inputs.push(case["html"].as_str().unwrap().to_string());
        }
        assert!(inputs.len() > 30, "{} inputs", inputs.len());
        for input in &inputs {
            let ours: Vec<_> = tokens(Bytes(input.as_bytes())).collect();
            let theirs: Vec<_> = tokens(input.as_str()).collect();
            assert_eq!(ours, theirs, "{input:?}");
        }
    }

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
