//! WeChat's customer-service API over HTTP (platform-spec §4.6–§4.10): tokens, send, typing,
//! media upload and download. Each call ends in an [`Outcome`]: WeChat's `errcode`, or a
//! transport failure before the request was written (connection refused, DNS, TLS) or after it
//! (timeout, reset, an answer that is not WeChat's) — the difference decides whether a send may
//! be repeated. URLs carry the access token and are never logged.

use std::time::Duration;

use quiver_shared::wechat::outcome::Outcome;
use serde_json::{json, Value};

/// One answer: the outcome, WeChat's `errmsg`, the JSON body (or null).
#[derive(Debug, Clone)]
pub struct Reply {
    pub outcome: Outcome,
    pub errmsg: String,
    pub json: Value,
}

impl Reply {
    fn transport(outcome: Outcome, why: String) -> Reply {
        Reply {
            outcome,
            errmsg: why,
            json: Value::Null,
        }
    }
    pub fn errcode(&self) -> Option<i64> {
        match self.outcome {
            Outcome::Answer { errcode } => Some(errcode),
            _ => None,
        }
    }
    /// For people: `errcode errmsg` or the transport failure.
    pub fn describe(&self) -> String {
        match self.outcome {
            Outcome::Answer { errcode } => format!("{errcode} {}", self.errmsg),
            Outcome::NotWritten => format!("could not reach WeChat: {}", self.errmsg),
            Outcome::AfterWritten => format!("no answer from WeChat: {}", self.errmsg),
        }
    }
}

#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    timeout: Duration,
}

fn tls() -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    rustls::ClientConfig::builder_with_provider(crate::tls::provider())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default TLS versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

fn classify(e: &reqwest::Error) -> Outcome {
    if e.is_connect() || e.is_builder() {
        Outcome::NotWritten
    } else {
        Outcome::AfterWritten
    }
}

/// `{"errcode","errmsg"}` of a JSON answer (a missing errcode is 0).
fn answer(json: Value) -> Reply {
    let errcode = json
        .get("errcode")
        .and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        })
        .unwrap_or(0);
    Reply {
        outcome: Outcome::Answer { errcode },
        errmsg: json
            .get("errmsg")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string(),
        json,
    }
}

impl Client {
    /// `timeout`: the whole request, after which a send's outcome is unknown.
    pub fn new(timeout: Duration) -> Client {
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls())
            .connect_timeout(Duration::from_secs(3))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("the HTTP client builds");
        Client { http, timeout }
    }

    async fn json_call(&self, req: reqwest::RequestBuilder, timeout: Duration) -> Reply {
        let resp = match req.timeout(timeout).send().await {
            Ok(r) => r,
            Err(e) => return Reply::transport(classify(&e), e.to_string()),
        };
        let status = resp.status();
        let text = match resp.text().await {
            Ok(t) => t,
            Err(e) => return Reply::transport(Outcome::AfterWritten, e.to_string()),
        };
        match serde_json::from_str::<Value>(&text) {
            Ok(v) if v.is_object() => answer(v),
            _ => Reply::transport(
                Outcome::AfterWritten,
                format!(
                    "HTTP {status}, not a WeChat answer: {}",
                    text.chars().take(120).collect::<String>()
                ),
            ),
        }
    }

    /// `POST /cgi-bin/stable_token`.
    pub async fn stable_token(&self, base: &str, appid: &str, secret: &str, force: bool) -> Reply {
        let body = json!({"grant_type": "client_credential", "appid": appid, "secret": secret,
                          "force_refresh": force});
        self.json_call(
            self.http
                .post(format!("{base}/cgi-bin/stable_token"))
                .header("content-type", "application/json")
                .body(body.to_string()),
            self.timeout,
        )
        .await
    }

    /// `POST /cgi-bin/message/custom/send`.
    pub async fn send(&self, base: &str, token: &str, body: &str) -> Reply {
        self.json_call(
            self.http
                .post(format!("{base}/cgi-bin/message/custom/send"))
                .query(&[("access_token", token)])
                .header("content-type", "application/json")
                .body(body.to_string()),
            self.timeout,
        )
        .await
    }

    /// `POST /cgi-bin/message/custom/typing` (the path every library uses; research §2.3).
    pub async fn typing(&self, base: &str, token: &str, body: &str) -> Reply {
        self.json_call(
            self.http
                .post(format!("{base}/cgi-bin/message/custom/typing"))
                .query(&[("access_token", token)])
                .header("content-type", "application/json")
                .body(body.to_string()),
            self.timeout,
        )
        .await
    }

    /// `POST /cgi-bin/media/upload?type=image`, multipart field `media`.
    pub async fn upload(
        &self,
        base: &str,
        token: &str,
        bytes: Vec<u8>,
        mime: &str,
        ext: &str,
    ) -> Reply {
        let part = match reqwest::multipart::Part::bytes(bytes)
            .file_name(format!("image.{ext}"))
            .mime_str(mime)
        {
            Ok(p) => p,
            Err(e) => return Reply::transport(Outcome::NotWritten, e.to_string()),
        };
        let form = reqwest::multipart::Form::new().part("media", part);
        self.json_call(
            self.http
                .post(format!("{base}/cgi-bin/media/upload"))
                .query(&[("access_token", token), ("type", "image")])
                .multipart(form),
            self.timeout * 3,
        )
        .await
    }

    /// `GET /cgi-bin/media/get`: `Ok((content type, bytes))`, or the reply that says why not (a
    /// JSON body is an error, whatever its status).
    pub async fn get_media(
        &self,
        base: &str,
        token: &str,
        media_id: &str,
        max: usize,
    ) -> Result<(String, Vec<u8>), Reply> {
        let resp = self
            .http
            .get(format!("{base}/cgi-bin/media/get"))
            .query(&[("access_token", token), ("media_id", media_id)])
            .timeout(self.timeout * 3)
            .send()
            .await
            .map_err(|e| Reply::transport(classify(&e), e.to_string()))?;
        let ct = resp
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_string();
        if resp.content_length().is_some_and(|n| n as usize > max) {
            return Err(Reply::transport(
                Outcome::Answer { errcode: 0 },
                format!("the image is larger than {max} bytes"),
            ));
        }
        let bytes = resp
            .bytes()
            .await
            .map_err(|e| Reply::transport(Outcome::AfterWritten, e.to_string()))?;
        if ct.contains("json") || ct.starts_with("text/") {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
            return Err(if v.is_object() {
                answer(v)
            } else {
                Reply::transport(Outcome::AfterWritten, "not an image".into())
            });
        }
        if bytes.len() > max {
            return Err(Reply::transport(
                Outcome::Answer { errcode: 0 },
                format!("the image is larger than {max} bytes"),
            ));
        }
        Ok((ct, bytes.to_vec()))
    }
}
