//! Supervised fine-tuning of a pretrained decoder on rendered conversations: the pretraining
//! loop's pieces (AdamW with decay on matrices only, warmup + cosine from [`PretrainConfig`],
//! global-norm clipping, the resumable checkpoint format) around a loss taken only on
//! assistant tokens. Writes `metrics.jsonl` (one [`SftStepMetrics`] per step),
//! `model.safetensors` + `model.config.json` and `checkpoint/`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::Instant;

use cascade_core::Progress;
use cascade_model::burn;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use cascade_model::Decoder;
use cascade_pretrain::loader::LoaderState;
use cascade_pretrain::rng::SplitMix64;
use cascade_pretrain::{PretrainConfig, StopReason, TrainState, build_optimizer, clip_global_norm};
use serde::{Deserialize, Serialize};

use crate::batch::{BatchStream, DeviceBatch, HostBatch, SftExample, make_batches};
use crate::error::PosttrainError;

/// What to fine-tune, on what, and where to write.
#[derive(Debug, Clone, Copy)]
pub struct SftJob<'a> {
    /// `[sft.train]`: optimizer, schedule, budget, batch shape, cadence.
    pub config: &'a PretrainConfig,
    /// Pack several conversations per row.
    pub pack: bool,
    /// The pretrained decoder (`model.safetensors` with its `model.config.json`).
    pub init_weights: &'a Path,
    /// Training conversations, rendered (each fits `config.seq_len` positions).
    pub train: &'a [SftExample],
    /// Validation conversations, rendered.
    pub val: &'a [SftExample],
    /// Input id at padding positions (never attended to, never a target).
    pub pad_id: u32,
    /// Existing directory the run writes into.
    pub out_dir: &'a Path,
    /// A `checkpoint/` directory of an earlier run to continue from.
    pub resume_from: Option<&'a Path>,
}

/// One line of `metrics.jsonl`. Validation fields at evaluation steps only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftStepMetrics {
    /// Optimizer steps completed (1-based).
    pub step: u64,
    /// Real (unpadded) positions seen so far.
    pub tokens: u64,
    /// Mean loss of this step over assistant tokens (nats per token).
    pub train_loss: f64,
    /// Share of this step's assistant tokens whose argmax was the target.
    pub train_accuracy: f64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Real positions per second of this step.
    pub tokens_per_s: f64,
    /// Passes over the training conversations so far.
    pub epochs: f64,
    /// Wall-clock seconds so far.
    pub wall_s: f64,
    /// Validation loss on reply tokens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// Validation masked-token accuracy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
}

/// Loss and accuracy on reply tokens.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct ReplyEval {
    /// Mean negative log-likelihood per reply token (assistant content + end-of-turn), nats.
    pub loss: f64,
    /// Share of reply tokens whose argmax is the target.
    pub accuracy: f64,
    /// Reply tokens evaluated.
    pub tokens: u64,
}

/// The outcome of a fine-tuning run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SftReport {
    /// Optimizer steps completed (including those before a resume).
    pub steps: u64,
    /// The step the run resumed from (0 for a fresh run).
    pub resumed_from_step: u64,
    /// Real positions seen.
    pub tokens: u64,
    /// Why the run stopped.
    pub stop_reason: StopReason,
    /// Passes over the training conversations.
    pub epochs: f64,
    /// Last step's training loss.
    pub final_train_loss: f64,
    /// Reply loss of the pretrained model, before any step.
    pub initial_val: ReplyEval,
    /// Reply loss after the last step.
    pub final_val: ReplyEval,
    /// Real positions per second of training.
    pub tokens_per_s: f64,
    /// Share of batch positions that are padding.
    pub padding_fraction: f64,
    /// Training FLOPs of this run: per micro-batch, rows × width × the decoder's training
    /// FLOPs per token at that width (padding included, as the hardware spends it).
    pub train_flops: f64,
    /// Training wall-clock seconds.
    pub wall_s: f64,
}

/// Summed NLL over the weighted positions and the number of correct argmaxes there.
fn masked_nll(logits: Tensor<3>, batch: &DeviceBatch) -> (Tensor<1>, Tensor<1>) {
    let predicted = logits.clone().argmax(2).squeeze_dim::<2>(2);
    let hits = (predicted.equal(batch.targets.clone()).float() * batch.weights.clone()).sum();
    let lp = log_softmax(logits, 2).gather(2, batch.targets.clone().unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
    ((lp * batch.weights.clone()).sum().neg(), hits)
}

fn logits(model: &Decoder, batch: &DeviceBatch) -> Tensor<3> {
    model.forward_layout(batch.inputs.clone(), &batch.layout)
}

/// Reply loss and accuracy of `model` (on a plain device) over `batches`.
pub fn evaluate_replies(model: &Decoder, batches: &[HostBatch], device: &Device) -> Result<ReplyEval, PosttrainError> {
    let (mut nll, mut hits, mut count) = (0.0f64, 0.0f64, 0u64);
    for batch in batches {
        let db = DeviceBatch::new(batch, device)?;
        let (n, h) = masked_nll(logits(model, &db), &db);
        nll += n.into_scalar::<f32>() as f64;
        hits += h.into_scalar::<f32>() as f64;
        count += batch.n_targets() as u64;
    }
    let denom = count.max(1) as f64;
    Ok(ReplyEval { loss: nll / denom, accuracy: hits / denom, tokens: count })
}

/// UTF-8 bytes of the reply text the loss is taken on (assistant content; control tokens such
/// as `<|end_of_turn|>` have none), for bits per byte.
pub fn reply_bytes(tokenizer: &dyn cascade_core::Tokenizer, template: &cascade_core::ChatTemplate, examples: &[SftExample]) -> u64 {
    examples
        .iter()
        .map(|example| {
            let ids: Vec<u32> =
                example.ids.iter().zip(&example.loss_mask).filter(|(id, learn)| **learn && !template.is_control(**id)).map(|(id, _)| *id).collect();
            tokenizer.decode_bytes(&ids).map_or(0, |bytes| bytes.len() as u64)
        })
        .sum()
}

/// Validation batches over `examples` in order (no shuffle), as training shapes them.
pub fn eval_batches(examples: &[SftExample], config: &PretrainConfig, pack: bool, pad_id: u32) -> Vec<HostBatch> {
    let order: Vec<usize> = (0..examples.len()).collect();
    make_batches(examples, &order, config.seq_len, config.batch_size, pack, pad_id)
}

struct MetricsLog {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsLog {
    /// Opens `path` for appending, first dropping lines after `keep_through` (a resumed run
    /// redoes those steps).
    fn open(path: &Path, keep_through: Option<u64>) -> Result<Self, PosttrainError> {
        if let Some(last) = keep_through
            && let Ok(text) = std::fs::read_to_string(path)
        {
            let kept: String = text
                .lines()
                .filter(|line| {
                    serde_json::from_str::<SftStepMetrics>(line).is_ok_and(|record| record.step <= last)
                })
                .flat_map(|line| [line, "\n"])
                .collect();
            std::fs::write(path, kept).map_err(|e| PosttrainError::io(path, e))?;
        }
        let file = File::options().create(true).append(true).open(path).map_err(|e| PosttrainError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    fn write(&mut self, record: &SftStepMetrics) -> Result<(), PosttrainError> {
        let line = serde_json::to_string(record)
            .map_err(|e| PosttrainError::Data { path: self.path.clone(), message: e.to_string() })?;
        writeln!(self.out, "{line}").and_then(|_| self.out.flush()).map_err(|e| PosttrainError::io(&self.path, e))
    }
}

/// Fine-tunes the decoder at `job.init_weights` on `device` (plain; autodiff is added here).
/// Returns the trained model on the plain device and the report.
pub fn train_sft(job: &SftJob<'_>, device: &Device, progress: &dyn Progress) -> Result<(Decoder, SftReport), PosttrainError> {
    let cfg = job.config;
    cfg.validate()?;
    if job.train.is_empty() || job.val.is_empty() {
        return Err(PosttrainError::Data {
            path: job.out_dir.to_path_buf(),
            message: format!("{} training and {} validation conversations: need at least one of each", job.train.len(), job.val.len()),
        });
    }
    let ad = device.clone().autodiff();
    let mut model: Decoder = match job.resume_from {
        Some(dir) => cascade_model::load_burnpack(&cascade_pretrain::model_path(dir), &ad)?,
        None => cascade_model::load_safetensors(job.init_weights, &ad)?,
    };
    model.check_len(cfg.seq_len)?;
    let mut optimizer = build_optimizer(&model, cfg)?;
    let mut stream = BatchStream::new(job.train, cfg.seq_len, cfg.batch_size, job.pack, job.pad_id, cfg.seed);
    let mut state = TrainState {
        step: 0,
        tokens: 0,
        wall_s: 0.0,
        loader: LoaderState { rng: SplitMix64::new(cfg.seed), windows_served: 0 },
        noise_rng: SplitMix64::new(cfg.seed),
        last_train_loss: f64::NAN,
        config: cfg.clone(),
    };
    if let Some(dir) = job.resume_from {
        state = cascade_pretrain::read_state(dir)?;
        optimizer = cascade_pretrain::load_optimizer(dir, optimizer)?;
        stream.skip_to(state.loader.windows_served);
    }
    let resumed_from_step = state.step;
    let val_batches = eval_batches(job.val, cfg, job.pack, job.pad_id);
    let ckpt_dir = job.out_dir.join("checkpoint");
    let mut metrics = MetricsLog::open(&job.out_dir.join("metrics.jsonl"), job.resume_from.map(|_| state.step))?;
    let mut last_checkpoint = job.resume_from.map_or_else(|| "none".to_string(), |p| p.display().to_string());

    progress.begin("sft", Some(cfg.max_steps), "steps");
    progress.advance(state.step);
    let initial_val = evaluate_replies(&model.valid(), &val_batches, device)?;
    let mut final_val = initial_val;
    let run_start = Instant::now();
    let wall_before = state.wall_s;
    let (mut train_s, mut run_tokens, mut run_slots, mut run_flops) = (0.0, 0u64, 0u64, 0.0f64);

    let stop_reason = loop {
        let wall_s = wall_before + run_start.elapsed().as_secs_f64();
        if state.step >= cfg.max_steps {
            break StopReason::MaxSteps;
        }
        if cfg.max_tokens > 0 && state.tokens >= cfg.max_tokens {
            break StopReason::MaxTokens;
        }
        if cfg.max_wall_s > 0.0 && wall_s >= cfg.max_wall_s {
            break StopReason::MaxWall;
        }
        let step_start = Instant::now();
        let lr = cfg.lr_at(state.step);
        ad.seed(cfg.seed.wrapping_add(state.step));
        let micro: Vec<HostBatch> = stream.by_ref().take(cfg.grad_accum).collect();
        if micro.is_empty() {
            progress.end();
            return Err(PosttrainError::Data {
                path: job.out_dir.to_path_buf(),
                message: format!("no training conversation fits seq_len = {} positions", cfg.seq_len),
            });
        }
        let step_targets: usize = micro.iter().map(HostBatch::n_targets).sum();
        let step_tokens: u64 = micro.iter().map(|b| b.n_positions() as u64).sum();
        run_slots += micro.iter().map(|b| (b.rows * b.width) as u64).sum::<u64>();
        run_flops += micro
            .iter()
            .map(|b| (b.rows * b.width) as f64 * model.config().costs_at(b.width).train_flops_per_token)
            .sum::<f64>();
        let mut accumulator = GradientsAccumulator::new();
        let (mut loss_sum, mut hit_sum) = (0.0f64, 0.0f64);
        for host in &micro {
            let batch = DeviceBatch::new(host, &ad)?;
            let (nll, hits) = masked_nll(logits(&model, &batch), &batch);
            // Every micro-batch is normalised by the step's reply tokens: the step's gradient is
            // that of the mean over all of them, however they fell into micro-batches.
            let loss = nll.div_scalar(step_targets.max(1) as f32);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            loss_sum += loss.into_scalar::<f32>() as f64;
            hit_sum += hits.into_scalar::<f32>() as f64;
            accumulator.accumulate(&model, grads);
        }
        let mut grads = accumulator.grads();
        let grad_norm = clip_global_norm(&model, &mut grads, cfg.grad_clip as f32);
        if !loss_sum.is_finite() || !grad_norm.is_finite() {
            progress.end();
            let loss = if loss_sum.is_finite() { grad_norm } else { loss_sum as f32 };
            return Err(PosttrainError::NonFiniteLoss { step: state.step + 1, loss, last_checkpoint });
        }
        model = optimizer.step(lr, model, grads);
        let step_s = step_start.elapsed().as_secs_f64();
        train_s += step_s;
        run_tokens += step_tokens;
        state.step += 1;
        state.tokens += step_tokens;
        state.last_train_loss = loss_sum;
        state.loader.windows_served = stream.served();
        state.wall_s = wall_before + run_start.elapsed().as_secs_f64();
        let is_last = state.step >= cfg.max_steps
            || (cfg.max_tokens > 0 && state.tokens >= cfg.max_tokens)
            || (cfg.max_wall_s > 0.0 && state.wall_s >= cfg.max_wall_s);
        let mut record = SftStepMetrics {
            step: state.step,
            tokens: state.tokens,
            train_loss: loss_sum,
            train_accuracy: hit_sum / step_targets.max(1) as f64,
            lr,
            grad_norm: grad_norm as f64,
            tokens_per_s: step_tokens as f64 / step_s.max(1e-9),
            epochs: stream.epochs(),
            wall_s: state.wall_s,
            val_loss: None,
            val_accuracy: None,
        };
        if is_last || (cfg.eval_every > 0 && state.step.is_multiple_of(cfg.eval_every)) {
            final_val = evaluate_replies(&model.valid(), &val_batches, device)?;
            record.val_loss = Some(final_val.loss);
            record.val_accuracy = Some(final_val.accuracy);
        }
        metrics.write(&record)?;
        progress.advance(1);
        progress.message(&format!(
            "step {} reply loss {:.4} acc {:.3} {:.0} tok/s",
            state.step, loss_sum, record.train_accuracy, record.tokens_per_s
        ));
        if !is_last && cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every) {
            cascade_pretrain::save_checkpoint(&ckpt_dir, &model, &optimizer, &state)?;
            last_checkpoint = ckpt_dir.display().to_string();
        }
    };
    state.wall_s = wall_before + run_start.elapsed().as_secs_f64();
    cascade_pretrain::save_checkpoint(&ckpt_dir, &model, &optimizer, &state)?;
    progress.end();
    let trained = model.valid();
    cascade_model::save_safetensors(&trained, &job.out_dir.join("model.safetensors"))?;
    let report = SftReport {
        steps: state.step,
        resumed_from_step,
        tokens: state.tokens,
        stop_reason,
        epochs: stream.epochs(),
        final_train_loss: state.last_train_loss,
        initial_val,
        final_val,
        tokens_per_s: if train_s > 0.0 { run_tokens as f64 / train_s } else { 0.0 },
        padding_fraction: if run_slots > 0 { 1.0 - run_tokens as f64 / run_slots as f64 } else { 0.0 },
        train_flops: run_flops,
        wall_s: state.wall_s,
    };
    Ok((trained, report))
}
