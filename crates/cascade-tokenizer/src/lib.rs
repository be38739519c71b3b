//! cascade-tokenizer (being written)
