//! The error type of `cascade-infer`: every variant names the request, parameter or file at fault.

use std::path::PathBuf;

/// Result with [`InferError`].
pub type Result<T, E = InferError> = std::result::Result<T, E>;

/// What went wrong while loading a model, generating or evaluating.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InferError {
    /// The model crate refused (bad checkpoint, shapes, device...).
    #[error(transparent)]
    Model(#[from] cascade_model::ModelError),
    /// Decoding ids to text failed.
    #[error(transparent)]
    Tokenizer(#[from] cascade_core::TokenizerError),
    /// A prompt does not fit the model's context window. Nothing is truncated silently: callers
    /// that want truncation (the chat REPL drops its oldest turns) do it themselves and say so.
    #[error("request {request}: the prompt has {tokens} tokens but the context window is {window} (`{key}`)")]
    PromptTooLong {
        /// Index of the request in its batch.
        request: usize,
        /// Prompt tokens.
        tokens: usize,
        /// Context window in tokens.
        window: usize,
        /// The config key that sets the window.
        key: &'static str,
    },
    /// A decoder prompt must hold at least one token (start it with `<|endoftext|>`).
    #[error("request {request}: the prompt is empty (start it with <|endoftext|> to generate from nothing)")]
    EmptyPrompt {
        /// Index of the request in its batch.
        request: usize,
    },
    /// A prompt holds an id the model has no embedding for.
    #[error("request {request}: token id {id} is outside the model's vocabulary of {vocab_size}")]
    TokenOutOfRange {
        /// Index of the request in its batch.
        request: usize,
        /// The id.
        id: u32,
        /// The model's vocabulary size.
        vocab_size: usize,
    },
    /// A sampling or stopping parameter is out of range.
    #[error("`{key}`: {message}")]
    InvalidParameter {
        /// The parameter (`temperature`, `top_p`, ...).
        key: &'static str,
        /// What is wrong with it.
        message: String,
    },
    /// The checkpoint's family cannot do what was asked (the encoder-only model cannot generate).
    #[error("{path}: a `{family}` checkpoint cannot {task}")]
    UnsupportedFamily {
        /// The checkpoint.
        path: PathBuf,
        /// Its family.
        family: &'static str,
        /// What was asked.
        task: &'static str,
    },
    /// The tokenizer lacks a special token the task needs.
    #[error("the tokenizer has no special token {0}")]
    MissingSpecialToken(&'static str),
    /// The backend refused to hand tensor data back to the host.
    #[error("reading tensor data back from the device: {0}")]
    Readback(String),
    /// Reading an evaluation file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// An evaluation text holds too few tokens to score.
    #[error("{path}: {message}")]
    EvalInput {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
}
