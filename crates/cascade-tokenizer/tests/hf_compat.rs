//! Oracle: a `tokenizer.json` we save loads in HuggingFace `tokenizers` and encodes
//! identically; loading it back here gives the same tokenizer.

mod common;

use std::path::Path;

use cascade_core::{AllowedSpecial, NoProgress, Tokenizer};
use cascade_tokenizer::{BpeTokenizer, TokenizerConfig, train_on_texts};

fn hf_ids(hf: &tokenizers::Tokenizer, text: &str) -> Vec<u32> {
    hf.encode(text, false).unwrap().get_ids().to_vec()
}

fn check_round_trip_through_hf(ours: &BpeTokenizer, texts: &[&str], same_fingerprint: bool) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("tokenizer.json");
    ours.save_hf(&path).unwrap();
    let hf = tokenizers::Tokenizer::from_file(&path).unwrap();
    assert_eq!(hf.get_vocab_size(true), ours.vocab_size());
    for text in texts {
        // HF always matches added tokens, so compare with specials allowed.
        let ids = ours.encode(text, &AllowedSpecial::All);
        assert_eq!(ids, hf_ids(&hf, text), "on {text:?}");
        assert_eq!(hf.decode(&ids, false).unwrap(), ours.decode(&ids).unwrap());
    }
    let back = BpeTokenizer::load_hf(&path).unwrap();
    for text in texts {
        assert_eq!(back.encode(text, &AllowedSpecial::All), ours.encode(text, &AllowedSpecial::All));
    }
    if same_fingerprint {
        assert_eq!(back.fingerprint(), ours.fingerprint());
    }
}

fn training_text() -> Vec<String> {
    let mut texts: Vec<String> = common::VARIED.iter().map(|t| t.repeat(3)).collect();
    texts.push("the cat sat on the mat; the hat is that flat hat. ".repeat(20));
    texts
}

#[test]
fn trained_gpt2_pattern_tokenizer_matches_hf() {
    let config = TokenizerConfig { vocab_size: 700, min_frequency: 1, ..Default::default() };
    let (ours, _) = train_on_texts(&config, &training_text(), &NoProgress).unwrap();
    check_round_trip_through_hf(&ours, common::VARIED, true);
}

#[test]
fn trained_cl100k_pattern_tokenizer_matches_hf() {
    let config = TokenizerConfig { vocab_size: 600, min_frequency: 1, pattern: "cl100k".into(), ..Default::default() };
    let (ours, _) = train_on_texts(&config, &training_text(), &NoProgress).unwrap();
    check_round_trip_through_hf(&ours, common::VARIED, true);
}

#[test]
fn gpt2_vocabulary_matches_hf() {
    let mut texts: Vec<&str> = common::VARIED.to_vec();
    let corpus = common::corpus_texts(1);
    if let Some(corpus) = &corpus {
        texts.push(&corpus[0]);
    }
    // tiktoken's equal-rank merges come back densely numbered, so only encodings are compared.
    check_round_trip_through_hf(common::gpt2(), &texts, false);
}

#[test]
fn malformed_files_are_rejected_with_the_key_named() {
    let path = Path::new("bad/tokenizer.json");
    let err = BpeTokenizer::from_hf_str("{\"model\": {\"type\": \"WordPiece\"}}", path).unwrap_err().to_string();
    assert!(err.contains("bad/tokenizer.json") && err.contains("model.type"), "{err}");
    let err = BpeTokenizer::from_hf_str("not json", path).unwrap_err().to_string();
    assert!(err.contains("not JSON"), "{err}");
    let err = BpeTokenizer::from_tiktoken("QQ== 0\nQg== x\n", &[], cascade_tokenizer::GPT2_PATTERN, Path::new("r.tiktoken"))
        .unwrap_err()
        .to_string();
    assert!(err.contains("r.tiktoken") && err.contains("line 2"), "{err}");
}

#[test]
fn training_agrees_with_hf_trainer_on_the_default_corpus() {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let Some(texts) = common::corpus_texts(4) else { return };
    let config = TokenizerConfig { vocab_size: 2000, ..Default::default() };
    let (ours, _) = train_on_texts(&config, &texts, &NoProgress).unwrap();

    let mut hf = tokenizers::Tokenizer::new(tokenizers::models::bpe::BPE::default());
    hf.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    let trainer = tokenizers::models::bpe::BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(config.vocab_size as usize)
        .min_frequency(config.min_frequency)
        .special_tokens(config.special_tokens().into_iter().map(|name| tokenizers::AddedToken::from(name, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    let mut trainer = tokenizers::models::TrainerWrapper::BpeTrainer(trainer);
    hf.train(&mut trainer, texts.iter()).unwrap();

    // Same vocabulary, token for token: the tie-breaks differ only in how equal counts are
    // ordered, which has not changed which tokens are learned on this corpus.
    let hf_tokens: std::collections::BTreeSet<String> = hf.get_vocab(false).into_keys().collect();
    let dir = tempfile::tempdir().unwrap();
    ours.save_hf(&dir.path().join("t.json")).unwrap();
    let ours_hf = tokenizers::Tokenizer::from_file(dir.path().join("t.json")).unwrap();
    let our_tokens: std::collections::BTreeSet<String> = ours_hf.get_vocab(false).into_keys().collect();
    let differing = our_tokens.symmetric_difference(&hf_tokens).count();
    assert!(differing == 0, "{differing} tokens differ from HF's trainer");
    let n_ours: usize = texts.iter().map(|t| ours.encode_ordinary(t).len()).sum();
    let n_hf: usize = texts.iter().map(|t| hf.encode(t.as_str(), false).unwrap().get_ids().len()).sum();
    let ratio = n_hf as f64 / n_ours as f64;
    assert!((ratio - 1.0).abs() < 0.005, "bytes per token ours / HF = {ratio}");
}
