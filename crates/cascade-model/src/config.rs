//! Choices shared by the three families (norm, MLP, positions) and the checks every config runs.
//!
//! Each family keeps its own flat config struct (one TOML table each); this module holds the
//! enums they share, the validation helpers that name the key at fault, and [`BlockSpec`], the
//! resolved dimensions the blocks are built from.

use serde::{Deserialize, Serialize};

use crate::error::{ModelError, Result};

/// Normalization layer used before each sub-layer and at the end of the stack.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NormKind {
    /// RMSNorm (Llama, T5): scale only, no mean subtraction. TOML `"rms"`.
    #[default]
    Rms,
    /// LayerNorm (GPT-2, BERT): mean and variance, scale and shift. TOML `"layer"`.
    Layer,
}

/// Feed-forward block.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MlpKind {
    /// Gated SiLU (Llama): `down(silu(gate(x)) * up(x))`. TOML `"swiglu"`.
    #[default]
    Swiglu,
    /// Plain GELU (GPT-2, BERT): `down(gelu(up(x)))`. TOML `"gelu"`.
    Gelu,
}

/// How a token's position enters the model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PositionKind {
    /// Rotary embeddings on queries and keys (HF `rotate_half` convention). TOML `"rope"`.
    #[default]
    Rope,
    /// A learned table of absolute position vectors added to the token embeddings. TOML `"learned"`.
    Learned,
}

/// How the encoder's classification head pools the sequence into one vector.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Pooling {
    /// Mean of the final hidden states over non-padding tokens. TOML `"mean"`.
    #[default]
    Mean,
    /// The final hidden state of the first token (BERT's `[CLS]`). TOML `"first"`.
    First,
}

/// Resolved dimensions and options of one transformer block, shared by every family.
#[derive(Clone, Debug)]
pub(crate) struct BlockSpec {
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub head_dim: usize,
    pub d_ff: usize,
    pub norm: NormKind,
    pub norm_eps: f64,
    pub mlp: MlpKind,
    pub qk_norm: bool,
    pub bias: bool,
    pub dropout: f64,
    /// Std of every weight matrix and embedding at init.
    pub init_std: f64,
    /// Std of the projections that write into the residual stream (attention output, MLP
    /// down): `init_std / sqrt(2 * n_layers)` so the residual variance stays flat with depth
    /// (GPT-2).
    pub resid_std: f64,
}

/// The fields every family's config has, borrowed for the shared checks.
pub(crate) struct CommonFields {
    pub vocab_size: usize,
    pub d_model: usize,
    pub n_heads: usize,
    pub n_kv_heads: usize,
    pub d_ff: usize,
    pub position: PositionKind,
    pub rope_theta: f64,
    pub norm: NormKind,
    pub norm_eps: f64,
    pub mlp: MlpKind,
    pub qk_norm: bool,
    pub bias: bool,
    pub dropout: f64,
    pub init_std: f64,
}

impl CommonFields {
    /// Checks what all families share; errors name the key.
    pub fn validate(&self) -> Result<()> {
        positive("vocab_size", self.vocab_size)?;
        if self.vocab_size > u32::MAX as usize {
            return Err(ModelError::config("vocab_size", "must fit in u32"));
        }
        positive("d_model", self.d_model)?;
        positive("n_heads", self.n_heads)?;
        if !self.d_model.is_multiple_of(self.n_heads) {
            return Err(ModelError::config(
                "d_model",
                format!("{} is not divisible by n_heads = {}", self.d_model, self.n_heads),
            ));
        }
        let n_kv = self.kv_heads();
        if n_kv > self.n_heads || !self.n_heads.is_multiple_of(n_kv) {
            return Err(ModelError::config(
                "n_kv_heads",
                format!("{n_kv} does not divide n_heads = {}", self.n_heads),
            ));
        }
        let head_dim = self.d_model / self.n_heads;
        if self.position == PositionKind::Rope && !head_dim.is_multiple_of(2) {
            return Err(ModelError::config(
                "position",
                format!("rope needs an even head dimension, d_model / n_heads = {head_dim}"),
            ));
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 0.0) {
            return Err(ModelError::config("rope_theta", format!("{} must be > 0", self.rope_theta)));
        }
        if !(self.norm_eps.is_finite() && self.norm_eps > 0.0) {
            return Err(ModelError::config("norm_eps", format!("{} must be > 0", self.norm_eps)));
        }
        if !(0.0..1.0).contains(&self.dropout) {
            return Err(ModelError::config("dropout", format!("{} must be in [0, 1)", self.dropout)));
        }
        if !(self.init_std.is_finite() && self.init_std > 0.0) {
            return Err(ModelError::config("init_std", format!("{} must be > 0", self.init_std)));
        }
        Ok(())
    }

    /// `n_kv_heads`, with 0 meaning "as many as `n_heads`" (plain multi-head attention).
    pub fn kv_heads(&self) -> usize {
        if self.n_kv_heads == 0 { self.n_heads } else { self.n_kv_heads }
    }

    /// The resolved block spec for a stack whose residual stream receives `n_residual_writes`
    /// projections per layer times `n_layers` layers.
    pub fn block_spec(&self, n_layers: usize) -> BlockSpec {
        BlockSpec {
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_kv_heads: self.kv_heads(),
            head_dim: self.d_model / self.n_heads,
            d_ff: resolve_d_ff(self.d_ff, self.d_model, self.mlp),
            norm: self.norm,
            norm_eps: self.norm_eps,
            mlp: self.mlp,
            qk_norm: self.qk_norm,
            bias: self.bias,
            dropout: self.dropout,
            init_std: self.init_std,
            resid_std: self.init_std / (2.0 * n_layers.max(1) as f64).sqrt(),
        }
    }
}

/// `d_ff = 0` picks the usual width: `4·d_model` for GELU, and for SwiGLU `8/3·d_model`
/// rounded up to a multiple of 32 (same parameter count as a 4x GELU MLP, GEMM-friendly).
pub(crate) fn resolve_d_ff(d_ff: usize, d_model: usize, mlp: MlpKind) -> usize {
    if d_ff > 0 {
        return d_ff;
    }
    match mlp {
        MlpKind::Gelu => 4 * d_model,
        MlpKind::Swiglu => (8 * d_model).div_ceil(3).div_ceil(32) * 32,
    }
}

/// Errors unless `value > 0`.
pub(crate) fn positive(key: &'static str, value: usize) -> Result<()> {
    if value == 0 {
        return Err(ModelError::config(key, "must be > 0"));
    }
    Ok(())
}
