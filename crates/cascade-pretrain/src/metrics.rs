//! What a run reports: one [`StepMetrics`] line per optimizer step in `metrics.jsonl`, and a
//! [`PretrainReport`] at the end for the stage manifest.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::PretrainError;

/// One line of `metrics.jsonl`. Validation fields are present at evaluation steps only.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepMetrics {
    /// Optimizer steps completed (1-based).
    pub step: u64,
    /// Training tokens consumed so far.
    pub tokens: u64,
    /// Mean training loss of this step (nats per predicted token).
    pub train_loss: f64,
    /// Learning rate used for this step.
    pub lr: f64,
    /// Global gradient norm before clipping.
    pub grad_norm: f64,
    /// Training tokens per second of this step.
    pub tokens_per_s: f64,
    /// Training wall-clock seconds so far.
    pub wall_s: f64,
    /// Validation loss (nats per predicted token).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f64>,
    /// `exp(val_loss)`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_perplexity: Option<f64>,
    /// Validation bits per byte of text (decoder only: `val_loss / ln 2 / bytes_per_token`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_bits_per_byte: Option<f64>,
    /// Share of predicted positions whose argmax is the target (masked tokens for the
    /// encoder, target tokens for the encoder-decoder, next tokens for the decoder).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub val_accuracy: Option<f64>,
}

/// Why a run stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// `max_steps` reached.
    MaxSteps,
    /// `max_tokens` reached.
    MaxTokens,
    /// `max_wall_s` reached.
    MaxWall,
}

/// The outcome of a pretraining run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct PretrainReport {
    /// `decoder`, `encoder` or `encoder_decoder`.
    pub family: String,
    /// `causal_lm`, `masked_lm` or `span_corruption`.
    pub objective: String,
    /// Optimizer steps completed (including those before a resume).
    pub steps: u64,
    /// Step the run resumed from (0 for a fresh run).
    pub resumed_from_step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Why the run stopped.
    pub stop_reason: StopReason,
    /// Last step's training loss.
    pub final_train_loss: f64,
    /// Validation loss of the untrained model (ln(vocab) is the uniform guess).
    pub initial_val_loss: f64,
    /// Final validation loss.
    pub final_val_loss: f64,
    /// `exp(final_val_loss)`.
    pub val_perplexity: f64,
    /// Final validation bits per byte (decoder only).
    pub val_bits_per_byte: Option<f64>,
    /// Final validation accuracy (see [`StepMetrics::val_accuracy`]).
    pub val_accuracy: f64,
    /// Training tokens per second over this run's steps (evaluation excluded).
    pub tokens_per_s: f64,
    /// Trainable parameters.
    pub params: u64,
    /// Training FLOPs per token (cascade-model's PaLM accounting).
    pub train_flops_per_token: f64,
    /// `train_flops_per_token * tokens_per_s`.
    pub achieved_flops_per_s: f64,
    /// Achieved over peak FLOP/s, when a peak was given.
    pub mfu: Option<f64>,
    /// Wall-clock seconds of training (all runs together, evaluation included).
    pub wall_s: f64,
}

/// Appends JSON lines to `metrics.jsonl`, flushing each so a crash keeps what was written.
#[derive(Debug)]
pub(crate) struct MetricsWriter {
    path: PathBuf,
    out: BufWriter<File>,
}

impl MetricsWriter {
    pub(crate) fn append(path: &Path) -> Result<Self, PretrainError> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| PretrainError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), out: BufWriter::new(file) })
    }

    /// Drops the lines of steps after `last_step` from `path` (if it exists): a run resumed from
    /// the checkpoint of `last_step` redoes those steps, and must not log them twice.
    pub(crate) fn truncate_after(path: &Path, last_step: u64) -> Result<(), PretrainError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(PretrainError::io(path, e)),
        };
        let kept: String = text
            .lines()
            .filter(|line| {
                serde_json::from_str::<serde_json::Value>(line)
                    .ok()
                    .and_then(|record| record["step"].as_u64())
                    .is_some_and(|step| step <= last_step)
            })
            .flat_map(|line| [line, "\n"])
            .collect();
        std::fs::write(path, kept).map_err(|e| PretrainError::io(path, e))
    }

    pub(crate) fn write(&mut self, record: &StepMetrics) -> Result<(), PretrainError> {
        let line = serde_json::to_string(record)
            .map_err(|e| PretrainError::Checkpoint { path: self.path.clone(), message: e.to_string() })?;
        writeln!(self.out, "{line}").and_then(|_| self.out.flush()).map_err(|e| PretrainError::io(&self.path, e))
    }
}
