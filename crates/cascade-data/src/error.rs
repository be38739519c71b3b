//! The error type of the data stage: every variant names the file, line or config key at fault.

use std::path::{Path, PathBuf};

use crate::report::BadInputKind;

/// What stopped the data stage.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DataError {
    /// An I/O operation on `path` failed (outputs, partial shard results).
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// Writing a corpus shard failed.
    #[error(transparent)]
    Core(#[from] cascade_core::CoreError),
    /// A config value is out of range.
    #[error("config key `{key}`: {message}")]
    Config {
        /// The key, as `data.<section>.<key>`.
        key: String,
        /// What is wrong with it.
        message: String,
    },
    /// The corpus path does not exist or is neither a file nor a directory.
    #[error("{path}: corpus not found")]
    CorpusNotFound {
        /// The corpus path given.
        path: PathBuf,
    },
    /// The corpus is a single file of a kind the readers do not know.
    #[error("{path}: unsupported input (expected .txt, .md, .jsonl or .ndjson, optionally .gz or .zst)")]
    UnsupportedInput {
        /// The file.
        path: PathBuf,
    },
    /// The corpus directory holds no readable input file.
    #[error("{path}: no input files (.txt, .md, .jsonl, .ndjson, optionally .gz or .zst)")]
    NoInputFiles {
        /// The corpus directory.
        path: PathBuf,
    },
    /// The output directory is missing or not empty.
    #[error("{path}: {message}")]
    OutDir {
        /// The output directory.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Bad input in strict mode (without `strict` it is counted in the report instead).
    #[error("{}: {kind}: {message}", location(.path, .line))]
    BadInput {
        /// The input file.
        path: PathBuf,
        /// 1-based line for line-oriented inputs.
        line: Option<u64>,
        /// The kind of problem.
        kind: BadInputKind,
        /// Details.
        message: String,
    },
    /// A partial result of `--shard` is missing, malformed or from another config or corpus.
    #[error("{path}: {message}")]
    Shard {
        /// The partial-result file or directory.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
    /// An input file changed between the passes over it.
    #[error("{path}: the file changed while the stage was running ({message})")]
    InputChanged {
        /// The input file.
        path: PathBuf,
        /// What differed.
        message: String,
    },
}

impl DataError {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}

fn location(path: &Path, line: &Option<u64>) -> String {
    match line {
        Some(line) => format!("{}:{line}", path.display()),
        None => path.display().to_string(),
    }
}
