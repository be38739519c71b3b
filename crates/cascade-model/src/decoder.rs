//! Decoder-only language model (GPT/Llama style): token embedding, causal pre-norm
//! self-attention layers, final norm, LM head.
//!
//! Uses: grouped-query attention, rotary (or learned) positions, RMSNorm (or LayerNorm),
//! SwiGLU (or GELU) MLP, tied (or untied) embeddings, a [`KvCache`] for incremental decoding.
//! Every token sees only itself and the tokens before it; that single fact is the `causal:
//! true` passed to the mask below.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, Linear};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::blocks::layer::SelfAttentionLayer;
use crate::blocks::norm::Norm;
use crate::blocks::position::{Positions, Rope, learned_positions};
use crate::blocks::{embedding, linear, materialize, vocab_logits};
use crate::cache::{BatchLayout, KvCache};
use crate::config::{CommonFields, MlpKind, NormKind, PositionKind, positive};
use crate::costs::{ModelCosts, kv_bytes_per_token, norm_params, self_layer_params};
use crate::error::{ModelError, Result};

/// Decoder-only model config (TOML table `[model.decoder]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DecoderConfig {
    /// Vocabulary size (the tokenizer's, special tokens included). Default 4096.
    pub vocab_size: usize,
    /// Width of the residual stream. Default 256.
    pub d_model: usize,
    /// Number of layers. Default 4.
    pub n_layers: usize,
    /// Query heads; must divide `d_model`. Default 8.
    pub n_heads: usize,
    /// Key/value heads; must divide `n_heads` (1 = MQA). 0 means `n_heads` (MHA). Default 0.
    pub n_kv_heads: usize,
    /// MLP hidden width; 0 picks 8/3·d_model rounded up to 32 (SwiGLU) or 4·d_model (GELU).
    pub d_ff: usize,
    /// Longest sequence (prompt + generated tokens) the model accepts. Default 256.
    pub max_seq_len: usize,
    /// `"rope"` or `"learned"`. Default `"rope"`.
    pub position: PositionKind,
    /// Rotary base. Default 10000.
    pub rope_theta: f64,
    /// `"rms"` or `"layer"`. Default `"rms"`.
    pub norm: NormKind,
    /// Norm epsilon. Default 1e-5.
    pub norm_eps: f64,
    /// `"swiglu"` or `"gelu"`. Default `"swiglu"`.
    pub mlp: MlpKind,
    /// RMS-normalize each head's queries and keys. Default false.
    pub qk_norm: bool,
    /// Biases in attention and MLP projections. Default false.
    pub bias: bool,
    /// Dropout on embeddings and residual branches (training only). Default 0.0.
    pub dropout: f64,
    /// Use the token embedding as the output head. Default true.
    pub tie_embeddings: bool,
    /// Std of weights at init (residual projections get `init_std / sqrt(2·n_layers)`). Default 0.02.
    pub init_std: f64,
}

impl Default for DecoderConfig {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            d_model: 256,
            n_layers: 4,
            n_heads: 8,
            n_kv_heads: 0,
            d_ff: 0,
            max_seq_len: 256,
            position: PositionKind::Rope,
            rope_theta: 10_000.0,
            norm: NormKind::Rms,
            norm_eps: 1e-5,
            mlp: MlpKind::Swiglu,
            qk_norm: false,
            bias: false,
            dropout: 0.0,
            tie_embeddings: true,
            init_std: 0.02,
        }
    }
}

impl DecoderConfig {
    pub(crate) fn common(&self) -> CommonFields {
        CommonFields {
            vocab_size: self.vocab_size,
            d_model: self.d_model,
            n_heads: self.n_heads,
            n_kv_heads: self.n_kv_heads,
            d_ff: self.d_ff,
            position: self.position,
            rope_theta: self.rope_theta,
            norm: self.norm,
            norm_eps: self.norm_eps,
            mlp: self.mlp,
            qk_norm: self.qk_norm,
            bias: self.bias,
            dropout: self.dropout,
            init_std: self.init_std,
        }
    }

    /// Checks every field; the error names the first key at fault.
    pub fn validate(&self) -> Result<()> {
        positive("n_layers", self.n_layers)?;
        positive("max_seq_len", self.max_seq_len)?;
        self.common().validate()
    }

    /// Errors unless a sequence of `len` tokens fits the position table.
    pub fn check_len(&self, len: usize) -> Result<()> {
        check_len("max_seq_len", self.max_seq_len, len)
    }

    /// Key/value heads after resolving `n_kv_heads = 0`.
    pub fn kv_heads(&self) -> usize {
        self.common().kv_heads()
    }

    /// MLP width after resolving `d_ff = 0`.
    pub fn resolved_d_ff(&self) -> usize {
        self.common().block_spec(self.n_layers).d_ff
    }

    /// Builds the model with freshly drawn weights (seed the device first for reproducible
    /// weights: every parameter is drawn here, in a fixed order).
    pub fn init(&self, device: &Device) -> Result<Decoder> {
        self.validate()?;
        let spec = self.common().block_spec(self.n_layers);
        let (d, v) = (self.d_model, self.vocab_size);
        let model = Decoder {
            embed_tokens: embedding(v, d, self.init_std, device),
            embed_positions: (self.position == PositionKind::Learned)
                .then(|| embedding(self.max_seq_len, d, self.init_std, device)),
            layers: (0..self.n_layers).map(|_| SelfAttentionLayer::new(&spec, device)).collect(),
            norm: Norm::new(self.norm, d, self.norm_eps, device),
            lm_head: (!self.tie_embeddings).then(|| linear(d, v, false, self.init_std, device)),
            rope: (self.position == PositionKind::Rope)
                .then(|| Rope::new(self.max_seq_len, spec.head_dim, self.rope_theta, device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            config: self.clone(),
        };
        materialize(&model);
        Ok(model)
    }

    /// Parameter counts, FLOPs per token (at `max_seq_len`) and KV-cache bytes per token.
    pub fn costs(&self) -> ModelCosts {
        self.costs_at(self.max_seq_len)
    }

    /// [`Self::costs`] with the attention FLOPs term taken at `seq_len` tokens of context.
    pub fn costs_at(&self, seq_len: usize) -> ModelCosts {
        let spec = self.common().block_spec(self.n_layers);
        let (d, v) = (self.d_model as u64, self.vocab_size as u64);
        let positions = match self.position {
            PositionKind::Learned => self.max_seq_len as u64 * d,
            PositionKind::Rope => 0,
        };
        let head = if self.tie_embeddings { 0 } else { d * v };
        let embedding = v * d + positions + head;
        let non_embedding =
            self.n_layers as u64 * self_layer_params(&spec) + norm_params(self.norm, self.d_model);
        let compute_params = (non_embedding + d * v) as f64;
        let attention = 12.0 * (self.n_layers as u64 * d * seq_len as u64) as f64;
        ModelCosts {
            params_total: embedding + non_embedding,
            params_embedding: embedding,
            params_non_embedding: non_embedding,
            train_flops_per_token: 6.0 * compute_params + attention,
            kv_cache_bytes_per_token: kv_bytes_per_token(&spec, self.n_layers),
            cross_kv_bytes_per_source_token: 0,
        }
    }
}

pub(crate) fn check_len(key: &'static str, max: usize, len: usize) -> Result<()> {
    if len > max {
        return Err(ModelError::InvalidInput {
            message: format!("{len} tokens exceed the position table (`{key}` = {max})"),
        });
    }
    Ok(())
}

/// Decoder-only transformer; build it with [`DecoderConfig::init`].
#[derive(Module, Debug)]
pub struct Decoder {
    embed_tokens: Embedding,
    embed_positions: Option<Embedding>,
    layers: Vec<SelfAttentionLayer>,
    norm: Norm,
    lm_head: Option<Linear>,
    rope: Option<Rope>,
    dropout: Dropout,
    #[module(skip)]
    config: DecoderConfig,
}

impl Decoder {
    /// The config this model was built from.
    pub fn config(&self) -> &DecoderConfig {
        &self.config
    }

    /// Causal logits `[B, T, vocab]` for tokens `[B, T]` at positions `0..T`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_layout(tokens, &BatchLayout::default())
    }

    /// Causal logits with padding, explicit positions or packed segments.
    pub fn forward_layout(&self, tokens: Tensor<2, Int>, layout: &BatchLayout) -> Tensor<3> {
        self.logits(self.hidden(tokens, layout))
    }

    /// Final-norm hidden states `[B, T, d_model]` (project with [`Self::logits`], e.g. only at
    /// the positions a loss or sampler needs).
    pub fn hidden(&self, tokens: Tensor<2, Int>, layout: &BatchLayout) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let (positions, mask) = layout.step(t, true, &tokens.device());
        self.run(tokens, positions, &mask, None)
    }

    /// Vocabulary logits of hidden states `[B, T, d_model]`.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        vocab_logits(hidden, self.lm_head.as_ref(), &self.embed_tokens)
    }

    /// The `[d_model, vocab]` output projection as one contiguous matrix (for tied embeddings a
    /// transposed copy of the token embedding), so that `hidden [N, d] · projection` gives the
    /// logits of [`Self::logits`]. Decoding multiplies by it directly: burn-flex 0.22 runs the
    /// tied head's strided, transposed operand very slowly when there are only a few rows
    /// (about 10 ms for one row at vocab 4096, against well under 1 ms contiguous).
    pub fn output_projection(&self) -> Tensor<2> {
        match &self.lm_head {
            Some(head) => head.weight.val(),
            None => {
                let transposed = self.embed_tokens.weight.val().transpose();
                let device = transposed.device();
                Tensor::from_data(transposed.into_data(), &device)
            }
        }
    }

    /// An empty cache for [`Self::forward_cached`].
    pub fn new_cache(&self) -> KvCache {
        KvCache::new(self.layers.len())
    }

    /// Logits for `tokens [B, T]` continuing the sequences in `cache` (which grows by `T`);
    /// equal to the matching rows of a full [`Self::forward`] over the whole sequence.
    pub fn forward_cached(&self, tokens: Tensor<2, Int>, cache: &mut KvCache) -> Tensor<3> {
        self.forward_cached_layout(tokens, &BatchLayout::default(), cache)
    }

    /// [`Self::forward_cached`] with padding/positions for the new tokens (e.g. a left-padded
    /// prompt batch from [`BatchLayout::left_padded`]; later steps then need no layout, the
    /// cache continues each row's positions).
    pub fn forward_cached_layout(
        &self,
        tokens: Tensor<2, Int>,
        layout: &BatchLayout,
        cache: &mut KvCache,
    ) -> Tensor<3> {
        self.logits(self.hidden_cached(tokens, layout, cache))
    }

    /// Final-norm hidden states of a cached step.
    pub fn hidden_cached(&self, tokens: Tensor<2, Int>, layout: &BatchLayout, cache: &mut KvCache) -> Tensor<3> {
        let [b, t] = tokens.dims();
        let (positions, mask) = cache.step(b, t, layout, true, &tokens.device());
        self.run(tokens, positions, &mask, Some(cache))
    }

    /// Errors unless `len` tokens (prompt plus generation) fit the position table.
    pub fn check_len(&self, len: usize) -> Result<()> {
        self.config.check_len(len)
    }

    /// Costs of this model's config.
    pub fn costs(&self) -> ModelCosts {
        self.config.costs()
    }

    fn run(
        &self,
        tokens: Tensor<2, Int>,
        positions: Positions,
        mask: &crate::blocks::mask::AttnMask,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let mut x = self.embed_tokens.forward(tokens);
        if let Some(table) = &self.embed_positions {
            x = x + learned_positions(table, &positions, t);
        }
        let rope = self.rope.as_ref().map(|r| r.tables(&positions, t));
        let mut x = self.dropout.forward(x);
        for (i, layer) in self.layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, rope.as_ref(), mask, layer_cache);
        }
        self.norm.forward(x)
    }
}
