//! The command line's connection to the daemon: the same socket and frames as the native host,
//! synchronous, starting the daemon when nobody listens. The daemon owns the database; the CLI
//! never opens it.

use crate::paths::{self, Locations};
use crate::spawn::{StartError, Starting};
use crate::sys;
use quiver_shared::frame::{self, Decoded, Endian, FrameDecoder, MAX_INBOUND_FRAME};
use quiver_shared::proto::{self, ErrorBody, ErrorCode};
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// How long a call may take (an import of a large library writes for a while).
pub const CALL_WAIT: Duration = Duration::from_secs(120);
const START_WAIT: Duration = Duration::from_secs(5);

/// A connection to the daemon.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
    dec: FrameDecoder,
    next_id: u64,
    /// The daemon's answer to `hello`.
    pub hello: Value,
}

/// Why the client could not get an answer.
#[derive(Debug, Clone, PartialEq)]
pub enum CallError {
    /// The daemon answered with an error.
    Daemon(ErrorBody),
    /// The connection failed.
    Io(String),
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CallError::Daemon(e) => write!(f, "{} ({})", e.message, e.code.as_str()),
            CallError::Io(e) => f.write_str(e),
        }
    }
}

/// Why the client could not reach the daemon.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("the daemon is not running ({0})")]
    NotRunning(String),
    #[error(transparent)]
    Path(#[from] paths::PathError),
    #[error(transparent)]
    Unsafe(#[from] paths::UnsafeDir),
    #[error(transparent)]
    Start(#[from] StartError),
    #[error("cannot check who serves {}: {source}", socket.display())]
    Peer {
        socket: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{} is served by uid {peer}, not by you (uid {uid})", socket.display())]
    WrongUser {
        socket: std::path::PathBuf,
        peer: u32,
        uid: u32,
    },
    #[error("cannot connect to {}: {source}", socket.display())]
    Connect {
        socket: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("the daemon refused hello: {0}")]
    Hello(CallError),
}

enum Attempt {
    Connected(UnixStream),
    NotListening(String),
}

fn try_connect(loc: &Locations, uid: u32) -> Result<Attempt, ConnectError> {
    if std::fs::symlink_metadata(&loc.runtime_dir).is_err() {
        return Ok(Attempt::NotListening(format!(
            "{} does not exist",
            loc.runtime_dir.display()
        )));
    }
    // never talk to a socket in a directory someone else controls
    paths::check_private_dir(&loc.runtime_dir, uid)?;
    let socket = loc.socket();
    match UnixStream::connect(&socket) {
        Ok(s) => {
            let peer = sys::peer_uid(&s).map_err(|source| ConnectError::Peer {
                socket: socket.clone(),
                source,
            })?;
            if peer != uid {
                return Err(ConnectError::WrongUser { socket, peer, uid });
            }
            Ok(Attempt::Connected(s))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            Ok(Attempt::NotListening(format!("{}: {e}", socket.display())))
        }
        Err(source) => Err(ConnectError::Connect { socket, source }),
    }
}

impl Client {
    /// Connects to the daemon of `loc`, starting it if nobody listens (`start`), and says hello.
    pub fn connect(loc: &Locations, start: bool) -> Result<Client, ConnectError> {
        let uid = sys::uid();
        let stream = match try_connect(loc, uid)? {
            Attempt::Connected(s) => s,
            Attempt::NotListening(why) if !start => return Err(ConnectError::NotRunning(why)),
            Attempt::NotListening(_) => {
                paths::ensure_data_dir(&loc.data_dir)?;
                paths::ensure_runtime_dir(&loc.runtime_dir, uid)?;
                Starting::spawn(loc, START_WAIT)?.wait_blocking(|| -> Result<_, ConnectError> {
                    Ok(match try_connect(loc, uid)? {
                        Attempt::Connected(s) => Some(s),
                        Attempt::NotListening(_) => None,
                    })
                })?
            }
        };
        stream.set_read_timeout(Some(CALL_WAIT))?;
        let mut c = Client {
            stream,
            dec: FrameDecoder::new(Endian::Little, MAX_INBOUND_FRAME),
            next_id: 1,
            hello: Value::Null,
        };
        let client = concat!("quiver-cli/", env!("CARGO_PKG_VERSION"));
        c.hello = c
            .call(
                "hello",
                json!({ "protocol": proto::PROTOCOL_VERSION, "client": client }),
            )
            .map_err(ConnectError::Hello)?;
        Ok(c)
    }

    /// How long a call may take from now on (`team.sync` waits longer than [`CALL_WAIT`]).
    pub fn set_wait(&mut self, d: Duration) {
        let _ = self.stream.set_read_timeout(Some(d));
    }

    /// Calls `method`; events the daemon pushes meanwhile are skipped.
    pub fn call(&mut self, method: &str, params: Value) -> Result<Value, CallError> {
        let id = self.next_id;
        self.next_id += 1;
        let body = json!({ "id": id, "method": method, "params": params }).to_string();
        let framed = frame::encode(body.as_bytes(), Endian::Little, MAX_INBOUND_FRAME)
            .map_err(|e| CallError::Io(format!("{method}: {e}")))?;
        self.stream
            .write_all(&framed)
            .map_err(|e| CallError::Io(format!("writing to the daemon failed: {e}")))?;
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            while let Some(item) = self.dec.next() {
                let body = match item {
                    Decoded::Frame(b) => b,
                    Decoded::TooLarge(e) => {
                        return Err(CallError::Io(format!(
                            "the daemon's reply was refused: {e}"
                        )))
                    }
                };
                let v: Value = serde_json::from_slice(&body)
                    .map_err(|e| CallError::Io(format!("the daemon sent bad JSON: {e}")))?;
                if v.get("event").is_some() || v["id"] != id {
                    continue;
                }
                if let Some(e) = v.get("error") {
                    let e: ErrorBody = serde_json::from_value(e.clone()).unwrap_or_else(|_| {
                        ErrorBody::new(ErrorCode::Internal, format!("unreadable error {e}"))
                    });
                    return Err(CallError::Daemon(e));
                }
                return Ok(v["result"].clone());
            }
            let n = self.stream.read(&mut buf).map_err(|e| {
                CallError::Io(format!("reading from the daemon failed ({method}): {e}"))
            })?;
            if n == 0 {
                return Err(CallError::Io(format!(
                    "the daemon closed the connection ({method})"
                )));
            }
            self.dec.push(&buf[..n]);
        }
    }
}
