//! The engine: cached decoding equals uncached decoding, batched equals one by one, for the
//! decoder and the encoder-decoder; stop rules, the context window, cancellation, seeds.

mod common;

use std::ops::ControlFlow;

use cascade_core::Tokenizer;
use cascade_infer::{Engine, FinishReason, GenerationRequest, InferError, LanguageModel, SamplingParams};
use common::*;

fn greedy(prompt: Vec<u32>, max_new_tokens: usize) -> GenerationRequest {
    GenerationRequest {
        prompt,
        sampling: SamplingParams::greedy(),
        max_new_tokens,
        stop_token_ids: Vec::new(),
        stop_strings: Vec::new(),
    }
}

/// Greedy decoding by running the whole sequence through the model at every step.
fn uncached_greedy(engine: &Engine, prompt: &[u32], n: usize) -> Vec<u32> {
    let dev = device();
    let mut seq = prompt.to_vec();
    for _ in 0..n {
        let logits = match engine.model() {
            LanguageModel::Decoder(m) => m.forward(tokens(&seq, &dev)),
            LanguageModel::EncoderDecoder(_) => unreachable!(),
        };
        let last = logits.narrow(1, seq.len() - 1, 1);
        seq.push(argmax(&to_vec(last)));
    }
    seq[prompt.len()..].to_vec()
}

#[test]
fn cached_greedy_decoding_equals_uncached_token_for_token() {
    let engine = decoder_engine(64);
    let prompt = ids("To be, or not");
    let out = engine.generate_all(&[greedy(prompt.clone(), 20)]).unwrap();
    assert_eq!(out[0].tokens, uncached_greedy(&engine, &prompt, 20));
    assert_eq!(out[0].finish_reason, FinishReason::MaxNewTokens);
    assert_eq!(out[0].prompt_tokens, prompt.len());
}

#[test]
fn batched_generation_equals_one_by_one() {
    let engine = decoder_engine(64);
    // Different prompt lengths (left padding) and budgets (rows drop out at different steps).
    let requests = vec![
        greedy(ids("abc"), 4),
        greedy(ids("The quick brown"), 12),
        greedy(ids("hello"), 8),
        greedy(ids("x"), 1),
    ];
    let batched = engine.generate_all(&requests).unwrap();
    for (request, got) in requests.iter().zip(&batched) {
        let alone = engine.generate_all(std::slice::from_ref(request)).unwrap();
        assert_eq!(got.tokens, alone[0].tokens, "prompt {:?}", request.prompt);
        assert_eq!(got.tokens.len(), request.max_new_tokens);
        assert_eq!(got.text, alone[0].text);
    }
}

#[test]
fn encoder_decoder_cached_equals_teacher_forced_and_batched_equals_alone() {
    let engine = seq2seq_engine();
    let LanguageModel::EncoderDecoder(model) = engine.model() else { unreachable!() };
    let dev = device();
    let source = ids("translate me");
    let out = engine.generate_all(&[greedy(source.clone(), 10)]).unwrap();
    // Uncached: the whole target so far through the decoder at every step.
    let mut target = vec![engine.tokenizer().special_token("<|pad|>").unwrap()];
    for _ in 0..10 {
        let logits = model.forward(tokens(&source, &dev), tokens(&target, &dev));
        target.push(argmax(&to_vec(logits.narrow(1, target.len() - 1, 1))));
    }
    assert_eq!(out[0].tokens, target[1..]);
    let requests = vec![greedy(ids("ab"), 5), greedy(source.clone(), 10), greedy(ids("a longer source text"), 7)];
    let batched = engine.generate_all(&requests).unwrap();
    for (request, got) in requests.iter().zip(&batched) {
        assert_eq!(got.tokens, engine.generate_all(std::slice::from_ref(request)).unwrap()[0].tokens);
    }
}

#[test]
fn streamed_chunks_concatenate_to_the_text_and_never_split_characters() {
    let engine = decoder_engine(64);
    let prompt = ids("stream");
    let mut chunks = vec![String::new(); 2];
    let mut events = [0; 2];
    let requests = vec![greedy(prompt.clone(), 30), greedy(ids("other"), 10)];
    let out = engine
        .generate(&requests, &mut |event| {
            chunks[event.request].push_str(event.text);
            events[event.request] += 1;
            ControlFlow::Continue(())
        })
        .unwrap();
    for (i, completion) in out.iter().enumerate() {
        assert_eq!(chunks[i], completion.text);
        assert_eq!(events[i], completion.tokens.len(), "one event per token");
        let bytes = ByteTokenizer.decode_bytes(&completion.tokens).unwrap();
        assert_eq!(completion.text, String::from_utf8_lossy(&bytes), "chunking added no U+FFFD");
    }
}

#[test]
fn stop_strings_spanning_tokens_cut_the_text_before_them() {
    let engine = decoder_engine(64);
    let prompt = ids("Once upon");
    let free = engine.generate_all(&[greedy(prompt.clone(), 24)]).unwrap().remove(0);
    // Any two characters of byte-token output span a token boundary.
    let chars: Vec<char> = free.text.chars().collect();
    let stop: String = chars[5..8].iter().collect();
    let expected = &free.text[..free.text.find(&stop).unwrap()];
    let mut request = greedy(prompt, 24);
    request.stop_strings = vec!["never appears \u{1}".into(), stop.clone()];
    let mut streamed = String::new();
    let out = engine
        .generate(std::slice::from_ref(&request), &mut |e| {
            streamed.push_str(e.text);
            ControlFlow::Continue(())
        })
        .unwrap()
        .remove(0);
    assert_eq!(out.text, expected);
    assert_eq!(streamed, expected, "no part of the stop string was streamed");
    assert_eq!(out.finish_reason, FinishReason::StopString(stop));
    assert!(out.tokens.len() < 24);
}

#[test]
fn a_stop_token_ends_the_request_and_is_not_output() {
    let engine = decoder_engine(64);
    let prompt = ids("tokens");
    let free = engine.generate_all(&[greedy(prompt.clone(), 12)]).unwrap().remove(0);
    let stop_id = free.tokens[6];
    let first = free.tokens.iter().position(|&t| t == stop_id).unwrap();
    let mut request = greedy(prompt, 12);
    request.stop_token_ids = vec![stop_id];
    let out = engine.generate_all(&[request]).unwrap().remove(0);
    assert_eq!(out.tokens, free.tokens[..first]);
    assert_eq!(out.finish_reason, FinishReason::StopToken(stop_id));
}

#[test]
fn the_context_window_is_explicit() {
    let engine = decoder_engine(16);
    let long = ids("seventeen tokens!");
    assert_eq!(long.len(), 17);
    match engine.generate_all(&[greedy(long, 1)]) {
        Err(InferError::PromptTooLong { tokens: 17, window: 16, .. }) => {}
        other => panic!("expected PromptTooLong, got {other:?}"),
    }
    let out = engine.generate_all(&[greedy(ids("ten tokens"), 50)]).unwrap().remove(0);
    assert_eq!(out.tokens.len(), 6);
    assert_eq!(out.finish_reason, FinishReason::ContextWindow);
    let full = engine.generate_all(&[greedy(ids("sixteen  tokens!"), 3)]).unwrap().remove(0);
    assert!(full.tokens.is_empty());
    assert_eq!(full.finish_reason, FinishReason::ContextWindow);
}

#[test]
fn bad_requests_are_rejected_before_any_work() {
    let engine = decoder_engine(64);
    assert!(matches!(engine.generate_all(&[greedy(vec![], 3)]), Err(InferError::EmptyPrompt { request: 0 })));
    let out_of_range = greedy(vec![5, VOCAB as u32], 3);
    assert!(matches!(
        engine.generate_all(&[greedy(ids("ok"), 1), out_of_range]),
        Err(InferError::TokenOutOfRange { request: 1, .. })
    ));
    let mut bad = greedy(ids("ok"), 1);
    bad.sampling.top_p = 2.0;
    assert!(matches!(engine.generate_all(&[bad]), Err(InferError::InvalidParameter { key: "top_p", .. })));
}

#[test]
fn the_callback_cancels_one_request_and_the_others_go_on() {
    let engine = decoder_engine(64);
    let requests = vec![greedy(ids("cancel me"), 20), greedy(ids("keep me"), 20)];
    let mut seen = 0;
    let out = engine
        .generate(&requests, &mut |e| {
            if e.request == 0 {
                seen += 1;
                if seen == 3 {
                    return ControlFlow::Break(());
                }
            }
            ControlFlow::Continue(())
        })
        .unwrap();
    assert_eq!(out[0].finish_reason, FinishReason::Cancelled);
    assert_eq!(out[0].tokens.len(), 3);
    assert_eq!(out[1].tokens.len(), 20);
}

#[test]
fn the_same_seed_gives_the_same_sample_in_any_batch() {
    let engine = decoder_engine(64);
    let sampled = |seed| {
        let mut request = greedy(ids("seeded"), 16);
        request.sampling = SamplingParams { temperature: 1.0, top_k: 50, top_p: 0.95, seed, ..SamplingParams::default() };
        request
    };
    let a = engine.generate_all(&[sampled(1)]).unwrap().remove(0);
    let b = engine.generate_all(&[sampled(1)]).unwrap().remove(0);
    assert_eq!(a.tokens, b.tokens);
    let c = engine.generate_all(&[sampled(2)]).unwrap().remove(0);
    assert_ne!(a.tokens, c.tokens);
    let in_batch = engine.generate_all(&[greedy(ids("neighbour"), 5), sampled(1)]).unwrap();
    assert_eq!(in_batch[1].tokens, a.tokens);
}

#[test]
fn a_huge_repetition_penalty_never_repeats_a_token() {
    let engine = decoder_engine(64);
    let prompt = ids("aaaa");
    let mut request = greedy(prompt.clone(), 16);
    request.sampling.repetition_penalty = 1e6;
    let penalized = engine.generate_all(&[request]).unwrap().remove(0);
    // With an overwhelming penalty no token already seen can be picked while unseen ones remain.
    let mut seen: Vec<u32> = prompt.clone();
    for &t in &penalized.tokens {
        assert!(!seen.contains(&t), "token {t} repeated under a huge penalty");
        seen.push(t);
    }
}
