//! The page's HTTP server (docs/mcs.md, "Security model"). Every request passes [`guard`]:
//!
//! - `OPTIONS` is refused (403) and no response carries an `Access-Control-*` header: a
//!   cross-origin request that needs a preflight (every API request does: it carries custom
//!   headers) never gets one.
//! - `Host` must be exactly `127.0.0.1:<port>` or `localhost:<port>` (DNS rebinding).
//! - `Origin`, when present, must be the page's own origin (`http://` + that Host);
//!   `Sec-Fetch-Site`, when present, `same-origin` or `none`.
//! - The page (`/mcs/`) needs the key in its URL (`?k=`); the API (`/mcs/api/*`) needs the key
//!   in `X-Quiver-Key` and `X-Quiver-Plugin: 1`. Keys are compared as SHA-256 digests in
//!   constant time.
//! - Bodies are at most [`MAX_BODY`] bytes; the API answers at most [`RATE_PER_SEC`] requests a
//!   second.
//! - Every response, refusals included, carries `X-Frame-Options: DENY`, a CSP
//!   (`default-src 'self'; frame-ancestors 'none'`), `Cache-Control: no-store`,
//!   `X-Content-Type-Options: nosniff` and `Referrer-Policy: no-referrer`.
//!
//! The log names method, path and status, never a query string (it holds the key).

use super::page::{self, ApiError};
use super::PageState;
use crate::service::Shared;
use axum::body::{Body, Bytes};
use axum::extract::{Query, Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

/// The largest request body accepted, in bytes.
pub const MAX_BODY: usize = 16 * 1024;
/// API requests served per second (more get 429).
pub const RATE_PER_SEC: u32 = 50;

/// The page's files, embedded in the binary.
const INDEX_HTML: &str = include_str!("../../assets/mcs/index.html");
const PAGE_JS: &str = include_str!("../../assets/mcs/mcs.js");
const PAGE_CSS: &str = include_str!("../../assets/mcs/mcs.css");

const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self'; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/// A fixed one-second window of API requests.
#[derive(Debug, Default)]
pub(super) struct Rate {
    window: Option<Instant>,
    count: u32,
}

/// What every handler sees.
pub(super) struct App {
    pub shared: Arc<Shared>,
    /// The port actually bound (the Host allow-list names it).
    pub port: u16,
    pub key: Arc<RwLock<Option<String>>>,
    pub page: Arc<Mutex<PageState>>,
    pub rate: Mutex<Rate>,
}

pub(super) fn router(app: Arc<App>) -> Router {
    Router::new()
        .route("/mcs/", get(index))
        .route("/mcs/mcs.js", get(script))
        .route("/mcs/mcs.css", get(style))
        .route("/mcs/api/search", get(search))
        .route("/mcs/api/state", get(state))
        .route("/mcs/api/render", post(render))
        .route("/mcs/api/done", post(done))
        .route("/mcs/api/event", post(event))
        .fallback(not_found)
        .layer(middleware::from_fn_with_state(app.clone(), guard))
        .with_state(app)
}

fn digest(s: &str) -> [u8; 32] {
    Sha256::digest(s.as_bytes()).into()
}

/// Constant-time equality of the digests of `given` and the configured key.
fn key_matches(app: &App, given: &str) -> bool {
    let Ok(k) = app.key.read() else { return false };
    let Some(key) = k.as_deref() else {
        return false;
    };
    let (a, b) = (digest(given), digest(key));
    let diff = a.iter().zip(b.iter()).fold(0u8, |d, (x, y)| d | (x ^ y));
    std::hint::black_box(diff) == 0
}

fn error_response(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = json!({ "error": { "code": code, "message": message.into() } });
    (status, axum::Json(body)).into_response()
}

fn forbidden(message: impl Into<String>) -> Response {
    error_response(StatusCode::FORBIDDEN, "forbidden", message)
}

fn secure(mut r: Response) -> Response {
    let h = r.headers_mut();
    // nothing else ever sets CORS headers; make sure of it
    let cors: Vec<header::HeaderName> = h
        .keys()
        .filter(|k| k.as_str().starts_with("access-control-"))
        .cloned()
        .collect();
    for k in cors {
        h.remove(k);
    }
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(
        "cross-origin-resource-policy",
        HeaderValue::from_static("same-origin"),
    );
    r
}

fn header_str<'a>(h: &'a HeaderMap, name: &str) -> Option<Result<&'a str, ()>> {
    h.get(name).map(|v| v.to_str().map_err(|_| ()))
}

/// The Host the request names, if it is one of ours (lowercased).
fn allowed_host(app: &App, req: &Request) -> Option<String> {
    let host = header_str(req.headers(), "host")?
        .ok()?
        .to_ascii_lowercase();
    let ok = host == format!("127.0.0.1:{}", app.port) || host == format!("localhost:{}", app.port);
    // an absolute-form request line must name the same authority
    if let Some(a) = req.uri().authority() {
        if !a.as_str().eq_ignore_ascii_case(&host) {
            return None;
        }
    }
    ok.then_some(host)
}

/// The value of `name` in a query string.
fn query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| percent_decode(v))
    })
}

fn percent_decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < b.len()
                && b[i + 1].is_ascii_hexdigit()
                && b[i + 2].is_ascii_hexdigit() =>
            {
                let hex = |c: u8| (c as char).to_digit(16).unwrap_or(0) as u8;
                out.push(hex(b[i + 1]) * 16 + hex(b[i + 2]));
                i += 2;
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    let path = req.uri().path().to_string();
    let resp = match check(&app, &req) {
        Some(refusal) => refusal,
        None => next.run(req).await,
    };
    crate::debug!("mcs {method} {path} -> {}", resp.status().as_u16());
    secure(resp)
}

/// Why `req` is refused, if it is.
fn check(app: &App, req: &Request) -> Option<Response> {
    if req.method() == Method::OPTIONS {
        return Some(forbidden("no cross-origin requests (OPTIONS is refused)"));
    }
    let Some(host) = allowed_host(app, req) else {
        return Some(forbidden(format!(
            "Host must be 127.0.0.1:{0} or localhost:{0}",
            app.port
        )));
    };
    let h = req.headers();
    match header_str(h, "origin") {
        None => {}
        Some(Ok(o)) if o.eq_ignore_ascii_case(&format!("http://{host}")) => {}
        Some(_) => return Some(forbidden("Origin is not this page's own origin")),
    }
    match header_str(h, "sec-fetch-site") {
        None | Some(Ok("same-origin" | "none")) => {}
        Some(_) => return Some(forbidden("Sec-Fetch-Site must be same-origin or none")),
    }
    let path = req.uri().path();
    if path == "/mcs/" {
        let given = req
            .uri()
            .query()
            .and_then(|q| query_param(q, "k"))
            .unwrap_or_default();
        if !key_matches(app, &given) {
            return Some(forbidden(
                "missing or wrong key: open the URL `quiver mcs url` prints",
            ));
        }
    } else if path.starts_with("/mcs/api/") {
        if !matches!(header_str(h, "x-quiver-plugin"), Some(Ok("1"))) {
            return Some(forbidden("the API needs the header X-Quiver-Plugin: 1"));
        }
        let given = match header_str(h, "x-quiver-key") {
            Some(Ok(k)) => k,
            _ => "",
        };
        if !key_matches(app, given) {
            return Some(forbidden("missing or wrong X-Quiver-Key"));
        }
        if let Some(n) = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok())
        {
            if n > MAX_BODY {
                return Some(error_response(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("the body is larger than {MAX_BODY} bytes"),
                ));
            }
        }
        if !take_rate(app) {
            return Some(error_response(
                StatusCode::TOO_MANY_REQUESTS,
                "rate_limited",
                format!("more than {RATE_PER_SEC} requests in a second"),
            ));
        }
    }
    None
}

fn take_rate(app: &App) -> bool {
    let Ok(mut r) = app.rate.lock() else {
        return false;
    };
    let now = Instant::now();
    match r.window {
        Some(w) if now.duration_since(w).as_millis() < 1000 => {}
        _ => {
            r.window = Some(now);
            r.count = 0;
        }
    }
    r.count += 1;
    r.count <= RATE_PER_SEC
}

fn file(content_type: &'static str, body: &'static str) -> Response {
    (
        [(header::CONTENT_TYPE, HeaderValue::from_static(content_type))],
        body,
    )
        .into_response()
}

async fn index() -> Response {
    file("text/html; charset=utf-8", INDEX_HTML)
}

async fn script() -> Response {
    file("text/javascript; charset=utf-8", PAGE_JS)
}

async fn style() -> Response {
    file("text/css; charset=utf-8", PAGE_CSS)
}

async fn not_found() -> Response {
    error_response(StatusCode::NOT_FOUND, "not_found", "no such page")
}

fn api_response(r: Result<Value, ApiError>) -> Response {
    match r {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => error_response(
            StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            &e.code,
            e.message,
        ),
    }
}

/// Runs `f` off the async thread (the service takes a lock and writes SQLite).
async fn blocking(
    app: Arc<App>,
    f: impl FnOnce(&App) -> Result<Value, ApiError> + Send + 'static,
) -> Response {
    let r = tokio::task::spawn_blocking(move || f(&app))
        .await
        .unwrap_or_else(|e| Err(ApiError::internal(format!("the request failed: {e}"))));
    api_response(r)
}

/// A JSON body (at most [`MAX_BODY`] bytes).
fn json_body(body: &Bytes) -> Result<Value, ApiError> {
    if body.len() > MAX_BODY {
        return Err(ApiError::new(
            413,
            "too_large",
            format!("the body is larger than {MAX_BODY} bytes"),
        ));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("the body is not JSON: {e}")))
}

/// Reads the body, at most [`MAX_BODY`] bytes.
async fn read_body(body: Body) -> Result<Bytes, ApiError> {
    axum::body::to_bytes(body, MAX_BODY).await.map_err(|_| {
        ApiError::new(
            413,
            "too_large",
            format!("the body is larger than {MAX_BODY} bytes"),
        )
    })
}

async fn search(State(app): State<Arc<App>>, Query(q): Query<HashMap<String, String>>) -> Response {
    blocking(app, move |app| page::search(app, &q)).await
}

async fn state(State(app): State<Arc<App>>) -> Response {
    blocking(app, page::state).await
}

async fn post_json(
    app: Arc<App>,
    req: Request,
    f: fn(&App, Value) -> Result<Value, ApiError>,
) -> Response {
    let body = match read_body(req.into_body()).await.and_then(|b| json_body(&b)) {
        Ok(v) => v,
        Err(e) => return api_response(Err(e)),
    };
    blocking(app, move |app| f(app, body)).await
}

async fn render(State(app): State<Arc<App>>, req: Request) -> Response {
    post_json(app, req, page::render).await
}

async fn done(State(app): State<Arc<App>>, req: Request) -> Response {
    post_json(app, req, page::done).await
}

async fn event(State(app): State<Arc<App>>, req: Request) -> Response {
    post_json(app, req, page::event).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_params_are_decoded() {
        assert_eq!(query_param("k=abc&ticket=T", "k").as_deref(), Some("abc"));
        assert_eq!(query_param("ticket=T&k=a%2Db", "k").as_deref(), Some("a-b"));
        assert_eq!(query_param("kk=1", "k"), None);
        assert_eq!(percent_decode("%zz%4"), "%zz%4");
        assert_eq!(percent_decode("%+1%41"), "% 1A");
        assert_eq!(percent_decode("a+b%20c"), "a b c");
    }
}
