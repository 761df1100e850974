//! Team sync end to end: real `quiver` daemons (each with its own data and socket directory)
//! on a real `quiver hub serve`, on SQLite and on PostgreSQL (each test twice: `<name>::sqlite`
//! and `<name>::postgresql`, a fresh database per test; see `tests/hub.rs` for how PostgreSQL
//! is found). Daemons reach the hub through a fault proxy (`tests/team.rs`) that partitions them.

use quiver_tests::hub::{Backend, Hub};
use quiver_tests::team::*;
use serde_json::{json, Value};

macro_rules! both {
    ($name:ident) => {
        mod $name {
            use quiver_tests::hub::{backend_ready, Backend};
            #[test]
            fn sqlite() {
                super::$name(Backend::Sqlite)
            }
            #[test]
            fn postgresql() {
                if backend_ready(Backend::Pg, stringify!($name)) {
                    super::$name(Backend::Pg)
                }
            }
        }
    };
}

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
    assert_eq!((g["sync"].as_str(), g["author"].as_str()), (Some("synced"), Some("owner")));

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
    let gc = pending.iter().find(|x| x["template"] == "greeting").unwrap();
    assert_eq!(gc["resolving"], r["rev_id"], "{gc}");
    // and `wait` by keeping both: a's version stays, b's becomes wait-2
    let r = c.ok(
        "team.resolve",
        json!({"library": lib, "template": "wait", "take": "both"}),
    );
    assert_eq!(r["fork"]["id"], "wait-2", "{r}");
    for _ in 0..2 {
        for m in [&mut b, &mut c, &mut a] {
            m.sync();
        }
    }
    check_converged(&h, &checker, &lib, &mut [&mut a, &mut b, &mut c]);
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
        .map(|r| (r["library"].as_str().unwrap().into(), r["id"].as_str().unwrap().into()))
        .collect();
    for want in [(lib.clone(), "wait".to_string()), (lib.clone(), "wait-2".into())] {
        assert!(found.contains(&want), "{want:?} not in {hits}");
    }
    assert!(found.iter().any(|(l, _)| l == "local"), "{hits}");
    // the default library is the personal one
    let hits = a.ok("templates.search", json!({"query": "wait"}));
    assert!(
        hits["results"].as_array().unwrap().iter().all(|r| r["library"] == "local"),
        "{hits}"
    );
}
