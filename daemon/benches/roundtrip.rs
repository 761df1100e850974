//! Round trip browser -> host -> daemon -> back, against floors measured in the same run:
//!
//! - **echo**: a trivial native host that writes every frame back (one process hop: the floor
//!   of any native-messaging design);
//! - **relay**: a trivial host that forwards frames over a Unix socket to a trivial echo daemon
//!   (two hops, no work: the floor of Quiver's architecture, host + daemon);
//! - **quiver**: `quiver` started as Chromium starts it, with its daemon, answering
//!   `settings.get` (the protocol path without SQLite) and `hello`;
//! - **send**: a whole send of a free slot through the quiver host, three round trips
//!   (`send.reserve`, `send.begin`, `send.done`) against two (`send.reserve` with
//!   `"begin": true`, `send.done`), with `hello` as the floor.
//!
//! Then the host's cold start: from exec to the first reply, with the daemon running and not.
//!
//! `cargo bench -p quiver-daemon --bench roundtrip`. The echo and relay hosts are this binary
//! re-executed with `QUIVER_BENCH_MODE`.
#![allow(clippy::print_stdout)]

mod common;

use common::{machine, stats, us, Sandbox};
use std::io::{Read, Write};
use std::os::unix::net::{UnixListener, UnixStream};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

fn read_frame(r: &mut impl Read, le: bool) -> Option<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len).ok()?;
    let n = if le {
        u32::from_le_bytes(len)
    } else {
        u32::from_ne_bytes(len)
    } as usize;
    let mut body = vec![0u8; n];
    r.read_exact(&mut body).ok()?;
    Some(body)
}

fn write_frame(w: &mut impl Write, body: &[u8], le: bool) -> std::io::Result<()> {
    let len = body.len() as u32;
    let mut f = if le {
        len.to_le_bytes().to_vec()
    } else {
        len.to_ne_bytes().to_vec()
    };
    f.extend_from_slice(body);
    w.write_all(&f)?;
    w.flush()
}

/// The trivial hosts (this binary, re-executed).
fn child_mode(mode: &str) {
    let mut stdin = std::io::stdin().lock();
    match mode {
        "echo" => {
            let mut stdout = std::io::stdout().lock();
            while let Some(body) = read_frame(&mut stdin, false) {
                if write_frame(&mut stdout, &body, false).is_err() {
                    return;
                }
            }
        }
        "relay" => {
            let path = std::env::var("QUIVER_BENCH_SOCKET").expect("QUIVER_BENCH_SOCKET");
            let sock = UnixStream::connect(path).expect("connect to the echo daemon");
            let mut from_daemon = sock.try_clone().unwrap();
            let t = std::thread::spawn(move || {
                let mut out = std::io::stdout().lock();
                while let Some(body) = read_frame(&mut from_daemon, true) {
                    if write_frame(&mut out, &body, false).is_err() {
                        return;
                    }
                }
            });
            let mut to_daemon = sock;
            while let Some(body) = read_frame(&mut stdin, false) {
                if write_frame(&mut to_daemon, &body, true).is_err() {
                    break;
                }
            }
            let _ = to_daemon.shutdown(std::net::Shutdown::Write);
            let _ = t.join();
        }
        other => panic!("unknown QUIVER_BENCH_MODE {other}"),
    }
}

/// A trivial daemon: echoes every little-endian frame of every connection.
fn echo_daemon(path: &std::path::Path) {
    let l = UnixListener::bind(path).unwrap();
    std::thread::spawn(move || {
        for conn in l.incoming() {
            let Ok(mut c) = conn else { return };
            std::thread::spawn(move || {
                let mut w = c.try_clone().unwrap();
                while let Some(body) = read_frame(&mut c, true) {
                    if write_frame(&mut w, &body, true).is_err() {
                        return;
                    }
                }
            });
        }
    });
}

struct Peer {
    child: Child,
    stdin: ChildStdin,
    stdout: ChildStdout,
    next: u64,
}

impl Peer {
    fn new(mut child: Child) -> Peer {
        Peer {
            stdin: child.stdin.take().unwrap(),
            stdout: child.stdout.take().unwrap(),
            child,
            next: 0,
        }
    }

    /// One request, timed until its reply (events are skipped).
    fn call(&mut self, method: &str) -> Duration {
        self.next += 1;
        let req = format!(
            r#"{{"id":{},"method":"{method}","params":{{}}}}"#,
            self.next
        );
        let want = format!(r#""id":{}"#, self.next);
        let t = Instant::now();
        write_frame(&mut self.stdin, req.as_bytes(), false).unwrap();
        loop {
            let body = read_frame(&mut self.stdout, false).expect("reply");
            if std::str::from_utf8(&body).unwrap().contains(&want) {
                return t.elapsed();
            }
        }
    }

    fn hello_protocol(&mut self) -> Duration {
        self.next += 1;
        let req = format!(
            r#"{{"id":{},"method":"hello","params":{{"protocol":1}}}}"#,
            self.next
        );
        let want = format!(r#""id":{}"#, self.next);
        let t = Instant::now();
        write_frame(&mut self.stdin, req.as_bytes(), false).unwrap();
        loop {
            let body = read_frame(&mut self.stdout, false).expect("reply");
            if std::str::from_utf8(&body).unwrap().contains(&want) {
                return t.elapsed();
            }
        }
    }

    /// One request with `params` (JSON text); its reply body.
    fn request(&mut self, method: &str, params: &str) -> String {
        self.next += 1;
        let req = format!(
            r#"{{"id":{},"method":"{method}","params":{params}}}"#,
            self.next
        );
        let want = format!(r#""id":{}"#, self.next);
        write_frame(&mut self.stdin, req.as_bytes(), false).unwrap();
        loop {
            let body =
                String::from_utf8(read_frame(&mut self.stdout, false).expect("reply")).unwrap();
            if body.contains(&want) {
                assert!(!body.contains(r#""error""#), "{method}: {body}");
                return body;
            }
        }
    }

    /// One whole send of a free slot, timed from the first request to `send.done`'s reply:
    /// `send.reserve` + `send.begin` + `send.done` (`fast`: `send.reserve` with `"begin": true`
    /// + `send.done`). Each send has its own workspace, so the meter never makes it wait.
    fn send(&mut self, n: usize, fast: bool) -> Duration {
        let reserve = format!(
            r#"{{"idempotency_key":"bench-{fast}-{n}","platform":"udesk","workspace":"bench-{fast}-{n}","template_id":"t","revision":1,"part_index":0,"payload":"{{\"text\":\"hi\"}}","begin":{fast}}}"#
        );
        let t = Instant::now();
        let r = self.request("send.reserve", &reserve);
        let id: i64 = r
            .split(r#""send_id":"#)
            .nth(1)
            .and_then(|x| x.split(|c: char| !c.is_ascii_digit()).next())
            .and_then(|x| x.parse().ok())
            .expect("send_id");
        if fast {
            assert!(r.contains(r#""go":true"#), "{r}");
        } else {
            let b = self.request("send.begin", &format!(r#"{{"send_id":{id}}}"#));
            assert!(b.contains(r#""go":true"#), "{b}");
        }
        self.request("send.done", &format!(r#"{{"send_id":{id},"ok":true}}"#));
        t.elapsed()
    }

    fn close(self) {
        drop(self.stdin);
        let mut c = self.child;
        let _ = c.wait();
    }
}

fn me(mode: &str, socket: Option<&std::path::Path>) -> Command {
    let mut c = Command::new(std::env::current_exe().unwrap());
    c.env("QUIVER_BENCH_MODE", mode)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(s) = socket {
        c.env("QUIVER_BENCH_SOCKET", s);
    }
    c
}

fn main() {
    if let Ok(mode) = std::env::var("QUIVER_BENCH_MODE") {
        child_mode(&mode);
        return;
    }
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sb = Sandbox::new("roundtrip");
    sb.start_daemon();
    let sock = sb.root.join("echo.sock");
    echo_daemon(&sock);

    let mut echo = Peer::new(me("echo", None).spawn().unwrap());
    let mut relay = Peer::new(me("relay", Some(&sock)).spawn().unwrap());
    let mut quiver = Peer::new(sb.host());
    // warm up (the quiver host connects to the daemon and says hello first)
    for _ in 0..300 {
        echo.call("settings.get");
        relay.call("settings.get");
        quiver.call("settings.get");
        quiver.hello_protocol();
    }
    // many short interleaved rounds: load from elsewhere on the machine hits every path alike
    let rounds: usize = std::env::var("QUIVER_BENCH_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let (mut e, mut r, mut q, mut h) = (vec![], vec![], vec![], vec![]);
    for _round in 0..rounds {
        for _ in 0..50 {
            e.push(echo.call("settings.get"));
        }
        for _ in 0..50 {
            r.push(relay.call("settings.get"));
        }
        for _ in 0..50 {
            q.push(quiver.call("settings.get"));
        }
        for _ in 0..50 {
            h.push(quiver.hello_protocol());
        }
    }
    // the send path: a free slot in three round trips, or two with `"begin": true`
    let (mut slow, mut fast, mut h2) = (vec![], vec![], vec![]);
    let send_rounds = rounds.div_ceil(5);
    for round in 0..send_rounds {
        for i in 0..10 {
            h2.push(quiver.hello_protocol());
            slow.push(quiver.send(round * 10 + i, false));
            fast.push(quiver.send(round * 10 + i, true));
        }
    }
    echo.close();
    relay.close();
    quiver.close();
    let (e, r, q, h) = (stats(&mut e), stats(&mut r), stats(&mut q), stats(&mut h));
    let (slow, fast, h2) = (stats(&mut slow), stats(&mut fast), stats(&mut h2));
    println!("# Quiver benchmarks: round trip\n\n{}\n", machine());
    println!(
        "{} sequential requests per row, interleaved in {rounds} rounds of 50; load: {}.\n",
        rounds * 50,
        std::fs::read_to_string("/proc/loadavg")
            .unwrap_or_default()
            .trim()
    );
    println!("| path | median | p99 | mean | median / echo | median / relay |");
    println!("|---|---|---|---|---|---|");
    for (name, s) in [
        ("echo host (1 hop, the floor)", &e),
        ("relay host + echo daemon (2 hops, no work)", &r),
        ("quiver host + daemon: `settings.get`", &q),
        ("quiver host + daemon: `hello`", &h),
    ] {
        println!(
            "| {name} | {} | {} | {} | {:.2}x | {:.2}x |",
            us(s.median),
            us(s.p99),
            us(s.mean),
            s.median.as_secs_f64() / e.median.as_secs_f64(),
            s.median.as_secs_f64() / r.median.as_secs_f64(),
        );
    }

    println!(
        "\nA send of a free slot through the quiver host, from the first request to the reply \
         of `send.done` ({} of each, interleaved with `hello`; every send writes its history \
         row with a synchronous commit per step).\n",
        send_rounds * 10
    );
    println!("| path | median | p99 | mean | median / `hello` |");
    println!("|---|---|---|---|---|");
    for (name, s) in [
        ("`hello` (the floor: one round trip)", &h2),
        ("`send.reserve` + `send.begin` + `send.done`", &slow),
        ("`send.reserve` `{\"begin\": true}` + `send.done`", &fast),
    ] {
        println!(
            "| {name} | {} | {} | {} | {:.2}x |",
            us(s.median),
            us(s.p99),
            us(s.mean),
            s.median.as_secs_f64() / h2.median.as_secs_f64(),
        );
    }

    // cold start: exec to the first reply
    let cold = |spawn: &dyn Fn() -> Child, n: usize, between: &dyn Fn()| {
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            between();
            let t = Instant::now();
            let mut p = Peer::new(spawn());
            p.hello_protocol();
            v.push(t.elapsed());
            p.close();
        }
        stats(&mut v)
    };
    let echo_cold = cold(&|| me("echo", None).spawn().unwrap(), 100, &|| {});
    let warm = cold(&|| sb.host(), 100, &|| {});
    let no_daemon = cold(&|| sb.host(), 10, &|| sb.stop_daemon());
    println!("\nCold start: from exec of the host to its first reply (`hello`).\n");
    println!("| start | n | median | p99 |");
    println!("|---|---|---|---|");
    for (name, s) in [
        ("echo host", &echo_cold),
        ("quiver host, daemon running", &warm),
        (
            "quiver host, daemon not running (the host starts it)",
            &no_daemon,
        ),
    ] {
        println!(
            "| {name} | {} | {} | {} |",
            s.n,
            common::ms(s.median),
            common::ms(s.p99)
        );
    }
}
