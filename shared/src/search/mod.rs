//! Template search, for the palette (in the browser, over wasm) and the daemon
//! (`quiver templates search`, protocol `templates.search`).
//!
//! [`SearchIndex::build`] precomputes everything per template (normalised text, pinyin
//! sequences, a typo vocabulary); [`SearchIndex::search`] runs once per keystroke.
//!
//! # Matching
//! Case-insensitive (full-width ASCII folded too) on the shortcut, the title, the tags, the folder
//! and the body text. The query is split on whitespace; every word must match somewhere (AND),
//! in any field. Each word is matched as
//! - **exact** (the whole field, or a whole tag), **prefix** (the field or a tag starts with it),
//!   **word prefix** (a word inside starts with it), **substring** (Chinese works on chars);
//! - **pinyin**, on titles and tags that contain Chinese: full spelling, initials, or any mix of
//!   syllable prefixes of consecutive chars (`sd`, `shao`, `shaodeng` for 稍等; `tkzc`,
//!   `tuikuan`, `zc` for 退款政策; `退kzc` mixes a char and initials). Every reading of a
//!   polyphonic char matches (行: `xing`, `hang`), since there is no word dictionary to pick
//!   one; `ü` is typed `v` or `u`. Readings cover U+4E00..U+9FFF (see `pinyin.rs`);
//! - **typo** (Latin words of 4+ ASCII letters or digits: one insertion, deletion, substitution
//!   or transposition; from 8, two), against the words of titles, tags and shortcuts. The last
//!   query word, the one being typed, may also match a word's prefix with a typo (`grett` finds
//!   "Greeting"). Never for words of 1-3 chars.
//!
//! # Ranking
//! Each word's best match scores `FIELD_WEIGHT × QUALITY_WEIGHT` (see [`relevance`]); a
//! multi-word query averages its words, or takes the whole query's score as a phrase when that
//! is higher ("refund policy" as a title). Hits are ordered by relevance, then by popularity —
//! `ln(1 + usage)`, plus up to 2 for recency (halving every 7 days), plus the caller's per-template
//! boost (channel fit) — then by title, then by id. An empty query lists every template by
//! popularity.
//!
//! # Cost
//! Build is linear in the library's text. A search scans the normalised text columns (one
//! vectorised substring search per column and word), the pinyin sequences of Chinese titles
//! and tags (prefiltered by letter masks) and the typo vocabulary (a depth-first walk that
//! shares work between words with a common prefix). For a one-word query, passes that cannot
//! change the top `limit` are skipped. Numbers: `cargo bench -p quiver-shared --bench search`.
//!
//! Limits: bodies are indexed up to 8 KiB each; each column up to 4 GiB (then fields index
//! empty); a query up to 256 chars and 8 words; pinyin for query words up to 63 bytes, typos
//! up to 32.
//!
//! Architecture invariant: no IO, no clock, no randomness (the index's hash maps use a fixed
//! hasher); `now_ms` comes in through [`SearchOptions`].

mod fuzzy;
mod pinyin;
#[rustfmt::skip]
mod pinyin_table;
mod snapshot;
#[cfg(test)]
mod tests;
mod text;

use memchr::memmem::Finder;
use serde::Serialize;
use std::hash::Hasher;

use crate::model::Template;

pub use text::{html_text, parts_text};

/// Where a query matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Field {
    Shortcut = 0,
    Title = 1,
    Tag = 2,
    Folder = 3,
    Body = 4,
}

impl Field {
    fn from_code(c: u8) -> Field {
        match c {
            0 => Field::Shortcut,
            1 => Field::Title,
            2 => Field::Tag,
            3 => Field::Folder,
            _ => Field::Body,
        }
    }

    /// Shortcut 5, title 4, tag 3, folder 2, body 1.
    pub fn weight(self) -> u16 {
        5 - self as u16
    }
}

/// How well a query matched, best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Quality {
    /// The whole field, or a whole tag.
    Exact = 0,
    /// The field (or a tag) starts with the query.
    Prefix = 1,
    /// A word inside the field starts with the query.
    WordPrefix = 2,
    Substring = 3,
    /// Pinyin (spelling, initials or a mix) from the field's first char.
    PinyinPrefix = 4,
    /// Pinyin starting further in.
    Pinyin = 5,
    /// One typo.
    Typo1 = 6,
    /// Two typos (query words of 8+ chars).
    Typo2 = 7,
}

impl Quality {
    fn from_code(c: u8) -> Quality {
        match c {
            0 => Quality::Exact,
            1 => Quality::Prefix,
            2 => Quality::WordPrefix,
            3 => Quality::Substring,
            4 => Quality::PinyinPrefix,
            5 => Quality::Pinyin,
            6 => Quality::Typo1,
            _ => Quality::Typo2,
        }
    }

    /// Exact 20, prefix 14, word prefix 12, substring 10, pinyin prefix 9, pinyin 8, one typo 6,
    /// two typos 4.
    pub fn weight(self) -> u16 {
        [20, 14, 12, 10, 9, 8, 6, 4][self as usize]
    }
}

/// The relevance of one match: field weight × quality weight. Shortcut exact is 100, title
/// exact 80, title prefix 56, title substring 40, title pinyin 36/32, tag exact 60, body
/// substring 10, a one-typo title word 24.
pub fn relevance(field: Field, quality: Quality) -> u16 {
    field.weight() * quality.weight()
}

/// A template to index. [`IndexedTemplate::from_template`] fills it from a [`Template`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct IndexedTemplate {
    pub id: String,
    pub title: String,
    pub shortcut: Option<String>,
    pub tags: Vec<String>,
    pub folder: String,
    /// The text of every part, joined (see [`parts_text`]).
    pub body_text: String,
    pub usage_count: u32,
    /// When the template was last sent, in milliseconds since the Unix epoch.
    pub last_used_ms: Option<u64>,
}

impl IndexedTemplate {
    pub fn from_template(t: &Template, usage_count: u32, last_used_ms: Option<u64>) -> Self {
        IndexedTemplate {
            id: t.id.clone(),
            title: t.title.clone(),
            shortcut: t.shortcut.clone(),
            tags: t.tags.clone(),
            folder: t.folder.clone(),
            body_text: parts_text(&t.parts),
            usage_count,
            last_used_ms,
        }
    }
}

/// Per-query options.
#[derive(Debug, Clone, Copy)]
pub struct SearchOptions<'a> {
    /// At most this many hits.
    pub limit: usize,
    /// The current time, for recency; without it recency is ignored.
    pub now_ms: Option<u64>,
    /// Optional per-template boost added to popularity, indexed like the slice given to
    /// [`SearchIndex::build`] (e.g. 1.0 for templates the conversation's channel can show, 0.0
    /// otherwise). Missing entries and non-finite values count as 0; values are clamped to
    /// ±100. One unit weighs as much as multiplying the usage count by e.
    pub boost: Option<&'a [f32]>,
}

impl Default for SearchOptions<'_> {
    fn default() -> Self {
        SearchOptions {
            limit: 50,
            now_ms: None,
            boost: None,
        }
    }
}

/// One search result.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Hit {
    /// Index in the slice given to [`SearchIndex::build`]; see [`SearchIndex::id`].
    pub index: usize,
    /// `relevance × 1000 + popularity`: hits come in descending score, ties by title then id.
    pub score: f64,
    /// See [`relevance`]; 0 for an empty query.
    pub relevance: u16,
    /// Usage, recency and boost (see the module documentation).
    pub popularity: f32,
    /// The field of the best match; `None` for an empty query.
    pub matched: Option<Field>,
    pub quality: Option<Quality>,
}

/// A text column: every template's field (normalised, or an id), each followed by `\n`, kept in
/// the index's `text` buffer (for an index loaded from a snapshot, the snapshot itself: the
/// columns are searched where they lie). Bytes, not a `str`: search reads them as bytes (a char
/// is decoded only where a match starts, with checked conversions), so a loaded snapshot needs
/// no UTF-8 check of its columns.
#[derive(Default)]
struct Column {
    /// Where the column's text is in the buffer, and its length.
    at: usize,
    len: usize,
    /// Start of each template's segment; one more entry than templates.
    starts: Vec<u32>,
}

impl Column {
    /// The column's text, in the index's `text` buffer.
    fn text<'a>(&self, buf: &'a [u8]) -> &'a [u8] {
        &buf[self.at..self.at + self.len]
    }

    /// Template `t`'s segment (without its `\n`) in the column's text `hay`.
    fn segment<'a>(&self, hay: &'a [u8], t: usize) -> &'a [u8] {
        let (a, b) = (self.starts[t] as usize, self.starts[t + 1] as usize - 1);
        &hay[a..b]
    }
}

/// A column being built: its own text until [`ColumnBuf::finish`] appends it to the buffer.
#[derive(Default)]
struct ColumnBuf {
    text: Vec<u8>,
    starts: Vec<u32>,
}

impl ColumnBuf {
    fn push(&mut self, s: &str) {
        // Offsets are u32: past 4 GiB, further fields are indexed empty.
        let s = if self.text.len() + s.len() + 1 >= u32::MAX as usize {
            ""
        } else {
            s
        };
        self.starts.push(self.text.len() as u32);
        self.text.extend_from_slice(s.as_bytes());
        self.text.push(b'\n');
    }

    fn finish(mut self, buf: &mut Vec<u8>) -> Column {
        self.starts.push(self.text.len() as u32);
        let at = buf.len();
        buf.extend_from_slice(&self.text);
        Column {
            at,
            len: self.text.len(),
            starts: self.starts,
        }
    }
}

/// Separates tags inside the tag column.
const TAG_SEP: u8 = 0x1f;
/// Query limits: longer queries are cut (a palette query is a few words).
const MAX_QUERY_CHARS: usize = 256;
const MAX_WORDS: usize = 8;

/// The search index over a template library. Build once per library change; search per
/// keystroke. `Send + Sync`, immutable once built.
pub struct SearchIndex {
    /// The text of every column (see [`Column`]).
    text: Vec<u8>,
    /// The templates' ids, as a column (one allocation, not one per template).
    ids: Column,
    /// Columns by [`Field`] code.
    columns: [Column; 5],
    pinyin: pinyin::PinyinIndex,
    vocab: fuzzy::Vocab,
    /// Templates whose title or tags contain Chinese (those with pinyin sequences).
    han: Vec<u32>,
    usage: Vec<f32>,
    last_used: Vec<Option<u64>>,
    /// Position in (normalised title, id) order, for the tie-break.
    title_rank: Vec<u32>,
}

impl std::fmt::Debug for SearchIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SearchIndex")
            .field("templates", &self.len())
            .field("pinyin", &self.pinyin)
            .field("vocab", &self.vocab)
            .finish_non_exhaustive()
    }
}

/// Per template and query word, the best match packed as `relevance << 16 | field' << 8 |
/// quality'` (primes: inverted so that a larger number is better); 0 is no match.
type Packed = u32;

fn pack(field: Field, quality: Quality) -> Packed {
    (u32::from(relevance(field, quality)) << 16) | ((4 - field as u32) << 8) | (7 - quality as u32)
}

fn unpack(p: Packed) -> (u16, Field, Quality) {
    (
        (p >> 16) as u16,
        Field::from_code(4 - ((p >> 8) & 0xff) as u8),
        Quality::from_code(7 - (p & 0xff) as u8),
    )
}

impl SearchIndex {
    pub fn build(templates: &[IndexedTemplate]) -> SearchIndex {
        let n = templates.len();
        let mut bufs: [ColumnBuf; 5] = Default::default();
        let mut pinyin = pinyin::Builder::new();
        let mut han = Vec::new();
        let mut scratch = String::new();
        for (i, t) in templates.iter().enumerate() {
            let ti = i as u32;
            pinyin.start_template();
            let with_pinyin = pinyin.seq_count();

            scratch.clear();
            if let Some(s) = &t.shortcut {
                text::normalize_into(s, &mut scratch);
            }
            bufs[Field::Shortcut as usize].push(&scratch);

            scratch.clear();
            text::normalize_into(&t.title, &mut scratch);
            bufs[Field::Title as usize].push(&scratch);
            pinyin.add(Field::Title, &scratch);

            scratch.clear();
            for tag in &t.tags {
                let mark = scratch.len();
                if mark > 0 {
                    scratch.push(TAG_SEP as char);
                }
                let before = scratch.len();
                text::normalize_into(tag, &mut scratch);
                if scratch.len() == before {
                    scratch.truncate(mark);
                } else {
                    pinyin.add(Field::Tag, &scratch[before..]);
                }
            }
            bufs[Field::Tag as usize].push(&scratch);

            scratch.clear();
            text::normalize_into(&t.folder, &mut scratch);
            bufs[Field::Folder as usize].push(&scratch);

            scratch.clear();
            text::normalize_into(&t.body_text, &mut scratch);
            text::cut_at_char(&mut scratch, text::MAX_BODY_BYTES);
            bufs[Field::Body as usize].push(&scratch);

            if pinyin.seq_count() > with_pinyin {
                han.push(ti);
            }
        }
        let mut ids = ColumnBuf::default();
        for t in templates {
            ids.push(&t.id);
        }
        let mut text =
            Vec::with_capacity(bufs.iter().map(|c| c.text.len()).sum::<usize>() + ids.text.len());
        let ids = ids.finish(&mut text);
        let columns = bufs.map(|c| c.finish(&mut text));

        let mut vocab = fuzzy::VocabBuilder::new();
        for i in 0..n {
            for field in [Field::Shortcut, Field::Title, Field::Tag] {
                let col = &columns[field as usize];
                let seg = col.segment(col.text(&text), i);
                // Segments are whole chars of a String.
                let s = std::str::from_utf8(seg).unwrap_or("");
                vocab.add(i as u32, field, s);
            }
        }
        let vocab = vocab.finish();

        let title_col = &columns[Field::Title as usize];
        let titles = title_col.text(&text);
        let mut order: Vec<(&[u8], &[u8], u32)> = (0..n)
            .map(|t| {
                (
                    title_col.segment(titles, t),
                    templates[t].id.as_bytes(),
                    t as u32,
                )
            })
            .collect();
        sort_by_bytes(&mut order);
        let mut title_rank = vec![0u32; n];
        for (r, &(_, _, t)) in order.iter().enumerate() {
            title_rank[t as usize] = r as u32;
        }

        SearchIndex {
            text,
            ids,
            columns,
            pinyin: pinyin.finish(),
            vocab,
            han,
            usage: templates
                .iter()
                .map(|t| (t.usage_count as f32).ln_1p())
                .collect(),
            last_used: templates.iter().map(|t| t.last_used_ms).collect(),
            title_rank,
        }
    }

    pub fn len(&self) -> usize {
        self.ids.starts.len().saturating_sub(1)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id of the template at `index` (empty if it is not UTF-8: a changed snapshot).
    pub fn id(&self, index: usize) -> &str {
        std::str::from_utf8(self.ids.segment(self.ids.text(&self.text), index)).unwrap_or("")
    }

    /// Searches; see the module documentation for matching and ranking.
    pub fn search(&self, query: &str, opts: &SearchOptions<'_>) -> Vec<Hit> {
        let n = self.len();
        if opts.limit == 0 || n == 0 {
            return Vec::new();
        }
        let mut q = text::normalize(query);
        if let Some((cut, _)) = q.char_indices().nth(MAX_QUERY_CHARS) {
            q.truncate(cut);
        }
        let words: Vec<&str> = q
            .split(' ')
            .filter(|w| !w.is_empty())
            .take(MAX_WORDS)
            .collect();
        if words.is_empty() {
            return self.rank((0..n as u32).map(|t| (t, 0)), opts);
        }

        // Single word: the word's matches are the result, and passes that cannot reach the
        // top `limit` are skipped.
        if words.len() == 1 {
            let mut best = vec![0 as Packed; n];
            self.match_word(words[0], true, None, opts.limit, &mut best);
            return self.rank(
                best.iter()
                    .enumerate()
                    .filter(|(_, &p)| p != 0)
                    .map(|(t, &p)| (t as u32, p)),
                opts,
            );
        }

        // Several words: AND. `sum` adds each word's relevance, `top` keeps the best match.
        let mut alive: Option<Vec<u32>> = None;
        let mut sum = vec![0u32; n];
        let mut top = vec![0 as Packed; n];
        let mut best = vec![0 as Packed; n];
        // Longest (most selective) words first: later words only examine the survivors.
        // (An insertion sort: a handful of words, and no sort code for the wasm to carry.)
        let mut order: Vec<usize> = Vec::with_capacity(words.len());
        for i in 0..words.len() {
            let at = order
                .iter()
                .position(|&j| words[j].len() < words[i].len())
                .unwrap_or(order.len());
            order.insert(at, i);
        }
        for (step, &wi) in order.iter().enumerate() {
            let w = words[wi];
            if step > 0 {
                best.iter_mut().for_each(|b| *b = 0);
            }
            let last = wi + 1 == words.len();
            let candidates = alive.as_deref().filter(|a| a.len() * 2 < n);
            self.match_word(w, last, candidates, usize::MAX, &mut best);
            let survivors: Vec<u32> = match &alive {
                None => (0..n as u32).filter(|&t| best[t as usize] != 0).collect(),
                Some(a) => a
                    .iter()
                    .copied()
                    .filter(|&t| best[t as usize] != 0)
                    .collect(),
            };
            for &t in &survivors {
                let p = best[t as usize];
                sum[t as usize] += p >> 16;
                top[t as usize] = top[t as usize].max(p);
            }
            if survivors.is_empty() {
                return Vec::new();
            }
            alive = Some(survivors);
        }
        let alive = alive.unwrap_or_default();
        // The whole query as a phrase, on the survivors only. Each starts at its words' mean,
        // so that columns whose best cannot beat it are skipped.
        let words_n = words.len() as u32;
        for &t in &alive {
            best[t as usize] = (sum[t as usize] / words_n) << 16;
        }
        self.match_columns(&q, Some(&alive), usize::MAX, &mut best);
        self.rank(
            alive.iter().map(|&t| {
                let mean = sum[t as usize] / words_n;
                let phrase = best[t as usize];
                let p = if phrase > mean << 16 {
                    phrase
                } else {
                    // The mean relevance, reported with the best word's field and quality.
                    (mean << 16) | (top[t as usize] & 0xffff)
                };
                (t, p)
            }),
            opts,
        )
    }

    /// Matches one query word, writing the best match per template into `best`. With
    /// `candidates`, only those templates are examined (typo matches may mark others too).
    /// With a `limit`, passes that cannot put a template into the top `limit` are skipped.
    fn match_word(
        &self,
        word: &str,
        last: bool,
        candidates: Option<&[u32]>,
        limit: usize,
        best: &mut [Packed],
    ) {
        self.match_columns_until(word, candidates, limit, best, Field::Folder);

        if let Some(pq) = pinyin::PinyinQuery::new(word) {
            if !saturated(best, limit, relevance(Field::Title, Quality::PinyinPrefix)) {
                let skip = pack(Field::Title, Quality::PinyinPrefix);
                let mut on = |t: usize| {
                    if best[t] >= skip {
                        return;
                    }
                    for seq in self.pinyin.seqs_of(t) {
                        if let Some(m) = self.pinyin.matches(seq, &pq) {
                            let quality = match m {
                                pinyin::PinyinMatch::Prefix => Quality::PinyinPrefix,
                                pinyin::PinyinMatch::Inner => Quality::Pinyin,
                            };
                            let p = pack(seq.field, quality);
                            best[t] = best[t].max(p);
                        }
                    }
                };
                match candidates {
                    Some(c) => c.iter().for_each(|&t| on(t as usize)),
                    None => self.han.iter().for_each(|&t| on(t as usize)),
                }
            }
        }

        let edits = fuzzy::allowed_edits(word);
        if edits > 0 && !saturated(best, limit, relevance(Field::Shortcut, Quality::Typo1)) {
            self.vocab
                .search(word.as_bytes(), edits, last, |postings, d| {
                    let quality = if d <= 1 {
                        Quality::Typo1
                    } else {
                        Quality::Typo2
                    };
                    for &post in postings {
                        let (t, field) = fuzzy::posting_parts(post);
                        best[t] = best[t].max(pack(field, quality));
                    }
                });
        }

        if !saturated(best, limit, relevance(Field::Body, Quality::Exact)) {
            self.match_column(Field::Body, word, candidates, best);
        }
    }

    /// Exact, prefix, word-prefix and substring matches of `needle` on every column.
    fn match_columns(
        &self,
        needle: &str,
        candidates: Option<&[u32]>,
        limit: usize,
        best: &mut [Packed],
    ) {
        self.match_columns_until(needle, candidates, limit, best, Field::Body);
    }

    fn match_columns_until(
        &self,
        needle: &str,
        candidates: Option<&[u32]>,
        limit: usize,
        best: &mut [Packed],
        last: Field,
    ) {
        for field in [
            Field::Shortcut,
            Field::Title,
            Field::Tag,
            Field::Folder,
            Field::Body,
        ] {
            if field > last {
                break;
            }
            if field > Field::Title && saturated(best, limit, relevance(field, Quality::Exact)) {
                break;
            }
            self.match_column(field, needle, candidates, best);
        }
    }

    fn match_column(
        &self,
        field: Field,
        needle: &str,
        candidates: Option<&[u32]>,
        best: &mut [Packed],
    ) {
        let col = &self.columns[field as usize];
        let hay = col.text(&self.text);
        let nb = needle.as_bytes();
        let finder = Finder::new(nb);
        let ceiling = pack(field, Quality::Exact);
        let tags = field == Field::Tag;
        match candidates {
            Some(c) => {
                for &t in c {
                    let t = t as usize;
                    if best[t] >= ceiling {
                        continue;
                    }
                    let seg = col.segment(hay, t);
                    if let Some(at) = find(seg, nb, &finder) {
                        let q = classify(seg, at, nb.len(), &finder, tags);
                        best[t] = best[t].max(pack(field, q));
                    }
                }
            }
            None => {
                let mut pos = 0;
                let mut t = 0;
                while let Some(i) = finder.find(&hay[pos..]) {
                    let at = pos + i;
                    // Hits come in order: move to the template whose segment holds `at`,
                    // galloping so that sparse hits stay cheap.
                    if col.starts[t + 1] as usize <= at {
                        let starts = &col.starts;
                        // starts[lo] <= at < starts[hi] (or hi is the end).
                        let (mut lo, mut step) = (t + 1, 1);
                        let mut hi = lo + step;
                        while hi < starts.len() && starts[hi] as usize <= at {
                            lo = hi;
                            step *= 2;
                            hi = lo + step;
                        }
                        let hi = hi.min(starts.len());
                        t = lo + starts[lo + 1..hi].partition_point(|&s| s as usize <= at);
                    }
                    let (start, end) = (col.starts[t] as usize, col.starts[t + 1] as usize);
                    if best[t] < ceiling {
                        let seg = &hay[start..end - 1];
                        let q = classify(seg, at - start, nb.len(), &finder, tags);
                        best[t] = best[t].max(pack(field, q));
                    }
                    pos = end;
                    if pos >= hay.len() {
                        break;
                    }
                }
            }
        }
    }

    /// Orders matches (template, packed match) and keeps the top `limit`.
    fn rank(
        &self,
        matches: impl Iterator<Item = (u32, Packed)>,
        opts: &SearchOptions<'_>,
    ) -> Vec<Hit> {
        let matches: Vec<(u32, Packed)> = matches.collect();
        // Only matches whose relevance can reach the top `limit` need a popularity.
        let floor = packed_floor(&matches, opts.limit);
        // Sort keys, inverted so that the natural (ascending) order is best first.
        let mut keys: Vec<u128> = matches
            .into_iter()
            .filter(|&(_, p)| p >= floor)
            .map(|(t, p)| {
                let pop = self.popularity(t as usize, opts);
                !((u128::from(p) << 96)
                    | (u128::from(ordered_bits(pop)) << 64)
                    | (u128::from(u32::MAX - self.title_rank[t as usize]) << 32)
                    | u128::from(t))
            })
            .collect();
        if keys.len() > opts.limit {
            keys.select_nth_unstable(opts.limit - 1);
            keys.truncate(opts.limit);
        }
        keys.sort_unstable();
        keys.into_iter()
            .map(|key| {
                let key = !key;
                let p = (key >> 96) as Packed;
                let index = (key & 0xffff_ffff) as usize;
                let popularity = self.popularity(index, opts);
                let (relevance, field, quality) = unpack(p);
                let (matched, quality) = if p == 0 {
                    (None, None)
                } else {
                    (Some(field), Some(quality))
                };
                Hit {
                    index,
                    score: f64::from(relevance) * 1000.0 + f64::from(popularity),
                    relevance,
                    popularity,
                    matched,
                    quality,
                }
            })
            .collect()
    }

    fn popularity(&self, t: usize, opts: &SearchOptions<'_>) -> f32 {
        let mut pop = self.usage[t];
        if let (Some(now), Some(last)) = (opts.now_ms, self.last_used[t]) {
            let days = now.saturating_sub(last) as f64 / 86_400_000.0;
            pop += (2.0 * 0.5f64.powf(days / 7.0)) as f32;
        }
        if let Some(b) = opts.boost.and_then(|b| b.get(t)) {
            if b.is_finite() {
                pop += b.clamp(-100.0, 100.0);
            }
        }
        pop
    }
}

/// A floor on packed values such that at least `limit` matches are at or above it (0 when there
/// are fewer): the largest relevance `r` with `limit` matches of relevance `>= r`.
fn packed_floor(matches: &[(u32, Packed)], limit: usize) -> Packed {
    if matches.len() <= limit {
        return 0;
    }
    let mut counts = [0usize; 256];
    for &(_, p) in matches {
        counts[((p >> 16) as usize).min(255)] += 1;
    }
    let mut total = 0;
    for r in (0..256).rev() {
        total += counts[r];
        if total >= limit {
            return (r as Packed) << 16;
        }
    }
    0
}

/// True when at least `limit` templates already score above `ceiling`: a pass whose matches
/// score at most `ceiling` cannot change the top `limit`.
fn saturated(best: &[Packed], limit: usize, ceiling: u16) -> bool {
    if limit >= best.len() {
        return false;
    }
    let bar = (u32::from(ceiling) + 1) << 16;
    best.iter().filter(|&&p| p >= bar).take(limit).count() >= limit
}

/// The first occurrence of `needle` in `hay`: a plain loop for short haystacks (titles, tags),
/// where it beats setting up a vectorised search.
#[inline]
fn find(hay: &[u8], needle: &[u8], finder: &Finder<'_>) -> Option<usize> {
    if hay.len() >= 64 {
        return finder.find(hay);
    }
    // The last byte first: in Chinese text the lead bytes of chars repeat, the last ones less.
    let (&last, rest) = needle.split_last()?;
    let len = needle.len();
    let last_start = hay.len().checked_sub(len)?;
    (0..=last_start).find(|&i| hay[i + len - 1] == last && &hay[i..i + len - 1] == rest)
}

/// The best quality among the occurrences of the needle in `seg`, the first being at `at`.
/// `tags`: the segment holds tags separated by `TAG_SEP`; otherwise only its start can be an
/// exact or prefix match.
fn classify(seg: &[u8], mut at: usize, len: usize, finder: &Finder<'_>, tags: bool) -> Quality {
    let mut best = Quality::Substring;
    loop {
        let starts_elem = at == 0 || seg[at - 1] == TAG_SEP;
        let ends_elem = at + len == seg.len() || seg[at + len] == TAG_SEP;
        let q = if starts_elem && ends_elem {
            Quality::Exact
        } else if starts_elem {
            Quality::Prefix
        } else if word_start(seg, at) {
            Quality::WordPrefix
        } else {
            Quality::Substring
        };
        best = best.min(q);
        if best == Quality::Exact || (best <= Quality::WordPrefix && !tags) {
            return best;
        }
        match find(&seg[at + 1..], &seg[at..at + len], finder) {
            Some(i) => at += 1 + i,
            None => return best,
        }
    }
}

fn word_start(seg: &[u8], at: usize) -> bool {
    match char_at(seg, at) {
        Some(first) => text::is_word_start(char_before(seg, at), first),
        None => false,
    }
}

/// The char ending at byte `at` of valid UTF-8.
fn char_before(seg: &[u8], at: usize) -> Option<char> {
    let mut s = at.checked_sub(1)?;
    while s > 0 && seg[s] & 0xc0 == 0x80 {
        s -= 1;
    }
    std::str::from_utf8(&seg[s..at]).ok()?.chars().next()
}

/// The char starting at byte `at` of valid UTF-8.
fn char_at(seg: &[u8], at: usize) -> Option<char> {
    let len = match *seg.get(at)? {
        b if b < 0x80 => 1,
        b if b >= 0xf0 => 4,
        b if b >= 0xe0 => 3,
        _ => 2,
    };
    std::str::from_utf8(seg.get(at..at + len)?)
        .ok()?
        .chars()
        .next()
}

/// Sorts byte-string pairs with an index; one sort shared by the index's build steps (the
/// palette's wasm carries one copy of the sort code rather than one per call site).
pub(crate) fn sort_by_bytes(items: &mut [(&[u8], &[u8], u32)]) {
    items.sort_unstable();
}

/// f32 to u32 preserving order (for the sort key).
fn ordered_bits(f: f32) -> u32 {
    let b = f.to_bits();
    if b & 0x8000_0000 != 0 {
        !b
    } else {
        b | 0x8000_0000
    }
}

/// FNV-1a: a fixed hasher for the index's build-time maps (no random seed).
#[derive(Default)]
struct FnvHasher(u64);

impl Hasher for FnvHasher {
    fn finish(&self) -> u64 {
        self.0
    }

    fn write(&mut self, bytes: &[u8]) {
        let mut h = if self.0 == 0 {
            0xcbf2_9ce4_8422_2325
        } else {
            self.0
        };
        for &b in bytes {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        self.0 = h;
    }
}
