//! The browser protocol (docs/protocol.md): requests, replies, events and error codes.

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// Protocol version spoken by this build.
pub const PROTOCOL_VERSION: u32 = 1;

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
        }
    }
}

/// An error with a message that names the problem.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub code: ErrorCode,
    pub message: String,
}

impl ErrorBody {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            code,
            message: message.into(),
        }
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

/// `hello` params.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
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

/// `history.list` params.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    #[serde(default)]
    pub limit: Option<u32>,
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
            (br#"{"id":1,"method":"x","params":3}"#, "`params` must be an object"),
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
}
