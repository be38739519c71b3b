//! Parameter counts, training FLOPs per token and KV-cache bytes per token, from a config alone.
//!
//! Counts are computed from the config so they can be reported before a model is built; the
//! tests check them against burn's `num_params()` of a built model and against hand counts.

use serde::{Deserialize, Serialize};

use crate::config::{BlockSpec, MlpKind, NormKind};

/// What a model costs, as reported in stage manifests.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelCosts {
    /// Every trainable parameter (tied matrices once).
    pub params_total: u64,
    /// Vocabulary and position tables: token embedding, learned position table, and the
    /// untied output head if any.
    pub params_embedding: u64,
    /// `params_total - params_embedding` (Kaplan et al.'s N).
    pub params_non_embedding: u64,
    /// Training FLOPs per token, PaLM accounting: `6·N + 12·L·d·T` with
    /// `N = params_non_embedding + d·vocab` (the output projection is a matmul per token even
    /// when tied; the input lookup is not) and `T` the config's maximum length. For the
    /// encoder-decoder it is averaged over source and target tokens (see its docs).
    pub train_flops_per_token: f64,
    /// Bytes of self-attention keys and values cached per generated token (f32). 0 for the
    /// encoder, which has no cache.
    pub kv_cache_bytes_per_token: u64,
    /// Bytes of cross-attention keys and values cached per source token (f32);
    /// encoder-decoder only, 0 otherwise.
    pub cross_kv_bytes_per_source_token: u64,
}

/// Bytes per element of the cache estimates (f32 weights and activations).
pub(crate) const F32_BYTES: u64 = 4;

pub(crate) fn linear_params(d_in: usize, d_out: usize, bias: bool) -> u64 {
    (d_in * d_out + if bias { d_out } else { 0 }) as u64
}

pub(crate) fn norm_params(kind: NormKind, d: usize) -> u64 {
    match kind {
        NormKind::Rms => d as u64,
        NormKind::Layer => 2 * d as u64,
    }
}

pub(crate) fn attention_params(spec: &BlockSpec) -> u64 {
    let (d, dh) = (spec.d_model, spec.head_dim);
    let q = linear_params(d, spec.n_heads * dh, spec.bias);
    let kv = 2 * linear_params(d, spec.n_kv_heads * dh, spec.bias);
    let o = linear_params(spec.n_heads * dh, d, spec.bias);
    let qk_norm = if spec.qk_norm { 2 * dh as u64 } else { 0 };
    q + kv + o + qk_norm
}

/// The key and value projections of one attention module (cross-attention runs them on source
/// tokens, which matters for the encoder-decoder's FLOPs split).
pub(crate) fn kv_projection_params(spec: &BlockSpec) -> u64 {
    2 * linear_params(spec.d_model, spec.n_kv_heads * spec.head_dim, spec.bias)
}

pub(crate) fn mlp_params(spec: &BlockSpec) -> u64 {
    let (d, f) = (spec.d_model, spec.d_ff);
    let up_down = linear_params(d, f, spec.bias) + linear_params(f, d, spec.bias);
    match spec.mlp {
        MlpKind::Swiglu => up_down + linear_params(d, f, spec.bias),
        MlpKind::Gelu => up_down,
    }
}

/// One self-attention layer: two norms, attention, MLP.
pub(crate) fn self_layer_params(spec: &BlockSpec) -> u64 {
    2 * norm_params(spec.norm, spec.d_model) + attention_params(spec) + mlp_params(spec)
}

/// One encoder-decoder decoder layer: three norms, self- and cross-attention, MLP.
pub(crate) fn cross_layer_params(spec: &BlockSpec) -> u64 {
    3 * norm_params(spec.norm, spec.d_model) + 2 * attention_params(spec) + mlp_params(spec)
}

/// Keys and values of `n_layers` layers for one token, in f32 bytes.
pub(crate) fn kv_bytes_per_token(spec: &BlockSpec, n_layers: usize) -> u64 {
    2 * (n_layers * spec.n_kv_heads * spec.head_dim) as u64 * F32_BYTES
}
