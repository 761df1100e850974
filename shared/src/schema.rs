//! The part schema, for the editor's forms: every part kind, its fields, which are required, the
//! caps of [`crate::model::limits`] and the grammar of each link field ([`crate::links`]).
//!
//! It is a table written next to the model; the tests below hold it to the model's own
//! definitions (serde's field lists, `Part::check`'s required fields, caps and link grammar),
//! so a field added, renamed, capped or made required in the model fails them until the table
//! says so too.

use crate::model::limits::*;
use serde::Serialize;

/// The whole schema.
#[derive(Debug, Clone, Serialize)]
pub struct Schema {
    pub kinds: &'static [KindSchema],
    /// The template's own caps (docs/templates.md, "Limits").
    pub limits: Limits,
}

/// One part kind (`type` in a library file).
#[derive(Debug, Clone, Serialize)]
pub struct KindSchema {
    pub kind: &'static str,
    pub fields: &'static [FieldSchema],
    /// Fields of which at least one must be non-empty (an image's `url` or `media_id`).
    pub one_of: &'static [&'static str],
}

/// One field of a part (or of a list item).
#[derive(Debug, Clone, Serialize)]
pub struct FieldSchema {
    pub name: &'static str,
    pub input: Input,
    /// Must be present (and, for a part's own strings, non-empty).
    pub required: bool,
    /// Longest value in bytes of UTF-8 (strings).
    pub max_bytes: Option<usize>,
    /// Fewest and most items (lists).
    pub min_items: Option<usize>,
    pub max_items: Option<usize>,
    /// The fields of each item (lists).
    pub items: Option<&'static [FieldSchema]>,
}

/// What kind of value a field takes, and so which input edits it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Input {
    /// One line of text.
    Text,
    /// Multi-line text.
    Textarea,
    /// Rich HTML (cleaned by the sanitizer).
    Html,
    /// An absolute http(s) URL (or one placeholder).
    Url,
    /// A mini-program page path.
    Page,
    /// A web URL or a mini-program page path.
    UrlOrPage,
    /// A WeChat media id.
    MediaId,
    /// `#RGB` or `#RRGGBB`.
    Color,
    Bool,
    /// A whole number.
    Number,
    /// A list of items (see `items`).
    List,
}

/// The caps on a template as a whole.
#[derive(Debug, Clone, Serialize)]
pub struct Limits {
    pub label_bytes: usize,
    pub url_bytes: usize,
    pub body_bytes: usize,
    pub tags: usize,
    pub variables: usize,
    pub parts: usize,
    pub fallback_depth: usize,
    pub template_bytes: usize,
}

const fn field(name: &'static str, input: Input, required: bool, max: usize) -> FieldSchema {
    FieldSchema {
        name,
        input,
        required,
        max_bytes: Some(max),
        min_items: None,
        max_items: None,
        items: None,
    }
}

const fn flag(name: &'static str, input: Input) -> FieldSchema {
    FieldSchema {
        name,
        input,
        required: false,
        max_bytes: None,
        min_items: None,
        max_items: None,
        items: None,
    }
}

const fn list(
    name: &'static str,
    min: usize,
    max: usize,
    items: &'static [FieldSchema],
) -> FieldSchema {
    FieldSchema {
        name,
        input: Input::List,
        required: min > 0,
        max_bytes: None,
        min_items: Some(min),
        max_items: Some(max),
        items: Some(items),
    }
}

const ARTICLE: &[FieldSchema] = &[
    field("title", Input::Text, true, LABEL),
    field("digest", Input::Text, false, LABEL),
    field("cover", Input::Url, false, URL),
    field("url", Input::Url, true, URL),
];

const SEGMENT: &[FieldSchema] = &[
    field("text", Input::Text, true, LABEL),
    flag("color", Input::Color),
    flag("bold", Input::Bool),
    flag("break", Input::Bool),
    flag("size", Input::Number),
];

/// Every part kind, in the order of `docs/templates.md`. Every kind also takes `fallback`, a part.
pub const KINDS: &[KindSchema] = &[
    KindSchema {
        kind: "text",
        fields: &[field("text", Input::Textarea, true, BODY)],
        one_of: &[],
    },
    KindSchema {
        kind: "rich",
        fields: &[field("html", Input::Html, true, BODY)],
        one_of: &[],
    },
    KindSchema {
        kind: "image",
        fields: &[
            field("url", Input::Url, false, URL),
            field("media_id", Input::MediaId, false, LABEL),
        ],
        one_of: &["url", "media_id"],
    },
    KindSchema {
        kind: "news",
        fields: &[list("articles", 1, ARTICLES, ARTICLE)],
        one_of: &[],
    },
    KindSchema {
        kind: "product",
        fields: &[
            field("name", Input::Text, true, LABEL),
            field("url", Input::UrlOrPage, false, URL),
            field("image", Input::Url, true, URL),
            list("segments", 0, SEGMENTS, SEGMENT),
        ],
        one_of: &[],
    },
    KindSchema {
        kind: "miniprogram",
        fields: &[
            field("title", Input::Text, true, LABEL),
            field("pagepath", Input::Page, true, URL),
            field("thumb_media_id", Input::MediaId, false, LABEL),
            field("pic_url", Input::Url, false, URL),
            field("name", Input::Text, false, LABEL),
            field("avatar", Input::Url, false, URL),
            field("thumb_url", Input::Url, false, URL),
        ],
        one_of: &[],
    },
];

/// The schema.
pub fn schema() -> Schema {
    Schema {
        kinds: KINDS,
        limits: Limits {
            label_bytes: LABEL,
            url_bytes: URL,
            body_bytes: BODY,
            tags: TAGS,
            variables: VARIABLES,
            parts: PARTS,
            fallback_depth: FALLBACK_DEPTH,
            template_bytes: TEMPLATE_BYTES,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{Part, Template};
    use serde_json::{json, Map, Value};

    /// A valid value for a field.
    fn sample(f: &FieldSchema) -> Value {
        match f.input {
            Input::Text | Input::Textarea | Input::MediaId => json!("v"),
            Input::Html => json!("<b>v</b>"),
            Input::Url | Input::UrlOrPage => json!("https://e.example/v"),
            Input::Page => json!("pages/v"),
            Input::Color => json!("#abc"),
            Input::Bool => json!(true),
            Input::Number => json!(12),
            Input::List => json!([object(f.items.unwrap())]),
        }
    }

    fn object(fields: &[FieldSchema]) -> Value {
        Value::Object(
            fields
                .iter()
                .map(|f| (f.name.to_string(), sample(f)))
                .collect::<Map<_, _>>(),
        )
    }

    fn part(k: &KindSchema) -> Value {
        let mut o = object(k.fields);
        o.as_object_mut()
            .unwrap()
            .insert("type".into(), json!(k.kind));
        o
    }

    /// The template check's verdict on one part: `None` when it is accepted, else the field.
    fn verdict(part: &Value) -> Option<String> {
        let t: Result<Template, _> =
            serde_json::from_value(json!({"id": "t", "title": "t", "parts": [part]}));
        match t {
            Err(e) => Some(format!("parse: {e}")),
            Ok(t) => t.check().err().map(|(f, _)| f),
        }
    }

    /// The field names serde knows for a struct, from its `deny_unknown_fields` refusal.
    fn serde_fields(value: Value) -> Vec<String> {
        let e = serde_json::from_value::<Part>(value)
            .unwrap_err()
            .to_string();
        let list = e.split("expected ").nth(1).unwrap_or("");
        list.split('`')
            .skip(1)
            .step_by(2)
            .map(str::to_string)
            .collect()
    }

    fn names(fields: &[FieldSchema]) -> Vec<String> {
        fields.iter().map(|f| f.name.to_string()).collect()
    }

    #[test]
    fn kinds_are_the_models() {
        let kinds: Vec<&str> = KINDS.iter().map(|k| k.kind).collect();
        let e = serde_json::from_str::<Part>(r#"{"type": "nope"}"#)
            .unwrap_err()
            .to_string();
        for k in &kinds {
            assert!(e.contains(&format!("`{k}`")), "{e}");
        }
        assert_eq!(e.matches('`').count(), 2 * (kinds.len() + 1), "{e}");
    }

    /// A sample of each kind with every field of the schema round-trips through the model and
    /// passes its check; serde's own field list is the schema's plus `fallback`.
    #[test]
    fn every_kind_round_trips_through_its_field_list() {
        for k in KINDS {
            let full = part(k);
            assert_eq!(verdict(&full), None, "{}: {full}", k.kind);
            let p: Part = serde_json::from_value(full.clone()).unwrap();
            assert_eq!(serde_json::to_value(&p).unwrap(), full, "{}", k.kind);
            let mut probe = full.clone();
            probe["zz_probe"] = json!(1);
            let mut want = names(k.fields);
            want.push("fallback".into());
            let mut got = serde_fields(probe);
            got.sort();
            want.sort();
            assert_eq!(got, want, "{}", k.kind);
            for f in k.fields {
                if let Some(items) = f.items {
                    let mut probe = full.clone();
                    probe[f.name][0]["zz_probe"] = json!(1);
                    let mut got = serde_fields(probe);
                    got.sort();
                    let mut want = names(items);
                    want.sort();
                    assert_eq!(got, want, "{}.{}", k.kind, f.name);
                }
            }
        }
    }

    /// Leaving out (or emptying) a required field is refused naming it; an optional one is not.
    #[test]
    fn required_fields_are_the_checks() {
        for k in KINDS {
            for f in k.fields {
                let mut p = part(k);
                p.as_object_mut().unwrap().remove(f.name);
                let refused = verdict(&p);
                assert_eq!(
                    refused.is_some(),
                    f.required,
                    "{}.{}: {refused:?}",
                    k.kind,
                    f.name
                );
                if f.required {
                    let r = refused.unwrap();
                    assert!(r.contains(f.name), "{}.{}: {r}", k.kind, f.name);
                    if f.input != Input::List {
                        let mut p = part(k);
                        p[f.name] = json!("");
                        assert!(
                            verdict(&p).is_some_and(|r| r.contains(f.name)),
                            "{}.{} empty",
                            k.kind,
                            f.name
                        );
                    }
                }
                if let Some(items) = f.items {
                    for item in items {
                        let mut p = part(k);
                        p[f.name][0].as_object_mut().unwrap().remove(item.name);
                        assert_eq!(
                            verdict(&p).is_some(),
                            item.required,
                            "{}.{}[0].{}",
                            k.kind,
                            f.name,
                            item.name
                        );
                    }
                }
            }
            if !k.one_of.is_empty() {
                let mut p = part(k);
                for f in k.one_of {
                    p.as_object_mut().unwrap().remove(*f);
                }
                assert!(verdict(&p).is_some(), "{}: one of {:?}", k.kind, k.one_of);
            }
        }
    }

    /// Every cap of the schema is the check's: one byte (or item) more is refused naming the field.
    #[test]
    fn caps_are_the_checks() {
        let over = |f: &FieldSchema, n: usize| -> Value {
            let pad = match f.input {
                Input::Url | Input::UrlOrPage => "https://e.example/",
                Input::Page => "pages/",
                _ => "",
            };
            json!(format!("{pad}{}", "a".repeat(n - pad.len())))
        };
        for k in KINDS {
            for f in k.fields {
                if let Some(max) = f.max_bytes {
                    let mut p = part(k);
                    p[f.name] = over(f, max);
                    assert_eq!(verdict(&p), None, "{}.{} at the cap", k.kind, f.name);
                    p[f.name] = over(f, max + 1);
                    assert_eq!(
                        verdict(&p).as_deref(),
                        Some(format!("parts[0].{}", f.name).as_str()),
                        "{}.{}",
                        k.kind,
                        f.name
                    );
                }
                if let (Some(max), Some(items)) = (f.max_items, f.items) {
                    let mut p = part(k);
                    p[f.name] = json!(vec![object(items); max + 1]);
                    assert_eq!(
                        verdict(&p).as_deref(),
                        Some(format!("parts[0].{}", f.name).as_str()),
                        "{}.{}",
                        k.kind,
                        f.name
                    );
                    for item in items.iter().filter(|i| i.max_bytes.is_some()) {
                        let mut p = part(k);
                        p[f.name][0][item.name] = over(item, item.max_bytes.unwrap() + 1);
                        assert_eq!(
                            verdict(&p).as_deref(),
                            Some(format!("parts[0].{}[0].{}", f.name, item.name).as_str())
                        );
                    }
                }
            }
        }
    }

    /// Link fields follow their grammar: a `javascript:` value is refused naming the field, and a
    /// web URL in a page field (or a page path in a web field) too.
    #[test]
    fn link_inputs_are_the_grammar() {
        for k in KINDS {
            for f in k.fields {
                let wrong = match f.input {
                    Input::Url => json!("pages/a"),
                    Input::Page => json!("https://e.example/"),
                    Input::UrlOrPage => json!("javascript:alert(1)"),
                    _ => continue,
                };
                let mut p = part(k);
                p[f.name] = wrong;
                assert_eq!(
                    verdict(&p).as_deref(),
                    Some(format!("parts[0].{}", f.name).as_str()),
                    "{}.{}",
                    k.kind,
                    f.name
                );
            }
            for f in k.fields.iter().filter(|f| f.items.is_some()) {
                for item in f.items.unwrap().iter().filter(|i| i.input == Input::Url) {
                    let mut p = part(k);
                    p[f.name][0][item.name] = json!("pages/a");
                    assert_eq!(
                        verdict(&p).as_deref(),
                        Some(format!("parts[0].{}[0].{}", f.name, item.name).as_str())
                    );
                }
            }
        }
    }
}
