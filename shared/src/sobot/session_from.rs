//! The `session-from` string of a mini program's contact button (seed 001, platform-spec §2.1).
//!
//! # Grammar, as read here
//!
//! ```text
//! session-from = "sobot" "|" nickname "|" avatar "|" params *( "|" [ option ] )
//! option       = key "=" value      ; key: transfer_action, platform_action, partnerid,
//!                                   ;      robotid, unionid, customer_fields
//! ```
//!
//! The seed names four fixed fields, `sobot|nickname|avatar|custom field`, and its code template
//! `sobot|{{nick}}|{{avatar}}|{{params}}` has three separators. Its prose example of "all fields
//! empty", `sobot||||`, has four. Both come from the same page, so both are accepted: the four
//! fixed fields are required (`sobot||` is refused), and after them an empty segment is skipped —
//! `sobot||||` is the fixed fields plus one empty optional segment, which is also what the seed's
//! full template produces when an option is left out. [`SessionFrom::build`] writes the code
//! template's form: three separators for the fixed fields, then `|key=value` per option that has a
//! value, in the seed's order (so an empty one is `sobot|||`).
//!
//! An option with an empty value (`partnerid=`, what the seed's template gives for an unset
//! variable) is the same as leaving it out; it still counts towards "each key at most once".
//!
//! # Rules
//!
//! - Whole string at most [`MAX_LEN`] characters, `partnerid` at most [`MAX_PARTNERID_LEN`]
//!   (`too_long`). Characters are counted as JavaScript and Java count them, in UTF-16 code
//!   units: an emoji in a WeChat nickname counts 2. This equals the number of characters for text
//!   without emoji, and is never less, so a string that passes here passes either way.
//! - No value may contain `|`: no escaping is documented. Inside JSON text a `|` can be written
//!   `\u007c`, which is the same JSON value.
//! - `params` (when not empty) and `customer_fields` are JSON objects; `platform_action` is an
//!   object with a non-empty string `customerCode` and an optional string `flowGroupId`.
//! - `transfer_action` is a non-empty JSON array of `{actionType, deciId, optionId, spillId}`
//!   objects, all values strings (as documented): `actionType` `to_group` | `to_service`;
//!   `deciId` non-empty; `optionId` `1` (overflow) | `2` (no overflow) for `to_service`, `3` |
//!   `4` for `to_group`; `spillId` required when overflowing, and when present one of `1`–`3`
//!   (agent offline, agent busy, smart) for `to_service`, `4`–`7` (nobody online, all busy, off
//!   duty, smart) for `to_group`.
//! - The items are overflow levels tried in order: at most 3 overflow ("level 4 does not
//!   overflow"), so at most 4 items. An item after one that does not overflow could never be
//!   reached and is refused as a mistake [INFER: the seed's example is such a chain].
//! - Undocumented keys (in the string and inside `transfer_action`/`platform_action`) are refused.

use crate::json::to_json;
use crate::render::{Refusal, RefusalCode};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Longest `session-from` (seed 001 note 1), in UTF-16 code units.
pub const MAX_LEN: usize = 1000;
/// Longest `partnerid` (seed 001 parameter table), in UTF-16 code units.
pub const MAX_PARTNERID_LEN: usize = 100;
/// How many `transfer_action` items may overflow ("level-3 overflow").
pub const MAX_OVERFLOW_LEVELS: usize = 3;

/// The option keys, in the order the seed's template writes them (and [`SessionFrom::build`] does).
pub const OPTION_KEYS: [&str; 6] = [
    "transfer_action",
    "platform_action",
    "partnerid",
    "robotid",
    "unionid",
    "customer_fields",
];

/// A parsed `session-from`. Serialises (for the CLI) with these snake_case names; the JSON
/// inside `transfer_action`/`platform_action` uses Sobot's camelCase names.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SessionFrom {
    /// The user's WeChat nickname (`userInfo.nickName`); may be empty.
    #[serde(default)]
    pub nick_name: String,
    /// The user's avatar URL (`userInfo.avatarUrl`); may be empty.
    #[serde(default)]
    pub avatar_url: String,
    /// Custom fields: JSON object text (`{"key":"value"}`), or empty.
    #[serde(default)]
    pub params: String,
    /// Route the chat to skill groups / agents, with overflow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transfer_action: Option<Vec<TransferAction>>,
    /// E-commerce platform docking.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform_action: Option<PlatformAction>,
    /// The user's id in the customer's own system (at most 100 characters).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partnerid: Option<String>,
    /// Bot id.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub robotid: Option<String>,
    /// WeChat UnionID, plain or encrypted (see [`super::encrypt_unionid`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unionid: Option<String>,
    /// Custom fields by field id: JSON object text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub customer_fields: Option<String>,
}

/// `actionType` of a transfer action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ActionType {
    /// A designated skill group (`optionId` 3/4, `spillId` 4–7).
    #[serde(rename = "to_group")]
    ToGroup,
    /// A designated agent (`optionId` 1/2, `spillId` 1–3).
    #[serde(rename = "to_service")]
    ToService,
}

impl ActionType {
    pub fn as_str(self) -> &'static str {
        match self {
            ActionType::ToGroup => "to_group",
            ActionType::ToService => "to_service",
        }
    }

    /// `optionId` values: (overflow, no overflow).
    fn options(self) -> (&'static str, &'static str) {
        match self {
            ActionType::ToService => ("1", "2"),
            ActionType::ToGroup => ("3", "4"),
        }
    }

    fn spills(self) -> &'static [&'static str] {
        match self {
            ActionType::ToService => &["1", "2", "3"],
            ActionType::ToGroup => &["4", "5", "6", "7"],
        }
    }

    fn spill_help(self) -> &'static str {
        match self {
            ActionType::ToService => "1 agent offline, 2 agent busy, 3 smart judgement",
            ActionType::ToGroup => {
                "4 nobody online in the group, 5 all agents busy, 6 group off duty, 7 smart judgement"
            }
        }
    }
}

/// One level of `transfer_action`. Values are strings, as documented.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TransferAction {
    pub action_type: ActionType,
    /// Skill group id (`to_group`) or agent id (`to_service`).
    pub deci_id: String,
    /// `1`/`3` overflow, `2`/`4` no overflow (agent/group).
    pub option_id: String,
    /// Overflow condition; required when overflowing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spill_id: Option<String>,
}

impl TransferAction {
    /// True when `optionId` says this level overflows to the next one.
    pub fn overflows(&self) -> bool {
        self.option_id == self.action_type.options().0
    }

    /// True when `optionId` is one of the two values of this `actionType`.
    fn option_valid(&self) -> bool {
        let (yes, no) = self.action_type.options();
        self.option_id == yes || self.option_id == no
    }
}

/// `platform_action`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PlatformAction {
    /// The merchant's unique id on the platform.
    pub customer_code: String,
    /// Skill group id under the designated main account.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flow_group_id: Option<String>,
}

fn bad(field: &str, msg: impl std::fmt::Display) -> Refusal {
    Refusal::new(
        RefusalCode::InvalidSessionFrom,
        format!("session-from {field}: {msg}"),
    )
}

/// Length as JavaScript's `String.length` and Java's `String.length()` count it.
pub fn utf16_len(s: &str) -> usize {
    s.encode_utf16().count()
}

fn no_pipe(field: &str, value: &str, json: bool, out: &mut Vec<Refusal>) -> bool {
    if !value.contains('|') {
        return true;
    }
    let hint = if json {
        "; inside JSON strings write it as \\u007c"
    } else {
        ""
    };
    out.push(bad(
        field,
        format!(
            "contains |, which separates session-from fields (no escaping is documented){hint}"
        ),
    ));
    false
}

fn json_object(field: &str, text: &str, out: &mut Vec<Refusal>) {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(_)) => {}
        Ok(_) => out.push(bad(
            field,
            "must be a JSON object such as {\"key\":\"value\"}",
        )),
        Err(e) => out.push(bad(field, format!("is not JSON: {e}"))),
    }
}

fn check_transfer(items: &[TransferAction], out: &mut Vec<Refusal>) {
    if items.is_empty() {
        out.push(bad(
            "transfer_action",
            "is an empty list; leave transfer_action out instead",
        ));
        return;
    }
    for (i, item) in items.iter().enumerate() {
        let at = |f: &str| format!("transfer_action[{i}].{f}");
        let kind = item.action_type;
        if item.deci_id.is_empty() {
            out.push(bad(
                &at("deciId"),
                format!(
                    "is empty; it names the {} to transfer to",
                    match kind {
                        ActionType::ToGroup => "skill group",
                        ActionType::ToService => "agent",
                    }
                ),
            ));
        } else {
            no_pipe(&at("deciId"), &item.deci_id, false, out);
        }
        let (yes, no) = kind.options();
        let option_ok = item.option_valid();
        if !option_ok {
            out.push(bad(
                &at("optionId"),
                format!(
                    "{:?} is not valid for {}: {yes} = overflow, {no} = no overflow",
                    item.option_id,
                    kind.as_str()
                ),
            ));
        }
        match item.spill_id.as_deref() {
            None | Some("") if option_ok && item.overflows() => out.push(bad(
                &at("spillId"),
                format!(
                    "is required when optionId is {yes} (overflow): {}",
                    kind.spill_help()
                ),
            )),
            None | Some("") => {}
            Some(spill) if !kind.spills().contains(&spill) => out.push(bad(
                &at("spillId"),
                format!(
                    "{spill:?} is not valid for {}: {}",
                    kind.as_str(),
                    kind.spill_help()
                ),
            )),
            Some(_) => {}
        }
    }
    // Levels are tried in order, and only an overflowing level passes the chat on.
    let last = items.len() - 1;
    // (An invalid optionId is reported above, not again here.)
    if let Some(i) = items[..last]
        .iter()
        .position(|t| t.option_valid() && !t.overflows())
    {
        out.push(bad(
            "transfer_action",
            format!(
                "item {i} does not overflow (optionId {} or {} overflows), so the items after it would never be used",
                ActionType::ToService.options().0,
                ActionType::ToGroup.options().0
            ),
        ));
    }
    let overflowing = items.iter().filter(|t| t.overflows()).count();
    if overflowing > MAX_OVERFLOW_LEVELS {
        out.push(bad(
            "transfer_action",
            format!(
                "{overflowing} items overflow; Sobot supports at most {MAX_OVERFLOW_LEVELS} overflow levels \
                 (at most 4 items, the 4th not overflowing)"
            ),
        ));
    }
}

impl SessionFrom {
    /// Every problem with this value, in field order; empty when it builds.
    /// (The whole-string length is checked by [`build`](Self::build), which has the string.)
    pub fn problems(&self) -> Vec<Refusal> {
        let mut out = Vec::new();
        no_pipe("nick_name", &self.nick_name, false, &mut out);
        no_pipe("avatar_url", &self.avatar_url, false, &mut out);
        if !self.params.is_empty() && no_pipe("params", &self.params, true, &mut out) {
            json_object("params", &self.params, &mut out);
        }
        if let Some(items) = &self.transfer_action {
            check_transfer(items, &mut out);
        }
        if let Some(p) = &self.platform_action {
            if p.customer_code.is_empty() {
                out.push(bad(
                    "platform_action.customerCode",
                    "is required: the merchant's unique id on the platform",
                ));
            } else {
                no_pipe(
                    "platform_action.customerCode",
                    &p.customer_code,
                    false,
                    &mut out,
                );
            }
            if let Some(f) = &p.flow_group_id {
                no_pipe("platform_action.flowGroupId", f, false, &mut out);
            }
        }
        if let Some(p) = &self.partnerid {
            let n = utf16_len(p);
            if n > MAX_PARTNERID_LEN {
                out.push(Refusal::new(
                    RefusalCode::TooLong,
                    format!(
                        "session-from partnerid is {n} characters; Sobot allows at most {MAX_PARTNERID_LEN}"
                    ),
                ));
            }
            no_pipe("partnerid", p, false, &mut out);
        }
        if let Some(r) = &self.robotid {
            no_pipe("robotid", r, false, &mut out);
        }
        if let Some(u) = &self.unionid {
            no_pipe("unionid", u, false, &mut out);
        }
        if let Some(c) = &self.customer_fields {
            if !c.is_empty() && no_pipe("customer_fields", c, true, &mut out) {
                json_object("customer_fields", c, &mut out);
            }
        }
        out
    }

    /// The string, without checking it.
    fn assemble(&self) -> String {
        let mut s = format!(
            "sobot|{}|{}|{}",
            self.nick_name, self.avatar_url, self.params
        );
        let mut opt = |key: &str, value: Option<String>| {
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                s.push('|');
                s.push_str(key);
                s.push('=');
                s.push_str(&v);
            }
        };
        opt(
            "transfer_action",
            self.transfer_action.as_ref().map(to_json),
        );
        opt(
            "platform_action",
            self.platform_action.as_ref().map(to_json),
        );
        opt("partnerid", self.partnerid.clone());
        opt("robotid", self.robotid.clone());
        opt("unionid", self.unionid.clone());
        opt("customer_fields", self.customer_fields.clone());
        s
    }

    /// Every problem, including the length of the string it would build.
    pub fn validate(&self) -> Result<String, Vec<Refusal>> {
        let mut out = self.problems();
        let s = self.assemble();
        let n = utf16_len(&s);
        if n > MAX_LEN {
            out.push(Refusal::new(
                RefusalCode::TooLong,
                format!(
                    "session-from would be {n} characters; WeChat/Sobot allow at most {MAX_LEN}"
                ),
            ));
        }
        if out.is_empty() {
            Ok(s)
        } else {
            Err(out)
        }
    }

    /// The `session-from` string, or the first problem. Options with an empty value are left
    /// out; the fixed fields are always written (`sobot|||` when all are empty).
    pub fn build(&self) -> Result<String, Refusal> {
        self.validate().map_err(|mut v| v.swap_remove(0))
    }

    /// Parses a `session-from` string, or returns its first problem.
    pub fn parse(s: &str) -> Result<SessionFrom, Refusal> {
        let (value, mut problems) = parse_all(s);
        match value {
            Some(v) if problems.is_empty() => Ok(v),
            _ => Err(problems.swap_remove(0)),
        }
    }

    /// Every problem of a `session-from` string, not only the first.
    pub fn check(s: &str) -> Result<(), Vec<Refusal>> {
        let (_, problems) = parse_all(s);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems)
        }
    }
}

fn as_string(field: &str, v: &Value, out: &mut Vec<Refusal>) -> Option<String> {
    match v {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => {
            out.push(bad(
                field,
                format!("must be a JSON string such as \"{n}\", not a number"),
            ));
            None
        }
        _ => {
            out.push(bad(field, "must be a JSON string"));
            None
        }
    }
}

fn parse_transfer(text: &str, out: &mut Vec<Refusal>) -> Option<Vec<TransferAction>> {
    let v = match serde_json::from_str::<Value>(text) {
        Ok(v) => v,
        Err(e) => {
            out.push(bad("transfer_action", format!("is not JSON: {e}")));
            return None;
        }
    };
    let Value::Array(items) = v else {
        out.push(bad(
            "transfer_action",
            "must be a JSON array of {\"actionType\",\"deciId\",\"optionId\",\"spillId\"} objects",
        ));
        return None;
    };
    let before = out.len();
    let mut typed = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = |f: &str| format!("transfer_action[{i}].{f}");
        let Value::Object(m) = item else {
            out.push(bad(
                &format!("transfer_action[{i}]"),
                "must be a JSON object",
            ));
            continue;
        };
        for k in m.keys() {
            if !["actionType", "deciId", "optionId", "spillId"].contains(&k.as_str()) {
                out.push(bad(
                    &format!("transfer_action[{i}]"),
                    format!("has the undocumented key {k:?} (known: actionType, deciId, optionId, spillId)"),
                ));
            }
        }
        let required = |f: &str, out: &mut Vec<Refusal>| match m.get(f) {
            Some(v) => as_string(&at(f), v, out),
            None => {
                out.push(bad(&at(f), "is required"));
                None
            }
        };
        let action = required("actionType", out).and_then(|a| match a.as_str() {
            "to_group" => Some(ActionType::ToGroup),
            "to_service" => Some(ActionType::ToService),
            _ => {
                out.push(bad(
                    &at("actionType"),
                    format!("{a:?} is not to_group (skill group) or to_service (agent)"),
                ));
                None
            }
        });
        let deci = required("deciId", out);
        let option = required("optionId", out);
        let spill = m
            .get("spillId")
            .and_then(|v| as_string(&at("spillId"), v, out));
        if let (Some(action_type), Some(deci_id), Some(option_id)) = (action, deci, option) {
            typed.push(TransferAction {
                action_type,
                deci_id,
                option_id,
                spill_id: spill,
            });
        }
    }
    (out.len() == before).then_some(typed)
}

fn parse_platform(text: &str, out: &mut Vec<Refusal>) -> Option<PlatformAction> {
    let m: Map<String, Value> = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(m)) => m,
        Ok(_) => {
            out.push(bad(
                "platform_action",
                "must be a JSON object {\"customerCode\":...,\"flowGroupId\":...}",
            ));
            return None;
        }
        Err(e) => {
            out.push(bad("platform_action", format!("is not JSON: {e}")));
            return None;
        }
    };
    let before = out.len();
    for k in m.keys() {
        if k != "customerCode" && k != "flowGroupId" {
            out.push(bad(
                "platform_action",
                format!("has the undocumented key {k:?} (known: customerCode, flowGroupId)"),
            ));
        }
    }
    let code = match m.get("customerCode") {
        Some(v) => as_string("platform_action.customerCode", v, out),
        None => {
            out.push(bad(
                "platform_action.customerCode",
                "is required: the merchant's unique id on the platform",
            ));
            None
        }
    };
    let flow = m
        .get("flowGroupId")
        .and_then(|v| as_string("platform_action.flowGroupId", v, out));
    match code {
        Some(customer_code) if out.len() == before => Some(PlatformAction {
            customer_code,
            flow_group_id: flow,
        }),
        _ => None,
    }
}

/// Parses as far as possible: the value (when the frame of the string is sound) and every problem.
fn parse_all(s: &str) -> (Option<SessionFrom>, Vec<Refusal>) {
    let mut out = Vec::new();
    let n = utf16_len(s);
    if n > MAX_LEN {
        out.push(Refusal::new(
            RefusalCode::TooLong,
            format!("session-from is {n} characters; WeChat/Sobot allow at most {MAX_LEN}"),
        ));
    }
    let fields: Vec<&str> = s.split('|').collect();
    if fields[0] != "sobot" {
        out.push(bad(
            "",
            format!(
                "must start with \"sobot|\" (found {:?})",
                fields[0].chars().take(16).collect::<String>()
            ),
        ));
        return (None, out);
    }
    if fields.len() < 4 {
        out.push(bad(
            "",
            format!(
                "has {} of the 4 fixed fields sobot|nickname|avatar|params; they are required even when empty (sobot|||)",
                fields.len()
            ),
        ));
        return (None, out);
    }
    let mut v = SessionFrom {
        nick_name: fields[1].to_string(),
        avatar_url: fields[2].to_string(),
        params: fields[3].to_string(),
        ..SessionFrom::default()
    };
    if fields[3].contains('=') && !fields[3].trim_start().starts_with('{') {
        // `sobot|nick|avatar|partnerid=1`: an option in the params position.
        out.push(bad(
            "params",
            format!(
                "the 4th field is params, not an option ({:?}); write sobot|nickname|avatar|params|key=value, with params empty if unused",
                fields[3].chars().take(24).collect::<String>()
            ),
        ));
        v.params.clear();
    }
    let mut seen: Vec<&str> = Vec::new();
    for (i, segment) in fields.iter().enumerate().skip(4) {
        if segment.is_empty() {
            continue;
        }
        let Some((key, value)) = segment.split_once('=') else {
            out.push(bad(
                &format!("field {}", i + 1),
                format!(
                    "{:?} is not key=value (keys: {})",
                    segment.chars().take(24).collect::<String>(),
                    OPTION_KEYS.join(", ")
                ),
            ));
            continue;
        };
        let Some(&known) = OPTION_KEYS.iter().find(|k| **k == key) else {
            let hint = OPTION_KEYS
                .iter()
                .find(|k| k.eq_ignore_ascii_case(key.trim()))
                .map(|k| format!("; did you mean {k}?"))
                .unwrap_or_default();
            out.push(bad(
                &format!("field {}", i + 1),
                format!(
                    "unknown option {key:?} (known: {}){hint}",
                    OPTION_KEYS.join(", ")
                ),
            ));
            continue;
        };
        if seen.contains(&known) {
            out.push(bad(known, "appears more than once"));
            continue;
        }
        seen.push(known);
        if value.is_empty() {
            continue;
        }
        match known {
            "transfer_action" => v.transfer_action = parse_transfer(value, &mut out),
            "platform_action" => v.platform_action = parse_platform(value, &mut out),
            "partnerid" => v.partnerid = Some(value.to_string()),
            "robotid" => v.robotid = Some(value.to_string()),
            "unionid" => v.unionid = Some(value.to_string()),
            "customer_fields" => v.customer_fields = Some(value.to_string()),
            _ => unreachable!("OPTION_KEYS"),
        }
    }
    out.extend(v.problems());
    (Some(v), out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(s: &str) -> Vec<String> {
        match SessionFrom::check(s) {
            Ok(()) => vec![],
            Err(v) => v.into_iter().map(|r| r.message).collect(),
        }
    }

    #[test]
    fn fixed_fields() {
        assert_eq!(
            SessionFrom::parse("sobot|||").unwrap(),
            SessionFrom::default()
        );
        assert_eq!(
            SessionFrom::parse("sobot||||").unwrap(),
            SessionFrom::default()
        );
        assert_eq!(SessionFrom::default().build().unwrap(), "sobot|||");
        assert!(SessionFrom::parse("sobot||").is_err());
        assert!(SessionFrom::parse("sobot").is_err());
        assert!(SessionFrom::parse("").is_err());
        assert!(SessionFrom::parse("Sobot|||").is_err());
    }

    #[test]
    fn all_problems_are_reported() {
        let msgs = messages("sobot|||[]|foo=1|partnerid=a|partnerid=b|transfer_action=[]");
        assert_eq!(msgs.len(), 4, "{msgs:#?}");
    }

    #[test]
    fn numbers_in_transfer_action_are_refused() {
        let e = SessionFrom::parse(
            r#"sobot||||transfer_action=[{"actionType":"to_group","deciId":"g","optionId":4}]"#,
        )
        .unwrap_err();
        assert!(e.message.contains("optionId"), "{e}");
        assert!(e.message.contains("not a number"), "{e}");
    }

    #[test]
    fn build_refuses_pipes() {
        let v = SessionFrom {
            nick_name: "a|b".into(),
            ..SessionFrom::default()
        };
        let e = v.build().unwrap_err();
        assert_eq!(e.code, RefusalCode::InvalidSessionFrom);
        assert!(e.message.contains("nick_name"));
    }
}
