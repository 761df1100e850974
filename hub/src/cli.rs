//! `quiver hub ...`: make, run and administer a hub. The admin commands act on the hub's own
//! database (run them on the hub's machine, with its directory); members administer over the
//! HTTP admin API from their daemons.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Subcommand};
use quiver_shared::sync::wire::{CreateLibrary, InviteRequest, LibrarySettings};
use quiver_shared::sync::Role;

use crate::config::{HubConfig, TlsFiles};
use crate::ids::{self, now_ms};
use crate::ops::{self, Who};
use crate::pokes::Bus;
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub enum HubCmd {
    /// Make a hub: its directory, certificate, database, organisation, owner and first library;
    /// prints the owner's invite
    #[command(long_about = INIT_ABOUT)]
    Init(InitArgs),
    /// Run the hub (stop with SIGTERM or Ctrl-C)
    Serve(ServeArgs),
    /// Print a single-use invite bound to a role in some libraries
    Invite(InviteArgs),
    /// The hub's libraries, users, devices and revisions
    Status(StatusArgs),
    /// After restoring the database from a backup: new epochs for every library, so that
    /// daemons pull again and push what the hub lost
    Restored {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
    },
    /// Create, list and change libraries
    #[command(arg_required_else_help = true)]
    Library {
        #[command(subcommand)]
        command: LibraryCmd,
    },
    /// List, set and remove members of a library
    #[command(arg_required_else_help = true)]
    Member {
        #[command(subcommand)]
        command: MemberCmd,
    },
    /// List and revoke devices
    #[command(arg_required_else_help = true)]
    Device {
        #[command(subcommand)]
        command: DeviceCmd,
    },
    /// WeChat mini programs the hub serves (docs/wechat.md)
    #[command(arg_required_else_help = true)]
    Wx {
        #[command(subcommand)]
        command: crate::wx::cli::WxCmd,
    },
}

const INIT_ABOUT: &str = "\
Makes a hub in DIR: hub.json (mode 0600), a self-signed certificate (cert.pem, key.pem) whose
SHA-256 every invite carries for daemons to pin, the database (SQLite DIR/hub.db unless
--database names postgres://...), the organisation, its owner (an administrator), one team
library, and prints the owner's invite on stdout:
  quiver+https://HOST:PORT/join#CODE.FINGERPRINT
--plain serves plain HTTP instead, accepted only on a loopback address (tests, one machine):
  quiver+http://127.0.0.1:PORT/join#CODE";

#[derive(Debug, Args)]
pub struct InitArgs {
    /// The hub's directory (created)
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// sqlite:FILE (relative to DIR) or postgres://USER[:PASSWORD]@HOST:PORT/DB
    #[arg(long, value_name = "URL", default_value = "sqlite:hub.db")]
    pub database: String,
    /// The address to listen on
    #[arg(long, value_name = "ADDR", default_value = "0.0.0.0:7443")]
    pub listen: String,
    /// Where members reach the hub (https://HOST:PORT); default: this machine's name and the
    /// listen port
    #[arg(long, value_name = "URL")]
    pub public_url: Option<String>,
    /// The organisation's name
    #[arg(long, value_name = "NAME", default_value = "team")]
    pub org: String,
    /// The owner's user name
    #[arg(long, value_name = "NAME", default_value = "owner")]
    pub owner: String,
    /// The first library's name
    #[arg(long, value_name = "NAME", default_value = "team")]
    pub library: String,
    /// Plain HTTP (no certificate): only with a loopback --listen address
    #[arg(long)]
    pub plain: bool,
}

#[derive(Debug, Args)]
pub struct ServeArgs {
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// Listen here instead of hub.json's address (several hubs over one PostgreSQL may share a
    /// directory)
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Also serve WeChat's pushes (/wx/mp/*, /wx/health only) in plain HTTP here, for a TLS
    /// proxy in front (hub.json `wx_listen`)
    #[arg(long, value_name = "ADDR")]
    pub wx_listen: Option<String>,
}

#[derive(Debug, Args)]
pub struct InviteArgs {
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// owner, maintainer, editor or viewer
    #[arg(long, value_name = "ROLE", value_parser = parse_role)]
    pub role: Role,
    /// A library's name or id (repeat for several)
    #[arg(long = "library", value_name = "NAME_OR_ID")]
    pub libraries: Vec<String>,
    /// Join as this user (made if new; an existing user gets another device)
    #[arg(long, value_name = "NAME")]
    pub user: Option<String>,
    /// How long the invite is valid: 90s, 30m, 72h, 7d
    #[arg(long, value_name = "AGE", default_value = "72h", value_parser = parse_age)]
    pub expires: u64,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    #[arg(long)]
    pub json: bool,
}

#[derive(Debug, Subcommand)]
pub enum LibraryCmd {
    /// Create a team library; the administrators own it
    Create {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        name: String,
        /// Editors' pushes become proposals a maintainer approves
        #[arg(long)]
        review: bool,
    },
    /// Every library with its members, templates and open conflicts
    List {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Rename a library or change whether it requires review
    Set {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        library: String,
        #[arg(long, value_name = "NAME")]
        name: Option<String>,
        #[arg(long, value_name = "BOOL")]
        review: Option<bool>,
    },
}

#[derive(Debug, Subcommand)]
pub enum MemberCmd {
    /// A library's members and roles
    List {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        library: String,
    },
    /// Give USER the ROLE (owner, maintainer, editor, viewer) in LIBRARY
    Set {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        library: String,
        user: String,
        #[arg(value_parser = parse_role)]
        role: Role,
    },
    /// Remove USER from LIBRARY (their daemons purge it on the next pull)
    Remove {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        library: String,
        user: String,
    },
}

#[derive(Debug, Subcommand)]
pub enum DeviceCmd {
    /// Every device with its user and when it was last seen
    List {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// Revoke a device's token at once (its requests get 401, its event stream closes)
    Revoke {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        id: String,
    },
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("{s:?}: owner, maintainer, editor or viewer"))
}

/// `90s`, `30m`, `72h`, `7d` in seconds.
pub fn parse_age(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (n, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: u64 = n
        .parse()
        .map_err(|_| format!("{s:?}: a number and s, m, h or d (72h)"))?;
    let mul = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86400,
        _ => return Err(format!("{s:?}: a number and s, m, h or d (72h)")),
    };
    Ok(n * mul)
}

fn out(s: &str) {
    let _ = writeln!(std::io::stdout(), "{s}");
}

fn say(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}

fn fail(s: impl std::fmt::Display) -> ExitCode {
    say(&format!("quiver hub: {s}"));
    ExitCode::FAILURE
}

fn json_out<T: serde::Serialize>(v: &T) {
    out(&serde_json::to_string_pretty(v).unwrap_or_default());
}

/// Runs `quiver hub ...`.
pub fn run(cmd: HubCmd) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(format!("cannot start the runtime: {e}")),
    };
    match rt.block_on(dispatch(cmd)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e),
    }
}

async fn open(dir: &Path) -> Result<(HubConfig, Db), String> {
    let cfg = HubConfig::load(dir)?;
    let db = Db::open(&cfg.database(dir)?, Bus::new())
        .await
        .map_err(|e| format!("database: {}", e.message))?;
    Ok((cfg, db))
}

fn e(x: crate::error::HubError) -> String {
    x.message
}

async fn dispatch(cmd: HubCmd) -> Result<(), String> {
    let now = now_ms();
    match cmd {
        HubCmd::Init(a) => init(a).await,
        HubCmd::Serve(a) => {
            init_logging();
            crate::server::serve(&a.dir, a.listen, a.wx_listen).await
        }
        HubCmd::Invite(a) => {
            let (cfg, db) = open(&a.dir).await?;
            let req = InviteRequest {
                role: a.role,
                libraries: a.libraries,
                user: a.user,
                expires_secs: Some(a.expires),
            };
            let (code, _) = run!(&db, write, |tx| ops::create_invite(
                tx,
                &Who::Local,
                &req,
                now
            ))
            .map_err(e)?;
            let (base, fp) = crate::server::invite_parts(&a.dir, &cfg)?;
            out(&crate::server::invite_text(&base, fp.as_deref(), &code));
            Ok(())
        }
        HubCmd::Status(a) => {
            let (_, db) = open(&a.dir).await?;
            let s = run!(&db, read, |tx| ops::status(tx, &Who::Local, now)).map_err(e)?;
            if a.json {
                json_out(&s);
            } else {
                out(&format!("hub {} on {}", s.hub_id, s.backend));
                out(&format!(
                    "{} users, {} devices, {} revisions, {} open invites",
                    s.users, s.devices, s.revisions, s.open_invites
                ));
                for l in &s.libraries {
                    out(&library_line(l));
                }
            }
            Ok(())
        }
        HubCmd::Restored { dir } => {
            let (_, db) = open(&dir).await?;
            let r = run!(&db, write, |tx| ops::new_epochs(tx)).map_err(e)?;
            for (lib, epoch) in r {
                out(&format!("{lib}  new epoch {epoch}"));
            }
            Ok(())
        }
        HubCmd::Library { command } => library(command, now).await,
        HubCmd::Member { command } => member(command, now).await,
        HubCmd::Device { command } => device(command, now).await,
        HubCmd::Wx { command } => crate::wx::cli::run(command).await,
    }
}

fn library_line(l: &quiver_shared::sync::wire::LibrarySummary) -> String {
    format!(
        "{}  {}  seq {}  {} members  {} templates  {} open conflicts{}",
        l.id,
        l.name,
        l.head_seq,
        l.members,
        l.templates,
        l.open_conflicts,
        if l.review_required {
            "  review required"
        } else {
            ""
        }
    )
}

async fn library(cmd: LibraryCmd, now: i64) -> Result<(), String> {
    match cmd {
        LibraryCmd::Create { dir, name, review } => {
            let (_, db) = open(&dir).await?;
            let req = CreateLibrary {
                name,
                review_required: review,
            };
            let l = run!(&db, write, |tx| ops::create_library(
                tx,
                &Who::Local,
                &req,
                now
            ))
            .map_err(e)?;
            out(&format!("{}  {}", l.id, l.name));
        }
        LibraryCmd::List { dir, json } => {
            let (_, db) = open(&dir).await?;
            let r = run!(&db, read, |tx| ops::libraries(tx, &Who::Local)).map_err(e)?;
            if json {
                json_out(&r);
            } else {
                for l in &r.libraries {
                    out(&library_line(l));
                }
            }
        }
        LibraryCmd::Set {
            dir,
            library,
            name,
            review,
        } => {
            let (_, db) = open(&dir).await?;
            let s = LibrarySettings {
                name,
                review_required: review,
            };
            let r = run!(&db, write, |tx| ops::update_library(
                tx,
                &Who::Local,
                &library,
                &s,
                now
            ))
            .map_err(e)?;
            out(&format!("changed (seq {})", r.seq));
        }
    }
    Ok(())
}

async fn member(cmd: MemberCmd, now: i64) -> Result<(), String> {
    match cmd {
        MemberCmd::List { dir, library } => {
            let (_, db) = open(&dir).await?;
            let r = run!(&db, read, |tx| ops::members(tx, &Who::Local, &library)).map_err(e)?;
            for m in r.members {
                out(&format!(
                    "{}  {}  {}",
                    m.user_id,
                    m.user_name,
                    m.role.as_str()
                ));
            }
        }
        MemberCmd::Set {
            dir,
            library,
            user,
            role,
        } => {
            let (_, db) = open(&dir).await?;
            let u = user.clone();
            let r = run!(&db, write, |tx| ops::set_member(
                tx,
                &Who::Local,
                &library,
                &u,
                Some(role),
                now
            ))
            .map_err(e)?;
            out(&format!("{user} is {} (seq {})", role.as_str(), r.seq));
        }
        MemberCmd::Remove { dir, library, user } => {
            let (_, db) = open(&dir).await?;
            let u = user.clone();
            let r = run!(&db, write, |tx| ops::set_member(
                tx,
                &Who::Local,
                &library,
                &u,
                None,
                now
            ))
            .map_err(e)?;
            out(&format!("{user} removed (seq {})", r.seq));
        }
    }
    Ok(())
}

async fn device(cmd: DeviceCmd, now: i64) -> Result<(), String> {
    match cmd {
        DeviceCmd::List { dir, json } => {
            let (_, db) = open(&dir).await?;
            let r = run!(&db, read, |tx| ops::devices(tx, &Who::Local)).map_err(e)?;
            if json {
                json_out(&r);
            } else {
                for d in r.devices {
                    out(&format!(
                        "{}  {}  {}{}",
                        d.id,
                        d.user_name,
                        d.name,
                        if d.revoked_at_ms.is_some() {
                            "  revoked"
                        } else {
                            ""
                        }
                    ));
                }
            }
        }
        DeviceCmd::Revoke { dir, id } => {
            let (_, db) = open(&dir).await?;
            let d = id.clone();
            run!(&db, write, |tx| ops::revoke_device(
                tx,
                &Who::Local,
                &d,
                now
            ))
            .map_err(e)?;
            out(&format!("device {id} revoked"));
        }
    }
    Ok(())
}

fn init_logging() {
    let level = match std::env::var("QUIVER_HUB_LOG").as_deref() {
        Ok("debug") => tracing::Level::DEBUG,
        Ok("warn") => tracing::Level::WARN,
        Ok("trace") => tracing::Level::TRACE,
        _ => tracing::Level::INFO,
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_max_level(level)
        .with_target(false)
        .try_init();
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .or_else(|_| std::fs::read_to_string("/etc/hostname"))
        .map(|s| s.trim().to_string())
        .ok()
        .filter(|s| !s.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "localhost".into())
}

async fn init(a: InitArgs) -> Result<(), String> {
    let dir = &a.dir;
    if dir.join(crate::config::FILE).exists() {
        return Err(format!(
            "{} holds a hub already ({})",
            dir.display(),
            crate::config::FILE
        ));
    }
    let addr: SocketAddr = a
        .listen
        .parse()
        .map_err(|e| format!("--listen {:?}: {e} (e.g. 0.0.0.0:7443)", a.listen))?;
    if a.plain && !addr.ip().is_loopback() {
        return Err(format!(
            "--plain serves plain HTTP, which is only allowed on a loopback address, not {addr}"
        ));
    }
    let scheme = if a.plain { "http" } else { "https" };
    let public_url = match a.public_url {
        Some(u) => {
            let u = u.trim_end_matches('/').to_string();
            if !u.starts_with(&format!("{scheme}://")) {
                return Err(format!("--public-url must start with {scheme}://"));
            }
            u
        }
        None if addr.ip().is_unspecified() => {
            format!("{scheme}://{}:{}", hostname(), addr.port())
        }
        None => format!("{scheme}://{addr}"),
    };
    let host = public_url
        .split_once("://")
        .map(|x| x.1)
        .unwrap_or("")
        .rsplit_once(':')
        .map(|x| x.0)
        .unwrap_or("")
        .trim_matches(|c| c == '[' || c == ']')
        .to_string();
    std::fs::create_dir_all(dir).map_err(|e| format!("cannot make {}: {e}", dir.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700));
    }
    let tls = if a.plain {
        None
    } else {
        let mut names = vec![host.clone(), "localhost".into(), "127.0.0.1".into()];
        if !addr.ip().is_unspecified() {
            names.push(addr.ip().to_string());
        }
        names.retain(|n| !n.is_empty());
        names.dedup();
        let (cert, key) = crate::tls::self_signed(&names)?;
        crate::config::write_private(&dir.join("cert.pem"), cert.as_bytes())?;
        crate::config::write_private(&dir.join("key.pem"), key.as_bytes())?;
        Some(TlsFiles {
            cert: "cert.pem".into(),
            key: "key.pem".into(),
            pin: true,
        })
    };
    let cfg = HubConfig {
        hub_id: ids::uuid4(),
        database: a.database.clone(),
        listen: addr.to_string(),
        public_url,
        tls,
        heartbeat_secs: 15,
        wx_listen: None,
        wx_api_timeout_ms: None,
    };
    let db = Db::open(&cfg.database(dir)?, Bus::new())
        .await
        .map_err(|e| format!("database: {}", e.message))?;
    let (hub_id, org, owner, lib) = (
        cfg.hub_id.clone(),
        a.org.clone(),
        a.owner.clone(),
        a.library.clone(),
    );
    let now = now_ms();
    let made = run!(&db, write, |tx| ops::init(
        tx, &hub_id, &org, &owner, &lib, now
    ))
    .map_err(e)?;
    cfg.save(dir)?;
    let (base, fp) = crate::server::invite_parts(dir, &cfg)?;
    say(&format!(
        "quiver hub: made hub {} in {} ({}), library {:?} ({}), owner {:?}",
        cfg.hub_id,
        dir.display(),
        db.backend(),
        a.library,
        made.library_id,
        a.owner
    ));
    say("Start it with `quiver hub serve --dir DIR`; on the owner's machine run `quiver team join INVITE` with this single-use invite (valid 72 h):");
    out(&crate::server::invite_text(
        &base,
        fp.as_deref(),
        &made.invite_code,
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn ages() {
        assert_eq!(super::parse_age("72h"), Ok(72 * 3600));
        assert_eq!(super::parse_age("90s"), Ok(90));
        assert_eq!(super::parse_age("7d"), Ok(7 * 86400));
        assert!(super::parse_age("7").is_err());
        assert!(super::parse_age("h").is_err());
    }
}
