//! `GET/POST /wx/mp/{NAME}`: WeChat's URL check and pushes (research §4.4). The app's configured
//! mode decides how a request is verified, never what the request claims: `plain` checks
//! `signature`; `compat` and `safe` also require `encrypt_type=aes` and `msg_signature` over
//! `Encrypt`, decrypt it (checking the AppID inside) and ignore any plaintext copy beside it. The
//! body must be in the configured format. A verified push is stored (once: a retry is found by
//! its key), then answered with a plain `success`, or with `transfer_customer_service` (sealed
//! in safe mode) when the transfer policy says so — the same answer to every retry.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use quiver_shared::wechat::crypto::{self, Crypto, PushQuery};
use quiver_shared::wechat::push::{parse_body, parse_push, Body, PushKind};
use quiver_shared::wechat::reply;
use quiver_shared::wechat::Format;

use super::ops::{self, Mode};
use super::Wx;
use crate::ids::now_ms;

/// The largest push body (pushes are small; images arrive as a `MediaId`).
pub const MAX_PUSH: usize = 64 << 10;
/// Pushes whose `timestamp` is further than this from the hub's clock are logged (clock skew
/// shows in quota windows and token expiry). Not refused: see docs/wechat.md, "Deviations".
pub const WARN_SKEW_SECS: i64 = 300;

fn text(status: StatusCode, body: impl Into<String>) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        body.into(),
    )
        .into_response()
}

fn refuse(status: StatusCode, app: &str, why: impl std::fmt::Display) -> Response {
    tracing::warn!(app, reason = %why, "push refused");
    text(status, format!("{why}\n"))
}

/// `/wx/health`: the push listener is up.
pub async fn health() -> Response {
    text(StatusCode::OK, "ok\n")
}

pub async fn handle(
    State(wx): State<Arc<Wx>>,
    Path(name): Path<String>,
    method: Method,
    RawQuery(query): RawQuery,
    headers: axum::http::HeaderMap,
    body: Bytes,
) -> Response {
    let app = match wx.push_app(&name).await {
        Ok(Some(a)) => a,
        Ok(None) => return text(StatusCode::NOT_FOUND, "no such mini program\n"),
        Err(e) => return text(StatusCode::SERVICE_UNAVAILABLE, format!("{}\n", e.message)),
    };
    let pairs: Vec<(String, String)> =
        serde_urlencoded::from_str(query.as_deref().unwrap_or("")).unwrap_or_default();
    let q = PushQuery::from_pairs(pairs);
    // 1. the URL signature, always, in constant time
    if crypto::verify_url_signature(&app.token, &q.timestamp, &q.nonce, &q.signature).is_err() {
        return refuse(StatusCode::UNAUTHORIZED, &name, "bad signature");
    }
    let now = now_ms();
    match q.timestamp.parse::<i64>() {
        Ok(ts) if (ts - now / 1000).abs() <= WARN_SKEW_SECS => {}
        Ok(ts) => {
            tracing::warn!(app = %name, skew_secs = ts - now / 1000, "push timestamp far from the hub's clock")
        }
        Err(_) => return refuse(StatusCode::BAD_REQUEST, &name, "timestamp is not a number"),
    }
    if method == Method::GET {
        // the URL check: echostr verbatim, plain text, in every mode
        return match q.echostr {
            Some(e) => text(StatusCode::OK, e),
            None => refuse(StatusCode::BAD_REQUEST, &name, "a GET without echostr"),
        };
    }
    if method != Method::POST {
        return text(StatusCode::METHOD_NOT_ALLOWED, "GET or POST\n");
    }
    if body.len() > MAX_PUSH {
        return refuse(StatusCode::PAYLOAD_TOO_LARGE, &name, "push body too large");
    }
    let Ok(raw) = std::str::from_utf8(&body) else {
        return refuse(StatusCode::BAD_REQUEST, &name, "push body is not UTF-8");
    };
    if let Some(f) = Format::detect(raw) {
        if f != app.format {
            return refuse(
                StatusCode::BAD_REQUEST,
                &name,
                format!(
                    "a {} push, but the app is configured for {}",
                    f.as_str(),
                    app.format.as_str()
                ),
            );
        }
    }
    let _ = headers;
    // 2. by the configured mode
    let crypto = match (&app.mode, &app.aes_key) {
        (Mode::Plain, _) => None,
        (_, Some(k)) => match Crypto::new(&app.token, k, &app.appid) {
            Ok(c) => Some(c),
            Err(e) => {
                return refuse(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    &name,
                    format!("the app's EncodingAESKey: {e}"),
                )
            }
        },
        (_, None) => {
            return refuse(
                StatusCode::INTERNAL_SERVER_ERROR,
                &name,
                "no EncodingAESKey configured",
            )
        }
    };
    let plaintext = match &crypto {
        None => raw.to_string(),
        Some(c) => {
            if q.encrypt_type.as_deref() != Some("aes") || q.msg_signature.is_none() {
                return refuse(
                    StatusCode::UNAUTHORIZED,
                    &name,
                    format!(
                        "{} mode: the push must be encrypted (encrypt_type=aes, msg_signature)",
                        app.mode.as_str()
                    ),
                );
            }
            let envelope = match parse_body(raw, app.format) {
                Ok(Body::Encrypted { envelope }) | Ok(Body::Compatible { envelope, .. }) => {
                    envelope
                }
                Ok(Body::Plain { .. }) => {
                    return refuse(
                        StatusCode::UNAUTHORIZED,
                        &name,
                        "an encrypted push without Encrypt",
                    )
                }
                Err(e) => return refuse(StatusCode::BAD_REQUEST, &name, e),
            };
            match c.open(&envelope, &q) {
                Ok(p) => p,
                Err(e) => return refuse(StatusCode::UNAUTHORIZED, &name, e),
            }
        }
    };
    let push = match parse_push(&plaintext, app.format) {
        Ok(p) => p,
        Err(e) => return refuse(StatusCode::BAD_REQUEST, &name, e),
    };
    if let Some(orig) = app.original_id.as_deref() {
        if push.to_user_name != orig {
            return refuse(
                StatusCode::BAD_REQUEST,
                &name,
                "ToUserName is not this mini program",
            );
        }
    }
    // 3. persist, then answer
    let (a2, p2) = (app.clone(), push.clone());
    let got = match run!(&wx.db, write, |tx| ops::receive(tx, &a2, &p2, now)) {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(app = %name, error = %e, "cannot store a push");
            return text(StatusCode::SERVICE_UNAVAILABLE, "cannot store the push\n");
        }
    };
    if !got.duplicate {
        match &push.kind {
            PushKind::Image { media_id, .. } => {
                wx.fetch_inbound(app.clone(), got.message_id, media_id.clone())
            }
            PushKind::MiniProgramPage { thumb_media_id, .. } => {
                wx.fetch_inbound(app.clone(), got.message_id, thumb_media_id.clone())
            }
            _ => {}
        }
    }
    if !got.transfer {
        return text(StatusCode::OK, reply::SUCCESS);
    }
    let create = now / 1000;
    let plain = match reply::transfer_customer_service(&push, app.format, create) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(app = %name, error = %e, "no transfer reply");
            return text(StatusCode::OK, reply::SUCCESS);
        }
    };
    let body = match (&app.mode, &crypto) {
        (Mode::Safe, Some(c)) => {
            let mut random = [0u8; 16];
            if getrandom::fill(&mut random).is_err() {
                return text(StatusCode::OK, reply::SUCCESS);
            }
            match reply::seal(
                c,
                &plain,
                app.format,
                create.max(0) as u64,
                &q.nonce,
                &random,
                reply::SealOptions::default(),
            ) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(app = %name, error = %e, "cannot seal the transfer reply");
                    return text(StatusCode::OK, reply::SUCCESS);
                }
            }
        }
        _ => plain,
    };
    let ct = match app.format {
        Format::Xml => "text/xml; charset=utf-8",
        Format::Json => "application/json",
    };
    (StatusCode::OK, [(header::CONTENT_TYPE, ct)], body).into_response()
}
