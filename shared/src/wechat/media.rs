//! Temporary media for customer-service messages (platform-spec §4.9, research §4.9): how long a
//! cached upload is used, and what an image's bytes are. A media id lives 3 days from its
//! `created_at`; the cache stops using it an hour before (`EXPIRY_MARGIN_MS`) and uploads again
//! when less than 6 hours are left (`REFRESH_AHEAD_MS`) — so the 3-day expiry is never met at
//! send time by a cached id (a 40007 still re-uploads once).

use serde::{Deserialize, Serialize};

pub const HOUR_MS: i64 = 3_600_000;
/// WeChat keeps a temporary media id for 3 days.
pub const LIFETIME_MS: i64 = 72 * HOUR_MS;
/// Not used in its last hour.
pub const EXPIRY_MARGIN_MS: i64 = HOUR_MS;
/// Uploaded again before it is used when less than this is left.
pub const REFRESH_AHEAD_MS: i64 = 6 * HOUR_MS;
/// The largest image a gateway accepts (the mini-program limit is not documented; 2 MiB is the
/// old official-account limit, safe everywhere).
pub const MAX_IMAGE_BYTES: usize = 2 << 20;

/// The instant a cache entry stops being used: `created_at` (WeChat's, in ms) + 3 days − 1 hour.
/// `uploaded_at_ms` is the gateway's own clock at the upload: the earlier of the two counts,
/// so that a WeChat clock ahead of ours cannot make an entry outlive its id.
pub fn expires_at(created_at_ms: i64, uploaded_at_ms: i64) -> i64 {
    created_at_ms.min(uploaded_at_ms) + LIFETIME_MS - EXPIRY_MARGIN_MS
}

/// What a cache entry is good for at `now_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Validity {
    /// Use it.
    Fresh,
    /// Less than [`REFRESH_AHEAD_MS`] left: upload again now, and use the new id.
    RefreshAhead,
    /// Gone: upload again.
    Expired,
}

pub fn validity(expires_at_ms: i64, now_ms: i64) -> Validity {
    if now_ms >= expires_at_ms {
        Validity::Expired
    } else if expires_at_ms - now_ms <= REFRESH_AHEAD_MS - EXPIRY_MARGIN_MS {
        Validity::RefreshAhead
    } else {
        Validity::Fresh
    }
}

/// The image types WeChat takes as temporary media.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImageType {
    #[serde(rename = "image/jpeg")]
    Jpeg,
    #[serde(rename = "image/png")]
    Png,
    #[serde(rename = "image/gif")]
    Gif,
}

impl ImageType {
    pub fn mime(self) -> &'static str {
        match self {
            ImageType::Jpeg => "image/jpeg",
            ImageType::Png => "image/png",
            ImageType::Gif => "image/gif",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            ImageType::Jpeg => "jpg",
            ImageType::Png => "png",
            ImageType::Gif => "gif",
        }
    }

    /// From a `Content-Type` (`image/jpg` too); parameters ignored.
    pub fn from_mime(mime: &str) -> Option<ImageType> {
        match mime
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
            .as_str()
        {
            "image/jpeg" | "image/jpg" => Some(ImageType::Jpeg),
            "image/png" => Some(ImageType::Png),
            "image/gif" => Some(ImageType::Gif),
            _ => None,
        }
    }
}

/// The type of an image by its magic bytes: JPEG `FF D8 FF`, PNG `89 PNG \r\n 1A \n`,
/// GIF `GIF87a`/`GIF89a`. Anything else is `None`.
pub fn sniff(bytes: &[u8]) -> Option<ImageType> {
    if bytes.starts_with(&[0xFF, 0xD8, 0xFF]) {
        Some(ImageType::Jpeg)
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some(ImageType::Png)
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some(ImageType::Gif)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn margins() {
        let e = expires_at(0, 0);
        assert_eq!(e, 71 * HOUR_MS);
        assert_eq!(
            expires_at(10 * HOUR_MS, 0),
            e,
            "our clock is earlier: it counts"
        );
        assert_eq!(validity(e, 0), Validity::Fresh);
        assert_eq!(validity(e, 66 * HOUR_MS - 1), Validity::Fresh);
        assert_eq!(validity(e, 66 * HOUR_MS), Validity::RefreshAhead);
        assert_eq!(validity(e, e - 1), Validity::RefreshAhead);
        assert_eq!(validity(e, e), Validity::Expired);
        assert_eq!(validity(e, 72 * HOUR_MS), Validity::Expired);
    }

    #[test]
    fn sniffing() {
        assert_eq!(sniff(&[0xFF, 0xD8, 0xFF, 0xE0, 0]), Some(ImageType::Jpeg));
        assert_eq!(sniff(b"\x89PNG\r\n\x1a\n...."), Some(ImageType::Png));
        assert_eq!(sniff(b"GIF89a..."), Some(ImageType::Gif));
        assert_eq!(sniff(b"GIF87a"), Some(ImageType::Gif));
        assert_eq!(sniff(b"GIF88a"), None);
        assert_eq!(sniff(b"<svg/>"), None);
        assert_eq!(sniff(&[]), None);
        assert_eq!(sniff(&[0xFF, 0xD8]), None);
        assert_eq!(
            ImageType::from_mime("image/JPG; q=1"),
            Some(ImageType::Jpeg)
        );
        assert_eq!(ImageType::from_mime("image/webp"), None);
    }
}
