//! Every request of docs/protocol.md parsed and checked into a typed [`Call`], before anything
//! touches the store or the meter.
//!
//! Pure: no IO, no clock (a fuzz target drives [`parse`] directly). Every string field is
//! bounded, every list capped, every number range-checked; the error names the method and the
//! field.

use crate::store::{HistoryFilter, SendState};
use quiver_shared::meter::RuleSpec;
use quiver_shared::proto::{
    self, DoneParams, ErrorBody, ErrorCode, HelloParams, HistoryParams, ListParams, ObserveParams,
    Request, ReserveParams, RuleResetParams, SendRef, SettingsPatch, TeamConflictsParams,
    TeamJoinParams, TeamLeaveParams, TeamProposalsParams, TeamResolveParams, TeamReviewParams,
    TeamStatusParams, TeamSyncParams, TemplateDeleteParams, TemplateGetParams,
    TemplateImportParams, TemplatePutParams, TemplateRevisionsParams, TemplateSearchParams,
};
use quiver_shared::{Platform, Template};

/// The largest payload accepted by `send.reserve`, in bytes of its JSON-string form (escaped as
/// in a reply).
pub const MAX_PAYLOAD: usize = 1024 * 1024;
/// The longest identifier-like field (`idempotency_key`, `workspace`, ...), in bytes.
pub const MAX_FIELD: usize = 1024;
/// The longest error text kept from `send.done`, in bytes.
pub const MAX_ERROR: usize = 4096;
/// The longest search query, in bytes.
pub const MAX_QUERY: usize = 1024;
/// Default and largest page of a list.
pub const DEFAULT_LIMIT: u32 = 100;
pub const MAX_LIMIT: u32 = 500;
/// Templates in one import (all batches of a session together).
pub const MAX_IMPORT: usize = 200_000;
/// History retention bounds, in days.
pub const MAX_RETENTION_DAYS: u32 = 36_500;

/// Every method, in the order of docs/protocol.md.
pub const METHODS: &[&str] = &[
    "hello",
    "templates.list",
    "templates.get",
    "templates.put",
    "templates.delete",
    "templates.revisions",
    "templates.search",
    "templates.facets",
    "templates.import",
    "send.reserve",
    "send.begin",
    "send.done",
    "send.cancel",
    "history.list",
    "settings.get",
    "settings.set",
    "meter.observe",
    "meter.rules.get",
    "meter.rules.set",
    "meter.rules.reset",
    "doctor",
    "team.status",
    "team.conflicts",
    "team.resolve",
    "team.join",
    "team.leave",
    "team.sync",
    "team.proposals",
    "team.review",
    "mcs.status",
    "mcs.set",
    "mcs.notice",
    "wx.conversations",
    "wx.conversation",
    "wx.messages",
    "wx.take",
    "wx.assign",
    "wx.read",
    "wx.typing",
    "wx.transfer",
    "wx.preview",
    "wx.reply",
    "wx.blob",
];

/// The personal library's id, the default of every `library` param.
pub const LOCAL: &str = "local";
/// `library` for every library at once (`templates.list`, `templates.search`,
/// `templates.facets`).
pub const ALL_LIBRARIES: &str = "*";
/// The longest wait `team.sync` accepts, and its default.
pub const MAX_SYNC_WAIT_MS: u64 = 600_000;
pub const DEFAULT_SYNC_WAIT_MS: u64 = 30_000;
/// The longest invite accepted.
pub const MAX_INVITE: usize = 4096;

/// A checked request.
#[derive(Debug, Clone)]
pub enum Call {
    Hello(HelloParams),
    /// `library`: `None` lists every library (`"*"`).
    TemplatesList {
        library: Option<String>,
        after: Option<(String, String)>,
        limit: usize,
    },
    TemplatesGet(TemplateGetParams),
    TemplatesPut(Box<TemplatePutParams>),
    TemplatesDelete(TemplateDeleteParams),
    TemplatesRevisions {
        library: String,
        id: String,
        before: Option<u32>,
        limit: usize,
    },
    TemplatesSearch {
        library: Option<String>,
        query: String,
        limit: usize,
        folder: Option<String>,
        tag: Option<String>,
    },
    TemplatesFacets {
        library: Option<String>,
    },
    TemplatesImport(TemplateImportParams),
    SendReserve(ReserveParams, Platform),
    SendBegin(i64),
    SendDone(DoneParams),
    SendCancel(i64),
    HistoryList {
        filter: HistoryFilter,
        limit: usize,
    },
    SettingsGet,
    SettingsSet(SettingsPatch),
    MeterObserve(ObserveParams, Platform),
    MeterRulesGet,
    MeterRulesSet(RuleSpec),
    MeterRulesReset(Platform),
    /// `quiver doctor` for one browser or all detected: served by the connection's thread, not
    /// under the service lock (its host check starts a host that connects back to the daemon).
    Doctor(Option<crate::install::Browser>),
    TeamStatus(TeamStatusParams),
    TeamConflicts(Option<String>),
    TeamResolve(Box<TeamResolveParams>),
    TeamJoin(TeamJoinParams),
    TeamLeave(TeamLeaveParams),
    TeamProposals(TeamProposalsParams),
    TeamReview(TeamReviewParams),
    /// Wait at most this many ms.
    TeamSync(u64),
    /// `mcs.*`: the 多客服 page's settings and notes, served by the daemon's `mcs` controller
    /// (it starts and stops the page's HTTP server), not under the service lock.
    McsStatus,
    McsSet(McsSetParams),
    McsNotice(String),
    /// (1.6) A WeChat conversation method: served by the `wx` module, outside the service lock.
    Wx(WxCall),
}

/// The lowest port `mcs.set` accepts (below it, binding needs privileges).
pub const MCS_MIN_PORT: u16 = 1024;
/// The longest text `mcs.notice` accepts, in bytes.
pub const MCS_MAX_NOTICE: usize = 1000;

/// `mcs.set` params, checked: what to change (absent: unchanged).
#[derive(Debug, Clone, Default)]
pub struct McsSetParams {
    pub enabled: Option<bool>,
    pub port: Option<u16>,
    pub key: Option<String>,
}

/// `mcs.set` params as sent.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct McsSetRaw {
    #[serde(default)]
    enabled: Option<bool>,
    #[serde(default)]
    port: Option<u64>,
    #[serde(default)]
    key: Option<String>,
}

/// `mcs.notice` params.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct McsNoticeParams {
    text: String,
}

/// Whether `key` may be the 多客服 page's key: 16 to 128 characters from `A-Z a-z 0-9 - _`
/// (it travels in a URL unescaped).
pub fn mcs_key_ok(key: &str) -> bool {
    (16..=128).contains(&key.len())
        && key
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// (1.6) A checked `wx.*` request (docs/protocol.md, "WeChat conversations").
#[derive(Debug, Clone, PartialEq)]
pub enum WxCall {
    Conversations {
        scope: String,
    },
    Conversation {
        id: String,
    },
    Messages {
        id: String,
        after: u64,
        limit: usize,
    },
    Take {
        id: String,
        force: bool,
    },
    Assign {
        id: String,
        to: Option<String>,
    },
    Read {
        id: String,
        up_to: u64,
    },
    Typing {
        id: String,
        on: bool,
    },
    Transfer {
        id: String,
    },
    Preview(WxTemplateParams),
    Reply(WxTemplateParams),
    Blob {
        sha256: String,
    },
}

/// The template part of `wx.preview` and `wx.reply`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct WxTemplateParams {
    pub id: String,
    pub template: String,
    pub library: String,
    pub values: std::collections::BTreeMap<String, String>,
    /// `wx.reply` only.
    pub idempotency_key: String,
    /// `wx.reply` only: the last customer message the agent saw (default: the conversation's).
    pub seen_inbound_id: Option<u64>,
}

/// The params of every `wx.*` method (each takes its own subset; the others are refused).
#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct WxParams {
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    scope: Option<String>,
    #[serde(default)]
    after: Option<u64>,
    #[serde(default)]
    limit: Option<u32>,
    #[serde(default)]
    force: Option<bool>,
    #[serde(default, deserialize_with = "some_or_null")]
    to: Option<Option<String>>,
    #[serde(default)]
    up_to: Option<u64>,
    #[serde(default)]
    on: Option<bool>,
    #[serde(default)]
    template: Option<String>,
    #[serde(default)]
    library: Option<String>,
    #[serde(default)]
    values: Option<std::collections::BTreeMap<String, String>>,
    #[serde(default)]
    idempotency_key: Option<String>,
    #[serde(default)]
    seen_inbound_id: Option<u64>,
    #[serde(default)]
    sha256: Option<String>,
}

/// `Some(None)` for an explicit `null` (so `to: null` differs from no `to`).
fn some_or_null<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Option<Option<String>>, D::Error> {
    Ok(Some(serde::Deserialize::deserialize(d)?))
}

/// At most this many values in `wx.preview` and `wx.reply`.
pub const MAX_WX_VALUES: usize = 200;

/// A conversation id as the hub makes them (a UUID): letters, digits, `-`, `_`, `.`; it goes
/// into the hub's URL paths.
fn wx_id(m: &str, v: Option<String>) -> Result<String, ErrorBody> {
    let id = v.ok_or_else(|| invalid(format!("{m}: `id` (the conversation) is required")))?;
    if id.is_empty()
        || id.len() > 128
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        || id.starts_with('.')
    {
        return Err(invalid(format!(
            "{m}: `id` {:?} is not a conversation id (letters, digits, -, _ and ., at most 128)",
            truncate(&id, 100)
        )));
    }
    Ok(id)
}

/// Parses a `wx.*` request: each method takes the fields it names, no others.
fn parse_wx(m: &str, req: &Request) -> Result<WxCall, ErrorBody> {
    let allowed: &[&str] = match m {
        "wx.conversations" => &["scope"],
        "wx.conversation" | "wx.transfer" => &["id"],
        "wx.messages" => &["id", "after", "limit"],
        "wx.take" => &["id", "force"],
        "wx.assign" => &["id", "to"],
        "wx.read" => &["id", "up_to"],
        "wx.typing" => &["id", "on"],
        "wx.preview" => &["id", "template", "library", "values"],
        "wx.reply" => &[
            "id",
            "template",
            "library",
            "values",
            "idempotency_key",
            "seen_inbound_id",
        ],
        "wx.blob" => &["sha256"],
        _ => &[],
    };
    if let Some(k) = req.params.keys().find(|k| !allowed.contains(&k.as_str())) {
        return Err(invalid(format!(
            "{m}: unknown field `{}` (it takes {})",
            truncate(k, 100),
            allowed.join(", ")
        )));
    }
    match req.params.get("values") {
        None | Some(serde_json::Value::Object(_)) | Some(serde_json::Value::Null) => {}
        Some(_) => {
            return Err(invalid(format!(
                "{m}: `values` must be an object of variable names to strings"
            )))
        }
    }
    if let Some(serde_json::Value::Object(vals)) = req.params.get("values") {
        if let Some((k, _)) = vals.iter().find(|(_, v)| !v.is_string()) {
            return Err(invalid(format!(
                "{m}: `values.{}` must be a string",
                truncate(k, 100)
            )));
        }
    }
    let p: WxParams = proto::params(req)?;
    let need = |v: Option<bool>, f: &str| {
        v.ok_or_else(|| invalid(format!("{m}: `{f}` (true or false) is required")))
    };
    Ok(match m {
        "wx.conversations" => {
            let scope = p.scope.unwrap_or_else(|| "all".into());
            if !matches!(scope.as_str(), "mine" | "open" | "all") {
                return Err(invalid(format!(
                    "{m}: `scope` is mine, open or all, not {:?}",
                    truncate(&scope, 100)
                )));
            }
            WxCall::Conversations { scope }
        }
        "wx.conversation" => WxCall::Conversation {
            id: wx_id(m, p.id)?,
        },
        "wx.transfer" => WxCall::Transfer {
            id: wx_id(m, p.id)?,
        },
        "wx.messages" => WxCall::Messages {
            id: wx_id(m, p.id)?,
            after: p.after.unwrap_or(0),
            limit: page_limit(m, p.limit)?,
        },
        "wx.take" => WxCall::Take {
            id: wx_id(m, p.id)?,
            force: p.force.unwrap_or(false),
        },
        "wx.assign" => {
            let id = wx_id(m, p.id)?;
            let to = p.to.ok_or_else(|| {
                invalid(format!(
                    "{m}: `to` is required: a user name, or null to release the conversation"
                ))
            })?;
            if let Some(u) = &to {
                check_field(m, "to", u, true)?;
            }
            WxCall::Assign { id, to }
        }
        "wx.read" => WxCall::Read {
            id: wx_id(m, p.id)?,
            up_to: p
                .up_to
                .ok_or_else(|| invalid(format!("{m}: `up_to` (a message id) is required")))?,
        },
        "wx.typing" => WxCall::Typing {
            id: wx_id(m, p.id)?,
            on: need(p.on, "on")?,
        },
        "wx.preview" | "wx.reply" => {
            let id = wx_id(m, p.id)?;
            let template = p
                .template
                .ok_or_else(|| invalid(format!("{m}: `template` (its id) is required")))?;
            check_field(m, "template", &template, true)?;
            let library = one_library(m, p.library)?;
            let values = p.values.unwrap_or_default();
            if values.len() > MAX_WX_VALUES {
                return Err(invalid(format!(
                    "{m}: `values` has {} entries, more than {MAX_WX_VALUES}",
                    values.len()
                )));
            }
            for (k, v) in &values {
                check_field(m, "values", k, true)?;
                if v.len() > MAX_PAYLOAD {
                    return Err(invalid(format!(
                        "{m}: `values.{}` is longer than {MAX_PAYLOAD} bytes",
                        truncate(k, 100)
                    )));
                }
            }
            let mut t = WxTemplateParams {
                id,
                template,
                library,
                values,
                idempotency_key: String::new(),
                seen_inbound_id: p.seen_inbound_id,
            };
            if m == "wx.reply" {
                let key = p.idempotency_key.ok_or_else(|| {
                    invalid(format!(
                        "{m}: `idempotency_key` is required (the same key again never sends twice)"
                    ))
                })?;
                check_field(m, "idempotency_key", &key, true)?;
                if key.len() > 200 {
                    return Err(invalid(format!(
                        "{m}: `idempotency_key` is longer than 200 bytes"
                    )));
                }
                t.idempotency_key = key;
                WxCall::Reply(t)
            } else {
                WxCall::Preview(t)
            }
        }
        "wx.blob" => {
            let sha = p
                .sha256
                .ok_or_else(|| invalid(format!("{m}: `sha256` is required")))?;
            let hex = sha
                .strip_prefix("sha256:")
                .unwrap_or(&sha)
                .to_ascii_lowercase();
            if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(invalid(format!(
                    "{m}: `sha256` must be 64 hex digits (or sha256:HEX), not {:?}",
                    truncate(&sha, 100)
                )));
            }
            WxCall::Blob { sha256: hex }
        }
        other => {
            return Err(ErrorBody::new(
                ErrorCode::UnknownMethod,
                format!("unknown method {:?}", truncate(other, 100)),
            ))
        }
    })
}

/// `templates.facets` params.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct FacetsParams {
    #[serde(default)]
    library: Option<String>,
}

/// A `library` param: `local` when absent; `"*"` (every library, as `None`) only where
/// `all` allows it.
fn library(m: &str, v: Option<String>, all: bool) -> Result<Option<String>, ErrorBody> {
    match v {
        None => Ok(Some(LOCAL.to_string())),
        Some(l) if l == ALL_LIBRARIES => {
            if all {
                Ok(None)
            } else {
                Err(invalid(format!(
                    "{m}: `library` \"*\" (every library) is for templates.list, \
                     templates.search and templates.facets; name one library"
                )))
            }
        }
        Some(l) => {
            check_field(m, "library", &l, true)?;
            Ok(Some(l))
        }
    }
}

/// A `library` param naming one library (`local` when absent).
fn one_library(m: &str, v: Option<String>) -> Result<String, ErrorBody> {
    Ok(library(m, v, false)?.unwrap_or_else(|| LOCAL.to_string()))
}

/// `doctor` params.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DoctorParams {
    #[serde(default)]
    browser: Option<String>,
}

pub fn invalid(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::InvalidParams, msg)
}

/// Parses and checks `req`.
pub fn parse(req: &Request) -> Result<Call, ErrorBody> {
    let m = req.method.as_str();
    Ok(match m {
        "hello" => Call::Hello(proto::params(req)?),
        "templates.list" => {
            let p: ListParams = proto::params(req)?;
            let library = library(m, p.library, true)?;
            let bad =
                || invalid("templates.list: `cursor` is not a cursor returned by templates.list");
            let after = match (&p.cursor, &library) {
                (Some(c), Some(l)) => Some((l.clone(), decode_cursor(c).ok_or_else(bad)?)),
                (Some(c), None) => Some(decode_cursor_all(c).ok_or_else(bad)?),
                (None, _) => None,
            };
            Call::TemplatesList {
                library,
                after,
                limit: page_limit(m, p.limit)?,
            }
        }
        "templates.get" => {
            let mut p: TemplateGetParams = proto::params(req)?;
            check_field(m, "id", &p.id, true)?;
            p.library = Some(one_library(m, p.library)?);
            Call::TemplatesGet(p)
        }
        "templates.put" => {
            let mut p: TemplatePutParams = proto::params(req)?;
            check_template(m, "template", &p.template)?;
            p.library = Some(one_library(m, p.library)?);
            Call::TemplatesPut(Box::new(p))
        }
        "templates.delete" => {
            let mut p: TemplateDeleteParams = proto::params(req)?;
            check_field(m, "id", &p.id, true)?;
            p.library = Some(one_library(m, p.library)?);
            Call::TemplatesDelete(p)
        }
        "templates.revisions" => {
            let p: TemplateRevisionsParams = proto::params(req)?;
            check_field(m, "id", &p.id, true)?;
            let before = match &p.cursor {
                Some(c) => Some(
                    c.strip_prefix('r')
                        .and_then(|n| n.parse::<u32>().ok())
                        .ok_or_else(|| {
                            invalid(format!(
                                "{m}: `cursor` is not a cursor returned by templates.revisions"
                            ))
                        })?,
                ),
                None => None,
            };
            Call::TemplatesRevisions {
                library: one_library(m, p.library)?,
                id: p.id,
                before,
                limit: page_limit(m, p.limit)?,
            }
        }
        "templates.search" => {
            let p: TemplateSearchParams = proto::params(req)?;
            if p.query.len() > MAX_QUERY {
                return Err(invalid(format!(
                    "{m}: `query` is {} bytes, more than the limit of {MAX_QUERY}",
                    p.query.len()
                )));
            }
            for (name, v) in [("folder", &p.folder), ("tag", &p.tag)] {
                if let Some(v) = v {
                    check_field(m, name, v, false)?;
                }
            }
            Call::TemplatesSearch {
                library: library(m, p.library, true)?,
                query: p.query,
                limit: page_limit(m, p.limit)?,
                folder: p.folder.filter(|f| !f.is_empty()),
                tag: p.tag.filter(|t| !t.is_empty()),
            }
        }
        "templates.facets" => {
            let p: FacetsParams = proto::params(req)?;
            Call::TemplatesFacets {
                library: library(m, p.library, true)?,
            }
        }
        "templates.import" => {
            let mut p: TemplateImportParams = proto::params(req)?;
            p.library = Some(one_library(m, p.library)?);
            if let Some(s) = &p.session {
                check_field(m, "session", s, true)?;
            }
            if p.templates.len() > MAX_IMPORT {
                return Err(invalid(format!(
                    "{m}: {} templates, more than the limit of {MAX_IMPORT}",
                    p.templates.len()
                )));
            }
            for (i, t) in p.templates.iter().enumerate() {
                check_template(m, &format!("templates[{i}]"), t)?;
            }
            if p.session.is_none() && !p.last {
                return Err(invalid(format!(
                    "{m}: an import in several batches needs a `session`"
                )));
            }
            Call::TemplatesImport(p)
        }
        "send.reserve" => {
            let mut p: ReserveParams = proto::params(req)?;
            p.library = Some(one_library(m, p.library)?);
            check_field(m, "idempotency_key", &p.idempotency_key, true)?;
            check_field(m, "workspace", &p.workspace, true)?;
            check_field(m, "template_id", &p.template_id, true)?;
            for (name, v) in [("conversation", &p.conversation), ("customer", &p.customer)] {
                if let Some(v) = v {
                    check_field(m, name, v, false)?;
                }
            }
            let platform = platform(m, &p.platform)?;
            if p.payload.is_empty() {
                return Err(invalid(format!("{m}: `payload` is empty")));
            }
            // bounded as it is carried (escaped inside a JSON string), so every history page
            // that holds it fits one reply
            let size = json_escaped_len(&p.payload);
            if size > MAX_PAYLOAD {
                return Err(invalid(format!(
                    "{m}: `payload` is {size} bytes as a JSON string (quotes, backslashes and \
                     control characters escaped), more than the limit of {MAX_PAYLOAD}"
                )));
            }
            Call::SendReserve(p, platform)
        }
        "send.begin" => Call::SendBegin(proto::params::<SendRef>(req)?.send_id),
        "send.done" => {
            let mut p: DoneParams = proto::params(req)?;
            p.error = p
                .error
                .as_deref()
                .map(|e| truncate(e.trim(), MAX_ERROR).to_string())
                .filter(|e| !e.is_empty());
            Call::SendDone(p)
        }
        "send.cancel" => Call::SendCancel(proto::params::<SendRef>(req)?.send_id),
        "history.list" => {
            let p: HistoryParams = proto::params(req)?;
            let before_id = match &p.cursor {
                Some(c) => Some(
                    c.strip_prefix('h')
                        .and_then(|n| n.parse::<i64>().ok())
                        .filter(|n| *n > 0)
                        .ok_or_else(|| {
                            invalid(format!("{m}: `cursor` is not a cursor returned by {m}"))
                        })?,
                ),
                None => None,
            };
            for (name, v) in [
                ("template_id", &p.template_id),
                ("platform", &p.platform),
                ("workspace", &p.workspace),
                ("conversation", &p.conversation),
                ("customer", &p.customer),
            ] {
                if let Some(v) = v {
                    check_field(m, name, v, false)?;
                }
            }
            let state = match &p.state {
                Some(s) => Some(SendState::parse(s).ok_or_else(|| {
                    invalid(format!(
                        "{m}: `state` {s:?} is not one of queued, sending, sent, failed, cancelled"
                    ))
                })?),
                None => None,
            };
            if let (Some(a), Some(b)) = (p.since_ms, p.until_ms) {
                if a > b {
                    return Err(invalid(format!("{m}: `since_ms` is after `until_ms`")));
                }
            }
            Call::HistoryList {
                limit: page_limit(m, p.limit)?,
                filter: HistoryFilter {
                    before_id,
                    since_ms: p.since_ms,
                    until_ms: p.until_ms,
                    template_id: p.template_id,
                    platform: p.platform,
                    workspace: p.workspace,
                    conversation: p.conversation,
                    customer: p.customer,
                    state,
                },
            }
        }
        "settings.get" => {
            no_params(req)?;
            Call::SettingsGet
        }
        "settings.set" => {
            let p: SettingsPatch = proto::params(req)?;
            if let Some(Some(d)) = p.history_retention_days {
                if d == 0 || d > MAX_RETENTION_DAYS {
                    return Err(invalid(format!(
                        "{m}: `history_retention_days` must be 1 to {MAX_RETENTION_DAYS}, or \
                         null to keep history forever"
                    )));
                }
            }
            Call::SettingsSet(p)
        }
        "meter.observe" => {
            let p: ObserveParams = proto::params(req)?;
            check_field(m, "workspace", &p.workspace, true)?;
            for (name, v) in [("conversation", &p.conversation), ("customer", &p.customer)] {
                if let Some(v) = v {
                    check_field(m, name, v, false)?;
                }
            }
            let platform = platform(m, &p.platform)?;
            Call::MeterObserve(p, platform)
        }
        "meter.rules.get" => {
            no_params(req)?;
            Call::MeterRulesGet
        }
        "meter.rules.set" => {
            let p: RuleSpec = proto::params(req)?;
            p.validate().map_err(|e| invalid(format!("{m}: {e}")))?;
            Call::MeterRulesSet(p)
        }
        "meter.rules.reset" => {
            let p: RuleResetParams = proto::params(req)?;
            Call::MeterRulesReset(platform(m, &p.platform)?)
        }
        "mcs.status" => {
            no_params(req)?;
            Call::McsStatus
        }
        "mcs.set" => {
            let p: McsSetRaw = proto::params(req)?;
            let port = match p.port {
                None => None,
                Some(port) if port < u64::from(MCS_MIN_PORT) => {
                    return Err(invalid(format!(
                        "mcs.set: `port` {port} is below {MCS_MIN_PORT} (choose 1024 to 65535)"
                    )))
                }
                Some(port) => Some(u16::try_from(port).map_err(|_| {
                    invalid(format!(
                        "mcs.set: `port` {port} is above 65535 (choose 1024 to 65535)"
                    ))
                })?),
            };
            if let Some(k) = &p.key {
                if !mcs_key_ok(k) {
                    return Err(invalid(
                        "mcs.set: `key` must be 16 to 128 characters from A-Z, a-z, 0-9, - and _",
                    ));
                }
            }
            Call::McsSet(McsSetParams {
                enabled: p.enabled,
                port,
                key: p.key,
            })
        }
        "mcs.notice" => {
            let p: McsNoticeParams = proto::params(req)?;
            if p.text.len() > MCS_MAX_NOTICE {
                return Err(invalid(format!(
                    "mcs.notice: `text` is longer than {MCS_MAX_NOTICE} bytes"
                )));
            }
            Call::McsNotice(p.text)
        }
        "doctor" => {
            let p: DoctorParams = proto::params(req)?;
            Call::Doctor(
                p.browser
                    .map(|b| crate::install::Browser::parse(&b))
                    .transpose()
                    .map_err(|e| invalid(format!("doctor: `browser`: {e}")))?,
            )
        }
        "team.status" => {
            let p: TeamStatusParams = proto::params(req)?;
            if let Some(l) = &p.library {
                check_field(m, "library", l, true)?;
            }
            Call::TeamStatus(p)
        }
        "team.conflicts" => {
            let p: TeamConflictsParams = proto::params(req)?;
            Call::TeamConflicts(match p.library {
                Some(l) => {
                    check_field(m, "library", &l, true)?;
                    Some(l)
                }
                None => None,
            })
        }
        "team.resolve" => {
            let p: TeamResolveParams = proto::params(req)?;
            check_field(m, "library", &p.library, true)?;
            check_field(m, "template", &p.template, true)?;
            if let Some(c) = &p.conflict {
                check_field(m, "conflict", c, true)?;
            }
            match (&p.take, &p.edited) {
                (None, None) => {
                    return Err(invalid(format!(
                        "{m}: say what to keep: `take` (\"head\", \"other\", \"both\" or \
                         {{field: \"head\"|\"other\"}}) or an `edited` template"
                    )))
                }
                (_, Some(t)) => {
                    check_template(m, "edited", t)?;
                    if t.id != p.template {
                        return Err(invalid(format!(
                            "{m}: `edited.id` {:?} is not the template {:?}",
                            truncate(&t.id, 100),
                            truncate(&p.template, 100)
                        )));
                    }
                }
                (Some(proto::Take::Fields(f)), None) => {
                    const FIELDS: &[&str] =
                        &["title", "folder", "shortcut", "tags", "variables", "parts"];
                    if f.is_empty() {
                        return Err(invalid(format!("{m}: `take` names no field")));
                    }
                    for k in f.keys() {
                        if !FIELDS.contains(&k.as_str()) {
                            return Err(invalid(format!(
                                "{m}: `take`: {:?} is not a field (one of {})",
                                truncate(k, 100),
                                FIELDS.join(", ")
                            )));
                        }
                    }
                }
                (Some(proto::Take::Whole(_)), None) => {}
            }
            Call::TeamResolve(Box::new(p))
        }
        "team.join" => {
            let p: TeamJoinParams = proto::params(req)?;
            if p.invite.trim().is_empty() || p.invite.len() > MAX_INVITE {
                return Err(invalid(format!(
                    "{m}: `invite` must be the invite `quiver hub invite` printed (at most \
                     {MAX_INVITE} bytes)"
                )));
            }
            if let Some(n) = &p.device_name {
                check_field(m, "device_name", n, true)?;
            }
            Call::TeamJoin(p)
        }
        "team.leave" => {
            let p: TeamLeaveParams = proto::params(req)?;
            if let Some(h) = &p.hub {
                check_field(m, "hub", h, true)?;
            }
            Call::TeamLeave(p)
        }
        "team.proposals" => {
            let p: TeamProposalsParams = proto::params(req)?;
            check_field(m, "library", &p.library, false)?;
            Call::TeamProposals(p)
        }
        "team.review" => {
            let p: TeamReviewParams = proto::params(req)?;
            check_field(m, "library", &p.library, false)?;
            check_field(m, "rev_id", &p.rev_id, false)?;
            Call::TeamReview(p)
        }
        "team.sync" => {
            let p: TeamSyncParams = proto::params(req)?;
            let w = p.wait_ms.unwrap_or(DEFAULT_SYNC_WAIT_MS);
            if w > MAX_SYNC_WAIT_MS {
                return Err(invalid(format!(
                    "{m}: `wait_ms` must be at most {MAX_SYNC_WAIT_MS}"
                )));
            }
            Call::TeamSync(w)
        }
        m if m.starts_with("wx.") && METHODS.contains(&m) => Call::Wx(parse_wx(m, req)?),
        other => {
            return Err(ErrorBody::new(
                ErrorCode::UnknownMethod,
                format!(
                    "unknown method {:?} (known: {})",
                    truncate(other, 100),
                    METHODS.join(", ")
                ),
            ))
        }
    })
}

fn no_params(req: &Request) -> Result<(), ErrorBody> {
    match req.params.keys().next() {
        None => Ok(()),
        Some(k) => Err(invalid(format!(
            "{}: unknown field `{}` (this method takes no params)",
            req.method,
            truncate(k, 100)
        ))),
    }
}

fn platform(method: &str, p: &str) -> Result<Platform, ErrorBody> {
    Platform::parse(p).map_err(|r| invalid(format!("{method}: `platform`: {}", r.message)))
}

/// A template as the store accepts it: the model's own checks, which bound every string and
/// list and the whole template (`quiver_shared::model::limits`), with the field named in
/// `data.field`.
fn check_template(method: &str, at: &str, t: &Template) -> Result<(), ErrorBody> {
    if let Err((field, msg)) = t.check() {
        let sep = if field.is_empty() { "" } else { "." };
        return Err(invalid(format!("{method}: `{at}{sep}{field}`: {msg}"))
            .with_data(serde_json::json!({ "field": format!("{at}{sep}{field}") })));
    }
    Ok(())
}

/// The length of `s` as a JSON string's contents (quotes, backslashes and control characters
/// escaped as serde_json writes them): what a payload costs in every reply that carries it.
pub fn json_escaped_len(s: &str) -> usize {
    s.bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 2,
            0..=0x1f => 6,
            _ => 1,
        })
        .sum()
}

/// Checks a string field: non-empty when `required`, at most [`MAX_FIELD`] bytes.
pub fn check_field(method: &str, name: &str, v: &str, required: bool) -> Result<(), ErrorBody> {
    if required && v.trim().is_empty() {
        return Err(invalid(format!("{method}: `{name}` is empty")));
    }
    if v.len() > MAX_FIELD {
        return Err(invalid(format!(
            "{method}: `{name}` is {} bytes, more than the limit of {MAX_FIELD}",
            v.len()
        )));
    }
    Ok(())
}

/// A page size: default [`DEFAULT_LIMIT`], at most [`MAX_LIMIT`], never 0.
pub fn page_limit(method: &str, limit: Option<u32>) -> Result<usize, ErrorBody> {
    match limit.unwrap_or(DEFAULT_LIMIT) {
        0 => Err(invalid(format!(
            "{method}: `limit` must be 1 to {MAX_LIMIT}"
        ))),
        n => Ok(n.min(MAX_LIMIT) as usize),
    }
}

/// `s` cut to at most `max` bytes at a character boundary.
pub fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Template cursors are opaque to clients: `c1` + the hex of the last id on the page.
pub fn encode_cursor(last_id: &str) -> String {
    let mut s = String::from("c1");
    for b in last_id.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// A cursor over every library: `c2` + the hex of the last library + `_` + the hex of its id.
pub fn encode_cursor_all(library: &str, last_id: &str) -> String {
    let mut s = String::from("c2");
    for b in library.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s.push('_');
    for b in last_id.bytes() {
        s.push_str(&format!("{b:02x}"));
    }
    s
}

pub fn decode_cursor_all(c: &str) -> Option<(String, String)> {
    let (l, i) = c.strip_prefix("c2")?.split_once('_')?;
    Some((unhex(l)?, unhex(i)?))
}

fn unhex(hex: &str) -> Option<String> {
    if hex.is_empty() || !hex.len().is_multiple_of(2) || hex.len() > 2 * MAX_FIELD {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

pub fn decode_cursor(c: &str) -> Option<String> {
    let hex = c.strip_prefix("c1")?;
    if hex.is_empty() || hex.len() % 2 != 0 || hex.len() > 2 * MAX_FIELD {
        return None;
    }
    let bytes = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(hex.get(i..i + 2)?, 16).ok())
        .collect::<Option<Vec<u8>>>()?;
    String::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn req(method: &str, params: Value) -> Request {
        let frame = json!({ "id": 1, "method": method, "params": params }).to_string();
        proto::parse_request(frame.as_bytes()).unwrap()
    }

    fn err(method: &str, params: Value) -> String {
        let e = parse(&req(method, params)).unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams, "{e:?}");
        e.message
    }

    #[test]
    fn wx_params_are_checked_and_named() {
        let ok = |m: &str, p: Value| match parse(&req(m, p)) {
            Ok(Call::Wx(c)) => c,
            other => panic!("{m}: {other:?}"),
        };
        assert_eq!(
            ok("wx.conversations", json!({})),
            WxCall::Conversations {
                scope: "all".into()
            }
        );
        assert!(err("wx.conversations", json!({"scope": "others"})).contains("mine, open or all"));
        assert_eq!(
            ok("wx.messages", json!({"id": "c-1", "after": 7})),
            WxCall::Messages {
                id: "c-1".into(),
                after: 7,
                limit: 100
            }
        );
        // ids go into the hub's paths: only id characters
        for bad in ["", "../v1/me", "a/b", "a?x=1", ".hidden", "x y"] {
            assert!(
                err("wx.take", json!({"id": bad})).contains("not a conversation id"),
                "{bad}"
            );
        }
        assert!(err("wx.take", json!({})).contains("`id`"));
        // a field another wx method takes is refused by name
        assert!(err("wx.read", json!({"id": "c", "up_to": 1, "on": true}))
            .contains("unknown field `on`"));
        assert!(err("wx.read", json!({"id": "c"})).contains("`up_to`"));
        assert!(err("wx.typing", json!({"id": "c"})).contains("`on`"));
        // assign: a user, or an explicit null; nothing is an error
        assert_eq!(
            ok("wx.assign", json!({"id": "c", "to": null})),
            WxCall::Assign {
                id: "c".into(),
                to: None
            }
        );
        assert_eq!(
            ok("wx.assign", json!({"id": "c", "to": "bob"})),
            WxCall::Assign {
                id: "c".into(),
                to: Some("bob".into())
            }
        );
        assert!(err("wx.assign", json!({"id": "c"})).contains("null to release"));
        // replies need a key; previews take none
        assert!(err("wx.reply", json!({"id": "c", "template": "t"})).contains("idempotency_key"));
        assert!(err(
            "wx.preview",
            json!({"id": "c", "template": "t", "idempotency_key": "k"})
        )
        .contains("unknown field `idempotency_key`"));
        match ok(
            "wx.reply",
            json!({"id": "c", "template": "t", "idempotency_key": "k", "values": {"a.b": "1"}}),
        ) {
            WxCall::Reply(p) => {
                assert_eq!(
                    (p.library.as_str(), p.idempotency_key.as_str()),
                    ("local", "k")
                );
                assert_eq!(p.values.get("a.b").map(String::as_str), Some("1"));
            }
            other => panic!("{other:?}"),
        }
        assert!(err(
            "wx.reply",
            json!({"id": "c", "template": "t", "idempotency_key": "k".repeat(201)})
        )
        .contains("longer than 200"));
        assert!(err(
            "wx.preview",
            json!({"id": "c", "template": "t", "values": {"n": 1}})
        )
        .contains("values"));
        // blobs: 64 hex digits, with or without the sha256: prefix
        let h = "AB".repeat(32);
        assert_eq!(
            ok("wx.blob", json!({"sha256": format!("sha256:{h}")})),
            WxCall::Blob {
                sha256: h.to_ascii_lowercase()
            }
        );
        assert!(err("wx.blob", json!({"sha256": "../x"})).contains("64 hex digits"));
    }

    #[test]
    fn cursor_round_trip() {
        for id in ["greeting", "稍等", "a"] {
            assert_eq!(decode_cursor(&encode_cursor(id)).as_deref(), Some(id));
        }
        for bad in ["", "c1", "c1z0", "c1abc", "x1aa", "c1ff"] {
            assert_eq!(decode_cursor(bad), None, "{bad}");
        }
    }

    #[test]
    fn mcs_params_are_checked() {
        assert!(matches!(
            parse(&req("mcs.status", json!({}))),
            Ok(Call::McsStatus)
        ));
        let Ok(Call::McsSet(p)) = parse(&req("mcs.set", json!({"enabled": true, "port": 47321})))
        else {
            panic!("mcs.set")
        };
        assert_eq!((p.enabled, p.port, p.key), (Some(true), Some(47321), None));
        for (bad, says) in [
            (json!({"port": 80}), "below 1024"),
            (json!({"port": 70000}), "above 65535"),
            (json!({"key": "short"}), "16 to 128"),
            (json!({"key": "has space in it 0123456789"}), "16 to 128"),
            (json!({"key": "ü".repeat(20)}), "16 to 128"),
            (json!({"enabled": "yes"}), "boolean"),
        ] {
            let e = parse(&req("mcs.set", bad.clone())).unwrap_err();
            assert_eq!(e.code, ErrorCode::InvalidParams, "{bad}");
            assert!(e.message.contains(says), "{bad}: {}", e.message);
        }
        assert!(mcs_key_ok("Team-Key_0123456789abcdef"));
        assert!(!mcs_key_ok(&"a".repeat(129)));
        let e = parse(&req("mcs.notice", json!({"text": "x".repeat(1001)}))).unwrap_err();
        assert!(e.message.contains("1000"), "{}", e.message);
        assert!(matches!(
            parse(&req("mcs.notice", json!({"text": "hi"}))),
            Ok(Call::McsNotice(t)) if t == "hi"
        ));
    }

    #[test]
    fn every_method_is_known_and_unknown_ones_are_named() {
        for m in METHODS {
            let e = parse(&req(m, json!({"__nope": 1, "protocol": 1})));
            // hello alone ignores unknown fields (forward compatibility of the handshake)
            assert_eq!(e.is_err(), *m != "hello", "{m}");
            if let Err(e) = e {
                assert_ne!(e.code, ErrorCode::UnknownMethod, "{m}");
            }
        }
        let e = parse(&req("templates.delete_all", json!({}))).unwrap_err();
        assert_eq!(e.code, ErrorCode::UnknownMethod);
        assert!(e.message.contains("templates.delete_all") && e.message.contains("send.reserve"));
    }

    #[test]
    fn fields_are_bounded_and_named() {
        let mut p = json!({
            "idempotency_key": "k", "platform": "udesk", "workspace": "w",
            "template_id": "t", "revision": 1, "part_index": 0, "payload": "p",
        });
        assert!(matches!(
            parse(&req("send.reserve", p.clone())),
            Ok(Call::SendReserve(_, Platform::Udesk))
        ));
        p["workspace"] = json!("w".repeat(MAX_FIELD + 1));
        assert!(err("send.reserve", p.clone()).contains("`workspace`"));
        p["workspace"] = json!(" ");
        assert!(err("send.reserve", p.clone()).contains("`workspace` is empty"));
        p["workspace"] = json!("w");
        p["platform"] = json!("fax");
        assert!(err("send.reserve", p).contains("fax"));
        assert!(err("history.list", json!({"state": "lost"})).contains("`state`"));
        assert!(err("history.list", json!({"cursor": "h0"})).contains("cursor"));
        assert!(err("history.list", json!({"since_ms": 5, "until_ms": 4})).contains("since_ms"));
        assert!(err(
            "templates.search",
            json!({"query": "q".repeat(MAX_QUERY + 1)})
        )
        .contains("query"));
        assert!(err("settings.set", json!({"history_retention_days": 0})).contains("1 to"));
        assert!(matches!(
            parse(&req(
                "settings.set",
                json!({"history_retention_days": null})
            )),
            Ok(Call::SettingsSet(SettingsPatch {
                history_retention_days: Some(None)
            }))
        ));
        assert!(err(
            "meter.rules.set",
            json!({"platform": "udesk", "per": "workspace", "min_interval_ms": 10})
        )
        .contains("min_interval_ms"));
        assert!(
            err("templates.import", json!({"templates": [], "last": false})).contains("session")
        );
    }

    #[test]
    fn payloads_are_bounded_as_json_strings() {
        for s in ["plain", "q\"b\\n\nr\rt\t\u{8}\u{c}", "\u{1}\u{1f}\u{7f}é稍"] {
            assert_eq!(
                json_escaped_len(s),
                serde_json::to_string(s).unwrap().len() - 2,
                "{s:?}"
            );
        }
        let p = |payload: String| {
            json!({
                "idempotency_key": "k", "platform": "udesk", "workspace": "w",
                "template_id": "t", "revision": 1, "part_index": 0, "payload": payload,
            })
        };
        // 699k control characters were accepted (699 KB) and became 4 MiB of history JSON
        let ctl = "\u{1}".repeat(MAX_PAYLOAD / 6);
        assert!(parse(&req("send.reserve", p(ctl.clone()))).is_ok());
        let m = err("send.reserve", p(ctl + "\u{1}"));
        assert!(
            m.contains("`payload`") && m.contains("as a JSON string"),
            "{m}"
        );
        assert!(parse(&req("send.reserve", p("x".repeat(MAX_PAYLOAD)))).is_ok());
        assert!(err("send.reserve", p("x".repeat(MAX_PAYLOAD + 1))).contains("`payload`"));
    }

    #[test]
    fn template_caps_name_the_field_in_data() {
        let arts: Vec<Value> = (0..4)
            .map(|i| json!({"title": "a", "url": if i == 3 { "u".repeat(5000) } else { "https://e.x/".into() }}))
            .collect();
        let t = |parts: Value| json!({"id": "a", "title": "A", "parts": parts});
        let e = parse(&req(
            "templates.import",
            json!({"templates": [
                t(json!([{"type": "text", "text": "x"}])),
                t(json!([{"type": "text", "text": "x"}])),
                t(json!([{"type": "text", "text": "x"}, {"type": "news", "articles": arts}])),
            ]}),
        ))
        .unwrap_err();
        assert_eq!(e.code, ErrorCode::InvalidParams);
        assert_eq!(
            e.data.unwrap()["field"],
            "templates[2].parts[1].articles[3].url"
        );
        let e = parse(&req(
            "templates.put",
            json!({"template": {"id": "a", "title": "A", "parts": [{"type": "text", "text": "x"}],
                                "variables": (0..20_000).map(|i| json!({"name": format!("v{i}")})).collect::<Vec<_>>()}}),
        ))
        .unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "template.variables");
        let e = parse(&req(
            "templates.put",
            json!({"template": {"id": "a", "title": "t".repeat(100_000), "parts": [{"type": "text", "text": "x"}]}}),
        ))
        .unwrap_err();
        assert_eq!(e.data.unwrap()["field"], "template.title");
    }

    #[test]
    fn templates_are_checked_with_the_field_named() {
        let e = parse(&req(
            "templates.put",
            json!({"template": {"id": "a", "title": "A", "parts": []}}),
        ))
        .unwrap_err();
        assert!(e.message.contains("`template.parts`"), "{}", e.message);
        assert_eq!(e.data.unwrap()["field"], "template.parts");
        let m = err(
            "templates.import",
            json!({"templates": [
                {"id": "a", "title": "A", "parts": [{"type": "text", "text": "x"}]},
                {"id": "b", "title": " ", "parts": [{"type": "text", "text": "x"}]},
            ]}),
        );
        assert!(m.contains("`templates[1].title`"), "{m}");
    }

    /// The first-column names (`| `name` |`) of the first table under heading `section` of
    /// docs/protocol.md.
    fn doc_table(section: &str) -> Vec<String> {
        let doc = std::fs::read_to_string(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/protocol.md"),
        )
        .unwrap();
        let start = doc
            .find(&format!("\n{section}\n"))
            .unwrap_or_else(|| panic!("no {section:?} in docs/protocol.md"));
        // the first table after the heading
        doc[start + section.len() + 2..]
            .lines()
            .skip_while(|l| !l.starts_with('|'))
            .take_while(|l| l.starts_with('|'))
            .filter_map(|l| l.strip_prefix("| `"))
            .filter_map(|l| l.split_once("` |").map(|(name, _)| name.to_string()))
            .collect()
    }

    #[test]
    fn the_protocol_doc_lists_every_method_and_only_those() {
        let documented = doc_table("## Methods");
        for m in METHODS {
            assert!(
                documented.iter().any(|d| d == m),
                "{m} is not in docs/protocol.md"
            );
        }
        for d in &documented {
            assert!(
                METHODS.contains(&d.as_str()),
                "docs/protocol.md lists {d}, which the daemon has not"
            );
        }
        // and every listed method is served: none is refused as unknown
        for m in METHODS {
            if let Err(e) = parse(&req(m, json!({}))) {
                assert_ne!(e.code, ErrorCode::UnknownMethod, "{m}");
            }
        }
    }

    #[test]
    fn the_protocol_doc_lists_every_error_code_and_only_those() {
        let documented = doc_table("## Error codes (append-only)");
        let codes: Vec<&str> = ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        for c in &codes {
            assert!(
                documented.iter().any(|d| d == c),
                "{c} is not in docs/protocol.md"
            );
        }
        for d in &documented {
            assert!(
                codes.contains(&d.as_str()),
                "docs/protocol.md lists {d}, which is no ErrorCode"
            );
        }
        assert_eq!(documented.len(), codes.len(), "a code is listed twice");
    }
}
