//! Device names and dropout's train/eval behaviour.

mod common;

use burn::module::Module;
use burn::prelude::*;
use cascade_model::{DecoderConfig, ModelError, parse_device};
use common::{max_abs_diff, tokens};

#[test]
fn device_names_parse_or_say_why_not() {
    assert!(parse_device("flex").is_ok());
    assert!(parse_device(" CPU ").is_ok());
    match parse_device("tpu") {
        Err(ModelError::Device { name, message }) => assert!(name == "tpu" && message.contains("flex"), "{message}"),
        other => panic!("expected a device error, got {other:?}"),
    }
    if !cfg!(feature = "wgpu") {
        let message = parse_device("wgpu").unwrap_err().to_string();
        assert!(message.contains("wgpu") && message.contains("feature"), "{message}");
    }
}

#[test]
fn dropout_acts_only_while_training() {
    let train = Device::flex().autodiff();
    let config = DecoderConfig { vocab_size: 40, d_model: 32, n_layers: 1, n_heads: 4, max_seq_len: 8, dropout: 0.5, ..DecoderConfig::default() };
    let model = config.init(&train).unwrap();
    let x = tokens(&[&[1, 2, 3, 4]], &train);
    let a = model.forward(x.clone()).without_autodiff();
    let b = model.forward(x).without_autodiff();
    assert!(max_abs_diff(a, b) > 1e-6, "dropout should make training passes differ");
    let eval = model.valid();
    let plain = Device::flex();
    let c = eval.forward(tokens(&[&[1, 2, 3, 4]], &plain));
    let d = eval.forward(tokens(&[&[1, 2, 3, 4]], &plain));
    assert_eq!(max_abs_diff(c, d), 0.0);
}
