//! What the reply judge and the seq2seq reply fine-tunes share: the (speech, reply) pair they
//! learn from, their error type, a seeded epoch order over examples, right-padded id batches
//! and the small training loop built from cascade-pretrain's pieces (AdamW with decay on
//! matrices only, warmup + cosine from `PretrainConfig::lr_at`, global-norm clipping).
//!
//! The loop is deliberately small: one optimizer step per batch, evaluation every
//! `eval_every` steps and at the end, one JSON line per step in `metrics.jsonl`, a NaN guard.
//! These fine-tunes run for minutes, so they keep no resumable checkpoint; the final weights
//! are written in cascade-model's SafeTensors format by the caller.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cascade_core::{AllowedSpecial, Progress, Role, Tokenizer};
use cascade_model::burn;
use burn::module::Module;
use burn::optim::GradientsParams;
use burn::prelude::*;
use cascade_pretrain::rng::SplitMix64;
use cascade_pretrain::{PretrainConfig, build_optimizer, clip_global_norm};
use serde::{Deserialize, Serialize};

use crate::dataset::Conversation;

/// One prompt speech and the speech that answered it (the assistant turn of a conversation).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplyPair {
    /// The speech that is answered (the user turn).
    pub prompt: String,
    /// The speech that answers it (the assistant turn).
    pub reply: String,
}

impl ReplyPair {
    /// A pair from its two texts.
    pub fn new(prompt: impl Into<String>, reply: impl Into<String>) -> Self {
        Self { prompt: prompt.into(), reply: reply.into() }
    }

    /// The last assistant turn of `conversation` and the user turn just before it; `None` when
    /// the reply does not directly answer a user turn.
    pub fn from_conversation(conversation: &Conversation) -> Option<Self> {
        let (context, reply) = conversation.last_reply()?;
        let prompt = context.last().filter(|m| m.role == Role::User)?;
        Some(Self::new(prompt.content.clone(), reply.content.clone()))
    }

    /// The pairs of `conversations`, and how many conversations gave none (counted, never
    /// dropped silently: see [`Self::from_conversation`]).
    pub fn from_conversations(conversations: &[Conversation]) -> (Vec<Self>, usize) {
        let pairs: Vec<Self> = conversations.iter().filter_map(Self::from_conversation).collect();
        let skipped = conversations.len() - pairs.len();
        (pairs, skipped)
    }
}

/// What went wrong while fine-tuning the judge or the seq2seq model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TuneError {
    /// A config key is out of range.
    #[error("[{section}] `{key}`: {message}")]
    Config {
        /// The TOML section (`sft_judge`, `sft_seq2seq`).
        section: &'static str,
        /// The key as spelled in the section.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The pairs cannot make a training set (too few, all replies alike, ...).
    #[error("{what}: {message}")]
    Data {
        /// Which data set.
        what: String,
        /// What is wrong with it.
        message: String,
    },
    /// The tokenizer lacks a special token the format needs.
    #[error("the tokenizer has no special token {0}")]
    MissingSpecialToken(&'static str),
    /// A checkpoint is not the family or shape expected.
    #[error("{path}: {message}")]
    Checkpoint {
        /// The checkpoint or its config.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The training loss or gradient norm became NaN or infinite.
    #[error("loss is {loss} (gradient norm {grad_norm}) at step {step}")]
    NonFiniteLoss {
        /// The optimizer step (1-based) at fault.
        step: u64,
        /// Its loss.
        loss: f32,
        /// Its gradient norm.
        grad_norm: f32,
    },
    /// Reading the conversation dataset failed.
    #[error(transparent)]
    Dataset(#[from] crate::error::PosttrainError),
    /// Model build or checkpoint error from cascade-model.
    #[error(transparent)]
    Model(#[from] cascade_model::ModelError),
    /// Optimizer setup error from cascade-pretrain.
    #[error(transparent)]
    Pretrain(#[from] cascade_pretrain::PretrainError),
}

impl TuneError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

/// The id of special token `name`, or an error naming it.
pub(crate) fn special_id(tokenizer: &dyn Tokenizer, name: &'static str) -> Result<u32, TuneError> {
    tokenizer.special_token(name).ok_or(TuneError::MissingSpecialToken(name))
}

/// Text as ids, special-token spellings kept as plain text (speeches are data, not control).
pub(crate) fn encode_text(tokenizer: &dyn Tokenizer, text: &str) -> Vec<u32> {
    tokenizer.encode(text, &AllowedSpecial::None)
}

/// Visits `0..n` in a fresh seeded shuffle every epoch, batch after batch.
#[derive(Clone, Debug)]
pub(crate) struct EpochOrder {
    order: Vec<usize>,
    next: usize,
    rng: SplitMix64,
}

impl EpochOrder {
    pub(crate) fn new(n: usize, seed: u64) -> Self {
        let mut rng = SplitMix64::new(seed);
        let mut order: Vec<usize> = (0..n).collect();
        shuffle(&mut order, &mut rng);
        Self { order, next: 0, rng }
    }

    /// The next `batch_size` indices (fewer only when there are fewer than `batch_size` in all);
    /// a batch never holds an index twice, and an epoch ends before the next one is reshuffled.
    pub(crate) fn next_batch(&mut self, batch_size: usize) -> Vec<usize> {
        let take = batch_size.min(self.order.len());
        let mut batch = Vec::with_capacity(take);
        while batch.len() < take {
            if self.next == self.order.len() {
                shuffle(&mut self.order, &mut self.rng);
                self.next = 0;
            }
            batch.push(self.order[self.next]);
            self.next += 1;
        }
        batch
    }
}

/// Fisher-Yates with the crate's seeded generator.
pub(crate) fn shuffle<T>(items: &mut [T], rng: &mut SplitMix64) {
    for i in (1..items.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        items.swap(i, j);
    }
}

/// Rows of ids right-padded with `pad` to the longest row: `(ids row-major, lengths, width)`.
pub(crate) fn right_pad(rows: &[&[u32]], pad: u32) -> (Vec<i64>, Vec<usize>, usize) {
    let width = rows.iter().map(|r| r.len()).max().unwrap_or(0).max(1);
    let mut ids = Vec::with_capacity(rows.len() * width);
    for row in rows {
        ids.extend(row.iter().map(|&id| id as i64));
        ids.extend(std::iter::repeat_n(pad as i64, width - row.len()));
    }
    (ids, rows.iter().map(|r| r.len()).collect(), width)
}

/// `[rows, width]` int tensor from row-major ids.
pub(crate) fn int_matrix(ids: &[i64], rows: usize, width: usize, device: &Device) -> Tensor<2, Int> {
    Tensor::<1, Int>::from_ints(ids, device).reshape([rows, width])
}

/// `[rows, width]` float tensor from row-major values.
pub(crate) fn float_matrix(values: Vec<f32>, rows: usize, width: usize, device: &Device) -> Tensor<2> {
    Tensor::<1>::from_data(TensorData::new(values, [rows * width]), device).reshape([rows, width])
}

/// Checks a `[<section>.train]` table: the pretraining loop's own checks, plus the keys these
/// fine-tunes cannot honour (they step once per batch and budget in steps or FLOPs).
pub(crate) fn validate_train(train: &PretrainConfig, section: &'static str) -> Result<(), TuneError> {
    train.validate().map_err(|e| match e {
        cascade_pretrain::PretrainError::Config { key, message } => TuneError::Config { section, key, message },
        other => TuneError::Pretrain(other),
    })?;
    let unsupported = [
        ("grad_accum", train.grad_accum != 1, "must be 1 (one optimizer step per batch)"),
        ("max_tokens", train.max_tokens != 0, "must be 0 (the budget is max_steps, or FLOPs)"),
        ("max_wall_s", train.max_wall_s != 0.0, "must be 0 (the budget is max_steps, or FLOPs)"),
    ];
    match unsupported.into_iter().find(|(_, bad, _)| *bad) {
        Some((key, _, message)) => Err(TuneError::Config { section, key, message: message.into() }),
        None => Ok(()),
    }
}

/// What one training step consumed, beside its loss.
#[derive(Debug)]
pub(crate) struct StepWork {
    /// Mean loss of the batch (the graph to differentiate).
    pub(crate) loss: Tensor<1>,
    /// Examples in the batch.
    pub(crate) examples: u64,
    /// Token positions the model ran on (padding included: it is computed).
    pub(crate) tokens: u64,
    /// Training FLOPs of the batch (cascade-model's accounting at the batch's widths).
    pub(crate) flops: f64,
}

/// One line of a fine-tune's `metrics.jsonl`; validation fields appear at evaluation steps.
#[derive(Clone, Debug, Serialize)]
pub struct TuneStepMetrics<V: Serialize> {
    /// Optimizer steps completed (1-based).
    pub step: u64,
    /// Training examples seen so far.
    pub examples: u64,
    /// Token positions processed so far.
    pub tokens: u64,
    /// Training FLOPs so far.
    pub train_flops: f64,
    /// Mean training loss of this step.
    pub train_loss: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Token positions per second of this step.
    pub tokens_per_s: f64,
    /// Seconds since training started.
    pub wall_s: f64,
    /// Validation metrics, at evaluation steps.
    #[serde(flatten, skip_serializing_if = "Option::is_none")]
    pub val: Option<V>,
}

/// What the loop did, for the caller's report.
#[derive(Clone, Debug)]
pub(crate) struct LoopOutcome<V> {
    pub(crate) steps: u64,
    pub(crate) examples: u64,
    pub(crate) tokens: u64,
    pub(crate) train_flops: f64,
    pub(crate) first_train_loss: f64,
    pub(crate) final_train_loss: f64,
    pub(crate) initial_val: V,
    pub(crate) final_val: V,
    pub(crate) tokens_per_s: f64,
    pub(crate) wall_s: f64,
}

/// How the loop runs: the schedule, budget in steps, clipping, seed and evaluation cadence
/// (`eval_every`, 0 = only before and after training) come from `train`.
#[derive(Debug)]
pub(crate) struct LoopSettings<'a> {
    pub(crate) train: &'a PretrainConfig,
    pub(crate) metrics_path: &'a Path,
    pub(crate) label: &'static str,
}

/// Trains `model` (on an autodiff device) for `max_steps` steps: `step(model, step_idx)` builds
/// the batch and its loss, `evaluate(model)` scores the validation set (given a `valid()` copy).
pub(crate) fn run_loop<M, V>(
    mut model: M,
    settings: &LoopSettings<'_>,
    device: &Device,
    progress: &dyn Progress,
    mut step: impl FnMut(&M, u64) -> Result<StepWork, TuneError>,
    mut evaluate: impl FnMut(&M) -> Result<V, TuneError>,
) -> Result<(M, LoopOutcome<V>), TuneError>
where
    M: Module + Clone,
    V: Serialize + Clone,
{
    let schedule = settings.train;
    let mut optimizer = build_optimizer(&model, schedule)?;
    let mut metrics = MetricsFile::create(settings.metrics_path)?;
    let initial_val = evaluate(&model.valid())?;
    let mut final_val = initial_val.clone();
    let start = Instant::now();
    let (mut examples, mut tokens, mut train_flops, mut train_s) = (0u64, 0u64, 0.0f64, 0.0f64);
    let (mut first_train_loss, mut final_train_loss) = (f64::NAN, f64::NAN);
    progress.begin(settings.label, Some(schedule.max_steps), "steps");
    for step_idx in 0..schedule.max_steps {
        let step_start = Instant::now();
        let lr = schedule.lr_at(step_idx);
        // Dropout draws from the device RNG: seed it per step so a run is reproducible.
        device.seed(schedule.seed.wrapping_add(step_idx));
        let work = step(&model, step_idx)?;
        let mut grads = GradientsParams::from_grads(work.loss.backward(), &model);
        let loss = work.loss.into_scalar::<f32>();
        let grad_norm = clip_global_norm(&model, &mut grads, schedule.grad_clip as f32);
        if !loss.is_finite() || !grad_norm.is_finite() {
            progress.end();
            return Err(TuneError::NonFiniteLoss { step: step_idx + 1, loss, grad_norm });
        }
        model = optimizer.step(lr, model, grads);
        let step_s = step_start.elapsed().as_secs_f64();
        train_s += step_s;
        examples += work.examples;
        tokens += work.tokens;
        train_flops += work.flops;
        if step_idx == 0 {
            first_train_loss = loss as f64;
        }
        final_train_loss = loss as f64;
        let done = step_idx + 1;
        let is_last = done == schedule.max_steps;
        let val = if is_last || (schedule.eval_every > 0 && done.is_multiple_of(schedule.eval_every)) {
            final_val = evaluate(&model.valid())?;
            Some(final_val.clone())
        } else {
            None
        };
        metrics.write(&TuneStepMetrics {
            step: done,
            examples,
            tokens,
            train_flops,
            train_loss: loss as f64,
            lr,
            grad_norm: grad_norm as f64,
            tokens_per_s: work.tokens as f64 / step_s.max(1e-9),
            wall_s: start.elapsed().as_secs_f64(),
            val,
        })?;
        progress.advance(1);
        progress.message(&format!("step {done} loss {loss:.4} lr {lr:.2e}"));
    }
    progress.end();
    let outcome = LoopOutcome {
        steps: schedule.max_steps,
        examples,
        tokens,
        train_flops,
        first_train_loss,
        final_train_loss,
        initial_val,
        final_val,
        tokens_per_s: if train_s > 0.0 { tokens as f64 / train_s } else { 0.0 },
        wall_s: start.elapsed().as_secs_f64(),
    };
    Ok((model, outcome))
}

/// `metrics.jsonl`, one flushed line per step.
#[derive(Debug)]
struct MetricsFile {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsFile {
    fn create(path: &Path) -> Result<Self, TuneError> {
        let file = File::create(path).map_err(|e| TuneError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    fn write<T: Serialize>(&mut self, record: &T) -> Result<(), TuneError> {
        let line = serde_json::to_string(record)
            .map_err(|e| TuneError::io(&self.path, std::io::Error::other(e)))?;
        writeln!(self.out, "{line}").and_then(|_| self.out.flush()).map_err(|e| TuneError::io(&self.path, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch_order_visits_every_index_once_per_epoch() {
        let mut order = EpochOrder::new(10, 7);
        let mut first_epoch: Vec<usize> = (0..5).flat_map(|_| order.next_batch(2)).collect();
        first_epoch.sort_unstable();
        assert_eq!(first_epoch, (0..10).collect::<Vec<_>>());
        let again: Vec<usize> = EpochOrder::new(10, 7).next_batch(4);
        assert_eq!(again, EpochOrder::new(10, 7).next_batch(4), "same seed, same order");
        assert_eq!(EpochOrder::new(3, 1).next_batch(8).len(), 3, "never repeats inside a batch");
    }

    #[test]
    fn pairs_come_from_the_last_reply_and_the_user_turn_before_it() {
        use cascade_core::Message;
        let exchange = Conversation::exchange("HAMLET: Who's there?", "FRANCISCO: Nay, answer me.");
        assert_eq!(
            ReplyPair::from_conversation(&exchange),
            Some(ReplyPair::new("HAMLET: Who's there?", "FRANCISCO: Nay, answer me."))
        );
        let no_user = Conversation::new(vec![Message::new(Role::System, "s"), Message::new(Role::Assistant, "a")]);
        let (pairs, skipped) = ReplyPair::from_conversations(&[exchange, no_user]);
        assert_eq!((pairs.len(), skipped), (1, 1));
    }

    #[test]
    fn right_pad_fills_to_the_longest_row() {
        let (ids, lengths, width) = right_pad(&[&[5, 6, 7], &[8]], 1);
        assert_eq!(width, 3);
        assert_eq!(lengths, vec![3, 1]);
        assert_eq!(ids, vec![5, 6, 7, 8, 1, 1]);
    }
}
