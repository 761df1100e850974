//! Shared by the benchmarks: a private sandbox for a daemon, percentiles, the machine.
#![allow(dead_code, clippy::print_stdout)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The `quiver` binary built with the bench profile.
pub fn quiver() -> &'static str {
    env!("CARGO_BIN_EXE_quiver")
}

/// Private data, socket and home directories; the daemon is stopped and everything removed on
/// drop.
pub struct Sandbox {
    pub root: PathBuf,
}

impl Sandbox {
    pub fn new(name: &str) -> Sandbox {
        let root = std::env::temp_dir().join(format!("quiver-bench-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&root);
        std::fs::create_dir_all(root.join("home")).unwrap();
        Sandbox { root }
    }

    pub fn data(&self) -> PathBuf {
        self.root.join("data")
    }

    pub fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// Sets this sandbox's environment on `cmd`.
    pub fn env<'a>(&self, cmd: &'a mut Command) -> &'a mut Command {
        cmd.env("QUIVER_DATA_DIR", self.data())
            .env("QUIVER_RUNTIME_DIR", self.run_dir())
            .env("HOME", self.root.join("home"))
            .env("QUIVER_LOG", "warn")
            .env_remove("XDG_DATA_HOME")
            .env_remove("XDG_RUNTIME_DIR")
    }

    /// Sets this sandbox's environment on this process (for the library's client).
    pub fn enter(&self) {
        std::env::set_var("QUIVER_DATA_DIR", self.data());
        std::env::set_var("QUIVER_RUNTIME_DIR", self.run_dir());
    }

    /// `quiver daemon` (detached; returns once it serves).
    pub fn start_daemon(&self) {
        let out = self
            .env(&mut Command::new(quiver()))
            .args(["daemon"])
            .output()
            .expect("run quiver daemon");
        assert!(out.status.success(), "{out:?}");
    }

    pub fn stop_daemon(&self) {
        let _ = self
            .env(&mut Command::new(quiver()))
            .args(["daemon", "--stop"])
            .output();
    }

    /// `quiver` started as Chromium starts its native host.
    pub fn host(&self) -> Child {
        self.env(&mut Command::new(quiver()))
            .arg("chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn the host")
    }

    pub fn locations(&self) -> quiver_daemon::paths::Locations {
        quiver_daemon::paths::Locations {
            data_dir: self.data(),
            runtime_dir: self.run_dir(),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        self.stop_daemon();
        let _ = std::fs::remove_dir_all(&self.root);
    }
}

/// Median, p99 and mean of `samples`.
pub struct Stats {
    pub n: usize,
    pub median: Duration,
    pub p99: Duration,
    pub mean: Duration,
}

pub fn stats(samples: &mut [Duration]) -> Stats {
    samples.sort_unstable();
    let n = samples.len();
    let at = |q: f64| samples[((n as f64 - 1.0) * q).round() as usize];
    Stats {
        n,
        median: at(0.5),
        p99: at(0.99),
        mean: samples.iter().sum::<Duration>() / n as u32,
    }
}

pub fn us(d: Duration) -> String {
    format!("{:.1} µs", d.as_secs_f64() * 1e6)
}

pub fn ms(d: Duration) -> String {
    format!("{:.2} ms", d.as_secs_f64() * 1e3)
}

/// One line about the machine and the date, for docs/benchmarks.md.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|s| s.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {kernel}; {date}")
}

/// The file system of `p` (for the durability numbers).
pub fn filesystem(p: &Path) -> String {
    Command::new("df")
        .args(["--output=fstype,source"])
        .arg(p)
        .output()
        .map(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .nth(1)
                .unwrap_or("")
                .split_whitespace()
                .collect::<Vec<_>>()
                .join(" on ")
        })
        .unwrap_or_default()
}

/// Waits until `f` is true (up to `limit`).
pub fn wait_for(limit: Duration, f: impl Fn() -> bool) -> bool {
    let until = Instant::now() + limit;
    while Instant::now() < until {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    false
}
