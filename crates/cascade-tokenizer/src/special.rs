//! Reserved special tokens, looked up by name by the later stages (MLM masking, span
//! corruption, the chat template), and always given the first ids.

/// Separates documents in token shards and ends generation.
pub const ENDOFTEXT: &str = "<|endoftext|>";
/// Fills batches to a common length.
pub const PAD: &str = "<|pad|>";
/// Opens a system turn in the chat template.
pub const SYSTEM: &str = cascade_core::chat::SYSTEM_TOKEN;
/// Opens a user turn in the chat template.
pub const USER: &str = cascade_core::chat::USER_TOKEN;
/// Opens an assistant turn in the chat template.
pub const ASSISTANT: &str = cascade_core::chat::ASSISTANT_TOKEN;
/// Closes any chat turn.
pub const END_OF_TURN: &str = cascade_core::chat::END_OF_TURN_TOKEN;
/// Replaces masked tokens in masked-language-model pretraining.
pub const MASK: &str = "<|mask|>";

/// The reserved tokens other than sentinels, in id order (ids 0..7).
pub const RESERVED: [&str; 7] = [ENDOFTEXT, PAD, SYSTEM, USER, ASSISTANT, END_OF_TURN, MASK];

/// Name of span-corruption sentinel `sentinel_idx` (`<|sentinel_0|>`, `<|sentinel_1|>`, ...).
pub fn sentinel(sentinel_idx: u32) -> String {
    format!("<|sentinel_{sentinel_idx}|>")
}

/// Every reserved special token of a tokenizer with `n_sentinels` sentinels followed by
/// `extra` user-defined ones, in id order: [`RESERVED`], then the sentinels, then `extra`.
pub fn special_token_names(n_sentinels: u32, extra: &[String]) -> Vec<String> {
    RESERVED
        .iter()
        .map(|name| (*name).to_owned())
        .chain((0..n_sentinels).map(sentinel))
        .chain(extra.iter().cloned())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_in_id_order() {
        let names = special_token_names(2, &["<|tool|>".to_owned()]);
        assert_eq!(names[0], ENDOFTEXT);
        assert_eq!(names[6], MASK);
        assert_eq!(names[7], "<|sentinel_0|>");
        assert_eq!(names[8], "<|sentinel_1|>");
        assert_eq!(names[9], "<|tool|>");
    }
}
