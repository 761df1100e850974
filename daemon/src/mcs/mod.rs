//! The 多客服 plugin page (docs/mcs.md): the daemon serves, only when the user turned it on
//! (`quiver mcs enable`), one page on `127.0.0.1:<port>` (47321 unless set) for the WeChat
//! 多客服 PC client, which loads it by URL beside the chat and offers it `window.external.PutMsg`,
//! `Notice` and the `MCS_ClientNotify` events.
//!
//! - [`Mcs`] (this file): the settings (`mcs` in the settings table: enabled, port, key), the
//!   `mcs.status`, `mcs.set` and `mcs.notice` methods, and the server's life: started at the
//!   daemon's start when enabled, started, restarted or stopped by `mcs.set` without a restart
//!   of the daemon. The page's state (the current customer, the last map click, the notice, the
//!   sends it was given) lives here too, so it survives a restart of the server.
//! - `http`: the axum server: its guards (Host allow-list, key, custom header, Origin and
//!   Sec-Fetch-Site, no CORS, security headers, body cap, rate limit) and routes.
//! - `cli`: `quiver mcs ...`, through those methods.
//! - `page`: what the routes do, through the service's own methods (`templates.search`,
//!   `templates.get`, `send.*`, `history.list`) and the shared crate's `wechat_dkf` encoder and
//!   `wechat::dkf` readers. Nothing here touches SQL.

pub mod cli;
mod http;
mod page;

use crate::params::{self, Call, McsSetParams};
use crate::service::Shared;
use crate::{info, warn};
use quiver_shared::proto::{self, ErrorBody, ErrorCode, Request};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// The port the page is served on unless the user chose another (the URL pasted in the MP
/// admin is the same for every agent of the account, so the port is fixed).
pub const DEFAULT_PORT: u16 = 47321;
/// The settings row (JSON `{"enabled", "port", "key"}`).
const SETTING: &str = "mcs";

/// The persisted settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct Settings {
    enabled: bool,
    port: u16,
    key: Option<String>,
}

impl Default for Settings {
    fn default() -> Self {
        Settings {
            enabled: false,
            port: DEFAULT_PORT,
            key: None,
        }
    }
}

/// 16 bytes from the OS's random source.
fn random_bytes() -> std::io::Result<[u8; 16]> {
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut b))?;
    Ok(b)
}

/// A new page key: 128 bits as 32 lowercase hex digits.
fn new_key() -> std::io::Result<String> {
    Ok(random_bytes()?.iter().map(|b| format!("{b:02x}")).collect())
}

/// A fresh `head.random`: 9 decimal digits, no leading zero (the client discards a `PutMsg`
/// whose `random` repeats an earlier one).
pub(crate) fn fresh_random() -> std::io::Result<String> {
    let b = random_bytes()?;
    let n = u32::from_le_bytes([b[0], b[1], b[2], b[3]]) % 900_000_000 + 100_000_000;
    Ok(n.to_string())
}

/// The page's URL for `port` and `key`.
pub fn url(port: u16, key: &str) -> String {
    format!("http://127.0.0.1:{port}/mcs/?k={key}")
}

/// The current customer, from the client's last `OnUserChange`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Customer {
    pub openid: String,
    pub channel_type: Option<String>,
    pub since_ms: u64,
}

/// The last `OnMapMsgClick`, as text (never evaluated).
#[derive(Debug, Clone, Serialize)]
pub(crate) struct MapClick {
    pub latitude: Option<String>,
    pub longitude: Option<String>,
    pub location: Option<String>,
    pub scale: Option<String>,
    pub at_ms: u64,
}

/// Something for the agent (`mcs.notice`): the page shows it and calls `Notice("")`.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Notice {
    pub seq: u64,
    pub text: String,
    pub at_ms: u64,
}

/// A `PutMsg` string the page was given: a retry of that send gets the same string.
#[derive(Debug, Clone)]
pub(crate) struct SendMemo {
    pub random: String,
    pub put: String,
    pub library: String,
    pub template_id: String,
    pub revision: u32,
    pub part: u32,
    pub kind: String,
    pub fallback_used: bool,
    pub customer: Option<String>,
    /// How many history rows (attempts) this send has had.
    pub attempts: u32,
}

/// Sends remembered for retries (the oldest are forgotten first).
const MAX_MEMOS: usize = 500;

/// What the page's server and the controller share.
#[derive(Debug, Default)]
pub(crate) struct PageState {
    pub customer: Option<Customer>,
    pub last_map: Option<MapClick>,
    pub notice: Option<Notice>,
    /// By send id (each attempt's id), in the order given.
    pub sends: Vec<(i64, Arc<Mutex<SendMemo>>)>,
}

impl PageState {
    pub fn remember(&mut self, send_id: i64, memo: Arc<Mutex<SendMemo>>) {
        self.sends.push((send_id, memo));
        if self.sends.len() > MAX_MEMOS {
            let extra = self.sends.len() - MAX_MEMOS;
            self.sends.drain(..extra);
        }
    }

    pub fn memo(&self, send_id: i64) -> Option<Arc<Mutex<SendMemo>>> {
        self.sends
            .iter()
            .rev()
            .find(|(id, _)| *id == send_id)
            .map(|(_, m)| m.clone())
    }
}

/// A server that runs.
#[derive(Debug)]
struct Running {
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Running {
    fn stop(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        info!("多客服 page: stopped serving on {}", self.addr);
    }
}

#[derive(Debug, Default)]
struct Inner {
    running: Option<Running>,
    /// Why an enabled page is not served (the port is taken, ...).
    error: Option<String>,
}

/// The 多客服 page's controller (one per daemon).
pub struct Mcs {
    shared: Arc<Shared>,
    inner: Mutex<Inner>,
    /// The key the running server accepts (changed without a restart).
    key: Arc<RwLock<Option<String>>>,
    page: Arc<Mutex<PageState>>,
}

impl std::fmt::Debug for Mcs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Mcs").finish_non_exhaustive()
    }
}

fn internal(msg: impl Into<String>) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, msg)
}

impl Mcs {
    pub fn new(shared: Arc<Shared>) -> Mcs {
        Mcs {
            shared,
            inner: Mutex::new(Inner::default()),
            key: Arc::new(RwLock::new(None)),
            page: Arc::new(Mutex::new(PageState::default())),
        }
    }

    /// Whether `req` is one of the `mcs.*` methods served here.
    pub fn handles(req: &Request) -> bool {
        req.method.starts_with("mcs.")
    }

    fn load(&self) -> Result<Settings, ErrorBody> {
        let stored = self
            .shared
            .run(|svc, _| svc.setting(SETTING))
            .ok_or_else(|| internal("the service failed"))?
            .map_err(|e| ErrorBody::from(crate::service::ServiceError::from(e)))?;
        Ok(match stored {
            None => Settings::default(),
            Some(text) => serde_json::from_str(&text).unwrap_or_else(|e| {
                warn!("setting {SETTING} is unreadable ({e}); the 多客服 page stays off");
                Settings::default()
            }),
        })
    }

    fn save(&self, s: &Settings) -> Result<(), ErrorBody> {
        let text = serde_json::to_string(s).map_err(|e| internal(e.to_string()))?;
        self.shared
            .run(move |svc, _| svc.set_setting(SETTING, &text))
            .ok_or_else(|| internal("the service failed"))?
            .map_err(|e| ErrorBody::from(crate::service::ServiceError::from(e)))
    }

    /// At the daemon's start: serves the page if it is enabled. A port that cannot be bound is
    /// logged and reported by `mcs.status` and `quiver doctor`; the daemon serves on.
    pub fn start_if_enabled(&self) {
        match self.load() {
            Ok(s) if s.enabled => {
                let mut inner = self.lock();
                self.apply(&mut inner, &s);
            }
            Ok(_) => {}
            Err(e) => warn!("多客服 page: cannot read its settings: {}", e.message),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Makes the server match `s`: stopped when disabled, serving on `s.port` when enabled.
    fn apply(&self, inner: &mut Inner, s: &Settings) {
        if let Ok(mut k) = self.key.write() {
            k.clone_from(&s.key);
        }
        let wanted = s.enabled.then_some(s.port);
        let running = inner.running.as_ref().map(|r| r.addr.port());
        if wanted == running {
            return;
        }
        if let Some(r) = inner.running.take() {
            r.stop();
        }
        inner.error = None;
        if let Some(port) = wanted {
            match self.start(port) {
                Ok(r) => {
                    info!("多客服 page: serving on http://{}/mcs/", r.addr);
                    inner.running = Some(r);
                }
                Err(e) => {
                    warn!("多客服 page: {e}");
                    inner.error = Some(e);
                }
            }
        }
    }

    fn start(&self, port: u16) -> Result<Running, String> {
        let want = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
        let listener = TcpListener::bind(want).map_err(|e| {
            format!(
                "cannot listen on {want}: {e} (quiver mcs enable --port N chooses another port)"
            )
        })?;
        let addr = listener
            .local_addr()
            .map_err(|e| format!("cannot read the address of {want}: {e}"))?;
        // never on anything but loopback
        if !addr.ip().is_loopback() {
            return Err(format!(
                "refusing to serve on {addr}: not a loopback address"
            ));
        }
        listener
            .set_nonblocking(true)
            .map_err(|e| format!("{addr}: {e}"))?;
        let app = Arc::new(http::App {
            shared: self.shared.clone(),
            port: addr.port(),
            key: self.key.clone(),
            page: self.page.clone(),
            rate: Mutex::new(http::Rate::default()),
        });
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("quiver-mcs".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        crate::error!("多客服 page: cannot start its runtime: {e}");
                        return;
                    }
                };
                rt.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            crate::error!("多客服 page: {e}");
                            return;
                        }
                    };
                    let served = axum::serve(listener, http::router(app));
                    tokio::select! {
                        r = served => {
                            if let Err(e) = r {
                                crate::error!("多客服 page: the server stopped: {e}");
                            }
                        }
                        _ = rx => {}
                    }
                });
                // connections still open are dropped with the runtime
                rt.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| format!("cannot start the page's thread: {e}"))?;
        Ok(Running {
            addr,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// Stops the server (the daemon is shutting down).
    pub fn shutdown(&self) {
        if let Some(r) = self.lock().running.take() {
            r.stop();
        }
    }

    fn status(&self, inner: &Inner, s: &Settings) -> Value {
        let customer = self.page.lock().ok().and_then(|p| p.customer.clone());
        json!({
            "enabled": s.enabled,
            "port": s.port,
            "listen": inner.running.as_ref().map(|r| r.addr.to_string()),
            "url": s.key.as_deref().map(|k| url(s.port, k)),
            "key": s.key,
            "error": inner.error,
            "customer": customer,
        })
    }

    /// Serves `mcs.status`, `mcs.set` and `mcs.notice` (a whole reply frame value).
    pub fn serve(&self, req: &Request) -> Value {
        match self.call(req) {
            Ok(v) => proto::reply(&req.id, v),
            Err(e) => proto::error_reply(&req.id, &e),
        }
    }

    fn call(&self, req: &Request) -> Result<Value, ErrorBody> {
        match params::parse(req)? {
            Call::McsStatus => {
                let s = self.load()?;
                let inner = self.lock();
                Ok(self.status(&inner, &s))
            }
            Call::McsSet(p) => self.set(p),
            Call::McsNotice(text) => {
                let now = self.shared.now();
                let mut page = self
                    .page
                    .lock()
                    .map_err(|_| internal("page state poisoned"))?;
                let seq = page.notice.as_ref().map_or(0, |n| n.seq) + 1;
                page.notice = Some(Notice {
                    seq,
                    text,
                    at_ms: now,
                });
                Ok(json!({ "seq": seq }))
            }
            _ => Err(internal(format!("{} is not an mcs method", req.method))),
        }
    }

    fn set(&self, p: McsSetParams) -> Result<Value, ErrorBody> {
        // one change at a time: settings and server stay in step
        let mut inner = self.lock();
        let mut s = self.load()?;
        if let Some(e) = p.enabled {
            s.enabled = e;
        }
        if let Some(port) = p.port {
            s.port = port;
        }
        if let Some(k) = p.key {
            s.key = Some(k);
        }
        if s.key.is_none() {
            s.key = Some(new_key().map_err(|e| internal(format!("reading /dev/urandom: {e}")))?);
        }
        self.save(&s)?;
        self.apply(&mut inner, &s);
        Ok(self.status(&inner, &s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn randoms_are_nine_digits_and_keys_128_bits_of_hex() {
        let mut seen = std::collections::HashSet::new();
        for _ in 0..200 {
            let r = fresh_random().unwrap();
            assert_eq!(r.len(), 9, "{r}");
            assert!(
                r.bytes().all(|b| b.is_ascii_digit()) && !r.starts_with('0'),
                "{r}"
            );
            seen.insert(r);
        }
        assert!(seen.len() > 190, "randoms repeat: {}", seen.len());
        let k = new_key().unwrap();
        assert_eq!(k.len(), 32);
        assert!(k
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        assert!(params::mcs_key_ok(&k));
        assert_ne!(k, new_key().unwrap());
        assert_eq!(url(47321, &k), format!("http://127.0.0.1:47321/mcs/?k={k}"));
    }

    #[test]
    fn settings_default_to_off_on_47321() {
        let s = Settings::default();
        assert!(!s.enabled);
        assert_eq!(s.port, DEFAULT_PORT);
        assert_eq!(DEFAULT_PORT, 47321);
        let text = serde_json::to_string(&s).unwrap();
        assert_eq!(serde_json::from_str::<Settings>(&text).unwrap(), s);
    }

    #[test]
    fn the_page_remembers_its_latest_sends_only() {
        let mut p = PageState::default();
        let memo = |r: &str| {
            Arc::new(Mutex::new(SendMemo {
                random: r.into(),
                put: String::new(),
                library: "local".into(),
                template_id: "t".into(),
                revision: 1,
                part: 0,
                kind: "text".into(),
                fallback_used: false,
                customer: None,
                attempts: 1,
            }))
        };
        for id in 0..(MAX_MEMOS as i64 + 10) {
            p.remember(id, memo(&id.to_string()));
        }
        assert_eq!(p.sends.len(), MAX_MEMOS);
        assert!(p.memo(5).is_none(), "the oldest are forgotten");
        let last = MAX_MEMOS as i64 + 9;
        assert_eq!(
            p.memo(last).unwrap().lock().unwrap().random,
            last.to_string()
        );
    }
}
