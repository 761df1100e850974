//! What a method can fail with, and the one place it becomes a protocol error (code, message,
//! data: docs/protocol.md).

use crate::store::{ErrorKind, SendState, StoreError};
use quiver_shared::proto::{ErrorBody, ErrorCode};
use quiver_shared::wechat::quota::QuotaRefusal;
use serde_json::{json, Value};

/// A method's failure.
#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    /// `storage_unavailable` when the user can fix it (disk full, read-only, IO), else
    /// `internal`.
    #[error("store: {0}")]
    Store(#[from] StoreError),
    #[error("{0}")]
    NotFound(String),
    /// A send in a state the call does not apply to.
    #[error("send {id} is {state}; {why}")]
    SendState {
        id: i64,
        state: SendState,
        why: &'static str,
    },
    /// An idempotency key repeated with another payload.
    #[error(
        "idempotency key {key:?} belongs to send {id}, whose payload differs: a retry must \
         repeat the same payload, a new send needs a new key"
    )]
    KeyReused {
        key: String,
        id: i64,
        state: SendState,
    },
    /// A template changed elsewhere (`current_revision` in the data).
    #[error("{message}")]
    Revision { message: String, current: u32 },
    /// Another conflict, with nothing more to say than the message.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Quota(QuotaRefusal),
    #[error("{limit} sends are queued for this {per} already; wait for them")]
    QueueFull { limit: usize, per: &'static str },
    #[error("{0}")]
    Internal(String),
    /// (1.4) The user's role in a team library does not allow it.
    #[error("{0}")]
    Forbidden(String),
    /// (1.4) The hub cannot be reached, or refused (`data`: what it said).
    #[error("{message}")]
    Hub {
        message: String,
        data: Option<Value>,
    },
    /// Another conflict, with structured details.
    #[error("{message}")]
    ConflictData { message: String, data: Value },
    /// An error already in protocol terms (the parameter checks, the version negotiation).
    #[error("{}", .0.message)]
    Protocol(ErrorBody),
}

impl From<ErrorBody> for ServiceError {
    fn from(e: ErrorBody) -> Self {
        ServiceError::Protocol(e)
    }
}

fn kind_name(k: ErrorKind) -> &'static str {
    match k {
        ErrorKind::Full => "full",
        ErrorKind::ReadOnly => "read_only",
        ErrorKind::Io => "io",
        ErrorKind::Busy => "busy",
        ErrorKind::Corrupt => "corrupt",
        ErrorKind::Other => "other",
    }
}

impl From<ServiceError> for ErrorBody {
    fn from(e: ServiceError) -> ErrorBody {
        let message = e.to_string();
        let (code, data): (ErrorCode, Option<Value>) = match e {
            ServiceError::Store(e) if e.is_storage() => {
                return ErrorBody::new(
                    ErrorCode::StorageUnavailable,
                    format!("{}. ({})", e.hint(), e.message),
                )
                .with_data(json!({ "kind": kind_name(e.kind) }))
            }
            ServiceError::Store(_) | ServiceError::Internal(_) => (ErrorCode::Internal, None),
            ServiceError::NotFound(_) => (ErrorCode::NotFound, None),
            ServiceError::SendState { id, state, .. }
            | ServiceError::KeyReused { id, state, .. } => (
                ErrorCode::Conflict,
                Some(json!({ "send_id": id, "state": state })),
            ),
            ServiceError::Revision { current, .. } => (
                ErrorCode::Conflict,
                Some(json!({ "current_revision": current })),
            ),
            ServiceError::Conflict(_) => (ErrorCode::Conflict, None),
            ServiceError::ConflictData { data, .. } => (ErrorCode::Conflict, Some(data)),
            ServiceError::Forbidden(_) => (ErrorCode::Forbidden, None),
            ServiceError::Hub { data, .. } => (ErrorCode::HubUnavailable, data),
            ServiceError::Quota(r) => (
                ErrorCode::QuotaExceeded,
                Some(json!({ "errcode": r.errcode(), "refusal": r })),
            ),
            ServiceError::QueueFull { limit, .. } => {
                (ErrorCode::QueueFull, Some(json!({ "limit": limit })))
            }
            ServiceError::Protocol(body) => return body,
        };
        let body = ErrorBody::new(code, message);
        match data {
            Some(d) => body.with_data(d),
            None => body,
        }
    }
}
