//! Sustained history inserts (one `send.reserve` = one transaction, as in production) with the
//! production durability (WAL, `synchronous=FULL`) against `synchronous=NORMAL`, directly on
//! the store and through the daemon's socket.
//!
//! `cargo bench -p quiver-daemon --bench store`; `QUIVER_BENCH_DIR` puts the databases on
//! another file system (default: the system temp directory).
#![allow(clippy::print_stdout)]

mod common;

use common::{filesystem, machine, stats, us, Sandbox};
use quiver_daemon::client::Client;
use quiver_daemon::store::{NewSend, Store, Synchronous};
use serde_json::json;
use std::path::PathBuf;
use std::time::{Duration, Instant};

fn inserts(sync: Synchronous, n: usize, dir: &std::path::Path) -> (f64, common::Stats) {
    let path = dir.join(format!("bench-{sync:?}.db"));
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    let mut st = Store::open_with(&path, 0, sync).expect("open store");
    let payload =
        r#"{"method":"sendMsg","type":"text","content":"您好，请稍等，我正在为您查询。"}"#;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let key = format!("bench-{i}");
        let s = NewSend {
            idempotency_key: &key,
            template_id: "greeting",
            revision: 1,
            part_index: 0,
            platform: "udesk",
            workspace: "ws",
            conversation: Some("conv"),
            customer: Some("cust"),
            payload,
            meter_key: r#"["udesk","ws"]"#,
            library: quiver_daemon::store::LOCAL,
            rev_id: None,
        };
        let t = Instant::now();
        st.reserve(&s, i as u64).expect("insert");
        lat.push(t.elapsed());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    drop(st);
    for ext in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{ext}", path.display()));
    }
    (rate, stats(&mut lat))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = std::env::var_os("QUIVER_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    println!("# Quiver benchmarks: history inserts\n\n{}\n", machine());
    println!("Databases in {} ({}).\n", dir.display(), filesystem(&dir));
    println!("| how | synchronous | inserts | inserts/s | median | p99 |");
    println!("|---|---|---|---|---|---|");
    for (sync, n) in [(Synchronous::Full, 3000), (Synchronous::Normal, 20_000)] {
        let (rate, s) = inserts(sync, n, &dir);
        println!(
            "| store, one transaction each | {} | {n} | {rate:.0} | {} | {} |",
            format!("{sync:?}").to_uppercase(),
            us(s.median),
            us(s.p99)
        );
    }

    // through the daemon: the real send.reserve, validation, meter and reply included
    let sb = Sandbox::new("store");
    sb.start_daemon();
    let mut c = Client::connect(&sb.locations(), false).expect("connect");
    let n = 2000;
    let mut lat = Vec::with_capacity(n);
    let start = Instant::now();
    for i in 0..n {
        let t = Instant::now();
        c.call(
            "send.reserve",
            json!({
                "idempotency_key": format!("d-{i}"), "platform": "sobot",
                "workspace": "ws", "conversation": format!("c{i}"),
                "template_id": "greeting", "revision": 1, "part_index": 0,
                "payload": "{\"msgType\":0,\"content\":\"hello\"}",
            }),
        )
        .expect("send.reserve");
        lat.push(t.elapsed());
    }
    let rate = n as f64 / start.elapsed().as_secs_f64();
    let s = stats(&mut lat);
    println!(
        "| daemon, `send.reserve` over the socket | FULL | {n} | {rate:.0} | {} | {} |",
        us(s.median),
        us(s.p99)
    );
    let _ = Duration::ZERO;
}
