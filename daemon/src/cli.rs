//! Command-line dispatch with clap (derive). argv is first checked for a browser starting
//! `quiver` directly as its native host (Chromium: the extension origin; Firefox: the manifest
//! path and the add-on id), which clap never sees.
//!
//! Exit codes: 0 done; 1 the operation failed (the daemon refused, the import file is invalid,
//! doctor found a broken link); 2 the command line is wrong.

use crate::args::out;
use crate::client::{CallError, Client};
use crate::doctor;
use crate::install::{self, Browser, Os, Scope, Target};
use crate::paths::Env;
use crate::paths::Locations;
use crate::wire_cli;
use clap::{Args, Parser, Subcommand, ValueEnum};
use quiver_shared::frame::MAX_INBOUND_FRAME;
use quiver_shared::Library;
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// quiver: message templates for customer-service workspaces
#[derive(Debug, Parser)]
#[command(
    name = "quiver",
    version,
    arg_required_else_help = true,
    after_help = "Run `quiver <command> --help` for a command's options."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Import, export, list and search the template library
    #[command(
        arg_required_else_help = true,
        after_help = "These talk to the daemon (and start it if needed): the daemon owns the \
                      database."
    )]
    Templates {
        #[command(subcommand)]
        command: TemplatesCmd,
    },
    /// Print a template's wire payloads for a platform (udesk, sobot, wechat-dkf, wechat-mp),
    /// or the refusal with its code
    Render(wire_cli::RenderArgs),
    /// Build, parse or check a Sobot mini-program session-from string
    #[command(arg_required_else_help = true)]
    SessionFrom {
        #[command(subcommand)]
        command: wire_cli::SessionFromCmd,
    },
    /// Encrypt or decrypt a WeChat UnionID for Sobot (AES/ECB/PKCS5)
    #[command(arg_required_else_help = true, long_about = wire_cli::UNIONID_ABOUT)]
    Unionid {
        #[command(subcommand)]
        command: wire_cli::UnionidCmd,
    },
    /// Show the send history
    #[command(long_about = HISTORY_ABOUT)]
    History(HistoryArgs),
    /// Check browser -> manifest -> host -> daemon and name what is broken
    #[command(long_about = DOCTOR_ABOUT)]
    Doctor(DoctorArgs),
    /// Write the native-messaging host manifest for a browser
    #[command(long_about = INSTALL_ABOUT)]
    Install(InstallArgs),
    /// Remove the native-messaging host manifest again
    #[command(long_about = INSTALL_ABOUT)]
    Uninstall(InstallArgs),
    /// Run the per-user daemon (templates, history, send meter)
    #[command(long_about = DAEMON_ABOUT)]
    Daemon(DaemonArgs),
    /// Join a team hub and see or settle this device's team sync (docs/sync.md)
    #[command(
        arg_required_else_help = true,
        after_help = "These talk to the daemon (and start it if needed): only the daemon talks \
                      to the hub."
    )]
    Team {
        #[command(subcommand)]
        command: crate::team_cli::TeamCmd,
    },
    /// The 多客服 plugin page on 127.0.0.1: enable, disable, status, url, key (docs/mcs.md)
    #[command(arg_required_else_help = true)]
    Mcs {
        #[command(subcommand)]
        command: crate::mcs::cli::McsCmd,
    },
    /// WeChat customer-service conversations from the team hub: list, show, reply, take, assign
    /// (docs/conversations.md)
    #[command(arg_required_else_help = true)]
    Conversations {
        #[command(subcommand)]
        command: crate::conv_cli::ConvCmd,
    },
    /// Run and administer a team-sync hub (docs/sync.md)
    #[command(arg_required_else_help = true)]
    Hub {
        #[command(subcommand)]
        command: quiver_hub::cli::HubCmd,
    },
    /// The native-messaging relay a browser starts (not run by hand)
    #[command(long_about = HOST_ABOUT)]
    NativeHost {
        /// What the browser passes (the extension origin, or the manifest path and add-on id)
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        browser_args: Vec<String>,
    },
}

const DAEMON_ABOUT: &str = "\
Runs the per-user daemon: it owns the database and the send meter and listens on
daemon.sock in the socket directory ($QUIVER_RUNTIME_DIR, else $XDG_RUNTIME_DIR/quiver,
else /tmp/quiver-<uid>). Data lives in $QUIVER_DATA_DIR, else $XDG_DATA_HOME/quiver, else
~/.local/share/quiver; the log is <data dir>/logs/daemon.log.

Without options the daemon is started in the background and this command returns once it
serves. If one is running already, says so and exits 0.";

#[derive(Debug, Args)]
#[group(multiple = false)]
struct DaemonArgs {
    /// Run in this process (logs also to stderr); stop with Ctrl-C or SIGTERM
    #[arg(long)]
    foreground: bool,
    /// Stop the running daemon and wait until it has exited
    #[arg(long)]
    stop: bool,
}

const HOST_ABOUT: &str = "\
The native-messaging host a browser starts for the Quiver extension. It relays
length-prefixed JSON frames between its stdin/stdout and the daemon, starting the daemon
if needed. Browsers start the installed manifest's `path`, which is `quiver` itself: called
with `chrome-extension://<id>/` (Chromium) or `<manifest>.json <add-on id>` (Firefox) as
its arguments, quiver acts as the host without the `native-host` word.
Logs go to stderr and <data dir>/logs/host.log; stdout carries frames only.";

const INSTALL_ABOUT: &str = "\
Writes (or removes) the native-messaging host manifest dev.quiver.host.json, whose `path`
is this quiver executable, everywhere the browser reads it. NAME is chrome, chromium, edge,
brave, vivaldi or firefox; `all` means every browser whose profile directory exists (for
uninstall: every browser). Per user, for example on Linux:
  chrome    ~/.config/google-chrome/NativeMessagingHosts/
  chromium  ~/.config/chromium/NativeMessagingHosts/
  edge      ~/.config/microsoft-edge/NativeMessagingHosts/
  brave     ~/.config/BraveSoftware/Brave-Browser/NativeMessagingHosts/
  vivaldi   ~/.config/vivaldi/NativeMessagingHosts/
  firefox   ~/.mozilla/native-messaging-hosts/
On macOS Brave and Vivaldi also get Chrome's directory, which they read too. Every place, for
Linux, macOS and Windows, is listed in docs/install.md.";

#[derive(Debug, Args)]
struct InstallArgs {
    /// Which browser (chrome, chromium, edge, brave, vivaldi, firefox), or `all`
    #[arg(long, value_name = "NAME", required = true)]
    browser: String,
    /// For every user of this machine (/etc/..., /Library/...; needs root)
    #[arg(long)]
    system: bool,
    /// A Chromium-family browser started with --user-data-dir=DIR: use
    /// DIR/NativeMessagingHosts/ instead
    #[arg(long, value_name = "DIR")]
    user_data_dir: Option<PathBuf>,
}

const DOCTOR_ABOUT: &str = "\
Follows the chain a browser follows: the manifest is found, is valid JSON, its `name` is its
file name, its `path` is an absolute executable, it allows the Quiver extension, the host it
starts answers hello with frames only, and the daemon's socket is yours and answers. Names the
first broken link, how to fix it, and what the browser says about it. Without --browser,
checks every browser that has a profile directory or a manifest.
Exits 1 when a link is broken.";

#[derive(Debug, Args)]
struct DoctorArgs {
    /// Only this browser (chrome, chromium, edge, brave, vivaldi, firefox)
    #[arg(long, value_name = "NAME")]
    browser: Option<String>,
    /// The browser runs with --user-data-dir=DIR (Chromium family)
    #[arg(long, value_name = "DIR", requires = "browser")]
    user_data_dir: Option<PathBuf>,
    /// The report as JSON
    #[arg(long)]
    json: bool,
    /// What a browser error message means and how to fix it
    #[arg(long, value_name = "MESSAGE")]
    explain: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ListFormat {
    Table,
    Json,
}

#[derive(Debug, Subcommand)]
enum TemplatesCmd {
    /// Read a library file (docs/templates.md) and add it to the library: all or nothing
    #[command(
        long_about = "Reads a library file (docs/templates.md; `-` reads stdin) and \
        adds it to the library: all or nothing. A template whose id exists becomes a new \
        revision of it (unless it is unchanged). An invalid file imports nothing and the \
        error names the line and the field."
    )]
    Import {
        /// The library file, or `-` for stdin
        file: String,
        /// The library: `local` (the default: your own), a team library's name or id
        #[arg(long, value_name = "LIBRARY")]
        library: Option<String>,
    },
    /// Write the whole library as a library file to FILE (atomically), or to stdout
    Export {
        file: Option<String>,
        /// The library: `local` (the default: your own), a team library's name or id
        #[arg(long, value_name = "LIBRARY")]
        library: Option<String>,
    },
    /// Every template: id, title, folder, shortcut, tags, revision
    List {
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        /// The library: `local` (the default: your own), a team library's name or id, or `*` for
        /// every library
        #[arg(long, value_name = "LIBRARY")]
        library: Option<String>,
    },
    /// The library ranked for QUERY: words, a shortcut, pinyin or initials for Chinese
    /// titles; typos are forgiven
    Search {
        #[arg(required = true)]
        query: Vec<String>,
        /// At most this many results
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(1..))]
        limit: Option<u32>,
        /// Only templates in this folder (and its subfolders)
        #[arg(long, value_name = "F")]
        folder: Option<String>,
        /// Only templates with this tag
        #[arg(long, value_name = "T")]
        tag: Option<String>,
        #[arg(long, value_enum, default_value = "table")]
        format: ListFormat,
        /// The library: `local` (the default: your own), a team library's name or id, or `*` for
        /// every library
        #[arg(long, value_name = "LIBRARY")]
        library: Option<String>,
    },
}

const HISTORY_ABOUT: &str = "\
The send history, newest first: one row per part sent (or queued, failed, cancelled), with
the template and its revision, the platform, workspace, conversation and customer, the
payload's SHA-256, the state and the times.

T is a date (2026-01-31), a UTC time (2026-01-31T08:30:00Z), an age (30m, 12h, 7d: that
long ago) or milliseconds since the epoch. --since is inclusive, --until exclusive; both
apply to when the send was queued. json includes the payloads; table and csv do not.";

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum HistoryFormat {
    Table,
    Json,
    Csv,
}

#[derive(Debug, Args)]
struct HistoryArgs {
    /// Sends queued at or after T
    #[arg(long, value_name = "T")]
    since: Option<String>,
    /// Sends queued before T
    #[arg(long, value_name = "T")]
    until: Option<String>,
    /// Sends of this template
    #[arg(long, value_name = "ID")]
    template: Option<String>,
    /// Sends to this platform (udesk, sobot, wechat-dkf, wechat-mp)
    #[arg(long, value_name = "P")]
    platform: Option<String>,
    /// Sends in this workspace
    #[arg(long, value_name = "W")]
    workspace: Option<String>,
    /// Sends in this conversation
    #[arg(long, value_name = "C")]
    conversation: Option<String>,
    /// Sends to this customer
    #[arg(long, value_name = "C")]
    customer: Option<String>,
    /// queued, sending, sent, failed or cancelled
    #[arg(long, value_name = "S")]
    state: Option<String>,
    /// At most N rows (0: no limit)
    #[arg(long, value_name = "N", default_value_t = 100)]
    limit: usize,
    /// json includes the payloads; table and csv do not
    #[arg(long, value_enum, default_value = "table")]
    format: HistoryFormat,
}

fn say(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}

fn usage_error(msg: impl std::fmt::Display) -> ExitCode {
    say(&format!("quiver: {msg}"));
    ExitCode::from(2)
}

fn failed(msg: impl std::fmt::Display) -> ExitCode {
    say(&format!("quiver: {msg}"));
    ExitCode::FAILURE
}

/// True when argv looks like a browser starting its native host: Chromium passes the calling
/// extension's origin, Firefox the manifest path and the add-on id.
pub fn started_by_browser(args: &[String]) -> bool {
    match args {
        [origin, ..] if origin.starts_with("chrome-extension://") => true,
        [manifest, addon, ..] => manifest.ends_with(".json") && !addon.starts_with('-'),
        _ => false,
    }
}

/// Runs the command in `args` (without the program name).
pub fn run(args: Vec<String>) -> ExitCode {
    if started_by_browser(&args) {
        return crate::host::run(&args);
    }
    let cli = match Cli::try_parse_from(std::iter::once("quiver".to_string()).chain(args)) {
        Ok(c) => c,
        Err(e) => {
            // --help and --version print to stdout and exit 0; usage errors go to stderr, 2
            let _ = e.print();
            return ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(2));
        }
    };
    match cli.command {
        Command::Daemon(a) => daemon(a),
        Command::NativeHost { browser_args } => crate::host::run(&browser_args),
        Command::Install(a) => install_cmd(a, true),
        Command::Uninstall(a) => install_cmd(a, false),
        Command::Doctor(a) => doctor_cmd(a),
        Command::Templates { command } => templates(command),
        Command::History(a) => history(a),
        Command::Render(a) => wire_cli::render_cmd(a),
        Command::SessionFrom { command } => wire_cli::session_from_cmd(command),
        Command::Unionid { command } => wire_cli::unionid_cmd(command),
        Command::Hub { command } => quiver_hub::cli::run(command),
        Command::Team { command } => crate::team_cli::run(command),
        Command::Mcs { command } => crate::mcs::cli::run(command),
        Command::Conversations { command } => crate::conv_cli::run(command),
    }
}

fn daemon(a: DaemonArgs) -> ExitCode {
    match (a.foreground, a.stop) {
        (_, true) => crate::daemon::stop(),
        (true, false) => crate::daemon::run_foreground(),
        (false, false) => crate::daemon::start_detached(),
    }
}

/// `--browser` for install: one browser, or all of them.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Which {
    One(Browser),
    All,
}

fn parse_install(a: &InstallArgs) -> Result<(Which, Scope, Option<PathBuf>), String> {
    let which = match a.browser.as_str() {
        "all" => Which::All,
        b => Which::One(Browser::parse(b)?),
    };
    let scope = if a.system { Scope::System } else { Scope::User };
    let udd = a.user_data_dir.clone();
    if udd.is_some() && which == Which::All {
        return Err("--user-data-dir needs one browser, not `all`".into());
    }
    Ok((which, scope, udd))
}

fn install_cmd(args: InstallArgs, install: bool) -> ExitCode {
    let name = if install { "install" } else { "uninstall" };
    let (which, scope, user_data_dir) = match parse_install(&args) {
        Ok(t) => t,
        Err(e) => return usage_error(format!("{name}: {e} (see quiver {name} --help)")),
    };
    let browsers: Vec<Browser> = match which {
        Which::One(b) => vec![b],
        Which::All if !install => Browser::ALL.to_vec(),
        Which::All => {
            let (Some(os), Some(home)) = (Os::current(), install::home()) else {
                return failed(format!(
                    "{name}: cannot look for browsers without HOME on a supported system"
                ));
            };
            let found = install::detect(os, &home, std::path::Path::exists);
            if found.is_empty() {
                let dirs: Vec<String> = install::PROFILE_DIRS
                    .iter()
                    .filter(|(_, o, _)| *o == os)
                    .map(|(_, _, d)| d.to_string())
                    .collect();
                return failed(format!(
                    "{name}: no browser found (looked for {}); name one with --browser",
                    dirs.join(", ")
                ));
            }
            found
        }
    };
    let mut code = ExitCode::SUCCESS;
    for b in browsers {
        let t = Target {
            browser: b,
            scope,
            user_data_dir: user_data_dir.clone(),
        };
        if install {
            match install::install(&t) {
                Ok(paths) => {
                    for p in paths {
                        out(&format!("{}: wrote {}", b.name(), p.display()));
                    }
                }
                Err(e) => {
                    say(&format!("quiver install: {}: {e}", b.name()));
                    code = ExitCode::FAILURE;
                }
            }
        } else {
            match install::uninstall(&t, which == Which::All || b == Browser::Chrome) {
                Ok(paths) => {
                    for (p, existed) in paths {
                        if existed {
                            out(&format!("{}: removed {}", b.name(), p.display()));
                        } else if which != Which::All {
                            out(&format!(
                                "{}: nothing to remove: {} does not exist",
                                b.name(),
                                p.display()
                            ));
                        }
                    }
                }
                Err(e) => {
                    say(&format!("quiver uninstall: {}: {e}", b.name()));
                    code = ExitCode::FAILURE;
                }
            }
        }
    }
    code
}

fn doctor_cmd(o: DoctorArgs) -> ExitCode {
    if let Some(msg) = &o.explain {
        return match doctor::explain(msg) {
            Some((pat, why, fix)) => {
                if o.json {
                    out(&json!({"message": pat, "meaning": why, "fix": fix}).to_string());
                } else {
                    out(&format!("{pat}\n  meaning: {why}\n  fix: {fix}"));
                }
                ExitCode::SUCCESS
            }
            None => failed(format!(
                "doctor: {msg:?} is not a message quiver knows; run `quiver doctor`"
            )),
        };
    }
    let browser = match o.browser.as_deref().map(Browser::parse).transpose() {
        Ok(b) => b,
        Err(e) => return usage_error(format!("doctor: {e}")),
    };
    let report = doctor::run(&doctor::Options {
        browser,
        user_data_dir: o.user_data_dir,
    });
    if o.json {
        out(&serde_json::to_string_pretty(&report).unwrap_or_default());
    } else {
        let text = doctor::render(&report);
        out(text.trim_end());
    }
    if report.ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn connect() -> Result<Client, crate::client::ConnectError> {
    let loc = Locations::resolve(&Env::from_process())?;
    Client::connect(&loc, true)
}

fn call_error(what: &str, e: CallError) -> ExitCode {
    match e {
        CallError::Daemon(e) => {
            let mut msg = format!("{what}: {}", e.message);
            if let Some(f) = e.data.as_ref().and_then(|d| d.get("field")) {
                msg.push_str(&format!(" (field {f})"));
            }
            failed(msg)
        }
        CallError::Io(e) => failed(format!("{what}: {e}")),
    }
}

/// Every template, through `templates.list` pages.
/// Every template of `library` (the daemon's default, `local`, when `None`), each with the
/// library it is in.
fn all_templates(c: &mut Client, library: Option<&str>) -> Result<Vec<(Value, String)>, CallError> {
    let mut out = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let mut p = json!({ "limit": 500 });
        if let Some(l) = library {
            p["library"] = json!(l);
        }
        if !cursor.is_null() {
            p["cursor"] = cursor;
        }
        let page = c.call("templates.list", p)?;
        if let Some(t) = page["templates"].as_array() {
            for (i, t) in t.iter().enumerate() {
                let lib = page["meta"][i]["library"]
                    .as_str()
                    .unwrap_or(library.unwrap_or(LOCAL_LIBRARY))
                    .to_string();
                out.push((t.clone(), lib));
            }
        }
        cursor = page["next_cursor"].clone();
        if cursor.is_null() {
            return Ok(out);
        }
    }
}

const LOCAL_LIBRARY: &str = "local";

/// The library id `--library` names: `local`, `*` (when `all` is allowed), or a team library
/// by id or name (from `team.status`). `None` when not given.
fn library_arg(c: &mut Client, given: Option<&str>, all: bool) -> Result<Option<String>, String> {
    let Some(name) = given else {
        return Ok(None);
    };
    if name == LOCAL_LIBRARY || (all && name == "*") {
        return Ok(Some(name.to_string()));
    }
    if name == "*" {
        return Err("--library *: this command works on one library".into());
    }
    let st = c
        .call("team.status", json!({}))
        .map_err(|e| format!("--library {name}: {e}"))?;
    let libs = st["libraries"].as_array().cloned().unwrap_or_default();
    libs.iter()
        .find(|l| l["id"] == name)
        .or_else(|| libs.iter().find(|l| l["name"] == name))
        .and_then(|l| l["id"].as_str().map(|id| Some(id.to_string())))
        .ok_or_else(|| {
            let known: Vec<String> = libs
                .iter()
                .filter_map(|l| l["name"].as_str().map(str::to_string))
                .collect();
            format!(
                "--library {name:?}: no such library (local{}{})",
                if known.is_empty() { "" } else { ", " },
                known.join(", ")
            )
        })
}

/// The library names by id, for tables (`local` for the personal library).
fn library_names(c: &mut Client) -> std::collections::HashMap<String, String> {
    let mut m = std::collections::HashMap::new();
    if let Ok(st) = c.call("team.status", json!({})) {
        for l in st["libraries"].as_array().into_iter().flatten() {
            if let (Some(id), Some(n)) = (l["id"].as_str(), l["name"].as_str()) {
                m.insert(id.to_string(), n.to_string());
            }
        }
    }
    m
}

fn templates(command: TemplatesCmd) -> ExitCode {
    match command {
        TemplatesCmd::Import { file, library } => import(&file, library.as_deref()),
        TemplatesCmd::Export { file, library } => export(file.as_deref(), library.as_deref()),
        TemplatesCmd::List { format, library } => {
            let mut c = match connect() {
                Ok(c) => c,
                Err(e) => return failed(e),
            };
            let library = match library_arg(&mut c, library.as_deref(), true) {
                Ok(l) => l,
                Err(e) => return usage_error(e),
            };
            let every = library.as_deref() == Some("*");
            match all_templates(&mut c, library.as_deref()) {
                Ok(list) if format == ListFormat::Json => {
                    // one library: the templates as before; every library: each with its own
                    let v: Vec<Value> = if every {
                        list.into_iter()
                            .map(|(t, l)| json!({ "library": l, "template": t }))
                            .collect()
                    } else {
                        list.into_iter().map(|(t, _)| t).collect()
                    };
                    out(&serde_json::to_string_pretty(&v).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(list) => {
                    let names = if every {
                        library_names(&mut c)
                    } else {
                        Default::default()
                    };
                    let rows: Vec<Vec<String>> = list
                        .iter()
                        .map(|(t, l)| {
                            let mut row = vec![
                                s(&t["id"]),
                                s(&t["title"]),
                                s(&t["folder"]),
                                s(&t["shortcut"]),
                                tags(&t["tags"]),
                                s(&t["revision"]),
                            ];
                            if every {
                                row.insert(0, names.get(l).cloned().unwrap_or_else(|| l.clone()));
                            }
                            row
                        })
                        .collect();
                    let mut head = vec!["ID", "TITLE", "FOLDER", "SHORTCUT", "TAGS", "REV"];
                    if every {
                        head.insert(0, "LIBRARY");
                    }
                    out(&table(&head, &rows));
                    ExitCode::SUCCESS
                }
                Err(e) => call_error("templates list", e),
            }
        }
        TemplatesCmd::Search {
            query,
            limit,
            folder,
            tag,
            format,
            library,
        } => {
            let query = query.join(" ");
            let mut p = json!({ "query": query });
            if let Some(n) = limit {
                p["limit"] = json!(n);
            }
            if let Some(f) = folder {
                p["folder"] = json!(f);
            }
            if let Some(t) = tag {
                p["tag"] = json!(t);
            }
            let mut c = match connect() {
                Ok(c) => c,
                Err(e) => return failed(e),
            };
            match library_arg(&mut c, library.as_deref(), true) {
                Ok(Some(l)) => p["library"] = json!(l),
                Ok(None) => {}
                Err(e) => return usage_error(e),
            }
            match c.call("templates.search", p) {
                Ok(r) if format == ListFormat::Json => {
                    out(&serde_json::to_string_pretty(&r["results"]).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    let rows: Vec<Vec<String>> = r["results"]
                        .as_array()
                        .map(|a| {
                            a.iter()
                                .map(|h| {
                                    vec![
                                        s(&h["id"]),
                                        s(&h["title"]),
                                        s(&h["folder"]),
                                        s(&h["shortcut"]),
                                        s(&h["matched"]),
                                        s(&h["usage_count"]),
                                    ]
                                })
                                .collect()
                        })
                        .unwrap_or_default();
                    if rows.is_empty() {
                        say(&format!("no template matches {query:?}"));
                        return ExitCode::FAILURE;
                    }
                    out(&table(
                        &["ID", "TITLE", "FOLDER", "SHORTCUT", "MATCHED", "USES"],
                        &rows,
                    ));
                    ExitCode::SUCCESS
                }
                Err(e) => call_error("templates search", e),
            }
        }
    }
}

/// Batches stay well under the daemon's 4 MiB frame limit.
const IMPORT_BATCH_BYTES: usize = MAX_INBOUND_FRAME / 2;

fn import(file: &str, library: Option<&str>) -> ExitCode {
    let (name, text) = if file == "-" {
        let mut s = String::new();
        if let Err(e) = std::io::Read::read_to_string(&mut std::io::stdin(), &mut s) {
            return failed(format!("templates import: cannot read stdin: {e}"));
        }
        ("<stdin>".to_string(), s)
    } else {
        match std::fs::read_to_string(file) {
            Ok(t) => (file.to_string(), t),
            Err(e) => return failed(format!("templates import: cannot read {file}: {e}")),
        }
    };
    // Two walks over the text, neither holding the parsed library: the first checks every
    // template (so the error names the line in the file, and nothing is sent for a bad file);
    // the second sends them in batches of one import session, committed by the last batch
    // (the daemon checks again, and writes all or nothing).
    let report = |e: quiver_shared::model::ImportError| {
        say(&format!(
            "{name}:{}:{}: {}{}",
            e.line,
            e.column,
            if e.field.is_empty() {
                String::new()
            } else {
                format!("field {}: ", e.field)
            },
            e.message
        ));
        say("quiver templates import: nothing was imported");
        ExitCode::FAILURE
    };
    let total = match Library::walk(&text, |_, t| {
        let n = t.serialized_len();
        if n > IMPORT_BATCH_BYTES {
            return Err(format!(
                "template {:?} is {n} bytes, more than {IMPORT_BATCH_BYTES}",
                t.id
            ));
        }
        Ok(())
    }) {
        Ok(n) => n,
        Err(e) => return report(e),
    };
    let mut c = match connect() {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let library = match library_arg(&mut c, library, false) {
        Ok(l) => l,
        Err(e) => return usage_error(e),
    };
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    let session = format!("cli-{}-{nanos}", std::process::id());
    let mut batch: Vec<quiver_shared::Template> = Vec::new();
    let mut bytes = 0;
    let mut failure: Option<CallError> = None;
    let send = |c: &mut Client, batch: Vec<quiver_shared::Template>, last: bool| {
        let mut p = json!({ "templates": batch, "last": last, "session": session });
        if let Some(l) = &library {
            p["library"] = json!(l);
        }
        c.call("templates.import", p)
    };
    let walked = Library::walk(&text, |i, t| {
        let n = t.serialized_len();
        if !batch.is_empty() && bytes + n + 1 > IMPORT_BATCH_BYTES {
            if let Err(e) = send(&mut c, std::mem::take(&mut batch), false) {
                failure = Some(e);
                return Err("the daemon refused the batch".into());
            }
            bytes = 0;
        }
        bytes += n + 1;
        batch.push(t);
        debug_assert!(i < total);
        Ok(())
    });
    if let Some(e) = failure {
        say("quiver templates import: nothing was imported");
        return call_error("templates import", e);
    }
    if let Err(e) = walked {
        return report(e);
    }
    match send(&mut c, batch, true) {
        Ok(r) => {
            out(&format!(
                "imported {} templates from {name}: {} new, {} updated, {} unchanged",
                r["templates"], r["created"], r["updated"], r["unchanged"]
            ));
        }
        Err(e) => {
            say("quiver templates import: nothing was imported");
            return call_error("templates import", e);
        }
    }
    ExitCode::SUCCESS
}

fn export(file: Option<&str>, library: Option<&str>) -> ExitCode {
    let mut c = match connect() {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let library = match library_arg(&mut c, library, false) {
        Ok(l) => l,
        Err(e) => return usage_error(e),
    };
    let list: Vec<Value> = match all_templates(&mut c, library.as_deref()) {
        Ok(l) => l.into_iter().map(|(t, _)| t).collect(),
        Err(e) => return call_error("templates export", e),
    };
    let n = list.len();
    let lib = json!({ "quiver": quiver_shared::model::LIBRARY_FORMAT, "templates": list });
    let text = serde_json::to_string_pretty(&lib).unwrap_or_default() + "\n";
    match file {
        None | Some("-") => {
            let mut o = std::io::stdout().lock();
            if o.write_all(text.as_bytes())
                .and_then(|()| o.flush())
                .is_err()
            {
                return ExitCode::FAILURE;
            }
        }
        Some(path) => {
            let path = std::path::Path::new(path);
            // A fresh temporary file in the same directory (created with O_EXCL and mode 0600
            // under an unpredictable name, so a planted file or symlink is never followed),
            // then renamed over the target (which replaces a symlink there, never writes
            // through it). A failure leaves nothing behind.
            let write = || -> std::io::Result<()> {
                let dir = match path.parent() {
                    Some(d) if !d.as_os_str().is_empty() => d,
                    _ => std::path::Path::new("."),
                };
                let mut tmp = tempfile::Builder::new()
                    .prefix(".quiver-export-")
                    .suffix(".tmp")
                    .tempfile_in(dir)?;
                tmp.write_all(text.as_bytes())?;
                tmp.as_file().sync_all()?;
                tmp.persist(path).map_err(|e| e.error)?;
                Ok(())
            };
            if let Err(e) = write() {
                return failed(format!(
                    "templates export: cannot write {}: {e}",
                    path.display()
                ));
            }
            say(&format!("exported {n} templates to {}", path.display()));
        }
    }
    ExitCode::SUCCESS
}

fn history(o: HistoryArgs) -> ExitCode {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let mut filter = json!({});
    for (flag, field, v) in [
        ("--since", "since_ms", &o.since),
        ("--until", "until_ms", &o.until),
    ] {
        if let Some(v) = v {
            match parse_time(v, now) {
                Ok(ms) => filter[field] = json!(ms),
                Err(e) => return usage_error(format!("history: {flag}: {e}")),
            }
        }
    }
    for (field, v) in [
        ("template_id", &o.template),
        ("platform", &o.platform),
        ("workspace", &o.workspace),
        ("conversation", &o.conversation),
        ("customer", &o.customer),
        ("state", &o.state),
    ] {
        if let Some(v) = v {
            filter[field] = json!(v);
        }
    }
    let limit = o.limit;
    let mut c = match connect() {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    let mut rows: Vec<Value> = Vec::new();
    let mut cursor = Value::Null;
    loop {
        let want = if limit == 0 {
            500
        } else {
            (limit - rows.len()).min(500)
        };
        let mut p = filter.clone();
        p["limit"] = json!(want);
        if !cursor.is_null() {
            p["cursor"] = cursor.clone();
        }
        let page = match c.call("history.list", p) {
            Ok(p) => p,
            Err(e) => return call_error("history", e),
        };
        if let Some(r) = page["rows"].as_array() {
            rows.extend(r.iter().cloned());
        }
        cursor = page["next_cursor"].clone();
        if cursor.is_null() || (limit != 0 && rows.len() >= limit) {
            break;
        }
    }
    match o.format {
        HistoryFormat::Json => out(&serde_json::to_string_pretty(&rows).unwrap_or_default()),
        HistoryFormat::Csv => {
            let cols = [
                "send_id",
                "queued_at",
                "released_at",
                "sent_at",
                "done_at",
                "state",
                "platform",
                "workspace",
                "conversation",
                "customer",
                "template_id",
                "revision",
                "part_index",
                "payload_sha256",
                "error",
                "idempotency_key",
            ];
            let mut text = cols.join(",");
            text.push('\n');
            for r in &rows {
                let cells: Vec<String> = cols
                    .iter()
                    .map(|c| {
                        let v = &r[*c];
                        let cell = if c.ends_with("_at") {
                            v.as_u64().map(time).unwrap_or_default()
                        } else {
                            s(v)
                        };
                        csv_cell(&cell)
                    })
                    .collect();
                text.push_str(&cells.join(","));
                text.push('\n');
            }
            let _ = std::io::stdout().lock().write_all(text.as_bytes());
        }
        HistoryFormat::Table => {
            let t: Vec<Vec<String>> = rows
                .iter()
                .map(|r| {
                    vec![
                        s(&r["send_id"]),
                        r["queued_at"].as_u64().map(time).unwrap_or_default(),
                        s(&r["state"]),
                        s(&r["platform"]),
                        s(&r["workspace"]),
                        s(&r["conversation"]),
                        s(&r["customer"]),
                        format!(
                            "{}@{}#{}",
                            s(&r["template_id"]),
                            s(&r["revision"]),
                            s(&r["part_index"])
                        ),
                        clip(&s(&r["error"]), 40),
                    ]
                })
                .collect();
            if t.is_empty() {
                say("no sends match");
            } else {
                out(&table(
                    &[
                        "ID",
                        "QUEUED (UTC)",
                        "STATE",
                        "PLATFORM",
                        "WORKSPACE",
                        "CONVERSATION",
                        "CUSTOMER",
                        "TEMPLATE@REV#PART",
                        "ERROR",
                    ],
                    &t,
                ));
            }
        }
    }
    ExitCode::SUCCESS
}

// ---- output helpers ----

/// A JSON value as a table cell: strings bare, null empty.
fn s(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn tags(v: &Value) -> String {
    v.as_array()
        .map(|a| a.iter().map(s).collect::<Vec<_>>().join(","))
        .unwrap_or_default()
}

fn time(ms: u64) -> String {
    let t = crate::log::timestamp(UNIX_EPOCH + Duration::from_millis(ms));
    // seconds are enough on screen
    match t.split_once('.') {
        Some((head, _)) => format!("{head}Z"),
        None => t,
    }
}

fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// Columns a character takes in a terminal: East Asian wide characters take two.
fn char_width(c: char) -> usize {
    let u = c as u32;
    let wide = matches!(u,
        0x1100..=0x115F | 0x2E80..=0x303E | 0x3041..=0xA4CF | 0xAC00..=0xD7A3
        | 0xF900..=0xFAFF | 0xFE30..=0xFE4F | 0xFF00..=0xFF60 | 0xFFE0..=0xFFE6
        | 0x1F300..=0x1F64F | 0x1F900..=0x1F9FF | 0x20000..=0x3FFFD);
    if c.is_control() {
        0
    } else if wide {
        2
    } else {
        1
    }
}

fn width(s: &str) -> usize {
    s.chars().map(char_width).sum()
}

/// A plain text table: a header, columns padded to the widest cell (cells cut at 60 columns).
fn table(header: &[&str], rows: &[Vec<String>]) -> String {
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|c| clip(&c.replace(['\n', '\t'], " "), 60))
                .collect()
        })
        .collect();
    let mut widths: Vec<usize> = header.iter().map(|h| width(h)).collect();
    for r in &cells {
        for (i, c) in r.iter().enumerate() {
            if i < widths.len() {
                widths[i] = widths[i].max(width(c));
            }
        }
    }
    let line = |cells: Vec<&str>| -> String {
        let n = cells.len();
        let mut l = String::new();
        for (i, c) in cells.into_iter().enumerate() {
            l.push_str(c);
            if i + 1 < n {
                l.push_str(&" ".repeat(widths[i] - width(c) + 2));
            }
        }
        l.trim_end().to_string()
    };
    let mut out = line(header.to_vec());
    for r in &cells {
        out.push('\n');
        out.push_str(&line(r.iter().map(String::as_str).collect()));
    }
    out
}

/// One CSV cell (RFC 4180): quoted when it holds a comma, a quote or a line break.
fn csv_cell(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

/// A time on the command line, to ms since the epoch (see HISTORY_USAGE).
fn parse_time(s: &str, now_ms: u64) -> Result<u64, String> {
    let s = s.trim();
    let bad = || {
        format!(
            "{s:?} is not a time (2026-01-31, 2026-01-31T08:30:00Z, 30m, 12h, 7d, or ms since \
             the epoch)"
        )
    };
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) {
        return s.parse().map_err(|_| bad());
    }
    if let Some(unit) = s.chars().last().filter(|c| "smhdw".contains(*c)) {
        if let Ok(n) = s[..s.len() - 1].parse::<u64>() {
            let ms = match unit {
                's' => 1_000,
                'm' => 60_000,
                'h' => 3_600_000,
                'd' => 86_400_000,
                _ => 7 * 86_400_000,
            };
            return Ok(now_ms.saturating_sub(n.saturating_mul(ms)));
        }
    }
    let (date, clock) = match s.split_once(['T', ' ']) {
        Some((d, c)) => (d, Some(c.trim_end_matches('Z'))),
        None => (s, None),
    };
    let mut d = date.split('-');
    let (Some(y), Some(m), Some(dd), None) = (d.next(), d.next(), d.next(), d.next()) else {
        return Err(bad());
    };
    let (y, m, dd) = (
        y.parse::<i64>().map_err(|_| bad())?,
        m.parse::<u32>().map_err(|_| bad())?,
        dd.parse::<u32>().map_err(|_| bad())?,
    );
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&dd) {
        return Err(bad());
    }
    let mut secs = quiver_shared::date::days_from_civil(y, m, dd) * 86_400;
    if let Some(c) = clock {
        let parts: Vec<&str> = c.split(':').collect();
        if !(2..=3).contains(&parts.len()) {
            return Err(bad());
        }
        let mut mult = 3600;
        for p in parts {
            let v: i64 = p.parse().map_err(|_| bad())?;
            if !(0..60).contains(&v) || (mult == 3600 && v > 23) {
                return Err(bad());
            }
            secs += v * mult;
            mult /= 60;
        }
    }
    u64::try_from(secs * 1000).map_err(|_| bad())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn recognises_browser_invocations() {
        assert!(started_by_browser(&v(&[
            "chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/"
        ])));
        assert!(started_by_browser(&v(&[
            "/home/u/.mozilla/native-messaging-hosts/dev.quiver.host.json",
            "quiver@quiver.dev"
        ])));
        assert!(!started_by_browser(&v(&["daemon"])));
        assert!(!started_by_browser(&v(&[
            "install",
            "--browser",
            "firefox"
        ])));
        assert!(!started_by_browser(&v(&[
            "templates",
            "import",
            "lib.json"
        ])));
        assert!(!started_by_browser(&v(&["x.json"])));
        assert!(!started_by_browser(&v(&[])));
    }

    #[test]
    fn parses_install_targets() {
        let parse_install = |a: &[&str]| -> Result<(Which, Scope, Option<PathBuf>), String> {
            let argv = ["quiver", "install"].iter().chain(a);
            match Cli::try_parse_from(argv)
                .map_err(|e| e.to_string())?
                .command
            {
                Command::Install(i) => parse_install(&i),
                c => panic!("{c:?}"),
            }
        };
        let (w, s, d) = parse_install(&["--browser", "chromium", "--user-data-dir=/p"]).unwrap();
        assert_eq!(w, Which::One(Browser::Chromium));
        assert_eq!(s, Scope::User);
        assert_eq!(d.as_deref(), Some(std::path::Path::new("/p")));
        let (w, s, _) = parse_install(&["--browser=all", "--system"]).unwrap();
        assert_eq!((w, s), (Which::All, Scope::System));
        assert!(parse_install(&[]).unwrap_err().contains("--browser"));
        assert!(parse_install(&["--browser"]).unwrap_err().contains("value"));
        assert!(parse_install(&["--browser", "lynx"])
            .unwrap_err()
            .contains("lynx"));
        assert!(parse_install(&["--bogus"]).unwrap_err().contains("--bogus"));
        assert!(parse_install(&["--browser", "all", "--user-data-dir", "/p"]).is_err());
        assert!(parse_install(&["--browser", "edge", "extra"]).is_err());
    }

    #[test]
    fn times() {
        let now = 1_800_000_000_000;
        assert_eq!(parse_time("1700000000000", now).unwrap(), 1_700_000_000_000);
        assert_eq!(parse_time("7d", now).unwrap(), now - 7 * 86_400_000);
        assert_eq!(parse_time("30m", now).unwrap(), now - 1_800_000);
        assert_eq!(parse_time("1970-01-01", now).unwrap(), 0);
        assert_eq!(parse_time("2000-02-29", now).unwrap(), 951_782_400_000);
        assert_eq!(
            parse_time("2000-02-29T12:34:56Z", now).unwrap(),
            951_827_696_000
        );
        assert_eq!(
            parse_time("2000-02-29 12:34", now).unwrap(),
            951_827_640_000
        );
        for bad in [
            "",
            "yesterday",
            "2000-13-01",
            "2000-01-01T25:00",
            "2000-01",
            "5x",
            "1969-12-31",
        ] {
            assert!(parse_time(bad, now).is_err(), "{bad}");
        }
        assert_eq!(time(951_827_696_789), "2000-02-29T12:34:56Z");
    }

    #[test]
    fn tables_align_wide_characters() {
        let t = table(
            &["ID", "TITLE"],
            &[
                vec!["a".into(), "稍等".into()],
                vec!["bbbb".into(), "x".into()],
            ],
        );
        assert_eq!(t, "ID    TITLE\na     稍等\nbbbb  x");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("say \"hi\""), "\"say \"\"hi\"\"\"");
        assert_eq!(csv_cell("plain"), "plain");
        assert_eq!(clip("abcdef", 4), "abc…");
    }

    #[test]
    fn the_command_line_is_consistent() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
        let c = Cli::try_parse_from([
            "quiver",
            "templates",
            "search",
            "--limit=3",
            "a",
            "--",
            "--b",
        ])
        .unwrap();
        match c.command {
            Command::Templates {
                command: TemplatesCmd::Search { query, limit, .. },
            } => {
                assert_eq!(query, ["a", "--b"]);
                assert_eq!(limit, Some(3));
            }
            c => panic!("{c:?}"),
        }
        assert!(Cli::try_parse_from(["quiver", "templates", "search", "--limit=0", "a"]).is_err());
        assert!(Cli::try_parse_from(["quiver", "daemon", "--foreground", "--stop"]).is_err());
    }
}
