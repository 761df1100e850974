//! The protocol-core commands: `quiver render`, `quiver session-from`, `quiver unionid`.
//!
//! They are thin: every rule lives in `quiver_shared`. A refusal exits 1 and prints one JSON line
//! on stderr, `{"error": {"code": "...", "message": "...", ...}}`, with the codes of
//! docs/templates.md; bad usage exits 2.

use crate::args::out;
use clap::{Args, Subcommand, ValueEnum};
use quiver_shared::render::Refusal;
use quiver_shared::sobot::{self, SessionFrom, UnionIdOptions};
use quiver_shared::{render, Channel, Context, Library, Platform, Target};
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

const RENDER_ABOUT: &str = "\
Prints the wire payload of each part of template ID, one JSON text per line:
  udesk       the string posted to the workspace (parent.postMessage)
  sobot       the object posted to the workbench (msgType 26)
  wechat-dkf  the argument of window.external.PutMsg
  wechat-mp   the request body of message/custom/send (touser from --var customer.openid=...)";

const RENDER_AFTER: &str = "\
A refusal exits 1 and prints {\"error\":{\"code\",\"message\",\"template\",\"part\"}} on stderr.
Codes: channel_unsupported, missing_variable, field_required, too_long, invalid_value,
invalid_template, invalid_target, invalid_session_from.";

/// `quiver render`.
#[derive(Debug, Args)]
#[command(long_about = RENDER_ABOUT, after_help = RENDER_AFTER)]
pub struct RenderArgs {
    /// udesk | sobot | wechat-dkf | wechat-mp
    #[arg(long, value_name = "P", required = true)]
    platform: String,
    /// web | sdk | miniprogram | wechat | other (default: unknown, so only what every
    /// channel shows is sent, else the part's fallback)
    #[arg(long, value_name = "NAME")]
    channel: Option<String>,
    /// The SDK version, for --channel sdk
    #[arg(long, value_name = "X.Y")]
    sdk_version: Option<String>,
    /// A variable's value, e.g. --var customer.name=Ann (repeatable)
    #[arg(long = "var", value_name = "KEY=VALUE", value_parser = key_value)]
    vars: Vec<(String, String)>,
    /// A query parameter of the assistant frame's URL, e.g. --param cid=123 (repeatable)
    #[arg(long = "param", value_name = "KEY=VALUE", value_parser = key_value)]
    params: Vec<(String, String)>,
    /// The assistant frame's URL: its query parameters become --param values
    #[arg(long, value_name = "URL")]
    url: Option<String>,
    /// head.random for wechat-dkf (default: fresh random digits per part)
    #[arg(long, value_name = "DIGITS")]
    nonce: Option<String>,
    /// The current time for {{date}} and {{time}} (default: the clock)
    #[arg(long, value_name = "MS")]
    now: Option<String>,
    /// Offset from UTC for dates (default: 0)
    #[arg(long, value_name = "MINUTES", allow_hyphen_values = true)]
    tz: Option<String>,
    /// The template to render
    #[arg(long, value_name = "ID", required = true)]
    template: String,
    /// The library file
    #[arg(value_name = "LIBRARY.json")]
    library: String,
}

fn key_value(v: &str) -> Result<(String, String), String> {
    v.split_once('=')
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .ok_or_else(|| format!("{v:?} is not KEY=VALUE"))
}

/// `quiver session-from`: Sobot's mini-program session-from attribute,
/// `sobot|nick|avatar|params[|transfer_action=..][|platform_action=..][|partnerid=..]
/// [|robotid=..][|unionid=..][|customer_fields=..]` (at most 1000 characters).
#[derive(Debug, Subcommand)]
pub enum SessionFromCmd {
    /// Print the string
    Build(SessionFromBuild),
    /// Print its fields as JSON
    Parse { string: String },
    /// Print every problem
    Check { string: String },
}

#[derive(Debug, Args)]
pub struct SessionFromBuild {
    #[arg(long, value_name = "N")]
    nick: Option<String>,
    #[arg(long, value_name = "URL")]
    avatar: Option<String>,
    #[arg(long, value_name = "JSON")]
    params: Option<String>,
    #[arg(long, value_name = "JSON")]
    transfer_action: Option<String>,
    #[arg(long, value_name = "JSON")]
    platform_action: Option<String>,
    #[arg(long, value_name = "ID")]
    partnerid: Option<String>,
    #[arg(long, value_name = "ID")]
    robotid: Option<String>,
    #[arg(long, value_name = "ID")]
    unionid: Option<String>,
    #[arg(long, value_name = "JSON")]
    customer_fields: Option<String>,
}

pub const UNIONID_ABOUT: &str = "\
Sobot's UnionID encryption: AES/ECB/PKCS5Padding with the console's key (16 bytes: AES-128,
32: AES-256). The undocumented choices are options.";

#[derive(Debug, Subcommand)]
pub enum UnionidCmd {
    /// Encrypt a UnionID
    Encrypt(UnionidArgs),
    /// Decrypt a ciphertext
    Decrypt(UnionidArgs),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum KeyEncoding {
    Utf8,
    Hex,
    Base64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Output {
    Base64,
    #[value(name = "hex")]
    HexLower,
    #[value(name = "HEX")]
    HexUpper,
}

#[derive(Debug, Args)]
pub struct UnionidArgs {
    /// The console's key
    #[arg(long, required = true)]
    key: String,
    /// How the key text becomes bytes
    #[arg(long, value_enum, default_value = "utf8")]
    key_encoding: KeyEncoding,
    /// Ciphertext encoding
    #[arg(long, value_enum, default_value = "base64")]
    output: Output,
    /// Percent-encode the ciphertext
    #[arg(long)]
    url_encode: bool,
    /// The UnionID (encrypt) or the ciphertext (decrypt)
    input: String,
}

/// Prints a refusal as the documented one-line JSON error and returns exit code 1.
fn refuse(r: &Refusal, extra: Value) -> ExitCode {
    let mut err = json!({"code": r.code.as_str(), "message": r.message});
    if let (Some(e), Value::Object(x)) = (err.as_object_mut(), extra) {
        e.extend(x);
    }
    error_line(json!({ "error": err }))
}

fn error_line(v: Value) -> ExitCode {
    let _ = writeln!(std::io::stderr(), "{v}");
    ExitCode::from(1)
}

fn usage(cmd: &str, msg: impl std::fmt::Display) -> ExitCode {
    let _ = writeln!(
        std::io::stderr(),
        "quiver {cmd}: {msg} (see quiver {cmd} --help)"
    );
    ExitCode::from(2)
}

/// Fresh decimal digits for `head.random`: 9 digits from the OS's random source.
fn fresh_nonce() -> std::io::Result<String> {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))?;
    Ok(format!("{:09}", u32::from_le_bytes(b) % 1_000_000_000))
}

pub fn render_cmd(o: RenderArgs) -> ExitCode {
    let (platform, id, library) = (&o.platform, &o.template, &o.library);
    let mut target = match Platform::parse(platform) {
        Ok(p) => Target::new(p),
        Err(r) => return refuse(&r, json!({})),
    };
    if let Some(c) = &o.channel {
        match Channel::parse(c) {
            Ok(c) => target.channel = Some(c),
            Err(r) => return refuse(&r, json!({})),
        }
    }
    target.sdk_version = o.sdk_version.clone();
    if let Some(url) = &o.url {
        target.params.extend(sobot::parse_query(url));
    }
    let mut ctx = Context::new();
    for (k, v) in &o.params {
        target.params.insert(k.clone(), v.clone());
    }
    for (k, v) in &o.vars {
        ctx.insert(k.clone(), v.clone());
    }
    let now = match &o.now {
        Some(n) => n.to_string(),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string(),
    };
    ctx.entry("now".into()).or_insert(now);
    if let Some(tz) = &o.tz {
        ctx.insert("tz".into(), tz.clone());
    }
    let text = match std::fs::read_to_string(library) {
        Ok(t) => t,
        Err(e) => {
            return error_line(json!({"error": {
                "code": "invalid_template",
                "message": format!("cannot read {library}: {e}"),
            }}))
        }
    };
    let lib = match Library::from_json(&text) {
        Ok(l) => l,
        Err(e) => {
            return error_line(json!({"error": {
                "code": "invalid_template",
                "message": format!("{library}: {e}"),
                "line": e.line, "column": e.column, "field": e.field,
            }}))
        }
    };
    let Some(template) = lib.templates.iter().find(|t| &t.id == id) else {
        return error_line(json!({"error": {
            "code": "invalid_template",
            "message": format!("{library} has no template {id:?}"),
        }}));
    };
    // Render every part before printing any: a refusal prints nothing on stdout.
    let mut lines = Vec::with_capacity(template.parts.len());
    for i in 0..template.parts.len() {
        if target.platform == Some(Platform::WechatDkf) {
            target.nonce = match o.nonce.as_deref() {
                Some(n) if template.parts.len() == 1 => Some(n.to_string()),
                // head.random repeats are discarded by the client: one value per part.
                Some(n) => Some(format!("{n}{i}")),
                None => match fresh_nonce() {
                    Ok(n) => Some(n),
                    Err(e) => return usage("render", format!("reading /dev/urandom: {e}")),
                },
            };
        }
        match render(&target, template, i, &ctx) {
            Ok(w) => lines.push(w.wire),
            Err(r) => return refuse(&r, json!({"template": id, "part": i})),
        }
    }
    for l in lines {
        out(&l);
    }
    ExitCode::SUCCESS
}

pub fn session_from_cmd(command: SessionFromCmd) -> ExitCode {
    match command {
        SessionFromCmd::Build(o) => {
            let json_field = |v: &Option<String>, name: &str| -> Result<Option<Value>, Refusal> {
                v.as_deref()
                    .map(|s| {
                        serde_json::from_str(s).map_err(|e| {
                            Refusal::new(
                                quiver_shared::RefusalCode::InvalidSessionFrom,
                                format!("{name} is not JSON: {e}"),
                            )
                        })
                    })
                    .transpose()
            };
            let parsed = (|| -> Result<SessionFrom, Refusal> {
                let mut sf = SessionFrom {
                    nick_name: o.nick.clone().unwrap_or_default(),
                    avatar_url: o.avatar.clone().unwrap_or_default(),
                    params: o.params.clone().unwrap_or_default(),
                    partnerid: o.partnerid.clone(),
                    robotid: o.robotid.clone(),
                    unionid: o.unionid.clone(),
                    customer_fields: o.customer_fields.clone(),
                    ..SessionFrom::default()
                };
                if let Some(v) = json_field(&o.transfer_action, "transfer_action")? {
                    sf.transfer_action = Some(serde_json::from_value(v).map_err(|e| {
                        Refusal::new(
                            quiver_shared::RefusalCode::InvalidSessionFrom,
                            format!("transfer_action: {e}"),
                        )
                    })?);
                }
                if let Some(v) = json_field(&o.platform_action, "platform_action")? {
                    sf.platform_action = Some(serde_json::from_value(v).map_err(|e| {
                        Refusal::new(
                            quiver_shared::RefusalCode::InvalidSessionFrom,
                            format!("platform_action: {e}"),
                        )
                    })?);
                }
                Ok(sf)
            })();
            match parsed.and_then(|sf| sf.build()) {
                Ok(s) => {
                    out(&s);
                    ExitCode::SUCCESS
                }
                Err(r) => refuse(&r, json!({})),
            }
        }
        SessionFromCmd::Parse { string } => match SessionFrom::parse(&string) {
            Ok(sf) => {
                out(&serde_json::to_string(&sf).unwrap_or_default());
                ExitCode::SUCCESS
            }
            Err(r) => refuse(&r, json!({})),
        },
        SessionFromCmd::Check { string } => match SessionFrom::check(&string) {
            Ok(()) => {
                out("ok");
                ExitCode::SUCCESS
            }
            Err(problems) => {
                let first = &problems[0];
                let all: Vec<Value> = problems
                    .iter()
                    .map(|p| json!({"code": p.code.as_str(), "message": p.message}))
                    .collect();
                refuse(first, json!({ "problems": all }))
            }
        },
    }
}

pub fn unionid_cmd(command: UnionidCmd) -> ExitCode {
    let (encrypt, o) = match command {
        UnionidCmd::Encrypt(o) => (true, o),
        UnionidCmd::Decrypt(o) => (false, o),
    };
    let opts = UnionIdOptions {
        url_encode: o.url_encode,
        key_encoding: match o.key_encoding {
            KeyEncoding::Utf8 => sobot::KeyEncoding::Utf8,
            KeyEncoding::Hex => sobot::KeyEncoding::Hex,
            KeyEncoding::Base64 => sobot::KeyEncoding::Base64,
        },
        output: match o.output {
            Output::Base64 => sobot::OutputEncoding::Base64,
            Output::HexLower => sobot::OutputEncoding::HexLower,
            Output::HexUpper => sobot::OutputEncoding::HexUpper,
        },
    };
    let result = if encrypt {
        sobot::encrypt_unionid(&o.input, &o.key, &opts)
    } else {
        sobot::decrypt_unionid(&o.input, &o.key, &opts)
    };
    match result {
        Ok(s) => {
            out(&s);
            ExitCode::SUCCESS
        }
        Err(r) => refuse(&r, json!({})),
    }
}
