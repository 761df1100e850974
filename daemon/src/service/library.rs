//! `templates.*` except import: the library, its revisions and its in-memory search index.

use super::*;

/// The search index over the library, kept in memory: loaded on first use, updated as templates
/// change, rebuilt lazily (a burst of changes costs one rebuild).
#[derive(Debug, Default)]
pub(super) struct Library {
    loaded: bool,
    entries: Vec<IndexedTemplate>,
    pos: HashMap<String, usize>,
    index: Option<SearchIndex>,
    built_at: u64,
    usage_changed: bool,
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
                    "template {:?} is not readable ({e}); not searchable",
                    row.id
                ),
            }
        }
        self.pos = entries
            .iter()
            .enumerate()
            .map(|(i, e)| (e.id.clone(), i))
            .collect();
        self.entries = entries;
        self.index = None;
        self.loaded = true;
        Ok(())
    }

    pub(super) fn upsert(&mut self, t: &Template) {
        if !self.loaded {
            return;
        }
        match self.pos.get(&t.id) {
            Some(&i) => {
                let e = &self.entries[i];
                let (usage, last) = (e.usage_count, e.last_used_ms);
                self.entries[i] = IndexedTemplate::from_template(t, usage, last);
            }
            None => {
                self.pos.insert(t.id.clone(), self.entries.len());
                self.entries
                    .push(IndexedTemplate::from_template(t, 0, None));
            }
        }
        self.index = None;
    }

    pub(super) fn remove(&mut self, id: &str) {
        if let Some(i) = self.pos.remove(id) {
            self.entries.swap_remove(i);
            if let Some(moved) = self.entries.get(i) {
                self.pos.insert(moved.id.clone(), i);
            }
            self.index = None;
        }
    }

    pub(super) fn used(&mut self, id: &str, now: u64) {
        if let Some(&i) = self.pos.get(id) {
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
    IndexedTemplate::from_template(
        t,
        u32::try_from(row.usage_count).unwrap_or(u32::MAX),
        row.last_used_at,
    )
}

impl Service {
    pub(super) fn templates_list(&mut self, after: Option<String>, limit: usize) -> Outcome {
        let rows = self.store.templates_after(after.as_deref(), limit + 1)?;
        let mut templates = Vec::new();
        // Usage of the page's templates that were ever sent, for ranking: beside the templates,
        // not inside them (a template's JSON stays exactly the library format).
        let mut usage = Vec::new();
        let mut bytes = 0;
        let mut last_id = None;
        for row in rows.iter().take(limit) {
            if !templates.is_empty() && bytes + row.body_json.len() > PAGE_BYTES {
                break;
            }
            templates.push(parse_body(&row.id, &row.body_json)?);
            bytes += row.body_json.len() + 1;
            if row.usage_count > 0 {
                let u = json!({"id": row.id, "usage_count": row.usage_count,
                               "last_used_at": row.last_used_at});
                bytes += u.to_string().len() + 1;
                usage.push(u);
            }
            last_id = Some(row.id.as_str());
        }
        let next = if rows.len() > templates.len() {
            last_id.map(encode_cursor)
        } else {
            None
        };
        let version = self.store.library_version()?;
        Ok(
            json!({ "templates": templates, "usage": usage, "next_cursor": next,
                   "library_version": version }),
        )
    }

    pub(super) fn template_row(&self, id: &str) -> Result<StoredTemplate, ServiceError> {
        self.store
            .template(id)?
            .ok_or_else(|| not_found(format!("no template {id:?}")))
    }

    pub(super) fn templates_get(&mut self, id: &str, revision: Option<u32>) -> Outcome {
        let cur = self.template_row(id)?;
        let (body, rev, created_at) = match revision {
            None => (cur.body_json.clone(), cur.revision, None),
            Some(r) => {
                let (body, at) = self.store.template_revision(id, r)?.ok_or_else(|| {
                    not_found(format!(
                        "template {id:?} has no revision {r} (the current one is {})",
                        cur.revision
                    ))
                })?;
                (body, r, Some(at))
            }
        };
        Ok(json!({
            "template": parse_body(id, &body)?,
            "revision": rev,
            "created_at": created_at,
            "current_revision": cur.revision,
            "deleted_at": cur.deleted_at,
            "updated_at": cur.updated_at,
            "usage_count": cur.usage_count,
            "last_used_at": cur.last_used_at,
        }))
    }

    pub(super) fn library_changed(&mut self, reason: &str, ids: Vec<String>) {
        let version = self.store.library_version().unwrap_or(0);
        let count = ids.len();
        let ids: Vec<String> = ids.into_iter().take(MAX_EVENT_IDS).collect();
        self.emit(
            "library.changed",
            json!({ "library_version": version, "reason": reason, "ids": ids, "count": count }),
        );
    }

    pub(super) fn templates_put(&mut self, p: TemplatePutParams, now: u64) -> Outcome {
        let mut t = p.template;
        let out = self.store.put_template(&t, p.base_revision, now)?;
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
            self.library.upsert(&t);
            self.library_changed("put", vec![t.id.clone()]);
        }
        Ok(json!({ "id": t.id, "revision": revision, "created": created, "changed": changed }))
    }

    pub(super) fn templates_delete(&mut self, id: &str, base: Option<u32>, now: u64) -> Outcome {
        match self.store.delete_template(id, base, now)? {
            DeleteOutcome::Deleted { revision } => {
                self.library.remove(id);
                self.library_changed("delete", vec![id.to_string()]);
                Ok(json!({ "id": id, "deleted": true, "revision": revision }))
            }
            DeleteOutcome::AlreadyDeleted { revision } => {
                Ok(json!({ "id": id, "deleted": true, "revision": revision }))
            }
            DeleteOutcome::NotFound => Err(not_found(format!("no template {id:?}"))),
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
        id: &str,
        before: Option<u32>,
        limit: usize,
    ) -> Outcome {
        let cur = self.template_row(id)?;
        let mut revs = self.store.revisions(id, before, limit + 1)?;
        let next = if revs.len() > limit {
            revs.truncate(limit);
            revs.last().map(|r| format!("r{}", r.revision))
        } else {
            None
        };
        Ok(json!({
            "id": id,
            "current_revision": cur.revision,
            "deleted_at": cur.deleted_at,
            "revisions": revs,
            "next_cursor": next,
        }))
    }

    pub(super) fn templates_search(
        &mut self,
        query: &str,
        limit: usize,
        folder: Option<&str>,
        tag: Option<&str>,
        now: u64,
    ) -> Outcome {
        self.library.load(&self.store)?;
        let filtered = folder.is_some() || tag.is_some();
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
        for (id, score, relevance, matched, quality) in ids {
            if results.len() >= limit {
                break;
            }
            let Some(&i) = self.library.pos.get(&id) else {
                continue;
            };
            let e = &self.library.entries[i];
            if !in_folder(&e.folder) || tag.is_some_and(|t| !e.tags.iter().any(|x| x == t)) {
                continue;
            }
            let Some(row) = self.store.template(&id)? else {
                continue;
            };
            if bytes + row.body_json.len() > PAGE_BYTES && !results.is_empty() {
                truncated = true;
                break;
            }
            bytes += row.body_json.len() + 200;
            results.push(json!({
                "id": id,
                "title": e.title,
                "folder": e.folder,
                "tags": e.tags,
                "shortcut": e.shortcut,
                "usage_count": row.usage_count,
                "last_used_at": row.last_used_at,
                "score": score,
                "relevance": relevance,
                "matched": matched,
                "quality": quality,
                "template": parse_body(&id, &row.body_json)?,
            }));
        }
        Ok(json!({ "results": results, "truncated": truncated }))
    }

    pub(super) fn templates_facets(&mut self) -> Outcome {
        self.library.load(&self.store)?;
        let mut folders: BTreeMap<&str, u32> = BTreeMap::new();
        let mut tags: BTreeMap<&str, u32> = BTreeMap::new();
        for e in &self.library.entries {
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
            "templates": self.library.entries.len(),
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
            json!({"id": "r", "revision": 1, "created": true, "changed": true})
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
        assert_eq!(d, json!({"id": "r", "deleted": true, "revision": 2}));
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
