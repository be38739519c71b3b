//! Encoder-only model: bidirectional context, padding invariance, heads.

mod common;

use cascade_model::{BatchLayout, EncoderConfig, Pooling, PositionKind};
use common::{device, max_abs_diff, tokens};

fn tiny() -> EncoderConfig {
    EncoderConfig {
        vocab_size: 101,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        max_seq_len: 16,
        n_classes: 3,
        ..EncoderConfig::default()
    }
}

#[test]
fn later_tokens_change_earlier_outputs() {
    let dev = device();
    let model = tiny().init(&dev).unwrap();
    let a = model.forward(tokens(&[&[5, 6, 7, 8, 9]], &dev));
    let b = model.forward(tokens(&[&[5, 6, 7, 8, 90]], &dev));
    assert_eq!(a.dims(), [1, 5, 101]);
    assert!(max_abs_diff(a.narrow(1, 0, 1), b.narrow(1, 0, 1)) > 1e-6);
}

#[test]
fn right_padding_changes_nothing_for_real_tokens() {
    let dev = device();
    for (position, pooling) in [(PositionKind::Learned, Pooling::Mean), (PositionKind::Rope, Pooling::First)] {
        let model = EncoderConfig { position, pooling, ..tiny() }.init(&dev).unwrap();
        let layout = BatchLayout::right_padded(&[5, 3], 5, &dev).unwrap();
        let batch = tokens(&[&[1, 2, 3, 4, 5], &[7, 8, 9, 0, 0]], &dev);
        let padded = model.forward_mlm(batch.clone(), &layout);
        let alone = model.forward(tokens(&[&[7, 8, 9]], &dev));
        let diff = max_abs_diff(padded.narrow(0, 1, 1).narrow(1, 0, 3), alone);
        assert!(diff < 1e-5, "padded row differs by {diff}");
        let classes = model.classify(batch, &layout);
        assert_eq!(classes.dims(), [2, 3]);
        let alone = model.classify(tokens(&[&[7, 8, 9]], &dev), &BatchLayout::default());
        assert!(max_abs_diff(classes.narrow(0, 1, 1), alone) < 1e-5);
    }
}
