//! A small logger: one line per record, to a log file and/or stderr. Never to stdout.
//!
//! Writes are best effort: a full disk or a closed stderr (the browser that started the native
//! host went away) must not take the process down, so write errors are ignored.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// A log file larger than this at start-up is moved to `<name>.1` (one generation is kept).
const ROTATE_AT: u64 = 8 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
}

impl Level {
    fn as_str(self) -> &'static str {
        match self {
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }

    fn parse(s: &str) -> Option<Level> {
        match s.trim().to_ascii_lowercase().as_str() {
            "error" => Some(Level::Error),
            "warn" | "warning" => Some(Level::Warn),
            "info" => Some(Level::Info),
            "debug" | "trace" => Some(Level::Debug),
            _ => None,
        }
    }
}

#[derive(Debug)]
struct Sink {
    component: &'static str,
    file: Option<File>,
    stderr: bool,
    level: Level,
}

static SINK: OnceLock<Mutex<Sink>> = OnceLock::new();

/// Starts logging for `component` (`daemon`, `host`, ...). `file` is opened in append mode; if it
/// cannot be opened the reason is returned and logging goes to stderr only (when enabled).
/// The level comes from `$QUIVER_LOG` (`error`, `warn`, `info`, `debug`), default `info`.
pub fn init(component: &'static str, file: Option<&Path>, stderr: bool) -> Result<(), String> {
    let level = std::env::var("QUIVER_LOG")
        .ok()
        .and_then(|v| Level::parse(&v))
        .unwrap_or(Level::Info);
    let (file, err) = match file {
        Some(p) => match open_log(p) {
            Ok(f) => (Some(f), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    let sink = Sink {
        component,
        file,
        stderr,
        level,
    };
    match SINK.get() {
        Some(m) => {
            if let Ok(mut g) = m.lock() {
                *g = sink;
            }
        }
        None => {
            let _ = SINK.set(Mutex::new(sink));
        }
    }
    match err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

fn open_log(path: &Path) -> Result<File, String> {
    if let Some(dir) = path.parent() {
        crate::paths::create_private_dir_all(dir)
            .map_err(|e| format!("cannot create log directory {}: {e}", dir.display()))?;
    }
    if let Ok(meta) = std::fs::metadata(path) {
        if meta.len() > ROTATE_AT {
            let mut old = PathBuf::from(path);
            old.as_mut_os_string().push(".1");
            let _ = std::fs::rename(path, &old);
        }
    }
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let f = OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot open log file {}: {e}", path.display()))?;
    // a log an older version created with the umask's mode becomes private too
    if let Ok(meta) = f.metadata() {
        if meta.permissions().mode() & 0o077 != 0 {
            let _ = f.set_permissions(std::fs::Permissions::from_mode(0o600));
        }
    }
    Ok(f)
}

/// Whether [`init`] was called.
pub fn initialized() -> bool {
    SINK.get().is_some()
}

/// Whether records at `level` are written.
pub fn enabled(level: Level) -> bool {
    SINK.get()
        .and_then(|m| m.lock().ok().map(|g| level <= g.level))
        .unwrap_or(level <= Level::Info)
}

/// Writes one record. Use the `error!`, `warn!`, `info!`, `debug!` macros.
pub fn write(level: Level, args: std::fmt::Arguments<'_>) {
    let Some(m) = SINK.get() else {
        // Not initialised: stderr only (unit tests stay quiet).
        if !cfg!(test) && level <= Level::Info {
            let _ = writeln!(std::io::stderr(), "{} {args}", level.as_str());
        }
        return;
    };
    let Ok(mut sink) = m.lock() else { return };
    if level > sink.level {
        return;
    }
    let line = format!(
        "{} {} {}[{}]: {args}\n",
        timestamp(SystemTime::now()),
        level.as_str(),
        sink.component,
        std::process::id()
    );
    if let Some(f) = sink.file.as_mut() {
        let _ = f.write_all(line.as_bytes());
    }
    if sink.stderr {
        let _ = std::io::stderr().write_all(line.as_bytes());
    }
}

/// `2026-01-31T12:34:56.789Z`
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = d.as_secs();
    let (y, mo, day) = quiver_shared::date::civil_from_days((secs / 86_400) as i64);
    let rem = secs % 86_400;
    format!(
        "{y:04}-{mo:02}-{day:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        d.subsec_millis()
    )
}

#[macro_export]
macro_rules! error {
    ($($t:tt)*) => { $crate::log::write($crate::log::Level::Error, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! warn {
    ($($t:tt)*) => { $crate::log::write($crate::log::Level::Warn, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! info {
    ($($t:tt)*) => { $crate::log::write($crate::log::Level::Info, format_args!($($t)*)) };
}
#[macro_export]
macro_rules! debug {
    ($($t:tt)*) => {
        if $crate::log::enabled($crate::log::Level::Debug) {
            $crate::log::write($crate::log::Level::Debug, format_args!($($t)*))
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn formats_utc_timestamps() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01T00:00:00.000Z");
        let t = UNIX_EPOCH + Duration::from_millis(951_827_696_789); // leap day 2000
        assert_eq!(timestamp(t), "2000-02-29T12:34:56.789Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_767_225_599); // last second of 2025
        assert_eq!(timestamp(t), "2025-12-31T23:59:59.000Z");
    }

    #[test]
    fn parses_levels() {
        assert_eq!(Level::parse("DEBUG"), Some(Level::Debug));
        assert_eq!(Level::parse(" warn "), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
    }
}
