//! The template model and the library file format (`{"quiver": 1, "templates": [...]}`).
//! Field names are documented in `docs/templates.md`.

use serde::{Deserialize, Serialize};

use crate::links::{self, LinkKind};
use crate::render;

/// The library file format version this build reads and writes.
pub const LIBRARY_FORMAT: u32 = 1;

/// The caps on a template (docs/templates.md, "Limits"): every string and list is bounded, and
/// so is the whole template, so that every template the store accepts can be read back in one
/// reply (a `templates.get`, a page of `templates.list`, an export). Strings are counted in
/// bytes of UTF-8.
pub mod limits {
    /// Names and labels: `id`, `title`, `folder`, `shortcut`, a tag, a variable's `name` and
    /// `label`, an article's `title` and `digest`, a product's `name`, a segment's `text` and
    /// `color`, a mini program's `title` and `name`, media ids.
    pub const LABEL: usize = 1024;
    /// URLs and paths: `url`, `cover`, `image`, `pic_url`, `avatar`, `thumb_url`, `pagepath`.
    pub const URL: usize = 4096;
    /// Bodies: a text part's `text`, a rich part's `html`.
    pub const BODY: usize = 64 * 1024;
    /// Tags of a template.
    pub const TAGS: usize = 64;
    /// Declared variables of a template.
    pub const VARIABLES: usize = 128;
    /// Parts of a template.
    pub const PARTS: usize = 32;
    /// Articles of a news part (WeChat's news message took at most 8).
    pub const ARTICLES: usize = 8;
    /// Segments of a product card.
    pub const SEGMENTS: usize = 64;
    /// Fallbacks in a chain below a part (a card, then a link, then text needs 2).
    pub const FALLBACK_DEPTH: usize = 4;
    /// The whole template as compact JSON (as the store keeps it, control characters escaped):
    /// a quarter of a reply page, so a page and a reply always hold it.
    pub const TEMPLATE_BYTES: usize = 256 * 1024;
}

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
            // Read back from text, not from the `Value`: one set of deserializers (the text's)
            // in the wasm core instead of a second one over `Value`; written by `to_string`, not
            // `Value`'s `Display`, which links a pretty printer too (docs/benchmarks.md).
            let text = serde_json::to_string(&serde_json::Value::Object(obj))
                .map_err(de::Error::custom)?;
            let mut de = serde_json::Deserializer::from_str(&text);
            fields(&kind, &mut de).map_err(|e| {
                // the position is in the buffered text, not the input: left out
                let msg = e.to_string();
                let at = format!(" at line {} column {}", e.line(), e.column());
                de::Error::custom(msg.strip_suffix(at.as_str()).unwrap_or(&msg))
            })
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

    /// Calls `f` with the name and value of every text field of the part and of its fallback
    /// chain, in declaration order (articles and segments in order), for what reads every
    /// placeholder ([`variables`]).
    pub fn each_text(&self, f: &mut dyn FnMut(&'static str, &str)) {
        let opt = |f: &mut dyn FnMut(&'static str, &str), name, v: &Option<String>| {
            if let Some(v) = v {
                f(name, v);
            }
        };
        match self {
            Part::Text { text, .. } => f("text", text),
            Part::Rich { html, .. } => f("html", html),
            Part::Image { url, media_id, .. } => {
                opt(f, "url", url);
                opt(f, "media_id", media_id);
            }
            Part::News { articles, .. } => {
                for a in articles {
                    f("title", &a.title);
                    f("digest", &a.digest);
                    f("cover", &a.cover);
                    f("url", &a.url);
                }
            }
            Part::Product {
                name,
                url,
                image,
                segments,
                ..
            } => {
                f("name", name);
                opt(f, "url", url);
                f("image", image);
                for s in segments {
                    f("text", &s.text);
                }
            }
            Part::Miniprogram(m) => {
                f("title", &m.title);
                f("pagepath", &m.pagepath);
                opt(f, "thumb_media_id", &m.thumb_media_id);
                opt(f, "pic_url", &m.pic_url);
                opt(f, "name", &m.name);
                opt(f, "avatar", &m.avatar);
                opt(f, "thumb_url", &m.thumb_url);
            }
        }
        if let Some(fb) = self.fallback() {
            fb.each_text(f);
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

impl ImportError {
    /// An error about `field` of the library `text`, at the field's place in the text when
    /// `jsonpos` finds it, else at `fallback` (line, column).
    fn located(text: &str, field: String, message: String, fallback: (usize, usize)) -> Self {
        let (line, column) = crate::jsonpos::locate(text, &field).unwrap_or(fallback);
        ImportError {
            line,
            column,
            field,
            message,
        }
    }
}

impl Library {
    /// Parses and checks a library file. Either every template is valid, or nothing is returned.
    pub fn from_json(text: &str) -> Result<Library, ImportError> {
        let at = |field, message, fallback| ImportError::located(text, field, message, fallback);
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

impl Library {
    /// Every error of a library file that can be found, each located as [`Library::from_json`]
    /// locates its one: a syntax error alone (nothing after it can be read); otherwise every
    /// unknown or mistyped field of the file and of each template (one per template: serde stops
    /// there), then the format version, then every fault of each template that did parse
    /// ([`Template::faults`]: empty fields, caps, links) and every duplicate id. The first is the
    /// error the importer reports. Empty when the file imports.
    pub fn check_all(text: &str) -> Vec<ImportError> {
        use serde::de::Error as _;
        use serde_json::value::RawValue;
        // Read without `from_json` and without path tracking: a path-tracked copy of every
        // deserializer of the library would cost the wasm core a tenth of its size
        // (docs/benchmarks.md); the field at fault is found from serde's position instead. Each value is read
        // from its own text in the file (`RawValue`), so keys keep their order (a part's `type`
        // first) and positions are the file's. The vectors hold the first error to be the
        // importer's (a syntax error names no field).
        let file: Vec<(String, &RawValue)> = match serde_json::from_str::<RawMap>(text) {
            Ok(RawMap(file)) => file,
            Err(e) => {
                return vec![ImportError {
                    line: e.line(),
                    column: e.column(),
                    field: String::new(),
                    message: strip_position(&e.to_string()),
                }]
            }
        };
        // (line, column) in the file of a position given inside `raw`
        let shift = |raw: &RawValue, (line, column): (usize, usize)| {
            let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
            let before = &text[..start];
            let first_line = before.matches('\n').count() + 1;
            let first_col = before.rsplit('\n').next().map_or(0, |l| l.chars().count());
            if line <= 1 {
                (first_line, first_col + column)
            } else {
                (first_line + line - 1, column)
            }
        };
        let at = |field: String, message: String, fallback: (usize, usize)| {
            ImportError::located(text, field, message, fallback)
        };
        let mut parse = vec![];
        let mut after = vec![];
        let mut format = None;
        let mut templates = vec![];
        let mut has_templates = false;
        for (k, raw) in &file {
            let err_at = |e: &serde_json::Error| shift(raw, (e.line(), e.column()));
            match k.as_str() {
                "quiver" => match serde_json::from_str::<u32>(raw.get()) {
                    Ok(n) => format = Some(n),
                    Err(e) => parse.push(at(
                        "quiver".into(),
                        strip_position(&e.to_string()),
                        err_at(&e),
                    )),
                },
                "templates" => {
                    has_templates = true;
                    let list = match serde_json::from_str::<Vec<&RawValue>>(raw.get()) {
                        Ok(list) => list,
                        Err(e) => {
                            parse.push(at(
                                "templates".into(),
                                strip_position(&e.to_string()),
                                err_at(&e),
                            ));
                            continue;
                        }
                    };
                    for (i, one) in list.into_iter().enumerate() {
                        match serde_json::from_str::<Template>(one.get()) {
                            Ok(t) => templates.push((i, t)),
                            Err(e) => {
                                // The field is the member where serde stopped (the
                                // importer's path-tracking deserializer names the same one).
                                let raw = one.get();
                                // serde stops after a bad scalar but before a bad map or
                                // sequence: from between a key and its value, step onto it.
                                let mut stop = byte_offset(raw, e.line(), e.column());
                                while raw
                                    .as_bytes()
                                    .get(stop)
                                    .is_some_and(|b| b.is_ascii_whitespace() || *b == b':')
                                {
                                    stop += 1;
                                }
                                let path = crate::jsonpos::path_at(raw, stop);
                                let field = match path.as_str() {
                                    "" => format!("templates[{i}]"),
                                    p if p.starts_with('[') => format!("templates[{i}]{p}"),
                                    p => format!("templates[{i}].{p}"),
                                };
                                let inner = e;
                                let pos = shift(one, (inner.line(), inner.column()));
                                parse.push(at(field, strip_position(&inner.to_string()), pos));
                            }
                        }
                    }
                }
                other => parse.push(at(
                    other.to_string(),
                    serde_json::Error::unknown_field(other, &["quiver", "templates"]).to_string(),
                    (0, 0),
                )),
            }
        }
        if !has_templates {
            after.push(at(
                String::new(),
                "missing field `templates`".into(),
                (0, 0),
            ));
        }
        match format {
            None if !file.iter().any(|(k, _)| k == "quiver") => {
                after.push(at(String::new(), "missing field `quiver`".into(), (0, 0)))
            }
            Some(n) if n != LIBRARY_FORMAT => after.push(at(
                "quiver".into(),
                format!("library format {n} is not supported (this build reads {LIBRARY_FORMAT})"),
                (0, 0),
            )),
            _ => {}
        }
        parse.sort_by_key(|e| (e.line, e.column));
        let mut seen = std::collections::HashSet::new();
        for (i, t) in &templates {
            for (field, message) in t.faults() {
                let sep = if field.is_empty() { "" } else { "." };
                after.push(at(format!("templates[{i}]{sep}{field}"), message, (0, 0)));
            }
            if !seen.insert(t.id.as_str()) {
                after.push(at(
                    format!("templates[{i}].id"),
                    format!("duplicate template id {:?}", t.id),
                    (0, 0),
                ));
            }
        }
        let mut all = parse;
        all.extend(after);
        all
    }
}

/// The byte offset in `text` of the last byte serde_json read when it reported `(line, column)`
/// (its column counts the bytes read on that line).
fn byte_offset(text: &str, line: usize, column: usize) -> usize {
    let start = if line <= 1 {
        0
    } else {
        text.match_indices('\n')
            .nth(line - 2)
            .map_or(text.len(), |(i, _)| i + 1)
    };
    (start + column).saturating_sub(1)
}

/// The members of a JSON object in the file's order, each as its own text.
struct RawMap<'a>(Vec<(String, &'a serde_json::value::RawValue)>);

impl<'de: 'a, 'a> serde::Deserialize<'de> for RawMap<'a> {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = RawMap<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a library: {\"quiver\": 1, \"templates\": [...]}")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut m: A,
            ) -> Result<RawMap<'de>, A::Error> {
                let mut out = vec![];
                while let Some(kv) = m.next_entry()? {
                    out.push(kv);
                }
                Ok(RawMap(out))
            }
        }
        d.deserialize_map(V)
    }
}

impl Library {
    /// Walks a library file one template at a time, without holding the parsed library: each
    /// template is checked (as by [`Library::from_json`]: the caps, duplicate ids, the format
    /// version) and handed to `each` with its index, then dropped. `each` may refuse with a
    /// message (reported at that template). Returns the number of templates; on an error,
    /// templates before it were already handed to `each` — walk once to check, then again to
    /// use, for all-or-nothing.
    pub fn walk(
        text: &str,
        mut each: impl FnMut(usize, Template) -> Result<(), String>,
    ) -> Result<usize, ImportError> {
        use serde::de::{self, DeserializeSeed, MapAccess, SeqAccess, Visitor};
        use std::cell::RefCell;

        // A refusal from our own checks: the field (relative to the file) and why.
        type Fault = RefCell<Option<(String, String)>>;

        struct Templates<'a, F> {
            each: &'a mut F,
            fault: &'a Fault,
            count: &'a mut usize,
        }
        impl<'de, F: FnMut(usize, Template) -> Result<(), String>> Visitor<'de> for Templates<'_, F> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an array of templates")
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
                let mut seen = std::collections::HashSet::new();
                while let Some(t) = seq.next_element::<Template>()? {
                    let i = *self.count;
                    let fault = if let Err((field, message)) = t.check() {
                        let sep = if field.is_empty() { "" } else { "." };
                        Some((format!("templates[{i}]{sep}{field}"), message))
                    } else if !seen.insert(t.id.clone()) {
                        Some((
                            format!("templates[{i}].id"),
                            format!("duplicate template id {:?}", t.id),
                        ))
                    } else {
                        (self.each)(i, t)
                            .err()
                            .map(|m| (format!("templates[{i}]"), m))
                    };
                    if let Some(f) = fault {
                        *self.fault.borrow_mut() = Some(f);
                        return Err(de::Error::custom("refused"));
                    }
                    *self.count += 1;
                }
                Ok(())
            }
        }
        impl<'de, F: FnMut(usize, Template) -> Result<(), String>> DeserializeSeed<'de>
            for Templates<'_, F>
        {
            type Value = ();
            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_seq(self)
            }
        }

        struct File<'a, F> {
            each: &'a mut F,
            fault: &'a Fault,
            count: &'a mut usize,
            format: &'a mut Option<u32>,
        }
        impl<'de, F: FnMut(usize, Template) -> Result<(), String>> Visitor<'de> for File<'_, F> {
            type Value = ();
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a library: {\"quiver\": 1, \"templates\": [...]}")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
                let mut templates = false;
                while let Some(k) = map.next_key::<String>()? {
                    match k.as_str() {
                        "quiver" => *self.format = Some(map.next_value()?),
                        "templates" => {
                            map.next_value_seed(Templates {
                                each: &mut *self.each,
                                fault: self.fault,
                                count: &mut *self.count,
                            })?;
                            templates = true;
                        }
                        other => {
                            let e: A::Error =
                                de::Error::unknown_field(other, &["quiver", "templates"]);
                            *self.fault.borrow_mut() = Some((other.to_string(), e.to_string()));
                            return Err(e);
                        }
                    }
                }
                if self.format.is_none() {
                    return Err(de::Error::missing_field("quiver"));
                }
                if !templates {
                    return Err(de::Error::missing_field("templates"));
                }
                Ok(())
            }
        }
        impl<'de, F: FnMut(usize, Template) -> Result<(), String>> DeserializeSeed<'de> for File<'_, F> {
            type Value = ();
            fn deserialize<D: de::Deserializer<'de>>(self, d: D) -> Result<(), D::Error> {
                d.deserialize_map(self)
            }
        }

        let at = |field, message, fallback| ImportError::located(text, field, message, fallback);
        let fault: Fault = RefCell::new(None);
        let mut count = 0;
        let mut format = None;
        let mut de = serde_json::Deserializer::from_str(text);
        let mut track = serde_path_to_error::Track::new();
        let result = File {
            each: &mut each,
            fault: &fault,
            count: &mut count,
            format: &mut format,
        }
        .deserialize(serde_path_to_error::Deserializer::new(&mut de, &mut track))
        .and_then(|()| de.end());
        if let Some((field, message)) = fault.into_inner() {
            return Err(at(field, message, (0, 0)));
        }
        if let Err(inner) = result {
            let field = track.path().to_string();
            let field = if field == "." { String::new() } else { field };
            return Err(at(
                field,
                strip_position(&inner.to_string()),
                (inner.line(), inner.column()),
            ));
        }
        if format != Some(LIBRARY_FORMAT) {
            return Err(at(
                "quiver".into(),
                format!(
                    "library format {} is not supported (this build reads {})",
                    format.unwrap_or(0),
                    LIBRARY_FORMAT
                ),
                (0, 0),
            ));
        }
        Ok(count)
    }
}

/// serde_json appends " at line L column C"; the position is reported separately.
fn strip_position(msg: &str) -> String {
    match msg.rfind(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// `s` cut to at most `max` bytes at a character boundary (for quoting input in a message).
pub(crate) fn truncate(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// A field longer than `max` bytes: its path (as given) and why.
fn cap(field: impl Into<String>, v: &str, max: usize) -> Result<(), (String, String)> {
    if v.len() > max {
        return Err((
            field.into(),
            format!("{} bytes, more than the limit of {max}", v.len()),
        ));
    }
    Ok(())
}

/// An optional field longer than `max` bytes.
fn cap_opt(field: &str, v: &Option<String>, max: usize) -> Result<(), (String, String)> {
    v.as_deref().map_or(Ok(()), |v| cap(field, v, max))
}

/// A list longer than `max` items.
fn cap_list<T>(field: &str, v: &[T], max: usize, what: &str) -> Result<(), (String, String)> {
    if v.len() > max {
        return Err((
            field.into(),
            format!("{} {what}, more than the limit of {max}", v.len()),
        ));
    }
    Ok(())
}

/// Counts the bytes a value serializes to, without keeping them.
#[derive(Debug, Default)]
struct ByteCount(usize);

impl std::io::Write for ByteCount {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0 += buf.len();
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Template {
    /// The names of the variables declared required: a send is refused without their values.
    pub fn required_variables(&self) -> Vec<&str> {
        self.variables
            .iter()
            .filter(|v| v.required)
            .map(|v| v.name.as_str())
            .collect()
    }

    /// Checks that serde cannot express, and the caps of [`limits`]. Returns the field
    /// (relative to the template) and why: the first of [`Template::faults`].
    pub fn check(&self) -> Result<(), (String, String)> {
        match self.faults().into_iter().next() {
            Some(f) => Err(f),
            None => Ok(()),
        }
    }

    /// Every fault [`Template::check`] finds, in the order it finds them (at most one per part
    /// in a fallback chain's link grammar; the size of the whole template last).
    pub fn faults(&self) -> Vec<(String, String)> {
        use limits::*;
        let mut out = vec![];
        let mut e = |r: Result<(), (String, String)>| {
            if let Err(f) = r {
                out.push(f);
            }
        };
        if self.id.trim().is_empty() {
            e(Err(("id".into(), "template id is empty".into())));
        }
        e(cap("id", &self.id, LABEL));
        if self.title.trim().is_empty() {
            e(Err(("title".into(), "title is empty".into())));
        }
        e(cap("title", &self.title, LABEL));
        e(cap("folder", &self.folder, LABEL));
        e(cap_opt("shortcut", &self.shortcut, LABEL));
        e(cap_list("tags", &self.tags, TAGS, "tags"));
        for (i, tag) in self.tags.iter().enumerate() {
            if tag.trim().is_empty() {
                e(Err((format!("tags[{i}]"), "tag is empty".into())));
            }
            e(cap(format!("tags[{i}]"), tag, LABEL));
        }
        if self.parts.is_empty() {
            e(Err((
                "parts".into(),
                "a template needs at least one part".into(),
            )));
        }
        e(cap_list("parts", &self.parts, PARTS, "parts"));
        e(cap_list(
            "variables",
            &self.variables,
            VARIABLES,
            "variables",
        ));
        for (i, v) in self.variables.iter().enumerate() {
            if !crate::render::valid_name(&v.name) {
                e(Err((
                    format!("variables[{i}].name"),
                    format!("invalid variable name {:?}", truncate(&v.name, 100)),
                )));
            }
            e(cap(format!("variables[{i}].name"), &v.name, LABEL));
            e(cap_opt(&format!("variables[{i}].label"), &v.label, LABEL));
        }
        for (i, p) in self.parts.iter().enumerate() {
            for (f, m) in p.faults(0) {
                e(Err((format!("parts[{i}]{f}"), m)));
            }
        }
        let size = self.serialized_len();
        if size > TEMPLATE_BYTES {
            e(Err((
                String::new(),
                format!(
                    "the template is {size} bytes of JSON, more than the limit of \
                     {TEMPLATE_BYTES} (control characters count as 6)"
                ),
            )));
        }
        out
    }

    /// The length of the template as compact JSON (the form the store keeps and replies carry).
    pub fn serialized_len(&self) -> usize {
        let mut n = ByteCount::default();
        match serde_json::to_writer(&mut n, self) {
            Ok(()) => n.0,
            Err(_) => usize::MAX,
        }
    }
}

impl Part {
    /// Every fault of a part at `depth` fallbacks below a template's part: the field (relative
    /// to the part, `.text`) and why.
    fn faults(&self, depth: usize) -> Vec<(String, String)> {
        use limits::*;
        let mut out = vec![];
        let mut e = |r: Result<(), (String, String)>| {
            if let Err(f) = r {
                out.push(f);
            }
        };
        let need = |ok: bool, field: &str, msg: &str| {
            if ok {
                Ok(())
            } else {
                Err((format!(".{field}"), msg.to_string()))
            }
        };
        match self {
            Part::Text { text, .. } => {
                e(need(!text.is_empty(), "text", "text is empty"));
                e(cap(".text", text, BODY));
            }
            Part::Rich { html, .. } => {
                e(need(!html.trim().is_empty(), "html", "html is empty"));
                e(cap(".html", html, BODY));
            }
            Part::Image { url, media_id, .. } => {
                e(need(
                    url.as_deref().is_some_and(|u| !u.is_empty())
                        || media_id.as_deref().is_some_and(|m| !m.is_empty()),
                    "url",
                    "an image needs a url or a media_id",
                ));
                e(cap_opt(".url", url, URL));
                e(cap_opt(".media_id", media_id, LABEL));
            }
            Part::News { articles, .. } => {
                e(need(
                    !articles.is_empty(),
                    "articles",
                    "a news part needs at least one article",
                ));
                e(cap_list(".articles", articles, ARTICLES, "articles"));
                for (i, a) in articles.iter().enumerate() {
                    if a.title.is_empty() {
                        e(Err((
                            format!(".articles[{i}].title"),
                            "title is empty".into(),
                        )));
                    }
                    if a.url.is_empty() {
                        e(Err((format!(".articles[{i}].url"), "url is empty".into())));
                    }
                    e(cap(format!(".articles[{i}].title"), &a.title, LABEL));
                    e(cap(format!(".articles[{i}].digest"), &a.digest, LABEL));
                    e(cap(format!(".articles[{i}].cover"), &a.cover, URL));
                    e(cap(format!(".articles[{i}].url"), &a.url, URL));
                }
            }
            Part::Product {
                name,
                url,
                image,
                segments,
                ..
            } => {
                e(need(!name.is_empty(), "name", "product name is empty"));
                e(need(!image.is_empty(), "image", "product image is empty"));
                e(cap(".name", name, LABEL));
                e(cap_opt(".url", url, URL));
                e(cap(".image", image, URL));
                e(cap_list(".segments", segments, SEGMENTS, "segments"));
                for (i, s) in segments.iter().enumerate() {
                    e(cap(format!(".segments[{i}].text"), &s.text, LABEL));
                    if let Some(c) = &s.color {
                        if !valid_color(c) {
                            e(Err((
                                format!(".segments[{i}].color"),
                                format!("{:?} is not a #RGB or #RRGGBB colour", truncate(c, 100)),
                            )));
                        }
                    }
                }
            }
            Part::Miniprogram(m) => {
                e(need(
                    !m.title.is_empty(),
                    "title",
                    "mini-program title is empty",
                ));
                e(need(
                    !m.pagepath.is_empty(),
                    "pagepath",
                    "mini-program pagepath is empty",
                ));
                e(cap(".title", &m.title, LABEL));
                e(cap(".pagepath", &m.pagepath, URL));
                e(cap_opt(".thumb_media_id", &m.thumb_media_id, LABEL));
                e(cap_opt(".pic_url", &m.pic_url, URL));
                e(cap_opt(".name", &m.name, LABEL));
                e(cap_opt(".avatar", &m.avatar, URL));
                e(cap_opt(".thumb_url", &m.thumb_url, URL));
            }
        }
        e(check_links(self));
        if let Some(f) = self.fallback() {
            if depth >= FALLBACK_DEPTH {
                e(Err((
                    ".fallback".into(),
                    format!("more than {FALLBACK_DEPTH} fallbacks in a chain"),
                )));
            } else {
                for (field, m) in f.faults(depth + 1) {
                    e(Err((format!(".fallback{field}"), m)));
                }
            }
        }
        out
    }
}

fn valid_color(c: &str) -> bool {
    let hex = c.strip_prefix('#').unwrap_or("");
    (hex.len() == 3 || hex.len() == 6) && hex.chars().all(|ch| ch.is_ascii_hexdigit())
}

/// Checks every link field of `part` (not its fallback) as written in the template. Returns the
/// field (`.articles[1].cover`, relative to the part) and why. Called by `Part::check`; the
/// grammar is `crate::links`'.
fn check_links(part: &Part) -> Result<(), (String, String)> {
    let at = |field: &str, kind: LinkKind, value: &str| {
        links::check_template(kind, value).map_err(|e| (format!(".{field}"), e))
    };
    let opt = |field: &str, kind: LinkKind, value: &Option<String>| match value {
        Some(v) => at(field, kind, v),
        None => Ok(()),
    };
    match part {
        Part::Text { .. } => Ok(()),
        Part::Rich { html, .. } => {
            crate::sanitize::check_template(html).map_err(|e| (".html".to_string(), e))
        }
        Part::Image { url, .. } => opt("url", LinkKind::Web, url),
        Part::News { articles, .. } => {
            for (i, a) in articles.iter().enumerate() {
                at(&format!("articles[{i}].url"), LinkKind::Web, &a.url)?;
                at(&format!("articles[{i}].cover"), LinkKind::Web, &a.cover)?;
            }
            Ok(())
        }
        Part::Product { url, image, .. } => {
            opt("url", LinkKind::WebOrPage, url)?;
            at("image", LinkKind::Web, image)
        }
        Part::Miniprogram(m) => {
            at("pagepath", LinkKind::Page, &m.pagepath)?;
            opt("pic_url", LinkKind::Web, &m.pic_url)?;
            opt("avatar", LinkKind::Web, &m.avatar)?;
            opt("thumb_url", LinkKind::Web, &m.thumb_url)
        }
    }
}

/// A variable a template uses, for the fill-in form.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VariableUse {
    pub name: String,
    pub label: Option<String>,
    /// Declared required, or used somewhere without a `|fallback`: the send is refused without
    /// a value.
    pub required: bool,
}

/// The variables of `template`, in first-use order (declared ones first): every placeholder of
/// every text field of every part and fallback, read by [`crate::render::scan`] as the render reads them.
/// Built-in date/time variables and invalid names (which the template check refuses) are left out.
pub fn variables(template: &Template) -> Vec<VariableUse> {
    let mut out: Vec<VariableUse> = template
        .variables
        .iter()
        .map(|v| VariableUse {
            name: v.name.clone(),
            label: v.label.clone(),
            required: v.required,
        })
        .collect();
    for part in &template.parts {
        part.each_text(&mut |_, text| {
            for p in render::placeholders(text) {
                if render::is_builtin(p.name) || !render::valid_name(p.name) {
                    continue;
                }
                let needs = p.fallback.is_none();
                match out.iter_mut().find(|v| v.name == p.name) {
                    Some(v) => v.required |= needs,
                    None => out.push(VariableUse {
                        name: p.name.to_string(),
                        label: None,
                        required: needs,
                    }),
                }
            }
        });
    }
    out
}

/// Whether rendering `template` reads the clock: a text of a part or of its fallback chain has a
/// built-in date/time placeholder (the render reads the context's `now` and `tz` for those only).
/// When it does not, a preview made earlier from the same template, target and other values is
/// exactly the preview of now (the palette reuses it on a click).
pub fn reads_clock(template: &Template) -> bool {
    let mut found = false;
    for part in &template.parts {
        part.each_text(&mut |_, text| {
            found = found
                || render::placeholders(text)
                    .iter()
                    .any(|p| render::is_builtin(p.name));
        });
    }
    found
}

#[cfg(test)]
mod tests {
    use super::limits::*;
    use super::*;
    use serde_json::json;

    #[test]
    fn reads_clock_finds_date_placeholders_in_parts_and_fallbacks() {
        let t = |parts: serde_json::Value| -> Template {
            serde_json::from_value(json!({"id": "t", "title": "T", "parts": parts})).unwrap()
        };
        assert!(!reads_clock(&t(
            json!([{"type": "text", "text": "{{a}} {{b|x}} {{ date_x }}"}])
        )));
        assert!(reads_clock(&t(
            json!([{"type": "text", "text": "at {{ time:%H }}"}])
        )));
        assert!(reads_clock(&t(json!([
            {"type": "text", "text": "hi"},
            {"type": "news", "articles": [{"title": "{{weekday}}", "digest": "", "cover": "https://e.x/c.png", "url": "https://e.x"}],
             "fallback": {"type": "text", "text": "x"}}
        ]))));
        assert!(reads_clock(&t(json!([{"type": "rich", "html": "<p>x</p>",
            "fallback": {"type": "text", "text": "{{datetime}}"}}]))));
    }

    /// The variables list and the substitution read through one scanner: a variable listed as
    /// required refuses the render of its own placeholders without a value, one listed as
    /// optional does not.
    #[test]
    fn variables_agree_with_substitution() {
        let t: Template = serde_json::from_value(serde_json::json!({
            "id": "t", "title": "T",
            "variables": [{"name": "decl", "required": true}],
            "parts": [{"type": "text", "text": "{{ a }} {{b|x}} {{date}} {{ c | y }}",
                       "fallback": {"type": "text", "text": "{{d}} {{decl|z}}"}}]}))
        .unwrap();
        let vars = variables(&t);
        let names: Vec<(&str, bool)> = vars.iter().map(|v| (v.name.as_str(), v.required)).collect();
        assert_eq!(
            names,
            [
                ("decl", true),
                ("a", true),
                ("b", false),
                ("c", false),
                ("d", true)
            ]
        );
        let required = t.required_variables();
        let now: crate::render::Context = [("now".to_string(), "0".to_string())].into();
        let mut texts = vec![];
        t.parts[0].each_text(&mut |_, s| texts.push(s.to_string()));
        for v in &vars {
            // each placeholder of `v` alone, as written in the template
            let mine: Vec<String> = texts
                .iter()
                .flat_map(|s| {
                    crate::render::placeholders(s)
                        .into_iter()
                        .filter(|p| p.name == v.name)
                        .map(|p| s[p.start..p.end].to_string())
                        .collect::<Vec<_>>()
                })
                .collect();
            let got = crate::render::render_text_with(&mine.concat(), &now, &required);
            assert_eq!(got.is_err(), v.required, "{} {got:?}", v.name);
        }
    }

    fn template(v: serde_json::Value) -> Template {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn part_with_type_later_reads_the_same_and_names_no_buffer_position() {
        let p: Part = serde_json::from_str(r#"{"text": "hi", "type": "text"}"#).unwrap();
        assert_eq!(
            p,
            Part::Text {
                text: "hi".into(),
                fallback: None
            }
        );
        let p: Part = serde_json::from_value(json!({"text": "hi", "type": "text"})).unwrap();
        assert_eq!(
            p,
            Part::Text {
                text: "hi".into(),
                fallback: None
            }
        );
        let e = serde_json::from_str::<Part>(r#"{"text": 5, "type": "text"}"#).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid type: integer `5`, expected a string at line 1 column 27"
        );
        let e =
            serde_json::from_str::<Part>(r#"{"x": 1, "type": "rich", "html": ""}"#).unwrap_err();
        assert!(
            e.to_string().starts_with("unknown field `x`, expected "),
            "{e}"
        );
        assert!(e.to_string().ends_with(" at line 1 column 36"), "{e}");
    }

    fn base() -> serde_json::Value {
        json!({"id": "t", "title": "T", "parts": [{"type": "text", "text": "x"}]})
    }

    fn fails(v: serde_json::Value) -> String {
        let (field, _) = template(v).check().expect_err("refused");
        field
    }

    #[test]
    fn every_string_and_list_is_capped_with_the_field_named() {
        assert_eq!(template(base()).check(), Ok(()));
        let long = |n: usize| "a".repeat(n);
        let mut v = base();
        v["title"] = json!(long(LABEL + 1));
        assert_eq!(fails(v), "title");
        let mut v = base();
        v["tags"] = json!(vec!["t"; TAGS + 1]);
        assert_eq!(fails(v), "tags");
        let mut v = base();
        v["tags"] = json!(["ok", long(LABEL + 1)]);
        assert_eq!(fails(v), "tags[1]");
        let mut v = base();
        v["variables"] = json!((0..20_000)
            .map(|i| json!({"name": format!("v{i}")}))
            .collect::<Vec<_>>());
        assert_eq!(fails(v), "variables");
        let mut v = base();
        v["variables"] = json!([{"name": "a", "label": long(LABEL + 1)}]);
        assert_eq!(fails(v), "variables[0].label");
        let mut v = base();
        v["parts"] = json!(vec![json!({"type": "text", "text": "x"}); PARTS + 1]);
        assert_eq!(fails(v), "parts");
        let mut v = base();
        v["parts"][0]["text"] = json!(long(BODY + 1));
        assert_eq!(fails(v), "parts[0].text");
        let article = json!({"title": "a", "url": "https://e.x/"});
        let mut v = base();
        v["parts"] = json!([{"type": "text", "text": "x"},
                            {"type": "news", "articles": vec![article.clone(); ARTICLES + 1]}]);
        assert_eq!(fails(v), "parts[1].articles");
        let mut v = base();
        let mut arts = vec![article.clone(); 4];
        arts[3]["url"] = json!(long(URL + 1));
        v["parts"] = json!([{"type": "text", "text": "x"}, {"type": "news", "articles": arts}]);
        assert_eq!(fails(v), "parts[1].articles[3].url");
        let mut v = base();
        v["parts"] = json!([{"type": "product", "name": "p", "image": "https://e.x/i.png",
                             "segments": vec![json!({"text": "s"}); SEGMENTS + 1]}]);
        assert_eq!(fails(v), "parts[0].segments");
        let mut v = base();
        v["parts"] = json!([{"type": "miniprogram", "title": "m", "pagepath": "pages/a",
                             "avatar": long(URL + 1)}]);
        assert_eq!(fails(v), "parts[0].avatar");
        let mut v = base();
        v["parts"][0]["fallback"] = json!({"type": "image", "media_id": long(LABEL + 1)});
        assert_eq!(fails(v), "parts[0].fallback.media_id");
        // a chain of fallbacks is bounded too
        let mut part = json!({"type": "text", "text": "x"});
        for _ in 0..=FALLBACK_DEPTH {
            part = json!({"type": "text", "text": "x", "fallback": part});
        }
        let mut v = base();
        v["parts"] = json!([part]);
        assert!(fails(v).ends_with(".fallback"));
    }

    #[test]
    fn the_whole_template_is_capped_as_json() {
        // control characters are 1 byte each but 6 in JSON: the cap counts what replies carry
        let n = BODY; // every part at its own cap
        let parts = vec![json!({"type": "text", "text": "\u{1}".repeat(n / 2)}); 2];
        let mut v = base();
        v["parts"] = json!(parts);
        let t = template(v);
        assert!(t.serialized_len() > TEMPLATE_BYTES);
        assert_eq!(serde_json::to_string(&t).unwrap().len(), t.serialized_len());
        let (field, msg) = t.check().unwrap_err();
        assert_eq!(field, "");
        assert!(msg.contains("bytes of JSON"), "{msg}");
    }
}

#[cfg(test)]
mod check_all_tests {
    use super::*;

    fn found(text: &str) -> Vec<(usize, usize, String)> {
        Library::check_all(text)
            .into_iter()
            .map(|e| (e.line, e.column, e.field))
            .collect()
    }

    #[test]
    fn a_syntax_error_is_the_only_one() {
        let text = "{\"quiver\": 1,\n \"templates\": [\n  {\"id\": \"a\",, }]}";
        let all = Library::check_all(text);
        assert_eq!(all.len(), 1);
        assert_eq!((all[0].line, all[0].column), (3, 14));
        // where the importer says it was reading is no field of the file: not named
        let importer = Library::from_json(text).unwrap_err();
        assert_eq!(importer.field, "templates[0].?");
        assert_eq!(
            all[0],
            ImportError {
                field: String::new(),
                ..importer
            }
        );
    }

    /// Every broken template is named, at its own line and field, with the cap and link faults
    /// of templates that did parse.
    #[test]
    fn every_error_of_a_file_with_many() {
        let long = "x".repeat(limits::LABEL + 1);
        let text = format!(
            r#"{{"quiver": 1, "extra": true,
"templates": [
  {{"id": "a", "title": "{long}", "parts": [{{"type": "text", "text": "x"}}]}},
  {{"id": "b", "title": "B", "parts": [{{"type": "video", "url": "https://e.x/v"}}]}},
  {{"id": "c", "title": "C", "parts": [
      {{"type": "image", "url": "javascript:alert(1)"}},
      {{"type": "news", "articles": [{{"title": "t", "url": "//e.x/a", "digest": "{long}"}}]}}]}},
  {{"id": "a", "title": "A again", "parts": [{{"type": "text", "text": "y"}}],
   "shortcut": 5}},
  {{"id": "d", "title": "D", "parts": [{{"type": "text", "text": "z"}}]}}
]}}"#
        );
        let all = Library::check_all(&text);
        let got: Vec<(usize, &str)> = all.iter().map(|e| (e.line, e.field.as_str())).collect();
        assert_eq!(
            got,
            [
                (1, "extra"),
                (4, "templates[1].parts[0].type"),
                (9, "templates[3].shortcut"),
                (3, "templates[0].title"),
                (6, "templates[2].parts[0].url"),
                (7, "templates[2].parts[1].articles[0].digest"),
                (7, "templates[2].parts[1].articles[0].url"),
            ],
            "{all:#?}"
        );
        // the first is what the importer reports
        assert_eq!(all[0], Library::from_json(&text).unwrap_err());
        assert!(
            all[1].message.contains("unknown variant `video`"),
            "{}",
            all[1].message
        );
        assert!(
            all[3].message.contains("more than the limit of 1024"),
            "{}",
            all[3].message
        );
        assert!(all[4].message.contains("javascript"), "{}", all[4].message);
        assert_eq!((all[1].column, all[3].column, all[4].column), (48, 24, 32));
    }

    /// Where serde stops in a template, check_all names the field the importer's path-tracking
    /// deserializer names, at the same place: every kind of parse error, at every depth.
    #[test]
    fn parse_errors_are_named_as_the_importer_names_them() {
        let bad = [
            r#"{"id": "a", "title": "A", "parts": [{"type": "text", "text": "x"}], "extra": 1}"#,
            r#"{"id": "a", "title": 5, "parts": [{"type": "text", "text": "x"}]}"#,
            r#"{"id": "a", "parts": [{"type": "text", "text": "x"}]}"#,
            r#"{"id": "a", "title": "A", "parts": {"type": "text"}}"#,
            r#"{"id": "a", "title": "A", "tags": ["x", 3], "parts": [{"type": "text", "text": "x"}]}"#,
            r#"{"id": "a", "title": "A", "revision": -1, "parts": [{"type": "text", "text": "x"}]}"#,
            r#"{"id": "a", "title": "A", "variables": [{"name": "n", "required": "yes"}], "parts": [{"type": "text", "text": "x"}]}"#,
            r#"{"id": "a", "title": "A", "variables": [{"name": "n", "bogus": 1}], "parts": [{"type": "text", "text": "x"}]}"#,
            r#"{"id": "a", "title": "A", "parts": [{"type": "text"}]}"#,
            r#"{"id": "a", "title": "A", "parts": [{"type": "text", "text": "x", "colour": 1}]}"#,
            r#"{"id": "a", "title": "A", "parts": [{"text": "x", "type": "nope"}]}"#,
            r#"{"id": "a", "title": "A", "parts": [{"type": "text", "text": "x", "fallback": {"type": "text", "text": 1}}]}"#,
            r#"{"id": "a", "title": "A", "parts": [{"type": "news", "articles": [{"title": "t", "url": "https://e.x", "digest": 4}]}]}"#,
            r#"{"id": "a", "title": "A", "parts": [{"type": "news", "articles": [{"title": "t", "url": "https://e.x", "x": ""}]}]}"#,
            r#"{"id": "a", "title": "A", "parts": [{"type": "text", "text": "x"}, 7]}"#,
            r#"{"id": "a", "title": "A", "shortcut": ["s"], "parts": [{"type": "text", "text": "x"}]}"#,
            "{\"id\": \"a\",\n \"title\": \"A\",\n \"parts\": [\n  {\"type\": \"image\",\n   \"url\": false}]}",
            r#"[1, 2]"#,
            r#""a string""#,
        ];
        for (n, one) in bad.iter().enumerate() {
            let text = format!("{{\"quiver\": 1, \"templates\": [\n{one}]}}");
            let all = Library::check_all(&text);
            let importer = Library::from_json(&text).unwrap_err();
            assert_eq!(all.first(), Some(&importer), "case {n}: {one}");
        }
    }

    #[test]
    fn duplicates_version_and_missing_fields() {
        assert_eq!(found(r#"{"quiver": 1, "templates": []}"#), []);
        let dup = "{\"quiver\": 2, \"templates\": [\n{\"id\": \"a\", \"title\": \"A\", \"parts\": [{\"type\": \"text\", \"text\": \"x\"}]},\n{\"id\": \"a\", \"title\": \"A\", \"parts\": [{\"type\": \"text\", \"text\": \"x\"}]}]}";
        assert_eq!(
            found(dup),
            [
                (1, 12, "quiver".to_string()),
                (3, 8, "templates[1].id".to_string())
            ]
        );
        let none = Library::check_all(r#"{"templates": 3}"#);
        let fields: Vec<&str> = none.iter().map(|e| e.field.as_str()).collect();
        assert_eq!(fields, ["templates", ""], "{none:?}");
        assert!(none[1].message.contains("missing field `quiver`"));
    }
}

#[cfg(test)]
mod walk_tests {
    use super::*;

    /// `walk` finds what `from_json` finds, at the same place, without holding the library.
    #[test]
    fn walk_agrees_with_from_json() {
        let good = r#"{"quiver": 1, "templates": [
  {"id": "a", "title": "A", "parts": [{"type": "text", "text": "x"}]},
  {"id": "b", "title": "B", "parts": [{"type": "text", "text": "y"}]}
]}"#;
        let mut ids = Vec::new();
        assert_eq!(
            Library::walk(good, |_, t| {
                ids.push(t.id);
                Ok(())
            }),
            Ok(2)
        );
        assert_eq!(ids, ["a", "b"]);
        for bad in [
            r#"{"quiver": 1, "templates": [
  {"id": "a", "title": "A", "parts": [{"type": "text", "text": "x"}]},
  {"id": "a", "title": "B", "parts": [{"type": "text", "text": "y"}]}]}"#,
            r#"{"quiver": 1, "templates": [
  {"id": "a", "title": "A", "parts": [{"type": "product", "name": "p", "image": "i",
     "segments": [{"text": "s", "color": "red"}]}]}]}"#,
            r#"{"quiver": 1, "templates": [{"id": "a", "title": "A", "parts": [{"type": "txt"}]}]}"#,
            r#"{"quiver": 2, "templates": []}"#,
            r#"{"templates": []}"#,
            r#"{"quiver": 1, "templates": [], "x": 1}"#,
        ] {
            let want = Library::from_json(bad).unwrap_err();
            let got = Library::walk(bad, |_, _| Ok(())).unwrap_err();
            assert_eq!(
                (got.line, got.column, &got.field),
                (want.line, want.column, &want.field),
                "{bad}"
            );
        }
    }
}
