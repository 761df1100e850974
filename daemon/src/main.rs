//! `quiver`: see the library (`lib.rs`) for the module map.

fn main() -> std::process::ExitCode {
    quiver_daemon::cli::run(
        std::env::args_os()
            .skip(1)
            .map(|a| a.to_string_lossy().into_owned())
            .collect(),
    )
}
