//! What the hub's routes (`server`, `wx::api`) take from a request: the device behind a bearer
//! token, and JSON bodies and queries, each refusal as a [`HubError`].

use axum::extract::rejection::{JsonRejection, QueryRejection};
use axum::extract::{Json, Query};
use axum::http::{header, HeaderMap, StatusCode};

use crate::error::{HubError, Result};
use crate::ids;
use crate::ops::{self, Actor};
use crate::store::Db;

/// The largest request body the API reads.
pub const BODY_LIMIT: usize = 4 << 20;

/// The device whose token is in `Authorization: Bearer TOKEN`.
pub async fn device(db: &Db, headers: &HeaderMap) -> Result<Actor> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .ok_or_else(|| HubError::unauthorized("no device token (Authorization: Bearer TOKEN)"))?;
    let sha = ids::sha256_hex(token.trim().as_bytes());
    run!(db, read, |tx| ops::authenticate(tx, &sha))?.ok_or_else(|| {
        HubError::unauthorized(
            "this device token is not valid (revoked, or not from this hub): join again",
        )
    })
}

/// A JSON body, or why it was refused (`too_large` past [`BODY_LIMIT`]).
pub fn body<T>(r: std::result::Result<Json<T>, JsonRejection>) -> Result<T> {
    match r {
        Ok(Json(v)) => Ok(v),
        Err(e) if e.status() == StatusCode::PAYLOAD_TOO_LARGE => Err(HubError::new(
            "too_large",
            format!("the request body is larger than {BODY_LIMIT} bytes"),
        )),
        Err(e) => Err(HubError::bad_request(e.body_text())),
    }
}

/// A query string, or why it was refused.
pub fn query<T>(r: std::result::Result<Query<T>, QueryRejection>) -> Result<T> {
    r.map(|Query(q)| q)
        .map_err(|e| HubError::bad_request(e.body_text()))
}
