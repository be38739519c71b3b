//! Reading OpenAI request bodies: every field this server understands is checked on its own, so
//! a wrong type or value is a 400 naming that field; fields it does not support (`n > 1`,
//! `logprobs`, `echo`, ...) are refused rather than ignored. Unknown fields are ignored, as
//! OpenAI-compatible servers commonly do.

use cascade_core::chat::{Message, Role};
use serde_json::{Map, Value};

use super::error::ApiError;
use crate::error::InferError;
use crate::sampling::SamplingParams;

/// Most stop strings a request may give.
pub const MAX_STOP_STRINGS: usize = 16;

type Object = Map<String, Value>;

/// Which endpoint a body was sent to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Endpoint {
    /// `POST /v1/completions`: `prompt`.
    Completions,
    /// `POST /v1/chat/completions`: `messages`.
    Chat,
}

/// What to continue.
#[derive(Debug, Clone, PartialEq)]
pub enum PromptInput {
    /// Text to encode.
    Text(String),
    /// Token ids given by the client.
    Tokens(Vec<u32>),
    /// A conversation to render with the chat template.
    Chat(Vec<Message>),
}

/// A checked request.
#[derive(Debug, Clone, PartialEq)]
pub struct ParsedRequest {
    /// The model asked for (`None`: the served one).
    pub model: Option<String>,
    /// The prompt.
    pub prompt: PromptInput,
    /// Sampling, validated.
    pub sampling: SamplingParams,
    /// `max_tokens` (or `max_completion_tokens`), if given.
    pub max_tokens: Option<usize>,
    /// Stop strings, non-empty.
    pub stop: Vec<String>,
    /// Answer as server-sent events.
    pub stream: bool,
    /// With `stream`, send a last chunk carrying `usage` (`stream_options.include_usage`).
    pub include_usage: bool,
}

/// Parses and checks a request body. `fallback_seed` seeds requests that give no `seed`.
pub fn parse_request(body: &[u8], endpoint: Endpoint, fallback_seed: u64) -> Result<ParsedRequest, ApiError> {
    let value: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(None, format!("the request body is not valid JSON: {e}")))?;
    let Value::Object(obj) = value else {
        return Err(ApiError::invalid(None, format!("the request body must be a JSON object, got {}", kind(&value))));
    };
    refuse_unsupported(&obj, endpoint)?;
    let model = string(&obj, "model")?;
    let prompt = match endpoint {
        Endpoint::Completions => prompt(&obj)?,
        Endpoint::Chat => PromptInput::Chat(messages(&obj)?),
    };
    let sampling = sampling(&obj, fallback_seed)?;
    let mut max_tokens = positive_count(&obj, "max_tokens")?;
    if endpoint == Endpoint::Chat
        && let Some(n) = positive_count(&obj, "max_completion_tokens")?
    {
        max_tokens = Some(max_tokens.map_or(n, |m| m.min(n)));
    }
    let stop = stop(&obj)?;
    let stream = boolean(&obj, "stream")?.unwrap_or(false);
    let include_usage = match field(&obj, "stream_options") {
        None => false,
        Some(Value::Object(options)) => boolean(options, "include_usage")
            .map_err(|e| ApiError::field("stream_options.include_usage", e.message))?
            .unwrap_or(false),
        Some(other) => return Err(type_error("stream_options", "an object", other)),
    };
    Ok(ParsedRequest { model, prompt, sampling, max_tokens, stop, stream, include_usage })
}

/// The value of `key`, `None` when absent or `null`.
fn field<'a>(obj: &'a Object, key: &str) -> Option<&'a Value> {
    obj.get(key).filter(|v| !v.is_null())
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn type_error(key: &str, expected: &str, got: &Value) -> ApiError {
    ApiError::field(key, format!("`{key}` must be {expected}, got {}", kind(got)))
}

fn string(obj: &Object, key: &str) -> Result<Option<String>, ApiError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(type_error(key, "a string", other)),
    }
}

fn boolean(obj: &Object, key: &str) -> Result<Option<bool>, ApiError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(type_error(key, "a boolean", other)),
    }
}

fn number(obj: &Object, key: &str) -> Result<Option<f64>, ApiError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => n.as_f64().map(Some).ok_or_else(|| ApiError::field(key, format!("`{key}` is not a finite number"))),
        Some(other) => Err(type_error(key, "a number", other)),
    }
}

fn integer(obj: &Object, key: &str) -> Result<Option<i128>, ApiError> {
    match field(obj, key) {
        None => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(i) = n.as_i64() {
                Ok(Some(i128::from(i)))
            } else if let Some(u) = n.as_u64() {
                Ok(Some(i128::from(u)))
            } else {
                Err(ApiError::field(key, format!("`{key}` must be an integer, got {n}")))
            }
        }
        Some(other) => Err(type_error(key, "an integer", other)),
    }
}

/// An integer >= 1.
fn positive_count(obj: &Object, key: &str) -> Result<Option<usize>, ApiError> {
    match integer(obj, key)? {
        None => Ok(None),
        Some(n) if n >= 1 => Ok(Some(usize::try_from(n).unwrap_or(usize::MAX))),
        Some(n) => Err(ApiError::field(key, format!("`{key}` must be at least 1, got {n}"))),
    }
}

/// Fields whose non-default values this server cannot honour.
fn refuse_unsupported(obj: &Object, endpoint: Endpoint) -> Result<(), ApiError> {
    for key in ["n", "best_of"] {
        match integer(obj, key)? {
            None | Some(1) => {}
            Some(n) => {
                return Err(ApiError::field(
                    key,
                    format!("`{key}` = {n} is not supported: this server returns one choice per request (send several requests; concurrent ones are batched together)"),
                ));
            }
        }
    }
    for key in ["frequency_penalty", "presence_penalty"] {
        if let Some(v) = number(obj, key)?
            && v != 0.0
        {
            return Err(ApiError::field(key, format!("`{key}` is not supported; use `repetition_penalty` (> 1 discourages repeats)")));
        }
    }
    if boolean(obj, "echo")? == Some(true) {
        return Err(ApiError::field("echo", "`echo` is not supported"));
    }
    let logprobs_requested = match (endpoint, field(obj, "logprobs")) {
        (_, None) | (_, Some(Value::Bool(false))) => false,
        (Endpoint::Completions, Some(Value::Number(n))) => n.as_u64() != Some(0),
        _ => true,
    };
    if logprobs_requested || field(obj, "top_logprobs").is_some() {
        return Err(ApiError::field("logprobs", "log probabilities are not supported"));
    }
    if matches!(field(obj, "suffix"), Some(Value::String(s)) if !s.is_empty()) {
        return Err(ApiError::field("suffix", "`suffix` (insertion) is not supported"));
    }
    for key in ["tools", "functions", "logit_bias"] {
        let empty = match field(obj, key) {
            None => true,
            Some(Value::Array(a)) => a.is_empty(),
            Some(Value::Object(o)) => o.is_empty(),
            Some(_) => false,
        };
        if !empty {
            return Err(ApiError::field(key, format!("`{key}` is not supported")));
        }
    }
    Ok(())
}

/// `prompt`: a string, token ids, or an array holding exactly one of those.
fn prompt(obj: &Object) -> Result<PromptInput, ApiError> {
    let Some(value) = field(obj, "prompt") else {
        return Err(ApiError::field("prompt", "`prompt` is required"));
    };
    let input = match value {
        Value::String(s) => PromptInput::Text(s.clone()),
        Value::Array(items) if items.iter().all(Value::is_number) && !items.is_empty() => token_ids(items)?,
        Value::Array(items) if items.len() == 1 => match &items[0] {
            Value::String(s) => PromptInput::Text(s.clone()),
            Value::Array(ids) => token_ids(ids)?,
            other => return Err(type_error("prompt", "a string or an array of token ids", other)),
        },
        Value::Array(items) if items.len() > 1 => {
            return Err(ApiError::field(
                "prompt",
                "several prompts in one request are not supported; send one request per prompt (concurrent requests are batched together)",
            ));
        }
        other => return Err(type_error("prompt", "a non-empty string or an array of token ids", other)),
    };
    match &input {
        PromptInput::Text(s) if s.is_empty() => Err(ApiError::field("prompt", "`prompt` is empty")),
        PromptInput::Tokens(ids) if ids.is_empty() => Err(ApiError::field("prompt", "`prompt` is empty")),
        _ => Ok(input),
    }
}

fn token_ids(items: &[Value]) -> Result<PromptInput, ApiError> {
    items
        .iter()
        .map(|v| {
            v.as_u64()
                .and_then(|id| u32::try_from(id).ok())
                .ok_or_else(|| ApiError::field("prompt", format!("token ids must be integers in [0, 2^32), got {v}")))
        })
        .collect::<Result<Vec<u32>, _>>()
        .map(PromptInput::Tokens)
}

/// `messages`: a non-empty array of `{role, content}`; content is a string or text parts.
fn messages(obj: &Object) -> Result<Vec<Message>, ApiError> {
    let items = match field(obj, "messages") {
        None => return Err(ApiError::field("messages", "`messages` is required")),
        Some(Value::Array(items)) if items.is_empty() => {
            return Err(ApiError::field("messages", "`messages` is empty"));
        }
        Some(Value::Array(items)) => items,
        Some(other) => return Err(type_error("messages", "an array of messages", other)),
    };
    items.iter().enumerate().map(|(i, item)| message(i, item)).collect()
}

fn message(index: usize, item: &Value) -> Result<Message, ApiError> {
    let at = |key: &str| format!("messages[{index}].{key}");
    let Value::Object(m) = item else {
        return Err(type_error(&format!("messages[{index}]"), "an object with `role` and `content`", item));
    };
    let role = match field(m, "role") {
        Some(Value::String(r)) => match r.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            other => {
                return Err(ApiError::field(
                    &at("role"),
                    format!("role `{other}` is not supported (system, developer, user, assistant)"),
                ));
            }
        },
        Some(other) => return Err(type_error(&at("role"), "a string", other)),
        None => return Err(ApiError::field(&at("role"), format!("`{}` is required", at("role")))),
    };
    let content = match field(m, "content") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => {
            let mut text = String::new();
            for (p, part) in parts.iter().enumerate() {
                let key = format!("messages[{index}].content[{p}]");
                match part {
                    Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("text") => match o.get("text") {
                        Some(Value::String(s)) => text.push_str(s),
                        _ => return Err(ApiError::field(&key, format!("`{key}.text` must be a string"))),
                    },
                    _ => return Err(ApiError::field(&key, "only text content parts (`{\"type\": \"text\", \"text\": ...}`) are supported")),
                }
            }
            text
        }
        None if role == Role::Assistant => String::new(),
        None => return Err(ApiError::field(&at("content"), format!("`{}` is required", at("content")))),
        Some(other) => return Err(type_error(&at("content"), "a string or an array of text parts", other)),
    };
    Ok(Message::new(role, content))
}

/// The sampling fields, checked by [`SamplingParams::validate`] too.
fn sampling(obj: &Object, fallback_seed: u64) -> Result<SamplingParams, ApiError> {
    let mut params = SamplingParams::default();
    if let Some(t) = number(obj, "temperature")? {
        params.temperature = t as f32;
    }
    if let Some(p) = number(obj, "top_p")? {
        params.top_p = p as f32;
    }
    if let Some(p) = number(obj, "min_p")? {
        params.min_p = p as f32;
    }
    if let Some(p) = number(obj, "repetition_penalty")? {
        params.repetition_penalty = p as f32;
    }
    params.top_k = match integer(obj, "top_k")? {
        None | Some(-1) => 0,
        Some(k) if k >= 0 => usize::try_from(k).unwrap_or(usize::MAX),
        Some(k) => return Err(ApiError::field("top_k", format!("`top_k` must be >= 0 (0 or -1 = off), got {k}"))),
    };
    params.seed = match integer(obj, "seed")? {
        None => fallback_seed,
        // Negative seeds (OpenAI allows them) keep their 64 bits.
        Some(s) => i64::try_from(s).map(|s| s as u64).or_else(|_| u64::try_from(s)).map_err(|_| {
            ApiError::field("seed", format!("`seed` must fit in 64 bits, got {s}"))
        })?,
    };
    params.validate().map_err(|e| match e {
        InferError::InvalidParameter { key, message } => ApiError::field(key, format!("`{key}` {message}")),
        other => ApiError::invalid(None, other.to_string()),
    })?;
    Ok(params)
}

/// `stop`: a string or an array of strings, each non-empty.
fn stop(obj: &Object) -> Result<Vec<String>, ApiError> {
    let stops = match field(obj, "stop") {
        None => Vec::new(),
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items
            .iter()
            .map(|v| match v {
                Value::String(s) => Ok(s.clone()),
                other => Err(type_error("stop", "a string or an array of strings", other)),
            })
            .collect::<Result<_, _>>()?,
        Some(other) => return Err(type_error("stop", "a string or an array of strings", other)),
    };
    if stops.iter().any(String::is_empty) {
        return Err(ApiError::field("stop", "stop strings must not be empty"));
    }
    if stops.len() > MAX_STOP_STRINGS {
        return Err(ApiError::field("stop", format!("at most {MAX_STOP_STRINGS} stop strings, got {}", stops.len())));
    }
    Ok(stops)
}
