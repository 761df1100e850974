//! The template model and the library file format (`{"quiver": 1, "templates": [...]}`).
//! Field names are documented in `docs/templates.md`.

use serde::{Deserialize, Serialize};

/// The library file format version this build reads and writes.
pub const LIBRARY_FORMAT: u32 = 1;

/// A library file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Library {
    pub quiver: u32,
    pub templates: Vec<Template>,
}

/// A template: an ordered list of parts sent one after another.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Template {
    pub id: String,
    pub title: String,
    #[serde(default)]
    pub folder: String,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shortcut: Option<String>,
    /// Set by the store; a library file may leave it out.
    #[serde(default = "first_revision")]
    pub revision: u32,
    /// Declared variables: labels for the fill-in form, and which ones must be filled.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub variables: Vec<Variable>,
    pub parts: Vec<Part>,
}

fn first_revision() -> u32 {
    1
}

/// A declared variable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Variable {
    /// Dotted name as used in placeholders, e.g. `order.id`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// A required variable left empty refuses the send, even where a placeholder has a fallback.
    #[serde(default)]
    pub required: bool,
}

/// One part of a template, with an optional fallback used when the channel cannot show it.
///
/// Deserialized by hand (see `part_de`): serde's internally tagged enums buffer the whole object,
/// which loses the line and the path of a bad field inside a part.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Part {
    /// Plain text.
    Text {
        text: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<Box<Part>>,
    },
    /// HTML, cleaned by the sanitizer before it is sent.
    Rich {
        html: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<Box<Part>>,
    },
    /// An image by URL and/or WeChat media id.
    Image {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        media_id: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<Box<Part>>,
    },
    /// A news/link card: one or more articles.
    News {
        articles: Vec<Article>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<Box<Part>>,
    },
    /// A product card.
    Product {
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        url: Option<String>,
        image: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        segments: Vec<Segment>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        fallback: Option<Box<Part>>,
    },
    /// A mini-program card.
    Miniprogram(Box<MiniProgram>),
}

/// One article of a news card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Article {
    pub title: String,
    #[serde(default)]
    pub digest: String,
    /// Cover image URL.
    #[serde(default)]
    pub cover: String,
    pub url: String,
}

/// A styled text segment of a product card.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Segment {
    pub text: String,
    /// CSS hex colour, `#RRGGBB` or `#RGB`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub color: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bold: Option<bool>,
    /// Line break after this segment.
    #[serde(default, skip_serializing_if = "Option::is_none", rename = "break")]
    pub line_break: Option<bool>,
    /// Font size in px.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u32>,
}

/// A mini-program card.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MiniProgram {
    pub title: String,
    /// Page path, query allowed: `pages/order/detail?id=1`.
    pub pagepath: String,
    /// WeChat media id of the cover (what WeChat delivers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_media_id: Option<String>,
    /// Cover picture URL (Udesk accepts it instead of a media id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pic_url: Option<String>,
    /// Workbench display fields (Sobot): the mini program's name, avatar URL and cover URL.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub avatar: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub thumb_url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fallback: Option<Box<Part>>,
}

mod part_de {
    //! `Part` from JSON. When `type` is the first key (as Quiver writes parts, and as people
    //! do), the rest of the object streams into the variant's fields, so an error names the
    //! exact field and line (`templates[1].parts[2].segments[0].size`). Otherwise the object is
    //! buffered and the error names the part.

    use super::{Article, MiniProgram, Part, Segment};
    use serde::de::{self, value::MapAccessDeserializer, Deserializer, MapAccess, Visitor};
    use serde::Deserialize;

    const KINDS: &[&str] = &["text", "rich", "image", "news", "product", "miniprogram"];

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Text {
        text: String,
        #[serde(default)]
        fallback: Option<Box<Part>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Rich {
        html: String,
        #[serde(default)]
        fallback: Option<Box<Part>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Image {
        #[serde(default)]
        url: Option<String>,
        #[serde(default)]
        media_id: Option<String>,
        #[serde(default)]
        fallback: Option<Box<Part>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct News {
        articles: Vec<Article>,
        #[serde(default)]
        fallback: Option<Box<Part>>,
    }

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Product {
        name: String,
        #[serde(default)]
        url: Option<String>,
        image: String,
        #[serde(default)]
        segments: Vec<Segment>,
        #[serde(default)]
        fallback: Option<Box<Part>>,
    }

    fn fields<'de, D: Deserializer<'de>>(kind: &str, d: D) -> Result<Part, D::Error> {
        Ok(match kind {
            "text" => {
                let Text { text, fallback } = Text::deserialize(d)?;
                Part::Text { text, fallback }
            }
            "rich" => {
                let Rich { html, fallback } = Rich::deserialize(d)?;
                Part::Rich { html, fallback }
            }
            "image" => {
                let Image {
                    url,
                    media_id,
                    fallback,
                } = Image::deserialize(d)?;
                Part::Image {
                    url,
                    media_id,
                    fallback,
                }
            }
            "news" => {
                let News { articles, fallback } = News::deserialize(d)?;
                Part::News { articles, fallback }
            }
            "product" => {
                let Product {
                    name,
                    url,
                    image,
                    segments,
                    fallback,
                } = Product::deserialize(d)?;
                Part::Product {
                    name,
                    url,
                    image,
                    segments,
                    fallback,
                }
            }
            "miniprogram" => Part::Miniprogram(Box::new(MiniProgram::deserialize(d)?)),
            other => return Err(de::Error::unknown_variant(other, KINDS)),
        })
    }

    /// A part type name, refused unless it is one of [`KINDS`].
    struct Kind;

    impl<'de> de::DeserializeSeed<'de> for Kind {
        type Value = String;

        fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<String, D::Error> {
            let kind = String::deserialize(d)?;
            if KINDS.contains(&kind.as_str()) {
                Ok(kind)
            } else {
                Err(de::Error::unknown_variant(&kind, KINDS))
            }
        }
    }

    struct PartVisitor;

    impl<'de> Visitor<'de> for PartVisitor {
        type Value = Part;

        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("a part: an object with a `type`")
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Part, A::Error> {
            let first: Option<String> = map.next_key()?;
            if first.as_deref() == Some("type") {
                // checked while `type` is being read, so the error's path ends in `.type`
                let kind = map.next_value_seed(Kind)?;
                return fields(&kind, MapAccessDeserializer::new(map));
            }
            // `type` later in the object: buffer it, then read the fields without `type`.
            let mut obj = serde_json::Map::new();
            if let Some(k) = first {
                obj.insert(k, map.next_value()?);
            }
            while let Some((k, v)) = map.next_entry::<String, serde_json::Value>()? {
                obj.insert(k, v);
            }
            let kind = match obj.remove("type") {
                Some(serde_json::Value::String(k)) => k,
                Some(_) => return Err(de::Error::custom("`type` must be a string")),
                None => return Err(de::Error::missing_field("type")),
            };
            fields(&kind, serde_json::Value::Object(obj)).map_err(de::Error::custom)
        }
    }

    impl<'de> Deserialize<'de> for Part {
        fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Part, D::Error> {
            d.deserialize_map(PartVisitor)
        }
    }
}

impl Part {
    /// The part's type name as written in library files.
    pub fn kind(&self) -> &'static str {
        match self {
            Part::Text { .. } => "text",
            Part::Rich { .. } => "rich",
            Part::Image { .. } => "image",
            Part::News { .. } => "news",
            Part::Product { .. } => "product",
            Part::Miniprogram(_) => "miniprogram",
        }
    }

    /// The fallback part, if one is named.
    pub fn fallback(&self) -> Option<&Part> {
        match self {
            Part::Text { fallback, .. }
            | Part::Rich { fallback, .. }
            | Part::Image { fallback, .. }
            | Part::News { fallback, .. }
            | Part::Product { fallback, .. } => fallback.as_deref(),
            Part::Miniprogram(m) => m.fallback.as_deref(),
        }
    }
}

/// A library file that failed to import: where and what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ImportError {
    /// 1-based line in the file (0 when not known).
    pub line: usize,
    /// 1-based column (0 when not known).
    pub column: usize,
    /// Path of the field at fault, e.g. `templates[2].parts[0].text`.
    pub field: String,
    pub message: String,
}

impl std::fmt::Display for ImportError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "line {}, column {}, field {}: {}",
            self.line, self.column, self.field, self.message
        )
    }
}

impl Library {
    /// Parses and checks a library file. Either every template is valid, or nothing is returned.
    pub fn from_json(text: &str) -> Result<Library, ImportError> {
        let at = |field: String, message: String, fallback: (usize, usize)| {
            let (line, column) = crate::jsonpos::locate(text, &field).unwrap_or(fallback);
            ImportError {
                line,
                column,
                field,
                message,
            }
        };
        let de = &mut serde_json::Deserializer::from_str(text);
        let lib: Library = serde_path_to_error::deserialize(de).map_err(|e| {
            let field = e.path().to_string();
            let inner = e.into_inner();
            let field = if field == "." { String::new() } else { field };
            // A position inside an unknown field or a bad value is where serde stopped; a known
            // path is located in the text so the line names the field itself.
            at(
                field,
                strip_position(&inner.to_string()),
                (inner.line(), inner.column()),
            )
        })?;
        if lib.quiver != LIBRARY_FORMAT {
            return Err(at(
                "quiver".into(),
                format!(
                    "library format {} is not supported (this build reads {})",
                    lib.quiver, LIBRARY_FORMAT
                ),
                (0, 0),
            ));
        }
        let mut seen = std::collections::HashSet::new();
        for (i, t) in lib.templates.iter().enumerate() {
            if let Err((field, message)) = t.check() {
                let sep = if field.is_empty() { "" } else { "." };
                return Err(at(format!("templates[{i}]{sep}{field}"), message, (0, 0)));
            }
            if !seen.insert(t.id.as_str()) {
                return Err(at(
                    format!("templates[{i}].id"),
                    format!("duplicate template id {:?}", t.id),
                    (0, 0),
                ));
            }
        }
        Ok(lib)
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

impl Template {
    /// Checks that serde cannot express. Returns the field (relative to the template) and why.
    pub fn check(&self) -> Result<(), (String, String)> {
        if self.id.trim().is_empty() {
            return Err(("id".into(), "template id is empty".into()));
        }
        if self.title.trim().is_empty() {
            return Err(("title".into(), "title is empty".into()));
        }
        if self.parts.is_empty() {
            return Err(("parts".into(), "a template needs at least one part".into()));
        }
        for (i, v) in self.variables.iter().enumerate() {
            if !crate::render::valid_name(&v.name) {
                return Err((
                    format!("variables[{i}].name"),
                    format!("invalid variable name {:?}", v.name),
                ));
            }
        }
        for (i, p) in self.parts.iter().enumerate() {
            p.check().map_err(|(f, m)| (format!("parts[{i}]{f}"), m))?;
        }
        Ok(())
    }
}

impl Part {
    fn check(&self) -> Result<(), (String, String)> {
        let need = |ok: bool, field: &str, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err((format!(".{field}"), msg.to_string()))
            }
        };
        match self {
            Part::Text { text, .. } => need(!text.is_empty(), "text", "text is empty")?,
            Part::Rich { html, .. } => need(!html.trim().is_empty(), "html", "html is empty")?,
            Part::Image { url, media_id, .. } => need(
                url.as_deref().is_some_and(|u| !u.is_empty())
                    || media_id.as_deref().is_some_and(|m| !m.is_empty()),
                "url",
                "an image needs a url or a media_id",
            )?,
            Part::News { articles, .. } => {
                need(
                    !articles.is_empty(),
                    "articles",
                    "a news part needs at least one article",
                )?;
                for (i, a) in articles.iter().enumerate() {
                    if a.title.is_empty() {
                        return Err((format!(".articles[{i}].title"), "title is empty".into()));
                    }
                    if a.url.is_empty() {
                        return Err((format!(".articles[{i}].url"), "url is empty".into()));
                    }
                }
            }
            Part::Product {
                name,
                image,
                segments,
                ..
            } => {
                need(!name.is_empty(), "name", "product name is empty")?;
                need(!image.is_empty(), "image", "product image is empty")?;
                for (i, s) in segments.iter().enumerate() {
                    if let Some(c) = &s.color {
                        if !valid_color(c) {
                            return Err((
                                format!(".segments[{i}].color"),
                                format!("{c:?} is not a #RGB or #RRGGBB colour"),
                            ));
                        }
                    }
                }
            }
            Part::Miniprogram(m) => {
                need(!m.title.is_empty(), "title", "mini-program title is empty")?;
                need(
                    !m.pagepath.is_empty(),
                    "pagepath",
                    "mini-program pagepath is empty",
                )?;
            }
        }
        crate::links::check_part(self)?;
        if let Some(f) = self.fallback() {
            f.check()
                .map_err(|(field, m)| (format!(".fallback{field}"), m))?;
        }
        Ok(())
    }
}

fn valid_color(c: &str) -> bool {
    let hex = c.strip_prefix('#').unwrap_or("");
    (hex.len() == 3 || hex.len() == 6) && hex.chars().all(|ch| ch.is_ascii_hexdigit())
}
