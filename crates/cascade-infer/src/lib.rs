//! Inference for Cascade models: prefill and incremental decoding on the KV cache, sampling,
//! streaming text, evaluation (perplexity, bits per byte) and an OpenAI-compatible HTTP server.
//!
//! - Load: [`LanguageModel::load`] reads a decoder or encoder-decoder checkpoint; wrap it with
//!   the run's tokenizer in an [`Engine`].
//! - Generate: [`Engine::generate`] takes a batch of [`GenerationRequest`]s (prompts of any
//!   lengths, each with its own [`SamplingParams`], stop ids, stop strings and token budget),
//!   prefills them in one left-padded pass and decodes them together, dropping each row from the
//!   batch and the cache when it finishes. A callback receives a [`StreamEvent`] per request and
//!   step with the text that became final ([`Utf8Stream`] never splits a character,
//!   [`StopStrings`] holds back what may start a stop string); returning `Break` cancels the
//!   request. The result is one [`Completion`] per request with its [`FinishReason`].
//! - Limits are explicit: a prompt longer than the context window is an error, and a request
//!   stopped by the window rather than by `max_new_tokens` says so
//!   ([`FinishReason::ContextWindow`]).
//! - Evaluate: [`evaluate_file`] / [`evaluate_text`] give perplexity and bits per byte.
//!
//! Why the sampling runs on the host: the model hands over one row of logits per sequence and
//! step (a few kilobytes), and per-request parameters, seeds and stop rules are then plain Rust
//! over a slice, identical on every backend.
#![deny(missing_docs)]

mod engine;
mod error;
mod eval;
mod model;
pub mod sampling;
#[cfg(feature = "server")]
pub mod server;
pub mod text;

pub use engine::{Completion, ENDOFTEXT, Engine, FinishReason, GenerationRequest, PAD, StreamEvent};
pub use error::{InferError, Result};
pub use eval::{EvalOptions, EvalReport, evaluate_file, evaluate_text};
pub use model::LanguageModel;
pub use sampling::{SamplingParams, SplitMix64};
#[cfg(feature = "server")]
pub use server::{Server, ServerOptions};
pub use text::{StopStrings, Utf8Stream};
