//! The incremental frame decoder, fed arbitrary bytes in arbitrary pieces: never panics, never
//! returns a frame over its limit, never buffers much more than the limit, and every frame it
//! returns survives encode -> decode unchanged.
#![no_main]

use libfuzzer_sys::fuzz_target;
use quiver_shared::frame::{encode, Decoded, Endian, FrameDecoder};

const MAX: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Some((&split, rest)) = data.split_first() else {
        return;
    };
    for endian in [Endian::Little, Endian::Native] {
        let mut d = FrameDecoder::new(endian, MAX);
        let step = usize::from(split % 17) + 1;
        let mut frames = Vec::new();
        for piece in rest.chunks(step) {
            d.push(piece);
            while let Some(item) = d.next() {
                match item {
                    Decoded::Frame(body) => {
                        assert!(body.len() <= MAX);
                        frames.push(body);
                    }
                    Decoded::TooLarge(e) => assert!(e.declared > MAX as u64),
                }
            }
        }
        // round trip of what came out
        let mut again = FrameDecoder::new(endian, MAX);
        for f in &frames {
            again.push(&encode(f, endian, MAX).expect("within the limit"));
        }
        for f in &frames {
            assert_eq!(again.next(), Some(Decoded::Frame(f.clone())));
        }
        assert!(again.is_idle());
    }
});
