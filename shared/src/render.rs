//! Template variables: `{{customer.name}}` and `{{customer.name|fallback}}`.
//!
//! A variable without a value and without a fallback refuses the render: a raw placeholder never
//! reaches a customer.

use serde::Serialize;
use std::collections::BTreeMap;

/// Values known about the current conversation, keyed by dotted name (`customer.name`).
pub type Context = BTreeMap<String, String>;

/// Why a render or a send was refused. The codes are stable and documented.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RefusalCode {
    /// A variable has no value and no fallback, or a required variable is empty.
    MissingVariable,
    /// The template itself is broken (unclosed placeholder, missing part, ...).
    InvalidTemplate,
    /// The conversation's channel cannot show the part, and no fallback can be shown either.
    ChannelUnsupported,
    /// A field the platform requires is empty.
    FieldRequired,
    /// A value is longer than the platform allows.
    TooLong,
    /// A value has the wrong form (a colour, a URL, a number...).
    InvalidValue,
    /// The target (platform, channel, SDK version, conversation ids) is unknown or malformed.
    InvalidTarget,
    /// A Sobot `session-from` string breaks its grammar.
    InvalidSessionFrom,
}

impl RefusalCode {
    pub fn as_str(self) -> &'static str {
        match self {
            RefusalCode::MissingVariable => "missing_variable",
            RefusalCode::InvalidTemplate => "invalid_template",
            RefusalCode::ChannelUnsupported => "channel_unsupported",
            RefusalCode::FieldRequired => "field_required",
            RefusalCode::TooLong => "too_long",
            RefusalCode::InvalidValue => "invalid_value",
            RefusalCode::InvalidTarget => "invalid_target",
            RefusalCode::InvalidSessionFrom => "invalid_session_from",
        }
    }
}

/// A refusal with a message that names the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Refusal {
    pub code: RefusalCode,
    pub message: String,
}

impl Refusal {
    pub fn new(code: RefusalCode, message: impl Into<String>) -> Self {
        Refusal {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code.as_str(), self.message)
    }
}

/// True for a dotted variable name: ASCII letters, digits, `_`, `-` and `.`.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-')
}

/// Replaces every `{{name}}` / `{{name|fallback}}` in `text`.
pub fn render_text(text: &str, ctx: &Context) -> Result<String, Refusal> {
    render_text_with(text, ctx, &[])
}

/// Like [`render_text`], with the names of required variables: a required variable with no value
/// refuses the render even where its placeholder has a fallback.
///
/// Built-in date/time variables `date`, `time`, `datetime`, `weekday` are computed from the
/// context's `now` (ms since the Unix epoch) and `tz` (offset from UTC in minutes, default 0),
/// and take a strftime-like format: `{{date:%Y年%m月%d日}}` (`%Y %m %d %H %M %S %a %%`).
pub fn render_text_with(text: &str, ctx: &Context, required: &[&str]) -> Result<String, Refusal> {
    render_text_escaped(
        text,
        ctx,
        required,
        &mut |_, value, _| Ok(value.to_string()),
    )
}

/// How a value is written where its placeholder stands: given the output so far, the value, and
/// the template text after the placeholder, returns the text to insert (or refuses).
pub type Escape<'a> = dyn FnMut(&str, &str, &str) -> Result<String, Refusal> + 'a;

/// Like [`render_text_with`], with every value (a context value or a date) passed through
/// `escape` before it is inserted; fallbacks are the template's own text and are inserted as
/// written. Used for rich HTML (values HTML-escaped) and links (values percent-encoded).
pub fn render_text_escaped(
    text: &str,
    ctx: &Context,
    required: &[&str],
    escape: &mut Escape<'_>,
) -> Result<String, Refusal> {
    fill_text(text, ctx, required, escape, &mut |_, refusal| Err(refusal))
}

/// What a placeholder without a value becomes: given its name and the refusal the render makes
/// there, either that refusal (the render) or the text to insert as written (the preview, which
/// records the name and shows a hole).
pub type OnMissing<'a> = dyn FnMut(&str, Refusal) -> Result<String, Refusal> + 'a;

/// The one substitution loop over [`scan`]: [`render_text_escaped`] with the treatment of a
/// missing value left to `missing`. Every other refusal (an unclosed placeholder, a bad name or
/// format) stands.
pub fn fill_text(
    text: &str,
    ctx: &Context,
    required: &[&str],
    escape: &mut Escape<'_>,
    missing: &mut OnMissing<'_>,
) -> Result<String, Refusal> {
    let mut out = String::with_capacity(text.len());
    for token in scan(text) {
        let p = match token? {
            Token::Text(t) => {
                out.push_str(t);
                continue;
            }
            Token::Placeholder(p) => p,
        };
        let name = p.name;
        if !valid_name(name) {
            return Err(Refusal::new(
                RefusalCode::InvalidTemplate,
                format!(
                    "invalid variable name {name:?} in {}",
                    &text[p.start..p.end]
                ),
            ));
        }
        let value = match builtin_format(name) {
            Some(default_format) => {
                match format_now(ctx, name, p.format.unwrap_or(default_format))? {
                    Ok(v) => Some(v),
                    Err(no_clock) => {
                        out.push_str(&missing(name, no_clock)?);
                        continue;
                    }
                }
            }
            None => {
                if p.format.is_some() {
                    return Err(Refusal::new(
                        RefusalCode::InvalidTemplate,
                        format!("variable {name} takes no format (only date, time, datetime, weekday do)"),
                    ));
                }
                ctx.get(name).filter(|v| !v.is_empty()).cloned()
            }
        };
        let rest = &text[p.end..];
        match (value, p.fallback) {
            (Some(v), _) => {
                let e = escape(&out, &v, rest)?;
                out.push_str(&e);
            }
            (None, _) if required.contains(&name) => {
                let r = Refusal::new(
                    RefusalCode::MissingVariable,
                    format!("required variable {name} has no value"),
                );
                out.push_str(&missing(name, r)?);
            }
            (None, Some(f)) => out.push_str(f),
            (None, None) => {
                let r = Refusal::new(
                    RefusalCode::MissingVariable,
                    format!("variable {name} has no value and no fallback"),
                );
                out.push_str(&missing(name, r)?);
            }
        }
    }
    Ok(out)
}

/// A placeholder found in template text: its byte range (braces included) and its parts,
/// `{{ name:format | fallback }}` (name and fallback trimmed; the format as written).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placeholder<'a> {
    pub start: usize,
    pub end: usize,
    pub name: &'a str,
    pub format: Option<&'a str>,
    pub fallback: Option<&'a str>,
}

/// A piece of template text as [`scan`] reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Token<'a> {
    /// Text outside placeholders, as written.
    Text(&'a str),
    Placeholder(Placeholder<'a>),
}

/// The placeholder grammar, in one place: `{{` opens, the next `}}` closes; inside, the first `|`
/// starts the fallback and, before it, the first `:` starts a date format. Yields the text and
/// the placeholders in order; an unclosed `{{` yields an `invalid_template` refusal and ends the
/// scan. The substitution ([`fill_text`]), the checks made when a template is accepted
/// ([`placeholders`]) and the list of a template's variables ([`variables`]) all read through it.
pub fn scan(text: &str) -> Scan<'_> {
    Scan { text, at: 0 }
}

/// The iterator of [`scan`].
#[derive(Debug, Clone)]
pub struct Scan<'a> {
    text: &'a str,
    at: usize,
}

impl<'a> Iterator for Scan<'a> {
    type Item = Result<Token<'a>, Refusal>;

    fn next(&mut self) -> Option<Self::Item> {
        let text = self.text;
        let rest = text.get(self.at..).filter(|r| !r.is_empty())?;
        let Some(i) = rest.find("{{") else {
            self.at = text.len();
            return Some(Ok(Token::Text(rest)));
        };
        if i > 0 {
            self.at += i;
            return Some(Ok(Token::Text(&rest[..i])));
        }
        let start = self.at;
        let Some(len) = text[start + 2..].find("}}") else {
            self.at = text.len();
            return Some(Err(Refusal::new(
                RefusalCode::InvalidTemplate,
                format!(
                    "unclosed placeholder at byte {start}: {:?}",
                    truncate(&text[start..], 24)
                ),
            )));
        };
        let inner = &text[start + 2..start + 2 + len];
        let end = start + 2 + len + 2;
        self.at = end;
        let (head, fallback) = match inner.split_once('|') {
            Some((n, f)) => (n.trim(), Some(f.trim())),
            None => (inner.trim(), None),
        };
        let (name, format) = match head.split_once(':') {
            Some((n, f)) => (n.trim(), Some(f)),
            None => (head, None),
        };
        Some(Ok(Token::Placeholder(Placeholder {
            start,
            end,
            name,
            format,
            fallback,
        })))
    }
}

/// The placeholders of `text`, as [`render_text_with`] reads them, up to an unclosed `{{` (which
/// the render refuses). For checks made when a template is accepted.
pub fn placeholders(text: &str) -> Vec<Placeholder<'_>> {
    scan(text)
        .map_while(Result::ok)
        .filter_map(|t| match t {
            Token::Placeholder(p) => Some(p),
            Token::Text(_) => None,
        })
        .collect()
}

/// True for the built-in date/time variables, which the clock fills (`now`, `tz`).
pub fn is_builtin(name: &str) -> bool {
    builtin_format(name).is_some()
}

fn builtin_format(name: &str) -> Option<&'static str> {
    match name {
        "date" => Some("%Y-%m-%d"),
        "time" => Some("%H:%M"),
        "datetime" => Some("%Y-%m-%d %H:%M"),
        "weekday" => Some("%a"),
        _ => None,
    }
}

/// The built-in `name` in `format` at the context's `now` and `tz`; the inner `Err` is the
/// refusal for a context without the clock (a missing value), the outer one a bad format.
fn format_now(ctx: &Context, name: &str, format: &str) -> Result<Result<String, Refusal>, Refusal> {
    let Some(now) = ctx.get("now").and_then(|v| v.parse::<i64>().ok()) else {
        return Ok(Err(Refusal::new(
            RefusalCode::MissingVariable,
            format!("{name} needs the current time (context value `now`, ms since the epoch)"),
        )));
    };
    let tz: i64 = ctx.get("tz").and_then(|v| v.parse().ok()).unwrap_or(0);
    let secs = now.div_euclid(1000) + tz * 60;
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400);
    let (y, m, d) = crate::date::civil_from_days(days);
    let weekday = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"][days.rem_euclid(7) as usize];
    let mut out = String::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('Y') => out.push_str(&format!("{y:04}")),
            Some('m') => out.push_str(&format!("{m:02}")),
            Some('d') => out.push_str(&format!("{d:02}")),
            Some('H') => out.push_str(&format!("{:02}", sod / 3600)),
            Some('M') => out.push_str(&format!("{:02}", sod / 60 % 60)),
            Some('S') => out.push_str(&format!("{:02}", sod % 60)),
            Some('a') => out.push_str(weekday),
            Some('%') => out.push('%'),
            other => {
                return Err(Refusal::new(
                    RefusalCode::InvalidTemplate,
                    format!(
                        "unknown format directive %{} in {name} (known: %Y %m %d %H %M %S %a %%)",
                        other.map(String::from).unwrap_or_default()
                    ),
                ))
            }
        }
    }
    Ok(Ok(out))
}

fn truncate(s: &str, n: usize) -> &str {
    match s.char_indices().nth(n) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx(pairs: &[(&str, &str)]) -> Context {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn dates_from_now_and_tz() {
        // 2026-11-21T05:45:04Z
        let c = ctx(&[("now", "1795239904000"), ("tz", "480")]);
        assert_eq!(
            render_text("{{date}} {{time}} {{weekday}} {{date:%Y年%m月%d日}}", &c).unwrap(),
            "2026-11-21 13:45 Sat 2026年11月21日"
        );
        let utc = ctx(&[("now", "1795239904000")]);
        assert_eq!(
            render_text("{{datetime}}", &utc).unwrap(),
            "2026-11-21 05:45"
        );
        assert_eq!(
            render_text("{{date}}", &ctx(&[("now", "0")])).unwrap(),
            "1970-01-01"
        );
        assert_eq!(
            render_text("{{date}}", &ctx(&[("now", "951782400000")])).unwrap(),
            "2000-02-29"
        );
    }

    #[test]
    fn date_without_now_is_refused() {
        let e = render_text("{{date}}", &Context::new()).unwrap_err();
        assert_eq!(e.code, RefusalCode::MissingVariable);
    }

    #[test]
    fn required_beats_fallback() {
        let e = render_text_with(
            "Hi {{customer.name|there}}",
            &Context::new(),
            &["customer.name"],
        )
        .unwrap_err();
        assert_eq!(e.code, RefusalCode::MissingVariable);
        assert!(e.message.contains("required variable customer.name"));
    }

    #[test]
    fn the_scanner_reads_every_form_once() {
        let t = "a {{ x.y }} b {{date:%Y | now}} {{n|fb }}{{";
        let toks: Vec<_> = scan(t).collect();
        assert_eq!(toks[0], Ok(Token::Text("a ")));
        let Ok(Token::Placeholder(p)) = toks[1] else {
            panic!("{toks:?}")
        };
        assert_eq!((p.name, p.format, p.fallback), ("x.y", None, None));
        assert_eq!(&t[p.start..p.end], "{{ x.y }}");
        let Ok(Token::Placeholder(p)) = toks[3] else {
            panic!("{toks:?}")
        };
        assert_eq!(
            (p.name, p.format, p.fallback),
            ("date", Some("%Y"), Some("now"))
        );
        let Ok(Token::Placeholder(p)) = toks[5] else {
            panic!("{toks:?}")
        };
        assert_eq!((p.name, p.fallback), ("n", Some("fb")));
        assert_eq!(
            toks[6].as_ref().unwrap_err().code,
            RefusalCode::InvalidTemplate
        );
        assert_eq!(toks.len(), 7);
        assert_eq!(placeholders(t).len(), 3);
    }

    #[test]
    fn format_only_on_builtins() {
        let e = render_text("{{order.id:%Y}}", &ctx(&[("order.id", "1")])).unwrap_err();
        assert_eq!(e.code, RefusalCode::InvalidTemplate);
    }
}
