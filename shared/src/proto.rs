//! The browser protocol (docs/protocol.md): requests, replies, events, error codes, the typed
//! params of every method, and the chunking of replies too large for one browser message.

use serde::{Deserialize, Deserializer, Serialize};
use serde_json::{Map, Value};

/// Protocol version spoken by this build: the major version. A client speaking another major is
/// refused with [`ErrorCode::UnsupportedProtocol`]; additions that old clients can ignore (new
/// methods, new optional fields, new events, new error codes) raise [`PROTOCOL_MINOR`] only.
pub const PROTOCOL_VERSION: u32 = 1;
/// Additions within [`PROTOCOL_VERSION`]: 1 = the first published set (docs/protocol.md),
/// 2 = `hello_required`, 3 = `send.reserve` with `"begin": true` (one round trip for a free slot),
/// 4 = team libraries (`library` on the template methods and `send.reserve`, `team.*`,
/// `team.changed`, `forbidden`, `hub_unavailable`), 5 = review (`team.proposals`,
/// `team.review`) and the 多客服 page's `mcs.*`, 6 = WeChat conversations (`wx.*`, `wx.changed`).
pub const PROTOCOL_MINOR: u32 = 6;
/// Every major version this build speaks.
pub const SUPPORTED_PROTOCOLS: &[u32] = &[PROTOCOL_VERSION];
/// The longest string `id` a request may carry, in bytes (ids are echoed in every reply and in
/// every chunk of a reply, so they are kept short).
pub const MAX_ID_LEN: usize = 256;

/// Error codes. Append-only: never renumber, rename or reuse one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    BadFrame,
    FrameTooLarge,
    UnknownMethod,
    InvalidParams,
    DaemonUnavailable,
    NotFound,
    Conflict,
    Internal,
    // ---- protocol 1.1 ----
    UnsupportedProtocol,
    QuotaExceeded,
    QueueFull,
    StorageUnavailable,
    // ---- protocol 1.2 ----
    HelloRequired,
    // ---- protocol 1.4 ----
    Forbidden,
    HubUnavailable,
}

impl ErrorCode {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadFrame => "bad_frame",
            ErrorCode::FrameTooLarge => "frame_too_large",
            ErrorCode::UnknownMethod => "unknown_method",
            ErrorCode::InvalidParams => "invalid_params",
            ErrorCode::DaemonUnavailable => "daemon_unavailable",
            ErrorCode::NotFound => "not_found",
            ErrorCode::Conflict => "conflict",
            ErrorCode::Internal => "internal",
            ErrorCode::UnsupportedProtocol => "unsupported_protocol",
            ErrorCode::QuotaExceeded => "quota_exceeded",
            ErrorCode::QueueFull => "queue_full",
            ErrorCode::StorageUnavailable => "storage_unavailable",
            ErrorCode::HelloRequired => "hello_required",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::HubUnavailable => "hub_unavailable",
        }
    }

    /// Every code, in the order of the append-only table of docs/protocol.md.
    pub const ALL: &'static [ErrorCode] = &[
        ErrorCode::BadFrame,
        ErrorCode::FrameTooLarge,
        ErrorCode::UnknownMethod,
        ErrorCode::InvalidParams,
        ErrorCode::DaemonUnavailable,
        ErrorCode::NotFound,
        ErrorCode::Conflict,
        ErrorCode::Internal,
        ErrorCode::UnsupportedProtocol,
        ErrorCode::QuotaExceeded,
        ErrorCode::QueueFull,
        ErrorCode::StorageUnavailable,
        ErrorCode::HelloRequired,
        ErrorCode::Forbidden,
        ErrorCode::HubUnavailable,
    ];
}

/// An error with a message that names the problem, and for some codes structured details
/// (`data`, documented per code in docs/protocol.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
            data: None,
        }
    }

    /// The same error with structured details.
    pub fn with_data(mut self, data: Value) -> Self {
        self.data = Some(data);
        self
    }
}

/// A parsed request. `id` is echoed back unchanged (a number or a string).
#[derive(Debug, Clone, PartialEq)]
pub struct Request {
    pub id: Value,
    pub method: String,
    pub params: Map<String, Value>,
}

/// A request that could not be parsed: the error to send back, with the id if one was readable.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub id: Value,
    pub error: ErrorBody,
}

/// Parses one frame body as a request.
pub fn parse_request(body: &[u8]) -> Result<Request, Rejected> {
    let bad = |id: Value, msg: String| Rejected {
        id,
        error: ErrorBody::new(ErrorCode::BadFrame, msg),
    };
    let text = std::str::from_utf8(body).map_err(|e| {
        bad(
            Value::Null,
            format!("frame is not valid UTF-8 (at byte {})", e.valid_up_to()),
        )
    })?;
    let value: Value = serde_json::from_str(text)
        .map_err(|e| bad(Value::Null, format!("frame is not valid JSON: {e}")))?;
    let Value::Object(mut obj) = value else {
        return Err(bad(Value::Null, "frame is not a JSON object".into()));
    };
    let id = match obj.remove("id") {
        Some(Value::String(s)) if s.len() > MAX_ID_LEN => {
            return Err(bad(
                Value::Null,
                format!(
                    "field `id` is a string of {} bytes, longer than {MAX_ID_LEN}",
                    s.len()
                ),
            ))
        }
        Some(v @ (Value::Number(_) | Value::String(_))) => v,
        Some(_) => {
            return Err(bad(
                Value::Null,
                "field `id` must be a number or a string".into(),
            ))
        }
        None => return Err(bad(Value::Null, "missing field `id`".into())),
    };
    let method = match obj.remove("method") {
        Some(Value::String(m)) => m,
        Some(_) => return Err(bad(id, "field `method` must be a string".into())),
        None => return Err(bad(id, "missing field `method`".into())),
    };
    let params = match obj.remove("params") {
        Some(Value::Object(p)) => p,
        None | Some(Value::Null) => Map::new(),
        Some(_) => return Err(bad(id, "field `params` must be an object".into())),
    };
    Ok(Request { id, method, params })
}

/// A successful reply.
pub fn reply(id: &Value, result: Value) -> Value {
    serde_json::json!({ "id": id, "result": result })
}

/// An error reply.
pub fn error_reply(id: &Value, error: &ErrorBody) -> Value {
    serde_json::json!({ "id": id, "error": error })
}

/// An event (no id).
pub fn event(name: &str, data: Value) -> Value {
    serde_json::json!({ "event": name, "data": data })
}

/// Deserializes a request's params into `T`, naming the bad field on failure.
pub fn params<T: serde::de::DeserializeOwned>(req: &Request) -> Result<T, ErrorBody> {
    serde_json::from_value(Value::Object(req.params.clone())).map_err(|e| {
        ErrorBody::new(
            ErrorCode::InvalidParams,
            format!("{}: invalid params: {e}", req.method),
        )
    })
}

/// `hello` params. Unknown fields are ignored here (and only here): the handshake must work
/// between a newer client and an older daemon, so that the daemon can answer with its versions.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HelloParams {
    pub protocol: u32,
    #[serde(default)]
    pub client: String,
}

/// `templates.list` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListParams {
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

/// `send.reserve` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveParams {
    pub idempotency_key: String,
    pub platform: String,
    pub workspace: String,
    #[serde(default)]
    pub conversation: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    pub template_id: String,
    pub revision: u32,
    pub part_index: u32,
    pub payload: String,
    /// (1.3) Begin at once when the slot is free now: the reply is then `state: "sending"`,
    /// `go: true` (as if `send.begin` had granted it), else `go: false` with the delay.
    #[serde(default)]
    pub begin: bool,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

/// Params naming one send: `send.begin`, `send.cancel`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SendRef {
    pub send_id: i64,
}

/// `send.done` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DoneParams {
    pub send_id: i64,
    pub ok: bool,
    #[serde(default)]
    pub error: Option<String>,
}

/// `history.list` params. Every filter is optional; rows come newest first.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    #[serde(default)]
    pub limit: Option<u32>,
    /// `next_cursor` of the previous page.
    #[serde(default)]
    pub cursor: Option<String>,
    /// Only sends queued at or after this time (ms since the epoch).
    #[serde(default)]
    pub since_ms: Option<u64>,
    /// Only sends queued before this time (ms since the epoch).
    #[serde(default)]
    pub until_ms: Option<u64>,
    #[serde(default)]
    pub template_id: Option<String>,
    #[serde(default)]
    pub platform: Option<String>,
    #[serde(default)]
    pub workspace: Option<String>,
    #[serde(default)]
    pub conversation: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    /// `queued`, `sending`, `sent`, `failed` or `cancelled`.
    #[serde(default)]
    pub state: Option<String>,
}

/// `templates.get` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateGetParams {
    pub id: String,
    /// An older revision; the current one when absent.
    #[serde(default)]
    pub revision: Option<u32>,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

/// `templates.put` params: the whole template. The store assigns the revision.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplatePutParams {
    pub template: crate::model::Template,
    /// The revision the editor started from: when given and no longer current, the put is
    /// refused with `conflict` (another tab or device saved in between) instead of overwriting.
    #[serde(default)]
    pub base_revision: Option<u32>,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

/// `templates.delete` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateDeleteParams {
    pub id: String,
    #[serde(default)]
    pub base_revision: Option<u32>,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

/// `templates.revisions` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateRevisionsParams {
    pub id: String,
    #[serde(default)]
    pub cursor: Option<String>,
    #[serde(default)]
    pub limit: Option<u32>,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

/// `templates.search` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateSearchParams {
    /// What the agent typed: words, a shortcut, pinyin, initials. Empty lists by rank.
    #[serde(default)]
    pub query: String,
    #[serde(default)]
    pub limit: Option<u32>,
    /// Only templates in this folder (or below it: `Orders` matches `Orders/Refunds`).
    #[serde(default)]
    pub folder: Option<String>,
    /// Only templates with this tag.
    #[serde(default)]
    pub tag: Option<String>,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

/// `templates.import` params: one batch of an import. A library larger than one frame is sent
/// in batches under one `session`; nothing is written until the batch with `last: true`, and
/// then everything is written in one transaction (all or nothing).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateImportParams {
    pub templates: Vec<crate::model::Template>,
    /// Chosen by the client; required when the import has more than one batch.
    #[serde(default)]
    pub session: Option<String>,
    #[serde(default = "yes")]
    pub last: bool,
    /// (1.4) The template's library: `local` (the default) or a team library's id.
    #[serde(default)]
    pub library: Option<String>,
}

fn yes() -> bool {
    true
}

/// (1.4) `team.status` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamStatusParams {
    /// Ask each hub now (reachable, certificate, token, head seq, digest) instead of reporting
    /// what the sync engine last saw: `quiver doctor` does.
    #[serde(default)]
    pub probe: bool,
    /// Only this library (its id).
    #[serde(default)]
    pub library: Option<String>,
}

/// (1.4) `team.conflicts` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamConflictsParams {
    /// Only this library's conflicts.
    #[serde(default)]
    pub library: Option<String>,
}

/// Which side of a conflict to keep, for the whole template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeWhole {
    Head,
    Other,
    /// Head stays; the other side is kept as a new template (`greeting` -> `greeting-2`).
    Both,
}

/// Which side of a conflict to keep for one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TakeSide {
    Head,
    Other,
}

/// What a resolution keeps: one side, both, or a side per field (fields not named keep head).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Take {
    Whole(TakeWhole),
    Fields(std::collections::BTreeMap<String, TakeSide>),
}

/// (1.4) `team.resolve` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamResolveParams {
    pub library: String,
    /// The template's id.
    pub template: String,
    /// The conflict's id; may be left out when the template has one open conflict.
    #[serde(default)]
    pub conflict: Option<String>,
    /// Which side to keep; required unless `edited` is given.
    #[serde(default)]
    pub take: Option<Take>,
    /// The resolution written by hand (an edited template with the same id): wins over `take`.
    #[serde(default)]
    pub edited: Option<crate::model::Template>,
}

/// (1.4) `team.join` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamJoinParams {
    /// The invite `quiver hub invite` printed (`quiver+https://host:port/join#code.fingerprint`).
    pub invite: String,
    /// How the team sees this device (default: the host name).
    #[serde(default)]
    pub device_name: Option<String>,
}

/// (1.4) `team.leave` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamLeaveParams {
    /// The hub to leave; may be left out when only one was joined.
    #[serde(default)]
    pub hub: Option<String>,
    /// Leave even though edits are still waiting to be pushed (they are lost).
    #[serde(default)]
    pub force: bool,
}

/// (1.5) `team.proposals` params: the edits waiting for review in a team library.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamProposalsParams {
    pub library: String,
}

/// (1.5) `team.review` params: approve or reject one proposal (maintainers and owners).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamReviewParams {
    pub library: String,
    /// The proposal's revision id (`rev_id` of `team.proposals`).
    pub rev_id: String,
    /// `true` lands the proposal as if it had been pushed now; `false` rejects it.
    pub approve: bool,
}

/// (1.4) `team.sync` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TeamSyncParams {
    /// Wait at most this long for every library to be idle (default 30000, at most 600000).
    #[serde(default)]
    pub wait_ms: Option<u64>,
}

/// `settings.set` params: the settings to change; absent ones are left as they are.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SettingsPatch {
    /// Days of history kept; `null` keeps history forever.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    pub history_retention_days: Option<Option<u32>>,
}

/// Tells a field that is present (even as `null`) from one that is absent.
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

/// A user action the extension saw in a conversation (`meter.observe`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ObservedEvent {
    /// The customer sent a message.
    UserMessage,
    /// The customer entered the session (WeChat: opened the customer-service session).
    EnterSession,
}

impl ObservedEvent {
    pub fn as_str(self) -> &'static str {
        match self {
            ObservedEvent::UserMessage => "user_message",
            ObservedEvent::EnterSession => "enter_session",
        }
    }
}

/// `meter.observe` params: addressed like `send.reserve`, so the daemon derives the same key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ObserveParams {
    pub platform: String,
    pub workspace: String,
    #[serde(default)]
    pub conversation: Option<String>,
    #[serde(default)]
    pub customer: Option<String>,
    pub event: ObservedEvent,
    /// When it happened (ms since the epoch); now when absent, and never later than now.
    #[serde(default)]
    pub at_ms: Option<u64>,
}

/// `meter.rules.set` params: one platform's rule.
#[cfg(feature = "server")]
pub type RuleParams = crate::meter::RuleSpec;

/// `meter.rules.reset` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleResetParams {
    pub platform: String,
}

/// One chunk of a reply too large for one browser message (see [`split_reply`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Chunk {
    /// 0-based position.
    pub seq: u32,
    /// How many chunks make the reply.
    pub total: u32,
    /// A piece of the reply's JSON text; the pieces in `seq` order concatenate to it.
    pub data: String,
}

/// Why a reply could not be split.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitError(pub String);

impl std::fmt::Display for SplitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The length of `c` once escaped inside a JSON string, as serde_json writes it.
fn escaped_len(c: char) -> usize {
    match c {
        '"' | '\\' | '\u{8}' | '\u{c}' | '\n' | '\r' | '\t' => 2,
        c if (c as u32) < 0x20 => 6,
        c => c.len_utf8(),
    }
}

/// Splits the JSON text `body` of the reply to `id` into chunk frames
/// `{"id": id, "chunk": {"seq", "total", "data"}}`, each at most `max_frame` bytes of JSON.
/// A body that fits in one frame is returned as it is (one element). Pieces are cut at
/// character boundaries, so every `data` is valid UTF-8.
pub fn split_reply(id: &Value, body: &str, max_frame: usize) -> Result<Vec<String>, SplitError> {
    if body.len() <= max_frame {
        return Ok(vec![body.to_string()]);
    }
    // The frame around an empty `data`, with the widest possible seq and total.
    let wide = u32::MAX;
    let overhead = serde_json::json!({
        "id": id,
        "chunk": { "seq": wide, "total": wide, "data": "" },
    })
    .to_string()
    .len();
    let budget = max_frame.saturating_sub(overhead);
    if budget < 6 {
        return Err(SplitError(format!(
            "a chunk frame of at most {max_frame} bytes has no room for data (id too long?)"
        )));
    }
    let mut pieces: Vec<&str> = Vec::new();
    let mut start = 0;
    let mut used = 0;
    for (i, c) in body.char_indices() {
        let n = escaped_len(c);
        if used + n > budget {
            pieces.push(&body[start..i]);
            start = i;
            used = 0;
        }
        used += n;
    }
    if start < body.len() {
        pieces.push(&body[start..]);
    }
    let total = u32::try_from(pieces.len())
        .map_err(|_| SplitError(format!("{} chunks are too many", pieces.len())))?;
    Ok(pieces
        .iter()
        .enumerate()
        .map(|(seq, data)| {
            serde_json::json!({
                "id": id,
                "chunk": { "seq": seq as u32, "total": total, "data": data },
            })
            .to_string()
        })
        .collect())
}

/// A request id as [`Reassembler`] keys it: its JSON text (`serde_json::to_string`, the same text
/// as `Value`'s `Display`, without linking that one's pretty printer into the wasm core).
fn id_key(id: &Value) -> String {
    serde_json::to_string(id).unwrap_or_default()
}

/// The largest reply [`Reassembler`] puts back together, in bytes.
pub const MAX_REASSEMBLED: usize = 64 * 1024 * 1024;

/// Puts chunked replies back together (what the extension does; here for tests, fuzzing and
/// any Rust client).
#[derive(Debug, Default)]
pub struct Reassembler {
    /// id (as JSON text) -> (total, pieces received, bytes so far)
    partial: std::collections::HashMap<String, (u32, Vec<Option<String>>, usize)>,
}

impl Reassembler {
    pub fn new() -> Self {
        Self::default()
    }

    /// Feeds one frame. A frame that is not a chunk is returned as it is; a chunk returns
    /// `Ok(None)` until the last piece of its reply arrives, then the whole reply.
    pub fn push(&mut self, frame: Value) -> Result<Option<Value>, String> {
        let Some(chunk) = frame.get("chunk") else {
            return Ok(Some(frame));
        };
        let chunk: Chunk =
            serde_json::from_value(chunk.clone()).map_err(|e| format!("bad chunk: {e}"))?;
        let key = id_key(frame.get("id").unwrap_or(&Value::Null));
        if chunk.total == 0 || chunk.seq >= chunk.total || chunk.total > 4096 {
            self.partial.remove(&key);
            return Err(format!(
                "chunk {} of {} is impossible",
                chunk.seq, chunk.total
            ));
        }
        let entry = self
            .partial
            .entry(key.clone())
            .or_insert_with(|| (chunk.total, vec![None; chunk.total as usize], 0));
        if entry.0 != chunk.total {
            self.partial.remove(&key);
            return Err("chunks of one reply disagree on `total`".into());
        }
        let slot = &mut entry.1[chunk.seq as usize];
        if slot.is_none() {
            entry.2 += chunk.data.len();
            *slot = Some(chunk.data);
        }
        if entry.2 > MAX_REASSEMBLED {
            self.partial.remove(&key);
            return Err(format!("reply larger than {MAX_REASSEMBLED} bytes"));
        }
        if entry.1.iter().any(Option::is_none) {
            return Ok(None);
        }
        let (_, pieces, _) = self.partial.remove(&key).unwrap_or_default();
        let text: String = pieces.into_iter().flatten().collect();
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| format!("reassembled reply is not JSON: {e}"))
    }

    /// Drops the pieces received of the reply to `id` (a request given up on).
    pub fn forget(&mut self, id: &Value) {
        self.partial.remove(&id_key(id));
    }

    /// Replies still incomplete.
    pub fn pending(&self) -> usize {
        self.partial.len()
    }
}

/// Checks the major version a client asked for in `hello`.
pub fn negotiate(client: u32) -> Result<u32, ErrorBody> {
    if SUPPORTED_PROTOCOLS.contains(&client) {
        return Ok(client);
    }
    let advice = if client > PROTOCOL_VERSION {
        "update quiver (the daemon and native host) to the version of the extension"
    } else {
        "update the Quiver extension"
    };
    Err(ErrorBody::new(
        ErrorCode::UnsupportedProtocol,
        format!(
            "the client speaks protocol {client}, this daemon speaks {}; {advice}",
            SUPPORTED_PROTOCOLS
                .iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
    )
    .with_data(serde_json::json!({ "supported": SUPPORTED_PROTOCOLS })))
}

// ---- send states and the typed replies of the send methods ----

/// The state of a send (the history's `state`, and the `state` of every send reply and event).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SendState {
    Queued,
    Sending,
    Sent,
    Failed,
    Cancelled,
}

impl SendState {
    pub const ALL: &'static [SendState] = &[
        SendState::Queued,
        SendState::Sending,
        SendState::Sent,
        SendState::Failed,
        SendState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SendState::Queued => "queued",
            SendState::Sending => "sending",
            SendState::Sent => "sent",
            SendState::Failed => "failed",
            SendState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<SendState> {
        SendState::ALL.iter().copied().find(|x| x.as_str() == s)
    }

    /// Whether the send is over (nothing will change it any more, except a late `send.done`
    /// recording what happened to a send whose outcome was unknown).
    pub fn is_final(self) -> bool {
        matches!(
            self,
            SendState::Sent | SendState::Failed | SendState::Cancelled
        )
    }
}

impl std::fmt::Display for SendState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `send.reserve` result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReserveReply {
    pub send_id: i64,
    /// Wait this long before `send.begin` (0 when granted or when the send has moved on).
    pub delay_ms: u64,
    /// `now + delay_ms` on the daemon's clock; `null` for a replay of a send that moved on.
    pub not_before_ms: Option<u64>,
    pub state: SendState,
    /// The key was reserved before: this is that send, never a second one.
    pub replayed: bool,
    /// With `"begin": true`: whether the slot was granted now (`state` is then `sending`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub go: Option<bool>,
    /// Only in a replay of a send that moved on: its error (`null` when none).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "present"
    )]
    pub error: Option<Option<String>>,
}

/// `send.begin` result: `{"go": true}`, or `{"go": false, "delay_ms", "not_before_ms"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BeginReply {
    pub go: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay_ms: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_before_ms: Option<u64>,
}

impl BeginReply {
    pub const GO: BeginReply = BeginReply {
        go: true,
        delay_ms: None,
        not_before_ms: None,
    };

    pub fn wait(delay_ms: u64, now: u64) -> BeginReply {
        BeginReply {
            go: false,
            delay_ms: Some(delay_ms),
            not_before_ms: Some(now + delay_ms),
        }
    }
}

/// `send.done` and `send.cancel` result: the send's state after the call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SendStateReply {
    pub send_id: i64,
    pub state: SendState,
}

/// The send a meter key serves next, and when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NextSend {
    pub send_id: i64,
    pub delay_ms: u64,
    pub not_before_ms: u64,
}

/// `meter.released` event data: a send of `key` finished or left its queue (`send_id` and
/// `state` say which; both `null` when a user action changed the quota), and who is next.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MeterReleased {
    pub key: String,
    pub platform: Option<String>,
    pub send_id: Option<i64>,
    pub state: Option<SendState>,
    pub next: Option<NextSend>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_request() {
        let r = parse_request(br#"{"id":3,"method":"hello","params":{"protocol":1}}"#).unwrap();
        assert_eq!(r.id, Value::from(3));
        assert_eq!(r.method, "hello");
        let p: HelloParams = params(&r).unwrap();
        assert_eq!(p.protocol, 1);
    }

    #[test]
    fn rejects_with_named_problem() {
        let cases: &[(&[u8], &str)] = &[
            (b"\xff\xfe", "not valid UTF-8"),
            (b"{nope", "not valid JSON"),
            (b"[1]", "not a JSON object"),
            (br#"{"method":"x"}"#, "missing field `id`"),
            (br#"{"id":1}"#, "missing field `method`"),
            (
                br#"{"id":1,"method":"x","params":3}"#,
                "`params` must be an object",
            ),
        ];
        for (input, needle) in cases {
            let e = parse_request(input).unwrap_err();
            assert_eq!(e.error.code, ErrorCode::BadFrame);
            assert!(e.error.message.contains(needle), "{:?}", e.error.message);
        }
        // the id survives when it was readable
        let e = parse_request(br#"{"id":"a"}"#).unwrap_err();
        assert_eq!(e.id, Value::from("a"));
    }

    #[test]
    fn params_error_names_field() {
        let r = parse_request(br#"{"id":1,"method":"send.begin","params":{}}"#).unwrap();
        let e = params::<SendRef>(&r).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert!(e.message.contains("send_id"), "{}", e.message);
    }

    #[test]
    fn error_codes_round_trip_and_stay_in_table_order() {
        for c in ErrorCode::ALL {
            let v = serde_json::to_value(c).unwrap();
            assert_eq!(v, Value::from(c.as_str()));
            assert_eq!(serde_json::from_value::<ErrorCode>(v).unwrap(), *c);
        }
        // append-only: the first eight never move
        assert_eq!(ErrorCode::ALL[0], ErrorCode::BadFrame);
        assert_eq!(ErrorCode::ALL[7], ErrorCode::Internal);
        let e = ErrorBody::new(ErrorCode::Conflict, "x");
        assert_eq!(
            serde_json::to_value(&e).unwrap(),
            serde_json::json!({"code": "conflict", "message": "x"})
        );
    }

    #[test]
    fn long_string_ids_are_refused() {
        let id = "i".repeat(MAX_ID_LEN + 1);
        let body = serde_json::json!({"id": id, "method": "hello"}).to_string();
        let e = parse_request(body.as_bytes()).unwrap_err();
        assert!(e.error.message.contains("longer than"), "{:?}", e.error);
        assert!(e.id.is_null());
    }

    #[test]
    fn negotiation() {
        assert_eq!(negotiate(1).unwrap(), 1);
        let e = negotiate(2).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnsupportedProtocol);
        assert!(e.message.contains("update quiver"), "{}", e.message);
        assert_eq!(e.data.unwrap()["supported"], serde_json::json!([1]));
        assert!(negotiate(0).unwrap_err().message.contains("extension"));
    }

    #[test]
    fn settings_patch_tells_null_from_absent() {
        let p: SettingsPatch = serde_json::from_str("{}").unwrap();
        assert_eq!(p.history_retention_days, None);
        let p: SettingsPatch = serde_json::from_str(r#"{"history_retention_days": null}"#).unwrap();
        assert_eq!(p.history_retention_days, Some(None));
        let p: SettingsPatch = serde_json::from_str(r#"{"history_retention_days": 30}"#).unwrap();
        assert_eq!(p.history_retention_days, Some(Some(30)));
        assert!(serde_json::from_str::<SettingsPatch>(r#"{"bogus": 1}"#).is_err());
    }

    fn roundtrip(id: Value, body: &str, max: usize) -> Vec<String> {
        let frames = split_reply(&id, body, max).unwrap();
        let mut r = Reassembler::new();
        let mut out = None;
        for (i, f) in frames.iter().enumerate() {
            assert!(f.len() <= max, "frame {i} is {} > {max}", f.len());
            let v: Value = serde_json::from_str(f).unwrap();
            let got = r.push(v).unwrap();
            if i + 1 < frames.len() {
                assert!(got.is_none());
            } else {
                out = got;
            }
        }
        assert_eq!(out.unwrap(), serde_json::from_str::<Value>(body).unwrap());
        assert_eq!(r.pending(), 0);
        frames
    }

    #[test]
    fn chunks_fit_and_reassemble() {
        // quotes, backslashes, control characters and CJK all change the escaped size
        let text: String = (0..5000)
            .map(|i| match i % 7 {
                0 => '"',
                1 => '\\',
                2 => '\u{1}',
                3 => '稍',
                4 => '\n',
                5 => '😀',
                _ => 'a',
            })
            .collect();
        let body = serde_json::json!({"id": 7, "result": {"text": text}}).to_string();
        for max in [120, 200, 1000, 4096] {
            let frames = roundtrip(Value::from(7), &body, max);
            assert!(frames.len() > 1);
        }
        // fits: unchanged
        assert_eq!(split_reply(&Value::from(1), "{}", 10).unwrap(), vec!["{}"]);
        // no room
        assert!(split_reply(&Value::from("x".repeat(200)), &body, 150).is_err());
    }

    #[test]
    fn reassembler_refuses_nonsense() {
        let mut r = Reassembler::new();
        let c = |seq: u32, total: u32| serde_json::json!({"id": 1, "chunk": {"seq": seq, "total": total, "data": "{"}});
        assert!(r.push(c(3, 2)).is_err());
        assert!(r.push(c(0, 0)).is_err());
        assert!(r.push(c(0, 2)).unwrap().is_none());
        assert!(r.push(c(1, 3)).is_err(), "total changed");
        assert!(r.push(c(0, 1)).is_err(), "not JSON");
        let plain = serde_json::json!({"id": 2, "result": 1});
        assert_eq!(r.push(plain.clone()).unwrap(), Some(plain));
    }
}
