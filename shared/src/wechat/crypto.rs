//! Push signatures and safe-mode encryption (platform-spec §4.2, §4.4), the same for official
//! accounts and mini programs:
//!
//! - `signature = hex(sha1(concat(sort([token, timestamp, nonce]))))`, the sort being a plain
//!   byte-wise (lexicographic) string sort;
//! - `msg_signature` = the same over `[token, timestamp, nonce, Encrypt]`;
//! - `AESKey = base64_decode(EncodingAESKey + "=")`, 32 bytes; AES-256-CBC with
//!   `IV = AESKey[0..16]`; PKCS#7 padding with a **32-byte** block (pad values 1..=32);
//! - plaintext = `random(16) ‖ len(msg) as u32 big-endian ‖ msg ‖ appid`; the wire form is
//!   standard padded Base64.
//!
//! Errors carry the local codes of WeChat's sample code ([`CryptCode`], -40001..-40012).
//! Random bytes are an argument: this crate draws none.

use super::push::Envelope;
use aes::cipher::block_padding::NoPadding;
use aes::cipher::{BlockDecryptMut, BlockEncryptMut, KeyIvInit};
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig, STANDARD};
use base64::engine::DecodePaddingMode;
use base64::Engine;
use serde::Serialize;
use sha1::{Digest, Sha1};

type Aes256CbcEnc = cbc::Encryptor<aes::Aes256>;
type Aes256CbcDec = cbc::Decryptor<aes::Aes256>;

/// PKCS#7 block size used by WeChat (not the AES block size).
pub const PAD_BLOCK: usize = 32;

/// The local error codes of WeChat's message-crypto sample code (platform-spec §4.4). They are not
/// API `errcode`s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CryptCode {
    /// -40001: the signature does not match.
    InvalidSignature,
    /// -40002: the body (XML, or JSON in JSON mode) cannot be parsed.
    ParseXml,
    /// -40003: the signature cannot be computed.
    ComputeSignature,
    /// -40004: the EncodingAESKey is not 43 Base64 characters decoding to 32 bytes.
    InvalidAesKey,
    /// -40005: the AppID inside the message is not this receiver's.
    AppIdMismatch,
    /// -40006: AES encryption failed.
    EncryptAes,
    /// -40007: AES decryption failed (bad length or padding).
    DecryptAes,
    /// -40008: the decrypted content is malformed (platform-spec: "invalid XML"; the sample code
    /// calls it "illegal buffer"): shorter than its header, a length past its end, not UTF-8.
    InvalidContent,
    /// -40009: Base64 encoding failed.
    EncodeBase64,
    /// -40010: Base64 decoding failed.
    DecodeBase64,
    /// -40011: the XML reply cannot be built.
    BuildXml,
    /// -40012: the JSON reply cannot be built.
    BuildJson,
}

impl CryptCode {
    /// The numeric code, -40001..-40012.
    pub fn value(self) -> i32 {
        match self {
            CryptCode::InvalidSignature => -40001,
            CryptCode::ParseXml => -40002,
            CryptCode::ComputeSignature => -40003,
            CryptCode::InvalidAesKey => -40004,
            CryptCode::AppIdMismatch => -40005,
            CryptCode::EncryptAes => -40006,
            CryptCode::DecryptAes => -40007,
            CryptCode::InvalidContent => -40008,
            CryptCode::EncodeBase64 => -40009,
            CryptCode::DecodeBase64 => -40010,
            CryptCode::BuildXml => -40011,
            CryptCode::BuildJson => -40012,
        }
    }
}

/// A signature or crypto failure: its code and a message naming the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CryptError {
    pub code: CryptCode,
    pub message: String,
}

impl CryptError {
    pub(crate) fn new(code: CryptCode, message: impl Into<String>) -> Self {
        CryptError {
            code,
            message: message.into(),
        }
    }
}

impl std::fmt::Display for CryptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.message, self.code.value())
    }
}

impl std::error::Error for CryptError {}

/// `hex(sha1(concat(sort(parts))))`, lower-case hex.
pub fn signature(parts: &[&str]) -> String {
    let mut sorted = parts.to_vec();
    sorted.sort_unstable();
    let mut sha = Sha1::new();
    for p in sorted {
        sha.update(p.as_bytes());
    }
    hex(&sha.finalize())
}

/// The `signature` query parameter of every push and of the URL check.
pub fn url_signature(token: &str, timestamp: &str, nonce: &str) -> String {
    signature(&[token, timestamp, nonce])
}

/// The `msg_signature` of an encrypted push or reply.
pub fn msg_signature(token: &str, timestamp: &str, nonce: &str, encrypt: &str) -> String {
    signature(&[token, timestamp, nonce, encrypt])
}

/// Checks a `signature` (hex, either case). Error -40001 on mismatch.
pub fn verify_url_signature(
    token: &str,
    timestamp: &str,
    nonce: &str,
    given: &str,
) -> Result<(), CryptError> {
    check_signature("signature", &url_signature(token, timestamp, nonce), given)
}

/// Checks a `msg_signature` (hex, either case). Error -40001 on mismatch.
pub fn verify_msg_signature(
    token: &str,
    timestamp: &str,
    nonce: &str,
    encrypt: &str,
    given: &str,
) -> Result<(), CryptError> {
    check_signature(
        "msg_signature",
        &msg_signature(token, timestamp, nonce, encrypt),
        given,
    )
}

fn check_signature(name: &str, expected: &str, given: &str) -> Result<(), CryptError> {
    if ct_eq(expected.as_bytes(), given.to_ascii_lowercase().as_bytes()) {
        Ok(())
    } else {
        Err(CryptError::new(
            CryptCode::InvalidSignature,
            format!("{name} does not match the token, timestamp and nonce"),
        ))
    }
}

/// Constant-time comparison (for equal lengths).
fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[usize::from(b >> 4)] as char);
        s.push(DIGITS[usize::from(b & 15)] as char);
    }
    s
}

/// The 32-byte AES key decoded from an `EncodingAESKey`. Its `Debug` does not show the key.
#[derive(Clone, PartialEq, Eq)]
pub struct AesKey([u8; 32]);

impl std::fmt::Debug for AesKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AesKey(..)")
    }
}

/// Base64 as PHP, Python and Go decode an EncodingAESKey: the last of the 43 characters may carry
/// non-zero bits beyond the 32 bytes (the console draws the 43 characters at random).
const KEY_BASE64: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::STANDARD,
    GeneralPurposeConfig::new()
        .with_decode_allow_trailing_bits(true)
        .with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

impl AesKey {
    /// Decodes the 43-character `EncodingAESKey` of the push settings. Error -40004.
    pub fn from_encoding_aes_key(encoding_aes_key: &str) -> Result<AesKey, CryptError> {
        let n = encoding_aes_key.chars().count();
        if n != 43 {
            return Err(CryptError::new(
                CryptCode::InvalidAesKey,
                format!("an EncodingAESKey has 43 characters, this one has {n}"),
            ));
        }
        let bytes = KEY_BASE64.decode(encoding_aes_key).map_err(|e| {
            CryptError::new(
                CryptCode::InvalidAesKey,
                format!("the EncodingAESKey is not Base64: {e}"),
            )
        })?;
        let key: [u8; 32] = bytes.try_into().map_err(|b: Vec<u8>| {
            CryptError::new(
                CryptCode::InvalidAesKey,
                format!("the EncodingAESKey decodes to {} bytes, not 32", b.len()),
            )
        })?;
        Ok(AesKey(key))
    }

    /// The raw key.
    pub fn from_bytes(key: [u8; 32]) -> AesKey {
        AesKey(key)
    }

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// The IV: the key's first 16 bytes.
    pub fn iv(&self) -> [u8; 16] {
        let mut iv = [0u8; 16];
        iv.copy_from_slice(&self.0[..16]);
        iv
    }
}

/// Appends PKCS#7 padding for a 32-byte block: 1..=32 bytes, each holding the pad length.
pub fn pad32(data: &mut Vec<u8>) {
    let n = PAD_BLOCK - data.len() % PAD_BLOCK;
    data.resize(data.len() + n, n as u8);
}

/// Removes 32-byte-block PKCS#7 padding, strictly: the length is a multiple of 32, the last byte
/// is 1..=32, and every padding byte equals it. Error -40007.
pub fn unpad32(data: &[u8]) -> Result<&[u8], CryptError> {
    let bad =
        |why: String| CryptError::new(CryptCode::DecryptAes, format!("invalid padding: {why}"));
    if data.is_empty() || !data.len().is_multiple_of(PAD_BLOCK) {
        return Err(bad(format!(
            "{} bytes is not a positive multiple of the {PAD_BLOCK}-byte padding block",
            data.len()
        )));
    }
    let n = usize::from(data[data.len() - 1]);
    if n == 0 || n > PAD_BLOCK {
        return Err(bad(format!("pad length {n} is outside 1..={PAD_BLOCK}")));
    }
    let (body, pad) = data.split_at(data.len() - n);
    if pad.iter().any(|&b| usize::from(b) != n) {
        return Err(bad(format!("the last {n} bytes are not all {n}")));
    }
    Ok(body)
}

/// The padded plaintext that is encrypted: `random ‖ len(msg) u32 BE ‖ msg ‖ appid`, then
/// 32-byte-block PKCS#7 padding. Error -40006 for a message over 4 GiB.
pub fn plaintext(random: &[u8; 16], msg: &str, appid: &str) -> Result<Vec<u8>, CryptError> {
    let len = u32::try_from(msg.len()).map_err(|_| {
        CryptError::new(
            CryptCode::EncryptAes,
            format!(
                "a message of {} bytes does not fit the 32-bit length field",
                msg.len()
            ),
        )
    })?;
    let mut plain = Vec::with_capacity(20 + msg.len() + appid.len() + PAD_BLOCK);
    plain.extend_from_slice(random);
    plain.extend_from_slice(&len.to_be_bytes());
    plain.extend_from_slice(msg.as_bytes());
    plain.extend_from_slice(appid.as_bytes());
    pad32(&mut plain);
    Ok(plain)
}

/// Encrypts `msg` for `appid` with the caller's 16 random bytes; returns the Base64 text of the
/// `Encrypt` field.
pub fn encrypt(
    key: &AesKey,
    random: &[u8; 16],
    msg: &str,
    appid: &str,
) -> Result<String, CryptError> {
    let plain = plaintext(random, msg, appid)?;
    let cipher = Aes256CbcEnc::new(key.as_bytes().into(), &key.iv().into())
        .encrypt_padded_vec_mut::<NoPadding>(&plain);
    Ok(STANDARD.encode(cipher))
}

/// Decrypts an `Encrypt` field and checks that it was sealed for `appid`; returns the message.
pub fn decrypt(key: &AesKey, encrypt: &str, appid: &str) -> Result<String, CryptError> {
    let cipher = STANDARD.decode(encrypt.trim()).map_err(|e| {
        CryptError::new(
            CryptCode::DecodeBase64,
            format!("Encrypt is not Base64: {e}"),
        )
    })?;
    if cipher.is_empty() || !cipher.len().is_multiple_of(16) {
        return Err(CryptError::new(
            CryptCode::DecryptAes,
            format!(
                "a ciphertext of {} bytes is not a positive multiple of the 16-byte AES block",
                cipher.len()
            ),
        ));
    }
    let plain = Aes256CbcDec::new(key.as_bytes().into(), &key.iv().into())
        .decrypt_padded_vec_mut::<NoPadding>(&cipher)
        .map_err(|e| CryptError::new(CryptCode::DecryptAes, format!("AES-CBC: {e}")))?;
    let content = unpad32(&plain)?;
    if content.len() < 20 {
        return Err(CryptError::new(
            CryptCode::InvalidContent,
            format!(
                "the decrypted content has {} bytes, less than the 16 random + 4 length bytes",
                content.len()
            ),
        ));
    }
    let len = u32::from_be_bytes(content[16..20].try_into().expect("4 bytes")) as usize;
    let rest = &content[20..];
    if len > rest.len() {
        return Err(CryptError::new(
            CryptCode::InvalidContent,
            format!(
                "the length field says {len} bytes but only {} follow",
                rest.len()
            ),
        ));
    }
    let (msg, found) = rest.split_at(len);
    if !ct_eq(found, appid.as_bytes()) {
        return Err(CryptError::new(
            CryptCode::AppIdMismatch,
            format!(
                "AppID mismatch: the message was sealed for {:?}, this receiver is {appid:?}",
                String::from_utf8_lossy(found)
            ),
        ));
    }
    String::from_utf8(msg.to_vec()).map_err(|_| {
        CryptError::new(
            CryptCode::InvalidContent,
            "the decrypted message is not UTF-8",
        )
    })
}

/// The query parameters WeChat adds to each push (and to the GET URL check).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct PushQuery {
    pub signature: String,
    pub timestamp: String,
    pub nonce: String,
    /// Safe and compatible modes.
    pub msg_signature: Option<String>,
    /// `aes` in safe and compatible modes.
    pub encrypt_type: Option<String>,
    /// The GET URL check only.
    pub echostr: Option<String>,
}

impl PushQuery {
    /// From decoded query pairs; unknown names are ignored, the first of repeated names wins.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> PushQuery {
        let mut q = PushQuery::default();
        let mut seen = std::collections::BTreeSet::new();
        for (k, v) in pairs {
            let (k, v) = (k.as_ref(), v.as_ref().to_string());
            if !seen.insert(k.to_string()) {
                continue;
            }
            match k {
                "signature" => q.signature = v,
                "timestamp" => q.timestamp = v,
                "nonce" => q.nonce = v,
                "msg_signature" => q.msg_signature = Some(v),
                "encrypt_type" => q.encrypt_type = Some(v),
                "echostr" => q.echostr = Some(v),
                _ => {}
            }
        }
        q
    }
}

/// The GET URL check of the push settings (platform-spec §4.2): verifies `signature` and returns
/// the `echostr` to answer with, verbatim. Needs only the Token (plaintext mode has no key).
pub fn verify_url<'q>(token: &str, query: &'q PushQuery) -> Result<&'q str, CryptError> {
    verify_url_signature(token, &query.timestamp, &query.nonce, &query.signature)?;
    query
        .echostr
        .as_deref()
        .ok_or_else(|| CryptError::new(CryptCode::InvalidSignature, "the URL check has no echostr"))
}

/// One mini program's push settings: Token, EncodingAESKey and AppID. `Debug` hides the secrets.
#[derive(Clone)]
pub struct Crypto {
    token: String,
    key: AesKey,
    appid: String,
}

impl std::fmt::Debug for Crypto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Crypto")
            .field("appid", &self.appid)
            .finish_non_exhaustive()
    }
}

impl Crypto {
    pub fn new(token: &str, encoding_aes_key: &str, appid: &str) -> Result<Crypto, CryptError> {
        Ok(Crypto {
            token: token.to_string(),
            key: AesKey::from_encoding_aes_key(encoding_aes_key)?,
            appid: appid.to_string(),
        })
    }

    pub fn token(&self) -> &str {
        &self.token
    }

    pub fn appid(&self) -> &str {
        &self.appid
    }

    pub fn key(&self) -> &AesKey {
        &self.key
    }

    /// The GET URL check; see [`verify_url`].
    pub fn verify_url<'q>(&self, query: &'q PushQuery) -> Result<&'q str, CryptError> {
        verify_url(&self.token, query)
    }

    /// Checks the plain `signature` every push carries.
    pub fn verify_signature(&self, query: &PushQuery) -> Result<(), CryptError> {
        verify_url_signature(
            &self.token,
            &query.timestamp,
            &query.nonce,
            &query.signature,
        )
    }

    /// Verifies the envelope's `msg_signature` and decrypts it: the plaintext push, in the format
    /// of the body it came in.
    pub fn open(&self, envelope: &Envelope, query: &PushQuery) -> Result<String, CryptError> {
        let given = query.msg_signature.as_deref().ok_or_else(|| {
            CryptError::new(
                CryptCode::InvalidSignature,
                "an encrypted push without msg_signature in its query",
            )
        })?;
        verify_msg_signature(
            &self.token,
            &query.timestamp,
            &query.nonce,
            &envelope.encrypt,
            given,
        )?;
        self.decrypt(&envelope.encrypt)
    }

    /// Encrypts for this AppID with the caller's 16 random bytes.
    pub fn encrypt(&self, msg: &str, random: &[u8; 16]) -> Result<String, CryptError> {
        encrypt(&self.key, random, msg, &self.appid)
    }

    /// Decrypts and checks the AppID.
    pub fn decrypt(&self, encrypt_b64: &str) -> Result<String, CryptError> {
        decrypt(&self.key, encrypt_b64, &self.appid)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padding_edges() {
        for len in [0usize, 1, 31, 32, 33, 63, 64] {
            let mut v = vec![7u8; len];
            pad32(&mut v);
            assert_eq!(v.len() % 32, 0);
            let n = v.len() - len;
            assert!((1..=32).contains(&n));
            assert_eq!(unpad32(&v).unwrap().len(), len);
        }
        assert!(unpad32(&[0u8; 32]).is_err());
        assert!(unpad32(&[33u8; 64]).is_err());
        let mut v = vec![1u8; 30];
        v.extend([2, 3]);
        assert!(unpad32(&v).is_err());
        assert!(unpad32(&[16u8; 48]).is_err());
        assert!(unpad32(&[]).is_err());
    }

    #[test]
    fn round_trip_and_appid() {
        let key =
            AesKey::from_encoding_aes_key("abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG").unwrap();
        let c = encrypt(&key, &[9; 16], "<xml/>", "wxA").unwrap();
        assert_eq!(decrypt(&key, &c, "wxA").unwrap(), "<xml/>");
        let e = decrypt(&key, &c, "wxB").unwrap_err();
        assert_eq!(e.code.value(), -40005);
        assert!(
            e.message.contains("\"wxA\"") && e.message.contains("\"wxB\""),
            "{e}"
        );
    }

    #[test]
    fn key_errors() {
        for bad in [
            "",
            "abc",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEF!",
            "abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH",
        ] {
            assert_eq!(
                AesKey::from_encoding_aes_key(bad).unwrap_err().code.value(),
                -40004
            );
        }
    }

    #[test]
    fn signature_is_sorted_sha1() {
        // sha1("") is well known; sorting puts "a" before "b".
        assert_eq!(signature(&[]), "da39a3ee5e6b4b0d3255bfef95601890afd80709");
        assert_eq!(signature(&["b", "a"]), signature(&["a", "b"]));
        assert!(
            verify_url_signature("t", "1", "n", &url_signature("t", "1", "n").to_uppercase())
                .is_ok()
        );
        assert_eq!(
            verify_url_signature("t", "1", "n", "00")
                .unwrap_err()
                .code
                .value(),
            -40001
        );
    }
}
