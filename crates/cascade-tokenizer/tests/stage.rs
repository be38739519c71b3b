//! The stage end to end on small JSONL shards: files written, shards decodable document by
//! document, report filled in, and errors that name the file.

mod common;

use std::path::Path;

use cascade_core::{Document, NoProgress, ShardWriter, TokenShard, Tokenizer};
use cascade_tokenizer::{BpeTokenizer, TokenizerConfig, TokenizerError, run, special, stage};

fn write_shard(path: &Path, texts: &[&str]) {
    let mut writer = ShardWriter::create(path).unwrap();
    for (idx, text) in texts.iter().enumerate() {
        writer.write(&Document::new(format!("doc{idx}"), *text, "test")).unwrap();
    }
    writer.finish().unwrap();
}

#[test]
fn run_writes_tokenizer_and_decodable_shards() {
    let dir = tempfile::tempdir().unwrap();
    let (train, val, out) = (dir.path().join("train.jsonl"), dir.path().join("val.jsonl"), dir.path().join("out"));
    std::fs::create_dir(&out).unwrap();
    let train_texts: Vec<&str> = common::VARIED.iter().copied().chain(["the cat sat on the mat <|endoftext|>"; 5]).collect();
    write_shard(&train, &train_texts);
    write_shard(&val, &["The mat sat on the cat.", "", "<|pad|> stays text"]);
    // A tiny batch size forces many batches through the reader thread.
    let config =
        TokenizerConfig { vocab_size: 350, min_frequency: 1, batch_bytes: 64, n_longest_tokens: 5, ..Default::default() };
    let report = run(&config, &train, &val, &out, &NoProgress).unwrap();

    let tokenizer = BpeTokenizer::load_hf(&out.join(stage::TOKENIZER_FILE)).unwrap();
    assert_eq!(tokenizer.fingerprint(), report.fingerprint);
    assert_eq!(report.vocab_size, 350);
    assert!(!report.training.stopped_early);
    assert_eq!(report.n_merges, 350 - 256 - report.n_special_tokens);
    assert_eq!(report.longest_tokens.len(), 5);
    assert!(report.longest_tokens.windows(2).all(|w| w[0].n_bytes >= w[1].n_bytes));
    let endoftext = tokenizer.special_token(special::ENDOFTEXT).unwrap();

    for (file, texts, stats) in [
        (stage::TRAIN_TOKENS_FILE, &train_texts[..], &report.train),
        (stage::VAL_TOKENS_FILE, &["The mat sat on the cat.", "", "<|pad|> stays text"][..], &report.val),
    ] {
        let shard = TokenShard::open(&out.join(file)).unwrap();
        assert_eq!(shard.header().tokenizer, report.fingerprint);
        assert_eq!(shard.n_documents(), texts.len());
        assert_eq!(stats.n_documents as usize, texts.len());
        assert_eq!(stats.n_tokens as usize, shard.len());
        assert_eq!(stats.n_round_trip_failures, 0);
        for (doc_idx, text) in texts.iter().enumerate() {
            let ids = shard.all().to_vec()[shard.document_range(doc_idx).unwrap()].to_vec();
            assert_eq!(ids.last(), Some(&endoftext), "each document ends with the separator");
            assert!(ids[..ids.len() - 1].iter().all(|&id| !tokenizer.is_special(id)), "text never yields specials");
            assert_eq!(tokenizer.decode(&ids[..ids.len() - 1]).unwrap(), *text);
        }
    }
    let val_bytes: usize = ["The mat sat on the cat.", "", "<|pad|> stays text"].iter().map(|t| t.len()).sum();
    let expected = val_bytes as f64 / (report.val.n_tokens - 3) as f64;
    assert!((report.val_bytes_per_token.unwrap() - expected).abs() < 1e-9);
    let json = serde_json::to_string(&report).unwrap();
    assert!(json.contains("val_bytes_per_token"));
}

#[test]
fn errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.jsonl");
    let err = run(&TokenizerConfig::default(), &missing, &missing, dir.path(), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("missing.jsonl"), "{err}");

    let empty = dir.path().join("empty.jsonl");
    write_shard(&empty, &["", ""]);
    let err = run(&TokenizerConfig::default(), &empty, &empty, dir.path(), &NoProgress).unwrap_err();
    assert!(matches!(err, TokenizerError::EmptyCorpus { .. }) && err.to_string().contains("empty.jsonl"), "{err}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\":\"a\",\"text\":\"x\",\"source\":\"s\"}\nnot json\n").unwrap();
    let err = run(&TokenizerConfig::default(), &bad, &bad, dir.path(), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("bad.jsonl:2"), "{err}");

    let config = TokenizerConfig { vocab_size: 10, ..Default::default() };
    let err = run(&config, &bad, &bad, dir.path(), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("vocab_size"), "{err}");
}

#[test]
fn default_corpus_trains_to_8192_and_round_trips() {
    let Some(texts) = common::corpus_texts(usize::MAX) else { return };
    let dir = tempfile::tempdir().unwrap();
    let (train, val, out) = (dir.path().join("train.jsonl"), dir.path().join("val.jsonl"), dir.path().join("out"));
    std::fs::create_dir(&out).unwrap();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let split = refs.len() - refs.len() / 20;
    write_shard(&train, &refs[..split]);
    write_shard(&val, &refs[split..]);
    let report = run(&TokenizerConfig::default(), &train, &val, &out, &NoProgress).unwrap();
    assert_eq!(report.vocab_size, 8192);
    assert!(!report.training.stopped_early);
    assert_eq!(report.train.n_round_trip_failures + report.val.n_round_trip_failures, 0);
    let bytes_per_token = report.val_bytes_per_token.unwrap();
    assert!((3.0..6.0).contains(&bytes_per_token), "{bytes_per_token}");
}
