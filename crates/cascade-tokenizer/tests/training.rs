//! Training oracles: a hand-derived merge sequence, a golden merge file, determinism and
//! the reserved special tokens.

use cascade_core::{AllowedSpecial, NoProgress, Tokenizer};
use cascade_tokenizer::{BpeTokenizer, TokenizerConfig, special, train_on_texts};

fn config(n_merges: u32) -> TokenizerConfig {
    let n_special = TokenizerConfig::default().special_tokens().len() as u32;
    TokenizerConfig { vocab_size: n_special + 256 + n_merges, ..Default::default() }
}

fn merge_strings(tokenizer: &BpeTokenizer) -> Vec<String> {
    let spell = |id| String::from_utf8_lossy(tokenizer.token_bytes(id).unwrap()).into_owned();
    tokenizer.merges().map(|(left, right)| format!("{:?} {:?}", spell(left), spell(right))).collect()
}

#[test]
fn textbook_example_gives_the_hand_derived_merges() {
    // Pairs in "aaabdaaabac": aa x4 (overlapping), ab x2, others x1. After `aa`, the word is
    // aa a b d aa a b a c: (aa,a) and (a,b) tie at 2; the tie-break takes the smaller left id
    // (byte `a` precedes the new `aa`), then (aa,ab) x2; everything left is seen once.
    let (tokenizer, stats) = train_on_texts(&config(100), &["aaabdaaabac"], &NoProgress).unwrap();
    assert_eq!(merge_strings(&tokenizer), ["\"a\" \"a\"", "\"a\" \"b\"", "\"aa\" \"ab\""]);
    assert!(stats.stopped_early);
    assert_eq!(stats.last_merge_count, 2);
    assert_eq!(tokenizer.encode_ordinary("aaabdaaabac").len(), 5); // aaab d aaab a c
}

const SONNET_18: &str = "Shall I compare thee to a summer's day?
Thou art more lovely and more temperate:
Rough winds do shake the darling buds of May,
And summer's lease hath all too short a date;
Sometime too hot the eye of heaven shines,
And often is his gold complexion dimm'd;
And every fair from fair sometime declines,
By chance or nature's changing course untrimm'd;
But thy eternal summer shall not fade,
Nor lose possession of that fair thou ow'st;
Nor shall death brag thou wander'st in his shade,
When in eternal lines to time thou grow'st:
So long as men can breathe or eyes can see,
So long lives this, and this gives life to thee.
";

#[test]
fn sonnet_merges_match_the_golden_file() {
    let (tokenizer, _) = train_on_texts(&config(60), &[SONNET_18], &NoProgress).unwrap();
    let got = merge_strings(&tokenizer).join("\n") + "\n";
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/sonnet18_merges.txt");
    if std::env::var_os("CASCADE_UPDATE_GOLDEN").is_some() {
        std::fs::write(&golden, &got).unwrap();
    }
    let expected = std::fs::read_to_string(&golden).unwrap();
    assert_eq!(got, expected, "merges changed; rerun with CASCADE_UPDATE_GOLDEN=1 if intended");
}

#[test]
fn training_is_deterministic_across_batches_and_threads() {
    let texts: Vec<String> = SONNET_18.lines().map(str::to_owned).collect();
    // Newlines are pieces of their own, so dropping them leaves every pair count unchanged.
    let (whole, _) = train_on_texts(&config(80), &[SONNET_18.replace('\n', "")], &NoProgress).unwrap();
    let (shorter, _) = train_on_texts(&config(79), &texts, &NoProgress).unwrap();
    let (a, _) = train_on_texts(&config(80), &texts, &NoProgress).unwrap();
    let pool = rayon::ThreadPoolBuilder::new().num_threads(1).build().unwrap();
    let (b, _) = pool.install(|| train_on_texts(&config(80), &texts, &NoProgress).unwrap());
    assert_eq!(a.fingerprint(), b.fingerprint());
    assert_eq!(a.fingerprint(), whole.fingerprint());
    assert_ne!(a.fingerprint(), shorter.fingerprint());
}

#[test]
fn special_tokens_are_reserved_first_and_matched_only_when_allowed() {
    let config = TokenizerConfig { n_sentinels: 4, ..config(50) };
    let (tokenizer, _) = train_on_texts(&config, &[SONNET_18], &NoProgress).unwrap();
    for (id, name) in special::RESERVED.iter().enumerate() {
        assert_eq!(tokenizer.special_token(name), Some(id as u32));
    }
    assert_eq!(tokenizer.special_token("<|sentinel_3|>"), Some(10));
    assert_eq!(tokenizer.special_token("<|sentinel_4|>"), None);
    assert_eq!(tokenizer.vocab_size(), config.vocab_size as usize);

    let text = "<|user|>hi<|end_of_turn|><|endoftext|>";
    let plain = tokenizer.encode(text, &AllowedSpecial::None);
    assert!(plain.iter().all(|&id| !tokenizer.is_special(id)));
    assert_eq!(tokenizer.decode(&plain).unwrap(), text);

    let all = tokenizer.encode(text, &AllowedSpecial::All);
    let user = tokenizer.special_token(special::USER).unwrap();
    let eot = tokenizer.special_token(special::END_OF_TURN).unwrap();
    let end = tokenizer.special_token(special::ENDOFTEXT).unwrap();
    assert_eq!(all[0], user);
    assert_eq!(&all[all.len() - 2..], &[eot, end]);
    assert_eq!(tokenizer.decode(&all).unwrap(), text);

    let some = tokenizer.encode(text, &AllowedSpecial::Some(vec![special::END_OF_TURN.into()]));
    assert_eq!(some.iter().filter(|&&id| tokenizer.is_special(id)).copied().collect::<Vec<_>>(), vec![eot]);
    assert_eq!(tokenizer.decode(&some).unwrap(), text);

    let batch = tokenizer.encode_batch(&[text, "x", ""], &AllowedSpecial::All);
    assert_eq!(batch, vec![all, tokenizer.encode("x", &AllowedSpecial::All), vec![]]);
    assert!(tokenizer.decode_bytes(&[u32::MAX]).is_err());
}
