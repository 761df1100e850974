//! Mini-program message pushes (platform-spec §4.2, §4.3): what WeChat POSTs to the configured URL,
//! in XML (`<xml><ToUserName><![CDATA[gh_…]]></ToUserName>…</xml>`) or JSON
//! (`{"ToUserName":"gh_…",…}`), plain or inside the safe-mode envelope (`Encrypt`).
//!
//! Field names are WeChat's and case-sensitive. Unknown fields are ignored. The event
//! `user_enter_tempsession` carries the button's `session-from` in **`SessionFrom`**; seed 003
//! spells it `sessionForm`, which WeChat never sends: that key is ignored like any unknown one.
//! Message-specific fields that are missing read as empty strings (a push is acknowledged
//! whatever it holds); the four common fields are required.

use super::{xml, Format, ParseError};
use serde::Serialize;

/// A plaintext push.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Push {
    /// The mini program's original id (`gh_…`).
    pub to_user_name: String,
    /// The user's OpenID.
    pub from_user_name: String,
    /// Seconds since the epoch.
    pub create_time: i64,
    pub msg_type: String,
    /// `MsgId` of a user message: a 64-bit integer, kept as its decimal text (JavaScript and JSON
    /// doubles cannot hold it exactly). `None` for events.
    pub msg_id: Option<String>,
    /// `Event` of an event push (`MsgType` `event`).
    pub event: Option<String>,
    pub kind: PushKind,
}

/// What a push is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PushKind {
    /// `MsgType` `text`.
    Text { content: String },
    /// `MsgType` `image`: `PicUrl` (system-generated URL), `MediaId` (temporary media).
    Image { pic_url: String, media_id: String },
    /// `MsgType` `miniprogrampage`: a card the user sent.
    MiniProgramPage {
        title: String,
        app_id: String,
        page_path: String,
        /// Temporary CDN URL of the cover.
        thumb_url: String,
        thumb_media_id: String,
    },
    /// `MsgType` `event`, `Event` `user_enter_tempsession`: the user opened the session.
    #[serde(rename = "user_enter_tempsession")]
    UserEnterTempSession {
        /// The button's `session-from`; empty when it set none.
        session_from: String,
    },
    /// Any other message type or event.
    Other,
}

impl Push {
    /// True for a message the user sent (anything but an event push). Only these may be answered
    /// with `transfer_customer_service` (platform-spec §4.5).
    pub fn is_user_message(&self) -> bool {
        self.msg_type != "event"
    }

    /// The key WeChat's retries repeat, always with the sender: `msgid:<FromUserName>:<MsgId>`
    /// for messages, `from:<FromUserName>:<CreateTime>` for events and anything else without a
    /// `MsgId` (platform-spec §4.2). `MsgId` alone is not unique across users (WxJava#333: of 15
    /// users writing at once, 5–6 got no answer), so the sender is part of the key for messages
    /// too (research §2.4).
    pub fn dedupe_key(&self) -> String {
        match &self.msg_id {
            Some(id) => format!("msgid:{}:{id}", self.from_user_name),
            None => format!("from:{}:{}", self.from_user_name, self.create_time),
        }
    }
}

/// The safe-mode envelope: `<xml><ToUserName/><Encrypt/></xml>` or `{"ToUserName","Encrypt"}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Envelope {
    pub to_user_name: Option<String>,
    /// Base64 of the AES ciphertext; see [`crate::wechat::crypto`].
    pub encrypt: String,
}

/// A push body as received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "mode", rename_all = "snake_case")]
pub enum Body {
    /// Plaintext mode.
    Plain { push: Push },
    /// Safe mode: only the envelope; decrypt it to get the push.
    Encrypted { envelope: Envelope },
    /// Compatible mode: the plaintext fields and the envelope.
    Compatible { push: Push, envelope: Envelope },
}

/// Reads a push body: plain, encrypted or both (an `Encrypt` field makes it an envelope; the
/// plaintext fields beside it make it compatible mode).
pub fn parse_body(text: &str, format: Format) -> Result<Body, ParseError> {
    let fields = Fields::read(text, format)?;
    match fields.get("Encrypt") {
        Some(encrypt) => {
            if encrypt.is_empty() {
                return Err(ParseError::new("push envelope: Encrypt is empty"));
            }
            let envelope = Envelope {
                to_user_name: fields.get("ToUserName").map(str::to_string),
                encrypt: encrypt.to_string(),
            };
            if fields.get("MsgType").is_some() {
                Ok(Body::Compatible {
                    push: fields.push()?,
                    envelope,
                })
            } else {
                Ok(Body::Encrypted { envelope })
            }
        }
        None => Ok(Body::Plain {
            push: fields.push()?,
        }),
    }
}

/// Reads a plaintext push (a body without `Encrypt`, or the decrypted content of an envelope).
/// A bare envelope is an error that says so; compatible-mode bodies are read from their plaintext.
pub fn parse_push(text: &str, format: Format) -> Result<Push, ParseError> {
    let fields = Fields::read(text, format)?;
    if fields.get("Encrypt").is_some() && fields.get("MsgType").is_none() {
        return Err(ParseError::new(
            "the push is encrypted (safe mode): decrypt its Encrypt field first",
        ));
    }
    fields.push()
}

struct Fields(Vec<(String, String)>);

impl Fields {
    fn read(text: &str, format: Format) -> Result<Fields, ParseError> {
        match format {
            Format::Xml => xml::read_flat(text)
                .map(Fields)
                .map_err(|e| ParseError::new(format!("push (XML): {e}"))),
            Format::Json => {
                let value: serde_json::Value = serde_json::from_str(text)
                    .map_err(|e| ParseError::new(format!("push (JSON): {e}")))?;
                let serde_json::Value::Object(map) = value else {
                    return Err(ParseError::new("push (JSON) is not an object"));
                };
                Ok(Fields(
                    map.into_iter()
                        .filter_map(|(k, v)| {
                            let text = match v {
                                serde_json::Value::String(s) => s,
                                serde_json::Value::Number(n) => n.to_string(),
                                serde_json::Value::Bool(b) => b.to_string(),
                                _ => return None,
                            };
                            Some((k, text))
                        })
                        .collect(),
                ))
            }
        }
    }

    fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    fn text(&self, name: &str) -> String {
        self.get(name).unwrap_or_default().to_string()
    }

    fn required(&self, name: &str) -> Result<String, ParseError> {
        match self.get(name) {
            Some(v) if !v.trim().is_empty() => Ok(v.to_string()),
            _ => Err(ParseError::new(format!("push has no {name}"))),
        }
    }

    fn push(&self) -> Result<Push, ParseError> {
        let create = self.required("CreateTime")?;
        let create_time = create.trim().parse::<i64>().map_err(|_| {
            ParseError::new(format!("push CreateTime {create:?} is not an integer"))
        })?;
        let msg_type = self.required("MsgType")?;
        let event = self
            .get("Event")
            .map(str::to_string)
            .filter(|e| !e.is_empty());
        let kind = match msg_type.as_str() {
            "text" => PushKind::Text {
                content: self.text("Content"),
            },
            "image" => PushKind::Image {
                pic_url: self.text("PicUrl"),
                media_id: self.text("MediaId"),
            },
            "miniprogrampage" => PushKind::MiniProgramPage {
                title: self.text("Title"),
                app_id: self.text("AppId"),
                page_path: self.text("PagePath"),
                thumb_url: self.text("ThumbUrl"),
                thumb_media_id: self.text("ThumbMediaId"),
            },
            "event" if event.as_deref() == Some("user_enter_tempsession") => {
                PushKind::UserEnterTempSession {
                    session_from: self.text("SessionFrom"),
                }
            }
            _ => PushKind::Other,
        };
        Ok(Push {
            to_user_name: self.required("ToUserName")?,
            from_user_name: self.required("FromUserName")?,
            create_time,
            msg_id: self
                .get("MsgId")
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            event,
            msg_type,
            kind,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_id_keeps_all_64_bits() {
        let p = parse_push(
            r#"{"ToUserName":"gh_a","FromUserName":"o","CreateTime":1,"MsgType":"text","Content":"x","MsgId":18446744073709551615}"#,
            Format::Json,
        )
        .unwrap();
        assert_eq!(p.msg_id.as_deref(), Some("18446744073709551615"));
        assert_eq!(p.dedupe_key(), "msgid:o:18446744073709551615");
    }

    #[test]
    fn dedupe_key_includes_the_sender() {
        let read = |from: &str, msg_id: &str| {
            let msg_id = if msg_id.is_empty() {
                String::new()
            } else {
                format!(r#","MsgId":{msg_id}"#)
            };
            parse_push(
                &format!(
                    r#"{{"ToUserName":"gh_a","FromUserName":"{from}","CreateTime":7,"MsgType":"text","Content":"x"{msg_id}}}"#
                ),
                Format::Json,
            )
            .unwrap()
        };
        // the same MsgId from two users: two keys
        assert_ne!(read("oA", "5").dedupe_key(), read("oB", "5").dedupe_key());
        // a retry: the same key
        assert_eq!(read("oA", "5").dedupe_key(), read("oA", "5").dedupe_key());
        // no MsgId: sender and time
        assert_eq!(read("oA", "").dedupe_key(), "from:oA:7");
    }

    #[test]
    fn envelope_only_is_not_a_push() {
        let e = parse_push(
            "<xml><ToUserName>gh</ToUserName><Encrypt>abc</Encrypt></xml>",
            Format::Xml,
        )
        .unwrap_err();
        assert!(e.message.contains("decrypt"), "{e}");
    }
}
