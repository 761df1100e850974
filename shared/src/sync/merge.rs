//! The hub's three-way merge, per field against the common base.
//!
//! | field | when both sides changed it since the base |
//! |---|---|
//! | `title`, `folder`, `shortcut` | the same new value is fine; different values clash |
//! | `tags` | a set: removed if either side removed it, added if either added it; never clashes |
//! | `variables` | by name, each variable a unit under the scalar rule |
//! | `parts` | one unit (customer-facing wording is never merged inside a sentence) |
//!
//! A clash is a kept conflict: nothing is merged for that revision, both versions are kept.

use serde::{Deserialize, Serialize};

use crate::model::{Template, Variable};

/// A field of a template, as named in conflicts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Field {
    Title,
    Folder,
    Shortcut,
    Tags,
    Variables,
    Parts,
    /// One side deleted the template while the other edited it.
    Deleted,
}

impl Field {
    pub fn as_str(self) -> &'static str {
        match self {
            Field::Title => "title",
            Field::Folder => "folder",
            Field::Shortcut => "shortcut",
            Field::Tags => "tags",
            Field::Variables => "variables",
            Field::Parts => "parts",
            Field::Deleted => "deleted",
        }
    }
}

/// The three-way merge of two templates that share `base`. `Ok` is the merged template (the
/// `revision` counter is `head`'s); `Err` lists the fields changed two different ways.
pub fn merge3(base: &Template, head: &Template, other: &Template) -> Result<Template, Vec<Field>> {
    let mut clashes = vec![];
    let mut out = head.clone();
    out.title = scalar(
        &base.title,
        &head.title,
        &other.title,
        Field::Title,
        &mut clashes,
    );
    out.folder = scalar(
        &base.folder,
        &head.folder,
        &other.folder,
        Field::Folder,
        &mut clashes,
    );
    out.shortcut = scalar(
        &base.shortcut,
        &head.shortcut,
        &other.shortcut,
        Field::Shortcut,
        &mut clashes,
    );
    out.parts = scalar(
        &base.parts,
        &head.parts,
        &other.parts,
        Field::Parts,
        &mut clashes,
    );
    out.tags = tags(&base.tags, &head.tags, &other.tags);
    match variables(&base.variables, &head.variables, &other.variables) {
        Ok(v) => out.variables = v,
        Err(()) => clashes.push(Field::Variables),
    }
    if clashes.is_empty() {
        Ok(out)
    } else {
        clashes.sort();
        Err(clashes)
    }
}

fn scalar<T: PartialEq + Clone>(
    base: &T,
    head: &T,
    other: &T,
    f: Field,
    clashes: &mut Vec<Field>,
) -> T {
    if head == other || other == base {
        head.clone()
    } else if head == base {
        other.clone()
    } else {
        clashes.push(f);
        head.clone()
    }
}

/// Tags as a set: head's order, then the other side's additions in their order.
fn tags(base: &[String], head: &[String], other: &[String]) -> Vec<String> {
    let removed = |t: &String| base.contains(t) && (!head.contains(t) || !other.contains(t));
    let mut out: Vec<String> = vec![];
    for t in head.iter().chain(other.iter()) {
        if !removed(t) && !out.contains(t) {
            out.push(t.clone());
        }
    }
    out
}

/// Variables by name, each one a unit under the scalar rule (absent counts as a value).
fn variables(
    base: &[Variable],
    head: &[Variable],
    other: &[Variable],
) -> Result<Vec<Variable>, ()> {
    let find = |list: &[Variable], name: &str| list.iter().find(|v| v.name == name).cloned();
    let mut names: Vec<&str> = vec![];
    for v in head.iter().chain(other.iter()).chain(base.iter()) {
        if !names.contains(&v.name.as_str()) {
            names.push(&v.name);
        }
    }
    let mut out = vec![];
    let mut clash = false;
    for name in names {
        let (b, h, o) = (find(base, name), find(head, name), find(other, name));
        let mut c = vec![];
        if let Some(v) = scalar(&b, &h, &o, Field::Variables, &mut c) {
            out.push(v);
        }
        clash |= !c.is_empty();
    }
    if clash {
        Err(())
    } else {
        Ok(out)
    }
}

/// A revision's content, for [`integrate`].
#[derive(Debug, Clone, Copy)]
pub enum Content<'a> {
    Put(&'a Template),
    Delete,
}

/// What the hub does with a pushed revision whose parent is not the current head.
#[derive(Debug, Clone, PartialEq)]
pub enum Integration {
    /// The pushed revision made the same content as head: it is kept, head does not move.
    Same,
    /// Disjoint changes: this merged template becomes head, in a merge revision with parents
    /// `[head, pushed]`.
    Merged(Template),
    /// Both deleted it: the pushed tombstone is kept, head stays the first tombstone.
    BothDeleted,
    /// The same fields changed two ways. `pushed_wins` is set when head was a tombstone and the
    /// pushed revision keeps content: content stays, so the pushed revision becomes head and the
    /// tombstone is the conflict's other side. Otherwise head stays and the pushed revision is
    /// the other side.
    Conflict {
        fields: Vec<Field>,
        pushed_wins: bool,
    },
}

/// Decides a pushed revision against the library's head for its template. `base` is the
/// content of the pushed revision's first parent (`None` for a create, or a parent the hub does
/// not know: then every differing field clashes). Edit against delete keeps the content.
pub fn integrate(base: Option<Content<'_>>, head: Content<'_>, pushed: Content<'_>) -> Integration {
    match (head, pushed) {
        (Content::Delete, Content::Delete) => Integration::BothDeleted,
        (Content::Put(_), Content::Delete) => Integration::Conflict {
            fields: vec![Field::Deleted],
            pushed_wins: false,
        },
        (Content::Delete, Content::Put(_)) => Integration::Conflict {
            fields: vec![Field::Deleted],
            pushed_wins: true,
        },
        (Content::Put(h), Content::Put(p)) => {
            if super::canonical(h) == super::canonical(p) {
                return Integration::Same;
            }
            let base = match base {
                Some(Content::Put(b)) => b,
                // No common content: every differing field is a clash.
                _ => {
                    let mut fields = vec![];
                    let mut probe = |f: Field, same: bool| {
                        if !same {
                            fields.push(f)
                        }
                    };
                    probe(Field::Title, h.title == p.title);
                    probe(Field::Folder, h.folder == p.folder);
                    probe(Field::Shortcut, h.shortcut == p.shortcut);
                    probe(Field::Tags, h.tags == p.tags);
                    probe(Field::Variables, h.variables == p.variables);
                    probe(Field::Parts, h.parts == p.parts);
                    return Integration::Conflict {
                        fields,
                        pushed_wins: false,
                    };
                }
            };
            match merge3(base, h, p) {
                Ok(m) => Integration::Merged(m),
                Err(fields) => Integration::Conflict {
                    fields,
                    pushed_wins: false,
                },
            }
        }
    }
}
