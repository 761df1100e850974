//! The hub's HTTP API as the daemon calls it (`docs/sync.md`, `quiver_shared::sync::wire`):
//! reqwest over rustls with the ring provider, the hub's certificate pinned by its SHA-256
//! from the invite (`quiver_hub::tls`'s verifier: no CA, no host name check, the invite is the
//! trust anchor). Plain HTTP only to a loopback hub.

use super::invite;
use quiver_shared::sync::wire::{
    ChangesPage, DigestReply, ErrorBody, JoinRequest, Me, PushReply, PushRequest, ReviewReply,
    RevisionsReply,
};
use serde::de::DeserializeOwned;
use serde::Serialize;
use std::time::Duration;

/// How long to wait for a connection.
const CONNECT_WAIT: Duration = Duration::from_secs(5);
/// How long an ordinary request (join, me, push, a page) may take.
const REQUEST_WAIT: Duration = Duration::from_secs(30);

/// What went wrong talking to a hub.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum HubError {
    /// No connection (refused, timed out, reset, DNS).
    #[error("cannot reach the hub: {0}")]
    Unreachable(String),
    /// The hub presented another certificate than the invite pinned.
    #[error("{0}")]
    Pin(String),
    /// 401: the device token is unknown or revoked.
    #[error("the hub refused this device's token (revoked, or the hub was re-created): {0}")]
    Unauthorized(String),
    /// 403: this user may not do that (no longer a member, a role too weak).
    #[error("the hub refused: {0}")]
    Forbidden(String),
    /// 404: no such library (or invite).
    #[error("not found at the hub: {0}")]
    NotFound(String),
    /// 410: the library's log changed (epoch); `epoch` is the new one.
    #[error("the hub's log of the library changed (new epoch {epoch:?})")]
    Reset { epoch: Option<String> },
    /// 413: the request is too large.
    #[error("the hub found the request too large: {0}")]
    TooLarge(String),
    /// Another answer: the status and what the hub said.
    #[error("the hub answered {status} {code}: {message}")]
    Http {
        status: u16,
        code: String,
        message: String,
    },
    /// The hub's answer is not what the protocol says.
    #[error("the hub's answer is not understood: {0}")]
    Bad(String),
}

impl HubError {
    /// Worth retrying later (the hub may come back).
    pub fn transient(&self) -> bool {
        match self {
            HubError::Unreachable(_) | HubError::Bad(_) => true,
            HubError::Http { status, .. } => *status >= 500 || *status == 429 || *status == 408,
            _ => false,
        }
    }
}

/// The start of every pin-mismatch message (`quiver_hub::tls::PinnedVerifier`'s words).
pub const PIN_MISMATCH: &str = "the hub's certificate is not the one the invite names";

/// The TLS configuration for a hub pinned to `fingerprint` (lowercase hex SHA-256): the hub
/// crate's verifier, which accepts exactly that certificate and checks the handshake with it.
fn tls_config(fingerprint: &str) -> Result<rustls::ClientConfig, HubError> {
    quiver_hub::tls::pinned_client_config(fingerprint)
        .map_err(|e| HubError::Pin(format!("the pinned fingerprint: {e}")))
}

/// A connection to one hub (reqwest keeps the connections alive between requests).
#[derive(Debug, Clone)]
pub struct HubClient {
    http: reqwest::Client,
    /// `http` without read timeouts, for the event stream.
    stream: reqwest::Client,
    base: String,
    token: Option<String>,
}

/// Every message in an error's chain, joined (reqwest hides the TLS cause in the sources).
fn chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut src = e.source();
    while let Some(c) = src {
        let t = c.to_string();
        if !s.contains(&t) {
            s.push_str(": ");
            s.push_str(&t);
        }
        src = c.source();
    }
    s
}

fn transport(e: reqwest::Error) -> HubError {
    let msg = chain(&e);
    if let Some(i) = msg.find(PIN_MISMATCH) {
        return HubError::Pin(msg[i..].to_string());
    }
    if e.is_decode() {
        return HubError::Bad(msg);
    }
    HubError::Unreachable(msg)
}

impl HubClient {
    /// A client for the hub at `url` (`https` with a pinned `fingerprint`, or `http` on
    /// loopback), authenticating with `token` when given.
    pub fn new(
        url: &str,
        fingerprint: Option<&str>,
        token: Option<String>,
    ) -> Result<HubClient, HubError> {
        let (scheme, host, _) = invite::split_url(url).map_err(HubError::Bad)?;
        let tls = match (scheme, fingerprint) {
            ("https", Some(fp)) => tls_config(fp)?,
            ("https", None) => {
                return Err(HubError::Pin(format!(
                    "{url}: no certificate fingerprint is pinned for this hub; join again with \
                     a new invite"
                )))
            }
            ("http", _) if invite::is_loopback(host) => {
                // never used for plain http; reqwest wants one all the same
                tls_config(&"0".repeat(64))?
            }
            ("http", _) => {
                return Err(HubError::Bad(format!(
                    "{url}: plain http is only for a hub on this machine"
                )))
            }
            (other, _) => return Err(HubError::Bad(format!("{url}: unknown scheme {other}"))),
        };
        let build = |read_timeout: bool| {
            let mut b = reqwest::Client::builder()
                .use_preconfigured_tls(tls.clone())
                .connect_timeout(CONNECT_WAIT)
                .tcp_nodelay(true)
                .pool_idle_timeout(Duration::from_secs(60))
                .user_agent(concat!("quiver-daemon/", env!("CARGO_PKG_VERSION")));
            if read_timeout {
                b = b.timeout(REQUEST_WAIT);
            }
            b.build()
                .map_err(|e| HubError::Bad(format!("HTTP client: {}", chain(&e))))
        };
        Ok(HubClient {
            http: build(true)?,
            stream: build(false)?,
            base: url.trim_end_matches('/').to_string(),
            token,
        })
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    fn auth(&self, rb: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(t) => rb.bearer_auth(t),
            None => rb,
        }
    }

    async fn send<T: DeserializeOwned>(&self, rb: reqwest::RequestBuilder) -> Result<T, HubError> {
        let resp = self.auth(rb).send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        if (200..300).contains(&status) {
            return serde_json::from_slice(&bytes).map_err(|e| HubError::Bad(e.to_string()));
        }
        Err(error_of(status, &bytes))
    }

    /// `POST /v1/join`: a new device of the invited user; the reply carries its token.
    pub async fn join(&self, code: &str, device_name: &str) -> Result<Me, HubError> {
        let body = JoinRequest {
            code: code.to_string(),
            device_name: device_name.to_string(),
        };
        self.send(self.http.post(self.url("/v1/join")).json_body(&body)?)
            .await
    }

    /// `GET /v1/me`: this device's user and libraries.
    pub async fn me(&self) -> Result<Me, HubError> {
        self.send(self.http.get(self.url("/v1/me"))).await
    }

    /// `POST /v1/libraries/{lib}/push`.
    pub async fn push(&self, library: &str, req: &PushRequest) -> Result<PushReply, HubError> {
        let url = self.url(&format!("/v1/libraries/{library}/push"));
        self.send(self.http.post(url).json_body(req)?).await
    }

    /// `GET /v1/libraries/{lib}/changes?epoch=E&after=S&limit=N`.
    pub async fn changes(
        &self,
        library: &str,
        epoch: &str,
        after: i64,
        limit: usize,
    ) -> Result<ChangesPage, HubError> {
        let url = self.url(&format!(
            "/v1/libraries/{library}/changes?epoch={epoch}&after={after}&limit={limit}"
        ));
        self.send(self.http.get(url)).await
    }

    /// `GET /v1/libraries/{lib}/digest`.
    pub async fn digest(&self, library: &str) -> Result<DigestReply, HubError> {
        self.send(
            self.http
                .get(self.url(&format!("/v1/libraries/{library}/digest"))),
        )
        .await
    }

    /// `GET /v1/libraries/{lib}/proposals`: the proposals waiting for review.
    pub async fn proposals(&self, library: &str) -> Result<RevisionsReply, HubError> {
        let url = self.url(&format!("/v1/libraries/{library}/proposals"));
        self.send(self.http.get(url)).await
    }

    /// `POST /v1/libraries/{lib}/proposals/{rev}/approve` (or `reject`).
    pub async fn review(
        &self,
        library: &str,
        rev_id: &str,
        approve: bool,
    ) -> Result<ReviewReply, HubError> {
        let verb = if approve { "approve" } else { "reject" };
        let url = self.url(&format!(
            "/v1/libraries/{library}/proposals/{rev_id}/{verb}"
        ));
        self.send(self.http.post(url)).await
    }

    /// `POST /v1/admin/devices/{id}/revoke` of this device's own id: its token stops working
    /// (a member may revoke their own devices).
    pub async fn revoke_device(&self, device_id: &str) -> Result<(), HubError> {
        let url = self.url(&format!("/v1/admin/devices/{device_id}/revoke"));
        let resp = self
            .auth(self.http.post(url))
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        let bytes = resp.bytes().await.map_err(transport)?;
        if (200..300).contains(&status) {
            return Ok(());
        }
        Err(error_of(status, &bytes))
    }

    /// A request to any path of the hub's API (the WeChat agent API, `/v1/wx/*`, whose callers
    /// read the status and body themselves): `(status, content type, body)`; `Err` only when
    /// no answer came.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<(&str, Vec<u8>)>,
    ) -> Result<(u16, String, Vec<u8>), HubError> {
        let mut rb = self.http.request(method, self.url(path));
        if let Some((ct, bytes)) = body {
            rb = rb.header("content-type", ct).body(bytes);
        }
        let resp = self.auth(rb).send().await.map_err(transport)?;
        let status = resp.status().as_u16();
        let ct = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        let bytes = resp.bytes().await.map_err(transport)?;
        Ok((status, ct, bytes.to_vec()))
    }

    /// `GET /v1/events`: the event stream (pokes), as a response to read chunk by chunk.
    pub async fn events(&self) -> Result<reqwest::Response, HubError> {
        let resp = self
            .auth(
                self.stream
                    .get(self.url("/v1/events"))
                    .header("accept", "text/event-stream"),
            )
            .send()
            .await
            .map_err(transport)?;
        let status = resp.status().as_u16();
        if (200..300).contains(&status) {
            return Ok(resp);
        }
        let bytes = resp.bytes().await.map_err(transport)?;
        Err(error_of(status, &bytes))
    }
}

/// JSON bodies without reqwest's `json` feature.
trait JsonBody: Sized {
    fn json_body<B: Serialize>(self, body: &B) -> Result<Self, HubError>;
}

impl JsonBody for reqwest::RequestBuilder {
    fn json_body<B: Serialize>(self, body: &B) -> Result<Self, HubError> {
        let bytes = serde_json::to_vec(body).map_err(|e| HubError::Bad(e.to_string()))?;
        Ok(self.header("content-type", "application/json").body(bytes))
    }
}

/// The error an HTTP status and the hub's `{"error": {...}}` body mean.
pub fn error_of(status: u16, body: &[u8]) -> HubError {
    let parsed: Option<ErrorBody> = serde_json::from_slice(body).ok();
    let (code, message, epoch) = match parsed {
        Some(b) => (b.error.code, b.error.message, b.error.epoch),
        None => (
            String::new(),
            String::from_utf8_lossy(&body[..body.len().min(500)]).into_owned(),
            None,
        ),
    };
    match status {
        401 => HubError::Unauthorized(message),
        403 => HubError::Forbidden(message),
        404 => HubError::NotFound(message),
        410 => HubError::Reset { epoch },
        413 => HubError::TooLarge(message),
        _ => HubError::Http {
            status,
            code,
            message,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errors_are_read_from_the_status_and_body() {
        let body = br#"{"error":{"code":"reset","message":"epoch changed","epoch":"e2"}}"#;
        assert_eq!(
            error_of(410, body),
            HubError::Reset {
                epoch: Some("e2".into())
            }
        );
        assert!(matches!(error_of(401, b"{}"), HubError::Unauthorized(_)));
        let e = error_of(
            503,
            br#"{"error":{"code":"unavailable","message":"db down"}}"#,
        );
        assert!(e.transient(), "{e}");
        assert_eq!(e.to_string(), "the hub answered 503 unavailable: db down");
        assert!(!error_of(403, b"no").transient());
    }

    #[test]
    fn plain_http_only_to_loopback_and_https_needs_a_pin() {
        assert!(HubClient::new("http://127.0.0.1:1", None, None).is_ok());
        assert!(HubClient::new("http://10.1.1.1:1", None, None).is_err());
        assert!(matches!(
            HubClient::new("https://hub:1", None, None),
            Err(HubError::Pin(_))
        ));
        assert!(HubClient::new("https://hub:1", Some(&"ab".repeat(32)), None).is_ok());
    }
}
