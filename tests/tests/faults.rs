//! Faults against the real binary: two hosts on one meter, the daemon killed in the middle of a
//! queue, a full disk, a read-only data directory.

use quiver_tests::{integrity, reserve_params, wait_timeout, Sandbox, Tmpfs};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Two browsers (two hosts) send to the same workspace at the same time: one meter paces them,
/// so no two posts are closer than the rule allows, by the test's clock and by the daemon's.
#[test]
fn two_hosts_share_one_meter() {
    let sb = Arc::new(Sandbox::new("twometer"));
    // (go received, done sent) of every send, by the test's clock
    let log: Arc<Mutex<Vec<(Instant, Instant)>>> = Arc::default();
    let mut hosts = vec![sb.host(), sb.host()];
    for h in &mut hosts {
        h.ok("hello", json!({"protocol": 1}));
    }
    let threads: Vec<_> = hosts
        .into_iter()
        .enumerate()
        .map(|(n, mut h)| {
            let log = log.clone();
            std::thread::spawn(move || {
                let ids: Vec<Value> = (0..2)
                    .map(|i| {
                        let key = format!("host{n}-{i}");
                        h.ok("send.reserve", reserve_params(&key, "shared-ws", &key))["send_id"]
                            .clone()
                    })
                    .collect();
                for id in ids {
                    let go = h.begin_when_allowed(&id, Duration::from_secs(20));
                    // the page takes a moment to post
                    std::thread::sleep(Duration::from_millis(20));
                    let done = Instant::now();
                    log.lock().unwrap().push((go, done));
                    assert_eq!(
                        h.ok("send.done", json!({"send_id": id, "ok": true}))["state"],
                        "sent"
                    );
                }
                h.finish();
            })
        })
        .collect();
    for t in threads {
        t.join().expect("host thread");
    }
    let mut log = log.lock().unwrap().clone();
    log.sort();
    assert_eq!(log.len(), 4);
    for w in log.windows(2) {
        let gap = w[1].0.duration_since(w[0].1);
        // `done` was taken before send.done went out, so the daemon's gap is at least this
        assert!(
            gap >= Duration::from_millis(980),
            "a send went {gap:?} after the previous was done"
        );
    }
    // the daemon's own record: released at least 1000 ms after the previous send was done
    let db = sb.db();
    let mut stmt = db
        .prepare("SELECT released_at, done_at FROM history ORDER BY released_at")
        .unwrap();
    let rows: Vec<(i64, i64)> = stmt
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows.len(), 4);
    for w in rows.windows(2) {
        assert!(w[1].0 - w[0].1 >= 1000, "{rows:?}");
    }
}

/// The daemon is SIGKILLed with 5 sends reserved, 2 sent and 1 in flight. After a restart the
/// background retries its reservations: every send keeps its row, the 2 sent stay sent (never
/// sent again, counted once), the one in flight is failed as unknown (never re-sent), the 2
/// queued go out in order and still paced, and the history has exactly 5 rows.
#[test]
fn sigkill_in_the_middle_of_a_queue_loses_and_repeats_nothing() {
    let sb = Sandbox::new("sigkill");
    let ws = "kill-ws";
    let keys: Vec<String> = (0..5).map(|i| format!("kill-{i}")).collect();
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let uses_before = usage(&mut c);
    let ids: Vec<Value> = keys
        .iter()
        .map(|k| c.ok("send.reserve", reserve_params(k, ws, k))["send_id"].clone())
        .collect();
    for id in &ids[..2] {
        c.begin_when_allowed(id, Duration::from_secs(10));
        assert_eq!(
            c.ok("send.done", json!({"send_id": id, "ok": true}))["state"],
            "sent"
        );
    }
    c.begin_when_allowed(&ids[2], Duration::from_secs(10));
    // the page is posting send 2 when the daemon dies
    d.kill().unwrap();
    d.wait().unwrap();
    drop(c);

    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    // the background retries every reservation it had
    let states: Vec<(Value, Value)> = keys
        .iter()
        .map(|k| {
            let r = c.ok("send.reserve", reserve_params(k, ws, k));
            (r["send_id"].clone(), r["state"].clone())
        })
        .collect();
    let want: Vec<(Value, Value)> = ids
        .iter()
        .zip(["sent", "sent", "failed", "queued", "queued"])
        .map(|(id, s)| (id.clone(), json!(s)))
        .collect();
    assert_eq!(states, want);
    // the one in flight is never granted again
    let r = c.call("send.begin", json!({"send_id": ids[2]}));
    assert_eq!(r["error"]["code"], "conflict", "{r}");
    for id in &ids[3..] {
        c.begin_when_allowed(id, Duration::from_secs(10));
        assert_eq!(
            c.ok("send.done", json!({"send_id": id, "ok": true}))["state"],
            "sent"
        );
    }
    assert_eq!(
        usage(&mut c),
        uses_before + 4,
        "each sent first part counted once"
    );
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());

    let db = sb.db();
    let mut stmt = db
        .prepare(
            "SELECT idempotency_key, state, error, released_at, done_at FROM history ORDER BY id",
        )
        .unwrap();
    type Row = (String, String, Option<String>, Option<i64>, Option<i64>);
    let rows: Vec<Row> = stmt
        .query_map([], |r| {
            Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
        })
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    let got: Vec<(&str, &str)> = rows.iter().map(|r| (r.0.as_str(), r.1.as_str())).collect();
    assert_eq!(
        got,
        vec![
            ("kill-0", "sent"),
            ("kill-1", "sent"),
            ("kill-2", "failed"),
            ("kill-3", "sent"),
            ("kill-4", "sent"),
        ]
    );
    assert_eq!(
        rows[2].2.as_deref(),
        Some("daemon restarted while sending; outcome unknown")
    );
    // paced across the restart too: kill-3 went a second after kill-2 was given up on
    let (done2, rel3) = (rows[2].4.unwrap(), rows[3].3.unwrap());
    assert!(rel3 - done2 >= 1000, "{rows:?}");
    assert!(rows[4].3.unwrap() - rows[3].4.unwrap() >= 1000, "{rows:?}");
    assert_eq!(integrity(&sb.data.join("quiver.db")), "ok");
}

/// The daemon is SIGKILLed after `send.begin` said go and before the browser reported
/// `send.done`. After the restart the row says "outcome unknown"; the browser's report (it
/// posted, or it did not) is what the history then records, once: the slot is never granted
/// again and the other outcome is refused.
#[test]
fn a_report_after_a_restart_records_what_the_browser_knows() {
    let sb = Sandbox::new("late-done");
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let uses_before = usage(&mut c);
    // two workspaces, so both sends may be in flight at once
    let posted = c.ok("send.reserve", reserve_params("late-ok", "ws-a", "p-ok"))["send_id"].clone();
    let lost = c.ok("send.reserve", reserve_params("late-no", "ws-b", "p-no"))["send_id"].clone();
    c.begin_when_allowed(&posted, Duration::from_secs(10));
    c.begin_when_allowed(&lost, Duration::from_secs(10));
    d.kill().unwrap();
    d.wait().unwrap();
    drop(c);

    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let row = |c: &mut quiver_tests::DaemonClient, id: &Value| {
        let rows = c.ok("history.list", json!({}))["rows"].clone();
        rows.as_array()
            .unwrap()
            .iter()
            .find(|r| r["send_id"] == *id)
            .cloned()
            .unwrap()
    };
    assert_eq!(
        row(&mut c, &posted)["error"],
        "daemon restarted while sending; outcome unknown"
    );
    // the background reports what the page told it
    let r = c.ok("send.done", json!({"send_id": posted, "ok": true}));
    assert_eq!(r, json!({"send_id": posted, "state": "sent"}));
    let r = c.ok(
        "send.done",
        json!({"send_id": lost, "ok": false, "error": "the assistant frame is gone"}),
    );
    assert_eq!(r, json!({"send_id": lost, "state": "failed"}));
    let (a, b) = (row(&mut c, &posted), row(&mut c, &lost));
    assert_eq!(
        (&a["state"], &a["error"]),
        (&json!("sent"), &Value::Null),
        "{a}"
    );
    assert_eq!(
        (&b["state"], &b["error"]),
        (&json!("failed"), &json!("the assistant frame is gone")),
        "{b}"
    );
    assert!(a["sent_at"].as_u64().is_some(), "{a}");
    // a retried report gets the same answer; the other outcome is refused
    let r = c.ok("send.done", json!({"send_id": posted, "ok": true}));
    assert_eq!(r["state"], "sent");
    let r = c.call("send.done", json!({"send_id": posted, "ok": false}));
    assert_eq!(r["error"]["code"], "conflict", "{r}");
    let r = c.call("send.done", json!({"send_id": lost, "ok": true}));
    assert_eq!(r["error"]["code"], "conflict", "{r}");
    // never granted again, never a second row
    for id in [&posted, &lost] {
        let r = c.call("send.begin", json!({"send_id": id}));
        assert_eq!(r["error"]["code"], "conflict", "{r}");
    }
    let r = c.ok("send.reserve", reserve_params("late-ok", "ws-a", "p-ok"));
    assert_eq!((&r["send_id"], &r["state"]), (&posted, &json!("sent")));
    assert_eq!(
        usage(&mut c),
        uses_before + 1,
        "the posted send counted once"
    );
    let n: i64 = sb
        .db()
        .query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 2);
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}

/// The same through the native host, as the extension's background does it: the daemon the
/// host started is SIGKILLed after go; the background's `send.done` gets `daemon_unavailable`
/// (or waits), the host restarts the daemon and says `daemon.up`, the background retries
/// (`requestRetrying`) and the history says `sent`.
#[test]
fn a_report_through_the_host_after_a_daemon_crash_is_recorded_sent() {
    let sb = Sandbox::new("late-done-host");
    let mut h = sb.host();
    h.ok("hello", json!({"protocol": 1}));
    let id = h.ok("send.reserve", reserve_params("host-late", "ws-h", "p"))["send_id"].clone();
    h.begin_when_allowed(&id, Duration::from_secs(10));
    let pid = sb.daemon_pid().expect("daemon.pid");
    let st = std::process::Command::new("kill")
        .args(["-9", &pid.to_string()])
        .status()
        .unwrap();
    assert!(st.success());
    h.next_event("daemon.down", Duration::from_secs(10));
    // the background's reportDone: retry recoverable errors once the daemon is up again
    let until = Instant::now() + Duration::from_secs(30);
    let done = loop {
        let r = h.call("send.done", json!({"send_id": id, "ok": true}));
        match r["error"]["code"].as_str() {
            None => break r["result"].clone(),
            Some("daemon_unavailable") if Instant::now() < until => {
                h.next_event("daemon.up", Duration::from_secs(15));
            }
            Some(_) => panic!("{r}"),
        }
    };
    assert_eq!(done, json!({"send_id": id, "state": "sent"}));
    let rows = h.ok("history.list", json!({}))["rows"].clone();
    assert_eq!(rows[0]["send_id"], id);
    assert_eq!(rows[0]["state"], "sent", "{rows}");
    h.finish();
}

fn usage(c: &mut quiver_tests::DaemonClient) -> u64 {
    c.ok("templates.get", json!({"id": "greeting"}))["usage_count"]
        .as_u64()
        .unwrap()
}

/// The data directory's disk fills up: sends are refused with `storage_unavailable` (kind
/// `full`) and a message that says so, the daemon keeps serving, every acknowledged send is in
/// the database, and the database is sound. Simulated with a 2 MiB tmpfs (needs root).
#[test]
fn a_full_disk_is_reported_and_corrupts_nothing() {
    let sb = Sandbox::new("full");
    let Some(_fs) = Tmpfs::mount(&sb.data, "size=2m,mode=0700") else {
        return;
    };
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let payload = "x".repeat(200 * 1024);
    let mut acknowledged = 0;
    let err = loop {
        let r = c.call(
            "send.reserve",
            reserve_params(
                &format!("full-{acknowledged}"),
                &format!("ws-{acknowledged}"),
                &payload,
            ),
        );
        if r.get("error").is_some() {
            break r["error"].clone();
        }
        acknowledged += 1;
        assert!(acknowledged < 50, "the disk never filled up");
    };
    assert!(acknowledged >= 1, "nothing fitted at all: {err}");
    assert_eq!(err["code"], "storage_unavailable", "{err}");
    assert_eq!(err["data"]["kind"], "full", "{err}");
    let msg = err["message"].as_str().unwrap();
    assert!(
        msg.contains("disk is full") && msg.contains("quiver.db"),
        "{msg}"
    );
    // still serving: reads work, and the log says what happened
    assert_eq!(c.ok("hello", json!({"protocol": 1}))["protocol"], 1);
    // (pages stop at 768 KiB: follow the cursor)
    let mut rows = 0;
    let mut cursor = Value::Null;
    loop {
        let mut p = json!({"limit": 500});
        if !cursor.is_null() {
            p["cursor"] = cursor;
        }
        let page = c.ok("history.list", p);
        rows += page["rows"].as_array().unwrap().len();
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            break;
        }
    }
    assert_eq!(rows, acknowledged);
    drop(c);
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
    assert_eq!(integrity(&sb.data.join("quiver.db")), "ok");
    let n: i64 = sb
        .db()
        .query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(
        n as usize, acknowledged,
        "every acknowledged send, and only those"
    );
}

/// A read-only data directory: the daemon refuses to start and names the directory; the
/// database it left there is untouched and sound.
#[test]
fn a_read_only_data_dir_is_named_and_left_sound() {
    let sb = Sandbox::new("readonly");
    let Some(fs) = Tmpfs::mount(&sb.data, "size=8m,mode=0700") else {
        return;
    };
    let mut d = sb.daemon_foreground();
    sb.connect()
        .ok("send.reserve", reserve_params("ro-1", "ws", "p"));
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
    fs.remount("ro");
    for args in [&["daemon", "--foreground"][..], &["daemon"][..]] {
        let out = sb.run(args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(&sb.data.display().to_string())
                && out.stderr.contains("not writable"),
            "{args:?}: {}",
            out.stderr
        );
    }
    // the host reports the daemon's own reason as the reason it is down
    let mut h = sb.host();
    let r = h.call("hello", json!({"protocol": 1}));
    assert_eq!(r["error"]["code"], "daemon_unavailable", "{r}");
    let down = h.event("daemon.down", Duration::from_secs(5));
    let reason = down["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("failed to start") && reason.contains("not writable"),
        "{down}"
    );
    drop(h);
    // (a WAL database cannot be opened on a read-only file system without its -shm file)
    fs.remount("rw");
    assert_eq!(integrity(&sb.data.join("quiver.db")), "ok");
    let n: i64 = sb
        .db()
        .query_row("SELECT COUNT(*) FROM history", [], |r| r.get(0))
        .unwrap();
    assert_eq!(n, 1);
}
