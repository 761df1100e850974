//! The fake's own behaviour, driven over HTTP in-process: tokens, quota, media, injections, and
//! a push judged against a minimal receiver that checks the signature with the core.

use std::sync::{Arc, Mutex};

use axum::extract::{Query, State};
use axum::routing::post;
use axum::Router;
use serde_json::{json, Value};

use quiver_shared::wechat::crypto::{Crypto, PushQuery};
use quiver_shared::wechat::push::{parse_body, Body};
use quiver_shared::wechat::Format;

const AES: &str = "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG";

async fn start_fake() -> String {
    quiver_fakewx::install_crypto_provider();
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(quiver_fakewx::serve(l));
    format!("http://{addr}")
}

/// A receiver that checks the push like a gateway would and keeps what it opened.
async fn start_receiver(answer: &'static str) -> (String, Arc<Mutex<Vec<String>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let s2 = seen.clone();
    let app = Router::new()
        .route(
            "/push",
            post(
                move |State(seen): State<Arc<Mutex<Vec<String>>>>,
                      Query(q): Query<Vec<(String, String)>>,
                      body: String| async move {
                    let crypto = Crypto::new("tok", AES, "wx1234567890abcdef").unwrap();
                    let q = PushQuery::from_pairs(q.iter().map(|(k, v)| (k.as_str(), v.as_str())));
                    if crypto.verify_signature(&q).is_err() {
                        return (
                            axum::http::StatusCode::UNAUTHORIZED,
                            "bad signature".to_string(),
                        );
                    }
                    let text = match parse_body(&body, Format::Json).unwrap() {
                        Body::Encrypted { envelope } => crypto.open(&envelope, &q).unwrap(),
                        Body::Plain { .. } | Body::Compatible { .. } => body.clone(),
                    };
                    seen.lock().unwrap().push(text);
                    (axum::http::StatusCode::OK, answer.to_string())
                },
            ),
        )
        .with_state(s2);
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    (format!("http://{addr}/push"), seen)
}

async fn post_json(c: &reqwest::Client, url: String, v: Value) -> Value {
    let r = c.post(&url).body(v.to_string()).send().await.unwrap();
    let status = r.status();
    let text = r.text().await.unwrap();
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{url}: {status} {text:?}: {e}"))
}

#[tokio::test]
async fn push_token_send_quota_media() {
    let base = start_fake().await;
    let (push_url, seen) = start_receiver("success").await;
    let c = reqwest::Client::new();
    let r = post_json(
        &c,
        format!("{base}/__fake/apps"),
        json!({"appid": "wx1234567890abcdef", "secret": "s3cret", "token": "tok",
               "aes_key": AES, "mode": "safe", "format": "json", "push_url": push_url}),
    )
    .await;
    assert_eq!(r, json!({}));

    // A safe-mode JSON push, opened by the receiver with the core's crypto.
    let r = post_json(
        &c,
        format!("{base}/__fake/push"),
        json!({"appid": "wx1234567890abcdef", "from": "oUSER1", "kind": "text", "content": "在吗"}),
    )
    .await;
    assert_eq!(r["verdict"], "ok", "{r}");
    let opened = seen.lock().unwrap().clone();
    assert_eq!(opened.len(), 1);
    assert!(opened[0].contains("在吗") && opened[0].contains("\"FromUserName\":\"oUSER1\""));

    // A tampered signature is refused by the receiver: WeChat reads that as a failure.
    let r = post_json(
        &c,
        format!("{base}/__fake/push"),
        json!({"appid": "wx1234567890abcdef", "from": "oUSER1", "kind": "text", "tamper": "signature"}),
    )
    .await;
    assert_eq!(r["verdict"], "error", "{r}");

    // Stable token: the same token twice; invalidated -> 40001; a new one differs.
    let tok = |body: Value| post_json(&c, format!("{base}/cgi-bin/stable_token"), body);
    let req = json!({"grant_type": "client_credential", "appid": "wx1234567890abcdef", "secret": "s3cret"});
    let t1 = tok(req.clone()).await;
    let t2 = tok(req.clone()).await;
    assert_eq!(t1["access_token"], t2["access_token"]);
    assert!(t1["expires_in"].as_i64().unwrap() > 300);
    let bad = tok(
        json!({"grant_type": "client_credential", "appid": "wx1234567890abcdef", "secret": "no"}),
    )
    .await;
    assert_eq!(bad["errcode"], 40125);
    let t1 = t1["access_token"].as_str().unwrap().to_string();
    let send = |t: String, body: Value| {
        post_json(
            &c,
            format!("{base}/cgi-bin/message/custom/send?access_token={t}"),
            body,
        )
    };
    let text = json!({"touser": "oUSER1", "msgtype": "text", "text": {"content": "hi"}});
    assert_eq!(send(t1.clone(), text.clone()).await["errcode"], 0);
    post_json(
        &c,
        format!("{base}/__fake/invalidate_token"),
        json!({"appid": "wx1234567890abcdef"}),
    )
    .await;
    assert_eq!(send(t1.clone(), text.clone()).await["errcode"], 40001);
    let t3 = tok(req.clone()).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_ne!(t3, t1);

    // Unknown OpenID, wrong msgtype.
    let r = send(
        t3.clone(),
        json!({"touser": "oNOBODY", "msgtype": "text", "text": {"content": "x"}}),
    )
    .await;
    assert_eq!(r["errcode"], 40003);
    let r = send(
        t3.clone(),
        json!({"touser": "oUSER1", "msgtype": "news", "news": {}}),
    )
    .await;
    assert_eq!(r["errcode"], 40008);

    // Quota: two pushes from oUSER1 (messages), one send used: 4 more, then 45047.
    for _ in 0..4 {
        assert_eq!(send(t3.clone(), text.clone()).await["errcode"], 0);
    }
    assert_eq!(send(t3.clone(), text.clone()).await["errcode"], 45047);
    // 48 hours later: 45015.
    post_json(
        &c,
        format!("{base}/__fake/clock"),
        json!({"advance_ms": 48 * 3_600_000}),
    )
    .await;
    let t4 = tok(req.clone()).await["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    assert_eq!(send(t4.clone(), text.clone()).await["errcode"], 45015);

    // Media: an upload is usable for 3 days, then 40007.
    post_json(
        &c,
        format!("{base}/__fake/push"),
        json!({"appid": "wx1234567890abcdef", "from": "oUSER1", "kind": "text"}),
    )
    .await;
    let png = include_bytes!("../src/push.rs").len(); // any non-image is refused
    assert!(png > 0);
    let form = reqwest::multipart::Form::new().part(
        "media",
        reqwest::multipart::Part::bytes(b"\x89PNG\r\n\x1a\nrest".to_vec()).file_name("a.png"),
    );
    let up: Value = c
        .post(format!(
            "{base}/cgi-bin/media/upload?access_token={t4}&type=image"
        ))
        .multipart(form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mid = up["media_id"].as_str().unwrap().to_string();
    let img = json!({"touser": "oUSER1", "msgtype": "image", "image": {"media_id": mid}});
    assert_eq!(send(t4.clone(), img.clone()).await["errcode"], 0);
    post_json(&c, format!("{base}/__fake/expire_media"), json!({})).await;
    assert_eq!(send(t4.clone(), img.clone()).await["errcode"], 40007);

    // An injected errcode answers without acting; a drop acts and closes the connection.
    post_json(
        &c,
        format!("{base}/__fake/inject"),
        json!({"path": "/cgi-bin/message/custom/send", "errcode": -1}),
    )
    .await;
    assert_eq!(send(t4.clone(), text.clone()).await["errcode"], -1);
    post_json(
        &c,
        format!("{base}/__fake/inject"),
        json!({"path": "/cgi-bin/message/custom/send", "drop": true}),
    )
    .await;
    let dropped = c
        .post(format!(
            "{base}/cgi-bin/message/custom/send?access_token={t4}"
        ))
        .body(text.to_string())
        .send()
        .await;
    let failed = match dropped {
        Err(_) => true,
        Ok(r) => r.text().await.is_err(),
    };
    assert!(failed, "the dropped call must fail at the client");
    let calls: Value = c
        .get(format!(
            "{base}/__fake/calls?path=/cgi-bin/message/custom/send"
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let last = calls.as_array().unwrap().last().unwrap().clone();
    assert_eq!(last["status"], Value::Null);
    let stats: Value = c
        .get(format!("{base}/__fake/stats"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    // 5 texts + 1 image + the dropped one (delivered, answer lost).
    assert_eq!(stats["sends_ok"], 7, "{stats}");
}

#[tokio::test]
async fn slow_receiver_gets_retries_and_transfer_is_judged() {
    let base = start_fake().await;
    // A receiver that answers a transfer reply in plain JSON.
    let seen = Arc::new(Mutex::new(0u32));
    let s2 = seen.clone();
    let app = Router::new().route(
        "/push",
        post(move |body: String| {
            let s2 = s2.clone();
            async move {
                let n = {
                    let mut g = s2.lock().unwrap();
                    *g += 1;
                    *g
                };
                if n == 1 {
                    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
                }
                let v: Value = serde_json::from_str(&body).unwrap();
                json!({"ToUserName": v["FromUserName"], "FromUserName": v["ToUserName"],
                       "CreateTime": 1, "MsgType": "transfer_customer_service"})
                .to_string()
            }
        }),
    );
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await });
    let c = reqwest::Client::new();
    post_json(
        &c,
        format!("{base}/__fake/apps"),
        json!({"appid": "wxa", "secret": "s", "token": "tok", "mode": "plain", "format": "json",
               "push_url": format!("http://{addr}/push")}),
    )
    .await;
    let r = post_json(
        &c,
        format!("{base}/__fake/push"),
        json!({"appid": "wxa", "from": "oU", "kind": "text", "timeout_ms": 200}),
    )
    .await;
    assert_eq!(r["verdict"], "transfer", "{r}");
    assert_eq!(r["attempts"].as_array().unwrap().len(), 2);
    assert_eq!(r["attempts"][0]["verdict"], "no_answer");
    assert_eq!(*seen.lock().unwrap(), 2);
}
