//! The daemon on its own: single instance, stale sockets, socket-dir safety, bad input.

use quiver_tests::{alive, wait_timeout, Sandbox};
use serde_json::json;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::time::Duration;

#[test]
fn stale_socket_is_replaced_and_a_second_daemon_leaves_the_first_alone() {
    let sb = Sandbox::new("stale");
    std::fs::create_dir_all(&sb.run).unwrap();
    std::fs::set_permissions(&sb.run, std::fs::Permissions::from_mode(0o700)).unwrap();
    // a socket file left by a daemon that died: bound, then nobody listening
    drop(std::os::unix::net::UnixListener::bind(sb.socket()).unwrap());
    assert!(sb.socket().exists());

    let mut first = sb.daemon_foreground();
    let mut c = sb.connect();
    assert_eq!(c.ok("hello", json!({"protocol": 1}))["protocol"], 1);
    let pid = sb.daemon_pid().expect("daemon.pid");
    assert_eq!(pid, first.id());
    let mode = std::fs::metadata(sb.socket()).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "socket mode");

    // a second daemon, foreground or not: "already running", exit 0, socket untouched
    for args in [&["daemon", "--foreground"][..], &["daemon"][..]] {
        let out = sb.run(args);
        assert!(out.status.success(), "{args:?}: {out:?}");
        assert!(
            out.stderr
                .contains(&format!("quiver daemon already running (pid {pid})")),
            "{args:?}: {out:?}"
        );
        assert!(out.stdout.is_empty(), "{out:?}");
    }
    assert_eq!(c.ok("hello", json!({"protocol": 1}))["protocol"], 1);
    let mut c2 = sb.connect();
    assert_eq!(c2.ok("hello", json!({"protocol": 1}))["protocol"], 1);

    // --stop: SIGTERM, waits for the exit; socket and pid file removed
    let out = sb.stop_daemon();
    assert!(out.status.success(), "{out:?}");
    let status = wait_timeout(&mut first, Duration::from_secs(5)).expect("daemon exited");
    assert!(status.success(), "{status}");
    assert!(!sb.socket().exists());
    assert!(sb.daemon_pid().is_none());
    let mut stdout = String::new();
    first
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(stdout.is_empty(), "the daemon wrote to stdout: {stdout:?}");
    // and --stop with nothing running is fine
    let out = sb.stop_daemon();
    assert!(
        out.status.success() && out.stderr.contains("not running"),
        "{out:?}"
    );

    // a plain file in the socket's place is stale too
    std::fs::write(sb.socket(), b"junk").unwrap();
    let mut again = sb.daemon_foreground();
    assert_eq!(
        sb.connect().ok("hello", json!({"protocol": 1}))["protocol"],
        1
    );
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut again, Duration::from_secs(5)).is_some());
}

#[test]
fn socket_dir_open_to_others_is_refused() {
    let sb = Sandbox::new("opendir");
    std::fs::create_dir_all(&sb.run).unwrap();
    std::fs::set_permissions(&sb.run, std::fs::Permissions::from_mode(0o755)).unwrap();
    let dir = sb.run.display().to_string();
    for args in [&["daemon", "--foreground"][..], &["daemon"][..]] {
        let out = sb.run(args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        assert!(
            out.stderr.contains(&dir) && out.stderr.contains("0755"),
            "{args:?}: message must name the dir and the mode: {out:?}"
        );
    }
    assert!(!sb.socket().exists());
}

#[test]
fn socket_dir_owned_by_someone_else_is_refused() {
    let sb = Sandbox::new("otheruid");
    std::fs::create_dir_all(&sb.run).unwrap();
    std::fs::set_permissions(&sb.run, std::fs::Permissions::from_mode(0o700)).unwrap();
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata(&sb.run).unwrap().uid() != 0 {
        eprintln!("skipped: changing a directory's owner needs root");
        return;
    }
    std::os::unix::fs::chown(&sb.run, Some(65534), None).unwrap();
    let out = sb.run(&["daemon", "--foreground"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("owned by uid 65534"), "{out:?}");
    std::os::unix::fs::chown(&sb.run, Some(0), None).unwrap();
}

#[test]
fn daemon_answers_every_frame_on_its_socket() {
    let sb = Sandbox::new("sockframes");
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    c.send_body(b"{broken");
    let r = c.recv();
    assert_eq!(r["error"]["code"], "bad_frame", "{r}");
    assert!(r["id"].is_null());
    // oversized: refused, skipped, stream still in step
    let n = 4 * 1024 * 1024 + 1;
    let mut big = (n as u32).to_le_bytes().to_vec();
    big.extend(std::iter::repeat_n(b' ', n));
    c.write_raw(&big);
    let r = c.recv();
    assert_eq!(r["error"]["code"], "frame_too_large", "{r}");
    let r = c.call("history.list", json!({"limit": 0}));
    assert_eq!(r["error"]["code"], "invalid_params", "{r}");
    assert_eq!(c.ok("history.list", json!({}))["rows"], json!([]));
    // many connections at once
    let mut clients: Vec<_> = (0..8).map(|_| sb.connect()).collect();
    for cl in &mut clients {
        assert_eq!(cl.ok("hello", json!({"protocol": 1}))["protocol"], 1);
    }
    let pid = d.id();
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
    assert!(!alive(pid));
}

#[test]
fn daemon_leaves_when_its_socket_is_removed() {
    let sb = Sandbox::new("sockgone");
    let mut d = sb.daemon_foreground();
    sb.connect().ok("hello", json!({"protocol": 1}));
    std::fs::remove_file(sb.socket()).unwrap();
    let status = wait_timeout(&mut d, Duration::from_secs(4)).expect("daemon left");
    assert!(!status.success());
    assert!(
        sb.daemon_log().contains("was removed or replaced"),
        "{}",
        sb.daemon_log()
    );
    // and a new one starts cleanly in its place
    let mut again = sb.daemon_foreground();
    sb.connect().ok("hello", json!({"protocol": 1}));
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut again, Duration::from_secs(5)).is_some());
}

#[test]
fn unusable_data_dir_is_named() {
    let sb = Sandbox::new("datadir");
    let file = sb.root.join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let out = sb
        .command(&["daemon", "--foreground"])
        .env("QUIVER_DATA_DIR", file.join("quiver"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains(&file.join("quiver").display().to_string()),
        "{stderr}"
    );
    let out = sb
        .command(&["daemon", "--foreground"])
        .env("QUIVER_DATA_DIR", "relative/dir")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("QUIVER_DATA_DIR must be an absolute path")
    );
}

/// Not a test on its own: the client that `another_uid_is_refused` runs as another user.
#[test]
fn peer_uid_helper() {
    use std::io::Write;
    let Some(sock) = std::env::var_os("QUIVER_PEER_HELPER") else {
        return;
    };
    let mut s = std::os::unix::net::UnixStream::connect(&sock).expect("connect as another uid");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let body = br#"{"id":1,"method":"hello","params":{"protocol":1}}"#;
    let mut f = (body.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(body);
    let _ = s.write_all(&f);
    let mut buf = [0u8; 64];
    // the exit code tells the test what happened
    match s.read(&mut buf) {
        Ok(0) | Err(_) => std::process::exit(PEER_REFUSED),
        Ok(_) => std::process::exit(PEER_ANSWERED),
    }
}

const PEER_REFUSED: i32 = 42;
const PEER_ANSWERED: i32 = 43;

#[test]
fn another_uid_is_refused() {
    use std::os::unix::fs::MetadataExt;
    use std::os::unix::process::CommandExt;
    let sb = Sandbox::new("peeruid");
    if std::fs::metadata(&sb.root).unwrap().uid() != 0 {
        eprintln!("skipped: running a client as another uid needs root");
        return;
    }
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    // let another user reach the socket at all (the daemon checks the dir only at start)
    std::fs::set_permissions(&sb.root, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(&sb.run, std::fs::Permissions::from_mode(0o711)).unwrap();
    std::fs::set_permissions(sb.socket(), std::fs::Permissions::from_mode(0o666)).unwrap();
    // The checkout (and so this test binary) may sit under a 0700 directory, as a clone in
    // root's home or in `mktemp -d` does: run a copy that the other uid can reach.
    let exe_dir = sb.root.join("peer-bin");
    std::fs::create_dir_all(&exe_dir).unwrap();
    std::fs::set_permissions(&exe_dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    let exe = exe_dir.join("peer-helper");
    std::fs::copy(std::env::current_exe().unwrap(), &exe).unwrap();
    std::fs::set_permissions(&exe, std::fs::Permissions::from_mode(0o755)).unwrap();
    let out = std::process::Command::new(&exe)
        .args([
            "daemon::peer_uid_helper",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env("QUIVER_PEER_HELPER", sb.socket())
        .uid(65534)
        .gid(65534)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(PEER_REFUSED),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        sb.daemon_log().contains("peer uid 65534"),
        "{}",
        sb.daemon_log()
    );
    // our own connection is unaffected
    assert_eq!(c.ok("hello", json!({"protocol": 1}))["protocol"], 1);
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}

/// Nothing but `hello` is served before a successful `hello` on the connection.
#[test]
fn methods_before_hello_are_refused() {
    let sb = Sandbox::new("hello-first");
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect_raw();
    for (method, params) in [
        ("templates.list", json!({})),
        ("history.list", json!({})),
        ("send.reserve", json!({})),
        ("doctor", json!({})),
        ("team.sync", json!({})),
        ("team.status", json!({"probe": true})),
    ] {
        let r = c.call(method, params);
        assert_eq!(r["error"]["code"], "hello_required", "{method}: {r}");
        assert!(
            r["error"]["message"].as_str().unwrap().contains(method),
            "{r}"
        );
    }
    // a refused hello does not open the door either
    let r = c.call("hello", json!({"protocol": 99}));
    assert_eq!(r["error"]["code"], "unsupported_protocol", "{r}");
    let r = c.call("templates.list", json!({}));
    assert_eq!(r["error"]["code"], "hello_required", "{r}");
    let h = c.ok("hello", json!({"protocol": 1}));
    assert_eq!(h["minor"], quiver_shared::proto::PROTOCOL_MINOR, "{h}");
    assert!(c.ok("templates.list", json!({}))["templates"].is_array());
    // the command line says hello by itself
    let out = sb.run(&["templates", "list"]);
    assert!(out.status.success(), "{out:?}");
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}

/// Idle connections (that never said hello, or said it and went quiet) never lock a real client
/// out: beyond 64, the oldest idle one is closed; one that never says hello is closed after
/// 10 s.
#[test]
fn idle_connections_never_lock_a_client_out() {
    let sb = Sandbox::new("idle-conns");
    let mut d = sb.daemon_foreground();
    let first = sb.connect_raw();
    let silent: Vec<_> = (0..70).map(|_| sb.connect_raw()).collect();
    let mut c = sb.connect();
    assert!(c.ok("templates.list", json!({}))["templates"].is_array());
    // the command line and the native host get through too
    let out = sb.run(&["templates", "list"]);
    assert!(out.status.success(), "{out:?}");
    let mut h = sb.host();
    assert_eq!(h.ok("hello", json!({"protocol": 1}))["protocol"], 1);
    assert!(h.ok("templates.list", json!({}))["templates"].is_array());
    drop(silent);

    // 70 connections that said hello and went quiet
    let quiet: Vec<_> = (0..70).map(|_| sb.connect()).collect();
    let mut c2 = sb.connect();
    assert!(c2.ok("templates.list", json!({}))["templates"].is_array());
    let mut h2 = sb.host();
    assert!(h2.ok("templates.list", json!({}))["templates"].is_array());
    drop(quiet);
    assert!(
        sb.daemon_log()
            .contains("connections open: closed connection"),
        "{}",
        sb.daemon_log()
    );

    // the very first connection never said hello: it was closed (evicted, or after 10 s)
    let mut buf = [0u8; 16];
    let mut raw = first.into_stream();
    raw.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    assert!(matches!(raw.read(&mut buf), Ok(0)), "still open");
    drop(h);
    drop(h2);
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}

/// A connection that never says hello is closed after 10 s, even while it trickles bytes.
#[test]
fn a_connection_that_never_says_hello_is_closed() {
    use std::io::Write;
    let sb = Sandbox::new("no-hello");
    let mut d = sb.daemon_foreground();
    let mut raw = sb.connect_raw().into_stream();
    raw.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
    let mut buf = [0u8; 16];
    // a frame of 100 bytes announced, then its bytes one at a time
    raw.write_all(&[100, 0, 0, 0]).unwrap();
    let closed = (0..20).any(|_| {
        let _ = raw.write_all(b" ");
        match raw.read(&mut buf) {
            Ok(0) => true,
            Ok(n) => panic!("unexpected reply {:?}", &buf[..n]),
            Err(e) => !matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ),
        }
    });
    assert!(closed, "a silent connection stayed open for 40 s");
    // the daemon logs the reason after the socket is dropped: give the line time to land
    let logged = (0..50).any(|_| {
        let found = sb.daemon_log().contains("no hello within 10 s");
        if !found {
            std::thread::sleep(Duration::from_millis(100));
        }
        found
    });
    assert!(logged, "{}", sb.daemon_log());
    // a real client is served as ever
    assert!(sb.connect().ok("templates.list", json!({}))["templates"].is_array());
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}

fn mode(p: &std::path::Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o777
}

/// In a data dir that already exists (and that others can read), the database, its WAL and
/// shared-memory files and the log are created 0600 (an old 0644 log is fixed), and the open
/// directory is named in the log and by `quiver doctor`.
#[test]
fn files_are_private_in_an_existing_data_dir() {
    let sb = Sandbox::new("modes");
    std::fs::create_dir_all(sb.data.join("logs")).unwrap();
    std::fs::set_permissions(&sb.data, std::fs::Permissions::from_mode(0o755)).unwrap();
    let old_log = sb.data.join("logs/daemon.log");
    std::fs::write(&old_log, "an old line\n").unwrap();
    std::fs::set_permissions(&old_log, std::fs::Permissions::from_mode(0o644)).unwrap();
    let mut d = sb.daemon_foreground();
    let mut c = sb.connect();
    c.ok(
        "templates.put",
        json!({"template": {"id": "m", "title": "M", "parts": [{"type": "text", "text": "x"}]}}),
    );
    for f in [
        "quiver.db",
        "quiver.db-wal",
        "quiver.db-shm",
        "logs/daemon.log",
    ] {
        assert_eq!(mode(&sb.data.join(f)), 0o600, "{f}");
    }
    assert!(
        sb.daemon_log().contains("has mode 0755"),
        "{}",
        sb.daemon_log()
    );
    let out = sb.run(&["doctor", "--json"]);
    let r: serde_json::Value = serde_json::from_str(&out.stdout).unwrap();
    let check = r["daemon"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["name"] == "data dir")
        .cloned()
        .unwrap_or_else(|| panic!("no data dir check: {r}"));
    assert_eq!(check["ok"], false, "{check}");
    assert!(
        check["fix"].as_str().unwrap().contains("chmod 700"),
        "{check}"
    );
    std::fs::set_permissions(&sb.data, std::fs::Permissions::from_mode(0o700)).unwrap();
    let out = sb.run(&["doctor", "--json"]);
    assert!(!out.stdout.contains("\"data dir\""), "{}", out.stdout);
    assert!(sb.stop_daemon().status.success());
    assert!(wait_timeout(&mut d, Duration::from_secs(5)).is_some());
}

/// A daemon that cannot start says why to whoever started it, even when its log file cannot
/// be created: the native host's `daemon.down` reason and the command line's error carry the
/// cause, not a pointer to a log that does not exist.
#[test]
fn a_failed_start_reports_its_real_cause() {
    // the data dir cannot be created (a file is in the way), so neither can the log
    let sb = Sandbox::new("start-fails");
    std::fs::write(&sb.data, "not a directory").unwrap();
    let mut h = sb.host();
    let down = h.event("daemon.down", Duration::from_secs(10));
    let reason = down["data"]["reason"].as_str().unwrap().to_string();
    assert!(
        reason.contains("cannot create data directory") && reason.contains("ot a directory"),
        "{reason}"
    );
    assert!(!reason.contains("daemon.log"), "{reason}");
    drop(h);

    // the database cannot be opened (a directory is in the way)
    let sb = Sandbox::new("start-fails-db");
    std::fs::create_dir_all(sb.data.join("quiver.db/x")).unwrap();
    let out = sb.run(&["templates", "list"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(
        out.stderr.contains("failed to start") && out.stderr.contains("quiver.db"),
        "{out:?}"
    );
    let out = sb.run(&["daemon"]);
    assert!(!out.status.success(), "{out:?}");
    assert!(out.stderr.contains("quiver.db"), "{out:?}");
}
