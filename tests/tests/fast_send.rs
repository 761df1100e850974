//! The fast send path (protocol 1.3): `send.reserve` with `"begin": true` grants a free slot in
//! the same round trip, and every guarantee of the three-step path holds.

use quiver_shared::meter::Rule;
use quiver_shared::proto::{MeterReleased, ReserveReply, SendState};
use quiver_tests::{reserve_params, wait_timeout, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(10);

fn go_now(key: &str, ws: &str) -> Value {
    let mut p = reserve_params(key, ws, &format!("{{\"text\":\"{key}\"}}"));
    p["begin"] = json!(true);
    p
}

fn reserve_reply(v: Value) -> ReserveReply {
    serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("{e}: {v}"))
}

/// (state, released_at, done_at, error) of a send, as the daemon recorded it.
fn row(sb: &Sandbox, id: i64) -> (String, Option<i64>, Option<i64>, Option<String>) {
    sb.db()
        .query_row(
            "SELECT state, released_at, done_at, error FROM history WHERE id = ?1",
            [id],
            |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)),
        )
        .unwrap()
}

#[test]
fn a_free_slot_goes_in_one_round_trip() {
    let sb = Sandbox::new("fast-free");
    let mut h = sb.host();
    let r = reserve_reply(h.ok("send.reserve", go_now("k1", "ws")));
    assert_eq!(r.state, SendState::Sending);
    assert_eq!(r.go, Some(true));
    assert_eq!((r.delay_ms, r.replayed), (0, false));
    // durable before the reply: the row is `sending` with its release time
    let (state, released, _, _) = row(&sb, r.send_id);
    assert_eq!(state, "sending");
    assert!(released.is_some());
    // the slot was granted: send.begin does not grant it again
    let e = h.call("send.begin", json!({"send_id": r.send_id}));
    assert_eq!(e["error"]["code"], "conflict", "{e}");
    assert_eq!(e["error"]["data"]["state"], "sending", "{e}");
    let d = h.ok("send.done", json!({"send_id": r.send_id, "ok": true}));
    assert_eq!(d, json!({"send_id": r.send_id, "state": "sent"}));
    // without `begin` the reply is as it always was: queued, no `go`
    let q = h.ok(
        "send.reserve",
        reserve_params("k2", "ws", "{\"text\":\"k2\"}"),
    );
    assert_eq!(q["state"], "queued", "{q}");
    assert!(q.get("go").is_none(), "{q}");
}

#[test]
fn a_busy_slot_queues_and_wakes_on_meter_released_at_every_connection() {
    let sb = Sandbox::new("fast-busy");
    let mut h = sb.host(); // the browser's connection: it only listens here
    h.event("daemon.up", WAIT);
    let mut c = sb.connect();
    let a = reserve_reply(c.ok("send.reserve", go_now("a", "ws")));
    assert_eq!(a.go, Some(true));
    let b = reserve_reply(c.ok("send.reserve", go_now("b", "ws")));
    assert_eq!((b.state, b.go), (SendState::Queued, Some(false)));
    assert!(b.delay_ms > 0, "{b:?}");
    assert_eq!(row(&sb, b.send_id).0, "queued");
    c.ok("send.done", json!({"send_id": a.send_id, "ok": true}));
    // the event reaches the other connection (and the browser through the host) and says
    // who is next and when
    let ev = h.next_event("meter.released", WAIT);
    let rel: MeterReleased = serde_json::from_value(ev["data"].clone()).unwrap();
    assert_eq!(rel.send_id, Some(a.send_id));
    assert_eq!(rel.state, Some(SendState::Sent));
    let next = rel.next.expect("a next send");
    assert_eq!(next.send_id, b.send_id);
    assert!(next.delay_ms > 0);
    // the waiting queue sleeps what the event says, then begins
    std::thread::sleep(Duration::from_millis(next.delay_ms));
    let mut began = c.ok("send.begin", json!({"send_id": b.send_id}));
    while began["go"] != true {
        std::thread::sleep(Duration::from_millis(began["delay_ms"].as_u64().unwrap()));
        began = c.ok("send.begin", json!({"send_id": b.send_id}));
    }
    c.ok("send.done", json!({"send_id": b.send_id, "ok": true}));
    let (_, _, a_done, _) = row(&sb, a.send_id);
    let (_, b_released, _, _) = row(&sb, b.send_id);
    assert!(b_released.unwrap() - a_done.unwrap() >= Rule::UDESK.min_interval_ms as i64);
}

#[test]
fn a_replayed_go_now_reserve_is_never_granted_twice() {
    let sb = Sandbox::new("fast-replay");
    let mut h = sb.host();
    let first = reserve_reply(h.ok("send.reserve", go_now("once", "ws")));
    assert_eq!(first.go, Some(true));
    // the reply was lost and the background retries: the same send, still sending, no go
    let again = reserve_reply(h.ok("send.reserve", go_now("once", "ws")));
    assert_eq!(again.send_id, first.send_id);
    assert_eq!(again.state, SendState::Sending);
    assert_eq!((again.go, again.replayed), (Some(false), true));
    h.ok("send.done", json!({"send_id": first.send_id, "ok": true}));
    let after = reserve_reply(h.ok("send.reserve", go_now("once", "ws")));
    assert_eq!((after.state, after.go), (SendState::Sent, Some(false)));
    let rows: i64 = sb
        .db()
        .query_row(
            "SELECT COUNT(*) FROM history WHERE idempotency_key = 'once'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(rows, 1);
}

#[test]
fn a_restart_between_go_now_and_done_leaves_the_outcome_to_the_late_report() {
    let sb = Sandbox::new("fast-restart");
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let r = reserve_reply(c.ok("send.reserve", go_now("r", "ws")));
    assert_eq!(r.go, Some(true));
    drop(c);
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());

    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let (state, _, _, error) = row(&sb, r.send_id);
    assert_eq!(state, "failed");
    assert_eq!(
        error.as_deref(),
        Some("daemon restarted while sending; outcome unknown")
    );
    // a retry of the reservation is not a new grant
    let again = reserve_reply(c.ok("send.reserve", go_now("r", "ws")));
    assert_eq!((again.state, again.go), (SendState::Failed, Some(false)));
    // the browser knew it posted: recorded as sent
    let done = c.ok("send.done", json!({"send_id": r.send_id, "ok": true}));
    assert_eq!(done["state"], "sent", "{done}");
    assert_eq!(row(&sb, r.send_id).0, "sent");
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}

/// Go-now sends back to back in one Udesk workspace: the daemon's own record shows every
/// release at least the rule's interval after the previous send's done.
#[test]
fn udesk_pace_holds_with_go_now() {
    let sb = Sandbox::new("fast-pace");
    let mut h = sb.host();
    let mut ids = Vec::new();
    for i in 0..4 {
        let r = reserve_reply(h.ok("send.reserve", go_now(&format!("p{i}"), "pace")));
        if r.go != Some(true) {
            assert_eq!(r.state, SendState::Queued);
            // wait for our turn as a queue would: sleep what the daemon says, then begin
            let mut delay = r.delay_ms;
            loop {
                std::thread::sleep(Duration::from_millis(delay));
                let b = h.ok("send.begin", json!({"send_id": r.send_id}));
                if b["go"] == true {
                    break;
                }
                delay = b["delay_ms"].as_u64().unwrap();
            }
        }
        h.ok("send.done", json!({"send_id": r.send_id, "ok": true}));
        ids.push(r.send_id);
    }
    let rows: Vec<_> = ids.iter().map(|&id| row(&sb, id)).collect();
    for w in rows.windows(2) {
        let (prev_done, next_released) = (w[0].2.unwrap(), w[1].1.unwrap());
        assert!(
            next_released - prev_done >= Rule::UDESK.min_interval_ms as i64,
            "released {next_released} only {} ms after the previous done {prev_done}",
            next_released - prev_done
        );
    }
}
