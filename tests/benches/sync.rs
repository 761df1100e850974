//! Team sync benchmarks (issue 10), against real processes: `quiver hub serve` and `quiver`
//! daemons, as the integration tests run them (`tests/hub.rs`, `tests/team.rs`).
//!
//! `QUIVER_BIN=target/release/quiver cargo bench -p quiver-tests --bench sync`
//! (PostgreSQL rows need `QUIVER_TEST_PG_URL`, as the tests do; `cargo xtask test` prints how
//! it starts one.) `QUIVER_BENCH_N` sets the number of edits timed (default 300).
//!
//! - edit visible: daemon A saves a template (`templates.put` in a team library); the time until
//!   daemon B's `templates.get` returns it, B polling every 0.5 ms (so up to 0.5 ms late). The
//!   floor of the same run: A's own `templates.put` round trip (the local durable commit) plus
//!   B's `templates.get` round trip: what the edit would cost if the hub and the network were free.
//! - catch-up: B is partitioned (its proxy drops the link), A makes 1,000 edits, then the link
//!   heals; time until B has the last one.
//! - two hubs (PostgreSQL): the edit-visible measure with A on one `serve` process and B on
//!   another over the same database.
//! - initial sync: `QUIVER_BENCH_INITIAL` templates (default 100,000; 0 skips it), about 1 KiB
//!   each, pushed into a team library; a new daemon joins and the time until it is idle with all
//!   of them is taken.
//!
//! Push throughput into one library is `benches/hub_push.rs`.

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::time::{Duration, Instant};

use quiver_tests::hub::{backend_ready, Backend, Hub};
use quiver_tests::team::Member;

fn pct(v: &mut [Duration], p: f64) -> Duration {
    v.sort();
    v[((v.len() - 1) as f64 * p).round() as usize]
}

fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

fn title_of(m: &mut Member, lib: &str, id: &str) -> Option<String> {
    let r = m.get(lib, id);
    r["result"]["template"]["title"]
        .as_str()
        .map(str::to_string)
}

fn wait_title(m: &mut Member, lib: &str, id: &str, want: &str, limit: Duration) -> Duration {
    let t0 = Instant::now();
    loop {
        if title_of(m, lib, id).as_deref() == Some(want) {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "{want} never reached {}", m.name);
        std::thread::sleep(Duration::from_micros(500));
    }
}

/// A hub, its owner's daemon `a` and an editor's daemon `b` (through a proxy), the library id.
fn team(b: Backend) -> (Hub, Member, Member, String) {
    let h = Hub::start(b);
    let mut a = Member::new("bench-a");
    let j = a.join(&h.owner_invite, h.port, false);
    let lib = j["libraries"][0]["id"].as_str().unwrap().to_string();
    let mut m = Member::new("bench-b");
    m.join(
        &h.invite("editor", &["team"], Some("bench-b")),
        h.port,
        true,
    );
    (h, a, m, lib)
}

/// `n` edits by A, each timed until B has it, and the floor of each (A's put + B's get).
fn measure_visible(
    a: &mut Member,
    b: &mut Member,
    lib: &str,
    n: usize,
) -> (Vec<Duration>, Vec<Duration>) {
    a.put(lib, "greeting", "warm", "Hello", &[]);
    wait_title(b, lib, "greeting", "warm", Duration::from_secs(30));
    let (mut seen, mut floor) = (vec![], vec![]);
    for i in 0..n {
        let title = format!("edit {i}");
        let t0 = Instant::now();
        a.put(lib, "greeting", &title, "Hello", &[]);
        let put = t0.elapsed();
        let t1 = Instant::now();
        let _ = b.get(lib, "greeting");
        let get = t1.elapsed();
        seen.push(put + get + wait_title(b, lib, "greeting", &title, Duration::from_secs(30)));
        floor.push(put + get);
        std::thread::sleep(Duration::from_millis(20));
    }
    (seen, floor)
}

/// Two `serve` processes over one PostgreSQL database: A on the first, B on the second, so
/// each edit crosses the database's NOTIFY between them.
fn two_hubs(n: usize) {
    let mut h = Hub::start(Backend::Pg);
    let port2 = h.serve_another();
    let mut a = Member::new("bench2-a");
    let j = a.join(&h.owner_invite, h.port, false);
    let lib = j["libraries"][0]["id"].as_str().unwrap().to_string();
    let mut b = Member::new("bench2-b");
    let invite = h.invite("editor", &["team"], Some("bench2-b"));
    b.join(
        &quiver_tests::team::via(&invite, h.port, port2),
        port2,
        false,
    );
    let (mut seen, mut floor) = measure_visible(&mut a, &mut b, &lib, n);
    println!(
        "Pg, 2 hubs edit visible in a daemon of the other hub: p50 {}, p99 {}, max {} (n={n}); floor (A's put + B's get) p50 {}, p99 {}",
        ms(pct(&mut seen, 0.5)),
        ms(pct(&mut seen, 0.99)),
        ms(pct(&mut seen, 1.0)),
        ms(pct(&mut floor, 0.5)),
        ms(pct(&mut floor, 0.99)),
    );
}

/// `size` templates pushed into a team library, then a new daemon joins: the time from its
/// `team.join` until it is idle with every template (the digest compared). The floor of the
/// same run: the owner's own import of the same templates into its daemon.
fn initial_sync(backend: Backend, size: usize) {
    let h = Hub::start(backend);
    let mut a = Member::new("bench-owner");
    let j = a.join(&h.owner_invite, h.port, false);
    let lib = j["libraries"][0]["id"].as_str().unwrap().to_string();
    let t0 = Instant::now();
    // An import session holds at most 64 MiB: one session (one commit) per 20,000 templates.
    let mut start = 0;
    while start < size {
        let end = (start + 500).min(size);
        let session = format!("bench-{}-{}", std::process::id(), start / 20_000);
        let last = end == size || end % 20_000 == 0;
        let batch: Vec<serde_json::Value> = (start..end)
            .map(|i| {
                serde_json::json!({"id": format!("t{i:06}"), "title": format!("Template {i}"),
                    "folder": format!("f{}", i % 50), "tags": [format!("tag{}", i % 20)],
                    "parts": [{"type": "text", "text": format!("Hello {{{{customer.name}}}}, this is reply number {i}. {}", "x".repeat(800))}]})
            })
            .collect();
        a.ok(
            "templates.import",
            serde_json::json!({"library": lib, "templates": batch, "session": session, "last": last}),
        );
        start = end;
    }
    let import = t0.elapsed();
    let t1 = Instant::now();
    let r = a.try_sync(600_000);
    assert_eq!(r["result"]["idle"], true, "{r}");
    let push = t1.elapsed();
    let mut c = Member::new("bench-new");
    let invite = h.invite("viewer", &["team"], Some("bench-new"));
    let t2 = Instant::now();
    c.join(&invite, h.port, false);
    let r = c.try_sync(600_000);
    let took = t2.elapsed();
    assert_eq!(r["result"]["idle"], true, "{r}");
    assert_eq!(c.lib_status(&lib)["templates"], size as u64);
    println!(
        "{:<11} initial sync of {size} templates into a new daemon: {} (join until idle); floor: the owner's import of them {}, its push {}",
        format!("{backend:?}"),
        ms(took),
        ms(import),
        ms(push)
    );
}

fn visible(backend: Backend, n: usize) {
    let (_h, mut a, mut b, lib) = team(backend);
    let (mut seen, mut floor) = measure_visible(&mut a, &mut b, &lib, n);
    println!(
        "{:<11} edit visible in another daemon: p50 {}, p99 {}, max {} (n={n}); floor (A's put + B's get) p50 {}, p99 {}",
        format!("{backend:?}"),
        ms(pct(&mut seen, 0.5)),
        ms(pct(&mut seen, 0.99)),
        ms(pct(&mut seen, 1.0)),
        ms(pct(&mut floor, 0.5)),
        ms(pct(&mut floor, 0.99)),
    );

    // Catch-up after being offline.
    b.partition(true);
    for i in 0..1000 {
        a.put(
            &lib,
            &format!("offline-{}", i % 100),
            &format!("o{i}"),
            "text",
            &[],
        );
    }
    a.sync();
    let t0 = Instant::now();
    b.partition(false);
    let _ = b.try_sync(0);
    let waited = wait_title(&mut b, &lib, "offline-99", "o999", Duration::from_secs(60));
    println!(
        "{:<11} 1,000 edits (100 templates) caught up after reconnecting: {} (from the heal; {} counted by B's wait)",
        format!("{backend:?}"),
        ms(t0.elapsed()),
        ms(waited)
    );
}

fn main() {
    let n: usize = std::env::var("QUIVER_BENCH_N")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(300);
    let initial: usize = std::env::var("QUIVER_BENCH_INITIAL")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    for b in [Backend::Sqlite, Backend::Pg] {
        if b == Backend::Pg && !backend_ready(b, "bench") {
            continue;
        }
        // QUIVER_BENCH_N=0 runs only the initial sync.
        if n > 0 {
            visible(b, n);
            if b == Backend::Pg {
                two_hubs(n);
            }
        }
        if initial > 0 {
            initial_sync(b, initial);
        }
    }
}
