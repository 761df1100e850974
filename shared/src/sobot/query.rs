//! URL query strings and percent-encoding, without an URL crate.
//!
//! Decoding follows the WHATWG `application/x-www-form-urlencoded` parser, i.e. exactly what the
//! extension's JavaScript sees through `new URL(location.href).searchParams`: `+` is a space,
//! `%XX` is a byte, a `%` not followed by two hex digits stays as it is, and the bytes are read
//! as UTF-8 with U+FFFD for invalid sequences. Sobot's own example appends raw JSON
//! (`?&params={"key":"value"}&partnerid=zc`), which this reads unchanged.

use std::collections::BTreeMap;

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// Percent-decodes `s`. With `plus_is_space`, `+` decodes to a space (form encoding, as in a
/// query string); without, `+` stays `+` (as `decodeURIComponent` does).
pub fn percent_decode(s: &str, plus_is_space: bool) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex_value(bytes[i + 1]), hex_value(bytes[i + 2])) {
                out.push(hi << 4 | lo);
                i += 3;
                continue;
            }
        }
        out.push(if b == b'+' && plus_is_space { b' ' } else { b });
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes every byte except the URL-unreserved characters `A-Z a-z 0-9 - _ . ~`
/// (the set `encodeURIComponent` leaves alone, minus `! ' ( ) *`), with upper-case hex digits.
pub fn percent_encode(s: &str) -> String {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let mut out = String::with_capacity(s.len());
    for &b in s.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0xF)]));
        }
    }
    out
}

/// The query of `url`: the text after the first `?` and before any `#`. A string without `?` is
/// a URL without a query when it has a scheme (`://`) or starts with `/`, and otherwise a bare
/// query (`cid=1&uid=2`).
pub fn query_of(url: &str) -> &str {
    let no_fragment = url.split_once('#').map_or(url, |(before, _)| before);
    match no_fragment.split_once('?') {
        Some((_, q)) => q,
        None if no_fragment.contains("://") || no_fragment.starts_with('/') => "",
        None => no_fragment,
    }
}

/// Parses the query of `url` (see [`query_of`]) into name → value, both decoded. Empty pairs
/// (`&&`, a leading `&`) are skipped; a pair without `=` has an empty value; when a name repeats,
/// the first value is kept (as `URLSearchParams.get` does).
pub fn parse_query(url: &str) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    for pair in query_of(url).split('&') {
        if pair.is_empty() {
            continue;
        }
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        out.entry(percent_decode(name, true))
            .or_insert_with(|| percent_decode(value, true));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_like_url_search_params() {
        assert_eq!(percent_decode("a%20b+c", true), "a b c");
        assert_eq!(percent_decode("a%20b+c", false), "a b+c");
        assert_eq!(percent_decode("%E4%BD%A0%e5%a5%bd", true), "你好");
        // Malformed escapes stay literal.
        assert_eq!(percent_decode("100%", true), "100%");
        assert_eq!(percent_decode("%4", true), "%4");
        assert_eq!(percent_decode("%zz%41", true), "%zzA");
        assert_eq!(percent_decode("%%41", true), "%A");
        // Invalid UTF-8 becomes U+FFFD.
        assert_eq!(percent_decode("%FFok", true), "\u{FFFD}ok");
        assert_eq!(percent_decode("", true), "");
    }

    #[test]
    fn encodes_all_but_unreserved() {
        assert_eq!(percent_encode("aZ09-_.~"), "aZ09-_.~");
        assert_eq!(percent_encode("a+b/c=="), "a%2Bb%2Fc%3D%3D");
        assert_eq!(percent_encode("你"), "%E4%BD%A0");
        let s = "x+/= 你|%";
        assert_eq!(percent_decode(&percent_encode(s), false), s);
    }

    #[test]
    fn queries() {
        let q = parse_query(
            "https://crm.example.com/sobot?&params={\"key\":\"value\"}&partnerid=zc&uid=u%201&a=1&a=2&flag#frag=x",
        );
        assert_eq!(q["params"], "{\"key\":\"value\"}");
        assert_eq!(q["partnerid"], "zc");
        assert_eq!(q["uid"], "u 1");
        assert_eq!(q["a"], "1");
        assert_eq!(q["flag"], "");
        assert!(!q.contains_key("frag"));
        assert_eq!(parse_query("cid=1&uid=2").len(), 2);
        assert_eq!(parse_query("?cid=1")["cid"], "1");
        assert!(parse_query("").is_empty());
        assert!(parse_query("https://x.example/").is_empty());
        assert!(parse_query("/p#x=1").is_empty());
    }
}
