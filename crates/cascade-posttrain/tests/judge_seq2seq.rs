//! The reply judge and the seq2seq fine-tune on toy pairs with tiny models: each learns, writes
//! its files, and the judge loads back from its directory and scores like it evaluated.

use std::path::Path;
use std::sync::Arc;

use cascade_core::tokenizer::TokenizerError;
use cascade_core::{AllowedSpecial, NoProgress, Tokenizer};
use cascade_model::burn::prelude::Device;
use cascade_model::{EncoderConfig, EncoderDecoderConfig, PositionKind};
use cascade_posttrain::judge::{JudgeJob, load_encoder_with_fresh_head};
use cascade_posttrain::seq2seq::{Seq2SeqJob, seq2seq_examples, Seq2SeqIds, steps_for_flop_budget};
use cascade_pretrain::PretrainConfig;
use cascade_posttrain::{JudgeConfig, ReplyJudge, ReplyPair, Seq2SeqConfig, train_judge, train_seq2seq};

/// burn's device RNG is process-wide: one training run at a time keeps each deterministic.
static ONE_RUN_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    ONE_RUN_AT_A_TIME.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// One id per byte; `<|pad|>` = 256, `<|end_of_turn|>` = 257.
struct Bytes;

const VOCAB: usize = 260;

impl Tokenizer for Bytes {
    fn encode(&self, text: &str, _allowed: &AllowedSpecial) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }
    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        Ok(ids.iter().filter(|&&id| id < 256).map(|&id| id as u8).collect())
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn special_token(&self, name: &str) -> Option<u32> {
        match name {
            "<|pad|>" => Some(256),
            "<|end_of_turn|>" => Some(257),
            _ => None,
        }
    }
    fn fingerprint(&self) -> String {
        "bytes".into()
    }
}

/// Prompts are one letter repeated; the real reply is the next letter, repeated a varying
/// number of times (so reply texts differ and every letter meets many mismatched replies).
fn letter_pairs(n: usize, offset: usize) -> Vec<ReplyPair> {
    (0..n)
        .map(|i| {
            let letter = (i + offset) % 6;
            let prompt: String = std::iter::repeat_n((b'a' + letter as u8) as char, 1 + (i / 6) % 3).collect();
            let reply: String = std::iter::repeat_n((b'b' + letter as u8) as char, 1 + (i / 2) % 4).collect();
            ReplyPair::new(prompt, reply)
        })
        .collect()
}

fn tiny_encoder(dir: &Path, n_classes: usize) -> std::path::PathBuf {
    let config = EncoderConfig {
        vocab_size: VOCAB,
        d_model: 32,
        n_layers: 2,
        n_heads: 2,
        max_seq_len: 16,
        position: PositionKind::Rope,
        n_classes,
        ..Default::default()
    };
    let device = Device::flex();
    device.seed(5);
    let model = config.init(&device).unwrap();
    let path = dir.join("encoder").join("model.safetensors");
    cascade_model::save_safetensors(&model, &path).unwrap();
    path
}

fn train_config(max_steps: u64) -> PretrainConfig {
    PretrainConfig { batch_size: 16, lr: 3e-3, warmup_steps: 5, max_steps, weight_decay: 0.0, eval_every: 0, ..Default::default() }
}

fn judge_config(max_steps: u64) -> JudgeConfig {
    JudgeConfig { train: train_config(max_steps), max_val_pairs: 0, ..Default::default() }
}

#[test]
fn judge_learns_the_toy_relation_and_scores_after_loading() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_encoder(dir.path(), 2);
    let out = dir.path().join("judge");
    std::fs::create_dir(&out).unwrap();
    let (train, val) = (letter_pairs(96, 0), letter_pairs(24, 3));
    let config = judge_config(300);
    let job = JudgeJob { config: &config, encoder_weights: &weights, train: &train, val: &val, tokenizer: &Bytes, out_dir: &out };
    let report = train_judge(&job, &Device::flex(), &NoProgress).unwrap();
    assert_eq!((report.train_pairs, report.val_pairs), (96, 24));
    assert!((report.initial.val_auc - 0.5).abs() < 0.3, "fresh head near chance: {:?}", report.initial);
    assert!(report.final_train_loss < 0.5 * report.first_train_loss, "{} -> {}", report.first_train_loss, report.final_train_loss);
    assert!(report.final_eval.val_accuracy > 0.75, "{:?}", report.final_eval);
    assert!(report.final_eval.val_auc > 0.8, "{:?}", report.final_eval);
    assert!(report.train_flops > 0.0);
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    assert_eq!(lines.lines().count(), 300);
    assert!(lines.lines().last().unwrap().contains("val_auc"));

    let judge = ReplyJudge::load(&out, Arc::new(Bytes), &Device::flex()).unwrap();
    let scores = judge.score_batch(&[("cc", "dd"), ("cc", "ff"), ("eee", "f")]).unwrap();
    assert!(scores.iter().all(|p| (0.0..=1.0).contains(p)), "{scores:?}");
    assert!(scores[0] > scores[1], "real reply outscores a mismatched one: {scores:?}");
    assert!((judge.score("cc", "dd").unwrap() - scores[0]).abs() < 1e-5, "batching does not change a score");
}

#[test]
fn judge_replaces_a_pretrained_head_of_another_width() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let weights = tiny_encoder(dir.path(), 5);
    let model = load_encoder_with_fresh_head(&weights, &Device::flex()).unwrap();
    assert_eq!(model.config().n_classes, 2);
    let err = load_encoder_with_fresh_head(&dir.path().join("missing.safetensors"), &Device::flex()).unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

fn tiny_encoder_decoder(dir: &Path) -> (std::path::PathBuf, EncoderDecoderConfig) {
    let config = EncoderDecoderConfig {
        vocab_size: VOCAB,
        d_model: 32,
        n_encoder_layers: 1,
        n_decoder_layers: 1,
        n_heads: 2,
        max_source_len: 16,
        max_target_len: 16,
        ..Default::default()
    };
    let device = Device::flex();
    device.seed(6);
    let model = config.init(&device).unwrap();
    let path = dir.join("encoder-decoder").join("model.safetensors");
    cascade_model::save_safetensors(&model, &path).unwrap();
    (path, config)
}

fn seq2seq_config(max_steps: u64) -> Seq2SeqConfig {
    Seq2SeqConfig { train: train_config(max_steps), max_val_pairs: 0, ..Default::default() }
}

#[test]
fn seq2seq_learns_the_replies_and_reports_per_token_and_per_byte() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (weights, _) = tiny_encoder_decoder(dir.path());
    let out = dir.path().join("seq2seq");
    std::fs::create_dir(&out).unwrap();
    let (train, val) = (letter_pairs(96, 0), letter_pairs(24, 3));
    let config = seq2seq_config(80);
    let job = Seq2SeqJob {
        config: &config,
        weights: &weights,
        train: &train,
        val: &val,
        tokenizer: &Bytes,
        flop_budget: None,
        out_dir: &out,
    };
    let report = train_seq2seq(&job, &Device::flex(), &NoProgress).unwrap();
    assert_eq!(report.steps, 80);
    let (initial, last) = (&report.initial, &report.final_eval);
    assert!((initial.val_reply_loss_per_token - (VOCAB as f64).ln()).abs() < 1.0, "{initial:?}");
    assert!(last.val_reply_loss_per_token < 0.5 * initial.val_reply_loss_per_token, "{initial:?} -> {last:?}");
    // Every reply token is one byte except the end of turn (no bytes): bits/byte = nats/token
    // * tokens / bytes / ln 2.
    let tokens: usize = val.iter().map(|p| p.reply.len() + 1).sum();
    let bytes: usize = val.iter().map(|p| p.reply.len()).sum();
    assert_eq!(last.val_reply_tokens as usize, tokens);
    let expected = last.val_reply_loss_per_token * tokens as f64 / bytes as f64 / std::f64::consts::LN_2;
    assert!((last.val_reply_bits_per_byte - expected).abs() < 1e-9);
    assert!(out.join("model.safetensors").is_file() && out.join("model.config.json").is_file());
}

#[test]
fn seq2seq_runs_to_a_flop_budget_and_counts_cut_replies() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let (weights, model_config) = tiny_encoder_decoder(dir.path());
    let out = dir.path().join("seq2seq");
    std::fs::create_dir(&out).unwrap();
    let mut train = letter_pairs(32, 0);
    train.push(ReplyPair::new("a", "b".repeat(40)));
    let val = letter_pairs(8, 1);
    let config = seq2seq_config(1000);
    let ids = Seq2SeqIds::new(&Bytes).unwrap();
    let examples = seq2seq_examples(&train, &Bytes, ids, 16, 16);
    assert_eq!(examples.targets_truncated, 1, "the long reply is cut and counted");
    assert!(examples.examples.iter().filter(|e| e.target.len() < 16).all(|e| *e.target.last().unwrap() == 257));
    let (_, one_step) = steps_for_flop_budget(&examples.examples, &model_config, 16, config.train.seed, 1.0);
    let budget = 4.5 * one_step;
    let job = Seq2SeqJob {
        config: &config,
        weights: &weights,
        train: &train,
        val: &val,
        tokenizer: &Bytes,
        flop_budget: Some(budget),
        out_dir: &out,
    };
    let report = train_seq2seq(&job, &Device::flex(), &NoProgress).unwrap();
    assert!(report.steps >= 2 && report.steps < 1000, "{}", report.steps);
    assert!(report.train_flops >= budget, "{} < {budget}", report.train_flops);
    // The fewest steps that reach the budget: one step less fell short of it.
    let lines = std::fs::read_to_string(out.join("metrics.jsonl")).unwrap();
    let flops: Vec<f64> = lines
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).unwrap()["train_flops"].as_f64().unwrap())
        .collect();
    assert_eq!(flops.len() as u64, report.steps);
    assert!(flops[flops.len() - 2] < budget);
    assert_eq!(report.targets_truncated, 1);
    assert_eq!(report.flop_budget, Some(budget));
}
