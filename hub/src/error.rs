//! The one error type of the hub: an HTTP status with the wire's error code
//! (`quiver_shared::sync::wire::ErrorBody`), used by the store, the server and the CLI.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use quiver_shared::sync::wire::{ErrorBody, ErrorDetail};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HubError {
    pub code: &'static str,
    pub message: String,
    /// For `reset`: the library's current epoch.
    pub epoch: Option<String>,
}

pub type Result<T> = std::result::Result<T, HubError>;

impl HubError {
    pub fn new(code: &'static str, message: impl Into<String>) -> HubError {
        HubError {
            code,
            message: message.into(),
            epoch: None,
        }
    }
    pub fn bad_request(m: impl Into<String>) -> HubError {
        HubError::new("bad_request", m)
    }
    pub fn unauthorized(m: impl Into<String>) -> HubError {
        HubError::new("unauthorized", m)
    }
    pub fn forbidden(m: impl Into<String>) -> HubError {
        HubError::new("forbidden", m)
    }
    pub fn not_found(m: impl Into<String>) -> HubError {
        HubError::new("not_found", m)
    }
    pub fn conflict(m: impl Into<String>) -> HubError {
        HubError::new("conflict", m)
    }
    pub fn reset(epoch: String, m: impl Into<String>) -> HubError {
        HubError {
            code: "reset",
            message: m.into(),
            epoch: Some(epoch),
        }
    }
    pub fn internal(m: impl Into<String>) -> HubError {
        HubError::new("internal", m)
    }
    pub fn unavailable(m: impl Into<String>) -> HubError {
        HubError::new("unavailable", m)
    }

    /// The HTTP status of the code (`docs/sync.md`, "HTTP API").
    pub fn status(&self) -> StatusCode {
        match self.code {
            "bad_request" => StatusCode::BAD_REQUEST,
            "unauthorized" => StatusCode::UNAUTHORIZED,
            "forbidden" => StatusCode::FORBIDDEN,
            "not_found" => StatusCode::NOT_FOUND,
            "conflict" | "quota" => StatusCode::CONFLICT,
            "reset" => StatusCode::GONE,
            "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
            "unavailable" => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message.clone(),
                epoch: self.epoch.clone(),
            },
        }
    }
}

impl std::fmt::Display for HubError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code)
    }
}

impl std::error::Error for HubError {}

impl IntoResponse for HubError {
    fn into_response(self) -> Response {
        if self.code == "internal" {
            tracing::error!(message = %self.message, "internal error");
        }
        (self.status(), axum::Json(self.body())).into_response()
    }
}

impl From<rusqlite::Error> for HubError {
    fn from(e: rusqlite::Error) -> HubError {
        HubError::internal(format!("sqlite: {e}"))
    }
}

impl From<tokio_postgres::Error> for HubError {
    fn from(e: tokio_postgres::Error) -> HubError {
        if e.is_closed() {
            return HubError::unavailable(format!("postgresql: {e}"));
        }
        HubError::internal(format!("postgresql: {e}"))
    }
}

impl From<serde_json::Error> for HubError {
    fn from(e: serde_json::Error) -> HubError {
        HubError::internal(format!("json: {e}"))
    }
}
