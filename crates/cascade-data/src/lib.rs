//! Cascade's data stage: turns a directory of text or JSONL files into clean, deduplicated
//! train/validation shards plus a report of every decision.
//!
//! The stage runs as passes over the corpus, none of which holds more than a window of text
//! in memory (state grows with the number of documents: ids, hashes and MinHash signatures;
//! a `.txt`/`.md` file is one document and is held whole while it is processed):
//!
//! 1. **signature pass** ([`run`], or [`run_shard`] on a slice of the files): read `.txt`/`.md`
//!    files (one document each) and JSONL records (plain, `.gz` or `.zst`), repair invalid
//!    UTF-8, normalize (NFC, `\n` line ends, control characters removed), apply the
//!    Gopher/C4-style filters, hash the text (xxh3-128) and compute a MinHash signature over
//!    word 5-gram shingles;
//! 2. **planning**: exact dedup (first occurrence wins), LSH over `bands x rows` of the
//!    signature for near-duplicates, agreement counts for low-similarity "same work" pairs
//!    (two editions of a play), exact-Jaccard verification of candidates by re-reading only
//!    them, union-find clusters with the first member kept, and a train/validation split by a
//!    hash of the cluster, so the members of a cluster never straddle the split;
//! 3. **write pass**: re-read the corpus and write the outputs in corpus order.
//!
//! Outputs in the (existing, empty) output directory:
//!
//! | file | content |
//! |---|---|
//! | `train.jsonl`, `val.jsonl` | [`cascade_core::Document`] per line; `meta` keeps a JSONL record's other fields, and `split_group` for members of a same-work cluster |
//! | `rejected.jsonl` | every dropped document with `meta.reason` (filter name, `exact_duplicate`, `near_duplicate`, `same_work_duplicate`), `meta.step` and the value/limit or `duplicate_of` and similarity |
//! | `clusters.jsonl` | one [`Cluster`] per line: exact, near-duplicate and same-work clusters with member ids and similarities |
//! | `stats.json` | the [`DataReport`] |
//!
//! Bad input (unreadable, empty or binary files, malformed JSONL lines, missing text fields,
//! invalid UTF-8, repeated ids) is counted and listed with path and line in the report; with
//! [`RunOptions::strict`] the first one is an error instead.
#![deny(missing_docs)]

mod config;
mod dedup;
mod error;
mod filter;
mod finish;
mod input;
pub mod minhash;
mod normalize;
mod output;
mod report;
mod shard;
mod sign;

use std::path::Path;
use std::time::Instant;

use cascade_core::Progress;

pub use config::{DataConfig, DedupConfig, FilterConfig, ReaderConfig, SameWorkAction, SameWorkConfig, SplitConfig, Verify};
pub use error::DataError;
pub use filter::check as check_filters;
pub use finish::s_curve;
pub use normalize::normalize;
pub use report::{
    BadInput, BadInputKind, BadInputReport, Cluster, ClusterMember, DataReport, FilterKind, NearDedupReport,
    NormalizeStats, Rejection, Removed, SCurvePoint, SameWorkReport, SkippedFile, SplitReport, SplitSide, StepStats,
    Timings,
};
pub use shard::{ShardSpec, ShardSummary, merge, run_shard};

/// Options of one run that are not part of the cached config.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Turn bad input into an error instead of counting it.
    pub strict: bool,
}

/// Runs the whole stage on `corpus` (a directory tree or a single `.txt`/`.md`/`.jsonl` file,
/// optionally `.gz`/`.zst`) and writes the outputs into `out_dir`, which must exist and be
/// empty (the caller commits it atomically). Returns the report also written to `stats.json`.
pub fn run(
    config: &DataConfig,
    corpus: &Path,
    out_dir: &Path,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<DataReport, DataError> {
    let started = Instant::now();
    config.validate()?;
    finish::check_out_dir(out_dir)?;
    let listing = input::discover(corpus)?;
    let discover_s = started.elapsed().as_secs_f64();
    let d = &config.dedup;
    if d.near {
        let curve: Vec<String> =
            s_curve(d.bands, d.rows).iter().map(|p| format!("{:.1}: {:.3}", p.similarity, p.probability)).collect();
        progress.message(&format!("LSH {}x{} candidate probability by similarity: {}", d.bands, d.rows, curve.join(", ")));
    }
    let all: Vec<usize> = (0..listing.files.len()).collect();
    let pass = sign::signature_pass(&listing, &all, config, progress)?;
    let input = finish::Finish { corpus: &listing, corpus_arg: corpus, pass, started, discover_s };
    finish::finish(input, config, options, out_dir, progress)
}
