//! Team sync end to end: real `quiver` daemons (each with its own data and socket directory)
//! on a real `quiver hub serve`, on SQLite and on PostgreSQL (each test twice: `<name>::sqlite`
//! and `<name>::postgresql`, a fresh database per test; see `tests/hub.rs` for how PostgreSQL
//! is found). Daemons reach the hub through a fault proxy (`tests/team.rs`) that partitions them.

use quiver_tests::hub::{Backend, Hub};
use quiver_tests::team::*;
use serde_json::{json, Value};

use quiver_tests::both;

/// A hub and its owner's daemon `a` (joined through a proxy), and the first library's id.
fn hub_and_owner(b: Backend) -> (Hub, Member, String) {
    let h = Hub::start(b);
    let mut a = Member::new("a");
    let j = a.join(&h.owner_invite, h.port, true);
    let lib = j["libraries"][0]["id"].as_str().unwrap().to_string();
    (h, a, lib)
}

/// Another member of `lib`'s library (named `team`) with `role`, joined through a proxy.
fn member(h: &Hub, name: &str, role: &str) -> Member {
    let mut m = Member::new(name);
    m.join(&h.invite(role, &["team"], Some(name)), h.port, true);
    m
}

fn title(m: &mut Member, lib: &str, id: &str) -> Value {
    m.get(lib, id)["result"]["template"]["title"].clone()
}

both!(three_daemons_converge_and_a_conflict_is_resolved);
fn three_daemons_converge_and_a_conflict_is_resolved(backend: Backend) {
    let (h, mut a, lib) = hub_and_owner(backend);
    let mut b = member(&h, "bob", "editor");
    let mut c = member(&h, "carol", "editor");
    let checker = Checker::new(&h, &[&lib]);
    a.put(&lib, "greeting", "Hello", "Hello there", &["a"]);
    a.put(&lib, "refund", "Refund", "We refund", &[]);
    a.put(&lib, "wait", "Wait", "One moment", &[]);
    for m in [&mut a, &mut b, &mut c] {
        m.sync();
    }
    assert_eq!(title(&mut c, &lib, "greeting"), "Hello");
    let g = b.get(&lib, "greeting")["result"].clone();
    assert_eq!(
        (g["sync"].as_str(), g["author"].as_str()),
        (Some("synced"), Some("owner"))
    );

    // b and c cut off; the same field changed two ways (a, b), another field (c), another
    // template (c), and both edit `wait` two ways too
    b.partition(true);
    c.partition(true);
    a.put(&lib, "greeting", "Hello from A", "Hello there", &["a"]);
    a.put(&lib, "wait", "Wait A", "One moment", &[]);
    let mine = b.put(&lib, "greeting", "Hello from B", "Hello there", &["a"]);
    assert_eq!(mine["sync"], "pending", "{mine}");
    b.put(&lib, "wait", "Wait B", "One moment", &[]);
    c.put(&lib, "greeting", "Hello", "Hello there", &["a", "c"]);
    c.put(&lib, "refund", "Refund", "We refund at once", &[]);
    let st = b.try_sync(300);
    assert_eq!(st["result"]["idle"], false, "{st}");
    assert!(b.lib_status(&lib)["outbox"].as_u64().unwrap() >= 2);
    a.sync();
    b.partition(false);
    c.partition(false);
    for _ in 0..2 {
        for m in [&mut b, &mut c, &mut a] {
            m.sync();
        }
    }
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut b, &mut c]);

    // head is the version that reached the hub first, merged with c's tags; b's title is a kept
    // conflict, the same on every daemon
    for m in [&mut a, &mut b, &mut c] {
        let g = m.get(&lib, "greeting")["result"].clone();
        assert_eq!(g["template"]["title"], "Hello from A", "{}: {g}", m.name);
        assert_eq!(g["template"]["tags"], json!(["a", "c"]), "{}: {g}", m.name);
        assert_eq!(g["sync"], "conflict", "{}: {g}", m.name);
        assert_eq!(
            m.get(&lib, "refund")["result"]["template"]["parts"][0]["text"],
            "We refund at once"
        );
        let cs = m.conflicts(&lib);
        assert_eq!(cs.len(), 2, "{}: {cs:?}", m.name);
        let gc = cs.iter().find(|x| x["template"] == "greeting").unwrap();
        assert_eq!(gc["fields"], json!(["title"]), "{gc}");
        assert_eq!(gc["head"]["template"]["title"], "Hello from A");
        assert_eq!(gc["other"]["template"]["title"], "Hello from B");
        assert_eq!(gc["other"]["author"], "bob");
        assert_eq!(gc["base"]["template"]["title"], "Hello");
        assert_eq!(m.lib_status(&lib)["conflicts"], 2);
    }

    // an unknown template has nothing to resolve; b resolves greeting by taking its own title
    let r = c.call(
        "team.resolve",
        json!({"library": lib, "template": "nope", "take": "head"}),
    );
    assert_eq!(r["error"]["code"], "not_found", "{r}");
    let r = b.ok(
        "team.resolve",
        json!({"library": lib, "template": "greeting", "take": {"title": "other"}}),
    );
    assert!(r["rev_id"].is_string(), "{r}");
    let pending = b.conflicts(&lib);
    let gc = pending
        .iter()
        .find(|x| x["template"] == "greeting")
        .unwrap();
    assert_eq!(gc["resolving"], r["rev_id"], "{gc}");
    // and `wait` from the command line by keeping both: a's version stays, b's becomes wait-2
    let o = c.sb.run(&["team", "conflicts"]);
    assert!(
        o.stdout.contains("team/wait") && o.stdout.contains("Wait B"),
        "{}",
        o.stdout
    );
    let o =
        c.sb.run(&["team", "resolve", "team/wait", "--take", "both"]);
    assert!(o.status.success(), "{}", o.stderr);
    assert!(o.stdout.contains("kept as wait-2"), "{}", o.stdout);
    for _ in 0..2 {
        for m in [&mut b, &mut c, &mut a] {
            m.sync();
        }
    }
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut b, &mut c]);
    let o = a.sb.run(&["team", "sync"]);
    assert!(o.status.success(), "{}", o.stderr);
    let o = a.sb.run(&["team", "status"]);
    let line = o
        .stdout
        .lines()
        .find(|l| l.starts_with("team "))
        .unwrap_or("")
        .to_string();
    assert!(
        line.contains("owner") && line.contains("match") && line.contains("online"),
        "{}",
        o.stdout
    );
    let st: Value = serde_json::from_str(&a.sb.run(&["team", "status", "--json"]).stdout).unwrap();
    assert_eq!(st["libraries"][0]["outbox"], 0, "{st}");
    for m in [&mut a, &mut b, &mut c] {
        assert!(m.conflicts(&lib).is_empty(), "{}", m.name);
        let g = m.get(&lib, "greeting")["result"].clone();
        assert_eq!(g["template"]["title"], "Hello from B", "{}: {g}", m.name);
        assert_eq!(g["template"]["tags"], json!(["a", "c"]));
        assert_eq!(g["sync"], "synced");
        assert_eq!(title(m, &lib, "wait"), "Wait A");
        assert_eq!(title(m, &lib, "wait-2"), "Wait B");
        assert_eq!(m.lib_status(&lib)["digest_match"], true);
    }
    // searching every library finds the team's templates beside the personal ones
    let hits = a.ok("templates.search", json!({"query": "wait", "library": "*"}));
    let found: Vec<(String, String)> = hits["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["library"].as_str().unwrap().into(),
                r["id"].as_str().unwrap().into(),
            )
        })
        .collect();
    for want in [
        (lib.clone(), "wait".to_string()),
        (lib.clone(), "wait-2".into()),
    ] {
        assert!(found.contains(&want), "{want:?} not in {hits}");
    }
    assert!(found.iter().any(|(l, _)| l == "local"), "{hits}");
    // the default library is the personal one
    let hits = a.ok("templates.search", json!({"query": "wait"}));
    assert!(
        hits["results"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["library"] == "local"),
        "{hits}"
    );
}

both!(a_viewers_edit_is_denied_and_kept_as_a_draft);
fn a_viewers_edit_is_denied_and_kept_as_a_draft(backend: Backend) {
    let (h, mut a, lib) = hub_and_owner(backend);
    let mut v = member(&h, "vera", "viewer");
    let checker = Checker::new(&h, &[&lib]);
    a.put(&lib, "greeting", "Hello", "Hi", &[]);
    a.sync();
    v.sync();
    let before = h.counts();
    let d = v.put(&lib, "greeting", "Mine", "Hi", &[]);
    assert_eq!(d["sync"], "pending", "{d}");
    v.put(&lib, "new-one", "New", "x", &[]);
    v.sync();
    // nothing was written at the hub
    assert_eq!(h.counts(), before);
    let st = v.lib_status(&lib);
    assert_eq!(
        (st["drafts"].as_u64(), st["outbox"].as_u64()),
        (Some(2), Some(0)),
        "{st}"
    );
    // the draft is what the viewer sees, with its state and the hub's reason
    let g = v.get(&lib, "greeting")["result"].clone();
    assert_eq!(
        (g["template"]["title"].as_str(), g["sync"].as_str()),
        (Some("Mine"), Some("draft")),
        "{g}"
    );
    let revs = v.ok(
        "templates.revisions",
        json!({"library": lib, "id": "greeting"}),
    );
    let newest = &revs["revisions"][0];
    assert_eq!(newest["state"], "draft", "{revs}");
    assert!(
        newest["reason"].as_str().is_some_and(|r| !r.is_empty()),
        "{revs}"
    );
    // the others never see it
    a.sync();
    assert_eq!(title(&mut a, &lib, "greeting"), "Hello");
    assert_eq!(a.get(&lib, "new-one")["error"]["code"], "not_found");
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut v]);
    // a newer version from the team shows again; the drafts are kept
    a.put(&lib, "greeting", "Hello again", "Hi", &[]);
    a.sync();
    v.sync();
    assert_eq!(title(&mut v, &lib, "greeting"), "Hello again");
    assert_eq!(v.lib_status(&lib)["drafts"], 2);
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut v]);
    // a viewer cannot resolve
    let r = v.call(
        "team.resolve",
        json!({"library": lib, "template": "greeting", "take": "head"}),
    );
    assert_eq!(r["error"]["code"], "forbidden", "{r}");
}

both!(a_removed_member_is_purged_and_keeps_its_history);
fn a_removed_member_is_purged_and_keeps_its_history(backend: Backend) {
    let (h, mut a, lib) = hub_and_owner(backend);
    let mut e = member(&h, "erin", "editor");
    a.put(&lib, "greeting", "Hello", "Hi", &[]);
    a.sync();
    e.sync();
    let g = e.get(&lib, "greeting")["result"].clone();
    // a send of the team template records the exact revision it used
    let r = e.ok(
        "send.reserve",
        json!({"idempotency_key": "k1", "platform": "udesk", "workspace": "w",
               "library": lib, "template_id": "greeting", "revision": g["revision"],
               "part_index": 0, "payload": "{\"text\":\"Hi\"}"}),
    );
    let send_id = r["send_id"].clone();
    let rows = e.ok("history.list", json!({}))["rows"].clone();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["send_id"] == send_id)
        .unwrap()
        .clone();
    assert_eq!(
        (&row["library"], &row["rev_id"]),
        (&json!(lib), &g["head_rev"]),
        "{row}"
    );

    h.cli_ok(&["member", "remove", "team", "erin"]);
    e.sync();
    let st = e.status();
    assert!(st["libraries"].as_array().unwrap().is_empty(), "{st}");
    assert_eq!(e.get(&lib, "greeting")["error"]["code"], "not_found");
    let left: i64 =
        e.sb.db()
            .query_row(
                "SELECT (SELECT count(*) FROM templates WHERE library = ?1) + \
             (SELECT count(*) FROM template_revisions WHERE library = ?1)",
                [&lib],
                |r| r.get(0),
            )
            .unwrap();
    assert_eq!(left, 0, "the library's templates were not purged");
    // the send history stays, with the revision it used
    let rows = e.ok("history.list", json!({}))["rows"].clone();
    let row = rows
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["send_id"] == send_id)
        .unwrap()
        .clone();
    assert_eq!(row["rev_id"], g["head_rev"], "{row}");
    // the personal library is untouched
    assert!(e.get("local", "greeting")["result"]["template"].is_object());
}

both!(edits_queue_while_the_hub_is_away_and_converge_after);
fn edits_queue_while_the_hub_is_away_and_converge_after(backend: Backend) {
    let (mut h, mut a, lib) = hub_and_owner(backend);
    let mut b = member(&h, "bob", "editor");
    let checker = Checker::new(&h, &[&lib]);
    a.put(&lib, "greeting", "Hello", "Hi", &[]);
    a.sync();
    b.sync();
    h.kill();
    for i in 0..3 {
        a.put(&lib, &format!("a{i}"), "A", &format!("a {i}"), &[]);
    }
    b.put(&lib, "greeting", "Hello B", "Hi", &[]);
    let r = a.try_sync(500);
    assert_eq!(r["result"]["idle"], false, "{r}");
    let st = a.lib_status(&lib);
    assert_eq!(st["outbox"], 3, "{st}");
    assert_eq!(st["state"], "offline", "{st}");
    let hub = &a.status()["hubs"][0];
    assert!(hub["last_error"].is_string(), "{hub}");
    // quiver doctor says which link is broken
    let d = a.sb.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(&d.stdout).unwrap();
    let team = report["team"].as_array().unwrap();
    assert!(
        team.iter().any(|c| c["name"] == "hub" && c["ok"] == false),
        "{report}"
    );
    h.serve();
    for _ in 0..2 {
        a.sync();
        b.sync();
    }
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut b]);
    assert_eq!(title(&mut a, &lib, "greeting"), "Hello B");
    let d = a.sb.run(&["doctor", "--json"]);
    let report: Value = serde_json::from_str(&d.stdout).unwrap();
    let team = report["team"].as_array().unwrap();
    let names: Vec<&str> = team.iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(
        names,
        ["hub", "pin", "token", "lag", "outbox", "digest"],
        "{report}"
    );
    assert!(team.iter().all(|c| c["ok"] == true), "{report}");
    // the hub killed while a large push is in flight: nothing lost, nothing twice
    let many: Vec<Value> = (0..300)
        .map(|i| {
            json!({"id": format!("bulk-{i}"), "title": format!("Bulk {i}"),
                        "parts": [{"type": "text", "text": format!("text {i}")}]})
        })
        .collect();
    a.ok(
        "templates.import",
        json!({"library": lib, "templates": many}),
    );
    h.kill();
    h.serve();
    for _ in 0..2 {
        a.sync();
        b.sync();
    }
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut b]);
    assert_eq!(b.lib_status(&lib)["templates"], 304);
}

both!(a_daemon_killed_mid_push_or_mid_pull_loses_nothing);
fn a_daemon_killed_mid_push_or_mid_pull_loses_nothing(backend: Backend) {
    let (h, mut a, lib) = hub_and_owner(backend);
    let mut b = member(&h, "bob", "editor");
    let checker = Checker::new(&h, &[&lib]);
    // killed while pushing: the edits and their outbox rows were written in one transaction
    for round in 0..3u64 {
        let many: Vec<Value> = (0..200)
            .map(|i| {
                json!({"id": format!("r{round}-{i}"), "title": format!("T {round} {i}"),
                            "parts": [{"type": "text", "text": "x"}]})
            })
            .collect();
        a.ok(
            "templates.import",
            json!({"library": lib, "templates": many}),
        );
        std::thread::sleep(std::time::Duration::from_millis(round * 15));
        a.kill9();
        a.start();
    }
    a.sync();
    // killed while pulling: each page is applied with its cursor in one transaction
    for round in 0..3u64 {
        b.kill9();
        b.start();
        std::thread::sleep(std::time::Duration::from_millis(round * 20));
    }
    b.kill9();
    b.start();
    b.sync();
    a.sync();
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut b]);
    assert_eq!(b.lib_status(&lib)["templates"], 600);
    assert_eq!(a.outbox(), 0);
}

both!(a_hub_restored_from_a_backup_gets_back_what_it_lost);
fn a_hub_restored_from_a_backup_gets_back_what_it_lost(backend: Backend) {
    let (mut h, mut a, lib) = hub_and_owner(backend);
    let mut b = member(&h, "bob", "editor");
    a.put(&lib, "greeting", "Hello", "Hi", &[]);
    a.sync();
    b.sync();
    h.stop();
    let bk = backup(&h);
    h.serve();
    // edits the backup does not have
    a.put(&lib, "greeting", "Hello 2", "Hi", &[]);
    a.put(&lib, "later", "Later", "x", &[]);
    b.put(&lib, "from-b", "B", "y", &[]);
    for _ in 0..2 {
        a.sync();
        b.sync();
    }
    let lost: Vec<String> = a
        .revisions(&lib)
        .into_iter()
        .chain(b.revisions(&lib))
        .filter(|(_, (_, own))| *own)
        .map(|(r, _)| r)
        .collect();
    h.stop();
    restore(&h, &bk);
    h.cli_ok(&["restored"]);
    h.serve();
    let checker = Checker::new(&h, &[&lib]);
    for _ in 0..2 {
        a.sync();
        b.sync();
    }
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut b]);
    let at_hub = checker.revisions(&lib);
    for r in &lost {
        assert!(at_hub.contains(r), "revision {r} was not pushed again");
    }
    for m in [&mut a, &mut b] {
        assert_eq!(title(m, &lib, "greeting"), "Hello 2");
        assert_eq!(title(m, &lib, "later"), "Later");
        assert_eq!(title(m, &lib, "from-b"), "B");
    }
}

/// How many seeds the random runs take (`QUIVER_TEAM_SEEDS`), and a single seed to replay
/// (`QUIVER_TEAM_SEED`).
fn seeds(default: u64) -> Vec<u64> {
    if let Some(s) = std::env::var("QUIVER_TEAM_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return vec![s];
    }
    let n = std::env::var("QUIVER_TEAM_SEEDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(default);
    (1..=n).collect()
}

/// A random version of template `id`: a title, a text, tags, from a few choices each, so that
/// edits clash, merge and repeat one another.
fn random_template(rng: &mut Rng, id: &str) -> Value {
    let titles = ["Hello", "Hi", "Welcome", "Good day"];
    let texts = ["One moment", "We are on it", "Thanks for waiting", "Done"];
    let tags = ["a", "b", "c"];
    let chosen: Vec<&str> = tags.iter().copied().filter(|_| rng.chance(40)).collect();
    json!({"id": id, "title": titles[rng.below(4) as usize],
           "tags": chosen, "parts": [{"type": "text", "text": texts[rng.below(4) as usize]}]})
}

/// Seeded runs: three daemons (one sometimes a viewer) edit, delete and resolve a few
/// templates of a fresh library while partitions, daemon SIGKILLs and hub SIGKILLs happen at
/// random; once healed, every daemon is on the hub's digest with no revision lost or doubled.
fn random_runs(backend: Backend, default_seeds: u64) {
    let t_setup = std::time::Instant::now();
    let (mut h, a, first) = hub_and_owner(backend);
    let b = member(&h, "bob", "editor");
    let c = member(&h, "carol", "editor");
    let checker = Checker::new(&h, &[&first]);
    let mut ms = [a, b, c];
    let started = std::time::Instant::now();
    let trace = std::env::var("QUIVER_TEAM_TRACE").is_ok();
    if trace {
        eprintln!("set up the team in {:?}", t_setup.elapsed());
    }
    for seed in seeds(default_seeds) {
        if std::env::var("QUIVER_TEAM_TRACE").is_ok() {
            eprintln!("seed {seed}: starts at {:?}", started.elapsed());
        }
        let mut rng = Rng::new(seed);
        let (s, l) = checker.client.post(
            "/v1/admin/libraries",
            &json!({"name": format!("seed-{seed}")}),
        );
        assert_eq!(s, 200, "{l}");
        let lib = l["id"].as_str().unwrap().to_string();
        let roles = [
            "owner",
            "editor",
            if rng.chance(15) { "viewer" } else { "editor" },
        ];
        for (user, role) in [("bob", roles[1]), ("carol", roles[2])] {
            let (s, r) = checker.client.send(
                "PUT",
                &format!("/v1/libraries/{lib}/members/{user}"),
                &json!({ "role": role }),
            );
            assert_eq!(s, 200, "{r}");
        }
        let t = std::time::Instant::now();
        for m in ms.iter_mut() {
            m.sync();
            if std::env::var("QUIVER_TEAM_TRACE").is_ok() {
                eprintln!("seed {seed}: {} set up in {:?}", m.name, t.elapsed());
            }
            assert!(
                !m.lib_status(&lib).is_null(),
                "seed {seed}: {} lacks {lib}",
                m.name
            );
        }
        let ops = 20 + rng.below(20);
        let t0 = std::time::Instant::now();
        for _ in 0..ops {
            let i = rng.below(3) as usize;
            let m = &mut ms[i];
            let op = rng.below(100);
            let t = std::time::Instant::now();
            if trace {
                eprint!("seed {seed} op {op} by {}: ", m.name);
            }
            match op {
                0..=54 => {
                    let id = format!("t{}", rng.below(5));
                    if rng.chance(12) {
                        m.call("templates.delete", json!({"library": lib, "id": id}));
                    } else {
                        let t = random_template(&mut rng, &id);
                        m.ok("templates.put", json!({"library": lib, "template": t}));
                    }
                }
                55..=64 => {
                    let up = m.proxy.as_ref().unwrap().is_up();
                    m.partition(up);
                }
                65..=72 => {
                    m.kill9();
                    m.start();
                }
                73..=89 => {
                    m.try_sync(50);
                }
                90..=96 => {
                    if roles[i] != "viewer" {
                        if let Some(cf) = m.conflicts(&lib).first() {
                            let take = ["head", "other", "both"][rng.below(3) as usize];
                            m.call(
                                "team.resolve",
                                json!({"library": lib, "template": cf["template"],
                                       "conflict": cf["conflict"], "take": take}),
                            );
                        }
                    }
                }
                _ => {
                    h.kill();
                    h.serve();
                }
            }
            if trace {
                eprintln!("{:?}", t.elapsed());
            }
        }
        if trace {
            eprintln!("seed {seed}: {ops} ops in {:?}", t0.elapsed());
        }
        for m in ms.iter_mut() {
            m.partition(false);
        }
        for _ in 0..2 {
            for m in ms.iter_mut() {
                let t = std::time::Instant::now();
                let r = m.try_sync(20_000);
                assert_eq!(r["result"]["idle"], true, "seed {seed}: {}: {r}", m.name);
                if trace {
                    eprintln!("seed {seed}: final sync of {} in {:?}", m.name, t.elapsed());
                }
            }
        }
        let t = std::time::Instant::now();
        let [a, b, c] = &mut ms;
        check_converged(&h, &checker, &lib, &mut [a, b, c]);
        if trace {
            eprintln!("seed {seed}: checked in {:?}", t.elapsed());
        }
        // now and then a member leaves the library: its daemon purges it
        if rng.chance(30) {
            let (s, r) = checker.client.send(
                "DELETE",
                &format!("/v1/libraries/{lib}/members/carol"),
                &json!({}),
            );
            assert_eq!(s, 200, "{r}");
            let c = &mut ms[2];
            c.sync();
            assert!(
                c.lib_status(&lib).is_null(),
                "seed {seed}: carol still has {lib}"
            );
            assert_eq!(c.revisions(&lib).len(), 0, "seed {seed}: {lib} not purged");
        }
    }
    if trace {
        eprintln!("every seed done at {:?}", started.elapsed());
    }
}

#[test]
fn seeded_random_runs_converge_with_nothing_lost_sqlite() {
    random_runs(Backend::Sqlite, 100);
}

#[test]
fn seeded_random_runs_converge_with_nothing_lost_postgresql() {
    if quiver_tests::hub::backend_ready(Backend::Pg, "seeded_random_runs") {
        random_runs(Backend::Pg, 30);
    }
}

both!(an_editors_edit_in_a_reviewed_library_waits_as_a_proposal);
fn an_editors_edit_in_a_reviewed_library_waits_as_a_proposal(backend: Backend) {
    let (h, mut a, lib) = hub_and_owner(backend);
    let mut e = member(&h, "erin", "editor");
    let checker = Checker::new(&h, &[&lib]);
    a.put(&lib, "greeting", "Hello", "Hi", &[]);
    a.sync();
    h.cli_ok(&["library", "set", "team", "--review", "true"]);
    e.sync();
    assert_eq!(e.lib_status(&lib)["review_required"], true);
    e.put(&lib, "greeting", "Hello, reviewed", "Hi", &[]);
    e.sync();
    let g = e.get(&lib, "greeting")["result"].clone();
    assert_eq!(g["sync"], "proposed", "{g}");
    a.sync();
    assert_eq!(title(&mut a, &lib, "greeting"), "Hello");
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut e]);
    // the owner's daemon lists it; the editor may not review it
    let rev = g["head_rev"].as_str().unwrap().to_string();
    let listed = a.ok("team.proposals", json!({ "library": lib }));
    let revs: Vec<&str> = listed["proposals"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["revision"]["rev_id"].as_str().unwrap())
        .collect();
    assert_eq!(revs, [rev.as_str()], "{listed}");
    let cli = a.sb.run(&["team", "proposals", "team"]);
    assert!(
        cli.status.success() && cli.stdout.contains(&rev),
        "{}",
        cli.stdout
    );
    let denied = e.call(
        "team.review",
        json!({ "library": lib, "rev_id": rev, "approve": true }),
    );
    assert_eq!(denied["error"]["code"], "forbidden", "{denied}");
    // a maintainer approves it: it becomes everyone's head
    let r = a.ok(
        "team.review",
        json!({ "library": lib, "rev_id": rev, "approve": true }),
    );
    assert_eq!(r["result"]["status"], "applied", "{r}");
    let again = a.call(
        "team.review",
        json!({ "library": lib, "rev_id": rev, "approve": false }),
    );
    assert_eq!(again["error"]["code"], "conflict", "{again}");
    e.sync();
    a.sync();
    for m in [&mut a, &mut e] {
        let g = m.get(&lib, "greeting")["result"].clone();
        assert_eq!(g["template"]["title"], "Hello, reviewed", "{}: {g}", m.name);
        assert_eq!(g["sync"], "synced", "{}: {g}", m.name);
    }
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut e]);
    // a rejected proposal: its author's device shows the team's version again and keeps the
    // rejected revision in the template's history
    e.put(&lib, "greeting", "Hello, rejected", "Hi", &[]);
    e.sync();
    let rev = e.get(&lib, "greeting")["result"]["head_rev"]
        .as_str()
        .unwrap()
        .to_string();
    let cli = a.sb.run(&["team", "reject", "team", &rev]);
    assert!(cli.status.success(), "{}{}", cli.stdout, cli.stderr);
    assert!(cli.stdout.contains("rejected"), "{}", cli.stdout);
    e.sync();
    a.sync();
    assert_eq!(title(&mut a, &lib, "greeting"), "Hello, reviewed");
    let g = e.get(&lib, "greeting")["result"].clone();
    assert_eq!(g["template"]["title"], "Hello, reviewed", "{g}");
    assert_eq!(g["sync"], "synced", "{g}");
    let revs = e.ok(
        "templates.revisions",
        json!({ "library": lib, "id": "greeting" }),
    );
    let rejected = revs["revisions"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["rev_id"] == json!(rev))
        .cloned()
        .unwrap_or_else(|| panic!("{revs}"));
    assert_eq!(rejected["state"], "rejected", "{rejected}");
    assert_eq!(
        a.ok("team.proposals", json!({ "library": lib }))["proposals"],
        json!([])
    );
}

/// A `team.sync` that waits for an unreachable hub is served beside the connection's other
/// requests: the extension's one connection keeps sending while it waits.
#[test]
fn a_team_sync_waiting_for_the_hub_does_not_hold_up_other_requests() {
    let (mut h, a, _lib) = hub_and_owner(Backend::Sqlite);
    // the hub gone (not only partitioned: a pooled connection could outlive a partition)
    h.kill();
    let mut c = a.sb.connect();
    c.set_wait(std::time::Duration::from_secs(30));
    let ask = |c: &mut quiver_tests::DaemonClient, id: u64, method: &str, params: Value| {
        c.send_body(
            json!({"id": id, "method": method, "params": params})
                .to_string()
                .as_bytes(),
        )
    };
    ask(&mut c, 101, "team.sync", json!({"wait_ms": 3000}));
    ask(&mut c, 102, "settings.get", json!({}));
    ask(&mut c, 103, "templates.list", json!({"limit": 1}));
    let first = c.recv();
    let second = c.recv();
    let third = c.recv();
    assert_eq!(
        first["id"], 102,
        "the waiting team.sync held up settings.get: {first}"
    );
    assert!(first.get("result").is_some(), "{first}");
    assert_eq!(second["id"], 103, "{second}");
    assert_eq!(third["id"], 101, "{third}");
    assert_eq!(third["result"]["idle"], false, "{third}");
    // and the connection goes on in order afterwards
    assert!(c.call("settings.get", json!({})).get("result").is_some());
}

/// `team.leave` purges the libraries and revokes the device's token at the hub: a copy of the
/// token left behind opens nothing. With the hub away the leave still happens, and says the
/// token was not revoked.
#[test]
fn leaving_revokes_the_devices_token_at_the_hub() {
    let (h, mut a, lib) = hub_and_owner(Backend::Sqlite);
    let mut b = member(&h, "bob", "editor");
    let mut c = member(&h, "carol", "editor");
    a.put(&lib, "greeting", "Hello team", "Hi", &["t"]);
    a.sync();
    b.sync();
    c.sync();
    // the command line reaches team libraries by name (`quiver templates ... --library`)
    let o =
        b.sb.run(&["templates", "list", "--library", "team", "--format", "json"]);
    assert!(o.status.success(), "{}", o.stderr);
    let list: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(list[0]["title"], "Hello team", "{list}");
    let o = b.sb.run(&["templates", "list", "--library", "*"]);
    assert!(
        o.stdout
            .lines()
            .any(|l| l.starts_with("team") && l.contains("Hello team")),
        "{}",
        o.stdout
    );
    let o =
        b.sb.run(&["templates", "search", "hello", "--library", "team"]);
    assert!(o.stdout.contains("greeting"), "{}{}", o.stdout, o.stderr);
    let o = b.sb.run(&["templates", "list", "--library", "nosuch"]);
    assert!(
        !o.status.success() && o.stderr.contains("nosuch"),
        "{}",
        o.stderr
    );
    let file = b.sb.root.join("team.json");
    let o = b.sb.run(&[
        "templates",
        "export",
        file.to_str().unwrap(),
        "--library",
        "team",
    ]);
    assert!(o.status.success(), "{}", o.stderr);
    let o = b.sb.run(&[
        "templates",
        "import",
        file.to_str().unwrap(),
        "--library",
        "local",
    ]);
    assert!(o.status.success(), "{}", o.stderr);
    let o = b.sb.run(&["templates", "list", "--format", "json"]);
    let local: Value = serde_json::from_str(&o.stdout).unwrap();
    assert_eq!(local[0]["title"], "Hello team", "{local}");
    let token = |m: &Member| -> String {
        m.sb.db()
            .query_row("SELECT token FROM team_hubs", [], |r| r.get(0))
            .unwrap()
    };
    let (tb, tc) = (token(&b), token(&c));
    let me = |t: &str| {
        quiver_tests::hub::Client::new(&h.base_url(), json!({ "token": t }))
            .get("/v1/me")
            .0
    };
    assert_eq!(me(&tb), 200);
    let r = b.ok("team.leave", json!({}));
    assert_eq!(r["revoked"], true, "{r}");
    assert_eq!(
        me(&tb),
        401,
        "bob's token still opens the hub after team.leave"
    );
    assert_eq!(b.status()["hubs"], json!([]));
    // the hub away: the leave goes on, unrevoked, and says why
    c.partition(true);
    let r = c.ok("team.leave", json!({}));
    assert_eq!(r["revoked"], false, "{r}");
    assert!(r["revoke_error"].is_string(), "{r}");
    assert_eq!(c.status()["hubs"], json!([]));
    assert_eq!(me(&tc), 200);
}

/// A viewer's draft, then the same member as an editor in a reviewed library: the new edit
/// waits as a proposal, and once approved it is the team's version on the author's device too.
#[test]
fn a_draft_then_a_proposal_then_approval() {
    let (h, mut a, lib) = hub_and_owner(Backend::Sqlite);
    let mut e = member(&h, "erin", "viewer");
    a.put(&lib, "greeting", "Hello", "Hi", &[]);
    a.sync();
    e.sync();
    e.put(&lib, "greeting", "Mine (viewer)", "Hi", &[]);
    e.sync();
    assert_eq!(e.get(&lib, "greeting")["result"]["sync"], "draft");
    h.cli_ok(&["library", "set", "team", "--review", "true"]);
    h.cli_ok(&["member", "set", "team", "erin", "editor"]);
    a.sync();
    e.sync();
    assert_eq!(e.lib_status(&lib)["role"], "editor");
    e.put(&lib, "greeting", "Hello (proposed)", "Hi", &[]);
    e.sync();
    let g = e.get(&lib, "greeting")["result"].clone();
    assert_eq!(g["sync"], "proposed", "{g}");
    let rev = g["head_rev"].as_str().unwrap().to_string();
    a.sync();
    let r = a.ok(
        "team.review",
        json!({ "library": lib, "rev_id": rev, "approve": true }),
    );
    assert_eq!(r["result"]["status"], "applied", "{r}");
    // erin's device says so: the version shown is the same, its team state is not
    let mut events = e.sb.connect();
    a.sync();
    e.sync();
    for m in [&mut a, &mut e] {
        let g = m.get(&lib, "greeting")["result"].clone();
        assert_eq!(
            g["template"]["title"], "Hello (proposed)",
            "{}: {g}",
            m.name
        );
        assert_eq!(g["sync"], "synced", "{}: {g}", m.name);
    }
    loop {
        let ev = events.event("library.changed");
        if ev["data"]["library"] == json!(lib) && ev["data"]["ids"] == json!(["greeting"]) {
            break;
        }
    }
}
