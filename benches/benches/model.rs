//! Model benchmarks: forward and forward+backward time for each family at the `small` shape
//! (d_model 256, 4 layers, 8 heads, vocab 4096, 256-token windows, batch 4), with criterion's
//! throughput in FLOPs (PaLM accounting, so "elem/s" reads as FLOP/s) beside a measured f32
//! matmul peak on the same device.
//!
//! `cargo bench -p cascade-benches --features model --bench model`

use cascade_model::burn::nn::loss::CrossEntropyLossConfig;
use cascade_model::burn::prelude::*;
use cascade_model::burn::tensor::Distribution;
use cascade_model::{BatchLayout, DecoderConfig, EncoderConfig, EncoderDecoderConfig};
use criterion::{Criterion, Throughput, criterion_group, criterion_main};

const BATCH: usize = 4;
const SEQ: usize = 256;
const VOCAB: usize = 4096;

fn tokens(device: &Device, rows: usize, width: usize) -> Tensor<2, Int> {
    // A fixed LCG stream: the same ids every run, spread over the vocabulary.
    let mut state = 0x2545_f491_u64;
    let ids: Vec<i64> = (0..rows * width)
        .map(|_| {
            state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            ((state >> 33) % VOCAB as u64) as i64
        })
        .collect();
    Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([rows, width])
}

fn loss(logits: Tensor<3>, targets: Tensor<2, Int>) -> Tensor<1> {
    let [b, t, v] = logits.dims();
    CrossEntropyLossConfig::new().init(&logits.device()).forward(logits.reshape([b * t, v]), targets.reshape([b * t]))
}

fn matmul_peak(c: &mut Criterion) {
    let device = Device::flex();
    let mut group = c.benchmark_group("matmul_peak_f32");
    group.sample_size(20);
    for n in [512usize, 1024] {
        let a = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
        let b = Tensor::<2>::random([n, n], Distribution::Normal(0.0, 1.0), &device);
        group.throughput(Throughput::Elements(2 * (n * n * n) as u64));
        group.bench_function(format!("{n}x{n}x{n}"), |bench| {
            bench.iter(|| a.clone().matmul(b.clone()).into_data())
        });
    }
    group.finish();
}

fn families(c: &mut Criterion) {
    let plain = Device::flex();
    let train = plain.clone().autodiff();
    let tokens_per_step = (BATCH * SEQ) as u64;

    let decoder = DecoderConfig { vocab_size: VOCAB, max_seq_len: SEQ, ..DecoderConfig::default() };
    let encoder = EncoderConfig { vocab_size: VOCAB, max_seq_len: SEQ, ..EncoderConfig::default() };
    let seq2seq = EncoderDecoderConfig {
        vocab_size: VOCAB,
        max_source_len: SEQ,
        max_target_len: SEQ,
        ..EncoderDecoderConfig::default()
    };

    let mut group = c.benchmark_group("model_small_b4x256");
    group.sample_size(10);

    // Decoder.
    let flops = decoder.costs_at(SEQ).train_flops_per_token * tokens_per_step as f64;
    let model = decoder.init(&plain).unwrap();
    let x = tokens(&plain, BATCH, SEQ);
    group.throughput(Throughput::Elements((flops / 3.0) as u64));
    group.bench_function("decoder/forward", |b| b.iter(|| model.forward(x.clone()).into_data()));
    let model = decoder.init(&train).unwrap();
    let (x, y) = (tokens(&train, BATCH, SEQ), tokens(&train, BATCH, SEQ));
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("decoder/forward_backward", |b| {
        b.iter(|| loss(model.forward(x.clone()), y.clone()).backward())
    });

    // Encoder (MLM head at every position).
    let flops = encoder.costs_at(SEQ).train_flops_per_token * tokens_per_step as f64;
    let model = encoder.init(&plain).unwrap();
    let x = tokens(&plain, BATCH, SEQ);
    group.throughput(Throughput::Elements((flops / 3.0) as u64));
    group.bench_function("encoder/forward", |b| b.iter(|| model.forward(x.clone()).into_data()));
    let model = encoder.init(&train).unwrap();
    let (x, y) = (tokens(&train, BATCH, SEQ), tokens(&train, BATCH, SEQ));
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("encoder/forward_backward", |b| {
        b.iter(|| loss(model.forward_mlm(x.clone(), &BatchLayout::default()), y.clone()).backward())
    });

    // Encoder-decoder: 256 source + 256 target tokens per row.
    let flops = seq2seq.costs_at(SEQ, SEQ).train_flops_per_token * 2.0 * tokens_per_step as f64;
    let model = seq2seq.init(&plain).unwrap();
    let (s, t) = (tokens(&plain, BATCH, SEQ), tokens(&plain, BATCH, SEQ));
    group.throughput(Throughput::Elements((flops / 3.0) as u64));
    group.bench_function("encoder_decoder/forward", |b| b.iter(|| model.forward(s.clone(), t.clone()).into_data()));
    let model = seq2seq.init(&train).unwrap();
    let (s, t, y) = (tokens(&train, BATCH, SEQ), tokens(&train, BATCH, SEQ), tokens(&train, BATCH, SEQ));
    group.throughput(Throughput::Elements(flops as u64));
    group.bench_function("encoder_decoder/forward_backward", |b| {
        b.iter(|| loss(model.forward(s.clone(), t.clone()), y.clone()).backward())
    });
    group.finish();
}

criterion_group!(benches, matmul_peak, families);
criterion_main!(benches);
