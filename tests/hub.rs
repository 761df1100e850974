//! Helpers for the hub's tests (`tests/tests/hub.rs`), usable by any test that needs a real
//! `quiver hub serve`:
//!
//! - [`Backend`], [`backend_ready`]: SQLite, or PostgreSQL through `QUIVER_TEST_PG_URL`
//!   (`cargo xtask test` sets it; each hub gets a database of its own). Without the URL a
//!   PostgreSQL test fails saying how to get one, unless `QUIVER_TEST_PG=skip` (then it says
//!   loudly that it skipped).
//! - [`Hub`]: a hub directory made by `quiver hub init` and its `serve` processes (plain HTTP on
//!   127.0.0.1, or TLS), killed on drop.
//! - [`Client`]: a joined device speaking the HTTP API (blocking, ureq), [`Events`] its SSE
//!   stream.

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use crate::quiver_bin;

/// How long a test waits for a hub to come up, or for an event, before failing.
pub const WAIT: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Pg,
}

/// Whether the backend can run here. PostgreSQL without `QUIVER_TEST_PG_URL` panics (the test
/// fails) with how to get one, unless `QUIVER_TEST_PG=skip`: then it prints that it skipped and
/// returns false.
pub fn backend_ready(b: Backend, test: &str) -> bool {
    if b == Backend::Sqlite || pg_url().is_some() {
        return true;
    }
    if std::env::var("QUIVER_TEST_PG").as_deref() == Ok("skip") {
        eprintln!(
            "\n!!! SKIPPED {test} on PostgreSQL: QUIVER_TEST_PG=skip and no QUIVER_TEST_PG_URL !!!\n"
        );
        return false;
    }
    panic!(
        "{test} needs PostgreSQL: run `cargo xtask test` (it starts a private server), or start \
         one with `cargo xtask pg` and export the QUIVER_TEST_PG_URL it prints \
         (QUIVER_TEST_PG=skip skips these tests, loudly)"
    );
}

fn pg_url() -> Option<String> {
    std::env::var("QUIVER_TEST_PG_URL")
        .ok()
        .filter(|s| !s.is_empty())
}

static SEQ: AtomicU64 = AtomicU64::new(1);

/// A process-unique number (for revision ids, names).
pub fn unique() -> u64 {
    SEQ.fetch_add(1, Ordering::Relaxed)
}

/// A fresh revision id (a UUIDv7-shaped id unique in this test process).
pub fn rev_id() -> String {
    let n = unique();
    let pid = std::process::id() as u64;
    format!("0190f1a2-{:04x}-7000-8000-{:012x}", pid & 0xffff, n)
}

/// A tokio runtime for the PostgreSQL admin statements.
fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// Runs SQL on PostgreSQL at `url` and returns the first column of each row as i64.
pub fn pg_query_i64(url: &str, sql: &str) -> Vec<i64> {
    rt().block_on(async {
        let (c, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {url}: {e}"));
        let h = tokio::spawn(conn);
        let rows = c.query(sql, &[]).await.unwrap();
        drop(c);
        let _ = h.await;
        rows.iter().map(|r| r.get::<_, i64>(0)).collect()
    })
}

/// A new, empty PostgreSQL database: its URL.
pub fn pg_database() -> String {
    let base = pg_url().expect("QUIVER_TEST_PG_URL");
    let name = format!("quiver_test_{}_{}", std::process::id(), unique());
    rt().block_on(async {
        let (c, conn) = tokio_postgres::connect(&base, tokio_postgres::NoTls)
            .await
            .unwrap_or_else(|e| panic!("cannot reach PostgreSQL at {base}: {e}"));
        let h = tokio::spawn(conn);
        c.batch_execute(&format!("CREATE DATABASE {name} TEMPLATE template0"))
            .await
            .unwrap();
        drop(c);
        let _ = h.await;
    });
    let (head, tail) = base.split_at(base.rfind('/').expect("a database in the URL"));
    let query = tail.find('?').map(|i| &tail[i..]).unwrap_or("");
    format!("{head}/{name}{query}")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A hub: its directory and `serve` processes.
#[derive(Debug)]
pub struct Hub {
    pub dir: tempfile::TempDir,
    pub backend: Backend,
    /// The database URL (`sqlite:hub.db` or a PostgreSQL URL).
    pub database: String,
    pub port: u16,
    pub tls: bool,
    /// The owner's invite `init` printed.
    pub owner_invite: String,
    processes: Vec<(u16, Child)>,
}

impl Hub {
    /// `quiver hub init --plain` on a free loopback port, then `serve`.
    pub fn start(backend: Backend) -> Hub {
        let mut h = Hub::init(backend, false, &[]);
        h.serve();
        h
    }

    /// Only `init` (no process yet); `tls`: a self-signed certificate instead of `--plain`.
    pub fn init(backend: Backend, tls: bool, extra: &[&str]) -> Hub {
        let dir = tempfile::Builder::new()
            .prefix("quiver-hub-")
            .tempdir()
            .unwrap();
        let database = match backend {
            Backend::Sqlite => "sqlite:hub.db".to_string(),
            Backend::Pg => pg_database(),
        };
        let port = free_port();
        let hubdir = dir.path().join("hub");
        let listen = format!("127.0.0.1:{port}");
        let mut args = vec![
            "hub",
            "init",
            "--dir",
            hubdir.to_str().unwrap(),
            "--listen",
            &listen,
            "--database",
            &database,
        ];
        if !tls {
            args.push("--plain");
        }
        args.extend_from_slice(extra);
        let out = Command::new(quiver_bin()).args(&args).output().unwrap();
        assert!(
            out.status.success(),
            "hub init failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let owner_invite = String::from_utf8_lossy(&out.stdout).trim().to_string();
        Hub {
            dir,
            backend,
            database,
            port,
            tls,
            owner_invite,
            processes: vec![],
        }
    }

    pub fn path(&self) -> PathBuf {
        self.dir.path().join("hub")
    }

    pub fn base_url(&self) -> String {
        self.base_url_at(self.port)
    }

    pub fn base_url_at(&self, port: u16) -> String {
        format!(
            "{}://127.0.0.1:{port}",
            if self.tls { "https" } else { "http" }
        )
    }

    /// Starts `quiver hub serve` on the configured port and waits until it answers.
    pub fn serve(&mut self) {
        let port = self.port;
        self.serve_on(port);
    }

    /// Another `serve` process of the same hub on another port (PostgreSQL hubs).
    pub fn serve_another(&mut self) -> u16 {
        let port = free_port();
        self.serve_on(port);
        port
    }

    fn serve_on(&mut self, port: u16) {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("serve-{port}.log")))
            .unwrap();
        let child = Command::new(quiver_bin())
            .args(["hub", "serve", "--dir"])
            .arg(self.path())
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        self.processes.push((port, child));
        let started = Instant::now();
        loop {
            if self.tls {
                if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
                    break;
                }
            } else if let Ok((200, _)) = raw_get(&format!("{}/v1/health", self.base_url_at(port))) {
                break;
            }
            if let Some((_, c)) = self.processes.last_mut() {
                if let Ok(Some(st)) = c.try_wait() {
                    panic!("hub serve exited ({st}): {}", self.log(port));
                }
            }
            assert!(
                started.elapsed() < WAIT,
                "hub did not start: {}",
                self.log(port)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn log(&self, port: u16) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("serve-{port}.log")))
            .unwrap_or_default()
    }

    /// SIGKILL every serve process (no graceful anything).
    pub fn kill(&mut self) {
        for (_, mut c) in self.processes.drain(..) {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// The pids of the running `serve` processes.
    pub fn pids(&self) -> Vec<u32> {
        self.processes.iter().map(|(_, c)| c.id()).collect()
    }

    /// SIGKILL the serve process on `port`.
    pub fn kill_port(&mut self, port: u16) {
        if let Some(i) = self.processes.iter().position(|(p, _)| *p == port) {
            let (_, mut c) = self.processes.remove(i);
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM every serve process and wait for them.
    pub fn stop(&mut self) -> Vec<std::process::ExitStatus> {
        let mut out = vec![];
        for (_, mut c) in self.processes.drain(..) {
            let _ = Command::new("kill")
                .args(["-TERM", &c.id().to_string()])
                .status();
            out.push(c.wait().unwrap());
        }
        out
    }

    /// `quiver hub ARGS --dir DIR`.
    pub fn cli(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(quiver_bin());
        cmd.arg("hub").args(args).arg("--dir").arg(self.path());
        cmd.output().unwrap()
    }

    /// `quiver hub ...` that must succeed; its stdout.
    pub fn cli_ok(&self, args: &[&str]) -> String {
        let o = self.cli(args);
        assert!(
            o.status.success(),
            "quiver hub {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).trim().to_string()
    }

    /// An invite from the command line.
    pub fn invite(&self, role: &str, libraries: &[&str], user: Option<&str>) -> String {
        let mut args = vec!["invite", "--role", role];
        for l in libraries {
            args.push("--library");
            args.push(l);
        }
        if let Some(u) = user {
            args.push("--user");
            args.push(u);
        }
        self.cli_ok(&args)
    }

    /// Joins with `invite` as a device named `device`.
    pub fn join(&self, invite: &str, device: &str) -> Client {
        let (status, me) = join_raw(&self.base_url(), invite, device);
        assert_eq!(status, 200, "join: {me}");
        Client::new(&self.base_url(), me)
    }

    /// The owner's device (spends the owner invite).
    pub fn owner(&self) -> Client {
        self.join(&self.owner_invite.clone(), "owner-laptop")
    }

    /// Row counts of the hub's tables and the libraries' head_seq sum, straight from the
    /// database.
    pub fn counts(&self) -> Vec<(String, i64)> {
        let tables = [
            "revisions",
            "changes",
            "heads",
            "conflicts",
            "members",
            "devices",
            "invites",
        ];
        let mut out = vec![];
        for t in tables {
            out.push((
                t.to_string(),
                self.scalar(&format!("SELECT count(*) FROM {t}")),
            ));
        }
        out.push((
            "head_seq".into(),
            self.scalar("SELECT coalesce(sum(head_seq), 0) FROM libraries"),
        ));
        out
    }

    /// One integer from the hub's database.
    pub fn scalar(&self, sql: &str) -> i64 {
        match self.backend {
            Backend::Sqlite => {
                let c = rusqlite::Connection::open(self.path().join("hub.db")).unwrap();
                c.query_row(sql, [], |r| r.get(0)).unwrap()
            }
            Backend::Pg => {
                let sql = format!("SELECT ({sql})::bigint");
                pg_query_i64(&self.database, &sql)[0]
            }
        }
    }
}

impl Drop for Hub {
    fn drop(&mut self) {
        self.kill();
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(WAIT))
        .build()
        .new_agent()
}

fn read(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>) -> Result<(u16, Value), String> {
    let mut r = r.map_err(|e| e.to_string())?;
    let status = r.status().as_u16();
    let text = r
        .body_mut()
        .with_config()
        .limit(64 << 20)
        .read_to_string()
        .map_err(|e| e.to_string())?;
    let v = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    Ok((status, v))
}

/// GET without a token.
pub fn raw_get(url: &str) -> Result<(u16, Value), String> {
    read(agent().get(url).call())
}

/// `POST /v1/join`: (status, body).
pub fn join_raw(base: &str, invite: &str, device: &str) -> (u16, Value) {
    let code = invite
        .split_once('#')
        .map(|x| x.1)
        .unwrap_or(invite)
        .split('.')
        .next()
        .unwrap()
        .to_string();
    read(
        agent()
            .post(format!("{base}/v1/join"))
            .content_type("application/json")
            .send(json!({"code": code, "device_name": device}).to_string()),
    )
    .unwrap()
}

/// A joined device.
#[derive(Debug, Clone)]
pub struct Client {
    pub base: String,
    pub token: String,
    /// The join reply.
    pub me: Value,
    agent: ureq::Agent,
}

impl Client {
    pub fn new(base: &str, me: Value) -> Client {
        Client {
            base: base.into(),
            token: me["token"].as_str().expect("a token").into(),
            me,
            agent: agent(),
        }
    }

    /// The same device's token against another hub process.
    pub fn at(&self, base: &str) -> Client {
        let mut c = self.clone();
        c.base = base.into();
        c
    }

    pub fn user_id(&self) -> String {
        self.me["user_id"].as_str().unwrap().into()
    }

    pub fn device_id(&self) -> String {
        self.me["device_id"].as_str().unwrap().into()
    }

    /// The first library of the join reply: (id, epoch).
    pub fn library(&self) -> (String, String) {
        let l = &self.me["libraries"][0];
        (
            l["id"].as_str().unwrap().into(),
            l["epoch"].as_str().unwrap().into(),
        )
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.token)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        read(
            self.agent
                .get(format!("{}{path}", self.base))
                .header("Authorization", self.auth())
                .call(),
        )
        .unwrap()
    }

    pub fn send(&self, method: &str, path: &str, body: &Value) -> (u16, Value) {
        let url = format!("{}{path}", self.base);
        let text = body.to_string();
        let r = match method {
            "POST" => self
                .agent
                .post(&url)
                .header("Authorization", self.auth())
                .content_type("application/json")
                .send(text),
            "PUT" => self
                .agent
                .put(&url)
                .header("Authorization", self.auth())
                .content_type("application/json")
                .send(text),
            "PATCH" => self
                .agent
                .patch(&url)
                .header("Authorization", self.auth())
                .content_type("application/json")
                .send(text),
            "DELETE" => self
                .agent
                .delete(&url)
                .header("Authorization", self.auth())
                .call(),
            m => panic!("method {m}"),
        };
        read(r).unwrap()
    }

    pub fn post(&self, path: &str, body: &Value) -> (u16, Value) {
        self.send("POST", path, body)
    }

    /// Pushes revisions; (status, reply).
    pub fn push(&self, lib: &str, epoch: &str, revisions: &[Value]) -> (u16, Value) {
        self.post(
            &format!("/v1/libraries/{lib}/push"),
            &json!({"epoch": epoch, "revisions": revisions}),
        )
    }

    /// Pushes revisions; `Err` when the hub could not be reached or hung up.
    pub fn try_push(
        &self,
        lib: &str,
        epoch: &str,
        revisions: &[Value],
    ) -> Result<(u16, Value), String> {
        read(
            self.agent
                .post(format!("{}/v1/libraries/{lib}/push", self.base))
                .header("Authorization", self.auth())
                .content_type("application/json")
                .send(json!({"epoch": epoch, "revisions": revisions}).to_string()),
        )
    }

    /// Pushes one revision that must be accepted; its result.
    pub fn push_one(&self, lib: &str, epoch: &str, rev: &Value) -> Value {
        let (s, r) = self.push(lib, epoch, std::slice::from_ref(rev));
        assert_eq!(s, 200, "push: {r}");
        r["results"][0].clone()
    }

    pub fn changes(&self, lib: &str, epoch: &str, after: i64) -> (u16, Value) {
        self.get(&format!(
            "/v1/libraries/{lib}/changes?epoch={epoch}&after={after}"
        ))
    }

    /// Every change after `after`, following `more`.
    pub fn pull_all(&self, lib: &str, epoch: &str, mut after: i64) -> Vec<Value> {
        let mut out = vec![];
        loop {
            let (s, page) = self.changes(lib, epoch, after);
            assert_eq!(s, 200, "changes: {page}");
            let changes = page["changes"].as_array().unwrap().clone();
            if let Some(last) = changes.last() {
                after = last["seq"].as_i64().unwrap();
            }
            out.extend(changes);
            if !page["more"].as_bool().unwrap() {
                return out;
            }
        }
    }

    pub fn digest(&self, lib: &str) -> Value {
        let (s, d) = self.get(&format!("/v1/libraries/{lib}/digest"));
        assert_eq!(s, 200, "digest: {d}");
        d
    }

    /// Opens `GET /v1/events`.
    pub fn events(&self) -> Events {
        Events {
            rx: self.event_stream("poke"),
        }
    }

    /// Opens `GET /v1/events`: the data of its `name` events in order, then `None` when the
    /// stream ends.
    pub fn event_stream(&self, name: &str) -> Receiver<Option<Value>> {
        let r = self
            .agent
            .get(format!("{}/v1/events", self.base))
            .header("Authorization", self.auth())
            .config()
            .timeout_global(None)
            .build()
            .call()
            .unwrap();
        assert_eq!(r.status().as_u16(), 200);
        let (tx, rx) = mpsc::channel();
        let reader = BufReader::new(r.into_body().into_reader());
        let name = name.to_string();
        std::thread::spawn(move || {
            let mut event = String::new();
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if let Some(e) = line.strip_prefix("event: ") {
                    event = e.to_string();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    if event == name {
                        let v: Value = serde_json::from_str(d).unwrap();
                        if tx.send(Some(v)).is_err() {
                            return;
                        }
                    }
                }
            }
            let _ = tx.send(None);
        });
        rx
    }
}

/// A device's SSE stream: its `poke` events in order; `None` when the stream ended.
#[derive(Debug)]
pub struct Events {
    rx: Receiver<Option<Value>>,
}

impl Events {
    /// The next event (a poke's data, or `None`: the stream ended); panics after [`WAIT`].
    pub fn next(&self) -> Option<Value> {
        self.rx
            .recv_timeout(WAIT)
            .unwrap_or_else(|_| panic!("no event within {WAIT:?}"))
    }

    /// Waits for a poke of `lib` at `head_seq` or later.
    pub fn wait_poke(&self, lib: &str, head_seq: i64) -> Value {
        loop {
            match self.next() {
                Some(p) if p["library"] == lib && p["head_seq"].as_i64().unwrap() >= head_seq => {
                    return p
                }
                Some(_) => {}
                None => panic!("the event stream ended before a poke of {lib} at {head_seq}"),
            }
        }
    }

    /// Waits until the stream ends (skipping pokes).
    pub fn wait_end(&self) {
        while self.next().is_some() {}
    }
}

/// A `put` revision of template `id` with `title` and one text part.
pub fn put(rev: &str, id: &str, parents: &[&str], title: &str, text: &str) -> Value {
    json!({
        "rev_id": rev, "template": id, "parents": parents, "op": "put", "format": 1,
        "body": {"id": id, "title": title, "parts": [{"type": "text", "text": text}]},
        "client_at_ms": 1
    })
}

/// A `put` with tags.
pub fn put_tags(
    rev: &str,
    id: &str,
    parents: &[&str],
    title: &str,
    text: &str,
    tags: &[&str],
) -> Value {
    let mut v = put(rev, id, parents, title, text);
    v["body"]["tags"] = json!(tags);
    v
}

/// A `delete` revision.
pub fn delete(rev: &str, id: &str, parents: &[&str]) -> Value {
    json!({"rev_id": rev, "template": id, "parents": parents, "op": "delete", "format": 1, "client_at_ms": 1})
}

/// Path helper for the binary's directory of a hub.
pub fn hub_file(h: &Hub, name: &str) -> PathBuf {
    Path::new(&h.path()).join(name)
}
