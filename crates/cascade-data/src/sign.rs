//! The signature pass: read, normalize, filter, exact-hash and MinHash every document, keeping
//! only a small [`DocRecord`] per document (never the text), in parallel across files and
//! across batches of records within a large JSONL file.

use std::time::Instant;

use cascade_core::Progress;
use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use xxhash_rust::xxh3::xxh3_128;

use crate::config::DataConfig;
use crate::error::DataError;
use crate::filter;
use crate::input::{Corpus, RawRecord, scan_file};
use crate::minhash::MinHasher;
use crate::normalize::normalize;
use crate::report::{BadInput, NormalizeStats, Rejection};

/// What the later passes need to know about one document.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub(crate) struct DocRecord {
    /// Index of the file in the corpus listing.
    pub file: u32,
    /// Index of the record among the file's valid records.
    pub record: u64,
    /// 1-based line of a JSONL record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<u64>,
    pub id: String,
    pub source: String,
    /// Text bytes and words as read (after UTF-8 repair).
    pub raw_bytes: u64,
    pub raw_words: u64,
    /// Text bytes and words after normalization.
    pub bytes: u64,
    pub words: u64,
    /// The filter that rejected the document, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rejection: Option<Rejection>,
    /// xxh3-128 of the normalized text (0 for rejected documents).
    #[serde(with = "hex_u128")]
    pub exact_hash: u128,
    /// MinHash signature (empty for rejected documents or when no similarity search runs).
    #[serde(with = "base64_u32s")]
    pub signature: Vec<u32>,
}

/// The signature pass over some files of the corpus.
#[derive(Debug, Default)]
pub(crate) struct SignaturePass {
    /// Documents in corpus order.
    pub docs: Vec<DocRecord>,
    /// Bad inputs in corpus order.
    pub bad: Vec<BadInput>,
    pub normalize: NormalizeStats,
    pub wall_s: f64,
}

/// A hasher for `config`, or `None` when no similarity search needs signatures.
pub(crate) fn hasher_for(config: &DataConfig) -> Option<MinHasher> {
    (config.dedup.near || config.same_work.enabled)
        .then(|| MinHasher::new(config.dedup.num_perm(), config.dedup.ngram, config.dedup.seed))
}

fn process(file: u32, raw: RawRecord, config: &DataConfig, hasher: Option<&MinHasher>) -> (DocRecord, NormalizeStats) {
    let mut stats = NormalizeStats::default();
    let raw_bytes = raw.text.len() as u64;
    let raw_words = filter::count_words(&raw.text);
    let text = normalize(raw.text, &mut stats);
    // Unchanged text (the common case) has the words already counted.
    let words = if stats == NormalizeStats::default() && text.len() as u64 == raw_bytes {
        raw_words
    } else {
        filter::count_words(&text)
    };
    let rejection = filter::check(&text, &config.filters).err();
    let (exact_hash, signature) = match (&rejection, hasher) {
        (Some(_), _) => (0, Vec::new()),
        (None, Some(hasher)) => (xxh3_128(text.as_bytes()), hasher.signature(&text)),
        (None, None) => (xxh3_128(text.as_bytes()), Vec::new()),
    };
    let record = DocRecord {
        file,
        record: raw.record,
        line: raw.line,
        id: raw.id,
        source: raw.source,
        raw_bytes,
        raw_words,
        bytes: text.len() as u64,
        words,
        rejection,
        exact_hash,
        signature,
    };
    (record, stats)
}

/// Records per parallel batch within one file, and the text bytes that close a batch early.
const BATCH_RECORDS: usize = 512;
const BATCH_BYTES: usize = 16 << 20;

fn sign_file(
    corpus: &Corpus,
    file_idx: usize,
    config: &DataConfig,
    hasher: Option<&MinHasher>,
) -> Result<SignaturePass, DataError> {
    let file = &corpus.files[file_idx];
    let mut out = SignaturePass::default();
    let mut batch: Vec<RawRecord> = Vec::new();
    let mut batch_bytes = 0usize;
    let flush = |batch: &mut Vec<RawRecord>, out: &mut SignaturePass| {
        let results: Vec<(DocRecord, NormalizeStats)> =
            batch.par_drain(..).map(|raw| process(file_idx as u32, raw, config, hasher)).collect();
        for (record, stats) in results {
            out.normalize.add(&stats);
            out.docs.push(record);
        }
    };
    let scan = {
        let mut sink = |raw: RawRecord| {
            batch_bytes += raw.text.len();
            batch.push(raw);
            if batch.len() >= BATCH_RECORDS || batch_bytes >= BATCH_BYTES {
                flush(&mut batch, &mut out);
                batch_bytes = 0;
            }
            Ok(())
        };
        scan_file(corpus, file, &config.reader, false, &mut sink)?
    };
    flush(&mut batch, &mut out);
    out.bad = scan.bad;
    out.normalize.invalid_utf8_replaced += scan.invalid_utf8_replaced;
    Ok(out)
}

/// Runs the signature pass over the files at `file_indices` (sorted), in parallel.
pub(crate) fn signature_pass(
    corpus: &Corpus,
    file_indices: &[usize],
    config: &DataConfig,
    progress: &dyn Progress,
) -> Result<SignaturePass, DataError> {
    let started = Instant::now();
    let hasher = hasher_for(config);
    progress.begin("data: read, filter, sign", Some(file_indices.len() as u64), "files");
    let per_file: Vec<SignaturePass> = file_indices
        .par_iter()
        .map(|&idx| {
            let pass = sign_file(corpus, idx, config, hasher.as_ref());
            progress.advance(1);
            pass
        })
        .collect::<Result<_, _>>()?;
    progress.end();
    let mut out = SignaturePass::default();
    for pass in per_file {
        out.docs.extend(pass.docs);
        out.bad.extend(pass.bad);
        out.normalize.add(&pass.normalize);
    }
    out.wall_s = started.elapsed().as_secs_f64();
    Ok(out)
}

mod hex_u128 {
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = String::deserialize(deserializer)?;
        u128::from_str_radix(&text, 16).map_err(D::Error::custom)
    }
}

mod base64_u32s {
    use base64::Engine;
    use base64::engine::general_purpose::STANDARD;
    use serde::{Deserialize, Deserializer, Serializer, de::Error};

    pub fn serialize<S: Serializer>(values: &[u32], serializer: S) -> Result<S::Ok, S::Error> {
        let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
        serializer.serialize_str(&STANDARD.encode(bytes))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<u32>, D::Error> {
        let text = String::deserialize(deserializer)?;
        let bytes = STANDARD.decode(text).map_err(D::Error::custom)?;
        if bytes.len() % 4 != 0 {
            return Err(D::Error::custom("signature length is not a multiple of 4 bytes"));
        }
        Ok(bytes.chunks_exact(4).map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect())
    }
}
