//! `quiver conversations ...`: WeChat customer-service conversations for automation (list,
//! show, reply with a template, take, assign). Every command asks the running daemon (started
//! when needed), whose `wx.*` methods talk to the hub (docs/conversations.md).

use crate::args::out;
use crate::client::{CallError, Client};
use crate::paths::{Env, Locations};
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

#[derive(Debug, Subcommand)]
pub enum ConvCmd {
    /// The conversations: customer, assignee, unread, quota left and window, last message
    List {
        /// mine (assigned to you), open (nobody's) or all
        #[arg(long, value_name = "SCOPE", default_value = "all", value_parser = ["mine", "open", "all"])]
        scope: String,
        /// The list as JSON (wx.conversations)
        #[arg(long)]
        json: bool,
    },
    /// One conversation and its messages, oldest first
    Show {
        /// The conversation's id (from `list`)
        id: String,
        /// Only messages after this message id
        #[arg(long, value_name = "MESSAGE_ID", default_value_t = 0)]
        after: u64,
        /// At most this many messages (1 to 500)
        #[arg(long, value_name = "N", default_value_t = 100)]
        limit: u32,
        /// {"conversation": ..., "messages": [...]} as JSON
        #[arg(long)]
        json: bool,
    },
    /// Reply with a template, rendered for WeChat with the customer's OpenID
    Reply {
        id: String,
        /// The template's id
        template: String,
        /// The template's library (default: your personal library, `local`)
        #[arg(long, value_name = "LIBRARY")]
        library: Option<String>,
        /// A variable's value, e.g. --var order.id=123 (repeatable)
        #[arg(long = "var", value_name = "KEY=VALUE", value_parser = key_value)]
        vars: Vec<(String, String)>,
        /// The idempotency key: the same key again never sends twice (default: a new one)
        #[arg(long, value_name = "KEY")]
        key: Option<String>,
        /// Wait at most this many seconds for every part's outcome (0: print what the hub
        /// answered at once)
        #[arg(long, value_name = "SECS", default_value_t = 30)]
        wait: u64,
        /// The wx.reply result (with the parts' last known states) as JSON
        #[arg(long)]
        json: bool,
    },
    /// Take a conversation (assign it to yourself)
    Take {
        id: String,
        /// Take it even from another agent
        #[arg(long)]
        force: bool,
        #[arg(long)]
        json: bool,
    },
    /// Hand a conversation over to another agent, or release it to nobody
    Assign {
        id: String,
        /// The agent's user name at the hub
        #[arg(
            value_name = "USER",
            required_unless_present = "release",
            conflicts_with = "release"
        )]
        user: Option<String>,
        /// Assign it to nobody (back to the open list)
        #[arg(long)]
        release: bool,
        #[arg(long)]
        json: bool,
    },
}

fn key_value(v: &str) -> Result<(String, String), String> {
    v.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{v:?} is not KEY=VALUE"))
}

fn say(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}

/// A failure: exit 1, the daemon's error on stderr (with its code, for scripts).
fn failed(code: &str, msg: impl std::fmt::Display) -> ExitCode {
    say(&format!("quiver conversations: {msg} ({code})"));
    ExitCode::FAILURE
}

fn connect() -> Result<Client, String> {
    let loc = Locations::resolve(&Env::from_process()).map_err(|e| e.to_string())?;
    Client::connect(&loc, true).map_err(|e| e.to_string())
}

/// A call: the result, or (code, message).
fn call(c: &mut Client, method: &str, params: Value) -> Result<Value, (String, String)> {
    c.call(method, params).map_err(|e| match e {
        CallError::Daemon(e) => (e.code.as_str().to_string(), e.message),
        CallError::Io(e) => ("io".to_string(), e),
    })
}

fn s(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// `4 left` / `-`; a refusal as `closed (45015)` or `used up (45047)`.
pub fn quota_left(q: &Value) -> String {
    if let Some(r) = q.get("refusal").filter(|r| !r.is_null()) {
        return match r["errcode"].as_u64() {
            Some(45015) => "closed (45015)".into(),
            Some(45047) => "used up (45047)".into(),
            Some(c) => format!("refused ({c})"),
            None => "refused".into(),
        };
    }
    match q["left"].as_u64() {
        Some(n) => format!("{n} left"),
        None => "-".into(),
    }
}

/// Time until the window closes: `47h`, `12m`, `closed`.
pub fn window(q: &Value, now: u64) -> String {
    match q["window_ends_ms"].as_u64() {
        None => "-".into(),
        Some(end) if end <= now => "closed".into(),
        Some(end) => {
            let left = end - now;
            if left >= 3_600_000 {
                format!("{}h", left / 3_600_000)
            } else {
                format!("{}m", left.div_ceil(60_000))
            }
        }
    }
}

/// `2026-12-06 03:40:01` (UTC).
pub fn when(ms: &Value) -> String {
    let Some(ms) = ms.as_i64() else {
        return "-".into();
    };
    let secs = ms.div_euclid(1000);
    let (days, rest) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = quiver_shared::date::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rest / 3600,
        rest % 3600 / 60,
        rest % 60
    )
}

fn one_line(t: &str, max: usize) -> String {
    let t = t.replace(['\n', '\r'], " ");
    if t.chars().count() <= max {
        t
    } else {
        let mut c: String = t.chars().take(max.saturating_sub(1)).collect();
        c.push('…');
        c
    }
}

fn table(head: &[&str], rows: &[Vec<String>]) -> String {
    let mut w: Vec<usize> = head.iter().map(|h| h.chars().count()).collect();
    for r in rows {
        for (i, c) in r.iter().enumerate() {
            w[i] = w[i].max(c.chars().count());
        }
    }
    let line = |cells: &[String]| -> String {
        let mut l = String::new();
        for (i, c) in cells.iter().enumerate() {
            if i + 1 == cells.len() {
                l.push_str(c);
            } else {
                let pad = w[i].saturating_sub(c.chars().count());
                l.push_str(c);
                l.push_str(&" ".repeat(pad + 2));
            }
        }
        l.trim_end().to_string()
    };
    let mut out = vec![line(
        &head.iter().map(|h| h.to_string()).collect::<Vec<_>>(),
    )];
    for r in rows {
        out.push(line(r));
    }
    out.join("\n")
}

/// The list as a table.
pub fn render_list(list: &Value, now: u64) -> String {
    let convs = list["conversations"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if convs.is_empty() {
        return "no conversations".into();
    }
    let rows: Vec<Vec<String>> = convs
        .iter()
        .map(|c| {
            let last = &c["last"];
            vec![
                s(&c["id"]),
                s(&c["app"]),
                s(&c["openid"]),
                s(&c["assignee"]),
                s(&c["unread"]),
                quota_left(&c["quota"]),
                window(&c["quota"], now),
                if last.is_null() {
                    "-".into()
                } else {
                    format!(
                        "{}: {}",
                        s(&last["dir"]),
                        one_line(&s(&last["preview"]), 40)
                    )
                },
            ]
        })
        .collect();
    table(
        &[
            "ID", "APP", "CUSTOMER", "ASSIGNEE", "UNREAD", "QUOTA", "WINDOW", "LAST",
        ],
        &rows,
    )
}

/// What a message says, on one line.
fn message_text(m: &Value) -> String {
    let d = &m["display"];
    let t = match (m["kind"].as_str(), d["kind"].as_str()) {
        (_, Some("text")) => s(&d["text"]),
        (_, Some("image")) => format!("[image {}]", s(&d["media_id"])),
        (_, Some("news")) => format!(
            "[link {} {}]",
            s(&d["articles"][0]["title"]),
            s(&d["articles"][0]["url"])
        ),
        (_, Some("miniprogram")) => {
            format!("[card {} {}]", s(&d["title"]), s(&d["pagepath"]))
        }
        (Some("enter"), _) => format!("[entered the session {}]", s(&m["text"])),
        (Some("event"), _) => format!("[event {}]", s(&m["text"])),
        (k, _) => format!("[{}]", k.unwrap_or("?")),
    };
    one_line(&t, 200)
}

/// One conversation and its messages.
pub fn render_thread(conv: &Value, msgs: &[Value], now: u64) -> String {
    let mut out = vec![format!(
        "conversation {} (app {}, customer {}, assignee {}, {})",
        s(&conv["id"]),
        s(&conv["app"]),
        s(&conv["openid"]),
        s(&conv["assignee"]),
        s(&conv["state"]),
    )];
    if let Some(from) = conv["session_from_raw"].as_str().filter(|x| !x.is_empty()) {
        out.push(format!("session from: {from}"));
    }
    out.push(format!(
        "quota: {}, window {}",
        quota_left(&conv["quota"]),
        window(&conv["quota"], now)
    ));
    for m in msgs {
        let mut line = format!(
            "#{} {} {:<3} {}",
            s(&m["id"]),
            when(&m["at_ms"]),
            s(&m["dir"]),
            message_text(m)
        );
        if let Some(st) = m["state"].as_str() {
            line.push_str(&format!(" [{st}"));
            if let Some(e) = m["error"].as_str() {
                line.push_str(&format!(": {e}"));
            }
            line.push(']');
        }
        if let Some(by) = m["by"].as_str() {
            line.push_str(&format!(" by {by}"));
        }
        out.push(line);
    }
    out.join("\n")
}

/// A part's state the hub will not change any more.
fn final_state(m: &Value) -> bool {
    matches!(
        m["state"].as_str(),
        Some("sent" | "failed" | "unknown" | "cancelled") | None
    )
}

fn pretty(v: &Value) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default()
}

fn fresh_key() -> String {
    format!("cli-{}", uuid::Uuid::now_v7())
}

pub fn run(cmd: ConvCmd) -> ExitCode {
    let mut c = match connect() {
        Ok(c) => c,
        Err(e) => return failed("io", e),
    };
    let now = now_ms();
    match cmd {
        ConvCmd::List { scope, json } => {
            match call(&mut c, "wx.conversations", json!({ "scope": scope })) {
                Ok(v) if json => out(&pretty(&v)),
                Ok(v) => out(&render_list(&v, now)),
                Err((code, e)) => return failed(&code, e),
            }
            ExitCode::SUCCESS
        }
        ConvCmd::Show {
            id,
            after,
            limit,
            json,
        } => {
            let conv = match call(&mut c, "wx.conversation", json!({ "id": id })) {
                Ok(v) => v,
                Err((code, e)) => return failed(&code, e),
            };
            let msgs = match call(
                &mut c,
                "wx.messages",
                json!({ "id": id, "after": after, "limit": limit }),
            ) {
                Ok(v) => v["messages"].as_array().cloned().unwrap_or_default(),
                Err((code, e)) => return failed(&code, e),
            };
            if json {
                out(&pretty(&json!({ "conversation": conv, "messages": msgs })));
            } else {
                out(&render_thread(&conv, &msgs, now));
            }
            ExitCode::SUCCESS
        }
        ConvCmd::Reply {
            id,
            template,
            library,
            vars,
            key,
            wait,
            json,
        } => {
            let key = key.unwrap_or_else(fresh_key);
            let mut p = json!({
                "id": id,
                "template": template,
                "idempotency_key": key,
                "values": vars
                    .into_iter()
                    .map(|(k, v)| (k, Value::String(v)))
                    .collect::<serde_json::Map<String, Value>>(),
            });
            if let Some(l) = library {
                p["library"] = json!(l);
            }
            let mut r = match call(&mut c, "wx.reply", p) {
                Ok(r) => r,
                Err((code, e)) => return failed(&code, e),
            };
            let mut msgs = r["messages"].as_array().cloned().unwrap_or_default();
            // the hub sends in the background: wait for each part's outcome
            let until = std::time::Instant::now() + std::time::Duration::from_secs(wait);
            while msgs.iter().any(|m| !final_state(m)) && std::time::Instant::now() < until {
                std::thread::sleep(std::time::Duration::from_millis(200));
                let first = msgs
                    .iter()
                    .filter_map(|m| m["id"].as_u64())
                    .min()
                    .unwrap_or(1);
                let got = match call(
                    &mut c,
                    "wx.messages",
                    json!({ "id": id, "after": first - 1, "limit": 500 }),
                ) {
                    Ok(v) => v["messages"].as_array().cloned().unwrap_or_default(),
                    Err((code, e)) => return failed(&code, e),
                };
                for m in msgs.iter_mut() {
                    if let Some(now) = got.iter().find(|g| g["id"] == m["id"]) {
                        *m = now.clone();
                    }
                }
            }
            r["messages"] = Value::Array(msgs.clone());
            let bad = msgs.iter().any(|m| m["state"] != "sent");
            if json {
                out(&pretty(&r));
            } else {
                for (i, m) in msgs.iter().enumerate() {
                    let mut line = format!(
                        "part {} {}: {} (message {})",
                        m["part"].as_u64().unwrap_or(i as u64),
                        s(&r["parts"][i]["kind"]),
                        s(&m["state"]),
                        s(&m["id"])
                    );
                    if let Some(e) = m["error"].as_str() {
                        line.push_str(&format!(": {e}"));
                    }
                    out(&line);
                }
                out(&format!("key {key}"));
            }
            if bad {
                ExitCode::FAILURE
            } else {
                ExitCode::SUCCESS
            }
        }
        ConvCmd::Take { id, force, json } => {
            match call(&mut c, "wx.take", json!({ "id": id, "force": force })) {
                Ok(v) if json => out(&pretty(&v)),
                Ok(v) => out(&format!(
                    "conversation {id} is yours{}",
                    match v["assignee"].as_str() {
                        Some(a) => format!(" ({a})"),
                        None => String::new(),
                    }
                )),
                Err((code, e)) => return failed(&code, e),
            }
            ExitCode::SUCCESS
        }
        ConvCmd::Assign {
            id,
            user,
            release,
            json,
        } => {
            let to = if release { Value::Null } else { json!(user) };
            match call(&mut c, "wx.assign", json!({ "id": id, "to": to })) {
                Ok(v) if json => out(&pretty(&v)),
                Ok(_) => out(&match user.filter(|_| !release) {
                    Some(u) => format!("conversation {id} is assigned to {u}"),
                    None => format!("conversation {id} is assigned to nobody"),
                }),
                Err((code, e)) => return failed(&code, e),
            }
            ExitCode::SUCCESS
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quota_window_and_times_read_plainly() {
        let now = 1_000_000_000;
        let q = json!({"left": 4, "window_ends_ms": now + 47 * 3_600_000 + 5, "refusal": null});
        assert_eq!(
            (quota_left(&q), window(&q, now)),
            ("4 left".into(), "47h".into())
        );
        let q = json!({"left": 0, "window_ends_ms": now - 1, "refusal": {"errcode": 45015}});
        assert_eq!(
            (quota_left(&q), window(&q, now)),
            ("closed (45015)".into(), "closed".into())
        );
        assert_eq!(window(&json!({"window_ends_ms": now + 61_000}), now), "2m");
        assert_eq!(quota_left(&json!({"left": null})), "-");
        assert_eq!(when(&json!(0)), "1970-01-01 00:00:00");
        assert_eq!(when(&json!(1_795_239_904_000_i64)), "2026-11-21 05:45:04");
    }

    #[test]
    fn a_list_is_a_table() {
        let l = json!({"conversations": [{"id": "c1", "app": "shop", "openid": "o1",
            "assignee": null, "unread": 2, "quota": {"left": 5, "window_ends_ms": null, "refusal": null},
            "last": {"dir": "in", "preview": "hello\nthere"}}]});
        let t = render_list(&l, 0);
        let lines: Vec<&str> = t.lines().collect();
        assert!(lines[0].starts_with("ID  APP   CUSTOMER"), "{t}");
        assert!(
            lines[1].contains("c1  shop  o1") && lines[1].ends_with("in: hello there"),
            "{t}"
        );
        assert_eq!(
            render_list(&json!({"conversations": []}), 0),
            "no conversations"
        );
    }
}
