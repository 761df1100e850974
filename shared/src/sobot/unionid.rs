//! UnionID encryption for `session-from`'s `unionid` (seed 001, platform-spec §2.6).
//!
//! Documented: AES / ECB / PKCS5Padding (PKCS#7 on 16-byte blocks) with the key from the console
//! (*Docking Channel Settings → Channel Key → UnionID encryption*). Not documented, and therefore
//! options: how the key text becomes key bytes, how the ciphertext is written, and whether it is
//! URL-encoded inside `session-from`. The defaults are the common Java defaults — the key's UTF-8
//! bytes, standard Base64 with padding, no URL-encoding — which is what
//! `openssl enc -aes-128-ecb -K <hex of the key text> -nosalt -base64` produces for a 16-character
//! key. Confirm the combination with Sobot (platform-spec §2.6 suggests a test chat) before
//! relying on it.
//!
//! The key length picks the cipher: 16 bytes AES-128, 24 bytes AES-192, 32 bytes AES-256.

use super::query::{percent_decode, percent_encode};
use crate::render::{Refusal, RefusalCode};
use aes::cipher::{block_padding::Pkcs7, BlockDecryptMut, BlockEncryptMut, KeyInit};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};

/// How the console's key text becomes the AES key bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyEncoding {
    /// The text's UTF-8 bytes (a 16-character key → AES-128). Default.
    #[default]
    Utf8,
    /// The text is hex (32 hex digits → AES-128).
    Hex,
    /// The text is standard Base64 (24 characters → AES-128).
    Base64,
}

/// How the ciphertext is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OutputEncoding {
    /// Standard Base64 (`+/`, `=` padding). Default.
    #[default]
    Base64,
    /// Lower-case hex.
    HexLower,
    /// Upper-case hex.
    HexUpper,
}

/// The undocumented choices of the UnionID cipher. `Default` = UTF-8 key, Base64, no URL-encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct UnionIdOptions {
    pub key_encoding: KeyEncoding,
    pub output: OutputEncoding,
    /// Percent-encode the ciphertext (everything but `A-Z a-z 0-9 - _ . ~`, so Base64's `+ / =`
    /// become `%2B %2F %3D`), for a receiver that URL-decodes `session-from` values.
    pub url_encode: bool,
}

fn invalid(msg: impl Into<String>) -> Refusal {
    Refusal::new(RefusalCode::InvalidValue, msg)
}

fn key_bytes(key: &str, enc: KeyEncoding) -> Result<Vec<u8>, Refusal> {
    if key.is_empty() {
        return Err(Refusal::new(
            RefusalCode::FieldRequired,
            "key is required: the UnionID key from Sobot's console (Docking Channel Settings → Channel Key)",
        ));
    }
    let bytes = match enc {
        KeyEncoding::Utf8 => key.as_bytes().to_vec(),
        KeyEncoding::Hex => super::hex_decode(key)
            .ok_or_else(|| invalid("the UnionID key is not hex (key encoding hex)"))?,
        KeyEncoding::Base64 => STANDARD.decode(key).map_err(|e| {
            invalid(format!(
                "the UnionID key is not Base64 (key encoding base64): {e}"
            ))
        })?,
    };
    match bytes.len() {
        16 | 24 | 32 => Ok(bytes),
        n => Err(invalid(format!(
            "the UnionID key is {n} bytes ({} encoding); AES needs 16 (AES-128), 24 (AES-192) or 32 (AES-256)",
            match enc {
                KeyEncoding::Utf8 => "UTF-8",
                KeyEncoding::Hex => "hex",
                KeyEncoding::Base64 => "Base64",
            }
        ))),
    }
}

fn ecb_encrypt(key: &[u8], plain: &[u8]) -> Vec<u8> {
    // Lengths were checked by `key_bytes`.
    match key.len() {
        16 => ecb::Encryptor::<aes::Aes128>::new_from_slice(key)
            .expect("16-byte key")
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        24 => ecb::Encryptor::<aes::Aes192>::new_from_slice(key)
            .expect("24-byte key")
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
        _ => ecb::Encryptor::<aes::Aes256>::new_from_slice(key)
            .expect("32-byte key")
            .encrypt_padded_vec_mut::<Pkcs7>(plain),
    }
}

fn ecb_decrypt(key: &[u8], cipher: &[u8]) -> Option<Vec<u8>> {
    match key.len() {
        16 => ecb::Decryptor::<aes::Aes128>::new_from_slice(key)
            .ok()?
            .decrypt_padded_vec_mut::<Pkcs7>(cipher)
            .ok(),
        24 => ecb::Decryptor::<aes::Aes192>::new_from_slice(key)
            .ok()?
            .decrypt_padded_vec_mut::<Pkcs7>(cipher)
            .ok(),
        _ => ecb::Decryptor::<aes::Aes256>::new_from_slice(key)
            .ok()?
            .decrypt_padded_vec_mut::<Pkcs7>(cipher)
            .ok(),
    }
}

/// Encrypts a UnionID for `session-from`'s `unionid` (AES/ECB/PKCS5Padding, see the module doc).
pub fn encrypt_unionid(unionid: &str, key: &str, opts: &UnionIdOptions) -> Result<String, Refusal> {
    if unionid.is_empty() {
        return Err(Refusal::new(
            RefusalCode::FieldRequired,
            "unionid is required: there is nothing to encrypt",
        ));
    }
    let key = key_bytes(key, opts.key_encoding)?;
    let sealed = ecb_encrypt(&key, unionid.as_bytes());
    let text = match opts.output {
        OutputEncoding::Base64 => STANDARD.encode(&sealed),
        OutputEncoding::HexLower => super::hex_lower(&sealed),
        OutputEncoding::HexUpper => super::hex_lower(&sealed).to_ascii_uppercase(),
    };
    Ok(if opts.url_encode {
        percent_encode(&text)
    } else {
        text
    })
}

/// Decrypts what [`encrypt_unionid`] produced with the same key and options (for tests and for
/// integrators checking a value). Hex input is accepted in either case.
pub fn decrypt_unionid(cipher: &str, key: &str, opts: &UnionIdOptions) -> Result<String, Refusal> {
    let key = key_bytes(key, opts.key_encoding)?;
    let text = if opts.url_encode {
        percent_decode(cipher, false)
    } else {
        cipher.to_string()
    };
    let sealed = match opts.output {
        OutputEncoding::Base64 => STANDARD
            .decode(text.trim())
            .map_err(|e| invalid(format!("the encrypted unionid is not Base64: {e}")))?,
        OutputEncoding::HexLower | OutputEncoding::HexUpper => super::hex_decode(text.trim())
            .ok_or_else(|| invalid("the encrypted unionid is not hex"))?,
    };
    if sealed.is_empty() || !sealed.len().is_multiple_of(16) {
        return Err(invalid(format!(
            "the encrypted unionid is {} bytes, not a whole number of 16-byte AES blocks",
            sealed.len()
        )));
    }
    let plain = ecb_decrypt(&key, &sealed).ok_or_else(|| {
        invalid("the encrypted unionid does not decrypt with this key (bad padding): wrong key or key encoding")
    })?;
    String::from_utf8(plain)
        .map_err(|_| invalid("the decrypted unionid is not UTF-8: wrong key or key encoding"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_option() {
        let id = "oJw8S1S0ZheoM2PnKbka3zJO-QyE";
        for (key, enc) in [
            ("0123456789abcdef", KeyEncoding::Utf8),
            ("0123456789abcdef01234567", KeyEncoding::Utf8),
            ("0123456789abcdef0123456789abcdef", KeyEncoding::Utf8),
            ("000102030405060708090a0b0c0d0e0f", KeyEncoding::Hex),
            ("AAECAwQFBgcICQoLDA0ODw==", KeyEncoding::Base64),
        ] {
            for output in [
                OutputEncoding::Base64,
                OutputEncoding::HexLower,
                OutputEncoding::HexUpper,
            ] {
                for url_encode in [false, true] {
                    let o = UnionIdOptions {
                        key_encoding: enc,
                        output,
                        url_encode,
                    };
                    let c = encrypt_unionid(id, key, &o).unwrap();
                    assert_eq!(decrypt_unionid(&c, key, &o).unwrap(), id, "{o:?}");
                }
            }
        }
    }

    #[test]
    fn wrong_key_is_refused() {
        let o = UnionIdOptions::default();
        let c = encrypt_unionid("oJw8S1S0ZheoM2PnKbka3zJO-QyE", "0123456789abcdef", &o).unwrap();
        // A wrong key usually (not always: ~1/256) gives bad padding; for this pair it does.
        assert!(decrypt_unionid(&c, "fedcba9876543210", &o).is_err());
        assert!(decrypt_unionid("abc", "0123456789abcdef", &o).is_err());
    }
}
