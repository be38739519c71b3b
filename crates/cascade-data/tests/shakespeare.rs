//! The default corpus end to end: the two editions of each play cluster as one work and never
//! straddle the split, unrelated plays do not cluster, the metadata file is filtered, and every
//! input document ends up in exactly one output with a reason.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use cascade_core::NoProgress;
use cascade_data::{DataConfig, DataReport, RunOptions, SameWorkAction, run};
use common::{out_dir, read_jsonl, shakespeare_texts};

/// The play a file name belongs to, with the spelling variants of the two editions folded.
fn work_of(id: &str) -> String {
    let stem = id.trim_end_matches(".txt").trim_end_matches("_f").trim_end_matches("_gut");
    let stem = stem.trim_start_matches("tragedy_of_");
    let aliases = [
        ("all_is_well_that_ends_well", "alls_well_that_ends_well"),
        ("anthonie_and_cleopatra", "antony_and_cleopatra"),
        ("comedy_of_errours", "comedy_of_errors"),
        ("loves_labour_lost", "loves_labours_lost"),
        ("midsummer_nights_dreame", "midsummer_nights_dream"),
        ("twelfe-night", "twelfth_night"),
    ];
    aliases.iter().find(|(a, _)| *a == stem).map_or(stem, |(_, b)| b).to_string()
}

#[test]
fn editions_cluster_as_one_work_and_stay_on_one_side() {
    let Some(texts) = shakespeare_texts() else { return };
    let out = out_dir();
    let report = run(&DataConfig::default(), texts, out.path(), &RunOptions::default(), &NoProgress).unwrap();

    // Every play with two editions forms one same-work cluster, and nothing else clusters.
    let clusters = &report.same_work.clusters;
    assert_eq!(clusters.len(), 35, "{clusters:#?}");
    for cluster in clusters {
        assert_eq!(cluster.members.len(), 2, "{cluster:?}");
        let works: BTreeSet<String> = cluster.members.iter().map(|m| work_of(&m.id)).collect();
        assert_eq!(works.len(), 1, "a cluster mixes works: {cluster:?}");
        let exact = cluster.members[1].exact.unwrap();
        assert!((0.12..0.20).contains(&exact), "edition similarity {exact} in {cluster:?}");
    }
    assert_eq!(report.near_duplicates.docs, 0);
    assert_eq!(report.exact_duplicates.docs, 0);

    // The split keeps each work on one side.
    let train = read_jsonl(&out.path().join("train.jsonl"));
    let val = read_jsonl(&out.path().join("val.jsonl"));
    let mut side_of: BTreeMap<String, BTreeSet<&str>> = BTreeMap::new();
    for (side, docs) in [("train", &train), ("val", &val)] {
        for doc in docs {
            side_of.entry(work_of(doc["id"].as_str().unwrap())).or_default().insert(side);
        }
    }
    for (work, sides) in &side_of {
        assert_eq!(sides.len(), 1, "{work} straddles the split");
    }
    assert!(!val.is_empty() && !train.is_empty());
    let paired = val.iter().filter(|d| d["meta"]["split_group"].is_string()).count();
    assert!(paired > 0, "validation holds at least one two-edition work");

    // metadata.txt (an INI listing) is the one filtered document; all 78 are accounted for.
    let rejected = read_jsonl(&out.path().join("rejected.jsonl"));
    assert_eq!(rejected.len(), 1);
    assert_eq!(rejected[0]["id"], "metadata.txt");
    assert_eq!(rejected[0]["meta"]["reason"], "alpha_word_fraction");
    assert_eq!(train.len() + val.len() + rejected.len(), 78);
    assert_eq!(report.split.train.docs + report.split.val.docs, 77);

    // stats.json is the returned report; clusters.jsonl lists the same clusters.
    let stats: DataReport =
        serde_json::from_str(&std::fs::read_to_string(out.path().join("stats.json")).unwrap()).unwrap();
    assert_eq!((&stats.steps, &stats.filters, &stats.split), (&report.steps, &report.filters, &report.split));
    let keepers = |r: &DataReport| r.same_work.clusters.iter().map(|c| c.keeper.clone()).collect::<Vec<_>>();
    assert_eq!(keepers(&stats), keepers(&report));
    assert_eq!(read_jsonl(&out.path().join("clusters.jsonl")).len(), 35);
    assert!(report.near_dedup.s_curve.iter().any(|p| p.similarity == 0.8 && p.probability > 0.9));
}

#[test]
fn deduplicate_action_keeps_one_edition() {
    let Some(texts) = shakespeare_texts() else { return };
    let out = out_dir();
    let mut config = DataConfig::default();
    config.same_work.action = SameWorkAction::Deduplicate;
    let report = run(&config, texts, out.path(), &RunOptions::default(), &NoProgress).unwrap();
    assert_eq!(report.same_work_duplicates.docs, 35);
    assert_eq!(report.split.train.docs + report.split.val.docs, 42);
    let rejected = read_jsonl(&out.path().join("rejected.jsonl"));
    let same: Vec<_> = rejected.iter().filter(|d| d["meta"]["reason"] == "same_work_duplicate").collect();
    assert_eq!(same.len(), 35);
    for doc in same {
        assert_eq!(work_of(doc["id"].as_str().unwrap()), work_of(doc["meta"]["duplicate_of"].as_str().unwrap()));
    }
}
