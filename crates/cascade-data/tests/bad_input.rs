//! Every bad-input path: counted and listed with path and line, documents around it kept; with
//! `strict`, an error naming the same path and line.

mod common;

use std::io::Write;

use cascade_core::NoProgress;
use cascade_data::{BadInputKind, DataConfig, DataError, RunOptions, run};
use common::{out_dir, read_jsonl};

fn permissive() -> DataConfig {
    let mut config = DataConfig::default();
    config.filters.enabled = false;
    config.same_work.enabled = false;
    config.split.val_fraction = 0.0;
    config
}

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// (file, content, expected kind, expected line) for each bad input.
fn cases() -> Vec<(&'static str, Vec<u8>, BadInputKind, Option<u64>)> {
    let long: Vec<u8> = (0..4000).flat_map(|i| format!("{{\"text\": \"record {i}\"}}\n").into_bytes()).collect();
    let mut truncated = zstd::encode_all(&long[..], 3).unwrap();
    truncated.truncate(truncated.len() / 2);
    vec![
        ("empty.txt", vec![], BadInputKind::EmptyFile, None),
        ("blank.md", b"  \n\t\n".to_vec(), BadInputKind::EmptyFile, None),
        ("blank.jsonl", b"\n   \n".to_vec(), BadInputKind::EmptyFile, None),
        ("binary.txt", b"GIF89a\x00\x01\x02".to_vec(), BadInputKind::BinaryFile, None),
        ("latin1.txt", b"first line\ncaf\xe9 au lait\n".to_vec(), BadInputKind::InvalidUtf8, Some(2)),
        ("corrupt.txt.gz", b"this is not gzip data".to_vec(), BadInputKind::Unreadable, None),
        ("truncated.jsonl.zst", truncated, BadInputKind::Unreadable, None),
        ("syntax.jsonl", b"{\"text\": \"ok\"}\n{\"text\": oops}\n".to_vec(), BadInputKind::MalformedJson, Some(2)),
        ("array.jsonl", b"[1, 2]\n".to_vec(), BadInputKind::MalformedJson, Some(1)),
        ("notext.jsonl", b"{\"id\": \"x\"}\n".to_vec(), BadInputKind::MissingTextField, Some(1)),
        ("numtext.jsonl", b"{\"text\": \"fine\"}\n{\"text\": 5}\n".to_vec(), BadInputKind::MissingTextField, Some(2)),
        ("utf8.jsonl", b"{\"text\": \"ok\"}\n{\"text\": \"bad \xff byte\"}\n".to_vec(), BadInputKind::InvalidUtf8, Some(2)),
        ("ids.jsonl", b"{\"id\": \"d\", \"text\": \"one\"}\n{\"id\": \"d\", \"text\": \"two\"}\n".to_vec(), BadInputKind::DuplicateId, Some(2)),
    ]
}

#[test]
fn bad_inputs_are_counted_with_path_and_line() {
    let corpus = tempfile::tempdir().unwrap();
    std::fs::write(corpus.path().join("good.txt"), b"a perfectly good document").unwrap();
    for (name, bytes, _, _) in cases() {
        std::fs::write(corpus.path().join(name), bytes).unwrap();
    }
    #[cfg(unix)]
    std::os::unix::fs::symlink(corpus.path().join("nowhere.txt"), corpus.path().join("dangling.txt")).unwrap();

    let out = out_dir();
    let report = run(&permissive(), corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    let items = &report.bad_inputs.items;
    for (name, _, kind, line) in cases() {
        let found = items.iter().find(|b| b.path == name).unwrap_or_else(|| panic!("{name} not reported: {items:#?}"));
        assert_eq!((found.kind, found.line.filter(|_| line.is_some())), (kind, line), "{name}: {found:?}");
    }
    #[cfg(unix)]
    assert!(items.iter().any(|b| b.path == "dangling.txt" && b.kind == BadInputKind::Unreadable));
    assert_eq!(report.bad_inputs.counts["empty_file"], 3);
    assert_eq!(report.bad_inputs.counts["malformed_json"], 2);
    assert_eq!(report.bad_inputs.counts["missing_text_field"], 2);

    // Documents next to bad input are kept; invalid UTF-8 is replaced, never fatal.
    let docs: Vec<_> = read_jsonl(&out.path().join("train.jsonl"));
    let text_of = |id: &str| docs.iter().find(|d| d["id"] == id).map(|d| d["text"].as_str().unwrap().to_string());
    assert_eq!(text_of("latin1.txt").unwrap(), "first line\ncaf\u{fffd} au lait\n");
    assert_eq!(text_of("utf8.jsonl:2").unwrap(), "bad \u{fffd} byte");
    assert_eq!(text_of("syntax.jsonl:1").unwrap(), "ok");
    assert_eq!(text_of("d").unwrap(), "one");
    assert_eq!(text_of("ids.jsonl:2").unwrap(), "two", "a repeated id becomes path:line");
    assert!(text_of("good.txt").is_some());
    assert_eq!(report.normalize.invalid_utf8_replaced, 2);
}

#[test]
fn strict_mode_turns_each_bad_input_into_an_error_naming_it() {
    for (name, bytes, kind, line) in cases() {
        let corpus = tempfile::tempdir().unwrap();
        std::fs::write(corpus.path().join("good.txt"), b"a perfectly good document").unwrap();
        std::fs::write(corpus.path().join(name), &bytes).unwrap();
        let strict = RunOptions { strict: true };
        let err = run(&permissive(), corpus.path(), out_dir().path(), &strict, &NoProgress).unwrap_err();
        let DataError::BadInput { path, line: err_line, kind: err_kind, .. } = &err else {
            panic!("{name}: unexpected error {err}");
        };
        assert_eq!(path, &corpus.path().join(name));
        assert_eq!(*err_kind, kind, "{name}");
        let message = err.to_string();
        assert!(message.contains(name) && message.contains(kind.name()), "{message}");
        if let Some(line) = line {
            assert_eq!(*err_line, Some(line), "{name}");
            assert!(message.contains(&format!("{name}:{line}")), "{message}");
        }
    }
}

#[test]
fn a_gzip_member_cut_short_keeps_earlier_records() {
    let corpus = tempfile::tempdir().unwrap();
    let body: Vec<u8> = (0..3000).flat_map(|i| format!("{{\"text\": \"line number {i}\"}}\n").into_bytes()).collect();
    let mut bytes = gz(&body);
    bytes.truncate(bytes.len() * 2 / 3);
    std::fs::write(corpus.path().join("cut.jsonl.gz"), bytes).unwrap();
    let out = out_dir();
    let report = run(&permissive(), corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    let bad = &report.bad_inputs.items;
    assert!(bad.iter().any(|b| b.kind == BadInputKind::Unreadable && b.line.is_some_and(|l| l > 1)), "{bad:?}");
    let n = read_jsonl(&out.path().join("train.jsonl")).len();
    assert!(n > 100 && n < 3000, "{n} records");
}
