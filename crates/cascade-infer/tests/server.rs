//! The OpenAI-compatible server over a real loopback socket: models, completions (JSON and
//! server-sent events), chat, concurrent requests batched together, malformed requests.
//! The client is a few lines of HTTP/1.1 over `TcpStream`, so the test checks the bytes on the wire.
#![cfg(feature = "server")]

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use cascade_core::chat::{ChatTemplate, Message, Role};
use cascade_infer::server::{Server, ServerOptions};
use cascade_infer::{Engine, GenerationRequest, SamplingParams};
use common::*;
use serde_json::{Value, json};

const MODEL: &str = "tiny";
const WINDOW: usize = 64;

struct Reply {
    status: u16,
    content_type: String,
    body: String,
}

impl Reply {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.body))
    }

    /// The `data:` payloads of a server-sent-event body.
    fn events(&self) -> Vec<String> {
        self.body.lines().filter_map(|l| l.strip_prefix("data: ").or(l.strip_prefix("data:"))).map(str::to_owned).collect()
    }
}

/// One HTTP/1.1 exchange with `Connection: close`; chunked bodies are decoded.
fn http(addr: SocketAddr, method: &str, path: &str, body: &str) -> Reply {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(Duration::from_secs(120))).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw).unwrap();
    let split = raw.windows(4).position(|w| w == b"\r\n\r\n").expect("no end of headers");
    let head = String::from_utf8(raw[..split].to_vec()).unwrap();
    let mut payload = raw[split + 4..].to_vec();
    let mut lines = head.lines();
    let status: u16 = lines.next().unwrap().split(' ').nth(1).unwrap().parse().unwrap();
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_owned()))
        .collect();
    let header = |name: &str| headers.iter().find(|(k, _)| k == name).map(|(_, v)| v.clone()).unwrap_or_default();
    if header("transfer-encoding").contains("chunked") {
        payload = dechunk(&payload);
    }
    Reply { status, content_type: header("content-type"), body: String::from_utf8(payload).unwrap() }
}

fn dechunk(mut data: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    loop {
        let line_end = data.windows(2).position(|w| w == b"\r\n").expect("chunk size line");
        let size_text = std::str::from_utf8(&data[..line_end]).unwrap();
        let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16).unwrap();
        data = &data[line_end + 2..];
        if size == 0 {
            return out;
        }
        out.extend_from_slice(&data[..size]);
        data = &data[size + 2..];
    }
}

fn post(addr: SocketAddr, path: &str, body: &Value) -> Reply {
    http(addr, "POST", path, &body.to_string())
}

fn start(engine: Engine, batch_window: Duration) -> Server {
    let options = ServerOptions { batch_window, ..ServerOptions::new(MODEL) };
    Server::start(engine, "127.0.0.1:0", options).unwrap()
}

fn greedy_request(engine: &Engine, prompt: Vec<u32>, max_new_tokens: usize) -> GenerationRequest {
    engine.request(prompt, SamplingParams::greedy(), max_new_tokens)
}

/// The engine's own greedy text for `prompt`, before the engine moves into a server.
fn engine_text(engine: &Engine, prompt: Vec<u32>, max_new_tokens: usize) -> String {
    engine.generate_all(&[greedy_request(engine, prompt, max_new_tokens)]).unwrap().remove(0).text
}

#[test]
fn models_lists_the_served_model() {
    let server = start(decoder_engine(WINDOW), Duration::ZERO);
    let reply = http(server.local_addr(), "GET", "/v1/models", "");
    assert_eq!(reply.status, 200);
    let body = reply.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["data"][0]["id"], MODEL);
    assert_eq!(body["data"][0]["object"], "model");
    server.shutdown().unwrap();
}

#[test]
fn completion_matches_the_engine_and_streaming_matches_the_whole_text() {
    let engine = decoder_engine(WINDOW);
    let expected = engine_text(&engine, ids("To be, or"), 12);
    assert!(!expected.is_empty());
    let server = start(engine, Duration::ZERO);
    let addr = server.local_addr();
    let request = json!({"model": MODEL, "prompt": "To be, or", "max_tokens": 12, "temperature": 0});

    let reply = post(addr, "/v1/completions", &request);
    assert_eq!(reply.status, 200, "{}", reply.body);
    assert!(reply.content_type.starts_with("application/json"));
    let body = reply.json();
    assert_eq!(body["object"], "text_completion");
    assert_eq!(body["model"], MODEL);
    assert_eq!(body["choices"][0]["text"], expected.as_str());
    assert!(["length", "stop"].contains(&body["choices"][0]["finish_reason"].as_str().unwrap()));
    assert_eq!(body["usage"]["prompt_tokens"], 9);
    let completion_tokens = body["usage"]["completion_tokens"].as_u64().unwrap();
    assert!((1..=12).contains(&completion_tokens));
    assert_eq!(body["usage"]["total_tokens"], 9 + completion_tokens);

    let mut streamed_request = request.clone();
    streamed_request["stream"] = json!(true);
    streamed_request["stream_options"] = json!({"include_usage": true});
    let reply = post(addr, "/v1/completions", &streamed_request);
    assert_eq!(reply.status, 200);
    assert!(reply.content_type.starts_with("text/event-stream"), "{}", reply.content_type);
    let events = reply.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"].get(0).and_then(|choice| choice["text"].as_str()).map(str::to_owned))
        .collect();
    assert_eq!(text, expected, "concatenated deltas equal the whole text");
    let last_choice = &chunks[chunks.len() - 2]["choices"][0];
    assert_eq!(last_choice["finish_reason"], body["choices"][0]["finish_reason"]);
    assert!(chunks[..chunks.len() - 2].iter().all(|c| c["choices"][0]["finish_reason"].is_null()));
    assert_eq!(chunks.last().unwrap()["usage"], body["usage"], "the usage chunk comes last");
    assert!(chunks.iter().all(|c| c["object"] == "text_completion" && c["id"] == chunks[0]["id"]));
    server.shutdown().unwrap();
}

#[test]
fn same_seed_same_text_and_stop_strings_cut_the_text() {
    let engine = decoder_engine(WINDOW);
    let expected = engine_text(&engine, ids("hello"), 20);
    let server = start(engine, Duration::ZERO);
    let addr = server.local_addr();

    let sampled = json!({"prompt": "hello", "max_tokens": 10, "temperature": 1.3, "top_k": 50, "top_p": 0.9, "min_p": 0.01, "repetition_penalty": 1.2, "seed": 42});
    let first = post(addr, "/v1/completions", &sampled).json();
    let second = post(addr, "/v1/completions", &sampled).json();
    assert_eq!(first["choices"][0]["text"], second["choices"][0]["text"]);

    // A stop string taken from the middle of the greedy text ends it right before its first match.
    let stop: String = expected.chars().nth(3).unwrap().to_string();
    let cut = &expected[..expected.find(&stop).unwrap()];
    let greedy = json!({"prompt": "hello", "max_tokens": 20, "temperature": 0, "stop": [stop, "never-produced"]});
    let body = post(addr, "/v1/completions", &greedy).json();
    assert_eq!(body["choices"][0]["text"], cut);
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    server.shutdown().unwrap();
}

#[test]
fn chat_completion_uses_the_chat_template() {
    let engine = decoder_engine(WINDOW);
    let messages = [Message::new(Role::System, "Be brief."), Message::new(Role::User, "Hi!")];
    let template = ChatTemplate::new(engine.tokenizer().as_ref()).unwrap();
    let prompt = template.encode_prompt(engine.tokenizer().as_ref(), &messages);
    let prompt_len = prompt.len();
    let expected = engine_text(&engine, prompt, 10);
    let server = start(engine, Duration::ZERO);
    let addr = server.local_addr();
    let request = json!({
        "model": MODEL,
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": "Hi!"}]}],
        "max_tokens": 10,
        "temperature": 0,
    });

    let body = post(addr, "/v1/chat/completions", &request).json();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], expected.as_str());
    assert_eq!(body["usage"]["prompt_tokens"], prompt_len);

    let mut streamed = request.clone();
    streamed["stream"] = json!(true);
    let events = post(addr, "/v1/chat/completions", &streamed).events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = events[..events.len() - 1].iter().map(|e| serde_json::from_str(e).unwrap()).collect();
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    assert!(chunks.iter().all(|c| c["object"] == "chat.completion.chunk"));
    let content: String =
        chunks.iter().filter_map(|c| c["choices"][0]["delta"]["content"].as_str().map(str::to_owned)).collect();
    assert_eq!(content, expected);
    assert_eq!(chunks.last().unwrap()["choices"][0]["finish_reason"], body["choices"][0]["finish_reason"]);
    server.shutdown().unwrap();
}

#[test]
fn concurrent_requests_are_answered_correctly_in_one_batch() {
    let engine = decoder_engine(WINDOW);
    let prompts = ["abc", "The quick brown", "hello there"];
    let expected: Vec<String> = prompts.iter().map(|p| engine_text(&engine, ids(p), 8)).collect();
    // A wide window makes requests sent together land in one batch deterministically.
    let server = start(engine, Duration::from_millis(500));
    let addr = server.local_addr();
    let threads: Vec<_> = prompts
        .iter()
        .map(|prompt| {
            let request = json!({"prompt": prompt, "max_tokens": 8, "temperature": 0, "stream": prompt.len() % 2 == 0});
            std::thread::spawn(move || post(addr, "/v1/completions", &request))
        })
        .collect();
    for ((thread, expected), prompt) in threads.into_iter().zip(&expected).zip(prompts) {
        let reply = thread.join().unwrap();
        assert_eq!(reply.status, 200);
        let text = if prompt.len() % 2 == 0 {
            let events = reply.events();
            events[..events.len() - 1]
                .iter()
                .map(|e| serde_json::from_str::<Value>(e).unwrap()["choices"][0]["text"].as_str().unwrap().to_owned())
                .collect::<String>()
        } else {
            reply.json()["choices"][0]["text"].as_str().unwrap().to_owned()
        };
        assert_eq!(&text, expected, "prompt {prompt:?}");
    }
    let sizes = server.batch_sizes();
    assert_eq!(sizes.iter().sum::<usize>(), 3, "{sizes:?}");
    assert!(sizes.iter().any(|&n| n >= 2), "requests sent together share a batch: {sizes:?}");
    server.shutdown().unwrap();
}

/// Posts `body` and checks the status and OpenAI's error shape; returns the error object.
fn expect_error(addr: SocketAddr, path: &str, body: &str, status: u16) -> Value {
    let reply = http(addr, "POST", path, body);
    assert_eq!(reply.status, status, "{body} -> {}", reply.body);
    assert!(reply.content_type.starts_with("application/json"), "{body}");
    let error = reply.json()["error"].clone();
    assert!(error["message"].as_str().is_some_and(|m| !m.is_empty()), "{error}");
    assert!(error["type"].is_string() && error.get("param").is_some() && error.get("code").is_some(), "{error}");
    error
}

#[test]
fn malformed_requests_get_4xx_with_an_openai_error_body() {
    let server = start(decoder_engine(WINDOW), Duration::ZERO);
    let addr = server.local_addr();
    let completions = "/v1/completions";
    let chat = "/v1/chat/completions";

    let error = expect_error(addr, completions, "{\"prompt\": \"hi\",", 400);
    assert_eq!(error["type"], "invalid_request_error");
    assert!(error["message"].as_str().unwrap().contains("JSON"));
    expect_error(addr, completions, "[1, 2]", 400);
    assert_eq!(expect_error(addr, completions, r#"{"max_tokens": 4}"#, 400)["param"], "prompt");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": ""}"#, 400)["param"], "prompt");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "max_tokens": -3}"#, 400)["param"], "max_tokens");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "max_tokens": "8"}"#, 400)["param"], "max_tokens");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "temperature": "hot"}"#, 400)["param"], "temperature");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "temperature": -1}"#, 400)["param"], "temperature");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "top_p": 0}"#, 400)["param"], "top_p");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "top_k": -5}"#, 400)["param"], "top_k");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "min_p": 1.5}"#, 400)["param"], "min_p");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "repetition_penalty": 0}"#, 400)["param"], "repetition_penalty");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "seed": 1.5}"#, 400)["param"], "seed");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "stop": [""]}"#, 400)["param"], "stop");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "stop": 7}"#, 400)["param"], "stop");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "stream": "yes"}"#, 400)["param"], "stream");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": "hi", "n": 2}"#, 400)["param"], "n");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": ["a", "b"]}"#, 400)["param"], "prompt");
    assert_eq!(expect_error(addr, completions, r#"{"prompt": [1, 99999]}"#, 400)["param"], "prompt");
    let too_long = json!({"prompt": "x".repeat(WINDOW + 1)}).to_string();
    let error = expect_error(addr, completions, &too_long, 400);
    assert_eq!(error["code"], "context_length_exceeded");
    assert!(error["message"].as_str().unwrap().contains(&format!("{}", WINDOW + 1)), "{error}");
    let error = expect_error(addr, completions, r#"{"model": "gpt-4", "prompt": "hi"}"#, 404);
    assert_eq!(error["code"], "model_not_found");
    assert_eq!(error["param"], "model");

    assert_eq!(expect_error(addr, chat, r#"{"model": "tiny"}"#, 400)["param"], "messages");
    assert_eq!(expect_error(addr, chat, r#"{"messages": []}"#, 400)["param"], "messages");
    assert_eq!(expect_error(addr, chat, r#"{"messages": [{"role": "wizard", "content": "hi"}]}"#, 400)["param"], "messages[0].role");
    assert_eq!(expect_error(addr, chat, r#"{"messages": [{"role": "user"}]}"#, 400)["param"], "messages[0].content");
    let long_chat = json!({"messages": [{"role": "user", "content": "y".repeat(WINDOW)}]}).to_string();
    assert_eq!(expect_error(addr, chat, &long_chat, 400)["code"], "context_length_exceeded");
    assert_eq!(expect_error(addr, "/v1/embeddings", "{}", 404)["code"], "unknown_url");

    // None of that disturbed the server.
    let ok = post(addr, completions, &json!({"prompt": "hi", "max_tokens": 3, "temperature": 0}));
    assert_eq!(ok.status, 200, "{}", ok.body);
    assert!(server.batch_sizes().iter().all(|&n| n == 1));
    server.shutdown().unwrap();
}

#[test]
fn a_client_that_leaves_mid_stream_does_not_disturb_the_others() {
    let server = start(decoder_engine(WINDOW), Duration::from_millis(300));
    let addr = server.local_addr();
    // The leaver asks for a long stream and hangs up after the first bytes.
    let leaver = std::thread::spawn(move || {
        let mut stream = TcpStream::connect(addr).unwrap();
        let body = json!({"prompt": "a", "max_tokens": 60, "temperature": 0, "stream": true}).to_string();
        write!(stream, "POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n{body}", body.len()).unwrap();
        let mut first = [0u8; 16];
        stream.read_exact(&mut first).unwrap();
    });
    let stayer = post(addr, "/v1/completions", &json!({"prompt": "abc", "max_tokens": 40, "temperature": 0}));
    leaver.join().unwrap();
    assert_eq!(stayer.status, 200);
    assert!(stayer.json()["choices"][0]["text"].is_string());
    server.shutdown().unwrap();
}
