//! `quiver team ...`: join a team hub, see the sync state, the conflicts, resolve one, sync
//! now, leave. Every command talks to the running daemon (started when needed), which does the
//! work: the daemon alone talks to the hub.

use crate::args::out;
use crate::client::{CallError, Client};
use crate::paths::{Env, Locations};
use clap::Subcommand;
use serde_json::{json, Map, Value};
use std::io::Write;
use std::process::ExitCode;
use std::time::Duration;

#[derive(Debug, Subcommand)]
pub enum TeamCmd {
    /// Join a team hub with the invite `quiver hub invite` printed, then pull its libraries
    Join {
        /// quiver+https://HOST:PORT/join#CODE.FINGERPRINT
        invite: String,
        /// How the team sees this device (default: user@host)
        #[arg(long, value_name = "DEVICE")]
        name: Option<String>,
    },
    /// Per team library: role, hub sequence, local cursor, outbox, digest match, connection
    Status {
        /// The status as JSON (team.status)
        #[arg(long)]
        json: bool,
        /// Ask the hubs now (reachability, certificate, token, digests) instead of reporting
        /// what the daemon last saw
        #[arg(long)]
        probe: bool,
    },
    /// The open conflicts: template, fields, both sides and who wrote them when
    Conflicts {
        #[arg(long)]
        json: bool,
        /// Only this library (name or id)
        #[arg(long, value_name = "LIBRARY")]
        library: Option<String>,
    },
    /// Resolve a conflict of LIBRARY/TEMPLATE: keep head, other, both (the other side as a new
    /// template), or a side per field
    #[command(long_about = RESOLVE_ABOUT)]
    Resolve {
        /// LIBRARY/TEMPLATE (library name or id, template id)
        target: String,
        /// head, other or both
        #[arg(long, value_name = "SIDE")]
        take: Option<String>,
        /// FIELD=head|other (title, folder, shortcut, tags, variables, parts); repeatable;
        /// fields not named keep head
        #[arg(long = "field", value_name = "FIELD=SIDE")]
        fields: Vec<String>,
        /// The conflict's id, when the template has several
        #[arg(long, value_name = "ID")]
        conflict: Option<String>,
    },
    /// Push and pull now, and wait until every library is idle
    Sync {
        /// Wait at most this many seconds
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        wait: u64,
        #[arg(long)]
        json: bool,
    },
    /// The edits waiting for review in LIBRARY (a maintainer sees every one, an editor their own)
    Proposals {
        /// The library's name or id
        library: String,
        #[arg(long)]
        json: bool,
    },
    /// Approve a proposal: it lands as if it had been pushed now (maintainers and owners)
    Approve {
        /// The library's name or id
        library: String,
        /// The proposal's revision id (from `quiver team proposals`)
        rev_id: String,
    },
    /// Reject a proposal: the team keeps its version; the author's history keeps the rejected
    /// revision (maintainers and owners)
    Reject {
        /// The library's name or id
        library: String,
        /// The proposal's revision id (from `quiver team proposals`)
        rev_id: String,
    },
    /// Leave a team hub: its libraries are removed from this device (send history stays)
    Leave {
        /// The hub's id or URL (when this device joined several)
        #[arg(long, value_name = "HUB")]
        hub: Option<String>,
        /// Leave even though edits were not pushed yet (they are lost)
        #[arg(long)]
        force: bool,
    },
}

const RESOLVE_ABOUT: &str = "\
Resolves a kept conflict of LIBRARY/TEMPLATE. The resolution is a revision with both versions as
its parents; the conflict closes once the hub has it (quiver team sync).
  --take head        keep the version that reached the hub first
  --take other       keep the other version
  --take both        keep head, and the other version as a new template (greeting-2)
  --field title=other --field tags=other
                     head, with these fields from the other version
Needs the editor role or above.";

fn say(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}

fn failed(msg: impl std::fmt::Display) -> ExitCode {
    say(&format!("quiver team: {msg}"));
    ExitCode::FAILURE
}

fn usage(msg: impl std::fmt::Display) -> ExitCode {
    say(&format!("quiver team: {msg}"));
    ExitCode::from(2)
}

fn connect() -> Result<Client, String> {
    let loc = Locations::resolve(&Env::from_process()).map_err(|e| e.to_string())?;
    Client::connect(&loc, true).map_err(|e| e.to_string())
}

fn call(c: &mut Client, method: &str, params: Value) -> Result<Value, String> {
    c.call(method, params).map_err(|e| match e {
        CallError::Daemon(e) => e.message,
        CallError::Io(e) => e,
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: Vec<String>| -> String {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                l.push_str(&format!("{c:<width$}  ", width = w[i]));
            }
        }
        l.trim_end().to_string()
    };
    let mut out = vec![line(head.iter().map(|h| h.to_string()).collect())];
    for r in rows {
        out.push(line(r.clone()));
    }
    out.join("\n")
}

fn age(ms: &Value) -> String {
    match ms.as_u64() {
        None => "-".into(),
        Some(ms) if ms < 1000 => format!("{ms}ms"),
        Some(ms) if ms < 120_000 => format!("{}s", ms / 1000),
        Some(ms) if ms < 7_200_000 => format!("{}m", ms / 60_000),
        Some(ms) => format!("{}h", ms / 3_600_000),
    }
}

fn digest_word(v: &Value) -> &'static str {
    match v.as_bool() {
        Some(true) => "match",
        Some(false) => "DIFFERS",
        None => "-",
    }
}

/// The status as a table: one line per library, then the hubs.
pub fn render_status(st: &Value) -> String {
    let libs = st["libraries"].as_array().cloned().unwrap_or_default();
    let hubs = st["hubs"].as_array().cloned().unwrap_or_default();
    if hubs.is_empty() {
        return "this device has not joined a team hub (quiver team join INVITE)".into();
    }
    let rows: Vec<Vec<String>> = libs
        .iter()
        .map(|l| {
            vec![
                s(&l["name"]),
                s(&l["role"]),
                s(&l["head_seq"]),
                s(&l["cursor"]),
                s(&l["outbox"]),
                age(&l["oldest_outbox_ms"]),
                s(&l["conflicts"]),
                s(&l["drafts"]),
                digest_word(&l["digest_match"]).to_string(),
                s(&l["state"]),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "LIBRARY",
            "ROLE",
            "HUB SEQ",
            "CURSOR",
            "OUTBOX",
            "OLDEST",
            "CONFLICTS",
            "DRAFTS",
            "DIGEST",
            "STATE",
        ],
        &rows,
    );
    for h in &hubs {
        out.push_str(&format!(
            "\nhub {} ({}) as {} on device {}: {}{}",
            s(&h["url"]),
            s(&h["hub_id"]),
            s(&h["user_name"]),
            s(&h["device_name"]),
            s(&h["state"]),
            match h["last_error"].as_str() {
                Some(e) => format!(" ({e})"),
                None => String::new(),
            }
        ));
    }
    out
}

/// The library id named by `name_or_id` in a status.
fn library_id(st: &Value, name_or_id: &str) -> Option<String> {
    let libs = st["libraries"].as_array()?;
    libs.iter()
        .find(|l| l["id"] == name_or_id)
        .or_else(|| libs.iter().find(|l| l["name"] == name_or_id))
        .and_then(|l| l["id"].as_str().map(str::to_string))
}

/// The id of the team library named `name_or_id`, or the exit code of the failure (said).
fn resolve_library(c: &mut Client, name_or_id: &str) -> Result<String, ExitCode> {
    let st = call(c, "team.status", json!({})).map_err(failed)?;
    library_id(&st, name_or_id).ok_or_else(|| usage(format!("no team library {name_or_id:?}")))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `team.proposals` as lines: revision, template, author, how long ago.
fn render_proposals(r: &Value) -> String {
    let list = r["proposals"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no proposals waiting for review".into();
    }
    let mut out = format!("{} proposals waiting for review:", list.len());
    for p in &list {
        let rev = &p["revision"];
        let title = rev["body"]["title"].as_str().unwrap_or("");
        out.push_str(&format!(
            "\n  {}  {} {}{}  by {}, {}",
            s(&rev["rev_id"]),
            s(&rev["op"]),
            s(&rev["template"]),
            if title.is_empty() {
                String::new()
            } else {
                format!(" \"{title}\"")
            },
            s(&p["author"]["user_name"]),
            match p["received_at_ms"].as_u64() {
                Some(at) => format!("{} ago", age(&json!(now_ms().saturating_sub(at)))),
                None => "-".into(),
            },
        ));
    }
    out
}

/// `team.review`: approve or reject, and say where it landed.
fn review(c: &mut Client, library: &str, rev_id: &str, approve: bool) -> ExitCode {
    let id = match resolve_library(c, library) {
        Ok(id) => id,
        Err(code) => return code,
    };
    let p = json!({ "library": id, "rev_id": rev_id, "approve": approve });
    match call(c, "team.review", p) {
        Ok(r) => {
            let outcome = r["result"]["status"]
                .as_str()
                .or_else(|| r["state"].as_str())
                .unwrap_or("done");
            out(&format!(
                "{} {rev_id}: {outcome}",
                if approve { "approved" } else { "rejected" }
            ));
            ExitCode::SUCCESS
        }
        Err(e) => failed(e),
    }
}

/// Splits LIBRARY/TEMPLATE where LIBRARY (a name or an id, which may hold a `/`) is a known
/// library.
fn split_target(st: &Value, target: &str) -> Option<(String, String)> {
    let mut best: Option<(String, String)> = None;
    for (i, _) in target.match_indices('/') {
        let (lib, tpl) = (&target[..i], &target[i + 1..]);
        if tpl.is_empty() {
            continue;
        }
        if let Some(id) = library_id(st, lib) {
            best = Some((id, tpl.to_string()));
        }
    }
    best
}

/// The `take` param of `team.resolve` from `--take` and `--field`s.
fn take_param(take: Option<&str>, fields: &[String]) -> Result<Value, String> {
    let mut map = Map::new();
    for f in fields {
        let (k, v) = f
            .split_once('=')
            .ok_or_else(|| format!("--field {f:?}: FIELD=head or FIELD=other"))?;
        if v != "head" && v != "other" {
            return Err(format!("--field {f:?}: the side is head or other"));
        }
        map.insert(k.to_string(), json!(v));
    }
    match (take, map.is_empty()) {
        (Some(t @ ("head" | "other" | "both")), true) => Ok(json!(t)),
        (Some("head"), false) | (None, false) => Ok(Value::Object(map)),
        (Some(t @ ("other" | "both")), false) => Err(format!(
            "--take {t} with --field: fields are taken over head (--take head or no --take)"
        )),
        (Some(t), _) => Err(format!("--take {t:?}: head, other or both")),
        (None, true) => Err("say what to keep: --take head|other|both or --field F=SIDE".into()),
    }
}

pub fn run(cmd: TeamCmd) -> ExitCode {
    let mut c = match connect() {
        Ok(c) => c,
        Err(e) => return failed(e),
    };
    match cmd {
        TeamCmd::Join { invite, name } => {
            let mut p = json!({ "invite": invite });
            if let Some(n) = name {
                p["device_name"] = json!(n);
            }
            let r = match call(&mut c, "team.join", p) {
                Ok(r) => r,
                Err(e) => return failed(format!("join: {e}")),
            };
            let libs: Vec<String> = r["libraries"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .map(|l| format!("{} ({})", s(&l["name"]), s(&l["role"])))
                        .collect()
                })
                .unwrap_or_default();
            out(&format!(
                "joined {} as {} (device {}): {}",
                s(&r["url"]),
                s(&r["user_name"]),
                s(&r["device_name"]),
                if libs.is_empty() {
                    "no library yet".to_string()
                } else {
                    libs.join(", ")
                }
            ));
            sync(&mut c, 60, false)
        }
        TeamCmd::Status { json, probe } => {
            match call(&mut c, "team.status", json!({ "probe": probe })) {
                Ok(st) if json => {
                    out(&serde_json::to_string_pretty(&st).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(st) => {
                    out(&render_status(&st));
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        TeamCmd::Conflicts { json, library } => {
            let mut p = json!({});
            if let Some(l) = library {
                let st = match call(&mut c, "team.status", json!({})) {
                    Ok(st) => st,
                    Err(e) => return failed(e),
                };
                match library_id(&st, &l) {
                    Some(id) => p["library"] = json!(id),
                    None => return usage(format!("no team library {l:?}")),
                }
            }
            match call(&mut c, "team.conflicts", p) {
                Ok(r) if json => {
                    out(&serde_json::to_string_pretty(&r).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    out(&render_conflicts(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        TeamCmd::Resolve {
            target,
            take,
            fields,
            conflict,
        } => {
            let take = match take_param(take.as_deref(), &fields) {
                Ok(t) => t,
                Err(e) => return usage(e),
            };
            let st = match call(&mut c, "team.status", json!({})) {
                Ok(st) => st,
                Err(e) => return failed(e),
            };
            let Some((library, template)) = split_target(&st, &target) else {
                return usage(format!(
                    "{target:?} is not LIBRARY/TEMPLATE with a team library (see quiver team status)"
                ));
            };
            let mut p = json!({ "library": library, "template": template, "take": take });
            if let Some(id) = conflict {
                p["conflict"] = json!(id);
            }
            match call(&mut c, "team.resolve", p) {
                Ok(r) => {
                    let mut msg = format!(
                        "resolved: {} is revision {} ({})",
                        template,
                        s(&r["revision"]),
                        s(&r["rev_id"])
                    );
                    if let Some(f) = r["fork"].as_object() {
                        msg.push_str(&format!(
                            "; the other version is kept as {}",
                            s(&f["id"].clone())
                        ));
                    }
                    out(&msg);
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        TeamCmd::Sync { wait, json } => sync(&mut c, wait, json),
        TeamCmd::Proposals { library, json } => {
            let id = match resolve_library(&mut c, &library) {
                Ok(id) => id,
                Err(code) => return code,
            };
            match call(&mut c, "team.proposals", json!({ "library": id })) {
                Ok(r) if json => {
                    out(&serde_json::to_string_pretty(&r).unwrap_or_default());
                    ExitCode::SUCCESS
                }
                Ok(r) => {
                    out(&render_proposals(&r));
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
        TeamCmd::Approve { library, rev_id } => review(&mut c, &library, &rev_id, true),
        TeamCmd::Reject { library, rev_id } => review(&mut c, &library, &rev_id, false),
        TeamCmd::Leave { hub, force } => {
            let mut p = json!({ "force": force });
            if let Some(h) = hub {
                p["hub"] = json!(h);
            }
            match call(&mut c, "team.leave", p) {
                Ok(r) => {
                    out(&format!(
                        "left hub {}; removed {} libraries from this device",
                        s(&r["hub_id"]),
                        r["libraries"].as_array().map_or(0, Vec::len)
                    ));
                    if r["revoked"] == json!(true) {
                        out("the hub revoked this device's token");
                    } else if r["revoked"] == json!(false) {
                        out(&format!(
                            "warning: the hub did not revoke this device's token ({}); an \
                             administrator can: quiver hub device revoke",
                            s(&r["revoke_error"])
                        ));
                    }
                    ExitCode::SUCCESS
                }
                Err(e) => failed(e),
            }
        }
    }
}

/// `team.sync`, then the status; exit 1 when not idle in time.
fn sync(c: &mut Client, wait_secs: u64, json: bool) -> ExitCode {
    let wait_ms = wait_secs
        .saturating_mul(1000)
        .min(crate::params::MAX_SYNC_WAIT_MS);
    c.set_wait(Duration::from_millis(wait_ms) + Duration::from_secs(30));
    match call(c, "team.sync", json!({ "wait_ms": wait_ms })) {
        Ok(st) => {
            if json {
                out(&serde_json::to_string_pretty(&st).unwrap_or_default());
            } else {
                out(&render_status(&st));
            }
            if st["idle"] == true {
                ExitCode::SUCCESS
            } else {
                let errors: Vec<String> = st["errors"]
                    .as_array()
                    .map(|a| a.iter().map(|e| s(&e["error"])).collect())
                    .unwrap_or_default();
                failed(format!(
                    "not in sync after {wait_secs} s{}",
                    if errors.is_empty() {
                        String::new()
                    } else {
                        format!(": {}", errors.join("; "))
                    }
                ))
            }
        }
        Err(e) => failed(e),
    }
}

fn side_line(side: &Value) -> String {
    let who = s(&side["author"]);
    let at = side["at"]
        .as_i64()
        .map(|t| {
            crate::log::timestamp(
                std::time::UNIX_EPOCH + Duration::from_millis(u64::try_from(t).unwrap_or(0)),
            )
        })
        .unwrap_or_else(|| "-".into());
    if side["op"] == "delete" {
        format!("deleted by {who} at {at}")
    } else {
        format!("{who} at {at}")
    }
}

fn field_value(side: &Value, field: &str) -> String {
    let t = &side["template"];
    if side["op"] == "delete" {
        return "(deleted)".into();
    }
    let v = &t[field];
    let text = match v {
        Value::String(x) => x.clone(),
        Value::Null => "-".into(),
        v => v.to_string(),
    };
    let mut short: String = text.chars().take(70).collect();
    if text.chars().count() > 70 {
        short.push('…');
    }
    short
}

/// The conflicts, one block each.
pub fn render_conflicts(r: &Value) -> String {
    let list = r["conflicts"].as_array().cloned().unwrap_or_default();
    if list.is_empty() {
        return "no open conflicts".into();
    }
    let mut out = vec![];
    for c in &list {
        let mut b = format!(
            "{}/{}  conflict {}{}\n  head:  {}\n  other: {}",
            s(&c["library_name"]),
            s(&c["template"]),
            s(&c["conflict"]),
            if c["resolving"].is_string() {
                "  (resolution waiting to be pushed)"
            } else {
                ""
            },
            side_line(&c["head"]),
            side_line(&c["other"]),
        );
        for f in c["fields"].as_array().cloned().unwrap_or_default() {
            let f = s(&f);
            if f == "deleted" {
                continue;
            }
            b.push_str(&format!(
                "\n  {f}:\n    head:  {}\n    other: {}",
                field_value(&c["head"], &f),
                field_value(&c["other"], &f)
            ));
        }
        out.push(b);
    }
    out.join("\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_fields_make_the_resolve_param() {
        assert_eq!(take_param(Some("both"), &[]).unwrap(), json!("both"));
        assert_eq!(
            take_param(None, &["title=other".into(), "tags=head".into()]).unwrap(),
            json!({"title": "other", "tags": "head"})
        );
        assert_eq!(
            take_param(Some("head"), &["parts=other".into()]).unwrap(),
            json!({"parts": "other"})
        );
        assert!(take_param(Some("other"), &["parts=other".into()]).is_err());
        assert!(take_param(None, &[]).is_err());
        assert!(take_param(None, &["title".into()]).is_err());
        assert!(take_param(Some("mine"), &[]).is_err());
    }

    #[test]
    fn targets_split_at_a_known_library() {
        let st = json!({"libraries": [
            {"id": "0190-aaaa", "name": "team"},
            {"id": "0190-bbbb", "name": "sales/emea"},
        ]});
        assert_eq!(
            split_target(&st, "team/greeting"),
            Some(("0190-aaaa".into(), "greeting".into()))
        );
        assert_eq!(
            split_target(&st, "sales/emea/greeting"),
            Some(("0190-bbbb".into(), "greeting".into()))
        );
        assert_eq!(
            split_target(&st, "0190-aaaa/x"),
            Some(("0190-aaaa".into(), "x".into()))
        );
        assert_eq!(split_target(&st, "nope/x"), None);
        assert_eq!(split_target(&st, "team/"), None);
    }
}
