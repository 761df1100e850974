//! `templates.*` except import: the library, its revisions and its in-memory search index.

use super::*;

/// The key of a template in the search index: its id in the local library (so the local
/// ranking is what it always was), `id \0 library` in a team library.
pub(super) fn index_key(library: &str, id: &str) -> String {
    if library == params::LOCAL {
        id.to_string()
    } else {
        format!("{id}\u{0}{library}")
    }
}

/// The library and id of an index key.
pub(super) fn split_key(key: &str) -> (&str, &str) {
    match key.split_once('\u{0}') {
        Some((id, lib)) => (lib, id),
        None => (params::LOCAL, key),
    }
}

/// The search index over every library, kept in memory: loaded on first use, updated as
/// templates change, rebuilt lazily (a burst of changes costs one rebuild).
#[derive(Debug, Default)]
pub(super) struct Library {
    loaded: bool,
    entries: Vec<IndexedTemplate>,
    pos: HashMap<String, usize>,
    index: Option<SearchIndex>,
    built_at: u64,
    usage_changed: bool,
    /// Entries of team libraries (searching one library filters only when there are any).
    team: usize,
}

impl Library {
    pub(super) fn load(&mut self, store: &Store) -> Result<(), ServiceError> {
        if self.loaded {
            return Ok(());
        }
        let rows = store.all_templates()?;
        let mut entries = Vec::with_capacity(rows.len());
        for row in &rows {
            match serde_json::from_str::<Template>(&row.body_json) {
                Ok(t) => entries.push(indexed(&t, row)),
                Err(e) => warn!(
                    "template {}/{} is not readable ({e}); not searchable",
                    row.library, row.id
                ),
            }
        }
        self.pos = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        self.team = entries.iter().filter(|e| e.id.contains('\u{0}')).count();
        self.entries = entries;
        self.index = None;
        self.loaded = true;
        Ok(())
    }

    /// Forgets everything: the next search loads the store again.
    pub(super) fn invalidate(&mut self) {
        *self = Library::default();
    }

    pub(super) fn upsert(&mut self, library: &str, t: &Template) {
        if !self.loaded {
            return;
        }
        let key = index_key(library, &t.id);
        let mut e = IndexedTemplate::from_template(t, 0, None);
        e.id = key.clone();
        match self.pos.get(&key) {
            Some(&i) => {
                let old = &self.entries[i];
                e.usage_count = old.usage_count;
                e.last_used_ms = old.last_used_ms;
                self.entries[i] = e;
            }
            None => {
                if library != params::LOCAL {
                    self.team += 1;
                }
                self.pos.insert(key, self.entries.len());
                self.entries.push(e);
            }
        }
        self.index = None;
    }

    pub(super) fn remove(&mut self, library: &str, id: &str) {
        if let Some(i) = self.pos.remove(&index_key(library, id)) {
            if library != params::LOCAL {
                self.team = self.team.saturating_sub(1);
            }
            self.entries.swap_remove(i);
            if let Some(moved) = self.entries.get(i) {
                self.pos.insert(moved.id.clone(), i);
            }
            self.index = None;
        }
    }

    pub(super) fn used(&mut self, library: &str, id: &str, now: u64) {
        if let Some(&i) = self.pos.get(&index_key(library, id)) {
            let e = &mut self.entries[i];
            e.usage_count = e.usage_count.saturating_add(1);
            e.last_used_ms = Some(now);
            self.usage_changed = true;
        }
    }

    pub(super) fn index(&mut self, now: u64) -> &SearchIndex {
        let stale = self.usage_changed && now.saturating_sub(self.built_at) >= USAGE_REINDEX_MS;
        if self.index.is_none() || stale {
            let t = Instant::now();
            self.index = Some(SearchIndex::build(&self.entries));
            self.built_at = now;
            self.usage_changed = false;
            debug!(
                "search index of {} templates built in {:?}",
                self.entries.len(),
                t.elapsed()
            );
        }
        self.index.get_or_insert_with(|| SearchIndex::build(&[]))
    }
}

pub(super) fn indexed(t: &Template, row: &StoredTemplate) -> IndexedTemplate {
    let mut e = IndexedTemplate::from_template(
        t,
        u32::try_from(row.usage_count).unwrap_or(u32::MAX),
        row.last_used_at,
    );
    e.id = index_key(&row.library, &row.id);
    e
}

impl Service {
    /// Checks that `library` exists and was not left.
    pub(super) fn check_library(&self, library: &str) -> Result<(), ServiceError> {
        if library == params::LOCAL {
            return Ok(());
        }
        match self.store.library(library)? {
            Some(l) if l.removed_at.is_none() => Ok(()),
            Some(_) => Err(not_found(format!(
                "library {library:?} was left or you were removed from it"
            ))),
            None => Err(not_found(format!(
                "no library {library:?} (see team.status for the libraries)"
            ))),
        }
    }

    /// The team fields of a template's result (nothing for a local one).
    pub(super) fn team_fields(
        &self,
        library: &str,
        id: &str,
        out: &mut serde_json::Map<String, Value>,
    ) -> Result<(), ServiceError> {
        out.insert("library".into(), json!(library));
        if library == params::LOCAL {
            return Ok(());
        }
        if let Some(m) = self.store.team_meta(library, id)? {
            out.insert("head_rev".into(), json!(m.head_rev));
            out.insert("sync".into(), json!(m.sync));
            out.insert("author".into(), json!(m.author));
            out.insert("changed_at".into(), json!(m.changed_at));
            if let Some(r) = m.reason {
                out.insert("reason".into(), json!(r));
            }
        }
        Ok(())
    }

    pub(super) fn templates_list(
        &mut self,
        library: Option<String>,
        after: Option<(String, String)>,
        limit: usize,
    ) -> Outcome {
        if let Some(l) = &library {
            self.check_library(l)?;
        }
        let after_ref = after.as_ref().map(|(l, i)| (l.as_str(), i.as_str()));
        let rows = self
            .store
            .templates_after(library.as_deref(), after_ref, limit + 1)?;
        let mut templates = Vec::new();
        // Usage of the page's templates that were ever sent, for ranking, and the library and
        // team state of each: beside the templates, not inside them (a template's JSON stays
        // exactly the library format).
        let mut usage = Vec::new();
        let mut meta = Vec::new();
        let mut bytes = 0;
        let mut last = None;
        for row in rows.iter().take(limit) {
            if !templates.is_empty() && bytes + row.body_json.len() > PAGE_BYTES {
                break;
            }
            templates.push(parse_body(&row.id, &row.body_json)?);
            bytes += row.body_json.len() + 1;
            if row.usage_count > 0 {
                let u = json!({"id": row.id, "library": row.library,
                               "usage_count": row.usage_count,
                               "last_used_at": row.last_used_at});
                bytes += u.to_string().len() + 1;
                usage.push(u);
            }
            let mut m = serde_json::Map::new();
            m.insert("id".into(), json!(row.id));
            self.team_fields(&row.library, &row.id, &mut m)?;
            let m = Value::Object(m);
            bytes += m.to_string().len() + 1;
            meta.push(m);
            last = Some((row.library.as_str(), row.id.as_str()));
        }
        let next = if rows.len() > templates.len() {
            last.map(|(l, i)| match library {
                Some(_) => encode_cursor(i),
                None => params::encode_cursor_all(l, i),
            })
        } else {
            None
        };
        let version = self.store.library_version()?;
        Ok(
            json!({ "templates": templates, "usage": usage, "meta": meta, "next_cursor": next,
                   "library_version": version }),
        )
    }

    pub(super) fn template_row(
        &self,
        library: &str,
        id: &str,
    ) -> Result<StoredTemplate, ServiceError> {
        self.check_library(library)?;
        self.store
            .template(library, id)?
            .ok_or_else(|| not_found(format!("no template {id:?} in library {library:?}")))
    }

    pub(super) fn templates_get(
        &mut self,
        library: &str,
        id: &str,
        revision: Option<u32>,
    ) -> Outcome {
        let cur = self.template_row(library, id)?;
        let (body, rev, created_at) = match revision {
            None => (Some(cur.body_json.clone()), cur.revision, None),
            Some(r) => {
                let (body, at) =
                    self.store
                        .template_revision(library, id, r)?
                        .ok_or_else(|| {
                            not_found(format!(
                                "template {id:?} has no revision {r} (the current one is {})",
                                cur.revision
                            ))
                        })?;
                (body, r, Some(at))
            }
        };
        let template = match &body {
            Some(b) => parse_body(id, b)?,
            None => Value::Null, // a team tombstone
        };
        let mut out = serde_json::Map::new();
        out.insert("template".into(), template);
        out.insert("revision".into(), json!(rev));
        out.insert("created_at".into(), json!(created_at));
        out.insert("current_revision".into(), json!(cur.revision));
        out.insert("deleted_at".into(), json!(cur.deleted_at));
        out.insert("updated_at".into(), json!(cur.updated_at));
        out.insert("usage_count".into(), json!(cur.usage_count));
        out.insert("last_used_at".into(), json!(cur.last_used_at));
        self.team_fields(library, id, &mut out)?;
        if library != params::LOCAL {
            out.insert("hub_rev".into(), json!(cur.hub_rev));
            if revision.is_some() {
                out.insert(
                    "rev_id".into(),
                    json!(self.store.rev_id_of(library, id, rev)?),
                );
            }
        }
        Ok(Value::Object(out))
    }

    /// `library.changed` for templates of one library.
    pub(super) fn library_changed_in(&mut self, library: &str, reason: &str, ids: Vec<String>) {
        let version = self.store.library_version().unwrap_or(0);
        let count = ids.len();
        let ids: Vec<String> = ids.into_iter().take(MAX_EVENT_IDS).collect();
        self.emit(
            "library.changed",
            json!({ "library_version": version, "reason": reason, "ids": ids, "count": count,
                    "library": library }),
        );
    }

    pub(super) fn templates_put(&mut self, p: TemplatePutParams, now: u64) -> Outcome {
        let library = p.library.unwrap_or_else(|| params::LOCAL.to_string());
        self.check_library(&library)?;
        let mut t = p.template;
        let out = self
            .store
            .put_template(&library, &t, p.base_revision, now)?;
        let (revision, created, changed) = match out {
            PutOutcome::Created(r) => (r, true, true),
            PutOutcome::Updated(r) => (r, false, true),
            PutOutcome::Unchanged(r) => (r, false, false),
            PutOutcome::Conflict { current } => {
                return Err(ServiceError::Revision {
                    message: format!(
                        "template {:?} is at revision {current}, not {}: it was changed \
                         elsewhere; reload it",
                        t.id,
                        p.base_revision.unwrap_or(0)
                    ),
                    current,
                })
            }
        };
        if changed {
            t.revision = revision;
            self.library.upsert(&library, &t);
            self.library_changed_in(&library, "put", vec![t.id.clone()]);
            if library != params::LOCAL {
                self.kick_sync();
            }
        }
        let mut out = serde_json::Map::new();
        out.insert("id".into(), json!(t.id));
        out.insert("revision".into(), json!(revision));
        out.insert("created".into(), json!(created));
        out.insert("changed".into(), json!(changed));
        self.team_fields(&library, &t.id, &mut out)?;
        Ok(Value::Object(out))
    }

    pub(super) fn templates_delete(
        &mut self,
        library: &str,
        id: &str,
        base: Option<u32>,
        now: u64,
    ) -> Outcome {
        self.check_library(library)?;
        match self.store.delete_template(library, id, base, now)? {
            DeleteOutcome::Deleted { revision } => {
                self.library.remove(library, id);
                self.library_changed_in(library, "delete", vec![id.to_string()]);
                if library != params::LOCAL {
                    self.kick_sync();
                }
                let mut out = serde_json::Map::new();
                out.insert("id".into(), json!(id));
                out.insert("deleted".into(), json!(true));
                out.insert("revision".into(), json!(revision));
                self.team_fields(library, id, &mut out)?;
                Ok(Value::Object(out))
            }
            DeleteOutcome::AlreadyDeleted { revision } => {
                Ok(json!({ "id": id, "deleted": true, "revision": revision, "library": library }))
            }
            DeleteOutcome::NotFound => Err(not_found(format!(
                "no template {id:?} in library {library:?}"
            ))),
            DeleteOutcome::Conflict { current } => Err(ServiceError::Revision {
                message: format!(
                    "template {id:?} is at revision {current}: it was changed elsewhere"
                ),
                current,
            }),
        }
    }

    pub(super) fn templates_revisions(
        &mut self,
        library: &str,
        id: &str,
        before: Option<u32>,
        limit: usize,
    ) -> Outcome {
        let cur = self.template_row(library, id)?;
        let mut revs = self.store.revisions(library, id, before, limit + 1)?;
        let next = if revs.len() > limit {
            revs.truncate(limit);
            revs.last().map(|r| format!("r{}", r.revision))
        } else {
            None
        };
        Ok(json!({
            "id": id,
            "library": library,
            "current_revision": cur.revision,
            "deleted_at": cur.deleted_at,
            "revisions": revs,
            "next_cursor": next,
        }))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn templates_search(
        &mut self,
        library: Option<&str>,
        query: &str,
        limit: usize,
        folder: Option<&str>,
        tag: Option<&str>,
        now: u64,
    ) -> Outcome {
        if let Some(l) = library {
            self.check_library(l)?;
        }
        self.library.load(&self.store)?;
        let mixed = library.is_some() && self.library.team > 0;
        let filtered = folder.is_some() || tag.is_some() || mixed;
        let index = self.library.index(now);
        let opts = SearchOptions {
            limit: if filtered { index.len() } else { limit },
            now_ms: Some(now),
            boost: None,
        };
        let hits = index.search(query, &opts);
        let ids: Vec<(String, f64, u16, Value, Value)> = hits
            .iter()
            .map(|h| {
                (
                    index.id(h.index).to_string(),
                    h.score,
                    h.relevance,
                    serde_json::to_value(h.matched).unwrap_or_default(),
                    serde_json::to_value(h.quality).unwrap_or_default(),
                )
            })
            .collect();
        let in_folder = |f: &str| match folder {
            None => true,
            Some(want) => f == want || f.strip_prefix(want).is_some_and(|r| r.starts_with('/')),
        };
        let mut results = Vec::new();
        let mut bytes = 0;
        let mut truncated = false;
        for (key, score, relevance, matched, quality) in ids {
            if results.len() >= limit {
                break;
            }
            let (lib, id) = split_key(&key);
            if library.is_some_and(|l| l != lib) {
                continue;
            }
            let Some(&i) = self.library.pos.get(&key) else {
                continue;
            };
            let e = &self.library.entries[i];
            if !in_folder(&e.folder) || tag.is_some_and(|t| !e.tags.iter().any(|x| x == t)) {
                continue;
            }
            let Some(row) = self.store.template(lib, id)? else {
                continue;
            };
            if bytes + row.body_json.len() > PAGE_BYTES && !results.is_empty() {
                truncated = true;
                break;
            }
            bytes += row.body_json.len() + 300;
            let mut r = serde_json::Map::new();
            r.insert("id".into(), json!(id));
            r.insert("title".into(), json!(e.title));
            r.insert("folder".into(), json!(e.folder));
            r.insert("tags".into(), json!(e.tags));
            r.insert("shortcut".into(), json!(e.shortcut));
            r.insert("usage_count".into(), json!(row.usage_count));
            r.insert("last_used_at".into(), json!(row.last_used_at));
            r.insert("score".into(), json!(score));
            r.insert("relevance".into(), json!(relevance));
            r.insert("matched".into(), matched);
            r.insert("quality".into(), quality);
            r.insert("template".into(), parse_body(id, &row.body_json)?);
            self.team_fields(lib, id, &mut r)?;
            results.push(Value::Object(r));
        }
        Ok(json!({ "results": results, "truncated": truncated }))
    }

    pub(super) fn templates_facets(&mut self, library: Option<&str>) -> Outcome {
        if let Some(l) = library {
            self.check_library(l)?;
        }
        self.library.load(&self.store)?;
        let mut folders: BTreeMap<&str, u32> = BTreeMap::new();
        let mut tags: BTreeMap<&str, u32> = BTreeMap::new();
        let mut n = 0;
        for e in &self.library.entries {
            if library.is_some_and(|l| l != split_key(&e.id).0) {
                continue;
            }
            n += 1;
            *folders.entry(e.folder.as_str()).or_default() += 1;
            for t in &e.tags {
                *tags.entry(t.as_str()).or_default() += 1;
            }
        }
        let list = |m: BTreeMap<&str, u32>| -> Vec<Value> {
            m.into_iter()
                .map(|(name, count)| json!({ "name": name, "count": count }))
                .collect()
        };
        Ok(json!({
            "templates": n,
            "folders": list(folders),
            "tags": list(tags),
        }))
    }
}

pub(super) fn parse_body(id: &str, body: &str) -> Result<Value, ServiceError> {
    serde_json::from_str(body).map_err(|e| {
        ServiceError::Internal(format!("store: template {id:?} is not valid JSON: {e}"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testkit::*;

    #[test]
    fn templates_pages_chain_without_gaps() {
        let s = Scratch::new("pages");
        let mut svc = open(&s, 0);
        let all = ok(&mut svc, "templates.list", json!({}), 0);
        let all: Vec<String> = all["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["id"].as_str().unwrap().to_string())
            .collect();
        assert!(all.len() >= 4, "{all:?}");
        let mut seen = vec![];
        let mut cursor = Value::Null;
        loop {
            let mut p = json!({"limit": 2});
            if !cursor.is_null() {
                p["cursor"] = cursor.clone();
            }
            let page = ok(&mut svc, "templates.list", p, 0);
            for t in page["templates"].as_array().unwrap() {
                seen.push(t["id"].as_str().unwrap().to_string());
            }
            cursor = page["next_cursor"].clone();
            if cursor.is_null() {
                break;
            }
        }
        assert_eq!(seen, all);
        let (code, msg) = err(&mut svc, "templates.list", json!({"cursor": "zz"}), 0);
        assert_eq!(code, "invalid_params");
        assert!(msg.contains("cursor"));
        let (code, _) = err(&mut svc, "templates.list", json!({"limit": 0}), 0);
        assert_eq!(code, "invalid_params");
    }

    #[test]
    fn template_crud_keeps_revisions_and_announces_changes() {
        let s = Scratch::new("crud");
        let mut svc = open(&s, 0);
        svc.take_events();
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "一")}),
            10,
        );
        assert_eq!(
            r,
            json!({"id": "r", "revision": 1, "created": true, "changed": true,
                   "library": "local"})
        );
        let ev = events(&mut svc, "library.changed");
        assert_eq!(ev[0]["reason"], "put");
        assert_eq!(ev[0]["ids"], json!(["r"]));
        let v1 = ev[0]["library_version"].as_u64().unwrap();
        // a retried put changes nothing and says so
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "一")}),
            11,
        );
        assert_eq!(r["changed"], false);
        assert!(events(&mut svc, "library.changed").is_empty());
        // an editor that started from revision 1 saves revision 2; a stale one is refused
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "二"), "base_revision": 1}),
            12,
        );
        assert_eq!(r["revision"], 2);
        let e = err_full(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "三"), "base_revision": 1}),
            13,
        );
        assert_eq!(e["code"], "conflict");
        assert_eq!(e["data"]["current_revision"], 2);
        let g = ok(
            &mut svc,
            "templates.get",
            json!({"id": "r", "revision": 1}),
            14,
        );
        assert_eq!(g["template"]["parts"][0]["text"], "一");
        assert_eq!(g["current_revision"], 2);
        assert_eq!(g["created_at"], 10);
        let revs = ok(
            &mut svc,
            "templates.revisions",
            json!({"id": "r", "limit": 1}),
            14,
        );
        assert_eq!(revs["revisions"][0]["revision"], 2);
        let more = ok(
            &mut svc,
            "templates.revisions",
            json!({"id": "r", "cursor": revs["next_cursor"]}),
            14,
        );
        assert_eq!(more["revisions"][0]["revision"], 1);
        assert!(more["next_cursor"].is_null());

        // search: pinyin initials of the Chinese title, folder and tag filters
        let hits = ok(&mut svc, "templates.search", json!({"query": "tkzc"}), 15);
        assert_eq!(hits["results"][0]["id"], "r", "{hits}");
        assert_eq!(hits["results"][0]["template"]["revision"], 2);
        let hits = ok(
            &mut svc,
            "templates.search",
            json!({"query": "", "folder": "Orders/Refunds"}),
            15,
        );
        assert_eq!(hits["results"].as_array().unwrap().len(), 1, "{hits}");
        // a folder includes its subfolders (the sample library has two more in Orders)
        let hits = ok(
            &mut svc,
            "templates.search",
            json!({"query": "", "folder": "Orders"}),
            15,
        );
        assert_eq!(hits["results"].as_array().unwrap().len(), 3, "{hits}");
        let hits = ok(
            &mut svc,
            "templates.search",
            json!({"query": "", "tag": "nope"}),
            15,
        );
        assert!(hits["results"].as_array().unwrap().is_empty());
        let f = ok(&mut svc, "templates.facets", json!({}), 15);
        assert!(f["folders"]
            .as_array()
            .unwrap()
            .contains(&json!({"name": "Orders/Refunds", "count": 1})));

        // delete: gone from lists and search, revisions kept, a put brings it back
        svc.take_events();
        let d = ok(&mut svc, "templates.delete", json!({"id": "r"}), 20);
        assert_eq!(
            d,
            json!({"id": "r", "deleted": true, "revision": 2, "library": "local"})
        );
        let ev = events(&mut svc, "library.changed");
        assert!(ev[0]["library_version"].as_u64().unwrap() > v1);
        let list = ok(&mut svc, "templates.list", json!({}), 20);
        assert!(!list["templates"]
            .as_array()
            .unwrap()
            .iter()
            .any(|t| t["id"] == "r"));
        let hits = ok(&mut svc, "templates.search", json!({"query": "tkzc"}), 21);
        assert!(hits["results"].as_array().unwrap().is_empty(), "{hits}");
        assert_eq!(
            ok(&mut svc, "templates.get", json!({"id": "r"}), 21)["deleted_at"],
            20
        );
        let (code, _) = err(&mut svc, "templates.delete", json!({"id": "zz"}), 21);
        assert_eq!(code, "not_found");
        let r = ok(
            &mut svc,
            "templates.put",
            json!({"template": tpl("r", "退款政策", "二")}),
            22,
        );
        assert_eq!(r["revision"], 3);
        assert_eq!(
            ok(
                &mut svc,
                "templates.search",
                json!({"query": "tuikuan"}),
                23
            )["results"][0]["id"],
            "r"
        );
    }
}
