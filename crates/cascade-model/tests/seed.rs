//! Seeding the device before `init` fixes the weights. Alone in its own test binary: the
//! device RNG is process-global, so tests running in parallel threads would draw from it
//! between the seed and the init.

mod common;

use cascade_model::DecoderConfig;
use common::device;

fn tiny_decoder() -> DecoderConfig {
    DecoderConfig { vocab_size: 100, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 64, max_seq_len: 32, ..DecoderConfig::default() }
}

#[test]
fn seeding_before_init_fixes_the_weights() {
    let dev = device();
    let weights = |seed| {
        dev.seed(seed);
        let model = tiny_decoder().init(&dev).unwrap();
        common::to_vec(model.forward(common::tokens(&[&[1, 2, 3]], &dev)))
    };
    assert_eq!(weights(7), weights(7));
    assert_ne!(weights(7), weights(8));
}
