//! Pinyin matching for titles and tags that contain Chinese characters.
//!
//! A field becomes a sequence of *units*, one per alphanumeric char (spaces and punctuation are
//! skipped). A Chinese char's unit has every reading of the char (heteronyms included, `ü`
//! spelled both `v` and `u`) plus the char itself; any other char's unit is the char. A query matches when it splits into non-empty prefixes of the readings of consecutive
//! units: `sd`, `shao`, `shaod` and `shaodeng` all match 稍等, and `退kzc` matches 退款政策
//! (the char itself, then initials). A char used as its own reading must be typed whole.
//!
//! Matching runs a bit-parallel automaton over the query positions (a `u64`, so the query is at
//! most 63 bytes): no allocation, no backtracking, linear in the field's length.
//!
//! Readings come from `pinyin_table.rs`, generated from the `pinyin` crate's data for the CJK
//! Unified Ideographs (U+4E00..U+9FFF: all of GB2312's hanzi, the bulk of GBK's): 48 KB in
//! wasm, in byte planes that gzip packs to about 36 KB, where linking the crate itself costs
//! 450 KB. Rarer blocks (extensions A and beyond, compatibility ideographs) have no pinyin; they
//! still match as themselves.

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::pinyin_table::{
    EXTRA_CHAR_HIGH, EXTRA_CHAR_LOW, EXTRA_SYLLABLE_HIGH, EXTRA_SYLLABLE_LOW, FIRST_HIGH,
    FIRST_LOW, SYLLABLES,
};
use super::{Field, FnvHasher};

/// The chars the table covers.
pub(crate) const FIRST_CHAR: u32 = 0x4e00;
pub(crate) const LAST_CHAR: u32 = 0x9fff;

/// The toneless readings of a char (`ü` written `v`), most common first; none for a char
/// outside the table.
pub(crate) fn readings(c: char) -> impl Iterator<Item = &'static str> {
    let cp = c as u32;
    let off = cp.wrapping_sub(FIRST_CHAR) as usize;
    let first = if cp > LAST_CHAR {
        None
    } else {
        FIRST_LOW
            .get(off)
            .map(|&low| usize::from(low) | high_bit(&FIRST_HIGH, off))
            .filter(|&f| f != 0)
    };
    let extra = match first {
        Some(_) => {
            // Binary search of the first entry of the char, then the entries that follow.
            let char_at =
                |i: usize| usize::from(EXTRA_CHAR_HIGH[i]) << 8 | usize::from(EXTRA_CHAR_LOW[i]);
            let (mut lo, mut hi) = (0, EXTRA_CHAR_LOW.len());
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                if char_at(mid) < off {
                    lo = mid + 1;
                } else {
                    hi = mid;
                }
            }
            let end = (lo..EXTRA_CHAR_LOW.len())
                .find(|&i| char_at(i) != off)
                .unwrap_or(EXTRA_CHAR_LOW.len());
            lo..end
        }
        None => 0..0,
    };
    first.map(|f| SYLLABLES[f - 1]).into_iter().chain(
        extra.map(|i| {
            SYLLABLES[usize::from(EXTRA_SYLLABLE_LOW[i]) | high_bit(&EXTRA_SYLLABLE_HIGH, i)]
        }),
    )
}

/// Bit 8 of value `i` of a table split into a low-byte array and this bit array.
fn high_bit(bits: &[u8], i: usize) -> usize {
    usize::from(bits[i / 8] >> (i % 8) & 1) << 8
}

/// Longest query word, in bytes, that pinyin matching considers.
pub(crate) const MAX_QUERY: usize = 63;

#[derive(Debug, Clone, Copy)]
pub(crate) struct Reading {
    pub(crate) offset: u32,
    pub(crate) len: u8,
    /// Must be consumed whole (a char standing for itself).
    pub(crate) whole: bool,
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct Seq {
    pub field: Field,
    pub(crate) units: (u32, u32),
    /// Bits (see `char_bit`) of the first char of every reading of every unit.
    pub(crate) initials: u64,
    /// Bits of every char of every reading.
    pub(crate) letters: u64,
    /// Bloom filter of the byte pairs a match can begin with (see `pair_bit`).
    pub(crate) pairs: u128,
}

/// Pinyin sequences of every title and tag that contains a Chinese char.
#[derive(Default)]
pub(crate) struct PinyinIndex {
    /// Per template, the range of its sequences in `seqs`.
    pub by_template: Vec<u32>,
    pub seqs: Vec<Seq>,
    pub units: Vec<u32>,
    /// Per distinct symbol (char), the range of its readings.
    pub symbol_readings: Vec<(u32, u32)>,
    pub readings: Vec<Reading>,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for PinyinIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PinyinIndex")
            .field("seqs", &self.seqs.len())
            .field("units", &self.units.len())
            .field("symbols", &self.symbol_readings.len())
            .finish()
    }
}

/// The bit of a char in the prefilter masks: `a`-`z` and `0`-`9` have their own, any other
/// char (a Chinese char standing for itself) one of the remaining 28, by hash.
#[inline]
pub(crate) fn char_bit(c: char) -> u64 {
    match c {
        'a'..='z' => 1 << (c as u32 - 'a' as u32),
        '0'..='9' => 1 << (26 + c as u32 - '0' as u32),
        _ => 1 << (36 + ((c as u32).wrapping_mul(0x9e37_79b1) >> 27) % 28),
    }
}

fn char_bits(s: &str) -> u64 {
    s.chars().fold(0, |m, c| m | char_bit(c))
}

fn first_bit(s: &str) -> u64 {
    s.chars().next().map_or(0, char_bit)
}

pub(crate) fn has_han(s: &str) -> bool {
    s.chars().any(|c| readings(c).next().is_some())
}

/// Builds the index; `symbols` is a scratch map from char to symbol id.
pub(crate) struct Builder {
    index: PinyinIndex,
    symbols: HashMap<char, u32, BuildHasherDefault<FnvHasher>>,
}

impl Builder {
    pub fn new() -> Self {
        Builder {
            index: PinyinIndex::default(),
            symbols: HashMap::default(),
        }
    }

    /// Call once per template, in order, before adding its sequences.
    pub fn start_template(&mut self) {
        self.index.by_template.push(self.index.seqs.len() as u32);
    }

    pub fn seq_count(&self) -> usize {
        self.index.seqs.len()
    }

    /// Adds the sequence of one (already normalised) field when it contains a Chinese char.
    pub fn add(&mut self, field: Field, text: &str) {
        if !has_han(text) {
            return;
        }
        let start = self.index.units.len() as u32;
        let (mut initials, mut letters, mut pairs) = (0u64, 0u64, 0u128);
        for c in text.chars().filter(|c| c.is_alphanumeric()) {
            let sym = self.symbol(c);
            self.index.units.push(sym);
        }
        let end = self.index.units.len() as u32;
        let units = &self.index.units[start as usize..end as usize];
        for (i, &sym) in units.iter().enumerate() {
            let next = units.get(i + 1).map(|&s| self.index.readings_of(s));
            for r in self.index.readings_of(sym) {
                let bytes = self.index.reading_bytes(r);
                let text = std::str::from_utf8(bytes).unwrap_or("");
                initials |= first_bit(text);
                letters |= char_bits(text);
                // A match beginning in this unit starts with its reading's first byte, followed
                // by the reading's second byte, or (a one-byte prefix) the next unit's first.
                if let Some(&second) = bytes.get(1) {
                    if !r.whole {
                        pairs |= pair_bit(bytes[0], second);
                    }
                }
                if r.whole && bytes.len() > 1 {
                    // A whole char: the pair is its first two bytes.
                    pairs |= pair_bit(bytes[0], bytes[1]);
                } else if let Some(next) = next {
                    for n in next {
                        pairs |= pair_bit(bytes[0], self.index.reading_bytes(n)[0]);
                    }
                }
            }
        }
        self.index.seqs.push(Seq {
            field,
            units: (start, end),
            initials,
            letters,
            pairs,
        });
    }

    fn symbol(&mut self, c: char) -> u32 {
        if let Some(&id) = self.symbols.get(&c) {
            return id;
        }
        let ix = &mut self.index;
        let id = ix.symbol_readings.len() as u32;
        let first = ix.readings.len() as u32;
        let mut spellings: Vec<String> = Vec::new();
        for r in readings(c) {
            spellings.push(r.to_string());
            // `ü` is typed `v` by most input methods, `u` by some.
            if r.contains('v') {
                spellings.push(r.replace('v', "u"));
            }
        }
        let mut seen: Vec<&str> = Vec::new();
        for s in &spellings {
            if seen.contains(&s.as_str()) {
                continue;
            }
            seen.push(s);
            ix.readings.push(Reading {
                offset: ix.bytes.len() as u32,
                len: s.len() as u8,
                whole: false,
            });
            ix.bytes.extend_from_slice(s.as_bytes());
        }
        // The char itself (for a Latin letter or digit, its only reading).
        let mut buf = [0u8; 4];
        let own = c.encode_utf8(&mut buf).as_bytes();
        ix.readings.push(Reading {
            offset: ix.bytes.len() as u32,
            len: own.len() as u8,
            whole: true,
        });
        ix.bytes.extend_from_slice(own);
        ix.symbol_readings.push((first, ix.readings.len() as u32));
        self.symbols.insert(c, id);
        id
    }

    pub fn finish(mut self) -> PinyinIndex {
        self.index.by_template.push(self.index.seqs.len() as u32);
        self.index.units.shrink_to_fit();
        self.index.seqs.shrink_to_fit();
        self.index
    }
}

/// How a query matched a sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PinyinMatch {
    /// The match starts at the field's first char.
    Prefix,
    /// The match starts further in.
    Inner,
}

/// A query word prepared once: its bytes and prefilter bits.
#[derive(Debug)]
pub(crate) struct PinyinQuery<'q> {
    q: &'q [u8],
    first: u64,
    letters: u64,
    /// The bloom bit of the first two bytes; 0 for a one-byte query.
    pair: u128,
}

impl<'q> PinyinQuery<'q> {
    pub fn new(word: &'q str) -> Option<Self> {
        let q = word.as_bytes();
        if q.is_empty() || q.len() > MAX_QUERY {
            return None;
        }
        Some(PinyinQuery {
            q,
            first: first_bit(word),
            letters: char_bits(word),
            pair: if q.len() > 1 { pair_bit(q[0], q[1]) } else { 0 },
        })
    }
}

impl PinyinIndex {
    fn readings_of(&self, sym: u32) -> &[Reading] {
        let (a, b) = self.symbol_readings[sym as usize];
        &self.readings[a as usize..b as usize]
    }

    fn reading_bytes(&self, r: &Reading) -> &[u8] {
        &self.bytes[r.offset as usize..][..usize::from(r.len)]
    }

    pub fn seqs_of(&self, template: usize) -> &[Seq] {
        if template + 1 >= self.by_template.len() {
            return &[];
        }
        let (a, b) = (self.by_template[template], self.by_template[template + 1]);
        &self.seqs[a as usize..b as usize]
    }

    /// Matches a query word against one sequence.
    pub fn matches(&self, seq: &Seq, query: &PinyinQuery<'_>) -> Option<PinyinMatch> {
        if seq.initials & query.first == 0
            || query.letters & !seq.letters != 0
            || seq.pairs & query.pair != query.pair
        {
            return None;
        }
        let q = query.q;
        let n = q.len();
        let goal = 1u64 << n;
        // Bit p set: the first p bytes of the query are consumed by the units before this one.
        // `any` lets a match start at any unit; `first` only at the field's first unit.
        let mut any = 0u64;
        let mut first = 1u64;
        let mut found_inner = false;
        for &sym in &self.units[seq.units.0 as usize..seq.units.1 as usize] {
            let cur_any = any | 1;
            let (mut next_any, mut next_first) = (0u64, 0u64);
            for r in self.readings_of(sym) {
                let rb = self.reading_bytes(r);
                let mut states = (cur_any | first) & !goal;
                while states != 0 {
                    let p = states.trailing_zeros() as usize;
                    states &= states - 1;
                    let l = common_prefix(&q[p..], rb);
                    let add = if l == 0 {
                        0
                    } else if r.whole {
                        if l == rb.len() {
                            1u64 << (p + l)
                        } else {
                            0
                        }
                    } else {
                        // Every prefix length 1..=l is a valid split point.
                        ((1u64 << l) - 1) << (p + 1)
                    };
                    if cur_any & (1 << p) != 0 {
                        next_any |= add;
                    }
                    if first & (1 << p) != 0 {
                        next_first |= add;
                    }
                }
            }
            if next_first & goal != 0 {
                return Some(PinyinMatch::Prefix);
            }
            found_inner |= next_any & goal != 0;
            if found_inner && next_first == 0 {
                return Some(PinyinMatch::Inner);
            }
            any = next_any;
            first = next_first;
        }
        found_inner.then_some(PinyinMatch::Inner)
    }
}

/// The bloom bit of a byte pair.
#[inline]
fn pair_bit(a: u8, b: u8) -> u128 {
    1u128 << ((u32::from(a) * 31 + u32::from(b)) % 128)
}

#[inline]
fn common_prefix(a: &[u8], b: &[u8]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
