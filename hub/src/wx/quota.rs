//! The customer's quota as the hub shows and enforces it (research §4.8): the core's
//! `wechat::quota::check` ("each action resets to its own maximum") is one reading of WeChat's
//! 2017 wording; the other ("the larger of the applicable limits") lets more through. The hub
//! refuses locally only where both readings refuse, and WeChat's own 45015/45047 answers, once
//! learned, win until the customer acts again. Pure functions.

use quiver_shared::wechat::quota::{self, Allowance, Interaction, QuotaRefusal, Rules};
use serde::Serialize;

/// What the conversation shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Quota {
    /// Sends left (null: unknown, e.g. refused).
    pub left: Option<u32>,
    pub window_ends_ms: Option<u64>,
    pub refusal: Option<Refusal>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub errcode: i64,
    /// WeChat answered it (rather than the hub predicting it).
    pub learned: bool,
    pub reason: String,
}

/// The "larger" reading: an action sets the count to the largest allowance among the actions
/// whose windows are open at that instant (itself included).
pub fn check_larger(
    rules: &Rules,
    interactions: &[Interaction],
    sends_ms: &[u64],
    now_ms: u64,
) -> Result<quota::Allowed, QuotaRefusal> {
    let allowance = |i: &Interaction| -> Allowance {
        match i {
            Interaction::UserMessage { .. } => rules.user_message,
            Interaction::EnterSession { .. } => rules.enter_session,
        }
    };
    // Rewrite each action's count as the largest open at its time, then run the core's replay.
    let mut widened = vec![];
    for i in interactions {
        let t = i.at_ms();
        let count = interactions
            .iter()
            .filter(|o| o.at_ms() <= t && t < o.at_ms().saturating_add(allowance(o).window_ms))
            .map(|o| allowance(o).count)
            .max()
            .unwrap_or(allowance(i).count);
        widened.push((*i, count));
    }
    // Replay with per-action counts (the core takes counts per kind, so replay here).
    // (time, 0 = action / 1 = send, the action's (count, window))
    type Step = (u64, u8, Option<(u32, u64)>);
    let mut timeline: Vec<Step> = widened
        .iter()
        .map(|(i, c)| (i.at_ms(), 0, Some((*c, allowance(i).window_ms))))
        .chain(sends_ms.iter().map(|&s| (s, 1, None)))
        .filter(|(t, _, _)| *t <= now_ms)
        .collect();
    timeline.sort_by_key(|(t, o, _)| (*t, *o));
    let (mut remaining, mut end): (u32, Option<u64>) = (0, None);
    for (t, _, a) in timeline {
        match a {
            Some((count, window)) => {
                remaining = count;
                let e = t.saturating_add(window);
                end = Some(end.map_or(e, |x| x.max(e)));
            }
            None => {
                if end.is_some_and(|e| t < e) && remaining > 0 {
                    remaining -= 1;
                }
            }
        }
    }
    match end {
        Some(e) if now_ms < e && remaining > 0 => Ok(quota::Allowed {
            remaining,
            window_ends_at_ms: e,
        }),
        Some(e) if now_ms < e => Err(QuotaRefusal::CountExhausted {
            window_ends_at_ms: e,
        }),
        ended => Err(QuotaRefusal::OutOfTime {
            window_ended_at_ms: ended,
        }),
    }
}

/// The conversation's quota at `now_ms`: `learned` is WeChat's last 45015/45047 answer when no
/// customer action came after it.
pub fn assess(
    interactions: &[Interaction],
    sends_ms: &[u64],
    learned: Option<i64>,
    now_ms: u64,
) -> Quota {
    let rules = Rules::CURRENT;
    let own = quota::check(&rules, interactions, sends_ms, now_ms);
    let larger = check_larger(&rules, interactions, sends_ms, now_ms);
    if let Some(code) = learned {
        return Quota {
            left: Some(0),
            window_ends_ms: own
                .as_ref()
                .ok()
                .map(|a| a.window_ends_at_ms)
                .or(larger.as_ref().ok().map(|a| a.window_ends_at_ms)),
            refusal: Some(Refusal {
                errcode: code,
                learned: true,
                reason: quiver_shared::wechat::api::meaning(code)
                    .unwrap_or("WeChat refused")
                    .to_string(),
            }),
        };
    }
    match (own, larger) {
        (Ok(a), _) | (Err(_), Ok(a)) => Quota {
            left: Some(a.remaining),
            window_ends_ms: Some(a.window_ends_at_ms),
            refusal: None,
        },
        (Err(r), Err(_)) => Quota {
            left: Some(0),
            window_ends_ms: match r {
                QuotaRefusal::CountExhausted { window_ends_at_ms } => Some(window_ends_at_ms),
                QuotaRefusal::OutOfTime { .. } => None,
            },
            refusal: Some(Refusal {
                errcode: r.errcode(),
                learned: false,
                reason: r.to_string(),
            }),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const H: u64 = 3_600_000;

    #[test]
    fn both_readings() {
        let msg = Interaction::UserMessage { at_ms: 0 };
        let enter = Interaction::EnterSession { at_ms: H };
        // own reading: entering resets to 2; larger: to 5
        let q = assess(&[msg, enter], &[H + 1, H + 2], None, H + 3);
        assert_eq!(
            q.left,
            Some(3),
            "the larger reading still allows: let WeChat decide"
        );
        let q = assess(&[msg], &[1, 2, 3, 4, 5], None, 10);
        assert_eq!(q.refusal.as_ref().map(|r| r.errcode), Some(45047));
        assert!(!q.refusal.unwrap().learned);
        let q = assess(&[msg], &[], None, 48 * H);
        assert_eq!(q.refusal.map(|r| r.errcode), Some(45015));
        let q = assess(&[msg], &[], None, 1);
        assert_eq!((q.left, q.window_ends_ms), (Some(5), Some(48 * H)));
        let q = assess(&[msg], &[], Some(45047), 1);
        assert_eq!(
            q.refusal.map(|r| (r.errcode, r.learned)),
            Some((45047, true))
        );
        assert_eq!(q.left, Some(0));
        assert!(assess(&[], &[], None, 1).refusal.is_some());
    }
}
