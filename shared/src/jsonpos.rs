//! Finds where a value sits in JSON text, by a path like `templates[1].parts[0].text`, so that
//! import errors can name the line of the field at fault even where serde lost the position.

/// 1-based (line, column) of the value at `path`, or `None` when the path is not in the text.
pub fn locate(text: &str, path: &str) -> Option<(usize, usize)> {
    let segs = parse_path(path)?;
    let bytes = text.as_bytes();
    let mut p = Parser { b: bytes, i: 0 };
    let off = p.find(&segs)?;
    let before = &text[..off];
    let line = before.matches('\n').count() + 1;
    let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Some((line, col))
}

/// The path (`a[1].b`, as [`locate`] reads it; empty for the root) of the innermost member or
/// element of `text` whose text holds the byte at `offset`. A member's key counts as the member:
/// an offset inside `"b"` of `{"b": 1}` is at `b`. Where the text is not JSON past some point, the
/// path is the innermost found before it.
pub fn path_at(text: &str, offset: usize) -> String {
    let mut p = Parser {
        b: text.as_bytes(),
        i: 0,
    };
    let mut path = String::new();
    p.path_to(offset, &mut path);
    path
}

#[derive(Debug, PartialEq)]
enum Seg {
    Key(String),
    Index(usize),
}

fn parse_path(path: &str) -> Option<Vec<Seg>> {
    let mut out = vec![];
    for piece in path.split('.').filter(|s| !s.is_empty()) {
        let (key, mut rest) = match piece.find('[') {
            Some(i) => (&piece[..i], &piece[i..]),
            None => (piece, ""),
        };
        if !key.is_empty() {
            out.push(Seg::Key(key.to_string()));
        }
        while let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            out.push(Seg::Index(r[..end].parse().ok()?));
            rest = &r[end + 1..];
        }
    }
    Some(out)
}

struct Parser<'a> {
    b: &'a [u8],
    i: usize,
}

impl Parser<'_> {
    fn ws(&mut self) {
        while self.i < self.b.len() && self.b[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    /// Offset of the value at `segs`, starting at the value under the cursor.
    fn find(&mut self, segs: &[Seg]) -> Option<usize> {
        self.ws();
        let Some((first, rest)) = segs.split_first() else {
            return Some(self.i);
        };
        match (self.b.get(self.i)?, first) {
            (b'{', Seg::Key(want)) => {
                self.i += 1;
                loop {
                    self.ws();
                    if self.b.get(self.i)? == &b'}' {
                        return None;
                    }
                    let key = self.string()?;
                    self.ws();
                    if self.b.get(self.i)? != &b':' {
                        return None;
                    }
                    self.i += 1;
                    if &key == want {
                        return self.find(rest);
                    }
                    self.skip_value()?;
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        _ => return None,
                    }
                }
            }
            (b'[', Seg::Index(want)) => {
                self.i += 1;
                let mut n = 0;
                loop {
                    self.ws();
                    if self.b.get(self.i)? == &b']' {
                        return None;
                    }
                    if n == *want {
                        return self.find(rest);
                    }
                    self.skip_value()?;
                    n += 1;
                    self.ws();
                    match self.b.get(self.i)? {
                        b',' => self.i += 1,
                        _ => return None,
                    }
                }
            }
            _ => None,
        }
    }

    /// At a value: extends `path` while `target` lies inside one of its members or elements.
    fn path_to(&mut self, target: usize, path: &mut String) -> Option<()> {
        self.ws();
        let open = *self.b.get(self.i)?;
        if open != b'{' && open != b'[' {
            return Some(());
        }
        self.i += 1;
        let mut n = 0;
        loop {
            self.ws();
            if matches!(self.b.get(self.i)?, b'}' | b']') {
                return Some(());
            }
            let mut key = None;
            if open == b'{' {
                let start = self.i;
                let k = self.string()?;
                if (start..self.i).contains(&target) {
                    push_key(path, &k);
                    return Some(());
                }
                key = Some(k);
                self.ws();
                if self.b.get(self.i)? != &b':' {
                    return None;
                }
                self.i += 1;
                self.ws();
            }
            let start = self.i;
            self.skip_value()?;
            if (start..self.i).contains(&target) {
                match &key {
                    Some(k) => push_key(path, k),
                    None => path.push_str(&format!("[{n}]")),
                }
                self.i = start;
                return self.path_to(target, path);
            }
            n += 1;
            self.ws();
            match self.b.get(self.i)? {
                b',' => self.i += 1,
                _ => return Some(()),
            }
        }
    }

    fn string(&mut self) -> Option<String> {
        if self.b.get(self.i)? != &b'"' {
            return None;
        }
        let start = self.i;
        self.i += 1;
        while self.b.get(self.i)? != &b'"' {
            if self.b[self.i] == b'\\' {
                self.i += 1;
            }
            self.i += 1;
        }
        self.i += 1;
        // From `str`, as every other read in the crate: `from_slice` would link a second copy of
        // serde_json's parser into the wasm core (docs/benchmarks.md). Both ends are `"` bytes
        // of the input text, so the slice is whole UTF-8.
        let text = std::str::from_utf8(&self.b[start..self.i]).ok()?;
        serde_json::from_str(text).ok()
    }

    fn skip_value(&mut self) -> Option<()> {
        self.ws();
        match self.b.get(self.i)? {
            b'"' => self.string().map(|_| ()),
            b'{' | b'[' => {
                let mut depth = 0usize;
                loop {
                    match self.b.get(self.i)? {
                        b'"' => {
                            self.string()?;
                            continue;
                        }
                        b'{' | b'[' => depth += 1,
                        b'}' | b']' => {
                            depth -= 1;
                            if depth == 0 {
                                self.i += 1;
                                return Some(());
                            }
                        }
                        _ => {}
                    }
                    self.i += 1;
                }
            }
            _ => {
                while self.i < self.b.len() && !b",}] \t\r\n".contains(&self.b[self.i]) {
                    self.i += 1;
                }
                Some(())
            }
        }
    }
}

fn push_key(path: &mut String, key: &str) {
    if !path.is_empty() {
        path.push('.');
    }
    path.push_str(key);
}

#[cfg(test)]
mod tests {
    use super::{locate, path_at};

    #[test]
    fn names_the_value_at_an_offset() {
        let t = "{\n \"a\": [1, {\"b\": \"x,]}\"}, {\"c\":\n   [true, \"\\\"q\"]}],\n \"d\": 2}";
        let at = |needle: &str| path_at(t, t.find(needle).unwrap());
        assert_eq!(at("\"x,"), "a[1].b");
        assert_eq!(at("]}\""), "a[1].b");
        assert_eq!(at("\"b\""), "a[1].b");
        assert_eq!(at("true"), "a[2].c[0]");
        assert_eq!(at("2}"), "d");
        assert_eq!(at("{\"c\""), "a[2]");
        assert_eq!(at(": 2"), "");
        assert_eq!(path_at(t, 0), "");
        assert_eq!(path_at(t, t.len() + 5), "");
        // every path it names, locate finds again
        for i in 0..t.len() {
            let p = path_at(t, i);
            if !p.is_empty() {
                assert!(locate(t, &p).is_some(), "{p}");
            }
        }
    }

    #[test]
    fn finds_nested_values() {
        let t = "{\n \"a\": [1, {\"b\": \"x,]}\"}, {\"c\":\n   [true, \"\\\"q\"]}],\n \"d\": 2}";
        assert_eq!(locate(t, "a[1].b"), Some((2, 17)));
        assert_eq!(locate(t, "a[2].c[1]"), Some((3, 11)));
        assert_eq!(locate(t, "d"), Some((4, 7)));
        assert_eq!(locate(t, "a[3]"), None);
        assert_eq!(locate(t, "zz"), None);
    }
}
