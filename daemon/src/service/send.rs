//! `send.*`: reservations, grants, reports and cancels, each a durable history row first.

use super::*;
use quiver_shared::proto::{BeginReply, ReserveReply, SendStateReply};

/// What the meter said to a send that asked for its slot.
enum Grant {
    Go,
    Wait(u64),
}

/// What a reservation asked the meter, inside its transaction.
struct Asked {
    id: i64,
    created: bool,
    key: String,
    rule: Rule,
    reserved: Result<u64, Refusal>,
    began: Option<Begin>,
}

fn state_reply(send_id: i64, state: SendState) -> Outcome {
    reply(SendStateReply { send_id, state })
}

impl Service {
    /// Gives up on in-flight sends whose lease ran out: `failed`, never re-sent.
    pub fn expire(&mut self, now: u64) {
        let gone = self.meter.expire_keys(now);
        self.close_sends(
            gone,
            SendState::Sending,
            SendState::Failed,
            LEASE_EXPIRED,
            now,
        );
    }

    /// Drops queued sends nobody began long after their slot: `cancelled`, never sent.
    pub fn abandon(&mut self, now: u64) {
        let gone = self.meter.abandon(now);
        self.close_sends(
            gone,
            SendState::Queued,
            SendState::Cancelled,
            ABANDONED,
            now,
        );
    }

    /// Records sends the meter let go of (`from` -> `to` with `why`) and frees their keys.
    pub(super) fn close_sends(
        &mut self,
        sends: Vec<(i64, String)>,
        from: SendState,
        to: SendState,
        why: &str,
        now: u64,
    ) {
        for (id, key) in sends {
            warn!("send {id}: {why}");
            if let Err(e) = self.store.transition(id, &[from], to, Some(why), now) {
                crate::error!("send {id}: cannot record it as {}: {e}", to.as_str());
            }
            self.released(&key, Some(id), Some(to), now);
        }
    }

    pub(super) fn reserve(&mut self, p: ReserveParams, platform: Platform, now: u64) -> Outcome {
        let spec = self.rules.spec(platform).clone();
        if spec.quota.is_some() && p.conversation.as_deref().unwrap_or("").is_empty() {
            return Err(params::invalid(format!(
                "send.reserve: {} sends need `conversation` (the user the quota counts for)",
                platform.as_str()
            ))
            .into());
        }
        let key = spec.key(&p.workspace, p.conversation.as_deref());
        let library = p
            .library
            .clone()
            .unwrap_or_else(|| params::LOCAL.to_string());
        // the exact team revision sent, so the history resolves it on any machine
        let rev_id = if library == params::LOCAL {
            None
        } else {
            self.check_library(&library)?;
            self.store.rev_id_of(&library, &p.template_id, p.revision)?
        };
        let new = NewSend {
            idempotency_key: &p.idempotency_key,
            library: &library,
            rev_id: rev_id.as_deref(),
            template_id: &p.template_id,
            revision: p.revision,
            part_index: p.part_index,
            platform: &p.platform,
            workspace: &p.workspace,
            conversation: p.conversation.as_deref(),
            customer: p.customer.as_deref(),
            payload: &p.payload,
            meter_key: &key,
        };
        // The row is durable before the reply. A free slot asked for with `"begin": true` is
        // granted in the reservation's own transaction (one commit: the row is written as
        // `sending`); the meter hears of the send inside it, and is put back if it fails.
        let sha = crate::store::sha256_hex(&p.payload);
        let (rules, meter) = (&self.rules, &mut self.meter);
        let mut asked: Option<Asked> = None;
        let stored = self.store.reserve_with(&new, now, |row, created| {
            if !created && row.payload_sha256 != sha {
                return false; // refused below, never metered
            }
            let key = row
                .meter_key
                .clone()
                .or_else(|| {
                    let spec = rules.by_name(&row.platform)?;
                    Some(spec.key(&row.workspace, row.conversation.as_deref()))
                })
                .unwrap_or_else(|| key.clone());
            let rule = key_platform(&key)
                .and_then(|p| rules.by_name(&p).map(RuleSpec::rule))
                .unwrap_or(Rule::UDESK);
            let reserved = meter.try_reserve(&key, rule, row.send_id, now);
            let began = match reserved {
                Ok(0) if p.begin => Some(meter.begin(row.send_id, now)),
                _ => None,
            };
            let go = matches!(began, Some(Begin::Go));
            asked = Some(Asked {
                id: row.send_id,
                created,
                key,
                rule,
                reserved,
                began,
            });
            go
        });
        let (row, created) = match stored {
            Ok(v) => v,
            Err(e) => {
                // Nothing was written: the meter forgets what it was told.
                if let Some(a) = &asked {
                    if matches!(a.began, Some(Begin::Go)) {
                        self.meter.finish(a.id, now, false);
                    } else if a.created && a.reserved.is_ok() {
                        self.meter.cancel(a.id);
                    }
                }
                return Err(e.into());
            }
        };
        let id = row.send_id;
        if !created && row.payload_sha256 != sha {
            warn!(
                "send {id}: idempotency key {:?} reused with a different payload; refused",
                p.idempotency_key
            );
            return Err(ServiceError::KeyReused {
                key: p.idempotency_key,
                id,
                state: row.state,
            });
        }
        let Some(Asked {
            key,
            rule,
            reserved,
            began,
            ..
        }) = asked
        else {
            // a retry of a send that has moved on: the same send, never a second one
            // (a `sending` one was granted already, by `send.begin` or a `"begin": true`
            // reserve: it is never granted twice; report it with `send.done`)
            return reply(ReserveReply {
                send_id: id,
                delay_ms: 0,
                not_before_ms: None,
                state: row.state,
                replayed: true,
                go: p.begin.then_some(false),
                error: Some(row.error),
            });
        };
        match reserved {
            Ok(delay) => {
                let queued = |delay_ms: u64| ReserveReply {
                    send_id: id,
                    delay_ms,
                    not_before_ms: Some(now + delay_ms),
                    state: SendState::Queued,
                    replayed: !created,
                    go: p.begin.then_some(false),
                    error: None,
                };
                let Some(began) = began else {
                    return reply(queued(delay));
                };
                // The slot was free: the meter decided exactly as for `send.begin`, and a `Go`
                // is already durable as `sending`.
                match self.settle(id, &key, rule, began, true, now) {
                    Ok(Grant::Go) => reply(ReserveReply {
                        state: SendState::Sending,
                        go: Some(true),
                        ..queued(0)
                    }),
                    Ok(Grant::Wait(ms)) => reply(queued(ms)),
                    Err(e) => {
                        let err = ErrorBody::from(e);
                        let mut data = err.data.clone().unwrap_or_else(|| json!({}));
                        data["send_id"] = json!(id);
                        Err(err.with_data(data).into())
                    }
                }
            }
            Err(refusal) => {
                let err = ErrorBody::from(match refusal {
                    Refusal::Quota(r) => ServiceError::Quota(r),
                    Refusal::QueueFull { limit } => ServiceError::QueueFull {
                        limit,
                        per: if spec.per == Per::Workspace {
                            "workspace"
                        } else {
                            "conversation"
                        },
                    },
                });
                // recorded as failed (never released): a retry of this key gets the same answer
                self.store
                    .refuse(id, &format!("{}: {}", err.code.as_str(), err.message))?;
                let mut data = err.data.clone().unwrap_or_else(|| json!({}));
                data["send_id"] = json!(id);
                Err(err.with_data(data).into())
            }
        }
    }

    pub(super) fn row(&self, id: i64) -> Result<SendRow, ServiceError> {
        self.store
            .send(id)?
            .ok_or_else(|| not_found(format!("no send {id}")))
    }

    pub(super) fn begin(&mut self, id: i64, now: u64) -> Outcome {
        let row = self.row(id)?;
        match row.state {
            SendState::Queued => {}
            SendState::Sending => {
                return Err(conflict(
                    id,
                    row.state,
                    "it has begun already (its slot was granted); report it with send.done",
                ))
            }
            s => return Err(conflict(id, s, "it cannot begin")),
        }
        let key = self
            .row_key(&row)
            .ok_or_else(|| ServiceError::Internal(format!("send {id}: no rule")))?;
        let rule = self.rule_of_key(&key);
        match self.grant(id, &key, rule, now)? {
            Grant::Go => reply(BeginReply::GO),
            Grant::Wait(ms) => reply(BeginReply::wait(ms, now)),
        }
    }

    /// Asks the meter for the slot of queued send `id` (of `key`): `Go` only once `sending` is
    /// recorded (durably, before any reply), else how long to wait. A quota that will not
    /// allow it fails the send (`quota_exceeded`).
    fn grant(&mut self, id: i64, key: &str, rule: Rule, now: u64) -> Result<Grant, ServiceError> {
        let began = self.meter.begin(id, now);
        self.settle(id, key, rule, began, false, now)
    }

    /// What the meter's answer `began` for queued send `id` comes to. `recorded`: a `Go` is
    /// durable already (written as `sending` in the reservation's transaction).
    fn settle(
        &mut self,
        id: i64,
        key: &str,
        rule: Rule,
        began: Begin,
        recorded: bool,
        now: u64,
    ) -> Result<Grant, ServiceError> {
        match began {
            Begin::Go if recorded => Ok(Grant::Go),
            Begin::Go => {
                match self
                    .store
                    .transition(id, &[SendState::Queued], SendState::Sending, None, now)
                {
                    Ok(true) => Ok(Grant::Go),
                    other => {
                        // Not recorded: do not send. Put it back in line (at the end).
                        self.meter.finish(id, now, false);
                        self.meter.reserve(key, rule, id, now);
                        Err(match other {
                            Err(e) => e.into(),
                            _ => ServiceError::Internal(format!(
                                "send {id} changed state while beginning"
                            )),
                        })
                    }
                }
            }
            Begin::Wait(ms) => Ok(Grant::Wait(ms)),
            Begin::NotQueued => {
                // queued in the store but unknown to the meter: queue it again
                warn!("send {id} was queued but not metered; queued again");
                Ok(Grant::Wait(self.meter.reserve(key, rule, id, now).max(1)))
            }
            Begin::Refused(r) => {
                let err = ServiceError::Quota(r);
                self.store.transition(
                    id,
                    &[SendState::Queued],
                    SendState::Failed,
                    Some(&format!("quota_exceeded: {err}")),
                    now,
                )?;
                self.released(key, Some(id), Some(SendState::Failed), now);
                Err(err)
            }
        }
    }

    pub(super) fn done(&mut self, p: DoneParams, now: u64) -> Outcome {
        let row = self.row(p.send_id)?;
        let id = row.send_id;
        let (to, error) = if p.ok {
            (SendState::Sent, None)
        } else {
            let e = p
                .error
                .unwrap_or_else(|| "the browser reported the send as failed".to_string());
            (SendState::Failed, Some(e))
        };
        let key = self.row_key(&row);
        match row.state {
            SendState::Sending => {
                // The interval runs from now, whatever the store says.
                if !self.meter.finish(id, now, p.ok) {
                    debug!("send {id}: done, but the meter had no send in flight");
                }
            }
            SendState::Failed
                if matches!(row.error.as_deref(), Some(LEASE_EXPIRED | RESTARTED)) =>
            {
                // A late report after the lease ran out or the daemon restarted: the outcome was
                // unknown and the browser knows it. Record what happened (once: the row leaves
                // the unknown state), and keep the interval from this moment. The slot is never
                // granted again (`send.begin` refuses a failed send).
                info!(
                    "send {id}: late report after {} (ok={})",
                    if row.error.as_deref() == Some(RESTARTED) {
                        "a daemon restart"
                    } else {
                        "the lease ran out"
                    },
                    p.ok
                );
                if let Some(k) = &key {
                    let rule = self.rule_of_key(k);
                    self.meter.restore_last_done(k, rule, now);
                }
            }
            SendState::Sent if p.ok => return state_reply(id, row.state),
            SendState::Failed if !p.ok => return state_reply(id, row.state),
            SendState::Queued => {
                return Err(conflict(
                    id,
                    row.state,
                    "call send.begin and wait for go first",
                ))
            }
            s => return Err(conflict(id, s, "it cannot be reported done")),
        }
        // the outcome and the template's use (a sent first part) in one commit
        let lib = row.library.as_deref().unwrap_or(params::LOCAL);
        let used = match (&row.template_id, row.part_index) {
            (Some(t), Some(0)) if p.ok => Some((lib, t.as_str())),
            _ => None,
        };
        let finished = self
            .store
            .finish(id, &[row.state], to, error.as_deref(), now, used)?;
        if !finished.moved {
            return Err(ServiceError::Internal(format!(
                "send {id} changed state while being reported done"
            )));
        }
        self.counted(used, finished.counted, now);
        if let Some(k) = key {
            self.released(&k, Some(id), Some(to), now);
        }
        state_reply(id, to)
    }

    pub(super) fn cancel(&mut self, id: i64, now: u64) -> Outcome {
        let row = self.row(id)?;
        match row.state {
            SendState::Queued => {
                self.meter.cancel(id);
                let moved = self.store.transition(
                    id,
                    &[SendState::Queued],
                    SendState::Cancelled,
                    None,
                    now,
                )?;
                if !moved {
                    return Err(ServiceError::Internal(format!(
                        "send {id} changed state while being cancelled"
                    )));
                }
                if let Some(k) = self.row_key(&row) {
                    self.released(&k, Some(id), Some(SendState::Cancelled), now);
                }
                state_reply(id, SendState::Cancelled)
            }
            SendState::Cancelled => state_reply(id, row.state),
            s => Err(conflict(id, s, "it can no longer be cancelled")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testkit::*;

    #[test]
    fn reserve_validates_fields() {
        let s = Scratch::new("validate");
        let mut svc = open(&s, 0);
        let mut p = reserve_params("k", "w");
        p["platform"] = json!("slack");
        let (code, msg) = err(&mut svc, "send.reserve", p, 0);
        assert_eq!(code, "invalid_params");
        assert!(msg.contains("platform") && msg.contains("slack"), "{msg}");
        let mut p = reserve_params("k", "w");
        p["payload"] = json!("");
        let (_, msg) = err(&mut svc, "send.reserve", p, 0);
        assert!(msg.contains("payload"), "{msg}");
        let mut p = reserve_params("k", "w");
        p["payload"] = json!("x".repeat(MAX_PAYLOAD + 1));
        let (_, msg) = err(&mut svc, "send.reserve", p, 0);
        assert!(msg.contains("payload") && msg.contains("limit"), "{msg}");
        let mut p = reserve_params("k", "w");
        p.as_object_mut().unwrap().remove("workspace");
        let (code, msg) = err(&mut svc, "send.reserve", p, 0);
        assert_eq!(code, "invalid_params");
        assert!(msg.contains("workspace"), "{msg}");
        assert!(ok(&mut svc, "history.list", json!({}), 0)["rows"]
            .as_array()
            .unwrap()
            .is_empty());
    }

    #[test]
    fn three_sends_are_spaced_from_done_and_idempotent() {
        let s = Scratch::new("flow");
        let mut svc = open(&s, 0);
        let t0 = 1_000_000;
        let ids: Vec<i64> = (0..3)
            .map(|i| {
                let r = ok(
                    &mut svc,
                    "send.reserve",
                    reserve_params(&format!("k{i}"), "w"),
                    t0,
                );
                assert_eq!(r["state"], "queued");
                assert_eq!(r["delay_ms"], UDESK_MS * i);
                assert_eq!(r["not_before_ms"], t0 + UDESK_MS * i);
                r["send_id"].as_i64().unwrap()
            })
            .collect();
        let begin = |svc: &mut Service, id: i64, now: u64| {
            ok(svc, "send.begin", json!({"send_id": id}), now)
        };
        assert_eq!(begin(&mut svc, ids[0], t0), json!({"go": true}));
        assert_eq!(begin(&mut svc, ids[1], t0 + 10)["go"], false);
        svc.take_events();
        let r = ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[0], "ok": true}),
            t0 + 100,
        );
        assert_eq!(r, json!({"send_id": ids[0], "state": "sent"}));
        // every connection hears that the slot freed, and who is next
        let rel = events(&mut svc, "meter.released");
        assert_eq!(rel.len(), 1, "{rel:?}");
        assert_eq!(rel[0]["send_id"], ids[0]);
        assert_eq!(rel[0]["state"], "sent");
        assert_eq!(rel[0]["platform"], "udesk");
        assert_eq!(
            rel[0]["next"],
            json!({"send_id": ids[1], "delay_ms": UDESK_MS, "not_before_ms": t0 + 100 + UDESK_MS})
        );
        // repeated done is idempotent
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[0], "ok": true}),
            t0 + 101,
        );
        // done at t0 + 100: the next may go UDESK_MS later, not a millisecond sooner
        let free = t0 + 100 + UDESK_MS;
        let r = begin(&mut svc, ids[1], free - 1);
        assert_eq!(
            r,
            json!({"go": false, "delay_ms": 1, "not_before_ms": free})
        );
        assert_eq!(begin(&mut svc, ids[1], free), json!({"go": true}));
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[1], "ok": false, "error": "tab closed"}),
            free + 100,
        );
        assert_eq!(
            begin(&mut svc, ids[2], free + 100 + UDESK_MS),
            json!({"go": true})
        );
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": ids[2], "ok": true}),
            free + 200 + UDESK_MS,
        );

        // the same idempotency key again (a background that restarted): the same send, no new
        // row, nothing queued, nothing counted
        let r = ok(
            &mut svc,
            "send.reserve",
            reserve_params("k0", "w"),
            t0 + 5000,
        );
        assert_eq!(
            r,
            json!({"send_id": ids[0], "delay_ms": 0, "not_before_ms": null, "state": "sent",
                   "replayed": true, "error": null})
        );
        let e = err_full(
            &mut svc,
            "send.begin",
            json!({"send_id": ids[0]}),
            t0 + 5000,
        );
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["state"], "sent");
        let rows = ok(&mut svc, "history.list", json!({}), t0 + 5000)["rows"].clone();
        let states: Vec<&str> = rows
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["state"].as_str().unwrap())
            .collect();
        assert_eq!(states, vec!["sent", "failed", "sent"]);
        assert_eq!(rows[1]["error"], "tab closed");
        // two of the three part-0 sends went out: counted twice, not three times
        let g = ok(&mut svc, "templates.get", json!({"id": "greeting"}), t0);
        assert_eq!(g["usage_count"], 2);
        // templates.list carries the usage of sent templates beside them, for ranking
        let l = ok(&mut svc, "templates.list", json!({}), t0);
        assert_eq!(
            l["usage"],
            json!([{"id": "greeting", "library": "local", "usage_count": 2,
                    "last_used_at": free + 200 + UDESK_MS}])
        );
        assert!(l["templates"][0].get("usage_count").is_none());
        // an edit is a new revision and keeps the usage
        let mut edited = g["template"].clone();
        edited["title"] = json!("Greeting, edited");
        ok(&mut svc, "templates.put", json!({"template": edited}), t0);
        let g = ok(&mut svc, "templates.get", json!({"id": "greeting"}), t0);
        assert_eq!(g["usage_count"], 2);
        assert_eq!(g["template"]["revision"], 2);
        assert_eq!(g["last_used_at"], free + 200 + UDESK_MS);

        // the same key with another payload is a bug in the caller: refused
        let mut p = reserve_params("k1", "w");
        p["payload"] = json!("different");
        let e = err_full(&mut svc, "send.reserve", p, t0 + 6000);
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["send_id"], ids[1]);
    }

    #[test]
    fn state_errors() {
        let s = Scratch::new("states");
        let mut svc = open(&s, 0);
        let (code, _) = err(&mut svc, "send.begin", json!({"send_id": 42}), 0);
        assert_eq!(code, "not_found");
        let id = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        let (code, msg) = err(&mut svc, "send.done", json!({"send_id": id, "ok": true}), 0);
        assert_eq!(code, "conflict");
        assert!(msg.contains("queued"), "{msg}");
        let r = ok(&mut svc, "send.cancel", json!({"send_id": id}), 0);
        assert_eq!(r["state"], "cancelled");
        ok(&mut svc, "send.cancel", json!({"send_id": id}), 0);
        let (code, _) = err(&mut svc, "send.begin", json!({"send_id": id}), 0);
        assert_eq!(code, "conflict");
        // a cancelled send lets the next one go at once
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 0)["go"],
            true
        );
        // a begin retried after go (the reply was lost): the slot is not granted twice
        let e = err_full(&mut svc, "send.begin", json!({"send_id": b}), 1);
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["state"], "sending");
        let (code, _) = err(&mut svc, "send.cancel", json!({"send_id": b}), 1);
        assert_eq!(code, "conflict");
    }

    #[test]
    fn expired_lease_fails_the_send_and_frees_the_key() {
        let s = Scratch::new("lease");
        let mut svc = open(&s, 0);
        let a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": a}), 0)["go"],
            true
        );
        let lease = Rule::UDESK.lease_ms;
        svc.take_events();
        svc.expire(lease);
        let rel = events(&mut svc, "meter.released");
        assert_eq!(rel[0]["send_id"], a);
        assert_eq!(rel[0]["next"]["send_id"], b);
        let rows = ok(&mut svc, "history.list", json!({}), lease)["rows"].clone();
        assert_eq!(rows[1]["state"], "failed");
        assert_eq!(rows[1]["error"], LEASE_EXPIRED);
        assert_eq!(
            ok(
                &mut svc,
                "send.begin",
                json!({"send_id": b}),
                lease + UDESK_MS
            )["go"],
            true
        );
        // a late report of `a` is recorded, and keeps the interval from now
        let r = ok(
            &mut svc,
            "send.done",
            json!({"send_id": a, "ok": true}),
            lease + 1500,
        );
        assert_eq!(r["state"], "sent");
    }

    #[test]
    fn queued_sends_nobody_begins_are_cancelled_not_sent() {
        let s = Scratch::new("abandon");
        let mut svc = open(&s, 0);
        let a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
        svc.tick(quiver_shared::meter::QUEUE_ABANDON_MS - 1);
        let rows = ok(&mut svc, "history.list", json!({}), 1)["rows"].clone();
        assert_eq!(rows[0]["state"], "queued");
        svc.tick(quiver_shared::meter::QUEUE_ABANDON_MS);
        let rows = ok(&mut svc, "history.list", json!({}), 1)["rows"].clone();
        assert_eq!(rows[0]["state"], "cancelled");
        assert_eq!(rows[0]["error"], ABANDONED);
        // a browser that comes back late is told, and cannot post it
        let e = err_full(&mut svc, "send.begin", json!({"send_id": a}), 70_000);
        assert_eq!(e["code"], "conflict");
        // the workspace is free for the next send at once
        let b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 70_000)["send_id"].clone();
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 70_000)["go"],
            true
        );
    }

    #[test]
    fn restart_fails_sending_and_requeues_queued() {
        let s = Scratch::new("restart");
        let (a, b, c);
        {
            let mut svc = open(&s, 0);
            a = ok(&mut svc, "send.reserve", reserve_params("a", "w"), 0)["send_id"].clone();
            b = ok(&mut svc, "send.reserve", reserve_params("b", "w"), 0)["send_id"].clone();
            c = ok(&mut svc, "send.reserve", reserve_params("c", "w"), 0)["send_id"].clone();
            assert_eq!(
                ok(&mut svc, "send.begin", json!({"send_id": a}), 500)["go"],
                true
            );
        }
        let mut svc = open(&s, 600);
        let rows = ok(&mut svc, "history.list", json!({}), 600)["rows"].clone();
        assert_eq!(rows[2]["state"], "failed");
        assert_eq!(rows[2]["error"], RESTARTED);
        // a's outcome is unknown: the key restarts as if it was done at the restart (600)
        assert_eq!(
            ok(&mut svc, "send.begin", json!({"send_id": b}), 600),
            json!({"go": false, "delay_ms": UDESK_MS, "not_before_ms": 600 + UDESK_MS})
        );
        assert_eq!(
            ok(
                &mut svc,
                "send.begin",
                json!({"send_id": c}),
                600 + UDESK_MS
            )["go"],
            false
        );
        assert_eq!(
            ok(
                &mut svc,
                "send.begin",
                json!({"send_id": b}),
                600 + UDESK_MS
            )["go"],
            true
        );
    }

    #[test]
    fn reserve_with_begin_grants_a_free_slot_and_never_early() {
        let s = Scratch::new("go-now");
        let t0 = 1_000_000;
        let mut svc = open(&s, t0);
        let go_now = |key: &str| {
            let mut p = reserve_params(key, "w");
            p["begin"] = json!(true);
            p
        };
        let a = ok(&mut svc, "send.reserve", go_now("a"), t0);
        assert_eq!(
            a,
            json!({"send_id": a["send_id"], "delay_ms": 0, "not_before_ms": t0,
                   "state": "sending", "replayed": false, "go": true})
        );
        let row = svc
            .store
            .send(a["send_id"].as_i64().unwrap())
            .unwrap()
            .unwrap();
        assert_eq!(row.state, SendState::Sending);
        ok(
            &mut svc,
            "send.done",
            json!({"send_id": a["send_id"], "ok": true}),
            t0 + 100,
        );
        let free = t0 + 100 + UDESK_MS;
        // one millisecond early: queued, with the delay
        let b = ok(&mut svc, "send.reserve", go_now("b"), free - 1);
        assert_eq!(
            (b["state"].clone(), b["go"].clone()),
            (json!("queued"), json!(false))
        );
        assert_eq!(b["delay_ms"], 1);
        // its retry at the slot: granted, once
        let b2 = ok(&mut svc, "send.reserve", go_now("b"), free);
        assert_eq!(b2["send_id"], b["send_id"]);
        assert_eq!(
            (b2["state"].clone(), b2["go"].clone()),
            (json!("sending"), json!(true))
        );
        assert_eq!(b2["replayed"], true);
        let b3 = ok(&mut svc, "send.reserve", go_now("b"), free + 1);
        assert_eq!(
            (b3["state"].clone(), b3["go"].clone()),
            (json!("sending"), json!(false))
        );
        let (code, _) = err(
            &mut svc,
            "send.begin",
            json!({"send_id": b["send_id"]}),
            free + 2,
        );
        assert_eq!(code, "conflict");
    }
}
