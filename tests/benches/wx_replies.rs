//! 0 duplicate sends across 1,000 replies with injected timeouts and restarts (issue 11), against
//! a real `quiver hub serve` (SQLite; PostgreSQL with `QUIVER_TEST_PG_URL`) and the real fake
//! WeChat (`quiver-fakewx`).
//!
//! `QUIVER_BIN=target/release/quiver cargo bench -p quiver-tests --bench wx_replies`
//! (`WX_REPLIES`, default 1000).
//!
//! 200 customers write once each (5 replies allowed each). Each reply is a `send` with its own
//! idempotency key; every 10th has the fake wait 1 s before answering (past the hub's 300 ms
//! `wx_api_timeout_ms`: an unknown outcome), every 10th + 5 has the fake drop the connection
//! after acting on it, and every 100th is followed at once by a SIGKILL of the hub and a
//! restart. Then every reply is sent again with the same key, as an agent's retry would be.
//! Counted at the end, from the fake's record of what it delivered: the replies delivered more
//! than once (target 0), and the parts' states at the hub.

#![allow(clippy::print_stdout)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use quiver_tests::fakewx::FakeWx;
use quiver_tests::hub::{backend_ready, Backend, Client, Hub};
use serde_json::{json, Value};

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(30)))
        .build()
        .new_agent()
}

/// POST with the device's token, retried while the hub is away (a restart).
fn post(c: &Client, a: &ureq::Agent, path: &str, body: &Value) -> (u16, Value) {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        let r = a
            .post(format!("{}{path}", c.base))
            .header("Authorization", format!("Bearer {}", c.token))
            .content_type("application/json")
            .send(body.to_string());
        match r {
            Ok(mut r) => {
                let s = r.status().as_u16();
                let t = r.body_mut().read_to_string().unwrap_or_default();
                return (s, serde_json::from_str(&t).unwrap_or(Value::String(t)));
            }
            Err(e) => {
                assert!(Instant::now() < until, "{path}: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn get(c: &Client, a: &ureq::Agent, path: &str) -> Value {
    let until = Instant::now() + Duration::from_secs(60);
    loop {
        match a
            .get(format!("{}{path}", c.base))
            .header("Authorization", format!("Bearer {}", c.token))
            .call()
        {
            Ok(mut r) if r.status() == 200 => {
                let t = r.body_mut().read_to_string().unwrap_or_default();
                return serde_json::from_str(&t).unwrap();
            }
            _ => {
                assert!(Instant::now() < until, "{path}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

fn run(b: Backend, n: usize) {
    let fake = FakeWx::start();
    let mut hub = Hub::init(b, false, &[]);
    let cfg_path = hub.path().join("hub.json");
    let mut cfg: Value =
        serde_json::from_str(&std::fs::read_to_string(&cfg_path).unwrap()).unwrap();
    cfg["wx_api_timeout_ms"] = json!(300);
    std::fs::write(&cfg_path, cfg.to_string()).unwrap();
    hub.serve();
    let owner = hub.owner();
    let secret = hub.dir.path().join("secret");
    std::fs::write(&secret, "s3cret").unwrap();
    let appid = "wxreplies00000001";
    hub.cli_ok(&[
        "wx",
        "add",
        "shop",
        "--appid",
        appid,
        "--secret-file",
        secret.to_str().unwrap(),
        "--token",
        "replyToken1",
        "--mode",
        "plain",
        "--format",
        "json",
        "--api-base",
        &fake.base,
    ]);
    fake.add_app(
        json!({"appid": appid, "secret": "s3cret", "token": "replyToken1",
        "mode": "plain", "format": "json", "push_url": format!("{}/wx/mp/shop", hub.base_url())}),
    );
    let customers = n.div_ceil(5);
    for i in 0..customers {
        let r = fake.push(
            json!({"appid": appid, "from": format!("oC{i:04}"), "kind": "text", "content": "hi"}),
        );
        assert_eq!(r["verdict"], "ok", "{r}");
    }
    let a = agent();
    let convs = get(&owner, &a, "/v1/wx/conversations?scope=all");
    let by_openid: HashMap<String, String> = convs["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["openid"].as_str().unwrap().to_string(),
                c["id"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    let reply = |i: usize| {
        let openid = format!("oC{:04}", i / 5);
        let conv = by_openid[&openid].clone();
        let body =
            json!({"touser": openid, "msgtype": "text", "text": {"content": format!("reply {i}")}});
        (
            conv,
            json!({"idempotency_key": format!("r{i}"), "parts": [{"body": body.to_string()}]}),
        )
    };
    let t0 = Instant::now();
    let (mut delays, mut drops, mut restarts) = (0, 0, 0);
    for i in 0..n {
        if i % 10 == 0 {
            fake.post(
                "/__fake/inject",
                json!({"path": "/cgi-bin/message/custom/send", "delay_ms": 1000}),
            );
            delays += 1;
        } else if i % 10 == 5 {
            fake.post(
                "/__fake/inject",
                json!({"path": "/cgi-bin/message/custom/send", "drop": true}),
            );
            drops += 1;
        }
        let (conv, send) = reply(i);
        let (s, v) = post(
            &owner,
            &a,
            &format!("/v1/wx/conversations/{conv}/send"),
            &send,
        );
        assert!(s == 200 || s == 409, "send {i}: {s} {v}");
        if i % 100 == 99 {
            hub.kill();
            hub.serve();
            restarts += 1;
        }
    }
    // every reply again, as a retry: the same key
    for i in 0..n {
        let (conv, send) = reply(i);
        let (s, v) = post(
            &owner,
            &a,
            &format!("/v1/wx/conversations/{conv}/send"),
            &send,
        );
        assert!(s == 200 || s == 409, "retry {i}: {s} {v}");
    }
    // until every part has an outcome
    let until = Instant::now() + Duration::from_secs(120);
    let states = loop {
        let mut states: HashMap<String, usize> = HashMap::new();
        for conv in by_openid.values() {
            let m = get(
                &owner,
                &a,
                &format!("/v1/wx/conversations/{conv}/messages?after=0&limit=500"),
            );
            for msg in m["messages"].as_array().unwrap() {
                if msg["dir"] == "out" {
                    *states
                        .entry(msg["state"].as_str().unwrap_or("?").to_string())
                        .or_default() += 1;
                }
            }
        }
        let busy = states.get("queued").copied().unwrap_or(0)
            + states.get("sending").copied().unwrap_or(0);
        if busy == 0 || Instant::now() > until {
            break states;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    let took = t0.elapsed();
    let mut delivered: HashMap<String, usize> = HashMap::new();
    for body in fake.sent_bodies() {
        *delivered
            .entry(body["text"]["content"].as_str().unwrap_or("").to_string())
            .or_default() += 1;
    }
    let twice = delivered.values().filter(|c| **c > 1).count();
    let mut st: Vec<_> = states.into_iter().collect();
    st.sort();
    println!(
        "{:<11} {n} replies ({delays} delayed past the timeout, {drops} dropped after acting, {restarts} hub restarts, then {n} retries with the same keys) in {:.1} s: delivered {} distinct, {twice} delivered more than once; parts at the hub: {st:?}",
        format!("{b:?}"),
        took.as_secs_f64(),
        delivered.len()
    );
    assert_eq!(twice, 0, "duplicate sends");
}

fn main() {
    let n: usize = std::env::var("WX_REPLIES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1000);
    for b in [Backend::Sqlite, Backend::Pg] {
        if b == Backend::Pg && !backend_ready(b, "bench") {
            continue;
        }
        run(b, n);
    }
}
