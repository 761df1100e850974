//! Typo tolerance: a vocabulary of the ASCII words of titles, tags and shortcuts, each with the
//! templates (and field) it occurs in, searched by bounded optimal-string-alignment distance
//! (insertion, deletion, substitution, transposition of two neighbours).

use std::collections::HashMap;
use std::hash::BuildHasherDefault;

use super::{Field, FnvHasher};

/// Shortest query word that tolerates a typo; from `TWO_EDITS` on, two.
pub(crate) const ONE_EDIT: usize = 4;
pub(crate) const TWO_EDITS: usize = 8;
/// Longest query word that is matched with typos.
pub(crate) const MAX_QUERY: usize = 32;
/// Vocabulary words outside these lengths are not kept.
const MIN_WORD: usize = 3;
const MAX_WORD: usize = 64;

/// The number of typos a query word may carry: 0 below 4 chars, 1 from 4, 2 from 8. Only
/// ASCII letters and digits (a Latin query) are matched with typos.
pub(crate) fn allowed_edits(word: &str) -> u8 {
    let n = word.len();
    if !(ONE_EDIT..=MAX_QUERY).contains(&n) || !word.bytes().all(|b| b.is_ascii_alphanumeric()) {
        0
    } else if n >= TWO_EDITS {
        2
    } else {
        1
    }
}

/// One occurrence of a vocabulary word: template index << 3 | field.
pub(crate) type Posting = u32;

pub(crate) fn posting(template: u32, field: Field) -> Posting {
    template << 3 | field as u32
}

pub(crate) fn posting_parts(p: Posting) -> (usize, Field) {
    ((p >> 3) as usize, Field::from_code((p & 7) as u8))
}

#[derive(Default)]
pub(crate) struct Vocab {
    /// Words in byte order: (offset into `bytes`, length). Sorted so that a depth-first walk
    /// shares the distance rows of common prefixes, like a trie.
    pub words: Vec<(u32, u8)>,
    /// Per word, the range of its postings.
    pub posting_ranges: Vec<(u32, u32)>,
    pub postings: Vec<Posting>,
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Vocab {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vocab")
            .field("words", &self.words.len())
            .field("postings", &self.postings.len())
            .finish()
    }
}

pub(crate) struct VocabBuilder<'a> {
    ids: HashMap<&'a str, u32, BuildHasherDefault<FnvHasher>>,
    words: Vec<&'a str>,
    /// (word id, posting)
    occurrences: Vec<(u32, Posting)>,
}

impl<'a> VocabBuilder<'a> {
    pub fn new() -> Self {
        VocabBuilder {
            ids: HashMap::default(),
            words: Vec::new(),
            occurrences: Vec::new(),
        }
    }

    /// Adds the words of a normalised field.
    pub fn add(&mut self, template: u32, field: Field, text: &'a str) {
        for w in text.split(|c: char| !c.is_alphanumeric()) {
            if !(MIN_WORD..=MAX_WORD).contains(&w.len()) || !w.bytes().all(|b| b.is_ascii()) {
                continue;
            }
            let next = self.words.len() as u32;
            let id = *self.ids.entry(w).or_insert(next);
            if id == next {
                self.words.push(w);
            }
            self.occurrences.push((id, posting(template, field)));
        }
    }

    pub fn finish(self) -> Vocab {
        let mut order: Vec<(&[u8], &[u8], u32)> = self
            .words
            .iter()
            .enumerate()
            .map(|(id, w)| (w.as_bytes(), &[][..], id as u32))
            .collect();
        super::sort_by_bytes(&mut order);
        let mut rank = vec![0u32; order.len()];
        for (r, &(_, _, id)) in order.iter().enumerate() {
            rank[id as usize] = r as u32;
        }
        // (rank of the word) << 32 | posting, sorted: each word's postings in a run.
        let mut occurrences: Vec<u64> = self
            .occurrences
            .iter()
            .map(|&(id, p)| u64::from(rank[id as usize]) << 32 | u64::from(p))
            .collect();
        occurrences.sort_unstable();
        occurrences.dedup();

        let mut v = Vocab::default();
        let mut at = 0usize;
        for (r, &(w, _, _)) in order.iter().enumerate() {
            v.words.push((v.bytes.len() as u32, w.len() as u8));
            v.bytes.extend_from_slice(w);
            let start = at;
            while at < occurrences.len() && occurrences[at] >> 32 == r as u64 {
                v.postings.push(occurrences[at] as u32);
                at += 1;
            }
            v.posting_ranges.push((start as u32, at as u32));
        }
        v
    }
}

impl Vocab {
    fn word(&self, i: usize) -> &[u8] {
        let (off, len) = self.words[i];
        &self.bytes[off as usize..][..usize::from(len)]
    }

    /// Calls `found(postings, edits)` for every word within `max_edits` of `q`: the whole word,
    /// or with `prefix`, any prefix of it (the word being typed).
    ///
    /// Walks the sorted words depth first: rows of the distance matrix are kept per depth and
    /// reused across words sharing a prefix, and a prefix whose two last rows exceed
    /// `max_edits` everywhere skips every word that starts with it.
    pub fn search(
        &self,
        q: &[u8],
        max_edits: u8,
        prefix: bool,
        mut found: impl FnMut(&[Posting], u8),
    ) {
        let n = q.len();
        let k = max_edits;
        if k == 0 || n > MAX_QUERY || self.words.is_empty() {
            return;
        }
        let ku = usize::from(k);
        // Past n + k chars, no prefix of a word can come within k of q.
        let depth_limit = (n + ku).min(MAX_WORD);
        // rows[d][i]: distance between w[..d] and q[..i]; row_min[d]: its minimum;
        // prefix_best[d]: the smallest rows[j][n] for j <= d.
        let mut rows = [[0u8; MAX_QUERY + 1]; MAX_WORD + 1];
        let mut row_min = [0u8; MAX_WORD + 1];
        let mut prefix_best = [0u8; MAX_WORD + 1];
        for (i, v) in rows[0][..=n].iter_mut().enumerate() {
            *v = i as u8;
        }
        prefix_best[0] = n as u8;
        // Rows 1..=valid hold the prefixes of `prev`.
        let mut valid = 0usize;
        let mut prev: &[u8] = &[];
        let mut wi = 0;
        'words: while wi < self.words.len() {
            let w = self.word(wi);
            let m = w.len();
            let common = w.iter().zip(prev).take_while(|(a, b)| a == b).count();
            let mut d = valid.min(common);
            let upto = m.min(depth_limit);
            while d < upto {
                d += 1;
                let wc = w[d - 1];
                let (done, rest) = rows.split_at_mut(d);
                let cur = &mut rest[0];
                let above = &done[d - 1];
                let mut min = d as u8;
                cur[0] = d as u8;
                for i in 1..=n {
                    let qc = q[i - 1];
                    let mut v = (above[i] + 1)
                        .min(cur[i - 1] + 1)
                        .min(above[i - 1] + u8::from(qc != wc));
                    if i > 1 && d > 1 && qc == w[d - 2] && q[i - 2] == wc {
                        v = v.min(done[d - 2][i - 2] + 1);
                    }
                    cur[i] = v;
                    min = min.min(v);
                }
                row_min[d] = min;
                prefix_best[d] = prefix_best[d - 1].min(cur[n]);
                if min > k && row_min[d - 1] > k {
                    // No deeper row can come within k: the words starting with w[..d] match
                    // only through a shorter prefix (all alike), or not at all. Skip them.
                    let stem = &w[..d];
                    let after = &self.words[wi + 1..];
                    let end = wi
                        + 1
                        + after.partition_point(|&(off, len)| {
                            self.bytes[off as usize..][..usize::from(len)].starts_with(stem)
                        });
                    if prefix && prefix_best[d] <= k {
                        for j in wi..end {
                            let (pa, pb) = self.posting_ranges[j];
                            found(&self.postings[pa as usize..pb as usize], prefix_best[d]);
                        }
                    }
                    wi = end;
                    valid = d - 1;
                    prev = w;
                    continue 'words;
                }
            }
            valid = upto;
            prev = w;
            let full = if m.abs_diff(n) <= ku && m <= depth_limit {
                rows[m][n]
            } else {
                u8::MAX
            };
            let best = if prefix {
                full.min(prefix_best[upto])
            } else {
                full
            };
            if best <= k {
                let (pa, pb) = self.posting_ranges[wi];
                found(&self.postings[pa as usize..pb as usize], best);
            }
            wi += 1;
        }
    }
}

/// Optimal-string-alignment distance between `q` and `w` (or, with `prefix`, the smallest
/// distance between `q` and a prefix of `w`), if at most `k`. `q` is at most `MAX_QUERY` bytes.
/// The reference the vocabulary walk is tested against.
#[cfg(test)]
pub(crate) fn distance(q: &[u8], w: &[u8], k: u8, prefix: bool) -> Option<u8> {
    let n = q.len();
    debug_assert!(n <= MAX_QUERY);
    let full_possible = w.len().abs_diff(n) <= usize::from(k);
    if !full_possible && !prefix {
        return None;
    }
    // Past n + k chars of w, no prefix can come within k of q.
    let cols = if prefix && !full_possible {
        w.len().min(n + usize::from(k))
    } else {
        w.len()
    };
    let mut rows = [[0u8; MAX_QUERY + 1]; 3];
    for (i, v) in rows[1][..=n].iter_mut().enumerate() {
        *v = i as u8;
    }
    // rows[(j + 1) % 3] is row j; row 0 is the empty prefix of w.
    let mut best = u8::MAX;
    let mut prev_min = 0u8;
    for j in 1..=cols {
        let (cur_i, prev_i, prev2_i) = ((j + 1) % 3, j % 3, (j + 2) % 3);
        let wc = w[j - 1];
        let mut row_min = j as u8;
        rows[cur_i][0] = j as u8;
        for i in 1..=n {
            let qc = q[i - 1];
            let mut d = (rows[prev_i][i] + 1)
                .min(rows[cur_i][i - 1] + 1)
                .min(rows[prev_i][i - 1] + u8::from(qc != wc));
            if i > 1 && j > 1 && qc == w[j - 2] && q[i - 2] == wc {
                d = d.min(rows[prev2_i][i - 2] + 1);
            }
            rows[cur_i][i] = d;
            row_min = row_min.min(d);
        }
        if prefix {
            best = best.min(rows[cur_i][n]);
        }
        if row_min > k && prev_min > k {
            break;
        }
        prev_min = row_min;
        if j == w.len() {
            best = best.min(rows[cur_i][n]);
        }
    }
    (best <= k).then_some(best)
}
