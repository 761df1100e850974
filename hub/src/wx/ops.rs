//! Every database operation of the WeChat gateway, written once over [`Tx`] like `crate::ops`:
//! apps and their agents, pushes received (deduplicated by `(app, from_user, dedupe_key)`),
//! conversations, the outbox (idempotency keys, the per-conversation lease), tokens, the media
//! cache and blobs.
//!
//! Invariants: a push and everything it changes commit together, and a retry of it finds the row
//! (and the transfer decision) the first delivery stored; every write to a conversation first
//! takes its row (`UPDATE ... SET id = id`), so messages of one conversation commit in id order;
//! an outgoing row moves `queued → sending → sent | failed | unknown` (or `cancelled`) and only
//! the holder of the conversation's lease moves it.

use quiver_shared::wechat::push::{Push, PushKind};
use quiver_shared::wechat::quota::Interaction;
use quiver_shared::wechat::token::Cached;
use quiver_shared::wechat::Format;
use serde::Serialize;
use serde_json::{json, Value};

use super::quota::{self, Quota};
use crate::error::{HubError, Result};
use crate::ids;
use crate::ops::Actor;
use crate::pokes::Note;
use crate::store::{one, Row, Tx};

/// How pushes are verified (configured, never read from the request).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    Plain,
    Compat,
    Safe,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "plain" => Some(Mode::Plain),
            "compat" => Some(Mode::Compat),
            "safe" => Some(Mode::Safe),
            _ => None,
        }
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Compat => "compat",
            Mode::Safe => "safe",
        }
    }
}

/// When a customer's message is handed to WeChat's web customer-service tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transfer {
    Never,
    /// No agent of the app has an event stream open (seen within [`PRESENCE_MS`]).
    NoAgent,
    /// The message's text contains the word.
    Keyword(String),
    Always,
}

impl Transfer {
    pub fn parse(s: &str) -> Option<Transfer> {
        match s {
            "never" => Some(Transfer::Never),
            "no_agent" => Some(Transfer::NoAgent),
            "always" => Some(Transfer::Always),
            _ => s
                .strip_prefix("keyword:")
                .filter(|w| !w.trim().is_empty())
                .map(|w| Transfer::Keyword(w.to_string())),
        }
    }
    pub fn as_string(&self) -> String {
        match self {
            Transfer::Never => "never".into(),
            Transfer::NoAgent => "no_agent".into(),
            Transfer::Always => "always".into(),
            Transfer::Keyword(w) => format!("keyword:{w}"),
        }
    }
}

/// An app, secrets included (never serialised).
#[derive(Clone)]
pub struct App {
    pub name: String,
    pub appid: String,
    pub secret: String,
    pub token: String,
    pub aes_key: Option<String>,
    pub mode: Mode,
    pub format: Format,
    pub api_base: String,
    pub transfer: Transfer,
    pub agents_all: bool,
    pub original_id: Option<String>,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("name", &self.name)
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

/// What agents see of an app (`GET /v1/wx/apps`).
#[derive(Debug, Clone, Serialize)]
pub struct AppInfo {
    pub name: String,
    pub appid: String,
    pub format: Format,
    pub mode: Mode,
    pub transfer: String,
}

impl App {
    pub fn info(&self) -> AppInfo {
        AppInfo {
            name: self.name.clone(),
            appid: self.appid.clone(),
            format: self.format,
            mode: self.mode,
            transfer: self.transfer.as_string(),
        }
    }
}

const APP_COLS: &str =
    "name, appid, secret, token, aes_key, mode, format, api_base, transfer, agents_all, original_id";

fn app_row(r: &Row) -> Result<App> {
    let bad = |what: &str| HubError::internal(format!("wx_apps: bad {what}"));
    Ok(App {
        name: r.s(0)?,
        appid: r.s(1)?,
        secret: r.s(2)?,
        token: r.s(3)?,
        aes_key: r.os(4)?,
        mode: Mode::parse(&r.s(5)?).ok_or_else(|| bad("mode"))?,
        format: match r.s(6)?.as_str() {
            "xml" => Format::Xml,
            "json" => Format::Json,
            _ => return Err(bad("format")),
        },
        api_base: r.s(7)?,
        transfer: Transfer::parse(&r.s(8)?).ok_or_else(|| bad("transfer"))?,
        agents_all: r.b(9)?,
        original_id: r.os(10)?,
    })
}

/// How recently an agent's device must have been seen (an open event stream touches it at each
/// heartbeat) to count as online for the `no_agent` transfer policy.
pub const PRESENCE_MS: i64 = 45_000;
/// A transferred conversation stays with the web tool this long after the last message
/// (platform-spec §4.5).
pub const TRANSFERRED_MS: i64 = 30 * 60_000;

// ---------------------------------------------------------------------------------------------
// Apps

pub async fn get_app<T: Tx>(tx: &mut T, name: &str) -> Result<Option<App>> {
    let sql = format!("SELECT {APP_COLS} FROM wx_apps WHERE name = $1");
    one(tx, &sql, p![name])
        .await?
        .map(|r| app_row(&r))
        .transpose()
}

pub async fn app<T: Tx>(tx: &mut T, name: &str) -> Result<App> {
    get_app(tx, name)
        .await?
        .ok_or_else(|| HubError::not_found(format!("no WeChat app {name:?}")))
}

pub async fn list_apps<T: Tx>(tx: &mut T) -> Result<Vec<App>> {
    let sql = format!("SELECT {APP_COLS} FROM wx_apps ORDER BY name");
    tx.query(&sql, p![]).await?.iter().map(app_row).collect()
}

async fn user_ids<T: Tx>(tx: &mut T, names: &[String]) -> Result<Vec<String>> {
    let mut out = vec![];
    for n in names {
        let r = one(tx, "SELECT id FROM users WHERE name = $1", p![n])
            .await?
            .ok_or_else(|| HubError::not_found(format!("no user {n:?} on this hub")))?;
        out.push(r.s(0)?);
    }
    Ok(out)
}

/// Adds an app; `agents`: user names (with `agents_all` false).
pub async fn add_app<T: Tx>(tx: &mut T, a: &App, agents: &[String], now: i64) -> Result<()> {
    if get_app(tx, &a.name).await?.is_some() {
        return Err(HubError::conflict(format!(
            "a WeChat app named {:?} exists (remove it first)",
            a.name
        )));
    }
    if one(
        tx,
        "SELECT name FROM wx_apps WHERE appid = $1",
        p![&a.appid],
    )
    .await?
    .is_some()
    {
        return Err(HubError::conflict(format!(
            "the AppID {} is configured already under another name",
            a.appid
        )));
    }
    let ids = user_ids(tx, agents).await?;
    tx.exec(
        &format!("INSERT INTO wx_apps ({APP_COLS}, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"),
        p![
            &a.name,
            &a.appid,
            &a.secret,
            &a.token,
            a.aes_key.clone(),
            a.mode.as_str(),
            a.format.as_str(),
            &a.api_base,
            a.transfer.as_string(),
            a.agents_all,
            a.original_id.clone(),
            now
        ],
    )
    .await?;
    for id in ids {
        tx.exec(
            "INSERT INTO wx_app_agents (app, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            p![&a.name, id],
        )
        .await?;
    }
    Ok(())
}

pub async fn remove_app<T: Tx>(tx: &mut T, name: &str) -> Result<()> {
    app(tx, name).await?;
    for sql in [
        "DELETE FROM wx_app_agents WHERE app = $1",
        "DELETE FROM wx_tokens WHERE app = $1",
        "DELETE FROM wx_token_force_log WHERE app = $1",
        "DELETE FROM wx_media WHERE app = $1",
        "DELETE FROM wx_apps WHERE name = $1",
    ] {
        tx.exec(sql, p![name]).await?;
    }
    Ok(())
}

/// `agents_all` and the named agents (user names).
pub async fn app_agents<T: Tx>(tx: &mut T, name: &str) -> Result<(bool, Vec<String>)> {
    let a = app(tx, name).await?;
    let rows = tx
        .query(
            "SELECT u.name FROM wx_app_agents g JOIN users u ON u.id = g.user_id WHERE g.app = $1 ORDER BY u.name",
            p![name],
        )
        .await?;
    Ok((
        a.agents_all,
        rows.iter().map(|r| r.s(0)).collect::<Result<_>>()?,
    ))
}

/// Changes who answers an app: `all` switches between every user and the list.
pub async fn set_agents<T: Tx>(
    tx: &mut T,
    name: &str,
    all: Option<bool>,
    add: &[String],
    remove: &[String],
) -> Result<(bool, Vec<String>)> {
    app(tx, name).await?;
    if let Some(all) = all {
        tx.exec(
            "UPDATE wx_apps SET agents_all = $2 WHERE name = $1",
            p![name, all],
        )
        .await?;
    }
    for id in user_ids(tx, add).await? {
        tx.exec(
            "INSERT INTO wx_app_agents (app, user_id) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            p![name, id],
        )
        .await?;
    }
    for id in user_ids(tx, remove).await? {
        tx.exec(
            "DELETE FROM wx_app_agents WHERE app = $1 AND user_id = $2",
            p![name, id],
        )
        .await?;
    }
    tx.notify(Note::Recheck).await?;
    app_agents(tx, name).await
}

/// The apps a user answers for.
pub async fn agent_apps<T: Tx>(tx: &mut T, user_id: &str) -> Result<Vec<App>> {
    let sql = format!(
        "SELECT {APP_COLS} FROM wx_apps WHERE agents_all \
         OR name IN (SELECT app FROM wx_app_agents WHERE user_id = $1) ORDER BY name"
    );
    tx.query(&sql, p![user_id])
        .await?
        .iter()
        .map(app_row)
        .collect()
}

/// Whether a user answers for an app.
async fn is_agent<T: Tx>(tx: &mut T, user_id: &str, app: &str) -> Result<bool> {
    Ok(one(
        tx,
        "SELECT 1 FROM wx_apps WHERE name = $1 AND (agents_all \
         OR name IN (SELECT app FROM wx_app_agents WHERE user_id = $2))",
        p![app, user_id],
    )
    .await?
    .is_some())
}

/// Whether an agent of the app has been seen (an event stream open) since `since`.
async fn agent_online<T: Tx>(tx: &mut T, app: &App, since: i64) -> Result<bool> {
    let sql = if app.agents_all {
        "SELECT 1 FROM wx_presence p JOIN devices d ON d.id = p.device_id JOIN users u ON u.id = d.user_id \
         WHERE d.revoked_at IS NULL AND u.disabled_at IS NULL AND p.at_ms >= $2 \
         AND CAST($1 AS TEXT) = CAST($1 AS TEXT) LIMIT 1"
    } else {
        "SELECT 1 FROM wx_presence p JOIN devices d ON d.id = p.device_id JOIN users u ON u.id = d.user_id \
         JOIN wx_app_agents g ON g.user_id = u.id AND g.app = $1 \
         WHERE d.revoked_at IS NULL AND u.disabled_at IS NULL AND p.at_ms >= $2 LIMIT 1"
    };
    Ok(one(tx, sql, p![&app.name, since]).await?.is_some())
}

/// An open event stream says its device is here (for the `no_agent` transfer policy).
pub async fn touch_device<T: Tx>(tx: &mut T, device: &str, now: i64) -> Result<()> {
    tx.exec(
        "INSERT INTO wx_presence (device_id, at_ms) VALUES ($1, $2) \
         ON CONFLICT (device_id) DO UPDATE SET at_ms = $2",
        p![device, now],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Pushes

/// What a push did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    pub conversation: String,
    pub message_id: i64,
    /// A retry of a push stored before.
    pub duplicate: bool,
    /// Answer with `transfer_customer_service` (decided once, at the first delivery).
    pub transfer: bool,
}

fn push_kind(p: &Push) -> (&'static str, Option<String>, Option<String>, Option<String>) {
    // (kind, text, media_id, card JSON)
    match &p.kind {
        PushKind::Text { content } => ("text", Some(content.clone()), None, None),
        PushKind::Image { pic_url, media_id } => (
            "image",
            None,
            Some(media_id.clone()),
            Some(json!({ "pic_url": pic_url }).to_string()),
        ),
        PushKind::MiniProgramPage {
            title,
            app_id,
            page_path,
            thumb_url,
            thumb_media_id,
        } => (
            "miniprogrampage",
            None,
            Some(thumb_media_id.clone()),
            Some(
                json!({"title": title, "appid": app_id, "pagepath": page_path,
                       "thumb_url": thumb_url, "thumb_media_id": thumb_media_id})
                .to_string(),
            ),
        ),
        PushKind::UserEnterTempSession { session_from } => {
            ("enter", Some(session_from.clone()), None, None)
        }
        PushKind::Other if p.msg_type == "event" => ("event", p.event.clone(), None, None),
        PushKind::Other => ("other", Some(p.msg_type.clone()), None, None),
    }
}

/// Takes the conversation's row (serializes writers of one conversation).
async fn lock_conversation<T: Tx>(tx: &mut T, id: &str) -> Result<ConvRow> {
    let cols = CONV_COLS.replace("c.", "");
    let sql = format!("UPDATE wx_conversations SET id = id WHERE id = $1 RETURNING {cols}");
    one(tx, &sql, p![id])
        .await?
        .map(|r| conv_row(&r))
        .transpose()?
        .ok_or_else(|| HubError::not_found(format!("no conversation {id:?}")))
}

/// Stores a verified push (once: a retry finds the first row) and decides the answer.
/// `received_ms`: the hub's clock; the quota counts from `CreateTime`, but never later than the
/// moment the push arrived (a WeChat clock ahead of ours must not open windows in our future).
pub async fn receive<T: Tx>(
    tx: &mut T,
    app: &App,
    push: &Push,
    received_ms: i64,
) -> Result<Received> {
    let openid = &push.from_user_name;
    let key = push.dedupe_key();
    if let Some(r) = one(
        tx,
        "SELECT id, conversation, transfer FROM wx_messages WHERE app = $1 AND from_user = $2 AND dedupe_key = $3",
        p![&app.name, openid, &key],
    )
    .await?
    {
        return Ok(Received {
            message_id: r.i(0)?,
            conversation: r.s(1)?,
            duplicate: true,
            transfer: r.b(2).unwrap_or(false),
        });
    }
    tx.exec(
        "INSERT INTO wx_conversations (id, app, openid, created_at) VALUES ($1, $2, $3, $4) \
         ON CONFLICT (app, openid) DO NOTHING",
        p![ids::uuid4(), &app.name, openid, received_ms],
    )
    .await?;
    let conv_id = one(
        tx,
        "SELECT id FROM wx_conversations WHERE app = $1 AND openid = $2",
        p![&app.name, openid],
    )
    .await?
    .ok_or_else(|| HubError::internal("the conversation vanished"))?
    .s(0)?;
    let conv = lock_conversation(tx, &conv_id).await?;
    let (kind, text, media_id, card) = push_kind(push);
    let action = Interaction::from_push(push).map(|i| match i {
        Interaction::UserMessage { at_ms } => ("message", at_ms as i64),
        Interaction::EnterSession { at_ms } => ("enter", at_ms as i64),
    });
    let (quota_action, quota_at) = match action {
        Some((a, at)) => (Some(a.to_string()), Some(at.min(received_ms))),
        None => (None, None),
    };
    // The transfer decision (user messages only).
    let transferred = conv.transferred_until_ms.is_some_and(|t| t > received_ms);
    let transfer = push.is_user_message()
        && !transferred
        && (conv.transfer_pending
            || match &app.transfer {
                Transfer::Never => false,
                Transfer::Always => true,
                Transfer::Keyword(w) => text.as_deref().is_some_and(|t| t.contains(w.as_str())),
                Transfer::NoAgent => {
                    conv.assignee.is_none()
                        && !agent_online(tx, app, received_ms - PRESENCE_MS).await?
                }
            });
    let inserted = one(
        tx,
        "INSERT INTO wx_messages (conversation, app, dir, at_ms, kind, body_text, media_id, card, \
         from_user, dedupe_key, quota_action, quota_at_ms, transfer) \
         VALUES ($1, $2, 'in', $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) \
         ON CONFLICT (app, from_user, dedupe_key) DO NOTHING RETURNING id",
        p![
            &conv_id,
            &app.name,
            received_ms,
            kind,
            text.clone(),
            media_id,
            card,
            openid,
            &key,
            quota_action.clone(),
            quota_at,
            transfer
        ],
    )
    .await?;
    let Some(r) = inserted else {
        // another hub process stored this push meanwhile (it held the conversation first)
        let r = one(
            tx,
            "SELECT id, conversation, transfer FROM wx_messages WHERE app = $1 AND from_user = $2 AND dedupe_key = $3",
            p![&app.name, openid, &key],
        )
        .await?
        .ok_or_else(|| HubError::unavailable("a retry of this push is being stored"))?;
        return Ok(Received {
            message_id: r.i(0)?,
            conversation: r.s(1)?,
            duplicate: true,
            transfer: r.b(2).unwrap_or(false),
        });
    };
    let id = r.i(0)?;
    let enter = kind == "enter";
    tx.exec(
        "UPDATE wx_conversations SET last_message_id = $2, last_inbound_id = $2, last_inbound_ms = $3, \
         session_from = CASE WHEN $4 THEN $5 ELSE session_from END, \
         learned_errcode = CASE WHEN $6 THEN NULL ELSE learned_errcode END, \
         learned_at_ms = CASE WHEN $6 THEN NULL ELSE learned_at_ms END, \
         transfer_pending = CASE WHEN $7 THEN FALSE ELSE transfer_pending END, \
         transferred_until_ms = CASE WHEN $7 OR (transferred_until_ms IS NOT NULL AND transferred_until_ms > $3) \
             THEN $8 ELSE transferred_until_ms END \
         WHERE id = $1",
        p![
            &conv_id,
            id,
            received_ms,
            enter,
            if enter { text } else { None },
            quota_action.is_some(),
            transfer,
            received_ms + TRANSFERRED_MS
        ],
    )
    .await?;
    tx.notify(Note::Wx {
        app: app.name.clone(),
        conversation: conv_id.clone(),
        kind: "message".into(),
        message_id: Some(id),
    })
    .await?;
    Ok(Received {
        conversation: conv_id,
        message_id: id,
        duplicate: false,
        transfer,
    })
}

/// An inbound image fetched with `media/get`: its blob.
pub async fn set_inbound_blob<T: Tx>(
    tx: &mut T,
    message_id: i64,
    sha256: &str,
    error: Option<&str>,
) -> Result<()> {
    let r = one(
        tx,
        "UPDATE wx_messages SET blob_sha256 = $2, error = $3 WHERE id = $1 RETURNING app, conversation",
        p![message_id, if sha256.is_empty() { None } else { Some(sha256) }, error],
    )
    .await?;
    if let Some(r) = r {
        tx.notify(Note::Wx {
            app: r.s(0)?,
            conversation: r.s(1)?,
            kind: "changed".into(),
            message_id: Some(message_id),
        })
        .await?;
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Conversations

const CONV_COLS: &str = "c.id, c.app, c.openid, c.session_from, c.assignee, c.transfer_pending, \
    c.transferred_until_ms, c.read_up_to, c.last_message_id, c.last_inbound_id, c.learned_errcode, \
    c.last_inbound_ms, c.last_outbound_ms, c.typing_at_ms";

#[derive(Debug, Clone)]
pub struct ConvRow {
    pub id: String,
    pub app: String,
    pub openid: String,
    pub session_from: Option<String>,
    pub assignee: Option<String>,
    pub transfer_pending: bool,
    pub transferred_until_ms: Option<i64>,
    pub read_up_to: i64,
    pub last_message_id: Option<i64>,
    pub last_inbound_id: i64,
    pub learned_errcode: Option<i64>,
    pub last_inbound_ms: Option<i64>,
    pub last_outbound_ms: Option<i64>,
    pub typing_at_ms: Option<i64>,
}

fn conv_row(r: &Row) -> Result<ConvRow> {
    Ok(ConvRow {
        id: r.s(0)?,
        app: r.s(1)?,
        openid: r.s(2)?,
        session_from: r.os(3)?,
        assignee: r.os(4)?,
        transfer_pending: r.b(5)?,
        transferred_until_ms: r.oi(6)?,
        read_up_to: r.i(7)?,
        last_message_id: r.oi(8)?,
        last_inbound_id: r.i(9)?,
        learned_errcode: r.oi(10)?,
        last_inbound_ms: r.oi(11)?,
        last_outbound_ms: r.oi(12)?,
        typing_at_ms: r.oi(13)?,
    })
}

pub async fn conversation_row<T: Tx>(tx: &mut T, id: &str) -> Result<ConvRow> {
    let sql = format!("SELECT {CONV_COLS} FROM wx_conversations c WHERE c.id = $1");
    one(tx, &sql, p![id])
        .await?
        .map(|r| conv_row(&r))
        .transpose()?
        .ok_or_else(|| HubError::not_found(format!("no conversation {id:?}")))
}

/// The conversation, if the user answers for its app (else `not_found`: not shown to exist).
pub async fn visible<T: Tx>(tx: &mut T, user_id: &str, id: &str) -> Result<ConvRow> {
    let c = conversation_row(tx, id).await?;
    if !is_agent(tx, user_id, &c.app).await? {
        return Err(HubError::not_found(format!("no conversation {id:?}")));
    }
    Ok(c)
}

async fn user_name<T: Tx>(tx: &mut T, id: &str) -> Result<Option<String>> {
    one(tx, "SELECT name FROM users WHERE id = $1", p![id])
        .await?
        .map(|r| r.s(0))
        .transpose()
}

/// The customer's actions and the sends that count (sent, or maybe sent) for the quota.
async fn quota_inputs<T: Tx>(tx: &mut T, conv: &str) -> Result<(Vec<Interaction>, Vec<u64>, i64)> {
    let rows = tx
        .query(
            "SELECT dir, quota_action, quota_at_ms, state, sent_at_ms FROM wx_messages \
             WHERE conversation = $1 AND (quota_action IS NOT NULL OR (dir = 'out' AND state IN ('sent', 'unknown', 'queued', 'sending')))",
            p![conv],
        )
        .await?;
    let (mut acts, mut sends, mut pending) = (vec![], vec![], 0);
    for r in &rows {
        if r.s(0)? == "in" {
            let at = r.oi(2)?.unwrap_or(0).max(0) as u64;
            match r.os(1)?.as_deref() {
                Some("message") => acts.push(Interaction::UserMessage { at_ms: at }),
                Some("enter") => acts.push(Interaction::EnterSession { at_ms: at }),
                _ => {}
            }
        } else {
            match r.s(3)?.as_str() {
                "queued" | "sending" => pending += 1,
                _ => sends.push(r.oi(4)?.unwrap_or(0).max(0) as u64),
            }
        }
    }
    Ok((acts, sends, pending))
}

/// The quota as shown (queued and sending parts are counted as spent).
async fn quota_of<T: Tx>(tx: &mut T, c: &ConvRow, now: i64) -> Result<Quota> {
    let (acts, mut sends, pending) = quota_inputs(tx, &c.id).await?;
    for _ in 0..pending {
        sends.push(now.max(0) as u64);
    }
    Ok(quota::assess(
        &acts,
        &sends,
        c.learned_errcode,
        now.max(0) as u64,
    ))
}

fn preview(kind: &str, text: Option<&str>, card: Option<&Value>) -> String {
    let t = |s: Option<&str>| -> String {
        let s = s.unwrap_or_default();
        let mut out: String = s.chars().take(80).collect();
        if s.chars().count() > 80 {
            out.push('…');
        }
        out
    };
    let title = card
        .and_then(|c| c.get("title"))
        .and_then(Value::as_str)
        .unwrap_or_default();
    match kind {
        "text" => t(text),
        "image" => "[image]".into(),
        "miniprogrampage" => format!("[card] {title}"),
        "link" => format!("[link] {title}"),
        "enter" => "[entered the session]".into(),
        "event" => format!("[event {}]", text.unwrap_or_default()),
        _ => format!("[{}]", text.unwrap_or(kind)),
    }
}

/// A conversation as the agent API shows it (docs/wechat.md).
pub async fn conversation_json<T: Tx>(tx: &mut T, c: &ConvRow, now: i64) -> Result<Value> {
    let session_from = c
        .session_from
        .as_deref()
        .filter(|s| !s.is_empty())
        .and_then(|s| quiver_shared::sobot::session_from::SessionFrom::parse(s).ok())
        .map(|s| serde_json::to_value(s).unwrap_or(Value::Null))
        .unwrap_or(Value::Null);
    let assignee = match &c.assignee {
        Some(id) => user_name(tx, id).await?,
        None => None,
    };
    let unread = one(
        tx,
        "SELECT count(*) FROM wx_messages WHERE conversation = $1 AND dir = 'in' AND id > $2",
        p![&c.id, c.read_up_to],
    )
    .await?
    .map(|r| r.i(0))
    .transpose()?
    .unwrap_or(0);
    let last = match c.last_message_id {
        Some(id) => match one(
            tx,
            "SELECT id, dir, kind, body_text, card, at_ms FROM wx_messages WHERE id = $1",
            p![id],
        )
        .await?
        {
            Some(r) => {
                let card: Option<Value> = r.os(4)?.and_then(|s| serde_json::from_str(&s).ok());
                json!({"id": r.i(0)?, "dir": r.s(1)?,
                       "preview": preview(&r.s(2)?, r.os(3)?.as_deref(), card.as_ref()),
                       "at_ms": r.i(5)?})
            }
            None => Value::Null,
        },
        None => Value::Null,
    };
    let quota = quota_of(tx, c, now).await?;
    let transferred = c.transferred_until_ms.is_some_and(|t| t > now);
    Ok(json!({
        "id": c.id,
        "app": c.app,
        "openid": c.openid,
        "session_from": session_from,
        "session_from_raw": c.session_from,
        "assignee": assignee,
        "state": if transferred { "transferred" } else { "open" },
        "transfer_pending": c.transfer_pending,
        "unread": unread,
        "last": last,
        "quota": quota,
        "last_inbound_id": c.last_inbound_id,
    }))
}

/// `GET /v1/wx/conversations?scope=mine|open|all`, newest activity first.
pub async fn list_conversations<T: Tx>(
    tx: &mut T,
    a: &Actor,
    scope: &str,
    now: i64,
) -> Result<Value> {
    let filter = match scope {
        "mine" => "AND c.assignee = $1",
        "open" => "AND c.assignee IS NULL",
        "all" => "AND $1 = $1",
        s => {
            return Err(HubError::bad_request(format!(
                "scope {s:?}: mine, open or all"
            )))
        }
    };
    let sql = format!(
        "SELECT {CONV_COLS} FROM wx_conversations c WHERE (c.app IN (SELECT name FROM wx_apps WHERE agents_all) \
         OR c.app IN (SELECT app FROM wx_app_agents WHERE user_id = $1)) {filter} \
         ORDER BY coalesce(c.last_message_id, 0) DESC LIMIT 500"
    );
    let rows = tx.query(&sql, p![&a.user_id]).await?;
    let mut out = vec![];
    for r in &rows {
        let c = conv_row(r)?;
        out.push(conversation_json(tx, &c, now).await?);
    }
    Ok(json!({ "conversations": out }))
}

pub async fn get_conversation<T: Tx>(tx: &mut T, a: &Actor, id: &str, now: i64) -> Result<Value> {
    let c = visible(tx, &a.user_id, id).await?;
    conversation_json(tx, &c, now).await
}

const MSG_COLS: &str =
    "id, conversation, dir, at_ms, kind, body_text, media_id, blob_sha256, card, \
    body, state, errcode, error, by_user, idempotency_key, part";

/// A message as the agent API shows it.
fn message_json(r: &Row) -> Result<Value> {
    let kind = r.s(4)?;
    let mut m = json!({
        "id": r.i(0)?, "conversation": r.s(1)?, "dir": r.s(2)?, "at_ms": r.i(3)?, "kind": kind,
    });
    let o = m.as_object_mut().expect("an object");
    let card: Option<Value> = r.os(8)?.and_then(|s| serde_json::from_str(&s).ok());
    if let Some(t) = r.os(5)? {
        o.insert("text".into(), Value::String(t));
    }
    match kind.as_str() {
        "image" => {
            o.insert(
                "image".into(),
                json!({"blob": r.os(7)?, "media_id": r.os(6)?}),
            );
            if let Some(c) = card.filter(|c| c.get("pic_url").is_some()) {
                o["image"]["pic_url"] = c["pic_url"].clone();
            }
        }
        "miniprogrampage" | "link" => {
            let mut c = card.unwrap_or_else(|| json!({}));
            if kind == "miniprogrampage" {
                c["thumb_blob"] = json!(r.os(7)?);
            }
            o.insert("card".into(), c);
        }
        _ => {}
    }
    if r.s(2)? == "out" {
        if let Some(b) = r.os(9)? {
            o.insert("body".into(), Value::String(b));
        }
        o.insert("state".into(), json!(r.os(10)?));
        o.insert("errcode".into(), json!(r.oi(11)?));
        o.insert("error".into(), json!(r.os(12)?));
        o.insert("by".into(), json!(r.os(13)?));
        o.insert("idempotency_key".into(), json!(r.os(14)?));
        o.insert("part".into(), json!(r.oi(15)?));
    } else if let Some(e) = r.os(12)? {
        o.insert("error".into(), Value::String(e));
    }
    Ok(m)
}

pub async fn messages<T: Tx>(
    tx: &mut T,
    a: &Actor,
    id: &str,
    after: i64,
    limit: i64,
) -> Result<Value> {
    visible(tx, &a.user_id, id).await?;
    let sql = format!(
        "SELECT {MSG_COLS} FROM wx_messages WHERE conversation = $1 AND id > $2 ORDER BY id LIMIT $3"
    );
    let rows = tx.query(&sql, p![id, after, limit.clamp(1, 500)]).await?;
    let out = rows.iter().map(message_json).collect::<Result<Vec<_>>>()?;
    Ok(json!({ "messages": out }))
}

pub async fn message_row<T: Tx>(tx: &mut T, id: i64) -> Result<Value> {
    let sql = format!("SELECT {MSG_COLS} FROM wx_messages WHERE id = $1");
    let r = one(tx, &sql, p![id])
        .await?
        .ok_or_else(|| HubError::not_found(format!("no message {id}")))?;
    message_json(&r)
}

async fn changed<T: Tx>(
    tx: &mut T,
    c: &ConvRow,
    kind: &str,
    message_id: Option<i64>,
) -> Result<()> {
    tx.notify(Note::Wx {
        app: c.app.clone(),
        conversation: c.id.clone(),
        kind: kind.into(),
        message_id,
    })
    .await
}

/// `take`: unassigned → the caller; someone else's → `conflict` unless `force`.
pub async fn take<T: Tx>(tx: &mut T, a: &Actor, id: &str, force: bool, now: i64) -> Result<Value> {
    visible(tx, &a.user_id, id).await?;
    let c = lock_conversation(tx, id).await?;
    match &c.assignee {
        Some(u) if *u == a.user_id => {}
        Some(u) if !force => {
            let name = user_name(tx, u).await?.unwrap_or_default();
            return Err(HubError::conflict(format!(
                "{name} has this conversation (take it with force)"
            )));
        }
        _ => {
            tx.exec(
                "UPDATE wx_conversations SET assignee = $2 WHERE id = $1",
                p![id, &a.user_id],
            )
            .await?;
            changed(tx, &c, "changed", None).await?;
        }
    }
    let c = conversation_row(tx, id).await?;
    conversation_json(tx, &c, now).await
}

/// `assign`: hand over to another agent of the app, or release (`to` null).
pub async fn assign<T: Tx>(
    tx: &mut T,
    a: &Actor,
    id: &str,
    to: Option<&str>,
    now: i64,
) -> Result<Value> {
    visible(tx, &a.user_id, id).await?;
    let c = lock_conversation(tx, id).await?;
    if let Some(u) = &c.assignee {
        if *u != a.user_id && !a.admin {
            return Err(HubError::conflict(
                "another agent has this conversation: take it first",
            ));
        }
    }
    let to_id = match to {
        Some(name) => {
            let id = user_ids(tx, &[name.to_string()]).await?.remove(0);
            if !is_agent(tx, &id, &c.app).await? {
                return Err(HubError::bad_request(format!(
                    "{name} is not an agent of {}",
                    c.app
                )));
            }
            Some(id)
        }
        None => None,
    };
    tx.exec(
        "UPDATE wx_conversations SET assignee = $2 WHERE id = $1",
        p![id, to_id],
    )
    .await?;
    changed(tx, &c, "changed", None).await?;
    let c = conversation_row(tx, id).await?;
    conversation_json(tx, &c, now).await
}

pub async fn read<T: Tx>(tx: &mut T, a: &Actor, id: &str, up_to: i64, now: i64) -> Result<Value> {
    visible(tx, &a.user_id, id).await?;
    let c = lock_conversation(tx, id).await?;
    if up_to > c.read_up_to {
        tx.exec(
            "UPDATE wx_conversations SET read_up_to = $2 WHERE id = $1",
            p![id, up_to],
        )
        .await?;
        changed(tx, &c, "changed", None).await?;
    }
    let c = conversation_row(tx, id).await?;
    conversation_json(tx, &c, now).await
}

/// The customer's next message is answered with `transfer_customer_service`.
pub async fn request_transfer<T: Tx>(tx: &mut T, a: &Actor, id: &str, now: i64) -> Result<Value> {
    visible(tx, &a.user_id, id).await?;
    let c = lock_conversation(tx, id).await?;
    tx.exec(
        "UPDATE wx_conversations SET transfer_pending = TRUE WHERE id = $1",
        p![id],
    )
    .await?;
    changed(tx, &c, "changed", None).await?;
    let c = conversation_row(tx, id).await?;
    conversation_json(tx, &c, now).await
}

/// Typing: allowed now (a message within 30 s, no typing within 15 s)? Records it if so.
pub async fn typing_allowed<T: Tx>(
    tx: &mut T,
    a: &Actor,
    id: &str,
    on: bool,
    now: i64,
) -> Result<Option<(App, String)>> {
    let c = visible(tx, &a.user_id, id).await?;
    let c2 = lock_conversation(tx, &c.id).await?;
    let last = c2.last_inbound_ms.max(c2.last_outbound_ms).unwrap_or(0);
    if on {
        if now - last > 30_000 || c2.typing_at_ms.is_some_and(|t| now - t < 15_000) {
            return Ok(None);
        }
        tx.exec(
            "UPDATE wx_conversations SET typing_at_ms = $2 WHERE id = $1",
            p![id, now],
        )
        .await?;
    } else {
        if c2.typing_at_ms.is_none_or(|t| now - t >= 15_000) {
            return Ok(None);
        }
        tx.exec(
            "UPDATE wx_conversations SET typing_at_ms = NULL WHERE id = $1",
            p![id],
        )
        .await?;
    }
    let app = app(tx, &c2.app).await?;
    Ok(Some((app, c2.openid)))
}

// ---------------------------------------------------------------------------------------------
// Sends

/// One part of a send: the wire body, the kind, its media reference (`sha256:` id) if any.
#[derive(Debug, Clone)]
pub struct Part {
    pub body: String,
    pub kind: String,
    pub text: Option<String>,
    pub media_id: Option<String>,
    pub blob: Option<String>,
    pub card: Option<String>,
}

/// Reserves the parts of an answer in the outbox (or returns the rows of an earlier call with
/// the same key). The caller must be the assignee; an unassigned conversation is taken.
pub async fn reserve<T: Tx>(
    tx: &mut T,
    a: &Actor,
    id: &str,
    key: &str,
    parts: &[Part],
    now: i64,
) -> Result<Vec<Value>> {
    visible(tx, &a.user_id, id).await?;
    let c = lock_conversation(tx, id).await?;
    let sql = format!(
        "SELECT {MSG_COLS} FROM wx_messages WHERE conversation = $1 AND idempotency_key = $2 ORDER BY part"
    );
    let earlier = tx.query(&sql, p![id, key]).await?;
    if !earlier.is_empty() {
        return earlier.iter().map(message_json).collect();
    }
    match &c.assignee {
        Some(u) if *u != a.user_id => {
            let name = user_name(tx, u).await?.unwrap_or_default();
            return Err(HubError::conflict(format!(
                "{name} has this conversation: take it before answering"
            )));
        }
        Some(_) => {}
        None => {
            tx.exec(
                "UPDATE wx_conversations SET assignee = $2 WHERE id = $1",
                p![id, &a.user_id],
            )
            .await?;
        }
    }
    // The quota, with the parts already queued counted.
    let (acts, mut sends, pending) = quota_inputs(tx, id).await?;
    let now_u = now.max(0) as u64;
    for _ in 0..pending {
        sends.push(now_u);
    }
    // the last part must still fit: check as if the others were sent
    for _ in 1..parts.len() {
        sends.push(now_u);
    }
    let q = quota::assess(&acts, &sends, c.learned_errcode, now_u);
    if let Some(r) = q.refusal {
        return Err(HubError::new(
            "quota",
            format!(
                "{} ({}{})",
                r.reason,
                r.errcode,
                if r.learned { ", WeChat's answer" } else { "" }
            ),
        ));
    }
    let mut out = vec![];
    let mut first = None;
    for (i, p) in parts.iter().enumerate() {
        let r = one(
            tx,
            "INSERT INTO wx_messages (conversation, app, dir, at_ms, kind, body_text, media_id, blob_sha256, card, \
             body, state, by_user, idempotency_key, part) \
             VALUES ($1, $2, 'out', $3, $4, $5, $6, $7, $8, $9, 'queued', $10, $11, $12) RETURNING id",
            p![
                id,
                &c.app,
                now,
                &p.kind,
                p.text.clone(),
                p.media_id.clone(),
                p.blob.clone(),
                p.card.clone(),
                &p.body,
                &a.user_name,
                key,
                i as i64
            ],
        )
        .await?
        .ok_or_else(|| HubError::internal("insert returned nothing"))?;
        let mid = r.i(0)?;
        first.get_or_insert(mid);
        out.push(message_row(tx, mid).await?);
        tx.exec(
            "UPDATE wx_conversations SET last_message_id = $2 WHERE id = $1",
            p![id, mid],
        )
        .await?;
    }
    changed(tx, &c, "send", first).await?;
    Ok(out)
}

/// Takes (or renews) the conversation's send lease for `owner` until `until`; false when another
/// live owner holds it.
pub async fn lease<T: Tx>(
    tx: &mut T,
    conv: &str,
    owner: &str,
    now: i64,
    until: i64,
) -> Result<bool> {
    Ok(tx
        .exec(
            "UPDATE wx_conversations SET lease_owner = $2, lease_until_ms = $4 WHERE id = $1 \
             AND (lease_owner IS NULL OR lease_owner = $2 OR lease_until_ms < $3)",
            p![conv, owner, now, until],
        )
        .await?
        == 1)
}

pub async fn release<T: Tx>(tx: &mut T, conv: &str, owner: &str) -> Result<()> {
    tx.exec(
        "UPDATE wx_conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE id = $1 AND lease_owner = $2",
        p![conv, owner],
    )
    .await?;
    Ok(())
}

/// The next queued part of a conversation, marked `sending` (the caller holds the lease).
#[derive(Debug, Clone)]
pub struct Outgoing {
    pub id: i64,
    pub app: App,
    pub openid: String,
    pub body: String,
    pub key: String,
}

pub async fn next_sending<T: Tx>(
    tx: &mut T,
    conv: &str,
    owner: &str,
    now: i64,
) -> Result<Option<Outgoing>> {
    let c = lock_conversation(tx, conv).await?;
    if one(
        tx,
        "SELECT 1 FROM wx_conversations WHERE id = $1 AND lease_owner = $2",
        p![conv, owner],
    )
    .await?
    .is_none()
    {
        return Ok(None);
    }
    let Some(r) = one(
        tx,
        "SELECT id, body, idempotency_key FROM wx_messages WHERE conversation = $1 AND state = 'queued' ORDER BY id LIMIT 1",
        p![conv],
    )
    .await?
    else {
        return Ok(None);
    };
    let Some(app) = get_app(tx, &c.app).await? else {
        let id = r.i(0)?;
        finish(
            tx,
            id,
            "failed",
            None,
            Some("the app was removed"),
            None,
            now,
        )
        .await?;
        return Ok(None);
    };
    let id = r.i(0)?;
    tx.exec(
        "UPDATE wx_messages SET state = 'sending' WHERE id = $1",
        p![id],
    )
    .await?;
    changed(tx, &c, "send", Some(id)).await?;
    Ok(Some(Outgoing {
        id,
        app,
        openid: c.openid,
        body: r.s(1)?,
        key: r.s(2)?,
    }))
}

/// The end of a part: `sent`, `failed`, `unknown` (or `cancelled`), with what WeChat said and,
/// for a sent one, the body as sent.
pub async fn finish<T: Tx>(
    tx: &mut T,
    id: i64,
    state: &str,
    errcode: Option<i64>,
    error: Option<&str>,
    body: Option<&str>,
    now: i64,
) -> Result<()> {
    let r = one(
        tx,
        "UPDATE wx_messages SET state = $2, errcode = $3, error = $4, body = coalesce($5, body), \
         sent_at_ms = CASE WHEN $2 IN ('sent', 'unknown') THEN $6 ELSE sent_at_ms END \
         WHERE id = $1 RETURNING app, conversation",
        p![id, state, errcode, error, body, now],
    )
    .await?
    .ok_or_else(|| HubError::not_found(format!("no message {id}")))?;
    let (app, conv) = (r.s(0)?, r.s(1)?);
    if state == "sent" {
        tx.exec(
            "UPDATE wx_conversations SET last_outbound_ms = $2 WHERE id = $1",
            p![&conv, now],
        )
        .await?;
    }
    tx.notify(Note::Wx {
        app,
        conversation: conv,
        kind: "send".into(),
        message_id: Some(id),
    })
    .await
}

/// WeChat answered 45015/45047: learned until the customer acts; the rest of the answer is
/// cancelled.
pub async fn learn<T: Tx>(tx: &mut T, conv: &str, key: &str, errcode: i64, now: i64) -> Result<()> {
    tx.exec(
        "UPDATE wx_conversations SET learned_errcode = $2, learned_at_ms = $3 WHERE id = $1",
        p![conv, errcode, now],
    )
    .await?;
    tx.exec(
        "UPDATE wx_messages SET state = 'cancelled', error = 'an earlier part was refused by WeChat' \
         WHERE conversation = $1 AND idempotency_key = $2 AND state = 'queued'",
        p![conv, key],
    )
    .await?;
    Ok(())
}

/// Conversations with queued parts and no live lease (the sweeper starts their senders).
pub async fn pending_conversations<T: Tx>(tx: &mut T, now: i64) -> Result<Vec<String>> {
    tx.query(
        "SELECT DISTINCT m.conversation FROM wx_messages m JOIN wx_conversations c ON c.id = m.conversation \
         WHERE m.state = 'queued' AND (c.lease_owner IS NULL OR c.lease_until_ms < $1)",
        p![now],
    )
    .await?
    .iter()
    .map(|r| r.s(0))
    .collect()
}

/// Parts left `sending` by a sender that is gone (its lease expired; at the start of a SQLite
/// hub, every one) become `unknown`: WeChat may have them, they are never sent again by
/// themselves.
pub async fn sweep_sending<T: Tx>(tx: &mut T, now: i64, all: bool) -> Result<u64> {
    let rows = tx
        .query(
            "SELECT m.id FROM wx_messages m JOIN wx_conversations c ON c.id = m.conversation \
             WHERE m.state = 'sending' AND ($2 OR c.lease_owner IS NULL OR c.lease_until_ms < $1)",
            p![now, all],
        )
        .await?;
    for r in &rows {
        finish(
            tx,
            r.i(0)?,
            "unknown",
            None,
            Some("the hub stopped while this was being sent: WeChat may or may not have it"),
            None,
            now,
        )
        .await?;
    }
    if all {
        tx.exec(
            "UPDATE wx_conversations SET lease_owner = NULL, lease_until_ms = NULL WHERE lease_owner IS NOT NULL",
            p![],
        )
        .await?;
    }
    Ok(rows.len() as u64)
}

// ---------------------------------------------------------------------------------------------
// Tokens

#[derive(Debug, Clone)]
pub struct TokenRow {
    pub cached: Cached,
    pub generation: i64,
}

pub async fn token_row<T: Tx>(tx: &mut T, app: &str) -> Result<Option<TokenRow>> {
    one(
        tx,
        "SELECT access_token, expires_at_ms, fetched_at_ms, invalid, generation FROM wx_tokens WHERE app = $1",
        p![app],
    )
    .await?
    .map(|r| {
        Ok(TokenRow {
            cached: Cached {
                token: r.s(0)?,
                expires_at_ms: r.i(1)?,
                fetched_at_ms: r.i(2)?,
                invalid: r.b(3)?,
            },
            generation: r.i(4)?,
        })
    })
    .transpose()
}

pub async fn put_token<T: Tx>(tx: &mut T, app: &str, c: &Cached) -> Result<i64> {
    let r = one(
        tx,
        "INSERT INTO wx_tokens (app, access_token, expires_at_ms, fetched_at_ms, generation, invalid) \
         VALUES ($1, $2, $3, $4, 1, FALSE) ON CONFLICT (app) DO UPDATE SET access_token = $2, \
         expires_at_ms = $3, fetched_at_ms = $4, generation = wx_tokens.generation + 1, invalid = FALSE \
         RETURNING generation",
        p![app, &c.token, c.expires_at_ms, c.fetched_at_ms],
    )
    .await?
    .ok_or_else(|| HubError::internal("token upsert returned nothing"))?;
    r.i(0)
}

/// Marks the stored token invalid if it is still `failed` (compare-and-invalidate).
pub async fn invalidate_token<T: Tx>(tx: &mut T, app: &str, failed: &str) -> Result<bool> {
    Ok(tx
        .exec(
            "UPDATE wx_tokens SET invalid = TRUE WHERE app = $1 AND access_token = $2 AND NOT invalid",
            p![app, failed],
        )
        .await?
        == 1)
}

pub async fn force_log<T: Tx>(tx: &mut T, app: &str) -> Result<Vec<i64>> {
    tx.query(
        "SELECT at_ms FROM wx_token_force_log WHERE app = $1 ORDER BY at_ms",
        p![app],
    )
    .await?
    .iter()
    .map(|r| r.i(0))
    .collect()
}

pub async fn log_force<T: Tx>(tx: &mut T, app: &str, now: i64) -> Result<()> {
    tx.exec(
        "INSERT INTO wx_token_force_log (app, at_ms) VALUES ($1, $2)",
        p![app, now],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Media cache and blobs

pub async fn media_get<T: Tx>(tx: &mut T, app: &str, sha: &str) -> Result<Option<(String, i64)>> {
    one(
        tx,
        "SELECT media_id, expires_at_ms FROM wx_media WHERE app = $1 AND sha256 = $2",
        p![app, sha],
    )
    .await?
    .map(|r| Ok((r.s(0)?, r.i(1)?)))
    .transpose()
}

pub async fn media_put<T: Tx>(
    tx: &mut T,
    app: &str,
    sha: &str,
    media_id: &str,
    created_at_ms: i64,
    expires_at_ms: i64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO wx_media (app, sha256, media_id, created_at_ms, expires_at_ms) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (app, sha256) DO UPDATE SET media_id = $3, created_at_ms = $4, expires_at_ms = $5",
        p![app, sha, media_id, created_at_ms, expires_at_ms],
    )
    .await?;
    Ok(())
}

/// Drops a cached upload if it is still `media_id` (WeChat answered 40007 for it).
pub async fn media_drop<T: Tx>(tx: &mut T, app: &str, sha: &str, media_id: &str) -> Result<()> {
    tx.exec(
        "DELETE FROM wx_media WHERE app = $1 AND sha256 = $2 AND media_id = $3",
        p![app, sha, media_id],
    )
    .await?;
    Ok(())
}

pub async fn blob_put<T: Tx>(
    tx: &mut T,
    sha: &str,
    mime: &str,
    bytes: Vec<u8>,
    now: i64,
) -> Result<()> {
    let size = bytes.len() as i64;
    tx.exec(
        "INSERT INTO wx_blobs (sha256, mime, size, bytes, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (sha256) DO NOTHING",
        &[
            sha.into(),
            mime.into(),
            size.into(),
            crate::store::V::Bytes(bytes),
            now.into(),
        ],
    )
    .await?;
    Ok(())
}

/// `(mime, size)` of a blob.
pub async fn blob_head<T: Tx>(tx: &mut T, sha: &str) -> Result<Option<(String, i64)>> {
    one(
        tx,
        "SELECT mime, size FROM wx_blobs WHERE sha256 = $1",
        p![sha],
    )
    .await?
    .map(|r| Ok((r.s(0)?, r.i(1)?)))
    .transpose()
}

pub async fn blob_get<T: Tx>(tx: &mut T, sha: &str) -> Result<Option<(String, Vec<u8>)>> {
    one(
        tx,
        "SELECT mime, bytes FROM wx_blobs WHERE sha256 = $1",
        p![sha],
    )
    .await?
    .map(|r| Ok((r.s(0)?, r.bytes(1)?)))
    .transpose()
}

/// Whether a user may see blobs (an agent of some app).
pub async fn is_any_agent<T: Tx>(tx: &mut T, user_id: &str) -> Result<bool> {
    Ok(!agent_apps(tx, user_id).await?.is_empty())
}
