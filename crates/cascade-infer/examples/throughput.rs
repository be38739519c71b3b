//! Inference throughput of the `small` preset's decoder shape (d_model 256, 4 layers, 8 heads,
//! vocab 4096, context 256, random weights): prefill tokens/s, decode tokens/s at batch 1 and 8,
//! time to first token, peak memory, and the physical limits beside them (bytes read per token
//! over the measured memory bandwidth, 2N FLOPs per token over the measured matmul peak).
//! The engine (sampling and text included) is timed beside a bare `forward_cached` loop on the
//! same model, the floor the engine's own overhead sits on.
//!
//! `cargo run -p cascade-infer --example throughput` (the dev profile is optimized); the
//! criterion version is `cargo xtask bench infer`.
#![allow(clippy::print_stdout)]

use std::sync::Arc;
use std::time::Instant;

use cascade_core::{AllowedSpecial, Tokenizer, TokenizerError};
use cascade_infer::{Engine, GenerationRequest, LanguageModel, SamplingParams};
use cascade_model::burn::prelude::*;
use cascade_model::{Decoder, DecoderConfig};

const VOCAB: usize = 4096;
const PROMPT: usize = 128;
/// Decode steps after the prompt (the peers in docs/BENCHMARKS.md use 128 + 96 as well).
const NEW_TOKENS: usize = 96;

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

/// Best (lowest) wall time of `runs` calls, in seconds.
fn best_of(runs: usize, mut f: impl FnMut()) -> f64 {
    (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64()
        })
        .fold(f64::INFINITY, f64::min)
}

/// Decode throughput (tokens/s, all rows) and time to first token of one engine call.
fn decode_run(engine: &Engine, batch: usize) -> (f64, f64) {
    let reqs = requests(batch, PROMPT, NEW_TOKENS);
    let t = Instant::now();
    let out = engine.generate_all(&reqs).expect("generation runs");
    let wall = t.elapsed().as_secs_f64();
    let ttft = out.iter().map(|c| c.time_to_first_token_s).fold(0.0, f64::max);
    ((batch * (NEW_TOKENS - 1)) as f64 / (wall - ttft), ttft)
}

/// Bare model loop: prefill a `PROMPT`-token batch, then `NEW_TOKENS - 1` one-token steps
/// through the contiguous output projection, argmax on the host; returns the decode seconds.
fn raw_loop(model: &Decoder, batch: usize, device: &Device) -> f64 {
    let head = model.output_projection();
    let mut cache = model.new_cache();
    cache.reserve(PROMPT + NEW_TOKENS);
    let ids: Vec<i64> = (0..batch * PROMPT).map(|i| (i * 7 % VOCAB) as i64).collect();
    let mut tokens = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([batch, PROMPT]);
    let mut decode_started = None;
    for _ in 0..NEW_TOKENS {
        let [_, t] = tokens.dims();
        let hidden = model.hidden_cached(tokens, &cascade_model::BatchLayout::default(), &mut cache);
        let logits = hidden.narrow(1, t - 1, 1).reshape([batch, 256]).matmul(head.clone());
        let host = logits.into_data().convert::<f32>().try_into_vec::<f32>().expect("f32 logits");
        let next: Vec<i64> =
            host.chunks(VOCAB).map(|row| cascade_infer::sampling::argmax(row) as i64).collect();
        tokens = Tensor::<1, Int>::from_ints(next.as_slice(), device).reshape([batch, 1]);
        decode_started.get_or_insert_with(Instant::now);
    }
    decode_started.map_or(0.0, |t| t.elapsed().as_secs_f64())
}

/// Sustained copy bandwidth (bytes read + written per second) over a buffer far beyond cache.
fn memory_bandwidth() -> f64 {
    let n = 256 << 20;
    let src = vec![1u8; n];
    let mut dst = vec![0u8; n];
    let best = best_of(5, || {
        dst.copy_from_slice(std::hint::black_box(&src));
        std::hint::black_box(&dst);
    });
    2.0 * n as f64 / best
}

/// Best f32 matmul throughput (FLOP/s) on `size`-cubed products (as cascade-pretrain measures
/// its MFU peak).
fn matmul_peak_flops(device: &Device, size: usize) -> f64 {
    let a: Tensor<2> = Tensor::random([size, size], cascade_model::burn::tensor::Distribution::Default, device);
    let b: Tensor<2> = Tensor::random([size, size], cascade_model::burn::tensor::Distribution::Default, device);
    let run = || {
        let _ = a.clone().matmul(b.clone()).sum().into_scalar::<f32>();
    };
    run();
    2.0 * (size as f64).powi(3) / best_of(5, run)
}

fn peak_rss_mib() -> Option<f64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: f64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib / 1024.0)
}

fn summary(device: &Device) {
    let engine = engine(device);
    let LanguageModel::Decoder(model) = engine.model() else { return };
    let costs = config().costs_at(PROMPT);
    // Warm up every code path once.
    let _ = engine.generate_all(&requests(8, 8, 4));

    let prefill_s = best_of(5, || {
        let _ = engine.generate_all(&requests(1, PROMPT, 1));
    });
    let ttft = engine.generate_all(&requests(1, PROMPT, 2)).expect("runs")[0].time_to_first_token_s;
    // Best of three runs, like the bare loop.
    let best_decode = |batch| (0..3).map(|_| decode_run(&engine, batch).0).fold(0.0, f64::max);
    let (decode_b1, decode_b8) = (best_decode(1), best_decode(8));
    let raw = |batch: usize| {
        let best = (0..3).map(|_| raw_loop(model, batch, device)).fold(f64::INFINITY, f64::min);
        (batch * (NEW_TOKENS - 1)) as f64 / best
    };
    let (raw_b1, raw_b8) = (raw(1), raw(8));
    let rss = peak_rss_mib().unwrap_or(f64::NAN);

    let bandwidth = memory_bandwidth();
    let peak = matmul_peak_flops(device, 512);
    let cfg = config();
    let head = (cfg.d_model * cfg.vocab_size) as f64;
    let matmul_params = costs.params_non_embedding as f64 + head;
    let weight_bytes = 4.0 * (costs.params_non_embedding as f64 + head);
    // Average context over a decode from PROMPT to PROMPT + NEW_TOKENS tokens.
    let avg_context = PROMPT as f64 + NEW_TOKENS as f64 / 2.0;
    let kv_bytes = costs.kv_cache_bytes_per_token as f64 * avg_context;
    let flops_per_token = 2.0 * matmul_params + 4.0 * (cfg.n_layers * cfg.d_model) as f64 * avg_context;
    println!("inference summary: small decoder (d256, 4 layers, 8 heads, vocab 4096), f32, {:?}", device);
    println!("  prefill {PROMPT} tokens, batch 1: {:.0} tokens/s ({:.1} ms)", PROMPT as f64 / prefill_s, prefill_s * 1e3);
    println!("  time to first token ({PROMPT}-token prompt): {:.1} ms", ttft * 1e3);
    println!("  decode batch 1: {decode_b1:.0} tokens/s (bare forward_cached loop: {raw_b1:.0})");
    println!("  decode batch 8: {decode_b8:.0} tokens/s total, {:.2}x batch 1 (bare loop: {raw_b8:.0})", decode_b8 / decode_b1);
    println!("  peak RSS: {rss:.0} MiB");
    println!(
        "  memory bandwidth (copy): {:.1} GB/s; weights {:.1} MB + KV {:.2} MB per token at batch 1 -> limit {:.0} tokens/s",
        bandwidth / 1e9,
        weight_bytes / 1e6,
        kv_bytes / 1e6,
        bandwidth / (weight_bytes + kv_bytes)
    );
    println!(
        "  matmul peak (512^3): {:.1} GFLOP/s; {:.1} MFLOP per token -> limit {:.0} tokens/s",
        peak / 1e9,
        flops_per_token / 1e6,
        peak / flops_per_token
    );
}

fn main() {
    let device = Device::flex();
    summary(&device);
}
