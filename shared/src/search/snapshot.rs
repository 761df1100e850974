//! A built [`SearchIndex`] as bytes, and back: the palette loads an index that was built once
//! elsewhere (the extension's background, per library change) instead of building it on every
//! panel load. Loading is a few copies and bounds checks, not a build (docs/benchmarks.md).
//!
//! Format (little-endian): `QVSX`, the format version (u32), the template count (u32), then each
//! array as a u32 length and its elements. Every offset and range is checked on load, so bytes
//! that were cut or changed give an error, never a panic or an out-of-bounds read later in
//! [`SearchIndex::search`]. The format is private to one build of the core: both ends run the
//! same wasm, so there is no migration, only a version check.

use super::fuzzy::Vocab;
use super::pinyin::{PinyinIndex, Reading, Seq};
use super::{Column, Field, SearchIndex};

const MAGIC: &[u8; 4] = b"QVSX";
const VERSION: u32 = 1;

/// Appends values to a snapshot.
struct Writer(Vec<u8>);

impl Writer {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn len(&mut self, n: usize) {
        // Lengths past u32 cannot occur: offsets inside the index are u32 already.
        self.u32(u32::try_from(n).unwrap_or(u32::MAX));
    }
    fn bytes(&mut self, b: &[u8]) {
        self.len(b.len());
        self.0.extend_from_slice(b);
    }
    fn u32s(&mut self, v: &[u32]) {
        self.len(v.len());
        self.0.reserve(v.len() * 4);
        for &x in v {
            self.u32(x);
        }
    }
    /// Strings as one text and their end offsets.
    fn strings(&mut self, v: &[String]) {
        let mut ends = Vec::with_capacity(v.len());
        let mut text = Vec::new();
        for s in v {
            text.extend_from_slice(s.as_bytes());
            ends.push(u32::try_from(text.len()).unwrap_or(u32::MAX));
        }
        self.bytes(&text);
        self.u32s(&ends);
    }
}

/// Reads a snapshot; every read is bounds-checked.
struct Reader<'a> {
    b: &'a [u8],
    at: usize,
}

type R<T> = Result<T, String>;

fn bad(what: &str) -> String {
    format!("search index snapshot: {what}")
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> R<&'a [u8]> {
        let end = self
            .at
            .checked_add(n)
            .filter(|&e| e <= self.b.len())
            .ok_or_else(|| bad("cut short"))?;
        let s = &self.b[self.at..end];
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> R<u8> {
        Ok(self.take(1)?[0])
    }
    fn u32(&mut self) -> R<u32> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> R<u64> {
        let s = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(s);
        Ok(u64::from_le_bytes(a))
    }
    /// A length of items of `size` bytes each, checked against what is left.
    fn len(&mut self, size: usize) -> R<usize> {
        let n = self.u32()? as usize;
        if n.saturating_mul(size) > self.b.len() - self.at {
            return Err(bad("a length runs past the end"));
        }
        Ok(n)
    }
    fn bytes(&mut self) -> R<&'a [u8]> {
        let n = self.len(1)?;
        self.take(n)
    }
    fn u32s(&mut self) -> R<Vec<u32>> {
        let n = self.len(4)?;
        let s = self.take(n * 4)?;
        Ok(s.chunks_exact(4)
            .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect())
    }
    fn text(&mut self) -> R<&'a str> {
        std::str::from_utf8(self.bytes()?).map_err(|_| bad("text is not UTF-8"))
    }
    fn strings(&mut self, n: usize) -> R<Vec<String>> {
        let text = self.text()?;
        let ends = self.u32s()?;
        if ends.len() != n {
            return Err(bad("string count"));
        }
        let mut out = Vec::with_capacity(n);
        let mut start = 0usize;
        for e in ends {
            let e = e as usize;
            let s = text.get(start..e).ok_or_else(|| bad("string offsets"))?;
            out.push(s.to_owned());
            start = e;
        }
        if start != text.len() {
            return Err(bad("string offsets"));
        }
        Ok(out)
    }
}

/// `starts` (one more than items) rises from 0 to `end`, each on a char boundary of `text` if given.
fn check_starts(starts: &[u32], items: usize, end: usize, text: Option<&str>) -> R<()> {
    if starts.len() != items + 1 || starts.first() != Some(&0) || starts[items] as usize != end {
        return Err(bad("range table"));
    }
    if starts.windows(2).any(|w| w[0] > w[1]) {
        return Err(bad("range table not in order"));
    }
    if let Some(t) = text {
        if starts.iter().any(|&s| !t.is_char_boundary(s as usize)) {
            return Err(bad("range inside a char"));
        }
    }
    Ok(())
}

fn check_range((a, b): (u32, u32), len: usize) -> R<()> {
    if a <= b && b as usize <= len {
        Ok(())
    } else {
        Err(bad("range out of bounds"))
    }
}

impl SearchIndex {
    /// The index as bytes, for [`SearchIndex::from_snapshot`].
    pub fn snapshot(&self) -> Vec<u8> {
        let mut w = Writer(Vec::new());
        w.0.extend_from_slice(MAGIC);
        w.u32(VERSION);
        w.len(self.ids.len());
        w.strings(&self.ids);
        w.strings(&self.titles);
        for c in &self.columns {
            w.bytes(c.text.as_bytes());
            w.u32s(&c.starts);
        }
        // pinyin
        let p = &self.pinyin;
        w.u32s(&p.by_template);
        w.len(p.seqs.len());
        for s in &p.seqs {
            w.u8(s.field as u8);
            w.u32(s.units.0);
            w.u32(s.units.1);
            w.u64(s.initials);
            w.u64(s.letters);
            w.u64(s.pairs as u64);
            w.u64((s.pairs >> 64) as u64);
        }
        w.u32s(&p.units);
        w.len(p.symbol_readings.len());
        for &(a, b) in &p.symbol_readings {
            w.u32(a);
            w.u32(b);
        }
        w.len(p.readings.len());
        for r in &p.readings {
            w.u32(r.offset);
            w.u8(r.len);
            w.u8(u8::from(r.whole));
        }
        w.bytes(&p.bytes);
        // typo vocabulary
        let v = &self.vocab;
        w.len(v.words.len());
        for &(off, len) in &v.words {
            w.u32(off);
            w.u8(len);
        }
        w.len(v.posting_ranges.len());
        for &(a, b) in &v.posting_ranges {
            w.u32(a);
            w.u32(b);
        }
        w.u32s(&v.postings);
        w.bytes(&v.bytes);
        // ranking
        w.u32s(&self.han);
        w.len(self.usage.len());
        for &u in &self.usage {
            w.u32(u.to_bits());
        }
        w.len(self.last_used.len());
        for &l in &self.last_used {
            // u64::MAX stands for "never": no send has that time.
            w.u64(l.unwrap_or(u64::MAX));
        }
        w.u32s(&self.title_rank);
        w.0
    }

    /// An index from [`SearchIndex::snapshot`]'s bytes. Refuses bytes that are cut, changed or
    /// from another format version, naming what is wrong.
    pub fn from_snapshot(bytes: &[u8]) -> Result<SearchIndex, String> {
        let mut r = Reader { b: bytes, at: 0 };
        if r.take(4).ok() != Some(MAGIC.as_slice()) {
            return Err(bad("not a snapshot"));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(bad(&format!("format {version}, this core reads {VERSION}")));
        }
        let n = r.u32()? as usize;
        let ids = r.strings(n)?;
        let titles = r.strings(n)?;
        let mut columns: [Column; 5] = Default::default();
        for c in &mut columns {
            let text = r.text()?.to_owned();
            let starts = r.u32s()?;
            check_starts(&starts, n, text.len(), Some(&text))?;
            // Every segment ends with the `\n` that `Column::segment` drops.
            if starts
                .windows(2)
                .any(|w| w[0] == w[1] || text.as_bytes()[w[1] as usize - 1] != b'\n')
            {
                return Err(bad("column segment"));
            }
            *c = Column { text, starts };
        }

        let by_template = r.u32s()?;
        let seq_count = r.len(45)?;
        let mut seqs = Vec::with_capacity(seq_count);
        for _ in 0..seq_count {
            let code = r.u8()?;
            if code > Field::Body as u8 {
                return Err(bad("field code"));
            }
            let units = (r.u32()?, r.u32()?);
            let initials = r.u64()?;
            let letters = r.u64()?;
            let pairs = u128::from(r.u64()?) | (u128::from(r.u64()?) << 64);
            seqs.push(Seq {
                field: Field::from_code(code),
                units,
                initials,
                letters,
                pairs,
            });
        }
        check_starts(&by_template, n, seqs.len(), None)?;
        let units = r.u32s()?;
        let sym_count = r.len(8)?;
        let mut symbol_readings = Vec::with_capacity(sym_count);
        for _ in 0..sym_count {
            symbol_readings.push((r.u32()?, r.u32()?));
        }
        let reading_count = r.len(6)?;
        let mut readings = Vec::with_capacity(reading_count);
        for _ in 0..reading_count {
            let offset = r.u32()?;
            let len = r.u8()?;
            let whole = r.u8()? != 0;
            readings.push(Reading { offset, len, whole });
        }
        let pbytes = r.bytes()?.to_vec();
        for s in &seqs {
            check_range(s.units, units.len())?;
        }
        if units.iter().any(|&u| u as usize >= symbol_readings.len()) {
            return Err(bad("pinyin symbol"));
        }
        for &sr in &symbol_readings {
            check_range(sr, readings.len())?;
        }
        for rd in &readings {
            // A reading is matched as text and must hold at least one byte.
            let end = rd.offset as usize + usize::from(rd.len);
            if rd.len == 0
                || end > pbytes.len()
                || std::str::from_utf8(&pbytes[rd.offset as usize..end]).is_err()
            {
                return Err(bad("pinyin reading"));
            }
        }

        let word_count = r.len(5)?;
        let mut words = Vec::with_capacity(word_count);
        for _ in 0..word_count {
            words.push((r.u32()?, r.u8()?));
        }
        let range_count = r.len(8)?;
        let mut posting_ranges = Vec::with_capacity(range_count);
        for _ in 0..range_count {
            posting_ranges.push((r.u32()?, r.u32()?));
        }
        let postings = r.u32s()?;
        let vbytes = r.bytes()?.to_vec();
        if posting_ranges.len() != words.len() {
            return Err(bad("vocabulary ranges"));
        }
        for &(off, len) in &words {
            check_range((off, off.saturating_add(u32::from(len))), vbytes.len())?;
            if off.checked_add(u32::from(len)).is_none() {
                return Err(bad("vocabulary word"));
            }
        }
        for &pr in &posting_ranges {
            check_range(pr, postings.len())?;
        }
        if postings
            .iter()
            .any(|&p| (p >> 3) as usize >= n || (p & 7) > Field::Body as u32)
        {
            return Err(bad("vocabulary posting"));
        }

        let han = r.u32s()?;
        if han.iter().any(|&t| t as usize >= n) {
            return Err(bad("template number"));
        }
        let usage_count = r.len(4)?;
        let mut usage = Vec::with_capacity(usage_count);
        for _ in 0..usage_count {
            usage.push(f32::from_bits(r.u32()?));
        }
        let last_count = r.len(8)?;
        let mut last_used = Vec::with_capacity(last_count);
        for _ in 0..last_count {
            let l = r.u64()?;
            last_used.push((l != u64::MAX).then_some(l));
        }
        let title_rank = r.u32s()?;
        if usage.len() != n || last_used.len() != n || title_rank.len() != n {
            return Err(bad("per-template table"));
        }
        if title_rank.iter().any(|&t| t as usize >= n) {
            return Err(bad("title rank"));
        }
        if r.at != bytes.len() {
            return Err(bad("bytes after the end"));
        }
        Ok(SearchIndex {
            ids,
            titles,
            columns,
            pinyin: PinyinIndex {
                by_template,
                seqs,
                units,
                symbol_readings,
                readings,
                bytes: pbytes,
            },
            vocab: Vocab {
                words,
                posting_ranges,
                postings,
                bytes: vbytes,
            },
            han,
            usage,
            last_used,
            title_rank,
        })
    }
}
