use super::*;
use crate::model::Template;

fn t(id: &str, title: &str) -> IndexedTemplate {
    IndexedTemplate {
        id: id.into(),
        title: title.into(),
        ..Default::default()
    }
}

trait With {
    fn shortcut(self, s: &str) -> Self;
    fn tags(self, tags: &[&str]) -> Self;
    fn folder(self, f: &str) -> Self;
    fn body(self, b: &str) -> Self;
    fn used(self, count: u32, last: Option<u64>) -> Self;
}

impl With for IndexedTemplate {
    fn shortcut(mut self, s: &str) -> Self {
        self.shortcut = Some(s.into());
        self
    }
    fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = tags.iter().map(|s| s.to_string()).collect();
        self
    }
    fn folder(mut self, f: &str) -> Self {
        self.folder = f.into();
        self
    }
    fn body(mut self, b: &str) -> Self {
        self.body_text = b.into();
        self
    }
    fn used(mut self, count: u32, last: Option<u64>) -> Self {
        self.usage_count = count;
        self.last_used_ms = last;
        self
    }
}

/// Ids of the hits, in order.
fn ids(index: &SearchIndex, query: &str) -> Vec<String> {
    ids_with(index, query, &SearchOptions::default())
}

fn ids_with(index: &SearchIndex, query: &str, opts: &SearchOptions<'_>) -> Vec<String> {
    index
        .search(query, opts)
        .iter()
        .map(|h| index.id(h.index).to_string())
        .collect()
}

/// The single template's match for `query`, if any.
fn one(title: &str, query: &str) -> Option<(Field, Quality)> {
    let index = SearchIndex::build(&[t("x", title)]);
    let hits = index.search(query, &SearchOptions::default());
    hits.first()
        .map(|h| (h.matched.unwrap(), h.quality.unwrap()))
}

fn matches(title: &str, query: &str) -> bool {
    one(title, query).is_some()
}

const DAY: u64 = 86_400_000;

#[test]
fn exact_shortcut_ranks_first() {
    let index = SearchIndex::build(&[
        t("title-exact", "hi").used(1000, None),
        t("prefix", "Hi there").used(500, None),
        t("short", "Greeting").shortcut("hi"),
        t("tag", "Welcome").tags(&["hi"]),
    ]);
    let hits = index.search("hi", &SearchOptions::default());
    assert_eq!(index.id(hits[0].index), "short");
    assert_eq!(hits[0].matched, Some(Field::Shortcut));
    assert_eq!(hits[0].quality, Some(Quality::Exact));
    assert_eq!(ids(&index, "HI"), ["short", "title-exact", "tag", "prefix"]);
}

#[test]
fn exact_prefix_word_prefix_substring() {
    assert_eq!(
        one("Refund", "refund"),
        Some((Field::Title, Quality::Exact))
    );
    assert_eq!(
        one("Refund policy", "ref"),
        Some((Field::Title, Quality::Prefix))
    );
    assert_eq!(
        one("Partial refund", "ref"),
        Some((Field::Title, Quality::WordPrefix))
    );
    assert_eq!(
        one("Partial-refund", "ref"),
        Some((Field::Title, Quality::WordPrefix))
    );
    assert_eq!(
        one("Prefers email", "ref"),
        Some((Field::Title, Quality::Substring))
    );
    // The best occurrence counts, not the first.
    assert_eq!(
        one("Prefers refunds", "ref"),
        Some((Field::Title, Quality::WordPrefix))
    );
    assert_eq!(
        one("Refund policy", "refundx"),
        Some((Field::Title, Quality::Typo1))
    );
    assert!(!matches("Refund policy", "refundxyz"));
    assert!(!matches("Refund policy", "policies"));

    let index = SearchIndex::build(&[
        t("sub", "Prefers email"),
        t("word", "Partial refund"),
        t("prefix", "Refund policy"),
        t("exact", "Ref"),
    ]);
    assert_eq!(ids(&index, "ref"), ["exact", "prefix", "word", "sub"]);
}

#[test]
fn case_and_width_insensitive() {
    assert_eq!(
        one("VIP Upgrade", "vip"),
        Some((Field::Title, Quality::Prefix))
    );
    assert_eq!(
        one("vip upgrade", "VIP"),
        Some((Field::Title, Quality::Prefix))
    );
    assert_eq!(
        one("ＶＩＰ会员", "vip"),
        Some((Field::Title, Quality::Prefix))
    );
    assert_eq!(
        one("VIP会员", "ｖｉｐ"),
        Some((Field::Title, Quality::Prefix))
    );
    // Script change is a word start.
    assert_eq!(
        one("退款refund", "refund"),
        Some((Field::Title, Quality::WordPrefix))
    );
}

#[test]
fn chinese_substring() {
    assert_eq!(
        one("退款政策", "退款政策"),
        Some((Field::Title, Quality::Exact))
    );
    assert_eq!(
        one("退款政策", "退款"),
        Some((Field::Title, Quality::Prefix))
    );
    assert_eq!(
        one("申请退款流程", "退款"),
        Some((Field::Title, Quality::Substring))
    );
    assert_eq!(
        one("退款政策", "款政"),
        Some((Field::Title, Quality::Substring))
    );
    assert!(!matches("退款政策", "政退"));
    assert!(!matches("退款政策", "退货"));
}

#[test]
fn pinyin_full_initials_and_mixed() {
    for q in ["shaodeng", "sd", "shao", "shaod", "sdeng", "s", "sha"] {
        assert_eq!(
            one("稍等", q),
            Some((Field::Title, Quality::PinyinPrefix)),
            "{q}"
        );
    }
    assert_eq!(one("稍等", "deng"), Some((Field::Title, Quality::Pinyin)));
    assert_eq!(
        one("请稍等一下", "sd"),
        Some((Field::Title, Quality::Pinyin))
    );
    for q in [
        "tkzc",
        "tuikuan",
        "tuikuanzhengce",
        "tuikzc",
        "tkzhengc",
        "退kzc",
        "退款zc",
    ] {
        assert_eq!(
            one("退款政策", q),
            Some((Field::Title, Quality::PinyinPrefix)),
            "{q}"
        );
    }
    for q in ["zc", "zhengce", "kz"] {
        assert_eq!(
            one("退款政策", q),
            Some((Field::Title, Quality::Pinyin)),
            "{q}"
        );
    }
    // Spaces and punctuation between chars are skipped; Latin chars stand for themselves.
    assert_eq!(
        one("退款 · 政策", "tkzc"),
        Some((Field::Title, Quality::PinyinPrefix))
    );
    assert_eq!(
        one("VIP会员", "viphy"),
        Some((Field::Title, Quality::PinyinPrefix))
    );
    assert_eq!(
        one("VIP会员", "huiyuan"),
        Some((Field::Title, Quality::Pinyin))
    );
}

#[test]
fn pinyin_does_not_overmatch() {
    for q in [
        "ds",
        "sx",
        "shaodengx",
        "shaodg",
        "sdd",
        "shaoo",
        "tkcz",
        "tuikuanz",
        "hao",
    ] {
        assert!(!matches("稍等", q), "{q} must not match 稍等");
    }
    // Skipping a char is not allowed.
    assert!(!matches("退款政策", "tzc"));
    assert!(!matches("退款政策", "tuizheng"));
    // A char typed as itself must be whole; pinyin never applies to Latin-only titles, so
    // `gc` does not jump the space in "Greeting Card".
    assert!(!matches("Greeting Card", "gc"));
    assert!(!matches("Greeting Card", "greetingcard"));
}

#[test]
fn pinyin_heteronyms_and_u_umlaut() {
    // 行: xing and hang; 重: zhong and chong; 还: huan and hai.
    for q in ["yinhang", "yinxing", "yh", "yx"] {
        assert!(matches("银行", q), "{q}");
    }
    for q in ["zhongyao", "chongyao", "cy"] {
        assert!(matches("重要", q), "{q}");
    }
    for q in ["tuihuan", "th"] {
        assert!(matches("退还", q), "{q}");
    }
    for q in ["lvse", "luse", "ls"] {
        assert!(matches("绿色", q), "{q}");
    }
}

#[test]
fn pinyin_on_tags_too() {
    let index = SearchIndex::build(&[t("a", "Return form").tags(&["english", "退货"])]);
    let hits = index.search("th", &SearchOptions::default());
    assert_eq!(hits.len(), 1);
    assert_eq!(hits[0].matched, Some(Field::Tag));
    assert_eq!(hits[0].quality, Some(Quality::PinyinPrefix));
    // Tags are separate sequences: no match across the tag boundary.
    let index = SearchIndex::build(&[t("a", "x").tags(&["退", "货"])]);
    assert!(index.search("th", &SearchOptions::default()).is_empty());
}

#[test]
fn typo_tolerance() {
    // Substitution, transposition, deletion, insertion: one edit from 4 chars.
    assert_eq!(
        one("Greeting", "gretting"),
        Some((Field::Title, Quality::Typo1))
    );
    assert_eq!(
        one("Refund policy", "rfeund"),
        Some((Field::Title, Quality::Typo1))
    );
    assert_eq!(
        one("Refund policy", "refnd"),
        Some((Field::Title, Quality::Typo1))
    );
    assert_eq!(
        one("Refund policy", "reffund"),
        Some((Field::Title, Quality::Typo1))
    );
    assert_eq!(
        one("Refund policy", "polcy"),
        Some((Field::Title, Quality::Typo1))
    );
    assert_eq!(one("Hello", "hwllo"), Some((Field::Title, Quality::Typo1)));
    assert_eq!(one("Help", "hepl"), Some((Field::Title, Quality::Typo1)));
    // Two edits from 8 chars.
    assert_eq!(
        one("Shipment delayed", "shpimnet"),
        Some((Field::Title, Quality::Typo2))
    );
    assert!(
        !matches("Shipment delayed", "shpimnt"),
        "7 chars allow one edit only"
    );
    // Never for 1-3 chars.
    assert!(!matches("The order", "teh"));
    assert!(!matches("Greeting", "grt"));
    assert!(!matches("Get help", "gte"));
    // Two edits on a short word are too many.
    assert!(!matches("Refund", "rfnud"));
    // Typos only for Latin words.
    assert!(!matches("Greeting", "gréeting"));
}

#[test]
fn typo_on_the_word_being_typed_matches_prefixes() {
    // The last (or only) word may match a prefix with a typo: "grett" is on its way to "greeting".
    assert_eq!(
        one("Greeting", "grett"),
        Some((Field::Title, Quality::Typo1))
    );
    // An earlier word must match a whole word with a typo.
    let index = SearchIndex::build(&[t("a", "Greeting card")]);
    assert!(index
        .search("grett card", &SearchOptions::default())
        .is_empty());
    assert_eq!(ids(&index, "card grett"), ["a"]);
    assert_eq!(ids(&index, "gretting card"), ["a"]);
}

#[test]
fn short_queries_do_not_fuzz() {
    let index = SearchIndex::build(&[
        t("status", "Status"),
        t("send", "Send later"),
        t("shipped", "Shipped"),
        t("sd", "稍等"),
        t("sub", "Thousands"),
    ]);
    assert_eq!(ids(&index, "sd"), ["sd"]);
    assert_eq!(ids(&index, "sds"), Vec::<String>::new());
}

#[test]
fn typo_ranks_below_real_matches() {
    let index = SearchIndex::build(&[
        t("typo", "Greating cards").used(10_000, Some(0)),
        t("sub", "Season's greetings"),
    ]);
    assert_eq!(ids(&index, "greeting"), ["sub", "typo"]);
}

#[test]
fn field_weights() {
    let index = SearchIndex::build(&[
        t("body", "Alpha").body("Your parcel is on its way"),
        t("folder", "Beta").folder("Parcel/Lost"),
        t("tag", "Gamma").tags(&["parcel"]),
        t("title", "Parcel tracking"),
        t("shortcut", "Delta").shortcut("parcel"),
    ]);
    let hits = index.search("parcel", &SearchOptions::default());
    let got: Vec<_> = hits
        .iter()
        .map(|h| (index.id(h.index), h.matched.unwrap()))
        .collect();
    assert_eq!(
        got,
        [
            ("shortcut", Field::Shortcut),
            ("tag", Field::Tag),
            ("title", Field::Title),
            ("folder", Field::Folder),
            ("body", Field::Body),
        ]
    );
    // Tag exact (60) outranks title prefix (56); title prefix outranks tag prefix.
    assert_eq!(relevance(Field::Tag, Quality::Exact), 60);
    assert_eq!(
        ids(&index, "parc"),
        ["shortcut", "title", "tag", "folder", "body"]
    );
}

#[test]
fn body_matches_only_as_text() {
    let index = SearchIndex::build(&[t("a", "Alpha").body("We will refund the full amount")]);
    let hits = index.search("amount", &SearchOptions::default());
    assert_eq!(hits[0].matched, Some(Field::Body));
    assert_eq!(hits[0].quality, Some(Quality::WordPrefix));
    // No typo tolerance in bodies.
    assert!(index.search("amuont", &SearchOptions::default()).is_empty());
}

#[test]
fn multi_word_and() {
    let index = SearchIndex::build(&[
        t("both", "Refund").body("Shipping costs are refunded too"),
        t("title-only", "Refund"),
        t("tag", "Costs").tags(&["refund"]),
    ]);
    assert_eq!(ids(&index, "refund shipping"), ["both"]);
    assert_eq!(ids(&index, "shipping refund"), ["both"]);
    assert_eq!(ids(&index, "refund nothing"), Vec::<String>::new());
    let mut got = ids(&index, "costs refund");
    got.sort();
    assert_eq!(got, ["both", "tag"]);
    // Words of any kind combine: pinyin and Latin.
    let index = SearchIndex::build(&[t("a", "退款政策").tags(&["vip"]), t("b", "退款政策")]);
    assert_eq!(ids(&index, "tkzc vip"), ["a"]);
}

#[test]
fn phrase_outranks_scattered_words() {
    let index = SearchIndex::build(&[
        t("scattered", "Policy for a refund").used(100, None),
        t("phrase", "Refund policy"),
    ]);
    let hits = index.search("refund policy", &SearchOptions::default());
    assert_eq!(index.id(hits[0].index), "phrase");
    assert_eq!(hits[0].quality, Some(Quality::Exact));
    assert_eq!(index.id(hits[1].index), "scattered");
}

#[test]
fn usage_then_recency_then_boost_then_title() {
    let now = 1_800_000_000_000;
    let templates = [
        t("b-old", "Order status").used(10, Some(now - 60 * DAY)),
        t("c-new", "Order status").used(10, Some(now - DAY)),
        t("a-most", "Order status").used(100, None),
        t("d-never", "Order status"),
        t("e-never", "Order status"),
    ];
    let index = SearchIndex::build(&templates);
    let opts = SearchOptions {
        now_ms: Some(now),
        ..Default::default()
    };
    assert_eq!(
        ids_with(&index, "order", &opts),
        ["a-most", "c-new", "b-old", "d-never", "e-never"]
    );
    // Without a clock, recency is ignored: equal usage falls to title, then id.
    assert_eq!(
        ids(&index, "order"),
        ["a-most", "b-old", "c-new", "d-never", "e-never"]
    );
    // The boost (channel fit) is added to popularity.
    let boost = [0.0, 0.0, 0.0, 0.0, 10.0];
    let opts = SearchOptions {
        boost: Some(&boost),
        ..Default::default()
    };
    assert_eq!(ids_with(&index, "order", &opts)[0], "e-never");
    // Popularity never beats relevance.
    let index = SearchIndex::build(&[
        t("popular", "Status of your order").used(u32::MAX, Some(now)),
        t("exact", "Order"),
    ]);
    let opts = SearchOptions {
        now_ms: Some(now),
        boost: Some(&[100.0, 0.0]),
        ..Default::default()
    };
    assert_eq!(ids_with(&index, "order", &opts), ["exact", "popular"]);
}

#[test]
fn ties_break_by_title_then_id() {
    let index = SearchIndex::build(&[
        t("2", "Beta reply"),
        t("3", "alpha reply"),
        t("1", "Beta reply"),
    ]);
    assert_eq!(ids(&index, "reply"), ["3", "1", "2"]);
}

#[test]
fn empty_query_lists_by_usage_and_recency() {
    let now = 1_800_000_000_000;
    let index = SearchIndex::build(&[
        t("z", "Zulu").used(1, Some(now)),
        t("y", "Yankee").used(1, Some(now - 30 * DAY)),
        t("x", "X-ray").used(20, None),
        t("w", "Whiskey"),
    ]);
    let opts = SearchOptions {
        now_ms: Some(now),
        ..Default::default()
    };
    for q in ["", "   ", "\t\n"] {
        let hits = index.search(q, &opts);
        assert!(hits.iter().all(|h| h.matched.is_none() && h.relevance == 0));
        let got: Vec<_> = hits.iter().map(|h| index.id(h.index)).collect();
        assert_eq!(got, ["x", "z", "y", "w"]);
    }
}

#[test]
fn limit_and_empty_index() {
    let templates: Vec<_> = (0..20)
        .map(|i| t(&format!("{i:02}"), &format!("Reply {i:02}")))
        .collect();
    let index = SearchIndex::build(&templates);
    let opts = SearchOptions {
        limit: 3,
        ..Default::default()
    };
    assert_eq!(ids_with(&index, "reply", &opts), ["00", "01", "02"]);
    assert_eq!(ids_with(&index, "", &opts), ["00", "01", "02"]);
    let opts = SearchOptions {
        limit: 0,
        ..Default::default()
    };
    assert!(index.search("reply", &opts).is_empty());
    let empty = SearchIndex::build(&[]);
    assert!(empty.search("reply", &SearchOptions::default()).is_empty());
    assert!(empty.search("", &SearchOptions::default()).is_empty());
}

#[test]
fn tags_exact_and_prefix_per_tag() {
    let index = SearchIndex::build(&[t("a", "x").tags(&["hello world", "opening"])]);
    let hit = |q: &str| {
        index
            .search(q, &SearchOptions::default())
            .first()
            .map(|h| h.quality.unwrap())
    };
    assert_eq!(hit("opening"), Some(Quality::Exact));
    assert_eq!(hit("hello world"), Some(Quality::Exact));
    assert_eq!(hit("open"), Some(Quality::Prefix));
    assert_eq!(hit("world"), Some(Quality::WordPrefix));
    assert_eq!(hit("pening"), Some(Quality::Substring));
}

/// Skipping passes for a small limit must not change the top of the list.
#[test]
fn small_limit_is_a_prefix_of_the_full_list() {
    let words = [
        "order", "refund", "shipping", "greeting", "policy", "status", "delay", "address",
    ];
    let zh = ["稍等", "退款", "政策", "物流", "查询", "订单"];
    let mut templates = Vec::new();
    for i in 0..400usize {
        let a = words[i % words.len()];
        let b = words[(i / 3) % words.len()];
        let c = zh[(i / 5) % zh.len()];
        let title = if i % 3 == 0 {
            format!("{c}{}", zh[i % zh.len()])
        } else {
            format!("{a} {b}")
        };
        templates.push(
            t(&format!("t{i}"), &title)
                .tags(&[words[(i / 7) % words.len()]])
                .body(&format!("{b} {c} {a}s details"))
                .used((i * 37 % 101) as u32, None),
        );
    }
    let index = SearchIndex::build(&templates);
    let all = SearchOptions {
        limit: usize::MAX,
        ..Default::default()
    };
    for q in [
        "o", "or", "order", "sd", "tk", "dt", "grteting", "detail", "a", "s", "退", "ordr", "polcy",
    ] {
        let full = index.search(q, &all);
        for limit in [1, 5, 10, 50] {
            let opts = SearchOptions {
                limit,
                ..Default::default()
            };
            let top = index.search(q, &opts);
            assert_eq!(top, full[..limit.min(full.len())], "{q} limit {limit}");
        }
    }
}

#[test]
fn osa_distance() {
    use fuzzy::distance;
    assert_eq!(distance(b"abcd", b"abcd", 1, false), Some(0));
    assert_eq!(distance(b"abcd", b"abdc", 1, false), Some(1));
    assert_eq!(distance(b"abcd", b"abd", 1, false), Some(1));
    assert_eq!(distance(b"abcd", b"abxcd", 1, false), Some(1));
    assert_eq!(distance(b"abcd", b"axyd", 1, false), None);
    assert_eq!(distance(b"abcd", b"axyd", 2, false), Some(2));
    assert_eq!(distance(b"abcd", b"abcdefgh", 1, false), None);
    assert_eq!(distance(b"abcd", b"abcdefgh", 1, true), Some(0));
    assert_eq!(distance(b"abxd", b"abcdefgh", 1, true), Some(1));
    assert_eq!(distance(b"bacd", b"abcdefgh", 1, true), Some(1));
    assert_eq!(distance(b"wxyz", b"abcdefgh", 2, true), None);
}

#[test]
fn from_template_collects_every_part() {
    let json = r##"{"quiver": 1, "templates": [{
        "id": "t1", "title": "Card", "shortcut": "cd", "tags": ["x"], "folder": "A/B",
        "parts": [
            {"type": "text", "text": "Hello {{customer.name|there}}, order {{order.id}} ready"},
            {"type": "rich", "html": "<p>Rich&amp;bold</p><p><b>para</b>graph</p>"},
            {"type": "image", "url": "https://img.example/a.png"},
            {"type": "news", "articles": [{"title": "Spring sale", "digest": "All half price", "url": "https://e.x/1"}]},
            {"type": "product", "name": "Blue kettle", "image": "https://e.x/k.png",
             "segments": [{"text": "Only today"}],
             "fallback": {"type": "text", "text": "Kettle fallback text"}},
            {"type": "miniprogram", "title": "Mini shop", "pagepath": "pages/x", "pic_url": "https://e.x/p.png",
             "name": "Shop app"}
        ]}]}"##;
    let lib = crate::model::Library::from_json(json).unwrap();
    let tpl: &Template = &lib.templates[0];
    let it = IndexedTemplate::from_template(tpl, 7, Some(42));
    assert_eq!(it.id, "t1");
    assert_eq!(it.shortcut.as_deref(), Some("cd"));
    assert_eq!(it.folder, "A/B");
    assert_eq!((it.usage_count, it.last_used_ms), (7, Some(42)));
    for needle in [
        "Hello there, order  ready",
        "Rich&bold",
        "paragraph",
        "Spring sale",
        "All half price",
        "Blue kettle",
        "Only today",
        "Kettle fallback text",
        "Mini shop",
        "Shop app",
    ] {
        assert!(
            it.body_text.contains(needle),
            "{needle:?} in {:?}",
            it.body_text
        );
    }
    assert!(!it.body_text.contains("customer"));
    assert!(!it.body_text.contains("img.example"));
    let index = SearchIndex::build(&[it]);
    assert_eq!(ids(&index, "kettle fallback"), ["t1"]);
}

#[test]
fn odd_input_does_not_panic() {
    let index = SearchIndex::build(&[
        t("a", "退款政策")
            .tags(&["", "  ", "标签"])
            .body("😀 emoji ä ö"),
        t("b", "").shortcut(""),
    ]);
    let long = "x".repeat(10_000);
    let long_zh = "稍".repeat(100);
    for q in [
        "😀",
        "ä",
        "\u{1f}",
        "\n",
        "a\u{0}b",
        &long,
        &long_zh,
        "｜",
        "-",
        "'",
        "sd sd sd sd sd sd sd sd sd sd",
    ] {
        let _ = index.search(q, &SearchOptions::default());
    }
    assert_eq!(ids(&index, "emoji"), ["a"]);
    assert_eq!(ids(&index, "bq"), ["a"]);
}

/// The vocabulary's depth-first walk finds exactly what the plain distance finds.
#[test]
fn vocab_walk_small() {
    let mut b = fuzzy::VocabBuilder::new();
    b.add(0, Field::Title, "dbbebbre dbbeo obbe odabedr odbrercebd");
    let vocab = b.finish();
    let mut got = Vec::new();
    vocab.search(b"odbbe", 1, true, |_, d| got.push(d));
    assert_eq!(got.len(), 5);
}

#[test]
fn vocab_walk_matches_brute_force() {
    let mut seed = 12345u64;
    let mut rnd = |n: u64| {
        seed = seed
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        (seed >> 33) % n
    };
    let letters = b"abcdeor";
    let mut words: Vec<String> = Vec::new();
    for _ in 0..600 {
        let len = 3 + rnd(8) as usize;
        words.push(
            (0..len)
                .map(|_| letters[rnd(letters.len() as u64) as usize] as char)
                .collect(),
        );
    }
    let text = words.join(" ");
    let mut b = fuzzy::VocabBuilder::new();
    b.add(0, Field::Title, &text);
    let vocab = b.finish();
    let mut distinct = words.clone();
    distinct.sort();
    distinct.dedup();
    for _ in 0..300 {
        let len = 4 + rnd(7) as usize;
        let q: String = (0..len)
            .map(|_| letters[rnd(letters.len() as u64) as usize] as char)
            .collect();
        let k = fuzzy::allowed_edits(&q);
        for prefix in [false, true] {
            let mut got = Vec::new();
            vocab.search(q.as_bytes(), k, prefix, |_, d| got.push(d));
            let want: Vec<u8> = distinct
                .iter()
                .filter_map(|w| fuzzy::distance(q.as_bytes(), w.as_bytes(), k, prefix))
                .collect();
            assert_eq!(got, want, "{q} prefix={prefix}");
        }
    }
}

/// The compact pinyin table (`pinyin_table.rs`) is generated from the `pinyin` crate's data, so
/// that the crate (450 KB of tables in wasm) stays out of the build. Regenerate with
/// `UPDATE_EXPECT=1 cargo test -p quiver-shared pinyin_table`.
#[test]
fn pinyin_table_is_up_to_date() {
    let want = generate_pinyin_table();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/src/search/pinyin_table.rs");
    let have = std::fs::read_to_string(path).unwrap_or_default();
    if have != want {
        if std::env::var_os("UPDATE_EXPECT").is_some() {
            std::fs::write(path, &want).unwrap();
        } else {
            panic!(
                "{path} is stale: run `UPDATE_EXPECT=1 cargo test -p quiver-shared pinyin_table`"
            );
        }
    }
}

/// Every char's toneless readings from the `pinyin` crate, `ü` as `v`, in the crate's order
/// (most common first), from `pinyin::FIRST_CHAR` on.
fn crate_readings() -> Vec<Vec<String>> {
    use ::pinyin::ToPinyinMulti;
    let mut per_char: Vec<Vec<String>> = Vec::new();
    for cp in pinyin::FIRST_CHAR..=pinyin::LAST_CHAR {
        let mut readings: Vec<String> = Vec::new();
        if let Some(multi) = char::from_u32(cp).and_then(|c| c.to_pinyin_multi()) {
            for p in multi {
                let r: String = p
                    .plain()
                    .chars()
                    .map(|c| match c {
                        'ü' => 'v',
                        'ê' => 'e',
                        c => c,
                    })
                    .filter(|c| c.is_ascii_lowercase())
                    .collect();
                if !r.is_empty() && !readings.contains(&r) {
                    readings.push(r);
                }
            }
        }
        per_char.push(readings);
    }
    per_char
}

/// The table's readings are the crate's, for every char it covers (and none outside).
#[test]
fn pinyin_readings_are_the_crates() {
    let want = crate_readings();
    for (i, want) in want.iter().enumerate() {
        let c = char::from_u32(pinyin::FIRST_CHAR + i as u32).unwrap();
        let got: Vec<&str> = pinyin::readings(c).collect();
        assert_eq!(got, *want, "{c} U+{:04X}", c as u32);
    }
    for c in ['a', '\u{4dff}', '\u{a000}', '\u{20000}'] {
        assert_eq!(pinyin::readings(c).next(), None, "{c:?}");
    }
}

/// One `u8` array of the table, 32 to a line.
fn write_bytes(out: &mut String, doc: &str, name: &str, bytes: &[u8]) {
    use std::fmt::Write;
    writeln!(out, "/// {doc}").unwrap();
    writeln!(out, "pub(super) static {name}: [u8; {}] = [", bytes.len()).unwrap();
    for chunk in bytes.chunks(32) {
        let line: Vec<String> = chunk.iter().map(|v| v.to_string()).collect();
        writeln!(out, "    {},", line.join(", ")).unwrap();
    }
    out.push_str("];\n\n");
}

/// Bit `i` (of byte `i / 8`, from its low bit) set when `values[i]` has bit 8 set.
fn high_bits(values: &[usize]) -> Vec<u8> {
    let mut bits = vec![0u8; values.len().div_ceil(8)];
    for (i, v) in values.iter().enumerate() {
        assert!(*v < 512, "{v} does not fit in 9 bits");
        if v >> 8 != 0 {
            bits[i / 8] |= 1 << (i % 8);
        }
    }
    bits
}

fn generate_pinyin_table() -> String {
    use std::fmt::Write;
    let per_char = crate_readings();
    let mut syllables: Vec<&str> = per_char.iter().flatten().map(|s| s.as_str()).collect();
    syllables.sort_unstable();
    syllables.dedup();
    let index = |s: &str| syllables.binary_search(&s).unwrap();

    let mut out = String::new();
    out.push_str(
        "// @generated by `UPDATE_EXPECT=1 cargo test -p quiver-shared pinyin_table` from the\n\
         // `pinyin` crate's data (mozillazg/pinyin-data, MIT). Do not edit.\n\
         //\n\
         // Toneless readings (`ü` written `v`) of the CJK Unified Ideographs U+4E00..U+9FFF.\n\
         //\n\
         // Numbers of 9 and 16 bits are split into byte planes (a low-byte array, and a bit array or\n\
         // a high-byte array): the wasm core ships gzipped, and gzip packs bytes of one kind far\n\
         // better than interleaved `u16`/`u32` (docs/benchmarks.md).\n\n",
    );
    writeln!(
        out,
        "pub(super) static SYLLABLES: [&str; {}] = [",
        syllables.len()
    )
    .unwrap();
    for chunk in syllables.chunks(12) {
        let line: Vec<String> = chunk.iter().map(|s| format!("{s:?}")).collect();
        writeln!(out, "    {},", line.join(", ")).unwrap();
    }
    out.push_str("];\n\n");
    // Per char from `FIRST_CHAR`: 1 + the index of its first reading in `SYLLABLES`, 0 for none.
    let firsts: Vec<usize> = per_char
        .iter()
        .map(|r| r.first().map_or(0, |s| index(s) + 1))
        .collect();
    let low = |v: &[usize]| -> Vec<u8> { v.iter().map(|x| (x & 0xff) as u8).collect() };
    write_bytes(
        &mut out,
        "Per char from `FIRST_CHAR`: 1 + the index of its first reading in `SYLLABLES` (0 for none), low byte.",
        "FIRST_LOW",
        &low(&firsts),
    );
    write_bytes(
        &mut out,
        "Bit 8 of each `FIRST_LOW` value, bit `i % 8` of byte `i / 8`.",
        "FIRST_HIGH",
        &high_bits(&firsts),
    );
    // Further readings: (char - FIRST_CHAR, index in SYLLABLES), sorted by char.
    let extra: Vec<(usize, usize)> = per_char
        .iter()
        .enumerate()
        .flat_map(|(i, r)| r.iter().skip(1).map(move |s| (i, s)))
        .map(|(i, s)| (i, index(s)))
        .collect();
    let chars: Vec<usize> = extra.iter().map(|e| e.0).collect();
    let syls: Vec<usize> = extra.iter().map(|e| e.1).collect();
    write_bytes(
        &mut out,
        "Further readings, sorted by char: the char's offset from `FIRST_CHAR`, high byte.",
        "EXTRA_CHAR_HIGH",
        &chars.iter().map(|c| (c >> 8) as u8).collect::<Vec<u8>>(),
    );
    write_bytes(
        &mut out,
        "The char's offset from `FIRST_CHAR`, low byte.",
        "EXTRA_CHAR_LOW",
        &low(&chars),
    );
    write_bytes(
        &mut out,
        "The reading's index in `SYLLABLES`, low byte.",
        "EXTRA_SYLLABLE_LOW",
        &low(&syls),
    );
    write_bytes(
        &mut out,
        "Bit 8 of each `EXTRA_SYLLABLE_LOW` value, bit `i % 8` of byte `i / 8`.",
        "EXTRA_SYLLABLE_HIGH",
        &high_bits(&syls),
    );
    out.truncate(out.len() - 1);
    out
}

fn snapshot_corpus() -> Vec<IndexedTemplate> {
    vec![
        t("a", "稍等一下").tags(&["退款", "售后"]).shortcut("sd"),
        t("b", "Greeting").body("Hello {{customer.name}}, how can I help?"),
        t("c", "Refund policy")
            .folder("售后/退款")
            .used(5, Some(1_700_000_000_000)),
        t("d", "行李 hang xing").tags(&["物流"]).used(1, None),
        t("e", "").body("only a body"),
    ]
}

#[test]
fn snapshot_round_trip_searches_the_same() {
    let built = SearchIndex::build(&snapshot_corpus());
    let bytes = built.snapshot();
    let loaded = SearchIndex::from_snapshot(bytes.clone()).unwrap();
    assert_eq!(loaded.len(), built.len());
    assert_eq!(
        loaded.snapshot(),
        bytes,
        "a loaded index writes the same bytes"
    );
    let boost = [0.0, 1.0, 0.5, 0.0, 0.0];
    let opts = SearchOptions {
        limit: 10,
        now_ms: Some(1_700_000_100_000),
        boost: Some(&boost),
    };
    for q in [
        "",
        "sd",
        "shaodeng",
        "tk",
        "gret",
        "grett",
        "refund pol",
        "售后",
        "hang",
        "body",
        "x",
    ] {
        let a: Vec<_> = built.search(q, &opts);
        let b: Vec<_> = loaded.search(q, &opts);
        assert_eq!(a, b, "query {q:?}");
    }
    // The empty library too.
    let empty = SearchIndex::build(&[]);
    assert!(SearchIndex::from_snapshot(empty.snapshot())
        .unwrap()
        .is_empty());
}

#[test]
fn snapshot_cut_or_changed_is_refused_or_safe() {
    let bytes = SearchIndex::build(&snapshot_corpus()).snapshot();
    // Every cut is refused.
    for len in 0..bytes.len() {
        let e = SearchIndex::from_snapshot(bytes[..len].to_vec()).unwrap_err();
        assert!(e.starts_with("search index snapshot: "), "{e}");
    }
    let mut more = bytes.clone();
    more.push(0);
    assert!(SearchIndex::from_snapshot(more).is_err());
    let mut v9 = bytes.clone();
    v9[4] = 9;
    assert!(SearchIndex::from_snapshot(v9)
        .unwrap_err()
        .contains("format 9"));
    // Any single changed byte is either refused or gives an index that searches without panicking.
    for i in 0..bytes.len() {
        for x in [0x00, 0x7f, 0xff] {
            let mut b = bytes.clone();
            b[i] ^= x | 1;
            if let Ok(ix) = SearchIndex::from_snapshot(b) {
                for q in ["", "sd", "shaodeng", "grett", "售后", "refund pol"] {
                    ix.search(q, &SearchOptions::default());
                }
            }
        }
    }
}

/// The palette bench's generated library (tests/e2e/bench/palette.mjs), with usage, folders and
/// Chinese bodies on some templates.
fn generated_corpus(n: usize) -> Vec<IndexedTemplate> {
    let words = [
        "order", "refund", "shipping", "delay", "greeting", "invoice", "coupon", "address",
        "payment", "return",
    ];
    let han = [
        "稍等", "退款", "发货", "订单", "优惠", "地址", "支付", "感谢", "售后", "物流",
    ];
    (0..n)
        .map(|i| {
            let (w, h) = (words[i % words.len()], han[(i * 7) % han.len()]);
            let title = if i % 3 == 0 {
                format!("{h}{i}")
            } else {
                format!("{w} template {i}")
            };
            let mut x = t(&format!("gen-{i}"), &title)
                .shortcut(&format!("{}{i}", &w[..2]))
                .tags(&[w, h])
                .body(&format!(
                    "Generated body {i}: about your {w} {h}, reply soon."
                ));
            if i % 7 == 0 {
                x = x.folder(&format!("{h}/{w}"));
            }
            if i % 11 == 0 {
                x = x.used(
                    (i % 13) as u32,
                    (i % 2 == 0).then_some(1_700_000_000_000 + i as u64),
                );
            }
            x
        })
        .collect()
}

#[test]
fn snapshot_of_a_generated_library_searches_the_same() {
    let corpus = generated_corpus(3_000);
    let built = SearchIndex::build(&corpus);
    let bytes = built.snapshot();
    let loaded = SearchIndex::from_snapshot(bytes.clone()).unwrap();
    assert_eq!(loaded.len(), corpus.len());
    assert_eq!(loaded.snapshot(), bytes);
    for (i, x) in corpus.iter().enumerate() {
        assert_eq!(loaded.id(i), x.id);
    }
    let boost: Vec<f32> = (0..corpus.len()).map(|i| (i % 3) as f32 * 0.5).collect();
    let now = Some(1_700_000_500_000);
    // Every prefix of the bench's queries, and some more, with and without boost and clock.
    let queries = [
        "shd",
        "refund",
        "order status",
        "tkzc",
        "greting",
        "coupon 12",
        "退款",
        "sd 12",
        "shaodeng",
        "物流/",
        "gen-12",
        "reply soon",
        "xyz",
        "",
    ];
    for q in queries {
        let cut: Vec<usize> = q.char_indices().map(|(i, _)| i).skip(1).collect();
        for k in cut.into_iter().chain([q.len()]) {
            let q = &q[..k];
            for (limit, boost) in [(50, None), (5, Some(&boost[..])), (usize::MAX, None)] {
                let opts = SearchOptions {
                    limit,
                    now_ms: now,
                    boost,
                };
                assert_eq!(
                    built.search(q, &opts),
                    loaded.search(q, &opts),
                    "query {q:?}"
                );
            }
        }
    }
}
