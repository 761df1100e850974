//! `quiver daemon`: the long-lived per-user process that owns the database and the send meter.
//!
//! Start-up: data dir and log, socket dir (0700, ours), an exclusive `flock` on `daemon.lock`
//! (a second daemon says "already running" and leaves), the store, recovery, then the socket
//! (`daemon.sock`, 0600; a leftover one is stale because we hold the lock). Each connection is
//! checked for the peer's uid and then served frame by frame: every frame gets a reply or an
//! error reply. SIGTERM/SIGINT/SIGHUP shut down cleanly (socket and pid file removed).

use crate::paths::{self, Env, Locations};
use crate::service::{self, Clock, Service, Shared};
use crate::spawn::{self, detached_child, Progress, Starting};
use crate::store::Store;
use crate::{error, info, sys, warn};
use quiver_shared::frame::{self, Decoded, Endian, FrameDecoder, MAX_INBOUND_FRAME};
use quiver_shared::proto::{self, ErrorBody, ErrorCode};
use serde_json::Value;
use std::collections::HashMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::Read;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::os::unix::net::UnixStream as StdUnixStream;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::UnixListener;

/// Connections served at once (every resource is capped). A connection beyond it evicts an
/// older one (see [`Connections::evict_one`]), so leaked or idle connections never lock the
/// browser's host out.
const MAX_CONNECTIONS: usize = 64;

/// How long a new connection has to complete `hello` before it is closed.
const HELLO_WAIT: Duration = Duration::from_secs(10);
/// Network requests (team hub) one connection may have in flight beside its other requests.
const MAX_APART: u64 = 16;

/// Why the daemon cannot start or serve (each message is for the user).
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    #[error(transparent)]
    Path(#[from] paths::PathError),
    #[error(transparent)]
    Unsafe(#[from] paths::UnsafeDir),
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error("cannot {what} {}: {source}", path.display())]
    File {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot {what}: {source}")]
    Start {
        what: &'static str,
        source: std::io::Error,
    },
    #[error("{} vanished right after bind", .0.display())]
    Vanished(PathBuf),
    #[error("the service failed; shutting down")]
    ServiceFailed,
    #[error("{} was removed or replaced; shutting down", .0.display())]
    SocketGone(PathBuf),
}

fn file_err(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> DaemonError {
    let path = path.to_path_buf();
    move |source| DaemonError::File { what, path, source }
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

fn open_lock(path: &Path) -> Result<File, DaemonError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(path)
        .map_err(file_err("open lock file", path))
}

fn take_lock(loc: &Locations) -> Result<Lock, DaemonError> {
    let path = loc.lock();
    let file = open_lock(&path)?;
    match file.try_lock() {
        Ok(()) => Ok(Lock::Held(file)),
        Err(TryLockError::WouldBlock) => Ok(Lock::Busy(read_pid_patiently(&loc.pid()))),
        Err(TryLockError::Error(e)) => Err(file_err("lock", &path)(e)),
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

fn write_pid(path: &Path) -> Result<(), DaemonError> {
    let tmp = path.with_extension("pid.tmp");
    let mut f = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(file_err("write", &tmp))?;
    writeln!(f, "{}", std::process::id())
        .and_then(|()| f.sync_all())
        .map_err(file_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(file_err("write", path))
}

/// Creates the data dir, starts the log, checks the socket dir. Errors are for the user.
fn prepare(foreground: bool) -> Result<Locations, DaemonError> {
    // every file the daemon creates (database, WAL, SHM, logs) is private, whatever the umask
    sys::private_umask();
    let loc = Locations::resolve(&Env::from_process())?;
    paths::ensure_data_dir(&loc.data_dir)?;
    let to_stderr = foreground && !detached_child();
    if let Err(e) = crate::log::init("daemon", Some(&loc.log("daemon.log")), to_stderr) {
        say(format!("warning: {e}"));
    }
    if let Some(w) = paths::exposed_data_dir(&loc.data_dir) {
        warn!("{w}");
    }
    paths::ensure_runtime_dir(&loc.runtime_dir, sys::uid())?;
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
    let mut starting = match Starting::spawn(&loc, Duration::from_secs(5)) {
        Ok(s) => s,
        Err(e) => {
            say(format!("quiver daemon: {e}"));
            return ExitCode::FAILURE;
        }
    };
    loop {
        if std::os::unix::net::UnixStream::connect(loc.socket()).is_ok() {
            say(format!("quiver daemon started (pid {})", starting.pid()));
            return ExitCode::SUCCESS;
        }
        match starting.check() {
            // another daemon won the race
            Ok(Progress::Other) => return already_running(read_pid(&loc.pid())),
            Ok(Progress::Starting) => {}
            Err(e) => {
                say(format!("quiver daemon: {e}"));
                return ExitCode::FAILURE;
            }
        }
        std::thread::sleep(spawn::POLL);
    }
}

/// `quiver daemon --foreground`: runs the daemon in this process until a signal.
pub fn run_foreground() -> ExitCode {
    let loc = match prepare(true) {
        Ok(l) => l,
        Err(e) => {
            if crate::log::initialized() {
                // to the log file (and stderr in a terminal)
                error!("{e}");
            }
            if !crate::log::initialized() || detached_child() {
                say(format!("quiver daemon: {e}"));
            }
            return ExitCode::FAILURE;
        }
    };
    match run(&loc) {
        Ok(code) => code,
        Err(e) => {
            // run() logs the errors of the service itself; this is for the starter's pipe
            if detached_child() || !crate::log::initialized() {
                say(format!("quiver daemon: {e}"));
            }
            ExitCode::FAILURE
        }
    }
}

fn run(loc: &Locations) -> Result<ExitCode, DaemonError> {
    let lock = match take_lock(loc).inspect_err(|e| error!("{e}"))? {
        Lock::Held(f) => f,
        Lock::Busy(pid) => {
            info!("another daemon holds {}; leaving", loc.lock().display());
            return Ok(already_running(pid));
        }
    };
    write_pid(&loc.pid()).inspect_err(|e| error!("{e}"))?;
    info!(
        "starting quiver {} (data {}, socket dir {})",
        env!("CARGO_PKG_VERSION"),
        loc.data_dir.display(),
        loc.runtime_dir.display()
    );
    let clock = Clock::new();
    let result = (|| {
        let store = Store::open(&loc.db(), clock.now())?;
        for note in paths::make_files_private(&loc.data_dir) {
            warn!("private files: {note}");
        }
        let svc = Service::start(store, clock.now())?;
        let hub = Arc::new(EventHub::default());
        let publisher = hub.clone();
        let shared = Arc::new(Shared::new(svc, clock, move |event| {
            publisher.publish(&event)
        }));
        let conns = Arc::new(Connections::default());
        let engine = Arc::new(
            crate::sync::Engine::start(shared.clone()).map_err(|source| DaemonError::Start {
                what: "start the sync engine",
                source,
            })?,
        );
        // the 多客服 page, served when the user turned it on (docs/mcs.md)
        let mcs = Arc::new(crate::mcs::Mcs::new(shared.clone()));
        mcs.start_if_enabled();
        let side = Arc::new(Side {
            engine: engine.clone(),
            mcs: mcs.clone(),
        });
        let stop_ticker = Arc::new((std::sync::Mutex::new(false), std::sync::Condvar::new()));
        let ticker = {
            let shared = shared.clone();
            let stop = stop_ticker.clone();
            std::thread::Builder::new()
                .name("quiver-tick".into())
                .spawn(move || loop {
                    let (m, cv) = &*stop;
                    let Ok(g) = m.lock() else { return };
                    let Ok((g, _)) = cv.wait_timeout(g, service::TICK) else {
                        return;
                    };
                    if *g {
                        return;
                    }
                    drop(g);
                    shared.tick();
                })
                .map_err(|source| DaemonError::Start {
                    what: "start the tick thread",
                    source,
                })?
        };
        let rt = tokio::runtime::Builder::new_current_thread()
            .thread_name("quiver-daemon")
            .enable_all()
            .build()
            .map_err(|source| DaemonError::Start {
                what: "start the async runtime",
                source,
            })?;
        let served = rt.block_on(serve(loc, shared.clone(), hub.clone(), conns.clone(), side));
        // close every connection so its thread ends, stop syncing, then let the service (and
        // SQLite) go
        conns.shutdown_all();
        mcs.shutdown();
        drop(mcs);
        engine.shutdown();
        // the engine's tasks hold the service too: let it go with them
        drop(engine);
        if let Ok(mut g) = stop_ticker.0.lock() {
            *g = true;
            stop_ticker.1.notify_all();
        }
        let _ = ticker.join();
        let until = Instant::now() + Duration::from_secs(2);
        while Arc::strong_count(&shared) > 1 && Instant::now() < until {
            std::thread::sleep(Duration::from_millis(5));
        }
        drop(shared);
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

/// Binds the socket and serves until a signal or a failed service.
async fn serve(
    loc: &Locations,
    shared: Arc<Shared>,
    hub: Arc<EventHub>,
    conns: Arc<Connections>,
    side: Arc<Side>,
) -> Result<(), DaemonError> {
    let path = loc.socket();
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {
            // we hold the lock: whatever is there is left over from a daemon that died
            std::fs::remove_file(&path).map_err(file_err("remove stale socket", &path))?;
            info!("removed stale socket {}", path.display());
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(file_err("inspect", &path)(e)),
    }
    let listener = UnixListener::bind(&path).map_err(file_err("bind", &path))?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))
        .map_err(file_err("set the mode of", &path))?;
    let ours = socket_identity(&path).ok_or_else(|| DaemonError::Vanished(path.to_path_buf()))?;
    info!("listening on {}", path.display());

    let result = accept_loop(&listener, &path, ours, shared, hub, conns, side).await;
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
    shared: Arc<Shared>,
    hub: Arc<EventHub>,
    conns: Arc<Connections>,
    side: Arc<Side>,
) -> Result<(), DaemonError> {
    use tokio::signal::unix::{signal, SignalKind};
    let sig = |k: SignalKind, name: &'static str| {
        signal(k).map_err(|source| DaemonError::Start { what: name, source })
    };
    let mut term = sig(SignalKind::terminate(), "install the SIGTERM handler")?;
    let mut int = sig(SignalKind::interrupt(), "install the SIGINT handler")?;
    let mut hup = sig(SignalKind::hangup(), "install the SIGHUP handler")?;
    let uid = sys::uid();
    let mut next_conn: u64 = 0;
    let mut check = tokio::time::interval(Duration::from_millis(250));
    let mut last_socket_check = Instant::now();
    loop {
        tokio::select! {
            _ = check.tick() => {
                if shared.is_broken() {
                    return Err(DaemonError::ServiceFailed);
                }
                // The socket dir was cleaned (logout, tmp cleaner) or someone replaced the
                // socket: no client can reach us, and a new daemon may start. Leave, so there
                // is never more than one meter.
                if last_socket_check.elapsed() >= SOCKET_CHECK {
                    last_socket_check = Instant::now();
                    if socket_identity(path) != Some(ours) {
                        return Err(DaemonError::SocketGone(path.to_path_buf()));
                    }
                }
            }
            _ = term.recv() => { info!("SIGTERM: shutting down"); return Ok(()); }
            _ = int.recv() => { info!("SIGINT: shutting down"); return Ok(()); }
            _ = hup.recv() => { info!("SIGHUP: shutting down"); return Ok(()); }
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
                if conns.len() >= MAX_CONNECTIONS {
                    match conns.evict_one() {
                        Some((old, why)) => warn!(
                            "{MAX_CONNECTIONS} connections open: closed connection {old} ({why}) \
                             to serve connection {conn}"
                        ),
                        None => {
                            warn!(
                                "connection {conn} refused: {MAX_CONNECTIONS} connections already \
                                 open and busy"
                            );
                            continue;
                        }
                    }
                }
                // Each connection is served by a thread of its own with blocking IO: the
                // thread that reads a request runs it and writes the reply, with no hand-off.
                let stream = match stream.into_std().and_then(|s| {
                    s.set_nonblocking(false)?;
                    Ok(s)
                }) {
                    Ok(s) => s,
                    Err(e) => {
                        warn!("connection {conn}: {e}");
                        continue;
                    }
                };
                if let Err(e) = conns.add(conn, &stream) {
                    warn!("connection {conn}: {e}");
                    continue;
                }
                let (shared, hub, registry) = (shared.clone(), hub.clone(), conns.clone());
                let side = side.clone();
                let spawned = std::thread::Builder::new()
                    .name(format!("quiver-conn-{conn}"))
                    .spawn(move || {
                        crate::debug!("connection {conn} opened");
                        match serve_conn(stream, &shared, &hub, &registry, conn, &side) {
                            Ok(()) => crate::debug!("connection {conn} closed"),
                            Err(e) => info!("connection {conn} ended: {e}"),
                        }
                        hub.unsubscribe(conn);
                        registry.remove(conn);
                    });
                if let Err(e) = spawned {
                    warn!("connection {conn}: cannot start its thread: {e}");
                    conns.remove(conn);
                }
            }
        }
    }
}

/// What serves some methods outside the service lock: the sync engine (`team.*` that wait on
/// the network) and the 多客服 page's controller (`mcs.*`).
#[derive(Debug)]
struct Side {
    engine: Arc<crate::sync::Engine>,
    mcs: Arc<crate::mcs::Mcs>,
}

/// The open connections: to close them all at shutdown, and to evict one when full.
#[derive(Debug, Default)]
struct Connections {
    open: std::sync::Mutex<HashMap<u64, Conn>>,
}

#[derive(Debug)]
struct Conn {
    stream: StdUnixStream,
    /// Said `hello` successfully.
    hello: bool,
    /// A request is being served right now.
    busy: bool,
    /// When the last request finished (or the connection opened).
    last_active: Instant,
}

impl Connections {
    fn add(&self, id: u64, s: &StdUnixStream) -> std::io::Result<()> {
        let c = s.try_clone()?;
        if let Ok(mut m) = self.open.lock() {
            m.insert(
                id,
                Conn {
                    stream: c,
                    hello: false,
                    busy: false,
                    last_active: Instant::now(),
                },
            );
        }
        Ok(())
    }

    /// Records that connection `id` started (`busy`) or finished a request.
    fn activity(&self, id: u64, busy: bool, hello: bool) {
        if let Ok(mut m) = self.open.lock() {
            if let Some(c) = m.get_mut(&id) {
                c.busy = busy;
                c.hello |= hello;
                c.last_active = Instant::now();
            }
        }
    }

    /// Closes one connection to make room: the oldest that has not said hello, else the one
    /// idle the longest (a live client such as the native host simply reconnects). A
    /// connection in the middle of a request is never chosen. Returns its id and why.
    fn evict_one(&self) -> Option<(u64, &'static str)> {
        let mut m = self.open.lock().ok()?;
        let pick = |hello: bool| {
            m.iter()
                .filter(|(_, c)| c.hello == hello && !c.busy)
                .min_by_key(|(id, c)| (c.last_active, **id))
                .map(|(id, _)| *id)
        };
        let (id, why) = match pick(false) {
            Some(id) => (id, "never said hello"),
            None => (pick(true)?, "idle the longest"),
        };
        if let Some(c) = m.remove(&id) {
            let _ = c.stream.shutdown(std::net::Shutdown::Both);
        }
        Some((id, why))
    }

    fn remove(&self, id: u64) {
        if let Ok(mut m) = self.open.lock() {
            m.remove(&id);
        }
    }

    fn len(&self) -> usize {
        self.open.lock().map(|m| m.len()).unwrap_or(0)
    }

    fn shutdown_all(&self) {
        if let Ok(m) = self.open.lock() {
            for c in m.values() {
                let _ = c.stream.shutdown(std::net::Shutdown::Both);
            }
        }
    }
}

/// Events fan out to every connection that said `hello`, each through a bounded queue and a
/// writer thread of its own: a slow connection never holds up the others or the service.
#[derive(Default)]
struct EventHub {
    subscribers: std::sync::Mutex<Vec<Subscriber>>,
}

struct Subscriber {
    conn: u64,
    queue: std::sync::mpsc::SyncSender<Arc<Vec<u8>>>,
    lost: Arc<AtomicU64>,
}

impl std::fmt::Debug for EventHub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventHub").finish_non_exhaustive()
    }
}

/// Events a slow connection may fall behind by before it is told it lost some.
const EVENT_BACKLOG: usize = 1024;

impl EventHub {
    fn publish(&self, event: &Value) {
        let frame = Arc::new(encode_reply(event));
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|s| match s.queue.try_send(frame.clone()) {
                Ok(()) => true,
                Err(std::sync::mpsc::TrySendError::Full(_)) => {
                    s.lost.fetch_add(1, Ordering::Relaxed);
                    true
                }
                Err(std::sync::mpsc::TrySendError::Disconnected(_)) => false,
            });
        }
    }

    /// Starts writing events to connection `conn` through `writer`.
    fn subscribe(&self, conn: u64, writer: Arc<std::sync::Mutex<StdUnixStream>>) {
        let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Vec<u8>>>(EVENT_BACKLOG);
        let lost = Arc::new(AtomicU64::new(0));
        let lost_w = lost.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("quiver-events-{conn}"))
            .spawn(move || {
                for frame in rx {
                    let n = lost_w.swap(0, Ordering::Relaxed);
                    let mut w = match writer.lock() {
                        Ok(w) => w,
                        Err(_) => return,
                    };
                    if n > 0 {
                        // the connection missed some: it should reload what it shows
                        let lost = encode_reply(&proto::event(
                            "events.lost",
                            serde_json::json!({ "count": n }),
                        ));
                        if w.write_all(&lost).is_err() {
                            return;
                        }
                    }
                    if w.write_all(&frame).is_err() {
                        return;
                    }
                }
            });
        if spawned.is_ok() {
            if let Ok(mut subs) = self.subscribers.lock() {
                subs.push(Subscriber {
                    conn,
                    queue: tx,
                    lost,
                });
            }
        }
    }

    fn unsubscribe(&self, conn: u64) {
        if let Ok(mut subs) = self.subscribers.lock() {
            subs.retain(|s| s.conn != conn);
        }
    }
}

/// A request that waits on the network: the WeChat conversation methods (`crate::wx`) or the
/// sync engine's.
fn serve_network(engine: &crate::sync::Engine, req: &proto::Request) -> Value {
    if req.method.starts_with("wx.") {
        crate::wx::serve(engine, req)
    } else {
        engine.serve(req)
    }
}

/// Serves one connection: each frame in, one frame out, in order, except the requests that wait
/// on the network, whose replies come when ready. Once the connection has said `hello`, events
/// are written to it too, between replies.
fn serve_conn(
    stream: StdUnixStream,
    shared: &Shared,
    hub: &EventHub,
    registry: &Connections,
    conn: u64,
    side: &Side,
) -> std::io::Result<()> {
    let writer = Arc::new(std::sync::Mutex::new(stream.try_clone()?));
    // requests of this connection being served on threads of their own (network work)
    let apart = Arc::new(AtomicU64::new(0));
    let mut rd = stream;
    let mut subscribed = false;
    let mut dec = FrameDecoder::new(Endian::Little, MAX_INBOUND_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let hello_by = Instant::now() + HELLO_WAIT;
    loop {
        while let Some(item) = dec.next() {
            registry.activity(conn, true, false);
            let (reply, hello_ok) = match item {
                Decoded::TooLarge(e) => (
                    proto::error_reply(
                        &Value::Null,
                        &ErrorBody::new(ErrorCode::FrameTooLarge, e.to_string()),
                    ),
                    false,
                ),
                Decoded::Frame(body) => match proto::parse_request(&body) {
                    // Nothing but `hello` before the connection said hello: a client learns
                    // what this daemon speaks before it asks for anything.
                    Ok(req) if !subscribed && req.method != "hello" => (
                        proto::error_reply(
                            &req.id,
                            &ErrorBody::new(
                                ErrorCode::HelloRequired,
                                format!(
                                    "say hello first: `{}` is served only after a successful \
                                     `hello` on this connection",
                                    crate::params::truncate(&req.method, 100)
                                ),
                            ),
                        ),
                        false,
                    ),
                    Ok(req) if req.method == "doctor" => (doctor_reply(&req), false),
                    // Work that waits on the network (the team hub) runs outside the service
                    // lock and beside this connection's other requests: a `team.sync` waiting
                    // for an unreachable hub must not hold up a send. Its reply comes when it is
                    // ready (replies are matched by id). Past MAX_APART at once, inline. The
                    // WeChat conversation methods (`wx.*`, the hub's agent API) too.
                    Ok(req)
                        if crate::sync::Engine::handles(&req) || req.method.starts_with("wx.") =>
                    {
                        if apart.load(Ordering::Acquire) < MAX_APART {
                            apart.fetch_add(1, Ordering::AcqRel);
                            let id = req.id.clone();
                            let (engine, writer, done) =
                                (side.engine.clone(), writer.clone(), apart.clone());
                            let spawned = std::thread::Builder::new()
                                .name(format!("quiver-net-{conn}"))
                                .spawn(move || {
                                    let frame = encode_reply(&serve_network(&engine, &req));
                                    // a closed connection: nobody is left to tell
                                    if let Ok(mut w) = writer.lock() {
                                        let _ = w.write_all(&frame);
                                    }
                                    done.fetch_sub(1, Ordering::AcqRel);
                                });
                            match spawned {
                                Ok(_) => {
                                    registry.activity(conn, false, false);
                                    continue;
                                }
                                Err(e) => {
                                    apart.fetch_sub(1, Ordering::AcqRel);
                                    warn!("connection {conn}: cannot start a network thread: {e}");
                                    (
                                        proto::error_reply(
                                            &id,
                                            &ErrorBody::new(
                                                ErrorCode::Internal,
                                                format!("cannot start a thread: {e}"),
                                            ),
                                        ),
                                        false,
                                    )
                                }
                            }
                        } else {
                            (serve_network(&side.engine, &req), false)
                        }
                    }
                    // the 多客服 page's settings: they start and stop its server
                    Ok(req) if crate::mcs::Mcs::handles(&req) => (side.mcs.serve(&req), false),
                    Ok(req) => {
                        let reply = shared.call(&req);
                        let ok = req.method == "hello" && reply.get("result").is_some();
                        (reply, ok)
                    }
                    Err(rej) => (proto::error_reply(&rej.id, &rej.error), false),
                },
            };
            let frame = encode_reply(&reply);
            writer
                .lock()
                .map_err(|_| std::io::Error::other("writer poisoned"))?
                .write_all(&frame)?;
            if hello_ok && !subscribed {
                subscribed = true;
                hub.subscribe(conn, writer.clone());
                // said hello: an idle client (the native host) may now wait as long as it likes
                rd.set_read_timeout(None)?;
            }
            registry.activity(conn, false, hello_ok);
        }
        if !subscribed {
            // a connection that never says hello is closed after HELLO_WAIT, however slowly
            // it trickles bytes in
            let left = hello_by.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!("no hello within {} s; closed", HELLO_WAIT.as_secs()),
                ));
            }
            rd.set_read_timeout(Some(left))?;
        }
        let n = match rd.read(&mut buf) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) && !subscribed =>
            {
                continue; // the deadline check above closes it
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(());
        }
        dec.push(&buf[..n]);
    }
}

/// Runs `quiver doctor` for a client (the options page shows its findings). It runs here, in the
/// connection's thread and outside the service lock: its host check starts `quiver` as the
/// browser would, and that host connects back to this daemon on another connection.
fn doctor_reply(req: &proto::Request) -> Value {
    match crate::params::parse(req) {
        Ok(crate::params::Call::Doctor(browser)) => {
            let report = crate::doctor::run(&crate::doctor::Options {
                browser,
                user_data_dir: None,
            });
            match serde_json::to_value(&report) {
                Ok(v) => proto::reply(&req.id, v),
                Err(e) => proto::error_reply(
                    &req.id,
                    &ErrorBody::new(ErrorCode::Internal, format!("doctor report: {e}")),
                ),
            }
        }
        Ok(_) => proto::error_reply(
            &req.id,
            &ErrorBody::new(ErrorCode::Internal, "doctor: not a doctor request"),
        ),
        Err(e) => proto::error_reply(&req.id, &e),
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
