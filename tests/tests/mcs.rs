//! The 多客服 plugin page's loopback server (docs/mcs.md) at the HTTP level, against the real
//! `quiver` daemon: off by default, 127.0.0.1 only, the Host allow-list, the key on the page and
//! the API, the custom header, Origin and Sec-Fetch-Site, no CORS, the security headers, body
//! caps, the page's sends in the history, and client events read as text.
//!
//! Requests are written by hand over a TcpStream, so every header (Host, Origin) is exactly what
//! the test says.

use quiver_tests::Sandbox;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::Duration;

/// A port nothing listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.local_addr().unwrap().port()
}

#[derive(Debug)]
struct Resp {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Resp {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// One HTTP/1.1 request to 127.0.0.1:`port` with exactly these headers (Host included).
fn raw(port: u16, method: &str, path: &str, headers: &[(&str, &str)], body: &str) -> Resp {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    if !body.is_empty() || method == "POST" {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            body.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes()).unwrap();
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).unwrap();
    let text = String::from_utf8_lossy(&buf).into_owned();
    let (head, rest) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split(' ').nth(1))
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {text:?}"));
    let headers = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    // bodies here are small and not chunked unless streamed; undo chunking when present
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(rest)
    } else {
        rest.to_string()
    };
    Resp {
        status,
        headers,
        body,
    }
}

fn unchunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        s = &rest[n + 2..];
    }
    out
}

/// A daemon with the page enabled on a free port.
struct Page {
    sb: Sandbox,
    port: u16,
    key: String,
}

impl Page {
    fn new(name: &str) -> Page {
        let sb = Sandbox::new(name);
        let port = free_port();
        let out = sb.run(&["mcs", "enable", "--port", &port.to_string()]);
        assert!(out.status.success(), "{out:?}");
        let url = out.stdout.trim().to_string();
        let prefix = format!("http://127.0.0.1:{port}/mcs/?k=");
        let key = url
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("enable printed {url:?}"))
            .to_string();
        assert_eq!(key.len(), 32, "{key}");
        assert!(key.bytes().all(|b| b.is_ascii_hexdigit()), "{key}");
        Page { sb, port, key }
    }

    fn host(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The API with every header it needs, plus `extra`.
    fn api(&self, method: &str, path: &str, body: &str, extra: &[(&str, &str)]) -> Resp {
        let host = self.host();
        let mut h = vec![
            ("Host", host.as_str()),
            ("X-Quiver-Plugin", "1"),
            ("X-Quiver-Key", self.key.as_str()),
        ];
        h.extend_from_slice(extra);
        raw(self.port, method, &format!("/mcs/api/{path}"), &h, body)
    }

    fn ok(&self, method: &str, path: &str, body: Value) -> Value {
        let body = if body.is_null() {
            String::new()
        } else {
            body.to_string()
        };
        let r = self.api(method, path, &body, &[]);
        assert_eq!(r.status, 200, "{method} {path}: {}", r.body);
        r.json()
    }

    fn event(&self, raw: &str) -> Resp {
        self.api("POST", "event", &json!({ "raw": raw }).to_string(), &[])
    }

    fn page(&self, host: &str, query: &str) -> Resp {
        raw(
            self.port,
            "GET",
            &format!("/mcs/{query}"),
            &[("Host", host)],
            "",
        )
    }

    fn status(&self) -> Value {
        let out = self.sb.run(&["mcs", "status", "--json"]);
        assert!(out.status.success(), "{out:?}");
        serde_json::from_str(out.stdout.trim()).unwrap()
    }
}

fn refused(addr: SocketAddr) -> bool {
    TcpStream::connect_timeout(&addr, Duration::from_secs(2)).is_err()
}

fn assert_secured(r: &Resp) {
    assert_eq!(r.header("x-frame-options"), Some("DENY"), "{r:?}");
    let csp = r.header("content-security-policy").unwrap_or_default();
    assert!(
        csp.contains("frame-ancestors 'none'") && csp.contains("default-src 'self'"),
        "{r:?}"
    );
    assert_eq!(r.header("cache-control"), Some("no-store"), "{r:?}");
    assert_eq!(r.header("x-content-type-options"), Some("nosniff"), "{r:?}");
    assert!(
        !r.headers
            .iter()
            .any(|(k, _)| k.to_ascii_lowercase().starts_with("access-control-")),
        "no CORS header ever: {r:?}"
    );
}

#[test]
fn off_by_default_then_on_and_off_without_a_restart() {
    let sb = Sandbox::new("mcs-off");
    let out = sb.run(&["mcs", "status", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let st: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(st["enabled"], false, "{st}");
    assert_eq!(st["port"], 47321, "{st}");
    assert!(st["listen"].is_null(), "{st}");
    assert!(st.get("key").is_none(), "status never prints the key: {st}");
    // a port is chosen but the page is not turned on: nothing listens there
    let port = free_port();
    let mut c = sb.connect();
    let st = c.ok("mcs.set", json!({ "port": port }));
    assert_eq!(st["enabled"], false);
    assert!(st["listen"].is_null());
    assert!(
        refused(SocketAddr::from(([127, 0, 0, 1], port))),
        "off by default"
    );
    let pid = sb.daemon_pid();

    let out = sb.run(&["mcs", "enable"]);
    assert!(out.status.success(), "{out:?}");
    let url = out.stdout.trim();
    assert!(
        url.starts_with(&format!("http://127.0.0.1:{port}/mcs/?k=")),
        "{url}"
    );
    let key = url.rsplit('=').next().unwrap();
    let r = raw(
        port,
        "GET",
        &format!("/mcs/?k={key}&ticket=T"),
        &[("Host", &format!("127.0.0.1:{port}"))],
        "",
    );
    assert_eq!(r.status, 200, "{r:?}");
    assert!(
        r.body.contains("<script src=\"mcs.js\"></script>"),
        "{}",
        r.body
    );
    // `quiver doctor` reports it
    let out = sb.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert_eq!(report["mcs"][0]["ok"], true, "{report}");
    assert!(
        report["mcs"][0]["detail"]
            .as_str()
            .unwrap()
            .contains(&format!("serving http://127.0.0.1:{port}/mcs/")),
        "{report}"
    );

    let out = sb.run(&["mcs", "disable"]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        refused(SocketAddr::from(([127, 0, 0, 1], port))),
        "off again"
    );
    assert_eq!(sb.daemon_pid(), pid, "the same daemon, not restarted");
    let out = sb.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(out.stdout.trim()).unwrap();
    assert!(
        report["mcs"][0]["detail"]
            .as_str()
            .unwrap()
            .starts_with("off"),
        "{report}"
    );
    // enabled again: the same key (the URL pasted in the MP admin keeps working)
    let out = sb.run(&["mcs", "enable"]);
    assert_eq!(out.stdout.trim(), url);
    // and the setting survives a restart of the daemon
    assert!(sb.stop_daemon().status.success());
    let st: Value =
        serde_json::from_str(sb.run(&["mcs", "status", "--json"]).stdout.trim()).unwrap();
    assert_eq!(st["enabled"], true, "{st}");
    assert_eq!(st["listen"], format!("127.0.0.1:{port}"), "{st}");
}

#[test]
fn bound_to_127_0_0_1_only() {
    let p = Page::new("mcs-loopback");
    let st = p.status();
    assert_eq!(st["listen"], format!("127.0.0.1:{}", p.port), "{st}");
    // another loopback address, and IPv6 loopback: nothing there
    assert!(refused(SocketAddr::from(([127, 0, 0, 2], p.port))));
    assert!(refused(SocketAddr::from((
        std::net::Ipv6Addr::LOCALHOST,
        p.port
    ))));
    // ports below 1024 are refused with a clear error, and nothing changes
    let out = p.sb.run(&["mcs", "enable", "--port", "80"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("below 1024"), "{}", out.stderr);
    assert_eq!(p.status()["listen"], format!("127.0.0.1:{}", p.port));
}

#[test]
fn host_key_header_origin_and_cors_guards() {
    let p = Page::new("mcs-guards");
    let k = format!("?k={}", p.key);
    let port = p.port;
    // Host allow-list
    for host in [
        format!("127.0.0.1:{port}"),
        format!("localhost:{port}"),
        format!("LOCALHOST:{port}"),
    ] {
        let r = p.page(&host, &k);
        assert_eq!(r.status, 200, "{host}: {r:?}");
        assert_secured(&r);
        assert_eq!(r.header("content-type"), Some("text/html; charset=utf-8"));
    }
    for host in [
        format!("evil.example:{port}"),
        "127.0.0.1".to_string(),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("[::1]:{port}"),
        format!("127.0.0.1.evil.example:{port}"),
    ] {
        let r = p.page(&host, &k);
        assert_eq!(r.status, 403, "{host}: {r:?}");
        assert_secured(&r);
    }
    let r = raw(port, "GET", &format!("/mcs/{k}"), &[], "");
    assert!(r.status == 403 || r.status == 400, "no Host: {r:?}");
    // the key on the page
    let host = p.host();
    for q in [
        "",
        "?k=",
        "?k=0123456789abcdef0123456789abcdef",
        "?ticket=T",
    ] {
        let r = p.page(&host, q);
        assert_eq!(r.status, 403, "{q}: {r:?}");
        assert_secured(&r);
    }
    assert_eq!(p.page(&host, &format!("?ticket=T&k={}", p.key)).status, 200);
    // the page's own files need no key (they hold no data)
    for (path, ty) in [("mcs.js", "text/javascript"), ("mcs.css", "text/css")] {
        let r = raw(port, "GET", &format!("/mcs/{path}"), &[("Host", &host)], "");
        assert_eq!(r.status, 200, "{path}");
        assert!(r.header("content-type").unwrap().starts_with(ty));
        assert_secured(&r);
    }
    // the API: the custom header and the key
    assert_eq!(p.api("GET", "state", "", &[]).status, 200);
    let r = raw(
        port,
        "GET",
        "/mcs/api/state",
        &[("Host", &host), ("X-Quiver-Key", &p.key)],
        "",
    );
    assert_eq!(r.status, 403, "missing X-Quiver-Plugin: {r:?}");
    assert!(r.body.contains("X-Quiver-Plugin"), "{}", r.body);
    let r = raw(
        port,
        "GET",
        "/mcs/api/state",
        &[
            ("Host", &host),
            ("X-Quiver-Plugin", "yes"),
            ("X-Quiver-Key", &p.key),
        ],
        "",
    );
    assert_eq!(r.status, 403, "X-Quiver-Plugin must be 1");
    let r = raw(
        port,
        "GET",
        "/mcs/api/state",
        &[("Host", &host), ("X-Quiver-Plugin", "1")],
        "",
    );
    assert_eq!(r.status, 403, "missing key: {r:?}");
    let r = raw(
        port,
        "GET",
        "/mcs/api/state",
        &[
            ("Host", &host),
            ("X-Quiver-Plugin", "1"),
            ("X-Quiver-Key", "wrong"),
        ],
        "",
    );
    assert_eq!(r.status, 403, "wrong key: {r:?}");
    assert_secured(&r);
    // the key in the query does not open the API
    let r = raw(
        port,
        "GET",
        &format!("/mcs/api/state{k}"),
        &[("Host", &host), ("X-Quiver-Plugin", "1")],
        "",
    );
    assert_eq!(r.status, 403);
    // Origin and Sec-Fetch-Site
    let own = format!("http://{host}");
    assert_eq!(p.api("GET", "state", "", &[("Origin", &own)]).status, 200);
    assert_eq!(
        p.api(
            "GET",
            "state",
            "",
            &[("Origin", &format!("http://localhost:{port}"))]
        )
        .status,
        403,
        "Origin must match the Host the request names"
    );
    for origin in [
        "http://evil.example",
        "null",
        "https://127.0.0.1",
        &format!("http://127.0.0.1:{port}.evil.example"),
    ] {
        let r = p.api("GET", "state", "", &[("Origin", origin)]);
        assert_eq!(r.status, 403, "{origin}: {r:?}");
        assert_secured(&r);
    }
    let r = raw(
        port,
        "GET",
        &format!("/mcs/{k}"),
        &[("Host", &host), ("Origin", "http://evil.example")],
        "",
    );
    assert_eq!(r.status, 403, "the page too");
    for site in ["same-origin", "none"] {
        assert_eq!(
            p.api("GET", "state", "", &[("Sec-Fetch-Site", site)])
                .status,
            200
        );
    }
    for site in ["cross-site", "same-site"] {
        assert_eq!(
            p.api("GET", "state", "", &[("Sec-Fetch-Site", site)])
                .status,
            403,
            "{site}"
        );
    }
    // no CORS at all: a preflight is refused, whatever it asks
    for path in ["/mcs/api/render", "/mcs/", "/mcs/api/state"] {
        let r = raw(
            port,
            "OPTIONS",
            path,
            &[
                ("Host", &host),
                ("Origin", "http://evil.example"),
                ("Access-Control-Request-Method", "POST"),
                (
                    "Access-Control-Request-Headers",
                    "x-quiver-plugin, x-quiver-key",
                ),
            ],
            "",
        );
        assert_eq!(r.status, 403, "{path}: {r:?}");
        assert_secured(&r);
    }
    // body cap
    let big = json!({ "raw": "x".repeat(20 * 1024) }).to_string();
    let r = p.api("POST", "event", &big, &[]);
    assert_eq!(r.status, 413, "{r:?}");
    assert_secured(&r);
    // not JSON, unknown fields
    assert_eq!(p.api("POST", "render", "{", &[]).status, 400);
    let r = p.api(
        "POST",
        "render",
        r#"{"template_id":"greeting","part":0,"evil":1}"#,
        &[],
    );
    assert_eq!(r.status, 400, "{r:?}");
    assert!(r.body.contains("evil"), "{}", r.body);
    // the key never reaches the log (query strings are not logged)
    let log = p.sb.daemon_log();
    assert!(
        log.contains("mcs GET /mcs/ -> 200"),
        "requests are logged by path: {log}"
    );
    assert!(!log.contains(&p.key), "the key is in the log");
}

/// The exact PutMsg string of `text` with `random`.
fn text_put(random: &str, text: &str) -> String {
    format!(
        r#"{{"msg":{{"head":{{"random":"{random}"}},"body":[{{"type":0,"content":{{"text":"{text}"}}}}]}}}}"#
    )
}

#[test]
fn sends_are_rendered_recorded_and_retried_with_the_same_random() {
    let p = Page::new("mcs-sends");
    // the customer, from the client's event (the seed's stray spaces included)
    let r =
        p.event(r#"{ "event":" OnUserChange ", " channeltype ":"1", " useraccount ":"oUSER" }"#);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["customer"]["openid"], "oUSER");
    let found = p.ok("GET", "search?q=greeting", Value::Null);
    let g = &found["results"][0];
    assert_eq!(g["id"], "greeting", "{found}");
    assert_eq!(g["parts"][0]["ok"], true);
    assert_eq!(g["sent_before"], false);

    let r = p.ok(
        "POST",
        "render",
        json!({"template_id": "greeting", "part": 0}),
    );
    let random = r["random"].as_str().unwrap().to_string();
    assert_eq!(random.len(), 9, "{r}");
    assert!(random.bytes().all(|b| b.is_ascii_digit()));
    let put = r["put"].as_str().unwrap();
    assert_eq!(
        put,
        text_put(&random, "Hello there, how can I help you today?")
    );
    let first = r["send_id"].as_i64().unwrap();
    // the client threw: recorded as failed
    let d = p.ok(
        "POST",
        "done",
        json!({"send_id": first, "error": "Object doesn't support this property"}),
    );
    assert_eq!(d["state"], "failed", "{d}");
    // a retry: the same string, the same random, another history row
    let again = p.ok("POST", "render", json!({"retry_of": first}));
    assert_eq!(again["put"], put);
    assert_eq!(again["random"], random.as_str());
    assert_eq!(again["attempt"], 2);
    let second = again["send_id"].as_i64().unwrap();
    assert_ne!(second, first);
    // the reply as the client writes it (unquoted keys)
    let d = p.ok(
        "POST",
        "done",
        json!({"send_id": second, "reply": "{retCode:0,errMsg:\"\"}"}),
    );
    assert_eq!(d["state"], "sent", "{d}");
    assert_eq!(d["ret_code"], 0);
    // a new send gets a new random
    let other = p.ok(
        "POST",
        "render",
        json!({"template_id": "greeting", "part": 0}),
    );
    assert_ne!(other["random"], random.as_str());
    let d = p.ok(
        "POST",
        "done",
        json!({"send_id": other["send_id"], "reply": r#"{"retCode":5,"errMsg":"参数错误"}"#}),
    );
    assert_eq!(d["state"], "failed");
    assert!(d["error"].as_str().unwrap().contains("retCode 5"), "{d}");
    // a send the page did not make cannot be reported
    let r = p.api(
        "POST",
        "done",
        &json!({"send_id": 9999, "reply": "{retCode:0}"}).to_string(),
        &[],
    );
    assert_eq!(r.status, 404);

    // the history: platform wechat-dkf, the exact payload, the customer
    let db = p.sb.db();
    let rows: Vec<(i64, String, String, Option<String>, String, String)> = db
        .prepare(
            "SELECT id, platform, workspace, customer, payload, state FROM history ORDER BY id",
        )
        .unwrap()
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(rows.len(), 3, "{rows:?}");
    assert_eq!(rows[0].0, first);
    for r in &rows {
        assert_eq!(
            (r.1.as_str(), r.2.as_str(), r.3.as_deref()),
            ("wechat-dkf", "mcs", Some("oUSER"))
        );
    }
    assert_eq!(rows[0].4, put);
    assert_eq!(rows[1].4, put);
    assert_eq!(
        rows.iter().map(|r| r.5.as_str()).collect::<Vec<_>>(),
        ["failed", "sent", "failed"]
    );
    // the page's state: the customer's history, and search marks what was sent
    let st = p.ok("GET", "state", Value::Null);
    assert_eq!(st["history"].as_array().unwrap().len(), 3, "{st}");
    let found = p.ok("GET", "search?q=greeting", Value::Null);
    assert_eq!(found["results"][0]["sent_before"], true, "{found}");

    // the `userid` variant switches the customer
    let r = p.event("{event:'OnUserChange',channeltype:'1',userid:'oOTHER'}");
    assert_eq!(r.json()["customer"]["openid"], "oOTHER");
    assert_eq!(p.ok("GET", "state", Value::Null)["history"], json!([]));
    assert_eq!(p.status()["customer"]["openid"], "oOTHER");
    // a retry never puts oUSER's message into oOTHER's chat
    let r = p.api(
        "POST",
        "render",
        &json!({"retry_of": first}).to_string(),
        &[],
    );
    assert_eq!(r.status, 409, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "customer_changed");
    // a refusal names its code: a variable without a value
    let r = p.api(
        "POST",
        "render",
        &json!({"template_id": "order-status", "part": 0}).to_string(),
        &[],
    );
    assert_eq!(r.status, 422, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "missing_variable");
    let r = p.ok(
        "POST",
        "render",
        json!({"template_id": "order-status", "part": 0, "values": {"order.id": "A-1"}}),
    );
    assert!(r["put"].as_str().unwrap().contains("A-1"), "{r}");
}

#[test]
fn client_events_are_read_as_text_never_run() {
    let p = Page::new("mcs-events");
    let loc = r#""});alert(1);({""#;
    let raw_event = json!({
        "event": "OnMapMsgClick",
        "latitude": "23.134521",
        "longitude": "113.358803",
        "location": loc,
        "scale": "15",
    })
    .to_string();
    let r = p.event(&raw_event);
    assert_eq!(r.status, 200, "{r:?}");
    assert_eq!(r.json()["event"]["location"], loc);
    let st = p.ok("GET", "state", Value::Null);
    assert_eq!(st["last_map"]["location"], loc, "{st}");
    assert_eq!(st["last_map"]["latitude"], "23.134521");
    // the same text spliced in unescaped, as a naive client would: refused, nothing changed
    let spliced = format!(r#"{{ "event":"OnMapMsgClick", "location":"{loc}" }}"#);
    let r = p.event(&spliced);
    assert_eq!(r.status, 400, "{r:?}");
    assert_eq!(r.json()["error"]["code"], "bad_request");
    assert_eq!(
        p.ok("GET", "state", Value::Null)["last_map"]["location"],
        loc
    );
    // no event, not an object, no user
    for bad in ["", "alert(1)", "{a:1}", "{event:'OnUserChange'}", "[1,2]"] {
        assert_eq!(p.event(bad).status, 400, "{bad}");
    }
    assert!(p.ok("GET", "state", Value::Null)["customer"].is_null());
}

#[test]
fn the_key_can_be_set_and_a_taken_port_is_reported() {
    let p = Page::new("mcs-key");
    let out = p.sb.run(&["mcs", "key", "--set", "short"]);
    assert!(!out.status.success());
    assert!(out.stderr.contains("16 to 128"), "{}", out.stderr);
    let team = "Team-Key_0123456789abcdef";
    let out = p.sb.run(&["mcs", "key", "--set", team]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(
        out.stdout.trim(),
        format!("http://127.0.0.1:{}/mcs/?k={team}", p.port)
    );
    assert_eq!(p.sb.run(&["mcs", "key"]).stdout.trim(), team);
    // at once, without a restart: the old key is refused, the new one accepted
    let host = p.host();
    assert_eq!(p.page(&host, &format!("?k={}", p.key)).status, 403);
    assert_eq!(p.page(&host, &format!("?k={team}")).status, 200);
    assert_eq!(p.api("GET", "state", "", &[]).status, 403);

    // another port that is taken
    let holder = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = holder.local_addr().unwrap().port();
    let out = p.sb.run(&["mcs", "enable", "--port", &taken.to_string()]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("not served"), "{}", out.stderr);
    let st = p.status();
    assert_eq!(st["enabled"], true);
    assert!(st["listen"].is_null(), "{st}");
    assert!(
        st["error"].as_str().unwrap().contains(&taken.to_string()),
        "{st}"
    );
    let report: Value =
        serde_json::from_str(p.sb.run(&["doctor", "--json"]).stdout.trim()).unwrap();
    assert_eq!(report["mcs"][0]["ok"], false, "{report}");
    assert!(report["mcs"][0]["fix"].as_str().unwrap().contains("--port"));
    // freed: enabling again serves it
    drop(holder);
    let out = p.sb.run(&["mcs", "enable"]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(p.status()["listen"], format!("127.0.0.1:{taken}"));
}
