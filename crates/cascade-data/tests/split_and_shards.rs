//! The contamination-safe split (clusters never straddle it, it is deterministic and stable
//! when the corpus grows) and the sharded signature pass (shards merged == unsharded run).

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use cascade_core::NoProgress;
use cascade_data::{DataConfig, DataError, DataReport, RunOptions, ShardSpec, Timings, merge, run, run_shard};
use common::{mixed_corpus, out_dir, read_jsonl};

fn split_config() -> DataConfig {
    let mut config = DataConfig::default();
    config.split.val_fraction = 0.3;
    config
}

/// id -> "train" | "val" for every kept document.
fn sides_of(out: &Path) -> BTreeMap<String, &'static str> {
    let mut sides = BTreeMap::new();
    for (side, file) in [("train", "train.jsonl"), ("val", "val.jsonl")] {
        for doc in read_jsonl(&out.join(file)) {
            sides.insert(doc["id"].as_str().unwrap().to_string(), side);
        }
    }
    sides
}

#[test]
fn clusters_never_straddle_the_split() {
    let corpus = tempfile::tempdir().unwrap();
    mixed_corpus(corpus.path());
    let out = out_dir();
    let report = run(&split_config(), corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.same_work.clusters.len(), 24, "{:#?}", report.same_work);
    assert!(report.near_duplicates.docs >= 4 && report.exact_duplicates.docs >= 3, "{report:#?}");
    let sides = sides_of(out.path());
    for cluster in &report.same_work.clusters {
        let members: Vec<&str> = cluster.members.iter().map(|m| sides[&m.id]).collect();
        assert!(members.iter().all(|s| *s == cluster.split), "{cluster:?} vs {members:?}");
    }
    for doc in read_jsonl(&out.path().join("val.jsonl")).iter().chain(&read_jsonl(&out.path().join("train.jsonl"))) {
        if let Some(group) = doc["meta"]["split_group"].as_str() {
            assert_eq!(sides[doc["id"].as_str().unwrap()], sides[group], "{doc}");
        }
    }
    let n_val = sides.values().filter(|s| **s == "val").count();
    assert!(n_val > 0 && n_val < sides.len());
    assert_eq!(report.split.val.docs as usize, n_val);

    // Same input, same split; another seed, another split.
    let again = out_dir();
    run(&split_config(), corpus.path(), again.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_eq!(std::fs::read(out.path().join("val.jsonl")).unwrap(), std::fs::read(again.path().join("val.jsonl")).unwrap());
    let mut reseeded = split_config();
    reseeded.split.seed = 12345;
    let other = out_dir();
    run(&reseeded, corpus.path(), other.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_ne!(sides_of(other.path()), sides);
}

#[test]
fn the_split_is_stable_when_the_corpus_grows() {
    let corpus = tempfile::tempdir().unwrap();
    mixed_corpus(corpus.path());
    let before = out_dir();
    run(&split_config(), corpus.path(), before.path(), &RunOptions::default(), &NoProgress).unwrap();
    let mut rng = common::Rng(77);
    for i in 0..10 {
        std::fs::write(corpus.path().join(format!("new_{i}.txt")), common::text(&common::random_words(&mut rng, 150))).unwrap();
    }
    let after = out_dir();
    run(&split_config(), corpus.path(), after.path(), &RunOptions::default(), &NoProgress).unwrap();
    let (old, new) = (sides_of(before.path()), sides_of(after.path()));
    for (id, side) in &old {
        assert_eq!(new[id], *side, "{id} moved");
    }
}

fn without_timings(mut report: DataReport) -> DataReport {
    report.timings = Timings::default();
    report
}

fn shard_dirs(config: &DataConfig, corpus: &Path, n: usize, parent: &Path) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let spec = ShardSpec::new(i, n).unwrap();
            let dir = parent.join(spec.dir_name());
            std::fs::create_dir(&dir).unwrap();
            let summary = run_shard(config, corpus, spec, &dir, &RunOptions::default(), &NoProgress).unwrap();
            assert_eq!(summary.shard, spec);
            dir
        })
        .collect()
}

#[test]
fn sharded_and_merged_equals_unsharded() {
    let corpus = tempfile::tempdir().unwrap();
    mixed_corpus(corpus.path());
    let config = split_config();
    let whole = out_dir();
    let expected = run(&config, corpus.path(), whole.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert!(!expected.bad_inputs.items.is_empty(), "the fixture holds bad input");
    for n in [1, 3, 4] {
        let parent = tempfile::tempdir().unwrap();
        let mut dirs = shard_dirs(&config, corpus.path(), n, parent.path());
        dirs.reverse(); // any order
        let merged = out_dir();
        let report = merge(&config, corpus.path(), &dirs, merged.path(), &RunOptions::default(), &NoProgress).unwrap();
        for file in ["train.jsonl", "val.jsonl", "rejected.jsonl", "clusters.jsonl"] {
            let (a, b) = (std::fs::read(whole.path().join(file)).unwrap(), std::fs::read(merged.path().join(file)).unwrap());
            assert!(a == b, "{file} differs with {n} shards");
        }
        assert_eq!(without_timings(report), without_timings(expected.clone()), "{n} shards");
    }
}

#[test]
fn merge_refuses_incomplete_or_mismatched_shards() {
    let corpus = tempfile::tempdir().unwrap();
    mixed_corpus(corpus.path());
    let config = split_config();
    let parent = tempfile::tempdir().unwrap();
    let dirs = shard_dirs(&config, corpus.path(), 3, parent.path());
    let merge_err = |config: &DataConfig, dirs: &[PathBuf]| {
        merge(config, corpus.path(), dirs, out_dir().path(), &RunOptions::default(), &NoProgress).unwrap_err()
    };

    let err = merge_err(&config, &dirs[..2]);
    assert!(matches!(err, DataError::Shard { .. }) && err.to_string().contains("3 shards, 2 given"), "{err}");
    let err = merge_err(&config, &[dirs[0].clone(), dirs[0].clone(), dirs[1].clone()]);
    assert!(err.to_string().contains("given twice"), "{err}");
    let mut other = config.clone();
    other.filters.min_words = 10;
    let err = merge_err(&other, &dirs);
    assert!(err.to_string().contains("different [data] config") && err.to_string().contains("0-of-3"), "{err}");
    std::fs::remove_file(dirs[1].join("partial.json")).unwrap();
    let err = merge_err(&config, &dirs);
    assert!(err.to_string().contains("partial.json"), "{err}");
    std::fs::write(corpus.path().join("late.txt"), "a file added after the shards ran").unwrap();
    let err = merge_err(&config, &dirs);
    assert!(err.to_string().contains("different corpus"), "{err}");

    assert_eq!("2/4".parse::<ShardSpec>().unwrap(), ShardSpec { index: 2, count: 4 });
    assert_eq!(ShardSpec::new(2, 4).unwrap().dir_name(), "2-of-4");
    for bad in ["4/4", "1/0", "x", "1-4"] {
        let err = bad.parse::<ShardSpec>().unwrap_err();
        assert!(err.to_string().contains("--shard"), "{err}");
    }
}
