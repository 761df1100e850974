//! WeChat push → `success` latency of a real `quiver hub serve` (docs/wechat.md), on SQLite and
//! (with `QUIVER_TEST_PG_URL`) PostgreSQL: an open-loop load of signed pushes from many customers
//! at a fixed rate (default 500/s for 5 s), plain JSON and safe-mode XML; latency is measured
//! from each push's scheduled time (a late sender does not hide the wait). Prints a markdown
//! table (docs/benchmarks.md, "WeChat push latency").
//!
//! `cargo build --release -p quiver-daemon && QUIVER_BIN=target/release/quiver \
//!  QUIVER_TEST_PG_URL=... cargo bench -p quiver-tests --bench wx_push`
//! (`WX_PUSH_RATE`, `WX_PUSH_SECS` change the load.)

#![allow(clippy::print_stdout)]

use quiver_shared::wechat::crypto::{msg_signature, url_signature, Crypto};
use quiver_tests::hub::*;
use std::time::{Duration, Instant};

const TOKEN: &str = "benchToken1";
const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";
const THREADS: usize = 32;

fn env(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// (url with query, body, content type) of one signed push.
fn push(base: &str, mode: &str, appid: &str, n: u64, seq: u64) -> (String, String, &'static str) {
    let ts = (std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs())
    .to_string();
    let nonce = format!("n{seq}");
    let from = format!("o-bench-{}", n % 300);
    let sig = url_signature(TOKEN, &ts, &nonce);
    if mode == "plain" {
        let body = format!(
            r#"{{"ToUserName":"gh_bench","FromUserName":"{from}","CreateTime":{ts},"MsgType":"text","Content":"hello {n}","MsgId":{}}}"#,
            1_000_000 + seq
        );
        (
            format!("{base}/wx/mp/plain?signature={sig}&timestamp={ts}&nonce={nonce}"),
            body,
            "application/json",
        )
    } else {
        let xml = format!(
            "<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><FromUserName><![CDATA[{from}]]></FromUserName><CreateTime>{ts}</CreateTime><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[hello {n}]]></Content><MsgId>{}</MsgId></xml>",
            2_000_000 + seq
        );
        let c = Crypto::new(TOKEN, AES, appid).unwrap();
        let mut random = [0u8; 16];
        random[..8].copy_from_slice(&seq.to_le_bytes());
        let enc = c.encrypt(&xml, &random).unwrap();
        let ms = msg_signature(TOKEN, &ts, &nonce, &enc);
        (
            format!("{base}/wx/mp/safe?signature={sig}&timestamp={ts}&nonce={nonce}&encrypt_type=aes&msg_signature={ms}"),
            format!("<xml><ToUserName><![CDATA[gh_bench]]></ToUserName><Encrypt><![CDATA[{enc}]]></Encrypt></xml>"),
            "text/xml",
        )
    }
}

fn run(b: Backend, name: &str) {
    let h = Hub::start(b);
    let secret = h.dir.path().join("secret");
    std::fs::write(&secret, "x").unwrap();
    for (app, mode, format) in [("plain", "plain", "json"), ("safe", "safe", "xml")] {
        h.cli_ok(&[
            "wx",
            "add",
            app,
            "--appid",
            &format!("wxbench{app}"),
            "--secret-file",
            secret.to_str().unwrap(),
            "--token",
            TOKEN,
            "--aes-key",
            AES,
            "--mode",
            mode,
            "--format",
            format,
        ]);
    }
    let rate = env("WX_PUSH_RATE", 500);
    let secs = env("WX_PUSH_SECS", 5);
    for mode in ["plain", "safe"] {
        let total = rate * secs;
        let period = Duration::from_secs_f64(1.0 / rate as f64);
        let start = Instant::now() + Duration::from_millis(200);
        let base = h.base_url();
        let appid = format!("wxbench{mode}");
        let workers: Vec<_> = (0..THREADS as u64)
            .map(|t| {
                let (base, appid) = (base.clone(), appid.clone());
                std::thread::spawn(move || {
                    let agent = ureq::Agent::config_builder()
                        .http_status_as_error(false)
                        .build()
                        .new_agent();
                    let mut lat = vec![];
                    let mut i = t;
                    while i < total {
                        let at = start + period * i as u32;
                        let now = Instant::now();
                        if at > now {
                            std::thread::sleep(at - now);
                        }
                        let (url, body, ct) = push(&base, mode, &appid, i, i);
                        let mut r = agent.post(&url).content_type(ct).send(body).unwrap();
                        let text = r.body_mut().read_to_string().unwrap();
                        assert_eq!(text, "success");
                        lat.push(at.elapsed());
                        i += THREADS as u64;
                    }
                    lat
                })
            })
            .collect();
        let mut all: Vec<Duration> = workers
            .into_iter()
            .flat_map(|w| w.join().unwrap())
            .collect();
        let took = start.elapsed().as_secs_f64();
        all.sort();
        let q = |p: f64| {
            all[((all.len() as f64 * p) as usize).min(all.len() - 1)].as_secs_f64() * 1000.0
        };
        println!(
            "| {name} | {mode} | {rate}/s | {} | {:.0}/s | {:.1} ms | {:.1} ms | {:.1} ms |",
            all.len(),
            all.len() as f64 / took,
            q(0.5),
            q(0.99),
            all.last().unwrap().as_secs_f64() * 1000.0
        );
        let stored = h.scalar("SELECT count(*) FROM wx_messages");
        assert!(stored >= all.len() as i64, "every push stored");
    }
}

fn main() {
    println!("| store | mode | offered | pushes | achieved | p50 | p99 | max |");
    println!("|---|---|---|---|---|---|---|---|");
    run(Backend::Sqlite, "SQLite");
    if std::env::var("QUIVER_TEST_PG_URL").is_ok_and(|u| !u.is_empty()) {
        run(Backend::Pg, "PostgreSQL");
    } else {
        eprintln!("no QUIVER_TEST_PG_URL: PostgreSQL not measured (cargo xtask pg prints one)");
    }
}
