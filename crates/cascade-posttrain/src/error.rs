//! The error type of `cascade-posttrain`: every variant names the file and line, the key or the
//! step at fault.

use std::path::PathBuf;

/// What went wrong while building a dataset or post-training a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PosttrainError {
    /// A dataset record is malformed (strict reading).
    #[error("{path}:{line}: {reason}: {message}")]
    Record {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Why the record was rejected.
        reason: crate::dataset::SkipReason,
        /// The details.
        message: String,
    },
    /// A preference record is malformed (strict reading).
    #[error("{path}:{line}: {reason}: {message}")]
    PairRecord {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// Why the record was rejected.
        reason: crate::preference::PairSkipReason,
        /// The details.
        message: String,
    },
    /// A dataset as a whole cannot be used (e.g. no usable record at all).
    #[error("{path}: {message}")]
    Data {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A config key is out of range.
    #[error("sft config `{key}`: {message}")]
    Config {
        /// The key as spelled in the TOML section.
        key: &'static str,
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
    #[error("loss is {loss} at step {step}; last good checkpoint: {last_checkpoint}")]
    NonFiniteLoss {
        /// The optimizer step (1-based).
        step: u64,
        /// The offending value.
        loss: f32,
        /// The last checkpoint written before it (or `none`).
        last_checkpoint: String,
    },
    /// The tokenizer lacks the chat template's special tokens.
    #[error(transparent)]
    Chat(#[from] cascade_core::ChatError),
    /// Corpus shard or token shard error from cascade-core.
    #[error(transparent)]
    Core(#[from] cascade_core::CoreError),
    /// Model build or checkpoint error from cascade-model.
    #[error(transparent)]
    Model(#[from] cascade_model::ModelError),
    /// Optimizer, checkpoint or evaluation error from the shared pretraining pieces.
    #[error(transparent)]
    Pretrain(#[from] cascade_pretrain::PretrainError),
}

impl PosttrainError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
