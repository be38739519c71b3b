//! Resumable training state in `out_dir/checkpoint/`: the model as burnpack (parameter ids kept,
//! so the optimizer state matches), the AdamW moments, and `state.json` with the step, token
//! count, data-loader and noise RNG states. A checkpoint is written into a temporary directory
//! and renamed into place, so a crash leaves the previous checkpoint intact.

use std::path::{Path, PathBuf};

use cascade_model::Family;
use cascade_model::burn;
use burn::optim::ModuleOptimizer;
use serde::{Deserialize, Serialize};

use crate::config::PretrainConfig;
use crate::error::PretrainError;
use crate::loader::LoaderState;
use crate::rng::SplitMix64;

/// Model weights inside a checkpoint directory.
pub const MODEL_FILE: &str = "model.bpk";
/// Optimizer state inside a checkpoint directory.
pub const OPTIMIZER_FILE: &str = "optimizer.bpk";
/// Step, counters and RNG states inside a checkpoint directory.
pub const STATE_FILE: &str = "state.json";

/// Everything besides weights and optimizer moments that a resumed run needs.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TrainState {
    /// Optimizer steps completed.
    pub step: u64,
    /// Training tokens consumed.
    pub tokens: u64,
    /// Training wall-clock seconds spent so far (all runs together).
    pub wall_s: f64,
    /// Where the training-window loader stands.
    pub loader: LoaderState,
    /// The objective's noise generator (masking, spans).
    pub noise_rng: SplitMix64,
    /// The last step's training loss.
    pub last_train_loss: f64,
    /// The config the run was started with (checked against the resuming config).
    pub config: PretrainConfig,
}

fn ckpt_err(path: &Path, message: impl std::fmt::Display) -> PretrainError {
    PretrainError::Checkpoint { path: path.to_path_buf(), message: message.to_string() }
}

/// Writes a checkpoint to `dir` atomically (temp directory, then rename). Public so that
/// post-training loops write the same resumable format.
pub fn save<M: Family>(
    dir: &Path,
    model: &M,
    optimizer: &ModuleOptimizer,
    state: &TrainState,
) -> Result<(), PretrainError> {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.with_file_name(format!(".{name}.tmp"));
    let old = dir.with_file_name(format!(".{name}.old"));
    for stale in [&tmp, &old] {
        if stale.exists() {
            std::fs::remove_dir_all(stale).map_err(|e| PretrainError::io(stale, e))?;
        }
    }
    std::fs::create_dir_all(&tmp).map_err(|e| PretrainError::io(&tmp, e))?;
    cascade_model::save_burnpack(model, &tmp.join(MODEL_FILE))?;
    let opt_path = tmp.join(OPTIMIZER_FILE);
    optimizer.save(&opt_path).map_err(|e| ckpt_err(&opt_path, e))?;
    if !opt_path.is_file() {
        return Err(ckpt_err(&opt_path, "the optimizer store wrote no file here"));
    }
    let state_path = tmp.join(STATE_FILE);
    let json = serde_json::to_vec_pretty(state).map_err(|e| ckpt_err(&state_path, e))?;
    std::fs::write(&state_path, json).map_err(|e| PretrainError::io(&state_path, e))?;
    if dir.exists() {
        std::fs::rename(dir, &old).map_err(|e| PretrainError::io(dir, e))?;
    }
    std::fs::rename(&tmp, dir).map_err(|e| PretrainError::io(dir, e))?;
    if old.exists() {
        std::fs::remove_dir_all(&old).map_err(|e| PretrainError::io(&old, e))?;
    }
    Ok(())
}

/// Reads `state.json` of the checkpoint in `dir`.
pub fn read_state(dir: &Path) -> Result<TrainState, PretrainError> {
    let path = dir.join(STATE_FILE);
    let bytes = std::fs::read(&path).map_err(|e| PretrainError::io(&path, e))?;
    serde_json::from_slice(&bytes).map_err(|e| ckpt_err(&path, e))
}

/// Loads the optimizer moments of the checkpoint in `dir` into `optimizer`.
pub fn load_optimizer(dir: &Path, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer, PretrainError> {
    let path = dir.join(OPTIMIZER_FILE);
    optimizer.load(&path).map_err(|e| ckpt_err(&path, e))
}

/// The model file of the checkpoint in `dir`.
pub fn model_path(dir: &Path) -> PathBuf {
    dir.join(MODEL_FILE)
}
