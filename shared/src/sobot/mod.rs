//! Sobot (智齿), seed 001, as made precise by platform-spec §2.
//!
//! What is implemented, and where it comes from:
//!
//! - **Agent → customer mini-program card** (platform-spec §2.4, §2.5): the docking page inside
//!   the *new* agent workbench posts a structured object (not a JSON string) to its parent:
//!   `{"cid", "uid", "msgType": 26, "miniPage": {"headimg", "name", "thumbUrl", "title",
//!   "pagepath", "thumbMediaId"}}`. msgType 26 is the only workbench message Sobot documents.
//!   Encoded by [`crate::adapters::sobot`].
//! - **Workbench iframe context** (§2.3): the query parameters Sobot appends to the docking page
//!   URL ([`WorkbenchContext`], decoded by [`parse_query`]), the `selected` message posted when the
//!   agent switches conversation ([`parse_workbench_message`]), and the `sign` check
//!   ([`verify_sign`]: `md5(sysNum + email)`, or `MD5(sysNum + key + timestamp + partnerId)` with
//!   the security key).
//! - **`session-from`** of the mini program's contact button (§2.1): [`SessionFrom`] builds,
//!   parses and checks `sobot|nickname|avatar|params|key=value...`, including the
//!   `transfer_action` overflow rules. The grammar as read here is in [`session_from`].
//! - **UnionID encryption** (§2.6): AES/ECB/PKCS5Padding with the console key,
//!   [`encrypt_unionid`] / [`decrypt_unionid`]; the undocumented choices are [`UnionIdOptions`].
//!
//! Not documented by Sobot and so not implemented: other workbench `msgType`s, any
//! acknowledgement of a posted message, the `selected` payload beyond `name`, and parameter
//! delivery by `postMessage` (platform-spec §2.8).
//!
//! Like the rest of `shared`, nothing here does IO, reads a clock or draws random numbers.

pub mod query;
pub mod session_from;
#[cfg(feature = "server")]
pub mod unionid;
pub mod workbench;

pub use query::{parse_query, percent_decode, percent_encode};
pub use session_from::{ActionType, PlatformAction, SessionFrom, TransferAction};
#[cfg(feature = "server")]
pub use unionid::{decrypt_unionid, encrypt_unionid, KeyEncoding, OutputEncoding, UnionIdOptions};
#[cfg(feature = "server")]
pub use workbench::{expected_sign, verify_sign};
pub use workbench::{parse_workbench_message, Selected, WorkbenchContext, WorkbenchMessage};

/// Lower-case hex.
#[cfg(feature = "server")]
pub(crate) fn hex_lower(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for &b in bytes {
        s.push(char::from(HEX[usize::from(b >> 4)]));
        s.push(char::from(HEX[usize::from(b & 0xF)]));
    }
    s
}

/// Hex of either case; `None` for an odd length or a non-hex digit.
#[cfg(feature = "server")]
pub(crate) fn hex_decode(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    s.as_bytes()
        .chunks(2)
        .map(|pair| {
            let d = |b: u8| char::from(b).to_digit(16);
            Some((d(pair[0])? << 4 | d(pair[1])?) as u8)
        })
        .collect()
}

#[cfg(all(test, feature = "server"))]
mod tests {
    #[test]
    fn hex() {
        assert_eq!(super::hex_lower(&[0, 0xab, 0xFF]), "00abff");
        assert_eq!(super::hex_decode("00ABff"), Some(vec![0, 0xab, 0xff]));
        assert_eq!(super::hex_decode("0"), None);
        assert_eq!(super::hex_decode("0g"), None);
        assert_eq!(super::hex_decode(""), Some(vec![]));
    }
}
