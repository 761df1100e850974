//! `quiver mcs ...`: turn the 多客服 plugin page on or off, see it, print its URL and key, leave
//! a notice for the agent. Every command talks to the daemon (started when needed), which keeps
//! the settings and starts or stops the page's server at once.

use crate::client::{CallError, Client};
use crate::paths::{Env, Locations};
use clap::Subcommand;
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

#[derive(Debug, Subcommand)]
pub enum McsCmd {
    /// Serve the page on 127.0.0.1 (port 47321 unless --port), now and at every daemon start;
    /// prints the URL to paste in the MP admin
    Enable {
        /// The loopback port (1024-65535); the same for every agent of the account
        #[arg(long, value_name = "N")]
        port: Option<u16>,
    },
    /// Stop serving the page (the settings and key are kept)
    Disable,
    /// On or off, the port, whether it is served, the current customer (never the key)
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Print the page's URL (with the key) to paste in the MP admin
    Url,
    /// Print the page's key, or set it (--set) so that every agent's daemon accepts the same URL
    Key {
        /// 16 to 128 characters from A-Z, a-z, 0-9, - and _
        #[arg(long, value_name = "KEY")]
        set: Option<String>,
    },
    /// Show TEXT on the page and highlight its tab in the client (window.external.Notice)
    Notice { text: String },
}

/// The command's result, on stdout (URLs and keys are read by scripts).
fn out(s: &str) {
    let _ = writeln!(std::io::stdout().lock(), "{s}");
}

fn say(s: &str) {
    let _ = writeln!(std::io::stderr(), "{s}");
}

fn failed(msg: impl std::fmt::Display) -> ExitCode {
    say(&format!("quiver mcs: {msg}"));
    ExitCode::FAILURE
}

fn call(method: &str, params: Value) -> Result<Value, String> {
    let loc = Locations::resolve(&Env::from_process()).map_err(|e| e.to_string())?;
    let mut c = Client::connect(&loc, true).map_err(|e| e.to_string())?;
    c.call(method, params).map_err(|e| match e {
        CallError::Daemon(e) => e.message,
        CallError::Io(e) => e,
    })
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        v => v.to_string(),
    }
}

/// The status for a terminal (no key, no URL).
pub fn render_status(st: &Value) -> String {
    let serving = match (st["listen"].as_str(), st["error"].as_str()) {
        (Some(addr), _) => format!("yes, on http://{addr}/mcs/"),
        (None, Some(e)) => format!("NO: {e}"),
        (None, None) => "no".into(),
    };
    let on = if st["enabled"] == true {
        "on"
    } else {
        "off (quiver mcs enable)"
    };
    format!(
        "多客服 page: {on}\nport:     {}\nserving:  {serving}\ncustomer: {}",
        text(&st["port"]),
        text(&st["customer"]["openid"]),
    )
}

pub fn run(cmd: McsCmd) -> ExitCode {
    let r = match &cmd {
        McsCmd::Enable { port } => {
            let mut p = json!({ "enabled": true });
            if let Some(port) = port {
                p["port"] = json!(port);
            }
            call("mcs.set", p)
        }
        McsCmd::Disable => call("mcs.set", json!({ "enabled": false })),
        McsCmd::Status { .. } => call("mcs.status", json!({})),
        McsCmd::Url => call("mcs.set", json!({})),
        McsCmd::Key { set: Some(k) } => call("mcs.set", json!({ "key": k })),
        McsCmd::Key { set: None } => call("mcs.set", json!({})),
        McsCmd::Notice { text } => call("mcs.notice", json!({ "text": text })),
    };
    let st = match r {
        Ok(v) => v,
        Err(e) => return failed(e),
    };
    match cmd {
        McsCmd::Enable { .. } => {
            if let Some(e) = st["error"].as_str() {
                return failed(format!("enabled, but not served: {e}"));
            }
            out(&text(&st["url"]));
            say("多客服 page on. Paste the URL above in the MP admin: 功能 → 多客服 → 客户端高级设置 → 添加插件.");
        }
        McsCmd::Disable => say("多客服 page off."),
        McsCmd::Status { json: true } => {
            let mut st = st;
            if let Some(m) = st.as_object_mut() {
                m.remove("key");
                m.remove("url");
            }
            out(&st.to_string());
        }
        McsCmd::Status { json: false } => out(&render_status(&st)),
        McsCmd::Url => {
            out(&text(&st["url"]));
            if st["enabled"] != true {
                say("(the page is off: quiver mcs enable)");
            }
        }
        McsCmd::Key { set: Some(_) } => {
            say("key set; the page's URL is now:");
            out(&text(&st["url"]));
        }
        McsCmd::Key { set: None } => out(&text(&st["key"])),
        McsCmd::Notice { .. } => say(&format!("notice {} left for the page", text(&st["seq"]))),
    }
    ExitCode::SUCCESS
}
