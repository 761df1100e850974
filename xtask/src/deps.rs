//! `cargo xtask deps`: everything the build and the tests need, installed once.
//!
//! On Debian as root the missing system packages are installed with apt (one `apt-get update`,
//! one `apt-get install -y`). Elsewhere the command prints what to install and fails.
//! Then wasm-bindgen-cli at exactly the Cargo.lock version (cached under
//! `target/tools/wasm-bindgen-<version>/`) and the e2e suite's npm packages (`npm ci`, skipped
//! while `node_modules` matches `package-lock.json`). A second run installs nothing.

use std::path::Path;
use std::process::Command;

use crate::extension::{wasm_route, DEBIAN_WASM_PACKAGES, WASM_OPT};
use crate::util::{
    self, fnv1a64, output, run, tools_root, wasm_bindgen_bin, wasm_bindgen_version, which, Result,
};

pub const CHROMIUM: &str = "/usr/lib/chromium/chromium";
pub const FIREFOX: &str = "/usr/lib/firefox-esr/firefox-esr";
/// `node --test --test-concurrency` needs 20.10; web-ext 10 needs Node 20.
const MIN_NODE: (u32, u32) = (20, 10);

/// One missing piece: the Debian packages that provide it and what to tell everyone else.
struct Missing {
    what: &'static str,
    apt: &'static [&'static str],
    by_hand: String,
    /// Nice to have: installed on Debian as root, only mentioned elsewhere.
    optional: bool,
}

pub fn deps() -> Result {
    let root = util::repo_root();
    system_packages()?;
    check_node()?;
    wasm_bindgen(&root)?;
    npm_packages(&root)?;
    Ok(())
}

fn missing_system_pieces() -> Vec<Missing> {
    let mut missing = Vec::new();
    if !Path::new(CHROMIUM).exists() {
        missing.push(Missing {
            what: "Chromium",
            apt: &["chromium"],
            by_hand: format!(
                "Chromium with its binary at {CHROMIUM} (Debian/Ubuntu package `chromium`)"
            ),
            optional: false,
        });
    }
    if !Path::new(FIREFOX).exists() {
        missing.push(Missing {
            what: "Firefox ESR",
            apt: &["firefox-esr"],
            by_hand: format!(
                "Firefox ESR with its binary at {FIREFOX} (Debian package `firefox-esr`)"
            ),
            optional: false,
        });
    }
    if wasm_route().is_none() {
        missing.push(Missing {
            what: "a Rust toolchain that builds wasm32-unknown-unknown",
            apt: DEBIAN_WASM_PACKAGES,
            by_hand: format!(
                "a wasm32 Rust target: `rustup target add wasm32-unknown-unknown`, or on Debian `apt-get install {}`",
                DEBIAN_WASM_PACKAGES.join(" ")
            ),
            optional: false,
        });
    }
    if which(WASM_OPT).is_none() {
        missing.push(Missing {
            what: "binaryen's wasm-opt (shrinks the wasm core)",
            apt: &["binaryen"],
            by_hand:
                "binaryen's `wasm-opt` on PATH (Debian/Ubuntu `binaryen`, Homebrew `binaryen`, \
                      Fedora `binaryen`, or a release from the binaryen project)"
                    .into(),
            optional: false,
        });
    }
    if which("cc").is_none() {
        missing.push(Missing {
            what: "a C compiler (rusqlite builds SQLite)",
            apt: &["gcc", "libc6-dev"],
            by_hand: "a C compiler as `cc` (gcc or clang)".into(),
            optional: false,
        });
    }
    if crate::pg::bin_dir().is_none() {
        missing.push(Missing {
            what: "PostgreSQL (the hub's tests run a private server)",
            apt: &["postgresql"],
            by_hand: "PostgreSQL 13 or newer with its server programs initdb and pg_ctl \
                      (Debian/Ubuntu `postgresql`, Homebrew `postgresql@15`, Fedora `postgresql-server`)"
                .into(),
            optional: false,
        });
    }
    if which("sqlite3").is_none() {
        missing.push(Missing {
            what: "the sqlite3 CLI (the e2e suite reads the daemon's history with it)",
            apt: &["sqlite3"],
            by_hand: "the `sqlite3` command-line shell".into(),
            optional: false,
        });
    }
    if which("node").is_none() {
        missing.push(Missing {
            what: "Node.js and npm",
            apt: &["nodejs", "npm"],
            by_hand: format!("Node.js >= {}.{} with npm", MIN_NODE.0, MIN_NODE.1),
            optional: false,
        });
    } else if which("npm").is_none() {
        missing.push(Missing {
            what: "npm",
            apt: &["npm"],
            by_hand: "npm (it comes with Node.js)".into(),
            optional: false,
        });
    }
    // The e2e suite checks the UI in Simplified Chinese in both browsers; Firefox shows only
    // the languages it has a language pack for.
    let zh_langpack =
        "/usr/lib/firefox-esr/browser/extensions/langpack-zh-CN@firefox-esr.mozilla.org.xpi";
    // Checked whether or not Firefox is there yet: on a fresh machine Firefox and its language
    // pack go in with the same `apt-get install`.
    if !Path::new(zh_langpack).exists() {
        missing.push(Missing {
            what: "Firefox's Simplified Chinese language pack (the e2e suite tests the zh-CN UI)",
            apt: &["firefox-esr-l10n-zh-cn"],
            by_hand: "Firefox ESR's zh-CN language pack (Debian: firefox-esr-l10n-zh-cn)".into(),
            optional: false,
        });
    }
    // The seeded library has Chinese titles; without a CJK font headless screenshots show boxes.
    let has_cjk_font =
        output(Command::new("fc-list").arg(":lang=zh")).is_some_and(|out| !out.trim().is_empty());
    if !has_cjk_font {
        missing.push(Missing {
            what: "a CJK font (for legible screenshots)",
            apt: &["fonts-wqy-microhei"],
            by_hand: "a CJK font (e.g. fonts-noto-cjk), only so that screenshots show Chinese text"
                .into(),
            optional: true,
        });
    }
    missing
}

fn system_packages() -> Result {
    let missing = missing_system_pieces();
    if missing.is_empty() {
        eprintln!("system packages: all present");
        return Ok(());
    }
    let debian = Path::new("/etc/debian_version").exists();
    let root = output(Command::new("id").arg("-u")).is_some_and(|s| s.trim() == "0");
    if !(debian && root) {
        let (optional, missing): (Vec<_>, Vec<_>) = missing.into_iter().partition(|m| m.optional);
        for m in &optional {
            eprintln!("note: consider installing {}", m.by_hand);
        }
        if missing.is_empty() {
            return Ok(());
        }
        let mut msg = String::from("missing, please install:\n");
        for m in &missing {
            msg.push_str(&format!("  - {}\n", m.by_hand));
        }
        if debian {
            let pkgs: Vec<&str> = missing.iter().flat_map(|m| m.apt.iter().copied()).collect();
            msg.push_str(&format!(
                "on this Debian system, as root: apt-get update && apt-get install -y {}\n",
                pkgs.join(" ")
            ));
        }
        return Err(msg);
    }
    let mut pkgs: Vec<&str> = missing.iter().flat_map(|m| m.apt.iter().copied()).collect();
    pkgs.dedup();
    eprintln!(
        "installing: {}",
        missing
            .iter()
            .map(|m| m.what)
            .collect::<Vec<_>>()
            .join(", ")
    );
    let apt = |args: &[&str]| {
        let mut cmd = Command::new("apt-get");
        cmd.args(args).env("DEBIAN_FRONTEND", "noninteractive");
        run(&mut cmd)
    };
    apt(&["update"])?;
    let mut args = vec!["install", "-y"];
    args.extend(&pkgs);
    apt(&args)?;
    let still: Vec<_> = missing_system_pieces()
        .into_iter()
        .filter(|m| !m.optional)
        .map(|m| m.by_hand)
        .collect();
    if !still.is_empty() {
        return Err(format!(
            "still missing after apt-get install: {}",
            still.join("; ")
        ));
    }
    Ok(())
}

fn check_node() -> Result {
    let v = output(Command::new("node").arg("--version")).ok_or("`node --version` failed")?;
    let v = v.trim();
    if node_version(v) < MIN_NODE {
        return Err(format!(
            "Node.js {v} is too old: the e2e suite needs >= {}.{} (web-ext 10, `node --test --test-concurrency`). \
             Debian 12's own nodejs is 18; install Node 20 or newer (e.g. NodeSource's nodejs package) by hand.",
            MIN_NODE.0, MIN_NODE.1
        ));
    }
    eprintln!("node {v}: ok");
    Ok(())
}

/// Parses `node --version` ("v20.10.1") into (major, minor).
fn node_version(v: &str) -> (u32, u32) {
    let mut parts = v
        .trim()
        .trim_start_matches('v')
        .split('.')
        .map(|p| p.parse::<u32>().unwrap_or(0));
    (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
}

fn wasm_bindgen(root: &Path) -> Result {
    let version = wasm_bindgen_version(root)?;
    let bin = wasm_bindgen_bin(root)?;
    let installed = output(Command::new(&bin).arg("--version"))
        .is_some_and(|out| out.split_whitespace().nth(1) == Some(version.as_str()));
    if installed {
        eprintln!("wasm-bindgen {version}: ok ({})", bin.display());
        return Ok(());
    }
    let install_root = tools_root(&version);
    let install = |locked: bool| {
        let mut cmd = util::cargo();
        cmd.args(["install", "wasm-bindgen-cli", "--version", &version]);
        if locked {
            cmd.arg("--locked");
        }
        cmd.arg("--root").arg(&install_root);
        run(&mut cmd)
    };
    eprintln!("installing wasm-bindgen-cli {version} (a few minutes, once)");
    if let Err(e) = install(true) {
        // The lockfile published with wasm-bindgen-cli can name dependency versions that a
        // registry mirror does not have yet (seen here: webpki-roots 1.0.11 for 0.2.130).
        // The CLI's own version is still exact; only its dependencies float.
        eprintln!(
            "{e}\nretrying without --locked (dependencies resolved from the registry as it is)"
        );
        install(false)?;
    }
    Ok(())
}

/// `npm ci` in tests/e2e, unless node_modules was installed from this exact package-lock.json.
fn npm_packages(root: &Path) -> Result {
    let dir = root.join("tests").join("e2e");
    let lock = std::fs::read(dir.join("package-lock.json"))
        .map_err(|e| format!("reading tests/e2e/package-lock.json: {e}"))?;
    let node = output(Command::new("node").arg("--version")).unwrap_or_default();
    let want = format!("{:016x} node {}\n", fnv1a64(&lock), node.trim());
    let stamp = dir.join("node_modules").join(".quiver-npm-stamp");
    if std::fs::read_to_string(&stamp).is_ok_and(|have| have == want) {
        eprintln!("npm packages: up to date");
        return Ok(());
    }
    let mut cmd = Command::new("npm");
    cmd.args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&dir)
        .env("NO_UPDATE_NOTIFIER", "1");
    run(&mut cmd)?;
    std::fs::write(&stamp, want).map_err(|e| format!("writing {}: {e}", stamp.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_node_versions() {
        assert_eq!(node_version("v20.20.2\n"), (20, 20));
        assert!(node_version("v18.19.0") < MIN_NODE);
        assert!(node_version("v20.10.0") >= MIN_NODE);
        assert!(node_version("v22.1.0") >= MIN_NODE);
    }
}
