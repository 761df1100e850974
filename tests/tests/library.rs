//! The template library and the history through the command line and the protocol: import,
//! export, list, search, history output, and the events every connected host hears.

use quiver_tests::{reserve_params, Sandbox};
use serde_json::{json, Value};
use std::time::Duration;

const LIBRARY: &str = r#"{
  "quiver": 1,
  "templates": [
    {"id": "refund", "title": "退款政策", "folder": "Orders/Refunds", "tags": ["refund"],
     "shortcut": "tk", "parts": [{"type": "text", "text": "您可以在收货后 30 天内申请退款。"}]},
    {"id": "delivery", "title": "Delivery times", "folder": "Orders", "tags": ["shipping"],
     "parts": [{"type": "text", "text": "Orders ship within two business days."}]}
  ]
}"#;

#[test]
fn import_export_list_and_search_through_the_daemon() {
    let sb = Sandbox::new("cli-lib");
    let file = sb.root.join("lib.json");
    std::fs::write(&file, LIBRARY).unwrap();
    let out = sb.run(&["templates", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(
        out.stdout.contains("imported 2 templates") && out.stdout.contains("2 new"),
        "{out:?}"
    );
    // the daemon was started for it and owns the database
    assert!(sb.daemon_pid().is_some());
    // again: nothing changes
    let out = sb.run(&["templates", "import", file.to_str().unwrap()]);
    assert!(out.stdout.contains("2 unchanged"), "{out:?}");

    // pinyin initials of the Chinese title, and a typo in the English one
    let out = sb.run(&["templates", "search", "tkzc"]);
    assert!(out.status.success(), "{out:?}");
    let first = out.stdout.lines().nth(1).unwrap_or_default();
    assert!(first.starts_with("refund"), "{}", out.stdout);
    assert!(out.stdout.contains("退款政策"));
    let out = sb.run(&["templates", "search", "delivry", "--format", "json"]);
    let hits: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(hits[0]["id"], "delivery", "{hits}");
    let out = sb.run(&["templates", "search", "zzzzqqq"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");

    let out = sb.run(&["templates", "list"]);
    assert!(out.status.success(), "{out:?}");
    let header = out.stdout.lines().next().unwrap();
    assert!(
        header.starts_with("ID") && header.contains("TITLE"),
        "{header}"
    );
    assert!(out.stdout.contains("greeting") && out.stdout.contains("Orders/Refunds"));

    // export: a library file that imports back to the same library
    let exported = sb.root.join("out.json");
    let out = sb.run(&["templates", "export", exported.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let text = std::fs::read_to_string(&exported).unwrap();
    let lib = quiver_shared::Library::from_json(&text).expect("export is a valid library");
    assert!(lib
        .templates
        .iter()
        .any(|t| t.id == "refund" && t.title == "退款政策"));
    let out = sb.run(&["templates", "export"]);
    let v: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(
        v["templates"].as_array().unwrap().len(),
        lib.templates.len()
    );
    let out = sb.run(&["templates", "import", exported.to_str().unwrap()]);
    assert!(out.stdout.contains("0 new, 0 updated"), "{out:?}");
}

#[test]
fn a_bad_library_imports_nothing_and_names_line_and_field() {
    let sb = Sandbox::new("cli-bad");
    let bad = LIBRARY.replace(
        r#""folder": "Orders", "tags": ["shipping"],"#,
        r#""folder": "Orders", "tags": ["shipping"], "colour": "red","#,
    );
    let file = sb.root.join("bad.json");
    std::fs::write(&file, bad).unwrap();
    let out = sb.run(&["templates", "import", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&format!("{}:6:", file.display()))
            && out.stderr.contains("templates[1]")
            && out.stderr.contains("colour")
            && out.stderr.contains("nothing was imported"),
        "{}",
        out.stderr
    );
    // the good template of that file did not go in
    let out = sb.run(&["templates", "search", "tkzc"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let out = sb.run(&["templates", "import", "/nonexistent/lib.json"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("/nonexistent/lib.json"), "{out:?}");
    let out = sb.run(&["templates", "frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

/// A library larger than one 4 MiB frame goes in batches under one session: all or nothing.
#[test]
fn a_large_import_goes_in_batches() {
    let sb = Sandbox::new("cli-big");
    let templates: Vec<Value> = (0..3000)
        .map(|i| {
            json!({"id": format!("t{i:05}"), "title": format!("Template {i}"),
                   "parts": [{"type": "text", "text": "x".repeat(2000)}]})
        })
        .collect();
    let file = sb.root.join("big.json");
    std::fs::write(
        &file,
        json!({"quiver": 1, "templates": templates}).to_string(),
    )
    .unwrap();
    let out = sb.run(&["templates", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert!(out.stdout.contains("imported 3000 templates"), "{out:?}");
    let out = sb.run(&[
        "templates",
        "search",
        "Template 2999",
        "--format",
        "json",
        "--limit",
        "1",
    ]);
    let hits: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(hits[0]["id"], "t02999", "{hits}");
}

#[test]
fn history_in_every_format_with_filters() {
    let sb = Sandbox::new("cli-history");
    let mut c = {
        sb.run(&["daemon"]);
        sb.connect()
    };
    for (i, customer) in ["alice", "bob", "alice"].iter().enumerate() {
        let mut p = reserve_params(&format!("h{i}"), "ws", &format!("payload {i}"));
        p["customer"] = json!(customer);
        let id = c.ok("send.reserve", p)["send_id"].clone();
        if i == 0 {
            c.begin_when_allowed(&id, Duration::from_secs(5));
            c.ok("send.done", json!({"send_id": id, "ok": true}));
        }
    }
    let out = sb.run(&["history", "--format", "json"]);
    assert!(out.status.success(), "{out:?}");
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 3);
    assert_eq!(rows[2]["payload"], "payload 0");

    let out = sb.run(&["history", "--customer", "alice", "--format", "csv"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert!(lines[0].starts_with("send_id,queued_at,"), "{}", out.stdout);
    assert_eq!(lines.len(), 3, "{}", out.stdout);
    assert!(
        lines[2].contains(",sent,udesk,ws,conv-1,alice,greeting,1,0,"),
        "{}",
        lines[2]
    );

    let out = sb.run(&["history", "--state", "sent"]);
    let lines: Vec<&str> = out.stdout.lines().collect();
    assert_eq!(lines.len(), 2, "{}", out.stdout);
    assert!(
        lines[0].starts_with("ID") && lines[1].contains("greeting@1#0"),
        "{}",
        out.stdout
    );

    let out = sb.run(&[
        "history", "--since", "1d", "--limit", "1", "--format", "json",
    ]);
    let rows: Value = serde_json::from_str(&out.stdout).unwrap();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    let out = sb.run(&["history", "--until", "2000-01-01"]);
    assert!(out.stderr.contains("no sends match"), "{out:?}");
    let out = sb.run(&["history", "--since", "yesterday"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let out = sb.run(&["history", "--state", "lost"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("state"), "{out:?}");
}

/// What one host changes, every other host hears: the library, and the meter's slots.
#[test]
fn events_reach_every_connected_host() {
    let sb = Sandbox::new("events");
    let mut a = sb.host();
    let mut b = sb.host();
    a.ok("hello", json!({"protocol": 1}));
    b.ok("hello", json!({"protocol": 1}));
    let t = json!({"id": "new", "title": "New", "parts": [{"type": "text", "text": "hi"}]});
    assert_eq!(a.ok("templates.put", json!({"template": t}))["revision"], 1);
    let ev = b.next_event("library.changed", Duration::from_secs(5));
    assert_eq!(ev["data"]["ids"], json!(["new"]), "{ev}");
    assert_eq!(ev["data"]["reason"], "put");

    let x = a.ok("send.reserve", reserve_params("ev-1", "ev-ws", "1"))["send_id"].clone();
    let y = a.ok("send.reserve", reserve_params("ev-2", "ev-ws", "2"))["send_id"].clone();
    a.begin_when_allowed(&x, Duration::from_secs(5));
    a.ok("send.done", json!({"send_id": x, "ok": true}));
    let ev = b.next_event("meter.released", Duration::from_secs(5));
    assert_eq!(ev["data"]["send_id"], x, "{ev}");
    assert_eq!(ev["data"]["next"]["send_id"], y, "{ev}");
    assert!(ev["data"]["next"]["not_before_ms"].as_u64().unwrap() > 0);
    a.finish();
    b.finish();
}

/// A template whose link is not an http(s) URL is refused on put, naming the field, and nothing
/// is stored (docs/templates.md "Links").
#[test]
fn a_template_with_a_javascript_link_is_refused_on_put() {
    let sb = Sandbox::new("put-link");
    let mut a = sb.host();
    a.ok("hello", json!({"protocol": 1}));
    let t = json!({"id": "promo", "title": "Promo", "parts": [{"type": "news", "articles": [
        {"title": "a", "url": "https://shop.example.com/a"},
        {"title": "b", "url": "https://shop.example.com/b", "cover": "javascript:alert(document.cookie)"}]}]});
    let r = a.call("templates.put", json!({"template": t}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    assert!(
        r["error"]["data"]["field"]
            .as_str()
            .is_some_and(|f| f.ends_with("parts[0].articles[1].cover")),
        "{r}"
    );
    let r = a.call("templates.get", json!({"id": "promo"}));
    assert!(r.get("error").is_some(), "{r}");
    a.finish();
}

/// A client of another protocol major is told so, with the versions this daemon speaks.
#[test]
fn an_unsupported_protocol_is_refused_clearly() {
    let sb = Sandbox::new("proto");
    let mut h = sb.host();
    let r = h.call(
        "hello",
        json!({"protocol": 2, "client": "quiver-extension/9.0"}),
    );
    assert_eq!(r["error"]["code"], "unsupported_protocol", "{r}");
    assert_eq!(r["error"]["data"]["supported"], json!([1]));
    assert!(r["error"]["message"]
        .as_str()
        .unwrap()
        .contains("update quiver"));
    // a newer client's extra hello fields are ignored, not refused
    let r = h.ok(
        "hello",
        json!({"protocol": 1, "client": "x", "wants": ["future"]}),
    );
    assert_eq!(r["protocol"], 1);
    h.finish();
}

/// The background restarts (MV3) between steps and retries: the send goes out once and counts
/// once, whatever it retries.
#[test]
fn retries_after_a_background_restart_never_send_twice() {
    let sb = Sandbox::new("retry");
    let mut h = sb.host();
    let uses = |h: &mut quiver_tests::Host| {
        h.ok("templates.get", json!({"id": "greeting"}))["usage_count"]
            .as_u64()
            .unwrap()
    };
    let before = uses(&mut h);
    let p = reserve_params("mv3-1", "mv3-ws", "hello");
    let id = h.ok("send.reserve", p.clone())["send_id"].clone();
    h.finish();
    // a new background, a new port, a new host: the reservation is retried
    let mut h = sb.host();
    let r = h.ok("send.reserve", p.clone());
    assert_eq!(
        (r["send_id"].clone(), r["replayed"].clone()),
        (id.clone(), json!(true))
    );
    h.begin_when_allowed(&id, Duration::from_secs(5));
    h.finish();
    // the background died after go: a retried begin does not grant the slot again
    let mut h = sb.host();
    let r = h.call("send.begin", json!({"send_id": id}));
    assert_eq!(r["error"]["code"], "conflict", "{r}");
    assert_eq!(r["error"]["data"]["state"], "sending");
    h.ok("send.done", json!({"send_id": id, "ok": true}));
    h.ok("send.done", json!({"send_id": id, "ok": true}));
    // and a reserve retried after done: the same send, already sent, nothing queued or counted
    let r = h.ok("send.reserve", p);
    assert_eq!(
        (r["send_id"].clone(), r["state"].clone()),
        (id, json!("sent"))
    );
    assert_eq!(uses(&mut h), before + 1);
    let rows = h.ok("history.list", json!({"workspace": "mv3-ws"}))["rows"].clone();
    assert_eq!(rows.as_array().unwrap().len(), 1);
    h.finish();
}

/// Export never writes through a planted symlink: not at a predictable temporary name beside
/// the target, not at the target itself (replaced, not followed); the file is 0600.
#[test]
fn export_never_follows_a_planted_symlink() {
    use std::os::unix::fs::PermissionsExt;
    let sb = Sandbox::new("export-link");
    let victim = sb.root.join("victim.txt");
    std::fs::write(&victim, "precious").unwrap();
    let out_dir = sb.root.join("out");
    std::fs::create_dir_all(&out_dir).unwrap();
    let target = out_dir.join("lib.json");
    // the old code wrote through `lib.json.tmp`
    std::os::unix::fs::symlink(&victim, out_dir.join("lib.json.tmp")).unwrap();
    let out = sb.run(&["templates", "export", target.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    let text = std::fs::read_to_string(&target).unwrap();
    quiver_shared::Library::from_json(&text).expect("a valid library");
    let meta = std::fs::symlink_metadata(&target).unwrap();
    assert!(meta.file_type().is_file());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);

    // a symlink at the target itself is replaced, never written through
    std::fs::remove_file(&target).unwrap();
    std::os::unix::fs::symlink(&victim, &target).unwrap();
    let out = sb.run(&["templates", "export", target.to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious");
    assert!(std::fs::symlink_metadata(&target)
        .unwrap()
        .file_type()
        .is_file());
    // nothing else is left in the directory
    let names: Vec<_> = std::fs::read_dir(&out_dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    let mut names = names;
    names.sort();
    assert_eq!(names, ["lib.json", "lib.json.tmp"]);
}

/// A reply through the host, joined from its chunks when it came in several.
fn host_whole(h: &mut quiver_tests::Host, id: &str, method: &str, params: Value) -> Value {
    h.send(&json!({"id": id, "method": method, "params": params}));
    let mut re = quiver_shared::proto::Reassembler::new();
    loop {
        let f = h.reply_to(&json!(id));
        if f.get("chunk").is_none() {
            return f;
        }
        if let Some(whole) = re.push(f).unwrap() {
            return whole;
        }
    }
}

/// The largest template the caps allow: text parts of control characters (6 bytes each in
/// JSON), just under `limits::TEMPLATE_BYTES`; and the same with one character more.
fn largest_template(id: &str) -> (Value, Value) {
    use quiver_shared::model::limits::TEMPLATE_BYTES;
    let make = |n: usize| {
        let per = n / 5;
        let parts: Vec<Value> = (0..5)
            .map(|i| json!({"type": "text", "text": "\u{1}".repeat(per + usize::from(i < n % 5))}))
            .collect();
        json!({"id": id, "title": format!("largest {id}"), "parts": parts})
    };
    let size = |v: &Value| {
        serde_json::from_value::<quiver_shared::Template>(v.clone())
            .unwrap()
            .serialized_len()
    };
    let mut n = TEMPLATE_BYTES / 6 - 200;
    while size(&make(n + 1)) <= TEMPLATE_BYTES {
        n += 1;
    }
    assert!(size(&make(n)) > TEMPLATE_BYTES - 6);
    (make(n), make(n + 1))
}

/// Every accepted item can be read back: the largest template and payload the daemon accepts
/// are read, listed, exported and paged through the protocol, the host (the browser's path)
/// and the command line; one byte more is refused with the field named.
#[test]
fn the_largest_accepted_template_and_payload_can_be_read_back() {
    let sb = Sandbox::new("largest");
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    let ids: Vec<String> = (0..6).map(|i| format!("big-{i}")).collect();
    for id in &ids {
        let (t, over) = largest_template(id);
        let e = c.call("templates.put", json!({ "template": over }));
        assert_eq!(
            e["error"]["code"],
            "invalid_params",
            "{}",
            e.to_string().chars().take(200).collect::<String>()
        );
        assert_eq!(e["error"]["data"]["field"], "template");
        c.ok("templates.put", json!({ "template": t }));
    }
    let (want, _) = largest_template("big-0");
    let got = c.ok("templates.get", json!({"id": "big-0"}));
    assert_eq!(got["template"]["parts"], want["parts"]);

    // every page of the list, directly and through the host
    let mut h = sb.host();
    for via_host in [false, true] {
        let mut seen = Vec::new();
        let mut cursor = Value::Null;
        let mut pages = 0;
        loop {
            let params = json!({"cursor": cursor, "limit": 500});
            let r = if via_host {
                host_whole(&mut h, &format!("list-{pages}"), "templates.list", params)
            } else {
                c.call("templates.list", params)
            };
            assert!(
                r.get("error").is_none(),
                "{}",
                r.to_string().chars().take(300).collect::<String>()
            );
            let r = &r["result"];
            for t in r["templates"].as_array().unwrap() {
                seen.push(t["id"].as_str().unwrap().to_string());
            }
            pages += 1;
            cursor = r["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert!(pages >= 2, "{pages} pages");
        for id in &ids {
            assert!(seen.contains(id), "{id} missing (via host: {via_host})");
        }
        let r = host_whole(&mut h, "get", "templates.get", json!({"id": "big-5"}));
        assert_eq!(r["result"]["template"]["id"], "big-5");
    }

    // the command line lists and exports them, and the export imports back
    let out = sb.run(&["templates", "list"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(ids.iter().all(|id| out.stdout.contains(id.as_str())));
    let file = sb.root.join("largest.json");
    let out = sb.run(&["templates", "export", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr);
    let lib = quiver_shared::Library::from_json(&std::fs::read_to_string(&file).unwrap())
        .expect("the export is a valid library");
    assert!(ids
        .iter()
        .all(|id| lib.templates.iter().any(|t| &t.id == id)));
    let out = sb.run(&["templates", "import", file.to_str().unwrap()]);
    assert!(out.status.success(), "{}", out.stderr);

    // the largest payload: 1 MiB as a JSON string (control characters are 6 bytes each)
    let max = c.ok("hello", json!({"protocol": 1}))["limits"]["max_payload"]
        .as_u64()
        .unwrap() as usize;
    let payload = "\u{1}".repeat(max / 6);
    let e = c.call(
        "send.reserve",
        reserve_params("over", "ws-over", &format!("{payload}\u{1}")),
    );
    assert_eq!(e["error"]["code"], "invalid_params");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("`payload`"));
    let sends: Vec<Value> = (0..5)
        .map(|i| {
            c.ok(
                "send.reserve",
                reserve_params(&format!("big-{i}"), &format!("ws-{i}"), &payload),
            )["send_id"]
                .clone()
        })
        .collect();
    for via_host in [false, true] {
        let mut rows = Vec::new();
        let mut cursor = Value::Null;
        let mut pages = 0;
        loop {
            let params = json!({"cursor": cursor, "limit": 500});
            let r = if via_host {
                host_whole(&mut h, &format!("hist-{pages}"), "history.list", params)
            } else {
                c.call("history.list", params)
            };
            assert!(
                r.get("error").is_none(),
                "{}",
                r.to_string().chars().take(300).collect::<String>()
            );
            let r = &r["result"];
            for row in r["rows"].as_array().unwrap() {
                assert_eq!(row["payload"].as_str().unwrap().len(), payload.len());
                rows.push(row["send_id"].clone());
            }
            pages += 1;
            cursor = r["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert!(pages >= 5, "{pages} pages");
        assert!(sends.iter().all(|s| rows.contains(s)), "{rows:?}");
    }
    let out = sb.run(&["history", "--limit", "0", "--format", "json"]);
    assert!(out.status.success(), "{}", out.stderr);
    assert!(
        out.stdout.contains("big-4"),
        "{}",
        out.stdout.chars().take(200).collect::<String>()
    );
    h.finish();
    assert!(sb.stop_daemon().status.success());
    assert!(quiver_tests::wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}
