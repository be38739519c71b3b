//! The `[data]` section of the cascade TOML: readers, filters, deduplication, split.
//!
//! Every struct takes `#[serde(deny_unknown_fields, default)]`, so a section may name only the
//! keys it changes and a misspelt key is an error. [`DataConfig::validate`] checks ranges and
//! names the offending key as `data.<sub>.<key>`.
//!
//! ```toml
//! [data.reader]
//! text_field = "text"          # JSONL: the field holding the text
//! id_field = "id"              # JSONL: the field holding the id ("" = always `path:line`)
//!
//! [data.filters]               # Gopher-style heuristics; the first failing one rejects
//! enabled = true
//! min_words = 50
//! max_words = 100000
//! min_mean_word_length = 3.0
//! max_mean_word_length = 10.0
//! max_symbol_to_word_ratio = 0.1
//! min_alpha_word_fraction = 0.8
//! max_duplicate_line_fraction = 0.35
//! max_duplicate_line_char_fraction = 0.2
//! max_top_2gram_fraction = 0.2
//! max_top_3gram_fraction = 0.18
//! max_top_4gram_fraction = 0.16
//!
//! [data.dedup]
//! exact = true                 # drop byte-identical normalized texts
//! near = true                  # MinHash-LSH near-duplicate removal
//! ngram = 5                    # words per shingle
//! bands = 14                   # LSH bands; permutations = bands * rows
//! rows = 8
//! threshold = 0.8              # Jaccard similarity that makes a near-duplicate
//! verify = "exact"             # "exact" | "signature" | "none"
//! seed = 1                     # seeds the MinHash permutations
//! max_bucket_docs = 64         # larger LSH buckets are linked as a star, not all pairs
//!
//! [data.same_work]             # low-threshold clusters: editions of one work
//! enabled = true
//! threshold = 0.08
//! action = "same_split"        # "same_split" | "deduplicate"
//! max_bucket_docs = 1000
//!
//! [data.split]
//! val_fraction = 0.1
//! seed = 0
//! ```

use serde::{Deserialize, Serialize};

use crate::error::DataError;

/// The data stage's configuration (the `[data]` section).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct DataConfig {
    /// How input files are read.
    pub reader: ReaderConfig,
    /// Quality filters.
    pub filters: FilterConfig,
    /// Exact and near-duplicate removal.
    pub dedup: DedupConfig,
    /// Same-work clustering at a low similarity threshold.
    pub same_work: SameWorkConfig,
    /// Train/validation split.
    pub split: SplitConfig,
}

/// How input files are read.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReaderConfig {
    /// JSONL: the field that holds the document text (default `text`).
    pub text_field: String,
    /// JSONL: the field that holds the document id (default `id`); when empty or absent from a
    /// record, the id is `path:line`.
    pub id_field: String,
}

impl Default for ReaderConfig {
    fn default() -> Self {
        Self { text_field: "text".into(), id_field: "id".into() }
    }
}

/// Gopher/C4-style quality heuristics. A document is rejected by the first check it fails, in
/// the order of the fields below; fractions of 1.0 (or ratios above any real value) disable a
/// check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct FilterConfig {
    /// Run the filters at all.
    pub enabled: bool,
    /// Fewest whitespace-separated words (Gopher: 50).
    pub min_words: u64,
    /// Most words (Gopher: 100 000).
    pub max_words: u64,
    /// Smallest mean word length in characters (Gopher: 3).
    pub min_mean_word_length: f64,
    /// Largest mean word length in characters (Gopher: 10).
    pub max_mean_word_length: f64,
    /// Largest ratio of symbols (`#`, `...`, `…`) to words (Gopher: 0.1).
    pub max_symbol_to_word_ratio: f64,
    /// Smallest fraction of words that contain a letter (Gopher: 0.8).
    pub min_alpha_word_fraction: f64,
    /// Largest fraction of non-empty lines that repeat an earlier line of the document. Gopher
    /// uses 0.30; plays put speaker names on lines of their own and reach 0.30, so 0.35.
    pub max_duplicate_line_fraction: f64,
    /// Largest fraction of line characters in repeated lines (Gopher: 0.20).
    pub max_duplicate_line_char_fraction: f64,
    /// Largest fraction of word characters covered by the most frequent word 2-gram (Gopher: 0.20).
    pub max_top_2gram_fraction: f64,
    /// Same for 3-grams (Gopher: 0.18).
    pub max_top_3gram_fraction: f64,
    /// Same for 4-grams (Gopher: 0.16).
    pub max_top_4gram_fraction: f64,
}

impl Default for FilterConfig {
    fn default() -> Self {
        Self {
            enabled: true,
            min_words: 50,
            max_words: 100_000,
            min_mean_word_length: 3.0,
            max_mean_word_length: 10.0,
            max_symbol_to_word_ratio: 0.1,
            min_alpha_word_fraction: 0.8,
            max_duplicate_line_fraction: 0.35,
            max_duplicate_line_char_fraction: 0.2,
            max_top_2gram_fraction: 0.2,
            max_top_3gram_fraction: 0.18,
            max_top_4gram_fraction: 0.16,
        }
    }
}

/// How LSH candidate pairs are confirmed before they are merged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Verify {
    /// Re-read the candidates and compute the exact Jaccard similarity of their shingle sets.
    Exact,
    /// Estimate the similarity from the MinHash signatures (no second read).
    Signature,
    /// Merge every pair that shares an LSH bucket (the classic, fastest setting).
    None,
}

/// Exact and near-duplicate removal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DedupConfig {
    /// Remove documents whose normalized text is identical to an earlier one (128-bit hash).
    pub exact: bool,
    /// Remove near-duplicates found by MinHash-LSH.
    pub near: bool,
    /// Words per shingle.
    pub ngram: usize,
    /// LSH bands.
    pub bands: usize,
    /// Rows (MinHash values) per band; the signature has `bands * rows` values.
    pub rows: usize,
    /// Jaccard similarity at or above which two documents are near-duplicates.
    pub threshold: f64,
    /// How candidate pairs are confirmed.
    pub verify: Verify,
    /// Seed of the MinHash permutations.
    pub seed: u64,
    /// An LSH bucket with more documents than this links each to the bucket's first document
    /// instead of comparing all pairs (bounds the work on boilerplate-heavy corpora).
    pub max_bucket_docs: usize,
}

impl Default for DedupConfig {
    fn default() -> Self {
        Self {
            exact: true,
            near: true,
            ngram: 5,
            bands: 14,
            rows: 8,
            threshold: 0.8,
            verify: Verify::Exact,
            seed: 1,
            max_bucket_docs: 64,
        }
    }
}

impl DedupConfig {
    /// MinHash permutations: `bands * rows`.
    pub fn num_perm(&self) -> usize {
        self.bands * self.rows
    }
}

/// What to do with a cluster of documents that are versions of one work.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SameWorkAction {
    /// Keep every member, all on the same side of the split.
    SameSplit,
    /// Keep only the first member (like a near-duplicate).
    Deduplicate,
}

/// Same-work clustering: documents sharing at least `threshold` of their shingles (e.g. the
/// modern and First Folio editions of a play share 12-19%, unrelated plays under 1%).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SameWorkConfig {
    /// Look for same-work clusters at all.
    pub enabled: bool,
    /// Jaccard similarity at or above which two documents are versions of one work.
    pub threshold: f64,
    /// Keep all members on one side of the split, or keep one member only.
    pub action: SameWorkAction,
    /// A MinHash value shared by more documents than this is ignored as boilerplate when
    /// counting agreements (bounds the quadratic part of the search).
    pub max_bucket_docs: usize,
}

impl Default for SameWorkConfig {
    fn default() -> Self {
        Self { enabled: true, threshold: 0.08, action: SameWorkAction::SameSplit, max_bucket_docs: 1000 }
    }
}

/// Train/validation split by a hash of each document's cluster.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SplitConfig {
    /// Expected fraction of clusters that go to validation.
    pub val_fraction: f64,
    /// Seed of the split hash: change it to draw a different split.
    pub seed: u64,
}

impl Default for SplitConfig {
    fn default() -> Self {
        Self { val_fraction: 0.1, seed: 0 }
    }
}

fn bad(key: &str, message: impl Into<String>) -> DataError {
    DataError::Config { key: key.into(), message: message.into() }
}

fn fraction(key: &str, value: f64) -> Result<(), DataError> {
    if value.is_finite() && (0.0..=1.0).contains(&value) {
        Ok(())
    } else {
        Err(bad(key, format!("must be between 0 and 1, got {value}")))
    }
}

impl DataConfig {
    /// Checks ranges; the error names the key as `data.<section>.<key>`.
    pub fn validate(&self) -> Result<(), DataError> {
        if self.reader.text_field.is_empty() {
            return Err(bad("data.reader.text_field", "must not be empty"));
        }
        let f = &self.filters;
        if f.max_words < f.min_words {
            return Err(bad("data.filters.max_words", format!("{} is below min_words {}", f.max_words, f.min_words)));
        }
        if !(f.min_mean_word_length.is_finite() && f.min_mean_word_length >= 0.0) {
            return Err(bad("data.filters.min_mean_word_length", "must be a non-negative number"));
        }
        if f.max_mean_word_length.is_nan() || f.max_mean_word_length < f.min_mean_word_length {
            return Err(bad("data.filters.max_mean_word_length", "must be at least min_mean_word_length"));
        }
        if f.max_symbol_to_word_ratio.is_nan() || f.max_symbol_to_word_ratio < 0.0 {
            return Err(bad("data.filters.max_symbol_to_word_ratio", "must be non-negative"));
        }
        for (key, value) in [
            ("data.filters.min_alpha_word_fraction", f.min_alpha_word_fraction),
            ("data.filters.max_duplicate_line_fraction", f.max_duplicate_line_fraction),
            ("data.filters.max_duplicate_line_char_fraction", f.max_duplicate_line_char_fraction),
            ("data.filters.max_top_2gram_fraction", f.max_top_2gram_fraction),
            ("data.filters.max_top_3gram_fraction", f.max_top_3gram_fraction),
            ("data.filters.max_top_4gram_fraction", f.max_top_4gram_fraction),
            ("data.dedup.threshold", self.dedup.threshold),
            ("data.same_work.threshold", self.same_work.threshold),
        ] {
            fraction(key, value)?;
        }
        let d = &self.dedup;
        if d.ngram == 0 || d.ngram > 64 {
            return Err(bad("data.dedup.ngram", format!("must be between 1 and 64, got {}", d.ngram)));
        }
        if d.bands == 0 {
            return Err(bad("data.dedup.bands", "must be at least 1"));
        }
        if d.rows == 0 {
            return Err(bad("data.dedup.rows", "must be at least 1"));
        }
        if d.num_perm() > 4096 {
            return Err(bad("data.dedup.bands", format!("bands * rows = {} exceeds 4096 permutations", d.num_perm())));
        }
        if d.max_bucket_docs < 2 {
            return Err(bad("data.dedup.max_bucket_docs", "must be at least 2"));
        }
        if self.same_work.max_bucket_docs < 2 {
            return Err(bad("data.same_work.max_bucket_docs", "must be at least 2"));
        }
        let v = self.split.val_fraction;
        if !(v.is_finite() && (0.0..1.0).contains(&v)) {
            return Err(bad("data.split.val_fraction", format!("must be in [0, 1), got {v}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_section_with_defaults_and_unknown_keys() {
        let config: DataConfig = toml::from_str(
            "[dedup]\nthreshold = 0.9\nverify = \"signature\"\n[same_work]\naction = \"deduplicate\"\n",
        )
        .unwrap();
        assert_eq!(config.dedup.threshold, 0.9);
        assert_eq!(config.dedup.verify, Verify::Signature);
        assert_eq!(config.dedup.bands, 14);
        assert_eq!(config.same_work.action, SameWorkAction::Deduplicate);
        assert_eq!(config.filters, FilterConfig::default());
        config.validate().unwrap();

        let err = toml::from_str::<DataConfig>("[dedup]\nband = 3\n").unwrap_err();
        assert!(err.to_string().contains("band"), "{err}");
        let err = toml::from_str::<DataConfig>("[dedup]\nverify = \"maybe\"\n").unwrap_err();
        assert!(err.to_string().contains("maybe"), "{err}");
    }

    #[test]
    fn validate_names_the_key() {
        type Breaker = fn(&mut DataConfig);
        let cases: [(&str, Breaker); 5] = [
            ("data.split.val_fraction", |c| c.split.val_fraction = 1.0),
            ("data.dedup.rows", |c| c.dedup.rows = 0),
            ("data.dedup.threshold", |c| c.dedup.threshold = 1.5),
            ("data.filters.max_words", |c| c.filters.max_words = 1),
            ("data.reader.text_field", |c| c.reader.text_field.clear()),
        ];
        for (key, break_it) in cases {
            let mut config = DataConfig::default();
            break_it(&mut config);
            let err = config.validate().unwrap_err();
            assert!(err.to_string().contains(key), "{key}: {err}");
        }
    }
}
