//! The error type of `cascade-tokenizer`: every variant names the file, line or key at fault.

use std::path::PathBuf;

/// What went wrong while configuring, training, loading or running the tokenizer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// A `[tokenizer]` config key has an invalid value.
    #[error("[tokenizer] {key}: {message}")]
    Config {
        /// The key at fault, e.g. `vocab_size`.
        key: &'static str,
        /// Why the value is rejected.
        message: String,
    },
    /// The pre-tokenizer pattern does not compile.
    #[error("pre-tokenizer pattern {pattern:?} does not compile: {message}")]
    Pattern {
        /// The pattern.
        pattern: String,
        /// The regex engine's message.
        message: String,
    },
    /// A vocabulary file (`tokenizer.json`, tiktoken ranks) is malformed or unsupported.
    #[error("{path}: {message}")]
    Format {
        /// The file (or a description of the in-memory source).
        path: PathBuf,
        /// What is wrong, naming the key or line.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The training shard holds no text to learn from.
    #[error("{path}: no text to train on")]
    EmptyCorpus {
        /// The shard.
        path: PathBuf,
    },
    /// Reading a corpus shard or writing a token shard failed.
    #[error(transparent)]
    Core(#[from] cascade_core::CoreError),
    /// Decoding ids failed.
    #[error(transparent)]
    Decode(#[from] cascade_core::TokenizerError),
}

impl TokenizerError {
    pub(crate) fn format(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Format { path: path.into(), message: message.into() }
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
