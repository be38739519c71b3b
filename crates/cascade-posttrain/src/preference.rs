//! Preference pairs for DPO: JSONL records `{"prompt", "chosen", "rejected"}` where the prompt is
//! a string (one user turn) or a message list ending with a user turn, and each reply is a
//! string or a one-message list holding the assistant turn. Strict reading stops at the first
//! bad record naming its file and line; lenient reading skips it and counts the reason.
//! Also builds the default pairs from conversations: `chosen` is the real reply, `rejected`
//! comes from a generator (the SFT model's own sample) or from another conversation.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::Path;

use cascade_core::{Message, Role};
use cascade_pretrain::rng::SplitMix64;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::dataset::{Conversation, ReadMode};
use crate::error::PosttrainError;

/// One preference: for `prompt`, the reply `chosen` is preferred over `rejected`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreferencePair {
    /// The conversation before the reply; its last turn is the user's.
    pub prompt: Vec<Message>,
    /// The preferred assistant reply.
    pub chosen: String,
    /// The dispreferred assistant reply.
    pub rejected: String,
}

impl PreferencePair {
    /// A pair whose prompt is one user turn.
    pub fn new(prompt: impl Into<String>, chosen: impl Into<String>, rejected: impl Into<String>) -> Self {
        Self { prompt: vec![Message::new(Role::User, prompt)], chosen: chosen.into(), rejected: rejected.into() }
    }

    /// The prompt followed by `reply` as the assistant turn (what the chat template renders).
    pub fn with_reply(&self, reply: &str) -> Vec<Message> {
        let mut messages = self.prompt.clone();
        messages.push(Message::new(Role::Assistant, reply));
        messages
    }

    /// The last prompt turn's text (what the reply answers).
    pub fn last_turn(&self) -> &str {
        self.prompt.last().map_or("", |m| m.content.as_str())
    }
}

/// Why a preference record was rejected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PairSkipReason {
    /// The line is not valid JSON.
    InvalidJson,
    /// The line is JSON but not an object.
    NotAnObject,
    /// `prompt`, `chosen` or `rejected` is missing.
    MissingKey,
    /// A field is neither a string nor a well-formed message list.
    BadMessage,
    /// A text is empty or only whitespace.
    EmptyContent,
    /// The prompt does not end with a user turn, or a reply is not one assistant turn.
    BadRoles,
    /// `chosen` and `rejected` are the same text: no preference to learn.
    IdenticalReplies,
}

impl PairSkipReason {
    /// The snake_case name used in reports.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InvalidJson => "invalid_json",
            Self::NotAnObject => "not_an_object",
            Self::MissingKey => "missing_key",
            Self::BadMessage => "bad_message",
            Self::EmptyContent => "empty_content",
            Self::BadRoles => "bad_roles",
            Self::IdenticalReplies => "identical_replies",
        }
    }
}

impl std::fmt::Display for PairSkipReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A record's problem: the counted reason and the details.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PairProblem {
    /// The reason, counted in reports.
    pub reason: PairSkipReason,
    /// What exactly is wrong.
    pub message: String,
}

fn problem(reason: PairSkipReason, message: impl Into<String>) -> PairProblem {
    PairProblem { reason, message: message.into() }
}

fn messages_of(key: &str, value: &Value) -> Result<Vec<Message>, PairProblem> {
    match value {
        Value::String(text) => Ok(vec![Message::new(if key == "prompt" { Role::User } else { Role::Assistant }, text.clone())]),
        Value::Array(_) => serde_json::from_value::<Vec<Message>>(value.clone())
            .map_err(|e| problem(PairSkipReason::BadMessage, format!("`{key}`: {e}"))),
        _ => Err(problem(PairSkipReason::BadMessage, format!("`{key}` is neither a string nor a message list"))),
    }
}

fn reply_of(key: &str, value: &Value) -> Result<String, PairProblem> {
    let messages = messages_of(key, value)?;
    match messages.as_slice() {
        [Message { role: Role::Assistant, content }] => Ok(content.clone()),
        _ => Err(problem(PairSkipReason::BadRoles, format!("`{key}` must be one assistant message, got {} message(s)", messages.len()))),
    }
}

/// Parses one JSONL preference record.
pub fn parse_pair(line: &str) -> Result<PreferencePair, PairProblem> {
    let value: Value = serde_json::from_str(line).map_err(|e| problem(PairSkipReason::InvalidJson, e.to_string()))?;
    let Value::Object(object) = value else {
        return Err(problem(PairSkipReason::NotAnObject, "expected a JSON object"));
    };
    let field = |key: &str| object.get(key).ok_or_else(|| problem(PairSkipReason::MissingKey, format!("has no `{key}`")));
    let prompt = messages_of("prompt", field("prompt")?)?;
    let chosen = reply_of("chosen", field("chosen")?)?;
    let rejected = reply_of("rejected", field("rejected")?)?;
    if prompt.is_empty() {
        return Err(problem(PairSkipReason::EmptyContent, "`prompt` has no message"));
    }
    if let Some(idx) = prompt.iter().position(|m| m.content.trim().is_empty()) {
        return Err(problem(PairSkipReason::EmptyContent, format!("prompt turn {} has no text", idx + 1)));
    }
    for (key, text) in [("chosen", &chosen), ("rejected", &rejected)] {
        if text.trim().is_empty() {
            return Err(problem(PairSkipReason::EmptyContent, format!("`{key}` has no text")));
        }
    }
    if prompt.last().is_some_and(|m| m.role != Role::User) {
        return Err(problem(PairSkipReason::BadRoles, "the prompt's last turn must be the user's"));
    }
    if chosen == rejected {
        return Err(problem(PairSkipReason::IdenticalReplies, "`chosen` and `rejected` are the same text"));
    }
    Ok(PreferencePair { prompt, chosen, rejected })
}

/// What reading one preference file kept and skipped.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PairReport {
    /// The file read.
    pub path: String,
    /// Non-blank lines read.
    pub records: u64,
    /// Pairs kept.
    pub kept: u64,
    /// Skipped records per reason.
    pub skipped: BTreeMap<PairSkipReason, u64>,
    /// The first few skipped records as `file:line: reason: message`.
    pub skipped_examples: Vec<String>,
}

/// How many skipped records a [`PairReport`] lists.
pub const LISTED_PAIR_SKIPS: usize = 5;

/// Reads every preference pair of the JSONL file at `path`.
pub fn read_pairs(path: &Path, mode: ReadMode) -> Result<(Vec<PreferencePair>, PairReport), PosttrainError> {
    let file = File::open(path).map_err(|e| PosttrainError::io(path, e))?;
    let mut report = PairReport { path: path.display().to_string(), ..Default::default() };
    let mut pairs = Vec::new();
    for (idx, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| PosttrainError::io(path, e))?;
        let line_no = idx as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        report.records += 1;
        match parse_pair(&line) {
            Ok(pair) => {
                report.kept += 1;
                pairs.push(pair);
            }
            Err(PairProblem { reason, message }) => {
                if mode == ReadMode::Strict {
                    return Err(PosttrainError::PairRecord { path: path.to_path_buf(), line: line_no, reason, message });
                }
                *report.skipped.entry(reason).or_default() += 1;
                if report.skipped_examples.len() < LISTED_PAIR_SKIPS {
                    report.skipped_examples.push(format!("{}:{line_no}: {reason}: {message}", path.display()));
                }
            }
        }
    }
    Ok((pairs, report))
}

/// Writes `pairs` to `path`, one `{"prompt": [messages], "chosen", "rejected"}` per line.
pub fn write_pairs(path: &Path, pairs: &[PreferencePair]) -> Result<(), PosttrainError> {
    let file = File::create(path).map_err(|e| PosttrainError::io(path, e))?;
    let mut out = BufWriter::new(file);
    for pair in pairs {
        serde_json::to_writer(&mut out, pair).map_err(|e| PosttrainError::Data { path: path.to_path_buf(), message: e.to_string() })?;
        out.write_all(b"\n").map_err(|e| PosttrainError::io(path, e))?;
    }
    out.flush().map_err(|e| PosttrainError::io(path, e))
}

/// A seeded choice of `n` distinct indices of `0..len` (all of them, shuffled, when `n >= len`).
pub fn seeded_subset(len: usize, n: usize, seed: u64) -> Vec<usize> {
    let mut rng = SplitMix64::new(seed ^ 0xD90_D90);
    let mut order: Vec<usize> = (0..len).collect();
    for i in (1..len).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        order.swap(i, j);
    }
    order.truncate(n.min(len));
    order
}

/// Pairs whose `rejected` is the real reply of another conversation, drawn with `seed` among
/// those with a different reply text. Returns the pairs and how many conversations had no reply
/// or no other reply text to pair with (skipped).
pub fn mismatched_pairs(conversations: &[Conversation], seed: u64) -> (Vec<PreferencePair>, u64) {
    let exchanges: Vec<(Vec<Message>, String)> = conversations
        .iter()
        .filter_map(|c| c.last_reply().map(|(context, reply)| (context.to_vec(), reply.content.clone())))
        .collect();
    let mut skipped = (conversations.len() - exchanges.len()) as u64;
    let mut rng = SplitMix64::new(seed ^ 0x4D15_4D47);
    let mut pairs = Vec::with_capacity(exchanges.len());
    for (idx, (context, chosen)) in exchanges.iter().enumerate() {
        let n = exchanges.len() as u64;
        // A few seeded draws, then a scan: the scan only matters when most replies are equal.
        let draw = (0..8).map(|_| rng.below(n) as usize).find(|&j| j != idx && exchanges[j].1 != *chosen);
        let other = draw.or_else(|| (1..exchanges.len()).map(|k| (idx + k) % exchanges.len()).find(|&j| exchanges[j].1 != *chosen));
        match other {
            Some(j) if context.last().is_some_and(|m| m.role == Role::User) => {
                pairs.push(PreferencePair { prompt: context.clone(), chosen: chosen.clone(), rejected: exchanges[j].1.clone() });
            }
            _ => skipped += 1,
        }
    }
    (pairs, skipped)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reason(line: &str) -> PairSkipReason {
        parse_pair(line).unwrap_err().reason
    }

    #[test]
    fn strings_and_message_lists_parse_to_the_same_pair() {
        let plain = parse_pair(r#"{"prompt":"Who's there?","chosen":"Nay, answer me.","rejected":"Hello."}"#).unwrap();
        assert_eq!(plain, PreferencePair::new("Who's there?", "Nay, answer me.", "Hello."));
        let listed = parse_pair(
            r#"{"prompt":[{"role":"user","content":"Who's there?"}],"chosen":[{"role":"assistant","content":"Nay, answer me."}],"rejected":"Hello."}"#,
        )
        .unwrap();
        assert_eq!(listed, plain);
        let with_system = r#"{"prompt":[{"role":"system","content":"s"},{"role":"user","content":"u"}],"chosen":"a","rejected":"b"}"#;
        assert_eq!(parse_pair(with_system).unwrap().prompt.len(), 2);
    }

    #[test]
    fn malformed_records_have_a_reason() {
        assert_eq!(reason("{oops"), PairSkipReason::InvalidJson);
        assert_eq!(reason("[1]"), PairSkipReason::NotAnObject);
        assert_eq!(reason(r#"{"prompt":"p","chosen":"c"}"#), PairSkipReason::MissingKey);
        assert_eq!(reason(r#"{"prompt":3,"chosen":"c","rejected":"r"}"#), PairSkipReason::BadMessage);
        assert_eq!(reason(r#"{"prompt":[{"role":"bot","content":"x"}],"chosen":"c","rejected":"r"}"#), PairSkipReason::BadMessage);
        assert_eq!(reason(r#"{"prompt":"p","chosen":" ","rejected":"r"}"#), PairSkipReason::EmptyContent);
        assert_eq!(reason(r#"{"prompt":[],"chosen":"c","rejected":"r"}"#), PairSkipReason::EmptyContent);
        assert_eq!(reason(r#"{"prompt":[{"role":"assistant","content":"x"}],"chosen":"c","rejected":"r"}"#), PairSkipReason::BadRoles);
        assert_eq!(reason(r#"{"prompt":"p","chosen":[{"role":"user","content":"c"}],"rejected":"r"}"#), PairSkipReason::BadRoles);
        assert_eq!(reason(r#"{"prompt":"p","chosen":"same","rejected":"same"}"#), PairSkipReason::IdenticalReplies);
    }

    #[test]
    fn strict_names_file_and_line_lenient_counts_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pairs.jsonl");
        let good = PreferencePair::new("p", "c", "r");
        write_pairs(&path, std::slice::from_ref(&good)).unwrap();
        let mut text = std::fs::read_to_string(&path).unwrap();
        text.push_str("\n{\"prompt\":\"p\",\"chosen\":\"x\",\"rejected\":\"x\"}\nnot json\n");
        std::fs::write(&path, text).unwrap();
        let err = read_pairs(&path, ReadMode::Strict).unwrap_err().to_string();
        assert!(err.contains("pairs.jsonl:3: identical_replies"), "{err}");
        let (pairs, report) = read_pairs(&path, ReadMode::Lenient).unwrap();
        assert_eq!(pairs, vec![good]);
        assert_eq!((report.records, report.kept), (3, 1));
        assert_eq!(report.skipped[&PairSkipReason::IdenticalReplies], 1);
        assert_eq!(report.skipped[&PairSkipReason::InvalidJson], 1);
        assert!(report.skipped_examples[1].contains("pairs.jsonl:4: invalid_json"), "{:?}", report.skipped_examples);
    }

    #[test]
    fn mismatched_pairs_take_another_reply_text_seeded() {
        let conversations: Vec<Conversation> =
            (0..20).map(|i| Conversation::exchange(format!("prompt {i}"), format!("reply {}", i % 5))).collect();
        let (pairs, skipped) = mismatched_pairs(&conversations, 7);
        assert_eq!((pairs.len(), skipped), (20, 0));
        for (i, pair) in pairs.iter().enumerate() {
            assert_eq!(pair.chosen, format!("reply {}", i % 5));
            assert_ne!(pair.rejected, pair.chosen);
        }
        assert_eq!(mismatched_pairs(&conversations, 7).0, pairs);
        let same = vec![Conversation::exchange("a", "x"), Conversation::exchange("b", "x")];
        assert_eq!(mismatched_pairs(&same, 1), (vec![], 2));
        let subset = seeded_subset(10, 4, 3);
        assert_eq!(subset.len(), 4);
        assert_eq!(subset, seeded_subset(10, 4, 3));
        assert_eq!(seeded_subset(3, 9, 3).len(), 3);
    }
}
