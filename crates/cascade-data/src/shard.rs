//! Sharded signature pass and merge, so the expensive pass can be spread over machines by any
//! batch scheduler.
//!
//! Shard `I/N` reads the files whose index in the sorted corpus listing is `I` modulo `N`, and
//! writes into its own directory:
//!
//! - `partial.json`: format version, shard spec, a hash of the config parts the pass depends
//!   on, a hash of the corpus listing (paths and sizes), its bad inputs and normalization
//!   counts;
//! - `docs.jsonl`: one record per document (ids, sizes, filter verdict, exact hash, MinHash
//!   signature in base64), never the text.
//!
//! The merge checks that the `N` directories are the complete set for the same config and
//! corpus, puts the records back in corpus order and finishes exactly like an unsharded run,
//! re-reading the corpus only for verification and to write the outputs.

use std::fmt;
use std::io::{BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Instant;

use cascade_core::Progress;
use serde::{Deserialize, Serialize};

use crate::config::DataConfig;
use crate::error::DataError;
use crate::finish::{Finish, check_out_dir, finish, strict_error};
use crate::input::{Corpus, discover};
use crate::report::{BadInput, DataReport, NormalizeStats};
use crate::sign::{DocRecord, SignaturePass, signature_pass};
use crate::RunOptions;

const FORMAT: u32 = 1;
const HEADER: &str = "partial.json";
const DOCS: &str = "docs.jsonl";

/// Which slice of the input files a sharded signature pass reads: `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ShardSpec {
    /// 0-based shard index, below `count`.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl ShardSpec {
    /// Shard `index` of `count`; errors when `index >= count` or `count == 0`.
    pub fn new(index: usize, count: usize) -> Result<Self, DataError> {
        if count == 0 || index >= count {
            return Err(DataError::Config {
                key: "--shard".into(),
                message: format!("shard {index}/{count}: the index must be below the count, which must be positive"),
            });
        }
        Ok(Self { index, count })
    }

    /// The directory name of this shard's partial result: `I-of-N`.
    pub fn dir_name(&self) -> String {
        format!("{}-of-{}", self.index, self.count)
    }

    /// Whether file number `file_idx` of the sorted listing belongs to this shard.
    pub fn owns(&self, file_idx: usize) -> bool {
        file_idx % self.count == self.index
    }
}

impl fmt::Display for ShardSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl FromStr for ShardSpec {
    type Err = DataError;

    /// Parses `I/N`.
    fn from_str(text: &str) -> Result<Self, DataError> {
        let parse = || {
            let (i, n) = text.split_once('/')?;
            Some((i.trim().parse().ok()?, n.trim().parse().ok()?))
        };
        let (index, count) = parse().ok_or_else(|| DataError::Config {
            key: "--shard".into(),
            message: format!("expected I/N (e.g. 0/4), got `{text}`"),
        })?;
        Self::new(index, count)
    }
}

/// What one sharded signature pass did.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShardSummary {
    /// The shard.
    pub shard: ShardSpec,
    /// Input files read.
    pub files: u64,
    /// Documents recorded.
    pub docs: u64,
    /// Bad inputs found.
    pub bad_inputs: u64,
    /// Wall time of the pass.
    pub wall_s: f64,
}

#[derive(Debug, Serialize, Deserialize)]
struct PartialHeader {
    format: u32,
    shard: ShardSpec,
    config_hash: String,
    listing_hash: String,
    files: u64,
    docs: u64,
    bad: Vec<BadInput>,
    normalize: NormalizeStats,
    wall_s: f64,
}

/// Hash of the config parts the signature pass depends on.
fn pass_config_hash(config: &DataConfig) -> String {
    let d = &config.dedup;
    let signatures = config.dedup.near || config.same_work.enabled;
    cascade_core::hash::config_hash(&(&config.reader, &config.filters, d.ngram, d.num_perm(), d.seed, signatures))
}

fn listing_hash(corpus: &Corpus) -> String {
    let listing: Vec<(&str, u64)> = corpus.files.iter().map(|f| (f.rel.as_str(), f.size)).collect();
    cascade_core::hash::config_hash(&listing)
}

/// Runs the signature pass of shard `shard` over `corpus` and writes its partial result into
/// `out_dir` (existing and empty). With `options.strict`, bad input in the slice is an error.
///
/// Intended CLI flow: `cargo xtask data --corpus PATH --run-dir DIR --shard I/N` writes
/// `DIR/data-shards/I-of-N/` (see [`ShardSpec::dir_name`]) for each `I` (on any machines that
/// see the corpus at some path), then `cargo xtask data --corpus PATH --run-dir DIR --merge N`
/// calls [`merge`] on the `N` directories and commits `DIR/data/` as an unsharded run would.
pub fn run_shard(
    config: &DataConfig,
    corpus: &Path,
    shard: ShardSpec,
    out_dir: &Path,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<ShardSummary, DataError> {
    config.validate()?;
    ShardSpec::new(shard.index, shard.count)?;
    check_out_dir(out_dir)?;
    let listing = discover(corpus)?;
    let files: Vec<usize> = (0..listing.files.len()).filter(|&f| shard.owns(f)).collect();
    let pass = signature_pass(&listing, &files, config, progress)?;
    // The listing's own problems (unreadable directories) are rediscovered by the merge; in
    // strict mode shard 0 reports them.
    let bad = pass.bad;
    if options.strict {
        if shard.index == 0 {
            strict_error(&listing, &listing.unreadable)?;
        }
        strict_error(&listing, &bad)?;
    }
    let docs_path = out_dir.join(DOCS);
    let io = |e: std::io::Error| DataError::io(&docs_path, e);
    let mut out = BufWriter::new(std::fs::File::create(&docs_path).map_err(io)?);
    for doc in &pass.docs {
        serde_json::to_writer(&mut out, doc).map_err(|e| io(e.into()))?;
        out.write_all(b"\n").map_err(io)?;
    }
    out.flush().map_err(io)?;
    let header = PartialHeader {
        format: FORMAT,
        shard,
        config_hash: pass_config_hash(config),
        listing_hash: listing_hash(&listing),
        files: files.len() as u64,
        docs: pass.docs.len() as u64,
        bad,
        normalize: pass.normalize,
        wall_s: pass.wall_s,
    };
    let header_path = out_dir.join(HEADER);
    let text = serde_json::to_string_pretty(&header).map_err(|e| DataError::io(&header_path, e.into()))?;
    std::fs::write(&header_path, text).map_err(|e| DataError::io(&header_path, e))?;
    Ok(ShardSummary {
        shard,
        files: header.files,
        docs: header.docs,
        bad_inputs: header.bad.len() as u64,
        wall_s: header.wall_s,
    })
}

fn read_partial(dir: &Path) -> Result<(PartialHeader, Vec<DocRecord>), DataError> {
    let header_path = dir.join(HEADER);
    let text = std::fs::read_to_string(&header_path).map_err(|e| DataError::Shard {
        path: header_path.clone(),
        message: format!("cannot read the partial result: {e}"),
    })?;
    let header: PartialHeader = serde_json::from_str(&text)
        .map_err(|e| DataError::Shard { path: header_path.clone(), message: e.to_string() })?;
    if header.format != FORMAT {
        return Err(DataError::Shard {
            path: header_path,
            message: format!("format {} (this build reads {FORMAT})", header.format),
        });
    }
    let docs_path = dir.join(DOCS);
    let file = std::fs::File::open(&docs_path).map_err(|e| DataError::io(&docs_path, e))?;
    let mut docs = Vec::with_capacity(header.docs as usize);
    for (n, line) in BufReader::new(file).lines().enumerate() {
        let line = line.map_err(|e| DataError::io(&docs_path, e))?;
        let doc = serde_json::from_str(&line)
            .map_err(|e| DataError::Shard { path: docs_path.clone(), message: format!("line {}: {e}", n + 1) })?;
        docs.push(doc);
    }
    if docs.len() as u64 != header.docs {
        return Err(DataError::Shard {
            path: docs_path,
            message: format!("{} records, the header says {}", docs.len(), header.docs),
        });
    }
    Ok((header, docs))
}

/// Combines the partial results in `shard_dirs` (one per shard of the same `N`, any order)
/// into the outputs an unsharded [`crate::run`] writes into `out_dir`, and returns the same
/// report (its `signature_pass_s` is the sum over shards).
pub fn merge(
    config: &DataConfig,
    corpus: &Path,
    shard_dirs: &[PathBuf],
    out_dir: &Path,
    options: &RunOptions,
    progress: &dyn Progress,
) -> Result<DataReport, DataError> {
    let started = Instant::now();
    config.validate()?;
    check_out_dir(out_dir)?;
    let listing = discover(corpus)?;
    let discover_s = started.elapsed().as_secs_f64();
    let (config_hash, files_hash) = (pass_config_hash(config), listing_hash(&listing));
    let mut seen = vec![false; shard_dirs.len()];
    let mut pass = SignaturePass::default();
    progress.begin("data: read shard results", Some(shard_dirs.len() as u64), "shards");
    for dir in shard_dirs {
        let (header, docs) = read_partial(dir)?;
        let problem = if header.shard.count != shard_dirs.len() {
            Some(format!("shard {} belongs to a run of {} shards, {} given", header.shard, header.shard.count, shard_dirs.len()))
        } else if seen[header.shard.index] {
            Some(format!("shard {} is given twice", header.shard))
        } else if header.config_hash != config_hash {
            Some("written with a different [data] config".into())
        } else if header.listing_hash != files_hash {
            Some("written for a different corpus (file paths or sizes differ)".into())
        } else {
            None
        };
        if let Some(message) = problem {
            return Err(DataError::Shard { path: dir.clone(), message });
        }
        seen[header.shard.index] = true;
        pass.docs.extend(docs);
        pass.bad.extend(header.bad);
        pass.normalize.add(&header.normalize);
        pass.wall_s += header.wall_s;
        progress.advance(1);
    }
    progress.end();
    if shard_dirs.is_empty() {
        return Err(DataError::Shard { path: out_dir.to_path_buf(), message: "no shard directories given".into() });
    }
    pass.docs.sort_by_key(|d| (d.file, d.record));
    // Stable: entries of one file come from one shard, already in line order.
    pass.bad.sort_by(|a, b| a.path.cmp(&b.path));
    let input = Finish { corpus: &listing, corpus_arg: corpus, pass, started, discover_s };
    finish(input, config, options, out_dir, progress)
}
