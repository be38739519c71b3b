//! Encoder-decoder model: cached decoding equals teacher forcing, causality, source padding.

mod common;

use burn::prelude::*;
use cascade_model::{BatchLayout, EncoderDecoderConfig, PositionKind};
use common::{device, max_abs_diff, tokens};

fn tiny(n_kv_heads: usize) -> EncoderDecoderConfig {
    EncoderDecoderConfig {
        vocab_size: 89,
        d_model: 32,
        n_encoder_layers: 2,
        n_decoder_layers: 2,
        n_heads: 4,
        n_kv_heads,
        max_source_len: 16,
        max_target_len: 16,
        ..EncoderDecoderConfig::default()
    }
}

#[test]
fn cached_decoding_equals_teacher_forcing_mha_and_gqa() {
    let dev = device();
    for config in [tiny(4), tiny(2), tiny(1), EncoderDecoderConfig { position: PositionKind::Learned, qk_norm: true, ..tiny(2) }] {
        let model = config.init(&dev).unwrap();
        let source = tokens(&[&[3, 1, 4, 1, 5], &[9, 2, 6, 5, 3]], &dev);
        let target: [&[i64]; 2] = [&[1, 10, 20, 30, 40, 50], &[1, 11, 21, 31, 41, 51]];
        let memory = model.encode(source.clone(), &BatchLayout::default());
        let full = model.decode(tokens(&target, &dev), &BatchLayout::default(), &memory);
        assert!(max_abs_diff(full.clone(), model.forward(source, tokens(&target, &dev))) == 0.0);
        let mut cache = model.new_cache(&memory);
        let mut parts = Vec::new();
        for (start, len) in [(0, 2), (2, 1), (3, 1), (4, 2)] {
            let chunk = tokens(&[&target[0][start..start + len], &target[1][start..start + len]], &dev);
            parts.push(model.forward_cached(chunk, &mut cache));
        }
        assert_eq!(cache.len(), 6);
        let diff = max_abs_diff(full, Tensor::cat(parts, 1));
        assert!(diff < 1e-5, "cached vs teacher forcing differs by {diff}");
        assert!(cache.bytes() > 0);
    }
}

#[test]
fn decoder_is_causal_and_reads_the_source() {
    let dev = device();
    let model = tiny(2).init(&dev).unwrap();
    let source = tokens(&[&[3, 1, 4]], &dev);
    let a = model.forward(source.clone(), tokens(&[&[1, 2, 3, 4]], &dev));
    let b = model.forward(source, tokens(&[&[1, 2, 30, 40]], &dev));
    assert_eq!(max_abs_diff(a.clone().narrow(1, 0, 2), b.narrow(1, 0, 2)), 0.0);
    let c = model.forward(tokens(&[&[3, 1, 5]], &dev), tokens(&[&[1, 2, 3, 4]], &dev));
    assert!(max_abs_diff(a.narrow(1, 0, 1), c.narrow(1, 0, 1)) > 1e-6);
}

#[test]
fn source_padding_is_invisible_and_rows_can_be_dropped() {
    let dev = device();
    let model = tiny(2).init(&dev).unwrap();
    let layout = BatchLayout::right_padded(&[4, 2], 4, &dev).unwrap();
    let memory = model.encode(tokens(&[&[5, 6, 7, 8], &[9, 10, 0, 0]], &dev), &layout);
    let mut cache = model.new_cache(&memory);
    let first = model.forward_cached(tokens(&[&[1], &[1]], &dev), &mut cache);
    let alone = model.forward(tokens(&[&[9, 10]], &dev), tokens(&[&[1]], &dev));
    assert!(max_abs_diff(first.narrow(0, 1, 1), alone) < 1e-5);
    cache.select_rows(&[1]);
    let second = model.forward_cached(tokens(&[&[7]], &dev), &mut cache);
    let alone = model.forward(tokens(&[&[9, 10]], &dev), tokens(&[&[1, 7]], &dev)).narrow(1, 1, 1);
    assert!(max_abs_diff(second, alone) < 1e-5);
}
