//! Each reader: text and markdown files, JSONL with default and configured fields, the `.gz`
//! and `.zst` versions of both, single-file corpora, skipped files; ids, sources and lines.

mod common;

use std::io::Write;
use std::path::Path;

use cascade_core::NoProgress;
use cascade_data::{DataConfig, DataError, RunOptions, run};
use common::{out_dir, read_jsonl};
use serde_json::Value;

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

fn zst(bytes: &[u8]) -> Vec<u8> {
    zstd::encode_all(bytes, 3).unwrap()
}

fn write(root: &Path, rel: &str, bytes: &[u8]) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, bytes).unwrap();
}

/// Accepts every document: these tests are about reading, not filtering.
fn permissive() -> DataConfig {
    let mut config = DataConfig::default();
    config.filters.enabled = false;
    config.same_work.enabled = false;
    config.split.val_fraction = 0.0;
    config
}

fn kept(out: &Path) -> Vec<Value> {
    let mut docs = read_jsonl(&out.join("train.jsonl"));
    docs.extend(read_jsonl(&out.join("val.jsonl")));
    docs
}

#[test]
fn every_format_and_compression_is_read_with_ids_and_sources() {
    let corpus = tempfile::tempdir().unwrap();
    let root = corpus.path();
    write(root, "plays/hamlet.txt", b"Who's there? Nay, answer me.\r\n");
    write(root, "plays/notes.md", b"# Notes\nThe play's the thing.\n");
    write(root, "zipped/sonnet.txt.gz", &gz(b"Shall I compare thee to a summer's day?\n"));
    write(root, "zipped/readme.md.zst", &zst(b"Thou art more lovely and more temperate.\n"));
    let jsonl = b"{\"id\": \"a1\", \"text\": \"Rough winds do shake the darling buds of May\", \"url\": \"u1\"}\n\n{\"text\": \"And summer's lease hath all too short a date\", \"id\": 7}\n";
    write(root, "records/lines.jsonl", jsonl);
    write(root, "records/lines2.jsonl.gz", &gz(b"{\"text\": \"Sometime too hot the eye of heaven shines\"}\n"));
    write(root, "records/lines3.ndjson.zst", &zst(b"{\"text\": \"And often is his gold complexion dimmed\"}\n"));
    write(root, "records/scan.pdf", b"%PDF");
    write(root, ".hidden.txt", b"secret");

    let out = out_dir();
    let report = run(&permissive(), root, out.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.files, 7);
    assert!(report.bad_inputs.items.is_empty(), "{:?}", report.bad_inputs);
    let skipped: Vec<(&str, &str)> =
        report.skipped_files.iter().map(|s| (s.path.as_str(), s.reason.as_str())).collect();
    assert_eq!(skipped, [(".hidden.txt", "hidden"), ("records/scan.pdf", "unsupported extension")]);

    let docs = kept(out.path());
    let by_id = |id: &str| docs.iter().find(|d| d["id"] == id).unwrap_or_else(|| panic!("no {id} in {docs:?}"));
    assert_eq!(docs.len(), 8);
    assert_eq!(by_id("plays/hamlet.txt")["text"], "Who's there? Nay, answer me.\n", "CRLF normalized");
    assert_eq!(by_id("plays/hamlet.txt")["source"], "plays/hamlet.txt");
    assert_eq!(by_id("plays/notes.md")["text"], "# Notes\nThe play's the thing.\n");
    assert_eq!(by_id("zipped/sonnet.txt.gz")["text"], "Shall I compare thee to a summer's day?\n");
    assert_eq!(by_id("zipped/readme.md.zst")["text"], "Thou art more lovely and more temperate.\n");
    let a1 = by_id("a1");
    assert_eq!(a1["source"], "records/lines.jsonl:1");
    assert_eq!(a1["meta"]["url"], "u1", "other fields are carried in meta");
    assert_eq!(by_id("7")["source"], "records/lines.jsonl:3", "numeric ids, blank lines counted");
    assert_eq!(by_id("records/lines2.jsonl.gz:1")["text"], "Sometime too hot the eye of heaven shines");
    assert_eq!(by_id("records/lines3.ndjson.zst:1")["text"], "And often is his gold complexion dimmed");
    assert_eq!(report.normalize.line_ends_normalized, 1);

    // Corpus order: files sorted by path, records in file order.
    let ids: Vec<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids[0], "plays/hamlet.txt");
    assert_eq!(&ids[2..4], ["a1", "7"]);
}

#[test]
fn configured_text_and_id_fields() {
    let corpus = tempfile::tempdir().unwrap();
    let body = b"{\"content\": \"first body\", \"id\": \"ignored\"}\n{\"content\": \"second body\", \"key\": \"k2\"}\n{\"text\": \"wrong field\"}\n";
    write(corpus.path(), "c.jsonl", body);
    let mut config = permissive();
    config.reader.text_field = "content".into();
    config.reader.id_field = "key".into();
    let out = out_dir();
    let report = run(&config, corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    let docs = kept(out.path());
    let ids: Vec<&str> = docs.iter().map(|d| d["id"].as_str().unwrap()).collect();
    assert_eq!(ids, ["c.jsonl:1", "k2"]);
    assert_eq!(docs[0]["meta"]["id"], "ignored", "a non-id field stays in meta");
    assert_eq!(report.bad_inputs.counts["missing_text_field"], 1);
    assert_eq!(report.bad_inputs.items[0].line, Some(3));
}

#[test]
fn a_single_file_is_a_corpus() {
    let corpus = tempfile::tempdir().unwrap();
    write(corpus.path(), "one.jsonl.gz", &gz(b"{\"text\": \"alpha beta\"}\n{\"text\": \"gamma delta\"}\n"));
    let out = out_dir();
    let file = corpus.path().join("one.jsonl.gz");
    let report = run(&permissive(), &file, out.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.files, 1);
    assert_eq!(kept(out.path()).len(), 2);
    assert_eq!(kept(out.path())[1]["source"], "one.jsonl.gz:2");

    let pdf = corpus.path().join("x.pdf");
    std::fs::write(&pdf, b"x").unwrap();
    let err = run(&permissive(), &pdf, out_dir().path(), &RunOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, DataError::UnsupportedInput { .. }), "{err}");
    let missing = corpus.path().join("missing");
    let err = run(&permissive(), &missing, out_dir().path(), &RunOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, DataError::CorpusNotFound { .. }) && err.to_string().contains("missing"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = run(&permissive(), empty.path(), out_dir().path(), &RunOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, DataError::NoInputFiles { .. }), "{err}");
}

#[test]
fn output_directory_must_exist_and_be_empty() {
    let corpus = tempfile::tempdir().unwrap();
    write(corpus.path(), "a.txt", b"some words here");
    let out = out_dir();
    std::fs::write(out.path().join("stale"), b"x").unwrap();
    let err = run(&permissive(), corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap_err();
    assert!(matches!(err, DataError::OutDir { .. }) && err.to_string().contains("not empty"), "{err}");
}
