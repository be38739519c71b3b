//! Inference benchmarks for the `small` preset's decoder shape (d_model 256, 4 layers, 8 heads,
//! vocab 4096, context 256, random weights): prefill and decode (batch 1 and 8) times.
//!
//! Criterion groups: the engine (`cascade_infer::Engine`, sampling and text included) beside a
//! bare `forward_cached` loop on the same model (the floor the engine's overhead sits on). The
//! one-shot summary with peak memory and the physical limits is the example
//! `cargo run -p cascade-infer --example throughput`, which `cargo xtask bench infer` runs after.
//!
//! `cargo bench -p cascade-benches --features model --bench infer` (or `cargo xtask bench infer`)

use std::sync::Arc;

use cascade_core::{AllowedSpecial, Tokenizer, TokenizerError};
use cascade_infer::{Engine, GenerationRequest, LanguageModel, SamplingParams};
use cascade_model::burn::prelude::*;
use cascade_model::{Decoder, DecoderConfig};
use criterion::{Criterion, Throughput};

const VOCAB: usize = 4096;
const PROMPT: usize = 128;
const NEW_TOKENS: usize = 128;

/// A stand-in tokenizer: every id is one byte (ids >= 256 print as `?`).
#[derive(Debug)]
struct BytesTokenizer;

impl Tokenizer for BytesTokenizer {
    fn encode(&self, text: &str, _: &AllowedSpecial) -> Vec<u32> {
        text.bytes().map(u32::from).collect()
    }
    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
        Ok(ids.iter().map(|&id| if id < 128 { id as u8 } else { b'?' }).collect())
    }
    fn vocab_size(&self) -> usize {
        VOCAB
    }
    fn special_token(&self, _: &str) -> Option<u32> {
        None
    }
    fn fingerprint(&self) -> String {
        "bench-bytes".into()
    }
}

fn config() -> DecoderConfig {
    DecoderConfig { vocab_size: VOCAB, d_model: 256, n_layers: 4, n_heads: 8, max_seq_len: 256, ..DecoderConfig::default() }
}

fn prompt(row: usize, len: usize) -> Vec<u32> {
    // A fixed LCG stream: the same ids every run.
    let mut state = 0x2545_f491_u64 + row as u64;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((state >> 33) % VOCAB as u64) as u32
        })
        .collect()
}

fn requests(batch: usize, prompt_len: usize, new_tokens: usize) -> Vec<GenerationRequest> {
    (0..batch)
        .map(|row| GenerationRequest {
            prompt: prompt(row, prompt_len),
            sampling: SamplingParams::greedy(),
            max_new_tokens: new_tokens,
            stop_token_ids: Vec::new(),
            stop_strings: Vec::new(),
        })
        .collect()
}

fn engine(device: &Device) -> Engine {
    device.seed(0);
    let model = config().init(device).expect("the small decoder config is valid");
    Engine::new(LanguageModel::Decoder(model), Arc::new(BytesTokenizer), device.clone())
}

/// Bare model loop: prefill 8 tokens, then `NEW_TOKENS` one-token steps through the contiguous
/// output projection, argmax on the host.
fn raw_loop(model: &Decoder, batch: usize, device: &Device) {
    let head = model.output_projection();
    let mut cache = model.new_cache();
    cache.reserve(8 + NEW_TOKENS);
    let ids: Vec<i64> = (0..batch * 8).map(|i| (i % VOCAB) as i64).collect();
    let mut tokens = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([batch, 8]);
    for _ in 0..NEW_TOKENS {
        let [_, t] = tokens.dims();
        let hidden = model.hidden_cached(tokens, &cascade_model::BatchLayout::default(), &mut cache);
        let logits = hidden.narrow(1, t - 1, 1).reshape([batch, 256]).matmul(head.clone());
        let host = logits.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 logits");
        let next: Vec<i64> =
            host.chunks(VOCAB).map(|row| cascade_infer::sampling::argmax(row) as i64).collect();
        tokens = Tensor::<1, Int>::from_ints(next.as_slice(), device).reshape([batch, 1]);
    }
}

fn criterion_groups(c: &mut Criterion, device: &Device) {
    let engine = engine(device);
    let LanguageModel::Decoder(model) = engine.model() else { return };
    let mut group = c.benchmark_group("infer_small");
    group.sample_size(10);
    group.throughput(Throughput::Elements(PROMPT as u64));
    let prefill = requests(1, PROMPT, 1);
    group.bench_function("prefill_128/engine", |b| b.iter(|| engine.generate_all(&prefill)));
    for batch in [1usize, 8] {
        group.throughput(Throughput::Elements((batch * NEW_TOKENS) as u64));
        let reqs = requests(batch, 8, NEW_TOKENS);
        group.bench_function(format!("decode_128/b{batch}/engine"), |b| b.iter(|| engine.generate_all(&reqs)));
        group.bench_function(format!("decode_128/b{batch}/forward_cached_loop"), |b| {
            b.iter(|| raw_loop(model, batch, device))
        });
    }
    group.finish();
}

fn main() {
    let device = Device::flex();
    let mut criterion = Criterion::default().configure_from_args();
    criterion_groups(&mut criterion, &device);
    criterion.final_summary();
}
