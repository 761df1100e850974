//! `cargo xtask build-extension`: the wasm core and the WebExtension folder `target/extension/`.
//!
//! Two ways to build for wasm32-unknown-unknown (toolchain.md §1):
//! - rustup with the `wasm32-unknown-unknown` target installed: a plain cargo build;
//! - Debian's `rustc-web cargo-web rust-web-src lld` (Rust with the std source and `wasm-ld`):
//!   `/usr/bin/cargo` with `-Zbuild-std`, for machines where rustup cannot download the target.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::util::{self, output, run, strip_cargo_env, wasm_bindgen_bin, which, Result};

pub const WASM_TARGET: &str = "wasm32-unknown-unknown";
pub const DEBIAN_WASM_PACKAGES: &[&str] = &["rustc-web", "cargo-web", "rust-web-src", "lld"];
const DEBIAN_CARGO: &str = "/usr/bin/cargo";
const DEBIAN_RUST_SRC: &str = "/usr/lib/rustlib/src/rust";

#[derive(Debug)]
pub enum WasmRoute {
    /// The active rustup toolchain has the wasm32 target.
    Rustup,
    /// Debian's Rust: `/usr/bin/cargo`, the std source, and this `wasm-ld` as linker.
    Debian { linker: PathBuf },
}

/// Which way of building wasm this machine has, if any.
pub fn wasm_route() -> Option<WasmRoute> {
    if rustup_has_wasm_target() {
        return Some(WasmRoute::Rustup);
    }
    if Path::new(DEBIAN_CARGO).exists() && Path::new(DEBIAN_RUST_SRC).is_dir() {
        if let Some(linker) = find_wasm_ld() {
            return Some(WasmRoute::Debian { linker });
        }
    }
    None
}

fn rustup_has_wasm_target() -> bool {
    if which("rustup").is_some() {
        return output(Command::new("rustup").args(["target", "list", "--installed"]))
            .is_some_and(|out| out.lines().any(|l| l.trim() == WASM_TARGET));
    }
    // No rustup: a rustc whose sysroot has the target's std (distribution packages, Nix...).
    output(Command::new("rustc").args(["--print", "target-libdir", "--target", WASM_TARGET]))
        .map(|dir| PathBuf::from(dir.trim()))
        .and_then(|dir| std::fs::read_dir(dir).ok())
        .is_some_and(|entries| {
            entries
                .flatten()
                .any(|e| e.file_name().to_string_lossy().starts_with("libstd-"))
        })
}

/// `/usr/bin/wasm-ld-14` first (what Debian 12's lld provides), else any `wasm-ld*`.
fn find_wasm_ld() -> Option<PathBuf> {
    let preferred = PathBuf::from("/usr/bin/wasm-ld-14");
    if preferred.exists() {
        return Some(preferred);
    }
    let mut candidates: Vec<PathBuf> = std::fs::read_dir("/usr/bin")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("wasm-ld"))
        })
        .collect();
    candidates.extend(
        std::fs::read_dir("/usr/lib")
            .into_iter()
            .flatten()
            .flatten()
            .filter(|e| e.file_name().to_string_lossy().starts_with("llvm-"))
            .map(|e| e.path().join("bin").join("wasm-ld"))
            .filter(|p| p.exists()),
    );
    candidates.sort();
    candidates.pop()
}

pub fn build_extension() -> Result {
    let root = util::repo_root();
    let wasm_dir = util::target_dir().join("wasm");
    let route = wasm_route().ok_or_else(|| {
        format!(
            "cannot build for {WASM_TARGET}: install the target with `rustup target add {WASM_TARGET}`, \
             or on Debian `apt-get install {}` (then `cargo xtask deps` does the rest)",
            DEBIAN_WASM_PACKAGES.join(" ")
        )
    })?;
    let wasm = optimize_wasm(&compile_wasm(&route, &root, &wasm_dir)?)?;
    let out = util::target_dir().join("extension");
    // Start from an empty folder so no file removed from extension/webext lingers.
    if out.exists() {
        std::fs::remove_dir_all(&out).map_err(|e| format!("removing {}: {e}", out.display()))?;
    }
    util::copy_dir(&root.join("extension").join("webext"), &out)?;

    let bindgen = wasm_bindgen_bin(&root)?;
    if !bindgen.exists() {
        return Err(format!(
            "{} is missing: run `cargo xtask deps`",
            bindgen.display()
        ));
    }
    run(Command::new(&bindgen)
        .args(["--target", "web", "--out-dir"])
        .arg(out.join("pkg"))
        .args(["--out-name", "quiver_core"])
        .arg(&wasm))?;
    move_core_types(&out)?;
    let core = out.join("pkg").join("quiver_core_bg.wasm");
    let size = std::fs::metadata(&core).map(|m| m.len()).unwrap_or(0);
    eprintln!(
        "extension ready: {} (wasm core {} KB)",
        out.display(),
        size / 1024
    );
    Ok(())
}

/// Moves the wasm core's TypeScript declarations (`pkg/*.d.ts`, written by wasm-bindgen) out of
/// the extension into `target/extension-types/pkg/`, where `tsc` (extension/tsconfig.json) finds
/// them: the extension's JS is type-checked against the core it is built with, and ships
/// without them.
fn move_core_types(out: &Path) -> Result {
    let types = util::target_dir().join("extension-types").join("pkg");
    std::fs::create_dir_all(&types).map_err(|e| format!("creating {}: {e}", types.display()))?;
    let pkg = out.join("pkg");
    let entries = std::fs::read_dir(&pkg).map_err(|e| format!("reading {}: {e}", pkg.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        if path.to_string_lossy().ends_with(".d.ts") {
            let to = types.join(path.file_name().unwrap_or_default());
            std::fs::rename(&path, &to)
                .map_err(|e| format!("moving {} to {}: {e}", path.display(), to.display()))?;
        }
    }
    Ok(())
}

/// The cargo profile of the wasm core (Cargo.toml: opt-level "s", fat LTO, one codegen unit,
/// panic = "abort").
const WASM_PROFILE: &str = "wasm";

/// Compiles `quiver-extension` for wasm32 with the [`WASM_PROFILE`] profile; returns the `.wasm`.
///
/// On the Debian route the standard library is rebuilt for the core too (`-Zbuild-std`), with
/// `panic = "immediate-abort"` (a panic traps at once: no panic message formatting is linked)
/// and std's `optimize_for_size` feature (its smaller variants of sorting and formatting).
fn compile_wasm(route: &WasmRoute, root: &Path, wasm_dir: &Path) -> Result<PathBuf> {
    eprintln!("wasm route: {route:?}");
    let mut cmd = match route {
        WasmRoute::Rustup => {
            let mut cmd = util::cargo();
            cmd.args(["build", "--profile", WASM_PROFILE, "--target", WASM_TARGET]);
            cmd
        }
        WasmRoute::Debian { linker } => {
            let mut cmd = Command::new(DEBIAN_CARGO);
            // /usr/bin/cargo must find /usr/bin/rustc, not the rustup proxy that the outer
            // `cargo xtask` put first on PATH and into RUSTC/RUSTUP_TOOLCHAIN.
            strip_cargo_env(&mut cmd);
            let path = std::env::var("PATH").unwrap_or_default();
            cmd.env("PATH", format!("/usr/bin:{path}"))
                .env("RUSTC_BOOTSTRAP", "1")
                .env("CARGO_TARGET_WASM32_UNKNOWN_UNKNOWN_LINKER", linker)
                .args([
                    "build",
                    "--profile",
                    WASM_PROFILE,
                    "--target",
                    WASM_TARGET,
                    "-Zbuild-std=std,panic_abort",
                    "-Zbuild-std-features=optimize_for_size",
                    "-Zpanic-immediate-abort",
                    "--config",
                    &format!("profile.{WASM_PROFILE}.panic=\"immediate-abort\""),
                ]);
            cmd
        }
    };
    cmd.args(["-p", "quiver-extension", "--target-dir"])
        .arg(wasm_dir)
        .current_dir(root);
    run(&mut cmd)?;
    Ok(wasm_dir
        .join(WASM_TARGET)
        .join(WASM_PROFILE)
        .join("quiver_extension.wasm"))
}

/// The wasm features rustc emits for wasm32-unknown-unknown; binaryen is told rather than left
/// to guess.
const WASM_FEATURES: &[&str] = &[
    "--enable-bulk-memory",
    "--enable-mutable-globals",
    "--enable-nontrapping-float-to-int",
    "--enable-sign-ext",
    "--enable-reference-types",
    "--enable-multivalue",
];

/// `wasm-opt -O3` (binaryen, installed by `cargo xtask deps`) on rustc's output; returns the
/// optimized file, which wasm-bindgen then reads. It drops the name section too.
///
/// Before wasm-bindgen, not after: Debian 12's binaryen (108) rewrites wasm-bindgen's output
/// with the export `__wbindgen_externrefs` pointing at the wrong table, and the core fails to
/// load ("function-typed object must be null"). `-O3` rather than `-Oz`: measured on this core,
/// `-O3` came out as small gzipped (242.8 KB against 243.3 KB) and no slower per keystroke
/// (docs/benchmarks.md).
pub fn optimize_wasm(wasm: &Path) -> Result<PathBuf> {
    let wasm_opt = which(WASM_OPT).ok_or_else(|| {
        format!(
            "`{WASM_OPT}` is missing: run `cargo xtask deps` (Debian package `binaryen`; \
             elsewhere install binaryen from your package manager)"
        )
    })?;
    let out = wasm.with_extension("opt.wasm");
    run(Command::new(wasm_opt)
        .arg("-O3")
        .args(WASM_FEATURES)
        .arg(wasm)
        .arg("-o")
        .arg(&out))?;
    let size = |p: &Path| std::fs::metadata(p).map(|m| m.len() / 1024).unwrap_or(0);
    eprintln!("wasm-opt -O3: {} KB -> {} KB", size(wasm), size(&out));
    Ok(out)
}

/// binaryen's optimizer.
pub const WASM_OPT: &str = "wasm-opt";

/// The development build, `target/extension-dev/`: the production folder `target/extension/`
/// (built first by [`build_extension`]) plus the overlay in `extension/dev/`:
/// - `build-config.js` replaces the production one (content.js reads it): the demo site rules
///   (assistant pages on localhost, workspaces on 127.0.0.1) and an open shadow root, so the e2e
///   suite reaches the `data-testid` hooks;
/// - `manifest.json` is merged into the manifest (arrays appended, objects merged): host
///   permissions and static content scripts for the demo hosts `127.0.0.1` and `localhost`.
///
/// Used by `cargo xtask run` and the e2e suite; the production folder never holds the demo hosts.
pub fn build_dev_extension() -> Result {
    let root = util::repo_root();
    let prod = util::target_dir().join("extension");
    let dev = dev_extension_dir();
    let overlay = root.join("extension").join("dev");
    if !prod.join("manifest.json").exists() {
        return Err(format!(
            "{} is missing: build the production extension first",
            prod.display()
        ));
    }
    if dev.exists() {
        std::fs::remove_dir_all(&dev).map_err(|e| format!("removing {}: {e}", dev.display()))?;
    }
    util::copy_dir(&prod, &dev)?;
    let entries =
        std::fs::read_dir(&overlay).map_err(|e| format!("reading {}: {e}", overlay.display()))?;
    for entry in entries {
        let path = entry.map_err(|e| e.to_string())?.path();
        let name = path.file_name().unwrap_or_default().to_owned();
        if name == "manifest.json" {
            continue;
        }
        std::fs::copy(&path, dev.join(&name))
            .map_err(|e| format!("copying {}: {e}", path.display()))?;
    }
    let read_json = |p: &Path| -> Result<serde_json::Value> {
        let text =
            std::fs::read_to_string(p).map_err(|e| format!("reading {}: {e}", p.display()))?;
        serde_json::from_str(&text).map_err(|e| format!("{}: {e}", p.display()))
    };
    let mut manifest = read_json(&dev.join("manifest.json"))?;
    merge_json(&mut manifest, read_json(&overlay.join("manifest.json"))?);
    let text = serde_json::to_string_pretty(&manifest).map_err(|e| e.to_string())? + "\n";
    std::fs::write(dev.join("manifest.json"), text)
        .map_err(|e| format!("writing {}: {e}", dev.display()))?;
    eprintln!("development extension ready: {}", dev.display());
    Ok(())
}

/// Where [`build_dev_extension`] puts the development build.
pub fn dev_extension_dir() -> PathBuf {
    util::target_dir().join("extension-dev")
}

/// Merges `overlay` into `base`: objects key by key, arrays appended, anything else replaced.
fn merge_json(base: &mut serde_json::Value, overlay: serde_json::Value) {
    use serde_json::Value;
    match (base, overlay) {
        (Value::Object(b), Value::Object(o)) => {
            for (k, v) in o {
                match b.get_mut(&k) {
                    Some(slot) => merge_json(slot, v),
                    None => {
                        b.insert(k, v);
                    }
                }
            }
        }
        (Value::Array(b), Value::Array(o)) => b.extend(o),
        (slot, v) => *slot = v,
    }
}

#[cfg(test)]
mod tests {
    use super::merge_json;
    use serde_json::json;

    #[test]
    fn dev_overlay_appends_arrays_and_merges_objects() {
        let mut base = json!({"a": [1], "o": {"x": 1}, "s": "p"});
        merge_json(
            &mut base,
            json!({"a": [2], "o": {"y": 2}, "s": "d", "n": [3]}),
        );
        assert_eq!(
            base,
            json!({"a": [1, 2], "o": {"x": 1, "y": 2}, "s": "d", "n": [3]})
        );
    }

    #[test]
    fn production_manifest_has_no_demo_hosts_and_dev_overlay_adds_them() {
        let root = crate::util::repo_root();
        let read = |p: &str| -> serde_json::Value {
            serde_json::from_str(&std::fs::read_to_string(root.join(p)).unwrap()).unwrap()
        };
        let prod = read("extension/webext/manifest.json");
        let text = prod.to_string();
        assert!(
            !text.contains("127.0.0.1") && !text.contains("localhost"),
            "{text}"
        );
        let mut dev = prod.clone();
        merge_json(&mut dev, read("extension/dev/manifest.json"));
        assert!(dev["host_permissions"]
            .to_string()
            .contains("http://127.0.0.1/*"));
        assert_eq!(
            dev["content_scripts"][0]["js"],
            json!(["build-config.js", "content.js"])
        );
        let prod_config =
            std::fs::read_to_string(root.join("extension/webext/build-config.js")).unwrap();
        assert!(
            !prod_config.contains("localhost") && prod_config.contains("openShadowRoot: false")
        );
    }
}
