//! MinHash signatures over word n-gram shingles, LSH band keys, the LSH S-curve and exact
//! Jaccard similarity of shingle sets.
//!
//! Text is simplified first (lowercase, punctuation deleted, split on whitespace), each word is
//! hashed once with xxh3, and each shingle of `ngram` consecutive words gets a 64-bit hash
//! mixed from its word hashes. The `k`-th MinHash value of a document is the minimum over its shingles of
//! `fmix32(fold(shingle) ^ seed_k)`, where `fmix32` is murmur3's finalizer (a bijection of
//! `u32` with full avalanche) and the seeds come from a splitmix64 stream. That makes the inner
//! loop pure 32-bit integer work over `bands * rows` lanes, which the compiler vectorizes; on
//! x86-64 an AVX-512 or AVX2 copy of the loop is chosen at run time.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// Lowercases `text`, deletes punctuation and symbols, and calls `word` with each
/// whitespace-separated word's hash. ASCII bytes take a table-free fast path; other characters
/// are decoded and classified by Unicode properties.
fn for_each_word_hash(text: &str, mut word: impl FnMut(u64)) {
    let bytes = text.as_bytes();
    let mut buf: Vec<u8> = Vec::with_capacity(64);
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b < 0x80 {
            i += 1;
            if b.is_ascii_alphanumeric() {
                buf.push(b.to_ascii_lowercase());
            } else if b.is_ascii_whitespace() && !buf.is_empty() {
                word(xxh3_64(&buf));
                buf.clear();
            }
            continue;
        }
        let Some(c) = text[i..].chars().next() else { break };
        i += c.len_utf8();
        if c.is_alphanumeric() {
            let mut tmp = [0u8; 4];
            for lower in c.to_lowercase() {
                buf.extend_from_slice(lower.encode_utf8(&mut tmp).as_bytes());
            }
        } else if c.is_whitespace() && !buf.is_empty() {
            word(xxh3_64(&buf));
            buf.clear();
        }
    }
    if !buf.is_empty() {
        word(xxh3_64(&buf));
    }
}

/// murmur3's 64-bit finalizer.
#[inline(always)]
fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

/// Hash of a window of word hashes; order matters (each step multiplies before the next xor).
#[inline(always)]
fn shingle_of(window: &[u64]) -> u64 {
    let mut h = window.len() as u64;
    for &w in window {
        h = (h ^ w).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        h ^= h >> 29;
    }
    fmix64(h)
}

/// The 64-bit hash of every `ngram`-word shingle of `text`'s simplified form, in text order
/// (repeats included). A text with fewer than `ngram` words but at least one gives a single
/// shingle of all its words; a text without words gives none.
pub fn shingle_hashes(text: &str, ngram: usize, out: &mut Vec<u64>) {
    out.clear();
    let mut words: Vec<u64> = Vec::with_capacity(text.len() / 5 + 1);
    for_each_word_hash(text, |h| words.push(h));
    if words.is_empty() {
        return;
    }
    if words.len() < ngram {
        out.push(shingle_of(&words));
        return;
    }
    out.extend(words.windows(ngram).map(shingle_of));
}

/// The sorted, deduplicated shingle set of `text`, for exact Jaccard similarity.
pub fn shingle_set(text: &str, ngram: usize) -> Vec<u64> {
    let mut set = Vec::new();
    shingle_hashes(text, ngram, &mut set);
    set.sort_unstable();
    set.dedup();
    set
}

/// Exact Jaccard similarity of two sorted, deduplicated sets (1.0 for two empty sets).
pub fn jaccard(a: &[u64], b: &[u64]) -> f64 {
    if a.is_empty() && b.is_empty() {
        return 1.0;
    }
    let (mut i, mut j, mut common) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                common += 1;
                i += 1;
                j += 1;
            }
        }
    }
    common as f64 / (a.len() + b.len() - common) as f64
}

/// Jaccard similarity estimated from two signatures: the fraction of equal values.
pub fn estimate_jaccard(a: &[u32], b: &[u32]) -> f64 {
    let equal = a.iter().zip(b).filter(|(x, y)| x == y).count();
    equal as f64 / a.len().max(1) as f64
}

/// Probability that a pair at Jaccard similarity `similarity` shares at least one LSH bucket
/// with `bands` bands of `rows` rows: `1 - (1 - s^rows)^bands`.
pub fn lsh_probability(similarity: f64, bands: usize, rows: usize) -> f64 {
    1.0 - (1.0 - similarity.powi(rows as i32)).powi(bands as i32)
}

#[inline(always)]
fn fmix32(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^ (h >> 16)
}

#[inline(always)]
fn update_all(signature: &mut [u32], seeds: &[u32], shingles: &[u64]) {
    for &shingle in shingles {
        let x = (shingle ^ (shingle >> 32)) as u32;
        for (slot, &seed) in signature.iter_mut().zip(seeds) {
            *slot = (*slot).min(fmix32(x ^ seed));
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn update_all_avx2(signature: &mut [u32], seeds: &[u32], shingles: &[u64]) {
    update_all(signature, seeds, shingles);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn update_all_avx512(signature: &mut [u32], seeds: &[u32], shingles: &[u64]) {
    update_all(signature, seeds, shingles);
}

/// Computes MinHash signatures with `num_perm` permutations of `ngram`-word shingles.
#[derive(Debug, Clone)]
pub struct MinHasher {
    ngram: usize,
    seeds: Vec<u32>,
}

impl MinHasher {
    /// A hasher with `num_perm` permutations drawn from `seed`.
    pub fn new(num_perm: usize, ngram: usize, seed: u64) -> Self {
        let mut state = seed;
        let seeds = (0..num_perm)
            .map(|_| {
                // splitmix64: independent-looking seeds from one integer.
                state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
                let mut z = state;
                z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
                z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
                (z ^ (z >> 31)) as u32
            })
            .collect();
        Self { ngram, seeds }
    }

    /// Permutations per signature.
    pub fn num_perm(&self) -> usize {
        self.seeds.len()
    }

    /// Words per shingle.
    pub fn ngram(&self) -> usize {
        self.ngram
    }

    /// The signature of a set of shingle hashes (repeats do not matter). An empty set gives
    /// all `u32::MAX`.
    pub fn signature_of_shingles(&self, shingles: &[u64]) -> Vec<u32> {
        let mut signature = vec![u32::MAX; self.seeds.len()];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx512f") {
                // SAFETY: the CPU supports AVX-512F, checked just above.
                unsafe { update_all_avx512(&mut signature, &self.seeds, shingles) };
                return signature;
            }
            if std::arch::is_x86_feature_detected!("avx2") {
                // SAFETY: the CPU supports AVX2, checked just above.
                unsafe { update_all_avx2(&mut signature, &self.seeds, shingles) };
                return signature;
            }
        }
        update_all(&mut signature, &self.seeds, shingles);
        signature
    }

    /// The signature of `text` (simplified and shingled as described in the module docs).
    pub fn signature(&self, text: &str) -> Vec<u32> {
        let mut shingles = Vec::new();
        shingle_hashes(text, self.ngram, &mut shingles);
        self.signature_of_shingles(&shingles)
    }
}

/// The LSH bucket key of each band of `signature` (`rows` values per band).
pub fn band_keys(signature: &[u32], rows: usize) -> impl Iterator<Item = u64> + '_ {
    signature.chunks_exact(rows).enumerate().map(|(band, values)| {
        let mut bytes = Vec::with_capacity(values.len() * 4);
        for v in values {
            bytes.extend_from_slice(&v.to_le_bytes());
        }
        xxh3_64_with_seed(&bytes, band as u64)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simplification_ignores_case_and_punctuation() {
        assert_eq!(shingle_set("To be, or NOT to be: that", 2), shingle_set("to be or not to be that!", 2));
        assert_ne!(shingle_set("to be or not", 2), shingle_set("to be or knot", 2));
        assert_eq!(shingle_set("short text", 5).len(), 1);
        assert!(shingle_set(" ,;. ", 5).is_empty());
    }

    #[test]
    fn jaccard_of_sorted_sets() {
        assert_eq!(jaccard(&[1, 2, 3, 4], &[3, 4, 5, 6]), 2.0 / 6.0);
        assert_eq!(jaccard(&[], &[]), 1.0);
        assert_eq!(jaccard(&[1], &[]), 0.0);
    }

    #[test]
    fn s_curve_is_monotone_with_threshold_near_formula() {
        let p = |s| lsh_probability(s, 14, 8);
        assert!(p(0.5) < 0.1 && p(0.9) > 0.99);
        let threshold = (1.0f64 / 14.0).powf(1.0 / 8.0);
        assert!((p(threshold) - 0.5).abs() < 0.15, "{}", p(threshold));
    }

    #[test]
    fn simd_and_portable_loops_agree() {
        let hasher = MinHasher::new(112, 5, 7);
        let shingles: Vec<u64> = (0..1000u64).map(|i| xxh3_64(&i.to_le_bytes())).collect();
        let mut portable = vec![u32::MAX; 112];
        update_all(&mut portable, &hasher.seeds, &shingles);
        assert_eq!(hasher.signature_of_shingles(&shingles), portable);
    }

    #[test]
    fn estimate_tracks_exact_similarity() {
        let hasher = MinHasher::new(256, 1, 3);
        let a: Vec<u64> = (0..2000).collect();
        let b: Vec<u64> = (1000..3000).collect();
        let exact = jaccard(&a, &b);
        let estimate = estimate_jaccard(&hasher.signature_of_shingles(&a), &hasher.signature_of_shingles(&b));
        assert!((exact - estimate).abs() < 0.08, "exact {exact} estimate {estimate}");
    }

    proptest::proptest! {
        #[test]
        fn jaccard_and_estimates_are_symmetric_and_bounded(a in proptest::collection::btree_set(0u64..400, 1..80), b in proptest::collection::btree_set(0u64..400, 1..80)) {
            let (a, b): (Vec<u64>, Vec<u64>) = (a.into_iter().collect(), b.into_iter().collect());
            let j = jaccard(&a, &b);
            proptest::prop_assert_eq!(j, jaccard(&b, &a));
            proptest::prop_assert!((0.0..=1.0).contains(&j));
            let hasher = MinHasher::new(64, 1, 11);
            let (sa, sb) = (hasher.signature_of_shingles(&a), hasher.signature_of_shingles(&b));
            proptest::prop_assert_eq!(estimate_jaccard(&sa, &sb), estimate_jaccard(&sb, &sa));
            proptest::prop_assert_eq!(estimate_jaccard(&sa, &sa), 1.0);
            if j == 0.0 {
                // Disjoint sets never share a minimum (the permutations are bijections).
                proptest::prop_assert_eq!(estimate_jaccard(&sa, &sb), 0.0);
            }
        }
    }
}
