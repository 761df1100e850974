//! The WeChat gateway in the hub (docs/wechat.md) against the real `quiver hub serve` and the real
//! `quiver-fakewx` (pusher and API), on SQLite and on PostgreSQL (each test twice, like
//! `tests/tests/hub.rs`).

use quiver_tests::fakewx::FakeWx;
use quiver_tests::hub::*;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

use quiver_tests::both;

const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const TOKEN: &str = "pushToken42";
const SECRET: &str = "s3cr3t-app-secret";
use quiver_tests::PNG;

/// A hub with the fake WeChat beside it, the owner's device (an agent of every app).
struct Gw {
    hub: Hub,
    fake: FakeWx,
    owner: Client,
}

impl Gw {
    /// `timeout_ms`: hub.json `wx_api_timeout_ms`.
    fn start(b: Backend, timeout_ms: u64) -> Gw {
        let fake = FakeWx::start();
        let mut hub = Hub::init(b, false, &[]);
        let cfg_path = hub.path().join("hub.json");
        let mut cfg: Value =
            serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
        cfg["wx_api_timeout_ms"] = json!(timeout_ms);
        std::fs::write(&cfg_path, cfg.to_string()).unwrap();
        hub.serve();
        let owner = hub.owner();
        Gw { hub, fake, owner }
    }

    /// Adds an app to the hub and to the fake; its appid.
    fn app(&self, name: &str, mode: &str, format: &str, extra: &[&str]) -> String {
        let appid = format!("wx{name}{}", unique());
        let secret_file = self.hub.dir.path().join(format!("{name}.secret"));
        std::fs::write(&secret_file, format!("{SECRET}\n")).unwrap();
        let mut args = vec![
            "wx",
            "add",
            name,
            "--appid",
            &appid,
            "--secret-file",
            secret_file.to_str().unwrap(),
            "--token",
            TOKEN,
            "--aes-key",
            AES,
            "--mode",
            mode,
            "--format",
            format,
            "--api-base",
            &self.fake.base,
        ];
        args.extend_from_slice(extra);
        let printed = self.hub.cli_ok(&args);
        let url = format!("{}/wx/mp/{name}", self.hub.base_url());
        assert!(printed.contains(&format!("URL: {url}")), "{printed}");
        assert!(printed.contains(&format!("Token: {TOKEN}")), "{printed}");
        assert!(!printed.contains(SECRET), "the secret is never printed");
        self.fake.add_app(
            json!({"appid": appid, "secret": SECRET, "token": TOKEN, "aes_key": AES,
            "mode": mode, "format": format, "push_url": url}),
        );
        appid
    }

    fn push(&self, appid: &str, from: &str, kind: &str, extra: Value) -> Value {
        let mut p = json!({"appid": appid, "from": from, "kind": kind, "timeout_ms": 4000});
        for (k, v) in extra.as_object().into_iter().flatten() {
            p[k] = v.clone();
        }
        self.fake.push(p)
    }

    fn text(&self, appid: &str, from: &str, content: &str) -> Value {
        let r = self.push(appid, from, "text", json!({"content": content}));
        assert_eq!(r["verdict"], "ok", "{r}");
        r
    }

    fn conversations(&self, scope: &str) -> Vec<Value> {
        let (s, v) = self
            .owner
            .get(&format!("/v1/wx/conversations?scope={scope}"));
        assert_eq!(s, 200, "{v}");
        v["conversations"].as_array().unwrap().clone()
    }

    /// The conversation of `openid`.
    fn conversation(&self, openid: &str) -> Value {
        self.conversations("all")
            .into_iter()
            .find(|c| c["openid"] == openid)
            .unwrap_or_else(|| panic!("no conversation with {openid}"))
    }

    fn messages(&self, conv: &str) -> Vec<Value> {
        let (s, v) = self.owner.get(&format!(
            "/v1/wx/conversations/{conv}/messages?after=0&limit=500"
        ));
        assert_eq!(s, 200, "{v}");
        v["messages"].as_array().unwrap().clone()
    }

    fn send(&self, conv: &str, key: &str, bodies: &[Value]) -> (u16, Value) {
        let parts: Vec<Value> = bodies
            .iter()
            .map(|b| json!({"body": b.to_string()}))
            .collect();
        self.owner.post(
            &format!("/v1/wx/conversations/{conv}/send"),
            &json!({"idempotency_key": key, "seen_inbound_id": 0, "parts": parts}),
        )
    }

    /// Sends and waits until every part left `queued`/`sending`; the final rows.
    fn send_done(&self, conv: &str, key: &str, bodies: &[Value]) -> Vec<Value> {
        let (s, v) = self.send(conv, key, bodies);
        assert_eq!(s, 200, "{v}");
        let ids: Vec<i64> = v["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_i64().unwrap())
            .collect();
        self.wait_final(conv, &ids)
    }

    fn wait_final(&self, conv: &str, ids: &[i64]) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let rows: Vec<Value> = self
                .messages(conv)
                .into_iter()
                .filter(|m| ids.contains(&m["id"].as_i64().unwrap()))
                .collect();
            if rows.len() == ids.len()
                && rows
                    .iter()
                    .all(|m| !matches!(m["state"].as_str(), Some("queued" | "sending")))
            {
                return rows;
            }
            assert!(started.elapsed() < WAIT, "parts still pending: {rows:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    fn stat(&self, name: &str) -> i64 {
        self.fake.stats()[name].as_i64().unwrap_or(0)
    }

    fn put_blob(&self, bytes: &[u8], mime: &str) -> (u16, Value) {
        let sha = sha256_hex(bytes);
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .build()
            .new_agent();
        let mut r = agent
            .put(format!("{}/v1/wx/blobs/{sha}", self.hub.base_url()))
            .header("Authorization", format!("Bearer {}", self.owner.token))
            .content_type(mime)
            .send(bytes)
            .unwrap();
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }
}

impl Drop for Gw {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("--- hub log ---\n{}", self.hub.log(self.hub.port));
        }
    }
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// GET bytes (with a device token).
fn bytes(url: &str, token: Option<&str>) -> Vec<u8> {
    let agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .new_agent();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    let mut r = req.call().unwrap();
    assert_eq!(r.status().as_u16(), 200, "{url}");
    r.body_mut().read_to_vec().unwrap()
}

fn text_body(openid: &str, content: &str) -> Value {
    json!({"touser": openid, "msgtype": "text", "text": {"content": content}})
}

both!(pushes_in_every_mode_and_format);
fn pushes_in_every_mode_and_format(b: Backend) {
    let gw = Gw::start(b, 10_000);
    for mode in ["plain", "compat", "safe"] {
        for format in ["xml", "json"] {
            let name = format!("{mode}-{format}");
            let appid = gw.app(&name, mode, format, &[]);
            // the URL check: echostr back, in plain text, in every mode
            let v = gw.fake.post(
                "/__fake/verify",
                json!({"appid": appid, "echostr": "e-123"}),
            );
            assert_eq!(
                (v["status"].as_i64(), v["body"].as_str()),
                (Some(200), Some("e-123")),
                "{name}: {v}"
            );
            let v = gw.fake.post(
                "/__fake/verify",
                json!({"appid": appid, "echostr": "e-123", "tamper": "signature"}),
            );
            assert_eq!(v["status"], 401, "{name}: {v}");
            // a customer message, then the same message again (a replay): stored once
            let openid = format!("o-{name}");
            let r = gw.text(&appid, &openid, &format!("hello {name}"));
            assert_eq!(r["attempts"].as_array().unwrap().len(), 1, "{r}");
            assert_eq!(
                r["attempts"][0]["body"], "success",
                "plain success in every mode: {r}"
            );
            let again = gw.push(
                &appid,
                &openid,
                "text",
                json!({"content": format!("hello {name}"), "msg_id": r["msg_id"], "create_time": r["create_time"]}),
            );
            assert_eq!(again["verdict"], "ok", "{again}");
            // another customer with the same MsgId is another message
            let other = gw.push(
                &appid,
                &format!("{openid}-2"),
                "text",
                json!({"content": "same id", "msg_id": r["msg_id"]}),
            );
            assert_eq!(other["verdict"], "ok", "{other}");
            // tampered: refused, nothing stored
            for tamper in ["signature", "msg_signature", "appid"] {
                if mode == "plain" && tamper != "signature" {
                    continue;
                }
                let t = gw.push(
                    &appid,
                    &openid,
                    "text",
                    json!({"content": format!("forged {tamper}"), "tamper": tamper, "tries": 1}),
                );
                assert_eq!(t["verdict"], "error", "{name} {tamper}: {t}");
                let status = t["attempts"][0]["status"].as_i64().unwrap();
                assert!((400..500).contains(&status), "{name} {tamper}: {t}");
            }
            if mode != "plain" {
                // a downgrade: the request claims plain mode; the configured mode decides
                let t = gw.push(
                    &appid,
                    &openid,
                    "text",
                    json!({"content": "downgraded", "query_mode": "plain", "tries": 1}),
                );
                assert_eq!(t["verdict"], "error", "{name} downgrade: {t}");
            }
            if mode == "compat" {
                // the plaintext copy lies; the encrypted one wins
                let t = gw.push(
                    &appid,
                    &openid,
                    "text",
                    json!({"content": "the real text", "tamper": "plaintext"}),
                );
                assert_eq!(t["verdict"], "ok", "{t}");
            }
            // entering the session with a Sobot session-from
            let sf = "sobot|小明|https://a.example/x.png|{\"order\":\"42\"}";
            let e = gw.push(&appid, &openid, "enter", json!({"session_from": sf}));
            assert_eq!(e["verdict"], "ok", "{e}");
            let c = gw.conversation(&openid);
            assert_eq!(c["app"], name);
            assert_eq!(c["session_from_raw"], sf, "{c}");
            assert_eq!(c["session_from"]["nick_name"], "小明", "{c}");
            assert_eq!(c["state"], "open");
            let msgs = gw.messages(c["id"].as_str().unwrap());
            let texts: Vec<&str> = msgs
                .iter()
                .filter(|m| m["kind"] == "text")
                .map(|m| m["text"].as_str().unwrap())
                .collect();
            let mut want = vec![format!("hello {name}")];
            if mode == "compat" {
                want.push("the real text".into());
            }
            assert_eq!(
                texts, want,
                "{name}: one row per message, no forged ones: {msgs:?}"
            );
            assert_eq!(msgs.last().unwrap()["kind"], "enter");
            assert_eq!(c["unread"], msgs.len() as i64);
            assert_eq!(c["last_inbound_id"], msgs.last().unwrap()["id"]);
        }
    }
    // unknown app: 404
    let (s, _) = raw_get(&format!(
        "{}/wx/mp/nosuch?signature=x&timestamp=1&nonce=1&echostr=e",
        gw.hub.base_url()
    ))
    .unwrap();
    assert_eq!(s, 404);
    // the apps agents see: no secrets
    let (s, apps) = gw.owner.get("/v1/wx/apps");
    assert_eq!(s, 200);
    assert_eq!(apps["apps"].as_array().unwrap().len(), 6, "{apps}");
    let text = apps.to_string();
    assert!(
        !text.contains(SECRET) && !text.contains(AES) && !text.contains(TOKEN),
        "{text}"
    );
    let listed = gw.hub.cli_ok(&["wx", "list", "--json"]);
    assert!(
        !listed.contains(SECRET) && !listed.contains(AES),
        "{listed}"
    );
}

both!(transfer_policies);
fn transfer_policies(b: Backend) {
    let gw = Gw::start(b, 10_000);
    for (mode, format) in [("safe", "json"), ("plain", "xml")] {
        let name = format!("kw-{mode}");
        let appid = gw.app(&name, mode, format, &["--transfer", "keyword:人工"]);
        let openid = format!("o-{name}");
        gw.text(&appid, &openid, "你好");
        let t = gw.push(&appid, &openid, "text", json!({"content": "转人工"}));
        assert_eq!(t["verdict"], "transfer", "{t}");
        // a retry of it gets the same answer
        let t2 = gw.push(
            &appid,
            &openid,
            "text",
            json!({"content": "转人工", "msg_id": t["msg_id"], "create_time": t["create_time"]}),
        );
        assert_eq!(t2["verdict"], "transfer", "{t2}");
        let c = gw.conversation(&openid);
        assert_eq!(c["state"], "transferred", "{c}");
        // an event is never transferred
        let e = gw.push(&appid, &openid, "enter", json!({"session_from": "x"}));
        assert_eq!(e["verdict"], "ok", "{e}");
    }
    // an agent asks for the transfer: the customer's next message goes to the web tool
    let appid = gw.app("pending", "compat", "xml", &[]);
    gw.text(&appid, "o-p", "hi");
    let c = gw.conversation("o-p");
    let id = c["id"].as_str().unwrap();
    let (s, c) = gw
        .owner
        .post(&format!("/v1/wx/conversations/{id}/transfer"), &json!({}));
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["transfer_pending"], true);
    let t = gw.push(&appid, "o-p", "text", json!({"content": "still there?"}));
    assert_eq!(t["verdict"], "transfer", "{t}");
    let c = gw.conversation("o-p");
    assert_eq!(
        (c["transfer_pending"].as_bool(), c["state"].as_str()),
        (Some(false), Some("transferred"))
    );
    // `always`
    let appid = gw.app("always", "plain", "json", &["--transfer", "always"]);
    let t = gw.push(&appid, "o-a", "text", json!({"content": "x"}));
    assert_eq!(t["verdict"], "transfer", "{t}");
}

both!(sends_quota_and_idempotency);
fn sends_quota_and_idempotency(b: Backend) {
    let gw = Gw::start(b, 10_000);
    let appid = gw.app("shop", "safe", "json", &[]);
    let events = gw.owner.event_stream("wx");
    gw.text(&appid, "o-1", "where is my order?");
    let c = gw.conversation("o-1");
    let id = c["id"].as_str().unwrap().to_string();
    assert_eq!(c["quota"]["left"], 5, "{c}");
    let ev = events
        .recv_timeout(WAIT)
        .expect("a wx event")
        .expect("the event stream ended before a wx event");
    assert_eq!(
        (ev["conversation"].as_str(), ev["kind"].as_str()),
        (Some(id.as_str()), Some("message")),
        "{ev}"
    );
    // 3 + 2 parts: all sent, in order
    let rows = gw.send_done(
        &id,
        "k1",
        &[
            text_body("o-1", "a"),
            text_body("o-1", "b"),
            text_body("o-1", "c"),
        ],
    );
    assert!(rows.iter().all(|m| m["state"] == "sent"), "{rows:?}");
    assert_eq!(rows[0]["by"], "owner");
    assert_eq!(rows[0]["part"], 0);
    let rows = gw.send_done(&id, "k2", &[text_body("o-1", "d"), text_body("o-1", "e")]);
    assert!(rows.iter().all(|m| m["state"] == "sent"), "{rows:?}");
    let bodies = gw.fake.sent_bodies();
    let texts: Vec<&str> = bodies
        .iter()
        .map(|b| b["text"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["a", "b", "c", "d", "e"]);
    assert_eq!(bodies[0], text_body("o-1", "a"), "the exact body");
    // the same key again: the same rows, nothing sent
    let (s, again) = gw.send(&id, "k2", &[text_body("o-1", "d"), text_body("o-1", "e")]);
    assert_eq!(s, 200, "{again}");
    assert_eq!(again["messages"][0]["id"], rows[0]["id"]);
    // the 6th is refused by the hub: no call to WeChat
    let calls = gw.fake.calls("/cgi-bin/message/custom/send").len();
    let (s, e) = gw.send(&id, "k3", &[text_body("o-1", "f")]);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("quota")),
        "{e}"
    );
    assert!(
        e["error"]["message"].as_str().unwrap().contains("45047"),
        "{e}"
    );
    assert_eq!(gw.fake.calls("/cgi-bin/message/custom/send").len(), calls);
    let c = gw.conversation("o-1");
    assert_eq!(c["quota"]["left"], 0, "{c}");
    assert_eq!(c["quota"]["refusal"]["errcode"], 45047);
    assert_eq!(c["quota"]["refusal"]["learned"], false);
    assert_eq!(c["assignee"], "owner", "the send took the conversation");
    // a body to someone else is refused
    let (s, e) = gw.send(&id, "k4", &[text_body("o-other", "x")]);
    assert_eq!(s, 400, "{e}");

    // learned: WeChat says 45015 (its clock moved 49 h; the hub's did not)
    gw.text(&appid, "o-2", "hello");
    let id2 = gw.conversation("o-2")["id"].as_str().unwrap().to_string();
    gw.fake
        .post("/__fake/clock", json!({"advance_ms": 49 * 3_600_000i64}));
    let rows = gw.send_done(
        &id2,
        "l1",
        &[text_body("o-2", "late"), text_body("o-2", "later")],
    );
    assert_eq!(
        (rows[0]["state"].as_str(), rows[0]["errcode"].as_i64()),
        (Some("failed"), Some(45015)),
        "{rows:?}"
    );
    assert_eq!(
        rows[1]["state"], "cancelled",
        "the rest of the answer: {rows:?}"
    );
    let c = gw.conversation("o-2");
    assert_eq!(c["quota"]["refusal"]["errcode"], 45015, "{c}");
    assert_eq!(c["quota"]["refusal"]["learned"], true, "{c}");
    let calls = gw.fake.calls("/cgi-bin/message/custom/send").len();
    let (s, e) = gw.send(&id2, "l2", &[text_body("o-2", "again")]);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("quota")),
        "{e}"
    );
    assert_eq!(
        gw.fake.calls("/cgi-bin/message/custom/send").len(),
        calls,
        "learned: not asked again"
    );
    // the customer writes again: the window opens
    gw.text(&appid, "o-2", "are you there?");
    let rows = gw.send_done(&id2, "l3", &[text_body("o-2", "yes")]);
    assert_eq!(rows[0]["state"], "sent", "{rows:?}");
}

both!(token_invalidated_mid_send);
fn token_invalidated_mid_send(b: Backend) {
    let gw = Gw::start(b, 10_000);
    let appid = gw.app("tok", "plain", "json", &[]);
    gw.text(&appid, "o-t", "hi");
    let id = gw.conversation("o-t")["id"].as_str().unwrap().to_string();
    let rows = gw.send_done(&id, "t1", &[text_body("o-t", "one")]);
    assert_eq!(rows[0]["state"], "sent");
    assert_eq!(gw.stat("stable_token_calls"), 1);
    // another server force-refreshed
    gw.fake
        .post("/__fake/invalidate_token", json!({"appid": appid}));
    let rows = gw.send_done(
        &id,
        "t2",
        &[text_body("o-t", "two"), text_body("o-t", "three")],
    );
    assert!(rows.iter().all(|m| m["state"] == "sent"), "{rows:?}");
    assert_eq!(
        gw.stat("stable_token_calls"),
        2,
        "one fetch for the rejection"
    );
    let calls = gw.fake.calls("/cgi-bin/message/custom/send");
    assert_eq!(calls.len(), 4, "one refused call, retried once: {calls:?}");
    let token = |c: &Value| {
        c["query"]
            .as_str()
            .unwrap()
            .split('&')
            .find_map(|kv| kv.strip_prefix("access_token="))
            .unwrap()
            .to_string()
    };
    assert_eq!(token(&calls[0]), token(&calls[1]), "the stale token");
    assert!(calls[1]["response"].as_str().unwrap().contains("40001"));
    assert_ne!(token(&calls[1]), token(&calls[2]), "retried with a new one");
    assert_eq!(token(&calls[2]), token(&calls[3]), "then kept");
    // the CLI reports the token's state, never the token
    let shown = gw.hub.cli_ok(&["wx", "show", "tok", "--json"]);
    let v: Value = serde_json::from_str(&shown).unwrap();
    assert_eq!(v["token"]["generation"], 2, "{v}");
    assert!(!shown.contains(&token(&calls[3])));
    // a forced refresh through the CLI, then the budget says no
    let out = gw.hub.cli_ok(&["wx", "token", "tok", "--force"]);
    assert!(out.contains("forced"), "{out}");
    let o = gw.hub.cli(&["wx", "token", "tok", "--force"]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("too recent"));
}

both!(unknown_outcomes_are_not_repeated);
fn unknown_outcomes_are_not_repeated(b: Backend) {
    let gw = Gw::start(b, 1_000);
    let appid = gw.app("unk", "plain", "xml", &[]);
    gw.text(&appid, "o-u", "hi");
    let id = gw.conversation("o-u")["id"].as_str().unwrap().to_string();
    let path = "/cgi-bin/message/custom/send";
    // WeChat acts, then the connection drops
    gw.fake.post(
        "/__fake/inject",
        json!({"path": path, "count": 1, "drop": true}),
    );
    let rows = gw.send_done(&id, "u1", &[text_body("o-u", "dropped")]);
    assert_eq!(rows[0]["state"], "unknown", "{rows:?}");
    // WeChat acts, then answers after the hub gave up
    gw.fake.post(
        "/__fake/inject",
        json!({"path": path, "count": 1, "delay_ms": 2500}),
    );
    let rows = gw.send_done(&id, "u2", &[text_body("o-u", "slow")]);
    assert_eq!(rows[0]["state"], "unknown", "{rows:?}");
    // -1: failed, the agent decides
    gw.fake.post(
        "/__fake/inject",
        json!({"path": path, "count": 1, "errcode": -1}),
    );
    let rows = gw.send_done(&id, "u3", &[text_body("o-u", "busy")]);
    assert_eq!(
        (rows[0]["state"].as_str(), rows[0]["errcode"].as_i64()),
        (Some("failed"), Some(-1)),
        "{rows:?}"
    );
    // a sweep later, nothing was sent again
    std::thread::sleep(Duration::from_secs(3));
    let calls = gw.fake.calls(path);
    assert_eq!(calls.len(), 3, "{calls:?}");
    let c = gw.conversation("o-u");
    assert_eq!(c["quota"]["left"], 3, "unknown sends count as spent: {c}");
}

both!(images_reused_and_reuploaded);
fn images_reused_and_reuploaded(b: Backend) {
    let gw = Gw::start(b, 10_000);
    let appid = gw.app("img", "compat", "json", &[]);
    // the customer sends an image: fetched and kept
    let r = gw.push(&appid, "o-i", "image", json!({}));
    assert_eq!(r["verdict"], "ok", "{r}");
    let id = gw.conversation("o-i")["id"].as_str().unwrap().to_string();
    let started = Instant::now();
    let blob = loop {
        let m = gw.messages(&id);
        if let Some(b) = m[0]["image"]["blob"].as_str() {
            break b.to_string();
        }
        assert!(started.elapsed() < WAIT, "no blob: {m:?}");
        std::thread::sleep(Duration::from_millis(50));
    };
    let media_id = r["media_id"].as_str().unwrap();
    let theirs = bytes(&format!("{}/__fake/media/{media_id}", gw.fake.base), None);
    let ours = bytes(
        &format!("{}/v1/wx/blobs/{blob}", gw.hub.base_url()),
        Some(&gw.owner.token),
    );
    assert_eq!(ours, theirs, "the customer's image, kept");
    assert_eq!(blob, sha256_hex(&theirs));
    gw.fake
        .post("/__fake/expire_media", json!({"media_id": media_id}));
    let again = bytes(
        &format!("{}/v1/wx/blobs/{blob}", gw.hub.base_url()),
        Some(&gw.owner.token),
    );
    assert_eq!(again, theirs, "kept after WeChat forgot it");

    // outbound: a blob, uploaded once, reused
    let (s, v) = gw.put_blob(PNG, "image/jpeg");
    assert_eq!(s, 400, "declared JPEG, is PNG: {v}");
    let (s, v) = gw.put_blob(PNG, "image/png");
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["mime"], "image/png");
    let sha = v["sha256"].as_str().unwrap().to_string();
    let image = json!({"touser": "o-i", "msgtype": "image", "image": {"media_id": format!("sha256:{sha}")}});
    let rows = gw.send_done(&id, "i1", std::slice::from_ref(&image));
    assert_eq!(rows[0]["state"], "sent", "{rows:?}");
    let rows = gw.send_done(&id, "i2", std::slice::from_ref(&image));
    assert_eq!(rows[0]["state"], "sent", "{rows:?}");
    assert_eq!(gw.stat("uploads"), 1, "uploaded once");
    let sent = gw.fake.sent_bodies();
    assert_eq!(sent[0]["image"]["media_id"], sent[1]["image"]["media_id"]);
    let first_id = sent[0]["image"]["media_id"].as_str().unwrap().to_string();
    assert!(!first_id.starts_with("sha256:"));
    let wire: Value = serde_json::from_str(rows[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(wire, sent[1], "the row shows the wire sent");
    // WeChat expired it (3 days): 40007, uploaded again, retried once
    gw.fake.post("/__fake/expire_media", json!({}));
    let rows = gw.send_done(&id, "i3", std::slice::from_ref(&image));
    assert_eq!(rows[0]["state"], "sent", "{rows:?}");
    assert_eq!(gw.stat("uploads"), 2, "uploaded again");
    let sent = gw.fake.sent_bodies();
    assert_ne!(sent[2]["image"]["media_id"], first_id.as_str());
    // an unknown blob is refused before anything is queued
    let missing = json!({"touser": "o-i", "msgtype": "image", "image": {"media_id": format!("sha256:{}", "0".repeat(64))}});
    let (s, e) = gw.send(&id, "i4", &[missing]);
    assert_eq!(s, 400, "{e}");
}

both!(a_stop_mid_send_leaves_it_unknown);
fn a_stop_mid_send_leaves_it_unknown(b: Backend) {
    let mut gw = Gw::start(b, 20_000);
    let appid = gw.app("crash", "plain", "json", &[]);
    gw.text(&appid, "o-c", "hi");
    let id = gw.conversation("o-c")["id"].as_str().unwrap().to_string();
    let path = "/cgi-bin/message/custom/send";
    gw.fake.post(
        "/__fake/inject",
        json!({"path": path, "count": 1, "delay_ms": 15_000}),
    );
    let (s, v) = gw.send(&id, "c1", &[text_body("o-c", "in flight")]);
    assert_eq!(s, 200, "{v}");
    let started = Instant::now();
    while gw.fake.calls(path).is_empty() {
        assert!(started.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.hub.kill();
    gw.hub.serve();
    let mid = v["messages"][0]["id"].as_i64().unwrap();
    let rows = gw.wait_final(&id, &[mid]);
    assert_eq!(rows[0]["state"], "unknown", "{rows:?}");
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(gw.fake.calls(path).len(), 1, "never sent again");
}

#[test]
fn two_processes_share_one_postgresql() {
    if !backend_ready(Backend::Pg, "two_processes_share_one_postgresql") {
        return;
    }
    let mut gw = Gw::start(Backend::Pg, 10_000);
    let appid = gw.app("pair", "safe", "xml", &[]);
    let port2 = gw.hub.serve_another();
    let url2 = format!("{}/wx/mp/pair", gw.hub.base_url_at(port2));
    let url1 = format!("{}/wx/mp/pair", gw.hub.base_url());
    let reg = |url: &str| {
        gw.fake.add_app(
            json!({"appid": appid, "secret": SECRET, "token": TOKEN, "aes_key": AES,
            "mode": "safe", "format": "xml", "push_url": url}),
        );
    };
    // the same push reaches both processes, back and forth
    let first = gw.text(&appid, "o-pg", "hello twice");
    for url in [&url2, &url1, &url2] {
        reg(url);
        let again = gw.push(
            &appid,
            "o-pg",
            "text",
            json!({"content": "hello twice", "msg_id": first["msg_id"], "create_time": first["create_time"]}),
        );
        assert_eq!(again["verdict"], "ok", "{again}");
    }
    let c = gw.conversation("o-pg");
    let id = c["id"].as_str().unwrap().to_string();
    let msgs = gw.messages(&id);
    assert_eq!(msgs.len(), 1, "one message: {msgs:?}");
    // one answer sent through both processes at once (a daemon retrying elsewhere): one reply
    let other = gw.owner.at(&gw.hub.base_url_at(port2));
    let body = json!({"idempotency_key": "same", "seen_inbound_id": msgs[0]["id"],
                      "parts": [{"body": text_body("o-pg", "one reply").to_string()}]});
    let path = format!("/v1/wx/conversations/{id}/send");
    let (a, bb) = std::thread::scope(|s| {
        let h1 = s.spawn(|| gw.owner.post(&path, &body));
        let h2 = s.spawn(|| other.post(&path, &body));
        (h1.join().unwrap(), h2.join().unwrap())
    });
    assert_eq!((a.0, bb.0), (200, 200), "{a:?} {bb:?}");
    assert_eq!(a.1["messages"][0]["id"], bb.1["messages"][0]["id"]);
    let mid = a.1["messages"][0]["id"].as_i64().unwrap();
    let rows = gw.wait_final(&id, &[mid]);
    assert_eq!(rows[0]["state"], "sent");
    // several answers from both processes: each sent once, in order per process
    for i in 0..4 {
        let c = if i % 2 == 0 { &gw.owner } else { &other };
        let (s, v) = c.post(
            &path,
            &json!({"idempotency_key": format!("k{i}"), "parts": [{"body": text_body("o-pg", &format!("r{i}")).to_string()}]}),
        );
        assert_eq!(s, 200, "{v}");
        gw.wait_final(&id, &[v["messages"][0]["id"].as_i64().unwrap()]);
    }
    let sent: Vec<String> = gw
        .fake
        .sent_bodies()
        .iter()
        .map(|b| b["text"]["content"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(sent, ["one reply", "r0", "r1", "r2", "r3"]);
    assert_eq!(
        gw.stat("stable_token_calls"),
        1,
        "one token for both processes"
    );
    gw.hub.kill_port(port2);
}

#[test]
fn wx_cli_refuses_bad_settings() {
    let gw = Gw::start(Backend::Sqlite, 10_000);
    let f = gw.hub.dir.path().join("s");
    std::fs::write(&f, "x").unwrap();
    let base = [
        "wx",
        "add",
        "bad",
        "--appid",
        "wx1",
        "--secret-file",
        f.to_str().unwrap(),
        "--token",
        TOKEN,
        "--format",
        "xml",
    ];
    for (extra, want) in [
        (vec!["--mode", "safe"], "--aes-key"),
        (
            vec!["--mode", "plain", "--api-base", "http://api.weixin.qq.com"],
            "https",
        ),
        (vec!["--mode", "weird"], "plain, compat or safe"),
        (
            vec!["--mode", "plain", "--transfer", "maybe"],
            "keyword:WORD",
        ),
        (vec!["--mode", "plain", "--agents", "nobody"], "no user"),
    ] {
        let mut args: Vec<&str> = base.to_vec();
        args.extend(extra);
        let o = gw.hub.cli(&args);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(want), "{args:?}: {err}");
    }
    assert_eq!(gw.hub.cli_ok(&["wx", "list"]), "");
}

both!(agents_take_assign_read_and_type);
fn agents_take_assign_read_and_type(b: Backend) {
    let gw = Gw::start(b, 10_000);
    let (lib, _) = gw.owner.library();
    let ann = gw
        .hub
        .join(&gw.hub.invite("viewer", &[&lib], Some("ann")), "ann-pc");
    let bob = gw
        .hub
        .join(&gw.hub.invite("viewer", &[&lib], Some("bob")), "bob-pc");
    let appid = gw.app("desk", "plain", "json", &["--agents", "owner,ann"]);
    gw.text(&appid, "o-d", "hello");
    let id = gw.conversation("o-d")["id"].as_str().unwrap().to_string();
    // bob answers for no app: sees nothing, may not touch it
    let (s, v) = bob.get("/v1/wx/conversations?scope=all");
    assert_eq!(
        (s, v["conversations"].as_array().unwrap().len()),
        (200, 0),
        "{v}"
    );
    let (s, _) = bob.get(&format!("/v1/wx/conversations/{id}"));
    assert_eq!(s, 404);
    let (s, _) = bob.post(&format!("/v1/wx/conversations/{id}/take"), &json!({}));
    assert_eq!(s, 404);
    let (_, apps) = bob.get("/v1/wx/apps");
    assert_eq!(apps["apps"], json!([]));
    // ann takes it; the owner cannot without force
    let (s, c) = ann.post(&format!("/v1/wx/conversations/{id}/take"), &json!({}));
    assert_eq!((s, c["assignee"].as_str()), (200, Some("ann")), "{c}");
    let (s, v) = ann.get("/v1/wx/conversations?scope=mine");
    assert_eq!((s, v["conversations"].as_array().unwrap().len()), (200, 1));
    let (_, v) = gw.owner.get("/v1/wx/conversations?scope=open");
    assert_eq!(v["conversations"].as_array().unwrap().len(), 0, "{v}");
    let (s, e) = gw.owner.post(
        &format!("/v1/wx/conversations/{id}/take"),
        &json!({"force": false}),
    );
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (409, Some("conflict")),
        "{e}"
    );
    let (s, e) = gw.send(&id, "x1", &[text_body("o-d", "mine?")]);
    assert_eq!(s, 409, "only the assignee answers: {e}");
    let (s, c) = gw.owner.post(
        &format!("/v1/wx/conversations/{id}/take"),
        &json!({"force": true}),
    );
    assert_eq!((s, c["assignee"].as_str()), (200, Some("owner")), "{c}");
    // hand over to bob: not an agent of the app
    let (s, e) = gw.owner.post(
        &format!("/v1/wx/conversations/{id}/assign"),
        &json!({"to": "bob"}),
    );
    assert_eq!(s, 400, "{e}");
    let (s, c) = gw.owner.post(
        &format!("/v1/wx/conversations/{id}/assign"),
        &json!({"to": "ann"}),
    );
    assert_eq!((s, c["assignee"].as_str()), (200, Some("ann")), "{c}");
    let (s, c) = ann.post(
        &format!("/v1/wx/conversations/{id}/assign"),
        &json!({"to": null}),
    );
    assert_eq!((s, c["assignee"].clone()), (200, Value::Null), "{c}");
    // read
    assert_eq!(c["unread"], 1);
    let last = c["last_inbound_id"].as_i64().unwrap();
    let (s, c) = ann.post(
        &format!("/v1/wx/conversations/{id}/read"),
        &json!({"up_to": last}),
    );
    assert_eq!((s, c["unread"].as_i64()), (200, Some(0)), "{c}");
    // typing: within 30 s of the message, not twice in 15 s
    let (s, t) = ann.post(
        &format!("/v1/wx/conversations/{id}/typing"),
        &json!({"on": true}),
    );
    assert_eq!(
        (s, t["sent"].as_bool(), t["errcode"].as_i64()),
        (200, Some(true), Some(0)),
        "{t}"
    );
    let (_, t) = ann.post(
        &format!("/v1/wx/conversations/{id}/typing"),
        &json!({"on": true}),
    );
    assert_eq!(t["sent"], false, "{t}");
    let (_, t) = ann.post(
        &format!("/v1/wx/conversations/{id}/typing"),
        &json!({"on": false}),
    );
    assert_eq!(t["sent"], true, "{t}");
    assert_eq!(gw.stat("typing_calls"), 2);
    // bad requests name the problem
    let (s, e) = ann.post(
        &format!("/v1/wx/conversations/{id}/read"),
        &json!({"upto": 1}),
    );
    assert_eq!(s, 400, "{e}");
    let (s, e) = gw.owner.get("/v1/wx/conversations?scope=mine&x=1");
    assert_eq!(s, 400, "{e}");
    let (s, e) = gw.owner.get("/v1/wx/conversations?scope=some");
    assert_eq!(s, 400, "{e}");
    let (s, _) = gw.owner.get("/v1/wx/conversations/nosuch");
    assert_eq!(s, 404);
    let (s, e) = gw.send(&id, "", &[text_body("o-d", "x")]);
    assert_eq!(s, 400, "{e}");
    let (s, e) = gw.send(
        &id,
        "k",
        &[json!({"touser": "o-d", "msgtype": "news", "news": {}})],
    );
    assert_eq!(s, 400, "{e}");
    assert!(
        e["error"]["message"].as_str().unwrap().contains("msgtype"),
        "{e}"
    );
}

both!(no_agent_online_transfers);
fn no_agent_online_transfers(b: Backend) {
    let gw = Gw::start(b, 10_000);
    let appid = gw.app("night", "plain", "xml", &["--transfer", "no_agent"]);
    let t = gw.push(&appid, "o-n", "text", json!({"content": "anyone?"}));
    assert_eq!(t["verdict"], "transfer", "nobody has a stream open: {t}");
    let events = gw.owner.event_stream("wx");
    // the stream marks the device present when it opens; then a message stays with the agents
    let started = Instant::now();
    loop {
        let t = gw.push(&appid, "o-m", "text", json!({"content": "hello?"}));
        if t["verdict"] == "ok" {
            break;
        }
        assert!(started.elapsed() < WAIT, "{t}");
        std::thread::sleep(Duration::from_millis(100));
    }
    drop(events);
}

#[test]
fn pushes_on_the_wx_listener() {
    let fake = FakeWx::start();
    let mut hub = Hub::init(Backend::Sqlite, false, &[]);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let cfg_path = hub.path().join("hub.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["wx_listen"] = json!(format!("127.0.0.1:{port}"));
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    hub.serve();
    let gw = Gw {
        owner: hub.owner(),
        hub,
        fake,
    };
    let appid = gw.app("edge", "safe", "xml", &[]);
    let url = format!("http://127.0.0.1:{port}/wx/mp/edge");
    gw.fake.add_app(
        json!({"appid": appid, "secret": SECRET, "token": TOKEN, "aes_key": AES,
        "mode": "safe", "format": "xml", "push_url": url}),
    );
    let started = Instant::now();
    while raw_get(&format!("http://127.0.0.1:{port}/wx/health")).map(|r| r.0) != Ok(200) {
        assert!(started.elapsed() < WAIT);
        std::thread::sleep(Duration::from_millis(20));
    }
    gw.text(&appid, "o-e", "through the proxy");
    assert_eq!(
        gw.conversation("o-e")["last"]["preview"],
        "through the proxy"
    );
    // only WeChat's side is there
    let (s, _) = raw_get(&format!("http://127.0.0.1:{port}/v1/health")).unwrap();
    assert_eq!(s, 404);
    let (s, _) = raw_get(&format!("http://127.0.0.1:{port}/v1/wx/apps")).unwrap();
    assert_eq!(s, 404);
}
