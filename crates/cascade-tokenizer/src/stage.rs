//! The tokenizer stage: train on the data stage's `train.jsonl`, save `tokenizer.json`, and
//! encode both splits into token shards, streaming and in parallel.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use cascade_core::{Document, Progress, ShardReader, TokenShardWriter, Tokenizer};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::config::TokenizerConfig;
use crate::error::TokenizerError;
use crate::special::ENDOFTEXT;
use crate::tokenizer::BpeTokenizer;
use crate::train::{TrainStats, WordCounts, train_from_counts};

/// File name of the saved tokenizer in the stage's output directory.
pub const TOKENIZER_FILE: &str = "tokenizer.json";
/// Token shard of the training split (its header is `train.tokens.json`).
pub const TRAIN_TOKENS_FILE: &str = "train.tokens";
/// Token shard of the validation split (its header is `val.tokens.json`).
pub const VAL_TOKENS_FILE: &str = "val.tokens";

/// Statistics of one encoded split.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SplitStats {
    /// Documents encoded.
    pub n_documents: u64,
    /// Tokens written, the `<|endoftext|>` after each document included.
    pub n_tokens: u64,
    /// Bytes of document text encoded.
    pub n_text_bytes: u64,
    /// Text bytes per token, separators excluded (`None` for an empty split).
    pub bytes_per_token: Option<f64>,
    /// Mean tokens per document, separator included (`None` for an empty split).
    pub tokens_per_document: Option<f64>,
    /// Longest document in tokens, separator included.
    pub max_document_tokens: u64,
    /// Documents whose ids did not decode back to their exact text (always 0 unless a bug).
    pub n_round_trip_failures: u64,
    /// Seconds spent encoding this split.
    pub encode_wall_s: f64,
}

/// One of the longest tokens, for the report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LongestToken {
    /// Its id.
    pub id: u32,
    /// Its bytes as text (invalid UTF-8 replaced by U+FFFD).
    pub text: String,
    /// Its length in bytes.
    pub n_bytes: usize,
}

/// What the tokenizer stage did and cost: the metrics for the stage manifest.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TokenizerReport {
    /// Vocabulary size, special tokens included.
    pub vocab_size: usize,
    /// Number of special tokens (ids `0..n_special_tokens`).
    pub n_special_tokens: usize,
    /// Merge rules learned.
    pub n_merges: usize,
    /// The pre-tokenizer regex.
    pub pattern: String,
    /// The tokenizer's fingerprint, as recorded in the token-shard headers.
    pub fingerprint: String,
    /// Training statistics.
    pub training: TrainStats,
    /// Seconds to train (word counting + merges).
    pub train_wall_s: f64,
    /// The training split, encoded.
    pub train: SplitStats,
    /// The validation split, encoded.
    pub val: SplitStats,
    /// Text bytes per token on the validation split (separators excluded).
    pub val_bytes_per_token: Option<f64>,
    /// The longest ordinary tokens, longest first.
    pub longest_tokens: Vec<LongestToken>,
    /// Seconds to encode both splits.
    pub encode_wall_s: f64,
}

/// Runs the stage: trains on `train_shard`, writes [`TOKENIZER_FILE`] into `out_dir` (an
/// existing, empty directory), then encodes `train_shard` and `val_shard` into
/// [`TRAIN_TOKENS_FILE`] and [`VAL_TOKENS_FILE`] (each with its `.json` header).
///
/// In the shards, `<|endoftext|>` is appended after every document (so each document's
/// range in the header ends with it, and the last token of a shard is always that
/// separator). Document text is encoded with special tokens disallowed: a document that
/// spells `<|endoftext|>` gets ordinary tokens, never a control token.
pub fn run(
    config: &TokenizerConfig,
    train_shard: &Path,
    val_shard: &Path,
    out_dir: &Path,
    progress: &dyn Progress,
) -> Result<TokenizerReport, TokenizerError> {
    config.validate()?;
    let train_started = Instant::now();
    let mut counts = WordCounts::new(config)?;
    progress.begin("count words", None, "documents");
    for_each_batch(train_shard, config.batch_bytes, |batch| {
        let texts: Vec<&str> = batch.iter().map(|doc| doc.text.as_str()).collect();
        counts.add_batch(&texts);
        progress.advance(batch.len() as u64);
        Ok(())
    })?;
    progress.end();
    if counts.n_bytes() == 0 {
        return Err(TokenizerError::EmptyCorpus { path: train_shard.to_path_buf() });
    }
    let (tokenizer, training) = train_from_counts(config, &counts, progress)?;
    drop(counts);
    let train_wall_s = train_started.elapsed().as_secs_f64();
    tokenizer.save_hf(&out_dir.join(TOKENIZER_FILE))?;

    let encode_started = Instant::now();
    let train = encode_shard(&tokenizer, train_shard, &out_dir.join(TRAIN_TOKENS_FILE), config.batch_bytes, progress)?;
    let val = encode_shard(&tokenizer, val_shard, &out_dir.join(VAL_TOKENS_FILE), config.batch_bytes, progress)?;
    let encode_wall_s = encode_started.elapsed().as_secs_f64();

    let longest_tokens = tokenizer
        .longest_tokens(config.n_longest_tokens)
        .into_iter()
        .map(|(id, bytes)| LongestToken { id, text: String::from_utf8_lossy(&bytes).into_owned(), n_bytes: bytes.len() })
        .collect();
    Ok(TokenizerReport {
        vocab_size: tokenizer.vocab_size(),
        n_special_tokens: tokenizer.special_tokens().len(),
        n_merges: tokenizer.n_merges(),
        pattern: tokenizer.pattern().to_owned(),
        fingerprint: tokenizer.fingerprint(),
        training,
        train_wall_s,
        val_bytes_per_token: val.bytes_per_token,
        train,
        val,
        longest_tokens,
        encode_wall_s,
    })
}

/// Streams `path` in batches of about `batch_bytes` of text. A reader thread parses the next
/// batch while `handle` works on the current one.
fn for_each_batch(
    path: &Path,
    batch_bytes: usize,
    mut handle: impl FnMut(Vec<Document>) -> Result<(), TokenizerError>,
) -> Result<(), TokenizerError> {
    let reader = ShardReader::open(path)?;
    std::thread::scope(|scope| {
        let (sender, receiver) = mpsc::sync_channel::<Result<Vec<Document>, cascade_core::CoreError>>(1);
        scope.spawn(move || {
            let mut batch = Vec::new();
            let mut batch_text = 0;
            for doc in reader {
                match doc {
                    Ok(doc) => {
                        batch_text += doc.text.len();
                        batch.push(doc);
                        if batch_text >= batch_bytes {
                            batch_text = 0;
                            if sender.send(Ok(std::mem::take(&mut batch))).is_err() {
                                return;
                            }
                        }
                    }
                    Err(e) => {
                        let _ = sender.send(Err(e));
                        return;
                    }
                }
            }
            if !batch.is_empty() {
                let _ = sender.send(Ok(batch));
            }
        });
        // Returning early drops the receiver, which stops the reader at its next send.
        for batch in receiver {
            handle(batch?)?;
        }
        Ok(())
    })
}

fn encode_shard(
    tokenizer: &BpeTokenizer,
    in_path: &Path,
    out_path: &Path,
    batch_bytes: usize,
    progress: &dyn Progress,
) -> Result<SplitStats, TokenizerError> {
    let started = Instant::now();
    let endoftext = tokenizer.special_token(ENDOFTEXT).ok_or_else(|| TokenizerError::Format {
        path: PathBuf::from(TOKENIZER_FILE),
        message: format!("the tokenizer has no {ENDOFTEXT} token to separate documents"),
    })?;
    let mut writer = TokenShardWriter::create(out_path, tokenizer.vocab_size() as u32, &tokenizer.fingerprint())?;
    let mut stats = SplitStats {
        n_documents: 0,
        n_tokens: 0,
        n_text_bytes: 0,
        bytes_per_token: None,
        tokens_per_document: None,
        max_document_tokens: 0,
        n_round_trip_failures: 0,
        encode_wall_s: 0.0,
    };
    let label = format!("encode {}", out_path.file_name().map(|n| n.to_string_lossy()).unwrap_or_default());
    progress.begin(&label, None, "documents");
    for_each_batch(in_path, batch_bytes, |batch| {
        let encoded: Vec<(Vec<u32>, bool)> = batch
            .par_iter()
            .map_init(
                || tokenizer.session(),
                |session, doc| {
                    let mut ids = Vec::with_capacity(doc.text.len() / 3 + 1);
                    session.encode_bytes_into(doc.text.as_bytes(), &mut ids);
                    let exact = tokenizer.decode_bytes(&ids).is_ok_and(|bytes| bytes == doc.text.as_bytes());
                    ids.push(endoftext);
                    (ids, exact)
                },
            )
            .collect();
        for ((ids, exact), doc) in encoded.iter().zip(&batch) {
            writer.push_document(ids)?;
            stats.n_documents += 1;
            stats.n_tokens += ids.len() as u64;
            stats.n_text_bytes += doc.text.len() as u64;
            stats.max_document_tokens = stats.max_document_tokens.max(ids.len() as u64);
            stats.n_round_trip_failures += u64::from(!exact);
        }
        progress.advance(batch.len() as u64);
        Ok(())
    })?;
    writer.finish()?;
    progress.end();
    if stats.n_documents > 0 {
        let n_text_tokens = stats.n_tokens - stats.n_documents;
        stats.bytes_per_token = (n_text_tokens > 0).then(|| stats.n_text_bytes as f64 / n_text_tokens as f64);
        stats.tokens_per_document = Some(stats.n_tokens as f64 / stats.n_documents as f64);
    }
    stats.encode_wall_s = started.elapsed().as_secs_f64();
    Ok(stats)
}
