//! The laws [`merge3`](super::merge3) and [`integrate`](super::integrate) keep, as one checker
//! shared by the crate's seeded property test and the `merge` fuzz target (`fuzz/`).
//! Not part of the crate's API.

use super::{canonical, integrate, merge3, Content, Integration};
use crate::model::Template;

/// Checks every law on one triple; `Err` says which law broke.
pub fn check(base: &Template, head: &Template, other: &Template) -> Result<(), String> {
    let m = merge3(base, head, other);
    let swapped = merge3(base, other, head);
    match (&m, &swapped) {
        (Ok(a), Ok(b)) => {
            if !same_up_to_order(a, b) {
                return Err("merging the other way made different content".into());
            }
        }
        (Err(a), Err(b)) => {
            if a != b {
                return Err(format!("clashes differ by direction: {a:?} vs {b:?}"));
            }
        }
        _ => return Err("one direction merges, the other clashes".into()),
    }
    if let Ok(m) = &m {
        // Every field comes from one side; a side that kept the base yields to the other.
        macro_rules! from_a_side {
            ($f:ident) => {
                if m.$f != head.$f && m.$f != other.$f {
                    return Err(format!("{} came from neither side", stringify!($f)));
                }
                if head.$f == base.$f && m.$f != other.$f {
                    return Err(format!("{} ignored the only change", stringify!($f)));
                }
                if other.$f == base.$f && m.$f != head.$f {
                    return Err(format!("{} ignored the only change", stringify!($f)));
                }
            };
        }
        from_a_side!(title);
        from_a_side!(folder);
        from_a_side!(shortcut);
        from_a_side!(parts);
        for t in &m.tags {
            if !head.tags.contains(t) && !other.tags.contains(t) {
                return Err(format!("tag {t:?} came from neither side"));
            }
            if base.tags.contains(t) && (!head.tags.contains(t) || !other.tags.contains(t)) {
                return Err(format!("tag {t:?} was removed by a side and came back"));
            }
        }
        for t in head.tags.iter().chain(&other.tags) {
            if !base.tags.contains(t) && !m.tags.contains(t) {
                return Err(format!("added tag {t:?} was lost"));
            }
        }
        for v in &m.variables {
            let here = |l: &[crate::model::Variable]| l.iter().any(|x| x == v);
            if !here(&head.variables) && !here(&other.variables) {
                return Err(format!("variable {:?} came from neither side", v.name));
            }
        }
    }
    // Merging with an unchanged side gives the changed side.
    match merge3(base, head, base) {
        Ok(x) if canonical(&x) == canonical(head) => {}
        other => return Err(format!("merge with an unchanged side gave {other:?}")),
    }
    // Identical content is always `Same`.
    if integrate(
        Some(Content::Put(base)),
        Content::Put(head),
        Content::Put(head),
    ) != Integration::Same
    {
        return Err("the same content did not integrate as Same".into());
    }
    Ok(())
}

fn same_up_to_order(a: &Template, b: &Template) -> bool {
    let norm = |t: &Template| {
        let mut t = t.clone();
        t.tags.sort();
        t.variables.sort_by(|x, y| x.name.cmp(&y.name));
        canonical(&t)
    };
    norm(a) == norm(b)
}
