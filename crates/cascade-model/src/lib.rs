//! Transformer blocks and the three Cascade architectures.
