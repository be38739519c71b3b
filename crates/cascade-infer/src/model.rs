//! The models that generate text ([`LanguageModel`]: the decoder and the encoder-decoder),
//! loaded from a checkpoint whose config says which family it is.

use std::path::Path;

use cascade_model::burn::prelude::Device;
use cascade_model::{Decoder, EncoderDecoder, ModelConfig, config_path, load_safetensors, read_config};

use crate::error::{InferError, Result};

/// A model that writes text token by token.
#[derive(Debug)]
#[allow(clippy::large_enum_variant)]
pub enum LanguageModel {
    /// Decoder-only: continues the prompt.
    Decoder(Decoder),
    /// Encoder-decoder: reads the prompt as its source and writes a new target.
    EncoderDecoder(EncoderDecoder),
}

impl LanguageModel {
    /// Loads a SafeTensors checkpoint (with its `.config.json` beside it) of the decoder or
    /// encoder-decoder family; the encoder-only family cannot generate and is an error.
    pub fn load(weights: &Path, device: &Device) -> Result<Self> {
        match read_config(&config_path(weights))? {
            ModelConfig::Decoder(_) => Ok(Self::Decoder(load_safetensors(weights, device)?)),
            ModelConfig::EncoderDecoder(_) => Ok(Self::EncoderDecoder(load_safetensors(weights, device)?)),
            other => Err(InferError::UnsupportedFamily {
                path: weights.to_path_buf(),
                family: other.family(),
                task: "generate text",
            }),
        }
    }

    /// Tokens one sequence may hold (the decoder's prompt plus output; the encoder-decoder's
    /// output, start token included).
    pub fn context_window(&self) -> usize {
        match self {
            Self::Decoder(m) => m.config().max_seq_len,
            Self::EncoderDecoder(m) => m.config().max_target_len,
        }
    }

    /// The config key that sets [`Self::context_window`].
    pub fn context_key(&self) -> &'static str {
        match self {
            Self::Decoder(_) => "max_seq_len",
            Self::EncoderDecoder(_) => "max_target_len",
        }
    }

    /// The longest prompt accepted.
    pub fn max_prompt_len(&self) -> usize {
        match self {
            Self::Decoder(m) => m.config().max_seq_len,
            Self::EncoderDecoder(m) => m.config().max_source_len,
        }
    }

    /// Vocabulary size.
    pub fn vocab_size(&self) -> usize {
        match self {
            Self::Decoder(m) => m.config().vocab_size,
            Self::EncoderDecoder(m) => m.config().vocab_size,
        }
    }

    /// The family name (`decoder`, `encoder_decoder`).
    pub fn family(&self) -> &'static str {
        match self {
            Self::Decoder(_) => "decoder",
            Self::EncoderDecoder(_) => "encoder_decoder",
        }
    }
}
