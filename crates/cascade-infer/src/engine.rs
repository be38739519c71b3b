//! Batched generation on the KV cache: one prefill pass over the left-padded prompts, then one
//! decoding step per token for every unfinished row, dropping rows from the batch (and the
//! cache) as they finish.
//!
//! Each step moves one row of logits per sequence to the host, where each request samples with
//! its own parameters and generator, so a request's output does not depend on what else is in
//! its batch (up to float rounding of the padded batch).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Instant;

use cascade_core::{AllowedSpecial, Tokenizer};
use cascade_model::burn::prelude::*;
use cascade_model::{BatchLayout, KvCache, Seq2SeqCache};
use serde::{Deserialize, Serialize};

use crate::error::{InferError, Result};
use crate::model::LanguageModel;
use crate::sampling::{SamplingParams, SplitMix64, apply_repetition_penalty, sample};
use crate::text::{StopStrings, Utf8Stream};

/// Ends documents in the training shards; generation stops on it by default.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Fills left padding and starts the encoder-decoder's target (as in pretraining).
pub const PAD: &str = "<|pad|>";

/// One prompt to continue and how.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct GenerationRequest {
    /// Prompt token ids (the encoder-decoder's source).
    pub prompt: Vec<u32>,
    /// How to pick tokens.
    pub sampling: SamplingParams,
    /// Most tokens to generate. The context window may stop the request earlier, which its
    /// [`FinishReason::ContextWindow`] says.
    pub max_new_tokens: usize,
    /// Ids that end the generation; the id itself is not part of the output.
    /// [`Engine::request`] fills in `<|endoftext|>` and `<|end_of_turn|>`.
    pub stop_token_ids: Vec<u32>,
    /// Strings that end the generation, matched on the text however it was split into tokens;
    /// the output text stops right before the first one found.
    pub stop_strings: Vec<String>,
}

/// Why a request stopped.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FinishReason {
    /// The model produced one of the request's stop ids.
    StopToken(u32),
    /// The text reached one of the request's stop strings.
    StopString(String),
    /// `max_new_tokens` tokens were generated.
    MaxNewTokens,
    /// The sequence filled the model's context window before `max_new_tokens`.
    ContextWindow,
    /// The stream callback asked to stop this request.
    Cancelled,
}

/// The result of one request.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Completion {
    /// Generated ids (a final stop id excluded).
    pub tokens: Vec<u32>,
    /// The generated text: exactly the concatenation of the streamed chunks.
    pub text: String,
    /// Why generation stopped.
    pub finish_reason: FinishReason,
    /// Tokens in the prompt.
    pub prompt_tokens: usize,
    /// Seconds from the call to the request's first sampled token (prefill included).
    pub time_to_first_token_s: f64,
}

/// One streamed step of one request.
#[derive(Clone, Debug)]
pub struct StreamEvent<'a> {
    /// Index of the request in the batch given to [`Engine::generate`].
    pub request: usize,
    /// The token sampled this step (`None` for a request that ends before its first token).
    pub token: Option<u32>,
    /// Text that became final this step; may be empty (an incomplete character or a possible
    /// stop string is held back), never splits a character.
    pub text: &'a str,
    /// Set on the request's last event.
    pub finish_reason: Option<&'a FinishReason>,
}

/// Generates text with one model and tokenizer. See the crate docs for batching and streaming.
pub struct Engine {
    model: LanguageModel,
    tokenizer: Arc<dyn Tokenizer>,
    device: Device,
    pad_id: u32,
    default_stop_ids: Vec<u32>,
    /// The decoder's `[d_model, vocab]` output projection, contiguous (see
    /// `Decoder::output_projection`).
    head: Option<Tensor<2>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("family", &self.model.family())
            .field("vocab_size", &self.model.vocab_size())
            .field("context_window", &self.model.context_window())
            .field("pad_id", &self.pad_id)
            .field("default_stop_ids", &self.default_stop_ids)
            .finish()
    }
}

impl Engine {
    /// An engine for `model` on `device` with `tokenizer` (its `<|pad|>` fills padding, 0 if
    /// it has none; `<|endoftext|>` and `<|end_of_turn|>` are the default stop ids).
    pub fn new(model: LanguageModel, tokenizer: Arc<dyn Tokenizer>, device: Device) -> Self {
        let pad_id = tokenizer.special_token(PAD).unwrap_or(0);
        let default_stop_ids = [ENDOFTEXT, cascade_core::chat::END_OF_TURN_TOKEN]
            .iter()
            .filter_map(|name| tokenizer.special_token(name))
            .collect();
        let head = match &model {
            LanguageModel::Decoder(decoder) => Some(decoder.output_projection()),
            LanguageModel::EncoderDecoder(_) => None,
        };
        Self { model, tokenizer, device, pad_id, default_stop_ids, head }
    }

    /// The model.
    pub fn model(&self) -> &LanguageModel {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Arc<dyn Tokenizer> {
        &self.tokenizer
    }

    /// The device the model runs on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// `<|endoftext|>` and `<|end_of_turn|>`, those the tokenizer has.
    pub fn default_stop_ids(&self) -> &[u32] {
        &self.default_stop_ids
    }

    /// Encodes user text (special-token strings stay plain text).
    pub fn encode(&self, text: &str) -> Vec<u32> {
        self.tokenizer.encode(text, &AllowedSpecial::None)
    }

    /// A request for `prompt` with the default stop ids and no stop strings.
    pub fn request(&self, prompt: Vec<u32>, sampling: SamplingParams, max_new_tokens: usize) -> GenerationRequest {
        GenerationRequest {
            prompt,
            sampling,
            max_new_tokens,
            stop_token_ids: self.default_stop_ids.clone(),
            stop_strings: Vec::new(),
        }
    }

    /// Generates every request without streaming.
    pub fn generate_all(&self, requests: &[GenerationRequest]) -> Result<Vec<Completion>> {
        self.generate(requests, &mut |_| ControlFlow::Continue(()))
    }

    /// Generates all `requests` as one batch, calling `on_event` once per request and step with
    /// the text that became final; returning `ControlFlow::Break` from it cancels that request
    /// (a client that went away). Returns one [`Completion`] per request, in order.
    ///
    /// Every request is checked before any work: a prompt longer than the context window is an
    /// error ([`InferError::PromptTooLong`]), never truncated.
    pub fn generate(
        &self,
        requests: &[GenerationRequest],
        on_event: &mut dyn FnMut(&StreamEvent<'_>) -> ControlFlow<()>,
    ) -> Result<Vec<Completion>> {
        let started = Instant::now();
        let mut done: Vec<Option<Completion>> = vec![None; requests.len()];
        let mut rows = Vec::with_capacity(requests.len());
        for (index, request) in requests.iter().enumerate() {
            let row = self.row(index, request)?;
            rows.push(row);
        }
        let mut active = Vec::with_capacity(rows.len());
        for mut row in rows {
            if row.budget == 0 {
                let reason = row.budget_reason.clone();
                row.finish(reason, None, String::new(), on_event, &mut done);
            } else {
                active.push(row);
            }
        }
        if active.is_empty() {
            return Ok(done.into_iter().flatten().collect());
        }
        let vocab = self.model.vocab_size();
        let (mut state, mut logits) = self.prefill(&active)?;
        loop {
            let batch = active.len();
            let mut next_tokens = Vec::with_capacity(active.len());
            let mut keep = Vec::with_capacity(active.len());
            let mut still_active = Vec::with_capacity(active.len());
            for (slot, mut row) in active.into_iter().enumerate() {
                let row_logits = &mut logits[slot * vocab..(slot + 1) * vocab];
                let token = row.pick(row_logits);
                if row.tokens.is_empty() && row.first_token_s.is_none() {
                    row.first_token_s = Some(started.elapsed().as_secs_f64());
                }
                if row.accept(token, self.tokenizer.as_ref(), on_event, &mut done)? {
                    next_tokens.push(token);
                    keep.push(slot);
                    still_active.push(row);
                }
            }
            active = still_active;
            if active.is_empty() {
                break;
            }
            if keep.len() < batch {
                state.select_rows(&keep);
            }
            logits = self.step(&mut state, &next_tokens)?;
        }
        Ok(done.into_iter().flatten().collect())
    }

    /// Checks a request and sets up its row.
    fn row(&self, index: usize, request: &GenerationRequest) -> Result<Row> {
        request.sampling.validate()?;
        if request.stop_strings.iter().any(|s| s.is_empty()) {
            return Err(InferError::InvalidParameter { key: "stop", message: format!("request {index}: a stop string is empty") });
        }
        let vocab_size = self.model.vocab_size();
        if request.prompt.is_empty() {
            return Err(InferError::EmptyPrompt { request: index });
        }
        if let Some(&id) = request.prompt.iter().find(|&&id| id as usize >= vocab_size) {
            return Err(InferError::TokenOutOfRange { request: index, id, vocab_size });
        }
        let prompt_len = request.prompt.len();
        let (room, prompt_limit, prompt_key) = match &self.model {
            LanguageModel::Decoder(m) => {
                let window = m.config().max_seq_len;
                (window.saturating_sub(prompt_len), window, "max_seq_len")
            }
            // The target starts with one start token.
            LanguageModel::EncoderDecoder(m) => {
                (m.config().max_target_len.saturating_sub(1), m.config().max_source_len, "max_source_len")
            }
        };
        if prompt_len > prompt_limit {
            return Err(InferError::PromptTooLong { request: index, tokens: prompt_len, window: prompt_limit, key: prompt_key });
        }
        let (budget, budget_reason) = if request.max_new_tokens <= room {
            (request.max_new_tokens, FinishReason::MaxNewTokens)
        } else {
            (room, FinishReason::ContextWindow)
        };
        let penalize = request.sampling.repetition_penalty != 1.0;
        let mut seen = Seen::default();
        if penalize {
            for &id in &request.prompt {
                seen.insert(id, vocab_size);
            }
        }
        Ok(Row {
            index,
            prompt: request.prompt.clone(),
            budget,
            budget_reason,
            sampling: request.sampling.clone(),
            rng: SplitMix64::new(request.sampling.seed),
            stop_ids: request.stop_token_ids.clone(),
            stop_names: request.stop_strings.clone(),
            stops: StopStrings::new(&request.stop_strings),
            utf8: Utf8Stream::new(),
            penalize,
            seen,
            tokens: Vec::new(),
            text: String::new(),
            first_token_s: None,
        })
    }

    /// Runs the prompts through the model, filling the cache; returns the logits of each
    /// row's last prompt token, `[rows * vocab]` on the host.
    fn prefill(&self, rows: &[Row]) -> Result<(DecodeState, Vec<f32>)> {
        let device = &self.device;
        let batch = rows.len();
        let prompts: Vec<&[u32]> = rows.iter().map(|r| r.prompt.as_slice()).collect();
        let lengths: Vec<usize> = prompts.iter().map(|p| p.len()).collect();
        let width = lengths.iter().copied().max().unwrap_or(0);
        let ragged = lengths.iter().any(|&len| len != width);
        let max_budget = rows.iter().map(|r| r.budget).max().unwrap_or(0);
        match &self.model {
            LanguageModel::Decoder(model) => {
                let mut flat = Vec::with_capacity(batch * width);
                for prompt in &prompts {
                    flat.extend(std::iter::repeat_n(self.pad_id as i64, width - prompt.len()));
                    flat.extend(prompt.iter().map(|&id| id as i64));
                }
                let tokens = Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([batch, width]);
                let layout =
                    if ragged { BatchLayout::left_padded(&lengths, width, device)? } else { BatchLayout::default() };
                let mut cache = model.new_cache();
                cache.reserve(width + max_budget);
                let hidden = model.hidden_cached(tokens, &layout, &mut cache);
                let logits = self.decoder_logits(model, hidden.narrow(1, width - 1, 1));
                Ok((DecodeState::Decoder(cache), to_host(logits)?))
            }
            LanguageModel::EncoderDecoder(model) => {
                let mut flat = Vec::with_capacity(batch * width);
                for prompt in &prompts {
                    flat.extend(prompt.iter().map(|&id| id as i64));
                    flat.extend(std::iter::repeat_n(self.pad_id as i64, width - prompt.len()));
                }
                let source = Tensor::<1, Int>::from_ints(flat.as_slice(), device).reshape([batch, width]);
                let layout =
                    if ragged { BatchLayout::right_padded(&lengths, width, device)? } else { BatchLayout::default() };
                let memory = model.encode(source, &layout);
                let mut cache = model.new_cache(&memory);
                cache.target.reserve(1 + max_budget);
                let start = vec![self.pad_id as i64; batch];
                let start = Tensor::<1, Int>::from_ints(start.as_slice(), device).reshape([batch, 1]);
                let logits = model.forward_cached(start, &mut cache);
                Ok((DecodeState::Seq2Seq(cache), to_host(logits)?))
            }
        }
    }

    /// Logits `[B, 1, vocab]` of the decoder's hidden states `[B, 1, d_model]`.
    fn decoder_logits(&self, model: &cascade_model::Decoder, hidden: Tensor<3>) -> Tensor<3> {
        match &self.head {
            Some(head) => {
                let [b, t, d] = hidden.dims();
                let [_, vocab] = head.dims();
                hidden.reshape([b * t, d]).matmul(head.clone()).reshape([b, t, vocab])
            }
            None => model.logits(hidden),
        }
    }

    /// One decoding step: feeds each active row's last token, returns the next logits.
    fn step(&self, state: &mut DecodeState, tokens: &[u32]) -> Result<Vec<f32>> {
        let ids: Vec<i64> = tokens.iter().map(|&id| id as i64).collect();
        let tokens = Tensor::<1, Int>::from_ints(ids.as_slice(), &self.device).reshape([ids.len(), 1]);
        let logits = match (&self.model, state) {
            (LanguageModel::Decoder(model), DecodeState::Decoder(cache)) => {
                self.decoder_logits(model, model.hidden_cached(tokens, &BatchLayout::default(), cache))
            }
            (LanguageModel::EncoderDecoder(model), DecodeState::Seq2Seq(cache)) => model.forward_cached(tokens, cache),
            // The state is always built by `prefill` for the same model.
            _ => return Err(InferError::Readback("decoding state does not match the model family".into())),
        };
        to_host(logits)
    }
}

/// The cache of a batch being decoded.
#[allow(clippy::large_enum_variant)]
enum DecodeState {
    Decoder(KvCache),
    Seq2Seq(Seq2SeqCache),
}

impl DecodeState {
    fn select_rows(&mut self, rows: &[usize]) {
        match self {
            Self::Decoder(cache) => cache.select_rows(rows),
            Self::Seq2Seq(cache) => cache.select_rows(rows),
        }
    }
}

/// Moves `[B, 1, vocab]` logits to the host as one flat vector.
fn to_host(logits: Tensor<3>) -> Result<Vec<f32>> {
    logits.into_data().convert::<f32>().try_into_vec::<f32>().map_err(|e| InferError::Readback(format!("{e:?}")))
}

/// Ids already in a sequence, for the repetition penalty.
#[derive(Debug, Default)]
struct Seen {
    present: Vec<bool>,
    ids: Vec<u32>,
}

impl Seen {
    fn insert(&mut self, id: u32, vocab_size: usize) {
        if self.present.is_empty() {
            self.present = vec![false; vocab_size];
        }
        if let Some(slot) = self.present.get_mut(id as usize)
            && !*slot
        {
            *slot = true;
            self.ids.push(id);
        }
    }
}

/// The decoding state of one request.
#[derive(Debug)]
struct Row {
    index: usize,
    prompt: Vec<u32>,
    budget: usize,
    budget_reason: FinishReason,
    sampling: SamplingParams,
    rng: SplitMix64,
    stop_ids: Vec<u32>,
    stop_names: Vec<String>,
    stops: StopStrings,
    utf8: Utf8Stream,
    penalize: bool,
    seen: Seen,
    tokens: Vec<u32>,
    text: String,
    first_token_s: Option<f64>,
}

impl Row {
    /// Picks the next token from this row's logits (penalized in place first).
    fn pick(&mut self, logits: &mut [f32]) -> u32 {
        if self.penalize {
            apply_repetition_penalty(logits, &self.seen.ids, self.sampling.repetition_penalty);
        }
        sample(logits, &self.sampling, &mut self.rng)
    }

    /// Takes a sampled token: streams its text and returns whether the row goes on.
    fn accept(
        &mut self,
        token: u32,
        tokenizer: &dyn Tokenizer,
        on_event: &mut dyn FnMut(&StreamEvent<'_>) -> ControlFlow<()>,
        done: &mut [Option<Completion>],
    ) -> Result<bool> {
        if self.stop_ids.contains(&token) {
            let (tail, reason) = self.flush(FinishReason::StopToken(token));
            self.finish(reason, Some(token), tail, on_event, done);
            return Ok(false);
        }
        self.tokens.push(token);
        if self.penalize {
            let vocab_size = self.seen.present.len();
            self.seen.insert(token, vocab_size);
        }
        let chunk = self.utf8.push(&tokenizer.decode_bytes(&[token])?);
        let released = self.stops.push(&chunk);
        if let Some(stop) = released.stop {
            let reason = FinishReason::StopString(self.stop_names_found(stop));
            self.finish(reason, Some(token), released.text, on_event, done);
            return Ok(false);
        }
        if self.tokens.len() >= self.budget {
            let (tail, reason) = self.flush(self.budget_reason.clone());
            self.finish(reason, Some(token), released.text + &tail, on_event, done);
            return Ok(false);
        }
        self.text.push_str(&released.text);
        let event = StreamEvent { request: self.index, token: Some(token), text: &released.text, finish_reason: None };
        if on_event(&event).is_break() {
            self.finish(FinishReason::Cancelled, None, String::new(), &mut |_| ControlFlow::Continue(()), done);
            return Ok(false);
        }
        Ok(true)
    }

    /// The stop string at `index` (stop strings are checked non-empty, so the matcher keeps
    /// them all, in order).
    fn stop_names_found(&self, index: usize) -> String {
        self.stop_names.get(index).cloned().unwrap_or_default()
    }

    /// Releases held-back text at the end of a row. A character completed by the last bytes
    /// could still complete a stop string, which then wins over `reason`.
    fn flush(&mut self, reason: FinishReason) -> (String, FinishReason) {
        let released = self.stops.push(&self.utf8.finish());
        match released.stop {
            Some(stop) => (released.text, FinishReason::StopString(self.stop_names_found(stop))),
            None => (released.text + &self.stops.finish(), reason),
        }
    }

    /// Streams the last event and records the completion.
    fn finish(
        &mut self,
        reason: FinishReason,
        token: Option<u32>,
        text: String,
        on_event: &mut dyn FnMut(&StreamEvent<'_>) -> ControlFlow<()>,
        done: &mut [Option<Completion>],
    ) {
        self.text.push_str(&text);
        let event = StreamEvent { request: self.index, token, text: &text, finish_reason: Some(&reason) };
        // The request ends here either way, so a cancellation changes nothing.
        let _ = on_event(&event);
        done[self.index] = Some(Completion {
            tokens: std::mem::take(&mut self.tokens),
            text: std::mem::take(&mut self.text),
            finish_reason: reason,
            prompt_tokens: self.prompt.len(),
            time_to_first_token_s: self.first_token_s.unwrap_or(0.0),
        });
    }
}
