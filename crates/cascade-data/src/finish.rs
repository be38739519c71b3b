//! Everything after the signature pass, shared by [`crate::run`] and [`crate::merge`]: id
//! checks, strict mode, dedup and split planning, writing the outputs and the report.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::time::Instant;

use cascade_core::Progress;
use rustc_hash::FxHashSet;

use crate::RunOptions;
use crate::config::DataConfig;
use crate::dedup::{Fate, Plan, PlannedCluster, plan};
use crate::error::DataError;
use crate::input::Corpus;
use crate::minhash::lsh_probability;
use crate::output::{load_shingle_sets, write_documents};
use crate::report::{
    BadInput, BadInputKind, BadInputReport, Cluster, ClusterMember, DataReport, NearDedupReport, Removed,
    SameWorkReport, SplitReport, SplitSide, StepStats, Timings,
};
use crate::sign::{DocRecord, SignaturePass};

/// Checks that `out_dir` exists and is empty.
pub(crate) fn check_out_dir(out_dir: &Path) -> Result<(), DataError> {
    let mut entries = std::fs::read_dir(out_dir).map_err(|e| DataError::OutDir {
        path: out_dir.to_path_buf(),
        message: format!("the output directory must exist: {e}"),
    })?;
    if entries.next().is_some() {
        return Err(DataError::OutDir { path: out_dir.to_path_buf(), message: "the output directory is not empty".into() });
    }
    Ok(())
}

/// The first bad input as an error, for strict mode.
pub(crate) fn strict_error(corpus: &Corpus, bad: &[BadInput]) -> Result<(), DataError> {
    match bad.first() {
        Some(b) => Err(DataError::BadInput {
            path: corpus.root.join(&b.path),
            line: b.line,
            kind: b.kind,
            message: b.message.clone(),
        }),
        None => Ok(()),
    }
}

/// Gives each document whose id repeats an earlier one its `source` (made unique) as id.
fn dedupe_ids(corpus: &Corpus, docs: &mut [DocRecord], bad: &mut Vec<BadInput>) {
    let mut seen: FxHashSet<String> = FxHashSet::default();
    for doc in docs.iter_mut() {
        if seen.insert(doc.id.clone()) {
            continue;
        }
        let mut new_id = doc.source.clone();
        let mut n = 1;
        while seen.contains(&new_id) {
            n += 1;
            new_id = format!("{}#{n}", doc.source);
        }
        bad.push(BadInput {
            path: corpus.files[doc.file as usize].rel.clone(),
            line: doc.line,
            kind: BadInputKind::DuplicateId,
            message: format!("id `{}` repeats an earlier document's; renamed to `{new_id}`", doc.id),
            count: 1,
        });
        seen.insert(new_id.clone());
        doc.id = new_id;
    }
}

fn add(removed: &mut Removed, doc: &DocRecord) {
    removed.docs += 1;
    removed.bytes += doc.bytes;
    removed.words += doc.words;
}

fn step(name: &str, before: &Removed, removed: &Removed) -> StepStats {
    StepStats {
        step: name.into(),
        docs_in: before.docs,
        docs_out: before.docs - removed.docs,
        bytes_in: before.bytes,
        bytes_out: before.bytes - removed.bytes,
        words_in: before.words,
        words_out: before.words - removed.words,
    }
}

fn minus(a: &Removed, b: &Removed) -> Removed {
    Removed { docs: a.docs - b.docs, bytes: a.bytes - b.bytes, words: a.words - b.words }
}

fn to_cluster(kind: &str, cluster: &PlannedCluster, docs: &[DocRecord], plan: &Plan) -> Cluster {
    Cluster {
        kind: kind.into(),
        keeper: docs[cluster.keeper].id.clone(),
        members: cluster
            .members
            .iter()
            .map(|&(m, estimated, exact)| ClusterMember { id: docs[m].id.clone(), estimated, exact })
            .collect(),
        split: if plan.resolved_val(cluster.keeper) { "val" } else { "train" }.into(),
    }
}

/// The inputs of [`finish`] besides the config: what the signature pass (or the merge of
/// its shards) produced.
pub(crate) struct Finish<'a> {
    pub corpus: &'a Corpus,
    pub corpus_arg: &'a Path,
    pub pass: SignaturePass,
    pub started: Instant,
    pub discover_s: f64,
}

/// Plans dedup and split, writes every output into `out_dir` and returns the report.
pub(crate) fn finish(
    input: Finish<'_>,
    config: &DataConfig,
    options: &RunOptions,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<DataReport, DataError> {
    let Finish { corpus, corpus_arg, pass, started, discover_s } = input;
    let SignaturePass { mut docs, bad, normalize, wall_s: signature_pass_s } = pass;
    let mut bad: Vec<BadInput> = corpus.unreadable.iter().cloned().chain(bad).collect();
    dedupe_ids(corpus, &mut docs, &mut bad);
    bad.sort_by(|a, b| (&a.path, a.line).cmp(&(&b.path, b.line)));
    if options.strict {
        strict_error(corpus, &bad)?;
    }

    let mut loader = |needed: &[usize]| load_shingle_sets(corpus, &docs, needed, config, progress);
    let plan = plan(&docs, config, &mut loader)?;

    let write_started = Instant::now();
    write_documents(corpus, &docs, &plan, config, out_dir, progress)?;
    let mut clusters_out = Vec::new();
    let exact: Vec<Cluster> = plan.exact_clusters.iter().map(|c| to_cluster("exact", c, &docs, &plan)).collect();
    let near: Vec<Cluster> = plan.near_clusters.iter().map(|c| to_cluster("near_duplicate", c, &docs, &plan)).collect();
    let same: Vec<Cluster> = plan.same_work_clusters.iter().map(|c| to_cluster("same_work", c, &docs, &plan)).collect();
    for cluster in exact.iter().chain(&near).chain(&same) {
        serde_json::to_writer(&mut clusters_out, cluster).map_err(|e| DataError::io(out_dir.join("clusters.jsonl"), e.into()))?;
        clusters_out.push(b'\n');
    }
    let clusters_path = out_dir.join("clusters.jsonl");
    std::fs::write(&clusters_path, &clusters_out).map_err(|e| DataError::io(&clusters_path, e))?;
    let write_s = write_started.elapsed().as_secs_f64();

    // Counts per step and reason.
    let mut all = Removed::default();
    let mut raw = Removed::default();
    let mut filters: BTreeMap<String, Removed> = BTreeMap::new();
    let (mut filtered, mut exact_dups, mut near_dups, mut same_dups) =
        (Removed::default(), Removed::default(), Removed::default(), Removed::default());
    let (mut train, mut val) = (SplitSide::default(), SplitSide::default());
    for (i, doc) in docs.iter().enumerate() {
        add(&mut all, doc);
        raw.docs += 1;
        raw.bytes += doc.raw_bytes;
        raw.words += doc.raw_words;
        match plan.fate(i) {
            Fate::Filtered(r) => {
                add(filters.entry(r.filter.name().into()).or_default(), doc);
                add(&mut filtered, doc);
            }
            Fate::ExactDuplicate { .. } => add(&mut exact_dups, doc),
            Fate::NearDuplicate { .. } => add(&mut near_dups, doc),
            Fate::SameWorkDuplicate { .. } => add(&mut same_dups, doc),
            Fate::Kept { group, val: is_val } => {
                let side = if is_val { &mut val } else { &mut train };
                side.docs += 1;
                side.bytes += doc.bytes;
                side.words += doc.words;
                side.groups += u64::from(group == i);
            }
        }
    }
    let after_filter = minus(&all, &filtered);
    let after_exact = minus(&after_filter, &exact_dups);
    let after_near = minus(&after_exact, &near_dups);
    let steps = vec![
        StepStats {
            step: "normalize".into(),
            docs_in: raw.docs,
            docs_out: all.docs,
            bytes_in: raw.bytes,
            bytes_out: all.bytes,
            words_in: raw.words,
            words_out: all.words,
        },
        step("filter", &all, &filtered),
        step("exact_dedup", &after_filter, &exact_dups),
        step("near_dedup", &after_exact, &near_dups),
        step("same_work", &after_near, &same_dups),
    ];
    let mut counts = BTreeMap::new();
    for b in &bad {
        *counts.entry(b.kind.name().to_string()).or_insert(0) += 1;
    }
    let d = &config.dedup;
    let kept_bytes = train.bytes + val.bytes;
    let report = DataReport {
        corpus: corpus_arg.display().to_string(),
        files: corpus.files.len() as u64,
        file_bytes: corpus.files.iter().map(|f| f.size).sum(),
        skipped_files: corpus.skipped.clone(),
        bad_inputs: BadInputReport { counts, items: bad },
        normalize,
        steps,
        filters,
        exact_duplicates: exact_dups,
        near_duplicates: near_dups,
        same_work_duplicates: same_dups,
        near_dedup: NearDedupReport {
            ngram: d.ngram,
            bands: d.bands,
            rows: d.rows,
            num_perm: d.num_perm(),
            threshold: d.threshold,
            verify: d.verify,
            s_curve: s_curve(d.bands, d.rows),
            candidate_pairs: plan.near_candidate_pairs,
            confirmed_pairs: plan.near_confirmed_pairs,
            clusters: plan.near_clusters.len() as u64,
        },
        same_work: SameWorkReport {
            enabled: config.same_work.enabled,
            threshold: config.same_work.threshold,
            action: config.same_work.action,
            candidate_pairs: plan.same_work_candidate_pairs,
            confirmed_pairs: plan.same_work_confirmed_pairs,
            clusters: same,
        },
        split: SplitReport {
            val_fraction: config.split.val_fraction,
            val_byte_fraction: if kept_bytes == 0 { 0.0 } else { val.bytes as f64 / kept_bytes as f64 },
            train,
            val,
        },
        timings: Timings {
            discover_s,
            signature_pass_s,
            candidates_s: plan.candidates_s,
            verify_s: plan.verify_s,
            cluster_s: plan.cluster_s,
            write_s,
            total_s: started.elapsed().as_secs_f64(),
        },
    };
    let stats_path = out_dir.join("stats.json");
    let mut file = std::fs::File::create(&stats_path).map_err(|e| DataError::io(&stats_path, e))?;
    serde_json::to_writer_pretty(&mut file, &report).map_err(|e| DataError::io(&stats_path, e.into()))?;
    file.write_all(b"\n").map_err(|e| DataError::io(&stats_path, e))?;
    Ok(report)
}

/// LSH candidate probabilities at similarities 0.5, 0.6, 0.7, 0.8 and 0.9.
pub fn s_curve(bands: usize, rows: usize) -> Vec<crate::report::SCurvePoint> {
    [0.5, 0.6, 0.7, 0.8, 0.9]
        .into_iter()
        .map(|similarity| crate::report::SCurvePoint { similarity, probability: lsh_probability(similarity, bands, rows) })
        .collect()
}
