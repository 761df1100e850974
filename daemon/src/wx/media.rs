//! Images of a reply: a template's image (or card cover) known by URL is fetched here
//! (`http`, `https` with the web's roots, or a `data:` URL), checked (JPEG, PNG or GIF, at most
//! [`MAX_IMAGE`]), and named by its SHA-256; the hub uploads it to WeChat. A small cache keeps
//! the bytes of recent images (previews fetch them once; `wx.blob` serves them to the page).

use base64::Engine as _;
use sha2::{Digest, Sha256};
use std::collections::VecDeque;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

/// The largest image the hub accepts (`PUT /v1/wx/blobs`).
pub const MAX_IMAGE: usize = 2 * 1024 * 1024;
/// Bytes of images the cache keeps.
const CACHE_BYTES: usize = 32 * 1024 * 1024;
/// How long a fetch may take.
const FETCH_WAIT: Duration = Duration::from_secs(10);

/// An image's bytes and what they are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Image {
    pub sha256: String,
    pub mime: &'static str,
    pub bytes: Vec<u8>,
}

/// The image type of `bytes`, by their first bytes.
pub fn sniff(bytes: &[u8]) -> Option<&'static str> {
    if bytes.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if bytes.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a") {
        Some("image/gif")
    } else {
        None
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    let d = Sha256::digest(bytes);
    d.iter().map(|b| format!("{b:02x}")).collect()
}

/// Checks `bytes` as an image from `what` and names it.
pub fn image(what: &str, bytes: Vec<u8>) -> Result<Image, String> {
    if bytes.len() > MAX_IMAGE {
        return Err(format!(
            "{what}: the image is {} bytes, more than WeChat's {MAX_IMAGE}",
            bytes.len()
        ));
    }
    let mime = sniff(&bytes)
        .ok_or_else(|| format!("{what}: not a JPEG, PNG or GIF image (WeChat takes only those)"))?;
    Ok(Image {
        sha256: sha256_hex(&bytes),
        mime,
        bytes,
    })
}

/// The bytes of a `data:` URL (base64 or percent-encoded).
pub fn data_url(url: &str) -> Result<Vec<u8>, String> {
    let rest = &url[5..];
    let (meta, data) = rest
        .split_once(',')
        .ok_or_else(|| "a data: URL without a comma".to_string())?;
    if meta.ends_with(";base64") {
        let clean: String = data.chars().filter(|c| !c.is_whitespace()).collect();
        base64::engine::general_purpose::STANDARD
            .decode(clean.as_bytes())
            .map_err(|e| format!("the data: URL's base64: {e}"))
    } else {
        let mut out = vec![];
        let b = data.as_bytes();
        let mut i = 0;
        while i < b.len() {
            if b[i] == b'%' {
                let h = b
                    .get(i + 1..i + 3)
                    .and_then(|h| std::str::from_utf8(h).ok());
                match h.and_then(|h| u8::from_str_radix(h, 16).ok()) {
                    Some(v) => {
                        out.push(v);
                        i += 3;
                        continue;
                    }
                    None => return Err("a bad % escape in the data: URL".into()),
                }
            }
            out.push(b[i]);
            i += 1;
        }
        Ok(out)
    }
}

fn web() -> &'static reqwest::Client {
    static C: OnceLock<reqwest::Client> = OnceLock::new();
    C.get_or_init(|| {
        reqwest::Client::builder()
            .timeout(FETCH_WAIT)
            .connect_timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::limited(5))
            .user_agent(concat!("quiver-daemon/", env!("CARGO_PKG_VERSION")))
            .build()
            .unwrap_or_default()
    })
}

/// Fetches the image at `url` (the cache first).
pub async fn fetch(url: &str) -> Result<Image, String> {
    if let Some(img) = cache().lock().ok().and_then(|c| c.by_url(url)) {
        return Ok(img);
    }
    let lower = url.get(..8).unwrap_or(url).to_ascii_lowercase();
    let bytes = if lower.starts_with("data:") {
        data_url(url)?
    } else if lower.starts_with("http://") || lower.starts_with("https://") {
        let mut resp = web()
            .get(url)
            .send()
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        if !resp.status().is_success() {
            return Err(format!("{url}: answered {}", resp.status()));
        }
        if resp.content_length().is_some_and(|n| n > MAX_IMAGE as u64) {
            return Err(format!("{url}: the image is larger than {MAX_IMAGE} bytes"));
        }
        let mut out = vec![];
        while let Some(chunk) = resp.chunk().await.map_err(|e| format!("{url}: {e}"))? {
            out.extend_from_slice(&chunk);
            if out.len() > MAX_IMAGE {
                return Err(format!("{url}: the image is larger than {MAX_IMAGE} bytes"));
            }
        }
        out
    } else {
        return Err(format!(
            "{}: only http, https and data: images can be sent",
            crate::params::truncate(url, 100)
        ));
    };
    let what = if lower.starts_with("data:") {
        "the data: URL"
    } else {
        url
    };
    let img = image(what, bytes)?;
    if let Ok(mut c) = cache().lock() {
        c.put(Some(url), img.clone());
    }
    Ok(img)
}

/// The cached bytes of `sha256` (hex).
pub fn cached(sha256: &str) -> Option<Image> {
    cache().lock().ok().and_then(|c| c.by_hash(sha256))
}

/// Keeps `img` (fetched from the hub).
pub fn remember(img: Image) {
    if let Ok(mut c) = cache().lock() {
        c.put(None, img);
    }
}

#[derive(Debug, Default)]
struct Cache {
    /// Oldest first: (url, image).
    items: VecDeque<(Option<String>, Image)>,
    bytes: usize,
}

impl Cache {
    fn by_url(&self, url: &str) -> Option<Image> {
        self.items
            .iter()
            .find(|(u, _)| u.as_deref() == Some(url))
            .map(|(_, i)| i.clone())
    }

    fn by_hash(&self, h: &str) -> Option<Image> {
        self.items
            .iter()
            .find(|(_, i)| i.sha256 == h)
            .map(|(_, i)| i.clone())
    }

    fn put(&mut self, url: Option<&str>, img: Image) {
        if self
            .items
            .iter()
            .any(|(u, i)| i.sha256 == img.sha256 && u.as_deref() == url)
        {
            return;
        }
        self.bytes += img.bytes.len();
        self.items.push_back((url.map(str::to_string), img));
        while self.bytes > CACHE_BYTES {
            match self.items.pop_front() {
                Some((_, old)) => self.bytes -= old.bytes.len(),
                None => break,
            }
        }
    }
}

fn cache() -> &'static Mutex<Cache> {
    static C: OnceLock<Mutex<Cache>> = OnceLock::new();
    C.get_or_init(Mutex::default)
}

#[cfg(test)]
mod tests {
    use super::*;

    const PNG: &[u8] = b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR";

    #[test]
    fn images_are_sniffed_named_and_capped() {
        let i = image("x", PNG.to_vec()).unwrap();
        assert_eq!(i.mime, "image/png");
        assert_eq!(i.sha256, sha256_hex(PNG));
        assert!(image("x", b"<html>".to_vec())
            .unwrap_err()
            .contains("not a JPEG, PNG or GIF"));
        let mut big = PNG.to_vec();
        big.resize(MAX_IMAGE + 1, 0);
        assert!(image("x", big).unwrap_err().contains("more than"));
    }

    #[test]
    fn data_urls_decode() {
        assert_eq!(
            data_url("data:image/gif;base64,R0lGODlh").unwrap(),
            b"GIF89a"
        );
        assert_eq!(data_url("data:text/plain,GIF89a%21").unwrap(), b"GIF89a!");
        assert!(data_url("data:x;base64,***").is_err());
        assert!(data_url("data:nocomma").is_err());
        assert!(data_url("data:x,%zz").is_err());
    }

    #[test]
    fn the_cache_finds_by_url_and_hash_and_forgets_the_oldest() {
        let mut c = Cache::default();
        let a = image("a", PNG.to_vec()).unwrap();
        c.put(Some("http://a"), a.clone());
        assert_eq!(c.by_url("http://a"), Some(a.clone()));
        assert_eq!(c.by_hash(&a.sha256), Some(a.clone()));
        c.bytes = CACHE_BYTES;
        let mut g = b"GIF89a".to_vec();
        g.push(1);
        c.put(None, image("g", g).unwrap());
        assert!(c.by_url("http://a").is_none());
    }
}
