//! `templates.import`: whole libraries, in one request or staged over several.

use super::*;

/// Batches of an import in several requests.
#[derive(Debug)]
pub(super) struct Staged {
    pub(super) templates: Vec<Template>,
    /// Their size as JSON (what the byte budgets count).
    pub(super) bytes: usize,
    pub(super) touched: u64,
}

impl Service {
    pub(super) fn templates_import(&mut self, p: TemplateImportParams, now: u64) -> Outcome {
        let templates = match &p.session {
            None => p.templates,
            Some(session) => {
                if !self.imports.contains_key(session) && self.imports.len() >= MAX_IMPORT_SESSIONS
                {
                    return Err(ServiceError::Conflict(format!(
                        "{MAX_IMPORT_SESSIONS} imports are in progress already; finish one \
                             or wait {} s for an abandoned one to expire",
                        IMPORT_IDLE_MS / 1000
                    )));
                }
                let batch: usize = p.templates.iter().map(Template::serialized_len).sum();
                let others: usize = self
                    .imports
                    .iter()
                    .filter(|(k, _)| *k != session)
                    .map(|(_, s)| s.bytes)
                    .sum();
                let staged = self.imports.entry(session.clone()).or_insert(Staged {
                    templates: Vec::new(),
                    bytes: 0,
                    touched: now,
                });
                staged.touched = now;
                if staged.templates.len() + p.templates.len() > params::MAX_IMPORT {
                    self.imports.remove(session);
                    return Err(params::invalid(format!(
                        "templates.import: more than {} templates in session {session:?}; \
                         the session was dropped",
                        params::MAX_IMPORT
                    ))
                    .into());
                }
                let (session_max, total_max) = self.import_budget;
                if staged.bytes + batch > session_max {
                    self.imports.remove(session);
                    return Err(params::invalid(format!(
                        "templates.import: session {session:?} would hold more than {} MiB of \
                         templates; the session was dropped and nothing was imported",
                        session_max >> 20
                    ))
                    .into());
                }
                if others + staged.bytes + batch > total_max {
                    let mine = staged.bytes;
                    return Err(ServiceError::Conflict(format!(
                        "templates.import: the imports in progress hold {} MiB and this batch \
                             would pass the {} MiB they may hold together; finish one or wait \
                             {} s for an abandoned one to expire (session {session:?} keeps its \
                             {} MiB)",
                        (others + mine) >> 20,
                        total_max >> 20,
                        IMPORT_IDLE_MS / 1000,
                        mine >> 20
                    )));
                }
                staged.bytes += batch;
                staged.templates.extend(p.templates);
                if !p.last {
                    let n = staged.templates.len();
                    return Ok(json!({ "session": session, "staged": n, "committed": false }));
                }
                self.imports
                    .remove(session)
                    .map(|s| s.templates)
                    .unwrap_or_default()
            }
        };
        let mut seen = HashSet::new();
        for (i, t) in templates.iter().enumerate() {
            if !seen.insert(t.id.as_str()) {
                return Err(params::invalid(format!(
                    "templates.import: `templates[{i}].id`: duplicate template id {:?}; nothing \
                     was imported",
                    t.id
                ))
                .with_data(json!({ "field": format!("templates[{i}].id") }))
                .into());
            }
        }
        let library = p.library.unwrap_or_else(|| params::LOCAL.to_string());
        self.check_library(&library)?;
        let report = self.store.import(&library, &templates, now)?;
        let changed = report.created + report.updated;
        if changed > 0 {
            for t in &templates {
                self.library.upsert(&library, t);
            }
            self.library_changed_in(
                &library,
                "import",
                templates.iter().map(|t| t.id.clone()).collect(),
            );
            if library != params::LOCAL {
                self.kick_sync();
            }
        }
        let version = self.store.library_version()?;
        Ok(json!({
            "committed": true,
            "templates": templates.len(),
            "created": report.created,
            "updated": report.updated,
            "unchanged": report.unchanged,
            "library_version": version,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::testkit::*;

    /// Four sessions of unbounded bytes grew the daemon from 12 MB to 544 MB: staging is
    /// bounded in bytes per session and in total, with errors that say so.
    #[test]
    fn import_staging_has_a_byte_budget() {
        let s = Scratch::new("import-bytes");
        let mut svc = open(&s, 0);
        // the real budgets scaled down 16 times (the logic is the same, the test is quick)
        svc.import_budget = (IMPORT_SESSION_BYTES / 16, IMPORT_TOTAL_BYTES / 16);
        let (session_max, total_max) = svc.import_budget;
        // one batch: 16 templates of ~16 KiB
        let body = "x".repeat(4 * 1024);
        let batch = |session: &str, b: usize, last: bool| {
            let templates: Vec<Value> = (0..16)
                .map(|i| {
                    json!({"id": format!("{session}-{b:03}-{i:03}"), "title": "T",
                           "parts": vec![json!({"type": "text", "text": body}); 4]})
                })
                .collect();
            json!({"session": session, "last": last, "templates": templates})
        };
        let per_batch: usize = batch("a", 0, false)["templates"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                serde_json::from_value::<Template>(t.clone())
                    .unwrap()
                    .serialized_len()
            })
            .sum();
        let fits = session_max / per_batch; // batches one session may stage
        for b in 0..fits {
            ok(&mut svc, "templates.import", batch("a", b, false), 1);
        }
        let e = err_full(&mut svc, "templates.import", batch("a", fits, false), 2);
        assert_eq!(e["code"], "invalid_params", "{e}");
        let m = e["message"].as_str().unwrap();
        assert!(m.contains("MiB") && m.contains("dropped"), "{m}");
        assert!(svc.imports.is_empty(), "the session was dropped");
        // all sessions together: the one that would pass the total is refused, the others keep
        // what they staged
        let total_batches = total_max / per_batch;
        let mut staged = 0;
        'fill: for session in ["b", "c", "d"] {
            for b in 0..fits - 1 {
                if staged == total_batches {
                    let e = err_full(&mut svc, "templates.import", batch(session, b, false), 3);
                    assert_eq!(e["code"], "conflict", "{e}");
                    assert!(e["message"].as_str().unwrap().contains("together"), "{e}");
                    break 'fill;
                }
                ok(&mut svc, "templates.import", batch(session, b, false), 3);
                staged += 1;
            }
        }
        assert_eq!(staged, total_batches);
        let held: usize = svc.imports.values().map(|s| s.bytes).sum();
        assert!(held <= total_max, "{held}");
        // a staged session still commits
        let r = ok(
            &mut svc,
            "templates.import",
            json!({"session": "b", "templates": [tpl("last", "L", "x")]}),
            4,
        );
        assert_eq!(r["committed"], true);
    }

    #[test]
    fn imports_in_batches_are_all_or_nothing() {
        let s = Scratch::new("import");
        let mut svc = open(&s, 0);
        let before = ok(&mut svc, "templates.facets", json!({}), 0)["templates"].clone();
        let r = ok(
            &mut svc,
            "templates.import",
            json!({"session": "s", "last": false, "templates": [tpl("a", "A", "1")]}),
            1,
        );
        assert_eq!(r["committed"], false);
        // nothing is visible before the last batch
        let (code, _) = err(&mut svc, "templates.get", json!({"id": "a"}), 1);
        assert_eq!(code, "not_found");
        // a duplicate across batches refuses the whole import
        let e = err_full(
            &mut svc,
            "templates.import",
            json!({"session": "s", "last": true, "templates": [tpl("b", "B", "1"), tpl("a", "A", "2")]}),
            2,
        );
        assert_eq!(e["code"], "invalid_params");
        assert_eq!(e["data"]["field"], "templates[2].id");
        let (code, _) = err(&mut svc, "templates.get", json!({"id": "b"}), 2);
        assert_eq!(code, "not_found");
        // again, correctly
        ok(
            &mut svc,
            "templates.import",
            json!({"session": "t", "last": false, "templates": [tpl("a", "A", "1")]}),
            3,
        );
        svc.take_events();
        let r = ok(
            &mut svc,
            "templates.import",
            json!({"session": "t", "templates": [tpl("b", "B", "1"), tpl("greeting", "Greeting", "changed")]}),
            4,
        );
        assert_eq!(
            (
                r["created"].clone(),
                r["updated"].clone(),
                r["unchanged"].clone()
            ),
            (json!(2), json!(1), json!(0))
        );
        assert_eq!(events(&mut svc, "library.changed")[0]["count"], 3);
        let after = ok(&mut svc, "templates.facets", json!({}), 4)["templates"].clone();
        assert_eq!(after.as_u64().unwrap(), before.as_u64().unwrap() + 2);
        // abandoned sessions expire
        ok(
            &mut svc,
            "templates.import",
            json!({"session": "u", "last": false, "templates": [tpl("c", "C", "1")]}),
            5,
        );
        svc.tick(5 + IMPORT_IDLE_MS);
        assert!(svc.imports.is_empty());
    }
}
