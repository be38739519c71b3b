//! BPE training: parallel word counting, then merges driven by a priority queue over pair
//! counts that are updated incrementally (only the words containing the merged pair are
//! touched; nothing is ever recounted from scratch).
//!
//! Tie-break, so the same corpus always yields the same merges: the pair with the highest
//! count is merged first; among equal counts, the pair with the smaller left id, then the
//! smaller right id (ids are assigned in a fixed order: special tokens, the 256 bytes in byte
//! order, then merges in the order they were made). Training stops at `vocab_size` or when
//! the best pair is seen fewer than `min_frequency` times.

use std::collections::BinaryHeap;
use std::cmp::Reverse;
use std::time::Instant;

use cascade_core::Progress;
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};

use crate::config::TokenizerConfig;
use crate::error::TokenizerError;
use crate::pretokenize::Pretokenizer;
use crate::tokenizer::BpeTokenizer;

/// Pre-token counts gathered from a corpus, the trainer's only view of the text.
#[derive(Debug)]
pub struct WordCounts {
    pretokenizer: Pretokenizer,
    counts: FxHashMap<Box<[u8]>, u64>,
    n_words: u64,
    n_bytes: u64,
}

impl WordCounts {
    /// Empty counts for the pattern of `config`.
    pub fn new(config: &TokenizerConfig) -> Result<Self, TokenizerError> {
        let pattern = config.pattern_source();
        let pretokenizer = Pretokenizer::new(pattern)
            .map_err(|e| TokenizerError::Pattern { pattern: pattern.to_owned(), message: e.to_string() })?;
        Ok(Self { pretokenizer, counts: FxHashMap::default(), n_words: 0, n_bytes: 0 })
    }

    /// Counts the pre-tokens of a batch of texts on the rayon pool.
    pub fn add_batch<S: AsRef<str> + Sync>(&mut self, texts: &[S]) {
        let pretokenizer = &self.pretokenizer;
        let partial = texts
            .par_iter()
            .fold(FxHashMap::<&[u8], u64>::default, |mut counts, text| {
                pretokenizer.for_each_piece(text.as_ref().as_bytes(), |piece| *counts.entry(piece).or_insert(0) += 1);
                counts
            })
            .reduce(FxHashMap::default, |a, b| if a.len() >= b.len() { merge_into(a, b) } else { merge_into(b, a) });
        for (piece, count) in partial {
            self.n_words += count;
            self.n_bytes += count * piece.len() as u64;
            match self.counts.get_mut(piece) {
                Some(total) => *total += count,
                None => {
                    self.counts.insert(piece.into(), count);
                }
            }
        }
    }

    /// Number of distinct pre-tokens.
    pub fn n_unique(&self) -> usize {
        self.counts.len()
    }

    /// Total pre-tokens counted.
    pub fn n_words(&self) -> u64 {
        self.n_words
    }

    /// Total text bytes counted.
    pub fn n_bytes(&self) -> u64 {
        self.n_bytes
    }
}

fn merge_into<'t>(mut big: FxHashMap<&'t [u8], u64>, small: FxHashMap<&'t [u8], u64>) -> FxHashMap<&'t [u8], u64> {
    for (piece, count) in small {
        *big.entry(piece).or_insert(0) += count;
    }
    big
}

/// What training did, for the stage report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrainStats {
    /// Merge rules learned.
    pub n_merges: usize,
    /// Distinct pre-tokens in the training text.
    pub n_unique_words: usize,
    /// Pre-tokens in the training text.
    pub n_words: u64,
    /// Bytes of training text.
    pub n_bytes: u64,
    /// Count of the last pair merged (how rare the rarest merge was).
    pub last_merge_count: u64,
    /// Whether training stopped before `vocab_size` because no pair reached `min_frequency`.
    pub stopped_early: bool,
    /// Seconds spent in the merge loop (after counting).
    pub merge_wall_s: f64,
}

/// One distinct pre-token during training.
struct Word {
    ids: Vec<u32>,
    count: i64,
}

/// Learns merges from `counts` until the vocabulary reaches `config.vocab_size`.
pub fn train_from_counts(
    config: &TokenizerConfig,
    counts: &WordCounts,
    progress: &dyn Progress,
) -> Result<(BpeTokenizer, TrainStats), TokenizerError> {
    config.validate()?;
    let started = Instant::now();
    let special_names = config.special_tokens();
    let n_special = special_names.len() as u32;
    let mut token_bytes: Vec<Box<[u8]>> = special_names.iter().map(|name| name.as_bytes().into()).collect();
    token_bytes.extend((0..=255u8).map(|b| vec![b].into_boxed_slice()));
    let mut lookup: FxHashMap<Box<[u8]>, u32> =
        (0..=255u8).map(|b| (vec![b].into_boxed_slice(), n_special + u32::from(b))).collect();

    // Sorting the words makes the word indices, and so every later iteration order,
    // independent of hash-map order.
    let mut sorted: Vec<(&Box<[u8]>, &u64)> = counts.counts.iter().collect();
    sorted.sort_unstable_by(|a, b| a.0.cmp(b.0));
    let mut words: Vec<Word> = sorted
        .iter()
        .map(|&(piece, &count)| Word { ids: piece.iter().map(|&b| n_special + u32::from(b)).collect(), count: count as i64 })
        .collect();

    let mut pair_counts: FxHashMap<u64, i64> = FxHashMap::default();
    let mut pair_words: FxHashMap<u64, Vec<u32>> = FxHashMap::default();
    for (word_idx, word) in words.iter().enumerate() {
        for pair in word.ids.windows(2) {
            let key = key(pair[0], pair[1]);
            *pair_counts.entry(key).or_insert(0) += word.count;
            let list = pair_words.entry(key).or_default();
            if list.last() != Some(&(word_idx as u32)) {
                list.push(word_idx as u32);
            }
        }
    }
    // Max-heap on (count, smaller pair first).
    let mut heap: BinaryHeap<(i64, Reverse<u64>)> =
        pair_counts.iter().map(|(&pair, &count)| (count, Reverse(pair))).collect();

    let target = config.vocab_size as usize;
    let n_to_learn = target.saturating_sub(token_bytes.len());
    progress.begin("learn merges", Some(n_to_learn as u64), "merges");
    let mut merges: Vec<(u32, u32, u32)> = Vec::with_capacity(n_to_learn);
    let mut changes: Vec<(u64, i64)> = Vec::new();
    let mut touched: FxHashSet<u64> = FxHashSet::default();
    let mut last_merge_count = 0u64;
    let mut stopped_early = false;
    let mut joined = Vec::new();
    while token_bytes.len() < target {
        let Some((count, Reverse(pair))) = heap.pop() else {
            stopped_early = true;
            break;
        };
        let current = pair_counts.get(&pair).copied().unwrap_or(0);
        if current != count {
            if current > 0 {
                heap.push((current, Reverse(pair)));
            }
            continue;
        }
        if (count as u64) < config.min_frequency {
            stopped_early = true;
            break;
        }
        let (left, right) = ((pair >> 32) as u32, pair as u32);
        joined.clear();
        joined.extend_from_slice(&token_bytes[left as usize]);
        joined.extend_from_slice(&token_bytes[right as usize]);
        // Two different pairs can spell the same bytes; the token is then reused, not duplicated.
        let merged = match lookup.get(&joined[..]) {
            Some(&id) => id,
            None => {
                let id = token_bytes.len() as u32;
                token_bytes.push(joined.as_slice().into());
                lookup.insert(joined.as_slice().into(), id);
                progress.advance(1);
                id
            }
        };
        merges.push((left, right, merges.len() as u32));
        last_merge_count = count as u64;

        let mut affected = pair_words.remove(&pair).unwrap_or_default();
        affected.dedup();
        changes.clear();
        touched.clear();
        for &word_idx in &affected {
            let word = &mut words[word_idx as usize];
            let before = changes.len();
            merge_word(&mut word.ids, left, right, merged, &mut changes);
            for change in &mut changes[before..] {
                change.1 *= word.count;
                if change.1 > 0 {
                    let list = pair_words.entry(change.0).or_default();
                    if list.last() != Some(&word_idx) {
                        list.push(word_idx);
                    }
                    touched.insert(change.0);
                }
            }
        }
        for &(changed, delta) in &changes {
            *pair_counts.entry(changed).or_insert(0) += delta;
        }
        pair_counts.remove(&pair);
        let mut new_pairs: Vec<u64> = touched.iter().copied().collect();
        new_pairs.sort_unstable();
        for changed in new_pairs {
            let count = pair_counts.get(&changed).copied().unwrap_or(0);
            if count > 0 {
                heap.push((count, Reverse(changed)));
            }
        }
    }
    progress.end();

    let specials = special_names.into_iter().zip(0u32..).collect();
    let tokenizer =
        BpeTokenizer::from_parts("trained tokenizer", token_bytes, specials, merges, true, config.pattern_source())?;
    let stats = TrainStats {
        n_merges: tokenizer.n_merges(),
        n_unique_words: counts.n_unique(),
        n_words: counts.n_words,
        n_bytes: counts.n_bytes,
        last_merge_count,
        stopped_early,
        merge_wall_s: started.elapsed().as_secs_f64(),
    };
    Ok((tokenizer, stats))
}

/// Trains on in-memory texts (counting and merging in one call).
pub fn train_on_texts<S: AsRef<str> + Sync>(
    config: &TokenizerConfig,
    texts: &[S],
    progress: &dyn Progress,
) -> Result<(BpeTokenizer, TrainStats), TokenizerError> {
    config.validate()?;
    let mut counts = WordCounts::new(config)?;
    counts.add_batch(texts);
    train_from_counts(config, &counts, progress)
}

#[inline(always)]
fn key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// Replaces every non-overlapping `(left, right)` in `ids`, left to right, by `merged`, and
/// records the pair-count changes (+1/-1 per occurrence; the caller scales by the word count).
fn merge_word(ids: &mut Vec<u32>, left: u32, right: u32, merged: u32, changes: &mut Vec<(u64, i64)>) {
    let mut out = Vec::with_capacity(ids.len());
    let mut idx = 0;
    while idx < ids.len() {
        if idx + 1 < ids.len() && ids[idx] == left && ids[idx + 1] == right {
            changes.push((key(left, right), -1));
            if let Some(&prev) = out.last() {
                // `prev` may itself be a merge made a moment ago in this word (e.g. `a a a a`).
                changes.push((key(prev, left), -1));
                changes.push((key(prev, merged), 1));
            }
            if let Some(&next) = ids.get(idx + 2) {
                // If the next pair is merged too, the next iteration fixes this up through `prev`.
                changes.push((key(right, next), -1));
                changes.push((key(merged, next), 1));
            }
            out.push(merged);
            idx += 2;
        } else {
            out.push(ids[idx]);
            idx += 1;
        }
    }
    *ids = out;
}
