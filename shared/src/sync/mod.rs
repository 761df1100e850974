//! Team sync: the revision, the hub's three-way merge, roles, the library digest and the wire
//! types daemons and hubs exchange (`docs/sync.md` is the contract these types serialize to).
//!
//! No IO, no clock, no randomness: revision ids are made by the daemon (UUIDv7) and checked here
//! only for their form; times are arguments.

#[doc(hidden)]
pub mod laws;
mod merge;
pub mod wire;

pub use merge::{integrate, merge3, Content, Field, Integration};

use serde::{Deserialize, Serialize};

use crate::model::Template;

/// The body format this build writes and understands. A revision of a higher format is stored
/// and relayed verbatim and shown as "update Quiver to see this version"; it never stalls a pull.
pub const FORMAT: u32 = 1;

/// At most this many revisions in one push.
pub const MAX_PUSH: usize = 500;

/// At most this many changes in one page of a pull.
pub const MAX_PAGE: usize = 1000;

/// A member's role in one library, weakest first (`Ord` follows power).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Uses the library; edits stay local drafts.
    Viewer,
    /// Publishes edits (as proposals when the library requires review) and resolves conflicts.
    Editor,
    /// Also approves or rejects proposals and changes the library's settings.
    Maintainer,
    /// Also manages members and roles, invites, and deletes the library.
    Owner,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Viewer, Role::Editor, Role::Maintainer, Role::Owner];

    pub fn as_str(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Editor => "editor",
            Role::Maintainer => "maintainer",
            Role::Owner => "owner",
        }
    }

    pub fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// May this role's pushes change the library (possibly as proposals)?
    pub fn can_publish(self) -> bool {
        self >= Role::Editor
    }

    /// May this role resolve a kept conflict?
    pub fn can_resolve(self) -> bool {
        self >= Role::Editor
    }

    /// May this role approve or reject proposals and change the library's settings?
    pub fn can_review(self) -> bool {
        self >= Role::Maintainer
    }

    /// May this role manage members, roles and invites?
    pub fn can_admin(self) -> bool {
        self == Role::Owner
    }

    /// Does a push by this role become a proposal in a library that requires review?
    pub fn needs_review(self, review_required: bool) -> bool {
        review_required && self == Role::Editor
    }
}

/// What a revision does to its template.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Op {
    /// The template's full content (`body`).
    Put,
    /// A tombstone: the template is deleted (no `body`).
    Delete,
}

/// An immutable revision of one template, as a daemon pushes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Revision {
    /// Made by the daemon (UUIDv7, lowercase hyphenated); also the push's idempotency key.
    pub rev_id: String,
    /// The template's id (unique in its library).
    pub template: String,
    /// `[]` for a create, `[base]` for an edit, `[head, other]` for a merge or a resolution.
    #[serde(default)]
    pub parents: Vec<String>,
    pub op: Op,
    /// The body format ([`FORMAT`] when this build wrote it).
    pub format: u32,
    /// For `put`: the template as canonical JSON ([`canonical`]); absent for `delete`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<serde_json::Value>,
    /// The author's clock when the edit was made: shown, never used for ordering.
    pub client_at_ms: i64,
}

/// Why a revision is refused before it is considered (the push's `invalid` status).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    /// The field at fault, e.g. `rev_id`, `parents`, `body.parts[0].text`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for Invalid {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        message: message.into(),
    }
}

/// Is `s` a UUID in lowercase hyphenated form (8-4-4-4-12 hex digits)?
pub fn is_uuid(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 36
        && b.iter().enumerate().all(|(i, c)| match i {
            8 | 13 | 18 | 23 => *c == b'-',
            _ => c.is_ascii_digit() || (b'a'..=b'f').contains(c),
        })
}

impl Revision {
    /// The revision's template when it is a `put` of a format this build understands.
    pub fn template_body(&self) -> Result<Option<Template>, Invalid> {
        if self.op == Op::Delete || self.format > FORMAT {
            return Ok(None);
        }
        let body = self
            .body
            .as_ref()
            .ok_or_else(|| invalid("body", "a put needs a body"))?;
        let t = Template::deserialize(body).map_err(|e| invalid("body", e.to_string()))?;
        Ok(Some(t))
    }

    /// Checks everything that does not need the library's state: the ids' form, the parents,
    /// the op and its body (a known format's body must be a valid template with this id).
    /// Returns the parsed template of a known-format `put`.
    pub fn check(&self) -> Result<Option<Template>, Invalid> {
        if !is_uuid(&self.rev_id) {
            return Err(invalid(
                "rev_id",
                format!(
                    "{:?} is not a lowercase hyphenated UUID",
                    crate::model::truncate(&self.rev_id, 60)
                ),
            ));
        }
        if self.format == 0 {
            return Err(invalid("format", "format 0 does not exist"));
        }
        if self.parents.len() > 2 {
            return Err(invalid("parents", "at most two parents"));
        }
        for (i, p) in self.parents.iter().enumerate() {
            if !is_uuid(p) {
                return Err(invalid(
                    format!("parents[{i}]"),
                    "not a lowercase hyphenated UUID",
                ));
            }
            if p == &self.rev_id {
                return Err(invalid(
                    format!("parents[{i}]"),
                    "a revision cannot be its own parent",
                ));
            }
        }
        if self.parents.len() == 2 && self.parents[0] == self.parents[1] {
            return Err(invalid("parents", "the two parents are the same"));
        }
        if self.template.trim().is_empty() {
            return Err(invalid("template", "template id is empty"));
        }
        if self.template.chars().count() > crate::model::limits::LABEL {
            return Err(invalid("template", "template id is too long"));
        }
        match self.op {
            Op::Delete => {
                if self.body.is_some() {
                    return Err(invalid("body", "a delete has no body"));
                }
                Ok(None)
            }
            Op::Put => {
                if self.body.is_none() {
                    return Err(invalid("body", "a put needs a body"));
                }
                let Some(t) = self.template_body()? else {
                    return Ok(None);
                };
                if t.id != self.template {
                    return Err(invalid(
                        "body.id",
                        format!(
                            "the body's id {:?} is not the revision's template {:?}",
                            t.id, self.template
                        ),
                    ));
                }
                if let Err((field, message)) = t.check() {
                    return Err(invalid(format!("body.{field}"), message));
                }
                Ok(Some(t))
            }
        }
    }
}

/// The canonical body of a template: its JSON without the local `revision` counter, keys in
/// the model's order. Two edits that made the same content have the same canonical body.
pub fn canonical(t: &Template) -> serde_json::Value {
    let mut v = serde_json::to_value(t).unwrap_or(serde_json::Value::Null);
    if let Some(o) = v.as_object_mut() {
        o.remove("revision");
    }
    v
}

/// One template's state at the hub, the input of the library digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeadEntry<'a> {
    pub template: &'a str,
    pub head_rev: &'a str,
    pub deleted: bool,
    /// The template has at least one open conflict.
    pub conflicted: bool,
}

/// The library digest: SHA-256 (lowercase hex) over every template's `(id, head_rev, deleted,
/// conflicted)`, sorted by id, one line each (`id \t head_rev \t 0|1 \t 0|1 \n`). Two replicas
/// with the same digest show the same heads and the same conflicted templates.
#[cfg(feature = "server")]
pub fn digest<'a>(entries: impl IntoIterator<Item = HeadEntry<'a>>) -> String {
    use sha2::{Digest, Sha256};
    let mut all: Vec<HeadEntry<'a>> = entries.into_iter().collect();
    all.sort_by(|a, b| a.template.cmp(b.template));
    let mut h = Sha256::new();
    for e in &all {
        h.update(e.template.as_bytes());
        h.update(b"\t");
        h.update(e.head_rev.as_bytes());
        h.update(if e.deleted { b"\t1" } else { b"\t0" });
        h.update(if e.conflicted { b"\t1\n" } else { b"\t0\n" });
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;
