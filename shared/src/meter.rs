//! The send meter: first in, first out per key, with a minimum interval between sends, an
//! optional sliding window (at most `count` sends within `ms`), and for WeChat mini programs the
//! customer-service quota (5 within 48 h of the user's last message, 2 within 1 min of entering
//! the session; `crate::wechat::quota`).
//!
//! Every time is measured from the moment a send is *done* (the page was handed the message, or
//! the API answered), not from when it was released, so delivery latency can only widen a gap,
//! never narrow it: the platform can have seen send *i* at any moment up to its done time, and
//! send *i+1* at the earliest when it is released.
//!
//! Pure logic: the daemon owns the clock and persistence and passes `now` (ms) in. What the
//! daemon must persist to restart without a burst is exactly what [`Meter::restore_done`] and
//! [`Meter::observe`] take back: the done times (with their outcome) and the user's actions.

use crate::adapters::Platform;
use crate::wechat::quota::{self, Interaction, QuotaRefusal, Rules as QuotaRules};
use serde::{Deserialize, Serialize};
use std::collections::{HashMap, VecDeque};

/// The most sends queued under one key; more are refused ([`Refusal::QueueFull`]).
pub const MAX_QUEUE: usize = 500;
/// No rule, default or custom, lets two sends of a key closer than this.
pub const MIN_INTERVAL_FLOOR_MS: u64 = 100;
/// The longest window, quota window or interval a rule may have (7 days).
pub const MAX_RULE_MS: u64 = 7 * 24 * 3600 * 1000;
/// User actions kept per key (only the latest ones decide a quota).
const MAX_INTERACTIONS: usize = 64;
const DEFAULT_LEASE_MS: u64 = 15_000;

/// At most `count` sends within any `ms` milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Window {
    pub count: u32,
    pub ms: u64,
}

/// A rule for one meter key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Rule {
    /// Minimum time between the end of one send and the start of the next.
    pub min_interval_ms: u64,
    /// A released send not reported done within this time is given up on (its outcome unknown);
    /// the queue moves on instead of blocking forever.
    pub lease_ms: u64,
    /// Optional sliding window on top of the interval.
    pub window: Option<Window>,
    /// WeChat customer-service quota: sends need a user action that opened a window.
    pub quota: Option<QuotaRules>,
}

/// What Udesk documents: one message per second per workspace (seed 000).
pub const UDESK_DOCUMENTED_INTERVAL_MS: u64 = 1000;

/// Added to Udesk's interval by default. The interval is measured from `send.done`, so the posts
/// themselves are never closer than 1000 ms; but the workspace page receives `postMessage` from
/// the assistant frame (another process) with delivery jitter, and a gap of 981 ms was observed
/// at the page between posts 1008 ms apart. 50 ms keeps what the workspace sees at >= 1 s.
pub const UDESK_DELIVERY_MARGIN_MS: u64 = 50;

impl Rule {
    /// Udesk's assistant component: at most one message per second per workspace, with the
    /// delivery margin.
    pub const UDESK: Rule = Rule {
        min_interval_ms: UDESK_DOCUMENTED_INTERVAL_MS + UDESK_DELIVERY_MARGIN_MS,
        lease_ms: DEFAULT_LEASE_MS,
        window: None,
        quota: None,
    };

    /// Sobot's workbench and the WeChat 多客服 client document no limit. One per second per
    /// conversation is the conservative default (a human cannot type faster; bursts look like
    /// spam to the platform); configurable.
    pub const UNDOCUMENTED: Rule = Rule {
        min_interval_ms: 1000,
        lease_ms: DEFAULT_LEASE_MS,
        window: None,
        quota: None,
    };

    /// WeChat mini-program customer-service messages: the quota, and one per second.
    pub const WECHAT_MP: Rule = Rule {
        min_interval_ms: 1000,
        lease_ms: DEFAULT_LEASE_MS,
        window: None,
        quota: Some(QuotaRules::CURRENT),
    };

    /// How far back done sends and user actions matter to this rule.
    pub fn lookback_ms(&self) -> u64 {
        let mut ms = self.min_interval_ms;
        if let Some(w) = self.window {
            ms = ms.max(w.ms);
        }
        if let Some(q) = self.quota {
            ms = ms
                .max(q.user_message.window_ms)
                .max(q.enter_session.window_ms);
        }
        ms
    }
}

/// What a rule's key is made of besides the platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Per {
    /// One queue per workspace: every conversation of the workspace shares the pace.
    Workspace,
    /// One queue per conversation (a send without a conversation uses its workspace's queue).
    Conversation,
}

fn default_lease() -> u64 {
    DEFAULT_LEASE_MS
}

/// A platform's rule as configured: the form of `meter.rules.get/set` and of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleSpec {
    pub platform: String,
    pub per: Per,
    pub min_interval_ms: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// WeChat mini program only, and required there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub quota: Option<QuotaRules>,
    #[serde(default = "default_lease")]
    pub lease_ms: u64,
}

impl RuleSpec {
    /// The built-in rule of `platform`.
    pub fn default_for(platform: Platform) -> RuleSpec {
        let (per, rule) = match platform {
            Platform::Udesk => (Per::Workspace, Rule::UDESK),
            Platform::Sobot | Platform::WechatDkf => (Per::Conversation, Rule::UNDOCUMENTED),
            Platform::WechatMp => (Per::Conversation, Rule::WECHAT_MP),
        };
        RuleSpec {
            platform: platform.as_str().to_string(),
            per,
            min_interval_ms: rule.min_interval_ms,
            window: rule.window,
            quota: rule.quota,
            lease_ms: rule.lease_ms,
        }
    }

    /// The meter rule.
    pub fn rule(&self) -> Rule {
        Rule {
            min_interval_ms: self.min_interval_ms,
            lease_ms: self.lease_ms,
            window: self.window,
            quota: self.quota,
        }
    }

    /// Checks a rule: numbers in range, and never looser than what the platform documents
    /// (Udesk: 1 per second per workspace; WeChat mini program: its quota). Sobot and 多客服
    /// document nothing, so their rule may be loosened down to [`MIN_INTERVAL_FLOOR_MS`].
    pub fn validate(&self) -> Result<Platform, String> {
        let platform = Platform::parse(&self.platform).map_err(|r| r.message)?;
        if self.min_interval_ms < MIN_INTERVAL_FLOOR_MS || self.min_interval_ms > MAX_RULE_MS {
            return Err(format!(
                "`min_interval_ms` must be {MIN_INTERVAL_FLOOR_MS} to {MAX_RULE_MS}"
            ));
        }
        if !(1000..=300_000).contains(&self.lease_ms) {
            return Err("`lease_ms` must be 1000 to 300000".into());
        }
        if let Some(w) = self.window {
            if w.count == 0 || w.count > 10_000 || w.ms == 0 || w.ms > MAX_RULE_MS {
                return Err(format!(
                    "`window` needs `count` 1 to 10000 and `ms` 1 to {MAX_RULE_MS}"
                ));
            }
        }
        let documented = RuleSpec::default_for(platform);
        match platform {
            Platform::Udesk => {
                if self.per != Per::Workspace {
                    return Err(
                        "udesk allows 1 message per second per workspace: `per` must \
                                be \"workspace\""
                            .into(),
                    );
                }
                if self.min_interval_ms < UDESK_DOCUMENTED_INTERVAL_MS {
                    return Err(format!(
                        "udesk allows 1 message per second: `min_interval_ms` must be at least {}",
                        UDESK_DOCUMENTED_INTERVAL_MS
                    ));
                }
            }
            Platform::WechatMp => {
                if self.per != Per::Conversation {
                    return Err(
                        "the WeChat quota is per user: `per` must be \"conversation\"".into(),
                    );
                }
                let (Some(q), Some(doc)) = (self.quota, documented.quota) else {
                    return Err("wechat-mp needs a `quota`".into());
                };
                for (name, a, d) in [
                    ("user_message", q.user_message, doc.user_message),
                    ("enter_session", q.enter_session, doc.enter_session),
                ] {
                    if a.count > d.count || a.window_ms > d.window_ms {
                        return Err(format!(
                            "`quota.{name}` may not exceed WeChat's {} messages within {} ms",
                            d.count, d.window_ms
                        ));
                    }
                }
            }
            Platform::Sobot | Platform::WechatDkf => {}
        }
        if platform != Platform::WechatMp && self.quota.is_some() {
            return Err("`quota` applies to wechat-mp only".into());
        }
        Ok(platform)
    }

    /// The meter key of a send under this rule.
    pub fn key(&self, workspace: &str, conversation: Option<&str>) -> String {
        meter_key(&self.platform, self.per, workspace, conversation)
    }
}

/// The meter key: a JSON array, so no workspace or conversation name can collide with another.
pub fn meter_key(platform: &str, per: Per, workspace: &str, conversation: Option<&str>) -> String {
    let v = match (per, conversation.filter(|c| !c.is_empty())) {
        (Per::Conversation, Some(c)) => serde_json::json!([platform, workspace, c]),
        _ => serde_json::json!([platform, workspace]),
    };
    v.to_string()
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
    /// The quota does not allow it (and will not by waiting): the send was taken out of the
    /// queue.
    Refused(QuotaRefusal),
}

/// Why a reservation was refused; nothing was queued.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The quota will not allow this send at its turn.
    Quota(QuotaRefusal),
    /// [`MAX_QUEUE`] sends are queued under the key already.
    QueueFull { limit: usize },
}

#[derive(Debug, Default)]
struct KeyState {
    queue: VecDeque<i64>,
    in_flight: Option<(i64, u64)>,
    last_done_ms: Option<u64>,
    /// Done times (any outcome) inside the rule's lookback, ascending.
    recent: VecDeque<u64>,
    /// Done times of sends that went out (or may have), inside the lookback, ascending.
    used: VecDeque<u64>,
    /// The user's actions, ascending, at most [`MAX_INTERACTIONS`].
    interactions: Vec<Interaction>,
    /// When each queued send was queued.
    queued_at: HashMap<i64, u64>,
}

fn insert_sorted(v: &mut VecDeque<u64>, t: u64) {
    let i = v.partition_point(|&x| x <= t);
    v.insert(i, t);
}

impl KeyState {
    fn prune(&mut self, rule: &Rule, now: u64) {
        let horizon = now.saturating_sub(rule.lookback_ms());
        while self.recent.front().is_some_and(|&t| t < horizon) {
            self.recent.pop_front();
        }
        while self.used.front().is_some_and(|&t| t < horizon) {
            self.used.pop_front();
        }
    }

    /// The earliest time the next send may be released, ignoring the quota.
    fn free_at(&self, rule: &Rule) -> u64 {
        let mut t = self
            .in_flight
            .map(|(_, began)| began)
            .or(self.last_done_ms)
            .map_or(0, |d| d + rule.min_interval_ms);
        if let Some(w) = rule.window {
            let n = self.recent.len() + usize::from(self.in_flight.is_some());
            let count = w.count as usize;
            if n >= count {
                // the count-th most recent send (the in-flight one counts as done now)
                let mut times: Vec<u64> = self.recent.iter().copied().collect();
                if let Some((_, began)) = self.in_flight {
                    times.push(began);
                }
                times.sort_unstable();
                t = t.max(times[times.len() - count] + w.ms);
            }
        }
        t
    }

    fn quota_check(&self, q: &QuotaRules, extra_used: usize, at: u64) -> Result<(), QuotaRefusal> {
        let used: Vec<u64> = self.used.iter().copied().collect();
        match quota::check(q, &self.interactions, &used, at) {
            Ok(a) if (a.remaining as usize) > extra_used => Ok(()),
            Ok(a) => Err(QuotaRefusal::CountExhausted {
                window_ends_at_ms: a.window_ends_at_ms,
            }),
            Err(r) => Err(r),
        }
    }
}

/// A queued send not begun this long after its slot is abandoned ([`Meter::abandon`]).
/// Longer than a Chromium service worker's wake-up alarm (30 s), so a background that was
/// stopped and woken still finds its sends.
pub const QUEUE_ABANDON_MS: u64 = 60_000;

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

    /// Applies changed rules to the keys already tracked: `rule_of(key)` gives a key's rule (or
    /// `None` to keep the one it has). Queued sends stay in their queue and are paced by the new
    /// rule from their next `begin`.
    pub fn set_rules(&mut self, rule_of: impl Fn(&str) -> Option<Rule>) {
        for (key, (rule, _)) in self.keys.iter_mut() {
            if let Some(r) = rule_of(key) {
                *rule = r;
            }
        }
    }

    /// Restores the time of the last send of `key` (after a daemon restart: no burst).
    pub fn restore_last_done(&mut self, key: &str, rule: Rule, done_ms: u64) {
        let s = self.state(key, rule);
        s.last_done_ms = Some(s.last_done_ms.map_or(done_ms, |d| d.max(done_ms)));
    }

    /// Restores one finished send of `key` (after a restart): its done time, and whether it
    /// went out (or may have), which the quota counts.
    pub fn restore_done(&mut self, key: &str, rule: Rule, done_ms: u64, used: bool) {
        let s = self.state(key, rule);
        s.last_done_ms = Some(s.last_done_ms.map_or(done_ms, |d| d.max(done_ms)));
        insert_sorted(&mut s.recent, done_ms);
        if used {
            insert_sorted(&mut s.used, done_ms);
        }
    }

    /// Records a user action on `key` (it opens or renews the quota window).
    pub fn observe(&mut self, key: &str, rule: Rule, action: Interaction) {
        let s = self.state(key, rule);
        let i = s
            .interactions
            .partition_point(|a| a.at_ms() <= action.at_ms());
        s.interactions.insert(i, action);
        if s.interactions.len() > MAX_INTERACTIONS {
            let excess = s.interactions.len() - MAX_INTERACTIONS;
            s.interactions.drain(..excess);
        }
    }

    /// Queues send `id` under `key` whatever the quota says (restoring queued sends after a
    /// restart: the quota is checked again at `begin`); returns the estimated delay in ms.
    pub fn reserve(&mut self, key: &str, rule: Rule, id: i64, now: u64) -> u64 {
        self.key_of.insert(id, key.to_string());
        let s = self.state(key, rule);
        if !s.queue.contains(&id) {
            s.queue.push_back(id);
            s.queued_at.insert(id, now);
        }
        Self::estimate(s, &rule, id, now)
    }

    /// Queues send `id` under `key` if the queue has room and the quota will allow it at its
    /// turn; returns the estimated delay in ms. A send already queued just gets its estimate.
    pub fn try_reserve(
        &mut self,
        key: &str,
        rule: Rule,
        id: i64,
        now: u64,
    ) -> Result<u64, Refusal> {
        if self.key_of.get(&id).is_some_and(|k| k == key) {
            let s = self.state(key, rule);
            if s.queue.contains(&id) {
                return Ok(Self::estimate(s, &rule, id, now));
            }
        }
        let s = self.state(key, rule);
        s.prune(&rule, now);
        if s.queue.len() >= MAX_QUEUE {
            return Err(Refusal::QueueFull { limit: MAX_QUEUE });
        }
        s.queue.push_back(id);
        let delay = Self::estimate(s, &rule, id, now);
        if let Some(q) = rule.quota {
            let ahead = s.queue.len() - 1 + usize::from(s.in_flight.is_some());
            if let Err(r) = s.quota_check(&q, ahead, now + delay) {
                s.queue.pop_back();
                return Err(Refusal::Quota(r));
            }
        }
        s.queued_at.insert(id, now);
        self.key_of.insert(id, key.to_string());
        Ok(delay)
    }

    /// Estimated delay until `id`'s slot: the key is free one interval after the last send
    /// (or after the in-flight send began) and when the window has room, then each send queued
    /// ahead takes its turn under the same rules.
    fn estimate(s: &KeyState, rule: &Rule, id: i64, now: u64) -> u64 {
        let ahead = s.queue.iter().take_while(|&&q| q != id).count();
        let mut t = s.free_at(rule).max(now);
        let Some(w) = rule.window else {
            return (t + ahead as u64 * rule.min_interval_ms).saturating_sub(now);
        };
        // simulate the sends ahead, each done the moment it is released
        let mut times: Vec<u64> = s.recent.iter().copied().collect();
        if let Some((_, began)) = s.in_flight {
            times.push(began);
        }
        times.sort_unstable();
        let count = w.count as usize;
        for i in 0..=ahead {
            if times.len() >= count {
                t = t.max(times[times.len() - count] + w.ms);
            }
            if i == ahead {
                break;
            }
            times.push(t);
            t += rule.min_interval_ms;
        }
        t.saturating_sub(now)
    }

    /// The estimated delay of queued send `id`, if it is queued.
    pub fn delay_of(&self, id: i64, now: u64) -> Option<u64> {
        let key = self.key_of.get(&id)?;
        let (rule, s) = self.keys.get(key)?;
        s.queue
            .contains(&id)
            .then(|| Self::estimate(s, rule, id, now))
    }

    /// The first send queued under `key` and its estimated delay.
    pub fn head(&self, key: &str, now: u64) -> Option<(i64, u64)> {
        let (rule, s) = self.keys.get(key)?;
        let id = *s.queue.front()?;
        Some((id, Self::estimate(s, rule, id, now)))
    }

    /// What the quota of `key` allows at `now` (`None` when its rule has no quota). The send in
    /// flight and the sends queued count as used.
    pub fn quota(&self, key: &str, now: u64) -> Option<Result<quota::Allowed, QuotaRefusal>> {
        let (rule, s) = self.keys.get(key)?;
        let q = rule.quota?;
        let used: Vec<u64> = s.used.iter().copied().collect();
        let pending = s.queue.len() as u32 + u32::from(s.in_flight.is_some());
        Some(match quota::check(&q, &s.interactions, &used, now) {
            Ok(a) if a.remaining > pending => Ok(quota::Allowed {
                remaining: a.remaining - pending,
                window_ends_at_ms: a.window_ends_at_ms,
            }),
            Ok(a) => Err(QuotaRefusal::CountExhausted {
                window_ends_at_ms: a.window_ends_at_ms,
            }),
            Err(r) => Err(r),
        })
    }

    /// The key send `id` is queued or in flight under.
    pub fn key_of(&self, id: i64) -> Option<&str> {
        self.key_of.get(&id).map(String::as_str)
    }

    /// Expires in-flight sends whose lease ran out; returns their ids and keys (outcome
    /// unknown: counted as sent, to be safe).
    pub fn expire_keys(&mut self, now: u64) -> Vec<(i64, String)> {
        let mut out = vec![];
        for (key, (rule, s)) in self.keys.iter_mut() {
            if let Some((id, began)) = s.in_flight {
                if now >= began + rule.lease_ms {
                    s.in_flight = None;
                    s.last_done_ms = Some(now);
                    insert_sorted(&mut s.recent, now);
                    insert_sorted(&mut s.used, now);
                    out.push((id, key.clone()));
                }
            }
        }
        for (id, _) in &out {
            self.key_of.remove(id);
        }
        out
    }

    /// Drops queued sends that nobody began: the first send of a key whose slot came
    /// [`QUEUE_ABANDON_MS`] ago (and at least that long after it was queued) without a
    /// `begin`. The browser that queued it is gone (closed, crashed); posting it much later
    /// could reach another conversation, so it is never sent. Returns `(id, key)` of each.
    pub fn abandon(&mut self, now: u64) -> Vec<(i64, String)> {
        let mut out = vec![];
        for (key, (rule, s)) in self.keys.iter_mut() {
            while s.in_flight.is_none() {
                let Some(&head) = s.queue.front() else { break };
                let queued = s.queued_at.get(&head).copied().unwrap_or(0);
                let eligible = s.free_at(rule).max(queued);
                if now < eligible.saturating_add(QUEUE_ABANDON_MS) {
                    break;
                }
                s.queue.pop_front();
                s.queued_at.remove(&head);
                out.push((head, key.clone()));
            }
        }
        for (id, _) in &out {
            self.key_of.remove(id);
        }
        out
    }

    /// Expires in-flight sends whose lease ran out; returns their ids (outcome unknown).
    pub fn expire(&mut self, now: u64) -> Vec<i64> {
        self.expire_keys(now)
            .into_iter()
            .map(|(id, _)| id)
            .collect()
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
        let rule = *rule;
        if !s.queue.contains(&id) {
            return Begin::NotQueued;
        }
        if let Some((_, began)) = s.in_flight {
            // wait for the in-flight send to be done; poll at the interval's pace
            let waited = now.saturating_sub(began);
            return Begin::Wait(rule.min_interval_ms.saturating_sub(waited).max(50));
        }
        if s.queue.front() != Some(&id) {
            return Begin::Wait(Self::estimate(s, &rule, id, now).max(50));
        }
        s.prune(&rule, now);
        let free_at = s.free_at(&rule);
        if now < free_at {
            return Begin::Wait(free_at - now);
        }
        if let Some(q) = rule.quota {
            if let Err(r) = s.quota_check(&q, 0, now) {
                s.queue.pop_front();
                s.queued_at.remove(&id);
                self.key_of.remove(&id);
                return Begin::Refused(r);
            }
        }
        s.queue.pop_front();
        s.queued_at.remove(&id);
        s.in_flight = Some((id, now));
        Begin::Go
    }

    /// Marks send `id` done: posted (`went_out`) or failed. Returns false if it was not in
    /// flight.
    pub fn finish(&mut self, id: i64, now: u64, went_out: bool) -> bool {
        let Some(key) = self.key_of.remove(&id) else {
            return false;
        };
        let Some((_, s)) = self.keys.get_mut(&key) else {
            return false;
        };
        match s.in_flight {
            Some((f, _)) if f == id => {
                s.in_flight = None;
                s.last_done_ms = Some(s.last_done_ms.map_or(now, |d| d.max(now)));
                insert_sorted(&mut s.recent, now);
                if went_out {
                    insert_sorted(&mut s.used, now);
                }
                true
            }
            _ => {
                self.key_of.insert(id, key);
                false
            }
        }
    }

    /// Marks send `id` done (posted). Returns false if it was not in flight.
    pub fn done(&mut self, id: i64, now: u64) -> bool {
        self.finish(id, now, true)
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
        s.queued_at.remove(&id);
        if s.queue.len() < before {
            self.key_of.remove(&id);
            true
        } else {
            false
        }
    }

    /// Forgets keys with nothing queued or in flight whose history no longer matters, and
    /// prunes old times everywhere. Keeps memory bounded by activity, not by uptime.
    pub fn gc(&mut self, now: u64) {
        self.keys.retain(|_, (rule, s)| {
            s.prune(rule, now);
            let horizon = now.saturating_sub(rule.lookback_ms());
            // lookback covers the longest quota window
            s.interactions.retain(|a| a.at_ms() >= horizon);
            !s.queue.is_empty()
                || s.in_flight.is_some()
                || s.last_done_ms
                    .is_some_and(|d| d + rule.lookback_ms() >= now)
                || !s.recent.is_empty()
                || !s.interactions.is_empty()
        });
    }

    /// Keys currently tracked (for tests and diagnostics).
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// The documented Udesk interval without the delivery margin, so the numbers read plainly.
    const R: Rule = Rule {
        min_interval_ms: 1000,
        ..Rule::UDESK
    };

    #[test]
    fn unbegun_sends_are_abandoned_after_their_slot() {
        let mut m = Meter::new();
        m.reserve("w", R, 1, 0);
        m.reserve("w", R, 2, 0);
        // 1's slot is now: abandoned only QUEUE_ABANDON_MS later
        assert_eq!(m.abandon(QUEUE_ABANDON_MS - 1), vec![]);
        // 2, next in line and queued at 0, was never begun either: both go in one pass
        assert_eq!(
            m.abandon(QUEUE_ABANDON_MS),
            vec![(1, "w".to_string()), (2, "w".to_string())]
        );
        assert_eq!(m.begin(1, QUEUE_ABANDON_MS), Begin::NotQueued);
        // a send in flight is the lease's business, never abandoned
        m.reserve("v", R, 3, 0);
        m.reserve("v", R, 4, 0);
        assert_eq!(m.begin(3, 0), Begin::Go);
        assert_eq!(m.abandon(QUEUE_ABANDON_MS + 10), vec![]);
        // a send queued late is measured from when it was queued
        let mut m = Meter::new();
        m.reserve("w", R, 5, 100_000);
        assert_eq!(m.abandon(100_000 + QUEUE_ABANDON_MS - 1), vec![]);
        assert_eq!(m.abandon(100_000 + QUEUE_ABANDON_MS).len(), 1);
    }

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

    const HOUR: u64 = 3_600_000;

    #[test]
    fn window_rule_holds_back_the_fourth_send() {
        let r = Rule {
            min_interval_ms: 100,
            lease_ms: 15_000,
            window: Some(Window {
                count: 3,
                ms: 10_000,
            }),
            quota: None,
        };
        let mut m = Meter::new();
        for id in 1..=4 {
            m.try_reserve("k", r, id, 0).unwrap();
        }
        // estimates: 0, 100, 200, then the window: first send + 10 s
        assert_eq!(m.delay_of(1, 0), Some(0));
        assert_eq!(m.delay_of(2, 0), Some(100));
        assert_eq!(m.delay_of(3, 0), Some(200));
        assert_eq!(m.delay_of(4, 0), Some(10_000));
        let mut t = 0;
        for id in 1..=3 {
            assert_eq!(m.begin(id, t), Begin::Go, "send {id} at {t}");
            assert!(m.done(id, t + 10));
            t += 110;
        }
        // three done at 10, 120, 230: the fourth waits for 10 + 10 s
        assert_eq!(m.begin(4, t), Begin::Wait(10_010 - t));
        assert_eq!(m.begin(4, 10_009), Begin::Wait(1));
        assert_eq!(m.begin(4, 10_010), Begin::Go);
    }

    #[test]
    fn window_survives_a_restart() {
        let r = Rule {
            window: Some(Window {
                count: 2,
                ms: 60_000,
            }),
            ..Rule::UNDOCUMENTED
        };
        let mut m = Meter::new();
        m.restore_done("k", r, 1_000, true);
        m.restore_done("k", r, 5_000, false);
        assert_eq!(m.reserve("k", r, 1, 6_000), 55_000);
        assert_eq!(m.begin(1, 6_000), Begin::Wait(55_000));
        assert_eq!(m.begin(1, 61_000), Begin::Go);
    }

    #[test]
    fn wechat_quota_needs_a_user_action() {
        let r = Rule::WECHAT_MP;
        let mut m = Meter::new();
        let t0 = 100 * HOUR;
        assert_eq!(
            m.try_reserve("u", r, 1, t0),
            Err(Refusal::Quota(QuotaRefusal::OutOfTime {
                window_ended_at_ms: None
            }))
        );
        assert_eq!(m.key_of(1), None, "a refused send is not queued");
        m.observe("u", r, Interaction::UserMessage { at_ms: t0 });
        assert_eq!(
            m.quota("u", t0),
            Some(Ok(quota::Allowed {
                remaining: 5,
                window_ends_at_ms: t0 + 48 * HOUR
            }))
        );
        assert_eq!(m.quota("nobody", t0), None);
        // five allowed within 48 h; the sixth is refused at reservation, counting the queue
        for id in 1..=5 {
            m.try_reserve("u", r, id, t0).unwrap();
        }
        assert_eq!(
            m.try_reserve("u", r, 6, t0),
            Err(Refusal::Quota(QuotaRefusal::CountExhausted {
                window_ends_at_ms: t0 + 48 * HOUR
            }))
        );
        let mut t = t0;
        for id in 1..=5 {
            assert_eq!(m.begin(id, t), Begin::Go);
            assert!(m.finish(id, t, true));
            t += 1_000;
        }
        // a failed send uses nothing; entering the session resets the count to 2
        m.observe("u", r, Interaction::EnterSession { at_ms: t });
        m.try_reserve("u", r, 7, t).unwrap();
        assert_eq!(m.begin(7, t), Begin::Go);
        assert!(m.finish(7, t, false));
        m.try_reserve("u", r, 8, t).unwrap();
        m.try_reserve("u", r, 9, t).unwrap();
        assert!(m.try_reserve("u", r, 10, t).is_err());
    }

    #[test]
    fn a_window_that_closes_while_queued_refuses_at_begin() {
        let r = Rule::WECHAT_MP;
        let mut m = Meter::new();
        let t0 = 10 * HOUR;
        m.observe("u", r, Interaction::EnterSession { at_ms: t0 });
        m.try_reserve("u", r, 1, t0).unwrap();
        // the agent waited past the minute
        match m.begin(1, t0 + 60_000) {
            Begin::Refused(QuotaRefusal::OutOfTime { .. }) => {}
            other => panic!("{other:?}"),
        }
        assert_eq!(m.begin(1, t0 + 60_001), Begin::NotQueued);
        // and an estimate past the window's end is refused at once
        m.observe(
            "u",
            r,
            Interaction::EnterSession {
                at_ms: t0 + 100_000,
            },
        );
        m.restore_done("u", r, t0 + 159_500, true);
        assert!(matches!(
            m.try_reserve("u", r, 2, t0 + 159_600),
            Err(Refusal::Quota(QuotaRefusal::OutOfTime { .. }))
        ));
    }

    #[test]
    fn queue_is_capped() {
        let mut m = Meter::new();
        for id in 0..MAX_QUEUE as i64 {
            m.try_reserve("k", R, id, 0).unwrap();
        }
        assert_eq!(
            m.try_reserve("k", R, -1, 0),
            Err(Refusal::QueueFull { limit: MAX_QUEUE })
        );
        // a send already queued is not refused again
        assert_eq!(m.try_reserve("k", R, 3, 0), Ok(3000));
    }

    #[test]
    fn changed_rules_apply_to_queued_sends() {
        let mut m = Meter::new();
        m.reserve("k", R, 1, 0);
        m.reserve("k", R, 2, 0);
        assert_eq!(m.begin(1, 0), Begin::Go);
        assert!(m.done(1, 0));
        let slower = Rule {
            min_interval_ms: 5_000,
            ..R
        };
        m.set_rules(|k| (k == "k").then_some(slower));
        assert_eq!(m.begin(2, 1_000), Begin::Wait(4_000));
        m.set_rules(|_| None);
        assert_eq!(m.begin(2, 4_999), Begin::Wait(1));
    }

    #[test]
    fn idle_keys_are_forgotten() {
        let mut m = Meter::new();
        m.reserve("a", R, 1, 0);
        assert_eq!(m.begin(1, 0), Begin::Go);
        assert!(m.done(1, 10));
        m.reserve("b", R, 2, 0);
        m.gc(500);
        assert_eq!(m.key_count(), 2);
        m.gc(1_011);
        assert_eq!(m.key_count(), 1, "b still has a queued send");
        assert_eq!(m.head("b", 1_011), Some((2, 0)));
    }

    #[test]
    fn keys_never_collide() {
        let a = meter_key("sobot", Per::Conversation, "a:b", Some("c"));
        let b = meter_key("sobot", Per::Conversation, "a", Some("b:c"));
        assert_ne!(a, b);
        assert_eq!(
            meter_key("sobot", Per::Conversation, "w", None),
            meter_key("sobot", Per::Workspace, "w", Some("c"))
        );
        assert_eq!(
            meter_key("udesk", Per::Workspace, "w", None),
            r#"["udesk","w"]"#
        );
    }

    #[test]
    fn custom_rules_may_not_be_looser_than_documented() {
        for p in Platform::ALL {
            let d = RuleSpec::default_for(*p);
            assert_eq!(d.validate(), Ok(*p), "{d:?}");
            let round: RuleSpec =
                serde_json::from_value(serde_json::to_value(&d).unwrap()).unwrap();
            assert_eq!(round, d);
        }
        let mut u = RuleSpec::default_for(Platform::Udesk);
        u.min_interval_ms = 500;
        assert!(u.validate().unwrap_err().contains("at least 1000"));
        u.min_interval_ms = 2000;
        u.window = Some(Window {
            count: 10,
            ms: 60_000,
        });
        assert!(u.validate().is_ok(), "stricter is fine");
        u.per = Per::Conversation;
        assert!(u.validate().unwrap_err().contains("per workspace"));

        let mut s = RuleSpec::default_for(Platform::Sobot);
        s.min_interval_ms = 200;
        s.per = Per::Workspace;
        assert!(s.validate().is_ok(), "undocumented limits may be loosened");
        s.min_interval_ms = 50;
        assert!(s.validate().unwrap_err().contains("min_interval_ms"));
        s.min_interval_ms = 1000;
        s.quota = Some(QuotaRules::CURRENT);
        assert!(s.validate().unwrap_err().contains("wechat-mp only"));

        let mut w = RuleSpec::default_for(Platform::WechatMp);
        let mut q = QuotaRules::CURRENT;
        q.user_message.count = 6;
        w.quota = Some(q);
        assert!(w.validate().unwrap_err().contains("quota.user_message"));
        q.user_message.count = 3;
        w.quota = Some(q);
        assert!(w.validate().is_ok());
        w.quota = None;
        assert!(w.validate().is_err());

        let bad: Result<RuleSpec, _> = serde_json::from_str(
            r#"{"platform":"udesk","per":"workspace","min_interval_ms":1000,"bogus":1}"#,
        );
        assert!(bad.is_err());
        let mut x = RuleSpec::default_for(Platform::Udesk);
        x.platform = "fax".into();
        assert!(x.validate().unwrap_err().contains("fax"));
    }
}
