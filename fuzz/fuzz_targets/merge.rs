//! The hub's merge (`quiver_shared::sync`) on arbitrary triples of templates built from the
//! input: it never panics and every law of `sync::laws::check` holds (each merged field comes
//! from a side, a side that kept the base yields to the other, tags as sets, the same result
//! both ways). The tail of the input is also read as a push body: decoding and checking a
//! revision never panics.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_shared::model::{Part, Template, Variable};
use quiver_shared::sync::{laws, wire::PushRequest};

const WORDS: [&str; 4] = ["A", "B", "", "你好"];

fn template(b: &mut impl Iterator<Item = u8>, from: Option<&Template>) -> Template {
    let mut t = from.cloned().unwrap_or(Template {
        id: "t".into(),
        title: "T".into(),
        folder: String::new(),
        tags: vec![],
        shortcut: None,
        revision: 1,
        variables: vec![],
        parts: vec![Part::Text { text: "x".into(), fallback: None }],
    });
    let mut next = || b.next().unwrap_or(0);
    let mask = next();
    if mask & 1 != 0 {
        t.title = WORDS[next() as usize % 4].into();
    }
    if mask & 2 != 0 {
        t.folder = WORDS[next() as usize % 4].into();
    }
    if mask & 4 != 0 {
        t.shortcut = match next() % 3 {
            0 => None,
            n => Some(format!("/{n}")),
        };
    }
    if mask & 8 != 0 {
        let bits = next();
        t.tags = (0..6).filter(|i| bits & (1 << i) != 0).map(|i| format!("t{i}")).collect();
    }
    if mask & 16 != 0 {
        let bits = next();
        t.variables = (0..4)
            .filter(|i| bits & (1 << i) != 0)
            .map(|i| Variable { name: format!("v{i}"), label: None, required: bits & 0x80 != 0 })
            .collect();
    }
    if mask & 32 != 0 {
        t.parts = (0..1 + next() % 3)
            .map(|_| Part::Text { text: WORDS[next() as usize % 4].into(), fallback: None })
            .collect();
    }
    t
}

fuzz_target!(|data: &[u8]| {
    let (head_bytes, tail) = data.split_at(data.len().min(24));
    let mut b = head_bytes.iter().copied();
    let base = template(&mut b, None);
    let head = template(&mut b, Some(&base));
    let other = template(&mut b, Some(&base));
    if let Err(e) = laws::check(&base, &head, &other) {
        panic!("{e}\nbase {base:?}\nhead {head:?}\nother {other:?}");
    }
    if let Ok(text) = std::str::from_utf8(tail) {
        if let Ok(push) = serde_json::from_str::<PushRequest>(text) {
            for r in &push.revisions {
                let _ = r.check();
            }
        }
    }
});
