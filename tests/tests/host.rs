//! The native host as a browser sees it: frames on stdin/stdout, the daemon behind it.

use quiver_tests::{alive, Sandbox};
use serde_json::{json, Value};
use std::os::unix::fs::PermissionsExt;
use std::time::{Duration, Instant};

fn hello() -> Value {
    json!({"protocol": 1, "client": "quiver-tests"})
}

#[test]
fn host_starts_the_daemon_and_answers_hello_and_templates() {
    let sb = Sandbox::new("hello");
    let mut h = sb.host();
    // the very first request is held while the host starts the daemon, not refused
    let r = h.ok("hello", hello());
    assert_eq!(r["protocol"], 1);
    for c in ["templates", "send", "history", "events", "chunks"] {
        assert!(
            r["capabilities"].as_array().unwrap().contains(&json!(c)),
            "{r}"
        );
    }
    let up = h.event("daemon.up", Duration::from_secs(5));
    assert_eq!(up["data"]["version"], env!("CARGO_PKG_VERSION"));

    let list = h.ok("templates.list", json!({}));
    let templates = list["templates"].as_array().expect("templates array");
    let g = templates
        .iter()
        .find(|t| t["id"] == "greeting")
        .unwrap_or_else(|| panic!("no greeting in {list}"));
    assert_eq!(g["title"], "Greeting");
    assert_eq!(g["folder"], "General");
    assert_eq!(g["tags"], json!(["hello", "opening"]));
    assert_eq!(g["shortcut"], "hi");
    assert_eq!(
        g["parts"],
        json!([{"type": "text", "text": "Hello {{customer.name|there}}, how can I help you today?"}])
    );
    assert!(templates.iter().any(|t| t["title"] == "稍等"));
    assert!(list["next_cursor"].is_null());

    // pages chain through the opaque cursor
    let page = h.ok("templates.list", json!({"limit": 2}));
    assert_eq!(page["templates"].as_array().unwrap().len(), 2);
    let rest = h.ok(
        "templates.list",
        json!({"limit": 500, "cursor": page["next_cursor"]}),
    );
    assert_eq!(
        rest["templates"].as_array().unwrap().len(),
        templates.len() - 2
    );

    let pid = sb.daemon_pid().expect("daemon.pid");
    assert!(alive(pid));
    h.finish();
    // the daemon outlives the host, and the next host uses it
    assert!(alive(pid), "the daemon exited with the host");
    let mut h2 = sb.host();
    h2.ok("hello", hello());
    assert_eq!(sb.daemon_pid(), Some(pid));
    h2.finish();
}

#[test]
fn malformed_frames_get_bad_frame_and_the_host_keeps_running() {
    let sb = Sandbox::new("badframe");
    let mut h = sb.host();
    h.ok("hello", hello());
    let cases: &[(&[u8], &str, Value)] = &[
        (b"this is not json", "not valid JSON", Value::Null),
        (b"\xff\xfe{\"id\":1}", "not valid UTF-8", Value::Null),
        (b"[1,2,3]", "not a JSON object", Value::Null),
        (
            br#"{"id":7,"params":{}}"#,
            "missing field `method`",
            json!(7),
        ),
        (br#"{"method":"hello"}"#, "missing field `id`", Value::Null),
        (
            br#"{"id":"s","method":"hello","params":[]}"#,
            "`params` must be an object",
            json!("s"),
        ),
        (b"", "not valid JSON", Value::Null),
    ];
    for (body, needle, id) in cases {
        h.send_body(body);
        let r = h.reply();
        assert_eq!(r["error"]["code"], "bad_frame", "{r}");
        let msg = r["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(needle), "{needle:?} not in {msg:?}");
        assert_eq!(&r["id"], id, "{r}");
        assert!(
            h.is_running(),
            "host died after {:?}",
            String::from_utf8_lossy(body)
        );
    }
    let r = h.ok("hello", hello());
    assert_eq!(r["protocol"], 1);
    h.finish();
}

#[test]
fn oversized_frames_are_refused_skipped_and_survived() {
    let sb = Sandbox::new("oversized");
    let mut h = sb.host();
    h.ok("hello", hello());

    // 5 MiB declared and sent: refused, its bytes skipped, the next frame is read normally
    let n = 5 * 1024 * 1024;
    let mut junk = (n as u32).to_ne_bytes().to_vec();
    junk.extend(std::iter::repeat_n(b'{', n));
    h.write_raw(&junk);
    h.send(&json!({"id": 99, "method": "hello", "params": hello()}));
    let r = h.reply();
    assert_eq!(r["error"]["code"], "frame_too_large", "{r}");
    assert!(r["id"].is_null());
    assert!(
        r["error"]["message"].as_str().unwrap().contains("5242880"),
        "{r}"
    );
    let r = h.reply();
    assert_eq!(r["id"], 99);
    assert_eq!(r["result"]["protocol"], 1);

    // 3 GB declared: refused at once, nothing buffered, the host stays up
    let t = Instant::now();
    h.write_raw(&0xC000_0000u32.to_ne_bytes());
    let r = h.reply();
    assert_eq!(r["error"]["code"], "frame_too_large", "{r}");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    h.write_raw(&[b'x'; 4096]);
    std::thread::sleep(Duration::from_millis(200));
    assert!(h.is_running(), "host died: {}", h.stderr());
    // closing the port in the middle of the skipped frame is a clean exit
    h.finish();
}

#[test]
fn unknown_methods_and_bad_params_are_named() {
    let sb = Sandbox::new("params");
    let mut h = sb.host();
    let r = h.call("templates.delete_all", json!({}));
    assert_eq!(r["error"]["code"], "unknown_method", "{r}");
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("templates.delete_all"));

    let r = h.call("send.begin", json!({}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("send_id"),
        "{r}"
    );

    let r = h.call("send.begin", json!({"send_id": "seven"}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");

    let mut p = quiver_tests::reserve_params("k", "w", "x");
    p.as_object_mut().unwrap().remove("payload");
    let r = h.call("send.reserve", p);
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("payload"),
        "{r}"
    );

    let r = h.call("templates.list", json!({"cursor": "not-a-cursor"}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    assert!(
        r["error"]["message"].as_str().unwrap().contains("cursor"),
        "{r}"
    );
    h.finish();
}

/// The daemon goes away and cannot come back (its socket dir is opened up), then can: the host
/// reports down/up, answers `daemon_unavailable` meanwhile, backs off, and stdout stays frames.
#[test]
fn host_reports_daemon_down_backs_off_and_reconnects() {
    let sb = Sandbox::new("downup");
    let mut h = sb.host();
    h.ok("hello", hello());
    h.event("daemon.up", Duration::from_secs(5));

    std::fs::set_permissions(&sb.run, std::fs::Permissions::from_mode(0o755)).unwrap();
    assert!(sb.stop_daemon().status.success());
    let first = h.next_event("daemon.down", Duration::from_secs(5));
    assert!(first["data"]["reason"].is_string(), "{first}");

    let r = h.call("hello", hello());
    assert_eq!(r["error"]["code"], "daemon_unavailable", "{r}");
    assert!(r["id"].is_number());

    // the retry finds the socket dir unsafe and says so
    let second = h.next_event("daemon.down", Duration::from_secs(5));
    let reason = second["data"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("0755") && reason.contains(&sb.run.display().to_string()),
        "{reason}"
    );
    let (a, b) = (
        first["data"]["retry_in_ms"].as_u64().unwrap(),
        second["data"]["retry_in_ms"].as_u64().unwrap(),
    );
    assert!(a >= 250 && b > a && b <= 10_000, "backoff {a} then {b}");

    std::fs::set_permissions(&sb.run, std::fs::Permissions::from_mode(0o700)).unwrap();
    h.next_event("daemon.up", Duration::from_secs(15));
    assert_eq!(h.ok("hello", hello())["protocol"], 1);
    h.finish();
}

/// Two browsers start two hosts at the same moment: one daemon serves both.
#[test]
fn two_hosts_share_one_daemon() {
    let sb = Sandbox::new("twohosts");
    let mut h1 = sb.host();
    let mut h2 = sb.host();
    h1.ok("hello", hello());
    h2.ok("hello", hello());
    let r = h1.ok(
        "send.reserve",
        quiver_tests::reserve_params("shared-1", "ws-shared", r#"{"x":1}"#),
    );
    let rows = h2.ok("history.list", json!({}));
    assert_eq!(rows["rows"][0]["send_id"], r["send_id"], "{rows}");
    let pid = sb.daemon_pid().unwrap();
    let log = sb.daemon_log();
    assert_eq!(
        log.matches("listening on").count(),
        1,
        "more than one daemon served:\n{log}"
    );
    h1.finish();
    h2.finish();
    assert!(alive(pid));
}

/// A daemon reply over the browsers' 1 MiB limit never reaches stdout as-is: the host splits it
/// into chunks of at most 1 MiB that join back into the reply.
#[test]
fn reply_too_large_for_the_browser_arrives_in_chunks() {
    let sb = Sandbox::new("bigreply");
    let mut h = sb.host();
    // quotes and backslashes double in size once escaped inside a chunk's `data`; the payload
    // is as large as send.reserve takes (1 MiB as a JSON string: 7 bytes a repeat)
    let payload = "\"\\稍".repeat(1024 * 1024 / 7);
    let r = h.ok(
        "send.reserve",
        quiver_tests::reserve_params("big", "ws-big", &payload),
    );
    assert_eq!(r["state"], "queued");
    // the newest history row alone is over 1 MiB of JSON
    h.send(&json!({"id": "big", "method": "history.list", "params": {"limit": 1}}));
    let mut re = quiver_shared::proto::Reassembler::new();
    let mut chunks = 0;
    let reply = loop {
        let f = h.reply_to(&json!("big"));
        chunks += 1;
        assert!(
            f.get("chunk").is_some(),
            "not a chunk: {}",
            &f.to_string()[..100]
        );
        if let Some(whole) = re.push(f).unwrap() {
            break whole;
        }
    };
    assert!(chunks >= 2, "{chunks} chunks");
    assert_eq!(reply["id"], "big");
    assert_eq!(reply["result"]["rows"][0]["payload"], payload);
    // the port is still usable (the harness checked every frame was at most 1 MiB)
    assert_eq!(h.ok("hello", hello())["protocol"], 1);
    h.finish();
}
