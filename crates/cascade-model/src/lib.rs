//! Transformer blocks and the three Cascade architectures: decoder-only ([`Decoder`]),
//! encoder-only ([`Encoder`]) and encoder-decoder ([`EncoderDecoder`]), all built from the same
//! blocks on burn 0.22, with their costs, SafeTensors checkpoints and HuggingFace Llama and GGUF exports.
//!
//! Read one family file to see the whole architecture: `decoder.rs`, `encoder.rs`,
//! `encoder_decoder.rs`. The three differ mainly in how tokens see context: causal masks in
//! the decoder, none in the encoder, and both plus cross-attention in the encoder-decoder.
//!
//! - Build: `DecoderConfig { .. }.init(&device)?` validates the config (errors name the key)
//!   and draws every weight (seed the device first for reproducible weights).
//! - Run: `forward(tokens)` gives logits for every position; `forward_layout` takes a
//!   [`BatchLayout`] (padding, per-row positions, packed segments); `forward_cached` continues
//!   from a [`KvCache`] / [`Seq2SeqCache`] and equals the full pass.
//! - Train: build on `device.autodiff()`; evaluate with `model.valid()` (dropout off).
//! - Cost: `config.costs()` gives [`ModelCosts`] (parameters, FLOPs per token, cache bytes).
//! - Save: [`save_safetensors`] / [`load_safetensors`] (config JSON beside the weights, every
//!   tensor checked on load), [`save_burnpack`] / [`load_burnpack`] for exact resume.
//! - Export: [`export_hf_llama`] writes a directory `transformers` loads as `LlamaForCausalLM`;
//!   [`export_gguf_llama`] writes one GGUF file (llama architecture + BPE tokenizer metadata)
//!   that llama.cpp loads.
//! - Devices: [`parse_device`] turns `flex` / `wgpu` into a burn [`Device`](burn::prelude::Device).
#![deny(missing_docs)]

/// The burn version this crate is built on, re-exported so callers use the same types.
pub use burn;

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
mod export_gguf;
mod export_hf;
mod gguf;

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
pub use export_gguf::{GgufDtype, GgufExport, GgufOptions, GgufTokenType, GgufTokenizer, export_gguf_llama};
pub use export_hf::{HfExport, HfSpecialTokens, export_hf_llama};
