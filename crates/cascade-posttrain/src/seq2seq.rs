//! Seq2seq replies: the pretrained encoder-decoder fine-tuned on the same (speech, next speech)
//! pairs as the decoder's SFT, so the two families can be compared on one task.
//!
//! Source = the prompt speech (its end kept when too long); target = the reply followed by
//! `<|end_of_turn|>`, the token the decoder's chat template closes a reply with, so both
//! families learn the same tokens: the reply and where it stops. The decoder input is the
//! target shifted right behind `<|pad|>`, the start token of pretraining (T5's convention).
//!
//! The loss is the mean negative log-likelihood of the target tokens. Validation reports it
//! per token (nats) and per byte of reply text (bits), like the decoder's reply loss. A FLOP
//! budget (the decoder SFT's training FLOPs) sets the number of steps: the batches are
//! planned in advance with the seeded order, and training runs the fewest steps whose FLOPs
//! (cascade-model's accounting at each batch's padded widths) reach the budget.

use std::path::Path;

use cascade_core::chat::END_OF_TURN_TOKEN;
use cascade_core::{Progress, Tokenizer};
use cascade_model::burn;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use cascade_model::{BatchLayout, EncoderDecoder, EncoderDecoderConfig, ModelCosts};
use cascade_pretrain::PretrainConfig;
use cascade_pretrain::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::tuning::{
    EpochOrder, LoopSettings, ReplyPair, StepWork, TuneError, encode_text, float_matrix, int_matrix, right_pad,
    run_loop, shuffle, special_id, validate_train,
};

/// The weights the stage writes (cascade-model SafeTensors, config JSON beside).
pub const SEQ2SEQ_MODEL_FILE: &str = "model.safetensors";

const SECTION: &str = "sft_seq2seq";
const SAMPLE_STREAM: u64 = 0x5332_5361;
const ORDER_STREAM: u64 = 0x5332_4F72;
/// A FLOP budget never plans more steps than this (a guard against a zero-cost batch).
const MAX_PLANNED_STEPS: u64 = 10_000_000;

/// The `[sft_seq2seq]` section. Every key has a default; unknown keys are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Seq2SeqConfig {
    /// `[sft_seq2seq.train]`: the pretraining loop's settings, reused. `batch_size` counts
    /// pairs, `max_steps` is the budget when no FLOP budget is matched, `seed` draws the
    /// subsampling and the batch order. `seq_len`, `eval_windows`, `checkpoint_every` and the
    /// objective keys are unused; `grad_accum` must be 1 and `max_tokens`/`max_wall_s` 0.
    pub train: PretrainConfig,
    /// Train at the decoder SFT's training FLOPs: the runner reads them from the `sft` stage's
    /// manifest and passes them as [`Seq2SeqJob::flop_budget`]; `train.max_steps` is unused.
    pub match_sft_flops: bool,
    /// Longest source in tokens (0 = the model's `max_source_len`).
    pub max_source_len: usize,
    /// Longest target in tokens, end-of-turn included (0 = the model's `max_target_len`).
    pub max_target_len: usize,
    /// Training pairs to use, drawn with the seed (0 = all).
    pub max_train_pairs: usize,
    /// Validation pairs to score, evenly spaced over the split (0 = all). With
    /// `match_sft_flops` the runner scores the decoder SFT's own validation conversations
    /// instead, so both families are measured on the same replies.
    pub max_val_pairs: usize,
}

impl Default for Seq2SeqConfig {
    fn default() -> Self {
        Self {
            train: PretrainConfig {
                batch_size: 16,
                lr: 3e-4,
                warmup_steps: 20,
                max_steps: 400,
                weight_decay: 0.01,
                eval_every: 100,
                ..PretrainConfig::default()
            },
            match_sft_flops: true,
            max_source_len: 0,
            max_target_len: 0,
            max_train_pairs: 0,
            max_val_pairs: 1000,
        }
    }
}

impl Seq2SeqConfig {
    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), TuneError> {
        validate_train(&self.train, "sft_seq2seq.train")?;
        if self.max_target_len == 1 {
            return Err(TuneError::Config {
                section: SECTION,
                key: "max_target_len",
                message: "must be 0 or at least 2 (a reply token and the end of turn)".into(),
            });
        }
        Ok(())
    }
}

/// One tokenized pair: the source, the target (reply + end of turn) and the reply's bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Seq2SeqExample {
    /// Source ids (the prompt speech, its end kept).
    pub source: Vec<u32>,
    /// Target ids: the reply then `<|end_of_turn|>` (the reply's start kept when too long, and
    /// then no end of turn).
    pub target: Vec<u32>,
    /// UTF-8 bytes of the reply text the target holds (the end of turn has none).
    pub reply_bytes: usize,
}

/// Tokenized pairs and what was cut.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Seq2SeqExamples {
    /// One per pair.
    pub examples: Vec<Seq2SeqExample>,
    /// Sources cut to the source length.
    pub sources_truncated: usize,
    /// Targets cut to the target length (they lose their end of turn: counted, never silent).
    pub targets_truncated: usize,
}

/// The ids the format needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Seq2SeqIds {
    /// Closes every target.
    pub end_of_turn: u32,
    /// Pads batches and starts the decoder input.
    pub pad: u32,
}

impl Seq2SeqIds {
    /// Looks the ids up in `tokenizer`.
    pub fn new(tokenizer: &dyn Tokenizer) -> Result<Self, TuneError> {
        Ok(Self { end_of_turn: special_id(tokenizer, END_OF_TURN_TOKEN)?, pad: special_id(tokenizer, "<|pad|>")? })
    }
}

/// Tokenizes `pairs` into source/target examples of at most `max_source`/`max_target` ids.
pub fn seq2seq_examples(
    pairs: &[ReplyPair],
    tokenizer: &dyn Tokenizer,
    ids: Seq2SeqIds,
    max_source: usize,
    max_target: usize,
) -> Seq2SeqExamples {
    let mut out = Seq2SeqExamples::default();
    for pair in pairs {
        let mut source = encode_text(tokenizer, &pair.prompt);
        if source.len() > max_source {
            source.drain(..source.len() - max_source);
            out.sources_truncated += 1;
        }
        let mut target = encode_text(tokenizer, &pair.reply);
        target.push(ids.end_of_turn);
        if target.len() > max_target {
            target.truncate(max_target);
            out.targets_truncated += 1;
        }
        let content: Vec<u32> = target.iter().copied().filter(|&id| id != ids.end_of_turn).collect();
        let reply_bytes = tokenizer.decode_bytes(&content).map_or(0, |bytes| bytes.len());
        out.examples.push(Seq2SeqExample { source, target, reply_bytes });
    }
    out
}

/// A batch on the host: padded sources, decoder inputs, targets and their loss weights.
#[derive(Debug)]
struct HostBatch {
    rows: usize,
    source: Vec<i64>,
    source_lengths: Vec<usize>,
    source_width: usize,
    decoder_input: Vec<i64>,
    target: Vec<i64>,
    target_lengths: Vec<usize>,
    target_width: usize,
    weights: Vec<f32>,
}

fn host_batch(examples: &[&Seq2SeqExample], pad: u32) -> HostBatch {
    let sources: Vec<&[u32]> = examples.iter().map(|e| e.source.as_slice()).collect();
    let targets: Vec<&[u32]> = examples.iter().map(|e| e.target.as_slice()).collect();
    let (source, source_lengths, source_width) = right_pad(&sources, pad);
    let (target, target_lengths, target_width) = right_pad(&targets, pad);
    let shifted: Vec<Vec<u32>> = examples
        .iter()
        .map(|e| std::iter::once(pad).chain(e.target[..e.target.len().saturating_sub(1)].iter().copied()).collect())
        .collect();
    let shifted_refs: Vec<&[u32]> = shifted.iter().map(Vec::as_slice).collect();
    // Shifted rows are as long as their targets (an empty target still gets the start token,
    // and `right_pad` makes every width at least 1), so both matrices share `target_width`.
    let (decoder_input, _, _) = right_pad(&shifted_refs, pad);
    let weights = target_lengths
        .iter()
        .flat_map(|&len| (0..target_width).map(move |col| if col < len { 1.0f32 } else { 0.0 }))
        .collect();
    HostBatch {
        rows: examples.len(),
        source,
        source_lengths,
        source_width,
        decoder_input,
        target,
        target_lengths,
        target_width,
        weights,
    }
}

/// Per-position log-likelihood of the targets `[B, Tt]`, masked by the weights.
fn target_log_likelihood(model: &EncoderDecoder, batch: &HostBatch, device: &Device) -> Result<(Tensor<2>, Tensor<2>, Tensor<3>), TuneError> {
    let source = int_matrix(&batch.source, batch.rows, batch.source_width, device);
    let source_layout = BatchLayout::right_padded(&batch.source_lengths, batch.source_width, device)?;
    let decoder_input = int_matrix(&batch.decoder_input, batch.rows, batch.target_width, device);
    let target_layout = BatchLayout::right_padded(&batch.target_lengths, batch.target_width, device)?;
    let targets = int_matrix(&batch.target, batch.rows, batch.target_width, device);
    let weights = float_matrix(batch.weights.clone(), batch.rows, batch.target_width, device);
    let memory = model.encode(source, &source_layout);
    let logits = model.decode(decoder_input, &target_layout, &memory);
    let log_likelihood = log_softmax(logits.clone(), 2).gather(2, targets.unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
    Ok((log_likelihood * weights.clone(), weights, logits))
}

/// Training FLOPs of a batch at its padded widths (cascade-model's encoder-decoder accounting).
fn batch_flops(config: &EncoderDecoderConfig, rows: usize, source_width: usize, target_width: usize) -> f64 {
    let per_token = config.costs_at(source_width, target_width).train_flops_per_token;
    per_token * (source_width + target_width) as f64 * rows as f64
}

fn batch_widths(examples: &[Seq2SeqExample], batch: &[usize]) -> (usize, usize) {
    let source = batch.iter().map(|&i| examples[i].source.len()).max().unwrap_or(0).max(1);
    let target = batch.iter().map(|&i| examples[i].target.len()).max().unwrap_or(0).max(1);
    (source, target)
}

/// The fewest steps whose batches (drawn in the seeded order the training will use) reach
/// `flop_budget` training FLOPs, with the FLOPs they add up to; at least one step.
pub fn steps_for_flop_budget(
    examples: &[Seq2SeqExample],
    config: &EncoderDecoderConfig,
    batch_size: usize,
    seed: u64,
    flop_budget: f64,
) -> (u64, f64) {
    let mut order = EpochOrder::new(examples.len(), seed ^ ORDER_STREAM);
    let (mut steps, mut flops) = (0u64, 0.0f64);
    while steps < MAX_PLANNED_STEPS && (steps == 0 || flops < flop_budget) {
        let batch = order.next_batch(batch_size);
        let (source_width, target_width) = batch_widths(examples, &batch);
        flops += batch_flops(config, batch.len(), source_width, target_width);
        steps += 1;
    }
    (steps, flops)
}

/// Validation metrics on reply tokens (the reply and its end of turn).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqEval {
    /// Mean negative log-likelihood per reply token (nats).
    pub val_reply_loss_per_token: f64,
    /// Reply negative log-likelihood per byte of reply text (bits).
    pub val_reply_bits_per_byte: f64,
    /// Share of reply tokens whose argmax is right.
    pub val_reply_accuracy: f64,
    /// Reply tokens scored.
    pub val_reply_tokens: u64,
}

fn evaluate(
    model: &EncoderDecoder,
    examples: &[Seq2SeqExample],
    pad: u32,
    batch_size: usize,
    device: &Device,
) -> Result<Seq2SeqEval, TuneError> {
    let (mut nll, mut correct, mut tokens, mut bytes) = (0.0f64, 0.0f64, 0u64, 0u64);
    for chunk in examples.chunks(batch_size.max(1)) {
        let refs: Vec<&Seq2SeqExample> = chunk.iter().collect();
        let batch = host_batch(&refs, pad);
        let (log_likelihood, weights, logits) = target_log_likelihood(model, &batch, device)?;
        let targets = int_matrix(&batch.target, batch.rows, batch.target_width, device);
        let hits = logits.argmax(2).squeeze_dim::<2>(2).equal(targets).float() * weights;
        nll -= log_likelihood.sum().into_scalar::<f32>() as f64;
        correct += hits.sum().into_scalar::<f32>() as f64;
        tokens += batch.target_lengths.iter().sum::<usize>() as u64;
        bytes += chunk.iter().map(|e| e.reply_bytes as u64).sum::<u64>();
    }
    Ok(Seq2SeqEval {
        val_reply_loss_per_token: nll / (tokens.max(1) as f64),
        val_reply_bits_per_byte: nll / std::f64::consts::LN_2 / (bytes.max(1) as f64),
        val_reply_accuracy: correct / (tokens.max(1) as f64),
        val_reply_tokens: tokens,
    })
}

/// What to fine-tune and where to write.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub struct Seq2SeqJob<'a> {
    /// The `[sft_seq2seq]` section.
    pub config: &'a Seq2SeqConfig,
    /// The pretrained encoder-decoder (`pretrain-encoder-decoder/model.safetensors`).
    pub weights: &'a Path,
    /// Training pairs.
    pub train: &'a [ReplyPair],
    /// Validation pairs.
    pub val: &'a [ReplyPair],
    /// The run's tokenizer.
    pub tokenizer: &'a dyn Tokenizer,
    /// Training FLOPs to match (the decoder SFT's); `None` runs `max_steps`.
    pub flop_budget: Option<f64>,
    /// Existing directory the model is written into.
    pub out_dir: &'a Path,
}

/// The outcome of a seq2seq fine-tune, for the stage manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Seq2SeqReport {
    /// Training pairs used.
    pub train_pairs: usize,
    /// Validation pairs scored.
    pub val_pairs: usize,
    /// Sources cut to the source length, train and validation together.
    pub sources_truncated: usize,
    /// Targets cut to the target length (end of turn lost), train and validation together.
    pub targets_truncated: usize,
    /// The FLOP budget the steps were planned for, if any.
    pub flop_budget: Option<f64>,
    /// Optimizer steps.
    pub steps: u64,
    /// Training pairs seen.
    pub examples_seen: u64,
    /// Token positions processed (source and target, padding included).
    pub tokens: u64,
    /// Training FLOPs spent.
    pub train_flops: f64,
    /// Training loss of the first step.
    pub first_train_loss: f64,
    /// Training loss of the last step.
    pub final_train_loss: f64,
    /// Validation metrics of the pretrained model.
    pub initial: Seq2SeqEval,
    /// Validation metrics after fine-tuning.
    pub final_eval: Seq2SeqEval,
    /// Token positions per second of training.
    pub tokens_per_s: f64,
    /// Wall-clock seconds of training and evaluation.
    pub wall_s: f64,
    /// Costs of the architecture at its maximum lengths.
    pub model_costs: ModelCosts,
}

/// Evenly spaced `n` of `pairs` (all when `n` is 0 or at least their number).
fn spread(pairs: &[ReplyPair], n: usize) -> Vec<ReplyPair> {
    if n == 0 || n >= pairs.len() {
        return pairs.to_vec();
    }
    (0..n).map(|i| pairs[i * pairs.len() / n].clone()).collect()
}

fn sample(pairs: &[ReplyPair], max_pairs: usize, seed: u64) -> Vec<ReplyPair> {
    if max_pairs == 0 || max_pairs >= pairs.len() {
        return pairs.to_vec();
    }
    let mut chosen: Vec<usize> = (0..pairs.len()).collect();
    shuffle(&mut chosen, &mut SplitMix64::new(seed ^ SAMPLE_STREAM));
    chosen.truncate(max_pairs);
    chosen.sort_unstable();
    chosen.into_iter().map(|i| pairs[i].clone()).collect()
}

fn limit(key: &'static str, configured: usize, model_max: usize) -> Result<usize, TuneError> {
    match configured {
        0 => Ok(model_max),
        n if n <= model_max => Ok(n),
        n => Err(TuneError::Config { section: SECTION, key, message: format!("{n} is longer than the model's {model_max}") }),
    }
}

/// Fine-tunes the pretrained encoder-decoder on reply pairs on `device` (autodiff added here);
/// writes `model.safetensors` (+ config) and `metrics.jsonl` into `job.out_dir`.
pub fn train_seq2seq(job: &Seq2SeqJob<'_>, device: &Device, progress: &dyn Progress) -> Result<Seq2SeqReport, TuneError> {
    let cfg = job.config;
    cfg.validate()?;
    let ad = device.clone().autodiff();
    let model: EncoderDecoder = cascade_model::load_safetensors(job.weights, &ad)?;
    let model_config = model.config().clone();
    let max_source = limit("max_source_len", cfg.max_source_len, model_config.max_source_len)?;
    let max_target = limit("max_target_len", cfg.max_target_len, model_config.max_target_len)?;
    let ids = Seq2SeqIds::new(job.tokenizer)?;
    let train = seq2seq_examples(&sample(job.train, cfg.max_train_pairs, cfg.train.seed), job.tokenizer, ids, max_source, max_target);
    let val = seq2seq_examples(&spread(job.val, cfg.max_val_pairs), job.tokenizer, ids, max_source, max_target);
    for (what, set) in [("seq2seq training pairs", &train), ("seq2seq validation pairs", &val)] {
        if set.examples.is_empty() {
            return Err(TuneError::Data { what: what.into(), message: "no pairs".into() });
        }
    }
    let max_steps = match job.flop_budget {
        Some(budget) if budget > 0.0 => {
            steps_for_flop_budget(&train.examples, &model_config, cfg.train.batch_size, cfg.train.seed, budget).0
        }
        _ => cfg.train.max_steps,
    };

    let plain = device.clone();
    let mut order = EpochOrder::new(train.examples.len(), cfg.train.seed ^ ORDER_STREAM);
    let train_config = PretrainConfig { max_steps, ..cfg.train.clone() };
    let settings = LoopSettings {
        train: &train_config,
        metrics_path: &job.out_dir.join("metrics.jsonl"),
        label: "sft-seq2seq",
    };
    let step = |model: &EncoderDecoder, _step: u64| -> Result<StepWork, TuneError> {
        let batch = order.next_batch(cfg.train.batch_size);
        let refs: Vec<&Seq2SeqExample> = batch.iter().map(|&i| &train.examples[i]).collect();
        let host = host_batch(&refs, ids.pad);
        let (log_likelihood, weights, _) = target_log_likelihood(model, &host, &ad)?;
        let loss = log_likelihood.sum().neg() / weights.sum().clamp_min(1.0);
        Ok(StepWork {
            loss,
            examples: host.rows as u64,
            tokens: (host.rows * (host.source_width + host.target_width)) as u64,
            flops: batch_flops(&model_config, host.rows, host.source_width, host.target_width),
        })
    };
    let eval = |model: &EncoderDecoder| evaluate(model, &val.examples, ids.pad, cfg.train.batch_size * 2, &plain);
    let (model, outcome) = run_loop(model, &settings, &ad, progress, step, eval)?;
    cascade_model::save_safetensors(&model.valid(), &job.out_dir.join(SEQ2SEQ_MODEL_FILE))?;
    Ok(Seq2SeqReport {
        train_pairs: train.examples.len(),
        val_pairs: val.examples.len(),
        sources_truncated: train.sources_truncated + val.sources_truncated,
        targets_truncated: train.targets_truncated + val.targets_truncated,
        flop_budget: job.flop_budget,
        steps: outcome.steps,
        examples_seen: outcome.examples,
        tokens: outcome.tokens,
        train_flops: outcome.train_flops,
        first_train_loss: outcome.first_train_loss,
        final_train_loss: outcome.final_train_loss,
        initial: outcome.initial_val,
        final_eval: outcome.final_val,
        tokens_per_s: outcome.tokens_per_s,
        wall_s: outcome.wall_s,
        model_costs: model_config.costs(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decoder_input_is_the_target_shifted_behind_the_start_token() {
        let a = Seq2SeqExample { source: vec![5, 6, 7], target: vec![20, 21, 9], reply_bytes: 2 };
        let b = Seq2SeqExample { source: vec![8], target: vec![22, 9], reply_bytes: 1 };
        let batch = host_batch(&[&a, &b], 1);
        assert_eq!((batch.source_width, batch.target_width), (3, 3));
        assert_eq!(batch.source, vec![5, 6, 7, 8, 1, 1]);
        assert_eq!(batch.decoder_input, vec![1, 20, 21, 1, 22, 1]);
        assert_eq!(batch.target, vec![20, 21, 9, 22, 9, 1]);
        assert_eq!(batch.weights, vec![1.0, 1.0, 1.0, 1.0, 1.0, 0.0]);
    }

    #[test]
    fn flop_budget_plans_the_fewest_steps_that_reach_it() {
        let config = EncoderDecoderConfig {
            vocab_size: 64,
            d_model: 16,
            n_encoder_layers: 1,
            n_decoder_layers: 1,
            n_heads: 2,
            max_source_len: 8,
            max_target_len: 8,
            ..Default::default()
        };
        let examples: Vec<Seq2SeqExample> = (0..10)
            .map(|i| Seq2SeqExample { source: vec![3; 1 + i % 5], target: vec![4; 2 + i % 3], reply_bytes: 1 })
            .collect();
        let (one_step, one_step_flops) = steps_for_flop_budget(&examples, &config, 4, 9, 1.0);
        assert_eq!(one_step, 1);
        assert!(one_step_flops > 0.0);
        let budget = 10.5 * one_step_flops;
        let (steps, flops) = steps_for_flop_budget(&examples, &config, 4, 9, budget);
        assert!(flops >= budget);
        let (fewer, fewer_flops) = steps_for_flop_budget(&examples, &config, 4, 9, budget);
        assert_eq!((fewer, fewer_flops), (steps, flops), "planned from the seed alone");
        // One step less falls short of the budget.
        let mut order = EpochOrder::new(examples.len(), 9 ^ ORDER_STREAM);
        let short: f64 = (0..steps - 1)
            .map(|_| {
                let batch = order.next_batch(4);
                let (s, t) = batch_widths(&examples, &batch);
                batch_flops(&config, batch.len(), s, t)
            })
            .sum();
        assert!(short < budget, "{short} >= {budget}");
    }
}
