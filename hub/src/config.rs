//! `hub.json`: what `quiver hub init` decided and `quiver hub serve` reads (mode 0600: it names
//! the database, whose URL may carry a password).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubConfig {
    /// A UUID made by `init`; the same for every hub process over one database.
    pub hub_id: String,
    /// `sqlite:PATH` (relative to the hub directory) or `postgres://...`.
    pub database: String,
    /// The address `serve` listens on (`--listen` overrides it).
    pub listen: String,
    /// Where members reach the hub (`https://HOST:PORT`, or `http://127.0.0.1:PORT`): the
    /// address in invites.
    pub public_url: String,
    /// The certificate and key (PEM, relative to the hub directory); absent: plain HTTP, which
    /// `serve` accepts only on a loopback address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsFiles>,
    /// Seconds between the SSE heartbeats (also how often a stream re-checks its token).
    #[serde(default = "default_heartbeat")]
    pub heartbeat_secs: u64,
    /// A second, plain-HTTP listener serving only WeChat's pushes (`/wx/mp/*`, `/wx/health`),
    /// for a TLS proxy in front (`serve --wx-listen` overrides it). docs/wechat.md.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wx_listen: Option<String>,
    /// How long a call to WeChat's API may take before its outcome is unknown (ms; default
    /// 10000; uploads and downloads get three times as long).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wx_api_timeout_ms: Option<u64>,
}

fn default_heartbeat() -> u64 {
    15
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsFiles {
    pub cert: String,
    pub key: String,
    /// Invites carry the certificate's SHA-256 for daemons to pin (a self-signed certificate).
    /// `false` for a certificate from a CA the members' systems trust.
    #[serde(default = "yes")]
    pub pin: bool,
}

fn yes() -> bool {
    true
}

pub const FILE: &str = "hub.json";

/// Which database a URL names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    Sqlite(PathBuf),
    Postgres(String),
}

impl HubConfig {
    pub fn load(dir: &Path) -> Result<HubConfig, String> {
        let p = dir.join(FILE);
        let text = std::fs::read_to_string(&p).map_err(|e| {
            format!(
                "cannot read {}: {e} (make a hub with `quiver hub init --dir {}`)",
                p.display(),
                dir.display()
            )
        })?;
        serde_json::from_str(&text).map_err(|e| format!("{} is not a hub config: {e}", p.display()))
    }

    /// Writes `hub.json` with mode 0600 (atomically: a temporary file renamed over it).
    pub fn save(&self, dir: &Path) -> Result<(), String> {
        let text = serde_json::to_string_pretty(self).map_err(|e| e.to_string())? + "\n";
        write_private(&dir.join(FILE), text.as_bytes())
    }

    pub fn database(&self, dir: &Path) -> Result<Database, String> {
        parse_database(&self.database, dir)
    }

    pub fn listen_addr(&self) -> Result<SocketAddr, String> {
        self.listen
            .parse()
            .map_err(|e| format!("listen address {:?}: {e}", self.listen))
    }
}

pub fn parse_database(url: &str, dir: &Path) -> Result<Database, String> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Database::Postgres(url.to_string()))
    } else if let Some(p) = url.strip_prefix("sqlite:") {
        let p = p.strip_prefix("//").unwrap_or(p);
        if p.is_empty() {
            return Err("sqlite: needs a file name (sqlite:hub.db)".into());
        }
        Ok(Database::Sqlite(dir.join(p)))
    } else {
        Err(format!(
            "database {url:?}: use sqlite:FILE or postgres://USER@HOST:PORT/DB"
        ))
    }
}

/// Writes a file only its owner may read (0600), atomically.
pub fn write_private(path: &Path, data: &[u8]) -> Result<(), String> {
    use std::io::Write;
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    let mut o = std::fs::OpenOptions::new();
    o.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        o.mode(0o600);
    }
    let mut f = o
        .open(&tmp)
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    f.write_all(data)
        .and_then(|()| f.sync_all())
        .map_err(|e| format!("cannot write {}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, path).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_urls() {
        let d = Path::new("/h");
        assert_eq!(
            parse_database("sqlite:hub.db", d),
            Ok(Database::Sqlite("/h/hub.db".into()))
        );
        assert_eq!(
            parse_database("sqlite:///abs/hub.db", d),
            Ok(Database::Sqlite("/abs/hub.db".into()))
        );
        assert!(matches!(
            parse_database("postgres://q@127.0.0.1:5/x", d),
            Ok(Database::Postgres(_))
        ));
        assert!(parse_database("mysql://x", d).is_err());
        assert!(parse_database("sqlite:", d).is_err());
    }
}
