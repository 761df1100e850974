//! Helpers for the team-sync tests (`tests/tests/team.rs`): real `quiver` daemons, each with
//! its own data and socket directory, joined to a real `quiver hub serve` through a fault proxy.
//!
//! - [`Member`]: a daemon (started, SIGKILLed, restarted) and the protocol calls the tests make.
//! - [`Proxy`]: a TCP proxy between one daemon and the hub that can cut the link (every
//!   connection reset, new ones closed at once) and heal it: a partition without root.
//! - [`Rng`]: a small seeded generator for the random runs.
//! - [`Checker`]: the hub's truth through its HTTP API (every revision, the digest), and the
//!   invariants: every daemon on the hub's digest, no revision lost, none twice.

use crate::hub::{Client, Hub};
use crate::{DaemonClient, Sandbox};
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A TCP proxy in front of the hub.
#[derive(Debug)]
pub struct Proxy {
    pub port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<TcpStream>>>,
    stop: Arc<AtomicBool>,
}

fn pipe(mut from: TcpStream, mut to: TcpStream) {
    let mut buf = [0u8; 16 * 1024];
    loop {
        match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                if to.write_all(&buf[..n]).is_err() {
                    break;
                }
            }
        }
    }
    let _ = to.shutdown(Shutdown::Both);
    let _ = from.shutdown(Shutdown::Both);
}

impl Proxy {
    /// A proxy on a free loopback port forwarding to 127.0.0.1:`target`.
    pub fn new(target: u16) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<TcpStream>>> = Arc::default();
        let stop = Arc::new(AtomicBool::new(false));
        let (u, c, s) = (up.clone(), conns.clone(), stop.clone());
        std::thread::spawn(move || {
            for inc in listener.incoming() {
                if s.load(Ordering::SeqCst) {
                    return;
                }
                let Ok(inc) = inc else { continue };
                if !u.load(Ordering::SeqCst) {
                    let _ = inc.shutdown(Shutdown::Both);
                    continue;
                }
                let Ok(out) = TcpStream::connect(("127.0.0.1", target)) else {
                    let _ = inc.shutdown(Shutdown::Both);
                    continue;
                };
                let _ = inc.set_nodelay(true);
                let _ = out.set_nodelay(true);
                if let Ok(mut all) = c.lock() {
                    all.retain(|x: &TcpStream| x.peer_addr().is_ok());
                    if let (Ok(a), Ok(b)) = (inc.try_clone(), out.try_clone()) {
                        all.push(a);
                        all.push(b);
                    }
                }
                let (i2, o2) = (inc.try_clone().unwrap(), out.try_clone().unwrap());
                std::thread::spawn(move || pipe(inc, out));
                std::thread::spawn(move || pipe(o2, i2));
            }
        });
        Proxy {
            port,
            up,
            conns,
            stop,
        }
    }

    /// Cuts the link: open connections are reset, new ones closed at once.
    pub fn down(&self) {
        self.up.store(false, Ordering::SeqCst);
        if let Ok(mut all) = self.conns.lock() {
            for c in all.drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn up(&self) {
        self.up.store(true, Ordering::SeqCst);
    }

    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        self.down();
        let _ = TcpStream::connect(("127.0.0.1", self.port));
    }
}

/// An invite for the hub at `hub_port`, rewritten to go through a proxy on `proxy_port`.
pub fn via(invite: &str, hub_port: u16, proxy_port: u16) -> String {
    let from = format!("127.0.0.1:{hub_port}/");
    assert!(
        invite.contains(&from),
        "{invite} is not for port {hub_port}"
    );
    invite.replace(&from, &format!("127.0.0.1:{proxy_port}/"))
}

/// A daemon of its own.
#[derive(Debug)]
pub struct Member {
    pub name: String,
    pub sb: Sandbox,
    pub proxy: Option<Proxy>,
    client: Option<DaemonClient>,
}

impl Member {
    /// A sandbox with a running daemon.
    pub fn new(name: &str) -> Member {
        let mut m = Member {
            name: name.to_string(),
            sb: Sandbox::new(&format!("team-{name}")),
            proxy: None,
            client: None,
        };
        m.start();
        m
    }

    /// Starts the daemon (detached) and connects.
    pub fn start(&mut self) {
        let o = self.sb.run(&["daemon"]);
        assert!(
            o.status.success(),
            "{}: daemon: {}\n{}",
            self.name,
            o.stderr,
            self.sb.daemon_log()
        );
        let until = std::time::Instant::now() + Duration::from_secs(5);
        while std::os::unix::net::UnixStream::connect(self.sb.socket()).is_err() {
            assert!(
                std::time::Instant::now() < until,
                "{}: the daemon does not listen after {:?} / {:?}\n{}",
                self.name,
                o.stdout,
                o.stderr,
                self.sb.daemon_log()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        self.client = Some(self.sb.connect());
    }

    /// SIGKILL: no clean anything.
    pub fn kill9(&mut self) {
        self.client = None;
        if let Some(pid) = self.sb.daemon_pid() {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
            // dead once its lock is free: a killed process whose threads are still in the
            // kernel (an fsync) shows as a zombie but holds its files until they leave
            let until = std::time::Instant::now() + Duration::from_secs(10);
            let lock = std::fs::File::open(self.sb.run.join("daemon.lock")).unwrap();
            while crate::alive(pid) || lock.try_lock().is_err() {
                assert!(
                    std::time::Instant::now() < until,
                    "pid {pid} survived SIGKILL"
                );
                std::thread::sleep(Duration::from_millis(5));
            }
        }
    }

    fn c(&mut self) -> &mut DaemonClient {
        if self.client.is_none() {
            self.client = Some(self.sb.connect());
        }
        self.client.as_mut().unwrap()
    }

    /// A whole reply (result or error).
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        self.c().call(method, params)
    }

    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let name = self.name.clone();
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{name}: {method}: {r}");
        r["result"].clone()
    }

    /// Joins with `invite`; through a fresh proxy to `hub_port` when `proxied`.
    pub fn join(&mut self, invite: &str, hub_port: u16, proxied: bool) -> Value {
        let invite = if proxied {
            let p = Proxy::new(hub_port);
            let inv = via(invite, hub_port, p.port);
            self.proxy = Some(p);
            inv
        } else {
            invite.to_string()
        };
        let name = self.name.clone();
        self.ok(
            "team.join",
            json!({"invite": invite, "device_name": format!("{name}-pc")}),
        )
    }

    /// Cuts or heals this member's link to the hub.
    pub fn partition(&self, down: bool) {
        let p = self.proxy.as_ref().expect("a proxied member");
        if down {
            p.down()
        } else {
            p.up()
        }
    }

    /// `team.sync` waiting at most `wait_ms`: the reply (idle or not).
    pub fn try_sync(&mut self, wait_ms: u64) -> Value {
        self.c()
            .set_wait(Duration::from_millis(wait_ms) + Duration::from_secs(10));
        let r = self.call("team.sync", json!({ "wait_ms": wait_ms }));
        self.c().set_wait(crate::REPLY_WAIT);
        r
    }

    /// `team.sync` that must end idle.
    pub fn sync(&mut self) -> Value {
        let r = self.try_sync(20_000);
        assert!(r.get("error").is_none(), "{}: team.sync: {r}", self.name);
        assert_eq!(r["result"]["idle"], true, "{}: not idle: {r}", self.name);
        r["result"].clone()
    }

    pub fn status(&mut self) -> Value {
        self.ok("team.status", json!({}))
    }

    /// The status of one library.
    pub fn lib_status(&mut self, lib: &str) -> Value {
        let st = self.ok("team.status", json!({ "library": lib }));
        st["libraries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == lib)
            .cloned()
            .unwrap_or(Value::Null)
    }

    /// Puts a template with `title`, `text` and `tags` into `lib`.
    pub fn put(&mut self, lib: &str, id: &str, title: &str, text: &str, tags: &[&str]) -> Value {
        self.ok(
            "templates.put",
            json!({"library": lib, "template": {"id": id, "title": title, "tags": tags,
                   "parts": [{"type": "text", "text": text}]}}),
        )
    }

    pub fn get(&mut self, lib: &str, id: &str) -> Value {
        self.call("templates.get", json!({"library": lib, "id": id}))
    }

    pub fn conflicts(&mut self, lib: &str) -> Vec<Value> {
        self.ok("team.conflicts", json!({ "library": lib }))["conflicts"]
            .as_array()
            .unwrap()
            .clone()
    }

    /// Every rev_id in this daemon's store for `lib`, with its state and whether it is this
    /// device's own (read straight from the database).
    pub fn revisions(&self, lib: &str) -> BTreeMap<String, (String, bool)> {
        let db = self.sb.db();
        let mut st = db
            .prepare(
                "SELECT rev_id, state, own FROM template_revisions \
                 WHERE library = ?1 AND rev_id IS NOT NULL",
            )
            .unwrap();
        let rows = st
            .query_map([lib], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    (r.get::<_, String>(1)?, r.get::<_, bool>(2)?),
                ))
            })
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// How many rows name each rev_id (the store's UNIQUE makes more than one impossible; the
    /// tests check it all the same).
    pub fn rev_rows(&self) -> BTreeMap<String, i64> {
        let db = self.sb.db();
        let mut st = db
            .prepare(
                "SELECT rev_id, count(*) FROM template_revisions WHERE rev_id IS NOT NULL \
                 GROUP BY rev_id",
            )
            .unwrap();
        let rows = st
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))
            .unwrap();
        rows.map(Result::unwrap).collect()
    }

    /// Rows left in the outbox.
    pub fn outbox(&self) -> i64 {
        self.sb
            .db()
            .query_row("SELECT count(*) FROM sync_outbox", [], |r| r.get(0))
            .unwrap()
    }
}

/// A deterministic generator (xorshift64*), seeded.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// 0..n
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// The hub's view, through a member's token of its own (an owner of every library checked).
#[derive(Debug)]
pub struct Checker {
    pub client: Client,
}

impl Checker {
    /// A device of the owner user (`owner`), for reading the hub.
    pub fn new(h: &Hub, libs: &[&str]) -> Checker {
        let inv = h.invite("owner", libs, Some("owner"));
        Checker {
            client: h.join(&inv, "checker"),
        }
    }

    /// Every revision the hub has for `lib` (from its log, as a member sees it): rev_id ->
    /// how many times the log's revision changes name it as new (state changes repeat a
    /// revision; what matters is that the hub's `revisions` table has each once).
    pub fn revisions(&self, lib: &str) -> BTreeSet<String> {
        let (_, me) = self.client.get("/v1/me");
        let epoch = me["libraries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["id"] == lib)
            .map(|l| l["epoch"].as_str().unwrap().to_string())
            .expect("the checker is a member");
        self.client
            .pull_all(lib, &epoch, 0)
            .iter()
            .filter(|c| c["kind"] == "revision")
            .map(|c| {
                c["revision"]["revision"]["rev_id"]
                    .as_str()
                    .unwrap()
                    .to_string()
            })
            .collect()
    }

    pub fn digest(&self, lib: &str) -> Value {
        self.client.digest(lib)
    }
}

/// The invariants after every member synced: each member's digest is the hub's, at the hub's
/// head seq; no revision a member made (and the hub did not refuse) is missing at the hub; every
/// member has every revision of the hub; no rev_id is stored twice anywhere; no outbox left.
pub fn check_converged(h: &Hub, checker: &Checker, lib: &str, members: &mut [&mut Member]) {
    let hub_digest = checker.digest(lib);
    let hub_revs = checker.revisions(lib);
    for m in members.iter_mut() {
        let st = m.lib_status(lib);
        assert_eq!(
            st["digest"], hub_digest["digest"],
            "{}: digest differs from the hub's: {st} vs {hub_digest}",
            m.name
        );
        assert_eq!(st["cursor"], hub_digest["head_seq"], "{}: {st}", m.name);
        assert_eq!(st["outbox"], 0, "{}: {st}", m.name);
        let revs = m.revisions(lib);
        for (rev, (state, own)) in &revs {
            if *own && state != "draft" {
                assert!(
                    hub_revs.contains(rev),
                    "{}: revision {rev} ({state}) was lost: the hub does not have it",
                    m.name
                );
            }
        }
        for rev in &hub_revs {
            assert!(
                revs.contains_key(rev),
                "{}: does not have the hub's revision {rev}",
                m.name
            );
        }
        for (rev, n) in m.rev_rows() {
            assert_eq!(n, 1, "{}: revision {rev} stored {n} times", m.name);
        }
    }
    assert_eq!(
        h.scalar("SELECT count(*) - count(DISTINCT rev_id) FROM revisions"),
        0,
        "the hub stores a revision more than once"
    );
}

/// A copy of a hub's database, taken while it is stopped.
#[derive(Debug)]
pub enum Backup {
    /// The SQLite files (name, bytes).
    Files(Vec<(String, Vec<u8>)>),
    /// A PostgreSQL database made from the hub's as a template.
    Pg(String),
}

fn pg_admin(sql: &str) {
    let base = std::env::var("QUIVER_TEST_PG_URL").expect("QUIVER_TEST_PG_URL");
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (c, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap();
        let h = tokio::spawn(conn);
        c.batch_execute(sql)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        drop(c);
        let _ = h.await;
    });
}

fn pg_name(url: &str) -> String {
    let tail = &url[url.rfind('/').unwrap() + 1..];
    tail.split('?').next().unwrap().to_string()
}

/// Copies the (stopped) hub's database.
pub fn backup(h: &Hub) -> Backup {
    match h.backend {
        crate::hub::Backend::Sqlite => {
            let mut files = vec![];
            for f in ["hub.db", "hub.db-wal", "hub.db-shm"] {
                if let Ok(b) = std::fs::read(h.path().join(f)) {
                    files.push((f.to_string(), b));
                }
            }
            Backup::Files(files)
        }
        crate::hub::Backend::Pg => {
            let name = pg_name(&h.database);
            let bk = format!("{name}_bk");
            pg_admin(&format!("CREATE DATABASE {bk} TEMPLATE {name}"));
            Backup::Pg(bk)
        }
    }
}

/// Puts the (stopped) hub's database back as it was in `b`.
pub fn restore(h: &Hub, b: &Backup) {
    match b {
        Backup::Files(files) => {
            for f in ["hub.db", "hub.db-wal", "hub.db-shm"] {
                let _ = std::fs::remove_file(h.path().join(f));
            }
            for (f, bytes) in files {
                std::fs::write(h.path().join(f), bytes).unwrap();
            }
        }
        Backup::Pg(bk) => {
            let name = pg_name(&h.database);
            pg_admin(&format!("DROP DATABASE {name} WITH (FORCE)"));
            pg_admin(&format!("CREATE DATABASE {name} TEMPLATE {bk}"));
        }
    }
}
