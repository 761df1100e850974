//! Sends: the meter paces them from `send.done`, the history records them durably.

use quiver_tests::{reserve_params, sha256_hex, wait_timeout, Sandbox};
use serde_json::json;
use std::time::{Duration, Instant};

fn payload(i: usize) -> String {
    format!(r#"{{"method":"sendMsg","type":"text","content":"message {i} ✓"}}"#)
}

#[test]
fn three_quick_sends_are_a_second_apart_from_done() {
    let sb = Sandbox::new("sends");
    let mut h = sb.host();
    let ws = "acme-support";
    let ids: Vec<i64> = (0..3)
        .map(|i| {
            let r = h.ok(
                "send.reserve",
                reserve_params(&format!("send-{i}"), ws, &payload(i)),
            );
            assert_eq!(r["state"], "queued", "{r}");
            r["send_id"].as_i64().unwrap()
        })
        .collect();
    // the rows exist before anything was sent
    let queued: i64 = sb
        .db()
        .query_row(
            "SELECT COUNT(*) FROM history WHERE state = 'queued'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(queued, 3);

    let mut last_done_sent_at: Option<Instant> = None;
    for &id in &ids {
        // poll like the background does: wait what the daemon says, then ask again
        let go_at = loop {
            let r = h.ok("send.begin", json!({"send_id": id}));
            if r["go"] == true {
                break Instant::now();
            }
            let delay = r["delay_ms"].as_u64().expect("delay_ms");
            assert!(delay > 0 && delay <= 2000, "{r}");
            std::thread::sleep(Duration::from_millis(delay));
        };
        if let Some(done) = last_done_sent_at {
            let gap = go_at.duration_since(done);
            assert!(
                gap >= Duration::from_millis(1000),
                "go {gap:?} after the previous done"
            );
        }
        // the page takes a moment to post the message
        std::thread::sleep(Duration::from_millis(30));
        last_done_sent_at = Some(Instant::now());
        let r = h.ok("send.done", json!({"send_id": id, "ok": true}));
        assert_eq!(r, json!({"send_id": id, "state": "sent"}));
    }

    // the same idempotency key again: the same send, no new row
    let r = h.ok("send.reserve", reserve_params("send-1", ws, &payload(1)));
    assert_eq!(r["send_id"], ids[1]);
    assert_eq!(r["state"], "sent");

    let db = sb.db();
    let mut stmt = db
        .prepare(
            "SELECT id, idempotency_key, template_id, revision, part_index, platform, workspace, \
             conversation, customer, payload, payload_sha256, state, error, queued_at, \
             released_at, sent_at FROM history ORDER BY id",
        )
        .unwrap();
    let rows: Vec<(i64, String, String, String, i64, i64)> = stmt
        .query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(9)?,
                r.get(10)?,
                r.get(11)?,
                r.get(14)?,
                r.get(15)?,
            ))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 3, "{rows:?}");
    for (i, (id, body, sha, state, released, sent)) in rows.iter().enumerate() {
        assert_eq!(*id, ids[i]);
        assert_eq!(body, &payload(i));
        assert_eq!(sha, &sha256_hex(&payload(i)));
        assert_eq!(state, "sent");
        assert!(sent >= released);
        if i > 0 {
            // the daemon's own clock: released at least 1000 ms after the previous was done
            let prev_sent = rows[i - 1].5;
            assert!(
                released - prev_sent >= 1000,
                "row {id}: {released} - {prev_sent}"
            );
        }
    }

    // errors a background can run into
    let r = h.call("send.begin", json!({"send_id": 424242}));
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    let r = h.call("send.done", json!({"send_id": ids[0], "ok": false}));
    assert_eq!(r["error"]["code"], "conflict", "{r}");
    let r = h.call(
        "send.reserve",
        json!({
        "idempotency_key": "x", "platform": "carrier-pigeon", "workspace": ws,
        "template_id": "greeting", "revision": 1, "part_index": 0, "payload": "p"}),
    );
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("carrier-pigeon"));
    let history = h.ok("history.list", json!({"limit": 2}));
    assert_eq!(history["rows"].as_array().unwrap().len(), 2);
    assert_eq!(history["rows"][0]["send_id"], ids[2]);
    h.finish();
}

#[test]
fn a_restart_requeues_queued_sends_and_fails_the_one_in_flight() {
    let sb = Sandbox::new("restart");
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let ws = "restart-ws";
    let a = c.ok("send.reserve", reserve_params("a", ws, "A"))["send_id"].clone();
    let b = c.ok("send.reserve", reserve_params("b", ws, "B"))["send_id"].clone();
    let x = c.ok("send.reserve", reserve_params("x", ws, "X"))["send_id"].clone();
    assert_eq!(c.ok("send.begin", json!({"send_id": a}))["go"], true);
    assert_eq!(
        c.ok("send.cancel", json!({"send_id": x}))["state"],
        "cancelled"
    );
    drop(c);
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());

    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let rows = c.ok("history.list", json!({}))["rows"].clone();
    let state = |id: &serde_json::Value| {
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| &r["send_id"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(state(&a)["state"], "failed");
    assert_eq!(
        state(&a)["error"],
        "daemon restarted while sending; outcome unknown"
    );
    assert_eq!(state(&b)["state"], "queued");
    assert_eq!(state(&x)["state"], "cancelled");
    // b is still in line, and goes once the interval since a's release has passed
    let t = Instant::now();
    loop {
        let r = c.ok("send.begin", json!({"send_id": b}));
        if r["go"] == true {
            break;
        }
        std::thread::sleep(Duration::from_millis(r["delay_ms"].as_u64().unwrap()));
        assert!(t.elapsed() < Duration::from_secs(5), "b never went");
    }
    assert_eq!(
        c.ok("send.done", json!({"send_id": b, "ok": true}))["state"],
        "sent"
    );
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}
