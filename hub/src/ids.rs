//! Ids, secrets and the clock: UUIDs (v7 for revisions the hub writes, v4 otherwise), device
//! tokens (256 random bits), invite codes (128 random bits), their SHA-256, milliseconds now.

use base64::Engine;
use sha2::{Digest, Sha256};

pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// A random UUID (v4), lowercase hyphenated.
pub fn uuid4() -> String {
    uuid::Uuid::new_v4().to_string()
}

/// A time-ordered UUID (v7), lowercase hyphenated: the hub's own revisions (merges).
pub fn uuid7() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn random_b64(n: usize) -> String {
    let mut b = vec![0u8; n];
    getrandom::fill(&mut b).expect("the operating system's random source failed");
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&b)
}

/// A device token: 256 random bits, base64url without padding.
pub fn token() -> String {
    random_b64(32)
}

/// An invite code: 128 random bits, base64url without padding (no `.`: the fingerprint follows
/// one).
pub fn invite_code() -> String {
    random_b64(16)
}

/// SHA-256 as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    Sha256::digest(data)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn secrets_have_their_size_and_differ() {
        let (a, b) = (super::token(), super::token());
        assert_eq!(a.len(), 43);
        assert_ne!(a, b);
        assert_eq!(super::invite_code().len(), 22);
        assert!(quiver_shared::sync::is_uuid(&super::uuid7()));
        assert!(quiver_shared::sync::is_uuid(&super::uuid4()));
        assert_eq!(
            super::sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
