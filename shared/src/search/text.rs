//! Text preparation for the index: normalisation (case, full-width forms, whitespace) and the
//! searchable text of a template's parts.

use crate::model::Part;

/// Longest body text kept per template, in bytes (cut at a char boundary). Bounds the index's
/// memory and the per-keystroke scan; canned replies are far shorter.
pub(crate) const MAX_BODY_BYTES: usize = 8 * 1024;

/// Appends the normalised form of `s` to `out`: lower case, full-width ASCII folded to ASCII
/// (`ＶＩＰ` -> `vip`), every run of whitespace or control characters collapsed into one space,
/// no leading or trailing space. Control characters never survive, so `\n` and `\x1f` are free
/// to serve as separators in the index.
pub(crate) fn normalize_into(s: &str, out: &mut String) {
    let start = out.len();
    let mut pending_space = false;
    for c in s.chars() {
        if c.is_whitespace() || c.is_control() {
            pending_space = out.len() > start;
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        let c = fold_width(c);
        if c.is_ascii() {
            out.push(c.to_ascii_lowercase());
        } else {
            out.extend(c.to_lowercase());
        }
    }
}

pub(crate) fn normalize(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    normalize_into(s, &mut out);
    out
}

/// Full-width ASCII variants (U+FF01..U+FF5E) to ASCII: Chinese input methods produce them.
fn fold_width(c: char) -> char {
    match c {
        '\u{FF01}'..='\u{FF5E}' => char::from_u32(c as u32 - 0xFEE0).unwrap_or(c),
        _ => c,
    }
}

/// True at a word start: the previous char is not alphanumeric, or the script changes between
/// ASCII and non-ASCII (`退款refund`: `refund` starts a word).
pub(crate) fn is_word_start(prev: Option<char>, first: char) -> bool {
    match prev {
        None => true,
        Some(p) => !p.is_alphanumeric() || p.is_ascii() != first.is_ascii(),
    }
}

/// The searchable text of parts, fallbacks included: text, rich text without tags, card
/// titles, names, digests and product segments. Placeholders keep only their fallback text
/// (`{{customer.name|there}}` -> `there`), so `customer` does not match every template.
pub fn parts_text(parts: &[Part]) -> String {
    let mut out = String::new();
    for p in parts {
        part_text(p, &mut out);
    }
    cut_at_char(&mut out, MAX_BODY_BYTES);
    out
}

fn part_text(part: &Part, out: &mut String) {
    match part {
        Part::Text { text, .. } => push_text(text, out),
        Part::Rich { html, .. } => push_text(&html_text(html), out),
        Part::Image { .. } => {}
        Part::News { articles, .. } => {
            for a in articles {
                push_text(&a.title, out);
                push_text(&a.digest, out);
            }
        }
        Part::Product { name, segments, .. } => {
            push_text(name, out);
            for s in segments {
                push_text(&s.text, out);
            }
        }
        Part::Miniprogram(m) => {
            push_text(&m.title, out);
            if let Some(name) = &m.name {
                push_text(name, out);
            }
        }
    }
    if let Some(f) = part.fallback() {
        part_text(f, out);
    }
}

fn push_text(s: &str, out: &mut String) {
    if s.trim().is_empty() || out.len() >= MAX_BODY_BYTES {
        return;
    }
    if !out.is_empty() {
        out.push(' ');
    }
    strip_placeholders(s, out);
}

/// `{{name|fallback}}` -> `fallback`; `{{name}}` and `{{date:%Y}}` -> nothing (read by the
/// render's scanner, [`crate::render::scan`]). An unclosed `{{` is kept as written.
fn strip_placeholders(s: &str, out: &mut String) {
    use crate::render::Token;
    let mut at = 0;
    for token in crate::render::scan(s) {
        match token {
            Ok(Token::Text(t)) => {
                out.push_str(t);
                at += t.len();
            }
            Ok(Token::Placeholder(p)) => {
                out.push_str(p.fallback.unwrap_or(""));
                at = p.end;
            }
            Err(_) => out.push_str(&s[at..]),
        }
    }
}

/// Text content of sanitizer-bound HTML, good enough for search: tags dropped (block tags become
/// spaces so words do not glue), the common entities decoded.
pub fn html_text(html: &str) -> String {
    let mut out = String::with_capacity(html.len());
    let mut rest = html;
    while let Some(lt) = rest.find('<') {
        out.push_str(&rest[..lt]);
        let tag = &rest[lt + 1..];
        let Some(gt) = tag.find('>') else {
            rest = "";
            break;
        };
        let name = tag[..gt]
            .trim_start_matches('/')
            .split(|c: char| c.is_whitespace() || c == '/')
            .next()
            .unwrap_or("")
            .to_ascii_lowercase();
        if matches!(
            name.as_str(),
            "p" | "br"
                | "div"
                | "li"
                | "ul"
                | "ol"
                | "tr"
                | "td"
                | "th"
                | "h1"
                | "h2"
                | "h3"
                | "h4"
                | "h5"
                | "h6"
                | "blockquote"
                | "hr"
        ) {
            out.push(' ');
        }
        rest = &tag[gt + 1..];
    }
    out.push_str(rest);
    decode_entities(&out)
}

fn decode_entities(s: &str) -> String {
    if !s.contains('&') {
        return s.to_string();
    }
    const ENTITIES: [(&str, char); 7] = [
        ("&amp;", '&'),
        ("&lt;", '<'),
        ("&gt;", '>'),
        ("&quot;", '"'),
        ("&#39;", '\''),
        ("&apos;", '\''),
        ("&nbsp;", ' '),
    ];
    let mut out = String::with_capacity(s.len());
    let mut rest = s;
    'outer: while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        let tail = &rest[amp..];
        for (name, c) in ENTITIES {
            if let Some(after) = tail.strip_prefix(name) {
                out.push(c);
                rest = after;
                continue 'outer;
            }
        }
        out.push('&');
        rest = &tail[1..];
    }
    out.push_str(rest);
    out
}

pub(crate) fn cut_at_char(s: &mut String, max: usize) {
    if s.len() > max {
        let mut end = max;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
    }
}
