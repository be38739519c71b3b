//! Sampling filters against hand-computed distributions, the repetition penalty, and seeds.

use cascade_infer::sampling::{apply_repetition_penalty, argmax, candidates, sample};
use cascade_infer::{SamplingParams, SplitMix64};

/// Logits whose softmax is exactly `probs`.
fn logits_of(probs: &[f32]) -> Vec<f32> {
    probs.iter().map(|p| p.ln()).collect()
}

const P: [f32; 5] = [0.5, 0.2, 0.15, 0.1, 0.05];

fn check(params: SamplingParams, expected: &[(u32, f32)]) {
    let got = candidates(&logits_of(&P), &params);
    assert_eq!(got.len(), expected.len(), "{params:?}: got {got:?}, expected {expected:?}");
    for ((id, p), (want_id, want_p)) in got.iter().zip(expected) {
        assert_eq!(id, want_id, "{params:?}: got {got:?}");
        assert!((p - want_p).abs() < 1e-5, "{params:?}: p({id}) = {p}, expected {want_p}");
    }
}

fn with(f: impl FnOnce(&mut SamplingParams)) -> SamplingParams {
    let mut params = SamplingParams::default();
    f(&mut params);
    params
}

#[test]
fn no_filter_keeps_the_softmax() {
    check(SamplingParams::default(), &[(0, 0.5), (1, 0.2), (2, 0.15), (3, 0.1), (4, 0.05)]);
}

#[test]
fn top_k_keeps_the_k_most_likely_renormalized() {
    check(with(|p| p.top_k = 2), &[(0, 0.5 / 0.7), (1, 0.2 / 0.7)]);
    check(with(|p| p.top_k = 9), &[(0, 0.5), (1, 0.2), (2, 0.15), (3, 0.1), (4, 0.05)]);
}

#[test]
fn top_p_keeps_the_smallest_prefix_reaching_p() {
    // Cumulative 0.5, 0.7, 0.85: 0.8 needs three tokens, 0.7 exactly two, 0.4 one.
    check(with(|p| p.top_p = 0.8), &[(0, 0.5 / 0.85), (1, 0.2 / 0.85), (2, 0.15 / 0.85)]);
    check(with(|p| p.top_p = 0.7), &[(0, 0.5 / 0.7), (1, 0.2 / 0.7)]);
    check(with(|p| p.top_p = 0.4), &[(0, 1.0)]);
}

#[test]
fn min_p_keeps_tokens_within_a_factor_of_the_best() {
    // Threshold 0.25 * 0.5 = 0.125 keeps 0.15 and drops 0.1; 0.35 * 0.5 = 0.175 drops 0.15.
    check(with(|p| p.min_p = 0.25), &[(0, 0.5 / 0.85), (1, 0.2 / 0.85), (2, 0.15 / 0.85)]);
    check(with(|p| p.min_p = 0.35), &[(0, 0.5 / 0.7), (1, 0.2 / 0.7)]);
}

#[test]
fn temperature_flattens_before_the_filters() {
    // T = 2: p ∝ sqrt(p).
    let roots: Vec<f32> = P.iter().map(|p| p.sqrt()).collect();
    let total: f32 = roots.iter().sum();
    let expected: Vec<(u32, f32)> = roots.iter().enumerate().map(|(i, r)| (i as u32, r / total)).collect();
    check(with(|p| p.temperature = 2.0), &expected);
    // Then top-k = 2 renormalizes the flattened pair.
    let pair = roots[0] + roots[1];
    check(with(|p| { p.temperature = 2.0; p.top_k = 2 }), &[(0, roots[0] / pair), (1, roots[1] / pair)]);
}

#[test]
fn filters_apply_in_order_top_k_top_p_min_p() {
    // top-k 3 -> {.5,.2,.15}/.85 = {.588,.235,.176}; top-p .7 needs two of them.
    check(with(|p| { p.top_k = 3; p.top_p = 0.7 }), &[(0, 0.5 / 0.7), (1, 0.2 / 0.7)]);
    // top-p .9 keeps four ({.5,.2,.15,.1}/.95); min-p .25 then drops below .125: the .1.
    check(with(|p| { p.top_p = 0.9; p.min_p = 0.25 }), &[(0, 0.5 / 0.85), (1, 0.2 / 0.85), (2, 0.15 / 0.85)]);
}

#[test]
fn repetition_penalty_divides_positive_and_multiplies_negative_logits() {
    let mut logits = vec![2.0, -1.0, 0.5, 3.0];
    apply_repetition_penalty(&mut logits, &[0, 1], 2.0);
    assert_eq!(logits, vec![1.0, -2.0, 0.5, 3.0]);
    let mut same = vec![2.0, -1.0];
    apply_repetition_penalty(&mut same, &[0, 1], 1.0);
    assert_eq!(same, vec![2.0, -1.0]);
}

#[test]
fn greedy_is_argmax_with_lowest_id_on_ties() {
    let logits = [0.1, 3.0, f32::NAN, 3.0, -1.0];
    assert_eq!(argmax(&logits), 1);
    let mut rng = SplitMix64::new(1);
    assert_eq!(sample(&logits, &SamplingParams::greedy(), &mut rng), 1);
}

#[test]
fn draws_follow_the_filtered_distribution_and_seeds_repeat() {
    let params = with(|p| { p.top_k = 3; p.seed = 42 });
    let logits = logits_of(&P);
    let draw = |seed| {
        let mut rng = SplitMix64::new(seed);
        (0..20_000).map(|_| sample(&logits, &params, &mut rng)).collect::<Vec<_>>()
    };
    let draws = draw(42);
    assert_eq!(draws, draw(42), "same seed, same draws");
    assert_ne!(draws, draw(43), "another seed, other draws");
    for (id, p) in candidates(&logits, &params) {
        let freq = draws.iter().filter(|&&d| d == id).count() as f32 / draws.len() as f32;
        assert!((freq - p).abs() < 0.015, "token {id}: frequency {freq}, probability {p}");
    }
    assert!(draws.iter().all(|&d| d < 3), "top-k 3 never draws outside the three");
}

#[test]
fn out_of_range_parameters_are_named() {
    for (params, key) in [
        (with(|p| p.temperature = -1.0), "temperature"),
        (with(|p| p.top_p = 0.0), "top_p"),
        (with(|p| p.min_p = 1.5), "min_p"),
        (with(|p| p.repetition_penalty = 0.0), "repetition_penalty"),
    ] {
        let err = params.validate().unwrap_err().to_string();
        assert!(err.contains(key), "{err}");
    }
}
