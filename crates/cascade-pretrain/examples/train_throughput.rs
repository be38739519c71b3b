//! Times Cascade's real decoder training step (the loop of `cascade_pretrain::run`: forward,
//! backward, global-norm clipping, AdamW) on random ids, for side-by-side comparison with
//! `scripts/pytorch_reference.py throughput` at the same shape. Prints one JSON line.
//!
//! `cargo run -p cascade-pretrain --example train_throughput -- --steps 20 --batch-size 8 --seq-len 256`

use cascade_core::{NoProgress, TokenShardWriter};
use cascade_model::burn::prelude::Device;
use cascade_model::{DecoderConfig, ModelConfig};
use cascade_pretrain::{PretrainConfig, PretrainJob, SpecialIds};

fn arg(args: &[String], name: &str, default: usize) -> usize {
    args.iter()
        .position(|a| a == name)
        .and_then(|idx| args.get(idx + 1))
        .map_or(default, |v| v.parse().unwrap_or_else(|_| panic!("{name} needs a number, got {v}")))
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (steps, warmup) = (arg(&args, "--steps", 20), arg(&args, "--warmup", 3));
    let (batch_size, seq_len) = (arg(&args, "--batch-size", 8), arg(&args, "--seq-len", 256));
    let model = DecoderConfig {
        vocab_size: arg(&args, "--vocab-size", 4096),
        d_model: arg(&args, "--d-model", 256),
        n_layers: arg(&args, "--n-layers", 4),
        n_heads: arg(&args, "--n-heads", 8),
        max_seq_len: seq_len,
        ..DecoderConfig::default()
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let shard = dir.path().join("random.tokens");
    let mut writer = TokenShardWriter::create(&shard, model.vocab_size as u32, "random").expect("shard");
    let mut state = 0x9E37_79B9_7F4A_7C15u64;
    let ids: Vec<u32> = (0..200_000)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            16 + (state >> 33) as u32 % (model.vocab_size as u32 - 16)
        })
        .collect();
    writer.push_document(&ids).expect("write");
    writer.finish().expect("finish");
    let out = dir.path().join("out");
    std::fs::create_dir(&out).expect("out dir");
    let config = PretrainConfig {
        seq_len,
        batch_size,
        max_steps: (steps + warmup) as u64,
        eval_every: 0,
        eval_windows: 1,
        checkpoint_every: 0,
        warmup_steps: 1,
        ..PretrainConfig::default()
    };
    let special = SpecialIds::cascade_default(16);
    let model_config = ModelConfig::Decoder(model);
    let job = PretrainJob {
        model: &model_config,
        config: &config,
        train_tokens: &shard,
        val_tokens: &shard,
        val_bytes_per_token: None,
        special: &special,
        out_dir: &out,
        resume_from: None,
        peak_flops: None,
    };
    let device = Device::flex();
    let report = cascade_pretrain::run(&job, &device, &NoProgress).expect("training run");
    let peak_flops = cascade_pretrain::measure_matmul_peak_flops(&device, 512, 5);
    let metrics = std::fs::read_to_string(out.join("metrics.jsonl")).expect("metrics");
    let mut step_tokens_per_s: Vec<f64> = metrics
        .lines()
        .skip(warmup)
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json")["tokens_per_s"].as_f64().unwrap_or(0.0))
        .collect();
    step_tokens_per_s.sort_by(f64::total_cmp);
    let median = step_tokens_per_s[step_tokens_per_s.len() / 2];
    let tokens_per_step = (batch_size * seq_len) as f64;
    println!(
        "{}",
        serde_json::json!({
            "impl": "cascade",
            "params": report.params,
            "tokens_per_step": tokens_per_step,
            "median_step_s": tokens_per_step / median,
            "tokens_per_s": median,
            "train_flops_per_token": report.train_flops_per_token,
            "achieved_flops_per_s": report.train_flops_per_token * median,
            "matmul_peak_flops_512": peak_flops,
            "mfu": report.train_flops_per_token * median / peak_flops,
        })
    );
}
