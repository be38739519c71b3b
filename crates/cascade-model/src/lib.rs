//! Transformer blocks and the three Cascade architectures: decoder-only ([`Decoder`]),
//! encoder-only ([`Encoder`]) and encoder-decoder ([`EncoderDecoder`]), all built from the same
//! blocks on burn 0.22, with their costs, SafeTensors checkpoints and a HuggingFace Llama export.
//!
//! Read one family file to see the whole architecture: `decoder.rs`, `encoder.rs`,
//! `encoder_decoder.rs`. The three differ mainly in how tokens see context: causal masks in
//! the decoder, none in the encoder, and both plus cross-attention in the encoder-decoder.
#![deny(missing_docs)]

mod blocks;
mod cache;
mod checkpoint;
mod config;
mod costs;
mod decoder;
mod device;
mod encoder;
mod encoder_decoder;
mod error;
mod export_hf;

pub use cache::{BatchLayout, KvCache};
pub use checkpoint::{
    Family, ModelConfig, config_path, load_burnpack, load_safetensors, load_safetensors_into,
    read_config, save_burnpack, save_safetensors, write_config,
};
pub use config::{MlpKind, NormKind, Pooling, PositionKind};
pub use costs::ModelCosts;
pub use decoder::{Decoder, DecoderConfig};
pub use encoder::{Encoder, EncoderConfig};
pub use encoder_decoder::{EncoderDecoder, EncoderDecoderConfig, EncoderOutput, Seq2SeqCache};
pub use device::parse_device;
pub use error::{ModelError, Result};
pub use export_hf::{HfExport, HfSpecialTokens, export_hf_llama};
