//! Direct Preference Optimization of the SFT decoder: pairs rendered with the chat template,
//! the frozen reference's sequence log-probabilities computed once up front (so training holds
//! one model), and the pretraining loop's pieces (AdamW, warmup + cosine, global-norm clipping,
//! the resumable checkpoint format) around [`DpoLoss`]. Writes `metrics.jsonl` (one
//! [`DpoStepMetrics`] per step), `model.safetensors` + `model.config.json` and `checkpoint/`.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::Instant;

use cascade_core::{ChatTemplate, Progress, Tokenizer};
use cascade_model::Decoder;
use cascade_model::burn;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;
use cascade_pretrain::loader::LoaderState;
use cascade_pretrain::rng::SplitMix64;
use cascade_pretrain::{PretrainConfig, StopReason, TrainState, build_optimizer, clip_global_norm};
use serde::{Deserialize, Serialize};

use crate::batch::{DeviceBatch, SftExample, epoch_order, make_batches};
use crate::dpo_loss::{DpoLoss, PairLogps, PreferenceStats, sequence_logps};
use crate::error::PosttrainError;
use crate::preference::PreferencePair;

/// A pair rendered by the chat template: prompt + reply + end-of-turn, loss mask on the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EncodedPair {
    /// The prompt with the chosen reply.
    pub chosen: SftExample,
    /// The prompt with the rejected reply.
    pub rejected: SftExample,
}

/// Renders `pairs`; a pair is dropped (and counted) when either side needs more than
/// `max_positions` positions. Returns the kept pairs' indices into `pairs` too.
pub fn encode_pairs(
    template: &ChatTemplate,
    tokenizer: &dyn Tokenizer,
    pairs: &[PreferencePair],
    max_positions: usize,
) -> (Vec<EncodedPair>, Vec<usize>, u64) {
    let render = |messages: &[cascade_core::Message]| {
        let chat = template.encode(tokenizer, messages);
        SftExample { ids: chat.ids, loss_mask: chat.loss_mask }
    };
    let (mut kept, mut indices, mut dropped) = (Vec::new(), Vec::new(), 0u64);
    for (idx, pair) in pairs.iter().enumerate() {
        let encoded = EncodedPair { chosen: render(&pair.with_reply(&pair.chosen)), rejected: render(&pair.with_reply(&pair.rejected)) };
        let fits = |e: &SftExample| e.n_positions() <= max_positions && e.n_targets() > 0;
        if fits(&encoded.chosen) && fits(&encoded.rejected) {
            kept.push(encoded);
            indices.push(idx);
        } else {
            dropped += 1;
        }
    }
    (kept, indices, dropped)
}

/// Log-probabilities of the `selected` pairs' chosen and rejected replies as one device batch
/// (chosen rows first): two `[n]` tensors.
fn pair_logps_tensors(model: &Decoder, pairs: &[EncodedPair], selected: &[usize], pad_id: u32, device: &Device) -> Result<(Tensor<1>, Tensor<1>), PosttrainError> {
    let examples: Vec<SftExample> =
        selected.iter().map(|&i| pairs[i].chosen.clone()).chain(selected.iter().map(|&i| pairs[i].rejected.clone())).collect();
    let order: Vec<usize> = (0..examples.len()).collect();
    let width = examples.iter().map(SftExample::n_positions).max().unwrap_or(1);
    let host = make_batches(&examples, &order, width, examples.len(), false, pad_id);
    let batch = host.first().ok_or_else(|| PosttrainError::Data { path: "dpo pairs".into(), message: "a pair renders to nothing".into() })?;
    let logps = sequence_logps(model, &DeviceBatch::new(batch, device)?);
    let n = selected.len();
    Ok((logps.clone().narrow(0, 0, n), logps.narrow(0, n, n)))
}

fn to_host(t: Tensor<1>) -> Vec<f64> {
    t.try_into_vec_as::<f32>().unwrap_or_default().into_iter().map(f64::from).collect()
}

/// Sequence log-probabilities of every pair under `model` (plain device), `batch_pairs` pairs
/// per forward pass.
pub fn pair_logps(model: &Decoder, pairs: &[EncodedPair], batch_pairs: usize, pad_id: u32, device: &Device) -> Result<Vec<PairLogps>, PosttrainError> {
    let mut out = Vec::with_capacity(pairs.len());
    let all: Vec<usize> = (0..pairs.len()).collect();
    for chunk in all.chunks(batch_pairs.max(1)) {
        let (chosen, rejected) = pair_logps_tensors(model, pairs, chunk, pad_id, device)?;
        out.extend(to_host(chosen).into_iter().zip(to_host(rejected)).map(|(chosen, rejected)| PairLogps { chosen, rejected }));
    }
    Ok(out)
}

/// Sequence log-probability of each example's weighted tokens under `model`.
pub fn example_logps(model: &Decoder, examples: &[SftExample], batch_rows: usize, pad_id: u32, device: &Device) -> Result<Vec<f64>, PosttrainError> {
    let mut out = Vec::with_capacity(examples.len());
    for chunk in examples.chunks(batch_rows.max(1)) {
        let order: Vec<usize> = (0..chunk.len()).collect();
        let width = chunk.iter().map(SftExample::n_positions).max().unwrap_or(1);
        for host in make_batches(chunk, &order, width, chunk.len(), false, pad_id) {
            out.extend(to_host(sequence_logps(model, &DeviceBatch::new(&host, device)?)));
        }
    }
    Ok(out)
}

/// Writes the reference log-probabilities, one `{"split","index","chosen","rejected"}` a line.
pub fn write_reference_logps(path: &Path, splits: &[(&str, &[PairLogps])]) -> Result<(), PosttrainError> {
    let file = File::create(path).map_err(|e| PosttrainError::io(path, e))?;
    let mut out = BufWriter::new(file);
    for (split, logps) in splits {
        for (index, lp) in logps.iter().enumerate() {
            let line = serde_json::json!({ "split": split, "index": index, "chosen": lp.chosen, "rejected": lp.rejected });
            writeln!(out, "{line}").map_err(|e| PosttrainError::io(path, e))?;
        }
    }
    out.flush().map_err(|e| PosttrainError::io(path, e))
}

/// What to train, against which reference values, and where to write.
#[derive(Debug, Clone, Copy)]
pub struct DpoJob<'a> {
    /// `[dpo.train]`: optimizer, schedule, budget; `batch_size` counts pairs per micro-batch and
    /// `max_tokens` is a budget in pairs (the checkpoint's token count is pairs seen).
    pub config: &'a PretrainConfig,
    /// The preference loss.
    pub loss: DpoLoss,
    /// The SFT decoder (also the reference).
    pub init_weights: &'a Path,
    /// Training pairs, rendered.
    pub train: &'a [EncodedPair],
    /// The reference's log-probabilities of `train`.
    pub train_reference: &'a [PairLogps],
    /// Validation pairs, rendered.
    pub val: &'a [EncodedPair],
    /// The reference's log-probabilities of `val`.
    pub val_reference: &'a [PairLogps],
    /// Input id at padding positions.
    pub pad_id: u32,
    /// Existing directory the run writes into.
    pub out_dir: &'a Path,
    /// A `checkpoint/` directory of an earlier run to continue from.
    pub resume_from: Option<&'a Path>,
}

/// One line of `metrics.jsonl`; `val` at evaluation steps only.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoStepMetrics {
    /// Optimizer steps completed (1-based).
    pub step: u64,
    /// Learning rate of this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Wall-clock seconds so far.
    pub wall_s: f64,
    /// This step's pairs, measured before the update.
    pub train: PreferenceStats,
    /// Validation pairs after the update.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val: Option<PreferenceStats>,
}

/// The outcome of a DPO run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DpoReport {
    /// Optimizer steps completed (including those before a resume).
    pub steps: u64,
    /// The step the run resumed from (0 for a fresh run).
    pub resumed_from_step: u64,
    /// Why the run stopped.
    pub stop_reason: StopReason,
    /// Pairs seen in training (with repeats).
    pub pairs_seen: u64,
    /// Validation figures of the starting model (= the reference: rewards 0, loss ln 2).
    pub val_before: PreferenceStats,
    /// Validation figures after the last step.
    pub val_after: PreferenceStats,
    /// Training wall-clock seconds.
    pub wall_s: f64,
}

/// The training pairs of micro-batch `k`: a seeded shuffle per epoch, `per` pairs at a time.
fn micro_pairs(n: usize, per: usize, seed: u64, k: u64) -> Vec<usize> {
    let start = k * per as u64;
    let mut order_cache: Option<(u64, Vec<usize>)> = None;
    (start..start + per as u64)
        .map(|pos| {
            let (epoch, at) = (pos / n as u64, (pos % n as u64) as usize);
            if order_cache.as_ref().is_none_or(|(e, _)| *e != epoch) {
                order_cache = Some((epoch, epoch_order(n, seed, epoch)));
            }
            order_cache.as_ref().map_or(at, |(_, order)| order[at])
        })
        .collect()
}

fn open_metrics(path: &Path, keep_through: Option<u64>) -> Result<BufWriter<File>, PosttrainError> {
    if let Some(last) = keep_through
        && let Ok(text) = std::fs::read_to_string(path)
    {
        let kept: String = text
            .lines()
            .filter(|line| serde_json::from_str::<DpoStepMetrics>(line).is_ok_and(|r| r.step <= last))
            .flat_map(|line| [line, "\n"])
            .collect();
        std::fs::write(path, kept).map_err(|e| PosttrainError::io(path, e))?;
    }
    let file = File::options().create(true).append(true).open(path).map_err(|e| PosttrainError::io(path, e))?;
    Ok(BufWriter::new(file))
}

/// Trains the decoder at `job.init_weights` with DPO on `device` (plain; autodiff added here).
/// Returns the trained model on the plain device and the report.
pub fn train_dpo(job: &DpoJob<'_>, device: &Device, progress: &dyn Progress) -> Result<(Decoder, DpoReport), PosttrainError> {
    let cfg = job.config;
    cfg.validate()?;
    if job.train.is_empty() || job.val.is_empty() || job.train.len() != job.train_reference.len() || job.val.len() != job.val_reference.len() {
        return Err(PosttrainError::Data {
            path: job.out_dir.to_path_buf(),
            message: format!(
                "{} training pairs ({} reference values), {} validation pairs ({} reference values): need at least one of each, matching",
                job.train.len(),
                job.train_reference.len(),
                job.val.len(),
                job.val_reference.len()
            ),
        });
    }
    let ad = device.clone().autodiff();
    let mut model: Decoder = match job.resume_from {
        Some(dir) => cascade_model::load_burnpack(&cascade_pretrain::model_path(dir), &ad)?,
        None => cascade_model::load_safetensors(job.init_weights, &ad)?,
    };
    let longest = job.train.iter().chain(job.val).flat_map(|p| [p.chosen.n_positions(), p.rejected.n_positions()]).max().unwrap_or(0);
    model.check_len(longest)?;
    let mut optimizer = build_optimizer(&model, cfg)?;
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
    }
    let resumed_from_step = state.step;
    let ckpt_dir = job.out_dir.join("checkpoint");
    let metrics_path = job.out_dir.join("metrics.jsonl");
    let mut metrics = open_metrics(&metrics_path, job.resume_from.map(|_| state.step))?;
    let mut last_checkpoint = job.resume_from.map_or_else(|| "none".to_string(), |p| p.display().to_string());
    let evaluate = |model: &Decoder| -> Result<PreferenceStats, PosttrainError> {
        Ok(PreferenceStats::measure(&job.loss, &pair_logps(model, job.val, cfg.batch_size, job.pad_id, device)?, job.val_reference))
    };

    progress.begin("dpo", Some(cfg.max_steps), "steps");
    progress.advance(state.step);
    let val_before = evaluate(&model.valid())?;
    let mut val_after = val_before;
    let run_start = Instant::now();
    let wall_before = state.wall_s;
    let per = cfg.batch_size;

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
        let lr = cfg.lr_at(state.step);
        ad.seed(cfg.seed.wrapping_add(state.step));
        let mut accumulator = GradientsAccumulator::new();
        let (mut policy_host, mut reference_host) = (Vec::new(), Vec::new());
        let step_pairs = (per * cfg.grad_accum) as f32;
        for _ in 0..cfg.grad_accum {
            let selected = micro_pairs(job.train.len(), per, cfg.seed, state.loader.windows_served);
            state.loader.windows_served += 1;
            let (chosen, rejected) = pair_logps_tensors(&model, job.train, &selected, job.pad_id, &ad)?;
            let refs: Vec<PairLogps> = selected.iter().map(|&i| job.train_reference[i]).collect();
            let to_tensor = |values: Vec<f32>| Tensor::<1>::from_floats(values.as_slice(), &ad);
            let ref_chosen = to_tensor(refs.iter().map(|r| r.chosen as f32).collect());
            let ref_rejected = to_tensor(refs.iter().map(|r| r.rejected as f32).collect());
            let loss = job.loss.losses(chosen.clone(), rejected.clone(), ref_chosen, ref_rejected).sum().div_scalar(step_pairs);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            accumulator.accumulate(&model, grads);
            let (c, r) = (to_host(chosen.detach()), to_host(rejected.detach()));
            policy_host.extend(c.into_iter().zip(r).map(|(chosen, rejected)| PairLogps { chosen, rejected }));
            reference_host.extend(refs);
        }
        let train_stats = PreferenceStats::measure(&job.loss, &policy_host, &reference_host);
        let mut grads = accumulator.grads();
        let grad_norm = clip_global_norm(&model, &mut grads, cfg.grad_clip as f32);
        if !train_stats.loss.is_finite() || !grad_norm.is_finite() {
            progress.end();
            let loss = if train_stats.loss.is_finite() { grad_norm } else { train_stats.loss as f32 };
            return Err(PosttrainError::NonFiniteLoss { step: state.step + 1, loss, last_checkpoint });
        }
        model = optimizer.step(lr, model, grads);
        state.step += 1;
        state.tokens += (per * cfg.grad_accum) as u64;
        state.last_train_loss = train_stats.loss;
        state.wall_s = wall_before + run_start.elapsed().as_secs_f64();
        let is_last = state.step >= cfg.max_steps
            || (cfg.max_tokens > 0 && state.tokens >= cfg.max_tokens)
            || (cfg.max_wall_s > 0.0 && state.wall_s >= cfg.max_wall_s);
        let mut record = DpoStepMetrics { step: state.step, lr, grad_norm: grad_norm as f64, wall_s: state.wall_s, train: train_stats, val: None };
        if is_last || (cfg.eval_every > 0 && state.step.is_multiple_of(cfg.eval_every)) {
            val_after = evaluate(&model.valid())?;
            record.val = Some(val_after);
        }
        let line = serde_json::to_string(&record).map_err(|e| PosttrainError::Data { path: metrics_path.clone(), message: e.to_string() })?;
        writeln!(metrics, "{line}").and_then(|_| metrics.flush()).map_err(|e| PosttrainError::io(&metrics_path, e))?;
        progress.advance(1);
        progress.message(&format!(
            "step {} dpo loss {:.4} margin {:.3} acc {:.2}",
            state.step, train_stats.loss, train_stats.rewards_margins, train_stats.rewards_accuracies
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
    let report =
        DpoReport { steps: state.step, resumed_from_step, stop_reason, pairs_seen: state.tokens, val_before, val_after, wall_s: state.wall_s };
    Ok((trained, report))
}
