//! Round-trip properties: every byte string and every string decodes back exactly, with a
//! trained vocabulary and with GPT-2's.

mod common;

use std::sync::OnceLock;

use cascade_core::{AllowedSpecial, NoProgress, Tokenizer};
use cascade_tokenizer::{BpeTokenizer, TokenizerConfig, train_on_texts};
use proptest::prelude::*;

fn trained(pattern: &str) -> BpeTokenizer {
    let config = TokenizerConfig { vocab_size: 800, min_frequency: 1, pattern: pattern.into(), ..Default::default() };
    train_on_texts(&config, common::VARIED, &NoProgress).unwrap().0
}

fn tokenizers() -> &'static [BpeTokenizer] {
    static ALL: OnceLock<Vec<BpeTokenizer>> = OnceLock::new();
    ALL.get_or_init(|| vec![trained("gpt2"), trained("cl100k"), trained(r"\w+|\s+"), common::gpt2().clone()])
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]
    #[test]
    fn any_bytes_round_trip(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        for tokenizer in tokenizers() {
            prop_assert_eq!(tokenizer.decode_bytes(&tokenizer.encode_bytes(&bytes)).unwrap(), bytes.clone());
        }
    }

    #[test]
    fn any_string_round_trips(text in any::<String>()) {
        for tokenizer in tokenizers() {
            for allowed in [AllowedSpecial::None, AllowedSpecial::All] {
                prop_assert_eq!(tokenizer.decode(&tokenizer.encode(&text, &allowed)).unwrap(), text.clone());
            }
        }
    }

    #[test]
    fn strings_with_specials_round_trip(parts in prop::collection::vec(prop::sample::select(vec![
        "<|endoftext|>", "<|pad|>", "<|", "|>", "<|mask", "a", " b", "\n", "漢", "😀",
    ]), 0..20)) {
        let text = parts.concat();
        for tokenizer in tokenizers() {
            let ids = tokenizer.encode(&text, &AllowedSpecial::All);
            prop_assert_eq!(tokenizer.decode(&ids).unwrap(), text.clone());
        }
    }
}

#[test]
fn a_million_repeated_characters_round_trip() {
    let text = "a".repeat(1_000_000);
    for tokenizer in tokenizers() {
        let ids = tokenizer.encode_ordinary(&text);
        assert!(ids.len() < text.len());
        assert_eq!(tokenizer.decode_bytes(&ids).unwrap(), text.as_bytes());
    }
}
