//! The BPE model: id <-> bytes tables, the merge table, and the merge loop that turns one
//! pre-token into ids.
//!
//! A merge rule maps an adjacent id pair to `(priority, merged id)`; at every step the pair
//! with the lowest priority is merged, leftmost first on ties. That is both HuggingFace's BPE
//! (priority = position in the merge list) and tiktoken's (priority = rank of the merged
//! bytes, derived for every way of splitting a token in two). Short pieces use a flat array
//! (fast for the usual 2-20 bytes); long ones a binary heap over a linked list, so a
//! megabyte without whitespace costs `O(n log n)`, not `O(n^2)`.

use std::cmp::Reverse;
use std::collections::BinaryHeap;

use rustc_hash::FxHashMap;

/// `(priority, merged id)` packed so that comparing the `u64` compares priorities first.
type PackedMerge = u64;
const NO_MERGE: PackedMerge = u64::MAX;

/// Pieces at least this long go through the heap.
const HEAP_THRESHOLD: usize = 128;

#[inline(always)]
fn pair_key(left: u32, right: u32) -> u64 {
    (u64::from(left) << 32) | u64::from(right)
}

/// Vocabulary and merge rules of a byte-level BPE tokenizer.
#[derive(Debug, Clone)]
pub(crate) struct BpeModel {
    /// Bytes of every id; special tokens hold their text.
    pub(crate) token_bytes: Vec<Box<[u8]>>,
    /// Id of each single byte.
    pub(crate) byte_ids: [u32; 256],
    /// Bytes -> id for ordinary (non-special) tokens.
    pub(crate) lookup: FxHashMap<Box<[u8]>, u32>,
    /// Merge rules, keyed by [`pair_key`].
    merges: FxHashMap<u64, PackedMerge>,
    /// The rules as `(left, right, priority)`, sorted by priority (the serialization order).
    pub(crate) merge_list: Vec<(u32, u32, u32)>,
    /// Emit a piece that is itself a token directly, without running merges (tiktoken's and
    /// HF's `ignore_merges` behaviour).
    pub(crate) ignore_merges: bool,
}

impl BpeModel {
    /// Builds the model. `merge_list` is `(left, right, priority)`; the merged id is looked up
    /// from the concatenated bytes. Returns an error message if a table is inconsistent.
    pub(crate) fn new(
        token_bytes: Vec<Box<[u8]>>,
        special_ids: &[u32],
        mut merge_list: Vec<(u32, u32, u32)>,
        ignore_merges: bool,
    ) -> Result<Self, String> {
        let mut is_special = vec![false; token_bytes.len()];
        for &id in special_ids {
            *is_special.get_mut(id as usize).ok_or_else(|| format!("special id {id} is outside the vocabulary"))? = true;
        }
        let mut lookup = FxHashMap::default();
        lookup.reserve(token_bytes.len());
        for (id, bytes) in token_bytes.iter().enumerate() {
            if !is_special[id] {
                // On duplicate spellings the lowest id wins, as in HF and tiktoken.
                lookup.entry(bytes.clone()).or_insert(id as u32);
            }
        }
        let mut byte_ids = [0u32; 256];
        for byte in 0..=255u8 {
            byte_ids[byte as usize] =
                *lookup.get(&[byte][..]).ok_or_else(|| format!("byte 0x{byte:02x} has no token"))?;
        }
        merge_list.sort_by_key(|&(left, right, priority)| (priority, left, right));
        let mut merges = FxHashMap::default();
        merges.reserve(merge_list.len());
        let mut joined = Vec::new();
        for &(left, right, priority) in &merge_list {
            let (Some(left_bytes), Some(right_bytes)) = (token_bytes.get(left as usize), token_bytes.get(right as usize))
            else {
                return Err(format!("merge ({left}, {right}) names an id outside the vocabulary"));
            };
            joined.clear();
            joined.extend_from_slice(left_bytes);
            joined.extend_from_slice(right_bytes);
            let merged = *lookup
                .get(&joined[..])
                .ok_or_else(|| format!("merge ({left}, {right}) yields {:?}, which is not in the vocabulary", String::from_utf8_lossy(&joined)))?;
            merges.entry(pair_key(left, right)).or_insert((u64::from(priority) << 32) | u64::from(merged));
        }
        Ok(Self { token_bytes, byte_ids, lookup, merges, merge_list, ignore_merges })
    }

    /// The packed merge of `(left, right)`, or [`NO_MERGE`].
    #[inline(always)]
    fn merge_of(&self, left: u32, right: u32) -> PackedMerge {
        self.merges.get(&pair_key(left, right)).copied().unwrap_or(NO_MERGE)
    }

    /// Appends the ids of one piece to `out`.
    #[inline]
    pub(crate) fn encode_piece(&self, piece: &[u8], scratch: &mut MergeScratch, out: &mut Vec<u32>) {
        match piece.len() {
            0 => {}
            1 => out.push(self.byte_ids[piece[0] as usize]),
            _ => {
                if self.ignore_merges
                    && let Some(&id) = self.lookup.get(piece)
                {
                    out.push(id);
                    return;
                }
                if piece.len() < HEAP_THRESHOLD {
                    self.merge_small(piece, scratch, out);
                } else {
                    self.merge_large(piece, out);
                }
            }
        }
    }

    fn merge_small(&self, piece: &[u8], scratch: &mut MergeScratch, out: &mut Vec<u32>) {
        let MergeScratch { ids, ranks } = scratch;
        ids.clear();
        ids.extend(piece.iter().map(|&b| self.byte_ids[b as usize]));
        ranks.clear();
        ranks.extend(ids.windows(2).map(|w| self.merge_of(w[0], w[1])));
        loop {
            let mut best = NO_MERGE;
            let mut best_idx = 0;
            for (idx, &rank) in ranks.iter().enumerate() {
                if rank < best {
                    best = rank;
                    best_idx = idx;
                }
            }
            if best == NO_MERGE {
                break;
            }
            ids[best_idx] = best as u32;
            ids.remove(best_idx + 1);
            ranks.remove(best_idx);
            if best_idx > 0 {
                ranks[best_idx - 1] = self.merge_of(ids[best_idx - 1], ids[best_idx]);
            }
            if best_idx < ranks.len() {
                ranks[best_idx] = self.merge_of(ids[best_idx], ids[best_idx + 1]);
            }
        }
        out.extend_from_slice(ids);
    }

    fn merge_large(&self, piece: &[u8], out: &mut Vec<u32>) {
        // Positions are stored as u32; a piece of 4 GiB or more (one word!) is merged in
        // slices, which stays lossless but may split a token at a slice boundary.
        const MAX_SLICE: usize = 1 << 31;
        if piece.len() > MAX_SLICE {
            for slice in piece.chunks(MAX_SLICE) {
                self.merge_large(slice, out);
            }
            return;
        }
        const NONE: u32 = u32::MAX;
        let n = piece.len();
        let mut ids: Vec<u32> = piece.iter().map(|&b| self.byte_ids[b as usize]).collect();
        let mut next: Vec<u32> = (1..=n as u32).collect();
        next[n - 1] = NONE;
        let mut prev: Vec<u32> = (0..n as u32).map(|i| i.wrapping_sub(1)).collect();
        prev[0] = NONE;
        // One u64 per entry, `priority << 32 | position`: the minimum is the lowest priority,
        // leftmost on ties. Entries go stale when a neighbour merges; a popped entry is
        // acted on only if the pair now at its position still has its priority (equal
        // priority means the same merged token, so that is the pair to merge).
        let entry = |merge: PackedMerge, pos: u32| Reverse(((merge >> 32) << 32) | u64::from(pos));
        let mut heap: BinaryHeap<Reverse<u64>> = BinaryHeap::from(
            (0..n - 1)
                .filter_map(|pos| {
                    let merge = self.merge_of(ids[pos], ids[pos + 1]);
                    (merge != NO_MERGE).then(|| entry(merge, pos as u32))
                })
                .collect::<Vec<_>>(),
        );
        while let Some(Reverse(top)) = heap.pop() {
            let pos = top as u32;
            let pos_idx = pos as usize;
            let right_pos = next[pos_idx];
            if ids[pos_idx] == NONE || right_pos == NONE {
                continue;
            }
            let merge = self.merge_of(ids[pos_idx], ids[right_pos as usize]);
            if merge >> 32 != top >> 32 {
                continue;
            }
            let merged = merge as u32;
            ids[pos_idx] = merged;
            ids[right_pos as usize] = NONE;
            let after = next[right_pos as usize];
            next[pos_idx] = after;
            if after != NONE {
                prev[after as usize] = pos;
                let m = self.merge_of(merged, ids[after as usize]);
                if m != NO_MERGE {
                    heap.push(entry(m, pos));
                }
            }
            let before = prev[pos_idx];
            if before != NONE {
                let m = self.merge_of(ids[before as usize], merged);
                if m != NO_MERGE {
                    heap.push(entry(m, before));
                }
            }
        }
        let mut pos = 0u32;
        while pos != NONE {
            out.push(ids[pos as usize]);
            pos = next[pos as usize];
        }
    }
}

/// Reusable buffers of the flat merge loop.
#[derive(Debug, Default, Clone)]
pub(crate) struct MergeScratch {
    ids: Vec<u32>,
    ranks: Vec<PackedMerge>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The 256 bytes plus `ab`, `bc`, `abc` (= `ab`+`c`), `aa`, `aaaa`: a vocabulary where
    /// merge order decides the result (`abc` must go through `ab`, never `bc`).
    fn tiny() -> BpeModel {
        let mut tokens: Vec<Box<[u8]>> = (0..=255u8).map(|b| vec![b].into_boxed_slice()).collect();
        for spelled in ["ab", "bc", "abc", "aa", "aaaa"] {
            tokens.push(spelled.as_bytes().into());
        }
        let (a, b, c) = (u32::from(b'a'), u32::from(b'b'), u32::from(b'c'));
        let merges = vec![(a, b, 0), (b, c, 1), (256, c, 2), (a, a, 3), (259, 259, 4)];
        BpeModel::new(tokens, &[], merges, false).unwrap()
    }

    fn encode(model: &BpeModel, text: &[u8], force_large: bool) -> Vec<u32> {
        let mut out = Vec::new();
        if force_large && text.len() > 1 {
            model.merge_large(text, &mut out);
        } else {
            model.encode_piece(text, &mut MergeScratch::default(), &mut out);
        }
        out
    }

    #[test]
    fn lowest_priority_first_leftmost_on_ties() {
        let model = tiny();
        assert_eq!(encode(&model, b"abc", false), vec![258]);
        assert_eq!(encode(&model, b"bc", false), vec![257]);
        assert_eq!(encode(&model, b"aaaaa", false), vec![260, u32::from(b'a')]);
        assert_eq!(encode(&model, b"aaa", false), vec![259, u32::from(b'a')]);
    }

    proptest! {
        #[test]
        fn heap_and_flat_merges_agree(text in prop::collection::vec(prop::sample::select(b"abcx".to_vec()), 2..200)) {
            let model = tiny();
            let mut flat = Vec::new();
            model.merge_small(&text, &mut MergeScratch::default(), &mut flat);
            prop_assert_eq!(encode(&model, &text, true), flat);
        }
    }
}
