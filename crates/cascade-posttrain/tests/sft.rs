//! Supervised fine-tuning end to end on a byte tokenizer and a tiny decoder: packing keeps
//! conversations apart, the loss learns replies and turn ends, a resumed run equals the
//! uninterrupted one, and the format check sees the model learn to stop.

use std::path::Path;

use cascade_core::{AllowedSpecial, ChatTemplate, NoProgress, Tokenizer, TokenizerError};
use cascade_model::burn::prelude::*;
use cascade_model::{Decoder, DecoderConfig};
use cascade_posttrain::batch::{HostBatch, SftExample, Truncation, encode_conversations, make_batches};
use cascade_posttrain::{Conversation, SampleSettings, SftJob, measure_format, train_sft};
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

fn tiny_decoder(device: &Device) -> Decoder {
    device.seed(7);
    let config = DecoderConfig { vocab_size: 260, d_model: 32, n_layers: 2, n_heads: 4, n_kv_heads: 2, max_seq_len: 64, ..Default::default() };
    config.init(device).unwrap()
}

fn encode(conversations: &[Conversation], max_positions: usize) -> Vec<SftExample> {
    let template = ChatTemplate::new(&Bytes).unwrap();
    encode_conversations(&template, &Bytes, conversations, max_positions, Truncation::Drop).0
}

fn logits_of(model: &Decoder, batch: &HostBatch, device: &Device) -> Vec<f32> {
    let db = cascade_posttrain::batch::DeviceBatch::new(batch, device).unwrap();
    model.forward_layout(db.inputs, &db.layout).into_data().try_to_vec::<f32>().unwrap()
}

#[test]
fn packed_conversations_do_not_see_each_other() {
    let _serial = serial();
    let device = Device::flex();
    let model = tiny_decoder(&device);
    let examples = encode(&[Conversation::exchange("first one", "reply"), Conversation::exchange("second", "other reply")], 64);
    let packed = &make_batches(&examples, &[0, 1], 64, 1, true, 0)[0];
    assert_eq!(packed.segments, vec![vec![examples[0].n_positions(), examples[1].n_positions()]]);
    let alone = &make_batches(&examples, &[1], 64, 1, true, 0)[0];
    let (packed_logits, alone_logits) = (logits_of(&model, packed, &device), logits_of(&model, alone, &device));
    let vocab = 260;
    let offset = examples[0].n_positions() * vocab;
    let second = &packed_logits[offset..offset + alone_logits.len()];
    let max_diff = second.iter().zip(&alone_logits).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "packed logits differ from the conversation alone by {max_diff}");
    // And the first conversation is unaffected by what follows it.
    let first_alone = logits_of(&model, &make_batches(&examples, &[0], 64, 1, true, 0)[0], &device);
    let max_diff = packed_logits[..first_alone.len()].iter().zip(&first_alone).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "{max_diff}");
}

fn conversations(n: usize, offset: usize) -> Vec<Conversation> {
    let words = ["who", "what", "when", "where", "why", "how", "which", "whose"];
    (0..n).map(|i| Conversation::exchange(format!("{} {}", words[(i + offset) % 8], i % 5), "ok")).collect()
}

fn config(max_steps: u64, checkpoint_every: u64) -> PretrainConfig {
    PretrainConfig {
        seq_len: 32,
        batch_size: 4,
        lr: 3e-3,
        warmup_steps: 3,
        max_steps,
        eval_every: 5,
        checkpoint_every,
        weight_decay: 0.0,
        seed: 3,
        ..Default::default()
    }
}

struct Run {
    report: cascade_posttrain::SftReport,
    model: Decoder,
}

/// Fine-tunes the tiny decoder into `out` (created), from its init weights or from `resume`.
fn run(cfg: &PretrainConfig, out: &Path, resume: Option<&Path>) -> Run {
    let device = Device::flex();
    std::fs::create_dir_all(out).unwrap();
    let init = out.join("init.safetensors");
    cascade_model::save_safetensors(&tiny_decoder(&device), &init).unwrap();
    let (train, val) = (encode(&conversations(40, 0), 32), encode(&conversations(8, 3), 32));
    let job = SftJob { config: cfg, pack: true, init_weights: &init, train: &train, val: &val, pad_id: 0, out_dir: out, resume_from: resume };
    let (model, report) = train_sft(&job, &device, &NoProgress).unwrap();
    Run { report, model }
}

fn metrics(out: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(out.join("metrics.jsonl")).unwrap().lines().map(|line| serde_json::from_str(line).unwrap()).collect()
}

#[test]
fn sft_learns_replies_and_to_end_its_turn() {
    let _serial = serial();
    let device = Device::flex();
    let before = tiny_decoder(&device);
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let trained = run(&config(40, 0), &out, None);
    let report = &trained.report;
    assert_eq!(report.steps, 40);
    assert!(report.final_val.loss < 0.4 * report.initial_val.loss, "{:?} -> {:?}", report.initial_val, report.final_val);
    assert!(report.final_val.accuracy > 0.9, "{:?}", report.final_val);
    // Reply tokens per validation conversation: "ok" + end of turn.
    assert_eq!(report.final_val.tokens, 8 * 3);
    assert!(report.padding_fraction < 0.5 && report.tokens_per_s > 0.0 && report.train_flops > 0.0);
    for file in ["model.safetensors", "model.config.json", "metrics.jsonl", "checkpoint/state.json", "checkpoint/model.bpk"] {
        assert!(out.join(file).is_file(), "{file} missing");
    }
    let lines = metrics(&out);
    assert_eq!(lines.len(), 40);
    assert!(lines[4]["val_loss"].is_number() && lines[0]["train_accuracy"].is_number());

    let template = ChatTemplate::new(&Bytes).unwrap();
    let settings = SampleSettings { max_reply_tokens: 8, temperature: 0.0, seed: 1 };
    let prompts = conversations(8, 5);
    let format_before = measure_format(&before, &template, &Bytes, &prompts, 8, &settings, &device);
    let format_after = measure_format(&trained.model, &template, &Bytes, &prompts, 8, &settings, &device);
    assert_eq!(format_before.prompts, 8);
    assert!(format_before.fraction_ended_turn < 0.5, "{format_before:?}");
    assert_eq!(format_after.fraction_ended_turn, 1.0, "{format_after:?}");
    assert_eq!(format_after.examples[0].reply, "ok");
}

#[test]
fn resumed_run_equals_the_uninterrupted_one() {
    let _serial = serial();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(12, 0);
    let straight = run(&cfg, &dir.path().join("straight"), None);
    let all = metrics(&dir.path().join("straight"));
    // "Interrupt" after 6 steps through the token budget, then resume with the original config.
    let tokens_at_6 = all[5]["tokens"].as_u64().unwrap();
    let first = run(&PretrainConfig { max_tokens: tokens_at_6, ..cfg.clone() }, &dir.path().join("first"), None);
    assert_eq!(first.report.steps, 6);
    let resumed = run(&cfg, &dir.path().join("second"), Some(&dir.path().join("first/checkpoint")));
    assert_eq!((resumed.report.resumed_from_step, resumed.report.steps), (6, 12));
    let losses = |lines: &[serde_json::Value]| lines.iter().map(|l| l["train_loss"].as_f64().unwrap()).collect::<Vec<_>>();
    let mut pieced = losses(&metrics(&dir.path().join("first")));
    pieced.extend(losses(&metrics(&dir.path().join("second"))));
    assert_eq!(losses(&all), pieced, "losses differ after resume");
    assert_eq!(resumed.report.final_val, straight.report.final_val);
}
