//! Multi-head attention with grouped-query heads, optional QK-norm, rotary positions and a KV
//! cache; the same module serves self-attention and cross-attention.

use burn::module::Module;
use burn::nn::Linear;
use burn::prelude::*;
use burn::tensor::module::attention;
use burn::tensor::ops::AttentionModuleOptions;

use super::mask::AttnMask;
use super::norm::Norm;
use super::position::RopeTables;
use super::linear;
use crate::config::{BlockSpec, NormKind};

/// Keys and values of one layer, `[B, n_kv_heads, T, head_dim]` each.
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerKv {
    pub k: Option<Tensor<4>>,
    pub v: Option<Tensor<4>>,
}

impl LayerKv {
    /// Appends new keys/values along the time axis.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let k = match self.k.take() {
            Some(past) => Tensor::cat(vec![past, k], 2),
            None => k,
        };
        let v = match self.v.take() {
            Some(past) => Tensor::cat(vec![past, v], 2),
            None => v,
        };
        self.k = Some(k.clone());
        self.v = Some(v.clone());
        (k, v)
    }
}

/// `n_heads` query heads sharing `n_kv_heads` key/value heads (MQA at 1, MHA at `n_heads`).
#[derive(Module, Debug)]
pub(crate) struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    o_proj: Linear,
    /// RMSNorm over each head's queries and keys before rotation (Qwen3/OLMo-2 style).
    q_norm: Option<Norm>,
    k_norm: Option<Norm>,
    n_heads: usize,
    n_kv_heads: usize,
    head_dim: usize,
}

impl Attention {
    pub fn new(spec: &BlockSpec, device: &Device) -> Self {
        let (d, dh) = (spec.d_model, spec.head_dim);
        let qk_norm = || spec.qk_norm.then(|| Norm::new(NormKind::Rms, dh, spec.norm_eps, device));
        Self {
            q_proj: linear(d, spec.n_heads * dh, spec.bias, spec.init_std, device),
            k_proj: linear(d, spec.n_kv_heads * dh, spec.bias, spec.init_std, device),
            v_proj: linear(d, spec.n_kv_heads * dh, spec.bias, spec.init_std, device),
            o_proj: linear(spec.n_heads * dh, d, spec.bias, spec.resid_std, device),
            q_norm: qk_norm(),
            k_norm: qk_norm(),
            n_heads: spec.n_heads,
            n_kv_heads: spec.n_kv_heads,
            head_dim: dh,
        }
    }

    /// `[B, T, n·head_dim]` -> `[B, n, T, head_dim]`.
    fn split_heads(&self, x: Tensor<3>, n: usize) -> Tensor<4> {
        let [b, t, _] = x.dims();
        x.reshape([b, t, n, self.head_dim]).swap_dims(1, 2)
    }

    fn queries(&self, x: Tensor<3>, rope: Option<&RopeTables>) -> Tensor<4> {
        let mut q = self.split_heads(self.q_proj.forward(x), self.n_heads);
        if let Some(norm) = &self.q_norm {
            q = norm.forward(q);
        }
        match rope {
            Some(rope) => rope.apply(q),
            None => q,
        }
    }

    /// Keys and values of `x`: `[B, n_kv_heads, T, head_dim]`.
    pub fn keys_values(&self, x: Tensor<3>, rope: Option<&RopeTables>) -> (Tensor<4>, Tensor<4>) {
        let mut k = self.split_heads(self.k_proj.forward(x.clone()), self.n_kv_heads);
        if let Some(norm) = &self.k_norm {
            k = norm.forward(k);
        }
        if let Some(rope) = rope {
            k = rope.apply(k);
        }
        (k, self.split_heads(self.v_proj.forward(x), self.n_kv_heads))
    }

    /// Self-attention of `x` over itself, continuing from `cache` when given.
    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&RopeTables>,
        mask: &AttnMask,
        cache: Option<&mut LayerKv>,
    ) -> Tensor<3> {
        let q = self.queries(x.clone(), rope);
        let (k, v) = self.keys_values(x, rope);
        let (k, v) = match cache {
            Some(cache) => cache.append(k, v),
            None => (k, v),
        };
        self.attend(q, k, v, mask)
    }

    /// Attention of `x` over precomputed keys/values (cross-attention over the encoder output).
    pub fn forward_cross(&self, x: Tensor<3>, memory: &LayerKv, mask: &AttnMask) -> Tensor<3> {
        let q = self.queries(x, None);
        match (&memory.k, &memory.v) {
            (Some(k), Some(v)) => self.attend(q, k.clone(), v.clone(), mask),
            // An empty memory cannot be attended to; a zero update is what a fully masked
            // attention row gives too.
            _ => {
                let [b, _, t, _] = q.dims();
                Tensor::zeros([b, t, self.n_heads * self.head_dim], &q.device())
            }
        }
    }

    fn attend(&self, q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, mask: &AttnMask) -> Tensor<3> {
        let [b, h, tq, dh] = q.dims();
        let tk = k.dims()[2];
        // burn-flex's inference kernel shares K/V heads and broadcasts the mask itself; the
        // decomposed fallback (autodiff, other backends) needs them expanded to full shape.
        let device = q.device();
        let native = !device.is_autodiff() && device == Device::flex();
        let (k, v) = if native || self.n_kv_heads == h {
            (k, v)
        } else {
            (self.repeat_kv(k), self.repeat_kv(v))
        };
        let explicit = mask
            .explicit
            .clone()
            .map(|m| if native { m } else { m.expand([b, h, tq, tk]) });
        let options = AttentionModuleOptions {
            is_causal: mask.causal && explicit.is_none(),
            ..Default::default()
        };
        let out = attention(q, k, v, explicit, None, options);
        self.o_proj.forward(out.swap_dims(1, 2).reshape([b, tq, h * dh]))
    }

    /// `[B, n_kv, T, dh]` -> `[B, n_heads, T, dh]`; query head `i` reads kv head `i / group`.
    fn repeat_kv(&self, x: Tensor<4>) -> Tensor<4> {
        let [b, n_kv, t, dh] = x.dims();
        let group = self.n_heads / n_kv;
        x.unsqueeze_dim::<5>(2).expand([b, n_kv, group, t, dh]).reshape([b, self.n_heads, t, dh])
    }
}
