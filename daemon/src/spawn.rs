//! Starting the daemon from another process (the CLI, the native host, `quiver daemon`) and
//! waiting until it serves: one detached spawn and one wait with its failure reports, used by
//! every starter. The starters connect in their own way (blocking or async) and ask
//! [`Starting::check`] after each attempt that found nobody listening.

use crate::paths::Locations;
use crate::sys;
use std::io::Read;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};

/// Set by [`spawn_detached_daemon`] for its child: the daemon logs to its file only, and a
/// start-up failure goes to stderr, a pipe the starter reads (see [`start_failure`]).
pub const DETACHED_ENV: &str = "QUIVER_DAEMON_DETACHED";

pub fn detached_child() -> bool {
    std::env::var_os(DETACHED_ENV).is_some_and(|v| v == "1")
}

/// Why a daemon we started exited with `status` before it served: what it wrote on stderr (the
/// real cause, even when its log file could not be created), else a pointer to its log.
pub fn start_failure(
    child: &mut std::process::Child,
    status: impl std::fmt::Display,
    log: &Path,
) -> String {
    let mut text = String::new();
    if let Some(mut err) = child.stderr.take() {
        let _ = (&mut err).take(64 * 1024).read_to_string(&mut text);
    }
    let cause: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    if cause.is_empty() {
        format!(
            "the daemon failed to start ({status}); see {}",
            log.display()
        )
    } else {
        let cause = cause.join("; ");
        let cause = cause.strip_prefix("quiver daemon: ").unwrap_or(&cause);
        format!(
            "the daemon failed to start ({status}): {}",
            crate::params::truncate(cause, 2048)
        )
    }
}

/// Starts `quiver daemon --foreground` as its own session with no stdio of ours: it never holds
/// the caller's stdout (for the native host, the browser port) and outlives the caller.
pub fn spawn_detached_daemon() -> Result<std::process::Child, StartError> {
    let exe = std::env::current_exe().map_err(StartError::NoExe)?;
    let mut cmd = std::process::Command::new(&exe);
    // stderr is a pipe to us: the daemon writes to it only when it fails to start (it logs to
    // its file), so we can report the real cause even when that file cannot be created.
    cmd.args(["daemon", "--foreground"])
        .env(DETACHED_ENV, "1")
        .current_dir("/")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    sys::detach_on_spawn(&mut cmd);
    cmd.spawn()
        .map_err(|source| StartError::Spawn { exe, source })
}

/// Why a daemon we started does not serve.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot find the quiver executable to start the daemon: {0}")]
    NoExe(std::io::Error),
    #[error("cannot start {} daemon: {source}", exe.display())]
    Spawn {
        exe: std::path::PathBuf,
        source: std::io::Error,
    },
    /// It exited: what it wrote on stderr ([`start_failure`]).
    #[error("{why} (pid {pid})")]
    Failed { why: String, pid: u32 },
    #[error(
        "the daemon (pid {pid}) did not open {} within {secs} s; see {}",
        socket.display(),
        log.display()
    )]
    TimedOut {
        pid: u32,
        socket: std::path::PathBuf,
        secs: u64,
        log: std::path::PathBuf,
    },
}

/// How often a starter tries to connect while the daemon starts.
pub const POLL: Duration = Duration::from_millis(20);

/// What [`Starting::check`] saw of the daemon being started.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Still starting (or the daemon that won the race is): try to connect again.
    Starting,
    /// The daemon we started exited with success: another daemon held the lock already.
    Other,
}

/// A daemon being started: the child (while it runs) and the deadline.
#[derive(Debug)]
pub struct Starting {
    child: Option<Child>,
    pid: u32,
    until: Instant,
    wait: Duration,
    socket: std::path::PathBuf,
    log: std::path::PathBuf,
}

impl Starting {
    /// Spawns a detached daemon ([`spawn_detached_daemon`]) and gives it `wait` to serve.
    pub fn spawn(loc: &Locations, wait: Duration) -> Result<Starting, StartError> {
        Ok(Starting::adopt(loc, spawn_detached_daemon()?, wait))
    }

    /// Waits for a daemon started earlier (`child`) for `wait` from now.
    pub fn adopt(loc: &Locations, child: Child, wait: Duration) -> Starting {
        Starting {
            pid: child.id(),
            child: Some(child),
            until: Instant::now() + wait,
            wait,
            socket: loc.socket(),
            log: loc.log("daemon.log"),
        }
    }

    /// The pid of the daemon we started.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The child while it runs (to reap it later), giving up the wait.
    pub fn into_child(self) -> Option<Child> {
        self.child
    }

    /// After a connection attempt found nobody listening: `Err` with the reason to report when
    /// the child failed (what it wrote on stderr, see [`start_failure`]) or the time ran out.
    pub fn check(&mut self) -> Result<Progress, StartError> {
        if let Some(c) = self.child.as_mut() {
            match c.try_wait() {
                Ok(Some(status)) if status.success() => {
                    // "already running": another daemon is starting; keep waiting for it
                    self.child = None;
                    return Ok(Progress::Other);
                }
                Ok(Some(status)) => {
                    let why = start_failure(c, status, &self.log);
                    self.child = None;
                    return Err(StartError::Failed { why, pid: self.pid });
                }
                _ => {}
            }
        }
        if Instant::now() >= self.until {
            return Err(StartError::TimedOut {
                pid: self.pid,
                socket: self.socket.clone(),
                secs: self.wait.as_secs(),
                log: self.log.clone(),
            });
        }
        Ok(Progress::Starting)
    }

    /// Blocking: calls `connect` every [`POLL`] until it gives a connection (`Ok(Some)`), fails
    /// (`Err`), or [`Starting::check`] reports a failed start or the end of the wait.
    pub fn wait_blocking<S, E: From<StartError>>(
        mut self,
        mut connect: impl FnMut() -> Result<Option<S>, E>,
    ) -> Result<S, E> {
        loop {
            std::thread::sleep(POLL);
            if let Some(s) = connect()? {
                return Ok(s);
            }
            self.check()?;
        }
    }
}
