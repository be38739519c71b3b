//! Conversation datasets as JSONL, in the two shapes people already have:
//!
//! ```text
//! {"messages": [{"role": "user", "content": "Who's there?"}, {"role": "assistant", "content": "Nay, answer me."}]}
//! {"prompt": "Who's there?", "completion": "Nay, answer me."}
//! ```
//!
//! A `prompt`/`completion` record becomes a user turn and an assistant turn. Other top-level
//! keys (an `id`, a `source`) are ignored. Blank lines are not records (they are counted).
//! A malformed record is an error naming the file, line and reason ([`ReadMode::Strict`]), or is
//! skipped and counted per reason with the first few listed by line ([`ReadMode::Lenient`]):
//! records are never lost silently. [`write_conversations`] writes the `messages` shape.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use cascade_core::{Message, Role};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::error::PosttrainError;

/// How many skipped records a [`DatasetReport`] lists by line.
pub const LISTED_SKIPS: usize = 20;

/// One conversation: the turns in order. Serializes as `{"messages": [...]}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Conversation {
    /// The turns, in order.
    pub messages: Vec<Message>,
}

impl Conversation {
    /// A conversation of `messages`.
    pub fn new(messages: Vec<Message>) -> Self {
        Self { messages }
    }

    /// One user turn answered by one assistant turn.
    pub fn exchange(prompt: impl Into<String>, reply: impl Into<String>) -> Self {
        Self::new(vec![Message::new(Role::User, prompt), Message::new(Role::Assistant, reply)])
    }

    /// The last assistant turn and every turn before it (the context it answers), if any.
    pub fn last_reply(&self) -> Option<(&[Message], &Message)> {
        let idx = self.messages.iter().rposition(|m| m.role == Role::Assistant)?;
        Some((&self.messages[..idx], &self.messages[idx]))
    }
}

/// Why a record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum SkipReason {
    /// The line is not valid JSON.
    InvalidJson,
    /// The line is JSON but not an object.
    NotAnObject,
    /// Neither `messages` nor `prompt` + `completion`.
    UnknownShape,
    /// Both `messages` and `prompt`/`completion`: which one is meant is unclear.
    AmbiguousShape,
    /// A message is not `{"role": "system"|"user"|"assistant", "content": "<text>"}`, or a
    /// `prompt`/`completion` is not a string.
    BadMessage,
    /// `messages` is empty.
    EmptyConversation,
    /// A turn's content is empty or only whitespace.
    EmptyContent,
    /// No assistant turn: nothing to learn from.
    NoAssistantTurn,
}

impl SkipReason {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::UnknownShape => "unknown_shape",
            Self::AmbiguousShape => "ambiguous_shape",
            Self::BadMessage => "bad_message",
            Self::EmptyConversation => "empty_conversation",
            Self::EmptyContent => "empty_content",
            Self::NoAssistantTurn => "no_assistant_turn",
        }
    }
}

impl std::fmt::Display for SkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A rejected record: why, and the details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordProblem {
    /// The reason, counted in reports.
    pub reason: SkipReason,
    /// What exactly is wrong.
    pub message: String,
}

fn problem(reason: SkipReason, message: impl Into<String>) -> RecordProblem {
    RecordProblem { reason, message: message.into() }
}

/// What to do with a malformed record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ReadMode {
    /// The first malformed record is an error naming its file and line.
    Strict,
    /// Malformed records are skipped and counted per reason.
    #[default]
    Lenient,
}

/// What reading one dataset file kept and skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DatasetReport {
    /// The file read.
    pub path: String,
    /// Non-blank lines (records) read.
    pub records: u64,
    /// Records kept.
    pub kept: u64,
    /// Blank lines (not records).
    pub blank_lines: u64,
    /// Skipped records per reason.
    pub skipped: BTreeMap<SkipReason, u64>,
    /// The first [`LISTED_SKIPS`] skipped records as `file:line: reason: message`.
    pub skipped_examples: Vec<String>,
}

impl DatasetReport {
    /// Records skipped for any reason.
    pub fn skipped_total(&self) -> u64 {
        self.skipped.values().sum()
    }
}

/// Parses one JSONL record in either shape.
pub fn parse_record(line: &str) -> Result<Conversation, RecordProblem> {
    let value: Value = serde_json::from_str(line).map_err(|e| problem(SkipReason::InvalidJson, e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(problem(SkipReason::NotAnObject, "expected a JSON object"));
    };
    let has_pair = object.contains_key("prompt") || object.contains_key("completion");
    let messages = match (object.get("messages"), has_pair) {
        (Some(_), true) => {
            return Err(problem(SkipReason::AmbiguousShape, "has both `messages` and `prompt`/`completion`"));
        }
        (Some(messages), false) => parse_messages(messages)?,
        (None, true) => {
            let text = |key: &str| match object.get(key) {
                Some(Value::String(s)) => Ok(s.clone()),
                Some(other) => Err(problem(SkipReason::BadMessage, format!("`{key}` is {}, not a string", kind(other)))),
                None => Err(problem(SkipReason::UnknownShape, format!("has no `{key}`"))),
            };
            vec![Message::new(Role::User, text("prompt")?), Message::new(Role::Assistant, text("completion")?)]
        }
        (None, false) => {
            return Err(problem(SkipReason::UnknownShape, "expected `messages` or `prompt` + `completion`"));
        }
    };
    if messages.is_empty() {
        return Err(problem(SkipReason::EmptyConversation, "`messages` is empty"));
    }
    if let Some(idx) = messages.iter().position(|m| m.content.trim().is_empty()) {
        return Err(problem(SkipReason::EmptyContent, format!("turn {} ({:?}) has no text", idx + 1, messages[idx].role)));
    }
    if !messages.iter().any(|m| m.role == Role::Assistant) {
        return Err(problem(SkipReason::NoAssistantTurn, "no assistant turn to learn from"));
    }
    Ok(Conversation::new(messages))
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

fn parse_messages(value: &Value) -> Result<Vec<Message>, RecordProblem> {
    let Value::Array(items) = value else {
        return Err(problem(SkipReason::BadMessage, format!("`messages` is {}, not an array", kind(value))));
    };
    items
        .iter()
        .enumerate()
        .map(|(idx, item)| {
            let at = |what: String| problem(SkipReason::BadMessage, format!("message {}: {what}", idx + 1));
            let Value::Object(fields) = item else {
                return Err(at(format!("is {}, not an object", kind(item))));
            };
            let role = match fields.get("role") {
                Some(Value::String(role)) => match role.as_str() {
                    "system" => Role::System,
                    "user" => Role::User,
                    "assistant" => Role::Assistant,
                    other => return Err(at(format!("unknown role `{other}` (system, user or assistant)"))),
                },
                Some(other) => return Err(at(format!("`role` is {}, not a string", kind(other)))),
                None => return Err(at("has no `role`".into())),
            };
            match fields.get("content") {
                Some(Value::String(content)) => Ok(Message::new(role, content.clone())),
                Some(other) => Err(at(format!("`content` is {}, not a string", kind(other)))),
                None => Err(at("has no `content`".into())),
            }
        })
        .collect()
}

/// Reads every conversation of the JSONL file at `path`.
pub fn read_conversations(path: &Path, mode: ReadMode) -> Result<(Vec<Conversation>, DatasetReport), PosttrainError> {
    let file = File::open(path).map_err(|e| PosttrainError::io(path, e))?;
    let mut report = DatasetReport { path: path.display().to_string(), ..Default::default() };
    let mut conversations = Vec::new();
    for (idx, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| PosttrainError::io(path, e))?;
        let line_no = idx as u64 + 1;
        if line.trim().is_empty() {
            report.blank_lines += 1;
            continue;
        }
        report.records += 1;
        match parse_record(&line) {
            Ok(conversation) => {
                report.kept += 1;
                conversations.push(conversation);
            }
            Err(RecordProblem { reason, message }) => {
                if mode == ReadMode::Strict {
                    return Err(PosttrainError::Record { path: path.to_path_buf(), line: line_no, reason, message });
                }
                *report.skipped.entry(reason).or_default() += 1;
                if report.skipped_examples.len() < LISTED_SKIPS {
                    report.skipped_examples.push(format!("{}:{line_no}: {reason}: {message}", path.display()));
                }
            }
        }
    }
    Ok((conversations, report))
}

/// Writes `conversations` to `path` in the `messages` shape, one per line.
pub fn write_conversations(path: &Path, conversations: &[Conversation]) -> Result<(), PosttrainError> {
    let file = File::create(path).map_err(|e| PosttrainError::io(path, e))?;
    let mut out = BufWriter::new(file);
    for conversation in conversations {
        serde_json::to_writer(&mut out, conversation)
            .map_err(|e| PosttrainError::Data { path: path.to_path_buf(), message: e.to_string() })?;
        out.write_all(b"\n").map_err(|e| PosttrainError::io(path, e))?;
    }
    out.flush().map_err(|e| PosttrainError::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(line: &str, expected: Result<Conversation, SkipReason>) {
        let got = parse_record(line).map_err(|p| p.reason);
        assert_eq!(got, expected, "{line}");
    }

    #[test]
    fn both_shapes_parse_and_malformed_records_have_a_reason() {
        let pair = Conversation::exchange("Who's there?", "Nay, answer me.");
        check(r#"{"prompt":"Who's there?","completion":"Nay, answer me."}"#, Ok(pair.clone()));
        check(
            r#"{"id":7,"messages":[{"role":"user","content":"Who's there?"},{"role":"assistant","content":"Nay, answer me."}]}"#,
            Ok(pair),
        );
        let with_system = r#"{"messages":[{"role":"system","content":"s"},{"role":"user","content":"u"},{"role":"assistant","content":"a"}]}"#;
        assert_eq!(parse_record(with_system).unwrap().messages.len(), 3);
        let cases = [
            ("{not json", SkipReason::InvalidJson),
            ("[1,2]", SkipReason::NotAnObject),
            (r#"{"text":"x"}"#, SkipReason::UnknownShape),
            (r#"{"prompt":"x"}"#, SkipReason::UnknownShape),
            (r#"{"prompt":"x","completion":"y","messages":[]}"#, SkipReason::AmbiguousShape),
            (r#"{"prompt":"x","completion":3}"#, SkipReason::BadMessage),
            (r#"{"messages":"hi"}"#, SkipReason::BadMessage),
            (r#"{"messages":[{"role":"bot","content":"x"}]}"#, SkipReason::BadMessage),
            (r#"{"messages":[{"role":"user"}]}"#, SkipReason::BadMessage),
            (r#"{"messages":[{"role":"user","content":["x"]}]}"#, SkipReason::BadMessage),
            (r#"{"messages":[]}"#, SkipReason::EmptyConversation),
            (r#"{"prompt":"x","completion":"  "}"#, SkipReason::EmptyContent),
            (r#"{"messages":[{"role":"user","content":"x"}]}"#, SkipReason::NoAssistantTurn),
        ];
        for (line, reason) in cases {
            check(line, Err(reason));
        }
    }

    fn sample_file(dir: &Path) -> std::path::PathBuf {
        let path = dir.join("mine.jsonl");
        let text = [
            r#"{"prompt":"a","completion":"b"}"#,
            "",
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            "{oops",
            r#"{"messages":[{"role":"user","content":"c"},{"role":"assistant","content":"d"}]}"#,
            "{oops again",
        ]
        .join("\n");
        std::fs::write(&path, text).unwrap();
        path
    }

    #[test]
    fn strict_names_file_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path());
        let err = read_conversations(&path, ReadMode::Strict).unwrap_err().to_string();
        assert!(err.contains("mine.jsonl:3: no_assistant_turn"), "{err}");
    }

    #[test]
    fn lenient_counts_every_skip_per_reason() {
        let dir = tempfile::tempdir().unwrap();
        let path = sample_file(dir.path());
        let (conversations, report) = read_conversations(&path, ReadMode::Lenient).unwrap();
        assert_eq!(conversations, vec![Conversation::exchange("a", "b"), Conversation::exchange("c", "d")]);
        assert_eq!((report.records, report.kept, report.blank_lines), (5, 2, 1));
        assert_eq!(report.skipped[&SkipReason::InvalidJson], 2);
        assert_eq!(report.skipped[&SkipReason::NoAssistantTurn], 1);
        assert_eq!(report.records, report.kept + report.skipped_total(), "nothing lost silently");
        assert!(report.skipped_examples[1].contains("mine.jsonl:4: invalid_json"), "{:?}", report.skipped_examples);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["skipped"]["invalid_json"], 2);
    }

    #[test]
    fn written_files_read_back_identically() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("out.jsonl");
        let conversations = vec![
            Conversation::exchange("HAM: Who's there?", "BER: Nay,\n answer \"me\"."),
            Conversation::new(vec![
                Message::new(Role::System, "You are Hamlet."),
                Message::new(Role::User, "<|assistant|> is text here"),
                Message::new(Role::Assistant, "ok"),
            ]),
        ];
        write_conversations(&path, &conversations).unwrap();
        let first = std::fs::read_to_string(&path).unwrap();
        assert!(first.starts_with(r#"{"messages":[{"role":"user","content":"HAM: Who's there?"}"#), "{first}");
        let (back, report) = read_conversations(&path, ReadMode::Strict).unwrap();
        assert_eq!(back, conversations);
        assert_eq!(report.kept, 2);
    }

    #[test]
    fn last_reply_splits_context_and_reply() {
        let c = Conversation::exchange("p", "r");
        let (context, reply) = c.last_reply().unwrap();
        assert_eq!(context, &[Message::new(Role::User, "p")]);
        assert_eq!(reply.content, "r");
    }
}
