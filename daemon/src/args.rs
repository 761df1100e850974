//! What every command shares: its output (stdout, for the user's commands only).

use std::io::Write;

/// User-facing output of the CLI commands (never used by the native host). A closed stdout
/// (`quiver history | head`) is not an error worth a panic.
pub(crate) fn out(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}
