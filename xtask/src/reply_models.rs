//! The two post-training stages beside the decoder's SFT that learn from the same
//! (speech, next speech) conversations: `sft-judge` (the encoder as a reply judge) and
//! `sft-seq2seq` (the encoder-decoder as a reply generator, at the decoder SFT's compute).

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use cascade_core::hash::config_hash;
use cascade_core::{ChatTemplate, InputRecord, StageManifest};
use cascade_posttrain::batch::encode_conversations;
use cascade_posttrain::judge::JudgeJob;
use cascade_posttrain::seq2seq::Seq2SeqJob;
use cascade_posttrain::{Conversation, ReadMode, ReplyPair, Seq2SeqConfig};
use cascade_tokenizer::BpeTokenizer;
use serde_json::{Value, json};

use crate::runner::Ctx;
use crate::stages::{Stage, metric, upstream};

/// The stage that writes the conversation dataset (the one the decoder SFT trains on), and
/// its two splits.
const DATASET_STAGE: &str = "sft";
const DATASET_FILES: [&str; 2] = ["sft_train.jsonl", "sft_val.jsonl"];

/// The dataset's conversations as (prompt, reply) pairs, with what was left out.
struct PairSplits {
    train: Vec<ReplyPair>,
    val: Vec<ReplyPair>,
    val_conversations: Vec<Conversation>,
    skipped_conversations: usize,
}

fn dataset_inputs(ctx: &Ctx) -> Result<Vec<InputRecord>> {
    upstream(ctx, DATASET_STAGE, &DATASET_FILES)
}

fn read_pairs(ctx: &Ctx) -> Result<PairSplits> {
    let read = |file: &str| -> Result<Vec<Conversation>> {
        let path = ctx.request.layout.stage_file(DATASET_STAGE, file);
        // The dataset stage already rejected malformed records: any left is a bug, not a skip.
        Ok(cascade_posttrain::read_conversations(&path, ReadMode::Strict)?.0)
    };
    let (train, skipped_train) = ReplyPair::from_conversations(&read(DATASET_FILES[0])?);
    let val_conversations = read(DATASET_FILES[1])?;
    let (val, skipped_val) = ReplyPair::from_conversations(&val_conversations);
    Ok(PairSplits { train, val, val_conversations, skipped_conversations: skipped_train + skipped_val })
}

/// Evenly spaced `n` of `items` (all when `n` is 0 or at least their number), the way the
/// `sft` stage picks its validation conversations.
fn spread<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if n == 0 || n >= items.len() {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// The validation pairs the decoder SFT's reply loss is measured on, so the two families are
/// scored on the same replies: the conversations its chat-template encoding keeps at
/// `[sft.train] seq_len`, evenly spaced down to `[sft] eval_conversations`. (A conversation
/// that `truncation = "drop_leading_turns"` trims keeps its prompt here.)
fn decoder_validation_pairs(ctx: &Ctx, tokenizer: &BpeTokenizer, conversations: &[Conversation]) -> Result<Vec<ReplyPair>> {
    let sft = &ctx.request.config.sft;
    let template = ChatTemplate::new(tokenizer).with_context(|| tokenizer_path(ctx).display().to_string())?;
    let fits = |c: &Conversation| {
        !encode_conversations(&template, tokenizer, std::slice::from_ref(c), sft.train.seq_len, sft.truncation).0.is_empty()
    };
    let kept: Vec<Conversation> = conversations.iter().filter(|c| fits(c)).cloned().collect();
    Ok(ReplyPair::from_conversations(&spread(&kept, sft.eval_conversations)).0)
}

fn tokenizer_path(ctx: &Ctx) -> PathBuf {
    ctx.request.layout.stage_file("tokenizer", "tokenizer.json")
}

fn load_tokenizer(ctx: &Ctx) -> Result<BpeTokenizer> {
    Ok(BpeTokenizer::load_hf(&tokenizer_path(ctx))?)
}

fn model_inputs(ctx: &Ctx, stage: &str) -> Result<Vec<InputRecord>> {
    let mut inputs = upstream(ctx, "tokenizer", &["tokenizer.json"])?;
    inputs.extend(upstream(ctx, stage, &["model.safetensors", "model.config.json"])?);
    inputs.extend(dataset_inputs(ctx)?);
    Ok(inputs)
}

/// `sft-judge`: the pretrained encoder fine-tuned to tell real replies from mismatched ones.
pub struct SftJudge;

impl Stage for SftJudge {
    fn name(&self) -> &'static str {
        "sft-judge"
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        config_hash(&ctx.request.config.sft_judge)
    }

    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        model_inputs(ctx, "pretrain-encoder")
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let tokenizer = load_tokenizer(ctx)?;
        let pairs = read_pairs(ctx)?;
        let device = cascade_model::parse_device(ctx.request.device.name())?;
        let job = JudgeJob {
            config: &ctx.request.config.sft_judge,
            encoder_weights: &ctx.request.layout.stage_file("pretrain-encoder", "model.safetensors"),
            train: &pairs.train,
            val: &pairs.val,
            tokenizer: &tokenizer,
            out_dir,
        };
        let report = cascade_posttrain::train_judge(&job, &device, &ctx.bars)?;
        let mut metrics = serde_json::to_value(report)?;
        metrics["conversations_without_pair"] = json!(pairs.skipped_conversations);
        Ok(metrics)
    }

    fn summary(&self, metrics: &Value) -> String {
        format!(
            "{} train / {} val pairs, {} steps; val accuracy {} -> {}, AUC {} -> {}",
            metric(metrics, "/train_pairs"),
            metric(metrics, "/val_pairs"),
            metric(metrics, "/steps"),
            metric(metrics, "/initial/val_accuracy"),
            metric(metrics, "/final_eval/val_accuracy"),
            metric(metrics, "/initial/val_auc"),
            metric(metrics, "/final_eval/val_auc"),
        )
    }
}

/// The decoder SFT's figures the seq2seq stage is compared against, read from its manifest.
fn decoder_sft_figures(ctx: &Ctx) -> Result<Value> {
    let dir = ctx.request.layout.stage_dir(DATASET_STAGE);
    let manifest = StageManifest::load(&dir)?
        .with_context(|| format!("{} has no manifest: run `cargo xtask sft` first", dir.display()))?;
    Ok(manifest.metrics)
}

fn decoder_train_flops(sft_metrics: &Value) -> Option<f64> {
    sft_metrics.pointer("/train_flops").and_then(Value::as_f64)
}

/// `sft-seq2seq`: the pretrained encoder-decoder fine-tuned on the same pairs, at the decoder
/// SFT's training FLOPs when `match_sft_flops` is set.
pub struct SftSeq2Seq;

impl Stage for SftSeq2Seq {
    fn name(&self) -> &'static str {
        "sft-seq2seq"
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        let config = &ctx.request.config;
        if config.sft_seq2seq.match_sft_flops {
            // It is scored on the decoder SFT's validation conversations: their selection counts.
            let sft = &config.sft;
            let selection = json!({ "seq_len": sft.train.seq_len, "truncation": sft.truncation, "eval_conversations": sft.eval_conversations });
            config_hash(&json!({ "sft_seq2seq": config.sft_seq2seq, "sft_validation": selection }))
        } else {
            config_hash(&config.sft_seq2seq)
        }
    }

    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        let mut inputs = model_inputs(ctx, "pretrain-encoder-decoder")?;
        if ctx.request.config.sft_seq2seq.match_sft_flops {
            // The budget is the decoder SFT's FLOPs: a new SFT run may change it.
            inputs.extend(upstream(ctx, DATASET_STAGE, &["model.safetensors"])?);
        }
        Ok(inputs)
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let config = &ctx.request.config.sft_seq2seq;
        let tokenizer = load_tokenizer(ctx)?;
        let pairs = read_pairs(ctx)?;
        let sft = if config.match_sft_flops { Some(decoder_sft_figures(ctx)?) } else { None };
        let flop_budget = match &sft {
            Some(metrics) => Some(decoder_train_flops(metrics).with_context(|| {
                format!("the {DATASET_STAGE} manifest records no `train_flops` to match; set match_sft_flops = false")
            })?),
            None => None,
        };
        // Matching the decoder SFT, score its validation replies (then `max_val_pairs` is moot).
        let (val, config) = match &sft {
            Some(_) => (
                decoder_validation_pairs(ctx, &tokenizer, &pairs.val_conversations)?,
                Seq2SeqConfig { max_val_pairs: 0, ..config.clone() },
            ),
            None => (pairs.val.clone(), config.clone()),
        };
        let device = cascade_model::parse_device(ctx.request.device.name())?;
        let job = Seq2SeqJob {
            config: &config,
            weights: &ctx.request.layout.stage_file("pretrain-encoder-decoder", "model.safetensors"),
            train: &pairs.train,
            val: &val,
            tokenizer: &tokenizer,
            flop_budget,
            out_dir,
        };
        let report = cascade_posttrain::train_seq2seq(&job, &device, &ctx.bars)?;
        let mut metrics = serde_json::to_value(report)?;
        metrics["conversations_without_pair"] = json!(pairs.skipped_conversations);
        if let Some(sft) = &sft {
            metrics["decoder_sft"] = json!({
                "train_flops": decoder_train_flops(sft),
                "val_reply_loss_per_token": sft.pointer("/val_reply_loss_per_token"),
                "val_reply_bits_per_byte": sft.pointer("/val_reply_bits_per_byte"),
                "val_reply_tokens": sft.pointer("/effects/reply_loss/after/tokens"),
            });
        }
        Ok(metrics)
    }

    fn summary(&self, metrics: &Value) -> String {
        let flops = |pointer: &str| metrics.pointer(pointer).and_then(Value::as_f64).map_or("?".into(), |f| format!("{f:.3e}"));
        let beside = match metrics.get("decoder_sft") {
            Some(_) => format!(
                " (decoder SFT: {} nats/token, {} bits/byte at {} FLOPs)",
                metric(metrics, "/decoder_sft/val_reply_loss_per_token"),
                metric(metrics, "/decoder_sft/val_reply_bits_per_byte"),
                flops("/decoder_sft/train_flops"),
            ),
            None => String::new(),
        };
        format!(
            "{} steps, {} FLOPs; val reply loss {} -> {} nats/token, {} bits/byte{beside}",
            metric(metrics, "/steps"),
            flops("/train_flops"),
            metric(metrics, "/initial/val_reply_loss_per_token"),
            metric(metrics, "/final_eval/val_reply_loss_per_token"),
            metric(metrics, "/final_eval/val_reply_bits_per_byte"),
        )
    }
}

#[cfg(test)]
mod tests {
    use crate::config::parse;

    fn error(text: &str) -> String {
        parse(text, "r.toml").unwrap_err().to_string()
    }

    #[test]
    fn sections_are_checked_against_the_models_and_name_the_key() {
        let err = error("[model.encoder]\nmax_seq_len = 64\n[pretrain.encoder]\nseq_len = 64\n[sft_judge]\nmax_len = 128\n");
        assert!(err.contains("[sft_judge] max_len = 128") && err.contains("max_seq_len = 64"), "{err}");
        let err = error("[sft_seq2seq]\nmax_target_len = 999\n");
        assert!(err.contains("[sft_seq2seq] max_target_len = 999"), "{err}");
        let err = error("[sft_seq2seq.train]\ngrad_accum = 2\n");
        assert!(err.contains("[sft_seq2seq.train] `grad_accum`"), "{err}");
        let err = error("[sft_judge.train]\nlr = -1.0\n");
        assert!(err.contains("[sft_judge.train] `lr`"), "{err}");
        let err = error("[sft_judge]\nmax_lenn = 3\n");
        assert!(err.contains("max_lenn") && err.starts_with("r.toml:2"), "{err}");
    }
}
