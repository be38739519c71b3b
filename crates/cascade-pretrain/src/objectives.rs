//! The three pretraining objectives as pure functions on token windows (no burn here): causal
//! LM, BERT-style masked LM and T5-style span corruption. They decide which ids the model sees
//! and which it must predict; the loop turns the result into tensors.

use serde::{Deserialize, Serialize};

use crate::rng::SplitMix64;

/// The special token ids the objectives need, filled by the runner from the tokenizer
/// (`<|pad|>`, `<|mask|>`, `<|endoftext|>`, `<|sentinel_i|>`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpecialIds {
    /// Padding; also the decoder start token of the encoder-decoder (as in T5).
    pub pad: u32,
    /// The masked-LM mask token.
    pub mask: u32,
    /// Document separator (a real token the decoder learns to predict; never masked).
    pub endoftext: u32,
    /// Span-corruption sentinels in order (`<|sentinel_0|>`, `<|sentinel_1|>`, ...).
    pub sentinels: Vec<u32>,
    /// Any other special ids that must never be selected or drawn as random replacements.
    pub others: Vec<u32>,
}

impl SpecialIds {
    /// The ids of cascade's tokenizer layout: `<|endoftext|>`=0, `<|pad|>`=1, `<|mask|>`=6,
    /// ids 2..=5 other specials, `n_sentinels` sentinels from 7.
    pub fn cascade_default(n_sentinels: u32) -> Self {
        Self { pad: 1, mask: 6, endoftext: 0, sentinels: (7..7 + n_sentinels).collect(), others: vec![2, 3, 4, 5] }
    }

    /// Whether `id` is any special token.
    pub fn is_special(&self, id: u32) -> bool {
        id == self.pad || id == self.mask || id == self.endoftext || self.sentinels.contains(&id) || self.others.contains(&id)
    }
}

/// Causal LM: inputs are the window without its last token, targets the window shifted by one.
pub fn causal_lm(window: &[u32]) -> (Vec<u32>, Vec<u32>) {
    if window.is_empty() {
        return (Vec::new(), Vec::new());
    }
    (window[..window.len() - 1].to_vec(), window[1..].to_vec())
}

/// A masked-LM example: the corrupted inputs, the original ids as targets and which positions
/// count in the loss.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MlmExample {
    /// What the encoder sees.
    pub inputs: Vec<u32>,
    /// The original window.
    pub targets: Vec<u32>,
    /// `true` where the loss is taken (the selected positions).
    pub selected: Vec<bool>,
}

/// Masked LM (BERT): each non-special position is selected with `probability`; a selected
/// token becomes `mask` 80% of the time, a random non-special id 10%, and stays 10%. At least
/// one position is selected when the window has any non-special token, so the loss is defined.
pub fn masked_lm(window: &[u32], probability: f64, vocab_size: u32, special: &SpecialIds, rng: &mut SplitMix64) -> MlmExample {
    let mut inputs = window.to_vec();
    let mut selected = vec![false; window.len()];
    let candidates: Vec<usize> = (0..window.len()).filter(|&i| !special.is_special(window[i])).collect();
    for &i in &candidates {
        selected[i] = rng.next_f64() < probability;
    }
    if !candidates.is_empty() && !selected.iter().any(|&s| s) {
        selected[candidates[rng.below(candidates.len() as u64) as usize]] = true;
    }
    for (i, input) in inputs.iter_mut().enumerate() {
        if !selected[i] {
            continue;
        }
        let roll = rng.next_f64();
        if roll < 0.8 {
            *input = special.mask;
        } else if roll < 0.9 {
            *input = random_plain_id(vocab_size, special, rng).unwrap_or(*input);
        }
    }
    MlmExample { inputs, targets: window.to_vec(), selected }
}

fn random_plain_id(vocab_size: u32, special: &SpecialIds, rng: &mut SplitMix64) -> Option<u32> {
    // Specials are a handful of ids, so a few redraws almost always find a plain one.
    (0..64).map(|_| rng.below(vocab_size as u64) as u32).find(|&id| !special.is_special(id))
}

/// A span-corruption example (T5).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SpanExample {
    /// The window with each noise span replaced by one sentinel.
    pub inputs: Vec<u32>,
    /// Each sentinel followed by the span it replaced, in order.
    pub targets: Vec<u32>,
}

/// Noise tokens and span count for a window of `len` tokens (fixed per length, so every
/// example of a batch has the same input and target lengths and needs no padding).
pub fn span_counts(len: usize, noise_density: f64, mean_span_length: f64) -> (usize, usize) {
    let n_noise = ((len as f64 * noise_density).round() as usize).clamp(1, len.saturating_sub(1).max(1));
    let n_spans = ((n_noise as f64 / mean_span_length).round() as usize).clamp(1, n_noise);
    // Every span needs a non-noise stretch before it.
    let n_spans = n_spans.min(len - n_noise).max(1);
    (n_noise, n_spans)
}

/// Input and target lengths of [`span_corruption`] for a window of `len` tokens.
pub fn span_lengths(len: usize, noise_density: f64, mean_span_length: f64) -> (usize, usize) {
    let (n_noise, n_spans) = span_counts(len, noise_density, mean_span_length);
    (len - n_noise + n_spans, n_noise + n_spans)
}

/// Splits `total` items into `parts` random positive lengths (uniform over compositions).
fn random_segmentation(total: usize, parts: usize, rng: &mut SplitMix64) -> Vec<usize> {
    // Choose parts-1 distinct cut points in 1..total by a partial Fisher-Yates shuffle.
    let mut points: Vec<usize> = (1..total).collect();
    for i in 0..parts - 1 {
        let j = i + rng.below((points.len() - i) as u64) as usize;
        points.swap(i, j);
    }
    let mut cuts: Vec<usize> = points[..parts - 1].to_vec();
    cuts.sort_unstable();
    let mut lengths = Vec::with_capacity(parts);
    let mut prev = 0;
    for c in cuts.into_iter().chain(std::iter::once(total)) {
        lengths.push(c - prev);
        prev = c;
    }
    lengths
}

/// T5 span corruption: about `noise_density` of the window, in spans of mean length
/// `mean_span_length`, is replaced in the input by one sentinel per span; the target lists
/// each sentinel followed by its span. Non-noise and noise stretches alternate, starting with
/// non-noise. Returns `None` when there are fewer sentinels than spans.
pub fn span_corruption(
    window: &[u32],
    noise_density: f64,
    mean_span_length: f64,
    special: &SpecialIds,
    rng: &mut SplitMix64,
) -> Option<SpanExample> {
    let len = window.len();
    if len < 2 {
        return None;
    }
    let (n_noise, n_spans) = span_counts(len, noise_density, mean_span_length);
    if special.sentinels.len() < n_spans {
        return None;
    }
    let noise = random_segmentation(n_noise, n_spans, rng);
    let keep = random_segmentation(len - n_noise, n_spans, rng);
    let (input_len, target_len) = span_lengths(len, noise_density, mean_span_length);
    let mut inputs = Vec::with_capacity(input_len);
    let mut targets = Vec::with_capacity(target_len);
    let mut pos = 0;
    for span_idx in 0..n_spans {
        inputs.extend_from_slice(&window[pos..pos + keep[span_idx]]);
        pos += keep[span_idx];
        let sentinel = special.sentinels[span_idx];
        inputs.push(sentinel);
        targets.push(sentinel);
        targets.extend_from_slice(&window[pos..pos + noise[span_idx]]);
        pos += noise[span_idx];
    }
    Some(SpanExample { inputs, targets })
}

/// Rebuilds the original window from a span-corruption example (the inverse of
/// [`span_corruption`]; used by tests and for inspecting data).
pub fn reconstruct_spans(example: &SpanExample, special: &SpecialIds) -> Vec<u32> {
    let mut spans: Vec<(u32, Vec<u32>)> = Vec::new();
    for &id in &example.targets {
        if special.sentinels.contains(&id) {
            spans.push((id, Vec::new()));
        } else if let Some(last) = spans.last_mut() {
            last.1.push(id);
        }
    }
    let mut out = Vec::new();
    for &id in &example.inputs {
        match spans.iter().find(|(s, _)| *s == id) {
            Some((_, span)) => out.extend_from_slice(span),
            None => out.push(id),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn special() -> SpecialIds {
        SpecialIds::cascade_default(32)
    }

    #[test]
    fn causal_lm_shifts_by_one() {
        let (x, y) = causal_lm(&[10, 11, 12, 13]);
        assert_eq!(x, vec![10, 11, 12]);
        assert_eq!(y, vec![11, 12, 13]);
    }

    #[test]
    fn masked_lm_proportions_and_never_specials() {
        let sp = special();
        let mut rng = SplitMix64::new(7);
        let vocab = 200;
        let (mut n_tokens, mut n_sel, mut n_mask, mut n_same, mut n_rand) = (0usize, 0usize, 0usize, 0usize, 0usize);
        for _ in 0..2000 {
            let window: Vec<u32> = (0..64).map(|i| if i % 16 == 0 { sp.endoftext } else { 40 + rng.below(160) as u32 }).collect();
            let ex = masked_lm(&window, 0.15, vocab, &sp, &mut rng);
            for (i, &id) in window.iter().enumerate() {
                if sp.is_special(id) {
                    assert!(!ex.selected[i], "special selected");
                    assert_eq!(ex.inputs[i], id);
                    continue;
                }
                n_tokens += 1;
                if !ex.selected[i] {
                    assert_eq!(ex.inputs[i], id);
                    continue;
                }
                n_sel += 1;
                if ex.inputs[i] == sp.mask {
                    n_mask += 1;
                } else if ex.inputs[i] == id {
                    n_same += 1;
                } else {
                    assert!(!sp.is_special(ex.inputs[i]));
                    n_rand += 1;
                }
            }
        }
        let rate = n_sel as f64 / n_tokens as f64;
        assert!((rate - 0.15).abs() < 0.01, "selection rate {rate}");
        let f = |n: usize| n as f64 / n_sel as f64;
        assert!((f(n_mask) - 0.8).abs() < 0.02, "mask {}", f(n_mask));
        // Random replacement can draw the same id (1/160), so "unchanged" is slightly above 10%.
        assert!((f(n_rand) - 0.1).abs() < 0.02, "random {}", f(n_rand));
        assert!((f(n_same) - 0.1).abs() < 0.02, "same {}", f(n_same));
    }

    #[test]
    fn masked_lm_selects_at_least_one() {
        let sp = special();
        let mut rng = SplitMix64::new(1);
        for _ in 0..100 {
            let ex = masked_lm(&[50, 51], 0.01, 100, &sp, &mut rng);
            assert!(ex.selected.iter().any(|&s| s));
        }
    }

    #[test]
    fn span_corruption_reconstructs_and_has_fixed_lengths() {
        let sp = special();
        let mut rng = SplitMix64::new(3);
        for len in [2usize, 5, 16, 64, 257] {
            let (in_len, tgt_len) = span_lengths(len, 0.15, 3.0);
            let (n_noise, n_spans) = span_counts(len, 0.15, 3.0);
            for _ in 0..50 {
                let window: Vec<u32> = (0..len).map(|_| 100 + rng.below(100) as u32).collect();
                let ex = span_corruption(&window, 0.15, 3.0, &sp, &mut rng).expect("enough sentinels");
                assert_eq!(ex.inputs.len(), in_len);
                assert_eq!(ex.targets.len(), tgt_len);
                assert_eq!(ex.inputs.iter().filter(|&&id| sp.sentinels.contains(&id)).count(), n_spans);
                assert_eq!(ex.targets.len() - n_spans, n_noise);
                assert_eq!(reconstruct_spans(&ex, &sp), window);
            }
        }
    }

    #[test]
    fn span_noise_density_and_mean_length() {
        let (n_noise, n_spans) = span_counts(1000, 0.15, 3.0);
        assert_eq!(n_noise, 150);
        assert_eq!(n_spans, 50);
    }

    #[test]
    fn span_corruption_needs_enough_sentinels() {
        let sp = SpecialIds::cascade_default(1);
        let mut rng = SplitMix64::new(3);
        let window: Vec<u32> = (100..164).collect();
        assert!(span_corruption(&window, 0.15, 3.0, &sp, &mut rng).is_none());
    }
}
