//! File formats: HuggingFace `tokenizer.json` (ByteLevel BPE), save and load, and tiktoken
//! rank files (`<base64 token> <rank>` per line), load.

use std::path::Path;

use base64::Engine;
use serde_json::{Map, Value, json};

use crate::bytelevel;
use crate::error::TokenizerError;
use crate::pretokenize::GPT2_PATTERN;
use crate::tokenizer::BpeTokenizer;

impl BpeTokenizer {
    /// The tokenizer as a HuggingFace `tokenizer.json` document.
    ///
    /// The GPT-2 pattern is written as HF's own `ByteLevel` pre-tokenizer with its regex;
    /// any other pattern as a `Split` (isolated) followed by a regex-less `ByteLevel`. Special
    /// tokens become `added_tokens`. `ignore_merges` is written as set, so HF skips the merge
    /// loop for whole-token pieces exactly as this crate does.
    pub fn to_hf_json(&self) -> Value {
        let specials = self.special_tokens();
        let added_tokens: Vec<Value> = specials
            .iter()
            .map(|(name, id)| {
                json!({"id": id, "content": name, "single_word": false, "lstrip": false, "rstrip": false,
                       "normalized": false, "special": true})
            })
            .collect();
        let mut vocab = Map::new();
        for id in 0..self.model.token_bytes.len() as u32 {
            vocab.insert(self.hf_spelling(id), json!(id));
        }
        let merges: Vec<Value> =
            self.merges().map(|(left, right)| json!(format!("{} {}", self.hf_spelling(left), self.hf_spelling(right)))).collect();
        let byte_level = |use_regex: bool| {
            json!({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": use_regex})
        };
        let pre_tokenizer = if self.pattern() == GPT2_PATTERN {
            byte_level(true)
        } else {
            json!({"type": "Sequence", "pretokenizers": [
                {"type": "Split", "pattern": {"Regex": self.pattern()}, "behavior": "Isolated", "invert": false},
                byte_level(false),
            ]})
        };
        json!({
            "version": "1.0",
            "truncation": null,
            "padding": null,
            "added_tokens": added_tokens,
            "normalizer": null,
            "pre_tokenizer": pre_tokenizer,
            "post_processor": null,
            "decoder": byte_level(true),
            "model": {
                "type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "ignore_merges": self.ignores_merges(), "vocab": vocab, "merges": merges,
            },
        })
    }

    fn hf_spelling(&self, id: u32) -> String {
        let bytes = &self.model.token_bytes[id as usize];
        if self.is_special(id) {
            String::from_utf8_lossy(bytes).into_owned()
        } else {
            bytelevel::encode_str(bytes)
        }
    }

    /// Writes `tokenizer.json` to `path`.
    pub fn save_hf(&self, path: &Path) -> Result<(), TokenizerError> {
        let text = serde_json::to_string_pretty(&self.to_hf_json())
            .map_err(|e| TokenizerError::format(path, e.to_string()))?;
        std::fs::write(path, text).map_err(|e| TokenizerError::io(path, e))
    }

    /// Reads a HuggingFace `tokenizer.json` holding a byte-level BPE model.
    pub fn load_hf(path: &Path) -> Result<Self, TokenizerError> {
        let text = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
        Self::from_hf_str(&text, path)
    }

    /// Parses a `tokenizer.json` document; `path` is only used in error messages.
    pub fn from_hf_str(text: &str, path: &Path) -> Result<Self, TokenizerError> {
        let bad = |message: String| TokenizerError::format(path, message);
        let root: Value = serde_json::from_str(text).map_err(|e| bad(format!("not JSON: {e}")))?;
        if !root.get("normalizer").is_none_or(Value::is_null) {
            return Err(bad("normalizer: only null is supported (text must reach BPE unchanged)".into()));
        }
        let model = root.get("model").ok_or_else(|| bad("model: missing".into()))?;
        if model.get("type").and_then(Value::as_str) != Some("BPE") {
            return Err(bad("model.type: only \"BPE\" is supported".into()));
        }
        let pattern = hf_pattern(root.get("pre_tokenizer").unwrap_or(&Value::Null)).map_err(bad)?;
        for key in ["continuing_subword_prefix", "end_of_word_suffix", "dropout", "unk_token"] {
            if model.get(key).is_some_and(|v| !v.is_null() && v != "") {
                return Err(bad(format!("model.{key}: must be null for a byte-level BPE")));
            }
        }
        if model.get("byte_fallback").and_then(Value::as_bool) == Some(true) {
            return Err(bad("model.byte_fallback: must be false for a byte-level BPE".into()));
        }
        let ignore_merges = model.get("ignore_merges").and_then(Value::as_bool).unwrap_or(false);

        let mut specials: Vec<(String, u32)> = Vec::new();
        for (idx, added) in root.get("added_tokens").and_then(Value::as_array).into_iter().flatten().enumerate() {
            let content = added.get("content").and_then(Value::as_str);
            let id = added.get("id").and_then(Value::as_u64);
            match (content, id) {
                (Some(content), Some(id)) => specials.push((content.to_owned(), id as u32)),
                _ => return Err(bad(format!("added_tokens[{idx}]: needs \"content\" and \"id\""))),
            }
        }
        let vocab = model.get("vocab").and_then(Value::as_object).ok_or_else(|| bad("model.vocab: missing".into()))?;
        let n_ids = vocab.values().chain(specials.iter().map(|_| &Value::Null)).count();
        let mut token_bytes: Vec<Option<Box<[u8]>>> = vec![None; n_ids];
        let mut slot = |id: u64, bytes: Box<[u8]>, what: &str| -> Result<(), TokenizerError> {
            let entry = token_bytes.get_mut(id as usize).ok_or_else(|| bad(format!("{what}: id {id} leaves a gap in the ids")))?;
            if entry.as_ref().is_some_and(|old| *old != bytes) {
                return Err(bad(format!("{what}: id {id} is given two different tokens")));
            }
            *entry = Some(bytes);
            Ok(())
        };
        for (name, id) in &specials {
            slot(u64::from(*id), name.as_bytes().into(), &format!("added_tokens {name:?}"))?;
        }
        for (spelled, id) in vocab {
            let id = id.as_u64().ok_or_else(|| bad(format!("model.vocab[{spelled:?}]: id is not an integer")))?;
            if specials.iter().any(|(name, special_id)| name == spelled && u64::from(*special_id) == id) {
                continue;
            }
            let bytes = bytelevel::decode_str(spelled)
                .ok_or_else(|| bad(format!("model.vocab[{spelled:?}]: not in the byte-level alphabet")))?;
            slot(id, bytes.into(), &format!("model.vocab[{spelled:?}]"))?;
        }
        let filled = token_bytes.iter().take_while(|b| b.is_some()).count();
        if token_bytes[filled..].iter().any(Option::is_some) {
            return Err(bad(format!("model.vocab: id {filled} is missing (ids must run 0..n without gaps)")));
        }
        let token_bytes: Vec<Box<[u8]>> = token_bytes.into_iter().flatten().collect();

        let spelled_to_id: rustc_hash::FxHashMap<&str, u32> =
            vocab.iter().filter_map(|(spelled, id)| Some((spelled.as_str(), id.as_u64()? as u32))).collect();
        let merge_values = model.get("merges").and_then(Value::as_array).ok_or_else(|| bad("model.merges: missing".into()))?;
        let mut merges = Vec::with_capacity(merge_values.len());
        for (rank, merge) in merge_values.iter().enumerate() {
            let (left, right) = match merge {
                Value::String(text) => text.split_once(' ').ok_or_else(|| bad(format!("model.merges[{rank}]: {text:?} is not \"left right\"")))?,
                Value::Array(pair) if pair.len() == 2 => match (pair[0].as_str(), pair[1].as_str()) {
                    (Some(left), Some(right)) => (left, right),
                    _ => return Err(bad(format!("model.merges[{rank}]: not a pair of strings"))),
                },
                _ => return Err(bad(format!("model.merges[{rank}]: not a merge"))),
            };
            let id_of = |spelled: &str| {
                spelled_to_id.get(spelled).copied().ok_or_else(|| bad(format!("model.merges[{rank}]: {spelled:?} is not in the vocabulary")))
            };
            merges.push((id_of(left)?, id_of(right)?, rank as u32));
        }
        Self::from_parts(&path.display().to_string(), token_bytes, specials, merges, ignore_merges, &pattern)
    }

    /// Reads a tiktoken rank file from `path`; see [`BpeTokenizer::from_tiktoken`].
    pub fn load_tiktoken(path: &Path, specials: &[(&str, u32)], pattern: &str) -> Result<Self, TokenizerError> {
        let ranks = std::fs::read_to_string(path).map_err(|e| TokenizerError::io(path, e))?;
        Self::from_tiktoken(&ranks, specials, pattern, path)
    }

    /// Builds a tokenizer from a tiktoken rank file (`<base64 bytes> <rank>` per line, ranks
    /// `0..n`), with `specials` as `(name, id)` and the pre-tokenizer `pattern`
    /// (e.g. [`GPT2_PATTERN`] for GPT-2's `r50k_base`). Merge priorities are the ranks, and
    /// whole pieces that are tokens skip the merge loop, exactly as tiktoken encodes.
    ///
    /// Saved as `tokenizer.json`, the merge list is written in priority order and HF numbers it
    /// densely, so the reloaded tokenizer has a different fingerprint (its merges of equal
    /// tiktoken rank get distinct priorities) while encoding the same.
    pub fn from_tiktoken(ranks: &str, specials: &[(&str, u32)], pattern: &str, source: &Path) -> Result<Self, TokenizerError> {
        let bad = |message: String| TokenizerError::format(source, message);
        let mut by_rank: Vec<Option<Box<[u8]>>> = Vec::new();
        for (line_idx, line) in ranks.lines().enumerate() {
            if line.trim().is_empty() {
                continue;
            }
            let line_no = line_idx + 1;
            let (encoded, rank) = line.split_once(' ').ok_or_else(|| bad(format!("line {line_no}: expected \"<base64> <rank>\"")))?;
            let bytes = base64::engine::general_purpose::STANDARD
                .decode(encoded)
                .map_err(|e| bad(format!("line {line_no}: bad base64: {e}")))?;
            let rank: usize = rank.trim().parse().map_err(|e| bad(format!("line {line_no}: bad rank: {e}")))?;
            if rank >= by_rank.len() {
                by_rank.resize(rank + 1, None);
            }
            if by_rank[rank].replace(bytes.into()).is_some() {
                return Err(bad(format!("line {line_no}: rank {rank} appears twice")));
            }
        }
        let n_ranks = by_rank.len();
        for &(name, id) in specials {
            if (id as usize) < n_ranks && by_rank[id as usize].is_some() {
                return Err(bad(format!("special token {name:?} reuses rank {id}")));
            }
            if id as usize >= by_rank.len() {
                by_rank.resize(id as usize + 1, None);
            }
            by_rank[id as usize] = Some(name.as_bytes().into());
        }
        if let Some(missing) = by_rank.iter().position(Option::is_none) {
            return Err(bad(format!("rank {missing} is missing (ranks must run 0..n without gaps)")));
        }
        let token_bytes: Vec<Box<[u8]>> = by_rank.into_iter().flatten().collect();
        let special_ids: rustc_hash::FxHashSet<u32> = specials.iter().map(|&(_, id)| id).collect();
        let lookup: rustc_hash::FxHashMap<&[u8], u32> = token_bytes
            .iter()
            .enumerate()
            .filter(|(id, _)| !special_ids.contains(&(*id as u32)))
            .map(|(id, bytes)| (&bytes[..], id as u32))
            .collect();
        // tiktoken merges two adjacent parts whenever their concatenation has a rank, lowest
        // rank first: that is one merge rule per way of splitting each token in two.
        let mut merges = Vec::new();
        for (id, bytes) in token_bytes.iter().enumerate() {
            if special_ids.contains(&(id as u32)) {
                continue;
            }
            for split in 1..bytes.len() {
                if let (Some(&left), Some(&right)) = (lookup.get(&bytes[..split]), lookup.get(&bytes[split..])) {
                    merges.push((left, right, id as u32));
                }
            }
        }
        let specials = specials.iter().map(|&(name, id)| (name.to_owned(), id)).collect();
        Self::from_parts(&source.display().to_string(), token_bytes, specials, merges, true, pattern)
    }
}

/// The regex a `pre_tokenizer` section stands for.
fn hf_pattern(pre: &Value) -> Result<String, String> {
    let kind = pre.get("type").and_then(Value::as_str);
    let is_plain_byte_level = |v: &Value| {
        v.get("type").and_then(Value::as_str) == Some("ByteLevel")
            && v.get("add_prefix_space").and_then(Value::as_bool) != Some(true)
    };
    match kind {
        Some("ByteLevel") if is_plain_byte_level(pre) => {
            if pre.get("use_regex").and_then(Value::as_bool).unwrap_or(true) {
                Ok(GPT2_PATTERN.to_owned())
            } else {
                Err("pre_tokenizer: ByteLevel without a regex is not supported".into())
            }
        }
        Some("Sequence") => {
            let steps = pre.get("pretokenizers").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            match steps {
                [split, byte_level]
                    if split.get("type").and_then(Value::as_str) == Some("Split")
                        && split.get("behavior").and_then(Value::as_str) == Some("Isolated")
                        && split.get("invert").and_then(Value::as_bool) != Some(true)
                        && is_plain_byte_level(byte_level)
                        && byte_level.get("use_regex").and_then(Value::as_bool) == Some(false) =>
                {
                    split
                        .get("pattern")
                        .and_then(|p| p.get("Regex"))
                        .and_then(Value::as_str)
                        .map(str::to_owned)
                        .ok_or_else(|| "pre_tokenizer.pretokenizers[0].pattern: expected {\"Regex\": ...}".into())
                }
                _ => Err("pre_tokenizer: only [Split(Isolated), ByteLevel(use_regex=false)] sequences are supported".into()),
            }
        }
        _ => Err("pre_tokenizer: expected ByteLevel (add_prefix_space=false) or a Split+ByteLevel sequence".into()),
    }
}
