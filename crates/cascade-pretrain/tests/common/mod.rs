//! Shared fixtures: tiny token shards with a learnable pattern and tiny model configs.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use cascade_core::TokenShardWriter;
use cascade_model::{DecoderConfig, EncoderConfig, EncoderDecoderConfig, ModelConfig};
use cascade_pretrain::{PretrainConfig, SpecialIds};

pub const VOCAB: usize = 64;

pub fn special() -> SpecialIds {
    SpecialIds::cascade_default(8)
}

/// Documents that walk a fixed cycle over the plain ids 16..64 from pseudo-random offsets,
/// separated by `<|endoftext|>` (a pattern a tiny model learns in a few dozen steps).
pub fn write_shard(dir: &Path, name: &str, n_docs: usize, seed: u64) -> PathBuf {
    let path = dir.join(format!("{name}.tokens"));
    let mut w = TokenShardWriter::create(&path, VOCAB as u32, "test-tokenizer").unwrap();
    let plain: Vec<u32> = (16..VOCAB as u32).map(|i| 16 + (i * 7) % 48).collect();
    let mut state = seed;
    for _ in 0..n_docs {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        let offset = (state >> 33) as usize % plain.len();
        let len = 40 + (state >> 20) as usize % 40;
        let mut doc: Vec<u32> = (0..len).map(|i| plain[(offset + i) % plain.len()]).collect();
        doc.push(0);
        w.push_document(&doc).unwrap();
    }
    w.finish().unwrap();
    path
}

pub fn decoder() -> ModelConfig {
    ModelConfig::Decoder(DecoderConfig {
        vocab_size: VOCAB,
        d_model: 32,
        n_layers: 1,
        n_heads: 2,
        max_seq_len: 16,
        ..Default::default()
    })
}

pub fn encoder() -> ModelConfig {
    ModelConfig::Encoder(EncoderConfig {
        vocab_size: VOCAB,
        d_model: 32,
        n_layers: 2,
        n_heads: 2,
        max_seq_len: 16,
        // Relative positions make "my neighbour's id" easy to learn in a few dozen steps.
        position: cascade_model::PositionKind::Rope,
        ..Default::default()
    })
}

pub fn encoder_decoder() -> ModelConfig {
    ModelConfig::EncoderDecoder(EncoderDecoderConfig {
        vocab_size: VOCAB,
        d_model: 32,
        n_encoder_layers: 1,
        n_decoder_layers: 1,
        n_heads: 2,
        max_source_len: 16,
        max_target_len: 16,
        ..Default::default()
    })
}

pub fn config(max_steps: u64) -> PretrainConfig {
    PretrainConfig {
        seq_len: 16,
        batch_size: 8,
        grad_accum: 1,
        lr: 1e-2,
        warmup_steps: 5,
        max_steps,
        eval_every: 10,
        eval_windows: 16,
        checkpoint_every: 0,
        seed: 5,
        ..Default::default()
    }
}

pub fn read_metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
