//! Encoder-decoder model (T5 style): a bidirectional encoder reads the source once; a causal
//! decoder writes the target, attending to its own past (self-attention, cached) and to the
//! encoder output (cross-attention, whose keys/values are computed once per source).
//!
//! Uses the shared blocks: the encoder stack is the encoder-only model's layer, the decoder
//! stack adds a cross-attention sub-layer. Both stacks share the token embedding (and the
//! output head when tied), as T5 does.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Embedding, Linear};
use burn::prelude::*;
use serde::{Deserialize, Serialize};

use crate::blocks::attention::LayerKv;
use crate::blocks::layer::{CrossAttentionLayer, SelfAttentionLayer};
use crate::blocks::mask::{AttnMask, cross_attention_mask};
use crate::blocks::norm::Norm;
use crate::blocks::position::{Positions, Rope, learned_positions};
use crate::blocks::{embedding, linear, materialize, vocab_logits};
use crate::cache::{BatchLayout, KvCache};
use crate::config::{CommonFields, MlpKind, NormKind, PositionKind, positive};
use crate::costs::{
    ModelCosts, cross_layer_params, kv_bytes_per_token, kv_projection_params, norm_params,
    self_layer_params,
};
use crate::decoder::check_len;
use crate::error::Result;

/// Encoder-decoder model config (TOML table `[model.encoder_decoder]`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct EncoderDecoderConfig {
    /// Vocabulary size, shared by source and target. Default 4096.
    pub vocab_size: usize,
    /// Width of the residual stream. Default 256.
    pub d_model: usize,
    /// Encoder layers. Default 3.
    pub n_encoder_layers: usize,
    /// Decoder layers. Default 3.
    pub n_decoder_layers: usize,
    /// Query heads; must divide `d_model`. Default 8.
    pub n_heads: usize,
    /// Key/value heads; must divide `n_heads` (1 = MQA). 0 means `n_heads` (MHA). Default 0.
    pub n_kv_heads: usize,
    /// MLP hidden width; 0 picks 8/3·d_model rounded up to 32 (SwiGLU) or 4·d_model (GELU).
    pub d_ff: usize,
    /// Longest source sequence. Default 256.
    pub max_source_len: usize,
    /// Longest target sequence. Default 256.
    pub max_target_len: usize,
    /// `"rope"` or `"learned"` (positions count from 0 in each of source and target). Default `"rope"`.
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
    /// Std of weights at init (residual projections get `init_std / sqrt(2·layers)`). Default 0.02.
    pub init_std: f64,
}

impl Default for EncoderDecoderConfig {
    fn default() -> Self {
        Self {
            vocab_size: 4096,
            d_model: 256,
            n_encoder_layers: 3,
            n_decoder_layers: 3,
            n_heads: 8,
            n_kv_heads: 0,
            d_ff: 0,
            max_source_len: 256,
            max_target_len: 256,
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

impl EncoderDecoderConfig {
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
        positive("n_encoder_layers", self.n_encoder_layers)?;
        positive("n_decoder_layers", self.n_decoder_layers)?;
        positive("max_source_len", self.max_source_len)?;
        positive("max_target_len", self.max_target_len)?;
        self.common().validate()
    }

    /// Errors unless a source of `len` tokens fits the position table.
    pub fn check_source_len(&self, len: usize) -> Result<()> {
        check_len("max_source_len", self.max_source_len, len)
    }

    /// Errors unless a target of `len` tokens fits the position table.
    pub fn check_target_len(&self, len: usize) -> Result<()> {
        check_len("max_target_len", self.max_target_len, len)
    }

    /// Builds the model with freshly drawn weights (seed the device first for reproducible
    /// weights).
    pub fn init(&self, device: &Device) -> Result<EncoderDecoder> {
        self.validate()?;
        let common = self.common();
        let enc = common.block_spec(self.n_encoder_layers);
        // The decoder writes three sub-layers per layer into its residual stream.
        let mut dec = common.block_spec(self.n_decoder_layers);
        dec.resid_std = self.init_std / (3.0 * self.n_decoder_layers as f64).sqrt();
        let (d, v) = (self.d_model, self.vocab_size);
        let learned = |len| (self.position == PositionKind::Learned).then(|| embedding(len, d, self.init_std, device));
        let rope_len = self.max_source_len.max(self.max_target_len);
        let model = EncoderDecoder {
            embed_tokens: embedding(v, d, self.init_std, device),
            source_positions: learned(self.max_source_len),
            target_positions: learned(self.max_target_len),
            encoder_layers: (0..self.n_encoder_layers).map(|_| SelfAttentionLayer::new(&enc, device)).collect(),
            encoder_norm: Norm::new(self.norm, d, self.norm_eps, device),
            decoder_layers: (0..self.n_decoder_layers).map(|_| CrossAttentionLayer::new(&dec, device)).collect(),
            decoder_norm: Norm::new(self.norm, d, self.norm_eps, device),
            lm_head: (!self.tie_embeddings).then(|| linear(d, v, false, self.init_std, device)),
            rope: (self.position == PositionKind::Rope)
                .then(|| Rope::new(rope_len, enc.head_dim, self.rope_theta, device)),
            dropout: DropoutConfig::new(self.dropout).init(),
            config: self.clone(),
        };
        materialize(&model);
        Ok(model)
    }

    /// Parameter counts, FLOPs and cache sizes at the maximum source and target lengths.
    ///
    /// FLOPs per token average one training example of `Ts = max_source_len` source and
    /// `Tt = max_target_len` target tokens: `[6·(N_src·Ts + N_tgt·Tt) + 12·d·(Le·Ts² + Ld·Tt² +
    /// Ld·Tt·Ts)] / (Ts + Tt)`, where `N_src` is the encoder plus the decoder's cross-attention
    /// key/value projections (they run on source tokens) and `N_tgt` the rest of the decoder
    /// plus the `d·vocab` output projection.
    pub fn costs(&self) -> ModelCosts {
        self.costs_at(self.max_source_len, self.max_target_len)
    }

    /// [`Self::costs`] for `source_len` source and `target_len` target tokens per example.
    pub fn costs_at(&self, source_len: usize, target_len: usize) -> ModelCosts {
        let common = self.common();
        let spec = common.block_spec(self.n_decoder_layers);
        let (d, v) = (self.d_model as u64, self.vocab_size as u64);
        let (le, ld) = (self.n_encoder_layers as u64, self.n_decoder_layers as u64);
        let positions = match self.position {
            PositionKind::Learned => (self.max_source_len + self.max_target_len) as u64 * d,
            PositionKind::Rope => 0,
        };
        let head = if self.tie_embeddings { 0 } else { d * v };
        let embedding = v * d + positions + head;
        let norm = norm_params(self.norm, self.d_model);
        let encoder = le * self_layer_params(&spec) + norm;
        let decoder = ld * cross_layer_params(&spec) + norm;
        let cross_kv = ld * kv_projection_params(&spec);
        let (ts, tt) = (source_len as f64, target_len as f64);
        let n_src = (encoder + cross_kv) as f64;
        let n_tgt = (decoder - cross_kv + d * v) as f64;
        let attention = 12.0 * d as f64 * (le as f64 * ts * ts + ld as f64 * (tt * tt + tt * ts));
        let per_example = 6.0 * (n_src * ts + n_tgt * tt) + attention;
        ModelCosts {
            params_total: embedding + encoder + decoder,
            params_embedding: embedding,
            params_non_embedding: encoder + decoder,
            train_flops_per_token: per_example / (ts + tt).max(1.0),
            kv_cache_bytes_per_token: kv_bytes_per_token(&spec, self.n_decoder_layers),
            cross_kv_bytes_per_source_token: kv_bytes_per_token(&spec, self.n_decoder_layers),
        }
    }
}

/// The encoded source: final-norm hidden states and the padding they were computed with.
#[derive(Clone, Debug)]
pub struct EncoderOutput {
    /// `[B, Ts, d_model]`.
    pub hidden: Tensor<3>,
    /// `[B, Ts]`, `true` at source padding (hidden from cross-attention).
    pub padding: Option<Tensor<2, Bool>>,
}

/// Decoder state for incremental decoding: the self-attention cache plus each layer's
/// cross-attention keys/values of the encoded source (computed once, in
/// [`EncoderDecoder::new_cache`]).
#[derive(Clone, Debug)]
pub struct Seq2SeqCache {
    /// Self-attention cache of the target tokens so far.
    pub target: KvCache,
    cross: Vec<LayerKv>,
    source_padding: Option<Tensor<2, Bool>>,
}

impl Seq2SeqCache {
    /// Target steps cached so far.
    pub fn len(&self) -> usize {
        self.target.len()
    }

    /// Whether no target step is cached yet.
    pub fn is_empty(&self) -> bool {
        self.target.is_empty()
    }

    /// Keeps only the listed batch rows (self- and cross-attention state alike).
    pub fn select_rows(&mut self, rows: &[usize]) {
        self.target.select_rows(rows);
        let Some(device) = self.cross.iter().find_map(|l| l.k.as_ref().map(|k| k.device())) else {
            return;
        };
        let idx = Tensor::<1, Int>::from_ints(rows.iter().map(|&r| r as i64).collect::<Vec<_>>().as_slice(), &device);
        for layer in &mut self.cross {
            layer.k = layer.k.take().map(|k| k.select(0, idx.clone()));
            layer.v = layer.v.take().map(|v| v.select(0, idx.clone()));
        }
        self.source_padding = self.source_padding.take().map(|p| crate::cache::select_bool_rows(p, idx));
    }

    /// Bytes held by cached keys and values (self- and cross-attention).
    pub fn bytes(&self) -> usize {
        let cross: usize = self
            .cross
            .iter()
            .flat_map(|l| [&l.k, &l.v])
            .flatten()
            .map(|t| t.shape().num_elements() * t.dtype().size())
            .sum();
        cross + self.target.bytes()
    }
}

/// Encoder-decoder transformer; build it with [`EncoderDecoderConfig::init`].
#[derive(Module, Debug)]
pub struct EncoderDecoder {
    embed_tokens: Embedding,
    source_positions: Option<Embedding>,
    target_positions: Option<Embedding>,
    encoder_layers: Vec<SelfAttentionLayer>,
    encoder_norm: Norm,
    decoder_layers: Vec<CrossAttentionLayer>,
    decoder_norm: Norm,
    lm_head: Option<Linear>,
    rope: Option<Rope>,
    dropout: Dropout,
    #[module(skip)]
    config: EncoderDecoderConfig,
}

impl EncoderDecoder {
    /// The config this model was built from.
    pub fn config(&self) -> &EncoderDecoderConfig {
        &self.config
    }

    /// Target logits `[B, Tt, vocab]` for unpadded `source [B, Ts]` and decoder input
    /// `target [B, Tt]` (teacher forcing).
    pub fn forward(&self, source: Tensor<2, Int>, target: Tensor<2, Int>) -> Tensor<3> {
        let memory = self.encode(source, &BatchLayout::default());
        self.decode(target, &BatchLayout::default(), &memory)
    }

    /// Encodes the source bidirectionally.
    pub fn encode(&self, source: Tensor<2, Int>, layout: &BatchLayout) -> EncoderOutput {
        let [_, t] = source.dims();
        let (positions, mask) = layout.step(t, false, &source.device());
        let mut x = self.embed(source, self.source_positions.as_ref(), &positions, t);
        let rope = self.rope.as_ref().map(|r| r.tables(&positions, t));
        for layer in &self.encoder_layers {
            x = layer.forward(x, rope.as_ref(), &mask, None);
        }
        EncoderOutput { hidden: self.encoder_norm.forward(x), padding: layout.padding.clone() }
    }

    /// Target logits for the whole decoder input at once (training, scoring).
    pub fn decode(&self, target: Tensor<2, Int>, layout: &BatchLayout, memory: &EncoderOutput) -> Tensor<3> {
        let [_, t] = target.dims();
        let (positions, mask) = layout.step(t, true, &target.device());
        let cross: Vec<LayerKv> =
            self.decoder_layers.iter().map(|l| l.cross_keys_values(memory.hidden.clone())).collect();
        let cross_mask = cross_attention_mask(t, memory.padding.as_ref());
        self.run_decoder(target, positions, &mask, &cross, &cross_mask, None)
    }

    /// A decoding cache for `memory`: computes every layer's cross-attention keys/values once.
    pub fn new_cache(&self, memory: &EncoderOutput) -> Seq2SeqCache {
        Seq2SeqCache {
            target: KvCache::new(self.decoder_layers.len()),
            cross: self.decoder_layers.iter().map(|l| l.cross_keys_values(memory.hidden.clone())).collect(),
            source_padding: memory.padding.clone(),
        }
    }

    /// Logits for target tokens `[B, T]` continuing from `cache`; equal to the matching rows
    /// of [`Self::decode`] over the whole target.
    pub fn forward_cached(&self, target: Tensor<2, Int>, cache: &mut Seq2SeqCache) -> Tensor<3> {
        self.forward_cached_layout(target, &BatchLayout::default(), cache)
    }

    /// [`Self::forward_cached`] with padding/positions for the new target tokens.
    pub fn forward_cached_layout(
        &self,
        target: Tensor<2, Int>,
        layout: &BatchLayout,
        cache: &mut Seq2SeqCache,
    ) -> Tensor<3> {
        let [b, t] = target.dims();
        let (positions, mask) = cache.target.step(b, t, layout, true, &target.device());
        let cross_mask = cross_attention_mask(t, cache.source_padding.as_ref());
        self.run_decoder(target, positions, &mask, &cache.cross, &cross_mask, Some(&mut cache.target))
    }

    /// Vocabulary logits of decoder hidden states.
    pub fn logits(&self, hidden: Tensor<3>) -> Tensor<3> {
        vocab_logits(hidden, self.lm_head.as_ref(), &self.embed_tokens)
    }

    /// Costs of this model's config.
    pub fn costs(&self) -> ModelCosts {
        self.config.costs()
    }

    fn embed(&self, tokens: Tensor<2, Int>, table: Option<&Embedding>, positions: &Positions, t: usize) -> Tensor<3> {
        let mut x = self.embed_tokens.forward(tokens);
        if let Some(table) = table {
            x = x + learned_positions(table, positions, t);
        }
        self.dropout.forward(x)
    }

    fn run_decoder(
        &self,
        target: Tensor<2, Int>,
        positions: Positions,
        mask: &AttnMask,
        cross: &[LayerKv],
        cross_mask: &AttnMask,
        mut cache: Option<&mut KvCache>,
    ) -> Tensor<3> {
        let [_, t] = target.dims();
        let mut x = self.embed(target, self.target_positions.as_ref(), &positions, t);
        let rope = self.rope.as_ref().map(|r| r.tables(&positions, t));
        for (i, layer) in self.decoder_layers.iter().enumerate() {
            let layer_cache = cache.as_deref_mut().map(|c| &mut c.layers[i]);
            x = layer.forward(x, rope.as_ref(), mask, &cross[i], cross_mask, layer_cache);
        }
        self.logits(self.decoder_norm.forward(x))
    }
}
