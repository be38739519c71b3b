//! Parameter counts by hand, FLOPs and cache sizes, config validation and TOML parsing.

mod common;

use burn::module::Module;
use cascade_model::{
    DecoderConfig, EncoderConfig, EncoderDecoderConfig, MlpKind, ModelError, NormKind,
    PositionKind,
};
use common::device;

fn tiny_decoder() -> DecoderConfig {
    DecoderConfig {
        vocab_size: 100,
        d_model: 32,
        n_layers: 2,
        n_heads: 4,
        n_kv_heads: 2,
        d_ff: 64,
        max_seq_len: 32,
        ..DecoderConfig::default()
    }
}

#[test]
fn decoder_counts_match_hand_computation() {
    // Llama-style, tied, GQA: embed 100·32 = 3200. Per layer: 2 RMSNorms 64; q 32·32 = 1024,
    // k and v 32·16 = 512 each, o 1024 -> 3072; SwiGLU 3·32·64 = 6144 -> 9280. Two layers
    // 18560 + final norm 32 = 18592 non-embedding; total 21792.
    let config = tiny_decoder();
    let costs = config.costs();
    assert_eq!(costs.params_embedding, 3200);
    assert_eq!(costs.params_non_embedding, 18592);
    assert_eq!(costs.params_total, 21792);
    assert_eq!(config.init(&device()).unwrap().num_params() as u64, 21792);
    // 6·(18592 + 32·100) + 12·2·32·32
    assert_eq!(costs.train_flops_per_token, 6.0 * 21792.0 + 24576.0);
    // 2 (k, v) · 2 layers · 2 kv heads · 8 dims · 4 bytes
    assert_eq!(costs.kv_cache_bytes_per_token, 256);

    // GPT-2-style, untied, biases, learned positions, MHA, one layer:
    // embed 3200 + positions 16·32 = 512 + head 3200 = 6912. Layer: 2 LayerNorms 128;
    // q, k, v, o 4·(1024 + 32) = 4224; GELU MLP (2048 + 64) + (2048 + 32) = 4192 -> 8544;
    // final LayerNorm 64 -> 8608 non-embedding; total 15520.
    let config = DecoderConfig {
        n_layers: 1,
        n_kv_heads: 0,
        max_seq_len: 16,
        position: PositionKind::Learned,
        norm: NormKind::Layer,
        mlp: MlpKind::Gelu,
        bias: true,
        tie_embeddings: false,
        ..tiny_decoder()
    };
    let costs = config.costs();
    assert_eq!((costs.params_embedding, costs.params_non_embedding, costs.params_total), (6912, 8608, 15520));
    assert_eq!(config.init(&device()).unwrap().num_params() as u64, 15520);
}

#[test]
fn formula_matches_built_models_for_every_family_and_option() {
    let dev = device();
    for (norm, mlp, position, bias, tie, qk_norm) in [
        (NormKind::Rms, MlpKind::Swiglu, PositionKind::Rope, false, true, false),
        (NormKind::Layer, MlpKind::Gelu, PositionKind::Learned, true, false, true),
        (NormKind::Rms, MlpKind::Gelu, PositionKind::Learned, false, false, true),
        (NormKind::Layer, MlpKind::Swiglu, PositionKind::Rope, true, true, false),
    ] {
        let dec = DecoderConfig { norm, mlp, position, bias, tie_embeddings: tie, qk_norm, d_ff: 0, ..tiny_decoder() };
        assert_eq!(dec.init(&dev).unwrap().num_params() as u64, dec.costs().params_total, "{dec:?}");
        let enc = EncoderConfig {
            vocab_size: 100, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 1, max_seq_len: 16,
            norm, mlp, position, bias, tie_embeddings: tie, qk_norm, n_classes: 3, ..EncoderConfig::default()
        };
        assert_eq!(enc.init(&dev).unwrap().num_params() as u64, enc.costs().params_total, "{enc:?}");
        let ed = EncoderDecoderConfig {
            vocab_size: 100, d_model: 32, n_encoder_layers: 2, n_decoder_layers: 1, n_heads: 4,
            n_kv_heads: 2, max_source_len: 16, max_target_len: 8,
            norm, mlp, position, bias, tie_embeddings: tie, qk_norm, ..EncoderDecoderConfig::default()
        };
        assert_eq!(ed.init(&dev).unwrap().num_params() as u64, ed.costs().params_total, "{ed:?}");
        assert!(ed.costs().train_flops_per_token > 6.0 * ed.costs().params_non_embedding as f64 / 2.0);
    }
}

#[test]
fn invalid_configs_name_the_key() {
    let key_of = |r: Result<(), ModelError>| match r {
        Err(ModelError::InvalidConfig { key, .. }) => key,
        other => panic!("expected a config error, got {other:?}"),
    };
    assert_eq!(key_of(DecoderConfig { d_model: 30, ..tiny_decoder() }.validate()), "d_model");
    assert_eq!(key_of(DecoderConfig { n_kv_heads: 3, ..tiny_decoder() }.validate()), "n_kv_heads");
    assert_eq!(key_of(DecoderConfig { n_layers: 0, ..tiny_decoder() }.validate()), "n_layers");
    assert_eq!(key_of(DecoderConfig { dropout: 1.0, ..tiny_decoder() }.validate()), "dropout");
    assert_eq!(key_of(EncoderConfig { n_classes: 0, ..EncoderConfig::default() }.validate()), "n_classes");
    assert_eq!(
        key_of(EncoderDecoderConfig { max_target_len: 0, ..EncoderDecoderConfig::default() }.validate()),
        "max_target_len"
    );
    let message = DecoderConfig { d_model: 30, ..tiny_decoder() }.init(&device()).unwrap_err().to_string();
    assert!(message.contains("d_model") && message.contains("n_heads"), "{message}");
    let too_long = tiny_decoder().check_len(33).unwrap_err().to_string();
    assert!(too_long.contains("max_seq_len"), "{too_long}");
    assert!(tiny_decoder().check_len(32).is_ok());
}

#[test]
fn toml_tables_parse_with_defaults_and_reject_unknown_keys() {
    let config: DecoderConfig = toml::from_str("d_model = 128\nn_kv_heads = 2\nnorm = \"layer\"\nmlp = \"gelu\"\n").unwrap();
    assert_eq!(config.d_model, 128);
    assert_eq!(config.norm, NormKind::Layer);
    assert_eq!(config.vocab_size, DecoderConfig::default().vocab_size);
    config.validate().unwrap();
    let err = toml::from_str::<DecoderConfig>("d_modle = 128\n").unwrap_err().to_string();
    assert!(err.contains("d_modle"), "{err}");
    let enc: EncoderConfig = toml::from_str("pooling = \"first\"\nposition = \"rope\"\n").unwrap();
    enc.validate().unwrap();
    let ed: EncoderDecoderConfig = toml::from_str("n_encoder_layers = 1\n").unwrap();
    ed.validate().unwrap();
    assert_eq!(DecoderConfig::default().resolved_d_ff(), 704);
}
