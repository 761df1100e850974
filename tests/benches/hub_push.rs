//! Push throughput into one library of a real `quiver hub serve`, on SQLite and (with
//! `QUIVER_TEST_PG_URL`) PostgreSQL: N writers pushing one revision at a time, and one writer
//! pushing batches. Prints a markdown table (docs/benchmarks.md, "Hub push throughput").
//!
//! `cargo build --release -p quiver-daemon && QUIVER_BIN=target/release/quiver \
//!  QUIVER_TEST_PG_URL=... cargo bench -p quiver-tests --bench hub_push`

#![allow(clippy::print_stdout)]

use quiver_tests::hub::*;
use std::time::Instant;

fn run(b: Backend, name: &str) {
    let h = Hub::start(b);
    let owner = h.owner();
    let (lib, epoch) = owner.library();
    for (writers, pushes, batch) in [(8usize, 150usize, 1usize), (1, 20, 100)] {
        let t = Instant::now();
        let ws: Vec<_> = (0..writers)
            .map(|w| {
                let (c, lib, epoch) = (owner.clone(), lib.clone(), epoch.clone());
                std::thread::spawn(move || {
                    for i in 0..pushes {
                        let revs: Vec<_> = (0..batch)
                            .map(|j| {
                                put(&rev_id(), &format!("b{w}-{i}-{j}-{batch}"), &[], "x", "x")
                            })
                            .collect();
                        let (s, r) = c.push(&lib, &epoch, &revs);
                        assert_eq!(s, 200, "{r}");
                    }
                })
            })
            .collect();
        for w in ws {
            w.join().unwrap();
        }
        let n = writers * pushes * batch;
        let secs = t.elapsed().as_secs_f64();
        println!(
            "| {name} | {writers} | {batch} | {n} | {secs:.2} s | {:.0} |",
            n as f64 / secs
        );
    }
}

fn main() {
    println!("| store | writers | revisions per push | revisions | time | revisions/s |");
    println!("|---|---|---|---|---|---|");
    run(Backend::Sqlite, "SQLite");
    if std::env::var("QUIVER_TEST_PG_URL").is_ok_and(|u| !u.is_empty()) {
        run(Backend::Pg, "PostgreSQL");
    } else {
        eprintln!("no QUIVER_TEST_PG_URL: PostgreSQL not measured (cargo xtask pg prints one)");
    }
}
