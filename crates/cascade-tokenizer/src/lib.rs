//! Cascade's tokenizer stage: a fast, exact, byte-level BPE tokenizer.
//!
//! - [`TokenizerConfig`]: the `[tokenizer]` section of the cascade TOML.
//! - [`run`]: the stage (train on `train.jsonl`, write `tokenizer.json`, encode both splits
//!   into token shards), returning a [`TokenizerReport`] for the manifest.
//! - [`BpeTokenizer`]: implements [`cascade_core::Tokenizer`]; also loads/saves HuggingFace
//!   `tokenizer.json` and loads tiktoken rank files (GPT-2's vocabulary, for instance).
//! - [`train_on_texts`] / [`WordCounts`] + [`train_from_counts`]: training as a library.
//! - [`special`]: the reserved special-token names (ids `0..`), looked up by name downstream.
//!
//! Encoding is lossless for every byte string (`decode_bytes(encode_bytes(x)) == x`), matches
//! tiktoken token for token with GPT-2's ranks, and matches HF `tokenizers` on the files it
//! saves.
#![deny(missing_docs)]

mod bpe;
mod bytelevel;
pub mod config;
pub mod error;
mod formats;
pub mod pretokenize;
pub mod special;
pub mod stage;
pub mod tokenizer;
pub mod train;
mod unicode;

pub use config::TokenizerConfig;
pub use error::TokenizerError;
pub use pretokenize::{CL100K_PATTERN, GPT2_PATTERN};
pub use stage::{LongestToken, SplitStats, TokenizerReport, run};
pub use tokenizer::{BpeTokenizer, EncodeSession};
pub use train::{TrainStats, WordCounts, train_from_counts, train_on_texts};
