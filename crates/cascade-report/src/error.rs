//! The error type of `cascade-report`: every variant names the file or plot at fault.

use std::path::{Path, PathBuf};

/// Result with [`ReportError`].
pub type Result<T, E = ReportError> = std::result::Result<T, E>;

/// What went wrong while reading a run or writing its report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReportError {
    /// The run directory does not exist.
    #[error("{0}: no such run directory; run `cargo xtask cascade` first")]
    NoRun(PathBuf),
    /// An I/O operation on `path` failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// A file of the run is unreadable as what it should be.
    #[error("{path}: {message}")]
    BadFile {
        /// The file at fault.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A manifest or shard header from cascade-core could not be read.
    #[error(transparent)]
    Core(#[from] cascade_core::CoreError),
    /// plotters failed to draw a plot.
    #[error("plot {plot}: {message}")]
    Plot {
        /// The plot's file name.
        plot: String,
        /// plotters' message.
        message: String,
    },
}

impl ReportError {
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Self::Io { path: path.to_path_buf(), source }
    }
}
