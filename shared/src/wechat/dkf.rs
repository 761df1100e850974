//! The WeChat 多客服 PC client's plugin bridge (seed 002, platform-spec §3), the parts that are read:
//! the string returned by `window.external.PutMsg`/`Notice`, and the events the client passes to
//! the page's global `MCS_ClientNotify(strParam)`.
//!
//! The `PutMsg` argument itself is built by `adapters::wechat_dkf` from a template part.
//!
//! Both texts come from a desktop client whose official documentation shows them as JavaScript
//! object literals rather than JSON (`{retCode:0,errMsg:“”}`), and whose official demo reads the
//! events with `new Function("return " + str)()`. They are read here with the tolerant
//! [`literal`](super::literal) parser, never evaluated. Keys compare trimmed and
//! ASCII-case-insensitively; string values are trimmed (the seed writes `" OnUserChange "`).

use super::literal::{self, Literal};
use super::ParseError;
use serde::Serialize;
use std::collections::BTreeMap;

/// `window.external.PutMsg(json)`: fills the current chat's input box.
pub const PUT_MSG: &str = "PutMsg";
/// `window.external.Notice("")`: highlights the plugin's tab.
pub const NOTICE: &str = "Notice";
/// The argument `Notice` takes: the empty string (seed 002 §高亮自定义插件Tab页).
pub const NOTICE_ARGUMENT: &str = "";
/// The global function the client calls with each event.
pub const CLIENT_NOTIFY: &str = "MCS_ClientNotify";

/// `PutMsg` `body[].type` values (platform-spec §3.4; the seed's `1` for news is wrong).
pub const TYPE_TEXT: u8 = 0;
pub const TYPE_IMAGE: u8 = 1;
pub const TYPE_NEWS: u8 = 7;

/// `retCode` of a successful call.
pub const RET_OK: i64 = 0;
/// `retCode` of a call with a bad argument (`errMsg` "参数错误").
pub const RET_PARAMETER_ERROR: i64 = 5;

/// The string `PutMsg` and `Notice` return: `{retCode:0,errMsg:""}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PutMsgReply {
    pub ret_code: i64,
    /// Trimmed; empty when the client sent none.
    pub err_msg: String,
}

impl PutMsgReply {
    pub fn is_ok(&self) -> bool {
        self.ret_code == RET_OK
    }

    /// What a documented `retCode` means; `None` for codes the documentation does not list.
    pub fn meaning(&self) -> Option<&'static str> {
        match self.ret_code {
            RET_OK => Some("success"),
            RET_PARAMETER_ERROR => Some("parameter error (参数错误)"),
            _ => None,
        }
    }
}

/// Reads the reply of `PutMsg` or `Notice`. `retCode` must be an integer (a number or a numeric
/// string); `errMsg` may be missing.
pub fn parse_reply(text: &str) -> Result<PutMsgReply, ParseError> {
    let value = literal::parse(text).map_err(|e| ParseError::new(format!("PutMsg reply: {e}")))?;
    if !matches!(value, Literal::Object(_)) {
        return Err(ParseError::new(format!(
            "PutMsg reply is not an object: {text:?}"
        )));
    }
    let code = value
        .get("retCode")
        .ok_or_else(|| ParseError::new(format!("PutMsg reply has no retCode: {text:?}")))?;
    let ret_code = code.as_i64().ok_or_else(|| {
        ParseError::new(format!(
            "PutMsg reply retCode {:?} is not an integer",
            code.to_text()
        ))
    })?;
    let err_msg = value
        .get("errMsg")
        .map(|v| v.to_text().trim().to_string())
        .unwrap_or_default();
    Ok(PutMsgReply { ret_code, err_msg })
}

/// An event from `MCS_ClientNotify`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ClientEvent {
    /// `OnUserChange`: the agent switched to another chat.
    UserChange {
        /// `channeltype`; `"1"` (WeChat) is the only documented value. `None` when absent.
        channel_type: Option<String>,
        /// The user's OpenID for the official account: the first non-empty of `useraccount`
        /// (the documentation), `userid` (the official demo) and `visitorid` (probed by the demo).
        user_account: String,
    },
    /// `OnMapMsgClick`: the agent clicked a location message. Values as sent (numbers keep their
    /// source text), trimmed; `None` when absent. See [`ClientEvent::map_position`].
    MapMsgClick {
        latitude: Option<String>,
        longitude: Option<String>,
        location: Option<String>,
        scale: Option<String>,
    },
    /// Any other event: its name and every other member as text.
    Other {
        event: String,
        fields: BTreeMap<String, String>,
    },
}

impl ClientEvent {
    /// `(latitude, longitude)` in degrees for a map click whose values are numeric.
    pub fn map_position(&self) -> Option<(f64, f64)> {
        match self {
            ClientEvent::MapMsgClick {
                latitude: Some(lat),
                longitude: Some(lng),
                ..
            } => Some((number(lat)?, number(lng)?)),
            _ => None,
        }
    }
}

fn number(text: &str) -> Option<f64> {
    Literal::Str(text.to_string()).as_f64()
}

/// Reads the string argument of `MCS_ClientNotify`. Unknown events are kept as
/// [`ClientEvent::Other`]; an object without `event`, or an `OnUserChange` naming no user, is an
/// error.
pub fn parse_client_event(text: &str) -> Result<ClientEvent, ParseError> {
    let value =
        literal::parse(text).map_err(|e| ParseError::new(format!("MCS_ClientNotify: {e}")))?;
    let Literal::Object(members) = &value else {
        return Err(ParseError::new(format!(
            "MCS_ClientNotify argument is not an object: {text:?}"
        )));
    };
    let field = |name: &str| {
        value
            .get(name)
            .map(|v| v.to_text().trim().to_string())
            .filter(|s| !s.is_empty())
    };
    let event = field("event")
        .ok_or_else(|| ParseError::new(format!("MCS_ClientNotify names no event: {text:?}")))?;
    if event.eq_ignore_ascii_case("OnUserChange") {
        let user_account = ["useraccount", "userid", "visitorid"]
            .iter()
            .find_map(|k| field(k))
            .ok_or_else(|| {
                ParseError::new(format!(
                    "OnUserChange names no user (useraccount, userid or visitorid): {text:?}"
                ))
            })?;
        return Ok(ClientEvent::UserChange {
            channel_type: field("channeltype"),
            user_account,
        });
    }
    if event.eq_ignore_ascii_case("OnMapMsgClick") {
        return Ok(ClientEvent::MapMsgClick {
            latitude: field("latitude"),
            longitude: field("longitude"),
            location: field("location"),
            scale: field("scale"),
        });
    }
    let mut fields = BTreeMap::new();
    for (k, v) in members {
        if !k.eq_ignore_ascii_case("event") {
            fields
                .entry(k.clone())
                .or_insert_with(|| v.to_text().trim().to_string());
        }
    }
    Ok(ClientEvent::Other { event, fields })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reply_forms() {
        let ok = parse_reply("{retCode:0,errMsg:“”}").unwrap();
        assert!(ok.is_ok());
        assert_eq!(ok.err_msg, "");
        let bad = parse_reply(r#"{"retCode":5,"errMsg":"参数错误"}"#).unwrap();
        assert_eq!(bad.meaning(), Some("parameter error (参数错误)"));
        assert_eq!(parse_reply("{ retCode : '0' }").unwrap().ret_code, 0);
        assert!(parse_reply("{errMsg:''}").is_err());
        assert!(parse_reply("{retCode:'x'}").is_err());
        assert!(parse_reply("0").is_err());
    }

    #[test]
    fn events() {
        let e = parse_client_event(
            r#"{ "event":" OnUserChange ", " channeltype ":"1", " useraccount ":"OPENID" }"#,
        )
        .unwrap();
        assert_eq!(
            e,
            ClientEvent::UserChange {
                channel_type: Some("1".into()),
                user_account: "OPENID".into()
            }
        );
        let e = parse_client_event("{event:'OnUserChange',userid:'o1',visitorid:'v'}").unwrap();
        assert!(matches!(e, ClientEvent::UserChange { user_account, .. } if user_account == "o1"));
        let e = parse_client_event(
            "{event:'OnMapMsgClick',latitude:23.1,longitude:'113.3',location:'x',scale:15}",
        )
        .unwrap();
        assert_eq!(e.map_position(), Some((23.1, 113.3)));
        assert!(parse_client_event("{event:'OnUserChange',channeltype:1}").is_err());
        assert!(parse_client_event("{a:1}").is_err());
    }
}
