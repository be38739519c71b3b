//! Input discovery and readers: `.txt`/`.md` files (one document each) and JSONL records
//! (one document per line), plain or compressed (`.gz`, `.zst`), streamed.
//!
//! Readers never fail on bad input: an unreadable, empty or binary file, a malformed line or a
//! missing text field becomes a [`BadInput`] with its path and line, and reading goes on. Only
//! errors raised by the caller's sink stop a scan.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::config::ReaderConfig;
use crate::error::DataError;
use crate::report::{BadInput, BadInputKind, SkippedFile};

/// How a file's content is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Kind {
    /// The whole file is one document.
    Text,
    /// One JSON object per line.
    Jsonl,
}

/// How a file is compressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Compression {
    None,
    Gzip,
    Zstd,
}

/// One input file of the corpus.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct InputFile {
    /// Path relative to the corpus root, `/`-separated: the document source.
    pub rel: String,
    pub kind: Kind,
    pub compression: Compression,
    /// Size on disk.
    pub size: u64,
}

/// The corpus: its root and the files under it, in sorted order.
#[derive(Debug, Clone)]
pub(crate) struct Corpus {
    pub root: PathBuf,
    pub files: Vec<InputFile>,
    pub skipped: Vec<SkippedFile>,
    /// Directories or files that could not even be listed or stat'ed.
    pub unreadable: Vec<BadInput>,
}

impl Corpus {
    pub fn path_of(&self, file: &InputFile) -> PathBuf {
        self.root.join(&file.rel)
    }
}

/// Recognizes a supported file name.
pub(crate) fn classify(name: &str) -> Option<(Kind, Compression)> {
    let lower = name.to_ascii_lowercase();
    let (stem, compression) = if let Some(stem) = lower.strip_suffix(".gz") {
        (stem, Compression::Gzip)
    } else if let Some(stem) = lower.strip_suffix(".zst") {
        (stem, Compression::Zstd)
    } else {
        (lower.as_str(), Compression::None)
    };
    let ext = stem.rsplit_once('.').map(|(_, ext)| ext)?;
    let kind = match ext {
        "txt" | "text" | "md" | "markdown" => Kind::Text,
        "jsonl" | "ndjson" => Kind::Jsonl,
        _ => return None,
    };
    Some((kind, compression))
}

/// Lists the corpus: a single supported file, or every supported file under a directory
/// (recursively, sorted by relative path so the order does not depend on the file system).
pub(crate) fn discover(corpus: &Path) -> Result<Corpus, DataError> {
    let meta = std::fs::metadata(corpus).map_err(|_| DataError::CorpusNotFound { path: corpus.to_path_buf() })?;
    if meta.is_file() {
        let name = corpus.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let (kind, compression) =
            classify(&name).ok_or_else(|| DataError::UnsupportedInput { path: corpus.to_path_buf() })?;
        let root = corpus.parent().map(Path::to_path_buf).unwrap_or_default();
        let files = vec![InputFile { rel: name, kind, compression, size: meta.len() }];
        return Ok(Corpus { root, files, skipped: vec![], unreadable: vec![] });
    }
    if !meta.is_dir() {
        return Err(DataError::CorpusNotFound { path: corpus.to_path_buf() });
    }
    let mut out = Corpus { root: corpus.to_path_buf(), files: vec![], skipped: vec![], unreadable: vec![] };
    let entries = std::fs::read_dir(corpus).map_err(|e| DataError::io(corpus, e))?;
    walk(corpus, "", entries, &mut out);
    out.files.sort_by(|a, b| a.rel.cmp(&b.rel));
    out.skipped.sort_by(|a, b| a.path.cmp(&b.path));
    out.unreadable.sort_by(|a, b| a.path.cmp(&b.path));
    if out.files.is_empty() && out.unreadable.is_empty() {
        return Err(DataError::NoInputFiles { path: corpus.to_path_buf() });
    }
    Ok(out)
}

fn walk(root: &Path, prefix: &str, entries: std::fs::ReadDir, out: &mut Corpus) {
    let unreadable = |rel: String, message: String| BadInput {
        path: rel,
        line: None,
        kind: BadInputKind::Unreadable,
        message,
        count: 1,
    };
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(e) => {
                out.unreadable.push(unreadable(prefix.trim_end_matches('/').to_string(), e.to_string()));
                continue;
            }
        };
        let name = entry.file_name().to_string_lossy().into_owned();
        let rel = format!("{prefix}{name}");
        if name.starts_with('.') {
            out.skipped.push(SkippedFile { path: rel, reason: "hidden".into() });
            continue;
        }
        let path = root.join(&rel);
        // Follows symlinks: a linked file or directory is read like a real one.
        let meta = match std::fs::metadata(&path) {
            Ok(meta) => meta,
            Err(e) => {
                out.unreadable.push(unreadable(rel, e.to_string()));
                continue;
            }
        };
        if meta.is_dir() {
            match std::fs::read_dir(&path) {
                Ok(sub) => walk(root, &format!("{rel}/"), sub, out),
                Err(e) => out.unreadable.push(unreadable(rel, e.to_string())),
            }
        } else if let Some((kind, compression)) = classify(&name) {
            out.files.push(InputFile { rel, kind, compression, size: meta.len() });
        } else {
            out.skipped.push(SkippedFile { path: rel, reason: "unsupported extension".into() });
        }
    }
}

/// One document as read, before normalization.
#[derive(Debug)]
pub(crate) struct RawRecord {
    /// 0-based index of the record among the file's valid records.
    pub record: u64,
    /// 1-based line of a JSONL record.
    pub line: Option<u64>,
    pub id: String,
    pub source: String,
    pub text: String,
    /// The record's other fields (JSONL), when asked for.
    pub extra: Map<String, Value>,
}

/// Bad inputs found while scanning one file.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    pub bad: Vec<BadInput>,
    pub records: u64,
    pub invalid_utf8_replaced: u64,
}

impl Scan {
    fn bad(&mut self, file: &InputFile, line: Option<u64>, kind: BadInputKind, message: impl Into<String>) {
        self.bad.push(BadInput { path: file.rel.clone(), line, kind, message: message.into(), count: 1 });
    }
}

/// Decodes UTF-8, replacing invalid sequences with U+FFFD; returns the text, the number of
/// sequences replaced and the byte offset of the first one.
pub(crate) fn decode_lossy(bytes: Vec<u8>) -> (String, u64, usize) {
    match String::from_utf8(bytes) {
        Ok(text) => (text, 0, 0),
        Err(err) => {
            let first = err.utf8_error().valid_up_to();
            let bytes = err.into_bytes();
            let mut text = String::with_capacity(bytes.len() + 16);
            let mut replaced = 0;
            for chunk in bytes.utf8_chunks() {
                text.push_str(chunk.valid());
                if !chunk.invalid().is_empty() {
                    text.push(char::REPLACEMENT_CHARACTER);
                    replaced += 1;
                }
            }
            (text, replaced, first)
        }
    }
}

fn open(path: &Path, compression: Compression) -> std::io::Result<Box<dyn BufRead>> {
    let file = File::open(path)?;
    let reader: Box<dyn Read> = match compression {
        Compression::None => Box::new(file),
        Compression::Gzip => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        Compression::Zstd => Box::new(zstd::Decoder::new(file)?),
    };
    Ok(Box::new(BufReader::with_capacity(1 << 18, reader)))
}

/// Reads every document of `file`, handing each to `sink` in file order; bad input is
/// returned in the [`Scan`], not as an error.
pub(crate) fn scan_file(
    corpus: &Corpus,
    file: &InputFile,
    reader_config: &ReaderConfig,
    keep_extra: bool,
    sink: &mut dyn FnMut(RawRecord) -> Result<(), DataError>,
) -> Result<Scan, DataError> {
    let mut scan = Scan::default();
    let mut input = match open(&corpus.path_of(file), file.compression) {
        Ok(input) => input,
        Err(e) => {
            scan.bad(file, None, BadInputKind::Unreadable, e.to_string());
            return Ok(scan);
        }
    };
    match input.fill_buf() {
        Err(e) => {
            scan.bad(file, None, BadInputKind::Unreadable, e.to_string());
            return Ok(scan);
        }
        Ok([]) => {
            scan.bad(file, None, BadInputKind::EmptyFile, "the file is empty");
            return Ok(scan);
        }
        Ok(head) if memchr::memchr(0, head).is_some() => {
            scan.bad(file, None, BadInputKind::BinaryFile, "NUL bytes: not a text file");
            return Ok(scan);
        }
        Ok(_) => {}
    }
    match file.kind {
        Kind::Text => scan_text(file, input, &mut scan, sink)?,
        Kind::Jsonl => scan_jsonl(file, input, reader_config, keep_extra, &mut scan, sink)?,
    }
    Ok(scan)
}

fn scan_text(
    file: &InputFile,
    mut input: Box<dyn BufRead>,
    scan: &mut Scan,
    sink: &mut dyn FnMut(RawRecord) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut bytes = Vec::new();
    if let Err(e) = input.read_to_end(&mut bytes) {
        scan.bad(file, None, BadInputKind::Unreadable, e.to_string());
        return Ok(());
    }
    if memchr::memchr(0, &bytes).is_some() {
        scan.bad(file, None, BadInputKind::BinaryFile, "NUL bytes: not a text file");
        return Ok(());
    }
    let (text, replaced, first_bad) = decode_lossy(bytes);
    if replaced > 0 {
        let line = 1 + text.as_bytes()[..first_bad].iter().filter(|&&b| b == b'\n').count() as u64;
        scan.invalid_utf8_replaced += replaced;
        scan.bad.push(BadInput {
            path: file.rel.clone(),
            line: Some(line),
            kind: BadInputKind::InvalidUtf8,
            message: format!("{replaced} invalid UTF-8 sequence(s) replaced by U+FFFD"),
            count: replaced,
        });
    }
    if text.trim().is_empty() {
        scan.bad(file, None, BadInputKind::EmptyFile, "the file holds only whitespace");
        return Ok(());
    }
    scan.records = 1;
    sink(RawRecord {
        record: 0,
        line: None,
        id: file.rel.clone(),
        source: file.rel.clone(),
        text,
        extra: Map::new(),
    })
}

fn scan_jsonl(
    file: &InputFile,
    mut input: Box<dyn BufRead>,
    reader_config: &ReaderConfig,
    keep_extra: bool,
    scan: &mut Scan,
    sink: &mut dyn FnMut(RawRecord) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut buf = Vec::new();
    let mut line_no = 0u64;
    let mut any_content = false;
    let mut first_invalid: Option<u64> = None;
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) => {
                scan.bad(file, Some(line_no + 1), BadInputKind::Unreadable, e.to_string());
                break;
            }
        }
        line_no += 1;
        if buf.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        any_content = true;
        let (line, replaced, _) = decode_lossy(std::mem::take(&mut buf));
        if replaced > 0 {
            scan.invalid_utf8_replaced += replaced;
            first_invalid.get_or_insert(line_no);
        }
        let mut object = match serde_json::from_str::<Value>(&line) {
            Ok(Value::Object(object)) => object,
            Ok(other) => {
                let found = match other {
                    Value::Array(_) => "an array",
                    Value::String(_) => "a string",
                    Value::Number(_) => "a number",
                    Value::Bool(_) => "a boolean",
                    _ => "null",
                };
                scan.bad(file, Some(line_no), BadInputKind::MalformedJson, format!("expected a JSON object, found {found}"));
                continue;
            }
            Err(e) => {
                scan.bad(file, Some(line_no), BadInputKind::MalformedJson, e.to_string());
                continue;
            }
        };
        let key = &reader_config.text_field;
        let text = match object.remove(key) {
            Some(Value::String(text)) => text,
            Some(other) => {
                let found = if other.is_null() { "null" } else if other.is_number() { "a number" } else { "not a string" };
                scan.bad(file, Some(line_no), BadInputKind::MissingTextField, format!("field `{key}` is {found}"));
                continue;
            }
            None => {
                scan.bad(file, Some(line_no), BadInputKind::MissingTextField, format!("no field `{key}`"));
                continue;
            }
        };
        let source = format!("{}:{line_no}", file.rel);
        let id = match object.get(&reader_config.id_field) {
            Some(Value::String(id)) if !id.is_empty() => id.clone(),
            Some(Value::Number(id)) => id.to_string(),
            _ => source.clone(),
        };
        if keep_extra {
            object.remove(&reader_config.id_field);
        } else {
            object.clear();
        }
        let record = scan.records;
        scan.records += 1;
        sink(RawRecord { record, line: Some(line_no), id, source, text, extra: object })?;
    }
    if let Some(line) = first_invalid {
        let count = scan.invalid_utf8_replaced;
        scan.bad.push(BadInput {
            path: file.rel.clone(),
            line: Some(line),
            kind: BadInputKind::InvalidUtf8,
            message: format!("{count} invalid UTF-8 sequence(s) replaced by U+FFFD"),
            count,
        });
    }
    if !any_content {
        scan.bad(file, None, BadInputKind::EmptyFile, "no records: the file holds only blank lines");
    }
    scan.bad.sort_by_key(|b| b.line);
    Ok(())
}
