use super::wire::*;
use super::*;
use crate::model::{Part, Variable};

fn t(title: &str) -> Template {
    Template {
        id: "greeting".into(),
        title: title.into(),
        folder: String::new(),
        tags: vec![],
        shortcut: None,
        revision: 1,
        variables: vec![],
        parts: vec![Part::Text {
            text: "Hello".into(),
            fallback: None,
        }],
    }
}

fn text(t: &mut Template, s: &str) {
    t.parts = vec![Part::Text {
        text: s.into(),
        fallback: None,
    }];
}

fn var(name: &str, label: &str) -> Variable {
    Variable {
        name: name.into(),
        label: Some(label.into()),
        required: false,
    }
}

const A: &str = "0190f1a2-0000-7000-8000-000000000001";
const B: &str = "0190f1a2-0000-7000-8000-000000000002";

fn put(rev_id: &str, parents: &[&str], body: &Template) -> Revision {
    Revision {
        rev_id: rev_id.into(),
        template: body.id.clone(),
        parents: parents.iter().map(|s| s.to_string()).collect(),
        op: Op::Put,
        format: FORMAT,
        body: Some(canonical(body)),
        client_at_ms: 1,
    }
}

#[test]
fn disjoint_fields_merge() {
    let base = t("Hi");
    let mut head = base.clone();
    head.title = "Hello there".into();
    let mut other = base.clone();
    other.tags = vec!["vip".into()];
    text(&mut other, "Hello, welcome");
    let m = merge3(&base, &head, &other).unwrap();
    assert_eq!(m.title, "Hello there");
    assert_eq!(m.tags, vec!["vip".to_string()]);
    assert_eq!(m.parts, other.parts);
}

#[test]
fn same_field_two_ways_clashes_and_names_the_fields() {
    let base = t("Hi");
    let mut head = base.clone();
    head.title = "Hello".into();
    text(&mut head, "A");
    let mut other = base.clone();
    other.title = "Howdy".into();
    text(&mut other, "B");
    other.folder = "new".into();
    assert_eq!(
        merge3(&base, &head, &other),
        Err(vec![Field::Title, Field::Parts])
    );
}

#[test]
fn the_same_change_on_both_sides_is_no_clash() {
    let base = t("Hi");
    let mut head = base.clone();
    head.title = "Hello".into();
    let other = head.clone();
    assert_eq!(merge3(&base, &head, &other).unwrap().title, "Hello");
    assert_eq!(
        integrate(
            Some(Content::Put(&base)),
            Content::Put(&head),
            Content::Put(&other)
        ),
        Integration::Same
    );
}

#[test]
fn parts_are_one_unit_never_merged_inside() {
    let mut base = t("Hi");
    base.parts.push(Part::Text {
        text: "Bye".into(),
        fallback: None,
    });
    let mut head = base.clone();
    head.parts[0] = Part::Text {
        text: "Hello!".into(),
        fallback: None,
    };
    let mut other = base.clone();
    other.parts[1] = Part::Text {
        text: "Goodbye".into(),
        fallback: None,
    };
    assert_eq!(merge3(&base, &head, &other), Err(vec![Field::Parts]));
}

#[test]
fn tags_merge_as_sets() {
    let mut base = t("Hi");
    base.tags = vec!["a".into(), "b".into(), "c".into()];
    let mut head = base.clone();
    head.tags = vec!["a".into(), "c".into(), "d".into()]; // -b +d
    let mut other = base.clone();
    other.tags = vec!["b".into(), "c".into(), "e".into()]; // -a +e
    let m = merge3(&base, &head, &other).unwrap();
    assert_eq!(m.tags, vec!["c".to_string(), "d".into(), "e".into()]);
}

#[test]
fn variables_merge_by_name() {
    let mut base = t("Hi");
    base.variables = vec![var("name", "Name"), var("order", "Order")];
    let mut head = base.clone();
    head.variables = vec![var("name", "Customer name"), var("order", "Order")];
    let mut other = base.clone();
    other.variables = vec![var("name", "Name"), var("city", "City")]; // -order +city
    let m = merge3(&base, &head, &other).unwrap();
    assert_eq!(
        m.variables,
        vec![var("name", "Customer name"), var("city", "City")]
    );

    let mut other2 = base.clone();
    other2.variables = vec![var("name", "Full name"), var("order", "Order")];
    assert_eq!(merge3(&base, &head, &other2), Err(vec![Field::Variables]));

    // Both add the same name with different definitions.
    let mut h = base.clone();
    h.variables.push(var("x", "one"));
    let mut o = base.clone();
    o.variables.push(var("x", "two"));
    assert_eq!(merge3(&base, &h, &o), Err(vec![Field::Variables]));
}

#[test]
fn edit_against_delete_keeps_the_content() {
    let base = t("Hi");
    let mut edited = base.clone();
    edited.title = "Hello".into();
    assert_eq!(
        integrate(
            Some(Content::Put(&base)),
            Content::Delete,
            Content::Put(&edited)
        ),
        Integration::Conflict {
            fields: vec![Field::Deleted],
            pushed_wins: true
        }
    );
    assert_eq!(
        integrate(
            Some(Content::Put(&base)),
            Content::Put(&edited),
            Content::Delete
        ),
        Integration::Conflict {
            fields: vec![Field::Deleted],
            pushed_wins: false
        }
    );
    assert_eq!(
        integrate(Some(Content::Put(&base)), Content::Delete, Content::Delete),
        Integration::BothDeleted
    );
}

#[test]
fn two_creates_of_one_id_clash_on_every_differing_field() {
    let a = t("Hi");
    let mut b = t("Hello");
    b.folder = "x".into();
    assert_eq!(
        integrate(None, Content::Put(&a), Content::Put(&b)),
        Integration::Conflict {
            fields: vec![Field::Title, Field::Folder],
            pushed_wins: false
        }
    );
    assert_eq!(
        integrate(None, Content::Put(&a), Content::Put(&a.clone())),
        Integration::Same
    );
}

#[test]
fn merge_is_symmetric_in_what_it_accepts() {
    // Whatever merges one way merges the other way, to the same content up to tag order.
    let base = t("Hi");
    let mut x = base.clone();
    x.title = "X".into();
    x.tags = vec!["t".into()];
    let mut y = base.clone();
    y.folder = "f".into();
    y.variables = vec![var("v", "V")];
    let xy = merge3(&base, &x, &y).unwrap();
    let yx = merge3(&base, &y, &x).unwrap();
    assert_eq!(canonical(&xy), canonical(&yx));
}

#[test]
fn revisions_are_checked() {
    let body = t("Hi");
    assert!(put(A, &[], &body).check().unwrap().is_some());
    let mut r = put("not-a-uuid", &[], &body);
    assert_eq!(r.check().unwrap_err().field, "rev_id");
    r = put(A, &[A], &body);
    assert_eq!(r.check().unwrap_err().field, "parents[0]");
    r = put(A, &[B, B], &body);
    assert_eq!(r.check().unwrap_err().field, "parents");
    r = put(A, &[], &body);
    r.template = "other".into();
    assert_eq!(r.check().unwrap_err().field, "body.id");
    let mut bad = body.clone();
    bad.title = " ".into();
    assert_eq!(put(A, &[], &bad).check().unwrap_err().field, "body.title");
    r = put(A, &[], &body);
    r.op = Op::Delete;
    assert_eq!(r.check().unwrap_err().field, "body");
    r.body = None;
    assert_eq!(r.check().unwrap(), None);
    // A newer format is kept verbatim, not parsed.
    r = put(A, &[], &body);
    r.format = FORMAT + 1;
    r.body = Some(serde_json::json!({"id": "greeting", "whatever": [1, 2]}));
    assert_eq!(r.check().unwrap(), None);
    assert!(!is_uuid("0190F1A2-0000-7000-8000-000000000001"));
}

#[test]
fn canonical_drops_the_local_counter() {
    let mut a = t("Hi");
    let mut b = a.clone();
    a.revision = 3;
    b.revision = 9;
    assert_eq!(canonical(&a), canonical(&b));
    assert!(canonical(&a).get("revision").is_none());
}

#[test]
fn digest_is_order_free_and_sees_every_field() {
    let e = |t: &'static str, h: &'static str, d: bool, c: bool| HeadEntry {
        template: t,
        head_rev: h,
        deleted: d,
        conflicted: c,
    };
    let one = digest(vec![e("a", A, false, false), e("b", B, false, false)]);
    let two = digest(vec![e("b", B, false, false), e("a", A, false, false)]);
    assert_eq!(one, two);
    assert_eq!(one.len(), 64);
    assert_ne!(
        one,
        digest(vec![e("a", A, true, false), e("b", B, false, false)])
    );
    assert_ne!(
        one,
        digest(vec![e("a", A, false, true), e("b", B, false, false)])
    );
    assert_ne!(
        one,
        digest(vec![e("a", B, false, false), e("b", B, false, false)])
    );
    assert_eq!(
        digest(Vec::<HeadEntry>::new()),
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    );
}

#[test]
fn roles_order_by_power() {
    assert!(!Role::Viewer.can_publish());
    assert!(Role::Editor.can_publish() && !Role::Editor.can_review());
    assert!(Role::Maintainer.can_review() && !Role::Maintainer.can_admin());
    assert!(Role::Owner.can_admin());
    assert!(Role::Editor.needs_review(true) && !Role::Maintainer.needs_review(true));
    assert!(!Role::Editor.needs_review(false));
    for r in Role::ALL {
        assert_eq!(Role::parse(r.as_str()), Some(r));
        assert_eq!(serde_json::to_value(r).unwrap(), r.as_str());
    }
}

#[test]
fn wire_shapes() {
    let body = t("Hi");
    let req = PushRequest {
        epoch: A.into(),
        revisions: vec![put(B, &[A], &body)],
    };
    let json = serde_json::to_value(&req).unwrap();
    assert_eq!(json["revisions"][0]["op"], "put");
    assert_eq!(json["revisions"][0]["body"]["title"], "Hi");
    assert_eq!(serde_json::from_value::<PushRequest>(json).unwrap(), req);
    assert!(
        serde_json::from_str::<PushRequest>(r#"{"epoch":"x","revisions":[],"extra":1}"#).is_err()
    );

    let change = Change::Member {
        seq: 7,
        user_id: A.into(),
        user_name: "Li".into(),
        role: None,
    };
    let v = serde_json::to_value(&change).unwrap();
    assert_eq!(v["kind"], "member");
    assert_eq!(v["role"], serde_json::Value::Null);
    assert_eq!(serde_json::from_value::<Change>(v).unwrap().seq(), 7);

    let rec = RevisionRecord {
        revision: put(B, &[A], &body),
        state: RevState::Conflict,
        author: Author {
            user_id: A.into(),
            user_name: "Li".into(),
            device_id: B.into(),
        },
        received_at_ms: 5,
    };
    let c = Change::Revision {
        seq: 3,
        revision: rec,
        template: TemplateState {
            template: "greeting".into(),
            head_rev: A.into(),
            deleted: false,
            conflicts: vec![],
        },
    };
    let s = serde_json::to_string(&c).unwrap();
    assert_eq!(serde_json::from_str::<Change>(&s).unwrap(), c);
}

/// A tiny seeded generator: the property test is the same on every run.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[(self.next() % from.len() as u64) as usize]
    }
}

/// A template that differs from `base` in a random subset of fields, with values drawn from
/// small sets so that sides often make the same change.
fn mutate(r: &mut Rng, base: &Template) -> Template {
    let mut t = base.clone();
    let words = ["A", "B", "C"];
    if r.next().is_multiple_of(3) {
        t.title = r.pick(&words).into();
    }
    if r.next().is_multiple_of(3) {
        t.folder = r.pick(&words).into();
    }
    if r.next().is_multiple_of(4) {
        t.shortcut =
            [None, Some("/a".to_string()), Some("/b".to_string())][(r.next() % 3) as usize].clone();
    }
    if r.next().is_multiple_of(3) {
        t.tags = ["x", "y", "z", "w"]
            .iter()
            .filter(|_| r.next().is_multiple_of(2))
            .map(|s| s.to_string())
            .collect();
    }
    if r.next().is_multiple_of(3) {
        let mut vars = vec![];
        for n in ["n", "m", "o"] {
            if r.next().is_multiple_of(2) {
                vars.push(var(n, r.pick(&["1", "2"])));
            }
        }
        t.variables = vars;
    }
    if r.next().is_multiple_of(3) {
        text(&mut t, r.pick(&words));
    }
    t
}

#[test]
fn merge_laws_hold_on_20000_seeded_triples() {
    let mut r = Rng(0x9e37_79b9_7f4a_7c15);
    let mut merged = 0;
    for i in 0..20_000 {
        let base = mutate(&mut r, &t("Hi"));
        let head = mutate(&mut r, &base);
        let other = mutate(&mut r, &base);
        if let Err(e) = laws::check(&base, &head, &other) {
            panic!("triple {i}: {e}\nbase {base:?}\nhead {head:?}\nother {other:?}");
        }
        merged += merge3(&base, &head, &other).is_ok() as u32;
    }
    // Both outcomes are exercised.
    assert!(
        merged > 2_000 && merged < 18_000,
        "{merged} of 20000 merged"
    );
}

#[test]
fn invites_parse_and_print_back() {
    let fp = "ab".repeat(32);
    let s = format!("quiver+https://hub.example:7443/join#AbC-_9.{fp}");
    let i = Invite::parse(&s).unwrap();
    assert_eq!(i.base_url, "https://hub.example:7443");
    assert_eq!(i.code, "AbC-_9");
    assert_eq!(i.fingerprint.as_deref(), Some(fp.as_str()));
    assert_eq!(i.to_string(), s);
    let plain = Invite::parse("quiver+http://127.0.0.1:9/join#code").unwrap();
    assert_eq!(plain.base_url, "http://127.0.0.1:9");
    assert_eq!(plain.fingerprint, None);
    for bad in [
        "https://h/join#c",
        "quiver+https://h/join",
        "quiver+https://h/x#c",
        "quiver+ftp://h/join#c",
        "quiver+https://h/join#c.123",
        "quiver+https://h/join#c d",
        "quiver+https:///join#c",
        &format!("quiver+http://h/join#c.{fp}"),
    ] {
        assert!(Invite::parse(bad).is_err(), "{bad}");
    }
}
