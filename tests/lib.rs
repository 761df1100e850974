//! Helpers for the integration tests against the real `quiver` binary.
//!
//! - [`quiver_bin`]: the binary under test (`$QUIVER_BIN`, else built once with
//!   `cargo build -p quiver-daemon` into the workspace target directory).
//! - [`Sandbox`]: private data/runtime/home directories for one test; its daemon is stopped and
//!   the directories removed on drop.
//! - [`Host`]: a `quiver native-host` process driven over its stdin/stdout like a browser does,
//!   checking that every byte on its stdout belongs to a well-formed frame.
//! - [`DaemonClient`]: a direct connection to the daemon socket.
//! - [`hub`]: `quiver hub serve` processes on SQLite or PostgreSQL and an HTTP client for them.
//! - [`fakewx`]: the fake WeChat (`quiver-fakewx`) as a process, and its control API.

pub mod fakewx;
pub mod hub;
pub mod team;

use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// A test run twice, `NAME::sqlite` and `NAME::postgresql` (skipped loudly, or failed, without
/// a PostgreSQL server: [`hub::backend_ready`]): `both!(name); fn name(b: Backend) { ... }`.
#[macro_export]
macro_rules! both {
    ($name:ident) => {
        mod $name {
            use $crate::hub::{backend_ready, Backend};
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

/// A 1×1 PNG, for the tests that send or receive a picture.
pub const PNG: &[u8] = &[
    0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1f, 0x15, 0xc4,
    0x89, 0x00, 0x00, 0x00, 0x0d, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9c, 0x63, 0xf8, 0xcf, 0xc0, 0xf0,
    0x1f, 0x00, 0x05, 0x00, 0x01, 0xff, 0x89, 0x99, 0x3d, 0x1d, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4e, 0x44, 0xae, 0x42, 0x60, 0x82,
];

/// The Chromium origin our host is installed for.
pub const ORIGIN: &str = "chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/";

/// How long a test waits for any single reply before failing.
pub const REPLY_WAIT: Duration = Duration::from_secs(10);

static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The `quiver` binary under test. Built at most once per test process; a failed build fails
/// every test at once instead of being retried by each.
pub fn quiver_bin() -> &'static Path {
    match BIN.get_or_init(find_or_build) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn find_or_build() -> Result<PathBuf, String> {
    built_bin("QUIVER_BIN", "quiver-daemon", "quiver")
}

/// The binary `bin` of `package`: `$env_var` when set, else built with `cargo build -p
/// package --bin bin` into the workspace's target directory (debug).
pub fn built_bin(env_var: &str, package: &str, bin: &str) -> Result<PathBuf, String> {
    if let Some(p) = std::env::var_os(env_var).filter(|p| !p.is_empty()) {
        return Ok(PathBuf::from(p));
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .ok_or("tests/ is not inside the workspace")?
        .to_path_buf();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let status = Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(&root)
        .status()
        .map_err(|e| format!("cannot run cargo build -p {package}: {e}"))?;
    if !status.success() {
        return Err(format!("cargo build -p {package} failed ({status})"));
    }
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"));
    let path = target.join("debug").join(bin);
    if !path.is_file() {
        return Err(format!("{} was not built", path.display()));
    }
    Ok(path)
}

/// Private directories for one test.
#[derive(Debug)]
pub struct Sandbox {
    pub root: PathBuf,
    pub data: PathBuf,
    pub run: PathBuf,
    pub home: PathBuf,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        static N: AtomicU32 = AtomicU32::new(0);
        let root = std::env::temp_dir().join(format!(
            "quiver-it-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(&root).expect("create sandbox");
        let s = Sandbox {
            data: root.join("data"),
            run: root.join("run"),
            home: root.join("home"),
            root,
        };
        std::fs::create_dir_all(&s.home).expect("create sandbox home");
        s
    }

    /// `quiver ARGS` with this sandbox's environment.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(quiver_bin());
        c.args(args)
            .env("QUIVER_DATA_DIR", &self.data)
            .env("QUIVER_RUNTIME_DIR", &self.run)
            .env("HOME", &self.home)
            .env("QUIVER_LOG", "debug")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_RUNTIME_DIR");
        c
    }

    /// Runs `quiver ARGS` to completion (10 s at most).
    pub fn run(&self, args: &[&str]) -> Output {
        let child = self
            .command(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn quiver");
        wait_output(child, Duration::from_secs(10))
    }

    /// Starts `quiver native-host` as Chromium would.
    pub fn host(&self) -> Host {
        Host::spawn(self.command(&[ORIGIN]))
    }

    /// Starts `quiver daemon --foreground` (stderr captured).
    pub fn daemon_foreground(&self) -> Child {
        self.command(&["daemon", "--foreground"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn quiver daemon")
    }

    pub fn socket(&self) -> PathBuf {
        self.run.join("daemon.sock")
    }

    /// Connects to the daemon (waiting up to 5 s for it to listen) and says `hello`, as every
    /// client must before anything else.
    pub fn connect(&self) -> DaemonClient {
        let mut c = self.connect_raw();
        let r = c.ok("hello", json!({"protocol": 1, "client": "quiver-tests"}));
        assert_eq!(r["protocol"], 1, "{r}");
        c
    }

    /// Connects to the daemon, waiting up to 5 s for it to listen; says nothing.
    pub fn connect_raw(&self) -> DaemonClient {
        let until = Instant::now() + Duration::from_secs(5);
        loop {
            match UnixStream::connect(self.socket()) {
                Ok(s) => return DaemonClient::new(s),
                Err(e) if Instant::now() > until => {
                    panic!("daemon did not listen on {}: {e}", self.socket().display())
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    }

    /// The pid in `daemon.pid`, if any.
    pub fn daemon_pid(&self) -> Option<u32> {
        std::fs::read_to_string(self.run.join("daemon.pid"))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    /// `quiver daemon --stop`.
    pub fn stop_daemon(&self) -> Output {
        self.run(&["daemon", "--stop"])
    }

    /// The database, read-only.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open_with_flags(
            self.data.join("quiver.db"),
            rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY,
        )
        .expect("open quiver.db")
    }

    pub fn daemon_log(&self) -> String {
        std::fs::read_to_string(self.data.join("logs/daemon.log")).unwrap_or_default()
    }
}

impl Drop for Sandbox {
    /// Stops this sandbox's daemon and removes its directories. Never panics (it also runs
    /// while a failed test unwinds).
    fn drop(&mut self) {
        if self.run.exists() && matches!(BIN.get(), Some(Ok(_))) {
            // restore a mode a test may have broken, so --stop can find the daemon
            use std::os::unix::fs::PermissionsExt;
            let _ = std::fs::set_permissions(&self.run, std::fs::Permissions::from_mode(0o700));
            let child = self
                .command(&["daemon", "--stop"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn();
            if let Ok(mut child) = child {
                if wait_timeout(&mut child, Duration::from_secs(15)).is_none() {
                    let _ = child.kill();
                    let _ = child.wait();
                }
            }
        }
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// A finished process.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

fn wait_output(mut child: Child, limit: Duration) -> Output {
    let mut out = child.stdout.take();
    let mut err = child.stderr.take();
    let t_out = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(o) = out.as_mut() {
            let _ = o.read_to_string(&mut s);
        }
        s
    });
    let t_err = std::thread::spawn(move || {
        let mut s = String::new();
        if let Some(e) = err.as_mut() {
            let _ = e.read_to_string(&mut s);
        }
        s
    });
    let status = wait_timeout(&mut child, limit).unwrap_or_else(|| {
        let _ = child.kill();
        panic!("process did not exit within {limit:?}")
    });
    Output {
        status,
        stdout: t_out.join().unwrap_or_default(),
        stderr: t_err.join().unwrap_or_default(),
    }
}

/// Waits for `child` to exit; None after `limit`.
pub fn wait_timeout(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let until = Instant::now() + limit;
    loop {
        if let Ok(Some(s)) = child.try_wait() {
            return Some(s);
        }
        if Instant::now() > until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Whether process `pid` exists (zombies count as gone).
pub fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => {
            // state is the field after the parenthesised command name
            let state = stat.rsplit(')').next().unwrap_or("").trim_start();
            !state.starts_with('Z') && !state.starts_with('X')
        }
        Err(_) => false,
    }
}

/// Encodes one native-messaging frame.
pub fn native_frame(body: &[u8]) -> Vec<u8> {
    let mut f = (body.len() as u32).to_ne_bytes().to_vec();
    f.extend_from_slice(body);
    f
}

/// A native host driven like a browser drives it.
#[derive(Debug)]
pub struct Host {
    child: Child,
    stdin: Option<ChildStdin>,
    frames: Receiver<Value>,
    reader: Option<JoinHandle<()>>,
    /// Problems found on stdout: anything that is not a frame of a JSON object.
    impurity: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<String>>,
    /// Frames received but not yet asked for.
    inbox: VecDeque<Value>,
    /// Every event received, in order.
    pub events: Vec<Value>,
    next_id: u64,
}

impl Host {
    pub fn spawn(mut cmd: Command) -> Host {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn quiver native-host");
        let mut stdout = child.stdout.take().expect("stdout");
        let mut stderr_pipe = child.stderr.take().expect("stderr");
        let impurity = Arc::new(Mutex::new(Vec::new()));
        let stderr = Arc::new(Mutex::new(String::new()));
        let (tx, frames) = mpsc::channel();
        let imp = impurity.clone();
        let reader = std::thread::spawn(move || {
            let mut buf: Vec<u8> = Vec::new();
            let mut chunk = [0u8; 64 * 1024];
            loop {
                let n = match stdout.read(&mut chunk) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => n,
                };
                buf.extend_from_slice(&chunk[..n]);
                while buf.len() >= 4 {
                    let len = u32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]) as usize;
                    if len > 1024 * 1024 {
                        imp.lock().unwrap().push(format!(
                            "length prefix {len} is over the browser's 1 MiB limit (bytes {:?})",
                            String::from_utf8_lossy(&buf[..buf.len().min(40)])
                        ));
                        return;
                    }
                    if buf.len() < 4 + len {
                        break;
                    }
                    let body: Vec<u8> = buf.drain(..4 + len).skip(4).collect();
                    match serde_json::from_slice::<Value>(&body) {
                        Ok(v) if v.is_object() => {
                            let _ = tx.send(v);
                        }
                        _ => imp.lock().unwrap().push(format!(
                            "frame is not a JSON object: {:?}",
                            String::from_utf8_lossy(&body)
                        )),
                    }
                }
            }
            if !buf.is_empty() {
                imp.lock().unwrap().push(format!(
                    "{} stray bytes at the end of stdout: {:?}",
                    buf.len(),
                    String::from_utf8_lossy(&buf)
                ));
            }
        });
        let err = stderr.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            while let Ok(n) = stderr_pipe.read(&mut chunk) {
                if n == 0 {
                    break;
                }
                err.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&chunk[..n]));
            }
        });
        Host {
            stdin: child.stdin.take(),
            child,
            frames,
            reader: Some(reader),
            impurity,
            stderr,
            inbox: VecDeque::new(),
            events: Vec::new(),
            next_id: 1,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Writes raw bytes to the host's stdin.
    pub fn write_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().expect("stdin open");
        stdin.write_all(bytes).expect("write to host stdin");
        stdin.flush().expect("flush host stdin");
    }

    /// Sends one frame with `body`.
    pub fn send_body(&mut self, body: &[u8]) {
        self.write_raw(&native_frame(body));
    }

    pub fn send(&mut self, v: &Value) {
        self.send_body(v.to_string().as_bytes());
    }

    /// The next frame of any kind.
    pub fn recv(&mut self, limit: Duration) -> Option<Value> {
        if let Some(v) = self.inbox.pop_front() {
            return Some(v);
        }
        match self.frames.recv_timeout(limit) {
            Ok(v) => {
                if v.get("event").is_some() {
                    self.events.push(v.clone());
                }
                Some(v)
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => None,
        }
    }

    /// The next reply (events are recorded in `events` and skipped).
    pub fn reply(&mut self) -> Value {
        let until = Instant::now() + REPLY_WAIT;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.recv(left) {
                Some(v) if v.get("event").is_some() => continue,
                Some(v) => return v,
                None => panic!(
                    "no reply within {REPLY_WAIT:?}; host stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    /// The reply with id `id`; other replies are kept for later.
    pub fn reply_to(&mut self, id: &Value) -> Value {
        if let Some(i) = self.inbox.iter().position(|v| v.get("id") == Some(id)) {
            return self.inbox.remove(i).unwrap_or_default();
        }
        let until = Instant::now() + REPLY_WAIT;
        let mut skipped = VecDeque::new();
        let found = loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(v) if v.get("event").is_some() => self.events.push(v),
                Ok(v) if v.get("id") == Some(id) => break Some(v),
                Ok(v) => skipped.push_back(v),
                Err(_) => break None,
            }
        };
        self.inbox.extend(skipped);
        found.unwrap_or_else(|| {
            panic!(
                "no reply to id {id} within {REPLY_WAIT:?}; host stderr:\n{}",
                self.stderr()
            )
        })
    }

    /// Sends a request and returns its whole reply frame.
    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = Value::from(self.next_id);
        self.next_id += 1;
        self.send(&json!({ "id": id, "method": method, "params": params }));
        self.reply_to(&id)
    }

    /// Sends a request and returns its `result`; panics on an error reply.
    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }

    /// Waits for event `name` (one already received counts) and returns it.
    pub fn event(&mut self, name: &str, limit: Duration) -> Value {
        if let Some(e) = self.events.iter().find(|e| e["event"] == name) {
            return e.clone();
        }
        self.next_event(name, limit)
    }

    /// Waits for a new event `name` after the ones already seen.
    pub fn next_event(&mut self, name: &str, limit: Duration) -> Value {
        let until = Instant::now() + limit;
        loop {
            let left = until.saturating_duration_since(Instant::now());
            match self.frames.recv_timeout(left) {
                Ok(v) if v.get("event").is_some() => {
                    self.events.push(v.clone());
                    if v["event"] == name {
                        return v;
                    }
                }
                Ok(v) => self.inbox.push_back(v),
                Err(_) => panic!(
                    "no new {name} event within {limit:?}; host stderr:\n{}",
                    self.stderr()
                ),
            }
        }
    }

    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|s| s.clone()).unwrap_or_default()
    }

    pub fn is_running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Closes stdin (the browser closes the port), waits for a clean exit and checks that
    /// stdout carried frames only. Returns the host's stderr.
    pub fn finish(mut self) -> String {
        drop(self.stdin.take());
        let status = wait_timeout(&mut self.child, Duration::from_secs(5));
        let status = status.unwrap_or_else(|| {
            let _ = self.child.kill();
            panic!(
                "host did not exit after stdin closed; stderr:\n{}",
                self.stderr()
            )
        });
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
        let problems = self.impurity.lock().map(|p| p.clone()).unwrap_or_default();
        assert!(
            problems.is_empty(),
            "stdout was not frames only: {problems:?}"
        );
        assert!(
            status.success(),
            "host exited with {status}; stderr:\n{}",
            self.stderr()
        );
        self.stderr()
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A direct connection to the daemon socket (little-endian frames). Events the daemon pushes
/// (after `hello`) are kept in `events`; `recv` returns the next frame that is not an event.
#[derive(Debug)]
pub struct DaemonClient {
    stream: UnixStream,
    next_id: u64,
    /// Every event received, in order.
    pub events: Vec<Value>,
}

impl DaemonClient {
    pub fn new(stream: UnixStream) -> DaemonClient {
        stream
            .set_read_timeout(Some(REPLY_WAIT))
            .expect("set read timeout");
        DaemonClient {
            stream,
            next_id: 1,
            events: Vec::new(),
        }
    }

    /// How long a reply may take from now on.
    pub fn set_wait(&mut self, d: Duration) {
        self.stream
            .set_read_timeout(Some(d))
            .expect("set read timeout");
    }

    /// The socket itself (for tests of the connection, not of the protocol).
    pub fn into_stream(self) -> UnixStream {
        self.stream
    }

    /// Reads one frame of any kind.
    pub fn recv_any(&mut self) -> Value {
        let mut len = [0u8; 4];
        self.stream.read_exact(&mut len).expect("read frame length");
        let mut body = vec![0u8; u32::from_le_bytes(len) as usize];
        self.stream.read_exact(&mut body).expect("read frame body");
        serde_json::from_slice(&body).expect("frame is JSON")
    }

    /// Waits for event `name` (one already received counts, and is consumed).
    pub fn event(&mut self, name: &str) -> Value {
        if let Some(i) = self.events.iter().position(|e| e["event"] == name) {
            return self.events.remove(i);
        }
        loop {
            let v = self.recv_any();
            if v["event"] == name {
                return v;
            }
            assert!(v.get("event").is_some(), "unexpected reply {v}");
            self.events.push(v);
        }
    }

    pub fn write_raw(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to daemon");
    }

    pub fn send_body(&mut self, body: &[u8]) {
        let mut f = (body.len() as u32).to_le_bytes().to_vec();
        f.extend_from_slice(body);
        self.write_raw(&f);
    }

    /// Reads the next frame that is not an event.
    pub fn recv(&mut self) -> Value {
        loop {
            let v = self.recv_any();
            if v.get("event").is_some() {
                self.events.push(v);
                continue;
            }
            return v;
        }
    }

    pub fn call(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send_body(
            json!({ "id": id, "method": method, "params": params })
                .to_string()
                .as_bytes(),
        );
        let r = self.recv();
        assert_eq!(r["id"], id, "reply out of order: {r}");
        r
    }

    pub fn ok(&mut self, method: &str, params: Value) -> Value {
        let r = self.call(method, params);
        assert!(r.get("error").is_none(), "{method} failed: {r}");
        r["result"].clone()
    }
}

/// Lower-case hex SHA-256 of `s`.
pub fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `send.reserve` params for a Udesk send.
pub fn reserve_params(key: &str, workspace: &str, payload: &str) -> Value {
    json!({
        "idempotency_key": key,
        "platform": "udesk",
        "workspace": workspace,
        "conversation": "conv-1",
        "template_id": "greeting",
        "revision": 1,
        "part_index": 0,
        "payload": payload,
    })
}

impl DaemonClient {
    /// Asks `send.begin` until the daemon says go (waiting what it says), then returns the
    /// moment it did. Panics after `limit`.
    pub fn begin_when_allowed(&mut self, send_id: &Value, limit: Duration) -> Instant {
        let until = Instant::now() + limit;
        loop {
            let r = self.ok("send.begin", json!({ "send_id": send_id }));
            if r["go"] == true {
                return Instant::now();
            }
            let delay = r["delay_ms"].as_u64().expect("delay_ms");
            assert!(Instant::now() < until, "send {send_id} never went");
            std::thread::sleep(Duration::from_millis(delay.clamp(1, 2000)));
        }
    }
}

impl Host {
    /// [`DaemonClient::begin_when_allowed`] through the host.
    pub fn begin_when_allowed(&mut self, send_id: &Value, limit: Duration) -> Instant {
        let until = Instant::now() + limit;
        loop {
            let r = self.ok("send.begin", json!({ "send_id": send_id }));
            if r["go"] == true {
                return Instant::now();
            }
            let delay = r["delay_ms"].as_u64().expect("delay_ms");
            assert!(Instant::now() < until, "send {send_id} never went");
            std::thread::sleep(Duration::from_millis(delay.clamp(1, 2000)));
        }
    }
}

/// A tmpfs mounted for one test (the file system of a full or read-only disk); unmounted on
/// drop. `None` where mounting is not allowed (not root, no CAP_SYS_ADMIN): the caller skips.
#[derive(Debug)]
pub struct Tmpfs {
    pub dir: PathBuf,
}

impl Tmpfs {
    pub fn mount(dir: &Path, options: &str) -> Option<Tmpfs> {
        std::fs::create_dir_all(dir).ok()?;
        let out = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir)
            .output()
            .ok()?;
        if !out.status.success() {
            eprintln!(
                "skipped: cannot mount a tmpfs here ({})",
                String::from_utf8_lossy(&out.stderr).trim()
            );
            return None;
        }
        Some(Tmpfs {
            dir: dir.to_path_buf(),
        })
    }

    /// `mount -o remount,OPTIONS`.
    pub fn remount(&self, options: &str) {
        let out = Command::new("mount")
            .args(["-o", &format!("remount,{options}")])
            .arg(&self.dir)
            .output()
            .expect("run mount");
        assert!(
            out.status.success(),
            "remount {options}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(&self.dir).output();
    }
}

/// `PRAGMA integrity_check` of a database file, opened read-only.
pub fn integrity(db: &Path) -> String {
    let c = rusqlite::Connection::open_with_flags(db, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .expect("open the database");
    c.query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .expect("integrity_check")
}
