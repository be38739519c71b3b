//! What the stage kept, dropped and why: the [`DataReport`] written to `stats.json` and returned
//! to the runner for the stage manifest.

use std::collections::BTreeMap;
use std::fmt;

use serde::{Deserialize, Serialize};

use crate::config::{SameWorkAction, Verify};

/// The kinds of bad input: counted and listed, or errors under `strict`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum BadInputKind {
    /// The file could not be opened, read or decompressed (from `line` on, for JSONL).
    Unreadable,
    /// The file holds no text (or no records).
    EmptyFile,
    /// The file holds NUL bytes: not text.
    BinaryFile,
    /// Invalid UTF-8 sequences, replaced by U+FFFD (the documents are kept).
    InvalidUtf8,
    /// A JSONL line is not a JSON object.
    MalformedJson,
    /// A JSONL record lacks the text field, or it is not a string.
    MissingTextField,
    /// A document id repeats an earlier one; the later document gets `path:line` as its id.
    DuplicateId,
}

impl BadInputKind {
    /// The snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Unreadable => "unreadable",
            Self::EmptyFile => "empty_file",
            Self::BinaryFile => "binary_file",
            Self::InvalidUtf8 => "invalid_utf8",
            Self::MalformedJson => "malformed_json",
            Self::MissingTextField => "missing_text_field",
            Self::DuplicateId => "duplicate_id",
        }
    }
}

impl fmt::Display for BadInputKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One bad input, with where it is.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BadInput {
    /// Path relative to the corpus root.
    pub path: String,
    /// 1-based line (JSONL), or the first line concerned.
    pub line: Option<u64>,
    /// What is wrong.
    pub kind: BadInputKind,
    /// Details (parser message, number of replaced sequences...).
    pub message: String,
    /// How many occurrences this entry stands for (invalid UTF-8 sequences in the file).
    pub count: u64,
}

/// Bad inputs: counts per kind and the full list.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BadInputReport {
    /// Number of entries per kind (`invalid_utf8` counts files, see the list for sequences).
    pub counts: BTreeMap<String, u64>,
    /// Every entry, in corpus order.
    pub items: Vec<BadInput>,
}

/// A file under the corpus directory that no reader handles.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SkippedFile {
    /// Path relative to the corpus root.
    pub path: String,
    /// Why it was skipped.
    pub reason: String,
}

/// The quality filters, by the name used in reports and `rejected.jsonl`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum FilterKind {
    /// Too few words.
    MinWords,
    /// Too many words.
    MaxWords,
    /// Mean word length too short.
    MinMeanWordLength,
    /// Mean word length too long.
    MaxMeanWordLength,
    /// Too many `#`/ellipsis symbols per word.
    SymbolToWordRatio,
    /// Too few words with a letter.
    AlphaWordFraction,
    /// Too many repeated lines.
    DuplicateLineFraction,
    /// Too many characters in repeated lines.
    DuplicateLineCharFraction,
    /// The most frequent word 2-gram covers too much of the text.
    #[serde(rename = "top_2gram_fraction")]
    Top2gramFraction,
    /// Same for 3-grams.
    #[serde(rename = "top_3gram_fraction")]
    Top3gramFraction,
    /// Same for 4-grams.
    #[serde(rename = "top_4gram_fraction")]
    Top4gramFraction,
}

impl FilterKind {
    /// The snake_case name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::MinWords => "min_words",
            Self::MaxWords => "max_words",
            Self::MinMeanWordLength => "min_mean_word_length",
            Self::MaxMeanWordLength => "max_mean_word_length",
            Self::SymbolToWordRatio => "symbol_to_word_ratio",
            Self::AlphaWordFraction => "alpha_word_fraction",
            Self::DuplicateLineFraction => "duplicate_line_fraction",
            Self::DuplicateLineCharFraction => "duplicate_line_char_fraction",
            Self::Top2gramFraction => "top_2gram_fraction",
            Self::Top3gramFraction => "top_3gram_fraction",
            Self::Top4gramFraction => "top_4gram_fraction",
        }
    }
}

/// Why a filter rejected a document: the measured value and the limit it crossed.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rejection {
    /// The filter.
    pub filter: FilterKind,
    /// The document's value.
    pub value: f64,
    /// The configured limit.
    pub limit: f64,
}

/// Documents, bytes and words going into and out of one step.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StepStats {
    /// Step name: `normalize`, `filter`, `exact_dedup`, `near_dedup`, `same_work`.
    pub step: String,
    /// Documents in.
    pub docs_in: u64,
    /// Documents out.
    pub docs_out: u64,
    /// UTF-8 bytes of text in.
    pub bytes_in: u64,
    /// UTF-8 bytes of text out.
    pub bytes_out: u64,
    /// Whitespace-separated words in.
    pub words_in: u64,
    /// Whitespace-separated words out.
    pub words_out: u64,
}

/// Documents, bytes and words removed by one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Removed {
    /// Documents.
    pub docs: u64,
    /// UTF-8 bytes of text.
    pub bytes: u64,
    /// Words.
    pub words: u64,
}

/// What normalization changed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NormalizeStats {
    /// Invalid UTF-8 sequences replaced by U+FFFD.
    pub invalid_utf8_replaced: u64,
    /// Control characters removed (all but newline and tab; includes a leading BOM).
    pub control_chars_removed: u64,
    /// `\r\n` and lone `\r` line ends turned into `\n`.
    pub line_ends_normalized: u64,
    /// Documents whose text NFC normalization changed.
    pub docs_nfc_changed: u64,
}

impl NormalizeStats {
    pub(crate) fn add(&mut self, other: &Self) {
        self.invalid_utf8_replaced += other.invalid_utf8_replaced;
        self.control_chars_removed += other.control_chars_removed;
        self.line_ends_normalized += other.line_ends_normalized;
        self.docs_nfc_changed += other.docs_nfc_changed;
    }
}

/// Probability that LSH makes a pair at `similarity` a candidate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SCurvePoint {
    /// Jaccard similarity.
    pub similarity: f64,
    /// `1 - (1 - s^rows)^bands`.
    pub probability: f64,
}

/// One member of a cluster and its similarity to the cluster's keeper.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ClusterMember {
    /// Document id.
    pub id: String,
    /// Jaccard similarity to the keeper estimated from the MinHash signatures.
    pub estimated: f64,
    /// Exact Jaccard similarity to the keeper (when `verify = "exact"`).
    pub exact: Option<f64>,
}

/// A group of documents treated as one: the keeper first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cluster {
    /// `exact`, `near_duplicate` or `same_work`.
    pub kind: String,
    /// The member kept (the first in corpus order).
    pub keeper: String,
    /// Every member, keeper first.
    pub members: Vec<ClusterMember>,
    /// Where the kept members went: `train` or `val`.
    pub split: String,
}

/// Near-duplicate search settings and outcomes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct NearDedupReport {
    /// Words per shingle.
    pub ngram: usize,
    /// LSH bands.
    pub bands: usize,
    /// Rows per band.
    pub rows: usize,
    /// MinHash permutations.
    pub num_perm: usize,
    /// Similarity threshold.
    pub threshold: f64,
    /// Verification mode.
    pub verify: Verify,
    /// Candidate probability at similarities 0.5..0.9.
    pub s_curve: Vec<SCurvePoint>,
    /// Distinct pairs that shared an LSH bucket.
    pub candidate_pairs: u64,
    /// Candidate pairs confirmed at or above the threshold.
    pub confirmed_pairs: u64,
    /// Near-duplicate clusters (two or more members).
    pub clusters: u64,
}

/// Same-work search settings and the clusters found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SameWorkReport {
    /// Whether the search ran.
    pub enabled: bool,
    /// Similarity threshold.
    pub threshold: f64,
    /// What was done with the clusters.
    pub action: SameWorkAction,
    /// Pairs whose MinHash agreement made them worth checking.
    pub candidate_pairs: u64,
    /// Pairs at or above the threshold.
    pub confirmed_pairs: u64,
    /// The clusters, keeper first in each.
    pub clusters: Vec<Cluster>,
}

/// One side of the split.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitSide {
    /// Documents.
    pub docs: u64,
    /// UTF-8 bytes of text.
    pub bytes: u64,
    /// Words.
    pub words: u64,
    /// Split groups (a same-work cluster or a lone document) on this side.
    pub groups: u64,
}

/// The train/validation split.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SplitReport {
    /// Configured expected fraction of groups in validation.
    pub val_fraction: f64,
    /// Fraction of the kept bytes that went to validation.
    pub val_byte_fraction: f64,
    /// Training side.
    pub train: SplitSide,
    /// Validation side.
    pub val: SplitSide,
}

/// Wall time of each pass, in seconds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Listing the corpus.
    pub discover_s: f64,
    /// Reading, normalizing, filtering, hashing and MinHash signatures (summed over shards
    /// when merged).
    pub signature_pass_s: f64,
    /// Exact dedup, LSH buckets and same-work candidate search.
    pub candidates_s: f64,
    /// Re-reading candidates for exact Jaccard verification.
    pub verify_s: f64,
    /// Clustering and split assignment.
    pub cluster_s: f64,
    /// Re-reading the corpus and writing the outputs.
    pub write_s: f64,
    /// The whole stage (from the merge's start when merged).
    pub total_s: f64,
}

/// Everything the data stage decided, written to `stats.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DataReport {
    /// The corpus path as given.
    pub corpus: String,
    /// Input files read (after skipping unsupported ones).
    pub files: u64,
    /// Bytes of those files on disk (compressed size for .gz/.zst).
    pub file_bytes: u64,
    /// Files that no reader handles.
    pub skipped_files: Vec<SkippedFile>,
    /// Bad inputs, counted and listed.
    pub bad_inputs: BadInputReport,
    /// What normalization changed.
    pub normalize: NormalizeStats,
    /// Documents, bytes and words in and out of each step.
    pub steps: Vec<StepStats>,
    /// Documents removed per quality filter (by name).
    pub filters: BTreeMap<String, Removed>,
    /// Documents removed as exact duplicates.
    pub exact_duplicates: Removed,
    /// Documents removed as near-duplicates.
    pub near_duplicates: Removed,
    /// Documents removed as same-work duplicates (`action = "deduplicate"` only).
    pub same_work_duplicates: Removed,
    /// Near-duplicate search.
    pub near_dedup: NearDedupReport,
    /// Same-work clusters.
    pub same_work: SameWorkReport,
    /// The split.
    pub split: SplitReport,
    /// Wall times.
    pub timings: Timings,
}
