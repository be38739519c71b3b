//! Placeholder until the data bench lands (replaced in the same session).
fn main() {}
