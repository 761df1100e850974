//! `history.list` and `settings.*` (the retention the daily prune applies).

use super::*;

/// User settings (`settings.get/set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Settings {
    /// `None`: keep history forever.
    pub(super) history_retention_days: Option<u32>,
}

pub(super) const RETENTION_KEY: &str = "history_retention_days";

impl Settings {
    pub(super) fn load(store: &Store) -> Result<Settings, StoreError> {
        let days = match store.setting(RETENTION_KEY)? {
            None => Some(DEFAULT_RETENTION_DAYS),
            Some(v) => match serde_json::from_str::<Option<u32>>(&v) {
                Ok(d) => d,
                Err(e) => {
                    warn!("setting {RETENTION_KEY} is {v:?} ({e}); using the default");
                    Some(DEFAULT_RETENTION_DAYS)
                }
            },
        };
        Ok(Settings {
            history_retention_days: days,
        })
    }

    pub(super) fn to_json(self) -> Value {
        json!({
            "history_retention_days": self.history_retention_days,
            "defaults": { "history_retention_days": DEFAULT_RETENTION_DAYS },
        })
    }
}

impl Service {
    pub(super) fn history(&mut self, filter: HistoryFilter, limit: usize) -> Outcome {
        let rows = self.store.history_query(&filter, limit + 1)?;
        let more = rows.len() > limit;
        let mut out = Vec::with_capacity(rows.len().min(limit));
        let mut bytes = 0;
        let mut truncated = false;
        let mut last = None;
        for row in rows.into_iter().take(limit) {
            let v =
                serde_json::to_value(&row).map_err(|e| ServiceError::Internal(e.to_string()))?;
            let size = v.to_string().len() + 1;
            if !out.is_empty() && bytes + size > PAGE_BYTES {
                truncated = true;
                break;
            }
            bytes += size;
            last = Some(row.send_id);
            out.push(v);
        }
        let next = if more || truncated {
            last.map(|id| format!("h{id}"))
        } else {
            None
        };
        Ok(json!({ "rows": out, "next_cursor": next, "truncated": truncated }))
    }

    pub(super) fn settings_set(&mut self, p: SettingsPatch, now: u64) -> Outcome {
        if let Some(days) = p.history_retention_days {
            let v = serde_json::to_string(&days).unwrap_or_else(|_| "null".into());
            self.store.set_setting(RETENTION_KEY, &v)?;
            self.settings.history_retention_days = days;
            // a shorter retention applies at once
            self.prune(now);
        }
        self.emit("settings.changed", json!({ "what": "settings" }));
        Ok(self.settings.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testkit::*;

    #[test]
    fn retention_prunes_old_finished_history() {
        let s = Scratch::new("retention");
        let mut svc = open(&s, 0);
        assert_eq!(
            ok(&mut svc, "settings.get", json!({}), 0)["history_retention_days"],
            DEFAULT_RETENTION_DAYS
        );
        let old = ok(&mut svc, "send.reserve", reserve_params("old", "w"), 0)["send_id"].clone();
        ok(&mut svc, "send.cancel", json!({"send_id": old}), 0);
        ok(&mut svc, "send.reserve", reserve_params("queued", "w2"), 0);
        let now = 40 * DAY_MS;
        let new = ok(&mut svc, "send.reserve", reserve_params("new", "w3"), now)["send_id"].clone();
        // forever: nothing goes
        ok(
            &mut svc,
            "settings.set",
            json!({"history_retention_days": null}),
            now,
        );
        assert_eq!(
            ok(&mut svc, "history.list", json!({}), now)["rows"]
                .as_array()
                .unwrap()
                .len(),
            3
        );
        svc.take_events();
        let r = ok(
            &mut svc,
            "settings.set",
            json!({"history_retention_days": 30}),
            now,
        );
        assert_eq!(r["history_retention_days"], 30);
        assert_eq!(events(&mut svc, "settings.changed").len(), 1);
        let rows = ok(&mut svc, "history.list", json!({}), now)["rows"].clone();
        let ids: Vec<&Value> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| &r["send_id"])
            .collect();
        assert_eq!(
            ids.len(),
            2,
            "the old cancelled row went, the queued one stays: {rows}"
        );
        assert_eq!(ids[0], &new);
        drop(svc);
        let mut svc = open(&s, now);
        assert_eq!(
            ok(&mut svc, "settings.get", json!({}), now)["history_retention_days"],
            30
        );
    }

    #[test]
    fn history_pages_and_filters() {
        let s = Scratch::new("hpages");
        let mut svc = open(&s, 0);
        for i in 0..5 {
            let mut p = reserve_params(&format!("k{i}"), &format!("w{i}"));
            p["customer"] = json!(if i % 2 == 0 { "even" } else { "odd" });
            ok(&mut svc, "send.reserve", p, i * 10);
        }
        let page = ok(&mut svc, "history.list", json!({"limit": 2}), 100);
        assert_eq!(page["rows"].as_array().unwrap().len(), 2);
        let rest = ok(
            &mut svc,
            "history.list",
            json!({"limit": 10, "cursor": page["next_cursor"]}),
            100,
        );
        assert_eq!(rest["rows"].as_array().unwrap().len(), 3);
        assert!(rest["next_cursor"].is_null());
        let even = ok(
            &mut svc,
            "history.list",
            json!({"customer": "even", "since_ms": 10}),
            100,
        );
        assert_eq!(even["rows"].as_array().unwrap().len(), 2);
    }
}
