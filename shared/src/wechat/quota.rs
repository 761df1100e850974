//! When the daemon may still send a customer-service message to a user (platform-spec §4.7).
//!
//! | user action | messages allowed | window |
//! |---|---|---|
//! | the user sends a message | 5 | 48 h |
//! | the user enters the session (contact button) | 2 | 1 min |
//!
//! The official wording (2017, mini-program 客服消息下发条件): "可发送客服消息条数不累加，上述用户动作会
//! 触发可下发条数及可下发时限的更新，可下发消息条数更新为当前可下发条数限制的最大值，有效下发时间限制也
//! 更新为最长有效时间。" — counts do not add up; each action updates both the count and the deadline.
//!
//! # The exact reading implemented here
//!
//! Replay the user's actions and the sends already made in time order; at equal times actions come
//! before sends. State: `remaining` (initially 0) and `window_end` (initially none).
//!
//! 1. An action at `t` with allowance (`count`, `window`) sets `remaining = count` — a reset to
//!    *that action's* maximum, not a sum and not the larger of old and new — and
//!    `window_end = max(window_end, t + window)`: the longest applicable deadline. So entering the
//!    session an hour after a message leaves 2 sends (not 5, not 7) until 48 h after the message.
//! 2. A send at `s` uses one of `remaining` if `s < window_end` and `remaining > 0`; otherwise WeChat
//!    refused it and it used nothing (it is ignored).
//! 3. A send at `now` is allowed if `now < window_end` (the window is half-open: a message at `t`
//!    allows sends until `t + 48 h − 1 ms`, refuses at `t + 48 h`) and `remaining > 0`.
//!    Outside any window the refusal is **45015**; inside with nothing left it is **45047**.
//!
//! Actions and sends later than `now` have not happened yet and are ignored. Times are
//! milliseconds since the epoch (push `CreateTime` is in seconds: multiply by 1000). The numbers
//! have changed before (3 / 48 h and 1 / 1 min in 2017), so they are a parameter, [`Rules`].

use super::push::{Push, PushKind};
use serde::{Deserialize, Serialize};

pub const MINUTE_MS: u64 = 60_000;
pub const HOUR_MS: u64 = 60 * MINUTE_MS;

/// What one kind of user action allows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Allowance {
    pub count: u32,
    pub window_ms: u64,
}

/// The allowances per user action.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rules {
    pub user_message: Allowance,
    pub enter_session: Allowance,
}

impl Rules {
    /// The current documentation: 5 in 48 h after a message, 2 in 1 min after entering.
    pub const CURRENT: Rules = Rules {
        user_message: Allowance {
            count: 5,
            window_ms: 48 * HOUR_MS,
        },
        enter_session: Allowance {
            count: 2,
            window_ms: MINUTE_MS,
        },
    };
}

impl Default for Rules {
    fn default() -> Self {
        Rules::CURRENT
    }
}

/// A user action that opens or renews the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum Interaction {
    /// The user sent a message (any push that is not an event).
    UserMessage { at_ms: u64 },
    /// The user entered the session (`user_enter_tempsession`).
    EnterSession { at_ms: u64 },
}

impl Interaction {
    pub fn at_ms(self) -> u64 {
        match self {
            Interaction::UserMessage { at_ms } | Interaction::EnterSession { at_ms } => at_ms,
        }
    }

    /// The action a push records, if any (other events open no window).
    pub fn from_push(push: &Push) -> Option<Interaction> {
        let at_ms = u64::try_from(push.create_time).ok()?.checked_mul(1000)?;
        if push.is_user_message() {
            Some(Interaction::UserMessage { at_ms })
        } else if matches!(push.kind, PushKind::UserEnterTempSession { .. }) {
            Some(Interaction::EnterSession { at_ms })
        } else {
            None
        }
    }
}

/// A send is allowed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Allowed {
    /// Sends still allowed, this one included (at least 1).
    pub remaining: u32,
    /// The first instant no send is allowed (exclusive end of the window).
    pub window_ends_at_ms: u64,
}

/// A send is not allowed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum QuotaRefusal {
    /// 45015: no window is open (no action yet, or the last window ended at the time given).
    OutOfTime { window_ended_at_ms: Option<u64> },
    /// 45047: the window is open until the time given but its count is used up.
    CountExhausted { window_ends_at_ms: u64 },
}

impl QuotaRefusal {
    /// The `errcode` WeChat answers in this case.
    pub fn errcode(self) -> i64 {
        match self {
            QuotaRefusal::OutOfTime { .. } => 45015,
            QuotaRefusal::CountExhausted { .. } => 45047,
        }
    }
}

impl std::fmt::Display for QuotaRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            QuotaRefusal::OutOfTime { .. } => f.write_str(
                "45015: outside the reply window; wait for the user to write or open the session",
            ),
            QuotaRefusal::CountExhausted { .. } => f.write_str(
                "45047: the replies allowed by the user's last action are used up; wait for the user",
            ),
        }
    }
}

impl std::error::Error for QuotaRefusal {}

/// Whether a send at `now_ms` is allowed, given the user's actions and the sends already made
/// (successful sends; order does not matter). See the module documentation for the rules.
pub fn check(
    rules: &Rules,
    interactions: &[Interaction],
    sends_ms: &[u64],
    now_ms: u64,
) -> Result<Allowed, QuotaRefusal> {
    // (time, 0 = action / 1 = send, allowance)
    let mut timeline: Vec<(u64, u8, Option<Allowance>)> = interactions
        .iter()
        .map(|i| {
            let a = match i {
                Interaction::UserMessage { .. } => rules.user_message,
                Interaction::EnterSession { .. } => rules.enter_session,
            };
            (i.at_ms(), 0, Some(a))
        })
        .chain(sends_ms.iter().map(|&s| (s, 1, None)))
        .filter(|(t, _, _)| *t <= now_ms)
        .collect();
    timeline.sort_by_key(|(t, order, _)| (*t, *order));
    let mut remaining = 0u32;
    let mut window_end: Option<u64> = None;
    for (t, _, allowance) in timeline {
        match allowance {
            Some(a) => {
                remaining = a.count;
                let end = t.saturating_add(a.window_ms);
                window_end = Some(window_end.map_or(end, |e| e.max(end)));
            }
            None => {
                if window_end.is_some_and(|e| t < e) && remaining > 0 {
                    remaining -= 1;
                }
            }
        }
    }
    match window_end {
        Some(end) if now_ms < end => {
            if remaining > 0 {
                Ok(Allowed {
                    remaining,
                    window_ends_at_ms: end,
                })
            } else {
                Err(QuotaRefusal::CountExhausted {
                    window_ends_at_ms: end,
                })
            }
        }
        ended => Err(QuotaRefusal::OutOfTime {
            window_ended_at_ms: ended,
        }),
    }
}
