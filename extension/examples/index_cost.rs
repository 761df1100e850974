//! Where the palette's index build goes, natively: `cargo run --release -p quiver-extension --example index_cost`.
#![allow(clippy::print_stdout)]
use std::time::Instant;
fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(100_000);
    let words = [
        "order", "refund", "shipping", "delay", "greeting", "invoice", "coupon", "address",
        "payment", "return",
    ];
    let han = [
        "稍等", "退款", "发货", "订单", "优惠", "地址", "支付", "感谢", "售后", "物流",
    ];
    let list: Vec<serde_json::Value> = (0..n).map(|i| {
        let w = words[i % words.len()];
        let h = han[(i * 7) % han.len()];
        serde_json::json!({"id": format!("gen-{i}"), "title": if i % 3 == 0 { format!("{h}{i}") } else { format!("{w} template {i}") },
          "shortcut": format!("{}{i}", &w[..2]), "tags": [w, h],
          "parts": [{"type": "text", "text": format!("Generated body {i}: about your {w} {h}, reply soon.")}]})
    }).collect();
    let json = serde_json::Value::Array(list).to_string();
    println!("json {} bytes", json.len());
    let t = Instant::now();
    let v: Vec<serde_json::Value> = serde_json::from_str(&json).unwrap();
    println!("parse Value: {:?}", t.elapsed());
    let t = Instant::now();
    let ts: Vec<quiver_shared::Template> = v
        .iter()
        .map(|x| serde_json::from_value(x.clone()).unwrap())
        .collect();
    println!("clone+from_value: {:?}", t.elapsed());
    let t = Instant::now();
    let items: Vec<_> = ts
        .iter()
        .map(|t| quiver_shared::search::IndexedTemplate::from_template(t, 0, None))
        .collect();
    println!("IndexedTemplate: {:?}", t.elapsed());
    if std::env::args().nth(2).as_deref() == Some("build") {
        for _ in 0..5 {
            let t = Instant::now();
            let _ = quiver_shared::search::SearchIndex::build(&items);
            println!("build {:?}", t.elapsed());
        }
        return;
    }
    let t = Instant::now();
    let _ = quiver_shared::search::SearchIndex::build(&items);
    println!("SearchIndex::build: {:?}", t.elapsed());
    let t = Instant::now();
    let built = quiver_extension::SearchIndex::build(&json).unwrap();
    println!("whole wasm-path build: {:?}", t.elapsed());
    let t = Instant::now();
    let snap = built.snapshot();
    println!("snapshot: {:?}, {} bytes", t.elapsed(), snap.len());
    let t = Instant::now();
    let _ = quiver_extension::SearchIndex::load(snap).unwrap();
    println!("load snapshot: {:?}", t.elapsed());
    let t = Instant::now();
    let _ = quiver_extension::channel_fit_json(r#"{"platform":"udesk"}"#, &json).unwrap();
    println!("channel_fit: {:?}", t.elapsed());
}
