//! A throw-away PostgreSQL server for the tests: a private cluster in a temporary directory,
//! listening on 127.0.0.1 at a free port, its socket in that directory, stopped and removed when
//! the [`Cluster`] is dropped (also when the tests fail). PostgreSQL refuses to run as root, so
//! as root the cluster belongs to the `postgres` user and every server command runs through
//! `runuser -u postgres --`.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{output, run, which, Result};

/// Where the server's programs are: Debian's `/usr/lib/postgresql/<newest>/bin`, else `initdb`
/// and `pg_ctl` on PATH (Homebrew, Fedora, ...).
pub fn bin_dir() -> Option<PathBuf> {
    let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let bin = e.path().join("bin");
            bin.join("initdb").exists().then_some((v, bin))
        })
        .collect();
    versions.sort();
    if let Some((_, bin)) = versions.pop() {
        return Some(bin);
    }
    let initdb = which("initdb")?;
    which("pg_ctl")?;
    initdb.parent().map(Path::to_path_buf)
}

fn is_root() -> bool {
    output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0")
}

/// A running cluster.
#[derive(Debug)]
pub struct Cluster {
    dir: PathBuf,
    bin: PathBuf,
    as_postgres: bool,
    /// `postgres://quiver@127.0.0.1:PORT/postgres` (trust authentication on loopback).
    pub url: String,
}

impl Cluster {
    fn command(&self, program: &str) -> Command {
        command(&self.bin, self.as_postgres, program)
    }

    pub fn start() -> Result<Cluster> {
        let bin = bin_dir().ok_or(
            "PostgreSQL's server programs (initdb, pg_ctl) are missing: `cargo xtask deps` installs \
             them on Debian as root (package postgresql); elsewhere install PostgreSQL 13 or newer",
        )?;
        let as_postgres = is_root();
        let dir = std::env::temp_dir().join(format!("quiver-pg-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        if as_postgres {
            run(Command::new("chown").arg("postgres:").arg(&dir))?;
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map_err(|e| format!("finding a free port: {e}"))?
            .port();
        let c = Cluster {
            url: format!("postgres://quiver@127.0.0.1:{port}/postgres"),
            dir,
            bin,
            as_postgres,
        };
        let data = c.dir.join("data");
        run(c
            .command("initdb")
            .arg("-D")
            .arg(&data)
            .args([
                "-A",
                "trust",
                "-U",
                "quiver",
                "-E",
                "UTF8",
                "--no-locale",
                "--no-sync",
            ])
            .stdout(std::process::Stdio::null()))?;
        let opts = format!(
            "-c listen_addresses=127.0.0.1 -p {port} -k {} -c max_connections=400 -c shared_buffers=64MB",
            c.dir.display()
        );
        run(c
            .command("pg_ctl")
            .arg("-D")
            .arg(&data)
            .arg("-l")
            .arg(c.dir.join("server.log"))
            .args(["-w", "-t", "60", "start", "-o", &opts])
            .stdout(std::process::Stdio::null()))?;
        eprintln!("postgresql: {} (cluster in {})", c.url, c.dir.display());
        Ok(c)
    }
}

fn command(bin: &Path, as_postgres: bool, program: &str) -> Command {
    let path = bin.join(program);
    if as_postgres {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(path);
        c
    } else {
        Command::new(path)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = run(self
            .command("pg_ctl")
            .arg("-D")
            .arg(self.dir.join("data"))
            .args(["-m", "fast", "-w", "stop"]));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
