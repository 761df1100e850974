//! Invites: `quiver+https://hub.example:7443/join#<code>.<fingerprint>`, as `quiver hub
//! invite` prints them. The fingerprint (SHA-256 of the hub's certificate, hex or base64url)
//! pins a self-signed hub; a hub with a certificate from a CA the organisation trusts still
//! gets pinned (the invite is the trust anchor). Plain `http` only for a loopback hub.

use std::fmt;

/// A parsed invite.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// `https://host:port` or `http://127.0.0.1:port`, without a path or a trailing slash.
    pub url: String,
    /// The single-use code.
    pub code: String,
    /// SHA-256 of the hub's certificate, lowercase hex (`None` for plain HTTP).
    pub fingerprint: Option<String>,
}

/// Why an invite is refused (the message is for the user).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadInvite(pub String);

impl fmt::Display for BadInvite {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (an invite looks like quiver+https://hub.example:7443/join#CODE.FINGERPRINT)",
            self.0
        )
    }
}

fn bad(msg: impl Into<String>) -> BadInvite {
    BadInvite(msg.into())
}

/// Is `host` (as written in a URL, IPv6 in brackets) a loopback address?
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits `scheme://host[:port]/...` into (scheme, host, port text).
pub fn split_url(url: &str) -> Result<(&str, &str, Option<&str>), BadInvite> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad(format!("{url:?} is not a URL")))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(bad(format!("{url:?} names no host")));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, after) = v6
            .split_once(']')
            .ok_or_else(|| bad(format!("{url:?}: unclosed [")))?;
        let port = after.strip_prefix(':');
        (&authority[..h.len() + 2], port)
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(bad(format!("{url:?}: port {p:?} is not a port")));
        }
    }
    if host.is_empty() {
        return Err(bad(format!("{url:?} names no host")));
    }
    Ok((scheme, host, port))
}

/// A fingerprint as lowercase hex: 64 hex digits (colons allowed) or 43 base64url characters.
pub fn normalize_fingerprint(s: &str) -> Option<String> {
    let hex: String = s.chars().filter(|c| *c != ':').collect();
    if hex.len() == 64 && hex.chars().all(|c| c.is_ascii_hexdigit()) {
        return Some(hex.to_ascii_lowercase());
    }
    // base64url without padding: 32 bytes are 43 characters
    let s = s.trim_end_matches('=');
    if s.len() != 43 {
        return None;
    }
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' | b'+' => 62,
            b'_' | b'/' => 63,
            _ => return None,
        } as u32)
    };
    let mut bits: u64 = 0;
    let mut n = 0;
    let mut out = Vec::with_capacity(32);
    for c in s.bytes() {
        bits = (bits << 6) | u64::from(val(c)?);
        n += 6;
        if n >= 8 {
            n -= 8;
            out.push((bits >> n) as u8);
        }
    }
    if out.len() != 32 {
        return None;
    }
    Some(out.iter().map(|b| format!("{b:02x}")).collect())
}

/// Parses an invite.
pub fn parse(invite: &str) -> Result<Invite, BadInvite> {
    let s = invite.trim();
    let s = s.strip_prefix("quiver+").unwrap_or(s);
    let (base, fragment) = s
        .split_once('#')
        .ok_or_else(|| bad("the invite has no code (the part after #)"))?;
    let (scheme, host, port) = split_url(base)?;
    let url = match port {
        Some(p) => format!("{scheme}://{host}:{p}"),
        None => format!("{scheme}://{host}"),
    };
    let (code, fp) = match fragment.split_once('.') {
        Some((c, f)) => (c, Some(f)),
        None => (fragment, None),
    };
    if code.is_empty()
        || code.len() > 256
        || !code
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(bad(
            "the invite's code is not one `quiver hub invite` makes",
        ));
    }
    let fingerprint = match fp {
        Some(f) if !f.is_empty() => Some(normalize_fingerprint(f).ok_or_else(|| {
            bad(format!(
                "the invite's certificate fingerprint {f:?} is not a SHA-256"
            ))
        })?),
        _ => None,
    };
    match scheme {
        "https" => {
            if fingerprint.is_none() {
                return Err(bad(
                    "an https invite must carry the hub's certificate fingerprint after the code",
                ));
            }
        }
        "http" => {
            if !is_loopback(host) {
                return Err(bad(format!(
                    "plain http is only for a hub on this machine (127.0.0.1), not {host}; \
                     ask for an https invite"
                )));
            }
        }
        other => return Err(bad(format!("{other:?} is not http or https"))),
    }
    Ok(Invite {
        url,
        code: code.to_string(),
        fingerprint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn https_invites_carry_their_pin() {
        let i = parse(&format!(
            "quiver+https://hub.example:7443/join#abc_D-1.{FP}"
        ))
        .unwrap();
        assert_eq!(i.url, "https://hub.example:7443");
        assert_eq!(i.code, "abc_D-1");
        assert_eq!(i.fingerprint.as_deref(), Some(FP));
        // upper case and colons are the same pin
        let colons: String = FP
            .to_uppercase()
            .as_bytes()
            .chunks(2)
            .map(|c| std::str::from_utf8(c).unwrap())
            .collect::<Vec<_>>()
            .join(":");
        let i = parse(&format!("https://[::1]:7443/join#c.{colons}")).unwrap();
        assert_eq!(i.url, "https://[::1]:7443");
        assert_eq!(i.fingerprint.as_deref(), Some(FP));
        // base64url of the same 32 bytes
        let b64 = "n4bQgYhMfWWaL-qgxVrQFaO_TxsrC4Is0V1sFbDwCgg";
        assert_eq!(normalize_fingerprint(b64).as_deref(), Some(FP));
    }

    #[test]
    fn plain_http_only_on_loopback_and_bad_invites_say_why() {
        let i = parse("quiver+http://127.0.0.1:9000/join#code").unwrap();
        assert_eq!(
            (i.url.as_str(), i.fingerprint),
            ("http://127.0.0.1:9000", None)
        );
        assert!(parse("http://localhost:1/join#c").is_ok());
        for (bad, why) in [
            (
                "quiver+http://10.0.0.2:9000/join#code",
                "only for a hub on this machine",
            ),
            ("quiver+https://h:1/join#code", "fingerprint"),
            ("quiver+https://h:1/join", "no code"),
            ("quiver+https://h:1/join#co de.x", "code"),
            ("quiver+https://h:1/join#code.1234", "not a SHA-256"),
            ("quiver+https://h:port/join#code", "not a port"),
            ("quiver+ftp://h:1/join#code", "not http or https"),
            ("hello", "no code"),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(why), "{bad}: {e}");
        }
    }
}
