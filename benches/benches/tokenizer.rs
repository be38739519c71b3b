//! Placeholder until the tokenizer bench lands (replaced in the same session).
fn main() {}
