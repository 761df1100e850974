//! Small helpers: paths, running commands, environment cleaning.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::Instant;

pub type Result<T = ()> = std::result::Result<T, String>;

/// The repository root (xtask lives in `<root>/xtask`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask has a parent directory")
        .to_path_buf()
}

/// Cargo's target directory: `$CARGO_TARGET_DIR` (relative to the repo root) or `<root>/target`.
/// Everything xtask makes lives under it: `debug/quiver`, `wasm/`, `extension/`, `tools/`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => repo_root().join(dir),
        None => repo_root().join("target"),
    }
}

/// The cargo that runs us (`$CARGO`, set by `cargo run`), else `cargo` from PATH.
pub fn cargo() -> Command {
    Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()))
}

/// Looks a program up in PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| is_executable(p))
}

pub fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    p.metadata()
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Removes from `cmd`'s environment what an outer `cargo run` / rustup proxy set, so that a
/// different cargo (Debian's `/usr/bin/cargo`) uses its own rustc and settings.
/// CARGO_HOME is kept: it holds the registry cache and the user's cargo config.
pub fn strip_cargo_env(cmd: &mut Command) {
    for (key, _) in std::env::vars_os() {
        let Some(key) = key.to_str() else { continue };
        let strip = (key.starts_with("CARGO") && key != "CARGO_HOME")
            || key.starts_with("RUSTUP_")
            || matches!(
                key,
                "RUSTC"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOC"
                    | "RUSTFLAGS"
                    | "RUSTDOCFLAGS"
                    | "RUSTC_BOOTSTRAP"
                    | "OUT_DIR"
                    | "TARGET"
                    | "HOST"
            );
        if strip {
            cmd.env_remove(key);
        }
    }
}

/// How a command is shown in logs: `$ prog arg arg`.
pub fn show(cmd: &Command) -> String {
    let mut s = String::from("$");
    for (k, v) in cmd.get_envs() {
        if let Some(v) = v {
            s.push_str(&format!(" {}={}", k.to_string_lossy(), v.to_string_lossy()));
        }
    }
    s.push(' ');
    s.push_str(&cmd.get_program().to_string_lossy());
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&quote(a));
    }
    s
}

fn quote(a: &OsStr) -> String {
    let a = a.to_string_lossy();
    if !a.is_empty()
        && a.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./=:,+@".contains(c))
    {
        a.into_owned()
    } else {
        format!("'{}'", a.replace('\'', r"'\''"))
    }
}

/// Runs a command with inherited stdio; an error if it cannot start or exits non-zero.
pub fn run(cmd: &mut Command) -> Result {
    eprintln!("{}", show(cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    check(cmd, status)
}

fn check(cmd: &Command, status: ExitStatus) -> Result {
    if status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{}` failed ({status})",
            show(cmd).trim_start_matches("$ ")
        ))
    }
}

/// Runs a command quietly and returns its stdout, or None when it cannot run or fails.
pub fn output(cmd: &mut Command) -> Option<String> {
    let out = cmd.stderr(Stdio::null()).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Runs a command, echoing its stdout line by line while keeping a copy (for counting test
/// results). Stderr is inherited. Returns the exit status and the captured stdout.
pub fn run_tee(cmd: &mut Command) -> Result<(ExitStatus, String)> {
    eprintln!("{}", show(cmd));
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", cmd.get_program().to_string_lossy()))?;
    let mut captured = String::new();
    let stdout = child.stdout.take().expect("piped stdout");
    let mut out = std::io::stdout();
    for line in BufReader::new(stdout).lines() {
        let line = line.map_err(|e| format!("reading output: {e}"))?;
        let _ = writeln!(out, "{line}");
        captured.push_str(&line);
        captured.push('\n');
    }
    let status = child.wait().map_err(|e| e.to_string())?;
    Ok((status, captured))
}

/// Copies a directory tree (files and subdirectories).
pub fn copy_dir(from: &Path, to: &Path) -> Result {
    std::fs::create_dir_all(to).map_err(|e| format!("creating {}: {e}", to.display()))?;
    let entries =
        std::fs::read_dir(from).map_err(|e| format!("reading {}: {e}", from.display()))?;
    for entry in entries {
        let entry = entry.map_err(|e| e.to_string())?;
        let (src, dst) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type().map_err(|e| e.to_string())?.is_dir() {
            copy_dir(&src, &dst)?;
        } else {
            std::fs::copy(&src, &dst)
                .map_err(|e| format!("copying {} to {}: {e}", src.display(), dst.display()))?;
        }
    }
    Ok(())
}

/// FNV-1a, 64 bit: a stable content hash for stamp files (std's hasher may change between
/// Rust releases, which would only cause a needless reinstall, but stable is nicer).
pub fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// Prints a step banner and returns a timer for it.
pub fn banner(what: &str) -> Instant {
    eprintln!("\n==> {what}");
    Instant::now()
}

pub fn secs(t: Instant) -> String {
    format!("{:.1}s", t.elapsed().as_secs_f64())
}

/// The `wasm-bindgen` version pinned in Cargo.lock.
pub fn wasm_bindgen_version(root: &Path) -> Result<String> {
    let lock = std::fs::read_to_string(root.join("Cargo.lock"))
        .map_err(|e| format!("reading Cargo.lock: {e} (run `cargo generate-lockfile`)"))?;
    locked_version(&lock, "wasm-bindgen")
        .ok_or_else(|| "no `wasm-bindgen` package in Cargo.lock".into())
}

/// The version of package `name` in a Cargo.lock (`name = "..."` followed by `version = "..."`).
fn locked_version(lock: &str, name: &str) -> Option<String> {
    let want = format!("name = \"{name}\"");
    let mut lines = lock.lines();
    while let Some(line) = lines.next() {
        if line.trim() == want {
            let v = lines.next()?.trim().strip_prefix("version = ")?;
            return Some(v.trim_matches('"').to_string());
        }
    }
    None
}

/// `target/tools/wasm-bindgen-<version>/bin/wasm-bindgen`.
pub fn wasm_bindgen_bin(root: &Path) -> Result<PathBuf> {
    let v = wasm_bindgen_version(root)?;
    Ok(tools_root(&v).join("bin").join("wasm-bindgen"))
}

pub fn tools_root(version: &str) -> PathBuf {
    target_dir()
        .join("tools")
        .join(format!("wasm-bindgen-{version}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_exact_package_in_cargo_lock() {
        let lock = r#"
[[package]]
name = "wasm-bindgen-macro"
version = "0.2.130"

[[package]]
name = "wasm-bindgen"
version = "0.2.130"
source = "registry+https://github.com/rust-lang/crates.io-index"
"#;
        assert_eq!(
            locked_version(lock, "wasm-bindgen").as_deref(),
            Some("0.2.130")
        );
        assert_eq!(locked_version(lock, "serde"), None);
    }
}
