//! Template search benchmark: `cargo bench -p quiver-shared --bench search`.
//!
//! Builds indexes of 10k and 100k generated templates (mixed English and Chinese titles from
//! word lists, a seeded LCG: the same library on every run) and times realistic queries,
//! then every keystroke of a few typed queries. Prints median and p99 per row.
//! `QUIVER_BENCH_SIZES=10000` limits the sizes; `QUIVER_BENCH_ONLY="two words"` runs one row.
#![allow(clippy::print_stdout)]

use quiver_shared::search::{IndexedTemplate, SearchIndex, SearchOptions};
use std::hint::black_box;
use std::time::{Duration, Instant};

const EN: &[&str] = &[
    "greeting",
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
    "courier",
    "pickup",
    "store",
    "hours",
    "contact",
    "support",
    "escalate",
    "manager",
    "feedback",
    "survey",
    "apology",
    "compensation",
    "voucher",
    "gift",
    "card",
    "balance",
    "subscription",
    "renewal",
    "upgrade",
    "downgrade",
    "plan",
    "trial",
    "billing",
    "tax",
    "customs",
    "international",
    "express",
    "standard",
    "weekend",
    "urgent",
    "follow",
    "up",
    "reminder",
    "confirm",
    "booking",
    "appointment",
    "reschedule",
    "quote",
    "bulk",
    "wholesale",
    "sample",
    "catalog",
];
const ZH: &[&str] = &[
    "稍等",
    "退款",
    "政策",
    "订单",
    "物流",
    "查询",
    "发货",
    "延迟",
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
    "配送",
    "快递",
    "单号",
    "感谢",
    "抱歉",
    "您好",
    "欢迎",
    "再见",
    "节日",
    "活动",
    "价格",
    "库存",
    "尺码",
    "颜色",
    "账号",
    "密码",
    "重置",
    "登录",
    "验证",
    "手机",
    "邮箱",
    "收据",
    "破损",
    "缺件",
    "包裹",
    "自提",
    "门店",
    "营业",
    "联系",
    "客服",
    "升级",
    "经理",
    "反馈",
    "问卷",
    "道歉",
    "补偿",
    "礼品卡",
    "余额",
    "续费",
    "套餐",
    "试用",
    "账单",
    "税费",
    "海关",
    "国际",
    "加急",
    "周末",
    "提醒",
    "确认",
    "预约",
    "报价",
    "批发",
    "样品",
    "目录",
    "银行",
    "还款",
    "重要",
    "绿色",
];
const FOLDERS: &[&str] = &[
    "General",
    "售后/退款",
    "售后/物流",
    "Sales",
    "Billing",
    "VIP",
    "活动/双十一",
    "Support/Tier 2",
];
const SYLLABLES: &[&str] = &[
    "ka", "lo", "mi", "ren", "tor", "vex", "qua", "zen", "pol", "dri", "sun", "bel",
];

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a>(&mut self, list: &[&'a str]) -> &'a str {
        list[self.below(list.len())]
    }
}

/// A product-like name from syllables: gives the vocabulary the long tail of a real library.
fn coined(rng: &mut Lcg) -> String {
    (0..2 + rng.below(2)).map(|_| rng.pick(SYLLABLES)).collect()
}

fn generate(n: usize, seed: u64) -> Vec<IndexedTemplate> {
    let mut rng = Lcg(seed);
    let now = 1_800_000_000_000u64;
    (0..n)
        .map(|i| {
            let chinese = rng.below(2) == 0;
            let words = 2 + rng.below(3);
            let mut title = String::new();
            for w in 0..words {
                if chinese {
                    title.push_str(rng.pick(ZH));
                } else {
                    if w > 0 {
                        title.push(' ');
                    }
                    if rng.below(6) == 0 {
                        title.push_str(&coined(&mut rng));
                    } else {
                        let word = rng.pick(EN);
                        if w == 0 {
                            let mut c = word.chars();
                            title.extend(c.next().map(|f| f.to_ascii_uppercase()));
                            title.push_str(c.as_str());
                        } else {
                            title.push_str(word);
                        }
                    }
                }
            }
            let shortcut =
                (rng.below(3) == 0).then(|| format!("{}{}", &rng.pick(EN)[..2], i % 1000));
            let tags = (0..rng.below(4))
                .map(|_| {
                    if rng.below(2) == 0 {
                        rng.pick(EN)
                    } else {
                        rng.pick(ZH)
                    }
                    .to_string()
                })
                .collect();
            let mut body = String::new();
            for _ in 0..8 + rng.below(30) {
                if !body.is_empty() && !chinese {
                    body.push(' ');
                }
                body.push_str(if chinese { rng.pick(ZH) } else { rng.pick(EN) });
            }
            let usage = if rng.below(4) == 0 {
                0
            } else {
                (rng.next() % 1000) as u32
            };
            let last_used = (usage > 0).then(|| now - rng.next() % (90 * 86_400_000));
            IndexedTemplate {
                id: format!("t{i}"),
                title,
                shortcut,
                tags,
                folder: rng.pick(FOLDERS).to_string(),
                body_text: body,
                usage_count: usage,
                last_used_ms: last_used,
            }
        })
        .collect()
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn ms(d: Duration) -> String {
    format!("{:8.3}", d.as_secs_f64() * 1000.0)
}

fn time_query(
    index: &SearchIndex,
    query: &str,
    opts: &SearchOptions<'_>,
    runs: usize,
) -> (Vec<Duration>, usize) {
    let mut times = Vec::with_capacity(runs);
    let mut hits = 0;
    for _ in 0..runs {
        let start = Instant::now();
        let h = index.search(black_box(query), opts);
        times.push(start.elapsed());
        hits = h.len();
        black_box(h);
    }
    (times, hits)
}

fn main() {
    let sizes: Vec<usize> = std::env::var("QUIVER_BENCH_SIZES")
        .ok()
        .map(|s| s.split(',').filter_map(|x| x.trim().parse().ok()).collect())
        .unwrap_or_else(|| vec![10_000, 100_000]);
    let now = 1_800_000_000_000u64;
    for &n in &sizes {
        let templates = generate(n, 0x5eed);
        let builds = if n >= 100_000 { 3 } else { 5 };
        let mut build_times = Vec::new();
        let mut index = None;
        for _ in 0..builds {
            let start = Instant::now();
            let ix = SearchIndex::build(black_box(&templates));
            build_times.push(start.elapsed());
            index = Some(ix);
        }
        let index = index.unwrap_or_else(|| SearchIndex::build(&templates));
        build_times.sort();
        let han = templates.iter().filter(|t| !t.title.is_ascii()).count();
        println!();
        println!("{index:?}");
        println!(
            "== {n} templates ({han} with Chinese titles): build median {} ms, max {} ms",
            ms(percentile(&build_times, 0.5)).trim(),
            ms(*build_times.last().unwrap()).trim()
        );

        let boost: Vec<f32> = (0..n).map(|i| if i % 3 == 0 { 1.0 } else { 0.0 }).collect();
        let limit = std::env::var("QUIVER_BENCH_LIMIT")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(50);
        let opts = SearchOptions {
            limit,
            now_ms: Some(now),
            boost: Some(&boost),
        };
        let shortcut = templates
            .iter()
            .find_map(|t| t.shortcut.clone())
            .unwrap_or_default();
        let custom = std::env::var("QUIVER_BENCH_QUERY").ok();
        let queries: Vec<(&str, String)> = if let Some(q) = &custom {
            vec![("custom", q.clone())]
        } else {
            vec![
                ("shortcut exact", shortcut),
                ("1 char", "r".into()),
                ("prefix", "ref".into()),
                ("word", "shipping".into()),
                ("word 2", "refund".into()),
                ("rare word", "zenvex".into()),
                ("no match", "xyzzyq".into()),
                ("zh substring", "退款".into()),
                ("zh 1 char", "款".into()),
                ("pinyin initials", "tk".into()),
                ("pinyin initials 4", "tkzc".into()),
                ("pinyin full", "tuikuan".into()),
                ("pinyin mixed", "退kzc".into()),
                ("typo 1", "refnud".into()),
                ("typo 2", "shpiping".into()),
                ("two words", "refund policy".into()),
                ("two words, typing", "refund p".into()),
                ("three words", "order status 物流".into()),
                ("empty", "".into()),
            ]
        };
        let only = std::env::var("QUIVER_BENCH_ONLY").ok();
        let runs = std::env::var("QUIVER_BENCH_RUNS")
            .ok()
            .and_then(|r| r.parse().ok())
            .unwrap_or(if n >= 100_000 { 40 } else { 200 });
        println!(
            "{:<20} {:<18} {:>6} {:>9} {:>9}",
            "query", "text", "hits", "median ms", "p99 ms"
        );
        for (name, q) in &queries {
            if only.as_deref().is_some_and(|o| o != *name) {
                continue;
            }
            let (mut t, hits) = time_query(&index, q, &opts, runs);
            t.sort();
            println!(
                "{:<20} {:<18} {:>6} {} {}",
                name,
                format!("{q:?}"),
                hits,
                ms(percentile(&t, 0.5)),
                ms(percentile(&t, 0.99))
            );
        }

        if only.is_some() || custom.is_some() {
            continue;
        }
        // Every keystroke of a few typed queries, as the palette sees them.
        let typed = [
            "refund policy",
            "gretting card",
            "tkzc",
            "tuikuanzhengce",
            "退款 政策",
            "shipping delay",
        ];
        let mut all = Vec::new();
        let mut slowest = Vec::new();
        for phrase in typed {
            let chars: Vec<char> = phrase.chars().collect();
            for k in 1..=chars.len() {
                let prefix: String = chars[..k].iter().collect();
                let (mut t, _) = time_query(&index, &prefix, &opts, runs / 4);
                t.sort();
                slowest.push((percentile(&t, 0.5), prefix));
                all.extend(t);
            }
        }
        all.sort();
        println!(
            "{:<20} {:<18} {:>6} {} {}   (max {} ms over {} searches)",
            "every keystroke",
            "6 typed queries",
            "",
            ms(percentile(&all, 0.5)),
            ms(percentile(&all, 0.99)),
            ms(*all.last().unwrap()).trim(),
            all.len()
        );
        slowest.sort_by_key(|s| std::cmp::Reverse(s.0));
        let worst: Vec<String> = slowest
            .iter()
            .take(4)
            .map(|(d, q)| format!("{q:?} {} ms", ms(*d).trim()))
            .collect();
        println!("slowest keystrokes (median): {}", worst.join(", "));
    }
}
