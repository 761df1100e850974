//! Every operation of the hub, written once over [`Tx`] and run by either store: joining,
//! authentication, push (the conflict rules of `docs/sync.md` through
//! `quiver_shared::sync::integrate`), the change log, digests, review and administration.
//!
//! Invariants: a push transaction first takes its library's counter row (`UPDATE libraries SET
//! head_seq = head_seq ... RETURNING`), so pushes into one library are serial and commit in
//! `seq` order; the role is checked after that, inside the same transaction; a denied or invalid
//! revision writes nothing; a revision is stored once (its `rev_id` is the key) with the result
//! it got, which a re-push returns with `duplicate: true`.

use std::collections::HashSet;

use quiver_shared::model::Template;
use quiver_shared::sync::wire::*;
use quiver_shared::sync::{
    canonical, integrate, Content, Integration, Op, Revision, Role, FORMAT, MAX_PAGE, MAX_PUSH,
};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::error::{HubError, Result};
use crate::ids;
use crate::pokes::Note;
use crate::store::{one, Row, Tx};

/// A device's user, as its token proves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    pub user_id: String,
    pub user_name: String,
    pub device_id: String,
    /// An organisation administrator (the owner `quiver hub init` made, or one it named).
    pub admin: bool,
}

/// Who asks: a device over HTTP, or the hub's own command line (all powers).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Who {
    Local,
    Device(Actor),
}

impl Who {
    fn is_admin(&self) -> bool {
        match self {
            Who::Local => true,
            Who::Device(a) => a.admin,
        }
    }
    fn user(&self) -> Option<&str> {
        match self {
            Who::Local => None,
            Who::Device(a) => Some(&a.user_id),
        }
    }
}

/// A library's row.
#[derive(Debug, Clone)]
pub struct Lib {
    pub id: String,
    pub name: String,
    pub epoch: String,
    pub head_seq: i64,
    pub review_required: bool,
    pub org_id: String,
}

const LIB_COLS: &str = "id, name, epoch, head_seq, review_required, org_id";

fn lib_row(r: &Row) -> Result<Lib> {
    Ok(Lib {
        id: r.s(0)?,
        name: r.s(1)?,
        epoch: r.s(2)?,
        head_seq: r.i(3)?,
        review_required: r.b(4)?,
        org_id: r.s(5)?,
    })
}

/// The library by id, without a lock.
async fn library<T: Tx>(tx: &mut T, id: &str) -> Result<Option<Lib>> {
    let sql = format!("SELECT {LIB_COLS} FROM libraries WHERE id = $1");
    one(tx, &sql, p![id])
        .await?
        .map(|r| lib_row(&r))
        .transpose()
}

/// The library by id or name, without a lock.
pub async fn find_library<T: Tx>(tx: &mut T, id_or_name: &str) -> Result<Lib> {
    let sql = format!("SELECT {LIB_COLS} FROM libraries WHERE id = $1 OR name = $1");
    one(tx, &sql, p![id_or_name])
        .await?
        .map(|r| lib_row(&r))
        .transpose()?
        .ok_or_else(|| HubError::not_found(format!("no library {id_or_name:?}")))
}

/// Takes the library's counter row: the push lock (held until commit).
async fn lock_library<T: Tx>(tx: &mut T, id: &str) -> Result<Lib> {
    let sql =
        format!("UPDATE libraries SET head_seq = head_seq WHERE id = $1 RETURNING {LIB_COLS}");
    one(tx, &sql, p![id])
        .await?
        .map(|r| lib_row(&r))
        .transpose()?
        .ok_or_else(|| HubError::not_found(format!("no library {id:?}")))
}

async fn set_head_seq<T: Tx>(tx: &mut T, lib: &str, seq: i64) -> Result<()> {
    tx.exec(
        "UPDATE libraries SET head_seq = $2 WHERE id = $1",
        p![lib, seq],
    )
    .await?;
    Ok(())
}

async fn role_of<T: Tx>(tx: &mut T, lib: &str, user: &str) -> Result<Option<Role>> {
    Ok(
        match one(
            tx,
            "SELECT role FROM members WHERE library_id = $1 AND user_id = $2",
            p![lib, user],
        )
        .await?
        {
            Some(r) => Role::parse(&r.s(0)?),
            None => None,
        },
    )
}

/// The caller's role in the library, or `not_found` (a library they never were in is not
/// shown to exist). The command line acts as an owner.
async fn member_role<T: Tx>(tx: &mut T, who: &Who, lib: &Lib) -> Result<Role> {
    match who {
        Who::Local => Ok(Role::Owner),
        Who::Device(a) => match role_of(tx, &lib.id, &a.user_id).await? {
            Some(r) => Ok(r),
            None if a.admin => Ok(Role::Owner),
            None => Err(HubError::not_found(format!(
                "no library {:?} for you",
                lib.id
            ))),
        },
    }
}

#[allow(clippy::too_many_arguments)]
async fn insert_change<T: Tx>(
    tx: &mut T,
    lib: &str,
    seq: i64,
    kind: &str,
    template: Option<&str>,
    rev: Option<&str>,
    private_to: Option<&str>,
    subject_user: Option<&str>,
    data: &serde_json::Value,
    at: i64,
) -> Result<()> {
    tx.exec(
        "INSERT INTO changes (library_id, seq, kind, template_id, rev_id, private_to, subject_user, data, at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        p![lib, seq, kind, template, rev, private_to, subject_user, data.to_string(), at],
    )
    .await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// init, join, authentication, me

/// What `quiver hub init` made.
#[derive(Debug, Clone)]
pub struct Initialized {
    pub library_id: String,
    pub owner_id: String,
    pub invite_code: String,
    pub invite_expires_at_ms: i64,
}

/// Creates the organisation, its owner (an administrator), one team library and an owner
/// invite. Refused when the database already holds a hub.
pub async fn init<T: Tx>(
    tx: &mut T,
    hub_id: &str,
    org: &str,
    owner: &str,
    library_name: &str,
    now: i64,
) -> Result<Initialized> {
    if let Some(r) = one(tx, "SELECT value FROM meta WHERE key = 'hub_id'", p![]).await? {
        return Err(HubError::conflict(format!(
            "this database already holds hub {}",
            r.s(0)?
        )));
    }
    check_name("owner", owner)?;
    check_name("library", library_name)?;
    let org_id = ids::uuid4();
    tx.exec(
        "INSERT INTO meta (key, value) VALUES ('hub_id', $1)",
        p![hub_id],
    )
    .await?;
    tx.exec(
        "INSERT INTO orgs (id, name, created_at) VALUES ($1, $2, $3)",
        p![&org_id, org, now],
    )
    .await?;
    let owner_id = ids::uuid4();
    tx.exec(
        "INSERT INTO users (id, org_id, name, admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        p![&owner_id, &org_id, owner, true, now],
    )
    .await?;
    let lib = create_library(
        tx,
        &Who::Local,
        &CreateLibrary {
            name: library_name.into(),
            review_required: false,
        },
        now,
    )
    .await?;
    let (code, expires) = create_invite(
        tx,
        &Who::Local,
        &InviteRequest {
            role: Role::Owner,
            libraries: vec![lib.id.clone()],
            user: Some(owner.into()),
            expires_secs: None,
        },
        now,
    )
    .await?;
    Ok(Initialized {
        library_id: lib.id,
        owner_id,
        invite_code: code,
        invite_expires_at_ms: expires,
    })
}

fn check_name(what: &str, s: &str) -> Result<()> {
    if s.trim().is_empty() || s.chars().count() > 100 || s.chars().any(char::is_control) {
        return Err(HubError::bad_request(format!(
            "{what} name {s:?}: 1 to 100 characters, no control characters"
        )));
    }
    Ok(())
}

async fn org_id<T: Tx>(tx: &mut T) -> Result<String> {
    one(tx, "SELECT id FROM orgs ORDER BY created_at LIMIT 1", p![])
        .await?
        .ok_or_else(|| HubError::internal("the hub has no organisation (run quiver hub init)"))?
        .s(0)
}

/// The device whose token has this SHA-256, unless it is revoked or its user disabled.
pub async fn authenticate<T: Tx>(tx: &mut T, token_sha256: &str) -> Result<Option<Actor>> {
    let r = one(
        tx,
        "SELECT d.id, u.id, u.name, u.admin FROM devices d JOIN users u ON u.id = d.user_id \
         WHERE d.token_sha256 = $1 AND d.revoked_at IS NULL AND u.disabled_at IS NULL",
        p![token_sha256],
    )
    .await?;
    r.map(|r| {
        Ok(Actor {
            device_id: r.s(0)?,
            user_id: r.s(1)?,
            user_name: r.s(2)?,
            admin: r.b(3)?,
        })
    })
    .transpose()
}

async fn my_libraries<T: Tx>(tx: &mut T, user: &str) -> Result<Vec<LibraryInfo>> {
    let rows = tx
        .query(
            "SELECT l.id, l.name, m.role, l.epoch, l.head_seq, l.review_required \
             FROM members m JOIN libraries l ON l.id = m.library_id \
             WHERE m.user_id = $1 ORDER BY l.name",
            p![user],
        )
        .await?;
    rows.iter()
        .map(|r| {
            Ok(LibraryInfo {
                id: r.s(0)?,
                name: r.s(1)?,
                role: Role::parse(&r.s(2)?)
                    .ok_or_else(|| HubError::internal("unknown role in members"))?,
                epoch: r.s(3)?,
                head_seq: r.i(4)?,
                review_required: r.b(5)?,
            })
        })
        .collect()
}

/// `GET /v1/me` (also notes when the device was last seen).
pub async fn me<T: Tx>(tx: &mut T, hub_id: &str, a: &Actor, now: i64) -> Result<Me> {
    tx.exec(
        "UPDATE devices SET last_seen_at = $2 WHERE id = $1",
        p![&a.device_id, now],
    )
    .await?;
    Ok(Me {
        hub_id: hub_id.into(),
        user_id: a.user_id.clone(),
        user_name: a.user_name.clone(),
        device_id: a.device_id.clone(),
        token: None,
        libraries: my_libraries(tx, &a.user_id).await?,
    })
}

/// An invite's grants, as stored.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Grant {
    library: String,
    role: Role,
}

/// `POST /v1/join`: spends the invite (once), makes or finds the user, registers the device
/// with the token's SHA-256 and grants the invite's roles.
pub async fn join<T: Tx>(
    tx: &mut T,
    hub_id: &str,
    req: &JoinRequest,
    token: &str,
    now: i64,
) -> Result<Me> {
    check_name("device", &req.device_name)?;
    let code_sha = ids::sha256_hex(req.code.as_bytes());
    let Some(inv) = one(
        tx,
        "SELECT org_id, user_name, roles, expires_at, used_at FROM invites WHERE code_sha256 = $1",
        p![&code_sha],
    )
    .await?
    else {
        return Err(HubError::unauthorized(
            "this invite is not valid for this hub",
        ));
    };
    if inv.oi(4)?.is_some() {
        return Err(HubError::unauthorized("this invite was used already"));
    }
    if inv.i(3)? <= now {
        return Err(HubError::unauthorized(
            "this invite expired: ask for a new one",
        ));
    }
    let device_id = ids::uuid4();
    let n = tx
        .exec(
            "UPDATE invites SET used_at = $2, used_by = $3 WHERE code_sha256 = $1 AND used_at IS NULL",
            p![&code_sha, now, &device_id],
        )
        .await?;
    if n != 1 {
        return Err(HubError::unauthorized("this invite was used already"));
    }
    let org = inv.s(0)?;
    let (user_id, user_name, admin) = match inv.os(1)? {
        Some(name) => match one(
            tx,
            "SELECT id, name, admin FROM users WHERE name = $1",
            p![&name],
        )
        .await?
        {
            Some(u) => (u.s(0)?, u.s(1)?, u.b(2)?),
            None => (new_user(tx, &org, &name, now).await?, name, false),
        },
        None => {
            let name = free_user_name(tx, &req.device_name).await?;
            (new_user(tx, &org, &name, now).await?, name, false)
        }
    };
    tx.exec(
        "INSERT INTO devices (id, user_id, token_sha256, name, created_at, last_seen_at) \
         VALUES ($1, $2, $3, $4, $5, $5)",
        p![
            &device_id,
            &user_id,
            ids::sha256_hex(token.as_bytes()),
            &req.device_name,
            now
        ],
    )
    .await?;
    let grants: Vec<Grant> = serde_json::from_str(&inv.s(2)?)?;
    for g in grants {
        if library(tx, &g.library).await?.is_some() {
            put_member(tx, &g.library, &user_id, &user_name, Some(g.role), now).await?;
        }
    }
    let actor = Actor {
        user_id,
        user_name,
        device_id,
        admin,
    };
    let mut m = me(tx, hub_id, &actor, now).await?;
    m.token = Some(token.to_string());
    Ok(m)
}

async fn new_user<T: Tx>(tx: &mut T, org: &str, name: &str, now: i64) -> Result<String> {
    check_name("user", name)?;
    let id = ids::uuid4();
    tx.exec(
        "INSERT INTO users (id, org_id, name, admin, created_at) VALUES ($1, $2, $3, $4, $5)",
        p![&id, org, name, false, now],
    )
    .await?;
    Ok(id)
}

async fn free_user_name<T: Tx>(tx: &mut T, base: &str) -> Result<String> {
    let base: String = base.trim().chars().take(90).collect();
    for i in 1.. {
        let name = if i == 1 {
            base.clone()
        } else {
            format!("{base}-{i}")
        };
        if one(tx, "SELECT 1 FROM users WHERE name = $1", p![&name])
            .await?
            .is_none()
        {
            return Ok(name);
        }
    }
    unreachable!()
}

// ---------------------------------------------------------------------------------------------
// push

/// A revision row as read back.
#[derive(Debug, Clone)]
struct Stored {
    library: String,
    template: String,
    parents: Vec<String>,
    op: Op,
    format: u32,
    body: Option<serde_json::Value>,
    client_at_ms: i64,
    author_user: String,
    author_device: String,
    received_at: i64,
    state: String,
    result: Option<String>,
}

const REV_COLS: &str = "library_id, template_id, parents, op, format, body, client_at_ms, \
                        author_user, author_device, received_at, state, result";

fn stored_row(r: &Row, at: usize) -> Result<Stored> {
    Ok(Stored {
        library: r.s(at)?,
        template: r.s(at + 1)?,
        parents: serde_json::from_str(&r.s(at + 2)?)?,
        op: if r.s(at + 3)? == "delete" {
            Op::Delete
        } else {
            Op::Put
        },
        format: r.i(at + 4)? as u32,
        body: r
            .os(at + 5)?
            .map(|b| serde_json::from_str(&b))
            .transpose()?,
        client_at_ms: r.i(at + 6)?,
        author_user: r.s(at + 7)?,
        author_device: r.s(at + 8)?,
        received_at: r.i(at + 9)?,
        state: r.s(at + 10)?,
        result: r.os(at + 11)?,
    })
}

async fn stored<T: Tx>(tx: &mut T, rev_id: &str) -> Result<Option<Stored>> {
    let sql = format!("SELECT {REV_COLS} FROM revisions WHERE rev_id = $1");
    one(tx, &sql, p![rev_id])
        .await?
        .map(|r| stored_row(&r, 0))
        .transpose()
}

/// What a revision holds, for the merge.
enum Held {
    Put(Template),
    Delete,
    /// A body of a newer format: kept verbatim, never merged.
    Opaque,
}

impl Held {
    fn of(op: Op, format: u32, body: Option<&serde_json::Value>) -> Held {
        match op {
            Op::Delete => Held::Delete,
            Op::Put if format > FORMAT => Held::Opaque,
            Op::Put => match body.map(|b| serde_json::from_value::<Template>(b.clone())) {
                Some(Ok(t)) => Held::Put(t),
                _ => Held::Opaque,
            },
        }
    }
    fn content(&self) -> Option<Content<'_>> {
        match self {
            Held::Put(t) => Some(Content::Put(t)),
            Held::Delete => Some(Content::Delete),
            Held::Opaque => None,
        }
    }
}

fn op_str(op: Op) -> &'static str {
    match op {
        Op::Put => "put",
        Op::Delete => "delete",
    }
}

fn state_str(s: RevState) -> &'static str {
    match s {
        RevState::Head => "head",
        RevState::Superseded => "superseded",
        RevState::Conflict => "conflict",
        RevState::Proposed => "proposed",
        RevState::Rejected => "rejected",
        RevState::Resolved => "resolved",
    }
}

fn parse_state(s: &str) -> Result<RevState> {
    Ok(match s {
        "head" => RevState::Head,
        "superseded" => RevState::Superseded,
        "conflict" => RevState::Conflict,
        "proposed" => RevState::Proposed,
        "rejected" => RevState::Rejected,
        "resolved" => RevState::Resolved,
        _ => return Err(HubError::internal(format!("unknown revision state {s:?}"))),
    })
}

/// A revision going into the library: pushed now, or a proposal being approved.
struct Incoming<'a> {
    rev: &'a Revision,
    author_user: &'a str,
    author_device: &'a str,
    /// Already stored (a proposal): its state is updated, not inserted.
    existing: bool,
    received_at: i64,
}

/// The changes an operation writes, inserted after the heads moved (each carries the template's
/// state after the operation).
struct Pending {
    seq: i64,
    rev_id: String,
    state: RevState,
    private_to: Option<String>,
}

#[allow(clippy::too_many_arguments)]
async fn put_revision<T: Tx>(
    tx: &mut T,
    lib: &str,
    inc: &Incoming<'_>,
    seq: i64,
    state: RevState,
    result: Option<&PushResult>,
) -> Result<()> {
    if inc.existing {
        tx.exec(
            "UPDATE revisions SET state = $2 WHERE rev_id = $1",
            p![&inc.rev.rev_id, state_str(state)],
        )
        .await?;
        return Ok(());
    }
    let r = inc.rev;
    let result = result.map(serde_json::to_string).transpose()?;
    tx.exec(
        "INSERT INTO revisions (rev_id, library_id, template_id, parents, op, format, body, \
         client_at_ms, author_user, author_device, received_at, seq, state, result) \
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        p![
            &r.rev_id,
            lib,
            &r.template,
            serde_json::to_string(&r.parents)?,
            op_str(r.op),
            i64::from(r.format),
            r.body.as_ref().map(|b| b.to_string()),
            r.client_at_ms,
            inc.author_user,
            inc.author_device,
            inc.received_at,
            seq,
            state_str(state),
            result
        ],
    )
    .await?;
    Ok(())
}

async fn set_state<T: Tx>(tx: &mut T, rev: &str, state: RevState) -> Result<()> {
    tx.exec(
        "UPDATE revisions SET state = $2 WHERE rev_id = $1",
        p![rev, state_str(state)],
    )
    .await?;
    Ok(())
}

async fn set_head<T: Tx>(
    tx: &mut T,
    lib: &str,
    template: &str,
    head: &str,
    deleted: bool,
) -> Result<()> {
    tx.exec(
        "INSERT INTO heads (library_id, template_id, head_rev, deleted, conflicted) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (library_id, template_id) DO UPDATE SET head_rev = $3, deleted = $4",
        p![lib, template, head, deleted, false],
    )
    .await?;
    Ok(())
}

async fn refresh_conflicted<T: Tx>(tx: &mut T, lib: &str, template: &str) -> Result<()> {
    tx.exec(
        "UPDATE heads SET conflicted = EXISTS (SELECT 1 FROM conflicts c WHERE c.library_id = $1 \
         AND c.template_id = $2 AND c.resolved_seq IS NULL) WHERE library_id = $1 AND template_id = $2",
        p![lib, template],
    )
    .await?;
    Ok(())
}

fn conflict_row(r: &Row) -> Result<ConflictInfo> {
    Ok(ConflictInfo {
        id: r.s(0)?,
        template: r.s(1)?,
        head_rev: r.s(2)?,
        other_rev: r.s(3)?,
        base_rev: r.os(4)?,
        fields: serde_json::from_str(&r.s(5)?)?,
        opened_seq: r.i(6)?,
    })
}

const CONFLICT_COLS: &str = "id, template_id, head_rev, other_rev, base_rev, fields, opened_seq";

async fn template_state<T: Tx>(tx: &mut T, lib: &str, template: &str) -> Result<TemplateState> {
    let head = one(
        tx,
        "SELECT head_rev, deleted FROM heads WHERE library_id = $1 AND template_id = $2",
        p![lib, template],
    )
    .await?;
    let sql = format!(
        "SELECT {CONFLICT_COLS} FROM conflicts WHERE library_id = $1 AND template_id = $2 \
         AND resolved_seq IS NULL ORDER BY opened_seq"
    );
    let conflicts = tx
        .query(&sql, p![lib, template])
        .await?
        .iter()
        .map(conflict_row)
        .collect::<Result<Vec<_>>>()?;
    let (head_rev, deleted) = match head {
        Some(h) => (h.s(0)?, h.b(1)?),
        None => (String::new(), false),
    };
    Ok(TemplateState {
        template: template.into(),
        head_rev,
        deleted,
        conflicts,
    })
}

async fn write_pending<T: Tx>(
    tx: &mut T,
    lib: &str,
    template: &str,
    pending: Vec<Pending>,
    known: Option<TemplateState>,
    now: i64,
) -> Result<()> {
    if pending.is_empty() {
        return Ok(());
    }
    let ts = match known {
        Some(ts) => ts,
        None => template_state(tx, lib, template).await?,
    };
    for p in pending {
        let data = json!({"state": p.state, "template": ts});
        insert_change(
            tx,
            lib,
            p.seq,
            "revision",
            Some(template),
            Some(&p.rev_id),
            p.private_to.as_deref(),
            None,
            &data,
            now,
        )
        .await?;
    }
    Ok(())
}

fn result(rev_id: &str, status: PushStatus) -> PushResult {
    PushResult {
        rev_id: rev_id.into(),
        status,
        duplicate: false,
        seq: None,
        head_rev: None,
        merge_rev: None,
        conflict: None,
        fields: vec![],
        reason: None,
    }
}

/// Lands one revision in the library (the conflict rules of `docs/sync.md`). `seq` is the
/// library's last used sequence number and advances by the changes written. A new revision is
/// stored with its result (what a re-push returns). Every statement here runs under the
/// library's lock, so the common case (an edit on top of the head, no conflict around) takes
/// six statements and reads nothing it already knows.
async fn land<T: Tx>(
    tx: &mut T,
    lib: &str,
    inc: &Incoming<'_>,
    resolver: &str,
    seq: &mut i64,
    now: i64,
) -> Result<PushResult> {
    let rev = inc.rev;
    let tpl = &rev.template;
    let mut pending = vec![];
    let mut res = result(&rev.rev_id, PushStatus::Applied);
    let head = one(
        tx,
        "SELECT head_rev, deleted, conflicted FROM heads WHERE library_id = $1 AND template_id = $2",
        p![lib, tpl],
    )
    .await?;
    let deleted = rev.op == Op::Delete;
    *seq += 1;
    let my_seq = *seq;
    res.seq = Some(my_seq);
    // Whether the template has (or may have) open conflicts after this revision.
    let mut conflicts_changed = false;
    let was_conflicted = match &head {
        Some(h) => h.b(2)?,
        None => false,
    };
    let new_head: String;
    let new_deleted: bool;
    let fast_forward = match &head {
        None => true,
        Some(h) => rev.parents.first() == Some(&h.s(0)?),
    };
    match head {
        Some(h) if !fast_forward => {
            let head_rev = h.s(0)?;
            let head_deleted = h.b(1)?;
            let head_st = stored(tx, &head_rev)
                .await?
                .ok_or_else(|| HubError::internal(format!("head {head_rev} has no revision")))?;
            let head_held = Held::of(head_st.op, head_st.format, head_st.body.as_ref());
            let base_held = match rev.parents.first() {
                Some(b) => stored(tx, b)
                    .await?
                    .filter(|s| s.library == lib)
                    .map(|s| Held::of(s.op, s.format, s.body.as_ref())),
                None => None,
            };
            let pushed_held = Held::of(rev.op, rev.format, rev.body.as_ref());
            let outcome = match (head_held.content(), pushed_held.content()) {
                (Some(hc), Some(pc)) => {
                    integrate(base_held.as_ref().and_then(Held::content), hc, pc)
                }
                // A newer format on either side: never merged, both kept.
                _ => Integration::Conflict {
                    fields: vec![],
                    pushed_wins: false,
                },
            };
            match outcome {
                Integration::Same | Integration::BothDeleted => {
                    res.status = PushStatus::Merged;
                    res.merge_rev = Some(head_rev.clone());
                    res.head_rev = Some(head_rev.clone());
                    put_revision(tx, lib, inc, my_seq, RevState::Superseded, Some(&res)).await?;
                    pending.push(Pending {
                        seq: my_seq,
                        rev_id: rev.rev_id.clone(),
                        state: RevState::Superseded,
                        private_to: None,
                    });
                    (new_head, new_deleted) = (head_rev, head_deleted);
                }
                Integration::Merged(t) => {
                    *seq += 1;
                    let merge = Revision {
                        rev_id: ids::uuid7(),
                        template: tpl.clone(),
                        parents: vec![head_rev.clone(), rev.rev_id.clone()],
                        op: Op::Put,
                        format: FORMAT,
                        body: Some(canonical(&t)),
                        client_at_ms: now,
                    };
                    res.status = PushStatus::Merged;
                    res.merge_rev = Some(merge.rev_id.clone());
                    res.head_rev = Some(merge.rev_id.clone());
                    put_revision(tx, lib, inc, my_seq, RevState::Superseded, Some(&res)).await?;
                    let m = Incoming {
                        rev: &merge,
                        author_user: inc.author_user,
                        author_device: "hub",
                        existing: false,
                        received_at: now,
                    };
                    put_revision(tx, lib, &m, *seq, RevState::Head, None).await?;
                    set_state(tx, &head_rev, RevState::Superseded).await?;
                    set_head(tx, lib, tpl, &merge.rev_id, false).await?;
                    pending.push(Pending {
                        seq: my_seq,
                        rev_id: rev.rev_id.clone(),
                        state: RevState::Superseded,
                        private_to: None,
                    });
                    pending.push(Pending {
                        seq: *seq,
                        rev_id: merge.rev_id.clone(),
                        state: RevState::Head,
                        private_to: None,
                    });
                    (new_head, new_deleted) = (merge.rev_id, false);
                }
                Integration::Conflict {
                    fields,
                    pushed_wins,
                } => {
                    let id = ids::uuid4();
                    let (winner, other) = if pushed_wins {
                        (rev.rev_id.clone(), head_rev.clone())
                    } else {
                        (head_rev.clone(), rev.rev_id.clone())
                    };
                    let state = if pushed_wins {
                        RevState::Head
                    } else {
                        RevState::Conflict
                    };
                    res.status = PushStatus::Conflict;
                    res.conflict = Some(id.clone());
                    res.fields = fields.clone();
                    res.head_rev = Some(winner.clone());
                    put_revision(tx, lib, inc, my_seq, state, Some(&res)).await?;
                    if pushed_wins {
                        set_state(tx, &head_rev, RevState::Conflict).await?;
                        set_head(tx, lib, tpl, &rev.rev_id, false).await?;
                    }
                    tx.exec(
                        "INSERT INTO conflicts (id, library_id, template_id, head_rev, other_rev, \
                         base_rev, fields, opened_seq) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
                        p![
                            &id,
                            lib,
                            tpl,
                            &winner,
                            &other,
                            rev.parents.first().cloned(),
                            serde_json::to_string(&fields)?,
                            my_seq
                        ],
                    )
                    .await?;
                    conflicts_changed = true;
                    pending.push(Pending {
                        seq: my_seq,
                        rev_id: rev.rev_id.clone(),
                        state,
                        private_to: None,
                    });
                    new_deleted = if pushed_wins { false } else { head_deleted };
                    new_head = winner;
                }
            }
        }
        head => {
            // On top of the head (or the first revision of the template): it becomes head.
            if let Some(h) = head {
                let head_rev = h.s(0)?;
                if let (Some(other), true) = (rev.parents.get(1), was_conflicted) {
                    // A resolution: closes the open conflict whose other side is `other`.
                    let n = tx
                        .exec(
                            "UPDATE conflicts SET resolved_seq = $4, resolved_by = $5 WHERE library_id = $1 \
                             AND template_id = $2 AND other_rev = $3 AND resolved_seq IS NULL",
                            p![lib, tpl, other, my_seq, resolver],
                        )
                        .await?;
                    if n > 0 {
                        set_state(tx, other, RevState::Resolved).await?;
                        conflicts_changed = true;
                    }
                }
                set_state(tx, &head_rev, RevState::Superseded).await?;
            }
            res.head_rev = Some(rev.rev_id.clone());
            put_revision(tx, lib, inc, my_seq, RevState::Head, Some(&res)).await?;
            set_head(tx, lib, tpl, &rev.rev_id, deleted).await?;
            pending.push(Pending {
                seq: my_seq,
                rev_id: rev.rev_id.clone(),
                state: RevState::Head,
                private_to: None,
            });
            (new_head, new_deleted) = (rev.rev_id.clone(), deleted);
        }
    }
    if conflicts_changed {
        refresh_conflicted(tx, lib, tpl).await?;
    }
    // Nothing open before and nothing opened: the template's state is known without reading.
    let known = (!was_conflicted && !conflicts_changed).then(|| TemplateState {
        template: tpl.clone(),
        head_rev: new_head,
        deleted: new_deleted,
        conflicts: vec![],
    });
    write_pending(tx, lib, tpl, pending, known, now).await?;
    Ok(res)
}

/// `POST /v1/libraries/{lib}/push`.
pub async fn push<T: Tx>(
    tx: &mut T,
    a: &Actor,
    lib_id: &str,
    req: &PushRequest,
    now: i64,
) -> Result<PushReply> {
    if req.revisions.len() > MAX_PUSH {
        return Err(HubError::new(
            "too_large",
            format!("at most {MAX_PUSH} revisions in one push"),
        ));
    }
    let lib = lock_library(tx, lib_id).await?;
    let Some(role) = role_of(tx, &lib.id, &a.user_id).await? else {
        return Err(HubError::forbidden(format!(
            "you are not a member of library {lib_id}"
        )));
    };
    if req.epoch != lib.epoch {
        return Err(HubError::reset(
            lib.epoch.clone(),
            "the library's log changed (epoch): pull it again from the start",
        ));
    }
    let mut seq = lib.head_seq;
    let mut results = Vec::with_capacity(req.revisions.len());
    for rev in &req.revisions {
        if let Some(s) = stored(tx, &rev.rev_id).await? {
            let r = match (s.library == lib.id, s.result) {
                (true, Some(text)) => {
                    let mut r: PushResult = serde_json::from_str(&text)?;
                    r.duplicate = true;
                    r
                }
                _ => {
                    let mut r = result(&rev.rev_id, PushStatus::Invalid);
                    r.reason = Some("rev_id: this id is taken by another revision".into());
                    r
                }
            };
            results.push(r);
            continue;
        }
        if let Err(e) = rev.check() {
            let mut r = result(&rev.rev_id, PushStatus::Invalid);
            r.reason = Some(e.to_string());
            results.push(r);
            continue;
        }
        if !role.can_publish() {
            let mut r = result(&rev.rev_id, PushStatus::Denied);
            r.reason = Some(format!(
                "you are a {} of {:?}: your edits stay on your machine",
                role.as_str(),
                lib.name
            ));
            results.push(r);
            continue;
        }
        let inc = Incoming {
            rev,
            author_user: &a.user_id,
            author_device: &a.device_id,
            existing: false,
            received_at: now,
        };
        let r = if role.needs_review(lib.review_required) {
            seq += 1;
            let mut r = result(&rev.rev_id, PushStatus::Proposed);
            r.seq = Some(seq);
            put_revision(tx, &lib.id, &inc, seq, RevState::Proposed, Some(&r)).await?;
            write_pending(
                tx,
                &lib.id,
                &rev.template,
                vec![Pending {
                    seq,
                    rev_id: rev.rev_id.clone(),
                    state: RevState::Proposed,
                    private_to: Some(a.user_id.clone()),
                }],
                None,
                now,
            )
            .await?;
            r
        } else {
            land(tx, &lib.id, &inc, &a.user_id, &mut seq, now).await?
        };
        results.push(r);
    }
    if seq != lib.head_seq {
        set_head_seq(tx, &lib.id, seq).await?;
        tx.notify(Note::Poke {
            library: lib.id.clone(),
            head_seq: seq,
        })
        .await?;
    }
    Ok(PushReply {
        head_seq: seq,
        results,
    })
}

// ---------------------------------------------------------------------------------------------
// pull: changes, digest, revisions, conflicts

fn record(rev_id: String, s: &Stored, state: RevState, user_name: String) -> RevisionRecord {
    RevisionRecord {
        revision: Revision {
            rev_id,
            template: s.template.clone(),
            parents: s.parents.clone(),
            op: s.op,
            format: s.format,
            body: s.body.clone(),
            client_at_ms: s.client_at_ms,
        },
        state,
        author: Author {
            user_id: s.author_user.clone(),
            user_name,
            device_id: s.author_device.clone(),
        },
        received_at_ms: s.received_at,
    }
}

fn member_change(seq: i64, data: &str) -> Result<Change> {
    #[derive(Deserialize)]
    struct M {
        user_id: String,
        user_name: String,
        role: Option<Role>,
    }
    let m: M = serde_json::from_str(data)?;
    Ok(Change::Member {
        seq,
        user_id: m.user_id,
        user_name: m.user_name,
        role: m.role,
    })
}

/// `GET /v1/libraries/{lib}/changes?epoch=&after=&limit=`: the log after `after`, as this user
/// may see it. A removed member reads one page holding its removal, then `403 forbidden`.
pub async fn changes<T: Tx>(
    tx: &mut T,
    a: &Actor,
    lib_id: &str,
    epoch: &str,
    after: i64,
    limit: i64,
) -> Result<ChangesPage> {
    let Some(lib) = library(tx, lib_id).await? else {
        return Err(HubError::not_found(format!("no library {lib_id:?}")));
    };
    let role = role_of(tx, &lib.id, &a.user_id).await?;
    let Some(role) = role else {
        let last = one(
            tx,
            "SELECT seq, data FROM changes WHERE library_id = $1 AND subject_user = $2 \
             ORDER BY seq DESC LIMIT 1",
            p![&lib.id, &a.user_id],
        )
        .await?;
        return match last {
            Some(r) => {
                let c = member_change(r.i(0)?, &r.s(1)?)?;
                if r.i(0)? > after {
                    Ok(ChangesPage {
                        epoch: lib.epoch,
                        head_seq: lib.head_seq,
                        more: false,
                        changes: vec![c],
                    })
                } else {
                    Err(HubError::forbidden(format!(
                        "you are no longer a member of library {:?}",
                        lib.name
                    )))
                }
            }
            None => Err(HubError::not_found(format!(
                "no library {lib_id:?} for you"
            ))),
        };
    };
    if epoch != lib.epoch || after > lib.head_seq || after < 0 {
        return Err(HubError::reset(
            lib.epoch.clone(),
            "the library's log is not the one this cursor walked: pull it again from the start",
        ));
    }
    let limit = limit.clamp(1, MAX_PAGE as i64);
    let sql = format!(
        "SELECT c.seq, c.kind, c.rev_id, c.data, r.rev_id, u.name, {} \
         FROM changes c LEFT JOIN revisions r ON r.rev_id = c.rev_id \
         LEFT JOIN users u ON u.id = r.author_user \
         WHERE c.library_id = $1 AND c.seq > $2 AND c.seq <= $3 \
         AND (c.private_to IS NULL OR c.private_to = $4 OR $5) ORDER BY c.seq LIMIT $6",
        REV_COLS
            .split(", ")
            .map(|c| format!("r.{}", c.trim()))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let rows = tx
        .query(
            &sql,
            p![
                &lib.id,
                after,
                lib.head_seq,
                &a.user_id,
                role.can_review(),
                limit
            ],
        )
        .await?;
    let full = rows.len() as i64 == limit;
    let mut out = Vec::with_capacity(rows.len());
    for r in &rows {
        let seq = r.i(0)?;
        let kind = r.s(1)?;
        let data = r.s(3)?;
        out.push(match kind.as_str() {
            "revision" => {
                #[derive(Deserialize)]
                struct D {
                    state: RevState,
                    template: TemplateState,
                }
                let d: D = serde_json::from_str(&data)?;
                let s = stored_row(r, 6)?;
                Change::Revision {
                    seq,
                    revision: record(r.s(4)?, &s, d.state, r.os(5)?.unwrap_or_default()),
                    template: d.template,
                }
            }
            "member" => member_change(seq, &data)?,
            "library" => {
                #[derive(Deserialize)]
                struct L {
                    name: String,
                    review_required: bool,
                }
                let l: L = serde_json::from_str(&data)?;
                Change::Library {
                    seq,
                    library: LibraryInfo {
                        id: lib.id.clone(),
                        name: l.name,
                        role,
                        epoch: lib.epoch.clone(),
                        head_seq: seq,
                        review_required: l.review_required,
                    },
                }
            }
            k => return Err(HubError::internal(format!("unknown change kind {k:?}"))),
        });
    }
    let more = full && out.last().map(Change::seq).unwrap_or(lib.head_seq) < lib.head_seq;
    Ok(ChangesPage {
        epoch: lib.epoch,
        head_seq: lib.head_seq,
        more,
        changes: out,
    })
}

/// `GET /v1/libraries/{lib}/digest`.
pub async fn digest<T: Tx>(tx: &mut T, who: &Who, lib_id: &str) -> Result<DigestReply> {
    let lib = library(tx, lib_id)
        .await?
        .ok_or_else(|| HubError::not_found(format!("no library {lib_id:?}")))?;
    member_role(tx, who, &lib).await?;
    let rows = tx
        .query(
            "SELECT template_id, head_rev, deleted, conflicted FROM heads WHERE library_id = $1",
            p![&lib.id],
        )
        .await?;
    let mut entries = vec![];
    for r in &rows {
        entries.push((r.s(0)?, r.s(1)?, r.b(2)?, r.b(3)?));
    }
    let conflicts = one(
        tx,
        "SELECT count(*) FROM conflicts WHERE library_id = $1 AND resolved_seq IS NULL",
        p![&lib.id],
    )
    .await?
    .map(|r| r.i(0))
    .transpose()?
    .unwrap_or(0);
    let digest = quiver_shared::sync::digest(entries.iter().map(|(t, h, d, c)| {
        quiver_shared::sync::HeadEntry {
            template: t,
            head_rev: h,
            deleted: *d,
            conflicted: *c,
        }
    }));
    Ok(DigestReply {
        head_seq: lib.head_seq,
        digest,
        templates: entries.iter().filter(|e| !e.2).count() as u64,
        conflicts: conflicts as u64,
    })
}

/// The revisions of a template (`template = Some`) or the proposals waiting (`None`), oldest
/// first, as this user may see them.
pub async fn revisions<T: Tx>(
    tx: &mut T,
    who: &Who,
    lib_id: &str,
    template: Option<&str>,
) -> Result<RevisionsReply> {
    let lib = library(tx, lib_id)
        .await?
        .ok_or_else(|| HubError::not_found(format!("no library {lib_id:?}")))?;
    let role = member_role(tx, who, &lib).await?;
    let me = who.user().unwrap_or("").to_string();
    let cols = REV_COLS
        .split(", ")
        .map(|c| format!("r.{}", c.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let (sql, params) = match template {
        Some(t) => (
            format!(
                "SELECT r.rev_id, u.name, {cols} FROM revisions r LEFT JOIN users u ON u.id = r.author_user \
                 WHERE r.library_id = $1 AND r.template_id = $2 \
                 AND (r.state NOT IN ('proposed', 'rejected') OR r.author_user = $3 OR $4) \
                 ORDER BY r.seq, r.received_at"
            ),
            vec![lib.id.clone().into(), t.into(), me.into(), role.can_review().into()],
        ),
        None => (
            format!(
                "SELECT r.rev_id, u.name, {cols} FROM revisions r LEFT JOIN users u ON u.id = r.author_user \
                 WHERE r.library_id = $1 AND r.state = 'proposed' AND (r.author_user = $2 OR $3) \
                 ORDER BY r.seq"
            ),
            vec![lib.id.clone().into(), me.into(), role.can_review().into()],
        ),
    };
    let rows = tx.query(&sql, &params).await?;
    let mut out = vec![];
    for r in &rows {
        let s = stored_row(r, 2)?;
        let state = parse_state(&s.state)?;
        out.push(record(r.s(0)?, &s, state, r.os(1)?.unwrap_or_default()));
    }
    Ok(RevisionsReply { revisions: out })
}

/// `GET /v1/libraries/{lib}/conflicts`.
pub async fn conflicts<T: Tx>(tx: &mut T, who: &Who, lib_id: &str) -> Result<ConflictsReply> {
    let lib = library(tx, lib_id)
        .await?
        .ok_or_else(|| HubError::not_found(format!("no library {lib_id:?}")))?;
    member_role(tx, who, &lib).await?;
    let sql = format!(
        "SELECT {CONFLICT_COLS} FROM conflicts WHERE library_id = $1 AND resolved_seq IS NULL ORDER BY opened_seq"
    );
    let conflicts = tx
        .query(&sql, p![&lib.id])
        .await?
        .iter()
        .map(conflict_row)
        .collect::<Result<Vec<_>>>()?;
    Ok(ConflictsReply {
        head_seq: lib.head_seq,
        conflicts,
    })
}

// ---------------------------------------------------------------------------------------------
// review

/// Approves (lands the proposal as if pushed now) or rejects (kept, `rejected`) a proposal.
pub async fn review<T: Tx>(
    tx: &mut T,
    who: &Who,
    lib_id: &str,
    rev_id: &str,
    approve: bool,
    now: i64,
) -> Result<ReviewReply> {
    let lib = lock_library(tx, lib_id).await?;
    let role = member_role(tx, who, &lib).await?;
    if !role.can_review() {
        return Err(HubError::forbidden(format!(
            "a {} cannot review proposals: maintainers and owners can",
            role.as_str()
        )));
    }
    let s = stored(tx, rev_id)
        .await?
        .filter(|s| s.library == lib.id)
        .ok_or_else(|| HubError::not_found(format!("no revision {rev_id} in this library")))?;
    if s.state != "proposed" {
        return Err(HubError::conflict(format!(
            "revision {rev_id} is not waiting for review (it is {})",
            s.state
        )));
    }
    let mut seq = lib.head_seq;
    let reviewer = who.user().unwrap_or("hub").to_string();
    let (state, res) = if approve {
        let rev = Revision {
            rev_id: rev_id.into(),
            template: s.template.clone(),
            parents: s.parents.clone(),
            op: s.op,
            format: s.format,
            body: s.body.clone(),
            client_at_ms: s.client_at_ms,
        };
        let inc = Incoming {
            rev: &rev,
            author_user: &s.author_user,
            author_device: &s.author_device,
            existing: true,
            received_at: s.received_at,
        };
        let r = land(tx, &lib.id, &inc, &reviewer, &mut seq, now).await?;
        let st = stored(tx, rev_id)
            .await?
            .map(|x| parse_state(&x.state))
            .transpose()?
            .unwrap_or(RevState::Head);
        (st, Some(r))
    } else {
        seq += 1;
        set_state(tx, rev_id, RevState::Rejected).await?;
        write_pending(
            tx,
            &lib.id,
            &s.template,
            vec![Pending {
                seq,
                rev_id: rev_id.into(),
                state: RevState::Rejected,
                private_to: Some(s.author_user.clone()),
            }],
            None,
            now,
        )
        .await?;
        (RevState::Rejected, None)
    };
    set_head_seq(tx, &lib.id, seq).await?;
    tx.notify(Note::Poke {
        library: lib.id.clone(),
        head_seq: seq,
    })
    .await?;
    Ok(ReviewReply {
        head_seq: seq,
        state,
        result: res,
    })
}

// ---------------------------------------------------------------------------------------------
// administration

/// Sets (or with `None` removes) a user's role, as a `member` change in the library's log.
async fn put_member<T: Tx>(
    tx: &mut T,
    lib_id: &str,
    user_id: &str,
    user_name: &str,
    role: Option<Role>,
    now: i64,
) -> Result<i64> {
    let lib = lock_library(tx, lib_id).await?;
    match role {
        Some(r) => {
            tx.exec(
                "INSERT INTO members (library_id, user_id, role) VALUES ($1, $2, $3) \
                 ON CONFLICT (library_id, user_id) DO UPDATE SET role = $3",
                p![&lib.id, user_id, r.as_str()],
            )
            .await?;
        }
        None => {
            tx.exec(
                "DELETE FROM members WHERE library_id = $1 AND user_id = $2",
                p![&lib.id, user_id],
            )
            .await?;
        }
    }
    let seq = lib.head_seq + 1;
    let data = json!({"user_id": user_id, "user_name": user_name, "role": role});
    insert_change(
        tx,
        &lib.id,
        seq,
        "member",
        None,
        None,
        None,
        Some(user_id),
        &data,
        now,
    )
    .await?;
    set_head_seq(tx, &lib.id, seq).await?;
    tx.notify(Note::Member {
        library: lib.id.clone(),
        head_seq: seq,
        user: user_id.into(),
    })
    .await?;
    Ok(seq)
}

async fn find_user<T: Tx>(tx: &mut T, id_or_name: &str) -> Result<(String, String)> {
    let r = one(
        tx,
        "SELECT id, name FROM users WHERE id = $1 OR name = $1",
        p![id_or_name],
    )
    .await?
    .ok_or_else(|| HubError::not_found(format!("no user {id_or_name:?}")))?;
    Ok((r.s(0)?, r.s(1)?))
}

/// Sets or removes a member (owners of the library and administrators). The last owner can be
/// neither removed nor given a lesser role.
pub async fn set_member<T: Tx>(
    tx: &mut T,
    who: &Who,
    lib: &str,
    user: &str,
    role: Option<Role>,
    now: i64,
) -> Result<ChangeReply> {
    let lib = find_library(tx, lib).await?;
    let mine = member_role(tx, who, &lib).await?;
    if !(mine.can_admin() || who.is_admin()) {
        return Err(HubError::forbidden(
            "only the library's owners manage its members",
        ));
    }
    let (user_id, user_name) = find_user(tx, user).await?;
    let current = role_of(tx, &lib.id, &user_id).await?;
    if current.is_none() && role.is_none() {
        return Err(HubError::not_found(format!(
            "{user_name:?} is not a member of {:?}",
            lib.name
        )));
    }
    if current == Some(Role::Owner) && role != Some(Role::Owner) {
        let owners = one(
            tx,
            "SELECT count(*) FROM members WHERE library_id = $1 AND role = 'owner'",
            p![&lib.id],
        )
        .await?
        .map(|r| r.i(0))
        .transpose()?
        .unwrap_or(0);
        if owners <= 1 {
            return Err(HubError::conflict(format!(
                "{user_name:?} is the last owner of {:?}: make someone else owner first",
                lib.name
            )));
        }
    }
    let seq = put_member(tx, &lib.id, &user_id, &user_name, role, now).await?;
    Ok(ChangeReply { seq })
}

pub async fn members<T: Tx>(tx: &mut T, who: &Who, lib: &str) -> Result<MembersReply> {
    let lib = find_library(tx, lib).await?;
    member_role(tx, who, &lib).await?;
    let rows = tx
        .query(
            "SELECT m.user_id, u.name, m.role FROM members m JOIN users u ON u.id = m.user_id \
             WHERE m.library_id = $1 ORDER BY u.name",
            p![&lib.id],
        )
        .await?;
    let mut members = vec![];
    for r in &rows {
        members.push(MemberInfo {
            user_id: r.s(0)?,
            user_name: r.s(1)?,
            role: Role::parse(&r.s(2)?).ok_or_else(|| HubError::internal("unknown role"))?,
        });
    }
    Ok(MembersReply { members })
}

/// Creates a team library (administrators). Its owners: the creating user, or (from the
/// command line) every administrator.
pub async fn create_library<T: Tx>(
    tx: &mut T,
    who: &Who,
    req: &CreateLibrary,
    now: i64,
) -> Result<LibraryInfo> {
    if !who.is_admin() {
        return Err(HubError::forbidden("only administrators create libraries"));
    }
    check_name("library", &req.name)?;
    if one(tx, "SELECT 1 FROM libraries WHERE name = $1", p![&req.name])
        .await?
        .is_some()
    {
        return Err(HubError::conflict(format!(
            "a library named {:?} exists",
            req.name
        )));
    }
    let org = org_id(tx).await?;
    let id = ids::uuid4();
    let epoch = ids::uuid4();
    tx.exec(
        "INSERT INTO libraries (id, org_id, name, kind, epoch, head_seq, review_required, created_at) \
         VALUES ($1, $2, $3, 'team', $4, 0, $5, $6)",
        p![&id, &org, &req.name, &epoch, req.review_required, now],
    )
    .await?;
    let owners: Vec<(String, String)> = match who {
        Who::Device(a) => vec![(a.user_id.clone(), a.user_name.clone())],
        Who::Local => tx
            .query(
                "SELECT id, name FROM users WHERE admin = $1 AND disabled_at IS NULL ORDER BY created_at",
                p![true],
            )
            .await?
            .iter()
            .map(|r| Ok((r.s(0)?, r.s(1)?)))
            .collect::<Result<_>>()?,
    };
    let mut head_seq = 0;
    for (uid, uname) in owners {
        head_seq = put_member(tx, &id, &uid, &uname, Some(Role::Owner), now).await?;
    }
    Ok(LibraryInfo {
        id,
        name: req.name.clone(),
        role: Role::Owner,
        epoch,
        head_seq,
        review_required: req.review_required,
    })
}

/// Renames a library or changes whether it requires review (maintainers and owners), as a
/// `library` change in its log.
pub async fn update_library<T: Tx>(
    tx: &mut T,
    who: &Who,
    lib: &str,
    s: &LibrarySettings,
    now: i64,
) -> Result<ChangeReply> {
    let found = find_library(tx, lib).await?;
    let role = member_role(tx, who, &found).await?;
    if !role.can_review() {
        return Err(HubError::forbidden(
            "only maintainers and owners change a library's settings",
        ));
    }
    let lib = lock_library(tx, &found.id).await?;
    let name = s.name.clone().unwrap_or(lib.name.clone());
    check_name("library", &name)?;
    if name != lib.name
        && one(tx, "SELECT 1 FROM libraries WHERE name = $1", p![&name])
            .await?
            .is_some()
    {
        return Err(HubError::conflict(format!(
            "a library named {name:?} exists"
        )));
    }
    let review = s.review_required.unwrap_or(lib.review_required);
    let seq = lib.head_seq + 1;
    tx.exec(
        "UPDATE libraries SET name = $2, review_required = $3, head_seq = $4 WHERE id = $1",
        p![&lib.id, &name, review, seq],
    )
    .await?;
    let data = json!({"name": name, "review_required": review});
    insert_change(
        tx, &lib.id, seq, "library", None, None, None, None, &data, now,
    )
    .await?;
    tx.notify(Note::Poke {
        library: lib.id.clone(),
        head_seq: seq,
    })
    .await?;
    Ok(ChangeReply { seq })
}

pub async fn libraries<T: Tx>(tx: &mut T, who: &Who) -> Result<LibrariesReply> {
    let sql = "SELECT l.id, l.name, l.epoch, l.head_seq, l.review_required, \
         (SELECT count(*) FROM members m WHERE m.library_id = l.id), \
         (SELECT count(*) FROM heads h WHERE h.library_id = l.id AND h.deleted = $2), \
         (SELECT count(*) FROM conflicts c WHERE c.library_id = l.id AND c.resolved_seq IS NULL) \
         FROM libraries l WHERE $1 OR EXISTS (SELECT 1 FROM members m WHERE m.library_id = l.id AND m.user_id = $3) \
         ORDER BY l.name";
    let rows = tx
        .query(sql, p![who.is_admin(), false, who.user().unwrap_or("")])
        .await?;
    let mut libraries = vec![];
    for r in &rows {
        libraries.push(LibrarySummary {
            id: r.s(0)?,
            name: r.s(1)?,
            epoch: r.s(2)?,
            head_seq: r.i(3)?,
            review_required: r.b(4)?,
            members: r.i(5)? as u64,
            templates: r.i(6)? as u64,
            open_conflicts: r.i(7)? as u64,
        });
    }
    Ok(LibrariesReply { libraries })
}

/// Makes an invite; returns its code (stored only hashed) and expiry. Administrators, or the
/// owners of every library it names.
pub async fn create_invite<T: Tx>(
    tx: &mut T,
    who: &Who,
    req: &InviteRequest,
    now: i64,
) -> Result<(String, i64)> {
    const DAY: u64 = 24 * 3600;
    let secs = req.expires_secs.unwrap_or(3 * DAY);
    if secs == 0 || secs > 30 * DAY {
        return Err(HubError::bad_request(
            "an invite is valid for 1 second to 30 days",
        ));
    }
    let mut grants = vec![];
    let mut seen = HashSet::new();
    for l in &req.libraries {
        let lib = find_library(tx, l).await?;
        let mine = member_role(tx, who, &lib).await?;
        if !(mine.can_admin() || who.is_admin()) {
            return Err(HubError::forbidden(format!(
                "only the owners of {:?} invite to it",
                lib.name
            )));
        }
        if seen.insert(lib.id.clone()) {
            grants.push(Grant {
                library: lib.id,
                role: req.role,
            });
        }
    }
    if let Some(u) = &req.user {
        check_name("user", u)?;
    }
    if grants.is_empty() {
        let existing = match &req.user {
            Some(u) => one(tx, "SELECT 1 FROM users WHERE name = $1", p![u])
                .await?
                .is_some(),
            None => false,
        };
        if !existing {
            return Err(HubError::bad_request(
                "name at least one library (or an existing user, to add a device)",
            ));
        }
        if !who.is_admin() && who.user().is_none() {
            return Err(HubError::forbidden("only administrators invite devices"));
        }
        if let (Who::Device(a), Some(u)) = (who, &req.user) {
            if !a.admin && *u != a.user_name {
                return Err(HubError::forbidden(
                    "only administrators add devices to other users",
                ));
            }
        }
    }
    let org = org_id(tx).await?;
    let code = ids::invite_code();
    let expires = now + (secs as i64) * 1000;
    tx.exec(
        "INSERT INTO invites (code_sha256, org_id, user_name, roles, created_by, created_at, expires_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
        p![
            ids::sha256_hex(code.as_bytes()),
            &org,
            req.user.clone(),
            serde_json::to_string(&grants)?,
            who.user().map(str::to_string),
            now,
            expires
        ],
    )
    .await?;
    Ok((code, expires))
}

pub async fn devices<T: Tx>(tx: &mut T, who: &Who) -> Result<DevicesReply> {
    let rows = tx
        .query(
            "SELECT d.id, d.user_id, u.name, d.name, d.created_at, d.last_seen_at, d.revoked_at \
             FROM devices d JOIN users u ON u.id = d.user_id WHERE $1 OR d.user_id = $2 \
             ORDER BY u.name, d.created_at",
            p![who.is_admin(), who.user().unwrap_or("")],
        )
        .await?;
    let mut devices = vec![];
    for r in &rows {
        devices.push(DeviceInfo {
            id: r.s(0)?,
            user_id: r.s(1)?,
            user_name: r.s(2)?,
            name: r.s(3)?,
            created_at_ms: r.i(4)?,
            last_seen_at_ms: r.oi(5)?,
            revoked_at_ms: r.oi(6)?,
        });
    }
    Ok(DevicesReply { devices })
}

/// Revokes a device token at once (administrators, or the device's own user).
pub async fn revoke_device<T: Tx>(tx: &mut T, who: &Who, device: &str, now: i64) -> Result<()> {
    let r = one(tx, "SELECT user_id FROM devices WHERE id = $1", p![device])
        .await?
        .ok_or_else(|| HubError::not_found(format!("no device {device:?}")))?;
    if !who.is_admin() && who.user() != Some(r.s(0)?.as_str()) {
        return Err(HubError::forbidden(
            "only administrators revoke other users' devices",
        ));
    }
    tx.exec(
        "UPDATE devices SET revoked_at = coalesce(revoked_at, $2) WHERE id = $1",
        p![device, now],
    )
    .await?;
    tx.notify(Note::Revoked {
        device: device.into(),
    })
    .await?;
    Ok(())
}

/// `quiver hub status` and `GET /v1/admin/status`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HubStatus {
    pub hub_id: String,
    pub backend: String,
    pub users: u64,
    pub devices: u64,
    pub libraries: Vec<LibrarySummary>,
    pub revisions: u64,
    pub open_invites: u64,
}

pub async fn status<T: Tx>(tx: &mut T, who: &Who, now: i64) -> Result<HubStatus> {
    if !who.is_admin() {
        return Err(HubError::forbidden(
            "only administrators see the hub's status",
        ));
    }
    let hub_id = one(tx, "SELECT value FROM meta WHERE key = 'hub_id'", p![])
        .await?
        .map(|r| r.s(0))
        .transpose()?
        .unwrap_or_default();
    let mut n = vec![];
    for sql in [
        "SELECT count(*) FROM users WHERE disabled_at IS NULL",
        "SELECT count(*) FROM devices WHERE revoked_at IS NULL",
        "SELECT count(*) FROM revisions",
    ] {
        n.push(
            one(tx, sql, p![])
                .await?
                .map(|r| r.i(0))
                .transpose()?
                .unwrap_or(0) as u64,
        );
    }
    let invites = one(
        tx,
        "SELECT count(*) FROM invites WHERE used_at IS NULL AND expires_at > $1",
        p![now],
    )
    .await?
    .map(|r| r.i(0))
    .transpose()?
    .unwrap_or(0) as u64;
    Ok(HubStatus {
        hub_id,
        backend: tx.backend().into(),
        users: n[0],
        devices: n[1],
        libraries: libraries(tx, who).await?.libraries,
        revisions: n[2],
        open_invites: invites,
    })
}

/// The libraries a device's streams follow, with their head sequence numbers; `None` when the
/// token is revoked (the stream closes).
pub async fn stream_libraries<T: Tx>(
    tx: &mut T,
    device: &str,
) -> Result<Option<Vec<(String, i64)>>> {
    let Some(u) = one(
        tx,
        "SELECT d.user_id FROM devices d JOIN users u ON u.id = d.user_id \
         WHERE d.id = $1 AND d.revoked_at IS NULL AND u.disabled_at IS NULL",
        p![device],
    )
    .await?
    else {
        return Ok(None);
    };
    let rows = tx
        .query(
            "SELECT l.id, l.head_seq FROM members m JOIN libraries l ON l.id = m.library_id \
             WHERE m.user_id = $1",
            p![u.s(0)?],
        )
        .await?;
    Ok(Some(
        rows.iter()
            .map(|r| Ok((r.s(0)?, r.i(1)?)))
            .collect::<Result<_>>()?,
    ))
}

/// After the database was restored from a backup: every library gets a new epoch, so that
/// daemons, whose cursors walked a log the hub partly lost, pull again from the start and push
/// what the hub lacks (`410 reset` on their next request). Returns `(library, epoch)`.
pub async fn new_epochs<T: Tx>(tx: &mut T) -> Result<Vec<(String, String)>> {
    let libs = tx
        .query("SELECT id, head_seq FROM libraries ORDER BY name", &[])
        .await?;
    let mut out = vec![];
    for r in &libs {
        let (id, head_seq) = (r.s(0)?, r.i(1)?);
        let epoch = ids::uuid4();
        tx.exec(
            "UPDATE libraries SET epoch = $2 WHERE id = $1",
            p![&id, &epoch],
        )
        .await?;
        tx.notify(Note::Poke {
            library: id.clone(),
            head_seq,
        })
        .await?;
        out.push((id, epoch));
    }
    tx.notify(Note::Recheck).await?;
    Ok(out)
}

/// The head sequence number of one library (for the poke of a member change).
pub async fn head_seq<T: Tx>(tx: &mut T, lib: &str) -> Result<Option<i64>> {
    one(tx, "SELECT head_seq FROM libraries WHERE id = $1", p![lib])
        .await?
        .map(|r| r.i(0))
        .transpose()
}
