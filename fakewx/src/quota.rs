//! The customer-service quota as the fake WeChat enforces it (platform-spec §4.7): 5 sends
//! within 48 h of a user message, 2 within 1 minute of entering the session; counts do not add
//! up. Written apart from `quiver_shared::wechat::quota` on purpose: the fake is the oracle the
//! gateway's predictor is tested against, and it offers both readings of the rule (research
//! §4.8).

use super::Reading;

const MESSAGE: (u32, i64) = (5, 48 * 3_600_000);
const ENTER: (u32, i64) = (2, 60_000);

/// `Ok` if a send at `now` is allowed, else WeChat's errcode: 45015 (no open window) or 45047
/// (count used up). `actions` are (at_ms, is_message); `sends` the times of accepted sends.
pub fn check(
    reading: Reading,
    actions: &[(i64, bool)],
    sends: &[i64],
    now: i64,
) -> Result<(), i64> {
    // (time, order, action kind): actions before sends at the same millisecond.
    let mut timeline: Vec<(i64, u8, Option<bool>)> = actions
        .iter()
        .map(|&(t, m)| (t, 0, Some(m)))
        .chain(sends.iter().map(|&t| (t, 1, None)))
        .filter(|(t, _, _)| *t <= now)
        .collect();
    timeline.sort_by_key(|(t, o, _)| (*t, *o));
    let mut remaining = 0u32;
    let mut window_end: Option<i64> = None;
    let mut last_message: Option<i64> = None;
    let mut last_enter: Option<i64> = None;
    for (t, _, action) in timeline {
        match action {
            Some(is_message) => {
                let (count, window) = if is_message { MESSAGE } else { ENTER };
                if is_message {
                    last_message = Some(t);
                } else {
                    last_enter = Some(t);
                }
                remaining = match reading {
                    Reading::Own => count,
                    Reading::Larger => {
                        let open = |last: Option<i64>, (c, w): (u32, i64)| {
                            last.filter(|l| l + w > t).map(|_| c).unwrap_or(0)
                        };
                        open(last_message, MESSAGE).max(open(last_enter, ENTER))
                    }
                };
                window_end = Some(window_end.map_or(t + window, |e| e.max(t + window)));
            }
            None => {
                if window_end.is_some_and(|e| t < e) {
                    remaining = remaining.saturating_sub(1);
                }
            }
        }
    }
    match window_end {
        Some(e) if now < e => {
            if remaining == 0 {
                Err(45047)
            } else {
                Ok(())
            }
        }
        _ => Err(45015),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: i64 = 3_600_000;

    #[test]
    fn five_after_a_message_then_used_up() {
        let a = [(0, true)];
        let mut sends = vec![];
        for i in 0..5 {
            assert_eq!(check(Reading::Own, &a, &sends, 10 + i), Ok(()));
            sends.push(10 + i);
        }
        assert_eq!(check(Reading::Own, &a, &sends, 20), Err(45047));
        assert_eq!(check(Reading::Own, &a, &[], 48 * H), Err(45015));
        assert_eq!(check(Reading::Own, &[], &[], 5), Err(45015));
    }

    #[test]
    fn enter_after_message_differs_by_reading() {
        let a = [(0, true), (1000, false)];
        let sends = [2000, 3000];
        assert_eq!(check(Reading::Own, &a, &sends, 4000), Err(45047));
        assert_eq!(check(Reading::Larger, &a, &sends, 4000), Ok(()));
        // Entering alone: 2 within a minute.
        let e = [(0, false)];
        assert_eq!(check(Reading::Own, &e, &[], 59_999), Ok(()));
        assert_eq!(check(Reading::Own, &e, &[], 60_000), Err(45015));
    }
}
