//! Exact and near-duplicate removal measured on a labelled set: base documents plus edited
//! copies at known Jaccard similarity. Asserts recall of the pairs above the threshold and the
//! precision of what is removed, for each verification mode.
#![allow(clippy::print_stdout)]

mod common;

use std::collections::BTreeMap;

use cascade_core::NoProgress;
use cascade_data::{DataConfig, DataReport, RunOptions, Verify, run};
use common::{Rng, edited, out_dir, random_words, read_jsonl, text, true_jaccard};

/// Words replaced in each copy, cycled over the base documents: similarities from ~0.97 to ~0.3.
const EDITS: [usize; 12] = [1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 24, 40];

struct Labelled {
    corpus: tempfile::TempDir,
    /// copy id -> (base id, true Jaccard similarity).
    truth: BTreeMap<String, (String, f64)>,
}

fn labelled_set(n_bases: usize) -> Labelled {
    let corpus = tempfile::tempdir().unwrap();
    let mut rng = Rng(0x5eed_cafe);
    let mut fresh = 0;
    let mut truth = BTreeMap::new();
    for i in 0..n_bases {
        let base = random_words(&mut rng, 300);
        let copy = edited(&base, EDITS[i % EDITS.len()], &mut rng, &mut fresh);
        let (base_id, copy_id) = (format!("base_{i:03}.txt"), format!("copy_{i:03}.txt"));
        std::fs::write(corpus.path().join(&base_id), text(&base)).unwrap();
        std::fs::write(corpus.path().join(&copy_id), text(&copy)).unwrap();
        truth.insert(copy_id, (base_id, true_jaccard(&base, &copy)));
    }
    Labelled { corpus, truth }
}

struct Scores {
    recall: f64,
    precision: f64,
    above: usize,
    removed: usize,
}

fn score(set: &Labelled, verify: Verify) -> (Scores, DataReport) {
    let mut config = DataConfig::default();
    config.same_work.enabled = false;
    config.dedup.verify = verify;
    let threshold = config.dedup.threshold;
    let out = out_dir();
    let report = run(&config, set.corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    let removed: BTreeMap<String, String> = read_jsonl(&out.path().join("rejected.jsonl"))
        .into_iter()
        .filter(|d| d["meta"]["reason"] == "near_duplicate")
        .map(|d| (d["id"].as_str().unwrap().to_string(), d["meta"]["duplicate_of"].as_str().unwrap().to_string()))
        .collect();
    assert!(removed.keys().all(|id| id.starts_with("copy_")), "a base document was removed: {removed:?}");
    let above: Vec<&String> = set.truth.iter().filter(|(_, (_, j))| *j >= threshold).map(|(id, _)| id).collect();
    let found = above.iter().filter(|id| removed.get(**id) == Some(&set.truth[**id].0)).count();
    let correct = removed.iter().filter(|(id, of)| set.truth[*id].0 == **of && set.truth[*id].1 >= threshold).count();
    let scores = Scores {
        recall: found as f64 / above.len().max(1) as f64,
        precision: if removed.is_empty() { 1.0 } else { correct as f64 / removed.len() as f64 },
        above: above.len(),
        removed: removed.len(),
    };
    (scores, report)
}

#[test]
fn recall_and_precision_on_the_labelled_set() {
    let set = labelled_set(96);
    let sims: Vec<f64> = set.truth.values().map(|(_, j)| *j).collect();
    assert!(sims.iter().any(|&j| j > 0.95) && sims.iter().any(|&j| j < 0.5), "{sims:?}");

    let (exact, report) = score(&set, Verify::Exact);
    println!(
        "verify=exact: {} pairs >= 0.8, recall {:.3}, precision {:.3}, removed {}",
        exact.above, exact.recall, exact.precision, exact.removed
    );
    assert!(exact.above >= 40);
    assert!(exact.recall >= 0.9, "recall {}", exact.recall);
    assert_eq!(exact.precision, 1.0, "exact verification removes only true near-duplicates");
    assert_eq!(report.near_duplicates.docs as usize, exact.removed);
    assert!(report.near_dedup.candidate_pairs >= report.near_dedup.confirmed_pairs);

    let (signature, _) = score(&set, Verify::Signature);
    println!("verify=signature: recall {:.3}, precision {:.3}", signature.recall, signature.precision);
    assert!(signature.recall >= 0.8 && signature.precision >= 0.9);

    let (none, _) = score(&set, Verify::None);
    println!("verify=none: recall {:.3}, precision {:.3}", none.recall, none.precision);
    assert!(none.recall >= exact.recall, "without verification every candidate is merged");
    assert!(none.precision >= 0.6, "precision {}", none.precision);
}

#[test]
fn estimated_similarity_tracks_the_truth() {
    let set = labelled_set(24);
    let mut config = DataConfig::default();
    config.same_work.enabled = false;
    let out = out_dir();
    run(&config, set.corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    for cluster in read_jsonl(&out.path().join("clusters.jsonl")) {
        assert_eq!(cluster["kind"], "near_duplicate");
        let member = &cluster["members"][1];
        let truth = set.truth[member["id"].as_str().unwrap()].1;
        let exact = member["exact"].as_f64().unwrap();
        assert!((exact - truth).abs() < 1e-9, "exact {exact} vs truth {truth}");
        let estimated = member["estimated"].as_f64().unwrap();
        assert!((estimated - truth).abs() < 0.15, "estimate {estimated} vs truth {truth}");
    }
}

#[test]
fn exact_duplicates_keep_the_first_occurrence() {
    let corpus = tempfile::tempdir().unwrap();
    let mut rng = Rng(9);
    let words = text(&random_words(&mut rng, 120));
    // Identical after normalization: CRLF line ends, a decomposed accent, a BOM.
    std::fs::write(corpus.path().join("a.txt"), format!("caf\u{e9}\n{words}")).unwrap();
    std::fs::write(corpus.path().join("b.txt"), format!("\u{feff}cafe\u{301}\r\n{}", words.replace('\n', "\r\n"))).unwrap();
    let jsonl = serde_json::json!({"text": format!("caf\u{e9}\n{words}")}).to_string();
    std::fs::write(corpus.path().join("c.jsonl"), format!("{jsonl}\n")).unwrap();
    let out = out_dir();
    let report = run(&DataConfig::default(), corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.exact_duplicates.docs, 2);
    let rejected = read_jsonl(&out.path().join("rejected.jsonl"));
    let removed: Vec<(&str, &str)> = rejected
        .iter()
        .map(|d| (d["id"].as_str().unwrap(), d["meta"]["duplicate_of"].as_str().unwrap()))
        .collect();
    assert_eq!(removed, [("b.txt", "a.txt"), ("c.jsonl:1", "a.txt")]);
    assert!(rejected.iter().all(|d| d["meta"]["reason"] == "exact_duplicate"));
    let clusters = read_jsonl(&out.path().join("clusters.jsonl"));
    assert_eq!(clusters[0]["kind"], "exact");
    assert_eq!(clusters[0]["members"].as_array().unwrap().len(), 3);

    let mut off = DataConfig::default();
    off.dedup.exact = false;
    off.dedup.near = false;
    let out = out_dir();
    let report = run(&off, corpus.path(), out.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.exact_duplicates.docs + report.near_duplicates.docs, 0);
}
