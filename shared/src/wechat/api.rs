//! The mini-program customer-service HTTP API as data: endpoints, the typing body, the
//! `{"errcode","errmsg"}` result and what to do about each `errcode` (platform-spec §4.6-§4.11).
//! The message body of `custom/send` is built by `adapters::wechat_mp` from a template part.

use super::ParseError;
use crate::render::{Refusal, RefusalCode};
use serde::{Deserialize, Serialize};

/// `customerServiceMessage.send` (append `?access_token=…`). The newer
/// `/cgi-bin/message/custom/business/send` is reported to answer 40101; use this one (§4.6).
pub const SEND_URL: &str = "https://api.weixin.qq.com/cgi-bin/message/custom/send";
/// `customerServiceMessage.setTyping` for mini programs (§4.8).
pub const TYPING_URL: &str = "https://api.weixin.qq.com/cgi-bin/message/custom/business/typing";
/// Temporary media upload, `type=image` only for mini programs (§4.9).
pub const UPLOAD_MEDIA_URL: &str = "https://api.weixin.qq.com/cgi-bin/media/upload";
/// Temporary media download (§4.9).
pub const GET_MEDIA_URL: &str = "https://api.weixin.qq.com/cgi-bin/media/get";

/// `command` of the typing call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TypingCommand {
    Typing,
    CancelTyping,
}

impl TypingCommand {
    pub fn as_str(self) -> &'static str {
        match self {
            TypingCommand::Typing => "Typing",
            TypingCommand::CancelTyping => "CancelTyping",
        }
    }
}

#[derive(Serialize)]
struct TypingBody<'a> {
    touser: &'a str,
    command: &'static str,
}

/// The JSON body of the typing call: `{"touser":"OPENID","command":"Typing"}`.
pub fn typing_body(touser: &str, command: TypingCommand) -> Result<String, Refusal> {
    if touser.is_empty() {
        return Err(Refusal::new(
            RefusalCode::MissingVariable,
            "customer.openid has no value: the typing call needs the user's OpenID (touser)",
        ));
    }
    Ok(crate::json::to_json(&TypingBody {
        touser,
        command: command.as_str(),
    }))
}

/// The `{"errcode","errmsg"}` part of an API answer. A missing `errcode` reads as 0 (some
/// successful answers carry other fields only).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ApiResult {
    pub errcode: i64,
    pub errmsg: String,
}

impl ApiResult {
    pub fn action(&self) -> ErrorAction {
        classify(self.errcode)
    }
}

/// Reads an API answer body (JSON object).
pub fn parse_result(body: &str) -> Result<ApiResult, ParseError> {
    let value: serde_json::Value = serde_json::from_str(body)
        .map_err(|e| ParseError::new(format!("API answer is not JSON: {e}")))?;
    let serde_json::Value::Object(map) = value else {
        return Err(ParseError::new("API answer is not a JSON object"));
    };
    let errcode = match map.get("errcode") {
        None | Some(serde_json::Value::Null) => 0,
        Some(v) => v
            .as_i64()
            .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            .ok_or_else(|| ParseError::new(format!("API answer errcode {v} is not an integer")))?,
    };
    let errmsg = map
        .get("errmsg")
        .and_then(|v| v.as_str())
        .unwrap_or_default()
        .to_string();
    Ok(ApiResult { errcode, errmsg })
}

/// What the sender does about an `errcode`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorAction {
    /// 0: sent.
    Ok,
    /// 40001, 40014, 42001: the access token is stale: refresh it and retry once.
    RefreshToken,
    /// 45015 (outside the window), 45047 (count used up): don't retry until the user acts.
    Stop,
    /// -1: WeChat is busy: retry later.
    RetryLater,
    /// Anything else: the request itself is wrong; retrying will not help.
    Fatal,
}

/// Classifies an `errcode` (platform-spec §4.11).
pub fn classify(errcode: i64) -> ErrorAction {
    match errcode {
        0 => ErrorAction::Ok,
        40001 | 40014 | 42001 => ErrorAction::RefreshToken,
        45015 | 45047 => ErrorAction::Stop,
        -1 => ErrorAction::RetryLater,
        _ => ErrorAction::Fatal,
    }
}

/// The `errmsg` WeChat sends with a code of the §4.11 table, where one has been seen.
pub fn errmsg(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        0 => "ok",
        -1 => "system error",
        40001 => "invalid credential, access_token is invalid or not latest",
        40002 => "invalid grant_type",
        40003 => "invalid openid",
        40004 => "invalid media type",
        40007 => "invalid media_id",
        40013 => "invalid appid",
        40014 => "invalid access_token",
        40101 => "missing parameter",
        42001 => "access_token expired",
        45015 => "response out of time limit or subscription is canceled",
        45047 => "out of response count limit",
        48001 => "api unauthorized",
        _ => return None,
    })
}

/// What a code of the §4.11 table means, for people.
pub fn meaning(errcode: i64) -> Option<&'static str> {
    Some(match errcode {
        0 => "success",
        -1 => "WeChat is busy; retry later",
        40001 => "wrong AppSecret or a stale access_token; refresh the token and retry once",
        40002 => "the token request is malformed (grant_type)",
        40003 => "the OpenID does not belong to this mini program",
        40004 => "uploaded media of a type other than image",
        40007 => "the media_id is expired (older than 3 days) or not this mini program's",
        40013 => "invalid AppID",
        40014 => "invalid access_token; refresh it and retry once",
        40101 => "a parameter is missing (seen on /custom/business/send; use /custom/send)",
        42001 => "the access_token expired; refresh it and retry once",
        45015 => "outside the reply window (no recent user action) or the user left; don't retry",
        45047 => "the reply count for the user's last action is used up; wait for the user",
        45072 => "typing: invalid command",
        45080 => "typing: no message exchange with the user in the last 30 s",
        45081 => "typing: already typing",
        48001 => "the customer-service API is not enabled for this account",
        _ => return None,
    })
}
