//! Decoder training throughput at the reference shape (4 layers, d 256, 8 heads,
//! SwiGLU, vocab 8192, 16x256 tokens per step) through the real `run` loop, with MFU against a
//! measured matmul peak. `cargo run -p cascade-pretrain --example throughput [steps]`.
#![allow(clippy::print_stdout)]

use cascade_core::{NoProgress, TokenShardWriter};
use cascade_model::burn::prelude::Device;
use cascade_model::{DecoderConfig, ModelConfig};
use cascade_pretrain::{PretrainConfig, PretrainJob, SpecialIds, measure_matmul_peak_flops, run};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let steps: u64 = std::env::args().nth(1).and_then(|s| s.parse().ok()).unwrap_or(6);
    let vocab = 8192u32;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("train.tokens");
    let mut w = TokenShardWriter::create(&path, vocab, "synthetic")?;
    let mut state = 1u64;
    let ids: Vec<u32> = (0..200_000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            16 + (state >> 33) as u32 % (vocab - 16)
        })
        .collect();
    w.push_document(&ids)?;
    w.finish()?;
    let out = dir.path().join("out");
    std::fs::create_dir(&out)?;
    let model = ModelConfig::Decoder(DecoderConfig {
        vocab_size: vocab as usize,
        d_model: 256,
        n_layers: 4,
        n_heads: 8,
        max_seq_len: 256,
        tie_embeddings: false,
        ..Default::default()
    });
    let config = PretrainConfig {
        seq_len: 256,
        batch_size: 16,
        max_steps: steps,
        warmup_steps: 1,
        eval_every: 0,
        eval_windows: 1,
        checkpoint_every: 0,
        ..Default::default()
    };
    let device = Device::flex();
    let peak = measure_matmul_peak_flops(&device, 512, 5);
    let special = SpecialIds::cascade_default(100);
    let job = PretrainJob {
        model: &model,
        config: &config,
        train_tokens: &path,
        val_tokens: &path,
        val_bytes_per_token: None,
        special: &special,
        out_dir: &out,
        resume_from: None,
        peak_flops: Some(peak),
    };
    let report = run(&job, &device, &NoProgress)?;
    // Per-step rates, so the first (warm-up) step can be told apart.
    let mut rates: Vec<f64> = std::fs::read_to_string(out.join("metrics.jsonl"))?
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok()?["tokens_per_s"].as_f64())
        .collect();
    println!("per-step tokens/s: {rates:.0?}");
    rates.sort_by(f64::total_cmp);
    let median = rates[rates.len() / 2];
    println!(
        "median step {median:.0} tokens/s = {:.1} GFLOP/s, MFU {:.3}",
        median * report.train_flops_per_token / 1e9,
        median * report.train_flops_per_token / peak
    );
    println!(
        "params {} | {:.0} tokens/s | {:.1} GFLOP/s achieved | peak {:.1} GFLOP/s | MFU {:.3}",
        report.params,
        report.tokens_per_s,
        report.achieved_flops_per_s / 1e9,
        peak / 1e9,
        report.mfu.unwrap_or(0.0)
    );
    Ok(())
}
