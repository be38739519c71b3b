//! [`BpeTokenizer`]: encoding (with opt-in special tokens, a per-piece cache and parallel
//! batches), decoding, and the [`cascade_core::Tokenizer`] implementation.

use cascade_core::{AllowedSpecial, Tokenizer};
use rayon::prelude::*;
use rustc_hash::FxHashMap;
use sha2::{Digest, Sha256};

use crate::bpe::{BpeModel, MergeScratch};
use crate::error::TokenizerError;
use crate::pretokenize::Pretokenizer;

/// Pieces up to this many bytes are cached per session (longer ones are rare and would bloat
/// the cache).
const CACHE_MAX_PIECE: usize = 64;
/// A session's cache is cleared when it holds this many pieces, bounding its memory.
const CACHE_MAX_ENTRIES: usize = 1 << 17;

/// A byte-level BPE tokenizer: a pre-tokenizer pattern, a vocabulary, merge rules and named
/// special tokens.
///
/// Every byte string round-trips: `decode_bytes(encode_bytes(x)) == x`. Special tokens are
/// produced only where the caller's [`AllowedSpecial`] permits; otherwise their spelling is
/// encoded as ordinary text.
#[derive(Clone)]
pub struct BpeTokenizer {
    pub(crate) model: BpeModel,
    pretokenizer: Pretokenizer,
    /// `(name, id)` in id order.
    specials: Vec<(String, u32)>,
    special_ids: FxHashMap<String, u32>,
    /// Specials longest first, so the longest spelling wins where one is a prefix of another.
    specials_by_len: Vec<(String, u32)>,
    special_first_byte: [bool; 256],
    is_special: Vec<bool>,
    fingerprint: String,
}

impl std::fmt::Debug for BpeTokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BpeTokenizer")
            .field("vocab_size", &self.model.token_bytes.len())
            .field("n_merges", &self.model.merge_list.len())
            .field("pattern", &self.pretokenizer.pattern())
            .field("n_special", &self.specials.len())
            .field("fingerprint", &self.fingerprint)
            .finish()
    }
}

impl BpeTokenizer {
    /// Assembles a tokenizer. `token_bytes[id]` spells every id (special ones included, as
    /// their name); `merges` are `(left, right, priority)`. `source` names where the tables
    /// came from, for error messages.
    pub(crate) fn from_parts(
        source: &str,
        token_bytes: Vec<Box<[u8]>>,
        specials: Vec<(String, u32)>,
        merges: Vec<(u32, u32, u32)>,
        ignore_merges: bool,
        pattern: &str,
    ) -> Result<Self, TokenizerError> {
        let pretokenizer = Pretokenizer::new(pattern)
            .map_err(|e| TokenizerError::Pattern { pattern: pattern.to_owned(), message: e.to_string() })?;
        let special_id_list: Vec<u32> = specials.iter().map(|&(_, id)| id).collect();
        let model = BpeModel::new(token_bytes, &special_id_list, merges, ignore_merges)
            .map_err(|message| TokenizerError::format(source, message))?;
        let mut is_special = vec![false; model.token_bytes.len()];
        let mut special_ids = FxHashMap::default();
        let mut special_first_byte = [false; 256];
        for (name, id) in &specials {
            if name.is_empty() {
                return Err(TokenizerError::format(source, format!("special token {id} is the empty string")));
            }
            if model.token_bytes.get(*id as usize).map(|b| &b[..]) != Some(name.as_bytes()) {
                return Err(TokenizerError::format(source, format!("special token {name:?} is not spelled at id {id}")));
            }
            if special_ids.insert(name.clone(), *id).is_some() {
                return Err(TokenizerError::format(source, format!("special token {name:?} is listed twice")));
            }
            is_special[*id as usize] = true;
            special_first_byte[name.as_bytes()[0] as usize] = true;
        }
        let mut specials = specials;
        specials.sort_by_key(|&(_, id)| id);
        let mut specials_by_len = specials.clone();
        specials_by_len.sort_by(|a, b| b.0.len().cmp(&a.0.len()).then(a.1.cmp(&b.1)));
        let fingerprint = fingerprint(&model, &specials, pretokenizer.pattern());
        Ok(Self { model, pretokenizer, specials, special_ids, specials_by_len, special_first_byte, is_special, fingerprint })
    }

    /// The pre-tokenizer's regex source.
    pub fn pattern(&self) -> &str {
        self.pretokenizer.pattern()
    }

    /// The special tokens as `(name, id)`, in id order.
    pub fn special_tokens(&self) -> &[(String, u32)] {
        &self.specials
    }

    /// Whether `id` is a special token.
    pub fn is_special(&self, id: u32) -> bool {
        self.is_special.get(id as usize).copied().unwrap_or(false)
    }

    /// The bytes `id` stands for (a special token's name for special ids).
    pub fn token_bytes(&self, id: u32) -> Option<&[u8]> {
        self.model.token_bytes.get(id as usize).map(|b| &b[..])
    }

    /// The id of an ordinary token spelled `bytes`.
    pub fn token_id(&self, bytes: &[u8]) -> Option<u32> {
        self.model.lookup.get(bytes).copied()
    }

    /// The merge rules `(left id, right id)`, highest priority first.
    pub fn merges(&self) -> impl ExactSizeIterator<Item = (u32, u32)> + '_ {
        self.model.merge_list.iter().map(|&(left, right, _)| (left, right))
    }

    /// Number of merge rules.
    pub fn n_merges(&self) -> usize {
        self.model.merge_list.len()
    }

    /// Whether whole pieces that are tokens skip the merge loop (tiktoken and HF `ignore_merges`).
    pub fn ignores_merges(&self) -> bool {
        self.model.ignore_merges
    }

    /// The `n` longest ordinary tokens as `(id, bytes)`, longest first (ties: lower id first).
    pub fn longest_tokens(&self, n: usize) -> Vec<(u32, Vec<u8>)> {
        let mut ids: Vec<u32> = (0..self.model.token_bytes.len() as u32).filter(|&id| !self.is_special(id)).collect();
        ids.sort_by(|&a, &b| self.model.token_bytes[b as usize].len().cmp(&self.model.token_bytes[a as usize].len()).then(a.cmp(&b)));
        ids.into_iter().take(n).map(|id| (id, self.model.token_bytes[id as usize].to_vec())).collect()
    }

    /// A reusable encoding session (its piece cache persists across calls).
    pub fn session(&self) -> EncodeSession<'_> {
        EncodeSession { tokenizer: self, cache: FxHashMap::default(), scratch: MergeScratch::default() }
    }

    /// Encodes `text` with every special-token spelling treated as plain text.
    pub fn encode_ordinary(&self, text: &str) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.session().encode_bytes_into(text.as_bytes(), &mut out);
        out
    }

    /// Encodes arbitrary bytes (not necessarily UTF-8) as ordinary text.
    pub fn encode_bytes(&self, bytes: &[u8]) -> Vec<u32> {
        let mut out = Vec::with_capacity(bytes.len() / 3);
        self.session().encode_bytes_into(bytes, &mut out);
        out
    }

    /// Encodes many texts on the rayon pool, in order.
    pub fn encode_batch<S: AsRef<str> + Sync>(&self, texts: &[S], allowed: &AllowedSpecial) -> Vec<Vec<u32>> {
        texts
            .par_iter()
            .map_init(
                || self.session(),
                |session, text| {
                    let mut out = Vec::with_capacity(text.as_ref().len() / 3);
                    session.encode_into(text.as_ref(), allowed, &mut out);
                    out
                },
            )
            .collect()
    }

    /// The special token spelled at the start of `text` that `allowed` permits, longest first.
    fn match_special(&self, text: &[u8], allowed: &AllowedSpecial) -> Option<(usize, u32)> {
        self.specials_by_len
            .iter()
            .find(|(name, _)| text.starts_with(name.as_bytes()) && allowed.allows(name))
            .map(|(name, id)| (name.len(), *id))
    }
}

/// Encoding state reused across calls: a cache from pieces to ids and merge buffers. One per
/// thread; create it with [`BpeTokenizer::session`].
#[derive(Debug)]
pub struct EncodeSession<'a> {
    tokenizer: &'a BpeTokenizer,
    cache: FxHashMap<Box<[u8]>, Box<[u32]>>,
    scratch: MergeScratch,
}

impl EncodeSession<'_> {
    /// Appends the ids of `text` to `out`, matching the special tokens `allowed` permits.
    pub fn encode_into(&mut self, text: &str, allowed: &AllowedSpecial, out: &mut Vec<u32>) {
        let bytes = text.as_bytes();
        if matches!(allowed, AllowedSpecial::None) || self.tokenizer.specials.is_empty() {
            self.encode_bytes_into(bytes, out);
            return;
        }
        let mut segment_start = 0;
        let mut idx = 0;
        while idx < bytes.len() {
            let Some(offset) = bytes[idx..].iter().position(|&b| self.tokenizer.special_first_byte[b as usize]) else {
                break;
            };
            idx += offset;
            match self.tokenizer.match_special(&bytes[idx..], allowed) {
                Some((len, id)) => {
                    self.encode_bytes_into(&bytes[segment_start..idx], out);
                    out.push(id);
                    idx += len;
                    segment_start = idx;
                }
                None => idx += 1,
            }
        }
        self.encode_bytes_into(&bytes[segment_start..], out);
    }

    /// Appends the ids of arbitrary bytes to `out`, with no special tokens.
    pub fn encode_bytes_into(&mut self, bytes: &[u8], out: &mut Vec<u32>) {
        let Self { tokenizer, cache, scratch } = self;
        let model = &tokenizer.model;
        tokenizer.pretokenizer.for_each_piece(bytes, |piece| {
            if piece.len() == 1 {
                out.push(model.byte_ids[piece[0] as usize]);
                return;
            }
            if model.ignore_merges
                && let Some(&id) = model.lookup.get(piece)
            {
                out.push(id);
                return;
            }
            if piece.len() > CACHE_MAX_PIECE {
                model.encode_piece(piece, scratch, out);
                return;
            }
            if let Some(ids) = cache.get(piece) {
                out.extend_from_slice(ids);
                return;
            }
            let start = out.len();
            model.encode_piece(piece, scratch, out);
            if cache.len() >= CACHE_MAX_ENTRIES {
                cache.clear();
            }
            cache.insert(piece.into(), out[start..].into());
        });
    }
}

impl Tokenizer for BpeTokenizer {
    fn encode(&self, text: &str, allowed: &AllowedSpecial) -> Vec<u32> {
        let mut out = Vec::with_capacity(text.len() / 3);
        self.session().encode_into(text, allowed, &mut out);
        out
    }

    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, cascade_core::TokenizerError> {
        let mut out = Vec::with_capacity(ids.len() * 4);
        for &id in ids {
            let bytes = self.model.token_bytes.get(id as usize).ok_or(cascade_core::TokenizerError::UnknownId {
                id,
                vocab_size: self.model.token_bytes.len(),
            })?;
            out.extend_from_slice(bytes);
        }
        Ok(out)
    }

    fn vocab_size(&self) -> usize {
        self.model.token_bytes.len()
    }

    fn special_token(&self, name: &str) -> Option<u32> {
        self.special_ids.get(name).copied()
    }

    fn fingerprint(&self) -> String {
        self.fingerprint.clone()
    }
}

/// SHA-256 over everything that decides the id sequence, length-prefixed so that no two
/// different tokenizers serialize to the same stream.
fn fingerprint(model: &BpeModel, specials: &[(String, u32)], pattern: &str) -> String {
    let mut hasher = Sha256::new();
    let mut field = |bytes: &[u8]| {
        hasher.update((bytes.len() as u64).to_le_bytes());
        hasher.update(bytes);
    };
    field(b"cascade-bpe-v1");
    field(pattern.as_bytes());
    field(&[u8::from(model.ignore_merges)]);
    for bytes in &model.token_bytes {
        field(bytes);
    }
    for (name, id) in specials {
        field(name.as_bytes());
        field(&id.to_le_bytes());
    }
    for &(left, right, priority) in &model.merge_list {
        field(&[left.to_le_bytes(), right.to_le_bytes(), priority.to_le_bytes()].concat());
    }
    format!("bpe-sha256:{}", hex::encode(hasher.finalize()))
}
