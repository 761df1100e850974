//! `quiver install` / `quiver uninstall`: the native-messaging host manifest
//! `dev.quiver.host.json`, which tells a browser how to start `quiver` for our extension.
//!
//! The manifest's `path` is the `quiver` executable itself: started by a browser it sees the
//! browser's arguments (`chrome-extension://<id>/` from Chromium, `<manifest>.json <add-on id>`
//! from Firefox) and runs as `quiver native-host` (see `cli.rs`), so no wrapper script is needed.
//!
//! Where manifests go is one table, [`TABLE`]: per browser, system (Linux, macOS, Windows) and
//! scope (per user, system-wide), a directory or a registry key. [`locations`] turns a row into
//! concrete places and is a pure function, so every row is unit-tested on any machine. Brave and
//! Vivaldi on macOS and Windows also read Chrome's location: their rows list it too
//! (shared/anchors.md §2).

use serde_json::{json, Value};
use std::fmt;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

pub const HOST_NAME: &str = "dev.quiver.host";
pub const CHROMIUM_EXTENSION_ID: &str = "lohhppipbmnliinhpikegpolikiblpfg";
pub const GECKO_ID: &str = "quiver@quiver.dev";

/// The origin a Chromium-family manifest must allow (with its trailing slash).
pub fn chromium_origin() -> String {
    format!("chrome-extension://{CHROMIUM_EXTENSION_ID}/")
}

/// A browser we write a manifest for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Browser {
    Chrome,
    Chromium,
    Edge,
    Brave,
    Vivaldi,
    Firefox,
}

/// Manifest dialects: Chromium-family browsers list origins, Firefox lists add-on ids.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    Chromium,
    Firefox,
}

impl Browser {
    pub const ALL: &'static [Browser] = &[
        Browser::Chrome,
        Browser::Chromium,
        Browser::Edge,
        Browser::Brave,
        Browser::Vivaldi,
        Browser::Firefox,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Browser::Chrome => "chrome",
            Browser::Chromium => "chromium",
            Browser::Edge => "edge",
            Browser::Brave => "brave",
            Browser::Vivaldi => "vivaldi",
            Browser::Firefox => "firefox",
        }
    }

    pub fn parse(s: &str) -> Result<Browser, String> {
        let s = s.to_ascii_lowercase();
        let alias = match s.as_str() {
            "google-chrome" => "chrome",
            "msedge" | "microsoft-edge" => "edge",
            "chromium-browser" => "chromium",
            other => other,
        };
        Browser::ALL
            .iter()
            .copied()
            .find(|b| b.name() == alias)
            .ok_or_else(|| {
                let names: Vec<&str> = Browser::ALL.iter().map(|b| b.name()).collect();
                format!("unknown browser {s:?} (known: {}, all)", names.join(", "))
            })
    }

    pub fn family(self) -> Family {
        match self {
            Browser::Firefox => Family::Firefox,
            _ => Family::Chromium,
        }
    }

    /// The message the browser's console shows when the manifest is missing.
    pub fn not_found_error(self) -> String {
        match self.family() {
            Family::Chromium => "Specified native messaging host not found.".into(),
            Family::Firefox => format!("No such native application {HOST_NAME}"),
        }
    }
}

/// Operating systems in the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Os {
    Linux,
    MacOs,
    Windows,
}

impl Os {
    /// The system this build runs on, if the table knows it.
    pub fn current() -> Option<Os> {
        if cfg!(target_os = "linux") {
            Some(Os::Linux)
        } else if cfg!(target_os = "macos") {
            Some(Os::MacOs)
        } else if cfg!(windows) {
            Some(Os::Windows)
        } else {
            None
        }
    }
}

/// Per user (no privileges) or for every user of the machine (root / administrator).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    User,
    System,
}

/// Where a row points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Place {
    /// A directory (`~/` = the home directory) that holds `dev.quiver.host.json`.
    Dir(&'static str),
    /// A registry key (under HKCU for a user, HKLM for the system) whose default value is the
    /// path of the manifest; `\dev.quiver.host` is appended.
    Registry(&'static str),
}

/// One row of the table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Row {
    pub browser: Browser,
    pub os: Os,
    pub scope: Scope,
    pub place: Place,
    /// Set when the place is another browser's (Brave and Vivaldi reading Chrome's): written
    /// for `browser`, but removed only when that other browser's manifest is removed.
    pub shared_with: Option<Browser>,
}

const fn row(browser: Browser, os: Os, scope: Scope, place: Place) -> Row {
    Row {
        browser,
        os,
        scope,
        place,
        shared_with: None,
    }
}

const fn chrome_too(browser: Browser, os: Os, scope: Scope, place: Place) -> Row {
    Row {
        browser,
        os,
        scope,
        place,
        shared_with: Some(Browser::Chrome),
    }
}

use Browser::{Brave, Chrome, Chromium, Edge, Firefox, Vivaldi};
use Os::{Linux, MacOs, Windows};
use Place::{Dir, Registry};
use Scope::{System, User};

/// Every place a browser reads host manifests from (shared/anchors.md §2, the browsers' docs).
pub const TABLE: &[Row] = &[
    // Chrome
    row(
        Chrome,
        Linux,
        User,
        Dir("~/.config/google-chrome/NativeMessagingHosts"),
    ),
    row(
        Chrome,
        Linux,
        System,
        Dir("/etc/opt/chrome/native-messaging-hosts"),
    ),
    row(
        Chrome,
        MacOs,
        User,
        Dir("~/Library/Application Support/Google/Chrome/NativeMessagingHosts"),
    ),
    row(
        Chrome,
        MacOs,
        System,
        Dir("/Library/Google/Chrome/NativeMessagingHosts"),
    ),
    row(
        Chrome,
        Windows,
        User,
        Registry(r"Software\Google\Chrome\NativeMessagingHosts"),
    ),
    row(
        Chrome,
        Windows,
        System,
        Registry(r"Software\Google\Chrome\NativeMessagingHosts"),
    ),
    // Chromium
    row(
        Chromium,
        Linux,
        User,
        Dir("~/.config/chromium/NativeMessagingHosts"),
    ),
    row(
        Chromium,
        Linux,
        System,
        Dir("/etc/chromium/native-messaging-hosts"),
    ),
    row(
        Chromium,
        MacOs,
        User,
        Dir("~/Library/Application Support/Chromium/NativeMessagingHosts"),
    ),
    row(
        Chromium,
        MacOs,
        System,
        Dir("/Library/Application Support/Chromium/NativeMessagingHosts"),
    ),
    row(
        Chromium,
        Windows,
        User,
        Registry(r"Software\Chromium\NativeMessagingHosts"),
    ),
    row(
        Chromium,
        Windows,
        System,
        Registry(r"Software\Chromium\NativeMessagingHosts"),
    ),
    // Edge (system-wide on macOS and HKLM on Windows when policy blocks per-user hosts)
    row(
        Edge,
        Linux,
        User,
        Dir("~/.config/microsoft-edge/NativeMessagingHosts"),
    ),
    row(
        Edge,
        Linux,
        System,
        Dir("/etc/opt/edge/native-messaging-hosts"),
    ),
    row(
        Edge,
        MacOs,
        User,
        Dir("~/Library/Application Support/Microsoft Edge/NativeMessagingHosts"),
    ),
    row(
        Edge,
        MacOs,
        System,
        Dir("/Library/Microsoft/Edge/NativeMessagingHosts"),
    ),
    row(
        Edge,
        Windows,
        User,
        Registry(r"Software\Microsoft\Edge\NativeMessagingHosts"),
    ),
    row(
        Edge,
        Windows,
        System,
        Registry(r"Software\Microsoft\Edge\NativeMessagingHosts"),
    ),
    // Brave: its own place, and Chrome's on macOS and Windows
    row(
        Brave,
        Linux,
        User,
        Dir("~/.config/BraveSoftware/Brave-Browser/NativeMessagingHosts"),
    ),
    row(
        Brave,
        Linux,
        System,
        Dir("/etc/opt/brave/native-messaging-hosts"),
    ),
    row(
        Brave,
        MacOs,
        User,
        Dir("~/Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts"),
    ),
    chrome_too(
        Brave,
        MacOs,
        User,
        Dir("~/Library/Application Support/Google/Chrome/NativeMessagingHosts"),
    ),
    row(
        Brave,
        MacOs,
        System,
        Dir("/Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts"),
    ),
    chrome_too(
        Brave,
        MacOs,
        System,
        Dir("/Library/Google/Chrome/NativeMessagingHosts"),
    ),
    row(
        Brave,
        Windows,
        User,
        Registry(r"Software\BraveSoftware\Brave-Browser\NativeMessagingHosts"),
    ),
    chrome_too(
        Brave,
        Windows,
        User,
        Registry(r"Software\Google\Chrome\NativeMessagingHosts"),
    ),
    row(
        Brave,
        Windows,
        System,
        Registry(r"Software\BraveSoftware\Brave-Browser\NativeMessagingHosts"),
    ),
    chrome_too(
        Brave,
        Windows,
        System,
        Registry(r"Software\Google\Chrome\NativeMessagingHosts"),
    ),
    // Vivaldi: its own place, and Chrome's on macOS and Windows
    row(
        Vivaldi,
        Linux,
        User,
        Dir("~/.config/vivaldi/NativeMessagingHosts"),
    ),
    row(
        Vivaldi,
        Linux,
        System,
        Dir("/etc/opt/vivaldi/native-messaging-hosts"),
    ),
    row(
        Vivaldi,
        MacOs,
        User,
        Dir("~/Library/Application Support/Vivaldi/NativeMessagingHosts"),
    ),
    chrome_too(
        Vivaldi,
        MacOs,
        User,
        Dir("~/Library/Application Support/Google/Chrome/NativeMessagingHosts"),
    ),
    row(
        Vivaldi,
        MacOs,
        System,
        Dir("/Library/Application Support/Vivaldi/NativeMessagingHosts"),
    ),
    chrome_too(
        Vivaldi,
        MacOs,
        System,
        Dir("/Library/Google/Chrome/NativeMessagingHosts"),
    ),
    row(
        Vivaldi,
        Windows,
        User,
        Registry(r"Software\Vivaldi\NativeMessagingHosts"),
    ),
    chrome_too(
        Vivaldi,
        Windows,
        User,
        Registry(r"Software\Google\Chrome\NativeMessagingHosts"),
    ),
    row(
        Vivaldi,
        Windows,
        System,
        Registry(r"Software\Vivaldi\NativeMessagingHosts"),
    ),
    chrome_too(
        Vivaldi,
        Windows,
        System,
        Registry(r"Software\Google\Chrome\NativeMessagingHosts"),
    ),
    // Firefox: `~/.mozilla` still, even after its move to XDG directories; 64-bit Fedora-style
    // systems read /usr/lib64 (doctor looks there too)
    row(
        Firefox,
        Linux,
        User,
        Dir("~/.mozilla/native-messaging-hosts"),
    ),
    row(
        Firefox,
        Linux,
        System,
        Dir("/usr/lib/mozilla/native-messaging-hosts"),
    ),
    row(
        Firefox,
        MacOs,
        User,
        Dir("~/Library/Application Support/Mozilla/NativeMessagingHosts"),
    ),
    row(
        Firefox,
        MacOs,
        System,
        Dir("/Library/Application Support/Mozilla/NativeMessagingHosts"),
    ),
    row(
        Firefox,
        Windows,
        User,
        Registry(r"Software\Mozilla\NativeMessagingHosts"),
    ),
    row(
        Firefox,
        Windows,
        System,
        Registry(r"Software\Mozilla\NativeMessagingHosts"),
    ),
];

/// Where each browser keeps its profiles: `--browser all` installs for the browsers whose
/// directory exists (per user).
pub const PROFILE_DIRS: &[(Browser, Os, &str)] = &[
    (Chrome, Linux, "~/.config/google-chrome"),
    (Chromium, Linux, "~/.config/chromium"),
    (Edge, Linux, "~/.config/microsoft-edge"),
    (Brave, Linux, "~/.config/BraveSoftware/Brave-Browser"),
    (Vivaldi, Linux, "~/.config/vivaldi"),
    (Firefox, Linux, "~/.mozilla"),
    (Chrome, MacOs, "~/Library/Application Support/Google/Chrome"),
    (Chromium, MacOs, "~/Library/Application Support/Chromium"),
    (Edge, MacOs, "~/Library/Application Support/Microsoft Edge"),
    (
        Brave,
        MacOs,
        "~/Library/Application Support/BraveSoftware/Brave-Browser",
    ),
    (Vivaldi, MacOs, "~/Library/Application Support/Vivaldi"),
    (Firefox, MacOs, "~/Library/Application Support/Firefox"),
    (Chrome, Windows, r"~\AppData\Local\Google\Chrome\User Data"),
    (Chromium, Windows, r"~\AppData\Local\Chromium\User Data"),
    (Edge, Windows, r"~\AppData\Local\Microsoft\Edge\User Data"),
    (
        Brave,
        Windows,
        r"~\AppData\Local\BraveSoftware\Brave-Browser\User Data",
    ),
    (Vivaldi, Windows, r"~\AppData\Local\Vivaldi\User Data"),
    (Firefox, Windows, r"~\AppData\Roaming\Mozilla\Firefox"),
];

/// A concrete place for a manifest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    /// The manifest file itself.
    File {
        path: PathBuf,
        shared_with: Option<Browser>,
    },
    /// A registry key whose default value must be `manifest` (a file written next to nothing
    /// else: one per family, `%LOCALAPPDATA%\Quiver\NativeMessagingHosts\<family>\` for a
    /// user, `%ProgramData%\Quiver\...` for the system).
    Registry {
        /// `HKCU\...\dev.quiver.host` or `HKLM\...\dev.quiver.host`
        key: String,
        manifest: String,
        shared_with: Option<Browser>,
    },
}

impl Location {
    pub fn shared_with(&self) -> Option<Browser> {
        match self {
            Location::File { shared_with, .. } | Location::Registry { shared_with, .. } => {
                *shared_with
            }
        }
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Location::File { path, .. } => write!(f, "{}", path.display()),
            Location::Registry { key, manifest, .. } => write!(f, "{key} = {manifest}"),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstallError(pub String);

impl fmt::Display for InstallError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

fn manifest_name() -> String {
    format!("{HOST_NAME}.json")
}

fn expand_home(dir: &str, home: Option<&Path>) -> Result<PathBuf, InstallError> {
    match dir.strip_prefix("~/") {
        Some(rest) => {
            let home = home.filter(|h| h.is_absolute()).ok_or_else(|| {
                InstallError(
                    "HOME is not set to an absolute path; cannot find the manifest directory"
                        .into(),
                )
            })?;
            Ok(home.join(rest))
        }
        None => Ok(PathBuf::from(dir)),
    }
}

/// Where `browser` on `os` reads the manifest for `scope`: files (Linux, macOS) or registry keys
/// with the manifest file they name (Windows; `home` is `%USERPROFILE%` there). Pure.
pub fn locations(
    browser: Browser,
    os: Os,
    scope: Scope,
    home: Option<&Path>,
) -> Result<Vec<Location>, InstallError> {
    let rows: Vec<&Row> = TABLE
        .iter()
        .filter(|r| r.browser == browser && r.os == os && r.scope == scope)
        .collect();
    if rows.is_empty() {
        return Err(InstallError(format!(
            "no manifest location for {} on {os:?} ({scope:?})",
            browser.name()
        )));
    }
    let family = match browser.family() {
        Family::Chromium => "chromium",
        Family::Firefox => "firefox",
    };
    rows.into_iter()
        .map(|r| match r.place {
            Dir(d) => Ok(Location::File {
                path: expand_home(d, home)?.join(manifest_name()),
                shared_with: r.shared_with,
            }),
            Registry(k) => {
                let (hive, base) = match scope {
                    User => {
                        let home = home.ok_or_else(|| {
                            InstallError("USERPROFILE is not set; cannot place the manifest".into())
                        })?;
                        (
                            "HKCU",
                            format!("{}\\AppData\\Local\\Quiver", home.display()),
                        )
                    }
                    System => ("HKLM", r"C:\ProgramData\Quiver".to_string()),
                };
                Ok(Location::Registry {
                    key: format!("{hive}\\{k}\\{HOST_NAME}"),
                    manifest: format!(
                        "{base}\\NativeMessagingHosts\\{family}\\{}",
                        manifest_name()
                    ),
                    shared_with: r.shared_with,
                })
            }
        })
        .collect()
}

/// The browsers whose profile directory exists under `home` on `os`.
pub fn detect(os: Os, home: &Path, exists: impl Fn(&Path) -> bool) -> Vec<Browser> {
    Browser::ALL
        .iter()
        .copied()
        .filter(|b| {
            PROFILE_DIRS
                .iter()
                .filter(|(pb, po, _)| pb == b && *po == os)
                .any(|(_, _, d)| {
                    let rel = d.trim_start_matches("~/").trim_start_matches("~\\");
                    exists(&home.join(rel))
                })
        })
        .collect()
}

/// What `install`/`uninstall` act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub browser: Browser,
    pub scope: Scope,
    /// Chromium family: the browser's `--user-data-dir`, whose `NativeMessagingHosts/` is read
    /// instead of the per-user default.
    pub user_data_dir: Option<PathBuf>,
}

/// The manifest files of `t` on this system.
pub fn target_files(
    t: &Target,
    os: Option<Os>,
    home: Option<&Path>,
) -> Result<Vec<Location>, InstallError> {
    if let Some(dir) = &t.user_data_dir {
        if t.browser.family() != Family::Chromium {
            return Err(InstallError(format!(
                "--user-data-dir applies to Chromium-family browsers; {} reads manifests from \
                 the home directory whatever the profile",
                t.browser.name()
            )));
        }
        if t.scope == System {
            return Err(InstallError(
                "--user-data-dir and --system do not go together".into(),
            ));
        }
        let dir = absolute(dir)?;
        return Ok(vec![Location::File {
            path: dir.join("NativeMessagingHosts").join(manifest_name()),
            shared_with: None,
        }]);
    }
    let os = os.ok_or_else(|| InstallError("this operating system is not supported".into()))?;
    locations(t.browser, os, t.scope, home)
}

fn absolute(p: &Path) -> Result<PathBuf, InstallError> {
    if p.is_absolute() {
        return Ok(p.to_path_buf());
    }
    let cwd = std::env::current_dir()
        .map_err(|e| InstallError(format!("cannot resolve {}: {e}", p.display())))?;
    Ok(cwd.join(p))
}

/// The manifest for `browser`, starting `exe`.
pub fn manifest(browser: Browser, exe: &Path) -> Value {
    let mut m = json!({
        "name": HOST_NAME,
        "description": "Quiver native host",
        "path": exe.to_string_lossy(),
        "type": "stdio",
    });
    match browser.family() {
        Family::Chromium => m["allowed_origins"] = json!([chromium_origin()]),
        Family::Firefox => m["allowed_extensions"] = json!([GECKO_ID]),
    }
    m
}

pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

fn write_manifest(path: &Path, body: &str, scope: Scope) -> Result<(), InstallError> {
    let dir = path
        .parent()
        .ok_or_else(|| InstallError(format!("{} has no directory", path.display())))?;
    std::fs::create_dir_all(dir).map_err(|e| {
        InstallError(format!(
            "cannot create {}: {e}{}",
            dir.display(),
            hint(scope, &e)
        ))
    })?;
    let tmp = dir.join(format!(".{HOST_NAME}.json.tmp"));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o644)
            .open(&tmp)?;
        f.write_all(body.as_bytes())?;
        f.write_all(b"\n")?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        InstallError(format!(
            "cannot write {}: {e}{}",
            path.display(),
            hint(scope, &e)
        ))
    })
}

fn hint(scope: Scope, e: &std::io::Error) -> &'static str {
    if scope == System && e.kind() == std::io::ErrorKind::PermissionDenied {
        " (a system-wide install needs root: run it with sudo)"
    } else {
        ""
    }
}

/// Writes the manifest of `t` everywhere its browser reads it; returns the files written.
pub fn install(t: &Target) -> Result<Vec<PathBuf>, InstallError> {
    let files = target_files(t, Os::current(), home().as_deref())?;
    let exe = std::env::current_exe()
        .and_then(|p| p.canonicalize())
        .map_err(|e| InstallError(format!("cannot find the quiver executable: {e}")))?;
    let body = serde_json::to_string_pretty(&manifest(t.browser, &exe))
        .map_err(|e| InstallError(e.to_string()))?;
    let mut written = Vec::new();
    for loc in files {
        match loc {
            Location::File { path, .. } => {
                write_manifest(&path, &body, t.scope)?;
                written.push(path);
            }
            Location::Registry { key, .. } => {
                return Err(InstallError(format!(
                    "writing the registry key {key} is not supported by this build"
                )))
            }
        }
    }
    Ok(written)
}

/// Removes the manifest files of `t`; returns each with whether it existed. A file in another
/// browser's place (Chrome's, written for Brave or Vivaldi) is kept unless `shared_too`: that
/// browser may read it too.
pub fn uninstall(t: &Target, shared_too: bool) -> Result<Vec<(PathBuf, bool)>, InstallError> {
    let files = target_files(t, Os::current(), home().as_deref())?;
    let mut out = Vec::new();
    for loc in files {
        if loc.shared_with().is_some() && !shared_too {
            continue;
        }
        if let Location::File { path, .. } = loc {
            match std::fs::remove_file(&path) {
                Ok(()) => out.push((path, true)),
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => out.push((path, false)),
                Err(e) => {
                    return Err(InstallError(format!(
                        "cannot remove {}: {e}{}",
                        path.display(),
                        hint(t.scope, &e)
                    )))
                }
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(b: Browser, os: Os, scope: Scope) -> Vec<String> {
        locations(b, os, scope, Some(Path::new("/home/u")))
            .unwrap()
            .iter()
            .map(|l| l.to_string())
            .collect()
    }

    const M: &str = "dev.quiver.host.json";

    #[test]
    fn linux_rows() {
        let cases: &[(Browser, &str, &str)] = &[
            (
                Chrome,
                "/home/u/.config/google-chrome/NativeMessagingHosts",
                "/etc/opt/chrome/native-messaging-hosts",
            ),
            (
                Chromium,
                "/home/u/.config/chromium/NativeMessagingHosts",
                "/etc/chromium/native-messaging-hosts",
            ),
            (
                Edge,
                "/home/u/.config/microsoft-edge/NativeMessagingHosts",
                "/etc/opt/edge/native-messaging-hosts",
            ),
            (
                Brave,
                "/home/u/.config/BraveSoftware/Brave-Browser/NativeMessagingHosts",
                "/etc/opt/brave/native-messaging-hosts",
            ),
            (
                Vivaldi,
                "/home/u/.config/vivaldi/NativeMessagingHosts",
                "/etc/opt/vivaldi/native-messaging-hosts",
            ),
            (
                Firefox,
                "/home/u/.mozilla/native-messaging-hosts",
                "/usr/lib/mozilla/native-messaging-hosts",
            ),
        ];
        for (b, user, system) in cases {
            assert_eq!(files(*b, Linux, User), vec![format!("{user}/{M}")], "{b:?}");
            assert_eq!(
                files(*b, Linux, System),
                vec![format!("{system}/{M}")],
                "{b:?}"
            );
        }
    }

    #[test]
    fn macos_rows_and_chrome_for_brave_and_vivaldi() {
        let sup = "/home/u/Library/Application Support";
        assert_eq!(
            files(Chrome, MacOs, User),
            vec![format!("{sup}/Google/Chrome/NativeMessagingHosts/{M}")]
        );
        assert_eq!(
            files(Chrome, MacOs, System),
            vec![format!("/Library/Google/Chrome/NativeMessagingHosts/{M}")]
        );
        assert_eq!(
            files(Chromium, MacOs, User),
            vec![format!("{sup}/Chromium/NativeMessagingHosts/{M}")]
        );
        assert_eq!(
            files(Chromium, MacOs, System),
            vec![format!(
                "/Library/Application Support/Chromium/NativeMessagingHosts/{M}"
            )]
        );
        assert_eq!(
            files(Edge, MacOs, User),
            vec![format!("{sup}/Microsoft Edge/NativeMessagingHosts/{M}")]
        );
        assert_eq!(
            files(Edge, MacOs, System),
            vec![format!("/Library/Microsoft/Edge/NativeMessagingHosts/{M}")]
        );
        assert_eq!(
            files(Brave, MacOs, User),
            vec![
                format!("{sup}/BraveSoftware/Brave-Browser/NativeMessagingHosts/{M}"),
                format!("{sup}/Google/Chrome/NativeMessagingHosts/{M}"),
            ]
        );
        assert_eq!(
            files(Brave, MacOs, System),
            vec![
                format!("/Library/Application Support/BraveSoftware/Brave-Browser/NativeMessagingHosts/{M}"),
                format!("/Library/Google/Chrome/NativeMessagingHosts/{M}"),
            ]
        );
        assert_eq!(
            files(Vivaldi, MacOs, User),
            vec![
                format!("{sup}/Vivaldi/NativeMessagingHosts/{M}"),
                format!("{sup}/Google/Chrome/NativeMessagingHosts/{M}"),
            ]
        );
        assert_eq!(
            files(Vivaldi, MacOs, System),
            vec![
                format!("/Library/Application Support/Vivaldi/NativeMessagingHosts/{M}"),
                format!("/Library/Google/Chrome/NativeMessagingHosts/{M}"),
            ]
        );
        assert_eq!(
            files(Firefox, MacOs, User),
            vec![format!("{sup}/Mozilla/NativeMessagingHosts/{M}")]
        );
        assert_eq!(
            files(Firefox, MacOs, System),
            vec![format!(
                "/Library/Application Support/Mozilla/NativeMessagingHosts/{M}"
            )]
        );
        // the Chrome place is marked as Chrome's
        let l = locations(Brave, MacOs, User, Some(Path::new("/h"))).unwrap();
        assert_eq!(
            (l[0].shared_with(), l[1].shared_with()),
            (None, Some(Chrome))
        );
    }

    #[test]
    fn windows_registry_keys() {
        let user = Some(Path::new(r"C:\Users\u"));
        let keys = |b, s| -> Vec<String> {
            locations(b, Windows, s, user)
                .unwrap()
                .iter()
                .map(|l| match l {
                    Location::Registry { key, .. } => key.clone(),
                    other => panic!("{other:?}"),
                })
                .collect()
        };
        let n = HOST_NAME;
        assert_eq!(
            keys(Chrome, User),
            vec![format!(
                r"HKCU\Software\Google\Chrome\NativeMessagingHosts\{n}"
            )]
        );
        assert_eq!(
            keys(Chrome, System),
            vec![format!(
                r"HKLM\Software\Google\Chrome\NativeMessagingHosts\{n}"
            )]
        );
        assert_eq!(
            keys(Chromium, User),
            vec![format!(r"HKCU\Software\Chromium\NativeMessagingHosts\{n}")]
        );
        assert_eq!(
            keys(Edge, User),
            vec![format!(
                r"HKCU\Software\Microsoft\Edge\NativeMessagingHosts\{n}"
            )]
        );
        assert_eq!(
            keys(Edge, System),
            vec![format!(
                r"HKLM\Software\Microsoft\Edge\NativeMessagingHosts\{n}"
            )]
        );
        assert_eq!(
            keys(Brave, User),
            vec![
                format!(r"HKCU\Software\BraveSoftware\Brave-Browser\NativeMessagingHosts\{n}"),
                format!(r"HKCU\Software\Google\Chrome\NativeMessagingHosts\{n}"),
            ]
        );
        assert_eq!(
            keys(Vivaldi, System),
            vec![
                format!(r"HKLM\Software\Vivaldi\NativeMessagingHosts\{n}"),
                format!(r"HKLM\Software\Google\Chrome\NativeMessagingHosts\{n}"),
            ]
        );
        assert_eq!(
            keys(Firefox, User),
            vec![format!(r"HKCU\Software\Mozilla\NativeMessagingHosts\{n}")]
        );
        assert_eq!(
            keys(Firefox, System),
            vec![format!(r"HKLM\Software\Mozilla\NativeMessagingHosts\{n}")]
        );
        // the value: a manifest per family
        match &locations(Firefox, Windows, User, user).unwrap()[0] {
            Location::Registry { manifest, .. } => assert_eq!(
                manifest,
                r"C:\Users\u\AppData\Local\Quiver\NativeMessagingHosts\firefox\dev.quiver.host.json"
            ),
            other => panic!("{other:?}"),
        }
        match &locations(Edge, Windows, System, None).unwrap()[0] {
            Location::Registry { manifest, .. } => assert_eq!(
                manifest,
                r"C:\ProgramData\Quiver\NativeMessagingHosts\chromium\dev.quiver.host.json"
            ),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_browser_has_every_os_and_scope() {
        for b in Browser::ALL {
            for os in [Linux, MacOs, Windows] {
                for scope in [User, System] {
                    let l = locations(*b, os, scope, Some(Path::new("/h"))).unwrap();
                    assert!(!l.is_empty(), "{b:?} {os:?} {scope:?}");
                }
                assert!(
                    PROFILE_DIRS.iter().any(|(pb, po, _)| pb == b && *po == os),
                    "{b:?} {os:?} has no profile dir to detect it by"
                );
            }
        }
    }

    #[test]
    fn detection_by_profile_dir() {
        let home = Path::new("/home/u");
        let got = detect(Linux, home, |p| {
            p == Path::new("/home/u/.config/BraveSoftware/Brave-Browser")
                || p == Path::new("/home/u/.mozilla")
        });
        assert_eq!(got, vec![Brave, Firefox]);
        let got = detect(MacOs, home, |p| {
            p == Path::new("/home/u/Library/Application Support/Microsoft Edge")
        });
        assert_eq!(got, vec![Edge]);
        assert!(detect(Linux, home, |_| false).is_empty());
    }

    #[test]
    fn user_data_dir_is_for_chromium_family_per_user_only() {
        let mut t = Target {
            browser: Chrome,
            scope: User,
            user_data_dir: Some("/tmp/profile".into()),
        };
        assert_eq!(
            target_files(&t, Some(Linux), None).unwrap(),
            vec![Location::File {
                path: PathBuf::from("/tmp/profile/NativeMessagingHosts/dev.quiver.host.json"),
                shared_with: None
            }]
        );
        t.scope = System;
        assert!(target_files(&t, Some(Linux), None)
            .unwrap_err()
            .0
            .contains("--system"));
        t.scope = User;
        t.browser = Firefox;
        let e = target_files(&t, Some(Linux), None).unwrap_err();
        assert!(e.0.contains("--user-data-dir"), "{e}");
    }

    #[test]
    fn missing_home_is_an_error() {
        let e = locations(Firefox, Linux, User, None).unwrap_err();
        assert!(e.0.contains("HOME"), "{e}");
        assert!(locations(Firefox, Linux, System, None).is_ok());
        let t = Target {
            browser: Firefox,
            scope: User,
            user_data_dir: None,
        };
        assert!(target_files(&t, None, Some(Path::new("/h"))).is_err());
    }

    #[test]
    fn manifests_per_family() {
        let exe = Path::new("/opt/quiver/quiver");
        let c = manifest(Chromium, exe);
        assert_eq!(
            c,
            json!({
                "name": "dev.quiver.host",
                "description": "Quiver native host",
                "path": "/opt/quiver/quiver",
                "type": "stdio",
                "allowed_origins": ["chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/"],
            })
        );
        for b in [Chrome, Edge, Brave, Vivaldi] {
            assert_eq!(manifest(b, exe), c, "{b:?}");
        }
        let f = manifest(Firefox, exe);
        assert_eq!(f["allowed_extensions"], json!(["quiver@quiver.dev"]));
        assert!(f.get("allowed_origins").is_none());
    }

    #[test]
    fn parses_browser_names() {
        assert_eq!(Browser::parse("chrome").unwrap(), Chrome);
        assert_eq!(Browser::parse("Google-Chrome").unwrap(), Chrome);
        assert_eq!(Browser::parse("msedge").unwrap(), Edge);
        assert!(Browser::parse("lynx")
            .unwrap_err()
            .contains("known: chrome, chromium, edge, brave, vivaldi, firefox, all"));
    }
}
