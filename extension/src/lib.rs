//! Quiver's wasm core, exported to the extension's pages and background as the ES module
//! `pkg/quiver_core.js` (wasm-bindgen `--target web`, loaded through `webext/lib/core.js`).
//!
//! This is thin glue: parsing arguments and converting errors. Rendering and the platform wire
//! formats live in `quiver-shared`. The core runs only in extension pages and the background,
//! never in a content script (see ARCHITECTURE.md). The JS contract is `docs/core-api.md`.

use quiver_shared::{Context, Platform, Refusal, Target, Template};
use wasm_bindgen::prelude::*;

/// Error code for an argument the caller got wrong that is not a template problem
/// (the context is not a JSON object of strings). Template and platform problems carry the
/// codes of `quiver_shared::RefusalCode`.
pub const INVALID_ARGUMENT: &str = "invalid_argument";

/// Why a call failed: a stable code and a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreError {
    pub code: &'static str,
    pub message: String,
}

impl From<Refusal> for CoreError {
    fn from(r: Refusal) -> Self {
        CoreError {
            code: r.code.as_str(),
            message: r.message,
        }
    }
}

impl std::fmt::Display for CoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.message)
    }
}

/// The version of this build (the crate version, same as the extension's manifest version).
#[wasm_bindgen]
pub fn version() -> String {
    env!("CARGO_PKG_VERSION").to_string()
}

/// Renders part `part_index` of a template for `platform` and returns the JSON text of the
/// `WirePayload` (`{"platform", "wire", "post_as"}`).
///
/// `template_json` is a `Template` as `templates.list` returns it; `context_json` is a JSON object
/// of string values keyed by dotted variable name (`{"customer.name": "Ada"}`).
///
/// On refusal throws an `Error` whose `message` names the problem and whose `code` is the
/// refusal code (`quiver_shared::RefusalCode`, e.g. `missing_variable`, `invalid_template`), or
/// `invalid_argument` for a malformed context.
#[wasm_bindgen]
pub fn render_part(
    platform: &str,
    template_json: &str,
    part_index: u32,
    context_json: &str,
) -> Result<String, JsValue> {
    render_part_json(platform, template_json, part_index, context_json).map_err(to_js_error)
}

/// The logic behind [`render_part`], callable (and tested) without a JS host.
pub fn render_part_json(
    platform: &str,
    template_json: &str,
    part_index: u32,
    context_json: &str,
) -> Result<String, CoreError> {
    let platform = Platform::parse(platform)?;
    let template = parse_template(template_json)?;
    let ctx = parse_context(context_json)?;
    let index = usize::try_from(part_index).unwrap_or(usize::MAX);
    let payload = quiver_shared::render_part(platform, &template, index, &ctx)?;
    serde_json::to_string(&payload).map_err(|e| CoreError {
        code: "internal",
        message: format!("serializing the payload failed: {e}"),
    })
}

/// Renders part `part_index` for a full target: `{"platform", "channel"?, "sdk_version"?,
/// "params"? (the assistant frame URL's query), "nonce"? (fresh digits for wechat-dkf)}`.
/// Returns the `WirePayload` as JSON text; throws an `Error` with `code` on refusal.
#[wasm_bindgen]
pub fn render(
    target_json: &str,
    template_json: &str,
    part_index: u32,
    context_json: &str,
) -> Result<String, JsValue> {
    render_json(target_json, template_json, part_index, context_json).map_err(to_js_error)
}

/// [`render`] without the JS error conversion, for native tests.
pub fn render_json(
    target_json: &str,
    template_json: &str,
    part_index: u32,
    context_json: &str,
) -> Result<String, CoreError> {
    let target = parse_target(target_json)?;
    let template = parse_template(template_json)?;
    let ctx = parse_context(context_json)?;
    let index = usize::try_from(part_index).unwrap_or(usize::MAX);
    let payload = quiver_shared::render(&target, &template, index, &ctx)?;
    serde_json::to_string(&payload).map_err(|e| CoreError {
        code: "internal",
        message: format!("serializing the payload failed: {e}"),
    })
}

/// Which templates the target can show: one boost per template (in `templates_json` order) for
/// [`SearchIndex::search`]: 1.0 when its first part can be shown as it is, 0.5 when only through
/// its fallback chain, 0.0 when not at all (or the template does not parse).
#[wasm_bindgen]
pub fn channel_fit(target_json: &str, templates_json: &str) -> Result<Vec<f32>, JsValue> {
    channel_fit_json(target_json, templates_json).map_err(to_js_error)
}

/// [`channel_fit`] without the JS error conversion.
pub fn channel_fit_json(target_json: &str, templates_json: &str) -> Result<Vec<f32>, CoreError> {
    let target = parse_target(target_json)?;
    let list = parse_list(templates_json)?;
    Ok(list
        .iter()
        .map(|v| {
            fit(
                &target,
                template_from_value(v)
                    .as_ref()
                    .and_then(|t| t.parts.first()),
            )
        })
        .collect())
}

/// The variables a template uses, for the fill-in form: JSON text of
/// `[{"name", "label": string|null, "required": bool}]` in first-use order (declared ones first).
/// `required` is true for a variable declared required, and for one used somewhere without a
/// `|fallback` (the send is refused without a value). Built-in date/time variables are left out.
#[wasm_bindgen]
pub fn variables(template_json: &str) -> Result<String, JsValue> {
    variables_json(template_json).map_err(to_js_error)
}

/// [`variables`] without the JS error conversion: `quiver_shared::model::variables`.
pub fn variables_json(template_json: &str) -> Result<String, CoreError> {
    let template = parse_template(template_json)?;
    to_json(&quiver_shared::model::variables(&template))
}

/// Whether rendering the template reads the clock (a built-in date/time placeholder in some text
/// of a part or fallback): when it does not, a preview made from the same template, target and
/// other values is the preview of any time (`quiver_shared::model::reads_clock`).
#[wasm_bindgen]
pub fn reads_clock(template_json: &str) -> Result<bool, JsValue> {
    reads_clock_json(template_json).map_err(to_js_error)
}

/// [`reads_clock`] without the JS error conversion.
pub fn reads_clock_json(template_json: &str) -> Result<bool, CoreError> {
    Ok(quiver_shared::model::reads_clock(&parse_template(
        template_json,
    )?))
}

/// JSON text of a value of the core's own types (cannot fail for them; `internal` if it did).
fn to_json<T: serde::Serialize>(v: &T) -> Result<String, CoreError> {
    serde_json::to_string(v).map_err(|e| CoreError {
        code: "internal",
        message: format!("serializing the result failed: {e}"),
    })
}

/// What the customer will see, for every part of a template: JSON text of an array with one
/// `PartPreview` per part (docs/core-api.md):
///
/// ```text
/// {"index": 0,
///  "wire": WirePayload | null,            // exactly what render() returns for the part
///  "refusal": {"code", "message"} | null,  // exactly what render() throws for it
///  "rendition": 0 | 1 | ... | null,        // the rendition sent: its position in the fallback chain
///  "kind": "text" | ... | null,            // its type
///  "missing": ["order.id", ...],           // variables without a value that the send needs
///  "display": Display | null}              // what to draw; null when nothing would be sent
/// ```
///
/// `Display` is `{"kind": "text", "text"}`, `{"kind": "rich", "html", "text"}` (the HTML as the
/// sanitizer keeps it), `{"kind": "image", "url"?, "media_id"?}`, `{"kind": "news", "articles":
/// [{"title", "digest", "cover"?, "url"}]}`, `{"kind": "product", "name", "url"?, "image",
/// "segments": [{"text", "color"?, "bold", "break", "size"?}]}` or `{"kind": "miniprogram",
/// "title", "pagepath", "name"?, "avatar"?, "cover"?, "media_id"?}` (`?`: may be null), with only
/// what the platform sends and every text filled as on the wire; a missing value shows as
/// `[name]` in text and leaves its link out. Arguments as for [`render`] (`now` and `tz` in the
/// context give the agent's clock and zone). Throws `invalid_target`, `invalid_template` or
/// `invalid_argument` for arguments that do not parse.
#[wasm_bindgen]
pub fn preview(
    target_json: &str,
    template_json: &str,
    context_json: &str,
) -> Result<String, JsValue> {
    preview_json(target_json, template_json, context_json).map_err(to_js_error)
}

/// [`preview`] without the JS error conversion.
pub fn preview_json(
    target_json: &str,
    template_json: &str,
    context_json: &str,
) -> Result<String, CoreError> {
    let target = parse_target(target_json)?;
    let template = parse_template(template_json)?;
    let ctx = parse_context(context_json)?;
    to_json(&quiver_shared::preview::preview(&target, &template, &ctx))
}

/// [`preview`] of part `part_index` alone: JSON text of one `PartPreview` (an index out of range
/// gives the render's `invalid_template` refusal and no display).
#[wasm_bindgen]
pub fn preview_part(
    target_json: &str,
    template_json: &str,
    part_index: u32,
    context_json: &str,
) -> Result<String, JsValue> {
    preview_part_json(target_json, template_json, part_index, context_json).map_err(to_js_error)
}

/// [`preview_part`] without the JS error conversion.
pub fn preview_part_json(
    target_json: &str,
    template_json: &str,
    part_index: u32,
    context_json: &str,
) -> Result<String, CoreError> {
    let target = parse_target(target_json)?;
    let template = parse_template(template_json)?;
    let ctx = parse_context(context_json)?;
    let index = usize::try_from(part_index).unwrap_or(usize::MAX);
    to_json(&quiver_shared::preview::preview_part(
        &target, &template, index, &ctx,
    ))
}

/// Checks a library file as the importer does: JSON text of `[{"line", "column", "field",
/// "message"}]` (1-based line and column, 0 when unknown; `field` a path such as
/// `templates[2].parts[0].url`, `""` for the file), every error found, the importer's own first;
/// `[]` when the file imports. Never throws.
#[wasm_bindgen]
pub fn check_library(json_text: &str) -> String {
    to_json(&quiver_shared::Library::check_all(json_text)).unwrap_or_else(|_| "[]".into())
}

/// The part schema for the editor's forms, as JSON text: `{"kinds": [{"kind", "one_of":
/// [field], "fields": [{"name", "input", "required", "max_bytes", "min_items", "max_items",
/// "items": [field] | null}]}], "limits": {"label_bytes", "url_bytes", "body_bytes", "tags",
/// "variables", "parts", "fallback_depth", "template_bytes"}}`. `input` is one of `text`,
/// `textarea`, `html`, `url`, `page`, `url_or_page`, `media_id`, `color`, `bool`, `number`,
/// `list`. Every kind also takes a `fallback` part.
#[wasm_bindgen]
pub fn part_schema() -> String {
    to_json(&quiver_shared::schema::schema()).unwrap_or_default()
}

/// Puts chunked native-messaging replies back together (`quiver_shared::proto::Reassembler`):
/// `{"id", "chunk": {"seq", "total", "data"}}` pieces whose `data` in `seq` order concatenate to
/// the reply's JSON text.
#[wasm_bindgen]
#[derive(Debug, Default)]
pub struct Reassembler {
    inner: quiver_shared::proto::Reassembler,
}

#[wasm_bindgen]
impl Reassembler {
    #[wasm_bindgen(constructor)]
    pub fn new() -> Reassembler {
        Reassembler::default()
    }

    /// Feeds one frame (its JSON text). Returns the JSON text of the whole reply once the
    /// frame's reply is complete (a frame that is not a chunk: itself), `undefined` while pieces
    /// are missing. Throws an `Error` with `code` `internal` naming the problem for a malformed or
    /// impossible chunk, pieces that disagree, a reply over 64 MiB, or a joined text that is not
    /// a reply to the chunks' `id`; the reply's pieces are dropped.
    pub fn push(&mut self, frame_json: &str) -> Result<Option<String>, JsValue> {
        self.push_json(frame_json).map_err(to_js_error)
    }

    /// Drops the pieces received for the reply to `id_json` (the request's id as JSON text,
    /// e.g. `"7"`), for a request given up on.
    pub fn forget(&mut self, id_json: &str) {
        if let Ok(id) = serde_json::from_str::<serde_json::Value>(id_json) {
            self.inner.forget(&id);
        }
    }

    /// Replies still incomplete.
    #[wasm_bindgen(getter)]
    pub fn pending(&self) -> u32 {
        u32::try_from(self.inner.pending()).unwrap_or(u32::MAX)
    }
}

impl Reassembler {
    /// [`Reassembler::push`] without the JS error conversion.
    pub fn push_json(&mut self, frame_json: &str) -> Result<Option<String>, CoreError> {
        let internal = |message: String| CoreError {
            code: "internal",
            message,
        };
        let frame: serde_json::Value = serde_json::from_str(frame_json)
            .map_err(|e| internal(format!("the frame is not JSON: {e}")))?;
        let chunked = frame.get("chunk").is_some();
        let id = frame.get("id").cloned().unwrap_or_default();
        let Some(whole) = self.inner.push(frame).map_err(internal)? else {
            return Ok(None);
        };
        if chunked && (whole.get("chunk").is_some() || whole.get("id") != Some(&id)) {
            return Err(internal(format!(
                "the joined reply is not a reply to request {}",
                serde_json::to_string(&id).unwrap_or_default()
            )));
        }
        to_json(&whole).map(Some)
    }
}

/// The template search of `quiver_shared::search`, over a library given once as JSON (the
/// templates as `templates.list` returns them; `usage_count` and `last_used_at` are used when
/// present). Build once per library change, `search` per keystroke.
///
/// The background builds it once per library change and hands panels its [`SearchIndex::snapshot`];
/// a panel loads that with [`SearchIndex::from_snapshot`] (checks, no build). A loaded
/// index has no parts, so its channel fit comes from the index that was built.
#[wasm_bindgen]
#[derive(Debug)]
pub struct SearchIndex {
    inner: quiver_shared::search::SearchIndex,
    /// Each template's first part, for [`SearchIndex::channel_fit`]; `None` when loaded from a
    /// snapshot.
    first_parts: Option<Vec<Option<quiver_shared::Part>>>,
}

/// The fields of a `templates.list` row that the index reads; others are skipped unread.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default)]
struct IndexRow<'a> {
    id: String,
    title: String,
    shortcut: Option<String>,
    tags: Option<Vec<String>>,
    folder: String,
    #[serde(borrow)]
    parts: Option<&'a serde_json::value::RawValue>,
    usage_count: Option<u64>,
    last_used_at: Option<u64>,
}

/// [`channel_fit`] of one template by its first part.
fn fit(target: &Target, first: Option<&quiver_shared::Part>) -> f32 {
    match first.map(|p| quiver_shared::adapters::choose(target, p)) {
        Some(Ok((_, false))) => 1.0,
        Some(Ok((_, true))) => 0.5,
        _ => 0.0,
    }
}

#[wasm_bindgen]
impl SearchIndex {
    /// Builds the index. Throws `invalid_argument` when `templates_json` is not a JSON array.
    #[wasm_bindgen(constructor)]
    pub fn new(templates_json: &str) -> Result<SearchIndex, JsValue> {
        SearchIndex::build(templates_json).map_err(to_js_error)
    }

    /// Number of templates indexed.
    #[wasm_bindgen(getter)]
    pub fn length(&self) -> u32 {
        u32::try_from(self.inner.len()).unwrap_or(u32::MAX)
    }

    /// Searches: JSON text of `[{"id", "index", "score", "field"}]`, best first. `now_ms` (0:
    /// ignore recency) and `boost` (per template, as [`channel_fit`] returns; empty: none).
    pub fn search(&self, query: &str, limit: u32, now_ms: f64, boost: &[f32]) -> String {
        self.search_json(query, limit, now_ms, boost)
    }

    /// [`channel_fit`] of the indexed templates, in index order, without sending the library
    /// again: the boost for [`SearchIndex::search`]. Throws `invalid_argument` on an index loaded
    /// from a snapshot (it has no parts).
    pub fn channel_fit(&self, target_json: &str) -> Result<Vec<f32>, JsValue> {
        self.channel_fit_json(target_json).map_err(to_js_error)
    }

    /// The built index as bytes, for [`SearchIndex::from_snapshot`] in another page.
    pub fn snapshot(&self) -> Vec<u8> {
        self.inner.snapshot()
    }

    /// An index from [`SearchIndex::snapshot`]'s bytes. Throws `invalid_argument` naming what is
    /// wrong with bytes that are cut, changed or from another build's format.
    pub fn from_snapshot(bytes: Vec<u8>) -> Result<SearchIndex, JsValue> {
        SearchIndex::load(bytes).map_err(to_js_error)
    }
}

impl SearchIndex {
    /// [`SearchIndex::new`] without the JS error conversion.
    ///
    /// Each row is read straight from the text into the few fields the index needs (no JSON
    /// tree, no copy of the template): the library's text crosses once. A row whose parts do not
    /// parse is indexed without its body; a row that is not an object, without anything.
    pub fn build(templates_json: &str) -> Result<SearchIndex, CoreError> {
        use quiver_shared::search::IndexedTemplate;
        let list: Vec<&serde_json::value::RawValue> = serde_json::from_str(templates_json)
            .map_err(|e| CoreError {
                code: INVALID_ARGUMENT,
                message: format!("templates must be a JSON array: {e}"),
            })?;
        let mut items = Vec::with_capacity(list.len());
        let mut first_parts = Vec::with_capacity(list.len());
        for raw in list {
            let row: IndexRow = serde_json::from_str(raw.get()).unwrap_or_default();
            let parts: Vec<quiver_shared::Part> = row
                .parts
                .and_then(|p| serde_json::from_str(p.get()).ok())
                .unwrap_or_default();
            items.push(IndexedTemplate {
                id: row.id,
                title: row.title,
                shortcut: row.shortcut,
                tags: row.tags.unwrap_or_default(),
                folder: row.folder,
                body_text: quiver_shared::search::parts_text(&parts),
                usage_count: row
                    .usage_count
                    .map_or(0, |u| u32::try_from(u).unwrap_or(u32::MAX)),
                last_used_ms: row.last_used_at,
            });
            first_parts.push(parts.into_iter().next());
        }
        Ok(SearchIndex {
            inner: quiver_shared::search::SearchIndex::build(&items),
            first_parts: Some(first_parts),
        })
    }

    /// [`SearchIndex::from_snapshot`] without the JS error conversion.
    pub fn load(bytes: Vec<u8>) -> Result<SearchIndex, CoreError> {
        let inner =
            quiver_shared::search::SearchIndex::from_snapshot(bytes).map_err(|message| {
                CoreError {
                    code: INVALID_ARGUMENT,
                    message,
                }
            })?;
        Ok(SearchIndex {
            inner,
            first_parts: None,
        })
    }

    /// [`SearchIndex::channel_fit`] without the JS error conversion.
    pub fn channel_fit_json(&self, target_json: &str) -> Result<Vec<f32>, CoreError> {
        let target = parse_target(target_json)?;
        let first_parts = self.first_parts.as_ref().ok_or_else(|| CoreError {
            code: INVALID_ARGUMENT,
            message: "this index was loaded from a snapshot and has no parts: take the channel fit from the index that was built".into(),
        })?;
        Ok(first_parts
            .iter()
            .map(|first| fit(&target, first.as_ref()))
            .collect())
    }

    /// [`SearchIndex::search`], callable natively.
    pub fn search_json(&self, query: &str, limit: u32, now_ms: f64, boost: &[f32]) -> String {
        let opts = quiver_shared::search::SearchOptions {
            limit: limit as usize,
            now_ms: (now_ms.is_finite() && now_ms > 0.0).then_some(now_ms as u64),
            boost: (!boost.is_empty()).then_some(boost),
        };
        let hits: Vec<HitJson> = self
            .inner
            .search(query, &opts)
            .into_iter()
            .map(|h| HitJson {
                field: h.matched,
                id: self.inner.id(h.index),
                index: h.index,
                score: h.score,
            })
            .collect();
        to_json(&hits).unwrap_or_else(|_| "[]".into())
    }
}

/// One hit of [`SearchIndex::search`] as JSON, keys in the order they always had.
#[derive(serde::Serialize)]
struct HitJson<'a> {
    field: Option<quiver_shared::search::Field>,
    id: &'a str,
    index: usize,
    score: f64,
}

/// The Sobot workbench context (platform-spec §2.3) as URL parameters (`{"cid", "uid",
/// "partnerId", ...}`, JSON text), from the assistant frame's URL and the `selected` messages
/// received since it loaded (`messages_json`: a JSON array, applied in order; anything that is not
/// a `selected` message is ignored). Use it as the target's `params`.
#[wasm_bindgen]
pub fn sobot_context(url: &str, messages_json: &str) -> Result<String, JsValue> {
    sobot_context_json(url, messages_json).map_err(to_js_error)
}

/// [`sobot_context`] without the JS error conversion.
pub fn sobot_context_json(url: &str, messages_json: &str) -> Result<String, CoreError> {
    use quiver_shared::sobot::{parse_workbench_message, WorkbenchContext, WorkbenchMessage};
    let mut ctx = WorkbenchContext::from_url(url);
    for m in parse_list(messages_json)? {
        if let Some(WorkbenchMessage::Selected(sel)) = parse_workbench_message(&m) {
            ctx = ctx.switched(&sel);
        }
    }
    serde_json::to_string(&ctx.to_params()).map_err(|e| CoreError {
        code: "internal",
        message: format!("serializing the context failed: {e}"),
    })
}

fn parse_list(json: &str) -> Result<Vec<serde_json::Value>, CoreError> {
    serde_json::from_str(json).map_err(|e| CoreError {
        code: INVALID_ARGUMENT,
        message: format!("templates must be a JSON array: {e}"),
    })
}

fn parse_target(json: &str) -> Result<Target, CoreError> {
    serde_json::from_str(json).map_err(|e| CoreError {
        code: quiver_shared::RefusalCode::InvalidTarget.as_str(),
        message: format!("target is not valid: {e}"),
    })
}

/// A template from a `templates.list` row, without the store's own fields.
fn template_from_value(v: &serde_json::Value) -> Option<Template> {
    let mut v = v.clone();
    if let Some(o) = v.as_object_mut() {
        for k in [
            "usage_count",
            "last_used_at",
            "deleted_at",
            "updated_at",
            "created_at",
        ] {
            o.remove(k);
        }
    }
    // From text rather than from the `Value`: no second set of deserializers in the core.
    serde_json::from_str(&serde_json::to_string(&v).ok()?).ok()
}

fn parse_template(json: &str) -> Result<Template, CoreError> {
    let template: Template = serde_json::from_str(json).map_err(|e| CoreError {
        code: quiver_shared::RefusalCode::InvalidTemplate.as_str(),
        message: format!("template is not valid: {e}"),
    })?;
    template.check().map_err(|(field, why)| CoreError {
        code: quiver_shared::RefusalCode::InvalidTemplate.as_str(),
        message: if field.is_empty() {
            why
        } else {
            format!("{field}: {why}")
        },
    })?;
    Ok(template)
}

fn parse_context(json: &str) -> Result<Context, CoreError> {
    let json = json.trim();
    if json.is_empty() {
        return Ok(Context::new());
    }
    serde_json::from_str(json).map_err(|e| CoreError {
        code: INVALID_ARGUMENT,
        message: format!("context must be a JSON object of string values: {e}"),
    })
}

#[wasm_bindgen]
extern "C" {
    /// The JS `Error` class.
    #[wasm_bindgen(js_name = Error)]
    type JsErrorObject;

    #[wasm_bindgen(constructor, js_class = Error)]
    fn new(message: &str) -> JsErrorObject;

    #[wasm_bindgen(method, setter = code, js_class = Error)]
    fn set_code(this: &JsErrorObject, code: &str);
}

fn to_js_error(e: CoreError) -> JsValue {
    let err = JsErrorObject::new(&e.message);
    err.set_code(e.code);
    err.into()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::{json, Value};

    fn template(text: &str) -> String {
        json!({"id": "greet", "title": "Greeting", "revision": 3,
               "parts": [{"type": "text", "text": text}]})
        .to_string()
    }

    #[test]
    fn renders_udesk_text_with_fallback() {
        let out = render_part_json(
            "udesk",
            &template("Hello {{customer.name|there}}, how can I help you today?"),
            0,
            "{}",
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["platform"], "udesk");
        assert_eq!(v["post_as"], "string");
        assert_eq!(
            v["wire"],
            r#"{"method":"sendMsg","type":"text","content":"Hello there, how can I help you today?"}"#
        );
    }

    #[test]
    fn uses_context_values() {
        let out = render_part_json(
            "udesk",
            &template("Hi {{customer.name|there}}"),
            0,
            r#"{"customer.name": "Ada \"Q\""}"#,
        )
        .unwrap();
        let v: Value = serde_json::from_str(&out).unwrap();
        assert_eq!(
            v["wire"],
            r#"{"method":"sendMsg","type":"text","content":"Hi Ada \"Q\""}"#
        );
    }

    #[test]
    fn refusals_carry_codes() {
        let missing = render_part_json("udesk", &template("Hi {{customer.name}}"), 0, "{}");
        assert_eq!(missing.unwrap_err().code, "missing_variable");

        let platform = render_part_json("nope", &template("Hi"), 0, "{}").unwrap_err();
        let expected = Platform::parse("nope").unwrap_err();
        assert_eq!(platform.code, expected.code.as_str());
        assert_eq!(platform.message, expected.message);

        let index = render_part_json("udesk", &template("Hi"), 1, "{}").unwrap_err();
        assert_eq!(index.code, "invalid_template");
        assert!(index.message.contains("no part 1"), "{}", index.message);

        let bad = render_part_json("udesk", "{\"id\":1}", 0, "{}").unwrap_err();
        assert_eq!(bad.code, "invalid_template");

        let no_parts = json!({"id": "x", "title": "X", "parts": []}).to_string();
        let e = render_part_json("udesk", &no_parts, 0, "{}").unwrap_err();
        assert_eq!(e.code, "invalid_template");
        assert!(e.message.starts_with("parts: "), "{}", e.message);

        let ctx = render_part_json("udesk", &template("Hi"), 0, "{\"a\": 1}").unwrap_err();
        assert_eq!(ctx.code, INVALID_ARGUMENT);
        assert!(ctx.message.contains("context"), "{}", ctx.message);
    }

    #[test]
    fn empty_context_text_is_an_empty_context() {
        assert!(render_part_json("udesk", &template("Hi"), 0, "").is_ok());
    }

    #[test]
    fn search_index_finds_pinyin_initials_and_boosts() {
        let lib = json!([
            {"id": "wait", "title": "稍等", "shortcut": "sd", "tags": ["wait"],
             "parts": [{"type": "text", "text": "请稍等"}]},
            {"id": "greet", "title": "Greeting", "parts": [{"type": "text", "text": "Hi"}],
             "usage_count": 3, "last_used_at": 1000},
        ])
        .to_string();
        let idx = SearchIndex::build(&lib).unwrap();
        assert_eq!(idx.length(), 2);
        let hits: Value = serde_json::from_str(&idx.search_json("shd", 10, 0.0, &[])).unwrap();
        assert_eq!(hits[0]["id"], "wait");
        let hits: Value = serde_json::from_str(&idx.search_json("", 10, 0.0, &[0.0, 0.0])).unwrap();
        assert_eq!(hits[0]["id"], "greet");
        let hits: Value =
            serde_json::from_str(&idx.search_json("", 10, 0.0, &[50.0, 0.0])).unwrap();
        assert_eq!(hits[0]["id"], "wait");
        assert!(SearchIndex::build("{}").is_err());
    }

    #[test]
    fn index_reads_store_rows_and_keeps_first_parts_for_channel_fit() {
        let lib = json!([
            {"id": "t", "title": "Text", "parts": [{"type": "text", "text": "shipping soon"}],
             "revision": 4, "updated_at": 17, "created_at": 1, "deleted_at": null,
             "usage_count": 2, "last_used_at": 99},
            {"id": "m", "title": "Card", "parts": [{"type": "miniprogram", "title": "a",
              "pagepath": "p", "thumb_media_id": "m"}]},
            {"id": "bad", "title": "Bad parts", "tags": ["x"], "parts": [{"type": "nope"}]},
            "not an object",
        ])
        .to_string();
        let idx = SearchIndex::build(&lib).unwrap();
        assert_eq!(idx.length(), 4);
        // Bodies are indexed from the parts, store fields are skipped.
        let hits: Value = serde_json::from_str(&idx.search_json("shipping", 10, 0.0, &[])).unwrap();
        assert_eq!(hits[0]["id"], "t");
        assert_eq!(hits[0]["field"], "body");
        // A row whose parts do not parse keeps its title and tags.
        let hits: Value = serde_json::from_str(&idx.search_json("bad", 10, 0.0, &[])).unwrap();
        assert_eq!(hits[0]["id"], "bad");
        // Usage ranks the empty query.
        let hits: Value = serde_json::from_str(&idx.search_json("", 10, 0.0, &[])).unwrap();
        assert_eq!(hits[0]["id"], "t");
        for target in [
            r#"{"platform":"udesk"}"#,
            r#"{"platform":"sobot"}"#,
            r#"{"platform":"wechat-mp"}"#,
        ] {
            assert_eq!(
                idx.channel_fit_json(target).unwrap(),
                channel_fit_json(target, &lib).unwrap(),
                "{target}"
            );
        }
        assert_eq!(
            idx.channel_fit_json(r#"{"platform":"fax"}"#)
                .unwrap_err()
                .code,
            "invalid_target"
        );
    }

    #[test]
    fn channel_fit_and_variables() {
        let lib = json!([
            {"id": "t", "title": "T", "parts": [{"type": "text", "text": "x"}]},
            {"id": "m", "title": "M", "parts": [{"type": "miniprogram", "title": "a",
              "pagepath": "p", "thumb_media_id": "m"}]},
        ])
        .to_string();
        let fit = channel_fit_json(r#"{"platform":"sobot"}"#, &lib).unwrap();
        assert_eq!(fit, vec![0.0, 1.0]);
        let fit = channel_fit_json(r#"{"platform":"udesk"}"#, &lib).unwrap();
        assert_eq!(fit[0], 1.0);

        let t = json!({"id": "o", "title": "O",
            "variables": [{"name": "customer.name", "label": "Name", "required": false}],
            "parts": [{"type": "text", "text": "{{customer.name|there}} {{order.id}} {{date}}"}]})
        .to_string();
        let v: Value = serde_json::from_str(&variables_json(&t).unwrap()).unwrap();
        assert_eq!(
            v,
            json!([{"name": "customer.name", "label": "Name", "required": false},
                   {"name": "order.id", "label": null, "required": true}])
        );
    }

    #[test]
    fn preview_gives_wire_and_display_per_part() {
        let t = json!({"id": "p", "title": "P",
            "parts": [{"type": "text", "text": "Hi {{customer.name|there}} {{order.id}}"},
                      {"type": "product", "name": "Tea", "image": "https://img.example/t.png",
                       "fallback": {"type": "text", "text": "Tea"}}]})
        .to_string();
        let target = r#"{"platform":"udesk","channel":"wechat"}"#;
        let v: Value =
            serde_json::from_str(&preview_json(target, &t, r#"{"order.id":"7"}"#).unwrap())
                .unwrap();
        assert_eq!(v.as_array().unwrap().len(), 2);
        assert_eq!(
            v[0]["display"],
            json!({"kind": "text", "text": "Hi there 7"})
        );
        assert_eq!(
            v[0]["wire"]["wire"],
            serde_json::from_str::<Value>(
                &render_json(target, &t, 0, r#"{"order.id":"7"}"#).unwrap()
            )
            .unwrap()["wire"]
        );
        assert_eq!(
            (v[1]["rendition"].clone(), v[1]["kind"].clone()),
            (json!(1), json!("text"))
        );
        let one: Value =
            serde_json::from_str(&preview_part_json(target, &t, 0, "{}").unwrap()).unwrap();
        assert_eq!(one["missing"], json!(["order.id"]));
        assert_eq!(one["refusal"]["code"], "missing_variable");
        assert_eq!(one["wire"], Value::Null);
        assert_eq!(one["display"]["text"], "Hi there [order.id]");
        assert_eq!(
            preview_json(r#"{"platform":"fax"}"#, &t, "{}")
                .unwrap_err()
                .code,
            "invalid_target"
        );
    }

    #[test]
    fn check_library_and_schema_are_json() {
        let errs: Value = serde_json::from_str(&check_library(
            "{\"quiver\": 1,\n\"templates\": [{\"id\": 1}]}",
        ))
        .unwrap();
        assert_eq!(errs[0]["line"], 2);
        assert_eq!(errs[0]["field"], "templates[0].id");
        assert!(errs[0]["column"].as_u64().unwrap() > 0);
        assert_eq!(check_library(r#"{"quiver": 1, "templates": []}"#), "[]");
        let schema: Value = serde_json::from_str(&part_schema()).unwrap();
        assert_eq!(schema["kinds"][0]["kind"], "text");
        assert_eq!(schema["kinds"][0]["fields"][0]["max_bytes"], 65536);
        assert_eq!(schema["limits"]["parts"], 32);
    }

    #[test]
    fn reassembler_joins_checks_and_forgets() {
        let whole = json!({"id": 7, "result": {"text": "héllo"}}).to_string();
        let (a, b) = whole.split_at(10);
        let chunk = |id: Value, seq: u32, total: u32, data: &str| {
            json!({"id": id, "chunk": {"seq": seq, "total": total, "data": data}}).to_string()
        };
        let mut r = Reassembler::new();
        assert_eq!(r.push_json(&chunk(json!(7), 1, 2, b)).unwrap(), None);
        assert_eq!(r.pending(), 1);
        let got = r.push_json(&chunk(json!(7), 0, 2, a)).unwrap().unwrap();
        assert_eq!(
            serde_json::from_str::<Value>(&got).unwrap(),
            serde_json::from_str::<Value>(&whole).unwrap()
        );
        assert_eq!(r.pending(), 0);
        // a frame that is not a chunk comes back as it is
        assert_eq!(
            r.push_json(r#"{"id":1,"result":2}"#).unwrap().as_deref(),
            Some(r#"{"id":1,"result":2}"#)
        );
        // impossible pieces, and pieces that join to another request's reply
        assert!(r
            .push_json(&chunk(json!(8), 2, 2, "x"))
            .unwrap_err()
            .message
            .contains("impossible"));
        let e = r.push_json(&chunk(json!(9), 0, 1, &whole)).unwrap_err();
        assert_eq!(e.code, "internal");
        assert!(
            e.message.contains("not a reply to request 9"),
            "{}",
            e.message
        );
        assert!(r
            .push_json("{\"id\": 1, \"chunk\": {\"seq\": \"a\"}}")
            .is_err());
        // a request given up on leaves nothing behind
        assert_eq!(r.push_json(&chunk(json!(10), 0, 2, a)).unwrap(), None);
        r.forget("10");
        assert_eq!(r.pending(), 0);
    }

    #[test]
    fn sobot_context_follows_selected() {
        let url = "http://x/sobot/assistant.html?cid=C1&uid=U1&partnerId=p1&email=a%40b";
        let v: Value = serde_json::from_str(&sobot_context_json(url, "[]").unwrap()).unwrap();
        assert_eq!(v["cid"], "C1");
        assert_eq!(v["uid"], "U1");
        assert_eq!(v["partnerId"], "p1");
        let msgs =
            json!([{"name": "selected", "cid": "C2", "uid": "U2"}, {"name": "other", "cid": "X"}]);
        let v: Value =
            serde_json::from_str(&sobot_context_json(url, &msgs.to_string()).unwrap()).unwrap();
        assert_eq!(v["cid"], "C2");
        assert_eq!(v["uid"], "U2");
        assert!(v.get("partnerId").is_none(), "{v}");
        assert_eq!(v["email"], "a@b");
    }
}
