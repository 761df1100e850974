//! `meter.*`: the rules of every platform and the user actions quotas count.

use super::*;

/// The effective rule of every platform: built in, or the user's (`meter.rules.set`).
#[derive(Debug)]
pub(super) struct Rules {
    specs: BTreeMap<&'static str, (RuleSpec, bool)>,
}

impl Rules {
    pub(super) fn load(store: &Store) -> Result<Rules, StoreError> {
        let mut specs: BTreeMap<&'static str, (RuleSpec, bool)> = Platform::ALL
            .iter()
            .map(|p| (p.as_str(), (RuleSpec::default_for(*p), false)))
            .collect();
        for (platform, json) in store.rules()? {
            let spec = serde_json::from_str::<RuleSpec>(&json)
                .map_err(|e| e.to_string())
                .and_then(|s| s.validate().map(|p| (p, s)));
            match spec {
                Ok((p, s)) if p.as_str() == platform => {
                    specs.insert(p.as_str(), (s, true));
                }
                Ok(_) => {
                    warn!("meter rule stored for {platform:?} names another platform; ignored")
                }
                Err(e) => warn!("meter rule stored for {platform:?} is not valid ({e}); ignored"),
            }
        }
        Ok(Rules { specs })
    }

    pub(super) fn spec(&self, p: Platform) -> &RuleSpec {
        &self.specs[p.as_str()].0
    }

    pub(super) fn by_name(&self, platform: &str) -> Option<&RuleSpec> {
        self.specs.get(platform).map(|(s, _)| s)
    }

    /// How far back any rule looks (sends, user actions).
    pub(super) fn lookback_ms(&self) -> u64 {
        self.specs
            .values()
            .map(|(s, _)| s.rule().lookback_ms())
            .max()
            .unwrap_or(0)
    }

    pub(super) fn to_json(&self) -> Value {
        Value::Array(
            self.specs
                .values()
                .map(|(s, custom)| {
                    let mut v = serde_json::to_value(s).unwrap_or_default();
                    v["source"] = json!(if *custom { "custom" } else { "default" });
                    v
                })
                .collect(),
        )
    }
}

impl Service {
    pub(super) fn observe(&mut self, p: ObserveParams, platform: Platform, now: u64) -> Outcome {
        let spec = self.rules.spec(platform).clone();
        let key = spec.key(&p.workspace, p.conversation.as_deref());
        if spec.quota.is_none() {
            // nothing a user does changes how fast this platform may be sent to
            return Ok(json!({ "key": key, "recorded": false, "quota": null }));
        }
        if p.conversation.as_deref().unwrap_or("").is_empty() {
            return Err(params::invalid(format!(
                "meter.observe: {} needs `conversation` (the user the quota counts for)",
                platform.as_str()
            ))
            .into());
        }
        let at_ms = p.at_ms.unwrap_or(now).min(now);
        self.store.add_meter_event(&key, p.event.as_str(), at_ms)?;
        let action = match p.event {
            ObservedEvent::UserMessage => Interaction::UserMessage { at_ms },
            ObservedEvent::EnterSession => Interaction::EnterSession { at_ms },
        };
        self.meter.observe(&key, spec.rule(), action);
        let quota = match self.meter.quota(&key, now) {
            Some(Ok(a)) => json!({ "allowed": true, "remaining": a.remaining,
                                   "window_ends_at_ms": a.window_ends_at_ms }),
            Some(Err(r)) => json!({ "allowed": false, "errcode": r.errcode(), "refusal": r }),
            None => Value::Null,
        };
        if self.meter.head(&key, now).is_some() {
            self.released(&key, None, None, now);
        }
        Ok(json!({ "key": key, "recorded": true, "at_ms": at_ms, "quota": quota }))
    }

    pub(super) fn rules_set(&mut self, spec: RuleSpec, now: u64) -> Outcome {
        let json =
            serde_json::to_string(&spec).map_err(|e| ServiceError::Internal(e.to_string()))?;
        self.store.set_rule(&spec.platform, &json, now)?;
        self.rules = Rules::load(&self.store)?;
        self.retune();
        self.emit("settings.changed", json!({ "what": "meter.rules" }));
        Ok(json!({ "rules": self.rules.to_json() }))
    }

    /// Gives every key the meter tracks its platform's current rule (queued sends too).
    pub(super) fn retune(&mut self) {
        let rules = &self.rules;
        self.meter
            .set_rules(|key| key_platform(key).and_then(|p| rules.by_name(&p).map(RuleSpec::rule)));
    }

    pub(super) fn rules_reset(&mut self, platform: Platform) -> Outcome {
        self.store.delete_rule(platform.as_str())?;
        self.rules = Rules::load(&self.store)?;
        self.retune();
        self.emit("settings.changed", json!({ "what": "meter.rules" }));
        Ok(json!({ "rules": self.rules.to_json() }))
    }
}

/// The meter key a send of `platform` to `workspace` / `conversation` has under the built-in
/// rules (for tools and tests).
pub fn default_key(platform: Platform, workspace: &str, conversation: Option<&str>) -> String {
    let spec = RuleSpec::default_for(platform);
    meter_key(platform.as_str(), spec.per, workspace, conversation)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testkit::*;

    #[test]
    fn wechat_quota_is_metered_from_observed_user_actions() {
        let s = Scratch::new("wechat");
        let t0 = 1_000 * DAY_MS;
        let mut svc = open(&s, t0);
        // no user action yet: refused, recorded as failed, and a retry gets the same send
        let e = send(&mut svc, "wechat-mp", "m0", Some("openid-1"), t0).unwrap_err();
        assert_eq!(e["code"], "quota_exceeded");
        assert_eq!(e["data"]["errcode"], 45015);
        let id0 = e["data"]["send_id"].clone();
        let r = send(&mut svc, "wechat-mp", "m0", Some("openid-1"), t0).unwrap();
        assert_eq!(
            (r["send_id"].clone(), r["state"].clone()),
            (id0, json!("failed"))
        );
        // wechat-mp needs the user
        let e = send(&mut svc, "wechat-mp", "m1", None, t0).unwrap_err();
        assert_eq!(e["code"], "invalid_params");

        let o = ok(
            &mut svc,
            "meter.observe",
            json!({"platform": "wechat-mp", "workspace": "w", "conversation": "openid-1",
                   "event": "enter_session", "at_ms": t0}),
            t0,
        );
        assert_eq!(o["quota"]["remaining"], 2, "{o}");
        let a = send(&mut svc, "wechat-mp", "m2", Some("openid-1"), t0).unwrap();
        let b = send(&mut svc, "wechat-mp", "m3", Some("openid-1"), t0).unwrap();
        assert_eq!(b["delay_ms"], 1000);
        let e = send(&mut svc, "wechat-mp", "m4", Some("openid-1"), t0).unwrap_err();
        assert_eq!(e["data"]["errcode"], 45047);
        // another user has a quota of its own
        let e = send(&mut svc, "wechat-mp", "m5", Some("openid-2"), t0).unwrap_err();
        assert_eq!(e["data"]["errcode"], 45015);

        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": a["send_id"]}), t0)["go"],
            true
        );
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": a["send_id"], "ok": true}),
            t0 + 10,
        );
        // the daemon restarts: the quota is where it was
        drop(svc);
        let mut svc = open(&s, t0 + 20);
        let e = send(&mut svc, "wechat-mp", "m6", Some("openid-1"), t0 + 20).unwrap_err();
        assert_eq!(
            e["data"]["errcode"], 45047,
            "b is still queued and uses the last one"
        );
        // the minute runs out while b waits: b fails at begin, it is not sent late
        let e = err_full(
            &mut svc,
            "send.begin",
            json!({"send_id": b["send_id"]}),
            t0 + 60_000,
        );
        assert_eq!(e["code"], "quota_exceeded");
        let e = err_full(
            &mut svc,
            "send.begin",
            json!({"send_id": b["send_id"]}),
            t0 + 60_001,
        );
        assert_eq!(
            (e["code"].clone(), e["data"]["state"].clone()),
            (json!("conflict"), json!("failed"))
        );
        // a user message opens 48 h with 5 sends
        let o = ok(
            &mut svc,
            "meter.observe",
            json!({"platform": "wechat-mp", "workspace": "w", "conversation": "openid-1",
                   "event": "user_message"}),
            t0 + 70_000,
        );
        assert_eq!(o["quota"]["remaining"], 5);
        assert_eq!(
            o["quota"]["window_ends_at_ms"],
            t0 + 70_000 + 48 * 3_600_000
        );
        // platforms without a quota ignore user actions
        let o = ok(
            &mut svc,
            "meter.observe",
            json!({"platform": "udesk", "workspace": "w", "event": "user_message"}),
            t0,
        );
        assert_eq!(o["recorded"], false);
    }

    #[test]
    fn sobot_paces_each_conversation_and_rules_are_configurable() {
        let s = Scratch::new("rules");
        let mut svc = open(&s, 0);
        // per conversation by default: two conversations go at once, one waits its second
        let a = send(&mut svc, "sobot", "a", Some("c1"), 0).unwrap();
        let b = send(&mut svc, "sobot", "b", Some("c2"), 0).unwrap();
        let c = send(&mut svc, "sobot", "c", Some("c1"), 0).unwrap();
        assert_eq!(
            (a["delay_ms"].clone(), b["delay_ms"].clone()),
            (json!(0), json!(0))
        );
        assert_eq!(c["delay_ms"], 1000);
        // wechat-dkf has the same conservative default
        let rules = ok(&mut svc, "meter.rules.get", json!({}), 0)["rules"].clone();
        let dkf = rules
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["platform"] == "wechat-dkf")
            .unwrap()
            .clone();
        assert_eq!(
            dkf,
            json!({"platform": "wechat-dkf", "per": "conversation", "min_interval_ms": 1000,
                   "lease_ms": 15000, "source": "default"})
        );
        // the user slows sobot down to 3 per 10 s per workspace; it survives a restart
        let r = ok(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "sobot", "per": "workspace", "min_interval_ms": 500,
                   "window": {"count": 3, "ms": 10000}}),
            1,
        );
        assert!(r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["platform"] == "sobot" && r["source"] == "custom"));
        let e = err_full(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "udesk", "per": "workspace", "min_interval_ms": 200}),
            1,
        );
        assert_eq!(e["code"], "invalid_params");
        drop(svc);
        let mut svc = open(&s, 10);
        let delays: Vec<u64> = (0..4)
            .map(|i| {
                send(
                    &mut svc,
                    "sobot",
                    &format!("w{i}"),
                    Some(&format!("c{i}")),
                    10,
                )
                .unwrap()["delay_ms"]
                    .as_u64()
                    .unwrap()
            })
            .collect();
        assert_eq!(delays, vec![0, 500, 1000, 10_000]);
        let r = ok(
            &mut svc,
            "meter.rules.reset",
            json!({"platform": "sobot"}),
            11,
        );
        assert!(r["rules"]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r["source"] == "default"));
    }

    #[test]
    fn a_window_rule_holds_across_a_restart() {
        let s = Scratch::new("window-restart");
        let mut svc = open(&s, 0);
        ok(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "sobot", "per": "workspace", "min_interval_ms": 100,
                   "window": {"count": 2, "ms": 60000}}),
            0,
        );
        for (i, t) in [(0, 1_000), (1, 2_000)] {
            let id =
                send(&mut svc, "sobot", &format!("w{i}"), Some("c"), t).unwrap()["send_id"].clone();
            assert_eq!(
                ok(&mut svc, "send.begin", json!({"send_id": id}), t)["go"],
                true
            );
            ok(
                &mut svc,
                "send.done",
                json!({"send_id": id, "ok": true}),
                t + 50,
            );
        }
        drop(svc);
        // two sends done at 1050 and 2050: the third may go at 61050, restart or not
        let mut svc = open(&s, 3_000);
        let r = send(&mut svc, "sobot", "w2", Some("c"), 3_000).unwrap();
        assert_eq!(r["not_before_ms"], 61_050);
        let id = r["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": id}), 61_049)["go"],
            false
        );
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": id}), 61_050)["go"],
            true
        );
    }

    #[test]
    fn a_changed_rule_paces_sends_already_queued() {
        let s = Scratch::new("retune");
        let mut svc = open(&s, 0);
        let a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": a}), 0)["go"],
            true
        );
        ok(&mut svc, "send.done", json!({"send_id": a, "ok": true}), 0);
        ok(
            &mut svc,
            "meter.rules.set",
            json!({"platform": "udesk", "per": "workspace", "min_interval_ms": 5000}),
            10,
        );
        // b was queued under the old rule (1 s); it now waits 5 s after a
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 1_000)["delay_ms"],
            4_000
        );
        ok(
            &mut svc,
            "meter.rules.reset",
            json!({"platform": "udesk"}),
            1_001,
        );
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), UDESK_MS)["go"],
            true
        );
    }
}
