//! The training loop: gradient accumulation, global-norm clipping, AdamW with warmup + cosine,
//! periodic evaluation, JSONL metrics, budgets, NaN guard and atomic checkpoints.

use std::path::Path;
use std::time::Instant;

use cascade_core::Progress;
use cascade_model::burn;
use burn::optim::{GradientsAccumulator, GradientsParams};
use burn::prelude::*;

use crate::checkpoint::{self, TrainState};
use crate::config::PretrainConfig;
use crate::error::PretrainError;
use crate::loader::WindowLoader;
use crate::metrics::{MetricsWriter, PretrainReport, StepMetrics, StopReason};
use crate::objectives::SpecialIds;
use crate::optim::{build_optimizer, clip_global_norm};
use crate::rng::SplitMix64;
use crate::task::{DeviceBatch, HostBatch, Objective, Pretrainable, eval_batch, make_batch, mean_loss};

/// Seed offsets so the loader, the noise and the validation noise draw independent streams.
const NOISE_STREAM: u64 = 0x6E01_5E00;
const VAL_STREAM: u64 = 0x7A11_D000;

/// Everything the loop needs besides the model.
pub(crate) struct Setup<'a> {
    pub(crate) config: &'a PretrainConfig,
    pub(crate) objective: Objective,
    pub(crate) special: &'a SpecialIds,
    pub(crate) train: WindowLoader,
    pub(crate) val_windows: Vec<Vec<u32>>,
    pub(crate) val_bytes_per_token: Option<f64>,
    pub(crate) out_dir: &'a Path,
    pub(crate) resume_from: Option<&'a Path>,
    pub(crate) peak_flops: Option<f64>,
    pub(crate) train_flops_per_token: f64,
    pub(crate) params: u64,
    pub(crate) family: &'static str,
}

fn no_sentinels(special: &SpecialIds) -> PretrainError {
    PretrainError::Config {
        key: "span_noise_density",
        message: format!("needs more spans per window than the {} sentinel ids given", special.sentinels.len()),
    }
}

struct EvalResult {
    loss: f64,
    accuracy: f64,
}

fn evaluate<M: Pretrainable>(model: &M, batches: &[HostBatch], device: &Device) -> EvalResult {
    let eval_model = model.valid();
    let (mut nll, mut correct, mut count) = (0.0, 0.0, 0.0);
    for batch in batches {
        let (n, c, k) = eval_batch(&eval_model, batch, device);
        nll += n;
        correct += c;
        count += k;
    }
    EvalResult { loss: nll / f64::max(count, 1.0), accuracy: correct / f64::max(count, 1.0) }
}

/// Trains `model` (built or loaded on `device`, an autodiff device) as `setup` says.
pub(crate) fn train<M: Pretrainable>(
    mut model: M,
    mut setup: Setup<'_>,
    device: &Device,
    progress: &dyn Progress,
) -> Result<(M, PretrainReport), PretrainError> {
    let cfg = setup.config;
    let plain = device.clone().without_autodiff();
    let mut optimizer = build_optimizer(&model, cfg)?;
    let mut state = TrainState {
        step: 0,
        tokens: 0,
        wall_s: 0.0,
        loader: setup.train.state(),
        noise_rng: SplitMix64::new(cfg.seed ^ NOISE_STREAM),
        last_train_loss: f64::NAN,
        config: cfg.clone(),
    };
    if let Some(dir) = setup.resume_from {
        state = checkpoint::read_state(dir)?;
        optimizer = checkpoint::load_optimizer(dir, optimizer)?;
        setup.train.restore(state.loader);
    }
    let resumed_from_step = state.step;

    // Validation batches are fixed for the whole run: same windows, same noise.
    let mut val_rng = SplitMix64::new(cfg.seed ^ VAL_STREAM);
    let val_batches = setup
        .val_windows
        .chunks(cfg.batch_size)
        .map(|w| make_batch(w, &setup.objective, setup.special, &mut val_rng).ok_or_else(|| no_sentinels(setup.special)))
        .collect::<Result<Vec<_>, _>>()?;

    let ckpt_dir = setup.out_dir.join("checkpoint");
    let metrics_path = setup.out_dir.join("metrics.jsonl");
    if setup.resume_from.is_some() {
        MetricsWriter::truncate_after(&metrics_path, state.step)?;
    }
    let mut metrics = MetricsWriter::append(&metrics_path)?;
    let mut last_checkpoint = setup.resume_from.map(|p| p.display().to_string()).unwrap_or_else(|| "none".into());

    progress.begin("pretrain", Some(cfg.max_steps), "steps");
    progress.advance(state.step);
    let initial = evaluate(&model, &val_batches, &plain);
    let mut last_eval = EvalResult { loss: initial.loss, accuracy: initial.accuracy };
    let run_start = Instant::now();
    let wall_before = state.wall_s;
    let mut train_s = 0.0;
    let mut run_tokens = 0u64;
    let tokens_per_step = cfg.tokens_per_step();

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
        // Dropout draws from the device RNG: seeding per step keeps resumed runs identical.
        device.seed(cfg.seed.wrapping_add(state.step));
        let mut accumulator = GradientsAccumulator::new();
        let mut loss_sum = 0.0f32;
        for _ in 0..cfg.grad_accum {
            let windows = setup.train.next_windows(cfg.batch_size)?;
            let host = make_batch(&windows, &setup.objective, setup.special, &mut state.noise_rng)
                .ok_or_else(|| no_sentinels(setup.special))?;
            let batch = DeviceBatch::new(&host, device);
            let logits = model.batch_logits(&batch);
            let loss = mean_loss(logits, &batch, host.n_predicted()).div_scalar(cfg.grad_accum as f32);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            loss_sum += loss.into_scalar::<f32>();
            accumulator.accumulate(&model, grads);
        }
        let mut grads = accumulator.grads();
        let grad_norm = clip_global_norm(&model, &mut grads, cfg.grad_clip as f32);
        if !loss_sum.is_finite() || !grad_norm.is_finite() {
            progress.end();
            let loss = if loss_sum.is_finite() { grad_norm } else { loss_sum };
            return Err(PretrainError::NonFiniteLoss { step: state.step + 1, loss, last_checkpoint });
        }
        model = optimizer.step(lr, model, grads);
        let step_s = step_start.elapsed().as_secs_f64();
        train_s += step_s;
        run_tokens += tokens_per_step;
        state.step += 1;
        state.tokens += tokens_per_step;
        state.last_train_loss = loss_sum as f64;
        state.loader = setup.train.state();
        state.wall_s = wall_before + run_start.elapsed().as_secs_f64();

        let is_last = state.step >= cfg.max_steps
            || (cfg.max_tokens > 0 && state.tokens >= cfg.max_tokens)
            || (cfg.max_wall_s > 0.0 && state.wall_s >= cfg.max_wall_s);
        let mut record = StepMetrics {
            step: state.step,
            tokens: state.tokens,
            train_loss: loss_sum as f64,
            lr,
            grad_norm: grad_norm as f64,
            tokens_per_s: tokens_per_step as f64 / step_s.max(1e-9),
            wall_s: state.wall_s,
            val_loss: None,
            val_perplexity: None,
            val_bits_per_byte: None,
            val_accuracy: None,
        };
        if is_last || (cfg.eval_every > 0 && state.step.is_multiple_of(cfg.eval_every)) {
            last_eval = evaluate(&model, &val_batches, &plain);
            record.val_loss = Some(last_eval.loss);
            record.val_perplexity = Some(last_eval.loss.exp());
            record.val_bits_per_byte = setup.val_bytes_per_token.map(|bpt| last_eval.loss / std::f64::consts::LN_2 / bpt);
            record.val_accuracy = Some(last_eval.accuracy);
        }
        metrics.write(&record)?;
        progress.advance(1);
        progress.message(&format!(
            "step {} loss {:.4} lr {:.2e} {:.0} tok/s",
            state.step, loss_sum, lr, record.tokens_per_s
        ));
        if !is_last && cfg.checkpoint_every > 0 && state.step.is_multiple_of(cfg.checkpoint_every) {
            checkpoint::save(&ckpt_dir, &model, &optimizer, &state)?;
            last_checkpoint = ckpt_dir.display().to_string();
        }
    };
    state.wall_s = wall_before + run_start.elapsed().as_secs_f64();
    checkpoint::save(&ckpt_dir, &model, &optimizer, &state)?;
    progress.end();

    let tokens_per_s = if train_s > 0.0 { run_tokens as f64 / train_s } else { 0.0 };
    let achieved = setup.train_flops_per_token * tokens_per_s;
    let report = PretrainReport {
        family: setup.family.to_string(),
        objective: match setup.objective {
            Objective::CausalLm => "causal_lm",
            Objective::MaskedLm { .. } => "masked_lm",
            Objective::SpanCorruption { .. } => "span_corruption",
        }
        .to_string(),
        steps: state.step,
        resumed_from_step,
        tokens: state.tokens,
        stop_reason,
        final_train_loss: state.last_train_loss,
        initial_val_loss: initial.loss,
        final_val_loss: last_eval.loss,
        val_perplexity: last_eval.loss.exp(),
        val_bits_per_byte: setup.val_bytes_per_token.map(|bpt| last_eval.loss / std::f64::consts::LN_2 / bpt),
        val_accuracy: last_eval.accuracy,
        tokens_per_s,
        params: setup.params,
        train_flops_per_token: setup.train_flops_per_token,
        achieved_flops_per_s: achieved,
        mfu: setup.peak_flops.filter(|&p| p > 0.0).map(|p| achieved / p),
        wall_s: state.wall_s,
    };
    Ok((model, report))
}
