//! The HTTP handlers: `GET /v1/models`, `POST /v1/completions`, `POST /v1/chat/completions`
//! (JSON or, with `stream: true`, server-sent events in OpenAI's chunk format ending with
//! `data: [DONE]`), and JSON 404s for anything else.

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{Method, Uri};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use cascade_core::Tokenizer;
use cascade_core::chat::ChatTemplate;
use futures_util::StreamExt;
use futures_util::stream::{self, Stream};
use serde_json::{Value, json};
use tokio::sync::mpsc::{UnboundedReceiver, unbounded_channel};

use super::error::ApiError;
use super::openai::{Endpoint, ParsedRequest, PromptInput, parse_request};
use super::worker::{Job, JobEvent};
use crate::engine::{Completion, FinishReason, GenerationRequest};

/// What the handlers know about the served model, and the way to its worker.
pub struct AppState {
    /// The id clients name in `model`.
    pub model_id: String,
    /// Unix seconds the server started (the model's `created`).
    pub created: u64,
    /// Encodes prompts.
    pub tokenizer: Arc<dyn Tokenizer>,
    /// The chat template, if the tokenizer has its tokens.
    pub chat: Option<ChatTemplate>,
    /// The longest prompt accepted.
    pub max_prompt_len: usize,
    /// The config key behind `max_prompt_len`.
    pub prompt_key: &'static str,
    /// Tokens a sequence may hold.
    pub context_window: usize,
    /// The model's vocabulary size.
    pub vocab_size: usize,
    /// Ids every request stops on.
    pub default_stop_ids: Vec<u32>,
    /// Queue of the engine's worker.
    pub jobs: std::sync::Mutex<std::sync::mpsc::Sender<Job>>,
    /// Numbers response ids and seeds requests that give none.
    pub counter: AtomicU64,
}

/// The router over `state`.
pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/v1/models", get(models))
        .route("/v1/completions", post(completions))
        .route("/v1/chat/completions", post(chat_completions))
        .route("/health", get(|| async { Json(json!({"status": "ok"})) }))
        .fallback(not_found)
        .with_state(state)
}

async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::route_not_found(method.as_str(), uri.path())
}

async fn models(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "object": "list",
        "data": [{
            "id": state.model_id,
            "object": "model",
            "created": state.created,
            "owned_by": "cascade",
            "context_window": state.context_window,
        }],
    }))
}

async fn completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    respond(state, &body, Endpoint::Completions).await.unwrap_or_else(IntoResponse::into_response)
}

async fn chat_completions(State(state): State<Arc<AppState>>, body: Bytes) -> Response {
    respond(state, &body, Endpoint::Chat).await.unwrap_or_else(IntoResponse::into_response)
}

/// Checks the request, queues it for the worker, and answers in JSON or as an event stream.
async fn respond(state: Arc<AppState>, body: &[u8], endpoint: Endpoint) -> Result<Response, ApiError> {
    let number = state.counter.fetch_add(1, Ordering::Relaxed);
    let parsed = parse_request(body, endpoint, fallback_seed(number))?;
    if let Some(model) = &parsed.model
        && *model != state.model_id
    {
        return Err(ApiError::model_not_found(model, &state.model_id));
    }
    let request = generation_request(&state, &parsed, endpoint)?;
    let (sender, receiver) = unbounded_channel();
    let prompt_tokens = request.prompt.len();
    state
        .jobs
        .lock()
        .map_err(|_| ApiError::server("the engine worker's queue is poisoned"))?
        .send(Job { request, events: sender })
        .map_err(|_| ApiError::server("the engine worker has stopped"))?;
    let reply = Reply {
        id: format!("{}-{number}", if endpoint == Endpoint::Chat { "chatcmpl" } else { "cmpl" }),
        created: unix_now(),
        model: state.model_id.clone(),
        endpoint,
        include_usage: parsed.include_usage,
        prompt_tokens,
    };
    if parsed.stream {
        Ok(Sse::new(event_stream(reply, receiver)).into_response())
    } else {
        let completion = wait_for_completion(receiver).await?;
        Ok(Json(reply.whole(&completion)).into_response())
    }
}

/// Seeds of requests without `seed` differ from request to request and run to run.
fn fallback_seed(number: u64) -> u64 {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_nanos() as u64).unwrap_or(0);
    nanos ^ number.wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

/// Encodes the prompt and checks it against the model, so a queued request cannot fail its batch.
fn generation_request(state: &AppState, parsed: &ParsedRequest, endpoint: Endpoint) -> Result<GenerationRequest, ApiError> {
    let tokenizer = state.tokenizer.as_ref();
    let (prompt, param) = match &parsed.prompt {
        PromptInput::Text(text) => (tokenizer.encode(text, &cascade_core::AllowedSpecial::None), "prompt"),
        PromptInput::Tokens(ids) => (ids.clone(), "prompt"),
        PromptInput::Chat(messages) => {
            let template = state.chat.as_ref().ok_or_else(|| {
                ApiError::invalid(None, "this model's tokenizer has no chat tokens; use /v1/completions")
            })?;
            (template.encode_prompt(tokenizer, messages), "messages")
        }
    };
    if prompt.is_empty() {
        return Err(ApiError::field(param, format!("`{param}` encodes to no tokens")));
    }
    if prompt.len() > state.max_prompt_len {
        return Err(ApiError::field(
            param,
            format!(
                "the prompt has {} tokens but the model's context window is {} tokens (`{}`)",
                prompt.len(),
                state.max_prompt_len,
                state.prompt_key
            ),
        )
        .with_code("context_length_exceeded"));
    }
    if let Some(&id) = prompt.iter().find(|&&id| id as usize >= state.vocab_size) {
        return Err(ApiError::field(param, format!("token id {id} is outside the vocabulary of {}", state.vocab_size)));
    }
    // OpenAI's default for completions is 16 tokens; a chat reply runs to the end of its turn
    // or of the context window.
    let max_new_tokens = parsed.max_tokens.unwrap_or(match endpoint {
        Endpoint::Completions => 16,
        Endpoint::Chat => state.context_window,
    });
    Ok(GenerationRequest {
        prompt,
        sampling: parsed.sampling.clone(),
        max_new_tokens,
        stop_token_ids: state.default_stop_ids.clone(),
        stop_strings: parsed.stop.clone(),
    })
}

async fn wait_for_completion(mut receiver: UnboundedReceiver<JobEvent>) -> Result<Completion, ApiError> {
    while let Some(event) = receiver.recv().await {
        match event {
            JobEvent::Text(_) => {}
            JobEvent::Finished(completion) => return Ok(completion),
            JobEvent::Failed(message) => return Err(ApiError::server(message)),
        }
    }
    Err(ApiError::server("the engine worker stopped before finishing the request"))
}

/// OpenAI's `finish_reason`.
pub fn finish_reason(reason: &FinishReason) -> &'static str {
    match reason {
        FinishReason::StopToken(_) | FinishReason::StopString(_) => "stop",
        FinishReason::MaxNewTokens | FinishReason::ContextWindow => "length",
        FinishReason::Cancelled => "cancelled",
    }
}

/// The parts every response of one request shares.
#[derive(Debug, Clone)]
struct Reply {
    id: String,
    created: u64,
    model: String,
    endpoint: Endpoint,
    include_usage: bool,
    prompt_tokens: usize,
}

impl Reply {
    fn usage(&self, completion: &Completion) -> Value {
        let completion_tokens = completion.tokens.len();
        json!({
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": self.prompt_tokens + completion_tokens,
        })
    }

    /// The non-streamed response.
    fn whole(&self, completion: &Completion) -> Value {
        let reason = finish_reason(&completion.finish_reason);
        let (object, choice) = match self.endpoint {
            Endpoint::Completions => (
                "text_completion",
                json!({"index": 0, "text": completion.text, "logprobs": null, "finish_reason": reason}),
            ),
            Endpoint::Chat => (
                "chat.completion",
                json!({
                    "index": 0,
                    "message": {"role": "assistant", "content": completion.text},
                    "logprobs": null,
                    "finish_reason": reason,
                }),
            ),
        };
        json!({
            "id": self.id,
            "object": object,
            "created": self.created,
            "model": self.model,
            "choices": [choice],
            "usage": self.usage(completion),
        })
    }

    /// One streamed chunk: `delta` text (chat: a delta object) and the finish reason if last.
    fn chunk(&self, text: Option<&str>, reason: Option<&str>) -> Value {
        let (object, choice) = match self.endpoint {
            Endpoint::Completions => (
                "text_completion",
                json!({"index": 0, "text": text.unwrap_or(""), "logprobs": null, "finish_reason": reason}),
            ),
            Endpoint::Chat => {
                let delta = match text {
                    Some(text) => json!({"content": text}),
                    None => json!({}),
                };
                ("chat.completion.chunk", json!({"index": 0, "delta": delta, "logprobs": null, "finish_reason": reason}))
            }
        };
        json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": [choice]})
    }

    /// The opening chunk of a chat stream (the assistant role).
    fn role_chunk(&self) -> Value {
        let mut chunk = self.chunk(None, None);
        chunk["choices"][0]["delta"] = json!({"role": "assistant", "content": ""});
        chunk
    }

    /// The chunk after the last one when `stream_options.include_usage` is set.
    fn usage_chunk(&self, completion: &Completion) -> Value {
        let mut chunk = self.chunk(None, None);
        chunk["choices"] = json!([]);
        chunk["usage"] = self.usage(completion);
        chunk
    }
}

fn data(value: &Value) -> Event {
    Event::default().data(value.to_string())
}

/// The server-sent events of one request: (chat: a role chunk,) a chunk per piece of text, a
/// last chunk with the finish reason, (the usage chunk,) `[DONE]`. An engine failure becomes an
/// error event before `[DONE]`. Dropping the stream (the client left) closes the job's channel,
/// which cancels the request in the worker.
fn event_stream(reply: Reply, receiver: UnboundedReceiver<JobEvent>) -> impl Stream<Item = Result<Event, Infallible>> {
    let opening = (reply.endpoint == Endpoint::Chat).then(|| data(&reply.role_chunk()));
    let head = stream::iter(opening.into_iter().map(Ok));
    let body = stream::unfold(Some((reply, receiver)), |state| async move {
        let (reply, mut receiver) = state?;
        let events: Vec<Event> = match receiver.recv().await {
            Some(JobEvent::Text(text)) => {
                let event = data(&reply.chunk(Some(&text), None));
                return Some((stream::iter(vec![Ok(event)]), Some((reply, receiver))));
            }
            Some(JobEvent::Finished(completion)) => {
                let mut events = vec![data(&reply.chunk(None, Some(finish_reason(&completion.finish_reason))))];
                if reply.include_usage {
                    events.push(data(&reply.usage_chunk(&completion)));
                }
                events
            }
            Some(JobEvent::Failed(message)) => vec![data(&json!(ApiError::server(message).body()))],
            None => vec![data(&json!(ApiError::server("the engine worker stopped before finishing the request").body()))],
        };
        let mut events: Vec<Result<Event, Infallible>> = events.into_iter().map(Ok).collect();
        events.push(Ok(Event::default().data("[DONE]")));
        Some((stream::iter(events), None))
    });
    head.chain(body.flatten())
}
