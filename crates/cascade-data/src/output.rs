//! The passes that re-read the corpus: loading shingle sets of verification candidates, and
//! writing `train.jsonl`, `val.jsonl` and `rejected.jsonl` in corpus order.
//!
//! Neither pass keeps more text in memory than a window of files: windows of small files are
//! processed in parallel and written in order; a file larger than the window is streamed
//! straight to the writers.

use std::path::Path;

use cascade_core::{Document, Progress, ShardWriter};
use rayon::prelude::*;
use rustc_hash::{FxHashMap, FxHashSet};
use serde_json::{Map, Value, json};

use crate::config::DataConfig;
use crate::dedup::{Fate, Plan};
use crate::error::DataError;
use crate::input::{Corpus, RawRecord, scan_file};
use crate::minhash::shingle_set;
use crate::normalize::normalize;
use crate::report::NormalizeStats;
use crate::sign::DocRecord;

/// Text bytes (on disk) per parallel window of files.
const WINDOW_BYTES: u64 = 64 << 20;
/// Files per parallel window.
const WINDOW_FILES: usize = 256;

/// The range of `docs` (sorted by file, then record) that belongs to each file.
pub(crate) fn file_ranges(docs: &[DocRecord], n_files: usize) -> Vec<std::ops::Range<usize>> {
    (0..n_files)
        .map(|f| {
            let lo = docs.partition_point(|d| (d.file as usize) < f);
            let hi = docs.partition_point(|d| (d.file as usize) <= f);
            lo..hi
        })
        .collect()
}

fn changed(corpus: &Corpus, file: usize, message: impl Into<String>) -> DataError {
    DataError::InputChanged { path: corpus.path_of(&corpus.files[file]), message: message.into() }
}

/// Re-reads the files holding `needed` documents and returns their shingle sets.
pub(crate) fn load_shingle_sets(
    corpus: &Corpus,
    docs: &[DocRecord],
    needed: &[usize],
    config: &DataConfig,
    progress: &dyn Progress,
) -> Result<FxHashMap<usize, Vec<u64>>, DataError> {
    let mut by_file: FxHashMap<usize, FxHashMap<u64, usize>> = FxHashMap::default();
    for &i in needed {
        by_file.entry(docs[i].file as usize).or_default().insert(docs[i].record, i);
    }
    let mut files: Vec<(usize, FxHashMap<u64, usize>)> = by_file.into_iter().collect();
    files.sort_unstable_by_key(|(f, _)| *f);
    progress.begin("data: verify candidates", Some(files.len() as u64), "files");
    let ngram = config.dedup.ngram;
    let per_file: Vec<Vec<(usize, Vec<u64>)>> = files
        .par_iter()
        .map(|(file, wanted)| {
            let mut sets = Vec::with_capacity(wanted.len());
            let mut sink = |raw: RawRecord| {
                if let Some(&i) = wanted.get(&raw.record) {
                    let text = normalize(raw.text, &mut NormalizeStats::default());
                    sets.push((i, shingle_set(&text, ngram)));
                }
                Ok(())
            };
            scan_file(corpus, &corpus.files[*file], &config.reader, false, &mut sink)?;
            progress.advance(1);
            if sets.len() != wanted.len() {
                return Err(changed(corpus, *file, format!("{} of {} records found again", sets.len(), wanted.len())));
            }
            Ok(sets)
        })
        .collect::<Result<_, DataError>>()?;
    progress.end();
    Ok(per_file.into_iter().flatten().collect())
}

/// Where a document goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Dest {
    Train,
    Val,
    Rejected,
}

/// Lookups the writer needs besides the plan.
struct Annotations<'a> {
    docs: &'a [DocRecord],
    plan: &'a Plan,
    /// Similarity of each removed near/same-work duplicate to its keeper.
    similarity: FxHashMap<usize, (f64, Option<f64>)>,
    /// Members of same-work clusters (their kept documents carry `split_group`).
    in_same_work: FxHashSet<usize>,
}

impl Annotations<'_> {
    fn route(&self, idx: usize, extra: Map<String, Value>) -> (Dest, Map<String, Value>) {
        let docs = self.docs;
        let mut meta = extra;
        let duplicate = |meta: &mut Map<String, Value>, reason: &str, step: &str, of: usize| {
            meta.insert("reason".into(), reason.into());
            meta.insert("step".into(), step.into());
            meta.insert("duplicate_of".into(), docs[of].id.clone().into());
            if let Some((estimated, exact)) = self.similarity.get(&idx) {
                meta.insert("similarity".into(), json!({"estimated": estimated, "exact": exact}));
            }
        };
        match self.plan.fate(idx) {
            Fate::Kept { group, val } => {
                if self.in_same_work.contains(&idx) {
                    meta.insert("split_group".into(), docs[group].id.clone().into());
                }
                (if val { Dest::Val } else { Dest::Train }, meta)
            }
            Fate::Filtered(r) => {
                meta.insert("reason".into(), r.filter.name().into());
                meta.insert("step".into(), "filter".into());
                meta.insert("value".into(), json!(r.value));
                meta.insert("limit".into(), json!(r.limit));
                (Dest::Rejected, meta)
            }
            Fate::ExactDuplicate { of } => {
                duplicate(&mut meta, "exact_duplicate", "exact_dedup", of);
                (Dest::Rejected, meta)
            }
            Fate::NearDuplicate { of } => {
                duplicate(&mut meta, "near_duplicate", "near_dedup", of);
                (Dest::Rejected, meta)
            }
            Fate::SameWorkDuplicate { of } => {
                duplicate(&mut meta, "same_work_duplicate", "same_work", of);
                (Dest::Rejected, meta)
            }
        }
    }
}

fn emit_file(
    corpus: &Corpus,
    file: usize,
    range: std::ops::Range<usize>,
    ann: &Annotations<'_>,
    config: &DataConfig,
    sink: &mut dyn FnMut(Dest, Document) -> Result<(), DataError>,
) -> Result<(), DataError> {
    let mut seen = 0usize;
    let mut on_record = |raw: RawRecord| {
        let idx = range.start + raw.record as usize;
        if idx >= range.end || ann.docs[idx].record != raw.record {
            return Err(changed(corpus, file, format!("record {} was not seen by the signature pass", raw.record)));
        }
        seen += 1;
        let text = normalize(raw.text, &mut NormalizeStats::default());
        if text.len() as u64 != ann.docs[idx].bytes {
            return Err(changed(corpus, file, format!("record {} has a different length", raw.record)));
        }
        let (dest, meta) = ann.route(idx, raw.extra);
        sink(dest, Document { id: ann.docs[idx].id.clone(), text, source: raw.source, meta })
    };
    scan_file(corpus, &corpus.files[file], &config.reader, true, &mut on_record)?;
    if seen != range.len() {
        return Err(changed(corpus, file, format!("{seen} records read, {} expected", range.len())));
    }
    Ok(())
}

/// Writes `train.jsonl`, `val.jsonl` and `rejected.jsonl` into `out_dir`.
pub(crate) fn write_documents(
    corpus: &Corpus,
    docs: &[DocRecord],
    plan: &Plan,
    config: &DataConfig,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<(), DataError> {
    let mut similarity = FxHashMap::default();
    for cluster in plan.near_clusters.iter().chain(&plan.same_work_clusters) {
        for &(m, estimated, exact) in &cluster.members[1..] {
            similarity.insert(m, (estimated, exact));
        }
    }
    let in_same_work = plan.same_work_clusters.iter().flat_map(|c| c.members.iter().map(|m| m.0)).collect();
    let ann = Annotations { docs, plan, similarity, in_same_work };
    let ranges = file_ranges(docs, corpus.files.len());
    let mut train = ShardWriter::create(&out_dir.join("train.jsonl"))?;
    let mut val = ShardWriter::create(&out_dir.join("val.jsonl"))?;
    let mut rejected = ShardWriter::create(&out_dir.join("rejected.jsonl"))?;
    let mut write = |dest: Dest, doc: Document| -> Result<(), DataError> {
        match dest {
            Dest::Train => train.write(&doc)?,
            Dest::Val => val.write(&doc)?,
            Dest::Rejected => rejected.write(&doc)?,
        }
        Ok(())
    };
    progress.begin("data: write outputs", Some(corpus.files.len() as u64), "files");
    let mut start = 0;
    while start < corpus.files.len() {
        let mut end = start + 1;
        let mut bytes = corpus.files[start].size;
        while end < corpus.files.len() && end - start < WINDOW_FILES && bytes + corpus.files[end].size <= WINDOW_BYTES {
            bytes += corpus.files[end].size;
            end += 1;
        }
        if end - start == 1 && bytes > WINDOW_BYTES {
            emit_file(corpus, start, ranges[start].clone(), &ann, config, &mut write)?;
        } else {
            let buffers: Vec<Vec<(Dest, Document)>> = (start..end)
                .into_par_iter()
                .map(|f| {
                    let mut out = Vec::with_capacity(ranges[f].len());
                    emit_file(corpus, f, ranges[f].clone(), &ann, config, &mut |dest, doc| {
                        out.push((dest, doc));
                        Ok(())
                    })?;
                    Ok(out)
                })
                .collect::<Result<_, DataError>>()?;
            for (dest, doc) in buffers.into_iter().flatten() {
                write(dest, doc)?;
            }
        }
        progress.advance((end - start) as u64);
        start = end;
    }
    progress.end();
    train.finish()?;
    val.finish()?;
    rejected.finish()?;
    Ok(())
}
