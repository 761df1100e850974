//! The JSON bodies of the hub's HTTP API (`docs/sync.md`), shared by the hub and the daemon.
//! Every request body denies unknown fields; replies may grow new fields (readers ignore them).

use serde::{Deserialize, Serialize};

use super::{Field, Revision, Role};

/// `POST /v1/join`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JoinRequest {
    /// The invite's code (the part after `#` and before the `.` of the fingerprint).
    pub code: String,
    /// Shown to the team (e.g. "li-lei's laptop").
    pub device_name: String,
}

/// A library as a member sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibraryInfo {
    /// A UUID made by the hub.
    pub id: String,
    pub name: String,
    pub role: Role,
    /// Changes when the library's log is no longer the one the cursor walked (a hub restored
    /// from a backup): the daemon re-reads the library and pushes what the hub lost.
    pub epoch: String,
    pub head_seq: i64,
    pub review_required: bool,
}

/// `POST /v1/join` reply, and `GET /v1/me`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Me {
    /// The hub's id (a UUID made by `quiver hub init`).
    pub hub_id: String,
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    /// Only in the join reply: the device's bearer token (256 random bits, base64url). The hub
    /// keeps only its SHA-256.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub libraries: Vec<LibraryInfo>,
}

/// `POST /v1/libraries/{lib}/push`: at most [`super::MAX_PUSH`] revisions, applied in order in
/// one transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PushRequest {
    /// The library epoch the daemon knows; a different one answers `410 reset`.
    pub epoch: String,
    pub revisions: Vec<Revision>,
}

/// Where a pushed revision landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PushStatus {
    /// It is the template's new head.
    Applied,
    /// Its parent was stale and the changes were disjoint (or the same): `merge_rev` is the
    /// head now (a merge revision with parents `[old head, this]`, or the head that already
    /// had the same content).
    Merged,
    /// The same field changed two ways: kept as the `conflict`'s other side (or, edit against
    /// delete, as the head that keeps the content).
    Conflict,
    /// The library requires review and the author is an editor: waiting for a maintainer.
    Proposed,
    /// The author may not change this library (a viewer): nothing was written.
    Denied,
    /// The revision is malformed (`reason` names the field): nothing was written.
    Invalid,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushResult {
    pub rev_id: String,
    pub status: PushStatus,
    /// The revision was already on the hub (a retried push): this is its recorded result.
    #[serde(default)]
    pub duplicate: bool,
    /// The change's sequence number (absent for `denied` and `invalid`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seq: Option<i64>,
    /// The template's head after this revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub head_rev: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub merge_rev: Option<String>,
    /// The conflict's id (status `conflict`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conflict: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub fields: Vec<Field>,
    /// Why it was denied or invalid, for the user.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PushReply {
    pub head_seq: i64,
    pub results: Vec<PushResult>,
}

/// A revision's state at the hub.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RevState {
    /// Its template's head.
    Head,
    /// An earlier head, or a pushed revision folded into a merge.
    Superseded,
    /// The other side of an open conflict.
    Conflict,
    /// A proposal waiting for review.
    Proposed,
    /// A proposal a maintainer rejected (kept).
    Rejected,
    /// The other side of a conflict that was resolved (kept).
    Resolved,
}

/// Who made a revision.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
}

/// A revision as the hub keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionRecord {
    pub revision: Revision,
    pub state: RevState,
    pub author: Author,
    pub received_at_ms: i64,
}

/// An open conflict on a template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictInfo {
    pub id: String,
    pub template: String,
    /// The revision that is head (it reached the hub first, or it keeps the content).
    pub head_rev: String,
    /// The kept other side.
    pub other_rev: String,
    /// The common base both edited, when known.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_rev: Option<String>,
    pub fields: Vec<Field>,
    pub opened_seq: i64,
}

/// A template's state after a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemplateState {
    pub template: String,
    pub head_rev: String,
    pub deleted: bool,
    /// Its open conflicts (empty when none).
    pub conflicts: Vec<ConflictInfo>,
}

/// One entry of a library's log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Change {
    /// A revision was accepted, or an existing revision's state changed (a proposal approved or
    /// rejected, a conflict resolved). `template` is the template's state after the change.
    /// Proposals are shown only to the maintainers and owners, and to their author.
    Revision {
        seq: i64,
        revision: RevisionRecord,
        template: TemplateState,
    },
    /// A member's role changed (`role: null`: removed). A daemon that reads its own user removed
    /// purges the library.
    Member {
        seq: i64,
        user_id: String,
        user_name: String,
        role: Option<Role>,
    },
    /// The library's name or settings changed.
    Library { seq: i64, library: LibraryInfo },
}

impl Change {
    pub fn seq(&self) -> i64 {
        match self {
            Change::Revision { seq, .. }
            | Change::Member { seq, .. }
            | Change::Library { seq, .. } => *seq,
        }
    }
}

/// `GET /v1/libraries/{lib}/changes?epoch=E&after=S&limit=N`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangesPage {
    pub epoch: String,
    pub head_seq: i64,
    /// More changes after the last one of this page.
    pub more: bool,
    pub changes: Vec<Change>,
}

/// `GET /v1/libraries/{lib}/digest`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DigestReply {
    pub head_seq: i64,
    pub digest: String,
    pub templates: u64,
    pub conflicts: u64,
}

/// Every error reply: `{"error": {"code", "message"}}` with the HTTP status of its code.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ErrorDetail {
    /// `bad_request` (400), `unauthorized` (401), `forbidden` (403), `not_found` (404),
    /// `conflict` (409), `reset` (410: epoch changed or the cursor is ahead of the hub),
    /// `too_large` (413), `internal` (500), `unavailable` (503).
    pub code: String,
    pub message: String,
    /// For `reset`: the library's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// The data of an SSE `poke` event on `GET /v1/events`: the library's log grew.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Poke {
    pub library: String,
    pub head_seq: i64,
}

/// `GET /v1/health` (no token): for load balancers and for whoever starts a hub.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Health {
    pub ok: bool,
    pub hub_id: String,
}

/// `GET /v1/libraries/{lib}/templates/{id}/revisions` and `GET /v1/libraries/{lib}/proposals`:
/// oldest first. Proposals and rejected proposals are listed only for maintainers and owners,
/// and for their author.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RevisionsReply {
    pub revisions: Vec<RevisionRecord>,
}

/// `GET /v1/libraries/{lib}/conflicts`: the library's open conflicts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConflictsReply {
    pub head_seq: i64,
    pub conflicts: Vec<ConflictInfo>,
}

/// `POST /v1/libraries/{lib}/proposals/{rev}/approve` and `.../reject`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewReply {
    pub head_seq: i64,
    /// The proposal's state now (`rejected`, or where approving it landed).
    pub state: RevState,
    /// Approve: where the proposal landed, as if it had been pushed now (`applied`, `merged`
    /// or `conflict`). Absent for reject.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<PushResult>,
}

/// `POST /v1/admin/invites`: a single-use invite bound to a role in some libraries.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InviteRequest {
    pub role: Role,
    /// Library ids or names (at least one, unless `user` names an existing user: then the
    /// invite adds a device to that user and changes no role).
    #[serde(default)]
    pub libraries: Vec<String>,
    /// Join as this user (created when new); absent: a new user named after the device.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// Valid this long (default 72 h, at most 30 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expires_secs: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct InviteReply {
    /// `quiver+https://HOST:PORT/join#CODE.FINGERPRINT` (see [`Invite`]).
    pub invite: String,
    pub expires_at_ms: i64,
}

/// `POST /v1/admin/libraries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateLibrary {
    pub name: String,
    #[serde(default)]
    pub review_required: bool,
}

/// `PATCH /v1/libraries/{lib}`: the fields to change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LibrarySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub review_required: Option<bool>,
}

/// A library as an administrator sees it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibrarySummary {
    pub id: String,
    pub name: String,
    pub epoch: String,
    pub head_seq: i64,
    pub review_required: bool,
    pub members: u64,
    pub templates: u64,
    pub open_conflicts: u64,
}

/// `GET /v1/admin/libraries`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LibrariesReply {
    pub libraries: Vec<LibrarySummary>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MemberInfo {
    pub user_id: String,
    pub user_name: String,
    pub role: Role,
}

/// `GET /v1/libraries/{lib}/members`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MembersReply {
    pub members: Vec<MemberInfo>,
}

/// `PUT /v1/libraries/{lib}/members/{user}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SetRole {
    pub role: Role,
}

/// Reply of the member and settings changes: the change's sequence number.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChangeReply {
    pub seq: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub id: String,
    pub user_id: String,
    pub user_name: String,
    pub name: String,
    pub created_at_ms: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_seen_at_ms: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub revoked_at_ms: Option<i64>,
}

/// `GET /v1/admin/devices`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DevicesReply {
    pub devices: Vec<DeviceInfo>,
}

/// An invite as a person passes it on: `quiver+https://HOST:PORT/join#CODE.FINGERPRINT`
/// (the fingerprint is the SHA-256 of the hub certificate's DER, lowercase hex, which the
/// daemon pins), `quiver+https://HOST/join#CODE` (a certificate from a CA the system trusts), or
/// `quiver+http://127.0.0.1:PORT/join#CODE` (plain HTTP, loopback only).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invite {
    /// Where the hub's API is: `https://HOST:PORT` or `http://127.0.0.1:PORT`.
    pub base_url: String,
    pub code: String,
    pub fingerprint: Option<String>,
}

impl Invite {
    pub fn parse(s: &str) -> Result<Invite, String> {
        let s = s.trim();
        let rest = s
            .strip_prefix("quiver+")
            .ok_or("an invite starts with quiver+https:// or quiver+http://")?;
        let (url, fragment) = rest
            .split_once('#')
            .ok_or("the invite has no code (the part after #)")?;
        let base = url
            .strip_suffix("/join")
            .ok_or("the invite's address does not end in /join")?;
        let host = if let Some(h) = base.strip_prefix("https://") {
            h
        } else if let Some(h) = base.strip_prefix("http://") {
            h
        } else {
            return Err("an invite starts with quiver+https:// or quiver+http://".into());
        };
        if host.is_empty() || host.contains('/') {
            return Err(format!("{host:?} is not a host[:port]"));
        }
        let (code, fingerprint) = match fragment.split_once('.') {
            Some((c, f)) => {
                if f.len() != 64
                    || !f
                        .bytes()
                        .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
                {
                    return Err("the certificate fingerprint is not 64 lowercase hex digits".into());
                }
                (c, Some(f.to_string()))
            }
            None => (fragment, None),
        };
        if code.is_empty()
            || !code
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(
                "the invite code is empty or has characters other than A-Z a-z 0-9 - _".into(),
            );
        }
        if base.starts_with("http://") && fingerprint.is_some() {
            return Err("a plain-HTTP invite carries no certificate fingerprint".into());
        }
        Ok(Invite {
            base_url: base.to_string(),
            code: code.to_string(),
            fingerprint,
        })
    }
}

impl std::fmt::Display for Invite {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "quiver+{}/join#{}", self.base_url, self.code)?;
        if let Some(fp) = &self.fingerprint {
            write!(f, ".{fp}")?;
        }
        Ok(())
    }
}
