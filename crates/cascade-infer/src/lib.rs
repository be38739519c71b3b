//! Inference for Cascade models: prefill and incremental decoding on the KV cache, sampling,
//! streaming text, evaluation (perplexity, bits per byte) and an OpenAI-compatible HTTP server.
#![deny(missing_docs)]
