//! Where fine-tuning conversations come from (the `[sft.data]` section): the user's own JSONL
//! files, or by default the dialogue cut from the data stage's corpus shards, so the
//! train/validation split follows the data stage's and no play is on both sides.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::dataset::{Conversation, DatasetReport, ReadMode, read_conversations};
use crate::dialogue::{DialogueConfig, DialogueReport, conversations_from_shard};
use crate::error::PosttrainError;

/// The `[sft.data]` section. Every key has a default; unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DataSourceConfig {
    /// Training conversations in your own JSONL (`messages` or `prompt`/`completion`); empty
    /// means "cut them from the corpus". Relative paths are taken from the working directory.
    pub train_file: Option<PathBuf>,
    /// Validation conversations in your own JSONL; required when `train_file` is set.
    pub val_file: Option<PathBuf>,
    /// Malformed records in your files are errors (file:line) instead of counted skips.
    pub strict: bool,
    /// Corpus dialogue: longest prompt speech in characters, speaker included.
    pub max_prompt_chars: usize,
    /// Corpus dialogue: longest reply speech in characters, speaker included.
    pub max_reply_chars: usize,
    /// Corpus dialogue: documents with fewer speeches are not plays.
    pub min_speeches_per_play: usize,
}

impl Default for DataSourceConfig {
    fn default() -> Self {
        let dialogue = DialogueConfig::default();
        Self {
            train_file: None,
            val_file: None,
            strict: false,
            max_prompt_chars: dialogue.max_prompt_chars,
            max_reply_chars: dialogue.max_reply_chars,
            min_speeches_per_play: dialogue.min_speeches_per_play,
        }
    }
}

impl DataSourceConfig {
    /// The dialogue settings.
    pub fn dialogue(&self) -> DialogueConfig {
        DialogueConfig {
            max_prompt_chars: self.max_prompt_chars,
            max_reply_chars: self.max_reply_chars,
            min_speeches_per_play: self.min_speeches_per_play,
        }
    }

    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), PosttrainError> {
        if self.train_file.is_some() != self.val_file.is_some() {
            return Err(PosttrainError::Config {
                key: "data.val_file",
                message: "set `train_file` and `val_file` together (or neither, to use the corpus dialogue)".into(),
            });
        }
        self.dialogue().validate()
    }

    /// The user's files, when set.
    pub fn user_files(&self) -> Option<(&Path, &Path)> {
        Some((self.train_file.as_deref()?, self.val_file.as_deref()?))
    }
}

/// Where a [`SftData`] came from, and what was kept and skipped on the way.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum DataSourceReport {
    /// The user's JSONL files.
    Files {
        /// Training file.
        train: DatasetReport,
        /// Validation file.
        val: DatasetReport,
    },
    /// Cut from the corpus shards.
    Corpus {
        /// From the training shard.
        train: DialogueReport,
        /// From the validation shard.
        val: DialogueReport,
    },
}

/// Training and validation conversations.
#[derive(Debug, Clone, PartialEq)]
pub struct SftData {
    /// Training conversations.
    pub train: Vec<Conversation>,
    /// Validation conversations.
    pub val: Vec<Conversation>,
    /// Where they came from.
    pub report: DataSourceReport,
}

/// Reads the user's files, or cuts dialogue from the corpus shards `corpus_train` and
/// `corpus_val` (the data stage's `train.jsonl` / `val.jsonl`). Either side ending up empty is
/// an error naming the file.
pub fn load_conversations(
    config: &DataSourceConfig,
    corpus_train: &Path,
    corpus_val: &Path,
) -> Result<SftData, PosttrainError> {
    config.validate()?;
    let data = match config.user_files() {
        Some((train_path, val_path)) => {
            let mode = if config.strict { ReadMode::Strict } else { ReadMode::Lenient };
            let (train, train_report) = read_conversations(train_path, mode)?;
            let (val, val_report) = read_conversations(val_path, mode)?;
            SftData { train, val, report: DataSourceReport::Files { train: train_report, val: val_report } }
        }
        None => {
            let dialogue = config.dialogue();
            let (train, train_report) = conversations_from_shard(corpus_train, &dialogue)?;
            let (val, val_report) = conversations_from_shard(corpus_val, &dialogue)?;
            SftData { train, val, report: DataSourceReport::Corpus { train: train_report, val: val_report } }
        }
    };
    let (train_path, val_path) = config.user_files().unwrap_or((corpus_train, corpus_val));
    for (conversations, path) in [(&data.train, train_path), (&data.val, val_path)] {
        if conversations.is_empty() {
            return Err(PosttrainError::Data {
                path: path.to_path_buf(),
                message: "gives no usable conversation (see the skip counts: too long, not a play, malformed)".into(),
            });
        }
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::write_conversations;
    use cascade_core::{Document, ShardWriter};

    #[test]
    fn user_files_replace_the_corpus_and_must_come_in_pairs() {
        let dir = tempfile::tempdir().unwrap();
        let (train, val) = (dir.path().join("t.jsonl"), dir.path().join("v.jsonl"));
        write_conversations(&train, &[Conversation::exchange("a", "b")]).unwrap();
        std::fs::write(&val, "{\"prompt\":\"c\",\"completion\":\"d\"}\n{bad\n").unwrap();
        let config = DataSourceConfig { train_file: Some(train.clone()), val_file: Some(val.clone()), ..Default::default() };
        let missing = dir.path().join("no-corpus.jsonl");
        let data = load_conversations(&config, &missing, &missing).unwrap();
        assert_eq!(data.val, vec![Conversation::exchange("c", "d")]);
        let DataSourceReport::Files { val: report, .. } = &data.report else { panic!("{:?}", data.report) };
        assert_eq!(report.skipped_total(), 1);
        let strict = DataSourceConfig { strict: true, ..config.clone() };
        let err = load_conversations(&strict, &missing, &missing).unwrap_err().to_string();
        assert!(err.contains("v.jsonl:2"), "{err}");
        let half = DataSourceConfig { val_file: None, ..config };
        let err = load_conversations(&half, &missing, &missing).unwrap_err().to_string();
        assert!(err.contains("data.val_file"), "{err}");
    }

    #[test]
    fn corpus_dialogue_follows_the_shards() {
        let dir = tempfile::tempdir().unwrap();
        let shard = |name: &str, text: &str| {
            let path = dir.path().join(name);
            let mut writer = ShardWriter::create(&path).unwrap();
            writer.write(&Document::new(name, text, name)).unwrap();
            writer.finish().unwrap();
            path
        };
        let train = shard("train.jsonl", "A.\nOne.\n\nB.\nTwo.\n\nA.\nThree.\n");
        let val = shard("val.jsonl", "C.\nFour.\n\nD.\nFive.\n");
        let config = DataSourceConfig { min_speeches_per_play: 2, ..Default::default() };
        let data = load_conversations(&config, &train, &val).unwrap();
        assert_eq!(data.train, vec![Conversation::exchange("A: One.", "B: Two."), Conversation::exchange("B: Two.", "A: Three.")]);
        assert_eq!(data.val, vec![Conversation::exchange("C: Four.", "D: Five.")]);
        let picky = DataSourceConfig { min_speeches_per_play: 3, ..Default::default() };
        let err = load_conversations(&picky, &train, &val).unwrap_err().to_string();
        assert!(err.contains("val.jsonl") && err.contains("no usable conversation"), "{err}");
    }
}
