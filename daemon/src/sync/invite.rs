//! Invites, as `quiver hub invite` prints them: `quiver+https://HOST:PORT/join#CODE.FINGERPRINT`
//! (`quiver_shared::sync::wire::Invite`). The fingerprint (SHA-256 of the hub's certificate)
//! pins the hub: the invite is the trust anchor. A plain `http` invite (no fingerprint) is
//! accepted only for a hub on this machine.

use quiver_shared::sync::wire::Invite;

/// Is `host` (as written in a URL, IPv6 in brackets) a loopback address?
pub fn is_loopback(host: &str) -> bool {
    let h = host.trim_start_matches('[').trim_end_matches(']');
    h == "localhost"
        || h.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Splits `scheme://host[:port][/...]` into (scheme, host, port).
pub fn split_url(url: &str) -> Result<(&str, &str, Option<&str>), String> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| format!("{url:?} is not a URL"))?;
    let authority = rest.split(['/', '?', '#']).next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(format!("{url:?} names no host"));
    }
    let (host, port) = if authority.starts_with('[') {
        let end = authority
            .find(']')
            .ok_or_else(|| format!("{url:?}: unclosed ["))?;
        (&authority[..=end], authority[end + 1..].strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    if let Some(p) = port {
        if p.parse::<u16>().is_err() {
            return Err(format!("{url:?}: port {p:?} is not a port"));
        }
    }
    if host.is_empty() {
        return Err(format!("{url:?} names no host"));
    }
    Ok((scheme, host, port))
}

/// Parses an invite and checks what the daemon needs: https with a fingerprint, or plain http
/// to a loopback hub.
pub fn parse(text: &str) -> Result<Invite, String> {
    let inv = Invite::parse(text).map_err(|e| {
        format!("{e} (an invite looks like quiver+https://hub.example:7443/join#CODE.FINGERPRINT)")
    })?;
    let (scheme, host, _) = split_url(&inv.base_url)?;
    match (scheme, &inv.fingerprint) {
        ("https", Some(_)) => Ok(inv),
        ("https", None) => Err(
            "an https invite must carry the hub's certificate fingerprint after the code \
             (#CODE.FINGERPRINT)"
                .into(),
        ),
        ("http", _) if is_loopback(host) => Ok(inv),
        ("http", _) => Err(format!(
            "plain http is only for a hub on this machine (127.0.0.1), not {host}; ask for an \
             https invite"
        )),
        (other, _) => Err(format!("{other:?} is not http or https")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const FP: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";

    #[test]
    fn invites_are_checked_for_what_the_daemon_needs() {
        let i = parse(&format!(
            "quiver+https://hub.example:7443/join#abc_D-1.{FP}"
        ))
        .unwrap();
        assert_eq!(i.base_url, "https://hub.example:7443");
        assert_eq!(i.code, "abc_D-1");
        assert_eq!(i.fingerprint.as_deref(), Some(FP));
        let i = parse("quiver+http://127.0.0.1:9000/join#code").unwrap();
        assert_eq!(
            (i.base_url.as_str(), i.fingerprint),
            ("http://127.0.0.1:9000", None)
        );
        assert!(parse("quiver+http://[::1]:9/join#c").is_ok());
        for (bad, why) in [
            (
                "quiver+http://10.0.0.2:9000/join#code",
                "only for a hub on this machine",
            ),
            ("quiver+https://h:1/join#code", "fingerprint"),
            ("quiver+https://h:1/join", "no code"),
            ("quiver+https://h:1/join#code.1234", "fingerprint"),
            ("quiver+https://h:1/join#code.", "fingerprint"),
            ("hello", "quiver+"),
        ] {
            let e = parse(bad).unwrap_err();
            assert!(e.contains(why), "{bad}: {e}");
        }
        assert_eq!(
            split_url("https://[::1]:7443/x").unwrap(),
            ("https", "[::1]", Some("7443"))
        );
        assert!(split_url("https://h:port").is_err());
        assert!(is_loopback("127.0.0.1") && is_loopback("[::1]") && !is_loopback("10.0.0.1"));
    }
}
