//! Quiver's wasm core, exported to the extension's panel as the global `wasm_bindgen.*`
//! (wasm-bindgen `--target no-modules`).
//!
//! This is thin glue: parsing arguments and converting errors. Rendering and the platform wire
//! formats live in `quiver-shared`. The core runs only in extension pages (the panel), never in a
//! content script (see ARCHITECTURE.md).

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

/// [`variables`] without the JS error conversion: `quiver_shared::render::variables`.
pub fn variables_json(template_json: &str) -> Result<String, CoreError> {
    let template = parse_template(template_json)?;
    to_json(&quiver_shared::render::variables(&template))
}

/// JSON text of a value of the core's own types (cannot fail for them; `internal` if it did).
fn to_json<T: serde::Serialize>(v: &T) -> Result<String, CoreError> {
    serde_json::to_string(v).map_err(|e| CoreError {
        code: "internal",
        message: format!("serializing the result failed: {e}"),
    })
}

/// The template search of `quiver_shared::search`, over a library given once as JSON (the
/// templates as `templates.list` returns them; `usage_count` and `last_used_at` are used when
/// present). Build once per library change, `search` per keystroke.
///
/// The background builds it once per library change and hands panels its [`SearchIndex::snapshot`];
/// a panel loads that with [`SearchIndex::from_snapshot`] (copies and checks, no build). A loaded
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
    pub fn from_snapshot(bytes: &[u8]) -> Result<SearchIndex, JsValue> {
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
    pub fn load(bytes: &[u8]) -> Result<SearchIndex, CoreError> {
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
        let hits: Vec<serde_json::Value> = self
            .inner
            .search(query, &opts)
            .into_iter()
            .map(|h| {
                serde_json::json!({
                    "id": self.inner.id(h.index),
                    "index": h.index,
                    "score": h.score,
                    "field": h.matched,
                })
            })
            .collect();
        serde_json::Value::Array(hits).to_string()
    }
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
    serde_json::from_str(&v.to_string()).ok()
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
