//! A trivial native-messaging host that writes every frame back unchanged: the transport's
//! floor for the browser round-trip benchmark (`tests/e2e/bench/roundtrip.mjs`).
//! Not part of the product; built with `cargo build --release -p quiver-daemon --example echo_host`.

use std::io::{Read, Write};

fn main() {
    let mut stdin = std::io::stdin().lock();
    let mut stdout = std::io::stdout().lock();
    let mut len = [0u8; 4];
    let mut buf = Vec::new();
    while stdin.read_exact(&mut len).is_ok() {
        buf.resize(u32::from_ne_bytes(len) as usize, 0);
        if stdin.read_exact(&mut buf).is_err() {
            break;
        }
        if stdout
            .write_all(&len)
            .and_then(|()| stdout.write_all(&buf))
            .and_then(|()| stdout.flush())
            .is_err()
        {
            break;
        }
    }
}
