//! Pretraining for the three Cascade families on memory-mapped token shards: causal LM for the
//! decoder, masked LM for the encoder, T5 span corruption for the encoder-decoder.
//!
//! One entry point, [`run`], trains the model described by a [`ModelConfig`] with the
//! `[pretrain]` settings ([`PretrainConfig`]) and writes into an existing, empty output
//! directory:
//! - `metrics.jsonl`: one [`StepMetrics`] per optimizer step (validation fields at eval steps);
//! - `model.safetensors` + `model.config.json`: the final weights (cascade-model's format);
//! - `checkpoint/`: `model.bpk` (+ `model.config.json`), `optimizer.bpk`, `state.json` for an
//!   exact resume ([`PretrainJob::resume_from`] = that directory).
//!
//! The loop is written on burn's autodiff and optimizers: AdamW (decay on matrices only),
//! linear warmup then cosine decay, global-norm clipping, gradient accumulation, and budgets in
//! steps, tokens and wall clock. Objectives ([`objectives`]) and the data loader ([`loader`])
//! are plain Rust and usable on their own.
#![deny(missing_docs)]

mod checkpoint;
mod config;
mod error;
pub mod loader;
mod metrics;
pub mod objectives;
mod optim;
pub mod rng;
mod task;
mod train;

use std::path::Path;
use std::time::Instant;

use cascade_core::Progress;
use cascade_model::burn;
use burn::prelude::*;
use cascade_model::{Decoder, Encoder, EncoderDecoder, ModelConfig};
use serde::{Deserialize, Serialize};

pub use checkpoint::{
    MODEL_FILE, OPTIMIZER_FILE, STATE_FILE, TrainState, load_optimizer, model_path, read_state, save as save_checkpoint,
};
pub use config::PretrainConfig;
pub use error::PretrainError;
pub use metrics::{PretrainReport, StepMetrics, StopReason};
pub use objectives::SpecialIds;
pub use optim::{build_optimizer, clip_global_norm, global_grad_norm};

use task::{Objective, Pretrainable};

/// What to pretrain, on which data, and where to write.
#[derive(Clone, Copy, Debug)]
pub struct PretrainJob<'a> {
    /// The model to build (its family picks the objective). Ignored on resume, where the
    /// checkpoint's config is used.
    pub model: &'a ModelConfig,
    /// The `[pretrain]` section.
    pub config: &'a PretrainConfig,
    /// Training token shard (`*.tokens` with its JSON header beside it).
    pub train_tokens: &'a Path,
    /// Validation token shard.
    pub val_tokens: &'a Path,
    /// Bytes of validation text per validation token, for bits per byte (decoder); `None` or a
    /// non-positive value leaves bits per byte out.
    pub val_bytes_per_token: Option<f64>,
    /// Special token ids from the tokenizer.
    pub special: &'a SpecialIds,
    /// Existing, empty directory the run writes into.
    pub out_dir: &'a Path,
    /// A `checkpoint/` directory of an earlier run to continue from.
    pub resume_from: Option<&'a Path>,
    /// Measured peak FLOP/s of the device (see [`measure_matmul_peak_flops`]), for MFU.
    pub peak_flops: Option<f64>,
}

/// Pretrains `job.model` on `device` (a plain device; autodiff is added here) and returns the
/// report. Stops at `max_steps`, `max_tokens` or `max_wall_s`, whichever comes first; a
/// non-finite loss stops with [`PretrainError::NonFiniteLoss`] naming the step, leaving the last
/// checkpoint as it was.
pub fn run(job: &PretrainJob<'_>, device: &Device, progress: &dyn Progress) -> Result<PretrainReport, PretrainError> {
    job.config.validate()?;
    let model_config = match job.resume_from {
        Some(dir) => cascade_model::read_config(&cascade_model::config_path(&checkpoint::model_path(dir)))?,
        None => job.model.clone(),
    };
    model_config.validate()?;
    match &model_config {
        ModelConfig::Decoder(c) => {
            check_fits("seq_len", job.config.seq_len, c.max_seq_len, "max_seq_len")?;
            start::<Decoder>(job, &model_config, Objective::CausalLm, c.vocab_size, device, progress)
        }
        ModelConfig::Encoder(c) => {
            check_fits("seq_len", job.config.seq_len, c.max_seq_len, "max_seq_len")?;
            let objective = Objective::MaskedLm { probability: job.config.mlm_probability, vocab_size: c.vocab_size as u32 };
            start::<Encoder>(job, &model_config, objective, c.vocab_size, device, progress)
        }
        ModelConfig::EncoderDecoder(c) => {
            let (density, mean) = (job.config.span_noise_density, job.config.span_mean_length);
            let (source_len, target_len) = objectives::span_lengths(job.config.seq_len, density, mean);
            check_fits("seq_len", source_len, c.max_source_len, "max_source_len")?;
            check_fits("seq_len", target_len, c.max_target_len, "max_target_len")?;
            let objective = Objective::SpanCorruption { noise_density: density, mean_span_length: mean };
            start::<EncoderDecoder>(job, &model_config, objective, c.vocab_size, device, progress)
        }
        other => Err(PretrainError::Config {
            key: "arch",
            message: format!("no pretraining objective for family `{}`", other.family()),
        }),
    }
}

fn check_fits(key: &'static str, len: usize, max: usize, model_key: &str) -> Result<(), PretrainError> {
    if len > max {
        return Err(PretrainError::Config {
            key,
            message: format!("needs sequences of {len} tokens but the model's `{model_key}` is {max}"),
        });
    }
    Ok(())
}

fn start<M: Pretrainable>(
    job: &PretrainJob<'_>,
    model_config: &ModelConfig,
    objective: Objective,
    vocab_size: usize,
    device: &Device,
    progress: &dyn Progress,
) -> Result<PretrainReport, PretrainError> {
    let cfg = job.config;
    let special = job.special;
    let max_special = [special.pad, special.mask, special.endoftext]
        .into_iter()
        .chain(special.sentinels.iter().copied())
        .max()
        .unwrap_or(0);
    if max_special as usize >= vocab_size {
        return Err(PretrainError::Config {
            key: "vocab_size",
            message: format!("special id {max_special} does not fit the model's vocabulary of {vocab_size}"),
        });
    }
    if !job.out_dir.is_dir() {
        return Err(PretrainError::io(job.out_dir, std::io::Error::new(std::io::ErrorKind::NotFound, "output directory does not exist")));
    }
    let window_len = objective.window_len(cfg.seq_len);
    let train_shard = loader::open_shard(job.train_tokens, window_len, vocab_size)?;
    let val_shard = loader::open_shard(job.val_tokens, window_len, vocab_size)?;
    let val_windows = loader::validation_windows(&val_shard, window_len, cfg.eval_windows)?;
    let train = loader::WindowLoader::new(train_shard, window_len, cfg.seed);

    let ad = device.clone().autodiff();
    let model: M = match job.resume_from {
        Some(dir) => cascade_model::load_burnpack(&checkpoint::model_path(dir), &ad)?,
        None => {
            ad.seed(cfg.seed);
            M::from_model_config(model_config, &ad).ok_or_else(|| PretrainError::Config {
                key: "arch",
                message: format!("model config is a `{}`, not a `{}`", model_config.family(), M::FAMILY),
            })??
        }
    };
    let costs = model_config.costs();
    let setup = train::Setup {
        config: cfg,
        val_bytes_per_token: match objective {
            Objective::CausalLm => job.val_bytes_per_token.filter(|&b| b > 0.0),
            _ => None,
        },
        objective,
        special,
        train,
        val_windows,
        out_dir: job.out_dir,
        resume_from: job.resume_from,
        peak_flops: job.peak_flops,
        train_flops_per_token: costs.train_flops_per_token,
        params: costs.params_total,
        family: M::FAMILY,
    };
    let (model, report) = train::train(model, setup, &ad, progress)?;
    cascade_model::save_safetensors(&model.valid(), &job.out_dir.join("model.safetensors"))?;
    Ok(report)
}

/// A decoder's loss on the pretraining validation split, as [`evaluate_causal_lm`] measures it.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct CausalLmEval {
    /// Mean next-token negative log-likelihood (nats per token).
    pub loss: f64,
    /// Share of positions whose argmax is the next token.
    pub accuracy: f64,
    /// Validation windows evaluated.
    pub windows: usize,
}

/// Evaluates `model` (on a plain device, dropout off) on the same fixed validation windows a
/// decoder pretraining run with `config` evaluates on (`eval_windows` windows of `seq_len + 1`
/// ids from `val_tokens`, `batch_size` at a time), so a later model (e.g. after fine-tuning)
/// can be compared with the pretraining figures. Bits per byte = `loss / ln 2 / bytes_per_token`.
pub fn evaluate_causal_lm(
    model: &Decoder,
    val_tokens: &Path,
    config: &PretrainConfig,
    device: &Device,
) -> Result<CausalLmEval, PretrainError> {
    config.validate()?;
    let objective = Objective::CausalLm;
    let window_len = objective.window_len(config.seq_len);
    let shard = loader::open_shard(val_tokens, window_len, model.config().vocab_size)?;
    let windows = loader::validation_windows(&shard, window_len, config.eval_windows)?;
    // The causal objective reads no special ids and draws no noise.
    let special = SpecialIds { pad: 0, mask: 0, endoftext: 0, sentinels: Vec::new(), others: Vec::new() };
    let mut rng = rng::SplitMix64::new(config.seed);
    let (mut nll, mut correct, mut count) = (0.0, 0.0, 0.0);
    for chunk in windows.chunks(config.batch_size) {
        let Some(batch) = task::make_batch(chunk, &objective, &special, &mut rng) else { continue };
        let (n, c, k) = task::eval_batch(model, &batch, device);
        (nll, correct, count) = (nll + n, correct + c, count + k);
    }
    Ok(CausalLmEval { loss: nll / f64::max(count, 1.0), accuracy: correct / f64::max(count, 1.0), windows: windows.len() })
}

/// Measures the device's f32 matmul throughput (FLOP/s) on `size`x`size` products, the best of
/// `repeats` timed runs after one warm-up, as the peak for MFU. Takes about a second at 512.
pub fn measure_matmul_peak_flops(device: &Device, size: usize, repeats: usize) -> f64 {
    let a: Tensor<2> = Tensor::random([size, size], burn::tensor::Distribution::Default, device);
    let b: Tensor<2> = Tensor::random([size, size], burn::tensor::Distribution::Default, device);
    let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f32>();
    let flops = 2.0 * (size as f64).powi(3);
    (0..repeats.max(1))
        .map(|_| {
            let t = Instant::now();
            let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f32>();
            flops / t.elapsed().as_secs_f64().max(1e-9)
        })
        .fold(0.0, f64::max)
}
