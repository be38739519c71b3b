//! Documents and corpus shards: JSONL files with one [`Document`] per line.
//!
//! Shards are the data stage's output and the tokenizer's input. The reader streams line by
//! line, so a shard is never held in memory whole, and every parse error names the file and
//! the 1-based line.

use std::fs::File;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// One unit of text with where it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Document {
    /// Stable identifier, unique within a corpus (e.g. the file stem, or `file:line`).
    pub id: String,
    /// The text itself (UTF-8, normalized by the data stage).
    pub text: String,
    /// Where the text was read from: a path, with `:line` for JSONL inputs.
    pub source: String,
    /// Free-form metadata carried along (cluster id, split, original fields...).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub meta: serde_json::Map<String, serde_json::Value>,
}

impl Document {
    /// A document with empty metadata.
    pub fn new(id: impl Into<String>, text: impl Into<String>, source: impl Into<String>) -> Self {
        Self { id: id.into(), text: text.into(), source: source.into(), meta: Default::default() }
    }
}

/// Streams the documents of a JSONL shard, one line at a time.
#[derive(Debug)]
pub struct ShardReader {
    path: PathBuf,
    lines: std::io::Lines<BufReader<File>>,
    line: u64,
}

impl ShardReader {
    /// Opens `path` for streaming.
    pub fn open(path: &Path) -> Result<Self> {
        let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), lines: BufReader::new(file).lines(), line: 0 })
    }

    /// The shard's path.
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Iterator for ShardReader {
    type Item = Result<Document>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let line = match self.lines.next()? {
                Ok(line) => line,
                Err(e) => return Some(Err(CoreError::io(&self.path, e))),
            };
            self.line += 1;
            if line.trim().is_empty() {
                continue;
            }
            return Some(serde_json::from_str(&line).map_err(|e| CoreError::BadRecord {
                path: self.path.clone(),
                line: self.line,
                message: e.to_string(),
            }));
        }
    }
}

/// Writes documents to a JSONL shard.
#[derive(Debug)]
pub struct ShardWriter {
    path: PathBuf,
    out: BufWriter<File>,
    n_documents: u64,
    n_text_bytes: u64,
}

impl ShardWriter {
    /// Creates (or truncates) `path`.
    pub fn create(path: &Path) -> Result<Self> {
        let file = File::create(path).map_err(|e| CoreError::io(path, e))?;
        Ok(Self { path: path.to_path_buf(), out: BufWriter::new(file), n_documents: 0, n_text_bytes: 0 })
    }

    /// Appends one document as a line.
    pub fn write(&mut self, doc: &Document) -> Result<()> {
        serde_json::to_writer(&mut self.out, doc)
            .map_err(|e| CoreError::bad_file(&self.path, e.to_string()))?;
        self.out.write_all(b"\n").map_err(|e| CoreError::io(&self.path, e))?;
        self.n_documents += 1;
        self.n_text_bytes += doc.text.len() as u64;
        Ok(())
    }

    /// Flushes the file; returns (documents, text bytes) written.
    pub fn finish(mut self) -> Result<(u64, u64)> {
        self.out.flush().map_err(|e| CoreError::io(&self.path, e))?;
        self.out.get_ref().sync_all().map_err(|e| CoreError::io(&self.path, e))?;
        Ok((self.n_documents, self.n_text_bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_line_numbers_in_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.jsonl");
        let mut doc = Document::new("a", "Exit, pursued by a bear.\n", "winters_tale.txt");
        doc.meta.insert("cluster".into(), 3.into());
        let mut writer = ShardWriter::create(&path).unwrap();
        writer.write(&doc).unwrap();
        writer.write(&Document::new("b", "", "x")).unwrap();
        assert_eq!(writer.finish().unwrap(), (2, 25));
        let back: Vec<_> = ShardReader::open(&path).unwrap().collect::<Result<_>>().unwrap();
        assert_eq!(back[0], doc);
        assert_eq!(back[1].id, "b");

        std::fs::write(&path, "{\"id\":\"a\",\"text\":\"t\",\"source\":\"s\"}\n\n{\"id\":1}\n").unwrap();
        let results: Vec<_> = ShardReader::open(&path).unwrap().collect();
        let message = results[1].as_ref().unwrap_err().to_string();
        assert!(message.contains("train.jsonl:3:"), "{message}");
    }
}
