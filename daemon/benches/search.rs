//! Template search through the daemon (`templates.search` over its socket, the way the options
//! page and `quiver templates search` use it) at 10k and 100k templates: mixed Chinese and
//! English titles, tags, folders, bodies, generated from word lists with a fixed seed.
//!
//! `cargo bench -p quiver-daemon --bench search`.
#![allow(clippy::print_stdout)]

mod common;

use common::{machine, ms, stats, us, Sandbox};
use quiver_daemon::client::Client;
use serde_json::{json, Value};
use std::time::{Duration, Instant};

const ZH: &[&str] = &[
    "退款",
    "政策",
    "订单",
    "发货",
    "物流",
    "查询",
    "地址",
    "修改",
    "取消",
    "退货",
    "换货",
    "发票",
    "支付",
    "失败",
    "优惠券",
    "折扣",
    "会员",
    "积分",
    "保修",
    "安装",
    "快递",
    "单号",
    "感谢",
    "抱歉",
    "稍等",
    "欢迎",
    "再见",
    "节日",
    "促销",
    "价格",
    "库存",
    "尺码",
    "颜色",
    "账户",
    "密码",
    "重置",
    "登录",
    "验证",
    "手机",
    "邮箱",
    "收据",
    "破损",
    "丢失",
    "包裹",
    "延迟",
    "预售",
    "活动",
    "客服",
];
const EN: &[&str] = &[
    "refund",
    "policy",
    "order",
    "status",
    "shipping",
    "delay",
    "address",
    "change",
    "cancel",
    "return",
    "exchange",
    "invoice",
    "payment",
    "failed",
    "coupon",
    "discount",
    "member",
    "points",
    "warranty",
    "install",
    "delivery",
    "tracking",
    "number",
    "thanks",
    "sorry",
    "wait",
    "moment",
    "welcome",
    "goodbye",
    "holiday",
    "promotion",
    "price",
    "stock",
    "size",
    "color",
    "account",
    "password",
    "reset",
    "login",
    "verify",
    "phone",
    "email",
    "receipt",
    "damaged",
    "missing",
    "package",
];
const FOLDERS: &[&str] = &[
    "General",
    "Orders",
    "Orders/Refunds",
    "Shipping",
    "Account",
    "Promotions",
    "After-sales",
];
const QUERIES: &[&str] = &[
    "tkzc",
    "tuikuan",
    "退款",
    "sd",
    "shaodeng",
    "fahuo wuliu",
    "refund",
    "refund policy",
    "delivry",
    "order status",
    "订单 查询",
    "zzzzqq",
    "",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> usize {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) as usize
    }
    fn pick<'a>(&mut self, v: &[&'a str]) -> &'a str {
        v[self.next() % v.len()]
    }
}

fn template(i: usize, rng: &mut Lcg) -> Value {
    let zh = rng.next().is_multiple_of(2);
    let pool = if zh { ZH } else { EN };
    let words = 2 + rng.next() % 2;
    let title: Vec<&str> = (0..words).map(|_| rng.pick(pool)).collect();
    let title = if zh { title.concat() } else { title.join(" ") };
    let tags: Vec<&str> = (0..1 + rng.next() % 3).map(|_| rng.pick(pool)).collect();
    let body: Vec<&str> = (0..8 + rng.next() % 12)
        .map(|_| {
            let pool = if rng.next().is_multiple_of(3) { EN } else { ZH };
            rng.pick(pool)
        })
        .collect();
    let mut t = json!({
        "id": format!("t{i:06}"),
        "title": format!("{title} {i}"),
        "folder": rng.pick(FOLDERS),
        "tags": tags,
        "parts": [{"type": "text", "text": body.join(" ")}],
    });
    if rng.next() % 10 < 3 {
        let sc: String = (0..2 + rng.next() % 3)
            .map(|_| char::from(b'a' + (rng.next() % 26) as u8))
            .collect();
        t["shortcut"] = json!(sc);
    }
    t
}

fn import(c: &mut Client, from: usize, to: usize, rng: &mut Lcg) -> Duration {
    let t = Instant::now();
    let session = format!("bench-{from}");
    let mut i = from;
    while i < to {
        let end = (i + 2000).min(to);
        let batch: Vec<Value> = (i..end).map(|k| template(k, rng)).collect();
        c.call(
            "templates.import",
            json!({ "templates": batch, "session": session, "last": end == to }),
        )
        .expect("import");
        i = end;
    }
    t.elapsed()
}

fn search(c: &mut Client, q: &str) -> (Duration, usize) {
    let t = Instant::now();
    let r = c
        .call("templates.search", json!({ "query": q, "limit": 20 }))
        .expect("search");
    (t.elapsed(), r["results"].as_array().map_or(0, Vec::len))
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let sb = Sandbox::new("search");
    sb.start_daemon();
    let mut c = Client::connect(&sb.locations(), false).expect("connect");
    let mut rng = Lcg(42);
    println!("# Quiver benchmarks: template search\n\n{}\n", machine());
    println!(
        "`templates.search` (limit 20, full templates in the reply) over the daemon's socket; \
         30 runs per query after 3 warm-up runs.\n"
    );
    let mut have = 0;
    for size in [10_000, 100_000] {
        let took = import(&mut c, have, size, &mut rng);
        have = size;
        // the first search after a change builds the index
        let (first, _) = search(&mut c, "refund");
        println!(
            "## {size} templates\n\nimport of {} templates: {}; first search after it (index \
             build): {}\n",
            if size == 10_000 { 10_000 } else { 90_000 },
            ms(took),
            ms(first)
        );
        println!("| query | hits | median | p99 |");
        println!("|---|---|---|---|");
        let mut all = Vec::new();
        for q in QUERIES {
            for _ in 0..3 {
                search(&mut c, q);
            }
            let mut v = Vec::new();
            let mut hits = 0;
            for _ in 0..30 {
                let (d, n) = search(&mut c, q);
                hits = n;
                v.push(d);
            }
            all.extend(v.iter().copied());
            let s = stats(&mut v);
            println!("| `{q}` | {hits} | {} | {} |", us(s.median), us(s.p99));
        }
        let s = stats(&mut all);
        println!(
            "| **all queries** | | **{}** | **{}** |\n",
            us(s.median),
            us(s.p99)
        );
    }
}
