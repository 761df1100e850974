//! Team libraries: `team.status`, `team.conflicts`, `team.resolve`, `team.leave`, and the
//! entry points of the sync engine (`crate::sync`), which does the network work outside the
//! service lock and comes here to read and write the store: every page it pulls, every push
//! result, a join, the library list, a reset. Events: `library.changed` when pulled changes
//! alter templates, `team.changed` for the rest.

use super::*;
use crate::store::{Applied, ConflictRow, HubRow, LibraryRow, Side};
use quiver_shared::proto::{Take, TakeSide, TakeWhole, TeamLeaveParams, TeamResolveParams};
use quiver_shared::sync::wire::{ChangesPage, DigestReply, LibraryInfo, Me, PushResult};
use quiver_shared::sync::{Revision, Role};

/// What the sync engine last saw of a hub.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct HubLive {
    /// `connecting`, `online`, `offline` or `unauthorized` (the token was revoked).
    pub state: &'static str,
    /// The event stream (`/v1/events`) is connected.
    pub events: bool,
    pub last_error: Option<String>,
    /// When a request last succeeded.
    pub last_ok_at: Option<u64>,
}

/// What the sync engine last saw of a library.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct LibLive {
    /// The last pull ended with nothing more to read.
    pub caught_up: bool,
    /// The last digest compared: the local one, the hub's, and the seq both were at.
    pub digest_local: Option<String>,
    pub digest_hub: Option<String>,
    pub digest_seq: Option<i64>,
    pub last_error: Option<String>,
    /// When a pulled page last changed something (ms).
    pub changed_at: Option<u64>,
}

/// What `team.status` with `probe` found by asking a hub now.
#[derive(Debug, Clone, Default)]
pub struct Probe {
    pub reachable: bool,
    /// `ok` (the pinned certificate was presented), `mismatch`, or `plain` (loopback HTTP).
    pub certificate: Option<&'static str>,
    /// The device token was accepted (`None`: not asked, the hub was not reached).
    pub token: Option<bool>,
    pub error: Option<String>,
    /// Head seqs by library, from `/v1/me`.
    pub head_seqs: HashMap<String, i64>,
    /// The hub's digests by library.
    pub digests: HashMap<String, DigestReply>,
}

fn role_of(l: &LibraryRow) -> Option<Role> {
    l.role.as_deref().and_then(Role::parse)
}

fn side_json(s: &Side) -> Value {
    let body = s
        .body_json
        .as_deref()
        .and_then(|b| serde_json::from_str::<Value>(b).ok());
    json!({
        "rev_id": s.rev_id,
        "known": s.known,
        "op": s.op,
        "template": body,
        "format": s.format,
        "author": s.author_name,
        "author_id": s.author_user,
        "at": s.at_ms,
    })
}

fn conflict_json(c: &ConflictRow, library_name: &str) -> Value {
    json!({
        "library": c.library,
        "library_name": library_name,
        "conflict": c.id,
        "template": c.template,
        "fields": c.fields,
        "opened_seq": c.opened_seq,
        "base": c.base.as_ref().map(side_json),
        "head": side_json(&c.head),
        "other": side_json(&c.other),
        "resolving": c.resolving,
    })
}

/// The template of a conflict's side (`None`: a tombstone). A side this build cannot read is
/// an error that says so.
fn side_template(s: &Side, which: &str) -> Result<Option<Template>, ServiceError> {
    if !s.known {
        return Err(ServiceError::Conflict(format!(
            "the {which} side ({}) was not pulled yet; run `quiver team sync` and try again",
            s.rev_id
        )));
    }
    if s.op.as_deref() == Some("delete") {
        return Ok(None);
    }
    if s.format.is_some_and(|f| f > quiver_shared::sync::FORMAT) {
        return Err(ServiceError::Conflict(format!(
            "the {which} side ({}) was written by a newer Quiver; update Quiver to resolve it",
            s.rev_id
        )));
    }
    let body = s.body_json.as_deref().unwrap_or("null");
    serde_json::from_str::<Template>(body)
        .map(Some)
        .map_err(|e| {
            ServiceError::Internal(format!(
                "the {which} side ({}) is unreadable: {e}",
                s.rev_id
            ))
        })
}

impl Service {
    /// Wakes the sync engine: team work is waiting.
    pub(super) fn kick_sync(&mut self) {
        self.kick.send_modify(|v| *v = v.wrapping_add(1));
    }

    /// A receiver the sync engine waits on.
    pub fn kick_receiver(&self) -> tokio::sync::watch::Receiver<u64> {
        self.kick.subscribe()
    }

    fn team_changed(&mut self, what: &str, hub: Option<&str>, library: Option<&str>) {
        self.emit(
            "team.changed",
            json!({ "what": what, "hub": hub, "library": library }),
        );
    }

    fn team_library(&self, id: &str) -> Result<LibraryRow, ServiceError> {
        match self.store.library(id)? {
            Some(l) if l.kind == "team" && l.removed_at.is_none() => Ok(l),
            Some(l) if l.kind != "team" => {
                Err(params::invalid(format!("library {id:?} is not a team library")).into())
            }
            _ => Err(not_found(format!(
                "no team library {id:?} (see team.status for the libraries)"
            ))),
        }
    }

    // ---- the protocol's team methods ----

    /// `team.status`: every hub and team library, with what the engine last saw or, with a
    /// probe, what the hubs answered just now.
    pub fn team_status(
        &mut self,
        probes: Option<&HashMap<String, Probe>>,
        only: Option<&str>,
        now: u64,
    ) -> Value {
        let hubs = self.store.hubs().unwrap_or_default();
        let libs = self.store.libraries().unwrap_or_default();
        let mut hub_out = vec![];
        for h in &hubs {
            let live = self.hub_live.get(&h.hub_id).cloned().unwrap_or(HubLive {
                state: "connecting",
                ..Default::default()
            });
            let mut v = json!({
                "hub_id": h.hub_id,
                "url": h.url,
                "fingerprint": h.fingerprint,
                "user_id": h.user_id,
                "user_name": h.user_name,
                "device_id": h.device_id,
                "device_name": h.device_name,
                "joined_at": h.joined_at,
                "state": live.state,
                "events": live.events,
                "last_error": live.last_error,
                "last_ok_at": live.last_ok_at,
            });
            if let Some(p) = probes.and_then(|p| p.get(&h.hub_id)) {
                v["probe"] = json!({
                    "reachable": p.reachable,
                    "certificate": p.certificate,
                    "token": p.token,
                    "error": p.error,
                });
            }
            hub_out.push(v);
        }
        let mut lib_out = vec![];
        for l in libs
            .iter()
            .filter(|l| l.kind == "team" && l.removed_at.is_none())
            .filter(|l| only.is_none_or(|o| o == l.id))
        {
            let hub = l.hub_id.clone().unwrap_or_default();
            let counts = self.store.library_counts(&l.id).unwrap_or_default();
            let live = self.lib_live.get(&l.id).cloned().unwrap_or_default();
            let state = self.hub_live.get(&hub).map_or("connecting", |h| h.state);
            let probe = probes.and_then(|p| p.get(&hub));
            let head_seq = probe
                .and_then(|p| p.head_seqs.get(&l.id).copied())
                .unwrap_or(l.head_seq)
                .max(l.last_seq);
            let local = self.store.library_digest(&l.id).ok();
            let (digest_hub, digest_seq) = match probe.and_then(|p| p.digests.get(&l.id)) {
                Some(d) => (Some(d.digest.clone()), Some(d.head_seq)),
                None => (live.digest_hub.clone(), live.digest_seq),
            };
            // comparable only when the hub's digest is of the log this daemon applied
            let digest_match = match (&local, &digest_hub, digest_seq) {
                (Some((loc, _, _)), Some(hub_d), Some(seq)) if seq == l.last_seq => {
                    Some(loc == hub_d)
                }
                _ => None,
            };
            lib_out.push(json!({
                "id": l.id,
                "name": l.name,
                "hub_id": l.hub_id,
                "role": l.role,
                "review_required": l.review_required,
                "epoch": l.epoch,
                "head_seq": head_seq,
                "cursor": l.last_seq,
                "lag": (head_seq - l.last_seq).max(0),
                "caught_up": live.caught_up,
                "resetting": l.resetting,
                "templates": counts.templates,
                "outbox": counts.outbox,
                "oldest_outbox_ms": counts.oldest_outbox_at.map(|t| now.saturating_sub(t)),
                "drafts": counts.drafts,
                "conflicts": counts.conflicts,
                "digest": local.as_ref().map(|(d, _, _)| d),
                "hub_digest": digest_hub,
                "digest_seq": digest_seq,
                "digest_match": digest_match,
                "state": state,
                "last_error": live.last_error,
            }));
        }
        json!({ "hubs": hub_out, "libraries": lib_out })
    }

    /// `team.conflicts`: the open conflicts with both sides (and their base).
    pub(super) fn team_conflicts(&mut self, library: Option<&str>) -> Outcome {
        if let Some(l) = library {
            self.team_library(l)?;
        }
        let names: HashMap<String, String> = self
            .store
            .libraries()?
            .into_iter()
            .map(|l| (l.id, l.name))
            .collect();
        let list = self.store.conflicts(library)?;
        let out: Vec<Value> = list
            .iter()
            .map(|c| conflict_json(c, names.get(&c.library).map_or("", String::as_str)))
            .collect();
        Ok(json!({ "conflicts": out }))
    }

    /// `team.resolve`: writes a revision with parents `[head, other]` that closes the
    /// conflict once the hub has it.
    pub(super) fn team_resolve(&mut self, p: TeamResolveParams, now: u64) -> Outcome {
        let lib = self.team_library(&p.library)?;
        let role = role_of(&lib);
        if !role.is_some_and(Role::can_resolve) {
            return Err(ServiceError::Forbidden(format!(
                "your role in {:?} is {}: resolving a conflict needs editor or above",
                lib.name,
                role.map_or("none", Role::as_str)
            )));
        }
        let open: Vec<ConflictRow> = self
            .store
            .conflicts(Some(&lib.id))?
            .into_iter()
            .filter(|c| c.template == p.template)
            .collect();
        let c = match &p.conflict {
            Some(id) => open.into_iter().find(|c| &c.id == id).ok_or_else(|| {
                not_found(format!(
                    "no open conflict {id:?} on {:?} in {:?}",
                    p.template, lib.name
                ))
            })?,
            None => match open.len() {
                0 => {
                    return Err(not_found(format!(
                        "{:?} has no open conflict in {:?}",
                        p.template, lib.name
                    )))
                }
                1 => open
                    .into_iter()
                    .next()
                    .ok_or_else(|| not_found("no conflict"))?,
                _ => {
                    let ids: Vec<&str> = open.iter().map(|c| c.id.as_str()).collect();
                    return Err(params::invalid(format!(
                        "team.resolve: {:?} has {} open conflicts ({}); name one with `conflict`",
                        p.template,
                        ids.len(),
                        ids.join(", ")
                    ))
                    .into());
                }
            },
        };
        let head = side_template(&c.head, "head")?;
        let other = side_template(&c.other, "other")?;
        let mut fork: Option<Template> = None;
        let content: Option<Template> = match (p.edited, p.take) {
            (Some(t), _) => Some(t),
            (None, Some(Take::Whole(TakeWhole::Head))) => head,
            (None, Some(Take::Whole(TakeWhole::Other))) => other,
            (None, Some(Take::Whole(TakeWhole::Both))) => {
                if let Some(mut o) = other {
                    o.id = self.store.free_template_id(&lib.id, &p.template)?;
                    fork = Some(o);
                }
                head
            }
            (None, Some(Take::Fields(fields))) => {
                let (Some(mut t), Some(o)) = (head, other) else {
                    return Err(params::invalid(
                        "team.resolve: one side deleted the template: take \"head\", \"other\" \
                         or \"both\", not fields",
                    )
                    .into());
                };
                for (f, side) in &fields {
                    if *side == TakeSide::Head {
                        continue;
                    }
                    match f.as_str() {
                        "title" => t.title = o.title.clone(),
                        "folder" => t.folder = o.folder.clone(),
                        "shortcut" => t.shortcut = o.shortcut.clone(),
                        "tags" => t.tags = o.tags.clone(),
                        "variables" => t.variables = o.variables.clone(),
                        "parts" => t.parts = o.parts.clone(),
                        _ => {}
                    }
                }
                if let Err((field, msg)) = t.check() {
                    return Err(params::invalid(format!(
                        "team.resolve: the template these fields make is invalid: {field}: {msg}"
                    ))
                    .into());
                }
                Some(t)
            }
            (None, None) => {
                return Err(
                    params::invalid("team.resolve: say what to keep: `take` or `edited`").into(),
                )
            }
        };
        let res = self.store.write_resolution(
            &lib.id,
            &p.template,
            [&c.head.rev_id, &c.other.rev_id],
            content.as_ref(),
            fork.as_ref(),
            now,
        )?;
        let mut ids = vec![p.template.clone()];
        match &content {
            Some(t) => {
                let mut t = t.clone();
                t.revision = res.revision;
                self.library.upsert(&lib.id, &t);
            }
            None => self.library.remove(&lib.id, &p.template),
        }
        if let Some(f) = &fork {
            self.library.invalidate();
            ids.push(f.id.clone());
        }
        self.library_changed_in(&lib.id, "resolve", ids);
        self.team_changed("conflicts", lib.hub_id.as_deref(), Some(&lib.id));
        self.kick_sync();
        Ok(json!({
            "library": lib.id,
            "template": p.template,
            "conflict": c.id,
            "rev_id": res.rev_id,
            "revision": res.revision,
            "fork": res.fork.map(|(id, rev)| json!({"id": id, "rev_id": rev})),
        }))
    }

    /// `team.leave`: forgets a hub and purges its libraries (send history stays). Refused
    /// while edits wait to be pushed, unless forced.
    pub(super) fn team_leave(&mut self, p: TeamLeaveParams, now: u64) -> Outcome {
        let hubs = self.store.hubs()?;
        let hub = match &p.hub {
            Some(h) => hubs
                .into_iter()
                .find(|x| &x.hub_id == h || &x.url == h)
                .ok_or_else(|| not_found(format!("this device has not joined hub {h:?}")))?,
            None => match hubs.len() {
                0 => return Err(not_found("this device has not joined a team hub")),
                1 => hubs.into_iter().next().ok_or_else(|| not_found("no hub"))?,
                _ => {
                    let ids: Vec<String> = hubs.iter().map(|h| h.hub_id.clone()).collect();
                    return Err(params::invalid(format!(
                        "team.leave: this device joined {} hubs ({}); name one with `hub`",
                        ids.len(),
                        ids.join(", ")
                    ))
                    .into());
                }
            },
        };
        let mut waiting = 0;
        for l in self.store.libraries()? {
            if l.hub_id.as_deref() == Some(&hub.hub_id) && l.removed_at.is_none() {
                waiting += self.store.outbox_len(&l.id)?;
            }
        }
        if waiting > 0 && !p.force {
            return Err(ServiceError::ConflictData {
                message: format!(
                    "{waiting} edits were not pushed to the hub yet and would be lost: run \
                     `quiver team sync` first, or leave with force"
                ),
                data: json!({ "outbox": waiting }),
            });
        }
        let purged = self.store.leave_hub(&hub.hub_id, now)?;
        self.library.invalidate();
        for l in &purged {
            self.lib_live.remove(l);
            self.library_changed_in(l, "purge", vec![]);
        }
        self.hub_live.remove(&hub.hub_id);
        self.team_changed("left", Some(&hub.hub_id), None);
        self.kick_sync();
        Ok(json!({ "hub_id": hub.hub_id, "libraries": purged }))
    }

    // ---- the sync engine's entry points ----

    /// `team.leave` for the sync engine, which then revokes the device's token at the hub.
    pub fn leave_team(&mut self, p: TeamLeaveParams, now: u64) -> Result<Value, ServiceError> {
        self.team_leave(p, now)
    }

    pub fn team_hubs(&self) -> Result<Vec<HubRow>, ServiceError> {
        Ok(self.store.hubs()?)
    }

    pub fn team_hub(&self, hub_id: &str) -> Result<Option<HubRow>, ServiceError> {
        Ok(self.store.hub(hub_id)?)
    }

    /// The active team libraries of `hub_id`.
    pub fn team_libraries_of(&self, hub_id: &str) -> Result<Vec<LibraryRow>, ServiceError> {
        Ok(self
            .store
            .libraries()?
            .into_iter()
            .filter(|l| {
                l.kind == "team" && l.removed_at.is_none() && l.hub_id.as_deref() == Some(hub_id)
            })
            .collect())
    }

    pub fn team_library_row(&self, id: &str) -> Result<Option<LibraryRow>, ServiceError> {
        Ok(self.store.library(id)?)
    }

    /// A join the hub accepted: the hub, this device's token and the libraries are recorded.
    pub fn team_joined(
        &mut self,
        url: &str,
        fingerprint: Option<&str>,
        device_name: &str,
        me: &Me,
        now: u64,
    ) -> Outcome {
        let token = me.token.clone().ok_or_else(|| ServiceError::Hub {
            message: "the hub accepted the join but sent no device token".into(),
            data: None,
        })?;
        let hub = HubRow {
            hub_id: me.hub_id.clone(),
            url: url.to_string(),
            fingerprint: fingerprint.map(str::to_string),
            user_id: me.user_id.clone(),
            user_name: me.user_name.clone(),
            device_id: me.device_id.clone(),
            device_name: device_name.to_string(),
            token,
            joined_at: now,
        };
        self.store.join_hub(&hub, &me.libraries, now)?;
        self.hub_live.insert(
            hub.hub_id.clone(),
            HubLive {
                state: "connecting",
                ..Default::default()
            },
        );
        self.team_changed("joined", Some(&hub.hub_id), None);
        self.kick_sync();
        let libs: Vec<Value> = me
            .libraries
            .iter()
            .map(|l| json!({"id": l.id, "name": l.name, "role": l.role}))
            .collect();
        Ok(json!({
            "hub_id": hub.hub_id,
            "url": hub.url,
            "user_id": hub.user_id,
            "user_name": hub.user_name,
            "device_id": hub.device_id,
            "device_name": hub.device_name,
            "libraries": libs,
        }))
    }

    /// The hub's list of this user's libraries (`/v1/me`): new ones added, removed ones purged.
    pub fn team_me(
        &mut self,
        hub_id: &str,
        libs: &[LibraryInfo],
        now: u64,
    ) -> Result<(), ServiceError> {
        let (added, changed, purged) = self.store.sync_libraries(hub_id, libs, now)?;
        for l in &added {
            self.team_changed("library", Some(hub_id), Some(l));
        }
        for l in &changed {
            self.team_changed("library", Some(hub_id), Some(l));
        }
        if !purged.is_empty() {
            self.library.invalidate();
        }
        for l in &purged {
            self.lib_live.remove(l);
            self.library_changed_in(l, "purge", vec![]);
            self.team_changed("removed", Some(hub_id), Some(l));
        }
        Ok(())
    }

    /// Applies one pulled page of `library` (with its cursor, in one transaction).
    pub fn team_apply(
        &mut self,
        library: &str,
        page: &ChangesPage,
        now: u64,
    ) -> Result<Applied, ServiceError> {
        let lib = self.team_library(library)?;
        let hub = lib
            .hub_id
            .as_deref()
            .and_then(|h| self.store.hub(h).ok().flatten())
            .ok_or_else(|| not_found(format!("library {library:?} has no hub")))?;
        let applied = self
            .store
            .apply_page(library, page, &hub.user_id, &hub.device_id, now)?;
        if applied.purged {
            self.library.invalidate();
            self.lib_live.remove(library);
            self.library_changed_in(library, "purge", vec![]);
            self.team_changed("removed", Some(&hub.hub_id), Some(library));
            return Ok(applied);
        }
        if !applied.shown.is_empty() {
            for id in &applied.shown {
                match self.store.template(library, id)? {
                    Some(row) if row.deleted_at.is_none() => {
                        match serde_json::from_str::<Template>(&row.body_json) {
                            Ok(t) => self.library.upsert(library, &t),
                            Err(_) => self.library.remove(library, id),
                        }
                    }
                    _ => self.library.remove(library, id),
                }
            }
            self.library_changed_in(library, "sync", applied.shown.clone());
        }
        if applied.conflicts_changed {
            self.team_changed("conflicts", Some(&hub.hub_id), Some(library));
        }
        if applied.library_changed {
            self.team_changed("library", Some(&hub.hub_id), Some(library));
        }
        Ok(applied)
    }

    /// The next revisions to push from `library`.
    pub fn team_outbox(
        &self,
        library: &str,
        max: usize,
        max_bytes: usize,
    ) -> Result<Vec<Revision>, ServiceError> {
        Ok(self.store.outbox_batch(library, max, max_bytes)?)
    }

    /// Records the results of a push.
    pub fn team_pushed(
        &mut self,
        library: &str,
        results: &[PushResult],
    ) -> Result<usize, ServiceError> {
        let rec = self.store.record_push(library, results)?;
        let hub = self.store.library(library)?.and_then(|l| l.hub_id);
        if !rec.drafts.is_empty() {
            for (t, why) in &rec.drafts {
                info!("team edit of {library}/{t} kept as a draft: {why}");
            }
            self.team_changed("drafts", hub.as_deref(), Some(library));
        }
        if rec.recorded > 0 {
            self.team_changed("sync", hub.as_deref(), Some(library));
        }
        Ok(rec.recorded)
    }

    /// Notes a push attempt that failed (the outbox rows stay).
    pub fn team_push_failed(&mut self, rev_ids: &[String], error: &str) {
        if let Err(e) = self.store.outbox_failed(rev_ids, error) {
            warn!("{e}");
        }
    }

    /// The library's epoch changed: read it again from the start.
    pub fn team_reset(&mut self, library: &str, epoch: &str) -> Result<(), ServiceError> {
        warn!("library {library}: the hub's log changed (epoch {epoch}); reading it again");
        self.store.reset_library(library, epoch)?;
        self.lib_live.remove(library);
        let hub = self.store.library(library)?.and_then(|l| l.hub_id);
        self.team_changed("reset", hub.as_deref(), Some(library));
        Ok(())
    }

    /// After a reset's re-read: what the hub lost goes back into the outbox.
    pub fn team_requeue(&mut self, library: &str, now: u64) -> Result<usize, ServiceError> {
        let n = self.store.requeue_lost(library, now)?;
        if n > 0 {
            warn!("library {library}: {n} revisions the hub lost are pushed again");
        }
        Ok(n)
    }

    /// Whether `l` has anything to do: edits to push, a head seq beyond its cursor (as a poke
    /// or `/v1/me` told it), a reset under way, or no pull or digest comparison yet at its
    /// cursor since the daemon started.
    pub fn team_needs_sync(&self, l: &LibraryRow) -> Result<bool, ServiceError> {
        let live = self.lib_live.get(&l.id);
        Ok(l.head_seq > l.last_seq
            || l.resetting
            || live.is_none_or(|x| !x.caught_up || x.digest_seq != Some(l.last_seq))
            || self.store.outbox_len(&l.id)? > 0)
    }

    /// The local digest of `library`.
    pub fn team_digest(&self, library: &str) -> Result<(String, u64, u64), ServiceError> {
        Ok(self.store.library_digest(library)?)
    }

    /// Outbox rows of `library`.
    pub fn team_outbox_len(&self, library: &str) -> Result<u64, ServiceError> {
        Ok(self.store.outbox_len(library)?)
    }

    /// Updates what the engine sees of a hub (`team.changed` when the state changes).
    pub fn team_hub_live(&mut self, hub_id: &str, f: impl FnOnce(&mut HubLive)) {
        let live = self.hub_live.entry(hub_id.to_string()).or_insert(HubLive {
            state: "connecting",
            ..Default::default()
        });
        let before = (live.state, live.events);
        f(live);
        let after = (live.state, live.events);
        if before != after {
            self.team_changed("connection", Some(hub_id), None);
        }
    }

    /// Updates what the engine sees of a library.
    pub fn team_lib_live(&mut self, library: &str, f: impl FnOnce(&mut LibLive)) {
        f(self.lib_live.entry(library.to_string()).or_default());
    }

    /// What the engine last saw of a library.
    pub fn team_lib_seen(&self, library: &str) -> LibLive {
        self.lib_live.get(library).cloned().unwrap_or_default()
    }

    /// The head seq of `library` as a push or a poke told it.
    pub fn team_head_seq(&mut self, library: &str, head_seq: i64) {
        if let Err(e) = self.store.set_head_seq(library, head_seq) {
            warn!("{e}");
        }
    }
}

#[cfg(test)]
mod tests;
