//! The protocol-core commands: `quiver render`, `quiver session-from`, `quiver unionid`.
//!
//! They are thin: every rule lives in `quiver_shared`. A refusal exits 1 and prints one JSON line
//! on stderr, `{"error": {"code": "...", "message": "...", ...}}`, with the codes of
//! docs/templates.md; bad usage exits 2.

use crate::args::{out, Opts};
use quiver_shared::render::Refusal;
use quiver_shared::sobot::{self, SessionFrom, UnionIdOptions};
use quiver_shared::{render, Channel, Context, Library, Platform, Target};
use serde_json::{json, Value};
use std::io::Write;
use std::process::ExitCode;

pub const RENDER_USAGE: &str = "\
Usage: quiver render --platform PLATFORM [options] --template ID LIBRARY.json

Prints the wire payload of each part of template ID, one JSON text per line:
  udesk       the string posted to the workspace (parent.postMessage)
  sobot       the object posted to the workbench (msgType 26)
  wechat-dkf  the argument of window.external.PutMsg
  wechat-mp   the request body of message/custom/send (touser from --var customer.openid=...)

Options:
  --platform P        udesk | sobot | wechat-dkf | wechat-mp
  --channel NAME      web | sdk | miniprogram | wechat | other (default: unknown, so only
                      what every channel shows is sent, else the part's fallback)
  --sdk-version X.Y   the SDK version, for --channel sdk
  --var KEY=VALUE     a variable's value, e.g. --var customer.name=Ann (repeatable)
  --param KEY=VALUE   a query parameter of the assistant frame's URL, e.g. --param cid=123
  --url URL           the assistant frame's URL: its query parameters become --param values
  --nonce DIGITS      head.random for wechat-dkf (default: fresh random digits per part)
  --now MS            the current time for {{date}} and {{time}} (default: the clock)
  --tz MINUTES        offset from UTC for dates (default: 0)
  --template ID       the template to render

A refusal exits 1 and prints {\"error\":{\"code\",\"message\",\"template\",\"part\"}} on stderr.
Codes: channel_unsupported, missing_variable, field_required, too_long, invalid_value,
invalid_template, invalid_target, invalid_session_from.";

pub const SESSION_FROM_USAGE: &str = "\
Usage: quiver session-from build [--nick N] [--avatar URL] [--params JSON]
                                 [--transfer-action JSON] [--platform-action JSON]
                                 [--partnerid ID] [--robotid ID] [--unionid ID]
                                 [--customer-fields JSON]
       quiver session-from parse STRING
       quiver session-from check STRING

Sobot's mini-program session-from attribute:
  sobot|nick|avatar|params[|transfer_action=..][|platform_action=..][|partnerid=..]
       [|robotid=..][|unionid=..][|customer_fields=..]   (at most 1000 characters)
build prints the string; parse prints its fields as JSON; check prints every problem.";

pub const UNIONID_USAGE: &str = "\
Usage: quiver unionid encrypt --key KEY [options] UNIONID
       quiver unionid decrypt --key KEY [options] CIPHERTEXT

Sobot's UnionID encryption: AES/ECB/PKCS5Padding with the console's key (16 bytes: AES-128,
32: AES-256). The undocumented choices are options:
  --key-encoding utf8|hex|base64   how the key text becomes bytes (default utf8)
  --output base64|hex|HEX          ciphertext encoding (default base64)
  --url-encode                     percent-encode the ciphertext";

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

fn wants_help(args: &[String]) -> bool {
    args.iter().any(|a| a == "-h" || a == "--help")
}

fn pairs<'a>(o: &'a Opts, flag: &str) -> Result<Vec<(&'a str, &'a str)>, String> {
    o.values
        .iter()
        .filter(|(f, _)| f == flag)
        .map(|(_, v)| {
            v.split_once('=')
                .ok_or_else(|| format!("{flag} {v:?} is not KEY=VALUE"))
        })
        .collect()
}

/// Fresh decimal digits for `head.random`: 9 digits from the OS's random source.
fn fresh_nonce() -> std::io::Result<String> {
    let mut b = [0u8; 4];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))?;
    Ok(format!("{:09}", u32::from_le_bytes(b) % 1_000_000_000))
}

pub fn render_cmd(args: &[String]) -> ExitCode {
    if wants_help(args) {
        out(RENDER_USAGE);
        return ExitCode::SUCCESS;
    }
    let opts = Opts::parse(
        args,
        &[
            "--platform",
            "--channel",
            "--sdk-version",
            "--var",
            "--param",
            "--url",
            "--nonce",
            "--now",
            "--tz",
            "--template",
        ],
        &[],
    );
    let o = match opts {
        Ok(o) => o,
        Err(e) => return usage("render", e),
    };
    let (Some(platform), Some(id)) = (o.get("--platform"), o.get("--template")) else {
        return usage("render", "--platform and --template are required");
    };
    let [library] = o.positional.as_slice() else {
        return usage("render", "give exactly one LIBRARY.json");
    };
    let mut target = match Platform::parse(platform) {
        Ok(p) => Target::new(p),
        Err(r) => return refuse(&r, json!({})),
    };
    if let Some(c) = o.get("--channel") {
        match Channel::parse(c) {
            Ok(c) => target.channel = Some(c),
            Err(r) => return refuse(&r, json!({})),
        }
    }
    target.sdk_version = o.get("--sdk-version").map(String::from);
    if let Some(url) = o.get("--url") {
        target.params.extend(sobot::parse_query(url));
    }
    let mut ctx = Context::new();
    match (pairs(&o, "--param"), pairs(&o, "--var")) {
        (Ok(params), Ok(vars)) => {
            for (k, v) in params {
                target.params.insert(k.into(), v.into());
            }
            for (k, v) in vars {
                ctx.insert(k.into(), v.into());
            }
        }
        (Err(e), _) | (_, Err(e)) => return usage("render", e),
    }
    let now = match o.get("--now") {
        Some(n) => n.to_string(),
        None => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis())
            .to_string(),
    };
    ctx.entry("now".into()).or_insert(now);
    if let Some(tz) = o.get("--tz") {
        ctx.insert("tz".into(), tz.into());
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
    let Some(template) = lib.templates.iter().find(|t| t.id == id) else {
        return error_line(json!({"error": {
            "code": "invalid_template",
            "message": format!("{library} has no template {id:?}"),
        }}));
    };
    // Render every part before printing any: a refusal prints nothing on stdout.
    let mut lines = Vec::with_capacity(template.parts.len());
    for i in 0..template.parts.len() {
        if target.platform == Some(Platform::WechatDkf) {
            target.nonce = match o.get("--nonce") {
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

pub fn session_from_cmd(args: &[String]) -> ExitCode {
    if wants_help(args) {
        out(SESSION_FROM_USAGE);
        return ExitCode::SUCCESS;
    }
    let Some((sub, rest)) = args.split_first() else {
        return usage("session-from", "say build, parse or check");
    };
    match sub.as_str() {
        "build" => {
            let flags = [
                "--nick",
                "--avatar",
                "--params",
                "--transfer-action",
                "--platform-action",
                "--partnerid",
                "--robotid",
                "--unionid",
                "--customer-fields",
            ];
            let o = match Opts::parse(rest, &flags, &[]) {
                Ok(o) => o,
                Err(e) => return usage("session-from", e),
            };
            if let Some(p) = o.positional.first() {
                return usage("session-from", format!("unexpected argument {p:?}"));
            }
            let json_field = |flag: &str, name: &str| -> Result<Option<Value>, Refusal> {
                o.get(flag)
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
                    nick_name: o.get("--nick").unwrap_or_default().into(),
                    avatar_url: o.get("--avatar").unwrap_or_default().into(),
                    params: o.get("--params").unwrap_or_default().into(),
                    partnerid: o.get("--partnerid").map(String::from),
                    robotid: o.get("--robotid").map(String::from),
                    unionid: o.get("--unionid").map(String::from),
                    customer_fields: o.get("--customer-fields").map(String::from),
                    ..SessionFrom::default()
                };
                if let Some(v) = json_field("--transfer-action", "transfer_action")? {
                    sf.transfer_action = Some(serde_json::from_value(v).map_err(|e| {
                        Refusal::new(
                            quiver_shared::RefusalCode::InvalidSessionFrom,
                            format!("transfer_action: {e}"),
                        )
                    })?);
                }
                if let Some(v) = json_field("--platform-action", "platform_action")? {
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
        "parse" | "check" => {
            let [s] = rest else {
                return usage("session-from", format!("{sub} takes exactly one STRING"));
            };
            if sub == "parse" {
                match SessionFrom::parse(s) {
                    Ok(sf) => {
                        out(&serde_json::to_string(&sf).unwrap_or_default());
                        ExitCode::SUCCESS
                    }
                    Err(r) => refuse(&r, json!({})),
                }
            } else {
                match SessionFrom::check(s) {
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
                }
            }
        }
        other => usage("session-from", format!("unknown subcommand {other:?}")),
    }
}

pub fn unionid_cmd(args: &[String]) -> ExitCode {
    if wants_help(args) {
        out(UNIONID_USAGE);
        return ExitCode::SUCCESS;
    }
    let Some((sub, rest)) = args.split_first() else {
        return usage("unionid", "say encrypt or decrypt");
    };
    let o = match Opts::parse(
        rest,
        &["--key", "--key-encoding", "--output"],
        &["--url-encode"],
    ) {
        Ok(o) => o,
        Err(e) => return usage("unionid", e),
    };
    let (Some(key), [input]) = (o.get("--key"), o.positional.as_slice()) else {
        return usage("unionid", "--key KEY and exactly one input are required");
    };
    let mut opts = UnionIdOptions {
        url_encode: o.has("--url-encode"),
        ..UnionIdOptions::default()
    };
    opts.key_encoding = match o.get("--key-encoding").unwrap_or("utf8") {
        "utf8" => sobot::KeyEncoding::Utf8,
        "hex" => sobot::KeyEncoding::Hex,
        "base64" => sobot::KeyEncoding::Base64,
        other => {
            return usage(
                "unionid",
                format!("--key-encoding {other:?}: utf8, hex or base64"),
            )
        }
    };
    opts.output = match o.get("--output").unwrap_or("base64") {
        "base64" => sobot::OutputEncoding::Base64,
        "hex" => sobot::OutputEncoding::HexLower,
        "HEX" => sobot::OutputEncoding::HexUpper,
        other => return usage("unionid", format!("--output {other:?}: base64, hex or HEX")),
    };
    let result = match sub.as_str() {
        "encrypt" => sobot::encrypt_unionid(input, key, &opts),
        "decrypt" => sobot::decrypt_unionid(input, key, &opts),
        other => return usage("unionid", format!("unknown subcommand {other:?}")),
    };
    match result {
        Ok(s) => {
            out(&s);
            ExitCode::SUCCESS
        }
        Err(r) => refuse(&r, json!({})),
    }
}
