//! Evaluation of a decoder on any text: perplexity per token and bits per byte (the
//! tokenizer-independent figure), scoring every token of the text once.

use std::path::Path;

use cascade_core::{AllowedSpecial, Progress, Tokenizer};
use cascade_model::Decoder;
use cascade_model::burn::prelude::*;
use cascade_model::burn::tensor::activation::log_softmax;
use serde::{Deserialize, Serialize};

use crate::engine::ENDOFTEXT;
use crate::error::{InferError, Result};

/// How the text is cut into windows.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct EvalOptions {
    /// Tokens per window (at most the model's `max_seq_len`; 0 means exactly that).
    pub window: usize,
    /// Windows per forward pass.
    pub batch_size: usize,
}

impl Default for EvalOptions {
    fn default() -> Self {
        Self { window: 0, batch_size: 8 }
    }
}

/// Perplexity and bits per byte of one text.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EvalReport {
    /// Tokens scored (every token of the text).
    pub tokens: usize,
    /// UTF-8 bytes of the text.
    pub bytes: usize,
    /// Summed negative log-likelihood, in nats.
    pub nll_nats: f64,
    /// `exp(nll / tokens)`.
    pub perplexity: f64,
    /// `nll / ln 2 / bytes`: comparable across tokenizers.
    pub bits_per_byte: f64,
    /// Windows the text was cut into.
    pub windows: usize,
    /// Tokens per window.
    pub window: usize,
}

/// Scores `text`: it is encoded (special-token strings as plain text) after an
/// `<|endoftext|>`, which is how documents start in the training shards, so the first token is
/// scored too. The token stream is cut into windows of `window` tokens that overlap by one, so
/// each token is predicted once, with the context its window gives (at least nothing, at most
/// `window - 1` tokens).
pub fn evaluate_text(
    model: &Decoder,
    tokenizer: &dyn Tokenizer,
    text: &str,
    options: &EvalOptions,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    let max = model.config().max_seq_len;
    let window = if options.window == 0 { max } else { options.window };
    if !(2..=max).contains(&window) {
        return Err(InferError::InvalidParameter {
            key: "window",
            message: format!("{window} tokens; must be in 2..={max} (the model's `max_seq_len`)"),
        });
    }
    let start = tokenizer.special_token(ENDOFTEXT).ok_or(InferError::MissingSpecialToken(ENDOFTEXT))?;
    let mut ids = vec![start];
    ids.extend(tokenizer.encode(text, &AllowedSpecial::None));
    if ids.len() < 2 {
        return Err(InferError::InvalidParameter { key: "text", message: "the text is empty".into() });
    }
    // Window w covers ids[w*(window-1) ..= w*(window-1) + window - 1] and predicts all but its first.
    let stride = window - 1;
    let starts: Vec<usize> = (0..ids.len() - 1).step_by(stride).collect();
    progress.begin("evaluate", Some((ids.len() - 1) as u64), "tokens");
    let mut nll = 0.0f64;
    let batch_size = options.batch_size.max(1);
    let mut i = 0;
    while i < starts.len() {
        // Full windows go together; the last, shorter window runs alone.
        let len_of = |s: usize| (ids.len() - s).min(window);
        let len = len_of(starts[i]);
        let mut batch = vec![starts[i]];
        while batch.len() < batch_size && i + batch.len() < starts.len() && len_of(starts[i + batch.len()]) == len {
            batch.push(starts[i + batch.len()]);
        }
        nll += batch_nll(model, &ids, &batch, len)?;
        progress.advance((batch.len() * (len - 1)) as u64);
        i += batch.len();
    }
    progress.end();
    let tokens = ids.len() - 1;
    Ok(EvalReport {
        tokens,
        bytes: text.len(),
        nll_nats: nll,
        perplexity: (nll / tokens as f64).exp(),
        bits_per_byte: nll / std::f64::consts::LN_2 / text.len().max(1) as f64,
        windows: starts.len(),
        window,
    })
}

/// [`evaluate_text`] on a UTF-8 file (invalid bytes are an error naming the file).
pub fn evaluate_file(
    model: &Decoder,
    tokenizer: &dyn Tokenizer,
    path: &Path,
    options: &EvalOptions,
    progress: &dyn Progress,
) -> Result<EvalReport> {
    let bytes = std::fs::read(path).map_err(|source| InferError::Io { path: path.to_path_buf(), source })?;
    let text = String::from_utf8(bytes).map_err(|e| InferError::EvalInput {
        path: path.to_path_buf(),
        message: format!("not UTF-8 (first bad byte at offset {})", e.utf8_error().valid_up_to()),
    })?;
    evaluate_text(model, tokenizer, &text, options, progress).map_err(|e| match e {
        InferError::InvalidParameter { key: "text", message } => {
            InferError::EvalInput { path: path.to_path_buf(), message }
        }
        other => other,
    })
}

/// Summed NLL of windows `ids[s..s + len]` for each `s` in `starts`.
fn batch_nll(model: &Decoder, ids: &[u32], starts: &[usize], len: usize) -> Result<f64> {
    let device = model.devices().into_iter().next().unwrap_or_default();
    let flat: Vec<i64> = starts.iter().flat_map(|&s| ids[s..s + len].iter().map(|&id| id as i64)).collect();
    let rows = starts.len();
    let tokens = Tensor::<1, Int>::from_ints(flat.as_slice(), &device).reshape([rows, len]);
    let inputs = tokens.clone().narrow(1, 0, len - 1);
    let targets = tokens.narrow(1, 1, len - 1);
    let logits = model.forward(inputs);
    let logp = log_softmax(logits, 2).gather(2, targets.unsqueeze_dim::<3>(2));
    let total = logp.sum().into_data().convert::<f64>().try_into_vec::<f64>();
    let total = total.map_err(|e| InferError::Readback(format!("{e:?}")))?;
    Ok(-total.first().copied().unwrap_or(0.0))
}
