//! Length-prefixed frames: a 4-byte length, then that many bytes of UTF-8 JSON.
//!
//! The decoder is incremental and never buffers an oversized frame: a declared length above the
//! limit is reported once as [`Decoded::TooLarge`] and its bytes are then skipped as they arrive,
//! so a sender that declared gigabytes cannot make the receiver allocate them, and the stream stays
//! in step for the frames that follow.

/// The largest frame a browser accepts from a native host (both Chromium and Firefox).
pub const MAX_TO_BROWSER: usize = 1024 * 1024;
/// The largest frame the host or the daemon accepts.
pub const MAX_INBOUND_FRAME: usize = 4 * 1024 * 1024;

/// Byte order of the length prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endian {
    /// Native byte order: WebExtension native messaging (browser <-> host).
    Native,
    /// Little endian: the host <-> daemon socket.
    Little,
}

impl Endian {
    fn read(self, b: [u8; 4]) -> u32 {
        match self {
            Endian::Native => u32::from_ne_bytes(b),
            Endian::Little => u32::from_le_bytes(b),
        }
    }
    fn write(self, n: u32) -> [u8; 4] {
        match self {
            Endian::Native => n.to_ne_bytes(),
            Endian::Little => n.to_le_bytes(),
        }
    }
}

/// Encodes one frame. Fails when the body is longer than `max`.
pub fn encode(body: &[u8], endian: Endian, max: usize) -> Result<Vec<u8>, FrameTooLarge> {
    if body.len() > max {
        return Err(FrameTooLarge {
            declared: body.len() as u64,
            max,
        });
    }
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&endian.write(body.len() as u32));
    out.extend_from_slice(body);
    Ok(out)
}

/// A frame longer than the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FrameTooLarge {
    pub declared: u64,
    pub max: usize,
}

impl std::fmt::Display for FrameTooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "frame of {} bytes is larger than the limit of {} bytes",
            self.declared, self.max
        )
    }
}

/// What the decoder produced.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// A whole frame body.
    Frame(Vec<u8>),
    /// A frame whose declared length is over the limit; its bytes are being skipped.
    TooLarge(FrameTooLarge),
}

/// Incremental frame decoder.
#[derive(Debug)]
pub struct FrameDecoder {
    endian: Endian,
    max: usize,
    buf: Vec<u8>,
    /// Bytes of an oversized frame still to be thrown away.
    skip: u64,
}

impl FrameDecoder {
    pub fn new(endian: Endian, max: usize) -> Self {
        FrameDecoder {
            endian,
            max,
            buf: Vec::new(),
            skip: 0,
        }
    }

    /// Adds bytes read from the stream.
    pub fn push(&mut self, mut bytes: &[u8]) {
        if self.skip > 0 {
            let n = (self.skip.min(bytes.len() as u64)) as usize;
            self.skip -= n as u64;
            bytes = &bytes[n..];
        }
        self.buf.extend_from_slice(bytes);
    }

    /// The next complete item, if the buffered bytes hold one.
    #[allow(clippy::should_implement_trait)]
    pub fn next(&mut self) -> Option<Decoded> {
        if self.skip > 0 || self.buf.len() < 4 {
            return None;
        }
        let len = self
            .endian
            .read([self.buf[0], self.buf[1], self.buf[2], self.buf[3]]) as u64;
        if len > self.max as u64 {
            let available = (self.buf.len() - 4) as u64;
            let dropped = available.min(len);
            self.buf.drain(..4 + dropped as usize);
            self.skip = len - dropped;
            return Some(Decoded::TooLarge(FrameTooLarge {
                declared: len,
                max: self.max,
            }));
        }
        let len = len as usize;
        if self.buf.len() < 4 + len {
            return None;
        }
        let body = self.buf[4..4 + len].to_vec();
        self.buf.drain(..4 + len);
        Some(Decoded::Frame(body))
    }

    /// True when no partial frame is buffered and nothing is being skipped.
    pub fn is_idle(&self) -> bool {
        self.buf.is_empty() && self.skip == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_split_anywhere() {
        let a = encode(br#"{"id":1}"#, Endian::Little, 100).unwrap();
        let b = encode(br#"{"id":2,"x":"y"}"#, Endian::Little, 100).unwrap();
        let all: Vec<u8> = a.iter().chain(b.iter()).copied().collect();
        for split in 0..all.len() {
            let mut d = FrameDecoder::new(Endian::Little, 100);
            let mut got = vec![];
            for chunk in [&all[..split], &all[split..]] {
                d.push(chunk);
                while let Some(x) = d.next() {
                    got.push(x);
                }
            }
            assert_eq!(
                got,
                vec![
                    Decoded::Frame(br#"{"id":1}"#.to_vec()),
                    Decoded::Frame(br#"{"id":2,"x":"y"}"#.to_vec())
                ],
                "split at {split}"
            );
            assert!(d.is_idle());
        }
    }

    #[test]
    fn oversized_frame_is_skipped_and_stream_stays_in_step() {
        let mut d = FrameDecoder::new(Endian::Native, 8);
        let mut bytes = 20u32.to_ne_bytes().to_vec();
        bytes.extend(std::iter::repeat_n(b'x', 20));
        bytes.extend(encode(b"{}", Endian::Native, 8).unwrap());
        // feed one byte at a time
        let mut got = vec![];
        for b in &bytes {
            d.push(std::slice::from_ref(b));
            while let Some(x) = d.next() {
                got.push(x);
            }
        }
        assert_eq!(
            got,
            vec![
                Decoded::TooLarge(FrameTooLarge {
                    declared: 20,
                    max: 8
                }),
                Decoded::Frame(b"{}".to_vec())
            ]
        );
    }

    #[test]
    fn gigabyte_prefix_does_not_allocate() {
        let mut d = FrameDecoder::new(Endian::Native, MAX_INBOUND_FRAME);
        d.push(&0xC000_0000u32.to_ne_bytes());
        assert!(matches!(d.next(), Some(Decoded::TooLarge(_))));
        d.push(&[0u8; 1000]);
        assert!(d.next().is_none());
        assert!(d.buf.capacity() < 4096);
    }

    #[test]
    fn encode_refuses_over_limit() {
        assert!(encode(&[b' '; 11], Endian::Native, 10).is_err());
    }
}
