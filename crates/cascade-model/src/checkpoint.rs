//! Checkpoints: SafeTensors weights with the config as JSON beside them (portable, checked on
//! load), and burnpack files that keep parameter ids (for exact training resume).
//!
//! `save_safetensors(model, "dir/model.safetensors")` writes `dir/model.safetensors` and
//! `dir/model.config.json` (`{"family": "decoder", "config": {...}}`); loading rebuilds the
//! model from that config and then checks every tensor's name, shape and dtype, naming the
//! first one that does not fit.

use std::path::{Path, PathBuf};

use burn::module::Module;
use burn::prelude::*;
use burn::store::{ModuleSnapshot, SafetensorsStore};
use serde::{Deserialize, Serialize};

use crate::costs::ModelCosts;
use crate::error::{ModelError, Result};
use crate::{Decoder, DecoderConfig, Encoder, EncoderConfig, EncoderDecoder, EncoderDecoderConfig};

/// The config of any family, as stored beside a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", content = "config", rename_all = "snake_case")]
#[non_exhaustive]
pub enum ModelConfig {
    /// Decoder-only (`"decoder"`).
    Decoder(DecoderConfig),
    /// Encoder-only (`"encoder"`).
    Encoder(EncoderConfig),
    /// Encoder-decoder (`"encoder_decoder"`).
    EncoderDecoder(EncoderDecoderConfig),
}

impl ModelConfig {
    /// The family name (`decoder`, `encoder`, `encoder_decoder`).
    pub fn family(&self) -> &'static str {
        match self {
            Self::Decoder(_) => Decoder::FAMILY,
            Self::Encoder(_) => Encoder::FAMILY,
            Self::EncoderDecoder(_) => EncoderDecoder::FAMILY,
        }
    }

    /// Validates the wrapped config.
    pub fn validate(&self) -> Result<()> {
        match self {
            Self::Decoder(c) => c.validate(),
            Self::Encoder(c) => c.validate(),
            Self::EncoderDecoder(c) => c.validate(),
        }
    }

    /// Costs of the wrapped config.
    pub fn costs(&self) -> ModelCosts {
        match self {
            Self::Decoder(c) => c.costs(),
            Self::Encoder(c) => c.costs(),
            Self::EncoderDecoder(c) => c.costs(),
        }
    }
}

/// A model family that can be checkpointed: it knows its config and how to rebuild from it.
pub trait Family: Module + Sized {
    /// The family name stored in the config JSON.
    const FAMILY: &'static str;
    /// Wraps this model's config for the JSON beside the weights.
    fn model_config(&self) -> ModelConfig;
    /// Rebuilds an (untrained) model of this family from a stored config.
    fn from_model_config(config: &ModelConfig, device: &Device) -> Option<Result<Self>>;
}

impl Family for Decoder {
    const FAMILY: &'static str = "decoder";
    fn model_config(&self) -> ModelConfig {
        ModelConfig::Decoder(self.config().clone())
    }
    fn from_model_config(config: &ModelConfig, device: &Device) -> Option<Result<Self>> {
        match config {
            ModelConfig::Decoder(c) => Some(c.init(device)),
            _ => None,
        }
    }
}

impl Family for Encoder {
    const FAMILY: &'static str = "encoder";
    fn model_config(&self) -> ModelConfig {
        ModelConfig::Encoder(self.config().clone())
    }
    fn from_model_config(config: &ModelConfig, device: &Device) -> Option<Result<Self>> {
        match config {
            ModelConfig::Encoder(c) => Some(c.init(device)),
            _ => None,
        }
    }
}

impl Family for EncoderDecoder {
    const FAMILY: &'static str = "encoder_decoder";
    fn model_config(&self) -> ModelConfig {
        ModelConfig::EncoderDecoder(self.config().clone())
    }
    fn from_model_config(config: &ModelConfig, device: &Device) -> Option<Result<Self>> {
        match config {
            ModelConfig::EncoderDecoder(c) => Some(c.init(device)),
            _ => None,
        }
    }
}

/// The config JSON path beside a weights file: `dir/model.safetensors` -> `dir/model.config.json`.
pub fn config_path(weights: &Path) -> PathBuf {
    let stem = weights.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    weights.with_file_name(format!("{stem}.config.json"))
}

/// Writes `config` as pretty JSON to `path` (atomically: temp file, then rename).
pub fn write_config(config: &ModelConfig, path: &Path) -> Result<()> {
    let json = serde_json::to_string_pretty(config)
        .map_err(|e| ModelError::BadConfigFile { path: path.to_path_buf(), message: e.to_string() })?;
    write_atomic(path, json.as_bytes())
}

/// Reads a config JSON written by [`write_config`] and validates it.
pub fn read_config(path: &Path) -> Result<ModelConfig> {
    let text = std::fs::read_to_string(path).map_err(|e| ModelError::io(path, e))?;
    let config: ModelConfig = serde_json::from_str(&text)
        .map_err(|e| ModelError::BadConfigFile { path: path.to_path_buf(), message: e.to_string() })?;
    config.validate().map_err(|e| ModelError::BadConfigFile { path: path.to_path_buf(), message: e.to_string() })?;
    Ok(config)
}

/// Saves the weights as SafeTensors at `weights` and the config beside it ([`config_path`]).
pub fn save_safetensors<M: Family>(model: &M, weights: &Path) -> Result<()> {
    if let Some(dir) = weights.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    }
    let tmp = tmp_path(weights);
    let mut store = SafetensorsStore::from_file(&tmp).overwrite(true);
    model
        .save_into(&mut store)
        .map_err(|e| ModelError::Store { path: weights.to_path_buf(), message: e.to_string() })?;
    std::fs::rename(&tmp, weights).map_err(|e| ModelError::io(weights, e))?;
    write_config(&model.model_config(), &config_path(weights))
}

/// Loads a SafeTensors checkpoint written by [`save_safetensors`]: rebuilds the model from the
/// config beside it, then loads and checks every tensor.
pub fn load_safetensors<M: Family>(weights: &Path, device: &Device) -> Result<M> {
    let cfg_path = config_path(weights);
    let config = read_config(&cfg_path)?;
    let model = M::from_model_config(&config, device).ok_or_else(|| ModelError::BadConfigFile {
        path: cfg_path.clone(),
        message: format!("holds a `{}` config, expected `{}`", config.family(), M::FAMILY),
    })??;
    load_safetensors_into(model, weights)
}

/// Loads SafeTensors weights into an already built model, checking that the file holds exactly
/// this model's tensors with the same shapes and dtypes.
pub fn load_safetensors_into<M: Module>(mut model: M, weights: &Path) -> Result<M> {
    if !weights.is_file() {
        return Err(ModelError::io(weights, std::io::Error::new(std::io::ErrorKind::NotFound, "no such file")));
    }
    let mut store = SafetensorsStore::from_file(weights).validate(false).allow_partial(true);
    let result = model
        .load_from(&mut store)
        .map_err(|e| ModelError::Store { path: weights.to_path_buf(), message: e.to_string() })?;
    let bad = |tensor: &str, message: String| ModelError::BadTensor {
        path: weights.to_path_buf(),
        tensor: tensor.to_string(),
        message,
    };
    if let Some(error) = result.errors.first() {
        use burn::store::ApplyError as E;
        return Err(match error {
            E::ShapeMismatch { path, expected, found } => bad(
                path,
                format!("shape {:?} in the file, the model expects {:?}", found.to_vec(), expected.to_vec()),
            ),
            E::DTypeMismatch { path, expected, found } => {
                bad(path, format!("dtype {found:?} in the file, the model expects {expected:?}"))
            }
            E::AdapterError { path, message } | E::LoadError { path, message } => bad(path, message.clone()),
        });
    }
    if let Some((path, _)) = result.missing.first() {
        return Err(bad(path, "is missing from the file".into()));
    }
    if let Some(path) = result.unused.first() {
        return Err(bad(path, "is in the file but not in the model (config mismatch?)".into()));
    }
    Ok(model)
}

/// Saves the model as burnpack (keeps parameter ids, so an optimizer state saved alongside
/// resumes exactly); the config goes beside it as for SafeTensors.
pub fn save_burnpack<M: Family>(model: &M, path: &Path) -> Result<()> {
    let tmp = tmp_path(path);
    model
        .clone()
        .save_file(&tmp)
        .map_err(|e| ModelError::Store { path: path.to_path_buf(), message: e.to_string() })?;
    // burnpack may add its extension to the temp name; find what was written.
    let written = if tmp.is_file() { tmp } else { tmp.with_extension("bpk") };
    std::fs::rename(&written, path).map_err(|e| ModelError::io(path, e))?;
    write_config(&model.model_config(), &config_path(path))
}

/// Loads a burnpack checkpoint written by [`save_burnpack`].
pub fn load_burnpack<M: Family>(path: &Path, device: &Device) -> Result<M> {
    let cfg_path = config_path(path);
    let config = read_config(&cfg_path)?;
    let model = M::from_model_config(&config, device).ok_or_else(|| ModelError::BadConfigFile {
        path: cfg_path.clone(),
        message: format!("holds a `{}` config, expected `{}`", config.family(), M::FAMILY),
    })??;
    model
        .try_load_file(path)
        .map_err(|e| ModelError::Store { path: path.to_path_buf(), message: e.to_string() })
}

fn tmp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.tmp"))
}

pub(crate) fn write_atomic(path: &Path, bytes: &[u8]) -> Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(|e| ModelError::io(dir, e))?;
    }
    let tmp = tmp_path(path);
    std::fs::write(&tmp, bytes).map_err(|e| ModelError::io(&tmp, e))?;
    std::fs::rename(&tmp, path).map_err(|e| ModelError::io(path, e))
}
