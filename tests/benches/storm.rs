//! 200 daemons reconnecting after a hub restart (issue 10): real `quiver` daemons, each with
//! its own data and socket directory, joined to one real `quiver hub serve`.
//!
//! `QUIVER_BIN=target/release/quiver cargo bench -p quiver-tests --bench storm`
//! (`QUIVER_BENCH_DAEMONS`, default 200; PostgreSQL rows need `QUIVER_TEST_PG_URL`).
//!
//! - floor: with the hub up, the owner edits a template; the time until every daemon has it
//!   (the fan-out of one edit to all of them: poke, pull, apply).
//! - storm: the hub is killed (SIGKILL) and served again on the same port; the owner edits the
//!   template; the time from the restart until every daemon has that edit (each reconnects with
//!   its own backoff, then pulls). Target: all current within 10 s.
//! - the hub's memory: VmHWM (peak RSS) of the restarted serve process after the storm, and its
//!   RSS then. Target: under 200 MB.
//!
//! Each daemon is polled with `templates.get` in turn, every 20 ms at most, so a time may be up
//! to one polling round late (the round's length is printed).

#![allow(clippy::print_stdout)] // a benchmark's report is its output

use std::time::{Duration, Instant};

use quiver_tests::hub::{backend_ready, Backend, Hub};
use quiver_tests::team::Member;

fn ms(d: Duration) -> String {
    format!("{:.0} ms", d.as_secs_f64() * 1e3)
}

fn title_of(m: &mut Member, lib: &str, id: &str) -> Option<String> {
    m.get(lib, id)["result"]["template"]["title"]
        .as_str()
        .map(str::to_string)
}

/// Polls every member until each shows `want`; the time each first did, from `t0`.
fn all_see(
    members: &mut [Member],
    lib: &str,
    want: &str,
    t0: Instant,
    limit: Duration,
) -> (Vec<Duration>, Duration) {
    let mut at: Vec<Option<Duration>> = vec![None; members.len()];
    let mut longest_round = Duration::ZERO;
    while at.iter().any(Option::is_none) && t0.elapsed() < limit {
        let round = Instant::now();
        for (i, m) in members.iter_mut().enumerate() {
            if at[i].is_none() && title_of(m, lib, "greeting").as_deref() == Some(want) {
                at[i] = Some(t0.elapsed());
            }
        }
        longest_round = longest_round.max(round.elapsed());
        if round.elapsed() < Duration::from_millis(20) {
            std::thread::sleep(Duration::from_millis(20) - round.elapsed());
        }
    }
    let missing = at.iter().filter(|x| x.is_none()).count();
    assert_eq!(
        missing, 0,
        "{missing} daemons never saw {want:?} within {limit:?}"
    );
    let mut v: Vec<Duration> = at.into_iter().flatten().collect();
    v.sort();
    (v, longest_round)
}

fn status_kb(pid: u32, key: &str) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

fn storm(backend: Backend, n: usize) {
    let mut h = Hub::start(backend);
    let mut a = Member::new("storm-owner");
    let j = a.join(&h.owner_invite, h.port, false);
    let lib = j["libraries"][0]["id"].as_str().unwrap().to_string();
    a.put(&lib, "greeting", "v0", "Hello", &[]);
    a.sync();
    let t = Instant::now();
    let mut members: Vec<Member> = (0..n)
        .map(|i| {
            let name = format!("s{i}");
            let mut m = Member::new(&name);
            m.join(&h.invite("viewer", &["team"], Some(&name)), h.port, false);
            m
        })
        .collect();
    let label = format!("{backend:?}");
    println!(
        "{label:<11} {n} daemons started and joined in {}",
        ms(t.elapsed())
    );
    all_see(
        &mut members,
        &lib,
        "v0",
        Instant::now(),
        Duration::from_secs(120),
    );

    // The floor: one edit fanned out to every daemon, the hub up.
    let t0 = Instant::now();
    a.put(&lib, "greeting", "v1", "Hello", &[]);
    let (floor, round) = all_see(&mut members, &lib, "v1", t0, Duration::from_secs(60));
    println!(
        "{label:<11} floor, one edit reaching all {n} (hub up): p50 {}, p90 {}, last {} (polling round up to {})",
        ms(floor[n / 2]),
        ms(floor[n * 9 / 10]),
        ms(floor[n - 1]),
        ms(round)
    );

    // The storm: SIGKILL, serve again on the same port, one edit.
    h.kill();
    std::thread::sleep(Duration::from_secs(1));
    let t0 = Instant::now();
    h.serve();
    a.put(&lib, "greeting", "v2", "Hello", &[]);
    let (after, round) = all_see(&mut members, &lib, "v2", t0, Duration::from_secs(120));
    let within = after
        .iter()
        .filter(|d| **d <= Duration::from_secs(10))
        .count();
    let pid = h.pids()[0];
    println!(
        "{label:<11} after a hub restart, the owner's edit reached all {n}: p50 {}, p90 {}, last {}; {within} of {n} within 10 s (polling round up to {})",
        ms(after[n / 2]),
        ms(after[n * 9 / 10]),
        ms(after[n - 1]),
        ms(round)
    );
    println!(
        "{label:<11} hub after the storm: peak RSS (VmHWM) {:.1} MB, RSS {:.1} MB, {} event streams open",
        status_kb(pid, "VmHWM:") as f64 / 1024.0,
        status_kb(pid, "VmRSS:") as f64 / 1024.0,
        n + 1
    );
}

fn main() {
    let n: usize = std::env::var("QUIVER_BENCH_DAEMONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200);
    for b in [Backend::Sqlite, Backend::Pg] {
        if b == Backend::Pg && !backend_ready(b, "bench") {
            continue;
        }
        storm(b, n);
    }
}
