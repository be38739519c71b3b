//! Typed interfaces between Cascade stages: documents, corpus and token shards, the
//! `Tokenizer` trait, stage manifests, the run-directory layout and progress reporting.
//!
//! This crate is the contract every stage crate codes against, so it stays small and has no
//! machine-learning dependency (no burn): a data or tokenizer crate can be swapped or reused
//! without pulling a tensor library in. Everything that crosses a stage boundary is defined
//! here and is a file on disk with a documented format, so stages can also be run by other
//! tools and inspected by hand.
#![deny(missing_docs)]

pub mod chat;
pub mod corpus;
pub mod error;
pub mod hash;
pub mod layout;
pub mod manifest;
pub mod progress;
pub mod token_shard;
pub mod tokenizer;

pub use chat::{ChatError, ChatTemplate, EncodedChat, Message, Role};
pub use corpus::{Document, ShardReader, ShardWriter};
pub use error::{CoreError, Result};
pub use layout::{RunLayout, StageDir};
pub use manifest::{FileRecord, InputRecord, StageManifest, Staleness};
pub use progress::{NoProgress, Progress};
pub use token_shard::{TokenDtype, TokenShard, TokenShardHeader, TokenShardWriter, TokenSlice};
pub use tokenizer::{AllowedSpecial, Tokenizer, TokenizerError};
