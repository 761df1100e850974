//! The access-token policy of a gateway (research §4.6), as pure decisions: whether a cached
//! token is used, refreshed ahead of its expiry or must be refreshed; whether a fetch is allowed
//! now (floors that protect WeChat's daily caps from a broken cache); whether a token that an API
//! call rejected is the cached one (compare-and-invalidate); whether an operator's forced refresh
//! fits the budget. Times are milliseconds since the epoch, given by the caller.

use serde::{Deserialize, Serialize};

/// Refresh when less than this is left (WeChat's stable token rotates 5 min before expiry and
/// keeps old and new valid for those 5 min, so any token it returns has at least 300 s).
pub const REFRESH_AHEAD_MS: i64 = 300_000;
/// Below this a token is not used at all (a call takes time; the clocks may differ a little).
pub const SAFETY_MS: i64 = 30_000;
/// At least this between two fetches that no rejection caused (silenceper/wechat#762: a cache
/// outage fetched tokens until the daily quota was gone).
pub const FETCH_FLOOR_MS: i64 = 10_000;

/// A token as cached.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cached {
    pub token: String,
    pub expires_at_ms: i64,
    pub fetched_at_ms: i64,
    /// An API call rejected it (40001/40014/42001) and nothing replaced it yet.
    pub invalid: bool,
}

impl Cached {
    /// `expires_in` seconds from WeChat's answer, fetched at `now_ms`.
    pub fn fetched(token: String, expires_in_secs: i64, now_ms: i64) -> Cached {
        Cached {
            token,
            expires_at_ms: now_ms.saturating_add(expires_in_secs.max(0).saturating_mul(1000)),
            fetched_at_ms: now_ms,
            invalid: false,
        }
    }
}

/// What to do with the cache.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Decision {
    /// Use the cached token.
    Use,
    /// Usable, but refresh now (less than [`REFRESH_AHEAD_MS`] left); use it if the refresh fails.
    RefreshAhead,
    /// No usable token: fetch one before calling.
    MustRefresh,
}

/// Whether the cached token can be used at `now_ms`.
pub fn decide(cached: Option<&Cached>, now_ms: i64) -> Decision {
    match cached {
        None => Decision::MustRefresh,
        Some(c) if c.invalid || c.token.is_empty() => Decision::MustRefresh,
        Some(c) => {
            let left = c.expires_at_ms - now_ms;
            if left <= SAFETY_MS {
                Decision::MustRefresh
            } else if left <= REFRESH_AHEAD_MS {
                Decision::RefreshAhead
            } else {
                Decision::Use
            }
        }
    }
}

/// Why a token is fetched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Cause {
    /// None cached, or it is expiring.
    Expiry,
    /// An API call rejected the cached token.
    Rejected,
}

/// Whether a (non-forced) fetch may run at `now_ms`, the last one having run at `last_fetch_ms`.
/// `Err` holds the first instant it may. A rejection always allows one fetch: another server's
/// forced refresh is a reason to fetch at once, and compare-and-invalidate ([`invalidates`])
/// makes it one fetch per rejected token, however many calls failed with it; a platform that
/// hands out the token it rejects ends in [`retry_with`] = false, not in a loop.
pub fn may_fetch(last_fetch_ms: Option<i64>, cause: Cause, now_ms: i64) -> Result<(), i64> {
    let floor = match cause {
        Cause::Expiry => FETCH_FLOOR_MS,
        Cause::Rejected => return Ok(()),
    };
    match last_fetch_ms {
        Some(last) if now_ms < last.saturating_add(floor) && now_ms >= last => {
            Err(last.saturating_add(floor))
        }
        _ => Ok(()),
    }
}

/// After an API call rejected `failed`: whether the cache is invalidated (only if it still holds
/// that very token; another caller may have replaced it already, and dropping the new one would
/// make a fleet refresh once per failed call: WxJava's compare-and-expire).
pub fn invalidates(cached: Option<&Cached>, failed: &str) -> bool {
    cached.is_some_and(|c| c.token == failed && !c.invalid)
}

/// After a refresh that followed a rejection of `failed`: the call is retried once with the new
/// token, unless WeChat handed out the very token it rejects (a changed AppSecret, or a forced
/// refresh is needed): then the call fails, and nothing loops.
pub fn retry_with(failed: &str, fresh: &str) -> bool {
    failed != fresh
}

/// The operator's budget for forced refreshes (WeChat allows 20 a day, 30 s apart; a forced
/// refresh invalidates the token for every other user of the stable token).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ForceBudget {
    pub per_day: usize,
    pub min_gap_ms: i64,
}

impl ForceBudget {
    /// Half of WeChat's daily 20, twice its 30 s.
    pub const DEFAULT: ForceBudget = ForceBudget {
        per_day: 10,
        min_gap_ms: 60_000,
    };
}

/// Why a forced refresh is refused now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ForceRefused {
    /// The last one was less than `min_gap_ms` ago; allowed again at the time given.
    TooSoon { next_at_ms: i64 },
    /// `per_day` in the last 24 h; allowed again at the time given.
    DailyBudget { next_at_ms: i64 },
}

impl std::fmt::Display for ForceRefused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ForceRefused::TooSoon { next_at_ms } => {
                write!(
                    f,
                    "the last forced refresh was too recent; allowed again at {next_at_ms} ms"
                )
            }
            ForceRefused::DailyBudget { next_at_ms } => write!(
                f,
                "the daily budget of forced refreshes is spent; allowed again at {next_at_ms} ms"
            ),
        }
    }
}

pub const DAY_MS: i64 = 24 * 3_600_000;

/// Whether a forced refresh fits the budget, given when the earlier ones ran.
pub fn may_force(log_ms: &[i64], budget: ForceBudget, now_ms: i64) -> Result<(), ForceRefused> {
    if let Some(&last) = log_ms.iter().filter(|&&t| t <= now_ms).max() {
        if now_ms < last + budget.min_gap_ms {
            return Err(ForceRefused::TooSoon {
                next_at_ms: last + budget.min_gap_ms,
            });
        }
    }
    let mut today: Vec<i64> = log_ms
        .iter()
        .copied()
        .filter(|&t| t <= now_ms && t > now_ms - DAY_MS)
        .collect();
    if today.len() >= budget.per_day {
        today.sort_unstable();
        let oldest_counted = today[today.len() - budget.per_day];
        return Err(ForceRefused::DailyBudget {
            next_at_ms: oldest_counted + DAY_MS,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(expires_at_ms: i64) -> Cached {
        Cached {
            token: "T".into(),
            expires_at_ms,
            fetched_at_ms: 0,
            invalid: false,
        }
    }

    #[test]
    fn use_ahead_or_must() {
        assert_eq!(decide(None, 0), Decision::MustRefresh);
        assert_eq!(decide(Some(&c(7_200_000)), 0), Decision::Use);
        assert_eq!(decide(Some(&c(300_001)), 0), Decision::Use);
        assert_eq!(decide(Some(&c(300_000)), 0), Decision::RefreshAhead);
        assert_eq!(decide(Some(&c(30_001)), 0), Decision::RefreshAhead);
        assert_eq!(decide(Some(&c(30_000)), 0), Decision::MustRefresh);
        assert_eq!(decide(Some(&c(10)), 100), Decision::MustRefresh);
        let mut bad = c(7_200_000);
        bad.invalid = true;
        assert_eq!(decide(Some(&bad), 0), Decision::MustRefresh);
        assert_eq!(
            Cached::fetched("x".into(), 7200, 1000).expires_at_ms,
            7_201_000
        );
    }

    #[test]
    fn floors() {
        assert_eq!(may_fetch(None, Cause::Expiry, 5), Ok(()));
        assert_eq!(may_fetch(Some(0), Cause::Expiry, 9_999), Err(10_000));
        assert_eq!(may_fetch(Some(0), Cause::Expiry, 10_000), Ok(()));
        assert_eq!(may_fetch(Some(0), Cause::Rejected, 1), Ok(()));
        // a clock that went back does not block forever
        assert_eq!(may_fetch(Some(50_000), Cause::Expiry, 0), Ok(()));
    }

    #[test]
    fn compare_and_invalidate() {
        let cached = c(7_200_000);
        assert!(invalidates(Some(&cached), "T"));
        assert!(!invalidates(Some(&cached), "OLD"), "replaced meanwhile");
        assert!(!invalidates(None, "T"));
        let mut gone = cached.clone();
        gone.invalid = true;
        assert!(!invalidates(Some(&gone), "T"), "invalidated once");
        assert!(retry_with("A", "B"));
        assert!(!retry_with("A", "A"), "the same token again: no loop");
    }

    #[test]
    fn force_budget() {
        let b = ForceBudget::DEFAULT;
        assert_eq!(may_force(&[], b, 0), Ok(()));
        assert_eq!(
            may_force(&[1_000], b, 30_000),
            Err(ForceRefused::TooSoon { next_at_ms: 61_000 })
        );
        assert_eq!(may_force(&[1_000], b, 61_000), Ok(()));
        let log: Vec<i64> = (0..10).map(|i| i * 100_000).collect();
        assert_eq!(
            may_force(&log, b, 2_000_000),
            Err(ForceRefused::DailyBudget { next_at_ms: DAY_MS })
        );
        assert_eq!(may_force(&log, b, DAY_MS + 1), Ok(()));
    }
}
