//! The error type of `cascade-model`: every variant names the config key, file or tensor at fault.

use std::path::PathBuf;

/// Result with [`ModelError`].
pub type Result<T, E = ModelError> = std::result::Result<T, E>;

/// What went wrong while building, checking, saving, loading or exporting a model.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModelError {
    /// A config value is out of range or inconsistent with another one.
    #[error("model config `{key}`: {message}")]
    InvalidConfig {
        /// The offending key, as spelled in the TOML/JSON config.
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// An input does not fit the model (sequence longer than the position table, ...).
    #[error("model input: {message}")]
    InvalidInput {
        /// What is wrong with the input.
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
    /// A config JSON file could not be parsed or written.
    #[error("{path}: {message}")]
    BadConfigFile {
        /// The JSON file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// A checkpoint tensor is missing, unexpected, or has the wrong shape or dtype.
    #[error("{path}: tensor `{tensor}`: {message}")]
    BadTensor {
        /// The checkpoint file.
        path: PathBuf,
        /// The tensor name inside the checkpoint.
        tensor: String,
        /// What is wrong with it.
        message: String,
    },
    /// The tensor store failed for a reason not tied to one tensor.
    #[error("{path}: {message}")]
    Store {
        /// The checkpoint file.
        path: PathBuf,
        /// The store's message.
        message: String,
    },
    /// A device name could not be turned into a device.
    #[error("device `{name}`: {message}")]
    Device {
        /// The name as given (`flex`, `wgpu`, ...).
        name: String,
        /// Why it is not available.
        message: String,
    },
    /// The model uses a feature the export format cannot express.
    #[error("export to {format}: config `{key}` = {value} is not supported ({message})")]
    UnsupportedExport {
        /// The target format (`hf-llama`, ...).
        format: &'static str,
        /// The config key at fault.
        key: &'static str,
        /// Its value.
        value: String,
        /// Why it cannot be exported.
        message: String,
    },
}

impl ModelError {
    /// A config error naming `key`.
    pub fn config(key: &'static str, message: impl Into<String>) -> Self {
        Self::InvalidConfig { key, message: message.into() }
    }

    /// Wraps an I/O error with the path it concerns.
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io { path: path.into(), source }
    }
}
