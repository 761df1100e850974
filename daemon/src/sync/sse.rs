//! Server-sent events, as `GET /v1/events` streams them: `event:` and `data:` lines, an empty
//! line ends an event, `:` lines are comments (heartbeats).

/// Collects events from the bytes of a stream, however they are cut.
#[derive(Debug, Default)]
pub struct SseParser {
    buf: Vec<u8>,
    event: String,
    data: String,
    has_data: bool,
}

/// The longest line kept (a hub sends short pokes; anything longer is dropped).
const MAX_LINE: usize = 64 * 1024;

impl SseParser {
    /// Feeds bytes; returns the events they completed, as (name, data).
    pub fn push(&mut self, bytes: &[u8]) -> Vec<(String, String)> {
        let mut out = vec![];
        self.buf.extend_from_slice(bytes);
        while let Some(nl) = self.buf.iter().position(|b| *b == b'\n') {
            let mut line: Vec<u8> = self.buf.drain(..=nl).collect();
            line.pop();
            if line.last() == Some(&b'\r') {
                line.pop();
            }
            let line = String::from_utf8_lossy(&line).into_owned();
            if line.is_empty() {
                if self.has_data || !self.event.is_empty() {
                    let name = if self.event.is_empty() {
                        "message".to_string()
                    } else {
                        std::mem::take(&mut self.event)
                    };
                    out.push((name, std::mem::take(&mut self.data)));
                }
                self.event.clear();
                self.has_data = false;
                continue;
            }
            if line.starts_with(':') {
                continue;
            }
            let (field, value) = match line.split_once(':') {
                Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
                None => (line.as_str(), ""),
            };
            match field {
                "event" => self.event = value.to_string(),
                "data" => {
                    if self.has_data {
                        self.data.push('\n');
                    }
                    self.data.push_str(value);
                    self.has_data = true;
                }
                _ => {}
            }
        }
        if self.buf.len() > MAX_LINE {
            self.buf.clear();
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_joined_across_chunks_and_comments_skipped() {
        let mut p = SseParser::default();
        let text = ": hello\n\nevent: poke\ndata: {\"library\":\"l\",\r\ndata: \"head_seq\":3}\n\nevent: ping\n\n";
        let mut got = vec![];
        for chunk in text.as_bytes().chunks(5) {
            got.extend(p.push(chunk));
        }
        assert_eq!(
            got,
            vec![
                (
                    "poke".to_string(),
                    "{\"library\":\"l\",\n\"head_seq\":3}".to_string()
                ),
                ("ping".to_string(), String::new()),
            ]
        );
        assert_eq!(
            p.push(b"data: x\n\n"),
            vec![("message".to_string(), "x".to_string())]
        );
    }
}
