//! The error type of `cascade-pretrain`: every variant names the key, file or step at fault.

use std::path::PathBuf;

/// What went wrong while pretraining.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PretrainError {
    /// A `[pretrain]` key is out of range.
    #[error("pretrain config `{key}`: {message}")]
    Config {
        /// The key as spelled in the TOML section.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The token shards do not fit the model or the config.
    #[error("{path}: {message}")]
    Data {
        /// The token shard at fault.
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
    /// A checkpoint could not be written or read.
    #[error("checkpoint {path}: {message}")]
    Checkpoint {
        /// The checkpoint file.
        path: PathBuf,
        /// What went wrong.
        message: String,
    },
    /// The training loss became NaN or infinite.
    #[error("loss is {loss} at step {step}; last good checkpoint: {last_checkpoint}")]
    NonFiniteLoss {
        /// The optimizer step (1-based) whose loss was not finite.
        step: u64,
        /// The loss value.
        loss: f32,
        /// The last checkpoint written before it (or `none`).
        last_checkpoint: String,
    },
    /// Token shard error from cascade-core.
    #[error(transparent)]
    Core(#[from] cascade_core::CoreError),
    /// Model build or checkpoint error from cascade-model.
    #[error(transparent)]
    Model(#[from] cascade_model::ModelError),
}

impl PretrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
