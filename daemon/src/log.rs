//! Logging with `tracing`: one line per record (`2026-01-31T12:34:56.789Z INFO daemon[42]: ...`)
//! to a log file and/or stderr. Never to stdout: in `native-host` fd 1 carries frames only.
//!
//! Writes are best effort: a full disk or a closed stderr (the browser that started the native
//! host went away) must not take the process down, so write errors are ignored. The level
//! comes from `$QUIVER_LOG` (`error`, `warn`, `info`, `debug`, `trace`), default `info`. Code
//! logs with `tracing`'s macros, re-exported at the crate root (`crate::info!`, ...).

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::format::Writer;
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields, MakeWriter};
use tracing_subscriber::registry::LookupSpan;

/// A log file larger than this at start-up is moved to `<name>.1` (one generation is kept).
const ROTATE_AT: u64 = 8 * 1024 * 1024;

/// The level `$QUIVER_LOG` names, if it names one.
fn parse_level(s: &str) -> Option<LevelFilter> {
    match s.trim().to_ascii_lowercase().as_str() {
        "error" => Some(LevelFilter::ERROR),
        "warn" | "warning" => Some(LevelFilter::WARN),
        "info" => Some(LevelFilter::INFO),
        "debug" => Some(LevelFilter::DEBUG),
        "trace" => Some(LevelFilter::TRACE),
        _ => None,
    }
}

/// Where records go: the log file (appended, private) and/or stderr.
#[derive(Debug)]
struct Sinks {
    file: Option<Mutex<File>>,
    stderr: bool,
}

/// One record's writer: the formatted line is buffered and written in one call to each sink,
/// so lines of concurrent threads never interleave.
struct Line<'a> {
    sinks: &'a Sinks,
    buf: Vec<u8>,
}

impl Write for Line<'_> {
    fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Drop for Line<'_> {
    fn drop(&mut self) {
        if let Some(f) = &self.sinks.file {
            if let Ok(mut f) = f.lock() {
                let _ = f.write_all(&self.buf);
            }
        }
        if self.sinks.stderr {
            let _ = std::io::stderr().write_all(&self.buf);
        }
    }
}

impl<'a> MakeWriter<'a> for Sinks {
    type Writer = Line<'a>;
    fn make_writer(&'a self) -> Line<'a> {
        Line {
            sinks: self,
            buf: Vec::with_capacity(256),
        }
    }
}

/// `<time> <LEVEL> <component>[<pid>]: <message>`, as the logs have always read.
struct LineFormat {
    component: &'static str,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut w: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        // the HTTP client's own debug lines (a line per pooled connection) are not ours
        let meta = event.metadata();
        if *meta.level() > Level::INFO && !meta.target().starts_with("quiver") {
            return Ok(());
        }
        let level = match *event.metadata().level() {
            Level::ERROR => "ERROR",
            Level::WARN => "WARN",
            Level::INFO => "INFO",
            Level::DEBUG => "DEBUG",
            Level::TRACE => "TRACE",
        };
        write!(
            w,
            "{} {level} {}[{}]: ",
            timestamp(SystemTime::now()),
            self.component,
            std::process::id()
        )?;
        ctx.format_fields(w.by_ref(), event)?;
        writeln!(w)
    }
}

static INIT: OnceLock<()> = OnceLock::new();

/// Starts logging for `component` (`daemon`, `host`, ...), once per process. `file` is opened
/// in append mode; if it cannot be opened the reason is returned and logging goes to stderr
/// only (when enabled).
pub fn init(component: &'static str, file: Option<&Path>, stderr: bool) -> Result<(), String> {
    let level = std::env::var("QUIVER_LOG")
        .ok()
        .and_then(|v| parse_level(&v))
        .unwrap_or(LevelFilter::INFO);
    let (file, err) = match file {
        Some(p) => match open_log(p) {
            Ok(f) => (Some(Mutex::new(f)), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };
    if INIT.set(()).is_ok() {
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(level)
            .event_format(LineFormat { component })
            .with_writer(Sinks { file, stderr })
            .finish();
        let _ = tracing::subscriber::set_global_default(subscriber);
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
    INIT.get().is_some()
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
        assert_eq!(parse_level("DEBUG"), Some(LevelFilter::DEBUG));
        assert_eq!(parse_level(" warn "), Some(LevelFilter::WARN));
        assert_eq!(parse_level("loud"), None);
    }
}
