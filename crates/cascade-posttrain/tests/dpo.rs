//! DPO end to end on a byte tokenizer and a tiny decoder: at step 0 (policy = reference) the loss
//! is ln 2 with zero rewards, one gradient step raises the chosen reply relative to the rejected
//! one, a short run moves the held-out preference and writes its metrics and model, and a
//! resumed run equals the uninterrupted one.

use std::path::Path;

use cascade_core::{AllowedSpecial, ChatTemplate, NoProgress, Tokenizer, TokenizerError};
use cascade_model::burn::prelude::*;
use cascade_model::{Decoder, DecoderConfig};
use cascade_posttrain::dpo::pair_logps;
use cascade_posttrain::{DpoJob, DpoLoss, EncodedPair, PreferencePair, PreferenceStats, encode_pairs, train_dpo};
use cascade_pretrain::PretrainConfig;

/// One id per byte, chat specials from 256.
struct Bytes;

impl Tokenizer for Bytes {
    fn encode(&self, text: &str, _allowed: &AllowedSpecial) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }
    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        Ok(ids.iter().filter(|&&id| id < 256).map(|&id| id as u8).collect())
    }
    fn vocab_size(&self) -> usize {
        260
    }
    fn special_token(&self, name: &str) -> Option<u32> {
        ["<|system|>", "<|user|>", "<|assistant|>", "<|end_of_turn|>"].iter().position(|n| *n == name).map(|i| 256 + i as u32)
    }
    fn fingerprint(&self) -> String {
        "bytes".into()
    }
}

/// burn's device RNG is process-wide: one model build or run at a time keeps tests deterministic.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn save_tiny_decoder(path: &Path, device: &Device) -> Decoder {
    device.seed(11);
    let config = DecoderConfig { vocab_size: 260, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, max_seq_len: 64, ..Default::default() };
    let model: Decoder = config.init(device).unwrap();
    cascade_model::save_safetensors(&model, path).unwrap();
    model
}

fn pairs(n: usize, offset: usize) -> Vec<EncodedPair> {
    let words = ["who", "what", "when", "where", "why", "how"];
    let raw: Vec<PreferencePair> =
        (0..n).map(|i| PreferencePair::new(format!("{} {}", words[(i + offset) % 6], i % 4), "aye", "nay")).collect();
    let template = ChatTemplate::new(&Bytes).unwrap();
    let (encoded, kept, dropped) = encode_pairs(&template, &Bytes, &raw, 32);
    assert_eq!((kept.len(), dropped), (n, 0));
    encoded
}

fn config(max_steps: u64, lr: f64) -> PretrainConfig {
    PretrainConfig { seq_len: 32, batch_size: 4, lr, warmup_steps: 0, max_steps, eval_every: 0, checkpoint_every: 0, weight_decay: 0.0, seed: 5, ..Default::default() }
}

#[test]
fn step_zero_is_ln2_and_one_step_prefers_chosen() {
    let _serial = serial();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.safetensors");
    let reference_model = save_tiny_decoder(&init, &device);
    let (train, val) = (pairs(4, 0), pairs(4, 0));
    let reference = pair_logps(&reference_model, &train, 8, 0, &device).unwrap();
    let loss = DpoLoss::default();
    let at_start = PreferenceStats::measure(&loss, &reference, &reference);
    assert!((at_start.loss - std::f64::consts::LN_2).abs() < 1e-9);
    assert_eq!((at_start.rewards_chosen, at_start.rewards_rejected, at_start.rewards_accuracies), (0.0, 0.0, 0.0));

    let cfg = config(1, 1e-2);
    let job = DpoJob {
        config: &cfg,
        loss,
        init_weights: &init,
        train: &train,
        train_reference: &reference,
        val: &val,
        val_reference: &reference,
        pad_id: 0,
        out_dir: dir.path(),
        resume_from: None,
    };
    let (model, report) = train_dpo(&job, &device, &NoProgress).unwrap();
    assert!((report.val_before.loss - std::f64::consts::LN_2).abs() < 1e-4, "{:?}", report.val_before);
    assert!(report.val_before.rewards_margins.abs() < 1e-4);
    let after = pair_logps(&model, &val, 8, 0, &device).unwrap();
    for (a, r) in after.iter().zip(&reference) {
        assert!((a.chosen - r.chosen) > (a.rejected - r.rejected), "chosen must rise relative to rejected: {a:?} vs {r:?}");
    }
    assert!(report.val_after.rewards_margins > 0.0 && report.val_after.loss < std::f64::consts::LN_2, "{:?}", report.val_after);
    let line = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap();
    let record: serde_json::Value = serde_json::from_str(line.lines().next().unwrap()).unwrap();
    assert!((record["train"]["loss"].as_f64().unwrap() - std::f64::consts::LN_2).abs() < 1e-4, "{record}");
    assert!(record["val"]["rewards/accuracies"].is_number(), "{record}");
    assert!(dir.path().join("model.safetensors").is_file());
}

#[test]
fn held_out_preference_moves_in_a_short_run() {
    let _serial = serial();
    let device = Device::flex();
    let dir = tempfile::tempdir().unwrap();
    let init = dir.path().join("init.safetensors");
    let reference_model = save_tiny_decoder(&init, &device);
    let (train, val) = (pairs(12, 0), pairs(6, 3));
    let (train_ref, val_ref) = (pair_logps(&reference_model, &train, 8, 0, &device).unwrap(), pair_logps(&reference_model, &val, 8, 0, &device).unwrap());
    let cfg = PretrainConfig { eval_every: 4, ..config(8, 3e-3) };
    let job = DpoJob {
        config: &cfg,
        loss: DpoLoss { label_smoothing: 0.1, ..DpoLoss::default() },
        init_weights: &init,
        train: &train,
        train_reference: &train_ref,
        val: &val,
        val_reference: &val_ref,
        pad_id: 0,
        out_dir: dir.path(),
        resume_from: None,
    };
    let (_, report) = train_dpo(&job, &device, &NoProgress).unwrap();
    assert_eq!(report.steps, 8);
    assert_eq!(report.val_before.rewards_accuracies, 0.0);
    assert_eq!(report.val_after.rewards_accuracies, 1.0, "{:?}", report.val_after);
    assert!(report.val_after.rewards_margins > report.val_before.rewards_margins);
    let lines = std::fs::read_to_string(dir.path().join("metrics.jsonl")).unwrap().lines().count();
    assert_eq!(lines, 8);
}

fn run_toy(cfg: &PretrainConfig, out: &Path, resume: Option<&Path>) -> cascade_posttrain::DpoReport {
    let device = Device::flex();
    std::fs::create_dir_all(out).unwrap();
    let init = out.join("init.safetensors");
    let reference_model = save_tiny_decoder(&init, &device);
    let (train, val) = (pairs(12, 0), pairs(6, 3));
    let (train_ref, val_ref) = (pair_logps(&reference_model, &train, 8, 0, &device).unwrap(), pair_logps(&reference_model, &val, 8, 0, &device).unwrap());
    let job = DpoJob {
        config: cfg,
        loss: DpoLoss::default(),
        init_weights: &init,
        train: &train,
        train_reference: &train_ref,
        val: &val,
        val_reference: &val_ref,
        pad_id: 0,
        out_dir: out,
        resume_from: resume,
    };
    train_dpo(&job, &device, &NoProgress).unwrap().1
}

fn train_losses(out: &Path) -> Vec<f64> {
    std::fs::read_to_string(out.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["train"]["loss"].as_f64().unwrap())
        .collect()
}

#[test]
fn resumed_run_equals_the_uninterrupted_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(8, 3e-3);
    let straight = run_toy(&cfg, &dir.path().join("straight"), None);
    // "Interrupt" after 4 steps through the pair budget (4 pairs a step), then resume.
    let first = run_toy(&PretrainConfig { max_tokens: 16, ..cfg.clone() }, &dir.path().join("first"), None);
    assert_eq!(first.steps, 4);
    let resumed = run_toy(&cfg, &dir.path().join("second"), Some(&dir.path().join("first/checkpoint")));
    assert_eq!((resumed.resumed_from_step, resumed.steps), (4, 8));
    let pieced: Vec<f64> = train_losses(&dir.path().join("first")).into_iter().chain(train_losses(&dir.path().join("second"))).collect();
    assert_eq!(train_losses(&dir.path().join("straight")), pieced, "losses differ after resume");
    assert_eq!(resumed.val_after, straight.val_after);
}
