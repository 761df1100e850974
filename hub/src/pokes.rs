//! Change notifications inside one hub process: a broadcast of [`Note`]s that the SSE streams
//! follow. Notes are hints: the pull cursor is the truth, so a lost note costs a delay, never a
//! change. SQLite hubs publish a transaction's notes after it commits; PostgreSQL hubs send them
//! with `pg_notify` inside the transaction (delivered on commit to every hub's LISTEN connection,
//! this one included) and publish what their listener receives.

use tokio::sync::broadcast;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Note {
    /// A library's log grew.
    Poke { library: String, head_seq: i64 },
    /// A user's role in a library changed (or they were removed): their streams refresh which
    /// libraries they follow, and poke them even when removed, so that they pull the change.
    Member {
        library: String,
        head_seq: i64,
        user: String,
    },
    /// A device token was revoked: its streams close.
    Revoked { device: String },
    /// A WeChat conversation changed (`crate::wx`): streams of the app's agents get a `wx` event.
    /// `kind`: `message` (a customer's message arrived), `changed` (assignment, read, transfer),
    /// `send` (an outgoing message's state).
    Wx {
        app: String,
        conversation: String,
        kind: String,
        message_id: Option<i64>,
    },
    /// Something changed that this process did not see (a listener reconnect, another process
    /// wrote the SQLite file): every stream re-checks its token and libraries and pokes them all.
    Recheck,
}

/// The PostgreSQL channel the notes travel on.
pub const CHANNEL: &str = "quiver_changes";

impl Note {
    /// The `pg_notify` payload (under PostgreSQL's 8000-byte limit: ids and numbers only).
    pub fn payload(&self) -> String {
        match self {
            Note::Poke { library, head_seq } => format!("{library}:{head_seq}"),
            Note::Member {
                library,
                head_seq,
                user,
            } => format!("{library}:{head_seq}:{user}"),
            Note::Revoked { device } => format!("revoke:{device}"),
            Note::Recheck => "recheck".into(),
            Note::Wx {
                app,
                conversation,
                kind,
                message_id,
            } => format!(
                "wx:{app}:{conversation}:{kind}:{}",
                message_id.map(|i| i.to_string()).unwrap_or_default()
            ),
        }
    }

    pub fn parse(s: &str) -> Option<Note> {
        if s == "recheck" {
            return Some(Note::Recheck);
        }
        if let Some(d) = s.strip_prefix("revoke:") {
            return Some(Note::Revoked { device: d.into() });
        }
        if let Some(w) = s.strip_prefix("wx:") {
            let mut it = w.split(':');
            let (app, conversation, kind, id) = (it.next()?, it.next()?, it.next()?, it.next()?);
            if it.next().is_some() {
                return None;
            }
            return Some(Note::Wx {
                app: app.into(),
                conversation: conversation.into(),
                kind: kind.into(),
                message_id: if id.is_empty() {
                    None
                } else {
                    Some(id.parse().ok()?)
                },
            });
        }
        let mut it = s.split(':');
        let library = it.next()?.to_string();
        let head_seq = it.next()?.parse().ok()?;
        match (it.next(), it.next()) {
            (None, _) => Some(Note::Poke { library, head_seq }),
            (Some(user), None) => Some(Note::Member {
                library,
                head_seq,
                user: user.into(),
            }),
            _ => None,
        }
    }
}

/// The process's broadcast of notes.
#[derive(Debug, Clone)]
pub struct Bus {
    tx: broadcast::Sender<Note>,
}

impl Default for Bus {
    fn default() -> Self {
        Bus::new()
    }
}

impl Bus {
    pub fn new() -> Bus {
        let (tx, _) = broadcast::channel(4096);
        Bus { tx }
    }

    pub fn publish(&self, n: Note) {
        // No stream listening is fine.
        let _ = self.tx.send(n);
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Note> {
        self.tx.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_read_back() {
        let l = "0190f1a2-0000-7000-8000-000000000001".to_string();
        for n in [
            Note::Poke {
                library: l.clone(),
                head_seq: 7,
            },
            Note::Member {
                library: l.clone(),
                head_seq: 8,
                user: "u".into(),
            },
            Note::Revoked { device: l.clone() },
            Note::Recheck,
            Note::Wx {
                app: "shop".into(),
                conversation: l.clone(),
                kind: "message".into(),
                message_id: Some(12),
            },
            Note::Wx {
                app: "shop".into(),
                conversation: l.clone(),
                kind: "changed".into(),
                message_id: None,
            },
        ] {
            assert_eq!(Note::parse(&n.payload()), Some(n));
        }
        assert_eq!(Note::parse("x"), None);
        assert_eq!(Note::parse("a:b"), None);
        assert_eq!(Note::parse("a:1:u:v"), None);
    }
}
