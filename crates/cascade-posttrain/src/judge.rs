//! The reply judge: the pretrained encoder fine-tuned to tell the speech that really answered
//! a prompt from a mismatched one (a reply taken from another pair of the same split, drawn
//! with a seed). It is the cascade's automatic judge for DPO ([`ReplyJudge::score`]).
//!
//! Input format, one sequence per (prompt, reply):
//!
//! ```text
//! [prompt ids, its end kept] <|end_of_turn|> [reply ids, its start kept]
//! ```
//!
//! `<|end_of_turn|>` is the separator because it already means "a turn ends here" in the chat
//! template; no role markers, so the judge sees exactly the two texts. When the sequence is too
//! long each side keeps at least half of the budget (counted in the report). The encoder pools
//! the sequence (its `pooling`, mean by default) into a 2-class head: class 1 = real reply.
//!
//! Every prompt appears twice, once with its real reply and once with a mismatched one, so the
//! classes are balanced by construction and the judge cannot score by prompt alone. A
//! mismatched reply is never the real one, nor a different speech with the same text.

use std::path::Path;
use std::sync::Arc;

use cascade_core::chat::END_OF_TURN_TOKEN;
use cascade_core::{Progress, Tokenizer};
use cascade_model::burn;
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use burn::tensor::activation::{log_softmax, softmax};
use cascade_model::{BatchLayout, Encoder, EncoderConfig, ModelConfig, ModelCosts};
use cascade_pretrain::PretrainConfig;
use cascade_pretrain::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::tuning::{
    EpochOrder, LoopSettings, ReplyPair, StepWork, TuneError, encode_text, int_matrix, right_pad, run_loop, shuffle,
    special_id, validate_train,
};

/// The separator between prompt and reply in the judge's input.
pub const JUDGE_SEPARATOR: &str = END_OF_TURN_TOKEN;
/// The file beside the judge's weights that records its input format.
pub const JUDGE_FORMAT_FILE: &str = "judge.json";
/// The judge's weights (cascade-model SafeTensors, config JSON beside).
pub const JUDGE_MODEL_FILE: &str = "model.safetensors";

const SECTION: &str = "sft_judge";
/// Class index of "the real reply".
const REAL: i64 = 1;
/// Seed offsets so the negatives, the subsampling and the batch order draw independent streams.
const NEGATIVE_STREAM: u64 = 0x4E65_6761;
const SAMPLE_STREAM: u64 = 0x5361_6D70;
const ORDER_STREAM: u64 = 0x4F72_6465;

/// The `[sft_judge]` section. Every key has a default; unknown keys are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct JudgeConfig {
    /// `[sft_judge.train]`: the pretraining loop's settings, reused. `batch_size` counts
    /// examples (real and mismatched together), `max_steps` is the budget, `eval_every` the
    /// evaluation cadence, `seed` draws the negatives, the subsampling, the batch order and
    /// the fresh head. `seq_len`, `eval_windows`, `checkpoint_every` and the objective keys
    /// are unused; `grad_accum` must be 1 and `max_tokens`/`max_wall_s` 0.
    pub train: PretrainConfig,
    /// Longest input in tokens, separator included (0 = the encoder's `max_seq_len`).
    pub max_len: usize,
    /// Training pairs to use, drawn with the seed (0 = all).
    pub max_train_pairs: usize,
    /// Validation pairs to score, drawn with the seed (0 = all); each gives two examples.
    pub max_val_pairs: usize,
}

impl Default for JudgeConfig {
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
            max_len: 0,
            max_train_pairs: 0,
            max_val_pairs: 1000,
        }
    }
}

impl JudgeConfig {
    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), TuneError> {
        validate_train(&self.train, "sft_judge.train")?;
        if self.max_len == 1 {
            return Err(TuneError::Config { section: SECTION, key: "max_len", message: "must be 0 or at least 2".into() });
        }
        Ok(())
    }
}

/// One judge example: the prompt of pair `prompt` with the reply of pair `reply`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JudgeExample {
    /// Index of the pair whose prompt is used.
    pub prompt: usize,
    /// Index of the pair whose reply is used.
    pub reply: usize,
    /// Whether the reply is the prompt's real one.
    pub real: bool,
}

/// Balanced judge examples built from pairs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct JudgeExamples {
    /// Two per kept pair: its real reply, then a mismatched one.
    pub examples: Vec<JudgeExample>,
    /// Pairs left out because no other pair has a reply with a different text.
    pub skipped_no_mismatch: usize,
}

/// Gives each pair a positive (its own reply) and a negative (the reply of another pair, drawn
/// with `seed`, whose text differs from the real reply's). Pairs for which no such reply exists
/// are skipped and counted.
pub fn mismatched_examples(pairs: &[ReplyPair], seed: u64) -> JudgeExamples {
    let mut rng = SplitMix64::new(seed ^ NEGATIVE_STREAM);
    let mut out = JudgeExamples::default();
    let n = pairs.len();
    for (idx, pair) in pairs.iter().enumerate() {
        let differs = |other: usize| other != idx && pairs[other].reply != pair.reply;
        // A few random draws almost always succeed; the scan settles the rare degenerate case.
        let drawn = (0..16).map(|_| rng.below(n as u64) as usize).find(|&other| differs(other));
        let negative = drawn.or_else(|| {
            let start = rng.below(n.max(1) as u64) as usize;
            (0..n).map(|k| (start + k) % n).find(|&other| differs(other))
        });
        match negative {
            Some(other) => {
                out.examples.push(JudgeExample { prompt: idx, reply: idx, real: true });
                out.examples.push(JudgeExample { prompt: idx, reply: other, real: false });
            }
            None => out.skipped_no_mismatch += 1,
        }
    }
    out
}

/// Area under the ROC curve of `scores` (higher = more likely positive) against `labels`: the
/// probability that a random positive outscores a random negative, ties counting one half
/// (the Mann-Whitney statistic). `None` when either class is absent.
pub fn roc_auc(scores: &[f64], labels: &[bool]) -> Option<f64> {
    let n_pos = labels.iter().filter(|&&l| l).count();
    let n_neg = labels.len() - n_pos;
    if n_pos == 0 || n_neg == 0 || scores.len() != labels.len() {
        return None;
    }
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    // Average 1-based ranks over runs of tied scores, then sum the positives' ranks.
    let mut positive_rank_sum = 0.0;
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && scores[order[end]] == scores[order[start]] {
            end += 1;
        }
        let mean_rank = (start + 1 + end) as f64 / 2.0;
        positive_rank_sum += mean_rank * order[start..end].iter().filter(|&&i| labels[i]).count() as f64;
        start = end;
    }
    let (p, q) = (n_pos as f64, n_neg as f64);
    Some((positive_rank_sum - p * (p + 1.0) / 2.0) / (p * q))
}

/// How the judge lays out its input; saved as `judge.json` beside the weights so scoring
/// formats exactly as training did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct JudgeFormat {
    /// Name of the special token between prompt and reply.
    pub separator: String,
    /// Longest input in tokens, separator included.
    pub max_len: usize,
}

/// A [`JudgeFormat`] with its token ids looked up.
#[derive(Clone, Debug)]
struct JudgeInput {
    separator: u32,
    pad: u32,
    max_len: usize,
}

impl JudgeInput {
    fn new(format: &JudgeFormat, tokenizer: &dyn Tokenizer) -> Result<Self, TuneError> {
        let separator = tokenizer.special_token(&format.separator).ok_or(TuneError::MissingSpecialToken(JUDGE_SEPARATOR))?;
        let pad = special_id(tokenizer, "<|pad|>")?;
        Ok(Self { separator, pad, max_len: format.max_len })
    }

    /// `prompt <sep> reply`, cut to `max_len`: the prompt keeps its end, the reply its start,
    /// each at least half the budget when both are long. Returns whether anything was cut.
    fn sequence(&self, prompt: &[u32], reply: &[u32]) -> (Vec<u32>, bool) {
        let budget = self.max_len.saturating_sub(1);
        let half = budget / 2;
        let (keep_prompt, keep_reply) = if prompt.len() + reply.len() <= budget {
            (prompt.len(), reply.len())
        } else if prompt.len() <= half {
            (prompt.len(), budget - prompt.len())
        } else if reply.len() <= budget - half {
            (budget - reply.len(), reply.len())
        } else {
            (half, budget - half)
        };
        let mut ids = Vec::with_capacity(keep_prompt + keep_reply + 1);
        ids.extend_from_slice(&prompt[prompt.len() - keep_prompt..]);
        ids.push(self.separator);
        ids.extend_from_slice(&reply[..keep_reply]);
        (ids, keep_prompt < prompt.len() || keep_reply < reply.len())
    }

    /// Ids and layout of a batch of sequences.
    fn batch(&self, sequences: &[&[u32]], device: &Device) -> Result<(Tensor<2, Int>, BatchLayout), TuneError> {
        let (ids, lengths, width) = right_pad(sequences, self.pad);
        let layout = BatchLayout::right_padded(&lengths, width, device)?;
        Ok((int_matrix(&ids, sequences.len(), width, device), layout))
    }
}

/// Pairs tokenized once, with their judge examples.
#[derive(Debug)]
struct EncodedSet {
    sequences: Vec<Vec<u32>>,
    labels: Vec<bool>,
    truncated: usize,
    pairs: usize,
    skipped_no_mismatch: usize,
}

fn encode_set(
    pairs: &[ReplyPair],
    max_pairs: usize,
    seed: u64,
    input: &JudgeInput,
    tokenizer: &dyn Tokenizer,
    what: &str,
) -> Result<EncodedSet, TuneError> {
    let mut chosen: Vec<usize> = (0..pairs.len()).collect();
    if max_pairs > 0 && max_pairs < pairs.len() {
        shuffle(&mut chosen, &mut SplitMix64::new(seed ^ SAMPLE_STREAM));
        chosen.truncate(max_pairs);
        chosen.sort_unstable();
    }
    let subset: Vec<ReplyPair> = chosen.iter().map(|&i| pairs[i].clone()).collect();
    let built = mismatched_examples(&subset, seed);
    if built.examples.is_empty() {
        return Err(TuneError::Data {
            what: what.to_string(),
            message: format!("{} pairs give no judge example (a mismatched reply needs another reply text)", subset.len()),
        });
    }
    let prompts: Vec<Vec<u32>> = subset.iter().map(|p| encode_text(tokenizer, &p.prompt)).collect();
    let replies: Vec<Vec<u32>> = subset.iter().map(|p| encode_text(tokenizer, &p.reply)).collect();
    let mut set = EncodedSet {
        sequences: Vec::with_capacity(built.examples.len()),
        labels: Vec::with_capacity(built.examples.len()),
        truncated: 0,
        pairs: subset.len() - built.skipped_no_mismatch,
        skipped_no_mismatch: built.skipped_no_mismatch,
    };
    for example in &built.examples {
        let (ids, cut) = input.sequence(&prompts[example.prompt], &replies[example.reply]);
        set.sequences.push(ids);
        set.labels.push(example.real);
        set.truncated += usize::from(cut);
    }
    Ok(set)
}

/// Mean cross-entropy of class logits `[B, 2]` against labels `[B]`.
fn class_loss(logits: Tensor<2>, labels: Tensor<1, Int>) -> Tensor<1> {
    log_softmax(logits, 1).gather(1, labels.unsqueeze_dim::<2>(1)).mean().neg()
}

fn label_tensor(labels: &[bool], device: &Device) -> Tensor<1, Int> {
    let ids: Vec<i64> = labels.iter().map(|&real| if real { REAL } else { 1 - REAL }).collect();
    Tensor::<1, Int>::from_ints(ids.as_slice(), device)
}

/// Probability of "real" per sequence, batched.
fn probabilities(model: &Encoder, input: &JudgeInput, sequences: &[&[u32]], batch_size: usize, device: &Device) -> Result<Vec<f64>, TuneError> {
    let mut out = Vec::with_capacity(sequences.len());
    for chunk in sequences.chunks(batch_size.max(1)) {
        let (ids, layout) = input.batch(chunk, device)?;
        let probs = softmax(model.classify(ids, &layout), 1).narrow(1, REAL as usize, 1);
        let values = probs.try_into_vec_as::<f32>().map_err(|e| TuneError::Data {
            what: "judge scores".into(),
            message: format!("{e:?}"),
        })?;
        out.extend(values.into_iter().map(f64::from));
    }
    Ok(out)
}

/// Validation metrics of the judge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeEval {
    /// Mean cross-entropy (nats per example).
    pub val_loss: f64,
    /// Share of examples on the right side of probability 0.5.
    pub val_accuracy: f64,
    /// Area under the ROC curve of the probability of "real".
    pub val_auc: f64,
}

fn evaluate(model: &Encoder, input: &JudgeInput, set: &EncodedSet, batch_size: usize, device: &Device) -> Result<JudgeEval, TuneError> {
    let sequences: Vec<&[u32]> = set.sequences.iter().map(Vec::as_slice).collect();
    let probs = probabilities(model, input, &sequences, batch_size, device)?;
    let n = probs.len().max(1) as f64;
    let loss = probs
        .iter()
        .zip(&set.labels)
        .map(|(&p, &real)| -(if real { p } else { 1.0 - p }).max(1e-12).ln())
        .sum::<f64>()
        / n;
    let correct = probs.iter().zip(&set.labels).filter(|&(&p, &real)| (p > 0.5) == real).count();
    Ok(JudgeEval {
        val_loss: loss,
        val_accuracy: correct as f64 / n,
        val_auc: roc_auc(&probs, &set.labels).unwrap_or(f64::NAN),
    })
}

/// What to fine-tune and where to write.
#[derive(Clone, Copy)]
#[allow(missing_debug_implementations)]
pub struct JudgeJob<'a> {
    /// The `[sft_judge]` section.
    pub config: &'a JudgeConfig,
    /// The pretrained encoder (`pretrain-encoder/model.safetensors`, config JSON beside).
    pub encoder_weights: &'a Path,
    /// Training pairs.
    pub train: &'a [ReplyPair],
    /// Validation pairs (negatives are drawn inside this split only).
    pub val: &'a [ReplyPair],
    /// The run's tokenizer.
    pub tokenizer: &'a dyn Tokenizer,
    /// Existing directory the judge is written into.
    pub out_dir: &'a Path,
}

/// The outcome of a judge fine-tune, for the stage manifest.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct JudgeReport {
    /// Training pairs used (each gives one real and one mismatched example).
    pub train_pairs: usize,
    /// Validation pairs used.
    pub val_pairs: usize,
    /// Pairs skipped because no other reply text existed, train and validation together.
    pub skipped_no_mismatch: usize,
    /// Examples whose prompt or reply was cut to `max_len`, train and validation together.
    pub truncated_examples: usize,
    /// Separator token between prompt and reply.
    pub separator: String,
    /// Longest input in tokens.
    pub max_len: usize,
    /// Optimizer steps.
    pub steps: u64,
    /// Training examples seen (passes over the training examples = `examples / (2 * train_pairs)`).
    pub examples_seen: u64,
    /// Training FLOPs (encoder costs at each batch's width, without the unused vocabulary head).
    pub train_flops: f64,
    /// Training loss of the first step.
    pub first_train_loss: f64,
    /// Training loss of the last step.
    pub final_train_loss: f64,
    /// Validation metrics of the pretrained encoder with its fresh head (chance level).
    pub initial: JudgeEval,
    /// Validation metrics after fine-tuning.
    pub final_eval: JudgeEval,
    /// Token positions per second of training.
    pub tokens_per_s: f64,
    /// Wall-clock seconds of training and evaluation.
    pub wall_s: f64,
    /// Costs of the judge's architecture.
    pub model_costs: ModelCosts,
}

/// Loads the pretrained encoder with a fresh 2-class head: the classifier of the checkpoint
/// (never trained by masked LM, possibly of another width) is not read.
pub fn load_encoder_with_fresh_head(weights: &Path, device: &Device) -> Result<Encoder, TuneError> {
    let config_path = cascade_model::config_path(weights);
    let config = match cascade_model::read_config(&config_path)? {
        ModelConfig::Encoder(config) => config,
        other => {
            return Err(TuneError::Checkpoint {
                path: config_path,
                message: format!("holds a `{}` model, the judge needs an encoder", other.family()),
            });
        }
    };
    let config = EncoderConfig { n_classes: 2, ..config };
    let mut model = config.init(device)?;
    if !weights.is_file() {
        return Err(TuneError::io(weights, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let mut store = SafetensorsStore::from_file(weights)
        .validate(false)
        .allow_partial(true)
        .with_predicate(|path, _| !path.starts_with("classifier."));
    let result = model
        .load_from(&mut store)
        .map_err(|e| TuneError::Checkpoint { path: weights.to_path_buf(), message: e.to_string() })?;
    let problem = result
        .errors
        .first()
        .map(|e| e.to_string())
        .or_else(|| result.missing.first().map(|(path, _)| format!("tensor `{path}` is missing")))
        .or_else(|| result.unused.first().map(|path| format!("tensor `{path}` is not in the encoder (config mismatch?)")));
    match problem {
        Some(message) => Err(TuneError::Checkpoint { path: weights.to_path_buf(), message }),
        None => Ok(model),
    }
}

/// FLOPs per token of a classification step at `width` tokens: the encoder's training FLOPs
/// without the `d_model x vocab` projection the classifier never runs.
fn judge_flops_per_token(config: &EncoderConfig, width: usize) -> f64 {
    let costs = config.costs_at(width);
    costs.train_flops_per_token - 6.0 * (config.d_model * config.vocab_size) as f64
}

/// Fine-tunes the pretrained encoder into a reply judge on `device` (autodiff is added here);
/// writes `model.safetensors` (+ config), `judge.json` and `metrics.jsonl` into `job.out_dir`.
pub fn train_judge(job: &JudgeJob<'_>, device: &Device, progress: &dyn Progress) -> Result<JudgeReport, TuneError> {
    let cfg = job.config;
    cfg.validate()?;
    let ad = device.clone().autodiff();
    ad.seed(cfg.train.seed);
    let model = load_encoder_with_fresh_head(job.encoder_weights, &ad)?;
    let encoder_config = model.config().clone();
    let max_len = if cfg.max_len == 0 { encoder_config.max_seq_len } else { cfg.max_len };
    encoder_config.check_len(max_len).map_err(|e| TuneError::Config {
        section: SECTION,
        key: "max_len",
        message: e.to_string(),
    })?;
    let format = JudgeFormat { separator: JUDGE_SEPARATOR.to_string(), max_len };
    let input = JudgeInput::new(&format, job.tokenizer)?;
    let train = encode_set(job.train, cfg.max_train_pairs, cfg.train.seed, &input, job.tokenizer, "judge training pairs")?;
    let val = encode_set(job.val, cfg.max_val_pairs, cfg.train.seed.wrapping_add(1), &input, job.tokenizer, "judge validation pairs")?;

    let plain = device.clone();
    let mut order = EpochOrder::new(train.sequences.len(), cfg.train.seed ^ ORDER_STREAM);
    let settings = LoopSettings {
        train: &cfg.train,
        metrics_path: &job.out_dir.join("metrics.jsonl"),
        label: "sft-judge",
    };
    let step = |model: &Encoder, _step: u64| -> Result<StepWork, TuneError> {
        let batch = order.next_batch(cfg.train.batch_size);
        let sequences: Vec<&[u32]> = batch.iter().map(|&i| train.sequences[i].as_slice()).collect();
        let labels: Vec<bool> = batch.iter().map(|&i| train.labels[i]).collect();
        let (ids, layout) = input.batch(&sequences, &ad)?;
        let [rows, width] = ids.dims();
        let loss = class_loss(model.classify(ids, &layout), label_tensor(&labels, &ad));
        let tokens = (rows * width) as u64;
        Ok(StepWork { loss, examples: rows as u64, tokens, flops: judge_flops_per_token(&encoder_config, width) * tokens as f64 })
    };
    let eval = |model: &Encoder| evaluate(model, &input, &val, cfg.train.batch_size * 2, &plain);
    let (model, outcome) = run_loop(model, &settings, &ad, progress, step, eval)?;

    let weights = job.out_dir.join(JUDGE_MODEL_FILE);
    cascade_model::save_safetensors(&model.valid(), &weights)?;
    write_format(&format, &job.out_dir.join(JUDGE_FORMAT_FILE))?;
    Ok(JudgeReport {
        train_pairs: train.pairs,
        val_pairs: val.pairs,
        skipped_no_mismatch: train.skipped_no_mismatch + val.skipped_no_mismatch,
        truncated_examples: train.truncated + val.truncated,
        separator: format.separator,
        max_len,
        steps: outcome.steps,
        examples_seen: outcome.examples,
        train_flops: outcome.train_flops,
        first_train_loss: outcome.first_train_loss,
        final_train_loss: outcome.final_train_loss,
        initial: outcome.initial_val,
        final_eval: outcome.final_val,
        tokens_per_s: outcome.tokens_per_s,
        wall_s: outcome.wall_s,
        model_costs: encoder_config.costs_at(max_len),
    })
}

fn write_format(format: &JudgeFormat, path: &Path) -> Result<(), TuneError> {
    let json = serde_json::to_vec_pretty(format).map_err(|e| TuneError::io(path, std::io::Error::other(e)))?;
    std::fs::write(path, json).map_err(|e| TuneError::io(path, e))
}

/// A trained reply judge, loaded from its stage directory: `score(prompt, reply)` is the
/// probability that `reply` is the speech that really answered `prompt`.
pub struct ReplyJudge {
    model: Encoder,
    input: JudgeInput,
    tokenizer: Arc<dyn Tokenizer>,
    device: Device,
    batch_size: usize,
}

impl std::fmt::Debug for ReplyJudge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplyJudge").field("input", &self.input).field("batch_size", &self.batch_size).finish()
    }
}

impl ReplyJudge {
    /// Loads the judge written by [`train_judge`] into `dir` (`model.safetensors`,
    /// `model.config.json`, `judge.json`), for the tokenizer it was trained with.
    pub fn load(dir: &Path, tokenizer: Arc<dyn Tokenizer>, device: &Device) -> Result<Self, TuneError> {
        let format_path = dir.join(JUDGE_FORMAT_FILE);
        let text = std::fs::read(&format_path).map_err(|e| TuneError::io(&format_path, e))?;
        let format: JudgeFormat = serde_json::from_slice(&text)
            .map_err(|e| TuneError::Checkpoint { path: format_path.clone(), message: e.to_string() })?;
        let model: Encoder = cascade_model::load_safetensors(&dir.join(JUDGE_MODEL_FILE), device)?;
        if model.config().n_classes != 2 {
            return Err(TuneError::Checkpoint {
                path: dir.join(JUDGE_MODEL_FILE),
                message: format!("has {} classes, a judge has 2", model.config().n_classes),
            });
        }
        let input = JudgeInput::new(&format, tokenizer.as_ref())?;
        Ok(Self { model, input, tokenizer, device: device.clone(), batch_size: 32 })
    }

    /// Scores this many sequences per forward pass (default 32).
    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size.max(1);
        self
    }

    /// Probability that `reply` really answered `prompt`.
    pub fn score(&self, prompt: &str, reply: &str) -> Result<f64, TuneError> {
        Ok(self.score_batch(&[(prompt, reply)])?.first().copied().unwrap_or(f64::NAN))
    }

    /// [`Self::score`] for many (prompt, reply) pairs, batched.
    pub fn score_batch(&self, pairs: &[(&str, &str)]) -> Result<Vec<f64>, TuneError> {
        let sequences: Vec<Vec<u32>> = pairs
            .iter()
            .map(|(prompt, reply)| {
                let prompt = encode_text(self.tokenizer.as_ref(), prompt);
                let reply = encode_text(self.tokenizer.as_ref(), reply);
                self.input.sequence(&prompt, &reply).0
            })
            .collect();
        let refs: Vec<&[u32]> = sequences.iter().map(Vec::as_slice).collect();
        probabilities(&self.model, &self.input, &refs, self.batch_size, &self.device)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check_auc(pos: &[f64], neg: &[f64], expected: f64) {
        let scores: Vec<f64> = pos.iter().chain(neg).copied().collect();
        let labels: Vec<bool> = pos.iter().map(|_| true).chain(neg.iter().map(|_| false)).collect();
        let auc = roc_auc(&scores, &labels).unwrap();
        assert!((auc - expected).abs() < 1e-12, "{pos:?} vs {neg:?}: {auc} != {expected}");
    }

    #[test]
    fn auc_matches_hand_counts() {
        // Positive-negative pairs won: 0.9 beats 3, 0.6 beats 3, 0.4 beats 0.1 and ties 0.4
        // (1.5): 7.5 of 9.
        check_auc(&[0.9, 0.6, 0.4], &[0.5, 0.4, 0.1], 7.5 / 9.0);
        check_auc(&[0.8, 0.7], &[0.2, 0.1], 1.0);
        check_auc(&[0.2, 0.1], &[0.8, 0.7], 0.0);
        check_auc(&[0.5, 0.5], &[0.5], 0.5);
        assert_eq!(roc_auc(&[0.1, 0.2], &[true, true]), None);
    }

    fn pairs(n: usize) -> Vec<ReplyPair> {
        (0..n).map(|i| ReplyPair::new(format!("prompt {i}"), format!("reply {}", i % 7))).collect()
    }

    #[test]
    fn examples_are_balanced_and_negatives_are_never_the_real_reply() {
        let pairs = pairs(50);
        let built = mismatched_examples(&pairs, 3);
        assert_eq!(built.skipped_no_mismatch, 0);
        assert_eq!(built.examples.len(), 100);
        let real = built.examples.iter().filter(|e| e.real).count();
        assert_eq!(real, 50);
        for (idx, chunk) in built.examples.chunks(2).enumerate() {
            assert_eq!(chunk[0], JudgeExample { prompt: idx, reply: idx, real: true });
            assert_eq!(chunk[1].prompt, idx);
            assert!(!chunk[1].real);
            assert_ne!(chunk[1].reply, idx);
            // Replies repeat every 7 pairs: a same-text reply from another pair is not a negative.
            assert_ne!(pairs[chunk[1].reply].reply, pairs[idx].reply);
        }
        assert_eq!(mismatched_examples(&pairs, 3), built, "seeded");
        assert_ne!(mismatched_examples(&pairs, 4), built, "another seed, other negatives");
    }

    #[test]
    fn pairs_without_any_other_reply_text_are_skipped_and_counted() {
        let same = vec![ReplyPair::new("a", "ay"), ReplyPair::new("b", "ay"), ReplyPair::new("c", "no")];
        let built = mismatched_examples(&same, 1);
        // "a" and "b" can take "no"; "c" can take either "ay".
        assert_eq!(built.skipped_no_mismatch, 0);
        let one_text = vec![ReplyPair::new("a", "ay"), ReplyPair::new("b", "ay")];
        let built = mismatched_examples(&one_text, 1);
        assert_eq!(built.skipped_no_mismatch, 2);
        assert!(built.examples.is_empty());
    }

    #[test]
    fn long_inputs_keep_the_prompt_end_and_the_reply_start() {
        let input = JudgeInput { separator: 99, pad: 1, max_len: 7 };
        let (ids, cut) = input.sequence(&[10, 11], &[20, 21]);
        assert_eq!((ids, cut), (vec![10, 11, 99, 20, 21], false));
        let (ids, cut) = input.sequence(&[10, 11, 12, 13, 14], &[20, 21, 22, 23, 24]);
        assert_eq!((ids, cut), (vec![12, 13, 14, 99, 20, 21, 22], true));
        let (ids, _) = input.sequence(&[10], &[20, 21, 22, 23, 24, 25, 26]);
        assert_eq!(ids, vec![10, 99, 20, 21, 22, 23, 24]);
        let (ids, _) = input.sequence(&[10, 11, 12, 13, 14, 15], &[20]);
        assert_eq!(ids, vec![11, 12, 13, 14, 15, 99, 20]);
    }
}
