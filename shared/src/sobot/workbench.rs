//! The workbench iframe's context (platform-spec §2.3): the query parameters Sobot appends to the
//! docking page's URL, the `selected` message it posts when the agent switches conversation, and
//! the `sign` check.

use super::query::parse_query;
use crate::render::{Refusal, RefusalCode};
#[cfg(feature = "server")]
use md5::{Digest, Md5};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// What Sobot tells the docking page about the conversation and the agent (platform-spec §2.3).
///
/// Every documented parameter is kept as the text it arrived as (no number parsing: `timestamp`
/// enters the `sign` verbatim); an empty parameter counts as absent. Parameter names are matched
/// exactly first, then ignoring ASCII case, so Sobot's `partnerid` example and its `partnerId`
/// table both land in [`partner_id`](Self::partner_id). Any other parameter is kept in `extra`
/// (the documented list may be incomplete).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkbenchContext {
    /// Conversation (chat) id; the `cid` of a msgType 26 message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cid: Option<String>,
    /// The visitor's id inside Sobot; the `uid` of a msgType 26 message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
    /// The visitor's id in the enterprise's own system (the docking id given at chat start).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partner_id: Option<String>,
    /// The logged-in agent's e-mail.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub email: Option<String>,
    /// `md5(sysNum + email)`, or `MD5(sysNum + key + timestamp + partnerId)` with the security key.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sign: Option<String>,
    /// Milliseconds since the epoch, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// When the chat was created, milliseconds since the epoch, as sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub create_chat_time: Option<String>,
    /// Receiving skill group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group_name: Option<String>,
    /// Custom data: JSON object text such as `{"key":"value"}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<String>,
    /// Every other parameter, verbatim.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, String>,
}

/// Documented parameter names, as spelled in Sobot's table.
const NAMES: [&str; 10] = [
    "cid",
    "uid",
    "partnerId",
    "email",
    "sign",
    "timestamp",
    "createChatTime",
    "groupId",
    "groupName",
    "params",
];

/// Parameters that describe the conversation (rather than the agent or the page load).
const PER_CONVERSATION: [&str; 7] = [
    "cid",
    "uid",
    "partnerId",
    "createChatTime",
    "groupId",
    "groupName",
    "params",
];

impl WorkbenchContext {
    fn slot(&mut self, name: &str) -> &mut Option<String> {
        match name {
            "cid" => &mut self.cid,
            "uid" => &mut self.uid,
            "partnerId" => &mut self.partner_id,
            "email" => &mut self.email,
            "sign" => &mut self.sign,
            "timestamp" => &mut self.timestamp,
            "createChatTime" => &mut self.create_chat_time,
            "groupId" => &mut self.group_id,
            "groupName" => &mut self.group_name,
            "params" => &mut self.params,
            _ => unreachable!("not a documented parameter: {name}"),
        }
    }

    fn get(&self, name: &str) -> Option<&String> {
        match name {
            "cid" => self.cid.as_ref(),
            "uid" => self.uid.as_ref(),
            "partnerId" => self.partner_id.as_ref(),
            "email" => self.email.as_ref(),
            "sign" => self.sign.as_ref(),
            "timestamp" => self.timestamp.as_ref(),
            "createChatTime" => self.create_chat_time.as_ref(),
            "groupId" => self.group_id.as_ref(),
            "groupName" => self.group_name.as_ref(),
            "params" => self.params.as_ref(),
            _ => None,
        }
    }

    /// Reads the context from decoded name → value pairs (e.g. [`Target::params`](crate::Target)).
    pub fn from_params(params: &BTreeMap<String, String>) -> WorkbenchContext {
        let mut ctx = WorkbenchContext::default();
        let mut used: Vec<&str> = Vec::new();
        for name in NAMES {
            let found = params
                .get_key_value(name)
                .or_else(|| params.iter().find(|(k, _)| k.eq_ignore_ascii_case(name)));
            if let Some((key, value)) = found {
                used.push(key);
                if !value.is_empty() {
                    *ctx.slot(name) = Some(value.clone());
                }
            }
        }
        ctx.extra = params
            .iter()
            .filter(|(k, _)| !used.contains(&k.as_str()))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        ctx
    }

    /// Reads the context from the docking page's URL (or just its query string).
    /// See [`parse_query`] for the decoding rules.
    pub fn from_url(url: &str) -> WorkbenchContext {
        WorkbenchContext::from_params(&parse_query(url))
    }

    /// The context as name → value pairs, documented names spelled as in Sobot's table
    /// (`partnerId`, `createChatTime`...): what a [`Target`](crate::Target)'s `params` holds.
    pub fn to_params(&self) -> BTreeMap<String, String> {
        let mut out = self.extra.clone();
        for name in NAMES {
            if let Some(v) = self.get(name) {
                out.insert(name.to_string(), v.clone());
            }
        }
        out
    }

    /// `timestamp` as milliseconds since the epoch, when it is a number.
    pub fn timestamp_ms(&self) -> Option<i64> {
        self.timestamp
            .as_deref()
            .and_then(|t| t.trim().parse().ok())
    }

    /// `createChatTime` as milliseconds since the epoch, when it is a number.
    pub fn create_chat_time_ms(&self) -> Option<i64> {
        self.create_chat_time
            .as_deref()
            .and_then(|t| t.trim().parse().ok())
    }

    /// The custom data (`params`) as a JSON object; `None` when there is none.
    pub fn params_object(&self) -> Result<Option<Map<String, Value>>, Refusal> {
        let Some(text) = self.params.as_deref() else {
            return Ok(None);
        };
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Object(m)) => Ok(Some(m)),
            Ok(_) => Err(Refusal::new(
                RefusalCode::InvalidValue,
                "the iframe URL's params is JSON but not an object ({\"key\":\"value\"})",
            )),
            Err(e) => Err(Refusal::new(
                RefusalCode::InvalidValue,
                format!("the iframe URL's params is not JSON: {e}"),
            )),
        }
    }

    /// The context after the agent switched conversation: the fields `selected` carries replace
    /// ours; when it names a different `cid`, the per-conversation fields it does not carry (uid,
    /// partnerId, createChatTime, groupId, groupName, params) are cleared rather than carried over
    /// from the previous visitor. Agent fields (email, sign, timestamp) are kept.
    ///
    /// A `selected` message without a `cid` changes nothing known: re-read the frame's URL.
    pub fn switched(&self, selected: &Selected) -> WorkbenchContext {
        let mut next = self.clone();
        let new = &selected.context;
        if new.cid.is_some() && new.cid != self.cid {
            for name in PER_CONVERSATION {
                *next.slot(name) = None;
            }
        }
        for name in NAMES {
            if let Some(v) = new.get(name) {
                *next.slot(name) = Some(v.clone());
            }
        }
        for (k, v) in &new.extra {
            next.extra.insert(k.clone(), v.clone());
        }
        next
    }
}

/// A message the workbench posts to the docking page.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "name", rename_all = "lowercase")]
pub enum WorkbenchMessage {
    /// The agent switched to another conversation (platform-spec §2.3).
    Selected(Selected),
}

/// The `selected` message. Its payload beyond `name` is undocumented: every field is kept in
/// `data`; top-level string or number fields named like the URL parameters (`cid`, `uid`,
/// `partnerId`/`partnerid`, ...) are also read into `context`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Selected {
    pub context: WorkbenchContext,
    /// The message's fields other than `name`, as received.
    pub data: Map<String, Value>,
}

/// Recognises a message from the workbench: an object `{"name":"selected", ...}`, or the same
/// as JSON text. Anything else (other names, other shapes, our own echoes) is `None`.
pub fn parse_workbench_message(v: &Value) -> Option<WorkbenchMessage> {
    let object = match v {
        Value::Object(m) => m.clone(),
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Object(m)) => m,
            _ => return None,
        },
        _ => return None,
    };
    if object.get("name").and_then(Value::as_str) != Some("selected") {
        return None;
    }
    let mut data = object;
    data.remove("name");
    let scalars: BTreeMap<String, String> = data
        .iter()
        .filter_map(|(k, v)| match v {
            Value::String(s) => Some((k.clone(), s.clone())),
            Value::Number(n) => Some((k.clone(), n.to_string())),
            _ => None,
        })
        .collect();
    let context = WorkbenchContext::from_params(&scalars);
    Some(WorkbenchMessage::Selected(Selected { context, data }))
}

/// The `sign` Sobot computes (platform-spec §2.3), as 32 lower-case hex digits:
/// `md5(sysNum + email)` without a security key, `MD5(sysNum + key + timestamp + partnerId)` with
/// one (an absent `partnerId` contributes nothing). Absent fields count as empty here;
/// [`verify_sign`] refuses the ones it needs.
#[cfg(feature = "server")]
pub fn expected_sign(ctx: &WorkbenchContext, sys_num: &str, key: Option<&str>) -> String {
    let text = match key {
        None => format!("{sys_num}{}", ctx.email.as_deref().unwrap_or("")),
        Some(key) => format!(
            "{sys_num}{key}{}{}",
            ctx.timestamp.as_deref().unwrap_or(""),
            ctx.partner_id.as_deref().unwrap_or("")
        ),
    };
    md5_hex(text.as_bytes())
}

/// Lower-case hex MD5.
#[cfg(feature = "server")]
pub(crate) fn md5_hex(bytes: &[u8]) -> String {
    super::hex_lower(&Md5::digest(bytes))
}

/// Checks the iframe URL's `sign` against the company id (`sysNum`) and, when the console's
/// "security key" is enabled, that key (platform-spec §2.3). The hex case of Sobot's digest is
/// not documented, so the comparison ignores case.
///
/// Refusals: `field_required` when `sign`, or a field the formula needs (`email` without a key,
/// `timestamp` with one), is absent, or `sys_num`/`key` is empty; `invalid_value` when `sign` is
/// not 32 hex digits or does not match. The check does not look at the clock: compare
/// [`WorkbenchContext::timestamp_ms`] with the current time yourself if you want freshness.
#[cfg(feature = "server")]
pub fn verify_sign(
    ctx: &WorkbenchContext,
    sys_num: &str,
    key: Option<&str>,
) -> Result<(), Refusal> {
    let missing = |field: &str, why: &str| {
        Refusal::new(
            RefusalCode::FieldRequired,
            format!("{field} is required: {why}"),
        )
    };
    if sys_num.is_empty() {
        return Err(missing(
            "sysNum",
            "the sign is computed from the company id (sysNum)",
        ));
    }
    if key.is_some_and(str::is_empty) {
        return Err(missing(
            "key",
            "an empty security key was given; pass none when the security key is not enabled",
        ));
    }
    let Some(sign) = ctx.sign.as_deref() else {
        return Err(missing("sign", "the iframe URL carries no sign parameter"));
    };
    match key {
        None if ctx.email.is_none() => {
            return Err(missing(
                "email",
                "without a security key the sign is md5(sysNum + email), and the iframe URL carries no email",
            ))
        }
        Some(_) if ctx.timestamp.is_none() => {
            return Err(missing(
                "timestamp",
                "with the security key the sign is MD5(sysNum + key + timestamp + partnerId), and the iframe URL carries no timestamp",
            ))
        }
        _ => {}
    }
    if sign.len() != 32 || !sign.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(Refusal::new(
            RefusalCode::InvalidValue,
            format!("sign {sign:?} is not an MD5 digest (32 hex digits)"),
        ));
    }
    let want = expected_sign(ctx, sys_num, key);
    // Same length by now; fold over every byte rather than stopping at the first difference.
    let diff = want
        .bytes()
        .zip(sign.bytes())
        .fold(0u8, |acc, (a, b)| acc | (a ^ b.to_ascii_lowercase()));
    if diff == 0 {
        return Ok(());
    }
    let formula = match key {
        None => "md5(sysNum + email)",
        Some(_) if ctx.partner_id.is_some() => "MD5(sysNum + key + timestamp + partnerId)",
        Some(_) => "MD5(sysNum + key + timestamp) (no partnerId in the URL)",
    };
    let hint = match key {
        None => "check the company id, or whether the console's security key is enabled",
        Some(_) => "check the company id and the security key, or whether the security key is enabled at all",
    };
    Err(Refusal::new(
        RefusalCode::InvalidValue,
        format!("sign mismatch: the iframe URL's sign is not {formula}; {hint}"),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_documented_names_in_any_case() {
        let c = WorkbenchContext::from_url(
            "https://crm.example/p?cid=c1&uid=u1&partnerid=zc&groupid=g&email=a%40b.com&foo=bar&sign=",
        );
        assert_eq!(c.cid.as_deref(), Some("c1"));
        assert_eq!(c.partner_id.as_deref(), Some("zc"));
        assert_eq!(c.group_id.as_deref(), Some("g"));
        assert_eq!(c.email.as_deref(), Some("a@b.com"));
        assert_eq!(c.sign, None);
        assert_eq!(c.extra.len(), 1);
        assert_eq!(c.extra["foo"], "bar");
        let p = c.to_params();
        assert_eq!(p["partnerId"], "zc");
        assert_eq!(WorkbenchContext::from_params(&p), c);
    }

    #[test]
    fn exact_spelling_wins() {
        let c = WorkbenchContext::from_url("?partnerid=low&partnerId=exact");
        assert_eq!(c.partner_id.as_deref(), Some("exact"));
        assert_eq!(c.extra["partnerid"], "low");
    }

    #[test]
    fn switching_clears_the_previous_visitor() {
        let before = WorkbenchContext::from_url("?cid=c1&uid=u1&partnerId=p1&email=a@b.c&sign=s");
        let Some(WorkbenchMessage::Selected(sel)) =
            parse_workbench_message(&json!({"name":"selected","cid":"c2","uid":7}))
        else {
            panic!("not recognised")
        };
        let after = before.switched(&sel);
        assert_eq!(after.cid.as_deref(), Some("c2"));
        assert_eq!(after.uid.as_deref(), Some("7"));
        assert_eq!(after.partner_id, None);
        assert_eq!(after.email.as_deref(), Some("a@b.c"));
        // No cid: nothing is cleared.
        let Some(WorkbenchMessage::Selected(bare)) =
            parse_workbench_message(&json!({"name":"selected"}))
        else {
            panic!("not recognised")
        };
        assert_eq!(before.switched(&bare), before);
    }

    #[test]
    fn messages() {
        assert!(parse_workbench_message(&json!({"name":"other"})).is_none());
        assert!(parse_workbench_message(&json!("not json")).is_none());
        assert!(parse_workbench_message(&json!(["selected"])).is_none());
        assert!(parse_workbench_message(&json!("{\"name\":\"selected\"}")).is_some());
    }
}
