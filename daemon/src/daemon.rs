//! `quiver daemon`: the long-lived per-user process that owns the database and the send meter.
//!
//! Start-up: data dir and log, socket dir (0700, ours), an exclusive `flock` on `daemon.lock`
//! (a second daemon says "already running" and leaves), the store, recovery, then the socket
//! (`daemon.sock`, 0600; a leftover one is stale because we hold the lock). Each connection is
//! checked for the peer's uid and then served frame by frame: every frame gets a reply or an
//! error reply. SIGTERM/SIGINT/SIGHUP shut down cleanly (socket and pid file removed).

use crate::paths::{self, Env};
use crate::service::{self, Clock, Service};
use crate::store::Store;
use crate::{error, info, sys, warn};
use quiver_shared::frame::{self, Decoded, Endian, FrameDecoder, MAX_INBOUND_FRAME};
use quiver_shared::proto::{self, ErrorBody, ErrorCode};
use serde_json::Value;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::{broadcast, Notify, Semaphore};

/// Connections served at once; more are refused (every resource is capped).
const MAX_CONNECTIONS: usize = 64;

/// The resolved locations of one daemon.
#[derive(Debug, Clone)]
pub struct Locations {
    pub data_dir: PathBuf,
    pub runtime_dir: PathBuf,
}

impl Locations {
    pub fn resolve(env: &Env) -> Result<Locations, String> {
        Ok(Locations {
            data_dir: paths::data_dir(env)?,
            runtime_dir: paths::runtime_dir(env)?,
        })
    }
    pub fn socket(&self) -> PathBuf {
        self.runtime_dir.join(paths::SOCKET_FILE)
    }
    pub fn lock(&self) -> PathBuf {
        self.runtime_dir.join(paths::LOCK_FILE)
    }
    pub fn pid(&self) -> PathBuf {
        self.runtime_dir.join(paths::PID_FILE)
    }
    pub fn db(&self) -> PathBuf {
        self.data_dir.join(paths::DB_FILE)
    }
    pub fn log(&self, name: &str) -> PathBuf {
        self.data_dir.join(paths::LOG_DIR).join(name)
    }
}

/// Writes a line for the person at the terminal (stderr: the daemon never writes to stdout).
fn say(msg: impl std::fmt::Display) {
    let _ = writeln!(std::io::stderr(), "{msg}");
}

/// Outcome of trying to take the single-instance lock.
enum Lock {
    Held(File),
    Busy(Option<u32>),
}

fn open_lock(path: &Path) -> Result<File, String> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open lock file {}: {e}", path.display()))
}

fn take_lock(loc: &Locations) -> Result<Lock, String> {
    let path = loc.lock();
    let file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Lock::Held(file)),
        Err(TryLockError::WouldBlock) => Ok(Lock::Busy(read_pid_patiently(&loc.pid()))),
        Err(TryLockError::Error(e)) => Err(format!("cannot lock {}: {e}", path.display())),
    }
}

fn read_pid(path: &Path) -> Option<u32> {
    std::fs::read_to_string(path).ok()?.trim().parse().ok()
}

/// The lock holder writes its pid right after taking the lock; give it a moment.
fn read_pid_patiently(path: &Path) -> Option<u32> {
    let until = Instant::now() + Duration::from_millis(500);
    loop {
        if let Some(p) = read_pid(path) {
            return Some(p);
        }
        if Instant::now() >= until {
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn already_running(pid: Option<u32>) -> ExitCode {
    let pid = pid.map_or_else(|| "unknown".to_string(), |p| p.to_string());
    say(format!("quiver daemon already running (pid {pid})"));
    ExitCode::SUCCESS
}

fn write_pid(path: &Path) -> Result<(), String> {
    let tmp = path.with_extension("pid.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    writeln!(f, "{}", std::process::id())
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// Creates the data dir, starts the log, checks the socket dir. Errors are for the user.
fn prepare(foreground: bool) -> Result<Locations, String> {
    let loc = Locations::resolve(&Env::from_process())?;
    paths::ensure_data_dir(&loc.data_dir)?;
    if let Err(e) = crate::log::init("daemon", Some(&loc.log("daemon.log")), foreground) {
        say(format!("warning: {e}"));
    }
    paths::ensure_runtime_dir(&loc.runtime_dir, sys::uid()).map_err(|e| e.to_string())?;
    Ok(loc)
}

/// `quiver daemon`: starts a detached daemon and returns once it serves (or failed).
pub fn start_detached() -> ExitCode {
    let loc = match prepare(false) {
        Ok(l) => l,
        Err(e) => {
            say(format!("quiver daemon: {e}"));
            return ExitCode::FAILURE;
        }
    };
    match take_lock(&loc) {
        Ok(Lock::Busy(pid)) => return already_running(pid),
        Ok(Lock::Held(f)) => drop(f), // the child takes it for real
        Err(e) => {
            say(format!("quiver daemon: {e}"));
            return ExitCode::FAILURE;
        }
    }
    let mut child = match spawn_detached_daemon() {
        Ok(c) => c,
        Err(e) => {
            say(format!("quiver daemon: {e}"));
            return ExitCode::FAILURE;
        }
    };
    let until = Instant::now() + Duration::from_secs(5);
    loop {
        if std::os::unix::net::UnixStream::connect(loc.socket()).is_ok() {
            say(format!("quiver daemon started (pid {})", child.id()));
            return ExitCode::SUCCESS;
        }
        match child.try_wait() {
            Ok(Some(status)) if status.success() => {
                // another daemon won the race
                return already_running(read_pid(&loc.pid()));
            }
            Ok(Some(status)) => {
                say(format!(
                    "quiver daemon failed to start ({status}); see {}",
                    loc.log("daemon.log").display()
                ));
                return ExitCode::FAILURE;
            }
            _ => {}
        }
        if Instant::now() >= until {
            say(format!(
                "quiver daemon (pid {}) did not open its socket within 5 s; see {}",
                child.id(),
                loc.log("daemon.log").display()
            ));
            return ExitCode::FAILURE;
        }
        std::thread::sleep(Duration::from_millis(25));
    }
}

/// Starts `quiver daemon --foreground` as its own session with no stdio of ours: it never holds
/// the caller's stdout (for the native host, the browser port) and outlives the caller.
pub fn spawn_detached_daemon() -> Result<std::process::Child, String> {
    let exe = std::env::current_exe()
        .map_err(|e| format!("cannot find the quiver executable to start the daemon: {e}"))?;
    let mut cmd = std::process::Command::new(&exe);
    cmd.args(["daemon", "--foreground"])
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    sys::detach_on_spawn(&mut cmd);
    cmd.spawn()
        .map_err(|e| format!("cannot start {} daemon: {e}", exe.display()))
}

/// `quiver daemon --foreground`: runs the daemon in this process until a signal.
pub fn run_foreground() -> ExitCode {
    let loc = match prepare(true) {
        Ok(l) => l,
        Err(e) => {
            if crate::log::initialized() {
                // to the log file and stderr
                error!("{e}");
            } else {
                say(format!("quiver daemon: {e}"));
            }
            return ExitCode::FAILURE;
        }
    };
    // run() logs its own errors
    run(&loc).unwrap_or(ExitCode::FAILURE)
}

fn run(loc: &Locations) -> Result<ExitCode, String> {
    let lock = match take_lock(loc)? {
        Lock::Held(f) => f,
        Lock::Busy(pid) => {
            info!("another daemon holds {}; leaving", loc.lock().display());
            return Ok(already_running(pid));
        }
    };
    write_pid(&loc.pid())?;
    info!(
        "starting quiver {} (data {}, socket dir {})",
        env!("CARGO_PKG_VERSION"),
        loc.data_dir.display(),
        loc.runtime_dir.display()
    );
    let clock = Clock::new();
    let result = (|| {
        let store = Store::open(&loc.db(), clock.now()).map_err(|e| e.to_string())?;
        let svc = Service::start(store, clock.now()).map_err(|e| e.to_string())?;
        let service_gone = Arc::new(Notify::new());
        let gone = service_gone.clone();
        let (events, _) = broadcast::channel::<Arc<Vec<u8>>>(EVENT_BACKLOG);
        let publish = events.clone();
        let (handle, thread) = service::spawn(
            svc,
            clock,
            move |event| {
                // nobody subscribed is fine
                let _ = publish.send(Arc::new(encode_reply(&event)));
            },
            move || gone.notify_one(),
        )
        .map_err(|e| format!("cannot start the service thread: {e}"))?;
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("quiver-daemon")
            .enable_all()
            .build()
            .map_err(|e| format!("cannot start the async runtime: {e}"))?;
        let served = rt.block_on(serve(loc, handle, events, service_gone));
        // drops every connection task, and with them the last service handles
        rt.shutdown_timeout(Duration::from_secs(2));
        if thread.join().is_err() {
            error!("the service thread panicked");
        }
        served
    })();
    // the pid file is ours while we hold the lock
    if read_pid(&loc.pid()) == Some(std::process::id()) {
        let _ = std::fs::remove_file(loc.pid());
    }
    drop(lock);
    match &result {
        Ok(()) => info!("stopped"),
        Err(e) => error!("{e}"),
    }
    result.map(|()| ExitCode::SUCCESS)
}

/// Binds the socket and serves until a signal or the service thread ends.
async fn serve(
    loc: &Locations,
    handle: service::Handle,
    events: Events,
    service_gone: Arc<Notify>,
) -> Result<(), String> {
    let path = loc.socket();
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {
            // we hold the lock: whatever is there is left over from a daemon that died
            std::fs::remove_file(&path)
                .map_err(|e| format!("cannot remove stale socket {}: {e}", path.display()))?;
            info!("removed stale socket {}", path.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(format!("cannot inspect {}: {e}", path.display())),
    }
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("cannot bind {}: {e}", path.display()))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("cannot set the mode of {}: {e}", path.display()))?;
    let ours = socket_identity(&path)
        .ok_or_else(|| format!("{} vanished right after bind", path.display()))?;
    info!("listening on {}", path.display());

    let result = accept_loop(&listener, &path, ours, handle, events, service_gone).await;
    drop(listener);
    // remove the socket only if it is still ours (not one a successor bound)
    if socket_identity(&path) == Some(ours) {
        if let Err(e) = std::fs::remove_file(&path) {
            warn!("cannot remove {}: {e}", path.display());
        }
    }
    result
}

/// (device, inode) of the file at `path`.
fn socket_identity(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// How often the daemon checks that its socket is still in place.
const SOCKET_CHECK: Duration = Duration::from_secs(1);

async fn accept_loop(
    listener: &UnixListener,
    path: &Path,
    ours: (u64, u64),
    handle: service::Handle,
    events: Events,
    service_gone: Arc<Notify>,
) -> Result<(), String> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k: SignalKind, name: &str| {
        signal(k).map_err(|e| format!("cannot install the {name} handler: {e}"))
    };
    let mut term = sig(SignalKind::terminate(), "SIGTERM")?;
    let mut int = sig(SignalKind::interrupt(), "SIGINT")?;
    let mut hup = sig(SignalKind::hangup(), "SIGHUP")?;
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let uid = sys::uid();
    let mut next_conn: u64 = 0;
    let mut check = tokio::time::interval(SOCKET_CHECK);
    loop {
        tokio::select! {
            _ = check.tick() => {
                // The socket dir was cleaned (logout, tmp cleaner) or someone replaced the
                // socket: no client can reach us, and a new daemon may start. Leave, so there
                // is never more than one meter.
                if socket_identity(path) != Some(ours) {
                    return Err(format!(
                        "{} was removed or replaced; shutting down",
                        path.display()
                    ));
                }
            }
            _ = term.recv() => { info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { info!("SIGINT: shutting down"); return Ok(()); }
            _ = hup.recv() => { info!("SIGHUP: shutting down"); return Ok(()); }
            _ = service_gone.notified() => {
                return Err("the service thread stopped; shutting down".into());
            }
            accepted = listener.accept() => {
                let stream = match accepted {
                    Ok((s, _)) => s,
                    Err(e) => {
                        // EMFILE and friends: back off instead of spinning
                        warn!("accept failed: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                next_conn += 1;
                let conn = next_conn;
                match stream.peer_cred() {
                    Ok(c) if c.uid() == uid => {}
                    Ok(c) => {
                        warn!(
                            "connection {conn} refused: peer uid {} (pid {:?}) is not uid {uid}",
                            c.uid(),
                            c.pid()
                        );
                        continue;
                    }
                    Err(e) => {
                        warn!("connection {conn} refused: cannot read peer credentials: {e}");
                        continue;
                    }
                }
                let Ok(permit) = slots.clone().try_acquire_owned() else {
                    warn!("connection {conn} refused: {MAX_CONNECTIONS} connections already open");
                    continue;
                };
                let handle = handle.clone();
                let events = events.clone();
                tokio::spawn(async move {
                    let _permit = permit;
                    crate::debug!("connection {conn} opened");
                    match serve_conn(stream, handle, events).await {
                        Ok(()) => crate::debug!("connection {conn} closed"),
                        Err(e) => info!("connection {conn} ended: {e}"),
                    }
                });
            }
        }
    }
}

/// Events fan out to every connection as encoded frames.
type Events = broadcast::Sender<Arc<Vec<u8>>>;

/// Events a slow connection may fall behind by before it is told it lost some.
const EVENT_BACKLOG: usize = 1024;

/// Serves one connection: each frame in, one frame out, in order. Once the connection has said
/// `hello`, events are written to it too, between replies.
async fn serve_conn(
    stream: UnixStream,
    handle: service::Handle,
    events: Events,
) -> std::io::Result<()> {
    let (mut rd, wr) = stream.into_split();
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let mut forwarder: Option<tokio::task::JoinHandle<()>> = None;
    let result = async {
        let mut dec = FrameDecoder::new(Endian::Little, MAX_INBOUND_FRAME);
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(item) = dec.next() {
                let (reply, hello_ok) = match item {
                    Decoded::TooLarge(e) => (
                        proto::error_reply(
                            &Value::Null,
                            &ErrorBody::new(ErrorCode::FrameTooLarge, e.to_string()),
                        ),
                        false,
                    ),
                    Decoded::Frame(body) => match proto::parse_request(&body) {
                        Ok(req) => {
                            let hello = req.method == "hello";
                            let reply = handle.call(req).await;
                            let ok = hello && reply.get("result").is_some();
                            (reply, ok)
                        }
                        Err(rej) => (proto::error_reply(&rej.id, &rej.error), false),
                    },
                };
                wr.lock().await.write_all(&encode_reply(&reply)).await?;
                if hello_ok && forwarder.is_none() {
                    forwarder = Some(tokio::spawn(forward_events(events.subscribe(), wr.clone())));
                }
            }
            let n = rd.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            dec.push(&buf[..n]);
        }
    }
    .await;
    if let Some(f) = forwarder {
        f.abort();
    }
    result
}

/// Writes every event to one connection; a connection too slow to keep up is told how many it
/// missed (`events.lost`), so it can reload what it shows.
async fn forward_events(
    mut rx: broadcast::Receiver<Arc<Vec<u8>>>,
    wr: Arc<tokio::sync::Mutex<tokio::net::unix::OwnedWriteHalf>>,
) {
    loop {
        let frame = match rx.recv().await {
            Ok(f) => f,
            Err(broadcast::error::RecvError::Lagged(n)) => Arc::new(encode_reply(&proto::event(
                "events.lost",
                serde_json::json!({ "count": n }),
            ))),
            Err(broadcast::error::RecvError::Closed) => return,
        };
        if wr.lock().await.write_all(&frame).await.is_err() {
            return;
        }
    }
}

/// Encodes a reply; one too large for a frame becomes an `internal` error for the same id.
fn encode_reply(reply: &Value) -> Vec<u8> {
    let body = reply.to_string().into_bytes();
    match frame::encode(&body, Endian::Little, MAX_INBOUND_FRAME) {
        Ok(f) => f,
        Err(too_large) => {
            let id = reply.get("id").cloned().unwrap_or(Value::Null);
            let e = ErrorBody::new(ErrorCode::Internal, format!("reply too large: {too_large}"));
            let body = proto::error_reply(&id, &e).to_string().into_bytes();
            frame::encode(&body, Endian::Little, MAX_INBOUND_FRAME).unwrap_or_default()
        }
    }
}

/// `quiver daemon --stop`: SIGTERM to the running daemon, then wait until it released its lock.
pub fn stop() -> ExitCode {
    let loc = match Locations::resolve(&Env::from_process()) {
        Ok(l) => l,
        Err(e) => {
            say(format!("quiver daemon --stop: {e}"));
            return ExitCode::FAILURE;
        }
    };
    if !loc.lock().exists() {
        say("quiver daemon is not running");
        return ExitCode::SUCCESS;
    }
    let file = match open_lock(&loc.lock()) {
        Ok(f) => f,
        Err(e) => {
            say(format!("quiver daemon --stop: {e}"));
            return ExitCode::FAILURE;
        }
    };
    // Only a held lock proves a daemon runs; a pid file alone may name a reused pid.
    let pid = match file.try_lock() {
        Ok(()) => {
            say("quiver daemon is not running");
            return ExitCode::SUCCESS;
        }
        Err(TryLockError::WouldBlock) => match read_pid_patiently(&loc.pid()) {
            Some(p) => p,
            None => {
                say(format!(
                    "quiver daemon --stop: a daemon holds {} but {} names no pid",
                    loc.lock().display(),
                    loc.pid().display()
                ));
                return ExitCode::FAILURE;
            }
        },
        Err(TryLockError::Error(e)) => {
            say(format!(
                "quiver daemon --stop: cannot lock {}: {e}",
                loc.lock().display()
            ));
            return ExitCode::FAILURE;
        }
    };
    if let Err(e) = sys::terminate(pid) {
        say(format!(
            "quiver daemon --stop: cannot signal pid {pid}: {e}"
        ));
        return ExitCode::FAILURE;
    }
    let until = Instant::now() + Duration::from_secs(10);
    loop {
        match file.try_lock() {
            Ok(()) => {
                say(format!("quiver daemon stopped (pid {pid})"));
                return ExitCode::SUCCESS;
            }
            Err(TryLockError::WouldBlock) if Instant::now() < until => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(TryLockError::WouldBlock) => {
                say(format!(
                    "quiver daemon (pid {pid}) did not stop within 10 s"
                ));
                return ExitCode::FAILURE;
            }
            Err(TryLockError::Error(e)) => {
                say(format!(
                    "quiver daemon --stop: cannot lock {}: {e}",
                    loc.lock().display()
                ));
                return ExitCode::FAILURE;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn oversized_reply_becomes_internal_error_with_same_id() {
        let big = "x".repeat(MAX_INBOUND_FRAME + 10);
        let reply = proto::reply(&Value::from(9), Value::String(big));
        let f = encode_reply(&reply);
        let mut d = FrameDecoder::new(Endian::Little, MAX_INBOUND_FRAME);
        d.push(&f);
        let Some(Decoded::Frame(body)) = d.next() else {
            panic!("no frame")
        };
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["id"], 9);
        assert_eq!(v["error"]["code"], "internal");
    }
}
