//! The hub against real `quiver hub serve` processes, on SQLite and on PostgreSQL (each test
//! twice: `<name>::sqlite` and `<name>::postgresql`; see `tests/hub.rs` for how PostgreSQL is
//! found).

use quiver_tests::hub::*;
use serde_json::{json, Value};
use std::collections::{BTreeSet, HashSet};
use std::sync::{Arc, Mutex};

use quiver_tests::both;

/// The owner joined, and an editor and a viewer of the first library.
fn team(h: &Hub) -> (Client, Client, Client, String, String) {
    let owner = h.owner();
    let (lib, epoch) = owner.library();
    let editor = h.join(&h.invite("editor", &[&lib], Some("editor")), "ed-pc");
    let viewer = h.join(&h.invite("viewer", &[&lib], Some("viewer")), "vi-pc");
    (owner, editor, viewer, lib, epoch)
}

both!(join_with_an_invite);
fn join_with_an_invite(b: Backend) {
    let h = Hub::start(b);
    let owner = h.owner();
    assert_eq!(owner.me["user_name"], "owner");
    assert_eq!(owner.me["libraries"][0]["role"], "owner");
    assert_eq!(owner.me["token"].as_str().unwrap().len(), 43);
    // single use
    let (s, e) = join_raw(&h.base_url(), &h.owner_invite, "again");
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (401, Some("unauthorized")),
        "{e}"
    );
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("used already"));
    // wrong code
    let (s, e) = join_raw(&h.base_url(), "quiver+http://x/join#nottherightcode", "x");
    assert_eq!(s, 401, "{e}");
    assert!(e["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid"));
    // expired
    let (lib, _) = owner.library();
    let inv = h.cli_ok(&[
        "invite",
        "--role",
        "editor",
        "--library",
        &lib,
        "--expires",
        "1s",
    ]);
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let (s, e) = join_raw(&h.base_url(), &inv, "late");
    assert_eq!(s, 401, "{e}");
    assert!(e["error"]["message"].as_str().unwrap().contains("expired"));
    // a fresh one works, named after the device, with the invite's role
    let inv = h.invite("editor", &["team"], None);
    let c = h.join(&inv, "li-lei laptop");
    assert_eq!(c.me["user_name"], "li-lei laptop");
    assert_eq!(c.me["libraries"][0]["role"], "editor");
    let (s, me) = c.get("/v1/me");
    assert_eq!(s, 200);
    assert_eq!(me["user_id"], c.me["user_id"]);
    assert!(me.get("token").is_none());
    // no token, a bad token
    let (s, _) = raw_get(&format!("{}/v1/me", h.base_url())).unwrap();
    assert_eq!(s, 401);
    let mut bad = c.clone();
    bad.token = "x".repeat(43);
    assert_eq!(bad.get("/v1/me").0, 401);
}

both!(a_revoked_token_gets_401_and_its_stream_closes);
fn a_revoked_token_gets_401_and_its_stream_closes(b: Backend) {
    let h = Hub::start(b);
    let owner = h.owner();
    let (lib, _) = owner.library();
    let c = h.join(&h.invite("editor", &[&lib], None), "a");
    let ev = c.events();
    ev.wait_poke(&lib, 0);
    // from the command line (another process)
    h.cli_ok(&["device", "revoke", &c.device_id()]);
    assert_eq!(c.get("/v1/me").0, 401);
    ev.wait_end();
    // over the admin API, by the owner
    let d = h.join(&h.invite("editor", &[&lib], None), "b");
    let ev = d.events();
    ev.wait_poke(&lib, 0);
    let (s, r) = owner.post(
        &format!("/v1/admin/devices/{}/revoke", d.device_id()),
        &json!({}),
    );
    assert_eq!(s, 204, "{r}");
    assert_eq!(d.get("/v1/me").0, 401);
    ev.wait_end();
    // an editor cannot revoke someone else's device
    let e = h.join(&h.invite("editor", &[&lib], None), "c");
    let (s, _) = e.post(
        &format!("/v1/admin/devices/{}/revoke", owner.device_id()),
        &json!({}),
    );
    assert_eq!(s, 403);
}

both!(push_and_pull_round_trip);
fn push_and_pull_round_trip(b: Backend) {
    let h = Hub::start(b);
    let (owner, editor, viewer, lib, epoch) = team(&h);
    let ev = viewer.events();
    let r1 = rev_id();
    let res = owner.push_one(&lib, &epoch, &put(&r1, "greeting", &[], "Hi", "Hello"));
    assert_eq!(res["status"], "applied", "{res}");
    let seq = res["seq"].as_i64().unwrap();
    ev.wait_poke(&lib, seq);
    // everyone reads it
    for c in [&editor, &viewer] {
        let all = c.pull_all(&lib, &epoch, 0);
        let revs: Vec<&Value> = all.iter().filter(|c| c["kind"] == "revision").collect();
        assert_eq!(revs.len(), 1);
        assert_eq!(revs[0]["revision"]["revision"]["rev_id"], r1.as_str());
        assert_eq!(revs[0]["revision"]["state"], "head");
        assert_eq!(revs[0]["revision"]["author"]["user_name"], "owner");
        assert_eq!(revs[0]["template"]["head_rev"], r1.as_str());
        assert_eq!(revs[0]["revision"]["revision"]["body"]["title"], "Hi");
    }
    // the editor edits on top
    let r2 = rev_id();
    let res = editor.push_one(
        &lib,
        &epoch,
        &put(&r2, "greeting", &[&r1], "Hello", "Hello"),
    );
    assert_eq!(res["status"], "applied");
    let page = owner.changes(&lib, &epoch, seq).1;
    assert_eq!(
        page["changes"][0]["revision"]["revision"]["parents"],
        json!([r1])
    );
    assert_eq!(page["head_seq"], res["seq"]);
    assert_eq!(owner.digest(&lib), viewer.digest(&lib));
    assert_eq!(owner.digest(&lib)["templates"], 1);
    // history of the template, oldest first
    let (s, hist) = viewer.get(&format!("/v1/libraries/{lib}/templates/greeting/revisions"));
    assert_eq!(s, 200);
    let ids: Vec<&str> = hist["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["revision"]["rev_id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [r1.as_str(), r2.as_str()]);
    assert_eq!(hist["revisions"][0]["state"], "superseded");
    // a wrong epoch or a cursor ahead of the hub: 410 reset with the epoch
    let (s, e) = owner.changes(&lib, "0190f1a2-0000-7000-8000-00000000dead", 0);
    assert_eq!((s, e["error"]["code"].as_str()), (410, Some("reset")));
    assert_eq!(e["error"]["epoch"], epoch.as_str());
    let (s, _) = owner.changes(&lib, &epoch, 10_000);
    assert_eq!(s, 410);
    let (s, e) = owner.push(
        &lib,
        "0190f1a2-0000-7000-8000-00000000dead",
        &[put(&rev_id(), "x", &[], "x", "x")],
    );
    assert_eq!((s, e["error"]["code"].as_str()), (410, Some("reset")));
    // an invalid revision is refused by name, nothing else is affected
    let mut bad = put(&rev_id(), "other", &[], "t", "x");
    bad["body"]["id"] = json!("not-other");
    let (s, r) = owner.push(&lib, &epoch, &[bad, put(&rev_id(), "fine", &[], "t", "x")]);
    assert_eq!(s, 200);
    assert_eq!(r["results"][0]["status"], "invalid");
    assert!(r["results"][0]["reason"]
        .as_str()
        .unwrap()
        .contains("body.id"));
    assert_eq!(r["results"][1]["status"], "applied");
    // a malformed body
    let (s, e) = owner.post(
        &format!("/v1/libraries/{lib}/push"),
        &json!({"epoch": epoch}),
    );
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (400, Some("bad_request")),
        "{e}"
    );
    // an unknown library, an unknown endpoint
    let (s, _) = owner.changes("nope", &epoch, 0);
    assert_eq!(s, 404);
    let (s, e) = owner.get("/v1/nothing");
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    // too large: over 500 revisions, over 4 MiB
    let many: Vec<Value> = (0..501)
        .map(|i| put(&rev_id(), &format!("m{i}"), &[], "x", "x"))
        .collect();
    let (s, e) = owner.push(&lib, &epoch, &many);
    assert_eq!(
        (s, e["error"]["code"].as_str()),
        (413, Some("too_large")),
        "{e}"
    );
    // a body announced over 4 MiB is answered before it is sent
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    write!(
        sock,
        "POST /v1/libraries/{lib}/push HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        owner.token,
        5 << 20
    )
    .unwrap();
    let mut reply = String::new();
    let _ = sock.read_to_string(&mut reply);
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
    assert!(reply.contains("\"too_large\""), "{reply}");
    // a page is gzipped for a client that accepts it
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", h.port)).unwrap();
    write!(
        sock,
        "GET /v1/libraries/{lib}/changes?epoch={epoch}&after=0 HTTP/1.1\r\nHost: x\r\n\
         Authorization: Bearer {}\r\nAccept-Encoding: gzip\r\nConnection: close\r\n\r\n",
        owner.token
    )
    .unwrap();
    let mut reply = vec![];
    let _ = sock.read_to_end(&mut reply);
    let head =
        String::from_utf8_lossy(&reply[..reply.windows(4).position(|w| w == b"\r\n\r\n").unwrap()])
            .to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    assert!(head.contains("content-encoding: gzip"), "{head}");
}

both!(the_same_field_edited_twice_keeps_a_conflict);
fn the_same_field_edited_twice_keeps_a_conflict(b: Backend) {
    let h = Hub::start(b);
    let (owner, editor, _viewer, lib, epoch) = team(&h);
    let base = rev_id();
    owner.push_one(&lib, &epoch, &put(&base, "g", &[], "Hi", "Hello"));
    let (a, bb) = (rev_id(), rev_id());
    let ra = owner.push_one(&lib, &epoch, &put(&a, "g", &[&base], "Hi A", "Hello"));
    let rb = editor.push_one(&lib, &epoch, &put(&bb, "g", &[&base], "Hi B", "Hello"));
    assert_eq!(ra["status"], "applied");
    assert_eq!(rb["status"], "conflict", "{rb}");
    assert_eq!(rb["fields"], json!(["title"]));
    assert_eq!(rb["head_rev"], a.as_str());
    let (_, cs) = owner.get(&format!("/v1/libraries/{lib}/conflicts"));
    assert_eq!(cs["conflicts"].as_array().unwrap().len(), 1);
    let c = &cs["conflicts"][0];
    assert_eq!(
        (
            c["head_rev"].as_str(),
            c["other_rev"].as_str(),
            c["base_rev"].as_str()
        ),
        (Some(a.as_str()), Some(bb.as_str()), Some(base.as_str()))
    );
    let d = owner.digest(&lib);
    assert_eq!(d["conflicts"], 1);
    assert_eq!(d, editor.digest(&lib));
    // both versions are kept and readable
    let all = editor.pull_all(&lib, &epoch, 0);
    let last = all.last().unwrap();
    assert_eq!(last["revision"]["state"], "conflict");
    assert_eq!(last["template"]["head_rev"], a.as_str());
    assert_eq!(last["template"]["conflicts"][0]["other_rev"], bb.as_str());
    // the editor resolves: parents [head, other]
    let res = rev_id();
    let r = editor.push_one(&lib, &epoch, &put(&res, "g", &[&a, &bb], "Hi AB", "Hello"));
    assert_eq!(r["status"], "applied", "{r}");
    let (_, cs) = owner.get(&format!("/v1/libraries/{lib}/conflicts"));
    assert_eq!(cs["conflicts"], json!([]));
    assert_eq!(owner.digest(&lib)["conflicts"], 0);
    let (_, hist) = owner.get(&format!("/v1/libraries/{lib}/templates/g/revisions"));
    let states: Vec<(String, String)> = hist["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["revision"]["rev_id"].as_str().unwrap().to_string(),
                r["state"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        states,
        [
            (base.clone(), "superseded".into()),
            (a.clone(), "superseded".into()),
            (bb.clone(), "resolved".into()),
            (res.clone(), "head".into())
        ]
    );
}

both!(disjoint_edits_merge);
fn disjoint_edits_merge(b: Backend) {
    let h = Hub::start(b);
    let (owner, editor, _viewer, lib, epoch) = team(&h);
    let base = rev_id();
    owner.push_one(
        &lib,
        &epoch,
        &put_tags(&base, "g", &[], "Hi", "Hello", &["a"]),
    );
    let (a, bb) = (rev_id(), rev_id());
    owner.push_one(
        &lib,
        &epoch,
        &put_tags(&a, "g", &[&base], "Hi A", "Hello", &["a"]),
    );
    let r = editor.push_one(
        &lib,
        &epoch,
        &put_tags(&bb, "g", &[&base], "Hi", "Hello", &["a", "vip"]),
    );
    assert_eq!(r["status"], "merged", "{r}");
    let m = r["merge_rev"].as_str().unwrap().to_string();
    assert_eq!(r["head_rev"], m.as_str());
    let all = owner.pull_all(&lib, &epoch, 0);
    let merge = all
        .iter()
        .find(|c| c["revision"]["revision"]["rev_id"] == m.as_str())
        .unwrap();
    assert_eq!(merge["revision"]["revision"]["parents"], json!([a, bb]));
    assert_eq!(merge["revision"]["revision"]["body"]["title"], "Hi A");
    assert_eq!(
        merge["revision"]["revision"]["body"]["tags"],
        json!(["a", "vip"])
    );
    assert_eq!(merge["revision"]["author"]["device_id"], "hub");
    assert_eq!(owner.digest(&lib)["conflicts"], 0);
    // the same content twice: merged into the head that has it
    let c = rev_id();
    let r = editor.push_one(
        &lib,
        &epoch,
        &put_tags(&c, "g", &[&a], "Hi A", "Hello", &["a", "vip"]),
    );
    assert_eq!(
        (r["status"].as_str(), r["merge_rev"].as_str()),
        (Some("merged"), Some(m.as_str()))
    );
}

both!(edit_against_delete_keeps_the_content);
fn edit_against_delete_keeps_the_content(b: Backend) {
    let h = Hub::start(b);
    let (owner, editor, _viewer, lib, epoch) = team(&h);
    // delete first, then an edit from the same base: the edit becomes head
    let base = rev_id();
    owner.push_one(&lib, &epoch, &put(&base, "g", &[], "Hi", "Hello"));
    let (del, ed) = (rev_id(), rev_id());
    assert_eq!(
        owner.push_one(&lib, &epoch, &delete(&del, "g", &[&base]))["status"],
        "applied"
    );
    let r = editor.push_one(&lib, &epoch, &put(&ed, "g", &[&base], "Hi", "Hello there"));
    assert_eq!(r["status"], "conflict", "{r}");
    assert_eq!(r["fields"], json!(["deleted"]));
    assert_eq!(r["head_rev"], ed.as_str());
    let last = owner.pull_all(&lib, &epoch, 0).pop().unwrap();
    assert_eq!(last["template"]["deleted"], false);
    assert_eq!(last["template"]["head_rev"], ed.as_str());
    assert_eq!(last["template"]["conflicts"][0]["other_rev"], del.as_str());
    // an edit first, then a delete from the same base: head keeps the edit
    let base = rev_id();
    owner.push_one(&lib, &epoch, &put(&base, "h", &[], "Hi", "Hello"));
    let (ed, del) = (rev_id(), rev_id());
    owner.push_one(&lib, &epoch, &put(&ed, "h", &[&base], "Hi", "Hello you"));
    let r = editor.push_one(&lib, &epoch, &delete(&del, "h", &[&base]));
    assert_eq!(
        (r["status"].as_str(), r["head_rev"].as_str()),
        (Some("conflict"), Some(ed.as_str()))
    );
    assert_eq!(owner.digest(&lib)["templates"], 2);
}

both!(a_viewer_push_is_denied_and_writes_nothing);
fn a_viewer_push_is_denied_and_writes_nothing(b: Backend) {
    let h = Hub::start(b);
    let (owner, _editor, viewer, lib, epoch) = team(&h);
    let base = rev_id();
    owner.push_one(&lib, &epoch, &put(&base, "g", &[], "Hi", "Hello"));
    let before = h.counts();
    let digest = owner.digest(&lib);
    let (s, r) = viewer.push(
        &lib,
        &epoch,
        &[
            put(&rev_id(), "g", &[&base], "Mine", "x"),
            put(&rev_id(), "new", &[], "New", "x"),
            delete(&rev_id(), "g", &[&base]),
        ],
    );
    assert_eq!(s, 200);
    for res in r["results"].as_array().unwrap() {
        assert_eq!(res["status"], "denied", "{res}");
        assert!(res["reason"].as_str().unwrap().contains("viewer"));
        assert!(res.get("seq").is_none());
    }
    assert_eq!(h.counts(), before);
    assert_eq!(owner.digest(&lib), digest);
    // a non-member
    let other = h.cli_ok(&["library", "create", "other"]);
    let other_id = other.split_whitespace().next().unwrap();
    let (s, e) = viewer.push(other_id, &epoch, &[put(&rev_id(), "g", &[], "x", "x")]);
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")));
    assert_eq!(viewer.changes(other_id, &epoch, 0).0, 404);
}

both!(review_required_makes_proposals);
fn review_required_makes_proposals(b: Backend) {
    let h = Hub::start(b);
    let (owner, editor, viewer, lib, epoch) = team(&h);
    let maint = h.join(&h.invite("maintainer", &[&lib], Some("maint")), "m-pc");
    let (s, r) = maint.send(
        "PATCH",
        &format!("/v1/libraries/{lib}"),
        &json!({"review_required": true}),
    );
    assert_eq!(s, 200, "{r}");
    let (s, _) = editor.send(
        "PATCH",
        &format!("/v1/libraries/{lib}"),
        &json!({"review_required": false}),
    );
    assert_eq!(s, 403);
    let p1 = rev_id();
    let r = editor.push_one(&lib, &epoch, &put(&p1, "g", &[], "Proposed", "x"));
    assert_eq!(r["status"], "proposed", "{r}");
    // the owner's own push is not a proposal
    assert_eq!(
        owner.push_one(&lib, &epoch, &put(&rev_id(), "o", &[], "Owner's", "x"))["status"],
        "applied"
    );
    let sees = |c: &Client| {
        c.pull_all(&lib, &epoch, 0)
            .iter()
            .any(|c| c["revision"]["revision"]["rev_id"] == p1.as_str())
    };
    assert!(sees(&maint) && sees(&owner) && sees(&editor));
    assert!(!sees(&viewer), "a viewer must not see a proposal");
    let (_, list) = maint.get(&format!("/v1/libraries/{lib}/proposals"));
    assert_eq!(list["revisions"].as_array().unwrap().len(), 1);
    assert_eq!(
        viewer.get(&format!("/v1/libraries/{lib}/proposals")).1["revisions"],
        json!([])
    );
    // the editor cannot approve; the maintainer can
    assert_eq!(
        editor
            .post(
                &format!("/v1/libraries/{lib}/proposals/{p1}/approve"),
                &json!({})
            )
            .0,
        403
    );
    let (s, r) = maint.post(
        &format!("/v1/libraries/{lib}/proposals/{p1}/approve"),
        &json!({}),
    );
    assert_eq!(s, 200, "{r}");
    assert_eq!(
        (r["state"].as_str(), r["result"]["status"].as_str()),
        (Some("head"), Some("applied"))
    );
    assert!(sees(&viewer), "an approved proposal is public");
    assert_eq!(
        maint
            .post(
                &format!("/v1/libraries/{lib}/proposals/{p1}/approve"),
                &json!({})
            )
            .0,
        409
    );
    // reject another one: kept, not head
    let p2 = rev_id();
    editor.push_one(&lib, &epoch, &put(&p2, "g", &[&p1], "Worse", "x"));
    let (s, r) = maint.post(
        &format!("/v1/libraries/{lib}/proposals/{p2}/reject"),
        &json!({}),
    );
    assert_eq!((s, r["state"].as_str()), (200, Some("rejected")));
    let (_, hist) = editor.get(&format!("/v1/libraries/{lib}/templates/g/revisions"));
    let last = hist["revisions"].as_array().unwrap().last().unwrap();
    assert_eq!(
        (last["revision"]["rev_id"].as_str(), last["state"].as_str()),
        (Some(p2.as_str()), Some("rejected"))
    );
    let (_, hist) = viewer.get(&format!("/v1/libraries/{lib}/templates/g/revisions"));
    assert_eq!(hist["revisions"].as_array().unwrap().len(), 1);
    let head = owner.pull_all(&lib, &epoch, 0).pop().unwrap();
    assert_eq!(head["template"]["head_rev"], p1.as_str());
}

both!(a_removed_member_reads_its_removal_then_nothing);
fn a_removed_member_reads_its_removal_then_nothing(b: Backend) {
    let h = Hub::start(b);
    let (owner, editor, _viewer, lib, epoch) = team(&h);
    owner.push_one(&lib, &epoch, &put(&rev_id(), "g", &[], "Hi", "x"));
    let cursor = editor.pull_all(&lib, &epoch, 0).last().unwrap()["seq"]
        .as_i64()
        .unwrap();
    let ev = editor.events();
    ev.wait_poke(&lib, cursor);
    let (s, r) = owner.send(
        "DELETE",
        &format!("/v1/libraries/{lib}/members/editor"),
        &json!({}),
    );
    assert_eq!(s, 200, "{r}");
    let removal = r["seq"].as_i64().unwrap();
    ev.wait_poke(&lib, removal);
    let (s, page) = editor.changes(&lib, &epoch, cursor);
    assert_eq!(s, 200, "{page}");
    assert_eq!(
        page["changes"],
        json!([{"kind": "member", "seq": removal, "user_id": editor.user_id(), "user_name": "editor", "role": null}])
    );
    assert_eq!(page["more"], false);
    let (s, e) = editor.changes(&lib, &epoch, removal);
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")));
    let (_, me) = editor.get("/v1/me");
    assert_eq!(me["libraries"], json!([]));
    let (s, _) = editor.push(&lib, &epoch, &[put(&rev_id(), "g", &[], "x", "x")]);
    assert_eq!(s, 403);
    // others read the same change; the last owner cannot be removed
    assert!(owner
        .pull_all(&lib, &epoch, 0)
        .iter()
        .any(|c| c["kind"] == "member" && c["role"].is_null()));
    let (s, e) = owner.send(
        "DELETE",
        &format!("/v1/libraries/{lib}/members/owner"),
        &json!({}),
    );
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("conflict")));
    // removed from the command line too
    h.cli_ok(&["member", "remove", &lib, "viewer"]);
    assert_eq!(h.cli_ok(&["member", "list", &lib]).lines().count(), 1);
}

both!(a_repeated_push_is_applied_once);
fn a_repeated_push_is_applied_once(b: Backend) {
    let h = Hub::start(b);
    let owner = h.owner();
    let (lib, epoch) = owner.library();
    let r = rev_id();
    let rev = put(&r, "g", &[], "Hi", "x");
    let first = owner.push_one(&lib, &epoch, &rev);
    let counts = h.counts();
    let again = owner.push_one(&lib, &epoch, &rev);
    assert_eq!(again["duplicate"], true);
    let mut f = first.clone();
    f["duplicate"] = json!(true);
    assert_eq!(again, f);
    assert_eq!(h.counts(), counts);
    // in one batch too
    let r2 = rev_id();
    let (_, rep) = owner.push(
        &lib,
        &epoch,
        &[put(&r2, "h", &[], "x", "x"), put(&r2, "h", &[], "x", "x")],
    );
    assert_eq!(rep["results"][1]["duplicate"], true);
    assert_eq!(
        h.scalar(&format!(
            "SELECT count(*) FROM revisions WHERE rev_id = '{r2}'"
        )),
        1
    );
}

both!(a_killed_hub_loses_nothing_it_acknowledged);
fn a_killed_hub_loses_nothing_it_acknowledged(b: Backend) {
    let mut h = Hub::start(b);
    let owner = h.owner();
    let (lib, epoch) = owner.library();
    let acked = Arc::new(Mutex::new(Vec::<String>::new()));
    let sent = Arc::new(Mutex::new(Vec::<String>::new()));
    let mut workers = vec![];
    for w in 0..4 {
        let (c, lib, epoch, acked, sent) = (
            owner.clone(),
            lib.clone(),
            epoch.clone(),
            acked.clone(),
            sent.clone(),
        );
        workers.push(std::thread::spawn(move || {
            for i in 0..10_000 {
                let r = rev_id();
                sent.lock().unwrap().push(r.clone());
                let rev = put(&r, &format!("t{w}-{i}"), &[], "x", "x");
                match c.try_push(&lib, &epoch, &[rev]) {
                    Ok((200, rep)) if rep["results"][0]["status"] == "applied" => {
                        acked.lock().unwrap().push(r)
                    }
                    _ => return,
                }
            }
        }));
    }
    while acked.lock().unwrap().len() < 40 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    h.kill();
    for w in workers {
        let _ = w.join();
    }
    h.serve();
    let acked = acked.lock().unwrap().clone();
    let stored: HashSet<String> = owner
        .pull_all(&lib, &epoch, 0)
        .iter()
        .filter_map(|c| {
            c["revision"]["revision"]["rev_id"]
                .as_str()
                .map(String::from)
        })
        .collect();
    for r in &acked {
        assert!(stored.contains(r), "acknowledged revision {r} is lost");
    }
    // the unacknowledged ones pushed again: each stored exactly once
    let sent = sent.lock().unwrap().clone();
    for r in &sent {
        let idx = sent.iter().position(|x| x == r).unwrap();
        let rev = put(r, &format!("retry-{idx}"), &[], "x", "x");
        let res = owner.push_one(&lib, &epoch, &rev);
        assert!(
            res["status"] == "applied" || res["duplicate"] == true,
            "{res}"
        );
        assert_eq!(
            h.scalar(&format!(
                "SELECT count(*) FROM revisions WHERE rev_id = '{r}'"
            )),
            1
        );
    }
    let seqs: Vec<i64> = owner
        .pull_all(&lib, &epoch, 0)
        .iter()
        .map(|c| c["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "the log has no gap"
    );
}

both!(a_cursor_misses_nothing_under_concurrent_pushers);
fn a_cursor_misses_nothing_under_concurrent_pushers(b: Backend) {
    let h = Hub::start(b);
    let owner = h.owner();
    let (lib, epoch) = owner.library();
    const PUSHERS: usize = 12;
    const EACH: usize = 40;
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let mut workers = vec![];
    for w in 0..PUSHERS {
        let (c, lib, epoch, done) = (owner.clone(), lib.clone(), epoch.clone(), done.clone());
        workers.push(std::thread::spawn(move || {
            let mut mine = vec![];
            for i in 0..EACH {
                let r = rev_id();
                let res = c.push_one(&lib, &epoch, &put(&r, &format!("w{w}-{i}"), &[], "x", "x"));
                assert_eq!(res["status"], "applied");
                mine.push(r);
            }
            done.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            mine
        }));
    }
    // one puller follows the cursor while they push
    let mut cursor = 0;
    let mut pulled = BTreeSet::new();
    loop {
        let finished = done.load(std::sync::atomic::Ordering::SeqCst) == PUSHERS;
        let (s, page) = owner.changes(&lib, &epoch, cursor);
        assert_eq!(s, 200);
        for c in page["changes"].as_array().unwrap() {
            let seq = c["seq"].as_i64().unwrap();
            assert_eq!(seq, cursor + 1, "a change was skipped after {cursor}");
            cursor = seq;
            if let Some(r) = c["revision"]["revision"]["rev_id"].as_str() {
                pulled.insert(r.to_string());
            }
        }
        if finished && !page["more"].as_bool().unwrap() {
            break;
        }
    }
    let committed: BTreeSet<String> = workers
        .into_iter()
        .flat_map(|w| w.join().unwrap())
        .collect();
    assert_eq!(committed.len(), PUSHERS * EACH);
    assert_eq!(pulled, committed, "0 skipped");
}

#[test]
fn two_hubs_over_one_postgresql_poke_each_other() {
    if !backend_ready(Backend::Pg, "two_hubs_over_one_postgresql_poke_each_other") {
        return;
    }
    let mut h = Hub::start(Backend::Pg);
    let second = h.serve_another();
    let owner = h.owner();
    let (lib, epoch) = owner.library();
    let on_second = owner.at(&h.base_url_at(second));
    let ev2 = on_second.events();
    let ev1 = owner.events();
    let r = owner.push_one(&lib, &epoch, &put(&rev_id(), "g", &[], "Hi", "x"));
    ev2.wait_poke(&lib, r["seq"].as_i64().unwrap());
    let r = on_second.push_one(&lib, &epoch, &put(&rev_id(), "h", &[], "Hi", "x"));
    ev1.wait_poke(&lib, r["seq"].as_i64().unwrap());
    assert_eq!(owner.digest(&lib), on_second.digest(&lib));
    // the LISTEN connections die: each hub reconnects and pokes all its streams, so a change
    // whose notification was lost still reaches the other hub's stream
    let killed = pg_query_i64(
        &h.database,
        "SELECT count(pg_terminate_backend(pid))::bigint FROM pg_stat_activity \
         WHERE query = 'LISTEN quiver_changes' AND datname = current_database()",
    );
    assert_eq!(killed, [2]);
    let r = owner.push_one(&lib, &epoch, &put(&rev_id(), "i", &[], "Hi", "x"));
    ev2.wait_poke(&lib, r["seq"].as_i64().unwrap());
    // (only the second hub's own listener feeds its streams: it did reconnect)
    assert_eq!(
        h.log(second)
            .matches("listening for changes on postgresql")
            .count(),
        2
    );
    // a second SQLite process over the same file is refused
    let mut s = Hub::start(Backend::Sqlite);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let out = std::process::Command::new(quiver_tests::quiver_bin())
        .args(["hub", "serve", "--dir"])
        .arg(s.path())
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("another `quiver hub serve`"));
    s.stop();
}

/// A GET over TLS with the pinned client config: the status line, or the handshake's error.
fn tls_get(port: u16, fingerprint: &str, path: &str) -> Result<String, String> {
    use std::io::{Read, Write};
    let cfg = quiver_hub::tls::pinned_client_config(fingerprint)?;
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn =
        rustls::ClientConnection::new(std::sync::Arc::new(cfg), name).map_err(|e| e.to_string())?;
    let sock = std::net::TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    let mut tls = rustls::StreamOwned::new(conn, sock);
    tls.write_all(
        format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n").as_bytes(),
    )
    .map_err(|e| e.to_string())?;
    let mut out = String::new();
    match tls.read_to_string(&mut out) {
        Ok(_) => {}
        // the server may close without close_notify after `Connection: close`
        Err(e) if !out.is_empty() => drop(e),
        Err(e) => return Err(e.to_string()),
    }
    Ok(out)
}

#[test]
fn tls_with_a_pinned_fingerprint() {
    let mut h = Hub::init(Backend::Sqlite, true, &[]);
    h.serve();
    let fp = h.owner_invite.rsplit_once('.').unwrap().1.to_string();
    assert!(h
        .owner_invite
        .starts_with(&format!("quiver+https://127.0.0.1:{}/join#", h.port)));
    let reply = tls_get(h.port, &fp, "/v1/health").unwrap();
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(reply.contains("\"ok\":true"));
    let wrong = "0".repeat(64);
    let err = tls_get(h.port, &wrong, "/v1/health").unwrap_err();
    assert!(err.contains("not the one the invite names"), "{err}");
    // the key files are the owner's alone
    use std::os::unix::fs::PermissionsExt;
    for f in ["hub.json", "key.pem"] {
        let mode = std::fs::metadata(hub_file(&h, f))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    // plain HTTP is refused off loopback
    let out = std::process::Command::new(quiver_tests::quiver_bin())
        .args([
            "hub",
            "init",
            "--plain",
            "--listen",
            "0.0.0.0:7443",
            "--dir",
        ])
        .arg(h.dir.path().join("other"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("loopback"));
}

#[test]
fn sigterm_stops_a_hub_with_a_stream_open() {
    let mut h = Hub::start(Backend::Sqlite);
    let owner = h.owner();
    let ev = owner.events();
    ev.wait_poke(&owner.library().0, 0);
    let st = h.stop();
    assert!(st[0].success(), "{:?}", st);
    ev.wait_end();
}

both!(a_restored_hub_gives_new_epochs);
fn a_restored_hub_gives_new_epochs(b: Backend) {
    let mut h = Hub::start(b);
    let owner = h.owner();
    let (lib, epoch) = owner.library();
    let r1 = rev_id();
    owner.push_one(&lib, &epoch, &put(&r1, "g", &[], "Hi", "x"));
    h.stop();
    let out = h.cli_ok(&["restored"]);
    assert!(out.contains(&lib), "{out}");
    h.serve();
    let (s, e) = owner.changes(&lib, &epoch, 0);
    assert_eq!((s, e["error"]["code"].as_str()), (410, Some("reset")));
    let new = e["error"]["epoch"].as_str().unwrap().to_string();
    assert_ne!(new, epoch);
    let (s, _) = owner.push(&lib, &epoch, &[put(&rev_id(), "h", &[], "x", "x")]);
    assert_eq!(s, 410);
    // the daemon re-pushes what it has under the new epoch: known revisions are duplicates
    let again = owner.push_one(&lib, &new, &put(&r1, "g", &[], "Hi", "x"));
    assert_eq!(again["duplicate"], true);
    assert!(!owner.pull_all(&lib, &new, 0).is_empty());
}

both!(the_admin_commands_act_on_a_running_hub);
fn the_admin_commands_act_on_a_running_hub(b: Backend) {
    let h = Hub::start(b);
    let (owner, editor, _viewer, lib, epoch) = team(&h);
    let ev = editor.events();
    let (_, me) = editor.get("/v1/me");
    ev.wait_poke(&lib, me["libraries"][0]["head_seq"].as_i64().unwrap());
    // a role changed from the command line reaches the member's stream and /v1/me
    let out = h.cli_ok(&["member", "set", "team", "editor", "maintainer"]);
    let seq: i64 = out
        .rsplit_once("seq ")
        .unwrap()
        .1
        .trim_end_matches(')')
        .parse()
        .unwrap();
    ev.wait_poke(&lib, seq);
    let (_, me) = editor.get("/v1/me");
    assert_eq!(me["libraries"][0]["role"], "maintainer");
    // libraries: create, list, rename; the rename is a library change in the log
    h.cli_ok(&["library", "create", "other", "--review"]);
    let list: Value = serde_json::from_str(&h.cli_ok(&["library", "list", "--json"])).unwrap();
    let names: Vec<(&str, bool)> = list["libraries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| {
            (
                l["name"].as_str().unwrap(),
                l["review_required"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(names, [("other", true), ("team", false)]);
    h.cli_ok(&["library", "set", "team", "--name", "support"]);
    let last = owner.pull_all(&lib, &epoch, 0).pop().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["library"]["name"].as_str()),
        (Some("library"), Some("support"))
    );
    // status and devices
    let st: Value = serde_json::from_str(&h.cli_ok(&["status", "--json"])).unwrap();
    assert_eq!(
        st["backend"],
        if b == Backend::Sqlite {
            "sqlite"
        } else {
            "postgresql"
        }
    );
    assert_eq!(
        (st["users"].as_u64(), st["devices"].as_u64()),
        (Some(3), Some(3))
    );
    let devices: Value = serde_json::from_str(&h.cli_ok(&["device", "list", "--json"])).unwrap();
    assert_eq!(devices["devices"].as_array().unwrap().len(), 3);
    // over the admin API: an owner invites, an editor cannot create libraries
    let (s, r) = owner.post(
        "/v1/admin/invites",
        &json!({"role": "viewer", "libraries": ["support"]}),
    );
    assert_eq!(s, 200, "{r}");
    let v = h.join(r["invite"].as_str().unwrap(), "new-pc");
    assert_eq!(v.me["libraries"][0]["role"], "viewer");
    let (s, _) = v.post("/v1/admin/libraries", &json!({"name": "mine"}));
    assert_eq!(s, 403);
    let (s, r) = owner.post("/v1/admin/libraries", &json!({"name": "mine"}));
    assert_eq!((s, r["role"].as_str()), (200, Some("owner")), "{r}");
    // a bad command line: exit 1 and the reason
    let o = h.cli(&["member", "set", "nope", "editor", "viewer"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no library"));
}
