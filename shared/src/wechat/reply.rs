//! Passive replies to a push (the HTTP response body): `success`, and `transfer_customer_service`,
//! which hands the user's message to the web 客服 tool (platform-spec §4.5), plain or sealed for
//! safe mode (§4.4).

use super::crypto::{msg_signature, CryptCode, CryptError, Crypto};
use super::push::Push;
use super::{xml, Format};
use serde::{Deserialize, Serialize};

/// The acknowledgement that asks for nothing (an empty body works too). Never encrypted.
pub const SUCCESS: &str = "success";

/// `MsgType` of the transfer reply.
pub const TRANSFER_CUSTOMER_SERVICE: &str = "transfer_customer_service";

/// Why a reply cannot be built.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum ReplyError {
    /// `transfer_customer_service` answers user messages only: forwarding an event (such as
    /// `user_enter_tempsession`) would show agents a meaningless message (platform-spec §4.5).
    NotAUserMessage {
        msg_type: String,
        event: Option<String>,
    },
    /// A value XML cannot carry.
    Unencodable { message: String },
}

impl std::fmt::Display for ReplyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReplyError::NotAUserMessage { msg_type, event } => write!(
                f,
                "transfer_customer_service answers user messages only, not a {msg_type} push{}",
                event
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            ),
            ReplyError::Unencodable { message } => f.write_str(message),
        }
    }
}

impl std::error::Error for ReplyError {}

#[derive(Serialize)]
struct TransferJson<'a> {
    #[serde(rename = "ToUserName")]
    to_user_name: &'a str,
    #[serde(rename = "FromUserName")]
    from_user_name: &'a str,
    #[serde(rename = "CreateTime")]
    create_time: i64,
    #[serde(rename = "MsgType")]
    msg_type: &'static str,
}

/// The `transfer_customer_service` reply to `push`, in the push's format, To and From swapped
/// (To = the user's OpenID, From = the mini program's id). `create_time` is now, in seconds.
pub fn transfer_customer_service(
    push: &Push,
    format: Format,
    create_time: i64,
) -> Result<String, ReplyError> {
    if !push.is_user_message() {
        return Err(ReplyError::NotAUserMessage {
            msg_type: push.msg_type.clone(),
            event: push.event.clone(),
        });
    }
    let to = &push.from_user_name;
    let from = &push.to_user_name;
    Ok(match format {
        Format::Xml => {
            for (field, value) in [("ToUserName", to), ("FromUserName", from)] {
                xml::check_chars(field, value)
                    .map_err(|message| ReplyError::Unencodable { message })?;
            }
            format!(
                "<xml><ToUserName>{}</ToUserName><FromUserName>{}</FromUserName><CreateTime>{create_time}</CreateTime><MsgType>{}</MsgType></xml>",
                xml::cdata(to),
                xml::cdata(from),
                xml::cdata(TRANSFER_CUSTOMER_SERVICE),
            )
        }
        Format::Json => crate::json::to_json(&TransferJson {
            to_user_name: to,
            from_user_name: from,
            create_time,
            msg_type: TRANSFER_CUSTOMER_SERVICE,
        }),
    })
}

/// Key spelling of a sealed JSON reply. Which one WeChat expects is not documented
/// (platform-spec §4.4, [OPEN]); a community answer shows `Pascal`, EasyWeChat 6 emits `Lower`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JsonKeys {
    /// `Encrypt`, `MsgSignature`, `TimeStamp`, `Nonce`.
    #[default]
    Pascal,
    /// `encrypt`, `msgsignature`, `timestamp`, `nonce`.
    Lower,
}

/// How a sealed JSON reply is spelled (XML replies have one form).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SealOptions {
    pub json_keys: JsonKeys,
    /// `TimeStamp` as a JSON string rather than a number (community examples show both).
    pub json_timestamp_as_string: bool,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Stamp {
    Number(u64),
    Text(String),
}

#[derive(Serialize)]
struct SealedPascal<'a> {
    #[serde(rename = "Encrypt")]
    encrypt: &'a str,
    #[serde(rename = "MsgSignature")]
    msg_signature: &'a str,
    #[serde(rename = "TimeStamp")]
    timestamp: Stamp,
    #[serde(rename = "Nonce")]
    nonce: &'a str,
}

#[derive(Serialize)]
struct SealedLower<'a> {
    encrypt: &'a str,
    msgsignature: &'a str,
    timestamp: Stamp,
    nonce: &'a str,
}

/// Encrypts a reply for safe mode: `Encrypt` = [`Crypto::encrypt`] of `reply` with the caller's
/// random bytes, `MsgSignature` = sha1 of the sorted token, timestamp, nonce and `Encrypt`.
/// `timestamp` is in seconds; `nonce` is the caller's (often the push's own).
///
/// XML: `<xml><Encrypt/><MsgSignature/><TimeStamp/><Nonce/></xml>` as WeChat's sample code
/// writes it; JSON: the four keys spelled per `options`.
pub fn seal(
    crypto: &Crypto,
    reply: &str,
    format: Format,
    timestamp: u64,
    nonce: &str,
    random: &[u8; 16],
    options: SealOptions,
) -> Result<String, CryptError> {
    let encrypt = crypto.encrypt(reply, random)?;
    let ts = timestamp.to_string();
    let signature = msg_signature(crypto.token(), &ts, nonce, &encrypt);
    Ok(match format {
        Format::Xml => {
            xml::check_chars("Nonce", nonce)
                .map_err(|m| CryptError::new(CryptCode::BuildXml, m))?;
            format!(
                "<xml><Encrypt>{}</Encrypt><MsgSignature>{}</MsgSignature><TimeStamp>{ts}</TimeStamp><Nonce>{}</Nonce></xml>",
                xml::cdata(&encrypt),
                xml::cdata(&signature),
                xml::cdata(nonce),
            )
        }
        Format::Json => {
            let stamp = if options.json_timestamp_as_string {
                Stamp::Text(ts)
            } else {
                Stamp::Number(timestamp)
            };
            let built = match options.json_keys {
                JsonKeys::Pascal => serde_json::to_string(&SealedPascal {
                    encrypt: &encrypt,
                    msg_signature: &signature,
                    timestamp: stamp,
                    nonce,
                }),
                JsonKeys::Lower => serde_json::to_string(&SealedLower {
                    encrypt: &encrypt,
                    msgsignature: &signature,
                    timestamp: stamp,
                    nonce,
                }),
            };
            built.map_err(|e| CryptError::new(CryptCode::BuildJson, e.to_string()))?
        }
    })
}
