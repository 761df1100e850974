//! What a link may be: the one grammar for web URLs and mini-program page paths, used by the
//! template check (`model`), the render flow (`adapters`) and the rich-text sanitizer.
//!
//! - **Web URL** (image `url`, article `url`/`cover`, product `image`, card `pic_url`/`avatar`/
//!   `thumb_url`, rich `href`/`src`): `http://` or `https://` (lowercase), a host, an optional
//!   port, then a path/query/fragment with no whitespace, control or invisible formatting
//!   characters, none of `" < > \ ^ ` { | }`, and `%` only as `%XX`. No user info (`user@`).
//! - **Mini-program page path** (card `pagepath`, `data-miniprogram-path`): a page as in the
//!   mini program's `app.json` (`pages/goods/detail`), optional leading `/`, then an optional
//!   `?query`. Page segments hold letters, digits, `_ - .` and `%XX`: so no scheme (no `:` before
//!   the query), no `//`, no whitespace or control characters. The query follows the URL rules
//!   above and has no `#`.
//! - **Product url** (Udesk): Udesk opens a `url` that does not start with `http` as a
//!   mini-program path (platform-spec §1.4), so it is a web URL when it starts with `http`, and a
//!   page path otherwise.
//!
//! The string is checked as it is sent, byte for byte: the platforms (a browser, WeChat) parse it
//! themselves, so a lenient parser that would repair it (the WHATWG parser drops tabs and
//! newlines, reads `\` as `/` and `https:x` as `https://x/`) cannot vouch for it. Hence a small
//! strict grammar here, a subset of what the WHATWG URL parser accepts unchanged. A host is
//! ASCII letters, digits, `-` and `_` per label, or Unicode letters and digits (an IDN, which the
//! platform maps with IDNA itself); a host whose last label is numeric must be a dotted IPv4
//! address (browsers read `1.2.300` or `0x7f.1` as IPv4 or refuse it). The `url` crate is not
//! asked for a second opinion: with its IDNA tables it would add about a fifth to the wasm core
//! (docs/benchmarks.md), and it could only refuse links that do not open, never unsafe ones.
//!
//! Values substituted into a link field (see [`fill`]) are percent-encoded, unless the
//! placeholder is the whole field; docs/templates.md states the rule.

use crate::render::{fill_text, placeholders, Context, OnMissing, Refusal, RefusalCode};

/// The grammar a link field follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LinkKind {
    /// An absolute `http(s)` URL with a host.
    Web,
    /// A mini-program page path.
    Page,
    /// Udesk's product `url`: a web URL when it starts with `http`, a page path otherwise.
    WebOrPage,
}

impl LinkKind {
    /// Why `s` does not follow this grammar, if it does not.
    pub fn check(self, s: &str) -> Result<(), String> {
        match self {
            LinkKind::Web => check_web_url(s),
            LinkKind::Page => check_miniprogram_path(s),
            LinkKind::WebOrPage => {
                if s.starts_with("http") {
                    check_web_url(s)
                } else {
                    check_miniprogram_path(s).map_err(|e| {
                        format!("{e} (a product url that does not start with http is opened as a mini-program path)")
                    })
                }
            }
        }
    }
}

/// Characters never allowed in a link, whatever the part: C0/C1 controls, whitespace, and
/// invisible formatting characters (zero-width, bidirectional overrides, BOM) that make a link
/// read differently from what it is.
fn forbidden_anywhere(c: char) -> bool {
    c.is_control()
        || c.is_whitespace()
        || matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{206F}' | '\u{FEFF}')
}

fn show(c: char) -> String {
    format!("{:?}", c)
}

/// Checks a path/query/fragment (`tail`) of a URL, or a page path's query.
fn check_tail(tail: &str, allow_hash: bool) -> Result<(), String> {
    let bytes = tail.as_bytes();
    for (i, c) in tail.char_indices() {
        if forbidden_anywhere(c) {
            return Err(format!(
                "character {} is not allowed in a link (encode it as %XX)",
                show(c)
            ));
        }
        if matches!(c, '"' | '<' | '>' | '\\' | '^' | '`' | '{' | '|' | '}') {
            return Err(format!(
                "character {} is not allowed in a link (encode it as %XX)",
                show(c)
            ));
        }
        if c == '#' && !allow_hash {
            return Err("a mini-program path has no #fragment (encode # as %23)".into());
        }
        if c == '%'
            && !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
        {
            return Err("% must start a %XX escape".into());
        }
    }
    Ok(())
}

fn label_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '-' || c == '_' || (!c.is_ascii() && c.is_alphanumeric())
}

/// A host whose last label is a number (decimal, or `0x` hex, as the WHATWG parser reads it) is
/// an IPv4 address: it must be four decimal parts from 0 to 255 without leading zeros.
fn check_numeric_host(host: &str) -> Result<(), String> {
    let last = host.rsplit('.').next().unwrap_or(host);
    let numeric = !last.is_empty()
        && (last.bytes().all(|b| b.is_ascii_digit())
            || last
                .strip_prefix("0x")
                .or_else(|| last.strip_prefix("0X"))
                .is_some_and(|h| h.bytes().all(|b| b.is_ascii_hexdigit())));
    if !numeric {
        return Ok(());
    }
    let parts: Vec<&str> = host.split('.').collect();
    let ok = parts.len() == 4
        && parts.iter().all(|p| {
            !p.is_empty()
                && p.len() <= 3
                && p.bytes().all(|b| b.is_ascii_digit())
                && (p.len() == 1 || !p.starts_with('0'))
                && p.parse::<u16>().is_ok_and(|n| n <= 255)
        });
    if ok {
        Ok(())
    } else {
        Err(format!(
            "host {host:?} ends in a number, so it must be an IPv4 address like 192.0.2.1"
        ))
    }
}

fn check_authority(authority: &str) -> Result<(), String> {
    if authority.is_empty() {
        return Err("the link has no host".into());
    }
    if authority.contains('@') {
        return Err("user info before the host (user@host) is not allowed".into());
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (inside, after) = v6
            .split_once(']')
            .ok_or("an IPv6 host needs its closing ]")?;
        if inside.is_empty()
            || !inside
                .chars()
                .all(|c| c.is_ascii_hexdigit() || c == ':' || c == '.')
        {
            return Err(format!("[{inside}] is not an IPv6 address"));
        }
        match after {
            "" => (None, None),
            p => (
                None,
                Some(
                    p.strip_prefix(':')
                        .ok_or("only a :port may follow an IPv6 host")?,
                ),
            ),
        }
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(authority), None),
        }
    };
    if let Some(host) = host {
        if host.is_empty() {
            return Err("the link has no host".into());
        }
        check_numeric_host(host)?;
        for label in host.split('.') {
            if label.is_empty() {
                return Err(format!("host {host:?} has an empty label"));
            }
            if let Some(c) = label.chars().find(|&c| !label_char(c)) {
                return Err(format!("character {} is not allowed in a host", show(c)));
            }
        }
    }
    if let Some(port) = port {
        let ok = !port.is_empty()
            && port.len() <= 5
            && port.bytes().all(|b| b.is_ascii_digit())
            && port.parse::<u32>().is_ok_and(|p| p <= 65535);
        if !ok {
            return Err(format!("port {port:?} is not a number from 0 to 65535"));
        }
    }
    Ok(())
}

/// The scheme and the rest, for a link that starts with `http://` or `https://`.
fn split_web(s: &str) -> Option<&str> {
    s.strip_prefix("https://")
        .or_else(|| s.strip_prefix("http://"))
}

/// Byte length of `scheme://authority` in a web URL (where its path, query or fragment starts).
fn origin_len(s: &str) -> Option<usize> {
    let rest = split_web(s)?;
    let scheme = s.len() - rest.len();
    rest.find(['/', '?', '#']).map(|i| scheme + i)
}

/// An absolute `http(s)` URL with a host, by the grammar in the module comment.
pub fn check_web_url(s: &str) -> Result<(), String> {
    let Some(rest) = split_web(s) else {
        let scheme = s.split_once(':').map(|(a, _)| a).filter(|a| {
            !a.is_empty()
                && a.chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        });
        return Err(match scheme {
            Some(sch)
                if !sch.eq_ignore_ascii_case("http") && !sch.eq_ignore_ascii_case("https") =>
            {
                format!("the {sch}: scheme is not allowed: links start with http:// or https://")
            }
            _ => "a link starts with http:// or https:// (lowercase) and a host".into(),
        });
    };
    let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(end);
    check_authority(authority)?;
    check_tail(tail, true)?;
    Ok(())
}

/// A WeChat mini-program page path, by the grammar in the module comment.
pub fn check_miniprogram_path(s: &str) -> Result<(), String> {
    let (page, query) = match s.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (s, None),
    };
    let body = page.strip_prefix('/').unwrap_or(page);
    if body.is_empty() {
        return Err("a mini-program path names a page, e.g. pages/index/index".into());
    }
    let bytes = body.as_bytes();
    for seg in body.split('/') {
        if seg.is_empty() {
            return Err("a mini-program path has no empty segment (//)".into());
        }
    }
    for (i, c) in body.char_indices() {
        match c {
            '/' | '_' | '-' | '.' => {}
            ':' => {
                return Err(
                    "a mini-program path has no scheme (no : before the query); web links start with http:// or https://"
                        .into(),
                )
            }
            '%' => {
                if !(bytes.get(i + 1).is_some_and(u8::is_ascii_hexdigit)
                    && bytes.get(i + 2).is_some_and(u8::is_ascii_hexdigit))
                {
                    return Err("% must start a %XX escape".into());
                }
            }
            c if c.is_ascii_alphanumeric() || (!c.is_ascii() && c.is_alphanumeric()) => {}
            c => {
                return Err(format!(
                    "character {} is not allowed in a mini-program page path",
                    show(c)
                ))
            }
        }
    }
    match query {
        Some(q) => check_tail(q, false),
        None => Ok(()),
    }
}

/// True when a Udesk product `url` is a mini-program path rather than a web link: it does not
/// start with `http` (seed 000: such a url is opened with `wx.miniProgram.navigateTo`) and it is
/// a valid page path.
pub fn is_miniprogram_path(url: &str) -> bool {
    !url.starts_with("http") && check_miniprogram_path(url).is_ok()
}

/// A rich-text `<a href>`: a web URL, or a `mailto:`/`tel:` link.
pub fn check_rich_href(s: &str) -> Result<(), String> {
    for scheme in ["mailto:", "tel:"] {
        if s.len() >= scheme.len() && s[..scheme.len()].eq_ignore_ascii_case(scheme) {
            let rest = &s[scheme.len()..];
            if rest.is_empty() {
                return Err(format!("{scheme} with nothing after it"));
            }
            return check_tail(rest, false);
        }
    }
    check_web_url(s)
}

/// Bytes left as they are by [`encode_component`]: the unreserved `A-Z a-z 0-9 - . _ ~`.
const COMPONENT: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'-')
    .remove(b'.')
    .remove(b'_')
    .remove(b'~');

/// Percent-encodes every byte of `value` (as UTF-8) except the unreserved `A-Z a-z 0-9 - . _ ~`
/// (RFC 3986 §2.3; what `encodeURIComponent` does, and `! ' ( ) *` too).
pub fn encode_component(value: &str) -> String {
    percent_encoding::utf8_percent_encode(value, COMPONENT).to_string()
}

/// True when the whole field is one placeholder (`{{img}}`, `{{img|https://…}}`).
fn whole_placeholder(template: &str) -> bool {
    let ph = placeholders(template);
    ph.len() == 1 && ph[0].start == 0 && ph[0].end == template.len()
}

/// Checks a link field as written in a template (when the template is accepted).
///
/// Without placeholders the field must follow `kind`. A placeholder may be the whole field (its
/// fallback, if any, must follow `kind`); otherwise a web link writes its scheme and host before
/// the first placeholder, and the field with every placeholder replaced by its fallback (or by a
/// sample value) must follow `kind`.
pub fn check_template(kind: LinkKind, template: &str) -> Result<(), String> {
    if template.is_empty() {
        return Ok(());
    }
    let ph = placeholders(template);
    if ph.is_empty() {
        return kind.check(template);
    }
    if whole_placeholder(template) {
        return match ph[0].fallback {
            Some(f) if !f.is_empty() => kind
                .check(f)
                .map_err(|e| format!("the placeholder's fallback {}: {e}", quote(f))),
            _ => Ok(()),
        };
    }
    let web = match kind {
        LinkKind::Web => true,
        LinkKind::Page => false,
        LinkKind::WebOrPage => template.starts_with("http"),
    };
    if web && origin_len(template).is_none_or(|n| n > ph[0].start) {
        return Err(
            "a link writes its scheme and host (https://host/) before any placeholder, or is one placeholder as a whole"
                .into(),
        );
    }
    let mut sample = String::with_capacity(template.len());
    let mut at = 0;
    for p in &ph {
        sample.push_str(&template[at..p.start]);
        sample.push_str(p.fallback.unwrap_or("0"));
        at = p.end;
    }
    sample.push_str(&template[at..]);
    kind.check(&sample)
}

/// Substitutes the variables of a link field and checks the result (at render).
///
/// A value is percent-encoded ([`encode_component`]) unless its placeholder is the whole field,
/// where it is inserted as is; fallbacks are the template's own text and are not encoded. A
/// result that does not follow `kind` is refused with `invalid_value` naming `field`; an empty
/// result is left to the adapter (which refuses it with `field_required` where it is needed).
pub fn fill(
    kind: LinkKind,
    template: &str,
    ctx: &Context,
    required: &[&str],
    field: &str,
) -> Result<String, Refusal> {
    fill_with(kind, template, ctx, required, field, &mut |_, refusal| {
        Err(refusal)
    })
}

/// [`fill`] with the treatment of a missing value left to `missing` (see
/// [`crate::render::fill_text`]); what it returns is inserted as written, and the result is
/// checked as any other.
pub fn fill_with(
    kind: LinkKind,
    template: &str,
    ctx: &Context,
    required: &[&str],
    field: &str,
    missing: &mut OnMissing<'_>,
) -> Result<String, Refusal> {
    let whole = whole_placeholder(template);
    let out = fill_text(
        template,
        ctx,
        required,
        &mut |_, value, _| {
            Ok(if whole {
                value.to_string()
            } else {
                encode_component(value)
            })
        },
        missing,
    )?;
    if !out.is_empty() {
        kind.check(&out).map_err(|e| {
            Refusal::new(
                RefusalCode::InvalidValue,
                format!("{field} {} is not a valid link: {e}", quote(&out)),
            )
        })?;
    }
    Ok(out)
}

/// `s` quoted for a message, cut to 120 characters.
fn quote(s: &str) -> String {
    match s.char_indices().nth(120) {
        Some((i, _)) => format!("{:?}…", &s[..i]),
        None => format!("{s:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn web_urls() {
        for ok in [
            "https://shop.example.com/item/1",
            "http://img12.360buyimg.com/n1/s450x450_jfs/t10675/253/1344769770/66891/92d54ca4/59df2e7fN86c99a27.jpg",
            "https://ss1.baidu.com/6ONXsjip0QIZ8tyhnq/it/u=1667994205,255365672&fm=5",
            "https://例子.中国/商品?名=茶#x",
            "https://127.0.0.1:8080",
            "https://192.0.2.255/",
            "https://a1.example.b2/",
            "https://[::1]:443/x",
            "https://a.example/x?q=%E8%8C%B6",
        ] {
            assert_eq!(check_web_url(ok), Ok(()), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "JAVASCRIPT:alert(1)",
            "data:image/png;base64,AAAA",
            "//evil.example/x",
            "/relative",
            "https:evil.example",
            "HTTPS://a.example/",
            "https://",
            "https:///x",
            "https://good.example@evil.example/",
            "https://a.example\\@evil.example/",
            "https://a.example/x y",
            "https://a.example/x\ty",
            "https://a.example/\u{202E}gpj.exe",
            "https://a.example/%zz",
            "https://a..example/",
            "https://a.example:99999/",
            "https://a.example:x/",
            "https://a.example/\"><script>",
            "https://1.2.300/",
            "https://0x7f.1/",
            "https://example.0x10/",
            "https://192.168.01.1/",
            "https://10.0.0.256/",
        ] {
            assert!(check_web_url(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn miniprogram_paths() {
        for ok in [
            "pages/goods/detail?id=1",
            "/pages/order/detail?id=1&from=x",
            "/path/navigate/to",
            "p",
            "pages/index/index?name=张三",
        ] {
            assert_eq!(check_miniprogram_path(ok), Ok(()), "{ok}");
        }
        for bad in [
            "javascript:alert(1)",
            "https://evil.example/",
            "//evil.example/x",
            "pages//x",
            "pages/x y",
            "pages/x\n",
            "/",
            "",
            "?id=1",
            "pages/x?id=1#frag",
            "pages/x?id=1 2",
        ] {
            assert!(check_miniprogram_path(bad).is_err(), "{bad:?} accepted");
        }
        assert!(is_miniprogram_path("/pages/product/detail"));
        assert!(!is_miniprogram_path("javascript:alert(1)"));
        assert!(!is_miniprogram_path("https://shop.example/x"));
    }

    #[test]
    fn templates() {
        let t = |k, s| check_template(k, s);
        assert_eq!(
            t(LinkKind::Web, "https://shop.example/x?id={{customer.id}}"),
            Ok(())
        );
        assert_eq!(t(LinkKind::Web, "{{img}}"), Ok(()));
        assert_eq!(t(LinkKind::Web, "{{img|}}"), Ok(()));
        assert_eq!(t(LinkKind::Web, "{{img|https://a.example/x.png}}"), Ok(()));
        assert!(t(LinkKind::Web, "{{img|javascript:alert(1)}}").is_err());
        assert!(t(LinkKind::Web, "https://{{host}}/x").is_err());
        assert!(t(LinkKind::Web, "https://shop.example{{path}}").is_err());
        assert!(t(LinkKind::Web, "{{base}}/x").is_err());
        assert_eq!(t(LinkKind::Page, "pages/o?id={{order.id}}"), Ok(()));
        assert_eq!(t(LinkKind::WebOrPage, "pages/o?id={{order.id}}"), Ok(()));
        assert!(t(LinkKind::WebOrPage, "javascript:{{x}}").is_err());
    }

    #[test]
    fn fill_encodes_values_and_checks_the_result() {
        let ctx: Context = [
            ("q".to_string(), "a&b #c d/é".to_string()),
            ("js".to_string(), "javascript:alert(1)".to_string()),
            ("img".to_string(), "https://img.example/a.png".to_string()),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            fill(
                LinkKind::Web,
                "https://s.example/x?q={{q}}",
                &ctx,
                &[],
                "url"
            )
            .unwrap(),
            "https://s.example/x?q=a%26b%20%23c%20d%2F%C3%A9"
        );
        assert_eq!(
            fill(LinkKind::Web, "{{img}}", &ctx, &[], "url").unwrap(),
            "https://img.example/a.png"
        );
        let e = fill(LinkKind::WebOrPage, "{{js}}", &ctx, &[], "url").unwrap_err();
        assert_eq!(e.code, RefusalCode::InvalidValue);
        assert!(e.message.starts_with("url "), "{}", e.message);
        assert_eq!(
            fill(LinkKind::Web, "{{none|}}", &ctx, &[], "url").unwrap(),
            ""
        );
    }
}
