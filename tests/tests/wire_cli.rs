//! The protocol-core command line: `quiver render`, `quiver session-from`, `quiver unionid`.
//! Contract: each payload one JSON text per line on stdout; a refusal exits 1 with one JSON line
//! `{"error": {"code", "message", ...}}` on stderr and nothing on stdout.

use quiver_tests::{Output, Sandbox};
use serde_json::Value;

const LIBRARY: &str = r##"{"quiver": 1, "templates": [
 {"id": "hi", "title": "Hi", "parts": [{"type": "text", "text": "Hello {{customer.name|there}}, {{date}}"}]},
 {"id": "two", "title": "Two parts", "parts": [
   {"type": "text", "text": "First"},
   {"type": "product", "name": "Tea", "url": "https://shop.example/t", "image": "https://img.example/t.jpg",
    "segments": [{"text": "¥12", "color": "#FF0000", "bold": false, "break": false, "size": 12}]}]},
 {"id": "card", "title": "Card", "parts": [
   {"type": "miniprogram", "title": "Order {{order.id}}", "pagepath": "pages/o?id={{order.id}}",
    "thumb_media_id": "MEDIA", "name": "Shop", "avatar": "https://img.example/a.png", "thumb_url": "https://img.example/c.jpg",
    "fallback": {"type": "text", "text": "Order {{order.id}}"}}]},
 {"id": "news", "title": "News", "parts": [{"type": "news", "articles": [
   {"title": "Return", "digest": "3 steps", "cover": "https://img.example/c.jpg", "url": "https://help.example/r"}]}]}
]}"##;

fn setup(name: &str) -> (Sandbox, String) {
    let sb = Sandbox::new(name);
    let lib = sb.root.join("library.json");
    std::fs::write(&lib, LIBRARY).expect("write library");
    let lib = lib.to_string_lossy().into_owned();
    (sb, lib)
}

fn stdout_lines(o: &Output) -> Vec<String> {
    assert!(
        o.status.success(),
        "exit {:?}, stderr: {}",
        o.status,
        o.stderr
    );
    o.stdout.lines().map(String::from).collect()
}

/// The refusal's code, after checking the contract: exit 1, stdout empty, one JSON line on stderr.
fn refusal(o: &Output) -> (String, Value) {
    assert_eq!(o.status.code(), Some(1), "stderr: {}", o.stderr);
    assert!(o.stdout.is_empty(), "stdout: {}", o.stdout);
    let err = &o.stderr;
    let lines: Vec<&str> = err.lines().collect();
    assert_eq!(lines.len(), 1, "stderr: {err}");
    let v: Value = serde_json::from_str(lines[0]).expect("stderr is JSON");
    let code = v["error"]["code"].as_str().expect("error.code").to_string();
    assert!(v["error"]["message"]
        .as_str()
        .is_some_and(|m| !m.is_empty()));
    (code, v)
}

#[test]
fn render_udesk_text_with_date_and_fallback() {
    let (sb, lib) = setup("render-text");
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--now",
        "1795239904000",
        "--tz",
        "480",
        "--template",
        "hi",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [r#"{"method":"sendMsg","type":"text","content":"Hello there, 2026-11-21"}"#]
    );
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--var",
        "customer.name=王小明",
        "--now",
        "0",
        "--template",
        "hi",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [r#"{"method":"sendMsg","type":"text","content":"Hello 王小明, 1970-01-01"}"#]
    );
}

#[test]
fn render_prints_one_line_per_part_and_checks_the_channel() {
    let (sb, lib) = setup("render-parts");
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--channel",
        "web",
        "--template",
        "two",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [
            r#"{"method":"sendMsg","type":"text","content":"First"}"#,
            r##"{"method":"sendMsg","type":"product","content":{"name":"Tea","url":"https://shop.example/t","imgUrl":"https://img.example/t.jpg","params":[{"text":"¥12","color":"#FF0000","fold":false,"break":false,"size":12}]}}"##,
        ]
    );
    // SDK 5.0 cannot show a product card; the part names no fallback: nothing is printed.
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--channel",
        "sdk",
        "--sdk-version",
        "5.0",
        "--template",
        "two",
        &lib,
    ]);
    let (code, v) = refusal(&o);
    assert_eq!(code, "channel_unsupported");
    assert_eq!(v["error"]["part"], 1);
    assert_eq!(v["error"]["template"], "two");
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--channel",
        "sdk",
        "--sdk-version",
        "5.1",
        "--template",
        "two",
        &lib,
    ]);
    assert_eq!(stdout_lines(&o).len(), 2);
}

#[test]
fn render_card_on_each_platform() {
    let (sb, lib) = setup("render-card");
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--channel",
        "miniprogram",
        "--var",
        "order.id=7",
        "--template",
        "card",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [
            r#"{"method":"sendMsg","type":"miniprogrampage","content":{"title":"Order 7","pagepath":"pages/o?id=7","thumb_media_id":"MEDIA"}}"#
        ]
    );
    // The web channel cannot show it: its text fallback goes instead.
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--channel",
        "web",
        "--var",
        "order.id=7",
        "--template",
        "card",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [r#"{"method":"sendMsg","type":"text","content":"Order 7"}"#]
    );
    // Sobot takes cid and uid from the assistant frame's URL (partnerid in either case).
    let o = sb.run(&[
        "render",
        "--platform",
        "sobot",
        "--url",
        "https://crm.example/tab?cid=C1&uid=U%201&partnerid=p",
        "--var",
        "order.id=7",
        "--template",
        "card",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [
            r#"{"cid":"C1","uid":"U 1","msgType":26,"miniPage":{"headimg":"https://img.example/a.png","name":"Shop","thumbUrl":"https://img.example/c.jpg","title":"Order 7","pagepath":"pages/o?id=7","thumbMediaId":"MEDIA"}}"#
        ]
    );
    let o = sb.run(&[
        "render",
        "--platform",
        "sobot",
        "--var",
        "order.id=7",
        "--template",
        "card",
        &lib,
    ]);
    assert_eq!(refusal(&o).0, "field_required");
    // The mini program's custom/send body, touser from customer.openid.
    let o = sb.run(&[
        "render",
        "--platform",
        "wechat-mp",
        "--var",
        "customer.openid=oUSER",
        "--var",
        "order.id=7",
        "--template",
        "card",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [
            r#"{"touser":"oUSER","msgtype":"miniprogrampage","miniprogrampage":{"title":"Order 7","pagepath":"pages/o?id=7","thumb_media_id":"MEDIA"}}"#
        ]
    );
    let o = sb.run(&[
        "render",
        "--platform",
        "wechat-mp",
        "--var",
        "order.id=7",
        "--template",
        "card",
        &lib,
    ]);
    let (code, v) = refusal(&o);
    assert_eq!(code, "missing_variable");
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains("customer.openid"));
}

#[test]
fn render_wechat_dkf_uses_a_fresh_random_per_call() {
    let (sb, lib) = setup("render-dkf");
    let random = |o: &Output| -> String {
        let line = &stdout_lines(o)[0];
        let v: Value = serde_json::from_str(line).expect("PutMsg argument is JSON");
        assert_eq!(
            v["msg"]["body"][0]["type"], 7,
            "news is type 7 (platform-spec §3.4)"
        );
        v["msg"]["head"]["random"]
            .as_str()
            .expect("random is a string")
            .to_string()
    };
    let a = random(&sb.run(&[
        "render",
        "--platform",
        "wechat-dkf",
        "--template",
        "news",
        &lib,
    ]));
    let b = random(&sb.run(&[
        "render",
        "--platform",
        "wechat-dkf",
        "--template",
        "news",
        &lib,
    ]));
    assert!(a.chars().all(|c| c.is_ascii_digit()) && !a.is_empty());
    assert_ne!(
        a, b,
        "two calls must not repeat head.random (the client discards repeats)"
    );
    let o = sb.run(&[
        "render",
        "--platform",
        "wechat-dkf",
        "--nonce",
        "8347219",
        "--template",
        "news",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [
            r#"{"msg":{"head":{"random":"8347219"},"body":[{"type":7,"content":[{"title":"Return","digest":"3 steps","cover":"https://img.example/c.jpg","url":"https://help.example/r"}]}]}}"#
        ]
    );
}

#[test]
fn render_refusals_name_their_reason() {
    let (sb, lib) = setup("render-refusals");
    let cases: &[(&[&str], &str)] = &[
        (
            &["--platform", "udesk", "--template", "card"],
            "missing_variable",
        ),
        (
            &[
                "--platform",
                "udesk",
                "--channel",
                "fax",
                "--template",
                "hi",
            ],
            "invalid_target",
        ),
        (&["--platform", "icq", "--template", "hi"], "invalid_target"),
        (
            &["--platform", "udesk", "--template", "nope"],
            "invalid_template",
        ),
    ];
    for (args, want) in cases {
        let mut all = vec!["render"];
        all.extend_from_slice(args);
        all.push(&lib);
        assert_eq!(&refusal(&sb.run(&all)).0, want, "{args:?}");
    }
    // A broken library names the line and field.
    let bad = sb.root.join("bad.json");
    std::fs::write(
        &bad,
        LIBRARY.replace(r##""color": "#FF0000""##, r#""color": "red""#),
    )
    .unwrap();
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--template",
        "hi",
        &bad.to_string_lossy(),
    ]);
    let (code, v) = refusal(&o);
    assert_eq!(code, "invalid_template");
    assert_eq!(
        v["error"]["field"],
        "templates[1].parts[1].segments[0].color"
    );
    assert_eq!(v["error"]["line"], 6);
    // Usage errors exit 2.
    assert_eq!(
        sb.run(&["render", "--template", "hi", &lib]).status.code(),
        Some(2)
    );
}

#[test]
fn session_from_build_parse_check() {
    let sb = Sandbox::new("session-from");
    let o = sb.run(&["session-from", "build", "--nick", "Ann", "--params", r#"{"a":1}"#,
        "--transfer-action",
        r#"[{"actionType":"to_group","deciId":"g1","optionId":"3","spillId":"4"},{"actionType":"to_group","deciId":"g2","optionId":"4"}]"#,
        "--partnerid", "p1"]);
    let built = stdout_lines(&o).remove(0);
    assert_eq!(
        built,
        r#"sobot|Ann||{"a":1}|transfer_action=[{"actionType":"to_group","deciId":"g1","optionId":"3","spillId":"4"},{"actionType":"to_group","deciId":"g2","optionId":"4"}]|partnerid=p1"#
    );
    let parsed: Value =
        serde_json::from_str(&stdout_lines(&sb.run(&["session-from", "parse", &built]))[0])
            .unwrap();
    assert_eq!(parsed["nick_name"], "Ann");
    assert_eq!(parsed["partnerid"], "p1");
    assert_eq!(parsed["transfer_action"][0]["deciId"], "g1");
    assert_eq!(
        stdout_lines(&sb.run(&["session-from", "check", &built])),
        ["ok"]
    );
    // check lists every problem.
    let o = sb.run(&["session-from", "check", "sobot|Ann||x|foo=1"]);
    let (code, v) = refusal(&o);
    assert_eq!(code, "invalid_session_from");
    assert_eq!(v["error"]["problems"].as_array().map(Vec::len), Some(2));
    // 1001 characters is too long.
    let long = format!("sobot|{}|||", "n".repeat(1001 - "sobot||||".len() + 1));
    let long = &long[..long.len() - 1];
    assert_eq!(long.chars().count(), 1001);
    assert_eq!(
        refusal(&sb.run(&["session-from", "parse", long])).0,
        "too_long"
    );
}

#[test]
fn unionid_matches_openssl() {
    let sb = Sandbox::new("unionid");
    // printf %s oJw8S1S0ZheoM2PnKbka3zJO-QyE | openssl enc -aes-128-ecb -K 31323334353637383930616263646566 -nosalt -base64
    let o = sb.run(&[
        "unionid",
        "encrypt",
        "--key",
        "1234567890abcdef",
        "oJw8S1S0ZheoM2PnKbka3zJO-QyE",
    ]);
    assert_eq!(
        stdout_lines(&o),
        ["wRHt8Ny7dngE4LiURys7EmuI/9lPnGmH7fRD9Cz9gic="]
    );
    let o = sb.run(&[
        "unionid",
        "decrypt",
        "--key",
        "1234567890abcdef",
        "wRHt8Ny7dngE4LiURys7EmuI/9lPnGmH7fRD9Cz9gic=",
    ]);
    assert_eq!(stdout_lines(&o), ["oJw8S1S0ZheoM2PnKbka3zJO-QyE"]);
    let o = sb.run(&["unionid", "encrypt", "--key", "short", "x"]);
    assert_eq!(refusal(&o).0, "invalid_value");
}

/// Links (docs/templates.md "Links"): a library with a `javascript:` link is refused naming the
/// field, and a value in a link is percent-encoded so it cannot add a parameter.
#[test]
fn render_checks_links_and_encodes_values_in_them() {
    let (sb, lib) = setup("render-links");
    let o = sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--channel",
        "miniprogram",
        "--var",
        "order.id=1&from=evil #x",
        "--template",
        "card",
        &lib,
    ]);
    assert_eq!(
        stdout_lines(&o),
        [
            r#"{"method":"sendMsg","type":"miniprogrampage","content":{"title":"Order 1&from=evil #x","pagepath":"pages/o?id=1%26from%3Devil%20%23x","thumb_media_id":"MEDIA"}}"#
        ]
    );
    let bad = sb.root.join("bad-link.json");
    std::fs::write(
        &bad,
        LIBRARY.replace(
            r#""cover": "https://img.example/c.jpg""#,
            r#""cover": "javascript:alert(1)""#,
        ),
    )
    .unwrap();
    let (code, v) = refusal(&sb.run(&[
        "render",
        "--platform",
        "udesk",
        "--template",
        "hi",
        &bad.to_string_lossy(),
    ]));
    assert_eq!(code, "invalid_template");
    assert_eq!(
        v["error"]["field"],
        "templates[3].parts[0].articles[0].cover"
    );
    assert!(
        v["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("javascript: scheme is not allowed")),
        "{v}"
    );
}
