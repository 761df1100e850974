//! A built [`SearchIndex`] as bytes, and back: the palette loads an index that was built once
//! elsewhere (the extension's background, per library change) instead of building it on every
//! panel load. Loading is a copy of each array and linear bounds checks, not a build, and
//! allocates a fixed number of arrays whatever the library's size (docs/benchmarks.md).
//!
//! Format (little-endian): `QVSX`, the format version (u32), the template count (u32), then each
//! array as a u32 length and its elements; range tables whose ranges follow one another are
//! written as their lengths (u16 where they fit) or ends, and what the load can derive cheaply
//! (the templates with pinyin) is not written. Smaller bytes are read faster from IndexedDB. Every offset and range is checked on load, so bytes
//! that were cut or changed give an error, never a panic or an out-of-bounds read later in
//! [`SearchIndex::search`]. Text columns are kept as bytes and not checked as UTF-8: search reads
//! them as bytes and decodes a char only through checked conversions, so changed text can only
//! change results. The format is private to one build of the core: both ends run the same wasm,
//! so there is no migration, only a version check.

use super::fuzzy::Vocab;
use super::pinyin::{PinyinIndex, Reading, Seq};
use super::{Column, Field, SearchIndex};

const MAGIC: &[u8; 4] = b"QVSX";
/// A pinyin sequence: field (u8), units (2 × u32), initials, letters, pairs (4 × u64).
const SEQ_BYTES: usize = 41;
/// 2: ids as one column, no titles (v1 kept both as strings, loaded one allocation each), the
/// compact range tables.
const VERSION: u32 = 2;

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
        let mut v = Vec::with_capacity(n);
        v.extend(
            s.chunks_exact(4)
                .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])),
        );
        Ok(v)
    }
    /// A text column, left where it is in the snapshot, and its range table, checked: rising
    /// from 0 to the end, every segment ending with the `\n` that `Column::segment` drops.
    fn column(&mut self, n: usize) -> R<Column> {
        let len = self.len(1)?;
        let at = self.at;
        let text = self.take(len)?;
        let starts = match self.u8()? {
            2 => {
                let count = self.len(2)?;
                if count != n {
                    return Err(bad("range table"));
                }
                let mut starts = Vec::with_capacity(count + 1);
                starts.push(0u32);
                let mut end = 0usize;
                for c in self.take(count * 2)?.chunks_exact(2) {
                    end += usize::from(u16::from_le_bytes([c[0], c[1]]));
                    if end > len {
                        return Err(bad("range table"));
                    }
                    starts.push(end as u32);
                }
                starts
            }
            4 => self.u32s()?,
            _ => return Err(bad("range table width")),
        };
        check_starts(&starts, n, len)?;
        if starts
            .windows(2)
            .any(|w| w[0] == w[1] || text[w[1] as usize - 1] != b'\n')
        {
            return Err(bad("column segment"));
        }
        Ok(Column { at, len, starts })
    }
}

/// `starts` (one more than items) rises from 0 to `end`.
fn check_starts(starts: &[u32], items: usize, end: usize) -> R<()> {
    if starts.len() != items + 1 || starts.first() != Some(&0) || starts[items] as usize != end {
        return Err(bad("range table"));
    }
    if starts.windows(2).any(|w| w[0] > w[1]) {
        return Err(bad("range table not in order"));
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
        w.len(self.len());
        for c in std::iter::once(&self.ids).chain(&self.columns) {
            w.bytes(c.text(&self.text));
            // The segments' lengths as u16 when they fit (they do unless an id, a title or a tag
            // is longer than 64 KiB: bodies are cut at 8 KiB), else the range table itself.
            if c.starts
                .windows(2)
                .all(|s| s[1] - s[0] <= u32::from(u16::MAX))
            {
                w.u8(2);
                w.len(c.starts.len() - 1);
                for s in c.starts.windows(2) {
                    w.0.extend_from_slice(&((s[1] - s[0]) as u16).to_le_bytes());
                }
            } else {
                w.u8(4);
                w.u32s(&c.starts);
            }
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
        // Words follow one another in `bytes`, and their postings one another from 0: only
        // their lengths and ends are written.
        let v = &self.vocab;
        w.len(v.words.len());
        for &(_, len) in &v.words {
            w.u8(len);
        }
        w.len(v.posting_ranges.len());
        for &(_, end) in &v.posting_ranges {
            w.u32(end);
        }
        w.u32s(&v.postings);
        w.bytes(&v.bytes);
        // ranking (`han` is read back from the pinyin ranges)
        w.u32s(&self.title_rank);
        // Usage and last send only of the templates that have either (most have neither).
        let used: Vec<usize> = (0..self.len())
            .filter(|&t| self.usage[t].to_bits() != 0 || self.last_used[t].is_some())
            .collect();
        w.len(used.len());
        for t in used {
            w.u32(t as u32);
            w.u32(self.usage[t].to_bits());
            // u64::MAX stands for "never": no send has that time.
            w.u64(self.last_used[t].unwrap_or(u64::MAX));
        }
        w.0
    }

    /// An index from [`SearchIndex::snapshot`]'s bytes. Refuses bytes that are cut, changed or
    /// from another format version, naming what is wrong.
    /// The text columns stay in `bytes`, where search reads them.
    pub fn from_snapshot(bytes: Vec<u8>) -> Result<SearchIndex, String> {
        let mut r = Reader { b: &bytes, at: 0 };
        if r.take(4).ok() != Some(MAGIC.as_slice()) {
            return Err(bad("not a snapshot"));
        }
        let version = r.u32()?;
        if version != VERSION {
            return Err(bad(&format!("format {version}, this core reads {VERSION}")));
        }
        let n = r.u32()? as usize;
        let ids = r.column(n)?;
        let mut columns: [Column; 5] = Default::default();
        for c in &mut columns {
            *c = r.column(n)?;
        }

        let by_template = r.u32s()?;
        let seq_count = r.len(SEQ_BYTES)?;
        let mut seqs = Vec::with_capacity(seq_count);
        for rec in r.take(seq_count * SEQ_BYTES)?.chunks_exact(SEQ_BYTES) {
            let code = rec[0];
            if code > Field::Body as u8 {
                return Err(bad("field code"));
            }
            let u32_at =
                |i: usize| u32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
            let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
            seqs.push(Seq {
                field: Field::from_code(code),
                units: (u32_at(1), u32_at(5)),
                initials: u64_at(9),
                letters: u64_at(17),
                pairs: u128::from(u64_at(25)) | (u128::from(u64_at(33)) << 64),
            });
        }
        check_starts(&by_template, n, seqs.len())?;
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

        let word_count = r.len(1)?;
        let lens = r.take(word_count)?;
        let ends = r.u32s()?;
        let postings = r.u32s()?;
        let vbytes = r.bytes()?.to_vec();
        if ends.len() != word_count {
            return Err(bad("vocabulary ranges"));
        }
        // Word offsets: their lengths added up, within `vbytes` (so below 4 GiB).
        let mut words = Vec::with_capacity(word_count);
        let mut off = 0usize;
        for &len in lens {
            words.push((off as u32, len));
            off += usize::from(len);
            if off > vbytes.len() {
                return Err(bad("vocabulary word"));
            }
        }
        let mut posting_ranges = Vec::with_capacity(word_count);
        let mut start = 0u32;
        for &end in &ends {
            check_range((start, end), postings.len())?;
            posting_ranges.push((start, end));
            start = end;
        }
        if postings
            .iter()
            .any(|&p| (p >> 3) as usize >= n || (p & 7) > Field::Body as u32)
        {
            return Err(bad("vocabulary posting"));
        }

        // The templates with pinyin sequences (by_template is checked above).
        let han: Vec<u32> = (0..n)
            .filter(|&t| by_template[t + 1] > by_template[t])
            .map(|t| t as u32)
            .collect();
        let title_rank = r.u32s()?;
        if title_rank.len() != n {
            return Err(bad("per-template table"));
        }
        if title_rank.iter().any(|&t| t as usize >= n) {
            return Err(bad("title rank"));
        }
        // `n` is bounded by the columns' range tables read above.
        let used = r.len(16)?;
        let mut usage = vec![0f32; n];
        let mut last_used = vec![None; n];
        for _ in 0..used {
            let t = r.u32()? as usize;
            if t >= n {
                return Err(bad("template number"));
            }
            usage[t] = f32::from_bits(r.u32()?);
            let l = r.u64()?;
            last_used[t] = (l != u64::MAX).then_some(l);
        }
        if r.at != bytes.len() {
            return Err(bad("bytes after the end"));
        }
        Ok(SearchIndex {
            text: bytes,
            ids,
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
