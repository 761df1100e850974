//! Quiver's automation. `cargo xtask <command>`:
//!
//! - `deps`: install what is missing (Debian as root) or say what to install (elsewhere)
//! - `build`: the `quiver` binary (target/debug/quiver) and both extension builds (target/extension/, target/extension-dev/)
//! - `build-extension [--dev]`: only the extension (`--dev`: also the development build
//!   `target/extension-dev/`, with the demo hosts; `build`, `test` and `run` make both)
//! - `test`: deps, build, a private PostgreSQL on 127.0.0.1 for the hub's tests (`QUIVER_TEST_PG_URL`),
//!   `cargo test --workspace`, extension unit tests, `tsc --noEmit`, `es-check` (the 多客服 page's
//!   ES5), `web-ext lint`, e2e in Chromium then Firefox
//! - `pg`: the tests' private PostgreSQL until stdin ends (prints `export QUIVER_TEST_PG_URL=...`)
//! - `run [--browser chromium|firefox] [--headless]`: deps, build, the demo workspace in a browser

// A developer tool: its stdout is the report for the person running it (the workspace lint
// guards the native host's stdout, which carries frames).
#![allow(clippy::print_stdout)]

mod deps;
mod extension;
mod pg;
mod util;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use util::{banner, run, run_tee, secs, Result};

const USAGE: &str = "usage: cargo xtask <command>

commands:
  deps                 install what the build and the tests need (Debian as root), or say what to install
  build                build the quiver binary and the extension (target/extension/, target/extension-dev/)
  build-extension [--dev]
                       build only the extension (target/extension/); --dev also the development
                       build with the demo hosts (target/extension-dev/, used by run and the e2e suite)
  test                 deps, build, cargo test (with a private PostgreSQL for the hub's tests), extension
                       unit tests, tsc, es-check (the 多客服 page), web-ext lint, e2e suite in Chromium
                       and Firefox
  pg                   start a private PostgreSQL on 127.0.0.1, print its QUIVER_TEST_PG_URL, stop it
                       when stdin ends (for running the hub's tests by hand)
  run [--browser chromium|firefox] [--headless]
                       deps, build, then open the demo Udesk workspace with the extension loaded";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let result = match args.first().map(String::as_str) {
        Some("deps") => timed("deps", deps::deps),
        Some("build") => timed("deps", deps::deps).and_then(|()| build()),
        Some("build-extension") => match &args[1..] {
            [] => timed("build-extension", extension::build_extension),
            [dev] if dev == "--dev" => timed("build-extension --dev", build_extensions),
            _ => Err(format!(
                "usage: cargo xtask build-extension [--dev]\n\n{USAGE}"
            )),
        },
        Some("test") => return test(),
        Some("pg") => pg_shell(),
        Some("run") => run_demo(&args[1..]),
        Some("help" | "-h" | "--help") | None => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Some(other) => Err(format!("unknown command `{other}`\n\n{USAGE}")),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("\nerror: {e}");
            ExitCode::FAILURE
        }
    }
}

/// `cargo xtask pg`: the tests' private PostgreSQL, until stdin ends.
fn pg_shell() -> Result {
    let c = pg::Cluster::start()?;
    println!("export QUIVER_TEST_PG_URL={}", c.url);
    eprintln!("running; stops when stdin ends (Ctrl-D)");
    let mut sink = String::new();
    while std::io::stdin()
        .read_line(&mut sink)
        .map(|n| n > 0)
        .unwrap_or(false)
    {
        sink.clear();
    }
    Ok(())
}

fn timed(what: &str, f: impl FnOnce() -> Result) -> Result {
    let t = banner(what);
    let r = f();
    eprintln!(
        "{what}: {} in {}",
        if r.is_ok() { "done" } else { "FAILED" },
        secs(t)
    );
    r
}

fn build_daemon() -> Result {
    // quiver-fakewx too: the e2e suite's WeChat conversations test runs it
    run(util::cargo()
        .args(["build", "-p", "quiver-daemon", "-p", "quiver-fakewx"])
        .current_dir(util::repo_root()))
}

fn build() -> Result {
    timed(
        "build quiver (cargo build -p quiver-daemon -p quiver-fakewx)",
        build_daemon,
    )?;
    timed("build-extension --dev", build_extensions)
}

/// The production extension (target/extension/), then the development one (target/extension-dev/).
fn build_extensions() -> Result {
    extension::build_extension()?;
    extension::build_dev_extension()
}

fn quiver_bin() -> std::path::PathBuf {
    util::target_dir().join("debug").join("quiver")
}

// ---------------------------------------------------------------------------------------------
// cargo xtask test

#[derive(Debug)]
enum Outcome {
    Passed,
    Failed(String),
    NotRun(String),
}

#[derive(Debug)]
struct Step {
    name: String,
    outcome: Outcome,
    /// Test counts the step reported (tests for cargo/node, 1 check for the linter).
    passed: u64,
    failed: u64,
    detail: String,
    seconds: f64,
}

impl Step {
    fn new(name: &str) -> Self {
        Step {
            name: name.into(),
            outcome: Outcome::NotRun(String::new()),
            passed: 0,
            failed: 0,
            detail: String::new(),
            seconds: 0.0,
        }
    }
    fn ok(&self) -> bool {
        matches!(self.outcome, Outcome::Passed)
    }
}

/// Runs `f` as a step: times it and records pass/fail.
fn step(steps: &mut Vec<Step>, name: &str, f: impl FnOnce(&mut Step) -> Result) -> bool {
    let t = banner(name);
    let mut s = Step::new(name);
    s.outcome = match f(&mut s) {
        Ok(()) => Outcome::Passed,
        Err(e) => {
            eprintln!("{name}: {e}");
            Outcome::Failed(e)
        }
    };
    s.seconds = t.elapsed().as_secs_f64();
    eprintln!(
        "{name}: {} in {}",
        if s.ok() { "ok" } else { "FAILED" },
        secs(t)
    );
    let ok = s.ok();
    steps.push(s);
    ok
}

fn skip(steps: &mut Vec<Step>, name: &str, why: &str) {
    let mut s = Step::new(name);
    s.outcome = Outcome::NotRun(why.into());
    steps.push(s);
}

fn test() -> ExitCode {
    let started = Instant::now();
    let root = util::repo_root();
    let mut steps = Vec::new();

    let deps_ok = step(&mut steps, "deps", |_| deps::deps());
    let daemon_ok = deps_ok && step(&mut steps, "build quiver", |_| build_daemon());
    let ext_ok = deps_ok && step(&mut steps, "build extension", |_| build_extensions());
    if !deps_ok {
        skip(&mut steps, "build", "deps failed");
    }

    if deps_ok {
        step(&mut steps, "cargo test --workspace", |s| {
            // The hub's tests run on PostgreSQL too: a private server for this step (stopped when
            // `_pg` goes, whatever the tests did), unless QUIVER_TEST_PG_URL names one already.
            let (_pg, url) = match std::env::var("QUIVER_TEST_PG_URL") {
                Ok(u) if !u.is_empty() => (None, u),
                _ => {
                    let c = pg::Cluster::start()?;
                    let u = c.url.clone();
                    (Some(c), u)
                }
            };
            cargo_test(s, &root, &url)
        });
    } else {
        skip(&mut steps, "cargo test --workspace", "deps failed");
    }
    step(&mut steps, "extension unit tests", |s| {
        extension_unit(s, &root)
    });
    if ext_ok {
        step(&mut steps, "tsc --noEmit", |s| tsc(s, &root));
    } else {
        skip(&mut steps, "tsc --noEmit", "the extension was not built");
    }
    if deps_ok {
        step(&mut steps, "es-check (多客服 page)", |s| {
            es_check(s, &root)
        });
    } else {
        skip(&mut steps, "es-check (多客服 page)", "deps failed");
    }
    if ext_ok {
        step(&mut steps, "web-ext lint", |s| web_ext_lint(s, &root));
    } else {
        skip(&mut steps, "web-ext lint", "the extension was not built");
    }
    let _ = std::fs::remove_dir_all(root.join("tests/e2e/artifacts"));
    for browser in ["chromium", "firefox"] {
        let name = format!("e2e {browser}");
        if daemon_ok && ext_ok {
            step(&mut steps, &name, |s| e2e(s, &root, browser));
        } else {
            skip(&mut steps, &name, "the build failed");
        }
    }

    // Summary.
    eprintln!("\n==> summary ({})", secs(started));
    let (mut passed, mut failed) = (0, 0);
    for s in &steps {
        let (mark, why) = match &s.outcome {
            Outcome::Passed => ("ok", String::new()),
            Outcome::Failed(e) => ("FAILED", format!(": {}", e.lines().next().unwrap_or(""))),
            Outcome::NotRun(why) => ("not run", format!(": {why}")),
        };
        let counts = if s.detail.is_empty() {
            String::new()
        } else {
            format!(" [{}]", s.detail)
        };
        let time = if s.seconds > 0.0 {
            format!(" ({:.1}s)", s.seconds)
        } else {
            String::new()
        };
        println!("  {:<24} {mark}{counts}{time}{why}", s.name);
        passed += s.passed;
        // A step that failed (or did not run) without a failing test still counts as one failure.
        failed += if s.ok() { s.failed } else { s.failed.max(1) };
    }
    let artifacts = root.join("tests/e2e/artifacts");
    if artifacts.exists() {
        println!(
            "  e2e failure artifacts (screenshots, daemon logs): {}",
            artifacts.display()
        );
    }
    let all_ok = steps.iter().all(Step::ok);
    println!(
        "{}",
        if all_ok {
            "all steps passed"
        } else {
            "SOME STEPS FAILED"
        }
    );
    println!("{passed} passed, {failed} failed");
    if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

/// Sums the counts of every `test result:` line cargo test prints.
fn cargo_test(s: &mut Step, root: &Path, pg_url: &str) -> Result {
    let (status, out) = run_tee(
        util::cargo()
            .args(["test", "--workspace", "--no-fail-fast"])
            .env("QUIVER_TEST_PG_URL", pg_url)
            .current_dir(root),
    )?;
    for line in out.lines().filter(|l| l.starts_with("test result:")) {
        s.passed += count_before(line, " passed").unwrap_or(0);
        s.failed += count_before(line, " failed").unwrap_or(0);
    }
    s.detail = format!("{} passed, {} failed", s.passed, s.failed);
    if status.success() {
        Ok(())
    } else {
        Err(format!("cargo test failed ({status})"))
    }
}

/// The number just before `word` in `line` ("3 passed" -> 3).
fn count_before(line: &str, word: &str) -> Option<u64> {
    let head = &line[..line.find(word)?];
    head.rsplit(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

/// `tsc --noEmit` over the extension's JS (JSDoc types): extension/tsconfig.json, strict for every
/// file (lib/, the background, the palette, the options page, the popup, the content script, the
/// development hooks). Needs the build: the wasm core's declarations are in target/extension-types.
fn tsc(s: &mut Step, root: &Path) -> Result {
    let tsc = root.join("tests/e2e/node_modules/.bin/tsc");
    let mut cmd = Command::new(&tsc);
    cmd.args(["--noEmit", "--pretty", "false", "-p"])
        .arg(root.join("extension").join("tsconfig.json"));
    eprintln!("{}", util::show(&cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {}: {e}", tsc.display()))?;
    if !status.success() {
        s.failed += 1;
        return Err("tsc found type errors (extension/tsconfig.json)".into());
    }
    s.passed += 1;
    s.detail = "0 errors".into();
    Ok(())
}

/// The 多客服 page's script must be plain ES5 (the PC client embeds an old Internet Explorer, and
/// no IE runs here): `es-check es5 --checkFeatures` on daemon/assets/mcs/*.js, which refuses ES2015+
/// syntax and features such as `Promise`.
fn es_check(s: &mut Step, root: &Path) -> Result {
    let bin = root.join("tests/e2e/node_modules/.bin/es-check");
    let mut cmd = Command::new(&bin);
    cmd.args(["es5", "--checkFeatures"])
        .arg(root.join("daemon/assets/mcs/mcs.js"));
    eprintln!("{}", util::show(&cmd));
    let status = cmd
        .status()
        .map_err(|e| format!("cannot start {}: {e}", bin.display()))?;
    if !status.success() {
        s.failed += 1;
        return Err("es-check: daemon/assets/mcs/mcs.js is not plain ES5".into());
    }
    s.passed += 1;
    s.detail = "ES5".into();
    Ok(())
}

/// `web-ext lint --self-hosted` on target/extension: errors fail the step, warnings are listed.
fn web_ext_lint(s: &mut Step, root: &Path) -> Result {
    let ext = util::target_dir().join("extension");
    let mut cmd = Command::new("npx");
    cmd.args([
        "--no-install",
        "web-ext",
        "lint",
        "--self-hosted",
        "--no-config-discovery",
        "--output",
        "json",
        "--source-dir",
    ])
    .arg(&ext)
    .current_dir(root.join("tests").join("e2e"))
    .env("NO_UPDATE_NOTIFIER", "1");
    eprintln!("{}", util::show(&cmd));
    let out = cmd.output().map_err(|e| format!("cannot start npx: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let report: serde_json::Value = serde_json::from_str(stdout.trim()).map_err(|e| {
        format!(
            "web-ext lint printed no JSON report ({e}); exit {}\nstdout: {stdout}\nstderr: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        )
    })?;
    let count = |kind: &str| report["summary"][kind].as_u64().unwrap_or(0);
    let (errors, warnings, notices) = (count("errors"), count("warnings"), count("notices"));
    for kind in ["errors", "warnings", "notices"] {
        for m in report[kind].as_array().into_iter().flatten() {
            let file = m["file"].as_str().unwrap_or("");
            let line = m["line"]
                .as_u64()
                .map(|l| format!(":{l}"))
                .unwrap_or_default();
            println!(
                "  {} {} {file}{line}: {}",
                &kind[..kind.len() - 1],
                m["code"].as_str().unwrap_or("?"),
                m["message"].as_str().unwrap_or("")
            );
        }
    }
    println!("web-ext lint summary: {errors} errors, {warnings} warnings, {notices} notices");
    s.detail = format!("{errors} errors, {warnings} warnings, {notices} notices");
    if errors == 0 {
        s.passed = 1;
        Ok(())
    } else {
        s.failed = 1;
        Err(format!("web-ext lint found {errors} error(s)"))
    }
}

/// The `*.test.mjs` files of `dir/sub`, as paths relative to `dir`, sorted.
fn test_files(dir: &Path, sub: &str) -> std::result::Result<Vec<String>, String> {
    let mut files: Vec<String> = std::fs::read_dir(dir.join(sub))
        .map_err(|e| format!("reading {}: {e}", dir.join(sub).display()))?
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".test.mjs"))
        .map(|n| format!("{sub}/{n}"))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(format!("no {sub}/*.test.mjs in {}", dir.display()));
    }
    Ok(files)
}

/// Runs `node --test --test-concurrency=1` over `files` in `dir` and records the counts.
fn node_test(s: &mut Step, dir: &Path, files: &[String], cmd_env: &[(&str, PathBuf)]) -> Result {
    let mut cmd = Command::new("node");
    cmd.args(["--test", "--test-concurrency=1", "--test-reporter=spec"])
        .args(files)
        .current_dir(dir);
    for (k, v) in cmd_env {
        cmd.env(k, v);
    }
    let (status, out) = run_tee(&mut cmd)?;
    s.passed = node_count(&out, "pass").unwrap_or(0);
    s.failed = node_count(&out, "fail").unwrap_or(0) + node_count(&out, "cancelled").unwrap_or(0);
    s.detail = format!("{} passed, {} failed", s.passed, s.failed);
    if !status.success() {
        return Err(format!("node --test failed ({status})"));
    }
    if s.passed == 0 {
        return Err("node --test ran no test".into());
    }
    Ok(())
}

/// The background's unit tests (fake browser API, fake host): `extension/tests/*.test.mjs`.
fn extension_unit(s: &mut Step, root: &Path) -> Result {
    let dir = root.join("extension");
    let files = test_files(&dir, "tests")?;
    node_test(s, &dir, &files, &[])
}

/// The e2e suite in one browser: `node --test --test-concurrency=1` over tests/e2e/tests/*.test.mjs.
fn e2e(s: &mut Step, root: &Path, browser: &str) -> Result {
    let dir = root.join("tests").join("e2e");
    let files = test_files(&dir, "tests")?;
    node_test(
        s,
        &dir,
        &files,
        &[
            ("QUIVER_BIN", quiver_bin()),
            ("QUIVER_EXTENSION_DIR", extension::dev_extension_dir()),
            (
                "QUIVER_PROD_EXTENSION_DIR",
                util::target_dir().join("extension"),
            ),
            ("QUIVER_BROWSER", PathBuf::from(browser)),
        ],
    )
}

/// A count from node's test runner closing lines: `ℹ pass 4` (spec reporter) or `# pass 4` (tap).
fn node_count(out: &str, key: &str) -> Option<u64> {
    out.lines().rev().find_map(|l| {
        let l = l.trim_start_matches(['ℹ', '#', ' ']);
        l.strip_prefix(key)?.strip_prefix(' ')?.trim().parse().ok()
    })
}

// ---------------------------------------------------------------------------------------------
// cargo xtask run

fn run_demo(args: &[String]) -> Result {
    let mut browser = "chromium".to_string();
    let mut headless = false;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        match a.as_str() {
            "--browser" => browser = it.next().ok_or("--browser needs a value")?.clone(),
            "--headless" => headless = true,
            other => {
                if let Some(v) = other.strip_prefix("--browser=") {
                    browser = v.to_string();
                } else {
                    return Err(format!("unknown option `{other}`\n\n{USAGE}"));
                }
            }
        }
    }
    if !matches!(browser.as_str(), "chromium" | "firefox") {
        return Err(format!(
            "--browser must be chromium or firefox, got `{browser}`"
        ));
    }
    timed("deps", deps::deps)?;
    build()?;
    let root = util::repo_root();
    let mut cmd = Command::new("node");
    cmd.arg(root.join("tests/e2e/run-demo.mjs"))
        .args(["--browser", &browser])
        .current_dir(&root)
        .env("QUIVER_BIN", quiver_bin())
        .env("QUIVER_EXTENSION_DIR", extension::dev_extension_dir())
        .env("QUIVER_SCREENSHOT_DIR", util::target_dir());
    if headless {
        cmd.arg("--headless");
    }
    banner(&format!("demo in {browser}"));
    run(&mut cmd)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_cargo_test_results() {
        let line =
            "test result: FAILED. 17 passed; 2 failed; 0 ignored; 0 measured; 0 filtered out";
        assert_eq!(count_before(line, " passed"), Some(17));
        assert_eq!(count_before(line, " failed"), Some(2));
        assert_eq!(count_before("nothing here", " passed"), None);
    }

    #[test]
    fn counts_node_test_results() {
        let spec = "✔ a (1ms)\n✖ b (2ms)\nℹ tests 2\nℹ pass 1\nℹ fail 1\nℹ cancelled 0\n";
        assert_eq!(node_count(spec, "pass"), Some(1));
        assert_eq!(node_count(spec, "fail"), Some(1));
        assert_eq!(node_count(spec, "cancelled"), Some(0));
        let tap = "ok 1 - a\n# tests 1\n# pass 1\n# fail 0\n";
        assert_eq!(node_count(tap, "pass"), Some(1));
        assert_eq!(node_count(tap, "fail"), Some(0));
        // A test named "pass through" must not be read as a count.
        assert_eq!(node_count("✔ passthrough\n", "pass"), None);
    }

    #[test]
    fn fnv_is_stable() {
        assert_eq!(util::fnv1a64(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(util::fnv1a64(b"a"), 0xaf63_dc4c_8601_ec8c);
    }
}
