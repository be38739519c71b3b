//! Checkpoints: SafeTensors + config JSON round trips bit-identically, mismatches are named.

mod common;

use burn::prelude::*;
use cascade_model::{
    Decoder, DecoderConfig, Encoder, EncoderConfig, EncoderDecoder, EncoderDecoderConfig,
    ModelConfig, ModelError, config_path, load_burnpack, load_safetensors, read_config,
    save_burnpack, save_safetensors, write_config,
};
use common::{device, max_abs_diff, tokens};

fn tiny_decoder() -> DecoderConfig {
    DecoderConfig { vocab_size: 64, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, d_ff: 48, max_seq_len: 16, ..DecoderConfig::default() }
}

#[test]
fn safetensors_round_trip_is_bit_identical_for_all_families() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    let x = tokens(&[&[1, 2, 3, 4]], &dev);

    let decoder = DecoderConfig { tie_embeddings: false, qk_norm: true, ..tiny_decoder() }.init(&dev).unwrap();
    let path = dir.path().join("decoder/model.safetensors");
    save_safetensors(&decoder, &path).unwrap();
    assert!(config_path(&path).ends_with("decoder/model.config.json"));
    let loaded: Decoder = load_safetensors(&path, &dev).unwrap();
    assert_eq!(max_abs_diff(decoder.forward(x.clone()), loaded.forward(x.clone())), 0.0);

    let encoder = EncoderConfig { vocab_size: 64, d_model: 32, n_layers: 1, n_heads: 4, max_seq_len: 8, ..EncoderConfig::default() }
        .init(&dev)
        .unwrap();
    let path = dir.path().join("encoder.safetensors");
    save_safetensors(&encoder, &path).unwrap();
    let loaded: Encoder = load_safetensors(&path, &dev).unwrap();
    assert_eq!(max_abs_diff(encoder.forward(x.clone()), loaded.forward(x.clone())), 0.0);

    let seq2seq = EncoderDecoderConfig {
        vocab_size: 64, d_model: 32, n_encoder_layers: 1, n_decoder_layers: 1, n_heads: 4,
        max_source_len: 8, max_target_len: 8, ..EncoderDecoderConfig::default()
    }
    .init(&dev)
    .unwrap();
    let path = dir.path().join("seq2seq.safetensors");
    save_safetensors(&seq2seq, &path).unwrap();
    let loaded: EncoderDecoder = load_safetensors(&path, &dev).unwrap();
    assert_eq!(max_abs_diff(seq2seq.forward(x.clone(), x.clone()), loaded.forward(x.clone(), x)), 0.0);
    assert!(matches!(read_config(&config_path(&path)).unwrap(), ModelConfig::EncoderDecoder(_)));
}

#[test]
fn wrong_shape_missing_tensor_and_wrong_family_are_named() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("model.safetensors");
    save_safetensors(&tiny_decoder().init(&dev).unwrap(), &path).unwrap();

    // Same names, different MLP width: the first mismatching tensor is named with both shapes.
    write_config(&ModelConfig::Decoder(DecoderConfig { d_ff: 40, ..tiny_decoder() }), &config_path(&path)).unwrap();
    match load_safetensors::<Decoder>(&path, &dev) {
        Err(ModelError::BadTensor { tensor, message, .. }) => {
            assert!(tensor.starts_with("layers.0.mlp.") && tensor.ends_with(".weight"), "{tensor}");
            assert!(message.starts_with("shape [") && message.contains("40") && message.contains("48"), "{message}");
        }
        other => panic!("expected a shape error, got {other:?}"),
    }

    // One layer more than the file has.
    write_config(&ModelConfig::Decoder(DecoderConfig { n_layers: 3, ..tiny_decoder() }), &config_path(&path)).unwrap();
    let err = load_safetensors::<Decoder>(&path, &dev).unwrap_err().to_string();
    assert!(err.contains("layers.2.") && err.contains("missing"), "{err}");

    // An untied head the file does not hold... and a file tensor the model does not have.
    write_config(&ModelConfig::Decoder(DecoderConfig { n_layers: 1, ..tiny_decoder() }), &config_path(&path)).unwrap();
    let err = load_safetensors::<Decoder>(&path, &dev).unwrap_err().to_string();
    assert!(err.contains("layers.1.") && err.contains("not in the model"), "{err}");

    let err = load_safetensors::<Encoder>(&path, &dev).unwrap_err().to_string();
    assert!(err.contains("`decoder`") && err.contains("`encoder`"), "{err}");
}

#[test]
fn burnpack_round_trip_keeps_outputs() {
    let dev = device();
    let dir = tempfile::tempdir().unwrap();
    let model = tiny_decoder().init(&dev).unwrap();
    let path = dir.path().join("model.bpk");
    save_burnpack(&model, &path).unwrap();
    let loaded: Decoder = load_burnpack(&path, &dev).unwrap();
    let x = tokens(&[&[5, 4, 3]], &dev);
    assert_eq!(max_abs_diff(model.forward(x.clone()), loaded.forward(x)), 0.0);
}

#[test]
fn autodiff_training_path_matches_inference_and_has_gradients() {
    let dev = device();
    let model = tiny_decoder().init(&dev.clone().autodiff()).unwrap();
    let x = tokens(&[&[1, 2, 3, 4], &[4, 3, 2, 1]], &dev.clone().autodiff());
    let logits = model.forward(x.clone());
    let inference = model.valid().forward(tokens(&[&[1, 2, 3, 4], &[4, 3, 2, 1]], &dev));
    assert!(max_abs_diff(logits.clone().without_autodiff(), inference) < 1e-5);
    let grads = burn::optim::GradientsParams::from_grads(logits.sum().backward(), &model);
    let count = grads.len();
    // Every parameter tensor: embedding, 2 layers x (2 norms + 4 attention + 3 MLP), final norm.
    assert_eq!(count, 1 + 2 * 9 + 1, "params with gradients");
}
