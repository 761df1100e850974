//! The fake WeChat (`quiver-fakewx`, see `fakewx/README.md`) as a process for the tests.
//!
//! [`FakeWx::start`] runs the binary (`$QUIVER_FAKEWX_BIN`, else built once with
//! `cargo build -p quiver-fakewx`), reads the address from its one stdout line, and kills it on
//! drop. Its control API is plain JSON over HTTP: [`FakeWx::post`], [`FakeWx::get`],
//! [`FakeWx::calls`].

use serde_json::{json, Value};
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;

static BIN: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// The `quiver-fakewx` binary, built at most once per test process.
pub fn fakewx_bin() -> &'static Path {
    match BIN.get_or_init(find_or_build) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    }
}

fn find_or_build() -> Result<PathBuf, String> {
    crate::built_bin("QUIVER_FAKEWX_BIN", "quiver-fakewx", "quiver-fakewx")
}

/// A running fake WeChat.
#[derive(Debug)]
pub struct FakeWx {
    /// `http://127.0.0.1:PORT`: the API base URL to give the gateway, and the control API.
    pub base: String,
    child: Child,
    agent: ureq::Agent,
}

impl FakeWx {
    pub fn start() -> FakeWx {
        let mut child = Command::new(fakewx_bin())
            .args(["--listen", "127.0.0.1:0"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start quiver-fakewx");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("read the fake's address");
        let base = line
            .trim()
            .strip_prefix("listening ")
            .unwrap_or_else(|| panic!("quiver-fakewx said {line:?}"))
            .to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(std::time::Duration::from_secs(60)))
            .build()
            .new_agent();
        FakeWx { base, child, agent }
    }

    fn read(r: Result<ureq::http::Response<ureq::Body>, ureq::Error>, what: &str) -> Value {
        let mut r = r.unwrap_or_else(|e| panic!("fake {what}: {e}"));
        let status = r.status().as_u16();
        let text = r.body_mut().read_to_string().unwrap_or_default();
        let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(status < 300, "fake {what}: {status} {v}");
        v
    }

    /// `POST {base}{path}` with a JSON body; panics on a refusal (a test mistake).
    pub fn post(&self, path: &str, body: Value) -> Value {
        let r = self
            .agent
            .post(format!("{}{path}", self.base))
            .content_type("application/json")
            .send(body.to_string());
        Self::read(r, path)
    }

    pub fn get(&self, path: &str) -> Value {
        Self::read(self.agent.get(format!("{}{path}", self.base)).call(), path)
    }

    /// Registers an app whose pushes go to `push_url`.
    pub fn add_app(&self, app: Value) {
        self.post("/__fake/apps", app);
    }

    /// A customer's push; returns the pusher's result (`verdict`, `attempts`, ...).
    pub fn push(&self, push: Value) -> Value {
        self.post("/__fake/push", push)
    }

    /// The recorded API calls to `path`.
    pub fn calls(&self, path: &str) -> Vec<Value> {
        match self.get(&format!("/__fake/calls?path={path}")) {
            Value::Array(a) => a,
            other => panic!("calls: {other}"),
        }
    }

    /// The bodies of the recorded `message/custom/send` calls that WeChat delivered: accepted
    /// (errcode 0), or acted on with the answer dropped (an injected `drop`).
    pub fn sent_bodies(&self) -> Vec<Value> {
        self.calls("/cgi-bin/message/custom/send")
            .into_iter()
            .filter(|c| {
                serde_json::from_str::<Value>(c["response"].as_str().unwrap_or(""))
                    .is_ok_and(|r| r["errcode"] == json!(0))
                    || c["status"].is_null()
            })
            .map(|c| serde_json::from_str(c["body"].as_str().unwrap_or("")).unwrap_or(Value::Null))
            .collect()
    }

    pub fn stats(&self) -> Value {
        self.get("/__fake/stats")
    }
}

impl Drop for FakeWx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
