//! What the WeChat conversation methods (the `wx` module) need of the service: the hub to talk to,
//! a template to render, history rows for the replies sent through the hub, and the
//! `wx.changed` event (docs/protocol.md, "WeChat conversations"). The network work itself is
//! done by the `wx` module outside the service lock.

use super::{Service, ServiceError};
use crate::params;
use crate::store::{HubRow, NewSend, SendState};
use quiver_shared::Template;
use serde_json::{json, Map, Value};

/// The platform WeChat replies are recorded under in the history.
pub const WX_PLATFORM: &str = "wechat-mp";

/// A template as the reply renders it.
#[derive(Debug, Clone)]
pub struct WxTemplate {
    pub library: String,
    pub template: Template,
    pub revision: u32,
    /// The exact team revision (`None` in the personal library).
    pub rev_id: Option<String>,
}

/// One part of a reply, for its history row.
#[derive(Debug, Clone)]
pub struct WxPart {
    /// The history row's idempotency key (`wx:{key}:{part}`).
    pub key: String,
    pub part_index: u32,
    pub payload: String,
}

/// Where a reply goes, for its history rows.
#[derive(Debug, Clone)]
pub struct WxTarget {
    /// The mini program's name at the hub (the history's `workspace`).
    pub app: String,
    /// The conversation's id (the history's `conversation`).
    pub conversation: String,
    /// The customer's OpenID (the history's `customer`).
    pub openid: String,
}

impl Service {
    /// The hub the WeChat methods talk to: the one this device joined first.
    pub fn wx_hub(&self) -> Result<HubRow, ServiceError> {
        let mut hubs = self.store.hubs()?;
        hubs.sort_by_key(|h| h.joined_at);
        hubs.into_iter().next().ok_or_else(|| {
            ServiceError::NotFound(
                "this device has not joined a team hub: WeChat conversations come from the \
                 hub (quiver team join INVITE)"
                    .into(),
            )
        })
    }

    /// The current revision of template `id` of `library`.
    pub fn wx_template(&self, library: &str, id: &str) -> Result<WxTemplate, ServiceError> {
        let row = self.template_row(library, id)?;
        if row.deleted_at.is_some() {
            return Err(ServiceError::NotFound(format!(
                "template {id:?} of library {library:?} was deleted"
            )));
        }
        let template: Template = serde_json::from_str(&row.body_json).map_err(|e| {
            ServiceError::Internal(format!("store: template {id:?} is not a template: {e}"))
        })?;
        let rev_id = if library == params::LOCAL {
            None
        } else {
            self.store.rev_id_of(library, id, row.revision)?
        };
        Ok(WxTemplate {
            library: library.to_string(),
            template,
            revision: row.revision,
            rev_id,
        })
    }

    /// Writes the history rows of a reply's parts as `sending` (before the hub is asked), or
    /// finds them again (a retried reply with the same key). Returns their send ids.
    pub fn wx_history_begin(
        &mut self,
        tpl: &WxTemplate,
        to: &WxTarget,
        parts: &[WxPart],
        now: u64,
    ) -> Result<Vec<i64>, ServiceError> {
        let meter_key = json!([WX_PLATFORM, "hub", to.app, to.openid]).to_string();
        let mut ids = vec![];
        for p in parts {
            let s = NewSend {
                idempotency_key: &p.key,
                library: &tpl.library,
                template_id: &tpl.template.id,
                revision: tpl.revision,
                part_index: p.part_index,
                platform: WX_PLATFORM,
                workspace: &to.app,
                conversation: Some(&to.conversation),
                customer: Some(&to.openid),
                payload: &p.payload,
                meter_key: &meter_key,
                rev_id: tpl.rev_id.as_deref(),
            };
            let (row, _) = self.store.reserve_with(&s, now, |_, _| true)?;
            ids.push(row.send_id);
        }
        Ok(ids)
    }

    /// Records what the hub says of a reply's part: `sent`, or `failed` with `error` (the
    /// hub's `failed`, `unknown` and `cancelled`); a part still queued or sending at the hub
    /// stays `sending` until a later look at the thread finds it done. Counts the template's
    /// use once (part 0 sent).
    pub fn wx_history_done(
        &mut self,
        key: &str,
        hub_state: &str,
        error: Option<&str>,
        now: u64,
    ) -> Result<(), ServiceError> {
        let to = match hub_state {
            "sent" => SendState::Sent,
            "failed" | "unknown" | "cancelled" => SendState::Failed,
            _ => return Ok(()),
        };
        let Some(row) = self.store.send_by_key(key)? else {
            return Ok(());
        };
        // the hub is the truth: a part failed here because the hub could not be asked may
        // turn out sent when the same key is tried again
        let from: &[SendState] = match (row.state, to) {
            (SendState::Sending | SendState::Queued, _) => &[SendState::Sending, SendState::Queued],
            (SendState::Failed, SendState::Sent) => &[SendState::Failed],
            _ => return Ok(()),
        };
        let why = match (to, error) {
            (SendState::Sent, _) => None,
            (_, Some(e)) => Some(format!("{hub_state}: {e}")),
            (_, None) => Some(hub_state.to_string()),
        };
        // the outcome and the template's use (a sent first part) in one commit
        let lib = row.library.as_deref().unwrap_or(params::LOCAL);
        let used = match (&row.template_id, row.part_index) {
            (Some(t), Some(0)) if to == SendState::Sent => Some((lib, t.as_str())),
            _ => None,
        };
        let finished = self
            .store
            .finish(row.send_id, from, to, why.as_deref(), now, used)?;
        self.counted(used, finished.counted, now);
        Ok(())
    }

    /// The hub's SSE `wx` note, relayed to every connection as `wx.changed` (only the fields
    /// the protocol names).
    pub fn wx_changed(&mut self, note: Value) {
        let mut data = Map::new();
        for k in ["conversation", "kind", "message_id"] {
            if let Some(v) = note.get(k) {
                data.insert(k.to_string(), v.clone());
            }
        }
        if !data.contains_key("conversation") {
            return;
        }
        self.emit("wx.changed", Value::Object(data));
    }
}
