//! Choosing the next token from a row of logits, on the host: repetition penalty, then greedy
//! or temperature sampling through top-k, top-p and min-p filters, with a seeded generator.
//!
//! The filters follow HuggingFace's order (temperature, top-k, top-p, min-p), each applied to
//! the distribution the previous one left, renormalized. [`candidates`] exposes that final
//! distribution so it can be checked by hand.

use serde::{Deserialize, Serialize};

use crate::error::{InferError, Result};

/// How one request picks its tokens. The defaults sample at temperature 1 with no filter.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SamplingParams {
    /// Divides the logits before the softmax; 0 means greedy (argmax, lowest id on ties).
    pub temperature: f32,
    /// Keep only the `top_k` most likely tokens; 0 keeps all.
    pub top_k: usize,
    /// Keep the smallest set of most likely tokens whose probability reaches `top_p`; 1 keeps all.
    pub top_p: f32,
    /// Keep tokens at least `min_p` times as likely as the most likely one; 0 keeps all.
    pub min_p: f32,
    /// CTRL-style penalty on every token already in the prompt or the output: a positive logit
    /// is divided by it, a negative one multiplied; 1 turns it off.
    pub repetition_penalty: f32,
    /// Seed of the request's random generator: the same seed and inputs give the same output,
    /// whatever else is in the batch.
    pub seed: u64,
}

impl Default for SamplingParams {
    fn default() -> Self {
        Self { temperature: 1.0, top_k: 0, top_p: 1.0, min_p: 0.0, repetition_penalty: 1.0, seed: 0 }
    }
}

impl SamplingParams {
    /// Argmax decoding.
    pub fn greedy() -> Self {
        Self { temperature: 0.0, ..Self::default() }
    }

    /// Whether this picks the argmax (no randomness).
    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }

    /// Errors on the first parameter out of range.
    pub fn validate(&self) -> Result<()> {
        let bad = |key, message: &str| Err(InferError::InvalidParameter { key, message: message.to_owned() });
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("temperature", "must be a finite number >= 0 (0 = greedy)");
        }
        if !(self.top_p > 0.0 && self.top_p <= 1.0) {
            return bad("top_p", "must be in (0, 1]");
        }
        if !(0.0..=1.0).contains(&self.min_p) {
            return bad("min_p", "must be in [0, 1]");
        }
        if !(self.repetition_penalty.is_finite() && self.repetition_penalty > 0.0) {
            return bad("repetition_penalty", "must be a finite number > 0 (1 = off)");
        }
        Ok(())
    }
}

/// SplitMix64: a tiny, portable generator, so a seed means the same stream on every platform
/// and every version of this crate.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// A uniform number in `[0, 1)`.
    pub fn next_f64(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// Applies the repetition penalty in place to the ids in `seen` (each listed once).
pub fn apply_repetition_penalty(logits: &mut [f32], seen: &[u32], penalty: f32) {
    if penalty == 1.0 {
        return;
    }
    for &id in seen {
        if let Some(logit) = logits.get_mut(id as usize) {
            *logit = if *logit > 0.0 { *logit / penalty } else { *logit * penalty };
        }
    }
}

/// The index of the largest logit (the lowest index among equals; NaN never wins).
pub fn argmax(logits: &[f32]) -> u32 {
    let mut best = 0;
    let mut best_value = f32::NEG_INFINITY;
    for (i, &x) in logits.iter().enumerate() {
        if x > best_value {
            best = i;
            best_value = x;
        }
    }
    best as u32
}

/// The distribution a non-greedy `params` samples from: `(token id, probability)` pairs in
/// decreasing probability (ties by id), summing to 1, after temperature, top-k, top-p and
/// min-p. Logits are taken as they are (apply the repetition penalty first).
pub fn candidates(logits: &[f32], params: &SamplingParams) -> Vec<(u32, f32)> {
    let temperature = if params.temperature > 0.0 { params.temperature } else { 1.0 };
    let max = logits.iter().copied().filter(|x| !x.is_nan()).fold(f32::NEG_INFINITY, f32::max);
    if !max.is_finite() {
        return vec![(argmax(logits), 1.0)];
    }
    let mut probs: Vec<(u32, f32)> = logits
        .iter()
        .enumerate()
        .filter(|(_, x)| !x.is_nan())
        .map(|(i, &x)| (i as u32, ((x - max) / temperature).exp()))
        .filter(|&(_, p)| p > 0.0)
        .collect();
    let by_probability = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if params.top_k > 0 && params.top_k < probs.len() {
        probs.select_nth_unstable_by(params.top_k - 1, by_probability);
        probs.truncate(params.top_k);
    }
    probs.sort_unstable_by(by_probability);
    normalize(&mut probs);
    if params.top_p < 1.0 {
        let mut cumulative = 0.0;
        let keep = probs
            .iter()
            .position(|&(_, p)| {
                cumulative += p;
                cumulative >= params.top_p
            })
            .map_or(probs.len(), |last| last + 1);
        probs.truncate(keep);
        normalize(&mut probs);
    }
    if params.min_p > 0.0 {
        let threshold = params.min_p * probs[0].1;
        probs.retain(|&(_, p)| p >= threshold);
        normalize(&mut probs);
    }
    probs
}

fn normalize(probs: &mut [(u32, f32)]) {
    let total: f32 = probs.iter().map(|(_, p)| p).sum();
    if total > 0.0 {
        for (_, p) in probs.iter_mut() {
            *p /= total;
        }
    }
}

/// Picks the next token: greedy when `params.temperature` is 0, else a draw from
/// [`candidates`] with `rng`.
pub fn sample(logits: &[f32], params: &SamplingParams, rng: &mut SplitMix64) -> u32 {
    if params.is_greedy() {
        return argmax(logits);
    }
    let probs = candidates(logits, params);
    let mut u = rng.next_f64() as f32;
    for &(id, p) in &probs {
        if u < p {
            return id;
        }
        u -= p;
    }
    // Rounding left a sliver above the last cumulative sum: it belongs to the last candidate.
    probs.last().map_or_else(|| argmax(logits), |&(id, _)| id)
}
