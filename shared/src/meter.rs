//! The send meter: first in, first out per key, with a minimum interval between sends.
//!
//! The interval is measured from the moment a send is *done* (the page was handed the message),
//! not from when it was released, so delivery latency can only widen the gap, never narrow it.
//! Pure logic: the daemon owns the clock and persistence and passes `now` (ms) in.

use std::collections::{HashMap, VecDeque};

/// A rule for one meter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Minimum time between the end of one send and the start of the next.
    pub min_interval_ms: u64,
    /// A released send not reported done within this time is given up on (its outcome unknown);
    /// the queue moves on instead of blocking forever.
    pub lease_ms: u64,
}

impl Rule {
    /// Udesk's assistant component: at most one message per second per workspace.
    pub const UDESK: Rule = Rule {
        min_interval_ms: 1000,
        lease_ms: 15_000,
    };
}

/// The answer to `begin`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Begin {
    /// Send now.
    Go,
    /// Ask again after this many ms.
    Wait(u64),
    /// The send is not queued (unknown, cancelled or already begun).
    NotQueued,
}

#[derive(Debug, Default)]
struct KeyState {
    queue: VecDeque<i64>,
    in_flight: Option<(i64, u64)>,
    last_done_ms: Option<u64>,
}

/// Meter state for every key.
#[derive(Debug, Default)]
pub struct Meter {
    keys: HashMap<String, (Rule, KeyState)>,
    key_of: HashMap<i64, String>,
}

impl Meter {
    pub fn new() -> Self {
        Self::default()
    }

    fn state(&mut self, key: &str, rule: Rule) -> &mut KeyState {
        let entry = self
            .keys
            .entry(key.to_string())
            .or_insert_with(|| (rule, KeyState::default()));
        entry.0 = rule;
        &mut entry.1
    }

    /// Restores the time of the last send of `key` (after a daemon restart: no burst).
    pub fn restore_last_done(&mut self, key: &str, rule: Rule, done_ms: u64) {
        let s = self.state(key, rule);
        s.last_done_ms = Some(s.last_done_ms.map_or(done_ms, |d| d.max(done_ms)));
    }

    /// Queues send `id` under `key`; returns the estimated delay in ms until its slot.
    pub fn reserve(&mut self, key: &str, rule: Rule, id: i64, now: u64) -> u64 {
        self.key_of.insert(id, key.to_string());
        let s = self.state(key, rule);
        if !s.queue.contains(&id) {
            s.queue.push_back(id);
        }
        Self::estimate(s, rule, id, now)
    }

    /// Estimated delay until `id`'s slot: the key is free one interval after the last send
    /// (or after the in-flight send began), then one interval per send queued ahead.
    fn estimate(s: &KeyState, rule: Rule, id: i64, now: u64) -> u64 {
        let ahead = s.queue.iter().take_while(|&&q| q != id).count() as u64;
        let last = s.in_flight.map(|(_, began)| began).or(s.last_done_ms);
        let free_at = last.map_or(now, |t| (t + rule.min_interval_ms).max(now));
        (free_at + ahead * rule.min_interval_ms).saturating_sub(now)
    }

    /// Expires in-flight sends whose lease ran out; returns their ids (outcome unknown).
    pub fn expire(&mut self, now: u64) -> Vec<i64> {
        let mut out = vec![];
        for (rule, s) in self.keys.values_mut() {
            if let Some((id, began)) = s.in_flight {
                if now >= began + rule.lease_ms {
                    s.in_flight = None;
                    s.last_done_ms = Some(now);
                    out.push(id);
                }
            }
        }
        for id in &out {
            self.key_of.remove(id);
        }
        out
    }

    /// Asks whether send `id` may go now. `Go` moves it in flight.
    pub fn begin(&mut self, id: i64, now: u64) -> Begin {
        self.expire(now);
        let Some(key) = self.key_of.get(&id).cloned() else {
            return Begin::NotQueued;
        };
        let Some((rule, s)) = self.keys.get_mut(&key) else {
            return Begin::NotQueued;
        };
        if !s.queue.contains(&id) {
            return Begin::NotQueued;
        }
        if let Some((_, began)) = s.in_flight {
            // wait for the in-flight send to be done; poll at the interval's pace
            let waited = now.saturating_sub(began);
            return Begin::Wait(rule.min_interval_ms.saturating_sub(waited).max(50));
        }
        let rule = *rule;
        if s.queue.front() != Some(&id) {
            return Begin::Wait(Self::estimate(s, rule, id, now).max(50));
        }
        if let Some(done) = s.last_done_ms {
            let free_at = done + rule.min_interval_ms;
            if now < free_at {
                return Begin::Wait(free_at - now);
            }
        }
        s.queue.pop_front();
        s.in_flight = Some((id, now));
        Begin::Go
    }

    /// Marks send `id` done (posted or failed). Returns false if it was not in flight.
    pub fn done(&mut self, id: i64, now: u64) -> bool {
        let Some(key) = self.key_of.remove(&id) else {
            return false;
        };
        let Some((_, s)) = self.keys.get_mut(&key) else {
            return false;
        };
        match s.in_flight {
            Some((f, _)) if f == id => {
                s.in_flight = None;
                s.last_done_ms = Some(now);
                true
            }
            _ => {
                self.key_of.insert(id, key);
                false
            }
        }
    }

    /// Removes a queued send. Returns false if it was not queued.
    pub fn cancel(&mut self, id: i64) -> bool {
        let Some(key) = self.key_of.get(&id).cloned() else {
            return false;
        };
        let Some((_, s)) = self.keys.get_mut(&key) else {
            return false;
        };
        let before = s.queue.len();
        s.queue.retain(|&q| q != id);
        if s.queue.len() < before {
            self.key_of.remove(&id);
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    const R: Rule = Rule::UDESK;

    #[test]
    fn three_quick_sends_are_spaced_from_done() {
        let mut m = Meter::new();
        assert_eq!(m.reserve("w", R, 1, 0), 0);
        assert_eq!(m.reserve("w", R, 2, 1), 1000);
        assert_eq!(m.reserve("w", R, 3, 2), 2000);
        assert_eq!(m.begin(1, 0), Begin::Go);
        // 2 cannot begin while 1 is in flight
        assert!(matches!(m.begin(2, 5), Begin::Wait(_)));
        assert!(m.done(1, 30));
        // interval counts from done (30), not from begin (0)
        assert_eq!(m.begin(2, 1000), Begin::Wait(30));
        assert_eq!(m.begin(3, 1030), Begin::Wait(1000));
        assert_eq!(m.begin(2, 1030), Begin::Go);
        assert!(m.done(2, 1040));
        assert_eq!(m.begin(3, 2039), Begin::Wait(1));
        assert_eq!(m.begin(3, 2040), Begin::Go);
    }

    #[test]
    fn cancel_lets_the_next_one_move_up() {
        let mut m = Meter::new();
        m.reserve("w", R, 1, 0);
        m.reserve("w", R, 2, 0);
        assert!(m.cancel(1));
        assert!(!m.cancel(1));
        assert_eq!(m.begin(1, 0), Begin::NotQueued);
        assert_eq!(m.begin(2, 0), Begin::Go);
    }

    #[test]
    fn keys_are_independent() {
        let mut m = Meter::new();
        m.reserve("a", R, 1, 0);
        m.reserve("b", R, 2, 0);
        assert_eq!(m.begin(1, 0), Begin::Go);
        assert_eq!(m.begin(2, 0), Begin::Go);
    }

    #[test]
    fn restored_last_done_prevents_burst() {
        let mut m = Meter::new();
        m.restore_last_done("w", R, 10_000);
        assert_eq!(m.reserve("w", R, 1, 10_200), 800);
        assert_eq!(m.begin(1, 10_200), Begin::Wait(800));
        assert_eq!(m.begin(1, 11_000), Begin::Go);
    }

    #[test]
    fn expired_lease_unblocks_queue() {
        let mut m = Meter::new();
        m.reserve("w", R, 1, 0);
        m.reserve("w", R, 2, 0);
        assert_eq!(m.begin(1, 0), Begin::Go);
        assert_eq!(m.expire(R.lease_ms - 1), Vec::<i64>::new());
        assert_eq!(m.expire(R.lease_ms), vec![1]);
        assert!(!m.done(1, R.lease_ms + 1));
        assert_eq!(m.begin(2, R.lease_ms + R.min_interval_ms), Begin::Go);
    }
}
