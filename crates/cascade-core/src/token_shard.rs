//! Token shards: a flat little-endian array of token ids plus a small JSON header beside it.
//!
//! `NAME.tokens` holds the ids back to back, as `u16` when the vocabulary has at most 65,536
//! entries and as `u32` otherwise. `NAME.tokens.json` holds the [`TokenShardHeader`]: dtype,
//! vocabulary size, the tokenizer's fingerprint, the token count and where each document starts.
//! Keeping the ids in their own file means the reader can memory-map it and hand out windows as
//! plain slices, with no parsing and no copy; numpy reads it with
//! `np.memmap(path, dtype="<u2")`.

#[cfg(target_endian = "big")]
compile_error!("token shards are memory-mapped as little-endian integers; big-endian hosts are not supported");

use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::path::{Path, PathBuf};

use memmap2::Mmap;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};

/// Format name written in every header, so a stray JSON file is not mistaken for one.
pub const FORMAT: &str = "cascade-token-shard";
/// Version of the on-disk format.
pub const FORMAT_VERSION: u32 = 1;

/// Width of one stored token id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum TokenDtype {
    /// Two bytes per token (vocabularies up to 65,536).
    U16,
    /// Four bytes per token.
    U32,
}

impl TokenDtype {
    /// The narrowest dtype that holds every id of a vocabulary of `vocab_size`.
    pub fn for_vocab(vocab_size: u32) -> Self {
        if vocab_size <= 1 << 16 { Self::U16 } else { Self::U32 }
    }

    /// Bytes per stored token.
    pub fn width(self) -> usize {
        match self {
            Self::U16 => 2,
            Self::U32 => 4,
        }
    }
}

/// The JSON header of a token shard (`NAME.tokens.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenShardHeader {
    /// Always [`FORMAT`].
    pub format: String,
    /// Always [`FORMAT_VERSION`] for files this crate writes.
    pub version: u32,
    /// Width of the ids in the data file.
    pub dtype: TokenDtype,
    /// Vocabulary size of the tokenizer that produced the ids.
    pub vocab_size: u32,
    /// [`crate::Tokenizer::fingerprint`] of that tokenizer.
    pub tokenizer: String,
    /// Number of ids in the data file.
    pub n_tokens: u64,
    /// Offset of the first token of each document, ascending.
    pub doc_starts: Vec<u64>,
}

/// Path of the header that belongs to the data file `tokens_path`.
pub fn header_path(tokens_path: &Path) -> PathBuf {
    let mut name = tokens_path.as_os_str().to_owned();
    name.push(".json");
    PathBuf::from(name)
}

/// Streams documents' ids into a new shard.
#[derive(Debug)]
pub struct TokenShardWriter {
    path: PathBuf,
    out: BufWriter<File>,
    header: TokenShardHeader,
}

impl TokenShardWriter {
    /// Creates `path` (and its header on [`finish`](Self::finish)) for ids of a vocabulary of
    /// `vocab_size`, produced by the tokenizer with `tokenizer_fingerprint`.
    pub fn create(path: &Path, vocab_size: u32, tokenizer_fingerprint: &str) -> Result<Self> {
        let file = File::create(path).map_err(|e| CoreError::io(path, e))?;
        Ok(Self {
            path: path.to_path_buf(),
            out: BufWriter::with_capacity(1 << 20, file),
            header: TokenShardHeader {
                format: FORMAT.into(),
                version: FORMAT_VERSION,
                dtype: TokenDtype::for_vocab(vocab_size),
                vocab_size,
                tokenizer: tokenizer_fingerprint.into(),
                n_tokens: 0,
                doc_starts: Vec::new(),
            },
        })
    }

    /// Appends one document's ids, recording where it starts.
    pub fn push_document(&mut self, ids: &[u32]) -> Result<()> {
        self.header.doc_starts.push(self.header.n_tokens);
        let vocab_size = self.header.vocab_size;
        if let Some(&token) = ids.iter().find(|&&id| id >= vocab_size) {
            return Err(CoreError::TokenOutOfRange { path: self.path.clone(), token, vocab_size });
        }
        let written = match self.header.dtype {
            TokenDtype::U16 => {
                let narrow: Vec<u16> = ids.iter().map(|&id| id as u16).collect();
                self.out.write_all(bytemuck::cast_slice(&narrow))
            }
            TokenDtype::U32 => self.out.write_all(bytemuck::cast_slice(ids)),
        };
        written.map_err(|e| CoreError::io(&self.path, e))?;
        self.header.n_tokens += ids.len() as u64;
        Ok(())
    }

    /// Flushes the data and writes the header; returns the header.
    pub fn finish(mut self) -> Result<TokenShardHeader> {
        self.out.flush().map_err(|e| CoreError::io(&self.path, e))?;
        self.out.get_ref().sync_all().map_err(|e| CoreError::io(&self.path, e))?;
        let header_path = header_path(&self.path);
        let json = serde_json::to_vec_pretty(&self.header)
            .map_err(|e| CoreError::bad_file(&header_path, e.to_string()))?;
        std::fs::write(&header_path, json).map_err(|e| CoreError::io(&header_path, e))?;
        Ok(self.header)
    }
}

/// A borrowed run of ids straight out of the memory map.
#[derive(Debug, Clone, Copy)]
pub enum TokenSlice<'a> {
    /// Ids stored as `u16`.
    U16(&'a [u16]),
    /// Ids stored as `u32`.
    U32(&'a [u32]),
}

impl TokenSlice<'_> {
    /// Number of ids.
    pub fn len(&self) -> usize {
        match self {
            Self::U16(s) => s.len(),
            Self::U32(s) => s.len(),
        }
    }

    /// Whether the slice is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The id at `idx`.
    pub fn get(&self, idx: usize) -> Option<u32> {
        match self {
            Self::U16(s) => s.get(idx).map(|&id| u32::from(id)),
            Self::U32(s) => s.get(idx).copied(),
        }
    }

    /// Iterates the ids widened to `u32`.
    pub fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        let (narrow, wide): (&[u16], &[u32]) = match self {
            Self::U16(s) => (s, &[]),
            Self::U32(s) => (&[], s),
        };
        narrow.iter().map(|&id| u32::from(id)).chain(wide.iter().copied())
    }

    /// Copies the ids out as `u32`.
    pub fn to_vec(&self) -> Vec<u32> {
        self.iter().collect()
    }
}

/// A memory-mapped token shard.
#[derive(Debug)]
pub struct TokenShard {
    path: PathBuf,
    header: TokenShardHeader,
    /// `None` for an empty shard (an empty file cannot be mapped).
    map: Option<Mmap>,
}

impl TokenShard {
    /// Opens the data file `path` and its header, checking that they agree.
    pub fn open(path: &Path) -> Result<Self> {
        let header_path = header_path(path);
        let raw = std::fs::read(&header_path).map_err(|e| CoreError::io(&header_path, e))?;
        let header: TokenShardHeader = serde_json::from_slice(&raw)
            .map_err(|e| CoreError::bad_file(&header_path, format!("not a token-shard header: {e}")))?;
        if header.format != FORMAT || header.version != FORMAT_VERSION {
            return Err(CoreError::bad_file(
                &header_path,
                format!("format {} v{} is not {FORMAT} v{FORMAT_VERSION}", header.format, header.version),
            ));
        }
        let file = File::open(path).map_err(|e| CoreError::io(path, e))?;
        let len = file.metadata().map_err(|e| CoreError::io(path, e))?.len();
        let expected = header.n_tokens * header.dtype.width() as u64;
        if len != expected {
            return Err(CoreError::bad_file(
                path,
                format!("{len} bytes, but the header promises {} {:?} tokens ({expected} bytes)", header.n_tokens, header.dtype),
            ));
        }
        if header.doc_starts.windows(2).any(|w| w[0] > w[1])
            || header.doc_starts.last().is_some_and(|&last| last > header.n_tokens)
        {
            return Err(CoreError::bad_file(&header_path, "doc_starts are not ascending within the shard"));
        }
        // SAFETY: the map is read-only and lives as long as `self`; like every mmap reader we
        // assume no other process truncates the shard while it is open (stages write new files
        // under temporary names and rename them, they never rewrite a shard in place).
        let map = if len == 0 {
            None
        } else {
            Some(unsafe { Mmap::map(&file) }.map_err(|e| CoreError::io(path, e))?)
        };
        Ok(Self { path: path.to_path_buf(), header, map })
    }

    /// The header.
    pub fn header(&self) -> &TokenShardHeader {
        &self.header
    }

    /// The data file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of tokens.
    pub fn len(&self) -> usize {
        self.header.n_tokens as usize
    }

    /// Whether the shard holds no tokens.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of documents.
    pub fn n_documents(&self) -> usize {
        self.header.doc_starts.len()
    }

    /// Token range of document `doc_idx`.
    pub fn document_range(&self, doc_idx: usize) -> Option<Range<usize>> {
        let start = *self.header.doc_starts.get(doc_idx)? as usize;
        let end = self.header.doc_starts.get(doc_idx + 1).map_or(self.len(), |&e| e as usize);
        Some(start..end)
    }

    /// All tokens, borrowed from the map.
    pub fn all(&self) -> TokenSlice<'_> {
        // The map is page-aligned, so the casts cannot fail on alignment; an empty shard has
        // no map (and an empty byte slice has no alignment to speak of).
        match (self.map.as_deref(), self.header.dtype) {
            (None, TokenDtype::U16) => TokenSlice::U16(&[]),
            (None, TokenDtype::U32) => TokenSlice::U32(&[]),
            (Some(bytes), TokenDtype::U16) => TokenSlice::U16(bytemuck::cast_slice(bytes)),
            (Some(bytes), TokenDtype::U32) => TokenSlice::U32(bytemuck::cast_slice(bytes)),
        }
    }

    /// `len` tokens starting at `start`, borrowed from the map.
    pub fn window(&self, start: usize, len: usize) -> Result<TokenSlice<'_>> {
        let end = start.checked_add(len).filter(|&end| end <= self.len()).ok_or_else(|| {
            CoreError::WindowOutOfRange { path: self.path.clone(), start, end: start.saturating_add(len), len: self.len() }
        })?;
        Ok(match self.all() {
            TokenSlice::U16(s) => TokenSlice::U16(&s[start..end]),
            TokenSlice::U32(s) => TokenSlice::U32(&s[start..end]),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn round_trip(vocab_size: u32, docs: &[Vec<u32>]) -> (TokenShard, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("train.tokens");
        let mut writer = TokenShardWriter::create(&path, vocab_size, "tok-hash").unwrap();
        for doc in docs {
            writer.push_document(doc).unwrap();
        }
        writer.finish().unwrap();
        (TokenShard::open(&path).unwrap(), dir)
    }

    #[test]
    fn u16_and_u32_shards_round_trip_with_boundaries() {
        for (vocab_size, dtype) in [(50_257, TokenDtype::U16), (65_536, TokenDtype::U16), (100_277, TokenDtype::U32)] {
            let docs = vec![vec![0, 1, vocab_size - 1], vec![], vec![42, 7]];
            let (shard, dir) = round_trip(vocab_size, &docs);
            assert_eq!(shard.header().dtype, dtype);
            assert_eq!(shard.len(), 5);
            assert_eq!(std::fs::metadata(dir.path().join("train.tokens")).unwrap().len(), 5 * dtype.width() as u64);
            assert_eq!(shard.all().to_vec(), vec![0, 1, vocab_size - 1, 42, 7]);
            assert_eq!(shard.document_range(1), Some(3..3));
            assert_eq!(shard.document_range(2), Some(3..5));
            assert_eq!(shard.window(2, 2).unwrap().to_vec(), vec![vocab_size - 1, 42]);
            assert!(shard.window(4, 2).is_err());
        }
    }

    #[test]
    fn rejects_out_of_vocab_ids_and_truncated_data() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t.tokens");
        let mut writer = TokenShardWriter::create(&path, 10, "h").unwrap();
        assert!(matches!(writer.push_document(&[3, 10]), Err(CoreError::TokenOutOfRange { token: 10, .. })));

        let mut writer = TokenShardWriter::create(&path, 10, "h").unwrap();
        writer.push_document(&[1, 2, 3]).unwrap();
        writer.finish().unwrap();
        std::fs::write(&path, [1u8, 0, 2, 0]).unwrap();
        let err = TokenShard::open(&path).unwrap_err().to_string();
        assert!(err.contains("t.tokens") && err.contains("promises 3"), "{err}");
    }

    #[test]
    fn empty_shard_opens() {
        let (shard, _dir) = round_trip(100, &[]);
        assert!(shard.is_empty());
        assert!(shard.all().is_empty());
    }

    proptest! {
        #[test]
        fn any_ids_round_trip(docs in prop::collection::vec(prop::collection::vec(0u32..200_000, 0..40), 0..8)) {
            let (shard, _dir) = round_trip(200_000, &docs);
            let flat: Vec<u32> = docs.concat();
            prop_assert_eq!(shard.all().to_vec(), flat);
            for (idx, doc) in docs.iter().enumerate() {
                let range = shard.document_range(idx).unwrap();
                prop_assert_eq!(&shard.all().to_vec()[range], &doc[..]);
            }
        }
    }
}
