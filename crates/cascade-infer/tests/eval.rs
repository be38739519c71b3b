//! Perplexity and bits per byte: every token scored once, equal to a hand-computed NLL.

mod common;

use cascade_core::NoProgress;
use cascade_infer::{EvalOptions, LanguageModel, evaluate_file, evaluate_text};
use cascade_model::burn::tensor::activation::log_softmax;
use common::*;

#[test]
fn one_window_matches_the_hand_computed_nll() {
    let engine = decoder_engine(64);
    let LanguageModel::Decoder(model) = engine.model() else { unreachable!() };
    let text = "Brevity is the soul of wit.";
    let report = evaluate_text(model, &ByteTokenizer, text, &EvalOptions::default(), &NoProgress).unwrap();
    let mut seq = vec![0u32]; // <|endoftext|>
    seq.extend(ids(text));
    let dev = device();
    let logp = to_vec(log_softmax(model.forward(tokens(&seq[..seq.len() - 1], &dev)), 2));
    let nll: f64 = seq[1..].iter().enumerate().map(|(i, &t)| -(logp[i * VOCAB + t as usize] as f64)).sum();
    assert_eq!(report.tokens, text.len());
    assert_eq!(report.windows, 1);
    assert!((report.nll_nats - nll).abs() < 1e-3 * nll, "{} vs {nll}", report.nll_nats);
    assert!((report.perplexity - (nll / text.len() as f64).exp()).abs() < 1e-2);
    assert!((report.bits_per_byte - nll / std::f64::consts::LN_2 / text.len() as f64).abs() < 1e-4);
}

#[test]
fn overlapping_windows_score_every_token_once() {
    let engine = decoder_engine(64);
    let LanguageModel::Decoder(model) = engine.model() else { unreachable!() };
    let text = "x".repeat(50) + "y";
    let options = EvalOptions { window: 8, batch_size: 3 };
    let report = evaluate_text(model, &ByteTokenizer, &text, &options, &NoProgress).unwrap();
    // 52 ids, 51 predictions, 7 per window.
    assert_eq!(report.tokens, 51);
    assert_eq!(report.windows, 8);
    assert!(report.nll_nats.is_finite() && report.nll_nats > 0.0);
    let too_wide = EvalOptions { window: 65, batch_size: 1 };
    assert!(evaluate_text(model, &ByteTokenizer, &text, &too_wide, &NoProgress).is_err());
}

#[test]
fn files_must_be_utf8_and_errors_name_them() {
    let engine = decoder_engine(64);
    let LanguageModel::Decoder(model) = engine.model() else { unreachable!() };
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.txt");
    std::fs::write(&path, [b'o', b'k', 0xFF]).unwrap();
    let err = evaluate_file(model, &ByteTokenizer, &path, &EvalOptions::default(), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("bad.txt") && err.to_string().contains("offset 2"), "{err}");
    let empty = dir.path().join("empty.txt");
    std::fs::write(&empty, "").unwrap();
    let err = evaluate_file(model, &ByteTokenizer, &empty, &EvalOptions::default(), &NoProgress).unwrap_err();
    assert!(err.to_string().contains("empty.txt"), "{err}");
}
