//! The pusher: WeChat's side of a customer writing to the mini program (platform-spec §4.2–§4.5).
//! Builds the push in the app's format, wraps it for the app's mode, signs it, POSTs it with
//! WeChat's deadline and retries, and judges the answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use quiver_shared::wechat::crypto::{self, AesKey};

use super::{ms_since, AppConfig, Fake, Media, B64};

/// `POST /__fake/push`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    pub appid: String,
    /// The customer's OpenID.
    pub from: String,
    /// `text`, `image`, `miniprogrampage`, `enter` (user_enter_tempsession) or `event`.
    pub kind: String,
    /// Text of a `text` push; the `Event` of an `event` push; the title of a card.
    #[serde(default)]
    pub content: Option<String>,
    /// `SessionFrom` of an `enter` push.
    #[serde(default)]
    pub session_from: Option<String>,
    /// Base64 bytes of the picture of an `image` push (default: a small PNG).
    #[serde(default)]
    pub image: Option<String>,
    /// `PagePath` of a `miniprogrampage` push.
    #[serde(default)]
    pub pagepath: Option<String>,
    /// Seconds; default the fake's clock.
    #[serde(default)]
    pub create_time: Option<i64>,
    /// Default: a fresh one (messages only).
    #[serde(default)]
    pub msg_id: Option<u64>,
    /// WeChat waits 5 s.
    #[serde(default)]
    pub timeout_ms: Option<u64>,
    /// WeChat tries 3 times in total.
    #[serde(default)]
    pub tries: Option<u32>,
    /// `signature`, `msg_signature`, `plaintext` (compat: the plaintext copy differs from the
    /// encrypted one), `appid` (sealed for another appid).
    #[serde(default)]
    pub tamper: Option<String>,
    /// Send as if the app were in this mode (`plain`, `compat`, `safe`): a downgrade attempt.
    #[serde(default)]
    pub query_mode: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Attempt {
    pub status: Option<u16>,
    pub body: String,
    pub ms: u64,
    pub verdict: String,
}

/// What WeChat made of the answers.
#[derive(Debug, Clone, Serialize)]
pub struct PushResult {
    /// `ok` (`success` or empty), `transfer` (a valid transfer_customer_service reply) or
    /// `error` (anything else, or no answer in time: the customer is told the service failed).
    pub verdict: String,
    pub attempts: Vec<Attempt>,
    pub msg_id: Option<u64>,
    pub create_time: i64,
    /// The plaintext push (before encryption).
    pub push_body: String,
    /// The inbound media id of an image or card push.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub media_id: Option<String>,
}

/// A 1×1 PNG.
const TINY_PNG: &[u8] = &[
    0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x48, 0x44, 0x52,
    0x00, 0x00, 0x00, 0x01, 0x00, 0x00, 0x00, 0x01, 0x08, 0x06, 0x00, 0x00, 0x00, 0x1F, 0x15, 0xC4,
    0x89, 0x00, 0x00, 0x00, 0x0D, 0x49, 0x44, 0x41, 0x54, 0x78, 0x9C, 0x63, 0xF8, 0xCF, 0xC0, 0xF0,
    0x1F, 0x00, 0x05, 0x00, 0x01, 0xFF, 0x89, 0x99, 0x3D, 0x1D, 0x00, 0x00, 0x00, 0x00, 0x49, 0x45,
    0x4E, 0x44, 0xAE, 0x42, 0x60, 0x82,
];

enum F {
    S(String),
    N(i64),
}

fn xml_cdata(v: &str) -> String {
    format!("<![CDATA[{}]]>", v.replace("]]>", "]]]]><![CDATA[>"))
}

fn build(fields: &[(&str, F)], format: &str) -> String {
    if format == "xml" {
        let mut s = String::from("<xml>");
        for (k, v) in fields {
            match v {
                F::S(x) => s.push_str(&format!("<{k}>{}</{k}>", xml_cdata(x))),
                F::N(n) => s.push_str(&format!("<{k}>{n}</{k}>")),
            }
        }
        s.push_str("</xml>");
        s
    } else {
        let parts: Vec<String> = fields
            .iter()
            .map(|(k, v)| {
                let val = match v {
                    F::S(x) => Value::String(x.clone()).to_string(),
                    F::N(n) => n.to_string(),
                };
                format!("{}:{val}", Value::String((*k).to_string()))
            })
            .collect();
        format!("{{{}}}", parts.join(","))
    }
}

/// Changes one hex digit.
pub fn tamper_hex(s: &str) -> String {
    let mut c: Vec<char> = s.chars().collect();
    if let Some(first) = c.first_mut() {
        *first = if *first == '0' { '1' } else { '0' };
    }
    c.into_iter().collect()
}

struct Prepared {
    app: AppConfig,
    query: Vec<(String, String)>,
    body: String,
    plain: String,
    create_time: i64,
    msg_id: Option<u64>,
    media_id: Option<String>,
}

fn prepare(fake: &Fake, req: &PushRequest) -> Result<Prepared, String> {
    let base = fake.base.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let mut g = fake.lock();
    let app = g.apps.get(&req.appid).cloned().ok_or_else(|| {
        format!(
            "unknown appid {:?}: register it with POST /__fake/apps",
            req.appid
        )
    })?;
    if req.from.is_empty() {
        return Err("from: the customer's OpenID is empty".into());
    }
    let now = g.now_ms();
    let create_time = req.create_time.unwrap_or(now / 1000);
    let is_message = matches!(req.kind.as_str(), "text" | "image" | "miniprogrampage");
    let msg_id = if is_message {
        Some(req.msg_id.unwrap_or_else(|| {
            g.seq += 1;
            24_000_000_000_000 + g.seq
        }))
    } else {
        None
    };
    let mut fields: Vec<(&str, F)> = vec![
        ("ToUserName", F::S(app.original_id.clone())),
        ("FromUserName", F::S(req.from.clone())),
        ("CreateTime", F::N(create_time)),
    ];
    let mut media_id = None;
    let store_media = |g: &mut super::Inner, bytes: Vec<u8>| -> String {
        let id = g.fresh("UMEDIA_", 40);
        let mime = super::sniff(&bytes).unwrap_or("image/png").to_string();
        g.media.insert(
            id.clone(),
            Media {
                appid: app.appid.clone(),
                bytes: Bytes::from(bytes),
                mime,
                created_ms: now,
                expired: false,
                outbound: false,
            },
        );
        id
    };
    match req.kind.as_str() {
        "text" => {
            fields.push(("MsgType", F::S("text".into())));
            fields.push((
                "Content",
                F::S(req.content.clone().unwrap_or_else(|| "你好".into())),
            ));
        }
        "image" => {
            let bytes = match &req.image {
                Some(b) => B64
                    .decode(b)
                    .map_err(|e| format!("image: not Base64: {e}"))?,
                None => TINY_PNG.to_vec(),
            };
            let id = store_media(&mut g, bytes);
            fields.push(("MsgType", F::S("image".into())));
            fields.push(("PicUrl", F::S(format!("{base}/__fake/pic/{id}"))));
            fields.push(("MediaId", F::S(id.clone())));
            media_id = Some(id);
        }
        "miniprogrampage" => {
            let id = store_media(&mut g, TINY_PNG.to_vec());
            fields.push(("MsgType", F::S("miniprogrampage".into())));
            fields.push((
                "Title",
                F::S(req.content.clone().unwrap_or_else(|| "商品".into())),
            ));
            fields.push(("AppId", F::S(app.appid.clone())));
            fields.push((
                "PagePath",
                F::S(
                    req.pagepath
                        .clone()
                        .unwrap_or_else(|| "pages/index/index".into()),
                ),
            ));
            fields.push(("ThumbUrl", F::S(format!("{base}/__fake/pic/{id}"))));
            fields.push(("ThumbMediaId", F::S(id.clone())));
            media_id = Some(id);
        }
        "enter" => {
            fields.push(("MsgType", F::S("event".into())));
            fields.push(("Event", F::S("user_enter_tempsession".into())));
            fields.push((
                "SessionFrom",
                F::S(req.session_from.clone().unwrap_or_default()),
            ));
        }
        "event" => {
            fields.push(("MsgType", F::S("event".into())));
            fields.push((
                "Event",
                F::S(
                    req.content
                        .clone()
                        .unwrap_or_else(|| "unknown_event".into()),
                ),
            ));
        }
        other => {
            return Err(format!(
                "kind {other:?}: text, image, miniprogrampage, enter or event"
            ))
        }
    }
    if let Some(id) = msg_id {
        fields.push(("MsgId", F::N(id as i64)));
    }
    // WeChat records the customer's action when it happens, whatever the server answers.
    let key = (app.appid.clone(), req.from.clone());
    let user = g.users.entry(key).or_default();
    if req.kind != "event" {
        user.actions.push((create_time * 1000, is_message));
    }
    let plain = build(&fields, &app.format);
    let mode = req.query_mode.clone().unwrap_or_else(|| app.mode.clone());
    let timestamp = (now / 1000).to_string();
    let nonce = g.fresh("", 10);
    let mut signature = crypto::url_signature(&app.token, &timestamp, &nonce);
    if req.tamper.as_deref() == Some("signature") {
        signature = tamper_hex(&signature);
    }
    let mut query = vec![
        ("signature".to_string(), signature),
        ("timestamp".to_string(), timestamp.clone()),
        ("nonce".to_string(), nonce.clone()),
        ("openid".to_string(), req.from.clone()),
    ];
    let body = match mode.as_str() {
        "plain" => plain.clone(),
        "compat" | "safe" => {
            let key = AesKey::from_encoding_aes_key(app.aes_key.as_deref().unwrap_or(""))
                .map_err(|e| format!("aes_key: {e}"))?;
            let random = g.random16();
            let sealed_for = if req.tamper.as_deref() == Some("appid") {
                "wx0000000000000bad"
            } else {
                app.appid.as_str()
            };
            let encrypt = crypto::encrypt(&key, &random, &plain, sealed_for)
                .map_err(|e| format!("encrypt: {e}"))?;
            let mut msg_signature = crypto::msg_signature(&app.token, &timestamp, &nonce, &encrypt);
            if req.tamper.as_deref() == Some("msg_signature") {
                msg_signature = tamper_hex(&msg_signature);
            }
            query.push(("encrypt_type".into(), "aes".into()));
            query.push(("msg_signature".into(), msg_signature));
            if mode == "safe" {
                build(
                    &[
                        ("ToUserName", F::S(app.original_id.clone())),
                        ("Encrypt", F::S(encrypt)),
                    ],
                    &app.format,
                )
            } else {
                let mut f = fields;
                if req.tamper.as_deref() == Some("plaintext") {
                    for (k, v) in f.iter_mut() {
                        if *k == "Content" || *k == "FromUserName" {
                            *v = F::S("TAMPERED".into());
                        }
                    }
                }
                f.push(("Encrypt", F::S(encrypt)));
                build(&f, &app.format)
            }
        }
        other => return Err(format!("query_mode {other:?}: plain, compat or safe")),
    };
    g.stats.pushes += 1;
    Ok(Prepared {
        app,
        query,
        body,
        plain,
        create_time,
        msg_id,
        media_id,
    })
}

/// Sends the push with WeChat's deadline and retries and judges the answer.
pub async fn run(fake: &Arc<Fake>, req: PushRequest) -> Result<PushResult, String> {
    let p = prepare(fake, &req)?;
    let tries = req.tries.unwrap_or(3).max(1);
    let timeout = Duration::from_millis(req.timeout_ms.unwrap_or(5000));
    let content_type = if p.app.format == "xml" {
        "text/xml"
    } else {
        "application/json"
    };
    let mut attempts = Vec::new();
    let mut verdict = "error".to_string();
    for _ in 0..tries {
        fake.lock().stats.push_attempts += 1;
        let start = Instant::now();
        let res = fake
            .http
            .post(&p.app.push_url)
            .query(&p.query)
            .header("content-type", content_type)
            .body(p.body.clone())
            .timeout(timeout)
            .send()
            .await;
        let answered = match res {
            Ok(r) => {
                let status = r.status().as_u16();
                match r.text().await {
                    Ok(body) => Some((status, body)),
                    Err(_) => None,
                }
            }
            Err(_) => None,
        };
        let ms = ms_since(start);
        match answered {
            Some((status, body)) => {
                let v = judge(&p.app, &req.from, status, &body);
                attempts.push(Attempt {
                    status: Some(status),
                    body,
                    ms,
                    verdict: v.clone(),
                });
                verdict = v;
                break;
            }
            None => attempts.push(Attempt {
                status: None,
                body: String::new(),
                ms,
                verdict: "no_answer".into(),
            }),
        }
    }
    Ok(PushResult {
        verdict,
        attempts,
        msg_id: p.msg_id,
        create_time: p.create_time,
        push_body: p.plain,
        media_id: p.media_id,
    })
}

/// The text of `<Tag>...</Tag>` (CDATA or not) in a flat XML document.
fn xml_field(doc: &str, tag: &str) -> Option<String> {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = doc.find(&open)? + open.len();
    let end = start + doc[start..].find(&close)?;
    let inner = doc[start..end].trim();
    let mut out = String::new();
    let mut rest = inner;
    if !rest.starts_with("<![CDATA[") {
        return Some(rest.to_string());
    }
    while let Some(s) = rest.strip_prefix("<![CDATA[") {
        let e = s.find("]]>")?;
        out.push_str(&s[..e]);
        rest = &s[e + 3..];
    }
    Some(out)
}

fn json_field(v: &Value, names: &[&str]) -> Option<String> {
    names.iter().find_map(|n| match v.get(*n)? {
        Value::String(s) => Some(s.clone()),
        Value::Number(x) => Some(x.to_string()),
        _ => None,
    })
}

fn field(doc: &str, format: &str, names: &[&str]) -> Option<String> {
    if format == "xml" {
        names.iter().find_map(|n| xml_field(doc, n))
    } else {
        let v: Value = serde_json::from_str(doc).ok()?;
        json_field(&v, names)
    }
}

/// `ok`, `transfer` or `error`, as WeChat reads a server's answer.
fn judge(app: &AppConfig, from: &str, status: u16, body: &str) -> String {
    if status != 200 {
        return "error".into();
    }
    let b = body.trim();
    if b.is_empty() || b == "success" {
        return "ok".into();
    }
    let looks_sealed = field(b, &app.format, &["Encrypt", "encrypt"]).is_some();
    let plain = if looks_sealed {
        if app.mode == "plain" {
            return "error".into();
        }
        let Some(key) = app
            .aes_key
            .as_deref()
            .and_then(|k| AesKey::from_encoding_aes_key(k).ok())
        else {
            return "error".into();
        };
        let get = |names: &[&str]| field(b, &app.format, names);
        let (Some(enc), Some(sig), Some(ts), Some(nonce)) = (
            get(&["Encrypt", "encrypt"]),
            get(&["MsgSignature", "msgsignature", "msg_signature"]),
            get(&["TimeStamp", "timestamp", "Timestamp"]),
            get(&["Nonce", "nonce"]),
        ) else {
            return "error".into();
        };
        if !crypto::msg_signature(&app.token, &ts, &nonce, &enc).eq_ignore_ascii_case(&sig) {
            return "error".into();
        }
        match crypto::decrypt(&key, &enc, &app.appid) {
            Ok(p) => p,
            Err(_) => return "error".into(),
        }
    } else {
        if app.mode == "safe" {
            // Safe mode: a passive reply must be encrypted.
            return "error".into();
        }
        b.to_string()
    };
    let ok = field(&plain, &app.format, &["MsgType"]).as_deref()
        == Some("transfer_customer_service")
        && field(&plain, &app.format, &["ToUserName"]).as_deref() == Some(from)
        && field(&plain, &app.format, &["FromUserName"]).as_deref()
            == Some(app.original_id.as_str())
        && field(&plain, &app.format, &["CreateTime"]).is_some_and(|t| t.parse::<i64>().is_ok());
    if ok {
        "transfer".into()
    } else {
        "error".into()
    }
}
