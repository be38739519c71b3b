//! The `Tokenizer` trait: what every model stage needs from a tokenizer, and nothing more.
//!
//! A tokenizer crate implements it so the stages downstream (token shards, training, chat,
//! serving) can be used with any tokenizer. Special tokens are looked up by name (e.g.
//! `<|endoftext|>`), never by a hard-coded id.

/// Which special tokens [`Tokenizer::encode`] may produce from text.
///
/// Text that spells a special token (say a user typing `<|endoftext|>`) is encoded as plain text
/// unless the caller allows it: special tokens are control signals, and matching them silently
/// in untrusted text is how prompt formats get broken.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum AllowedSpecial {
    /// Special-token strings are encoded as ordinary text.
    #[default]
    None,
    /// Every special token is matched.
    All,
    /// Only the named special tokens are matched.
    Some(Vec<String>),
}

impl AllowedSpecial {
    /// Whether the special token `name` may be matched.
    pub fn allows(&self, name: &str) -> bool {
        match self {
            Self::None => false,
            Self::All => true,
            Self::Some(names) => names.iter().any(|n| n == name),
        }
    }
}

/// Errors a tokenizer can report while decoding.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenizerError {
    /// An id outside the vocabulary.
    #[error("token id {id} is outside the vocabulary of {vocab_size}")]
    UnknownId {
        /// The id.
        id: u32,
        /// The vocabulary size.
        vocab_size: usize,
    },
}

/// A reversible map between text and token ids.
pub trait Tokenizer: Send + Sync {
    /// Encodes `text`, matching only the special tokens that `allowed` permits.
    fn encode(&self, text: &str, allowed: &AllowedSpecial) -> Vec<u32>;

    /// Decodes ids to the exact bytes they stand for (which may not be valid UTF-8 when a
    /// sequence is cut in the middle of a character).
    fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError>;

    /// Decodes ids to text, replacing invalid UTF-8 with U+FFFD.
    fn decode(&self, ids: &[u32]) -> Result<String, TokenizerError> {
        Ok(String::from_utf8_lossy(&self.decode_bytes(ids)?).into_owned())
    }

    /// Number of ids, special tokens included.
    fn vocab_size(&self) -> usize;

    /// The id of the special token `name` (e.g. `<|endoftext|>`), if the vocabulary has it.
    fn special_token(&self, name: &str) -> Option<u32>;

    /// A stable hash of everything that determines the id sequence (vocabulary, merges,
    /// pattern, special tokens), recorded in token shards so a shard is never read with the
    /// wrong tokenizer.
    fn fingerprint(&self) -> String;
}
