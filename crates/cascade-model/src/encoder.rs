//! Encoder-only model (BERT style): token (+ learned position) embedding, bidirectional
//! pre-norm self-attention layers, final norm; a masked-LM head and a sequence-classification
//! head over a pooled representation (the cascade's reply judge).
//!
//! Uses the same blocks as the decoder; the one difference that matters is `causal: false`
//! in the mask: every token sees every non-padding token of its sequence.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, Linear};
use burn::prelude::*;
use burn::tensor::activation::gelu;
use serde::{Deserialize, Serialize};

use crate::blocks::layer::SelfAttentionLayer;
use crate::blocks::norm::Norm;
use crate::blocks::position::{Rope, learned_positions};
use crate::blocks::{embedding, linear, materialize, vocab_logits};
use crate::cache::BatchLayout;
use crate::config::{CommonFields, MlpKind, NormKind, Pooling, PositionKind, positive};
use crate::costs::{ModelCosts, linear_params, norm_params, self_layer_params};
use crate::decoder::check_len;
use crate::error::Result;

/// Encoder-only model config (TOML table `[model.encoder]`). Defaults are BERT-like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderConfig {
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
    /// Longest input sequence. Default 256.
    pub max_seq_len: usize,
    /// `"rope"` or `"learned"`. Default `"learned"`.
    pub position: PositionKind,
    /// Rotary base. Default 10000.
    pub rope_theta: f64,
    /// `"rms"` or `"layer"`. Default `"layer"`.
    pub norm: NormKind,
    /// Norm epsilon. Default 1e-5.
    pub norm_eps: f64,
    /// `"swiglu"` or `"gelu"`. Default `"gelu"`.
    pub mlp: MlpKind,
    /// RMS-normalize each head's queries and keys. Default false.
    pub qk_norm: bool,
    /// Biases in attention, MLP and MLM-transform projections. Default true.
    pub bias: bool,
    /// Dropout on embeddings, residual branches and the pooled vector (training only). Default 0.0.
    pub dropout: f64,
    /// Use the token embedding as the masked-LM output projection. Default true.
    pub tie_embeddings: bool,
    /// Std of weights at init (residual projections get `init_std / sqrt(2·n_layers)`). Default 0.02.
    pub init_std: f64,
    /// Classes of the sequence-classification head. Default 2.
    pub n_classes: usize,
    /// `"mean"` (over non-padding tokens) or `"first"` (first token; pad on the right). Default `"mean"`.
    pub pooling: Pooling,
}

impl Default for EncoderConfig {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            d_model: 256,
            n_layers: 4,
            n_heads: 8,
            n_kv_heads: 0,
            d_ff: 0,
            max_seq_len: 256,
            position: PositionKind::Learned,
            rope_theta: 10_000.0,
            norm: NormKind::Layer,
            norm_eps: 1e-5,
            mlp: MlpKind::Gelu,
            qk_norm: false,
            bias: true,
            dropout: 0.0,
            tie_embeddings: true,
            init_std: 0.02,
            n_classes: 2,
            pooling: Pooling::Mean,
        }
    }
}

impl EncoderConfig {
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
        positive("n_classes", self.n_classes)?;
        self.common().validate()
    }

    /// Errors unless a sequence of `len` tokens fits the position table.
    pub fn check_len(&self, len: usize) -> Result<()> {
        check_len("max_seq_len", self.max_seq_len, len)
    }

    /// Builds the model with freshly drawn weights (seed the device first for reproducible
    /// weights).
    pub fn init(&self, device: &Device) -> Result<Encoder> {
        self.validate()?;
        let spec = self.common().block_spec(self.n_layers);
        let (d, v) = (self.d_model, self.vocab_size);
        let model = Encoder {
            embed_tokens: embedding(v, d, self.init_std, device),
            embed_positions: (self.position == PositionKind::Learned)
                .then(|| embedding(self.max_seq_len, d, self.init_std, device)),
            layers: (0..self.n_layers).map(|_| SelfAttentionLayer::new(&spec, device)).collect(),
            norm: Norm::new(self.norm, d, self.norm_eps, device),
            mlm_dense: linear(d, d, self.bias, self.init_std, device),
            mlm_norm: Norm::new(self.norm, d, self.norm_eps, device),
            mlm_head: (!self.tie_embeddings).then(|| linear(d, v, false, self.init_std, device)),
            classifier: linear(d, self.n_classes, true, self.init_std, device),
            rope: (self.position == PositionKind::Rope)
                .then(|| Rope::new(self.max_seq_len, spec.head_dim, self.rope_theta, device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            config: self.clone(),
        };
        materialize(&model);
        Ok(model)
    }

    /// Parameter counts and FLOPs per token at `max_seq_len` (MLM head counted at every
    /// position); no KV cache.
    pub fn costs(&self) -> ModelCosts {
        self.costs_at(self.max_seq_len)
    }

    /// [`Self::costs`] with the attention FLOPs term taken at `seq_len` tokens.
    pub fn costs_at(&self, seq_len: usize) -> ModelCosts {
        let spec = self.common().block_spec(self.n_layers);
        let (d, v) = (self.d_model as u64, self.vocab_size as u64);
        let positions = match self.position {
            PositionKind::Learned => self.max_seq_len as u64 * d,
            PositionKind::Rope => 0,
        };
        let head = if self.tie_embeddings { 0 } else { d * v };
        let embedding = v * d + positions + head;
        let heads = linear_params(self.d_model, self.d_model, self.bias)
            + norm_params(self.norm, self.d_model)
            + linear_params(self.d_model, self.n_classes, true);
        let non_embedding = self.n_layers as u64 * self_layer_params(&spec)
            + norm_params(self.norm, self.d_model)
            + heads;
        let attention = 12.0 * (self.n_layers as u64 * d * seq_len as u64) as f64;
        ModelCosts {
            params_total: embedding + non_embedding,
            params_embedding: embedding,
            params_non_embedding: non_embedding,
            train_flops_per_token: 6.0 * (non_embedding + d * v) as f64 + attention,
            kv_cache_bytes_per_token: 0,
            cross_kv_bytes_per_source_token: 0,
        }
    }
}

/// Encoder-only transformer; build it with [`EncoderConfig::init`].
#[derive(Module, Debug)]
pub struct Encoder {
    embed_tokens: Embedding,
    embed_positions: Option<Embedding>,
    layers: Vec<SelfAttentionLayer>,
    norm: Norm,
    /// MLM transform (BERT): dense, GELU, norm, then the vocabulary projection.
    mlm_dense: Linear,
    mlm_norm: Norm,
    mlm_head: Option<Linear>,
    classifier: Linear,
    rope: Option<Rope>,
    dropout: Dropout,
    #[module(skip)]
    config: EncoderConfig,
}

impl Encoder {
    /// The config this model was built from.
    pub fn config(&self) -> &EncoderConfig {
        &self.config
    }

    /// Masked-LM logits `[B, T, vocab]` for an unpadded batch `[B, T]`.
    pub fn forward(&self, tokens: Tensor<2, Int>) -> Tensor<3> {
        self.forward_mlm(tokens, &BatchLayout::default())
    }

    /// Masked-LM logits `[B, T, vocab]` with padding/positions/segments.
    pub fn forward_mlm(&self, tokens: Tensor<2, Int>, layout: &BatchLayout) -> Tensor<3> {
        self.mlm_logits(self.hidden(tokens, layout))
    }

    /// Class logits `[B, n_classes]` of each sequence.
    pub fn classify(&self, tokens: Tensor<2, Int>, layout: &BatchLayout) -> Tensor<2> {
        let pooled = self.pool(self.hidden(tokens, layout), layout);
        self.classifier.forward(self.dropout.forward(pooled))
    }

    /// Final-norm hidden states `[B, T, d_model]`; every token sees the whole sequence.
    pub fn hidden(&self, tokens: Tensor<2, Int>, layout: &BatchLayout) -> Tensor<3> {
        let [_, t] = tokens.dims();
        let (positions, mask) = layout.step(t, false, &tokens.device());
        let mut x = self.embed_tokens.forward(tokens);
        if let Some(table) = &self.embed_positions {
            x = x + learned_positions(table, &positions, t);
        }
        let rope = self.rope.as_ref().map(|r| r.tables(&positions, t));
        let mut x = self.dropout.forward(x);
        for layer in &self.layers {
            x = layer.forward(x, rope.as_ref(), &mask, None);
        }
        self.norm.forward(x)
    }

    /// Masked-LM logits of hidden states (apply only at the selected positions to save work).
    pub fn mlm_logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        let h = self.mlm_norm.forward(gelu(self.mlm_dense.forward(hidden)));
        vocab_logits(h, self.mlm_head.as_ref(), &self.embed_tokens)
    }

    /// One vector `[B, d_model]` per sequence, as configured by `pooling`.
    pub fn pool(&self, hidden: Tensor<3>, layout: &BatchLayout) -> Tensor<2> {
        let [b, t, d] = hidden.dims();
        match (self.config.pooling, &layout.padding) {
            (Pooling::First, _) => hidden.narrow(1, 0, 1).reshape([b, d]),
            (Pooling::Mean, None) => hidden.mean_dim(1).reshape([b, d]),
            (Pooling::Mean, Some(padding)) => {
                let keep = padding.clone().bool_not().float().reshape([b, t, 1]);
                let count = keep.clone().sum_dim(1).clamp_min(1.0);
                ((hidden * keep).sum_dim(1) / count).reshape([b, d])
            }
        }
    }

    /// Errors unless `len` tokens fit the position table.
    pub fn check_len(&self, len: usize) -> Result<()> {
        self.config.check_len(len)
    }

    /// Costs of this model's config.
    pub fn costs(&self) -> ModelCosts {
        self.config.costs()
    }
}
