//! The error type of `cascade-core`: every variant names the file (and line or key) at fault.

use std::path::PathBuf;

/// Result with [`CoreError`].
pub type Result<T, E = CoreError> = std::result::Result<T, E>;

/// What went wrong while reading or writing a stage interface file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A JSONL line could not be parsed as the expected record.
    #[error("{path}:{line}: {message}")]
    BadRecord {
        /// The JSONL file.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong with the record.
        message: String,
    },
    /// A JSON file (manifest, shard header) is unreadable or inconsistent.
    #[error("{path}: {message}")]
    BadFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A token id does not fit the shard's vocabulary or dtype.
    #[error("{path}: token id {token} is outside the vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// The shard being written.
        path: PathBuf,
        /// The offending id.
        token: u32,
        /// The declared vocabulary size.
        vocab_size: u32,
    },
    /// A window was requested past the end of a token shard.
    #[error("{path}: window {start}..{end} is past the end of the shard ({len} tokens)")]
    WindowOutOfRange {
        /// The shard.
        path: PathBuf,
        /// Requested start.
        start: usize,
        /// Requested end (exclusive).
        end: usize,
        /// Number of tokens in the shard.
        len: usize,
    },
}

impl CoreError {
    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }

    /// A file-level format error.
    pub fn bad_file(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::BadFile { path: path.into(), message: message.into() }
    }
}
