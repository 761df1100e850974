//! The command line: help, install/uninstall, and `quiver` started by a browser.

use quiver_tests::{quiver_bin, Host, Sandbox};
use serde_json::{json, Value};

#[test]
fn every_command_has_help() {
    let sb = Sandbox::new("help");
    for args in [
        &["--help"][..],
        &["daemon", "--help"][..],
        &["native-host", "--help"][..],
        &["install", "--help"][..],
        &["uninstall", "--help"][..],
        &["doctor", "--help"][..],
        &["templates", "--help"][..],
        &["templates", "import", "--help"][..],
        &["templates", "search", "--help"][..],
        &["history", "--help"][..],
    ] {
        let out = sb.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(out.stdout.contains("Usage: quiver"), "{args:?}: {out:?}");
    }
    let out = sb.run(&["frobnicate"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("frobnicate"), "{out:?}");
    let out = sb.run(&["daemon", "--bogus"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}

fn read_json(p: &std::path::Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(p).unwrap()).unwrap()
}

#[test]
fn install_writes_manifests_that_start_quiver_as_the_host() {
    let sb = Sandbox::new("install");
    let exe = quiver_bin().canonicalize().unwrap();

    let profile = sb.root.join("chromium-profile");
    let out = sb.run(&[
        "install",
        "--browser",
        "chromium",
        "--user-data-dir",
        profile.to_str().unwrap(),
    ]);
    assert!(out.status.success(), "{out:?}");
    let chromium = profile.join("NativeMessagingHosts/dev.quiver.host.json");
    assert!(
        out.stdout.contains(&chromium.display().to_string()),
        "{out:?}"
    );
    assert_eq!(
        read_json(&chromium),
        json!({
            "name": "dev.quiver.host",
            "description": "Quiver native host",
            "path": exe.to_str().unwrap(),
            "type": "stdio",
            "allowed_origins": ["chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/"],
        })
    );

    let out = sb.run(&["install", "--browser", "chrome"]);
    assert!(out.status.success(), "{out:?}");
    assert!(sb
        .home
        .join(".config/google-chrome/NativeMessagingHosts/dev.quiver.host.json")
        .is_file());

    let out = sb.run(&["install", "--browser", "firefox"]);
    assert!(out.status.success(), "{out:?}");
    let firefox = sb
        .home
        .join(".mozilla/native-messaging-hosts/dev.quiver.host.json");
    let m = read_json(&firefox);
    assert_eq!(m["allowed_extensions"], json!(["quiver@quiver.dev"]));
    assert!(m.get("allowed_origins").is_none());

    // what Firefox does: start `path` with the manifest path and the add-on id
    let path = m["path"].as_str().unwrap();
    let mut cmd = sb.command(&[]);
    cmd.args([firefox.to_str().unwrap(), "quiver@quiver.dev"]);
    cmd.current_dir(std::path::Path::new(path).parent().unwrap());
    let mut h = Host::spawn(cmd);
    assert_eq!(h.ok("hello", json!({"protocol": 1}))["protocol"], 1);
    h.finish();

    let out = sb.run(&[
        "install",
        "--browser",
        "firefox",
        "--user-data-dir",
        "/tmp/x",
    ]);
    assert!(
        !out.status.success() && out.stderr.contains("--user-data-dir"),
        "{out:?}"
    );

    let out = sb.run(&["uninstall", "--browser", "firefox"]);
    assert!(
        out.status.success() && out.stdout.contains("removed"),
        "{out:?}"
    );
    assert!(!firefox.exists());
    let out = sb.run(&["uninstall", "--browser", "firefox"]);
    assert!(
        out.status.success() && out.stdout.contains("nothing to remove"),
        "{out:?}"
    );
}

fn doctor(sb: &Sandbox, args: &[&str]) -> (Option<i32>, Value, String) {
    let mut a = vec!["doctor", "--json"];
    a.extend_from_slice(args);
    let out = sb.run(&a);
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("doctor --json is not JSON ({e}): {out:?}"));
    (out.status.code(), v, out.stderr)
}

fn broken_link(report: &Value) -> (String, String, String) {
    let b = &report["browsers"][0];
    let at = b["broken_at"].as_str().unwrap_or("").to_string();
    let check = b["checks"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["ok"] == false)
        .cloned()
        .unwrap_or_default();
    (
        at,
        format!("{} / fix: {}", check["detail"], check["fix"]),
        check["browser_error"].as_str().unwrap_or("").to_string(),
    )
}

#[test]
fn doctor_follows_the_chain_and_names_the_first_broken_link() {
    let sb = Sandbox::new("doctor");
    // nothing installed
    let (code, r, _) = doctor(&sb, &["--browser", "chromium"]);
    assert_eq!(code, Some(1));
    let (at, detail, says) = broken_link(&r);
    assert_eq!(at, "manifest", "{r}");
    assert!(
        detail.contains("quiver install --browser chromium"),
        "{detail}"
    );
    assert_eq!(says, "Specified native messaging host not found.");
    let out = sb.run(&["doctor", "--browser", "firefox"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        out.stdout.contains("firefox: broken at `manifest`")
            && out
                .stdout
                .contains("fix: run `quiver install --browser firefox`")
            && out
                .stdout
                .contains("No such native application dev.quiver.host"),
        "{}",
        out.stdout
    );

    // installed: every link holds, the host answers, the daemon is ours
    assert!(sb
        .run(&["install", "--browser", "chromium"])
        .status
        .success());
    let (code, r, _) = doctor(&sb, &["--browser", "chromium"]);
    assert_eq!(code, Some(0), "{r}");
    let names: Vec<&str> = r["browsers"][0]["checks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["manifest", "json", "name", "type", "path", "allowed", "host"]
    );
    assert!(
        r["daemon"]
            .as_array()
            .unwrap()
            .iter()
            .all(|c| c["ok"] == true),
        "{r}"
    );
    // without --browser: found by its profile directory
    let (code, r, _) = doctor(&sb, &[]);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["browsers"][0]["browser"], "chromium");

    let manifest = sb
        .home
        .join(".config/chromium/NativeMessagingHosts/dev.quiver.host.json");
    let good = read_json(&manifest);
    let break_with = |f: &dyn Fn(&mut Value)| {
        let mut m = good.clone();
        f(&mut m);
        std::fs::write(&manifest, m.to_string()).unwrap();
        let (code, r, _) = doctor(&sb, &["--browser", "chromium"]);
        assert_eq!(code, Some(1), "{r}");
        broken_link(&r)
    };
    let (at, detail, says) = break_with(&|m| {
        m["allowed_origins"] = json!(["chrome-extension://lohhppipbmnliinhpikegpolikiblpfg"])
    });
    assert_eq!(at, "allowed");
    assert!(detail.contains("trailing slash"), "{detail}");
    assert_eq!(
        says,
        "Access to the specified native messaging host is forbidden."
    );
    let (at, _, _) = break_with(&|m| m["name"] = json!("dev.quiver.other"));
    assert_eq!(at, "name");
    let (at, _, _) = break_with(&|m| m["type"] = json!("pipe"));
    assert_eq!(at, "type");
    let (at, detail, _) = break_with(&|m| m["path"] = json!("quiver"));
    assert_eq!(at, "path");
    assert!(detail.contains("not absolute"), "{detail}");
    let not_exec = sb.root.join("not-executable");
    std::fs::write(&not_exec, "").unwrap();
    let (at, detail, says) = break_with(&|m| m["path"] = json!(not_exec.to_str().unwrap()));
    assert_eq!(at, "path");
    assert!(detail.contains("chmod +x"), "{detail}");
    assert_eq!(says, "Failed to start native messaging host.");
    // a wrapper that prints to stdout before starting quiver: the classic broken port
    let wrapper = sb.root.join("wrapper.sh");
    std::fs::write(
        &wrapper,
        format!(
            "#!/bin/sh\necho starting quiver\nexec {} \"$@\"\n",
            quiver_bin().display()
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&wrapper, std::fs::Permissions::from_mode(0o755)).unwrap();
    let (at, detail, _) = break_with(&|m| m["path"] = json!(wrapper.to_str().unwrap()));
    assert_eq!(at, "host");
    assert!(detail.contains("not a frame"), "{detail}");
    std::fs::write(&manifest, "{ not json").unwrap();
    let (code, r, _) = doctor(&sb, &["--browser", "chromium"]);
    assert_eq!(code, Some(1));
    assert_eq!(broken_link(&r).0, "json");

    let out = sb.run(&[
        "doctor",
        "--explain",
        "Access to the specified native messaging host is forbidden.",
    ]);
    assert!(
        out.status.success() && out.stdout.contains("allowed_origins"),
        "{out:?}"
    );
    let out = sb.run(&["doctor", "--explain", "something else entirely"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

#[test]
fn install_all_writes_every_detected_browser() {
    let sb = Sandbox::new("install-all");
    let out = sb.run(&["install", "--browser", "all"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains("no browser found"), "{out:?}");
    std::fs::create_dir_all(sb.home.join(".config/BraveSoftware/Brave-Browser")).unwrap();
    std::fs::create_dir_all(sb.home.join(".config/microsoft-edge")).unwrap();
    std::fs::create_dir_all(sb.home.join(".mozilla")).unwrap();
    let out = sb.run(&["install", "--browser", "all"]);
    assert!(out.status.success(), "{out:?}");
    let written = [
        ".config/microsoft-edge/NativeMessagingHosts/dev.quiver.host.json",
        ".config/BraveSoftware/Brave-Browser/NativeMessagingHosts/dev.quiver.host.json",
        ".mozilla/native-messaging-hosts/dev.quiver.host.json",
    ];
    for f in written {
        assert!(sb.home.join(f).is_file(), "{f}: {out:?}");
    }
    assert_eq!(out.stdout.lines().count(), 3, "{out:?}");
    assert!(!sb.home.join(".config/google-chrome").exists());
    assert_eq!(
        read_json(&sb.home.join(written[1]))["allowed_origins"],
        json!(["chrome-extension://lohhppipbmnliinhpikegpolikiblpfg/"])
    );
    let out = sb.run(&["uninstall", "--browser", "all"]);
    assert!(out.status.success(), "{out:?}");
    for f in written {
        assert!(!sb.home.join(f).exists(), "{f}");
    }
    let out = sb.run(&[
        "install",
        "--browser",
        "edge",
        "--user-data-dir",
        "/tmp/x",
        "--system",
    ]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
}

/// The options page shows the doctor's findings through the daemon's `doctor` method: it runs
/// outside the service lock, so its own host check (a host connecting back to the same daemon)
/// cannot deadlock, and it names the fix.
#[test]
fn doctor_over_the_protocol_names_the_fix_then_passes() {
    let sb = Sandbox::new("doctor-rpc");
    let mut host = sb.host();
    host.ok(
        "hello",
        serde_json::json!({"protocol": 1, "client": "test"}),
    );
    let r = host.ok("doctor", serde_json::json!({"browser": "firefox"}));
    assert_eq!(r["ok"], false, "{r}");
    assert_eq!(r["browsers"][0]["broken_at"], "manifest", "{r}");
    let fix = r["browsers"][0]["checks"][0]["fix"]
        .as_str()
        .unwrap_or_default();
    assert!(fix.contains("quiver install --browser firefox"), "{r}");
    assert!(
        r["daemon"]
            .as_array()
            .is_some_and(|c| c.iter().all(|c| c["ok"] == true)),
        "{r}"
    );

    let out = sb.run(&["install", "--browser", "firefox"]);
    assert!(out.status.success(), "{}", out.stderr);
    let r = host.ok("doctor", serde_json::json!({"browser": "firefox"}));
    assert_eq!(r["ok"], true, "{r}");
    let checks = r["browsers"][0]["checks"].as_array().expect("checks");
    assert!(
        checks
            .iter()
            .any(|c| c["name"] == "host" && c["ok"] == true),
        "{r}"
    );

    let e = host.call("doctor", serde_json::json!({"browser": "netscape"}));
    assert_eq!(e["error"]["code"], "invalid_params", "{e}");
    sb.stop_daemon();
}
