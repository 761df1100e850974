//! Unit tests of the team methods and the sync engine's entry points: the service and the
//! store as they are, fed the hub's replies as the engine would (the engine's network side and
//! the real hub are tested end to end in tests/tests/team.rs).

use super::*;
use crate::service::testkit::*;
use quiver_shared::sync::wire::{
    Author, Change, ChangesPage, ConflictInfo, LibraryInfo, Me, PushResult, PushStatus, RevState,
    RevisionRecord, TemplateState,
};
use quiver_shared::sync::{canonical, Field, Op, Revision, FORMAT};

const LIB: &str = "0190f1a2-0000-7000-8000-00000000aaaa";
const R0: &str = "0190f1a2-0000-7000-8000-000000000000";
const R1: &str = "0190f1a2-0000-7000-8000-000000000001";
const R2: &str = "0190f1a2-0000-7000-8000-000000000002";

fn me(role: Role) -> Me {
    Me {
        hub_id: "hub-1".into(),
        user_id: "u-me".into(),
        user_name: "li".into(),
        device_id: "d-me".into(),
        token: Some("secret".into()),
        libraries: vec![LibraryInfo {
            id: LIB.into(),
            name: "team".into(),
            role,
            epoch: "e1".into(),
            head_seq: 0,
            review_required: false,
        }],
    }
}

fn joined(name: &str, role: Role) -> (Scratch, Service) {
    let s = Scratch::new(name);
    let mut svc = open(&s, 0);
    svc.team_joined("http://127.0.0.1:1", None, "pc", &me(role), 1)
        .unwrap();
    svc.take_events();
    (s, svc)
}

fn body(title: &str, text: &str) -> Template {
    serde_json::from_value(json!({"id": "greeting", "title": title,
        "parts": [{"type": "text", "text": text}]}))
    .unwrap()
}

/// A revision change by another member, with the template's state after it.
fn change(
    seq: i64,
    rev: &str,
    parents: &[&str],
    t: Option<&Template>,
    state: RevState,
    head: &str,
    conflicts: Vec<ConflictInfo>,
) -> Change {
    Change::Revision {
        seq,
        revision: RevisionRecord {
            revision: Revision {
                rev_id: rev.into(),
                template: "greeting".into(),
                parents: parents.iter().map(|p| p.to_string()).collect(),
                op: if t.is_some() { Op::Put } else { Op::Delete },
                format: FORMAT,
                body: t.map(canonical),
                client_at_ms: 5,
            },
            state,
            author: Author {
                user_id: "u-wang".into(),
                user_name: "wang".into(),
                device_id: "d-wang".into(),
            },
            received_at_ms: 10 * seq,
        },
        template: TemplateState {
            template: "greeting".into(),
            head_rev: head.into(),
            deleted: false,
            conflicts,
        },
    }
}

fn page(head_seq: i64, changes: Vec<Change>) -> ChangesPage {
    ChangesPage {
        epoch: "e1".into(),
        head_seq,
        more: false,
        changes,
    }
}

fn result(rev: &str, status: PushStatus, seq: Option<i64>) -> PushResult {
    PushResult {
        rev_id: rev.into(),
        status,
        duplicate: false,
        seq,
        head_rev: None,
        merge_rev: None,
        conflict: None,
        fields: vec![],
        reason: (status == PushStatus::Denied).then(|| "viewers cannot publish".into()),
    }
}

#[test]
fn a_team_edit_is_a_revision_with_its_parent_in_the_outbox() {
    let (_s, mut svc) = joined("team-edit", Role::Editor);
    let r = ok(
        &mut svc,
        "templates.put",
        json!({"library": LIB, "template": tpl("greeting", "Hi", "one")}),
        10,
    );
    assert_eq!(
        (r["library"].as_str(), r["sync"].as_str()),
        (Some(LIB), Some("pending"))
    );
    let first = r["head_rev"].as_str().unwrap().to_string();
    let r = ok(
        &mut svc,
        "templates.put",
        json!({"library": LIB, "template": tpl("greeting", "Hi", "two")}),
        11,
    );
    assert_eq!(r["revision"], 2);
    let out = svc.team_outbox(LIB, 500, 1 << 20).unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(
        (out[0].rev_id.as_str(), out[0].parents.len()),
        (first.as_str(), 0)
    );
    assert_eq!(out[1].parents, vec![first.clone()]);
    assert!(quiver_shared::sync::is_uuid(&out[1].rev_id));
    // the body is the canonical template: no local revision counter
    let b = out[1].body.as_ref().unwrap();
    assert!(b.get("revision").is_none(), "{b}");
    assert_eq!(
        out[1].check().unwrap().unwrap().parts,
        body("Hi", "two").parts
    );
    // the personal library has no outbox; the same id lives in both
    ok(
        &mut svc,
        "templates.put",
        json!({"template": tpl("greeting", "Mine", "local")}),
        12,
    );
    assert_eq!(svc.team_outbox_len(LIB).unwrap(), 2);
    let local = ok(&mut svc, "templates.get", json!({"id": "greeting"}), 12);
    assert_eq!(local["template"]["title"], "Mine");
    // a delete is a tombstone revision
    ok(
        &mut svc,
        "templates.delete",
        json!({"library": LIB, "id": "greeting"}),
        13,
    );
    let out = svc.team_outbox(LIB, 500, 1 << 20).unwrap();
    assert_eq!((out[2].op, out[2].body.is_none()), (Op::Delete, true));
    assert_eq!(out[2].parents, vec![out[1].rev_id.clone()]);
    // an unknown library is refused
    let (code, _) = err(
        &mut svc,
        "templates.put",
        json!({"library": "nope", "template": tpl("x", "X", "x")}),
        14,
    );
    assert_eq!(code, "not_found");
}

#[test]
fn push_results_are_recorded_and_a_denied_edit_stays_a_draft() {
    let (_s, mut svc) = joined("team-push", Role::Viewer);
    ok(
        &mut svc,
        "templates.put",
        json!({"library": LIB, "template": tpl("greeting", "Hi", "one")}),
        10,
    );
    let rev = svc.team_outbox(LIB, 10, 1 << 20).unwrap()[0].rev_id.clone();
    // a result for a revision not in the outbox is ignored
    assert_eq!(
        svc.team_pushed(LIB, &[result(R2, PushStatus::Applied, Some(1))])
            .unwrap(),
        0
    );
    assert_eq!(
        svc.team_pushed(LIB, &[result(&rev, PushStatus::Denied, None)])
            .unwrap(),
        1
    );
    assert_eq!(svc.team_outbox_len(LIB).unwrap(), 0);
    let g = ok(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "greeting"}),
        11,
    );
    assert_eq!(
        (g["sync"].as_str(), g["template"]["title"].as_str()),
        (Some("draft"), Some("Hi"))
    );
    let revs = ok(
        &mut svc,
        "templates.revisions",
        json!({"library": LIB, "id": "greeting"}),
        11,
    );
    assert_eq!(revs["revisions"][0]["reason"], "viewers cannot publish");
    assert!(events(&mut svc, "team.changed")
        .iter()
        .any(|e| e["what"] == "drafts"));
    let st = ok(&mut svc, "team.status", json!({}), 12);
    assert_eq!(st["libraries"][0]["drafts"], 1, "{st}");
    // a viewer may not resolve
    let (code, _) = err(
        &mut svc,
        "team.resolve",
        json!({"library": LIB, "template": "greeting", "take": "head"}),
        12,
    );
    assert_eq!(code, "forbidden");
}

#[test]
fn pulled_pages_show_the_hubs_heads_and_mirror_its_conflicts() {
    let (_s, mut svc) = joined("team-pull", Role::Editor);
    let b0 = body("Hello", "base");
    let mut h = b0.clone();
    h.title = "Hello A".into();
    let mut o = b0.clone();
    o.title = "Hello B".into();
    let conflict = ConflictInfo {
        id: "c1".into(),
        template: "greeting".into(),
        head_rev: R1.into(),
        other_rev: R2.into(),
        base_rev: Some(R0.into()),
        fields: vec![Field::Title],
        opened_seq: 3,
    };
    let p = page(
        3,
        vec![
            change(1, R0, &[], Some(&b0), RevState::Superseded, R0, vec![]),
            change(2, R1, &[R0], Some(&h), RevState::Head, R1, vec![]),
            change(
                3,
                R2,
                &[R0],
                Some(&o),
                RevState::Conflict,
                R1,
                vec![conflict],
            ),
        ],
    );
    let applied = svc.team_apply(LIB, &p, 20).unwrap();
    assert_eq!(applied.revisions, 3);
    assert!(applied.conflicts_changed);
    let ev = events(&mut svc, "library.changed");
    assert_eq!(
        (ev[0]["reason"].as_str(), ev[0]["library"].as_str()),
        (Some("sync"), Some(LIB))
    );
    let g = ok(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "greeting"}),
        21,
    );
    assert_eq!(g["template"]["title"], "Hello A");
    assert_eq!(
        (g["head_rev"].as_str(), g["sync"].as_str()),
        (Some(R1), Some("conflict"))
    );
    assert_eq!(g["author"], "wang");
    // the cursor moved with the page, and the digest is the hub's
    let st = ok(&mut svc, "team.status", json!({}), 21);
    assert_eq!(
        (
            st["libraries"][0]["cursor"].as_i64(),
            st["libraries"][0]["lag"].as_i64()
        ),
        (Some(3), Some(0))
    );
    let want = quiver_shared::sync::digest([quiver_shared::sync::HeadEntry {
        template: "greeting",
        head_rev: R1,
        deleted: false,
        conflicted: true,
    }]);
    assert_eq!(st["libraries"][0]["digest"], want);
    // the conflict with its three sides
    let cs = ok(&mut svc, "team.conflicts", json!({}), 21)["conflicts"].clone();
    assert_eq!(cs[0]["fields"], json!(["title"]));
    assert_eq!(cs[0]["base"]["template"]["title"], "Hello");
    assert_eq!(cs[0]["head"]["template"]["title"], "Hello A");
    assert_eq!(cs[0]["other"]["template"]["title"], "Hello B");
    assert_eq!(cs[0]["other"]["author"], "wang");
    // resolved with the other side's title: parents [head, other], shown at once
    let r = ok(
        &mut svc,
        "team.resolve",
        json!({"library": LIB, "template": "greeting", "take": {"title": "other"}}),
        22,
    );
    let out = svc.team_outbox(LIB, 10, 1 << 20).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rev_id, r["rev_id"].as_str().unwrap());
    assert_eq!(out[0].parents, vec![R1.to_string(), R2.to_string()]);
    assert_eq!(out[0].body.as_ref().unwrap()["title"], "Hello B");
    let cs = ok(&mut svc, "team.conflicts", json!({}), 23)["conflicts"].clone();
    assert_eq!(cs[0]["resolving"], r["rev_id"]);
    let g = ok(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "greeting"}),
        23,
    );
    assert_eq!(
        (g["template"]["title"].as_str(), g["sync"].as_str()),
        (Some("Hello B"), Some("conflict"))
    );
    // a page while the resolution waits does not hide it
    svc.team_apply(LIB, &page(3, vec![]), 24).unwrap();
    let g = ok(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "greeting"}),
        24,
    );
    assert_eq!(g["template"]["title"], "Hello B");
}

#[test]
fn keep_both_forks_the_other_side_and_a_removal_purges() {
    let (_s, mut svc) = joined("team-both", Role::Maintainer);
    let b0 = body("Hello", "base");
    let mut h = b0.clone();
    h.title = "A".into();
    let mut o = b0.clone();
    o.title = "B".into();
    let conflict = ConflictInfo {
        id: "c1".into(),
        template: "greeting".into(),
        head_rev: R1.into(),
        other_rev: R2.into(),
        base_rev: Some(R0.into()),
        fields: vec![Field::Title],
        opened_seq: 3,
    };
    svc.team_apply(
        LIB,
        &page(
            3,
            vec![
                change(1, R0, &[], Some(&b0), RevState::Superseded, R0, vec![]),
                change(2, R1, &[R0], Some(&h), RevState::Head, R1, vec![]),
                change(
                    3,
                    R2,
                    &[R0],
                    Some(&o),
                    RevState::Conflict,
                    R1,
                    vec![conflict],
                ),
            ],
        ),
        20,
    )
    .unwrap();
    // greeting-2 is taken: the fork is greeting-3
    ok(
        &mut svc,
        "templates.put",
        json!({"library": LIB, "template": tpl("greeting-2", "Taken", "x")}),
        21,
    );
    let r = ok(
        &mut svc,
        "team.resolve",
        json!({"library": LIB, "template": "greeting", "conflict": "c1", "take": "both"}),
        22,
    );
    assert_eq!(r["fork"]["id"], "greeting-3", "{r}");
    let fork = ok(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "greeting-3"}),
        22,
    );
    assert_eq!(fork["template"]["title"], "B");
    let out = svc.team_outbox(LIB, 10, 1 << 20).unwrap();
    let kinds: Vec<(String, usize)> = out
        .iter()
        .map(|r| (r.template.clone(), r.parents.len()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            ("greeting-2".to_string(), 0),
            ("greeting".to_string(), 2),
            ("greeting-3".to_string(), 0)
        ]
    );
    // a send of a team template records its rev_id; the history stays after a removal
    let g = ok(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "greeting"}),
        23,
    );
    let mut p = reserve_params("k1", "w");
    p["library"] = json!(LIB);
    p["revision"] = g["revision"].clone();
    ok(&mut svc, "send.reserve", p, 23);
    // removed from the library: purged (outbox too), the history kept
    svc.take_events();
    let removal = Change::Member {
        seq: 9,
        user_id: "u-me".into(),
        user_name: "li".into(),
        role: None,
    };
    let applied = svc.team_apply(LIB, &page(9, vec![removal]), 30).unwrap();
    assert!(applied.purged);
    assert!(events(&mut svc, "team.changed")
        .iter()
        .any(|e| e["what"] == "removed"));
    let (code, _) = err(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "greeting"}),
        31,
    );
    assert_eq!(code, "not_found");
    let st = ok(&mut svc, "team.status", json!({}), 31);
    assert!(st["libraries"].as_array().unwrap().is_empty(), "{st}");
    let rows = ok(&mut svc, "history.list", json!({}), 31)["rows"].clone();
    assert_eq!(rows[0]["library"], LIB);
    assert_eq!(rows[0]["rev_id"], g["head_rev"]);
    // a search over every library does not find it any more
    let hits = ok(
        &mut svc,
        "templates.search",
        json!({"query": "greeting", "library": "*"}),
        31,
    );
    assert!(hits["results"]
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r["library"] == "local"));
}

#[test]
fn a_reset_reads_again_and_pushes_what_the_hub_lost() {
    let (_s, mut svc) = joined("team-reset", Role::Editor);
    ok(
        &mut svc,
        "templates.put",
        json!({"library": LIB, "template": tpl("mine", "Mine", "x")}),
        10,
    );
    let mine = svc.team_outbox(LIB, 10, 1 << 20).unwrap()[0].rev_id.clone();
    svc.team_pushed(LIB, &[result(&mine, PushStatus::Applied, Some(1))])
        .unwrap();
    let b0 = body("Hello", "theirs");
    svc.team_apply(
        LIB,
        &page(
            2,
            vec![change(2, R0, &[], Some(&b0), RevState::Head, R0, vec![])],
        ),
        11,
    )
    .unwrap();
    assert_eq!(svc.team_outbox_len(LIB).unwrap(), 0);
    // the hub was restored: another epoch
    svc.team_reset(LIB, "e2").unwrap();
    let l = svc.team_library_row(LIB).unwrap().unwrap();
    assert_eq!(
        (l.epoch.as_deref(), l.last_seq, l.resetting),
        (Some("e2"), 0, true)
    );
    // nothing local is deleted
    let g = ok(
        &mut svc,
        "templates.get",
        json!({"library": LIB, "id": "mine"}),
        12,
    );
    assert_eq!(g["template"]["title"], "Mine");
    // the restored hub has the other member's revision, not ours
    let mut p = page(
        1,
        vec![change(1, R0, &[], Some(&b0), RevState::Head, R0, vec![])],
    );
    p.epoch = "e2".into();
    svc.team_apply(LIB, &p, 13).unwrap();
    assert_eq!(svc.team_requeue(LIB, 14).unwrap(), 1);
    let out = svc.team_outbox(LIB, 10, 1 << 20).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].rev_id, mine);
    assert!(!svc.team_library_row(LIB).unwrap().unwrap().resetting);
    // leaving refuses while an edit waits, unless forced
    let e = err_full(&mut svc, "team.leave", json!({}), 15);
    assert_eq!(
        (e["code"].as_str(), e["data"]["outbox"].as_u64()),
        (Some("conflict"), Some(1))
    );
    let r = ok(&mut svc, "team.leave", json!({"force": true}), 16);
    assert_eq!(r["libraries"], json!([LIB]));
    let st = ok(&mut svc, "team.status", json!({}), 16);
    assert!(st["hubs"].as_array().unwrap().is_empty(), "{st}");
}
