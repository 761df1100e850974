//! `quiver hub wx ...`: the owner configures mini programs on the hub's own database (run on the
//! hub's machine, with its directory). Secrets go into the database and are never printed.

use std::path::{Path, PathBuf};

use clap::{Args, Subcommand};
use quiver_shared::wechat::crypto::AesKey;
use quiver_shared::wechat::Format;

use super::ops::{self, App, Mode, Transfer};
use crate::config::HubConfig;
use crate::ids::now_ms;
use crate::pokes::Bus;
use crate::store::Db;

#[derive(Debug, Subcommand)]
pub enum WxCmd {
    /// Add a mini program; prints the push URL and the Token to paste into WeChat's admin
    Add(Box<AddArgs>),
    /// Every mini program (no secrets)
    List {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        #[arg(long)]
        json: bool,
    },
    /// One mini program: settings, agents, token state (no secrets)
    Show {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        name: String,
        #[arg(long)]
        json: bool,
    },
    /// Remove a mini program (its pushes then get 404; conversations stay in the database)
    Remove {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        name: String,
    },
    /// Who answers a mini program: --all, or named users (--add/--remove, repeatable)
    Agents {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        name: String,
        #[arg(long, value_name = "USER")]
        add: Vec<String>,
        #[arg(long, value_name = "USER")]
        remove: Vec<String>,
        /// Every user of the hub answers
        #[arg(long, conflicts_with = "only_listed")]
        all: bool,
        /// Only the listed users answer
        #[arg(long)]
        only_listed: bool,
    },
    /// Get an access token now (shows its state, never the token); --force: a forced refresh
    /// (invalidates the token for everyone else; at most 10 a day, 60 s apart)
    Token {
        #[arg(long, value_name = "DIR")]
        dir: PathBuf,
        name: String,
        #[arg(long)]
        force: bool,
    },
}

#[derive(Debug, Args)]
pub struct AddArgs {
    #[arg(long, value_name = "DIR")]
    pub dir: PathBuf,
    /// A short name: letters, digits, - and _ (the push URL ends with it)
    pub name: String,
    #[arg(long, value_name = "APPID")]
    pub appid: String,
    /// A file holding the AppSecret
    #[arg(long, value_name = "FILE", conflicts_with = "secret_env")]
    pub secret_file: Option<PathBuf>,
    /// An environment variable holding the AppSecret
    #[arg(long, value_name = "VAR")]
    pub secret_env: Option<String>,
    /// The Token of the push settings (3-32 letters and digits)
    #[arg(long, value_name = "TOKEN")]
    pub token: String,
    /// The EncodingAESKey (43 characters; required for compat and safe)
    #[arg(long, value_name = "KEY")]
    pub aes_key: Option<String>,
    /// plain, compat or safe
    #[arg(long, value_name = "MODE")]
    pub mode: String,
    /// xml or json
    #[arg(long, value_name = "FORMAT")]
    pub format: String,
    /// WeChat's API (https, except on 127.0.0.1/localhost)
    #[arg(long, value_name = "URL", default_value = "https://api.weixin.qq.com")]
    pub api_base: String,
    /// never, no_agent, keyword:WORD or always
    #[arg(long, value_name = "POLICY", default_value = "never")]
    pub transfer: String,
    /// all, or user names separated by commas
    #[arg(long, value_name = "WHO", default_value = "all")]
    pub agents: String,
    /// The mini program's original id (gh_...): pushes to another are refused
    #[arg(long, value_name = "ID")]
    pub original_id: Option<String>,
}

fn out(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stdout(), "{s}");
}

fn say(s: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{s}");
}

async fn open(dir: &Path) -> Result<(HubConfig, Db), String> {
    let cfg = HubConfig::load(dir)?;
    let db = Db::open(&cfg.database(dir)?, Bus::new())
        .await
        .map_err(|e| format!("database: {}", e.message))?;
    Ok((cfg, db))
}

/// `--api-base`: https, or http on a loopback name (a local fake).
pub fn check_api_base(u: &str) -> Result<String, String> {
    let u = u.trim().trim_end_matches('/').to_string();
    if u.starts_with("https://") {
        return Ok(u);
    }
    if let Some(rest) = u.strip_prefix("http://") {
        let host = rest.split(['/', '?']).next().unwrap_or("");
        let host = host.rsplit_once(':').map(|x| x.0).unwrap_or(host);
        if matches!(host, "127.0.0.1" | "localhost" | "[::1]") {
            return Ok(u);
        }
    }
    Err(format!(
        "--api-base {u:?}: must be https:// (plain http only on 127.0.0.1 or localhost)"
    ))
}

fn check_name(n: &str) -> Result<(), String> {
    if n.is_empty()
        || n.len() > 64
        || !n
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(format!(
            "name {n:?}: 1-64 letters, digits, - and _ (it ends the push URL)"
        ));
    }
    Ok(())
}

fn secret(a: &AddArgs) -> Result<String, String> {
    let s = match (&a.secret_file, &a.secret_env) {
        (Some(f), _) => {
            std::fs::read_to_string(f).map_err(|e| format!("--secret-file {}: {e}", f.display()))?
        }
        (None, Some(v)) => std::env::var(v).map_err(|_| format!("--secret-env {v}: not set"))?,
        (None, None) => return Err("the AppSecret: --secret-file FILE or --secret-env VAR".into()),
    };
    let s = s.trim().to_string();
    if s.is_empty() {
        return Err("the AppSecret is empty".into());
    }
    Ok(s)
}

fn app_from(a: &AddArgs) -> Result<(App, Vec<String>), String> {
    check_name(&a.name)?;
    let mode = Mode::parse(&a.mode)
        .ok_or_else(|| format!("--mode {:?}: plain, compat or safe", a.mode))?;
    let format = match a.format.as_str() {
        "xml" => Format::Xml,
        "json" => Format::Json,
        f => return Err(format!("--format {f:?}: xml or json")),
    };
    let transfer = Transfer::parse(&a.transfer).ok_or_else(|| {
        format!(
            "--transfer {:?}: never, no_agent, keyword:WORD or always",
            a.transfer
        )
    })?;
    let token = a.token.trim();
    if !(3..=32).contains(&token.len()) || !token.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("--token: 3 to 32 letters and digits (as WeChat's admin requires)".into());
    }
    if a.appid.trim().is_empty() {
        return Err("--appid is empty".into());
    }
    let aes_key = match (&a.aes_key, mode) {
        (Some(k), _) => {
            AesKey::from_encoding_aes_key(k.trim())
                .map_err(|e| format!("--aes-key: {e} (43 characters from WeChat's admin)"))?;
            Some(k.trim().to_string())
        }
        (None, Mode::Plain) => None,
        (None, _) => {
            return Err(format!(
                "--mode {}: needs --aes-key (the EncodingAESKey)",
                mode.as_str()
            ))
        }
    };
    let (agents_all, agents) = if a.agents.trim() == "all" {
        (true, vec![])
    } else {
        (
            false,
            a.agents
                .split(',')
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .collect(),
        )
    };
    Ok((
        App {
            name: a.name.clone(),
            appid: a.appid.trim().to_string(),
            secret: secret(a)?,
            token: token.to_string(),
            aes_key,
            mode,
            format,
            api_base: check_api_base(&a.api_base)?,
            transfer,
            agents_all,
            original_id: a.original_id.clone(),
        },
        agents,
    ))
}

fn app_json(a: &App, agents: (bool, Vec<String>), push_url: &str) -> serde_json::Value {
    serde_json::json!({
        "name": a.name, "appid": a.appid, "mode": a.mode, "format": a.format,
        "api_base": a.api_base, "transfer": a.transfer.as_string(),
        "agents": if agents.0 { serde_json::json!("all") } else { serde_json::json!(agents.1) },
        "original_id": a.original_id, "push_url": push_url,
    })
}

fn push_url(cfg: &HubConfig, name: &str) -> String {
    format!("{}/wx/mp/{name}", cfg.public_url.trim_end_matches('/'))
}

pub async fn run(cmd: WxCmd) -> Result<(), String> {
    let e = |x: crate::error::HubError| x.message;
    match cmd {
        WxCmd::Add(a) => {
            let (app, agents) = app_from(&a)?;
            let (cfg, db) = open(&a.dir).await?;
            let (a2, ag, now) = (app.clone(), agents.clone(), now_ms());
            run!(&db, write, |tx| ops::add_app(tx, &a2, &ag, now)).map_err(e)?;
            say(&format!(
                "quiver hub: added {} ({}, {} mode, {}). In the mini program's admin, 开发 → 开发管理 → 消息推送, enter:",
                app.name,
                app.appid,
                app.mode.as_str(),
                app.format.as_str()
            ));
            out(&format!("URL: {}", push_url(&cfg, &app.name)));
            out(&format!("Token: {}", app.token));
            out(&format!(
                "EncodingAESKey: {}",
                if app.aes_key.is_some() {
                    "(the one you gave --aes-key)"
                } else {
                    "(any; plain mode does not use it)"
                }
            ));
            out(&format!(
                "消息加密方式: {}",
                match app.mode {
                    Mode::Plain => "明文模式 (plain)",
                    Mode::Compat => "兼容模式 (compat)",
                    Mode::Safe => "安全模式 (safe)",
                }
            ));
            out(&format!("数据格式: {}", app.format.as_str().to_uppercase()));
            Ok(())
        }
        WxCmd::List { dir, json } => {
            let (cfg, db) = open(&dir).await?;
            let apps = run!(&db, read, |tx| ops::list_apps(tx)).map_err(e)?;
            let mut all = vec![];
            for a in &apps {
                let n = a.name.clone();
                let ag = run!(&db, read, |tx| ops::app_agents(tx, &n)).map_err(e)?;
                all.push(app_json(a, ag, &push_url(&cfg, &a.name)));
            }
            if json {
                out(
                    &serde_json::to_string_pretty(&serde_json::json!({"apps": all}))
                        .unwrap_or_default(),
                );
            } else {
                for a in &all {
                    out(&format!(
                        "{}  {}  {} {}  transfer {}  agents {}  {}",
                        a["name"].as_str().unwrap_or_default(),
                        a["appid"].as_str().unwrap_or_default(),
                        a["mode"].as_str().unwrap_or_default(),
                        a["format"].as_str().unwrap_or_default(),
                        a["transfer"].as_str().unwrap_or_default(),
                        a["agents"],
                        a["push_url"].as_str().unwrap_or_default()
                    ));
                }
            }
            Ok(())
        }
        WxCmd::Show { dir, name, json } => {
            let (cfg, db) = open(&dir).await?;
            let n = name.clone();
            let app = run!(&db, read, |tx| ops::app(tx, &n)).map_err(e)?;
            let n = name.clone();
            let ag = run!(&db, read, |tx| ops::app_agents(tx, &n)).map_err(e)?;
            let n = name.clone();
            let tok = run!(&db, read, |tx| ops::token_row(tx, &n)).map_err(e)?;
            let mut v = app_json(&app, ag, &push_url(&cfg, &name));
            v["token"] = match tok {
                Some(t) => {
                    serde_json::json!({"generation": t.generation, "fetched_at_ms": t.cached.fetched_at_ms,
                    "expires_at_ms": t.cached.expires_at_ms, "invalid": t.cached.invalid})
                }
                None => serde_json::Value::Null,
            };
            if json {
                out(&serde_json::to_string_pretty(&v).unwrap_or_default());
            } else {
                for (k, val) in v.as_object().into_iter().flatten() {
                    out(&format!("{k}: {val}"));
                }
            }
            Ok(())
        }
        WxCmd::Remove { dir, name } => {
            let (_, db) = open(&dir).await?;
            let n = name.clone();
            run!(&db, write, |tx| ops::remove_app(tx, &n)).map_err(e)?;
            out(&format!("removed {name}"));
            Ok(())
        }
        WxCmd::Agents {
            dir,
            name,
            add,
            remove,
            all,
            only_listed,
        } => {
            let (_, db) = open(&dir).await?;
            let flag = if all {
                Some(true)
            } else if only_listed {
                Some(false)
            } else {
                None
            };
            let n = name.clone();
            let (all, users) = run!(&db, write, |tx| ops::set_agents(
                tx, &n, flag, &add, &remove
            ))
            .map_err(e)?;
            if all {
                out(&format!(
                    "{name}: every user answers (listed: {})",
                    users.join(", ")
                ));
            } else {
                out(&format!("{name}: {}", users.join(", ")));
            }
            Ok(())
        }
        WxCmd::Token { dir, name, force } => {
            let (cfg, db) = open(&dir).await?;
            let timeout = std::time::Duration::from_millis(cfg.wx_api_timeout_ms.unwrap_or(10_000));
            let wx = super::Wx::new(db.clone(), timeout);
            let n = name.clone();
            let app = run!(&db, read, |tx| ops::app(tx, &n)).map_err(e)?;
            if force {
                let c = wx.force_token(&app).await?;
                out(&format!(
                    "{name}: forced a new token, valid {} s",
                    (c.expires_at_ms - now_ms()) / 1000
                ));
            } else {
                wx.token(&app, None).await?;
                let n = name.clone();
                let t = run!(&db, read, |tx| ops::token_row(tx, &n))
                    .map_err(e)?
                    .ok_or("no token stored")?;
                out(&format!(
                    "{name}: token generation {}, valid {} s more",
                    t.generation,
                    (t.cached.expires_at_ms - now_ms()) / 1000
                ));
            }
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn api_bases() {
        assert!(check_api_base("https://api.weixin.qq.com/").is_ok());
        assert!(check_api_base("http://127.0.0.1:4000").is_ok());
        assert!(check_api_base("http://localhost:4000/x").is_ok());
        assert!(check_api_base("http://api.weixin.qq.com").is_err());
        assert!(check_api_base("http://127.0.0.1.evil.com").is_err());
        assert!(check_name("shop_1-a").is_ok());
        assert!(check_name("a:b").is_err());
        assert!(check_name("").is_err());
    }

    #[test]
    fn transfer_policies() {
        for p in ["never", "no_agent", "always", "keyword:人工"] {
            assert_eq!(Transfer::parse(p).unwrap().as_string(), p);
        }
        assert!(Transfer::parse("keyword:").is_none());
        assert!(Transfer::parse("sometimes").is_none());
    }
}
