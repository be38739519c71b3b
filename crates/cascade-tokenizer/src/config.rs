//! `TokenizerConfig`: the `[tokenizer]` section of a cascade TOML file.

use serde::{Deserialize, Serialize};

use crate::error::TokenizerError;
use crate::pretokenize::{CL100K_PATTERN, GPT2_PATTERN, Pretokenizer};
use crate::special;

/// Settings of the tokenizer stage.
///
/// ```toml
/// [tokenizer]
/// vocab_size = 8192          # total ids: special tokens + 256 bytes + merges
/// min_frequency = 2          # a pair seen fewer times is never merged
/// pattern = "gpt2"           # "gpt2", "cl100k", or a fancy-regex pattern
/// n_sentinels = 16           # <|sentinel_0|> .. <|sentinel_15|>
/// extra_special_tokens = []  # appended after the reserved ones
/// n_longest_tokens = 20      # how many of the longest tokens the report lists
/// batch_bytes = 8388608      # text per parallel batch when streaming shards
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TokenizerConfig {
    /// Target vocabulary size, special tokens and the 256 byte tokens included. Training stops
    /// earlier if no pair reaches `min_frequency`.
    pub vocab_size: u32,
    /// Minimum count (over the training corpus) of a pair for it to be merged.
    pub min_frequency: u64,
    /// Pre-tokenizer: `gpt2` (default), `cl100k`, or a custom `fancy-regex` pattern.
    pub pattern: String,
    /// Number of span-corruption sentinel tokens.
    pub n_sentinels: u32,
    /// More special tokens, given ids right after the reserved ones.
    pub extra_special_tokens: Vec<String>,
    /// Number of longest tokens listed in the report.
    pub n_longest_tokens: usize,
    /// Bytes of document text per batch handed to the thread pool while streaming shards.
    pub batch_bytes: usize,
}

impl Default for TokenizerConfig {
    fn default() -> Self {
        Self {
            vocab_size: 8192,
            min_frequency: 2,
            pattern: "gpt2".into(),
            n_sentinels: 16,
            extra_special_tokens: Vec::new(),
            n_longest_tokens: 20,
            batch_bytes: 8 << 20,
        }
    }
}

/// Largest vocabulary the trainer accepts (ids must fit comfortably in `u32` and the
/// tables in memory).
pub const MAX_VOCAB_SIZE: u32 = 1 << 22;

impl TokenizerConfig {
    /// The regex source of `pattern` (named patterns resolved).
    pub fn pattern_source(&self) -> &str {
        match self.pattern.as_str() {
            "gpt2" => GPT2_PATTERN,
            "cl100k" => CL100K_PATTERN,
            other => other,
        }
    }

    /// Every special token, in id order.
    pub fn special_tokens(&self) -> Vec<String> {
        special::special_token_names(self.n_sentinels, &self.extra_special_tokens)
    }

    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), TokenizerError> {
        let n_special = self.special_tokens().len() as u64;
        let min_vocab = 256 + n_special;
        if u64::from(self.vocab_size) < min_vocab || self.vocab_size > MAX_VOCAB_SIZE {
            return Err(TokenizerError::Config {
                key: "vocab_size",
                message: format!(
                    "{} must be between {min_vocab} (256 bytes + {n_special} special tokens) and {MAX_VOCAB_SIZE}",
                    self.vocab_size
                ),
            });
        }
        if self.min_frequency == 0 {
            return Err(TokenizerError::Config { key: "min_frequency", message: "must be at least 1".into() });
        }
        if self.n_sentinels > 1000 {
            return Err(TokenizerError::Config {
                key: "n_sentinels",
                message: format!("{} is more than the 1000 allowed", self.n_sentinels),
            });
        }
        let mut seen = std::collections::HashSet::new();
        for name in self.special_tokens() {
            if name.is_empty() {
                return Err(TokenizerError::Config {
                    key: "extra_special_tokens",
                    message: "a special token is the empty string".into(),
                });
            }
            if !seen.insert(name.clone()) {
                return Err(TokenizerError::Config {
                    key: "extra_special_tokens",
                    message: format!("{name:?} is listed twice (or collides with a reserved token)"),
                });
            }
        }
        if self.pattern.is_empty() {
            return Err(TokenizerError::Config { key: "pattern", message: "must not be empty".into() });
        }
        Pretokenizer::new(self.pattern_source())
            .map_err(|e| TokenizerError::Config { key: "pattern", message: e.to_string() })?;
        if self.batch_bytes == 0 {
            return Err(TokenizerError::Config { key: "batch_bytes", message: "must be at least 1".into() });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_errors_name_the_key() {
        TokenizerConfig::default().validate().unwrap();
        let bad = TokenizerConfig { vocab_size: 100, ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("vocab_size"));
        let bad = TokenizerConfig { pattern: "(".into(), ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("pattern"));
        let bad = TokenizerConfig { extra_special_tokens: vec!["<|pad|>".into()], ..Default::default() };
        assert!(bad.validate().unwrap_err().to_string().contains("extra_special_tokens"));
        let parsed: TokenizerConfig = serde_json::from_str(r#"{"vocab_size": 1000, "pattern": "cl100k"}"#).unwrap();
        assert_eq!(parsed.pattern_source(), CL100K_PATTERN);
        assert_eq!(parsed.n_sentinels, 16);
        assert!(serde_json::from_str::<TokenizerConfig>(r#"{"vocab": 1}"#).is_err());
    }
}
