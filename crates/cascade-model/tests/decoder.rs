//! Decoder-only model: causality, cached decoding equals the full pass, layouts.

mod common;

use burn::prelude::*;
use cascade_model::{BatchLayout, DecoderConfig, MlpKind, NormKind, PositionKind};
use common::{device, max_abs_diff, tokens};

fn tiny(n_kv_heads: usize) -> DecoderConfig {
    DecoderConfig {
        vocab_size: 97,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads,
        max_seq_len: 32,
        ..DecoderConfig::default()
    }
}

#[test]
fn later_tokens_never_change_earlier_logits() {
    let dev = device();
    let model = tiny(2).init(&dev).unwrap();
    let a = model.forward(tokens(&[&[5, 6, 7, 8, 9, 10]], &dev));
    let b = model.forward(tokens(&[&[5, 6, 7, 80, 90, 11]], &dev));
    let early = |t: Tensor<3>| t.narrow(1, 0, 3);
    assert_eq!(max_abs_diff(early(a.clone()), early(b.clone())), 0.0);
    assert!(max_abs_diff(a.narrow(1, 3, 1), b.narrow(1, 3, 1)) > 1e-6);
}

fn check_cache_matches_full(config: DecoderConfig) {
    let dev = device();
    let model = config.init(&dev).unwrap();
    let seq: &[i64] = &[3, 14, 15, 92, 65, 35, 89, 79];
    let full = model.forward(tokens(&[seq, &[2, 7, 1, 8, 28, 18, 28, 45]], &dev));
    let mut cache = model.new_cache();
    // Prefill 4, then 1, then a chunk of 3.
    let mut parts = Vec::new();
    for (start, len) in [(0, 4), (4, 1), (5, 3)] {
        let chunk = tokens(&[&seq[start..start + len], &[2, 7, 1, 8, 28, 18, 28, 45][start..start + len]], &dev);
        parts.push(model.forward_cached(chunk, &mut cache));
    }
    assert_eq!(cache.len(), 8);
    let cached = Tensor::cat(parts, 1);
    let diff = max_abs_diff(full, cached);
    assert!(diff < 1e-5, "cached vs full max diff {diff}");
}

#[test]
fn cached_decoding_equals_full_forward_mha_gqa_mqa() {
    for n_kv in [4, 2, 1] {
        check_cache_matches_full(tiny(n_kv));
    }
}

#[test]
fn cached_decoding_equals_full_forward_learned_layernorm_gelu_qknorm() {
    check_cache_matches_full(DecoderConfig {
        position: PositionKind::Learned,
        norm: NormKind::Layer,
        mlp: MlpKind::Gelu,
        qk_norm: true,
        bias: true,
        tie_embeddings: false,
        ..tiny(2)
    });
}

#[test]
fn left_padded_batch_matches_unpadded_rows() {
    let dev = device();
    let model = tiny(2).init(&dev).unwrap();
    let long: &[i64] = &[4, 8, 15, 16, 23];
    let short: &[i64] = &[42, 7, 9];
    let layout = BatchLayout::left_padded(&[5, 3], 5, &dev).unwrap();
    let batch = tokens(&[long, &[0, 0, 42, 7, 9]], &dev);
    let mut cache = model.new_cache();
    let batched = model.forward_cached_layout(batch, &layout, &mut cache);
    let alone = model.forward(tokens(&[short], &dev));
    let diff = max_abs_diff(batched.clone().narrow(0, 1, 1).narrow(1, 2, 3), alone.clone());
    assert!(diff < 1e-5, "left-padded row differs by {diff}");
    // One decode step continues each row at its own position.
    let step = model.forward_cached(tokens(&[&[1], &[2]], &dev), &mut cache);
    let alone_next = model.forward(tokens(&[&[42, 7, 9, 2]], &dev)).narrow(1, 3, 1);
    let diff = max_abs_diff(step.narrow(0, 1, 1), alone_next);
    assert!(diff < 1e-5, "decode step after left padding differs by {diff}");
    assert!(!common::to_vec(batched).iter().any(|x| x.is_nan()));
}

#[test]
fn packed_segments_do_not_see_each_other() {
    let dev = device();
    let model = tiny(4).init(&dev).unwrap();
    let layout = BatchLayout::packed(&[vec![3, 2]], 6, &dev).unwrap();
    let packed = model.forward_layout(tokens(&[&[10, 11, 12, 20, 21, 0]], &dev), &layout);
    let first = model.forward(tokens(&[&[10, 11, 12]], &dev));
    let second = model.forward(tokens(&[&[20, 21]], &dev));
    assert!(max_abs_diff(packed.clone().narrow(1, 0, 3), first) < 1e-5);
    assert!(max_abs_diff(packed.narrow(1, 3, 2), second) < 1e-5);
}

#[test]
fn cache_truncate_and_select_rows() {
    let dev = device();
    let model = tiny(2).init(&dev).unwrap();
    let mut cache = model.new_cache();
    model.forward_cached(tokens(&[&[1, 2, 3, 4], &[5, 6, 7, 8]], &dev), &mut cache);
    cache.truncate(2);
    let after = model.forward_cached(tokens(&[&[9, 9], &[10, 10]], &dev), &mut cache);
    let full = model.forward(tokens(&[&[1, 2, 9, 9], &[5, 6, 10, 10]], &dev)).narrow(1, 2, 2);
    assert!(max_abs_diff(after, full) < 1e-5);
    cache.select_rows(&[1]);
    let next = model.forward_cached(tokens(&[&[11]], &dev), &mut cache);
    let full = model.forward(tokens(&[&[5, 6, 10, 10, 11]], &dev)).narrow(1, 4, 1);
    assert!(max_abs_diff(next, full) < 1e-5);
    assert!(cache.bytes() > 0);
    cache.clear();
    assert!(cache.is_empty());
}

#[test]
fn cache_grows_by_doubling_and_reserve_avoids_growth() {
    let dev = device();
    let model = tiny(2).init(&dev).unwrap();
    let seq: Vec<i64> = (0..20).map(|i| (i * 7 + 3) % 97).collect();
    let full = model.forward(tokens(&[&seq], &dev));
    let mut cache = model.new_cache();
    let mut parts = vec![model.forward_cached(tokens(&[&seq[..3]], &dev), &mut cache)];
    assert_eq!(cache.capacity(), 3);
    let mut capacities = Vec::new();
    for token in &seq[3..] {
        parts.push(model.forward_cached(tokens(&[&[*token]], &dev), &mut cache));
        capacities.push(cache.capacity());
    }
    assert_eq!(cache.len(), 20);
    capacities.dedup();
    assert_eq!(capacities, vec![6, 12, 24], "doubling growth");
    let diff = max_abs_diff(full.clone(), Tensor::cat(parts, 1));
    assert!(diff < 1e-5, "growing cache vs full pass: {diff}");

    let mut reserved = model.new_cache();
    reserved.reserve(20);
    let mut parts = vec![model.forward_cached(tokens(&[&seq[..3]], &dev), &mut reserved)];
    for token in &seq[3..] {
        parts.push(model.forward_cached(tokens(&[&[*token]], &dev), &mut reserved));
        assert_eq!(reserved.capacity(), 20);
    }
    assert!(max_abs_diff(full, Tensor::cat(parts, 1)) < 1e-5);
    assert_eq!(reserved.batch_size(), 1);
}

#[test]
fn dropping_rows_of_a_left_padded_cache_keeps_the_others_exact() {
    let dev = device();
    let model = tiny(2).init(&dev).unwrap();
    let layout = BatchLayout::left_padded(&[5, 3], 5, &dev).unwrap();
    let mut cache = model.new_cache();
    model.forward_cached_layout(tokens(&[&[4, 8, 15, 16, 23], &[0, 0, 42, 7, 9]], &dev), &layout, &mut cache);
    model.forward_cached(tokens(&[&[1], &[2]], &dev), &mut cache);
    cache.select_rows(&[1]);
    let next = model.forward_cached(tokens(&[&[3]], &dev), &mut cache);
    let alone = model.forward(tokens(&[&[42, 7, 9, 2, 3]], &dev)).narrow(1, 4, 1);
    assert!(max_abs_diff(next, alone) < 1e-5);
}
