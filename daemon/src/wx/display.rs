//! What a message of a conversation looks like to the customer, as the core's display model
//! (`quiver_shared::adapters::preview::Display`), so the conversations page draws the thread
//! with the same drawer (`lib/draw.js`) as the palette's preview: an outbound message from the
//! wire body WeChat got (`wechat_mp`'s forms: text, image, link, miniprogrampage), an inbound
//! one from what the gateway parsed of the push. Images are known by a media id: a blob the
//! hub keeps is named `sha256:HEX` (the page fetches it with `wx.blob`).

use quiver_shared::adapters::preview::{ArticleView, Display};
use serde_json::Value;

fn s(v: &Value) -> String {
    v.as_str().unwrap_or_default().to_string()
}

fn opt(v: &Value) -> Option<String> {
    v.as_str().filter(|s| !s.is_empty()).map(str::to_string)
}

/// A blob's hash as a media id (`sha256:HEX`).
pub fn blob_id(hash: &str) -> String {
    if hash.starts_with("sha256:") {
        hash.to_string()
    } else {
        format!("sha256:{hash}")
    }
}

/// The image's media id: the hub's blob when it has the bytes, else WeChat's id.
fn media(obj: &Value) -> Option<String> {
    opt(&obj["blob"])
        .map(|b| blob_id(&b))
        .or_else(|| opt(&obj["media_id"]))
}

/// The display of an outbound wire body (`message/custom/send`).
pub fn of_wire(body: &Value) -> Option<Display> {
    match body["msgtype"].as_str()? {
        "text" => Some(Display::Text {
            text: s(&body["text"]["content"]),
        }),
        "image" => Some(Display::Image {
            url: None,
            media_id: opt(&body["image"]["media_id"]),
        }),
        "link" => {
            let l = &body["link"];
            Some(Display::News {
                articles: vec![ArticleView {
                    title: s(&l["title"]),
                    digest: s(&l["description"]),
                    cover: opt(&l["thumb_url"]),
                    url: s(&l["url"]),
                }],
            })
        }
        "miniprogrampage" => {
            let c = &body["miniprogrampage"];
            Some(Display::Miniprogram {
                title: s(&c["title"]),
                pagepath: s(&c["pagepath"]),
                name: None,
                avatar: None,
                cover: None,
                media_id: opt(&c["thumb_media_id"]),
            })
        }
        _ => None,
    }
}

/// The display of a message as the agent API returns it (`null` for events and session
/// entries, which show as notes, not bubbles).
pub fn of_message(m: &Value) -> Option<Display> {
    let out = m["dir"] == "out";
    if out {
        if let Some(body) = m["body"]
            .as_str()
            .and_then(|b| serde_json::from_str::<Value>(b).ok())
            .or_else(|| m["body"].is_object().then(|| m["body"].clone()))
        {
            let mut d = of_wire(&body)?;
            // the hub resolved a blob to WeChat's id: show the blob, which the page can draw
            if let (Display::Image { media_id, .. }, Some(b)) = (&mut d, opt(&m["image"]["blob"])) {
                *media_id = Some(blob_id(&b));
            }
            return Some(d);
        }
    }
    match m["kind"].as_str()? {
        "text" => Some(Display::Text {
            text: s(&m["text"]),
        }),
        "image" => Some(Display::Image {
            url: None,
            media_id: media(&m["image"]),
        }),
        "miniprogrampage" => {
            let c = &m["card"];
            Some(Display::Miniprogram {
                title: s(&c["title"]),
                pagepath: opt(&c["pagepath"])
                    .or_else(|| opt(&c["page_path"]))
                    .unwrap_or_default(),
                name: None,
                avatar: None,
                cover: None,
                media_id: opt(&c["thumb_blob"])
                    .or_else(|| opt(&c["blob"]))
                    .map(|b| blob_id(&b))
                    .or_else(|| opt(&c["thumb_media_id"])),
            })
        }
        "link" => {
            let c = &m["card"];
            Some(Display::News {
                articles: vec![ArticleView {
                    title: s(&c["title"]),
                    digest: s(&c["description"]),
                    cover: opt(&c["thumb_url"]),
                    url: s(&c["url"]),
                }],
            })
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn kind(d: &Option<Display>) -> Value {
        serde_json::to_value(d).unwrap()
    }

    #[test]
    fn outbound_bodies_draw_as_the_wire_says() {
        let m = json!({"dir": "out", "kind": "text",
            "body": r#"{"touser":"o1","msgtype":"text","text":{"content":"Hi <a href=\"https://x\">x</a>"}}"#});
        assert_eq!(
            kind(&of_message(&m)),
            json!({"kind": "text", "text": "Hi <a href=\"https://x\">x</a>"})
        );
        let m = json!({"dir": "out", "kind": "image", "image": {"blob": "ab", "media_id": "M1"},
            "body": r#"{"touser":"o1","msgtype":"image","image":{"media_id":"M1"}}"#});
        assert_eq!(
            kind(&of_message(&m)),
            json!({"kind": "image", "url": null, "media_id": "sha256:ab"})
        );
        let m = json!({"dir": "out", "body": r#"{"touser":"o","msgtype":"link","link":{"title":"T","description":"D","url":"https://u","thumb_url":"https://c"}}"#});
        assert_eq!(
            kind(&of_message(&m)),
            json!({"kind": "news", "articles": [{"title": "T", "digest": "D", "cover": "https://c", "url": "https://u"}]})
        );
        let m = json!({"dir": "out", "body": r#"{"touser":"o","msgtype":"miniprogrampage","miniprogrampage":{"title":"T","pagepath":"p/a","thumb_media_id":"sha256:cd"}}"#});
        assert_eq!(kind(&of_message(&m))["media_id"], "sha256:cd");
    }

    #[test]
    fn inbound_messages_and_notes() {
        let m = json!({"dir": "in", "kind": "text", "text": "你好"});
        assert_eq!(
            kind(&of_message(&m)),
            json!({"kind": "text", "text": "你好"})
        );
        let m = json!({"dir": "in", "kind": "image", "image": {"blob": null, "media_id": "W"}});
        assert_eq!(kind(&of_message(&m))["media_id"], "W");
        let m = json!({"dir": "in", "kind": "miniprogrampage",
            "card": {"title": "Order", "pagepath": "pages/o?id=1", "thumb_blob": "ef"}});
        let d = kind(&of_message(&m));
        assert_eq!(
            (d["title"].as_str(), d["media_id"].as_str()),
            (Some("Order"), Some("sha256:ef"))
        );
        assert!(of_message(&json!({"dir": "in", "kind": "enter"})).is_none());
        assert!(of_message(&json!({"dir": "in", "kind": "event"})).is_none());
        assert!(of_message(&json!({"dir": "out", "body": "not json"})).is_none());
    }
}
