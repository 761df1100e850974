//! `quiver native-host`: the thin relay a browser starts for `connectNative`.
//!
//! - stdin: 4-byte native-endian frames from the browser. Every frame is checked
//!   ([`proto::parse_request`]); a bad or oversized one gets an error reply and the host keeps
//!   going. Good frames are forwarded byte for byte to the daemon (little-endian frames).
//! - stdout: frames only, written (one `write_all` per frame) through a private duplicate of fd 1; fd 1
//!   itself is pointed at stderr, so nothing else can reach the port. Logs go to stderr and
//!   `<data dir>/logs/host.log`.
//! - the daemon: connected at start (started once if absent, then up to ~3 s to come up);
//!   `daemon.up` / `daemon.down` events report its state; when it is away, requests get
//!   `daemon_unavailable` and the host retries with backoff (0.25 s doubling to 10 s, at most
//!   one start per step). A reply too large for one browser message is split into chunks
//!   (`{"id", "chunk": {"seq", "total", "data"}}`, docs/protocol.md) that the extension joins.
//! - stdin closed (the browser closed the port): the host exits.

use crate::paths::{self, Env, Locations};
use crate::spawn::{self, Starting};
use crate::{debug, error, info, sys, warn};
use quiver_shared::frame::{
    self, Decoded, Endian, FrameDecoder, MAX_INBOUND_FRAME, MAX_TO_BROWSER,
};
use quiver_shared::proto::{self, ErrorBody, ErrorCode};
use serde::Deserialize;
use serde_json::{json, Value};
use std::collections::VecDeque;
use std::io::{Read, Write};
use std::path::PathBuf;
use std::process::{Child, ExitCode};
use std::time::Duration;
use tokio::io::unix::AsyncFd;
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;
use tokio::sync::mpsc;
use tokio::time::Instant;

const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(10);
/// A connection that lasted this long resets the backoff; a daemon that dies sooner after each
/// start keeps backing off (no tight respawn loop).
const STABLE_AFTER: Duration = Duration::from_secs(10);
/// How long a freshly started daemon has to open its socket.
const START_WAIT: Duration = Duration::from_secs(3);
/// How long the daemon has to answer the host's own `hello`.
const HELLO_WAIT: Duration = Duration::from_secs(3);
/// Requests held while the first connection is being made (the browser's opening `hello`).
const MAX_HELD: usize = 256;
const HOST_HELLO_ID: &str = "quiver-native-host:hello";

/// Runs the host. `browser_args` are what the browser passed (logged).
pub fn run(browser_args: &[String]) -> ExitCode {
    let env = Env::from_process();
    let loc = Locations::resolve(&env);
    let log_file = match &loc {
        Ok(l) => match paths::ensure_data_dir(&l.data_dir) {
            Ok(()) => Some(l.log("host.log")),
            Err(e) => {
                let _ = writeln!(std::io::stderr(), "quiver native-host: {e}");
                None
            }
        },
        Err(_) => None,
    };
    if let Err(e) = crate::log::init("host", log_file.as_deref(), true) {
        warn!("{e}");
    }
    let frames_out = match sys::take_stdout_for_frames() {
        Ok(f) => f,
        Err(e) => {
            error!("cannot take stdout for frames: {e}");
            return ExitCode::FAILURE;
        }
    };
    describe_caller(browser_args);
    let loc = loc.map_err(|e| {
        error!("{e}");
        e
    });

    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            error!("cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    // stdin: read on the runtime's own thread when it can be polled (a pipe, as browsers give
    // it), so a request goes from stdin to the daemon without a hand-off between threads;
    // otherwise (a file, /dev/null) by a thread of its own
    let browser = rt.block_on(async {
        match BrowserIn::polled() {
            Ok(b) => Ok(b),
            Err(e) => {
                debug!("stdin cannot be polled ({e}); reading it on a thread");
                let (in_tx, in_rx) = mpsc::channel::<Decoded>(64);
                std::thread::Builder::new()
                    .name("stdin-frames".into())
                    .spawn(move || read_frames(in_tx))
                    .map(|_| BrowserIn::Thread(in_rx))
            }
        }
    });
    let browser = match browser {
        Ok(b) => b,
        Err(e) => {
            error!("cannot start the stdin thread: {e}");
            return ExitCode::FAILURE;
        }
    };
    let host = Host::new(loc.map_err(|e| e.to_string()), frames_out);
    rt.block_on(host.run(browser));
    // a stdin thread may still be blocked in read(): do not wait for it
    rt.shutdown_background();
    info!("exiting");
    ExitCode::SUCCESS
}

/// Frames from the browser.
enum BrowserIn {
    /// stdin in non-blocking mode, polled by the runtime.
    Polled {
        fd: AsyncFd<std::fs::File>,
        dec: FrameDecoder,
        buf: Vec<u8>,
    },
    /// Decoded by a thread reading stdin.
    Thread(mpsc::Receiver<Decoded>),
}

impl BrowserIn {
    fn polled() -> std::io::Result<BrowserIn> {
        use std::os::fd::AsFd;
        let stdin = std::fs::File::from(std::io::stdin().as_fd().try_clone_to_owned()?);
        sys::set_nonblocking(&stdin)?;
        // (deprecated in newer tokio for fds that may be closed behind its back; a File owns
        // its fd for as long as the AsyncFd holds it, so that cannot happen here)
        #[allow(deprecated)]
        let registered = AsyncFd::try_with_interest(stdin, Interest::READABLE);
        match registered {
            Ok(fd) => Ok(BrowserIn::Polled {
                fd,
                dec: FrameDecoder::new(Endian::Native, MAX_INBOUND_FRAME),
                buf: vec![0u8; 64 * 1024],
            }),
            Err(refused) => {
                let (stdin, e) = refused.into_parts();
                // not pollable: back to blocking reads for the thread
                let _ = sys::set_blocking(&stdin);
                Err(e)
            }
        }
    }

    /// The next frame (or oversized frame) from the browser; `None` when stdin is closed.
    /// Cancel-safe: bytes read are in the decoder before any await.
    async fn next(&mut self) -> Option<Decoded> {
        match self {
            BrowserIn::Thread(rx) => rx.recv().await,
            BrowserIn::Polled { fd, dec, buf } => loop {
                if let Some(item) = dec.next() {
                    return Some(item);
                }
                let mut guard = match fd.readable().await {
                    Ok(g) => g,
                    Err(e) => {
                        warn!("polling stdin failed: {e}");
                        return None;
                    }
                };
                match guard.try_io(|f| {
                    let mut r: &std::fs::File = f.get_ref();
                    r.read(buf)
                }) {
                    Ok(Ok(0)) => {
                        if !dec.is_idle() {
                            info!("stdin closed in the middle of a frame");
                        }
                        return None;
                    }
                    Ok(Ok(n)) => dec.push(&buf[..n]),
                    Ok(Err(e)) if e.kind() == std::io::ErrorKind::Interrupted => {}
                    Ok(Err(e)) => {
                        warn!("reading stdin failed: {e}");
                        return None;
                    }
                    Err(_would_block) => {}
                }
            },
        }
    }
}

fn describe_caller(args: &[String]) {
    match args {
        [origin] if origin.starts_with("chrome-extension://") => {
            info!("started by Chromium for {origin}")
        }
        [manifest, addon, ..] => info!("started by Firefox for {addon} (manifest {manifest})"),
        [] => info!("started without browser arguments"),
        other => info!("started with arguments {other:?}"),
    }
}

fn read_frames(tx: mpsc::Sender<Decoded>) {
    let mut dec = FrameDecoder::new(Endian::Native, MAX_INBOUND_FRAME);
    let mut buf = vec![0u8; 64 * 1024];
    let mut stdin = std::io::stdin().lock();
    loop {
        let n = match stdin.read(&mut buf) {
            Ok(0) => {
                if !dec.is_idle() {
                    info!("stdin closed in the middle of a frame");
                }
                return;
            }
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                warn!("reading stdin failed: {e}");
                return;
            }
        };
        dec.push(&buf[..n]);
        while let Some(item) = dec.next() {
            if tx.blocking_send(item).is_err() {
                return;
            }
        }
    }
}

/// What the host hears from its own tasks.
enum Internal {
    /// A frame from daemon connection `gen`.
    Frame(u64, Decoded),
    /// Daemon connection `gen` ended.
    Closed(u64, String),
    /// A connection attempt finished.
    Attempt(Option<Child>, Result<Connected, String>),
}

struct Connected {
    stream: UnixStream,
    decoder: FrameDecoder,
    version: String,
}

enum Link {
    Up {
        gen: u64,
        since: Instant,
        writer: OwnedWriteHalf,
        reader: tokio::task::JoinHandle<()>,
    },
    Connecting,
    Down {
        retry_at: Instant,
    },
}

struct Host {
    loc: Result<Locations, String>,
    /// fd 1's private duplicate: written directly, one `write_all` per frame.
    out: std::fs::File,
    stdout_gone: bool,
    tx: mpsc::UnboundedSender<Internal>,
    rx: mpsc::UnboundedReceiver<Internal>,
    link: Link,
    /// Ids of requests forwarded on the current connection, oldest first (the daemon answers a
    /// connection's requests in order).
    pending: VecDeque<Value>,
    /// Requests that arrived while the first connection was being made.
    held: Vec<(Value, Vec<u8>)>,
    first: bool,
    /// Delay before the next retry; doubles after each one, up to [`MAX_BACKOFF`].
    backoff: Duration,
    reason: String,
    /// The daemon this host started (reaped when it exits).
    child: Option<Child>,
    gen: u64,
}

impl Host {
    fn new(loc: Result<Locations, String>, out: std::fs::File) -> Host {
        let (tx, rx) = mpsc::unbounded_channel();
        Host {
            loc,
            out,
            stdout_gone: false,
            tx,
            rx,
            link: Link::Connecting,
            pending: VecDeque::new(),
            held: Vec::new(),
            first: true,
            backoff: FIRST_BACKOFF,
            reason: "not connected yet".into(),
            child: None,
            gen: 0,
        }
    }

    async fn run(mut self, mut browser: BrowserIn) {
        self.start_attempt();
        while !self.stdout_gone {
            let retry_at = match &self.link {
                Link::Down { retry_at } => Some(*retry_at),
                _ => None,
            };
            tokio::select! {
                item = browser.next() => match item {
                    Some(item) => self.on_browser(item).await,
                    None => {
                        info!("stdin closed: the browser closed the port");
                        break;
                    }
                },
                Some(ev) = self.rx.recv() => self.on_internal(ev).await,
                _ = sleep_until_opt(retry_at) => self.start_attempt(),
            }
        }
        if let Link::Up { reader, .. } = &self.link {
            reader.abort();
        }
    }

    fn emit(&mut self, v: &Value) {
        let body = v.to_string().into_bytes();
        self.emit_body(&body);
    }

    /// Writes one frame to the browser. Blocking: a browser that stops reading holds the host
    /// (and so the daemon connection) back instead of growing a queue without bound.
    fn emit_body(&mut self, body: &[u8]) {
        if self.stdout_gone {
            return;
        }
        match frame::encode(body, Endian::Native, MAX_TO_BROWSER) {
            Ok(f) => {
                // one write per frame: File is unbuffered
                if let Err(e) = self.out.write_all(&f) {
                    info!("stdout closed ({e}); the browser went away");
                    self.stdout_gone = true;
                }
            }
            Err(e) => error!("dropping a frame for the browser: {e}"),
        }
    }

    fn emit_error(&mut self, id: &Value, code: ErrorCode, msg: impl Into<String>) {
        self.emit(&proto::error_reply(id, &ErrorBody::new(code, msg)));
    }

    async fn on_browser(&mut self, item: Decoded) {
        let body = match item {
            Decoded::TooLarge(e) => {
                warn!("browser frame refused: {e}");
                self.emit_error(&Value::Null, ErrorCode::FrameTooLarge, e.to_string());
                return;
            }
            Decoded::Frame(body) => body,
        };
        let req = match proto::parse_request(&body) {
            Ok(r) => r,
            Err(rej) => {
                warn!("bad frame from the browser: {}", rej.error.message);
                self.emit(&proto::error_reply(&rej.id, &rej.error));
                return;
            }
        };
        debug!("-> {} (id {})", req.method, req.id);
        match &self.link {
            Link::Up { .. } => self.forward(req.id, &body).await,
            Link::Connecting if self.first && self.held.len() < MAX_HELD => {
                self.held.push((req.id, body));
            }
            _ => {
                let msg = format!("the daemon is not reachable: {}; retrying", self.reason);
                self.emit_error(&req.id, ErrorCode::DaemonUnavailable, msg);
            }
        }
    }

    async fn forward(&mut self, id: Value, body: &[u8]) {
        let Link::Up { writer, .. } = &mut self.link else {
            self.emit_error(
                &id,
                ErrorCode::DaemonUnavailable,
                "the daemon is not connected",
            );
            return;
        };
        let framed = match frame::encode(body, Endian::Little, MAX_INBOUND_FRAME) {
            Ok(f) => f,
            Err(e) => {
                self.emit_error(&id, ErrorCode::FrameTooLarge, e.to_string());
                return;
            }
        };
        match writer.write_all(&framed).await {
            Ok(()) => self.pending.push_back(id),
            Err(e) => {
                self.pending.push_back(id);
                self.lost(format!("writing to the daemon failed: {e}"));
            }
        }
    }

    async fn on_internal(&mut self, ev: Internal) {
        match ev {
            Internal::Frame(gen, item) if self.is_current(gen) => self.on_daemon(item),
            Internal::Closed(gen, why) if self.is_current(gen) => self.lost(why),
            Internal::Frame(..) | Internal::Closed(..) => {} // an old connection
            Internal::Attempt(child, result) => {
                self.child = child;
                match result {
                    Ok(c) => self.up(c).await,
                    Err(why) => self.attempt_failed(why),
                }
            }
        }
    }

    fn is_current(&self, gen: u64) -> bool {
        matches!(&self.link, Link::Up { gen: g, .. } if *g == gen)
    }

    fn on_daemon(&mut self, item: Decoded) {
        let body = match item {
            Decoded::Frame(body) => body,
            Decoded::TooLarge(e) => {
                // the daemon answers in order: this was the reply to the oldest request
                error!("daemon frame refused: {e}");
                let id = self.pending.pop_front().unwrap_or(Value::Null);
                self.emit_error(
                    &id,
                    ErrorCode::Internal,
                    format!("daemon reply refused: {e}"),
                );
                return;
            }
        };
        #[derive(Deserialize)]
        struct Peek {
            #[serde(default)]
            id: Option<Value>,
        }
        let peek: Peek = match serde_json::from_slice(&body) {
            Ok(p) => p,
            Err(e) => {
                error!("dropping a daemon frame that is not a JSON object: {e}");
                return;
            }
        };
        let id = peek.id.filter(|v| !v.is_null());
        if let Some(id) = &id {
            if let Some(i) = self.pending.iter().position(|p| p == id) {
                self.pending.remove(i);
            }
        }
        if body.len() > MAX_TO_BROWSER {
            // Too large for one browser message: split it into chunks the extension joins
            // (docs/protocol.md, "Chunked replies").
            let Some(id) = id else {
                error!("dropping a daemon event of {} bytes", body.len());
                return;
            };
            let chunks = std::str::from_utf8(&body)
                .map_err(|e| e.to_string())
                .and_then(|text| {
                    proto::split_reply(&id, text, MAX_TO_BROWSER).map_err(|e| e.to_string())
                });
            match chunks {
                Ok(chunks) => {
                    debug!(
                        "reply to {id} is {} bytes: {} chunks",
                        body.len(),
                        chunks.len()
                    );
                    for c in chunks {
                        self.emit_body(c.as_bytes());
                    }
                }
                Err(e) => {
                    let msg = format!("the reply of {} bytes cannot be chunked: {e}", body.len());
                    error!("{msg}");
                    self.emit_error(&id, ErrorCode::Internal, msg);
                }
            }
            return;
        }
        self.emit_body(&body);
    }

    /// The daemon connection ended: fail what was in flight, report, retry with backoff.
    fn lost(&mut self, why: String) {
        if let Link::Up { reader, since, .. } = &self.link {
            reader.abort();
            if since.elapsed() >= STABLE_AFTER {
                self.backoff = FIRST_BACKOFF;
            }
        }
        warn!("daemon connection lost: {why}");
        for id in std::mem::take(&mut self.pending) {
            self.emit_error(
                &id,
                ErrorCode::DaemonUnavailable,
                format!("the daemon connection was lost before it replied: {why}"),
            );
        }
        self.reason = why;
        self.down();
    }

    fn attempt_failed(&mut self, why: String) {
        warn!("cannot reach the daemon: {why}");
        self.reason = why;
        for (id, _) in std::mem::take(&mut self.held) {
            let msg = format!("the daemon is not reachable: {}; retrying", self.reason);
            self.emit_error(&id, ErrorCode::DaemonUnavailable, msg);
        }
        self.first = false;
        self.down();
    }

    /// Reports `daemon.down` and schedules the next attempt after the current backoff.
    fn down(&mut self) {
        let retry_in = self.backoff;
        self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
        self.link = Link::Down {
            retry_at: Instant::now() + retry_in,
        };
        let ev = proto::event(
            "daemon.down",
            json!({ "reason": self.reason, "retry_in_ms": retry_in.as_millis() as u64 }),
        );
        self.emit(&ev);
    }

    fn start_attempt(&mut self) {
        self.link = Link::Connecting;
        let tx = self.tx.clone();
        let child = self.child.take();
        match &self.loc {
            Ok(loc) => {
                let loc = loc.clone();
                tokio::spawn(async move {
                    let (child, result) = attempt(loc, child).await;
                    let _ = tx.send(Internal::Attempt(child, result));
                });
            }
            Err(e) => {
                let _ = tx.send(Internal::Attempt(child, Err(e.clone())));
            }
        }
    }

    async fn up(&mut self, c: Connected) {
        self.gen += 1;
        let gen = self.gen;
        let (rd, writer) = c.stream.into_split();
        let reader = tokio::spawn(read_daemon(rd, c.decoder, gen, self.tx.clone()));
        self.link = Link::Up {
            gen,
            since: Instant::now(),
            writer,
            reader,
        };
        self.reason.clear();
        info!("connected to daemon {}", c.version);
        let ev = proto::event(
            "daemon.up",
            json!({ "version": c.version, "host": env!("CARGO_PKG_VERSION") }),
        );
        self.emit(&ev);
        self.first = false;
        for (id, body) in std::mem::take(&mut self.held) {
            self.forward(id, &body).await;
        }
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn read_daemon(
    mut rd: tokio::net::unix::OwnedReadHalf,
    mut dec: FrameDecoder,
    gen: u64,
    tx: mpsc::UnboundedSender<Internal>,
) {
    let mut buf = vec![0u8; 64 * 1024];
    let why = loop {
        while let Some(item) = dec.next() {
            if tx.send(Internal::Frame(gen, item)).is_err() {
                return;
            }
        }
        match rd.read(&mut buf).await {
            Ok(0) => break "the daemon closed the connection".to_string(),
            Ok(n) => dec.push(&buf[..n]),
            Err(e) => break format!("reading from the daemon failed: {e}"),
        }
    };
    let _ = tx.send(Internal::Closed(gen, why));
}

/// One connection attempt: connect, and if nobody is listening start the daemon (once) and wait
/// up to [`START_WAIT`] for it. Returns the started child (to reap it later) and the outcome.
async fn attempt(
    loc: Locations,
    mut child: Option<Child>,
) -> (Option<Child>, Result<Connected, String>) {
    // reap a daemon we started earlier that has exited since
    if let Some(c) = child.as_mut() {
        if let Ok(Some(status)) = c.try_wait() {
            debug!("earlier daemon {} exited ({status})", c.id());
            child = None;
        }
    }
    let uid = sys::uid();
    match try_connect(&loc, uid).await {
        Ok(c) => return (child, Ok(c)),
        Err(Refused::Fatal(e)) => return (child, Err(e)),
        Err(Refused::NotListening(e)) => debug!("daemon not listening: {e}"),
    }
    let mut starting = match child {
        // still running but not listening: it is starting up, or stuck; do not start another
        Some(c) => Starting::adopt(&loc, c, START_WAIT),
        None => match Starting::spawn(&loc, START_WAIT) {
            Ok(s) => {
                info!("started the daemon (pid {})", s.pid());
                s
            }
            Err(e) => return (None, Err(e.to_string())),
        },
    };
    loop {
        tokio::time::sleep(spawn::POLL).await;
        match try_connect(&loc, uid).await {
            Ok(c) => return (starting.into_child(), Ok(c)),
            Err(Refused::Fatal(e)) => return (starting.into_child(), Err(e)),
            Err(Refused::NotListening(_)) => {}
        }
        if let Err(e) = starting.check() {
            return (starting.into_child(), Err(e.to_string()));
        }
    }
}

enum Refused {
    /// Nobody is listening (no directory, no socket, connection refused): start the daemon.
    NotListening(String),
    /// Something is wrong that starting a daemon would not fix.
    Fatal(String),
}

async fn try_connect(loc: &Locations, uid: u32) -> Result<Connected, Refused> {
    let dir: PathBuf = loc.runtime_dir.clone();
    match std::fs::symlink_metadata(&dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Refused::NotListening(format!(
                "{} does not exist",
                dir.display()
            )))
        }
        _ => {}
    }
    // never talk to a socket in a directory someone else controls
    paths::check_private_dir(&dir, uid).map_err(|e| Refused::Fatal(e.to_string()))?;
    let socket = loc.socket();
    let stream = match UnixStream::connect(&socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Err(Refused::NotListening(format!("{}: {e}", socket.display())))
        }
        Err(e) => {
            return Err(Refused::Fatal(format!(
                "cannot connect to {}: {e}",
                socket.display()
            )))
        }
    };
    match stream.peer_cred() {
        Ok(c) if c.uid() == uid => {}
        Ok(c) => {
            return Err(Refused::Fatal(format!(
                "{} is served by uid {}, not by you (uid {uid})",
                socket.display(),
                c.uid()
            )))
        }
        Err(e) => {
            return Err(Refused::Fatal(format!(
                "cannot check who serves {}: {e}",
                socket.display()
            )))
        }
    }
    match tokio::time::timeout(HELLO_WAIT, handshake(stream)).await {
        Ok(Ok(c)) => Ok(c),
        // a daemon is there but does not speak to us properly: starting another would not help
        Ok(Err(e)) => Err(Refused::Fatal(e)),
        Err(_) => Err(Refused::Fatal(format!(
            "the daemon at {} did not answer hello within {} s",
            socket.display(),
            HELLO_WAIT.as_secs()
        ))),
    }
}

/// Says hello on a fresh connection; the daemon's version goes into `daemon.up`.
async fn handshake(mut stream: UnixStream) -> Result<Connected, String> {
    let hello = json!({
        "id": HOST_HELLO_ID,
        "method": "hello",
        "params": { "protocol": proto::PROTOCOL_VERSION, "client": concat!("quiver-native-host/", env!("CARGO_PKG_VERSION")) },
    });
    let framed = frame::encode(
        hello.to_string().as_bytes(),
        Endian::Little,
        MAX_INBOUND_FRAME,
    )
    .map_err(|e| e.to_string())?;
    stream
        .write_all(&framed)
        .await
        .map_err(|e| format!("sending hello to the daemon failed: {e}"))?;
    let mut dec = FrameDecoder::new(Endian::Little, MAX_INBOUND_FRAME);
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if let Some(item) = dec.next() {
            let Decoded::Frame(body) = item else {
                return Err("the daemon answered hello with an oversized frame".into());
            };
            let v: Value = serde_json::from_slice(&body)
                .map_err(|e| format!("the daemon answered hello with bad JSON: {e}"))?;
            if v["id"] != HOST_HELLO_ID {
                continue;
            }
            let version = v["result"]["daemon"]
                .as_str()
                .ok_or_else(|| format!("the daemon refused hello: {}", v["error"]))?
                .to_string();
            let protocol = v["result"]["protocol"].as_u64().unwrap_or(0);
            if protocol != u64::from(proto::PROTOCOL_VERSION) {
                return Err(format!(
                    "the running daemon (quiver {version}) speaks protocol {protocol}, this \
                     host {}: restart it with `quiver daemon --stop` (the host starts the new \
                     one)",
                    proto::PROTOCOL_VERSION
                ));
            }
            return Ok(Connected {
                stream,
                decoder: dec,
                version,
            });
        }
        let n = stream
            .read(&mut buf)
            .await
            .map_err(|e| format!("reading hello from the daemon failed: {e}"))?;
        if n == 0 {
            return Err("the daemon closed the connection during hello".into());
        }
        dec.push(&buf[..n]);
    }
}
