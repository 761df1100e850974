//! A tolerant reader for the JavaScript object literals the 多客服 client hands to plugin pages.
//!
//! The client's strings are not always JSON: the official text shows `{retCode:0,errMsg:“”}`
//! (unquoted keys, typographic quotes) and the official demo reads events with
//! `new Function("return " + str)()`. This parser accepts what such an evaluation would accept for
//! plain data, without evaluating anything:
//!
//! - keys: `"quoted"`, `'quoted'`, typographic `“quoted”`/`‘quoted’`, bare identifiers or numbers;
//!   keys are trimmed (the seed writes `" channeltype "`);
//! - strings: `"..."`, `'...'`, `` `...` `` (no interpolation), and typographic `“...”`, `‘...’`
//!   where either quote of a pair closes (the seed writes `”标题”`); JavaScript escapes
//!   (`\n`, `\uXXXX`, `\u{X}`, `\xXX`, line continuations, `\q` → `q`);
//! - numbers as JavaScript writes them (`-1`, `.5`, `5.`, `1e3`, `0x1F`), kept as source text;
//! - `true`, `false`, `null`, `undefined`; any other bare word is kept as [`Literal::Word`]
//!   (JavaScript would look it up as a variable; the seed's `" latitude ": latitude` is such a
//!   placeholder);
//! - arrays and objects with trailing commas, `//` and `/* */` comments, any Unicode white space,
//!   a byte-order mark, surrounding parentheses and a trailing `;`.
//!
//! Missing commas, unbalanced brackets, unterminated strings and trailing text are errors.

use super::ParseError;

/// Nesting deeper than this is refused (the client sends flat objects).
const MAX_DEPTH: usize = 64;

/// A parsed literal value.
#[derive(Debug, Clone, PartialEq)]
pub enum Literal {
    Str(String),
    /// A number, as written (`"23.134521"`, `"-1"`, `"0x1F"`).
    Num(String),
    Bool(bool),
    Null,
    Undefined,
    /// A bare identifier in value position, kept as its name.
    Word(String),
    Array(Vec<Literal>),
    /// Members in source order, keys trimmed.
    Object(Vec<(String, Literal)>),
}

impl Literal {
    /// The member `key` of an object: keys compare trimmed and ASCII-case-insensitively; the first
    /// match wins.
    pub fn get(&self, key: &str) -> Option<&Literal> {
        match self {
            Literal::Object(members) => members
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(key.trim()))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// The text of a scalar: a string's value, a number's or a bare word's source text,
    /// `true`/`false`. `None` for `null`, `undefined`, arrays and objects.
    pub fn scalar_text(&self) -> Option<&str> {
        match self {
            Literal::Str(s) | Literal::Num(s) | Literal::Word(s) => Some(s),
            Literal::Bool(true) => Some("true"),
            Literal::Bool(false) => Some("false"),
            _ => None,
        }
    }

    /// Any value as text: scalars as [`scalar_text`](Self::scalar_text), `null` and `undefined`
    /// as the empty string, arrays and objects as JSON.
    pub fn to_text(&self) -> String {
        match self {
            Literal::Null | Literal::Undefined => String::new(),
            Literal::Array(_) | Literal::Object(_) => self.to_json().to_string(),
            other => other.scalar_text().unwrap_or_default().to_string(),
        }
    }

    /// The value as a number: numbers and numeric strings (trimmed); hexadecimal `0x..` too.
    pub fn as_f64(&self) -> Option<f64> {
        let text = match self {
            Literal::Num(s) | Literal::Str(s) => s.trim(),
            _ => return None,
        };
        parse_js_number(text)
    }

    /// The value as an integer, when it is a whole number that fits in an `i64`.
    pub fn as_i64(&self) -> Option<i64> {
        let text = match self {
            Literal::Num(s) | Literal::Str(s) => s.trim(),
            _ => return None,
        };
        if let Ok(v) = text.trim_start_matches('+').parse::<i64>() {
            return Some(v);
        }
        let f = parse_js_number(text)?;
        // Whole numbers only, and only where the f64 is exact.
        (f.fract() == 0.0 && f.abs() <= 9_007_199_254_740_992.0).then_some(f as i64)
    }

    /// The value as JSON: numbers that JSON cannot hold (hex, `NaN`) become strings, bare words
    /// strings, `undefined` null.
    pub fn to_json(&self) -> serde_json::Value {
        use serde_json::Value;
        match self {
            Literal::Str(s) | Literal::Word(s) => Value::String(s.clone()),
            Literal::Num(s) => {
                serde_json::from_str::<serde_json::Number>(s.trim_start_matches('+'))
                    .map(Value::Number)
                    .unwrap_or_else(|_| Value::String(s.clone()))
            }
            Literal::Bool(b) => Value::Bool(*b),
            Literal::Null | Literal::Undefined => Value::Null,
            Literal::Array(items) => Value::Array(items.iter().map(Literal::to_json).collect()),
            Literal::Object(members) => {
                let mut map = serde_json::Map::new();
                for (k, v) in members {
                    map.entry(k.clone()).or_insert_with(|| v.to_json());
                }
                Value::Object(map)
            }
        }
    }
}

fn parse_js_number(text: &str) -> Option<f64> {
    let (neg, body) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text.strip_prefix('+').unwrap_or(text)),
    };
    let v = if let Some(hex) = body.strip_prefix("0x").or_else(|| body.strip_prefix("0X")) {
        u64::from_str_radix(hex, 16).ok()? as f64
    } else if body
        .chars()
        .all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | 'E' | '+' | '-'))
    {
        body.parse::<f64>().ok()?
    } else {
        return None;
    };
    v.is_finite().then_some(if neg { -v } else { v })
}

/// Parses one literal value; see the module documentation for what is accepted.
pub fn parse(input: &str) -> Result<Literal, ParseError> {
    let mut p = Parser {
        src: input,
        pos: 0,
        depth: 0,
    };
    p.skip_blank()?;
    if p.peek().is_none() {
        return Err(ParseError::new("empty input: no object literal"));
    }
    let value = p.value()?;
    p.skip_blank()?;
    if p.peek() == Some(';') {
        p.bump();
        p.skip_blank()?;
    }
    if p.peek().is_some() {
        return Err(p.error("unexpected text after the value"));
    }
    Ok(value)
}

struct Parser<'a> {
    src: &'a str,
    pos: usize,
    depth: usize,
}

fn closing_quotes(open: char) -> Option<&'static [char]> {
    Some(match open {
        '"' => &['"'],
        '\'' => &['\''],
        '`' => &['`'],
        '“' | '”' => &['“', '”'],
        '‘' | '’' => &['‘', '’'],
        _ => return None,
    })
}

fn is_ident_start(c: char) -> bool {
    c.is_alphabetic() || c == '_' || c == '$'
}

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_' || c == '$'
}

impl Parser<'_> {
    fn peek(&self) -> Option<char> {
        self.src[self.pos..].chars().next()
    }

    fn peek2(&self) -> Option<char> {
        self.src[self.pos..].chars().nth(1)
    }

    fn bump(&mut self) -> Option<char> {
        let c = self.peek()?;
        self.pos += c.len_utf8();
        Some(c)
    }

    fn error(&self, what: &str) -> ParseError {
        let near: String = self.src[self.pos..].chars().take(16).collect();
        if near.is_empty() {
            ParseError::new(format!(
                "{what} at the end of the input (byte {})",
                self.pos
            ))
        } else {
            ParseError::new(format!("{what} at byte {} (near {near:?})", self.pos))
        }
    }

    /// White space (any Unicode space, BOM) and comments.
    fn skip_blank(&mut self) -> Result<(), ParseError> {
        loop {
            match self.peek() {
                Some(c) if c.is_whitespace() || c == '\u{feff}' => {
                    self.bump();
                }
                Some('/') if self.peek2() == Some('/') => {
                    while let Some(c) = self.bump() {
                        if c == '\n' || c == '\r' || c == '\u{2028}' || c == '\u{2029}' {
                            break;
                        }
                    }
                }
                Some('/') if self.peek2() == Some('*') => {
                    let start = self.pos;
                    self.pos += 2;
                    match self.src[self.pos..].find("*/") {
                        Some(end) => self.pos += end + 2,
                        None => {
                            self.pos = start;
                            return Err(self.error("unterminated /* comment"));
                        }
                    }
                }
                _ => return Ok(()),
            }
        }
    }

    fn value(&mut self) -> Result<Literal, ParseError> {
        if self.depth >= MAX_DEPTH {
            return Err(self.error("nesting too deep"));
        }
        let Some(c) = self.peek() else {
            return Err(self.error("expected a value"));
        };
        match c {
            '{' => self.nested(Parser::object),
            '[' => self.nested(Parser::array),
            '(' => self.nested(|p| {
                p.bump();
                p.skip_blank()?;
                let v = p.value()?;
                p.skip_blank()?;
                if p.bump() != Some(')') {
                    return Err(p.error("expected )"));
                }
                Ok(v)
            }),
            c if closing_quotes(c).is_some() => Ok(Literal::Str(self.string()?)),
            c if c.is_ascii_digit() || matches!(c, '-' | '+' | '.') => self.number(),
            c if is_ident_start(c) => {
                let word = self.word();
                Ok(match word {
                    "true" => Literal::Bool(true),
                    "false" => Literal::Bool(false),
                    "null" => Literal::Null,
                    "undefined" => Literal::Undefined,
                    w => Literal::Word(w.to_string()),
                })
            }
            _ => Err(self.error("expected a value")),
        }
    }

    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<Literal, ParseError>,
    ) -> Result<Literal, ParseError> {
        self.depth += 1;
        let v = f(self);
        self.depth -= 1;
        v
    }

    fn word(&mut self) -> &str {
        let start = self.pos;
        while self.peek().is_some_and(is_ident_char) {
            self.bump();
        }
        &self.src[start..self.pos]
    }

    fn object(&mut self) -> Result<Literal, ParseError> {
        self.bump(); // {
        let mut members = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some('}') => {
                    self.bump();
                    return Ok(Literal::Object(members));
                }
                None => return Err(self.error("unterminated object, expected }")),
                _ => {}
            }
            let key = self.key()?;
            self.skip_blank()?;
            if self.bump() != Some(':') {
                return Err(self.error(&format!("expected : after key {key:?}")));
            }
            self.skip_blank()?;
            let value = self.value()?;
            members.push((key, value));
            self.skip_blank()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some('}') => {}
                _ => return Err(self.error("expected , or } after a member")),
            }
        }
    }

    fn key(&mut self) -> Result<String, ParseError> {
        match self.peek() {
            Some(c) if closing_quotes(c).is_some() => Ok(self.string()?.trim().to_string()),
            Some(c) if is_ident_char(c) => Ok(self.word().to_string()),
            _ => Err(self.error("expected a key")),
        }
    }

    fn array(&mut self) -> Result<Literal, ParseError> {
        self.bump(); // [
        let mut items = Vec::new();
        loop {
            self.skip_blank()?;
            match self.peek() {
                Some(']') => {
                    self.bump();
                    return Ok(Literal::Array(items));
                }
                None => return Err(self.error("unterminated array, expected ]")),
                _ => {}
            }
            items.push(self.value()?);
            self.skip_blank()?;
            match self.peek() {
                Some(',') => {
                    self.bump();
                }
                Some(']') => {}
                _ => return Err(self.error("expected , or ] after an item")),
            }
        }
    }

    fn number(&mut self) -> Result<Literal, ParseError> {
        let start = self.pos;
        if matches!(self.peek(), Some('-' | '+')) {
            self.bump();
        }
        if self.peek() == Some('0') && matches!(self.peek2(), Some('x' | 'X')) {
            self.pos += 2;
            let digits = self.pos;
            while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                self.bump();
            }
            if self.pos == digits {
                return Err(self.error("expected hexadecimal digits"));
            }
        } else {
            let mut digits = 0;
            while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                self.bump();
                digits += 1;
            }
            if self.peek() == Some('.') {
                self.bump();
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                    digits += 1;
                }
            }
            if digits == 0 {
                self.pos = start;
                return Err(self.error("expected a number"));
            }
            if matches!(self.peek(), Some('e' | 'E')) {
                self.bump();
                if matches!(self.peek(), Some('-' | '+')) {
                    self.bump();
                }
                let exp = self.pos;
                while self.peek().is_some_and(|c| c.is_ascii_digit()) {
                    self.bump();
                }
                if self.pos == exp {
                    return Err(self.error("expected exponent digits"));
                }
            }
        }
        if self.peek().is_some_and(is_ident_char) {
            return Err(self.error("unexpected character in a number"));
        }
        Ok(Literal::Num(self.src[start..self.pos].to_string()))
    }

    fn string(&mut self) -> Result<String, ParseError> {
        let start = self.pos;
        let open = self.bump().expect("caller saw a quote");
        let close = closing_quotes(open).expect("caller saw a quote");
        let mut out = String::new();
        loop {
            let Some(c) = self.bump() else {
                self.pos = start;
                return Err(self.error("unterminated string"));
            };
            if close.contains(&c) {
                return Ok(out);
            }
            if c != '\\' {
                out.push(c);
                continue;
            }
            let Some(e) = self.bump() else {
                self.pos = start;
                return Err(self.error("unterminated string"));
            };
            match e {
                'n' => out.push('\n'),
                't' => out.push('\t'),
                'r' => out.push('\r'),
                'b' => out.push('\u{8}'),
                'f' => out.push('\u{c}'),
                'v' => out.push('\u{b}'),
                '0' if !self.peek().is_some_and(|c| c.is_ascii_digit()) => out.push('\0'),
                'x' => {
                    let v = self.hex_digits(2)?;
                    out.push(char::from_u32(v).unwrap_or('\u{fffd}'));
                }
                'u' => {
                    let unit = if self.peek() == Some('{') {
                        self.bump();
                        let begin = self.pos;
                        while self.peek().is_some_and(|c| c.is_ascii_hexdigit()) {
                            self.bump();
                        }
                        let v = u32::from_str_radix(&self.src[begin..self.pos], 16).ok();
                        if self.bump() != Some('}') || v.is_none() {
                            return Err(self.error("bad \\u{...} escape"));
                        }
                        out.push(v.and_then(char::from_u32).unwrap_or('\u{fffd}'));
                        continue;
                    } else {
                        self.hex_digits(4)?
                    };
                    if (0xD800..0xDC00).contains(&unit) && self.src[self.pos..].starts_with("\\u") {
                        let save = self.pos;
                        self.pos += 2;
                        match self.hex_digits(4) {
                            Ok(low) if (0xDC00..0xE000).contains(&low) => {
                                let cp = 0x10000 + ((unit - 0xD800) << 10) + (low - 0xDC00);
                                out.push(char::from_u32(cp).unwrap_or('\u{fffd}'));
                                continue;
                            }
                            _ => self.pos = save,
                        }
                    }
                    out.push(char::from_u32(unit).unwrap_or('\u{fffd}'));
                }
                '\r' => {
                    if self.peek() == Some('\n') {
                        self.bump();
                    }
                }
                '\n' | '\u{2028}' | '\u{2029}' => {}
                other => out.push(other),
            }
        }
    }

    fn hex_digits(&mut self, n: usize) -> Result<u32, ParseError> {
        let text: String = self.src[self.pos..].chars().take(n).collect();
        if text.len() != n || !text.chars().all(|c| c.is_ascii_hexdigit()) {
            return Err(self.error("bad escape: expected hexadecimal digits"));
        }
        self.pos += n;
        Ok(u32::from_str_radix(&text, 16).expect("checked hex"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn obj(members: &[(&str, Literal)]) -> Literal {
        Literal::Object(
            members
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect(),
        )
    }

    #[test]
    fn json_and_javascript_forms() {
        assert_eq!(
            parse(r#"{"a":1,'b':'x',c:true,d:null,e:undefined,f:[1,2,],}"#).unwrap(),
            obj(&[
                ("a", Literal::Num("1".into())),
                ("b", Literal::Str("x".into())),
                ("c", Literal::Bool(true)),
                ("d", Literal::Null),
                ("e", Literal::Undefined),
                (
                    "f",
                    Literal::Array(vec![Literal::Num("1".into()), Literal::Num("2".into())])
                ),
            ])
        );
        assert_eq!(
            parse("({ /* c */ a: -.5e1, // x\n b: 0x1F });").unwrap(),
            obj(&[
                ("a", Literal::Num("-.5e1".into())),
                ("b", Literal::Num("0x1F".into()))
            ])
        );
        assert_eq!(
            parse("{b: 0x1F}").unwrap().get("b").unwrap().as_f64(),
            Some(31.0)
        );
    }

    #[test]
    fn typographic_quotes_and_trimmed_keys() {
        let v = parse("{retCode:0,errMsg:“”}").unwrap();
        assert_eq!(v.get("retcode").unwrap().as_i64(), Some(0));
        assert_eq!(v.get("errMsg"), Some(&Literal::Str(String::new())));
        let v = parse("{ “title”:”标题”, ‘x’:’y’ }").unwrap();
        assert_eq!(v.get("title"), Some(&Literal::Str("标题".into())));
        assert_eq!(v.get("x"), Some(&Literal::Str("y".into())));
        let v = parse(r#"{ " channeltype ":"1" }"#).unwrap();
        assert_eq!(v.get("channeltype"), Some(&Literal::Str("1".into())));
    }

    #[test]
    fn escapes() {
        let v =
            parse(r#"["a\"b", 'it\'s', "\u4f60\u597d", "\uD83D\uDE00", "\x41\u{1F600}", "\q"]"#)
                .unwrap();
        assert_eq!(
            v,
            Literal::Array(vec![
                Literal::Str("a\"b".into()),
                Literal::Str("it's".into()),
                Literal::Str("你好".into()),
                Literal::Str("😀".into()),
                Literal::Str("A😀".into()),
                Literal::Str("q".into()),
            ])
        );
    }

    #[test]
    fn errors_name_the_place() {
        for bad in [
            "",
            "{a:1",
            "{a 1}",
            "{a:1 b:2}",
            "{a:'x}",
            "{a:1} x",
            "[1,,2]",
            "{a:1.}.",
            "{a:1x}",
            "/* open",
        ] {
            assert!(parse(bad).is_err(), "{bad:?} should fail");
        }
        let e = parse("{a:1 b:2}").unwrap_err();
        assert!(e.message.contains("expected , or }"), "{e}");
        let deep = "[".repeat(100) + &"]".repeat(100);
        assert!(parse(&deep).unwrap_err().message.contains("too deep"));
    }

    #[test]
    fn numbers_as_integers() {
        assert_eq!(Literal::Num("5".into()).as_i64(), Some(5));
        assert_eq!(Literal::Num("5.0".into()).as_i64(), Some(5));
        assert_eq!(Literal::Num("5.5".into()).as_i64(), None);
        assert_eq!(Literal::Str(" -1 ".into()).as_i64(), Some(-1));
        assert_eq!(Literal::Word("latitude".into()).as_f64(), None);
        assert_eq!(Literal::Num("1e400".into()).as_f64(), None);
    }
}
