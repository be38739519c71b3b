//! Each family learns its objective on a tiny pattern shard, and the run writes its files.

mod common;

use cascade_core::NoProgress;
use cascade_model::burn::prelude::Device;
use cascade_model::ModelConfig;
use cascade_pretrain::{PretrainConfig, PretrainError, PretrainJob, PretrainReport, StopReason, run};
use common::*;

/// burn's device RNG (initial weights, dropout) is process-wide: runs in parallel test threads
/// would interleave their draws and make each other's results depend on scheduling. One run at
/// a time keeps every test deterministic.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn train(model: &ModelConfig, cfg: &PretrainConfig) -> (tempfile::TempDir, PretrainReport) {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let train = write_shard(dir.path(), "train", 60, 1);
    let val = write_shard(dir.path(), "val", 10, 2);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let special = special();
    let job = PretrainJob {
        model,
        config: cfg,
        train_tokens: &train,
        val_tokens: &val,
        val_bytes_per_token: Some(3.0),
        special: &special,
        out_dir: &out,
        resume_from: None,
        peak_flops: Some(1e10),
    };
    let report = run(&job, &Device::flex(), &NoProgress).unwrap();
    (dir, report)
}

fn assert_learns(report: &PretrainReport) {
    let uniform = (VOCAB as f64).ln();
    assert!((report.initial_val_loss - uniform).abs() < 0.5, "initial {} vs ln(vocab) {uniform}", report.initial_val_loss);
    assert!(report.final_val_loss < 0.5 * uniform, "{}: val loss {} not well below {uniform}", report.family, report.final_val_loss);
    assert!(report.val_accuracy > 0.3, "{}: accuracy {}", report.family, report.val_accuracy);
}

#[test]
fn decoder_learns_causal_lm_and_writes_outputs() {
    let (dir, report) = train(&decoder(), &config(40));
    assert_learns(&report);
    assert_eq!(report.objective, "causal_lm");
    assert_eq!(report.steps, 40);
    assert_eq!(report.stop_reason, StopReason::MaxSteps);
    assert_eq!(report.tokens, 40 * 16 * 8);
    let bpb = report.val_bits_per_byte.unwrap();
    assert!((bpb - report.final_val_loss / std::f64::consts::LN_2 / 3.0).abs() < 1e-9);
    assert!(report.mfu.unwrap() > 0.0 && report.tokens_per_s > 0.0);
    let out = dir.path().join("out");
    for f in ["model.safetensors", "model.config.json", "checkpoint/model.bpk", "checkpoint/optimizer.bpk", "checkpoint/state.json"] {
        assert!(out.join(f).is_file(), "{f} missing");
    }
    let lines = read_metrics(&out);
    assert_eq!(lines.len(), 40);
    assert_eq!(lines[0]["step"], 1);
    assert!(lines[0].get("val_loss").is_none());
    assert!(lines[9]["val_loss"].as_f64().is_some() && lines[9]["val_bits_per_byte"].as_f64().is_some());
    assert!(lines[0]["lr"].as_f64().unwrap() < lines[5]["lr"].as_f64().unwrap(), "warmup");
    let exported: cascade_model::Decoder =
        cascade_model::load_safetensors(&out.join("model.safetensors"), &Device::flex()).unwrap();
    assert_eq!(exported.config().d_model, 32);
    // The public evaluation sees the run's own validation windows: post-training compares with it.
    let eval = cascade_pretrain::evaluate_causal_lm(&exported, &dir.path().join("val.tokens"), &config(40), &Device::flex())
        .unwrap();
    assert!((eval.loss - report.final_val_loss).abs() < 1e-4, "{} vs {}", eval.loss, report.final_val_loss);
    assert!((eval.accuracy - report.val_accuracy).abs() < 1e-4);
}

#[test]
fn encoder_learns_masked_lm() {
    let cfg = PretrainConfig { mlm_probability: 0.3, lr: 2e-2, eval_every: 50, eval_windows: 64, ..config(300) };
    let (_dir, report) = train(&encoder(), &cfg);
    assert_eq!(report.objective, "masked_lm");
    assert!(report.val_bits_per_byte.is_none());
    assert_learns(&report);
}

#[test]
fn encoder_decoder_learns_span_corruption() {
    let (_dir, report) = train(&encoder_decoder(), &config(60));
    assert_eq!(report.objective, "span_corruption");
    assert_learns(&report);
}

#[test]
fn token_budget_stops_first_with_accumulation() {
    let cfg = PretrainConfig { grad_accum: 2, max_tokens: 3 * 2 * 16 * 8, ..config(100) };
    let (dir, report) = train(&decoder(), &cfg);
    assert_eq!(report.stop_reason, StopReason::MaxTokens);
    assert_eq!(report.steps, 3);
    let lines = read_metrics(&dir.path().join("out"));
    assert!(lines[2]["val_loss"].as_f64().is_some(), "the last step is evaluated");
}

#[test]
fn divergence_stops_naming_the_step() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let train = write_shard(dir.path(), "train", 20, 1);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let cfg = PretrainConfig { lr: 1e30, warmup_steps: 0, grad_clip: 0.0, checkpoint_every: 1, ..config(20) };
    let special = special();
    let model = decoder();
    let job = PretrainJob {
        model: &model,
        config: &cfg,
        train_tokens: &train,
        val_tokens: &train,
        val_bytes_per_token: None,
        special: &special,
        out_dir: &out,
        resume_from: None,
        peak_flops: None,
    };
    match run(&job, &Device::flex(), &NoProgress) {
        Err(PretrainError::NonFiniteLoss { step, .. }) => {
            assert!(step >= 2, "step {step}");
            let state = cascade_pretrain::read_state(&out.join("checkpoint")).unwrap();
            assert_eq!(state.step, step - 1, "the last good checkpoint is kept");
        }
        other => panic!("expected a non-finite loss, got {other:?}"),
    }
}

#[test]
fn bad_inputs_name_the_key() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let train = write_shard(dir.path(), "train", 5, 1);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let special = special();
    let model = decoder();
    let cfg = PretrainConfig { seq_len: 32, ..config(2) };
    let job = PretrainJob {
        model: &model,
        config: &cfg,
        train_tokens: &train,
        val_tokens: &train,
        val_bytes_per_token: None,
        special: &special,
        out_dir: &out,
        resume_from: None,
        peak_flops: None,
    };
    let err = run(&job, &Device::flex(), &NoProgress).unwrap_err().to_string();
    assert!(err.contains("seq_len") && err.contains("max_seq_len"), "{err}");
}

#[derive(Default)]
struct Counting {
    begun: std::sync::atomic::AtomicU64,
    advanced: std::sync::atomic::AtomicU64,
    messages: std::sync::atomic::AtomicU64,
    ended: std::sync::atomic::AtomicU64,
}

impl cascade_core::Progress for Counting {
    fn begin(&self, _label: &str, total: Option<u64>, _unit: &str) {
        assert_eq!(total, Some(4));
        self.begun.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn advance(&self, n: u64) {
        self.advanced.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
    }
    fn message(&self, text: &str) {
        assert!(text.contains("loss"), "{text}");
        self.messages.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
    fn end(&self) {
        self.ended.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    }
}

#[test]
fn progress_sees_every_step() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let train = write_shard(dir.path(), "train", 10, 1);
    let out = dir.path().join("out");
    std::fs::create_dir(&out).unwrap();
    let special = special();
    let model = decoder();
    let cfg = config(4);
    let job = PretrainJob {
        model: &model,
        config: &cfg,
        train_tokens: &train,
        val_tokens: &train,
        val_bytes_per_token: None,
        special: &special,
        out_dir: &out,
        resume_from: None,
        peak_flops: None,
    };
    let progress = Counting::default();
    run(&job, &Device::flex(), &progress).unwrap();
    let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!((get(&progress.begun), get(&progress.advanced), get(&progress.messages), get(&progress.ended)), (1, 4, 4, 1));
}
