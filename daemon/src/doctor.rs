//! `quiver doctor`: follows the chain a browser follows and names the first broken link, with
//! its fix and the message the browser shows for it:
//!
//! manifest found -> valid JSON -> `name` is the file's name -> `type` stdio -> `path` absolute
//! and executable -> our extension allowed -> the host starts and answers `hello` with frames
//! only -> the daemon's socket is ours and answers.
//!
//! docs/install.md lists every browser error string with its cause and fix (`--explain`).

use crate::client::Client;
use crate::install::{self, Browser, Family, Location, Os, Scope, GECKO_ID, HOST_NAME};
use crate::paths::Locations;
use crate::paths::{self, Env};
use quiver_shared::frame::MAX_TO_BROWSER;
use serde::Serialize;
use serde_json::{json, Value};
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// How long the host may take to answer (it may have to start the daemon first).
const HOST_WAIT: Duration = Duration::from_secs(10);

/// One link of the chain.
#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: &'static str,
    pub ok: bool,
    pub detail: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fix: Option<String>,
    /// What the browser says when this link is broken.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub browser_error: Option<String>,
}

fn ok(name: &'static str, detail: impl Into<String>) -> Check {
    Check {
        name,
        ok: true,
        detail: detail.into(),
        fix: None,
        browser_error: None,
    }
}

fn broken(
    name: &'static str,
    detail: impl Into<String>,
    fix: impl Into<String>,
    browser_error: Option<String>,
) -> Check {
    Check {
        name,
        ok: false,
        detail: detail.into(),
        fix: Some(fix.into()),
        browser_error,
    }
}

/// The chain of one browser.
#[derive(Debug, Clone, Serialize)]
pub struct BrowserReport {
    pub browser: &'static str,
    pub ok: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub broken_at: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub manifest: Option<PathBuf>,
    pub checks: Vec<Check>,
}

/// Everything doctor found.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub ok: bool,
    pub browsers: Vec<BrowserReport>,
    pub daemon: Vec<Check>,
    /// Team sync, when this device joined a hub: per hub reachable, certificate, token; per
    /// library lag, outbox age, digest.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub team: Vec<Check>,
    /// The 多客服 page (docs/mcs.md): off, served, or enabled but not served (and why).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub mcs: Vec<Check>,
}

/// What to check.
#[derive(Debug, Clone, Default)]
pub struct Options {
    pub browser: Option<Browser>,
    pub user_data_dir: Option<PathBuf>,
}

/// Runs every check.
pub fn run(opts: &Options) -> Report {
    let home = install::home();
    let os = Os::current();
    let browsers: Vec<Browser> = match opts.browser {
        Some(b) => vec![b],
        None => {
            let mut found = match (os, &home) {
                (Some(os), Some(h)) => install::detect(os, h, Path::exists),
                _ => Vec::new(),
            };
            // a manifest without a profile directory (a system-wide install) counts too
            for b in Browser::ALL {
                if !found.contains(b)
                    && !candidates(*b, None, os, home.as_deref())
                        .iter()
                        .all(|p| !p.exists())
                {
                    found.push(*b);
                }
            }
            found.sort_by_key(|b| Browser::ALL.iter().position(|x| x == b));
            found
        }
    };
    let browsers: Vec<BrowserReport> = browsers
        .into_iter()
        .map(|b| check_browser(b, opts.user_data_dir.as_deref(), os, home.as_deref()))
        .collect();
    let daemon = check_daemon();
    let team = if daemon.iter().all(|c| c.ok) {
        check_team()
    } else {
        Vec::new()
    };
    let mcs = if daemon.iter().all(|c| c.ok) {
        check_mcs()
    } else {
        Vec::new()
    };
    let ok = !browsers.is_empty()
        && browsers.iter().all(|b| b.ok)
        && daemon.iter().all(|c| c.ok)
        && team.iter().all(|c| c.ok)
        && mcs.iter().all(|c| c.ok);
    Report {
        ok,
        browsers,
        daemon,
        team,
        mcs,
    }
}

/// Every file `browser` may read the manifest from, in the order it looks.
fn candidates(
    browser: Browser,
    user_data_dir: Option<&Path>,
    os: Option<Os>,
    home: Option<&Path>,
) -> Vec<PathBuf> {
    if let Some(dir) = user_data_dir {
        return vec![dir
            .join("NativeMessagingHosts")
            .join(format!("{HOST_NAME}.json"))];
    }
    let Some(os) = os else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for scope in [Scope::User, Scope::System] {
        if let Ok(locs) = install::locations(browser, os, scope, home) {
            for l in locs {
                if let Location::File { path, .. } = l {
                    if !out.contains(&path) {
                        out.push(path);
                    }
                }
            }
        }
    }
    if browser == Browser::Firefox && os == Os::Linux {
        out.push(PathBuf::from(format!(
            "/usr/lib64/mozilla/native-messaging-hosts/{HOST_NAME}.json"
        )));
    }
    out
}

fn reinstall(b: Browser, user_data_dir: Option<&Path>) -> String {
    match user_data_dir {
        Some(d) => format!(
            "run `quiver install --browser {} --user-data-dir {}`",
            b.name(),
            d.display()
        ),
        None => format!("run `quiver install --browser {}`", b.name()),
    }
}

fn check_browser(
    b: Browser,
    user_data_dir: Option<&Path>,
    os: Option<Os>,
    home: Option<&Path>,
) -> BrowserReport {
    let mut checks = Vec::new();
    let manifest = chain(b, user_data_dir, os, home, &mut checks);
    let broken_at = checks.iter().find(|c| !c.ok).map(|c| c.name);
    BrowserReport {
        browser: b.name(),
        ok: broken_at.is_none(),
        broken_at,
        manifest,
        checks,
    }
}

/// Runs the links in order, stopping at the first broken one. Returns the manifest used.
fn chain(
    b: Browser,
    user_data_dir: Option<&Path>,
    os: Option<Os>,
    home: Option<&Path>,
    checks: &mut Vec<Check>,
) -> Option<PathBuf> {
    let fix = reinstall(b, user_data_dir);
    let not_found = Some(b.not_found_error());
    let places = candidates(b, user_data_dir, os, home);
    let found: Vec<&PathBuf> = places.iter().filter(|p| p.is_file()).collect();
    let Some(path) = found.first().map(|p| (*p).clone()) else {
        let list: Vec<String> = places.iter().map(|p| p.display().to_string()).collect();
        checks.push(broken(
            "manifest",
            format!("no {HOST_NAME}.json in {}", list.join(", ")),
            fix,
            not_found,
        ));
        return None;
    };
    let mut detail = path.display().to_string();
    if found.len() > 1 {
        detail.push_str(&format!(
            " (also in {})",
            found[1..]
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    checks.push(ok("manifest", detail));

    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) => {
            checks.push(broken(
                "json",
                format!("cannot read it: {e}"),
                fix,
                not_found,
            ));
            return Some(path);
        }
    };
    let m: Value = match serde_json::from_str(&text) {
        Ok(v @ Value::Object(_)) => v,
        Ok(_) => {
            checks.push(broken(
                "json",
                "it is JSON but not an object",
                fix,
                not_found,
            ));
            return Some(path);
        }
        Err(e) => {
            checks.push(broken(
                "json",
                format!("not valid JSON: {e}"),
                fix,
                not_found,
            ));
            return Some(path);
        }
    };
    checks.push(ok("json", "valid"));

    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    match m["name"].as_str() {
        Some(n) if n == stem && n == HOST_NAME => checks.push(ok("name", n)),
        other => {
            checks.push(broken(
                "name",
                format!(
                    "`name` is {:?}; it must be {HOST_NAME:?}, the file's name without .json",
                    other.unwrap_or("missing")
                ),
                fix,
                not_found,
            ));
            return Some(path);
        }
    }
    if m["type"] != "stdio" {
        checks.push(broken(
            "type",
            format!("`type` is {}; it must be \"stdio\"", m["type"]),
            fix,
            not_found,
        ));
        return Some(path);
    }
    checks.push(ok("type", "stdio"));

    let exe = match m["path"].as_str() {
        Some(p) => PathBuf::from(p),
        None => {
            checks.push(broken("path", "`path` is missing", fix, not_found));
            return Some(path);
        }
    };
    let failed_start = match b.family() {
        Family::Chromium => "Specified native messaging host not found.".to_string(),
        Family::Firefox => format!("No such native application {HOST_NAME}"),
    };
    if !exe.is_absolute() {
        checks.push(broken(
            "path",
            format!("`path` {} is not absolute", exe.display()),
            fix,
            Some(failed_start),
        ));
        return Some(path);
    }
    match std::fs::metadata(&exe) {
        Err(e) => {
            checks.push(broken(
                "path",
                format!("{}: {e} (was quiver moved or removed?)", exe.display()),
                fix,
                Some(failed_start),
            ));
            return Some(path);
        }
        Ok(meta) if !meta.is_file() || meta.permissions().mode() & 0o111 == 0 => {
            checks.push(broken(
                "path",
                format!("{} is not an executable file", exe.display()),
                format!("run `chmod +x {}`, or {fix}", exe.display()),
                Some(match b.family() {
                    Family::Chromium => "Failed to start native messaging host.".into(),
                    Family::Firefox => failed_start,
                }),
            ));
            return Some(path);
        }
        Ok(_) => checks.push(ok("path", exe.display().to_string())),
    }

    let (field, want) = match b.family() {
        Family::Chromium => ("allowed_origins", install::chromium_origin()),
        Family::Firefox => ("allowed_extensions", GECKO_ID.to_string()),
    };
    let allowed = m[field]
        .as_array()
        .is_some_and(|a| a.iter().any(|v| v.as_str() == Some(want.as_str())));
    if !allowed {
        let mut detail = format!("`{field}` does not list {want:?}: {}", m[field]);
        if b.family() == Family::Chromium
            && m[field].as_array().is_some_and(|a| {
                a.iter()
                    .any(|v| v.as_str() == Some(want.trim_end_matches('/')))
            })
        {
            detail.push_str(" (the origin needs its trailing slash)");
        }
        checks.push(broken(
            "allowed",
            detail,
            fix,
            Some(match b.family() {
                Family::Chromium => {
                    "Access to the specified native messaging host is forbidden.".into()
                }
                Family::Firefox => format!(
                    "This extension does not have permission to use native application \
                     {HOST_NAME} (or the application is not installed)"
                ),
            }),
        ));
        return Some(path);
    }
    checks.push(ok("allowed", want));

    let args: Vec<String> = match b.family() {
        Family::Chromium => vec![install::chromium_origin()],
        Family::Firefox => vec![path.display().to_string(), GECKO_ID.to_string()],
    };
    match hello_through_host(&exe, &args) {
        Ok(detail) => checks.push(ok("host", detail)),
        Err(e) => {
            let log = Locations::resolve(&Env::from_process())
                .map(|l| l.log("host.log").display().to_string())
                .unwrap_or_else(|_| "the host log".into());
            checks.push(broken(
                "host",
                e,
                format!("see {log}; then {fix}"),
                Some(match b.family() {
                    Family::Chromium => "Native host has exited. / Error when communicating \
                                         with the native messaging host."
                        .into(),
                    Family::Firefox => "Attempt to postMessage on disconnected port".into(),
                }),
            ));
        }
    }
    Some(path)
}

/// Starts `exe` as the browser would and speaks one frame with it.
fn hello_through_host(exe: &Path, args: &[String]) -> Result<String, String> {
    let started = Instant::now();
    let mut child = Command::new(exe)
        .args(args)
        .current_dir(exe.parent().unwrap_or(Path::new("/")))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    let request = json!({
        "id": "quiver-doctor",
        "method": "hello",
        "params": { "protocol": quiver_shared::proto::PROTOCOL_VERSION, "client": "quiver-doctor" },
    })
    .to_string();
    let mut frame = (request.len() as u32).to_ne_bytes().to_vec();
    frame.extend_from_slice(request.as_bytes());
    let mut stdin = child.stdin.take();
    if let Some(s) = stdin.as_mut() {
        let _ = s.write_all(&frame);
    }
    let mut stdout = child.stdout.take().ok_or("no stdout")?;
    let mut stderr = child.stderr.take().ok_or("no stderr")?;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(read_reply(&mut stdout));
    });
    let err_reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });
    let result = rx
        .recv_timeout(HOST_WAIT)
        .unwrap_or_else(|_| Err(format!("no reply within {} s", HOST_WAIT.as_secs())));
    let elapsed = started.elapsed();
    drop(stdin); // the browser closes the port: the host exits
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    if let Ok(None) = child.try_wait() {
        let _ = child.kill();
    }
    let _ = child.wait();
    let log = err_reader.join().unwrap_or_default();
    match result {
        Ok(reply) => {
            if let Some(e) = reply.get("error") {
                return Err(format!("the host answered hello with an error: {e}"));
            }
            let r = &reply["result"];
            Ok(format!(
                "answered hello in {} ms (daemon {}, protocol {})",
                elapsed.as_millis(),
                r["daemon"].as_str().unwrap_or("?"),
                r["protocol"]
            ))
        }
        Err(e) => {
            let tail: Vec<&str> = log.lines().rev().take(3).collect();
            if tail.is_empty() {
                Err(e)
            } else {
                let tail: Vec<&str> = tail.into_iter().rev().collect();
                Err(format!("{e}; its last words: {}", tail.join(" | ")))
            }
        }
    }
}

/// Reads frames until the reply to the doctor's hello, checking stdout carries frames only.
fn read_reply(out: &mut impl Read) -> Result<Value, String> {
    loop {
        let mut len = [0u8; 4];
        out.read_exact(&mut len)
            .map_err(|e| format!("the host closed stdout without answering ({e})"))?;
        let n = u32::from_ne_bytes(len) as usize;
        if n > MAX_TO_BROWSER {
            return Err(format!(
                "the host wrote something that is not a frame to stdout (length prefix {n}, \
                 bytes {:?}): anything but frames on stdout breaks the port",
                String::from_utf8_lossy(&len)
            ));
        }
        let mut body = vec![0u8; n];
        out.read_exact(&mut body)
            .map_err(|e| format!("the host's frame was cut short ({e})"))?;
        let v: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("the host wrote a frame that is not JSON: {e}"))?;
        if v["id"] == "quiver-doctor" {
            return Ok(v);
        }
    }
}

fn check_daemon() -> Vec<Check> {
    let mut checks = Vec::new();
    let loc = match Locations::resolve(&Env::from_process()) {
        Ok(l) => l,
        Err(e) => {
            checks.push(broken(
                "locations",
                e.to_string(),
                "set HOME (or QUIVER_RUNTIME_DIR)",
                None,
            ));
            return checks;
        }
    };
    if let Some(w) = paths::exposed_data_dir(&loc.data_dir) {
        checks.push(broken(
            "data dir",
            w,
            format!("chmod 700 {}", loc.data_dir.display()),
            None,
        ));
    }
    let uid = crate::sys::uid();
    if loc.runtime_dir.exists() {
        if let Err(e) = paths::check_private_dir(&loc.runtime_dir, uid) {
            checks.push(broken(
                "socket",
                e.to_string(),
                "fix the directory as the message says, then restart the browser",
                Some("Native host has exited.".into()),
            ));
            return checks;
        }
    }
    match Client::connect(&loc, true) {
        Ok(c) => {
            checks.push(ok(
                "socket",
                format!("{} (served by you, directory 0700)", loc.socket().display()),
            ));
            checks.push(ok(
                "hello",
                format!(
                    "quiver {} speaks protocol {}",
                    c.hello["daemon"].as_str().unwrap_or("?"),
                    c.hello["protocol"]
                ),
            ));
        }
        Err(e) => checks.push(broken(
            "socket",
            e.to_string(),
            format!(
                "see {}; `quiver daemon --foreground` shows why it does not start",
                loc.log("daemon.log").display()
            ),
            None,
        )),
    }
    checks
}

/// Browser error strings: what they mean and what to do (also in docs/install.md).
pub const BROWSER_ERRORS: &[(&str, &str, &str)] = &[
    (
        "Specified native messaging host not found.",
        "Chromium found no readable manifest dev.quiver.host.json for this browser (or its \
         `name` differs from the file name, or its `path` does not exist)",
        "run `quiver install --browser <browser>` (with --user-data-dir DIR for a browser \
         started with --user-data-dir), then `quiver doctor`",
    ),
    (
        "Access to the specified native messaging host is forbidden.",
        "the manifest's `allowed_origins` does not list chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/ \
         (with its trailing slash)",
        "run `quiver install --browser <browser>`",
    ),
    (
        "Failed to start native messaging host.",
        "the manifest's `path` is not an executable file",
        "run `quiver install --browser <browser>` from the quiver you want to use",
    ),
    (
        "Native host has exited.",
        "quiver started but exited: it could not read its data or socket directory, or was \
         killed",
        "run `quiver doctor`; the reason is in <data dir>/logs/host.log",
    ),
    (
        "Error when communicating with the native messaging host.",
        "something other than a frame reached the port (the host's stdout carries frames only; \
         a wrapper script that prints breaks it)",
        "point the manifest at the quiver binary itself: `quiver install --browser <browser>`",
    ),
    (
        "No such native application dev.quiver.host",
        "Firefox found no manifest in ~/.mozilla/native-messaging-hosts/ (or the system \
         directories), or its `name` or `allowed_extensions` is wrong",
        "run `quiver install --browser firefox`, then `quiver doctor --browser firefox`",
    ),
    (
        "This extension does not have permission to use native application",
        "the Firefox manifest's `allowed_extensions` does not list quiver@quiver.dev",
        "run `quiver install --browser firefox`",
    ),
    (
        "Attempt to postMessage on disconnected port",
        "the host exited (Firefox)",
        "run `quiver doctor --browser firefox`; the reason is in <data dir>/logs/host.log",
    ),
];

/// The entry of [`BROWSER_ERRORS`] that `text` (a message copied from the browser) matches.
pub fn explain(text: &str) -> Option<(&'static str, &'static str, &'static str)> {
    let t = text.trim().to_ascii_lowercase();
    BROWSER_ERRORS.iter().copied().find(|(pat, _, _)| {
        let p = pat.to_ascii_lowercase();
        let p = p.trim_end_matches('.');
        t.contains(p) || p.contains(t.trim_end_matches('.')) && t.len() > 10
    })
}

/// The report as text for a terminal.
pub fn render(r: &Report) -> String {
    let mut out = String::new();
    let ready = r.browsers.iter().filter(|b| b.ok).count();
    if r.browsers.is_empty() {
        out.push_str(
            "quiver doctor: no browser profile and no Quiver host manifest found.\n  \
             fix: register the host for your browser, then check it:\n    \
             quiver install --browser chromium|chrome|edge|brave|vivaldi|firefox\n    \
             quiver doctor --browser NAME\n",
        );
    } else {
        out.push_str(&format!(
            "quiver doctor: {ready} of {} browser{} ready\n",
            r.browsers.len(),
            if r.browsers.len() == 1 { "" } else { "s" }
        ));
    }
    let check = |out: &mut String, c: &Check| {
        out.push_str(&format!(
            "  {:<5} {:<9} {}\n",
            if c.ok { "ok" } else { "FAIL" },
            c.name,
            c.detail
        ));
        if let Some(f) = &c.fix {
            out.push_str(&format!("        fix: {f}\n"));
        }
        if let Some(b) = &c.browser_error {
            out.push_str(&format!("        the browser says: {b}\n"));
        }
    };
    for b in &r.browsers {
        out.push('\n');
        match b.broken_at {
            None => out.push_str(&format!("{}: ok\n", b.browser)),
            Some(at) => out.push_str(&format!("{}: broken at `{at}`\n", b.browser)),
        }
        for c in &b.checks {
            check(&mut out, c);
        }
    }
    out.push_str("\ndaemon\n");
    for c in &r.daemon {
        check(&mut out, c);
    }
    if !r.team.is_empty() {
        out.push_str("\nteam\n");
        for c in &r.team {
            check(&mut out, c);
        }
    }
    if !r.mcs.is_empty() {
        out.push_str("\n多客服 page\n");
        for c in &r.mcs {
            check(&mut out, c);
        }
    }
    out
}

/// The 多客服 page's check (`mcs.status`).
fn check_mcs() -> Vec<Check> {
    let Ok(loc) = Locations::resolve(&Env::from_process()) else {
        return Vec::new();
    };
    let Ok(mut c) = Client::connect(&loc, false) else {
        return Vec::new();
    };
    match c.call("mcs.status", json!({})) {
        Ok(st) => vec![mcs_check(&st)],
        Err(e) => vec![broken(
            "mcs",
            format!("the daemon could not report the 多客服 page: {e}"),
            "see the daemon's log",
            None,
        )],
    }
}

/// The check of an `mcs.status`.
pub fn mcs_check(st: &Value) -> Check {
    let port = text(&st["port"]);
    match (
        st["enabled"] == true,
        st["listen"].as_str(),
        st["error"].as_str(),
    ) {
        (false, _, _) => ok(
            "mcs",
            format!("off (quiver mcs enable serves it on 127.0.0.1:{port})"),
        ),
        (true, Some(addr), _) => ok(
            "mcs",
            format!("serving http://{addr}/mcs/ (quiver mcs url prints the URL with its key)"),
        ),
        (true, None, why) => broken(
            "mcs",
            format!("enabled but not served: {}", why.unwrap_or("not started")),
            format!(
                "free port {port} (another program or another user's daemon holds it), then \
                 quiver mcs disable && quiver mcs enable; or quiver mcs enable --port N and paste \
                 the new URL in the MP admin"
            ),
            None,
        ),
    }
}

/// An outbox row older than this is worth a warning (the hub has been away that long).
pub const OUTBOX_AGE_WARN_MS: u64 = 10 * 60_000;

/// The team checks: asks the daemon to probe its hubs now (`team.status` with `probe`).
fn check_team() -> Vec<Check> {
    let Ok(loc) = Locations::resolve(&Env::from_process()) else {
        return Vec::new();
    };
    let Ok(mut c) = Client::connect(&loc, false) else {
        return Vec::new();
    };
    match c.call("team.status", json!({ "probe": true })) {
        Ok(st) => team_checks(&st),
        Err(e) => vec![broken(
            "team",
            format!("the daemon could not report team sync: {e}"),
            "see the daemon's log",
            None,
        )],
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    }
}

/// The team checks of a probed `team.status` (none when no hub was joined).
pub fn team_checks(st: &Value) -> Vec<Check> {
    let mut out = Vec::new();
    let hubs = st["hubs"].as_array().cloned().unwrap_or_default();
    for h in &hubs {
        let url = text(&h["url"]);
        let p = &h["probe"];
        let err = text(&p["error"]);
        if p["reachable"] == true {
            out.push(ok("hub", format!("{url} answers")));
        } else {
            out.push(broken(
                "hub",
                format!("{url} cannot be reached: {err}"),
                "start the hub (quiver hub serve), or check the network and the hub's address",
                None,
            ));
            continue;
        }
        match p["certificate"].as_str() {
            Some("ok") => out.push(ok("pin", "the hub presents the pinned certificate")),
            Some("plain") => out.push(ok("pin", "plain HTTP on this machine (no certificate)")),
            _ => out.push(broken(
                "pin",
                format!("{url}: {err}"),
                "the hub's certificate changed: if that was planned, join again with a new \
                 invite (quiver team leave, quiver team join INVITE)",
                None,
            )),
        }
        match p["token"].as_bool() {
            Some(true) => out.push(ok(
                "token",
                format!(
                    "accepted (user {}, device {})",
                    text(&h["user_name"]),
                    text(&h["device_name"])
                ),
            )),
            Some(false) => out.push(broken(
                "token",
                format!("{url} refuses this device's token: {err}"),
                "the device was revoked or the hub re-created: ask for an invite and run \
                 quiver team leave --force, then quiver team join INVITE",
                None,
            )),
            None => out.push(broken(
                "token",
                format!("not checked: {err}"),
                "see the hub's log",
                None,
            )),
        }
    }
    for l in st["libraries"].as_array().cloned().unwrap_or_default() {
        let name = text(&l["name"]);
        let lag = l["lag"].as_i64().unwrap_or(0);
        if lag == 0 {
            out.push(ok(
                "lag",
                format!("{name}: at the hub's sequence {}", text(&l["head_seq"])),
            ));
        } else {
            out.push(broken(
                "lag",
                format!(
                    "{name}: {lag} changes behind (cursor {}, hub {})",
                    text(&l["cursor"]),
                    text(&l["head_seq"])
                ),
                "quiver team sync",
                None,
            ));
        }
        let outbox = l["outbox"].as_u64().unwrap_or(0);
        match l["oldest_outbox_ms"].as_u64() {
            Some(age) if age >= OUTBOX_AGE_WARN_MS => out.push(broken(
                "outbox",
                format!(
                    "{name}: {outbox} edits waiting, the oldest for {} min",
                    age / 60_000
                ),
                "the hub has not taken them: quiver team status shows why; quiver team sync \
                 retries now",
                None,
            )),
            _ => out.push(ok("outbox", format!("{name}: {outbox} edits waiting"))),
        }
        match l["digest_match"].as_bool() {
            Some(true) => out.push(ok(
                "digest",
                format!("{name}: the same heads and conflicts as the hub"),
            )),
            Some(false) => out.push(broken(
                "digest",
                format!(
                    "{name}: the local digest {} differs from the hub's {} at sequence {}",
                    text(&l["digest"]),
                    text(&l["hub_digest"]),
                    text(&l["digest_seq"])
                ),
                "a bug: report it with the daemon's log; quiver team leave and join again \
                 re-reads the library",
                None,
            )),
            None => out.push(broken(
                "digest",
                format!("{name}: not comparable yet (this device is behind the hub)"),
                "quiver team sync, then quiver doctor again",
                None,
            )),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn team_checks_name_what_is_wrong() {
        let st = json!({
            "hubs": [
                {"url": "https://h:1", "user_name": "li", "device_name": "pc",
                 "probe": {"reachable": true, "certificate": "ok", "token": true}},
                {"url": "https://g:1", "probe": {"reachable": true, "certificate": "mismatch",
                 "token": null, "error": "the hub's certificate is not the one the invite names"}},
                {"url": "https://x:1", "probe": {"reachable": false, "error": "refused"}},
            ],
            "libraries": [
                {"name": "team", "lag": 0, "head_seq": 5, "cursor": 5, "outbox": 0,
                 "oldest_outbox_ms": null, "digest_match": true},
                {"name": "sales", "lag": 3, "head_seq": 8, "cursor": 5, "outbox": 2,
                 "oldest_outbox_ms": OUTBOX_AGE_WARN_MS + 1, "digest_match": null},
            ],
        });
        let c = team_checks(&st);
        let broken: Vec<(&str, &str)> = c
            .iter()
            .filter(|c| !c.ok)
            .map(|c| (c.name, c.detail.as_str()))
            .collect();
        assert_eq!(
            broken.iter().map(|b| b.0).collect::<Vec<_>>(),
            vec!["pin", "token", "hub", "lag", "outbox", "digest"],
            "{broken:?}"
        );
        assert!(broken[2].1.contains("https://x:1") && broken[2].1.contains("refused"));
        assert!(broken[3].1.contains("3 changes behind"));
        assert_eq!(c.iter().filter(|c| c.ok).count(), 7);
        assert!(team_checks(&json!({"hubs": [], "libraries": []})).is_empty());
    }

    #[test]
    fn every_browser_error_is_explained() {
        for (pat, _, fix) in BROWSER_ERRORS {
            assert!(explain(pat).is_some(), "{pat}");
            assert!(fix.contains("quiver"), "{pat}: {fix}");
        }
        let (_, why, _) =
            explain("Unchecked runtime.lastError: Specified native messaging host not found.")
                .unwrap();
        assert!(why.contains("manifest"));
        let (_, why, _) = explain("No such native application dev.quiver.host").unwrap();
        assert!(why.contains("Firefox"));
        assert!(explain("the sky is falling").is_none());
    }

    #[test]
    fn reads_frames_and_spots_stdout_pollution() {
        let mut good = Vec::new();
        for body in [
            r#"{"event":"daemon.up"}"#,
            r#"{"id":"quiver-doctor","result":{}}"#,
        ] {
            good.extend_from_slice(&(body.len() as u32).to_ne_bytes());
            good.extend_from_slice(body.as_bytes());
        }
        assert_eq!(
            read_reply(&mut good.as_slice()).unwrap()["id"],
            "quiver-doctor"
        );
        let bad = b"Hello from a wrapper script\n".to_vec();
        let e = read_reply(&mut bad.as_slice()).unwrap_err();
        assert!(e.contains("not a frame"), "{e}");
    }

    #[test]
    fn candidates_start_with_the_user_dir() {
        let c = candidates(
            Browser::Firefox,
            None,
            Some(Os::Linux),
            Some(Path::new("/h")),
        );
        assert_eq!(
            c,
            vec![
                PathBuf::from("/h/.mozilla/native-messaging-hosts/dev.quiver.host.json"),
                PathBuf::from("/usr/lib/mozilla/native-messaging-hosts/dev.quiver.host.json"),
                PathBuf::from("/usr/lib64/mozilla/native-messaging-hosts/dev.quiver.host.json"),
            ]
        );
        let c = candidates(
            Browser::Chromium,
            Some(Path::new("/p")),
            Some(Os::Linux),
            None,
        );
        assert_eq!(
            c,
            vec![PathBuf::from(
                "/p/NativeMessagingHosts/dev.quiver.host.json"
            )]
        );
    }
}
