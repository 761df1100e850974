//! The send meter driven by arbitrary operations and clock steps: it never panics, and under
//! every rule the safety properties hold for what it lets go (checked against an independent
//! model):
//! - nothing of a key begins while a send of it is in flight;
//! - no send of a key begins sooner than the interval after the previous one was done;
//! - no window holds as many sends as the rule's count when another begins;
//! - a WeChat send only begins when the quota (replayed by `quota::check`) allows it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_shared::meter::{Begin, Meter, Rule, Window};
use quiver_shared::wechat::quota::{self, Interaction};

const KEYS: [&str; 2] = ["a", "b"];

#[derive(Default)]
struct Model {
    /// Done times (any outcome, and expiries).
    done: Vec<u64>,
    /// Done times of sends that went out (or may have).
    went: Vec<u64>,
    actions: Vec<Interaction>,
    in_flight: Option<i64>,
}

fuzz_target!(|data: &[u8]| {
    let rules = [
        Rule::UDESK,
        Rule {
            min_interval_ms: 100,
            lease_ms: 2_000,
            window: Some(Window {
                count: 3,
                ms: 5_000,
            }),
            quota: None,
        },
        Rule::WECHAT_MP,
    ];
    let Some((&r, ops)) = data.split_first() else {
        return;
    };
    let rule = rules[usize::from(r) % rules.len()];
    let mut m = Meter::new();
    let mut model: [Model; 2] = Default::default();
    let mut now: u64 = 1_000_000;
    let mut next_id: i64 = 1;
    let mut ids: Vec<(i64, usize)> = Vec::new();
    for op in ops.chunks(2) {
        let (a, b) = (op[0], *op.get(1).unwrap_or(&0));
        let k = usize::from(b) % KEYS.len();
        // expiries first, so that `begin` finds none of its own
        for (id, key) in m.expire_keys(now) {
            let k = KEYS.iter().position(|x| *x == key).unwrap();
            assert_eq!(model[k].in_flight, Some(id));
            model[k].in_flight = None;
            model[k].done.push(now);
            model[k].went.push(now);
        }
        match a % 8 {
            0 | 1 => {
                let _ = m.try_reserve(KEYS[k], rule, next_id, now);
                ids.push((next_id, k));
                next_id += 1;
            }
            2 | 3 if !ids.is_empty() => {
                let (id, k) = ids[usize::from(b) % ids.len()];
                if m.begin(id, now) != Begin::Go {
                    continue;
                }
                let s = &mut model[k];
                assert_eq!(s.in_flight, None, "went while another was in flight");
                if let Some(&last) = s.done.iter().max() {
                    assert!(now >= last + rule.min_interval_ms, "interval");
                }
                if let Some(w) = rule.window {
                    let inside = s.done.iter().filter(|&&t| t + w.ms > now).count();
                    assert!(inside < w.count as usize, "window");
                }
                if let Some(q) = rule.quota {
                    assert!(quota::check(&q, &s.actions, &s.went, now).is_ok(), "quota");
                }
                ids.retain(|(i, _)| *i != id);
                if b % 3 == 0 {
                    // left in flight until its lease runs out
                    s.in_flight = Some(id);
                } else {
                    now += u64::from(b % 50);
                    let ok = b % 2 == 0;
                    assert!(m.finish(id, now, ok));
                    s.done.push(now);
                    if ok {
                        s.went.push(now);
                    }
                }
            }
            4 if !ids.is_empty() => {
                let (id, _) = ids[usize::from(b) % ids.len()];
                m.cancel(id);
            }
            5 => {
                let act = if b % 2 == 0 {
                    Interaction::UserMessage { at_ms: now }
                } else {
                    Interaction::EnterSession { at_ms: now }
                };
                m.observe(KEYS[k], rule, act);
                model[k].actions.push(act);
            }
            6 => m.gc(now),
            _ => now += u64::from(b) * 97,
        }
    }
});
