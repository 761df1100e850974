//! WeChat conversations, the agents' side (docs/conversations.md): a real `quiver hub serve`
//! with a mini program added (`quiver hub wx add`, its API base the fake), a real
//! `quiver-fakewx` pushing the customer's messages and recording what WeChat receives, and
//! real `quiver` daemons as the agents' devices (`wx.*` methods, `quiver conversations`).
//! On SQLite and PostgreSQL, like the other hub tests.

use quiver_tests::fakewx::FakeWx;
use quiver_tests::hub::{Backend, Hub};
use quiver_tests::team::Member;
use quiver_tests::DaemonClient;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::net::TcpListener;
use std::time::{Duration, Instant};

use quiver_tests::both;

const APPID: &str = "wxconvtest0000001";
const CUSTOMER: &str = "oCustomer-Ann-0001";

use quiver_tests::PNG;

fn sha256_bytes(b: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(b)
        .iter()
        .map(|x| format!("{x:02x}"))
        .collect()
}

/// Serves `PNG` to every request on a loopback port (the template's image URL).
fn picture_server() -> String {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for s in l.incoming() {
            let Ok(mut s) = s else { continue };
            let mut buf = [0u8; 4096];
            let _ = s.read(&mut buf);
            let head = format!(
                "HTTP/1.1 200 OK\r\ncontent-type: image/png\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                PNG.len()
            );
            let _ = s.write_all(head.as_bytes());
            let _ = s.write_all(PNG);
        }
    });
    format!("http://127.0.0.1:{port}/pic.png")
}

/// A hub with the mini program `shop` (plain mode, JSON) pointed at the fake, and the fake
/// pushing to the hub.
fn hub_with_app(b: Backend) -> (Hub, FakeWx) {
    let h = Hub::start(b);
    let fake = FakeWx::start();
    let secret = h.path().join("..").join("secret.txt");
    std::fs::write(&secret, "s3cret-conv").unwrap();
    let out = h.cli_ok(&[
        "wx",
        "add",
        "shop",
        "--appid",
        APPID,
        "--secret-file",
        secret.to_str().unwrap(),
        "--token",
        "convtoken",
        "--mode",
        "plain",
        "--format",
        "json",
        "--api-base",
        &fake.base,
    ]);
    let push_url = format!("{}/wx/mp/shop", h.base_url());
    assert!(out.contains("/wx/mp/shop"), "wx add printed {out}");
    fake.add_app(json!({
        "appid": APPID, "secret": "s3cret-conv", "token": "convtoken",
        "mode": "plain", "format": "json", "push_url": push_url,
    }));
    (h, fake)
}

/// The customer writes `text`; the hub must have answered `success`.
fn customer_says(fake: &FakeWx, text: &str) -> Value {
    let r = fake.push(json!({"appid": APPID, "from": CUSTOMER, "kind": "text", "content": text}));
    assert_eq!(r["verdict"], "ok", "push: {r}");
    r
}

/// Waits for event `name` on `c` that satisfies `ok`.
fn wait_event(c: &mut DaemonClient, name: &str, ok: impl Fn(&Value) -> bool) -> Value {
    c.set_wait(Duration::from_secs(30));
    loop {
        let e = c.event(name);
        if ok(&e["data"]) {
            return e;
        }
    }
}

/// Calls `f` until it returns `Some`, for at most 30 s.
fn until<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn the_conversation(m: &mut Member) -> Value {
    let list = m.ok("wx.conversations", json!({"scope": "all"}));
    let convs = list["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert_eq!(convs.len(), 1, "{list}");
    convs[0].clone()
}

both!(a_customer_message_reaches_the_agent_and_a_template_reply_reaches_wechat);
fn a_customer_message_reaches_the_agent_and_a_template_reply_reaches_wechat(b: Backend) {
    let (h, fake) = hub_with_app(b);
    let mut alice = Member::new("conv-alice");
    let me = alice.join(&h.owner_invite, h.port, false)["user_name"].clone();
    let mut events = alice.sb.connect();
    let hello = alice.ok("hello", json!({"protocol": 1}));
    assert!(
        hello["capabilities"]
            .as_array()
            .unwrap()
            .contains(&json!("wx")),
        "{hello}"
    );
    let pic = picture_server();
    alice.ok(
        "templates.put",
        json!({"template": {"id": "thanks", "title": "Thanks", "parts": [
            {"type": "text", "text": "Hello {{customer.name}}, order {{order.id}} is on its way"},
            {"type": "image", "url": pic, "fallback": {"type": "text", "text": "(picture)"}},
        ]}}),
    );
    // no conversation yet
    let list = alice.ok("wx.conversations", json!({}));
    assert_eq!(list["conversations"], json!([]), "{list}");

    // the customer writes: the agent's daemon hears of it and lists it, unread
    customer_says(&fake, "你好, where is my order?");
    let e = wait_event(&mut events, "wx.changed", |d| d["kind"] == "message");
    let conv = the_conversation(&mut alice);
    let id = conv["id"].as_str().unwrap().to_string();
    assert_eq!(e["data"]["conversation"], id.as_str(), "{e}");
    assert_eq!(
        (
            conv["openid"].as_str(),
            conv["app"].as_str(),
            conv["unread"].as_u64()
        ),
        (Some(CUSTOMER), Some("shop"), Some(1)),
        "{conv}"
    );
    assert_eq!(conv["quota"]["left"], 5, "{conv}");
    let msgs = alice.ok("wx.messages", json!({"id": id}))["messages"].clone();
    assert_eq!(msgs.as_array().unwrap().len(), 1, "{msgs}");
    assert_eq!(
        msgs[0]["display"],
        json!({"kind": "text", "text": "你好, where is my order?"}),
        "{msgs}"
    );

    // the preview: the core's wechat-mp display, the missing variables named, the picture
    // fetched (not uploaded) and named by its hash
    let pv = alice.ok(
        "wx.preview",
        json!({"id": id, "template": "thanks", "values": {"customer.name": "Ann"}}),
    );
    let parts = pv["parts"].as_array().unwrap();
    assert_eq!(parts[0]["missing"], json!(["order.id"]), "{pv}");
    let png_sha = sha256_bytes(PNG);
    assert_eq!(
        parts[1]["display"],
        json!({"kind": "image", "url": null, "media_id": format!("sha256:{png_sha}")}),
        "{pv}"
    );
    let blob = alice.ok("wx.blob", json!({"sha256": png_sha}));
    assert_eq!(
        (blob["mime"].as_str(), blob["size"].as_u64()),
        (Some("image/png"), Some(PNG.len() as u64))
    );

    // a reply with a variable missing is refused before anything is sent
    let r = alice.call(
        "wx.reply",
        json!({"id": id, "template": "thanks", "idempotency_key": "k0"}),
    );
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    assert!(fake.calls("/cgi-bin/message/custom/send").is_empty());

    // the reply: rendered by the daemon, the picture uploaded once, both parts sent
    let values = json!({"customer.name": "Ann", "order.id": "42"});
    let r = alice.ok(
        "wx.reply",
        json!({"id": id, "template": "thanks", "values": values, "idempotency_key": "k1"}),
    );
    let sent = r["messages"].as_array().unwrap().clone();
    assert_eq!(sent.len(), 2, "{r}");
    let ids: Vec<Value> = sent.iter().map(|m| m["id"].clone()).collect();
    let done = until("both parts sent", || {
        let msgs = alice.ok("wx.messages", json!({"id": id}))["messages"].clone();
        let outs: Vec<Value> = msgs
            .as_array()
            .unwrap()
            .iter()
            .filter(|m| m["dir"] == "out")
            .cloned()
            .collect();
        (outs.len() == 2 && outs.iter().all(|m| m["state"] == "sent")).then_some(outs)
    });
    assert_eq!(done[0]["display"]["kind"], "text");
    assert_eq!(done[1]["display"]["kind"], "image");
    let bodies = fake.sent_bodies();
    assert_eq!(bodies.len(), 2, "{bodies:?}");
    assert_eq!(
        bodies[0],
        json!({"touser": CUSTOMER, "msgtype": "text",
               "text": {"content": "Hello Ann, order 42 is on its way"}})
    );
    assert_eq!(
        (bodies[1]["touser"].as_str(), bodies[1]["msgtype"].as_str()),
        (Some(CUSTOMER), Some("image"))
    );
    let media_id = bodies[1]["image"]["media_id"].as_str().unwrap().to_string();
    assert!(
        !media_id.starts_with("sha256:"),
        "the hub sent our hash to WeChat: {media_id}"
    );
    let uploads = fake.calls("/cgi-bin/media/upload");
    assert_eq!(uploads.len(), 1, "{uploads:?}");

    // the same key again: the same messages, nothing sent
    let again = alice.ok(
        "wx.reply",
        json!({"id": id, "template": "thanks", "values": values, "idempotency_key": "k1"}),
    );
    let again_ids: Vec<Value> = again["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].clone())
        .collect();
    assert_eq!(again_ids, ids);
    assert_eq!(fake.sent_bodies().len(), 2);

    // history: one row per part, platform wechat-mp, sent, the exact wire
    let hist = until("history rows sent", || {
        let h = alice.ok("history.list", json!({"platform": "wechat-mp"}));
        let rows = h["rows"].as_array().cloned().unwrap_or_default();
        (rows.len() == 2 && rows.iter().all(|r| r["state"] == "sent")).then_some(rows)
    });
    let text_row = hist.iter().find(|r| r["part_index"] == 0).unwrap();
    assert_eq!(
        (
            text_row["workspace"].as_str(),
            text_row["conversation"].as_str(),
            text_row["customer"].as_str()
        ),
        (Some("shop"), Some(id.as_str()), Some(CUSTOMER))
    );
    assert_eq!(
        serde_json::from_str::<Value>(text_row["payload"].as_str().unwrap()).unwrap(),
        bodies[0]
    );
    // quota: 5 after the message, 2 sent
    let conv = alice.ok("wx.conversation", json!({"id": id}));
    assert_eq!(conv["quota"]["left"], 3, "{conv}");
    assert_eq!(
        conv["assignee"], me,
        "the reply took the conversation: {conv}"
    );

    // the quota: three more messages go, the next is refused by the hub before WeChat
    alice.ok(
        "templates.put",
        json!({"template": {"id": "one", "title": "One", "parts": [{"type": "text", "text": "One moment"}]}}),
    );
    for k in ["q1", "q2", "q3"] {
        alice.ok(
            "wx.reply",
            json!({"id": id, "template": "one", "idempotency_key": k}),
        );
    }
    let r = alice.call(
        "wx.reply",
        json!({"id": id, "template": "one", "idempotency_key": "q4"}),
    );
    if r["error"]["code"] != "quota_exceeded" {
        let msgs = alice.ok("wx.messages", json!({"id": id}));
        let conv = alice.ok("wx.conversation", json!({"id": id}));
        panic!("the 6th message was not refused: {r}\nconversation: {conv}\nmessages: {msgs}");
    }
    assert_eq!(r["error"]["data"]["errcode"], 45047, "{r}");
    let refused = alice.ok(
        "history.list",
        json!({"platform": "wechat-mp", "state": "failed"}),
    );
    assert_eq!(refused["rows"].as_array().unwrap().len(), 1, "{refused}");
    until("the three sent", || {
        (fake.sent_bodies().len() == 5).then_some(())
    });
    assert_eq!(
        alice.ok("wx.conversation", json!({"id": id}))["quota"]["left"],
        0
    );

    // the customer sends a picture: the hub keeps it, the thread names it by its hash, and
    // the daemon serves its bytes
    let pushed = fake.push(json!({"appid": APPID, "from": CUSTOMER, "kind": "image",
        "image": "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGP4z8DwHwAFAAH/iZk9HQAAAABJRU5ErkJggg=="}));
    assert_eq!(pushed["verdict"], "ok", "{pushed}");
    let shown = until("the customer's picture kept", || {
        let msgs = alice.ok("wx.messages", json!({"id": id}))["messages"].clone();
        let last = msgs.as_array().unwrap().last().cloned()?;
        let media = last["display"]["media_id"].as_str()?.to_string();
        (last["dir"] == "in" && media.starts_with("sha256:")).then_some(media)
    });
    assert_eq!(
        shown,
        format!("sha256:{png_sha}"),
        "the same picture, the same hash"
    );
    let blob = alice.ok("wx.blob", json!({"sha256": shown}));
    assert_eq!(blob["sha256"], png_sha.as_str());
}

both!(agents_take_and_hand_over_and_the_cli_lists_shows_and_replies);
fn agents_take_and_hand_over_and_the_cli_lists_shows_and_replies(b: Backend) {
    let (h, fake) = hub_with_app(b);
    let mut alice = Member::new("conv-owner");
    let me = alice.join(&h.owner_invite, h.port, false)["user_name"].clone();
    let mut bob = Member::new("conv-bob");
    bob.join(&h.invite("editor", &["team"], Some("bob")), h.port, false);
    // the customer comes from a Sobot-style contact button: its session-from is shown
    let entered = fake.push(json!({"appid": APPID, "from": CUSTOMER, "kind": "enter",
        "session_from": "sobot|Ann|https://example.com/ann.png|{}"}));
    assert_eq!(entered["verdict"], "ok", "{entered}");
    customer_says(&fake, "hello?");
    let id = until("the conversation", || {
        let l = bob.ok("wx.conversations", json!({"scope": "open"}));
        l["conversations"][0]["id"].as_str().map(str::to_string)
    });

    // bob takes it; alice cannot without force, then does; alice hands it back; releases it
    let t = bob.ok("wx.take", json!({"id": id}));
    assert_eq!(t["assignee"], "bob", "{t}");
    assert_eq!(
        bob.ok("wx.conversations", json!({"scope": "mine"}))["conversations"][0]["id"],
        id.as_str()
    );
    let r = alice.call("wx.take", json!({"id": id}));
    assert_eq!(r["error"]["code"], "conflict", "{r}");
    alice.ok("wx.take", json!({"id": id, "force": true}));
    assert_eq!(
        alice.ok("wx.conversation", json!({"id": id}))["assignee"],
        me
    );
    alice.ok("wx.assign", json!({"id": id, "to": "bob"}));
    assert_eq!(
        bob.ok("wx.conversation", json!({"id": id}))["assignee"],
        "bob"
    );
    // bad input is named, not sent to the hub
    let r = bob.call("wx.assign", json!({"id": id}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    let r = bob.call("wx.take", json!({"id": "../v1/me"}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    let r = bob.call(
        "wx.conversation",
        json!({"id": "00000000-0000-0000-0000-000000000000"}),
    );
    assert_eq!(r["error"]["code"], "not_found", "{r}");

    // the command line (bob's daemon)
    bob.ok(
        "templates.put",
        json!({"template": {"id": "wait", "title": "Wait", "parts": [{"type": "text", "text": "One moment, {{customer.name}}"}]}}),
    );
    let o = bob.sb.run(&["conversations", "list", "--json"]);
    assert!(o.status.success(), "{}", o.stderr);
    let l: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(l["conversations"][0]["id"], id.as_str());
    let o = bob.sb.run(&["conversations", "list"]);
    let lines: Vec<&str> = o.stdout.lines().collect();
    assert!(lines[0].starts_with("ID"), "{}", o.stdout);
    assert!(
        lines[1].contains(&id) && lines[1].contains("bob") && lines[1].contains("5 left"),
        "{}",
        o.stdout
    );
    let o = bob.sb.run(&[
        "conversations",
        "reply",
        &id,
        "wait",
        "--var",
        "customer.name=Ann",
        "--key",
        "cli-1",
    ]);
    assert!(o.status.success(), "{} {}", o.stdout, o.stderr);
    assert!(
        o.stdout.starts_with("part 0 text: sent (message "),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains("key cli-1"), "{}", o.stdout);
    until("the CLI's reply at WeChat", || {
        (fake.sent_bodies()
            == vec![json!({"touser": CUSTOMER, "msgtype": "text", "text": {"content": "One moment, Ann"}})])
        .then_some(())
    });
    let o = bob.sb.run(&["conversations", "show", &id, "--json"]);
    let v: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(v["conversation"]["id"], id.as_str());
    assert_eq!(v["messages"].as_array().unwrap().len(), 3, "{v}");
    assert_eq!(v["conversation"]["session_from"]["nick_name"], "Ann", "{v}");
    let o = bob.sb.run(&["conversations", "show", &id]);
    assert!(o.stdout.contains(" in  hello?"), "{}", o.stdout);
    assert!(
        o.stdout
            .contains("\nsession from: sobot|Ann|https://example.com/ann.png|{}\n"),
        "{}",
        o.stdout
    );
    assert!(o.stdout.contains(" out One moment, Ann ["), "{}", o.stdout);
    // a template that does not exist: exit 1, the code named
    let o = bob.sb.run(&["conversations", "reply", &id, "nope"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.contains("(not_found)"), "{}", o.stderr);
    let o = bob.sb.run(&["conversations", "assign", &id, "--release"]);
    assert!(o.status.success(), "{}", o.stderr);
    assert_eq!(
        bob.ok("wx.conversation", json!({"id": id}))["assignee"],
        Value::Null
    );
}

#[test]
fn without_a_hub_the_wx_methods_say_so() {
    let mut m = Member::new("conv-nohub");
    let r = m.call("wx.conversations", json!({}));
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("quiver team join"),
        "{r}"
    );
    let r = m.call("wx.conversations", json!({"scope": "everything"}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    let o = m.sb.run(&["conversations", "list"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stderr.contains("(not_found)"), "{}", o.stderr);
}
