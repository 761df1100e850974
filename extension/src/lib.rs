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
    let target: Target = serde_json::from_str(target_json).map_err(|e| CoreError {
        code: quiver_shared::RefusalCode::InvalidTarget.as_str(),
        message: format!("target is not valid: {e}"),
    })?;
    let template = parse_template(template_json)?;
    let ctx = parse_context(context_json)?;
    let index = usize::try_from(part_index).unwrap_or(usize::MAX);
    let payload = quiver_shared::render(&target, &template, index, &ctx)?;
    serde_json::to_string(&payload).map_err(|e| CoreError {
        code: "internal",
        message: format!("serializing the payload failed: {e}"),
    })
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
}
