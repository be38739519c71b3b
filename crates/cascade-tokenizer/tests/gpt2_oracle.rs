//! Oracle: with GPT-2's ranks loaded, encoding equals tiktoken's token for token.

mod common;

use cascade_core::{AllowedSpecial, Tokenizer};
use proptest::prelude::*;

#[test]
fn varied_text_matches_tiktoken() {
    let ours = common::gpt2();
    let reference = common::tiktoken_gpt2();
    for text in common::VARIED {
        assert_eq!(ours.encode_ordinary(text), reference.encode_ordinary(text), "on {text:?}");
        assert_eq!(ours.decode(&ours.encode_ordinary(text)).unwrap(), *text);
    }
    let all: String = common::VARIED.concat();
    assert_eq!(ours.encode_ordinary(&all), reference.encode_ordinary(&all));
}

#[test]
fn rank_file_on_disk_loads_the_same_tokenizer() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("r50k_base.tiktoken");
    std::fs::write(&path, common::gpt2_rank_file()).unwrap();
    let loaded = cascade_tokenizer::BpeTokenizer::load_tiktoken(&path, &[("<|endoftext|>", 50_256)], cascade_tokenizer::GPT2_PATTERN)
        .unwrap();
    assert_eq!(loaded.fingerprint(), common::gpt2().fingerprint());
    assert_eq!(loaded.vocab_size(), 50_257);
    let missing = dir.path().join("absent.tiktoken");
    let err = cascade_tokenizer::BpeTokenizer::load_tiktoken(&missing, &[], cascade_tokenizer::GPT2_PATTERN).unwrap_err();
    assert!(err.to_string().contains("absent.tiktoken"), "{err}");
}

#[test]
fn long_pieces_take_the_heap_path_and_still_match() {
    let ours = common::gpt2();
    let reference = common::tiktoken_gpt2();
    for text in ["x".repeat(1000), "ab".repeat(700), "😀".repeat(300), "!?".repeat(400), " ".repeat(999) + "z"] {
        assert_eq!(ours.encode_ordinary(&text), reference.encode_ordinary(&text), "on {} bytes", text.len());
    }
}

#[test]
fn special_tokens_match_tiktoken_when_allowed() {
    let ours = common::gpt2();
    let reference = common::tiktoken_gpt2();
    let text = "one<|endoftext|>two <|endoftext|><|endoftext|>";
    assert_eq!(ours.encode(text, &AllowedSpecial::All), reference.encode_with_special_tokens(text));
    assert_eq!(ours.encode(text, &AllowedSpecial::None), reference.encode_ordinary(text));
    assert_eq!(ours.special_token("<|endoftext|>"), Some(50_256));
}

#[test]
fn default_corpus_sample_matches_tiktoken() {
    let Some(texts) = common::corpus_texts(3) else { return };
    let ours = common::gpt2();
    let reference = common::tiktoken_gpt2();
    for text in &texts {
        assert_eq!(ours.encode_ordinary(text), reference.encode_ordinary(text));
    }
}

fn interesting_text() -> impl Strategy<Value = String> {
    let pieces = prop::sample::select(vec![
        "the", " the", "The", "ing", " and", "'s", "'ll", "'T", "  ", "\n", "\r\n", "\t", "123", "4", " 5",
        "!", "...", "é", "e\u{301}", "漢字", "😀", "\u{a0}", "\u{3000}", "<|endoftext|>", "ſ", "ǅ", "ⅷ", "_", "-",
        "qz", "xyzzy", "Ünïcödé",
    ]);
    prop::collection::vec(pieces, 0..30).prop_map(|v| v.concat())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_text_matches_tiktoken(text in interesting_text()) {
        prop_assert_eq!(common::gpt2().encode_ordinary(&text), common::tiktoken_gpt2().encode_ordinary(&text));
    }

    #[test]
    fn random_unicode_matches_tiktoken(text in "\\PC{0,40}") {
        prop_assert_eq!(common::gpt2().encode_ordinary(&text), common::tiktoken_gpt2().encode_ordinary(&text));
    }
}

/// GPT-2's ranks under the cl100k pattern, in tiktoken and here: checks the hand-written
/// cl100k scanner through real BPE, not only piece by piece.
fn cl100k_pair() -> &'static (cascade_tokenizer::BpeTokenizer, tiktoken_rs::CoreBPE) {
    static PAIR: std::sync::OnceLock<(cascade_tokenizer::BpeTokenizer, tiktoken_rs::CoreBPE)> = std::sync::OnceLock::new();
    PAIR.get_or_init(|| {
        let gpt2 = common::tiktoken_gpt2();
        let ranks: rustc_hash::FxHashMap<Vec<u8>, u32> =
            (0..50_256u32).map(|rank| (gpt2.decode_bytes(&[rank]).unwrap(), rank)).collect();
        let specials: rustc_hash::FxHashMap<String, u32> = [("<|endoftext|>".to_owned(), 50_256)].into_iter().collect();
        let reference = tiktoken_rs::CoreBPE::new(ranks, specials, cascade_tokenizer::CL100K_PATTERN).unwrap();
        let ours = cascade_tokenizer::BpeTokenizer::from_tiktoken(
            &common::gpt2_rank_file(),
            &[("<|endoftext|>", 50_256)],
            cascade_tokenizer::CL100K_PATTERN,
            std::path::Path::new("r50k_base"),
        )
        .unwrap();
        (ours, reference)
    })
}

#[test]
fn cl100k_pattern_matches_tiktoken() {
    let (ours, reference) = cl100k_pair();
    for text in common::VARIED {
        assert_eq!(ours.encode_ordinary(text), reference.encode_ordinary(text), "on {text:?}");
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn random_text_matches_tiktoken_under_cl100k(text in interesting_text()) {
        let (ours, reference) = cl100k_pair();
        prop_assert_eq!(ours.encode_ordinary(&text), reference.encode_ordinary(&text));
    }
}
