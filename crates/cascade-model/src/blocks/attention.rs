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

/// Keys and values of one layer: `[B, n_kv_heads, capacity, head_dim]` buffers whose first
/// `len` time steps are filled.
///
/// New steps are written in place (`slice_assign` on a uniquely owned buffer does not copy on
/// flex), and a full buffer grows by doubling, so decoding `n` tokens copies the cache
/// `O(log n)` times instead of once per token as concatenation would.
#[derive(Clone, Debug, Default)]
pub(crate) struct LayerKv {
    pub k: Option<Tensor<4>>,
    pub v: Option<Tensor<4>>,
    /// Filled time steps.
    pub len: usize,
    /// Capacity to allocate at the first write (or the next growth), at least.
    pub reserve: usize,
}

impl LayerKv {
    /// Keys and values that are already complete (cross-attention over an encoded source).
    pub fn full(k: Tensor<4>, v: Tensor<4>) -> Self {
        let len = k.dims()[2];
        Self { k: Some(k), v: Some(v), len, reserve: 0 }
    }

    /// Allocated time steps.
    pub fn capacity(&self) -> usize {
        self.k.as_ref().map_or(0, |k| k.dims()[2])
    }

    /// Views of the filled part, `[B, n_kv_heads, len, head_dim]` each.
    pub fn filled(&self) -> Option<(Tensor<4>, Tensor<4>)> {
        match (&self.k, &self.v) {
            (Some(k), Some(v)) if self.len > 0 => Some((filled(k, self.len), filled(v, self.len))),
            _ => None,
        }
    }

    /// The capacity the buffers will have once `needed` steps are filled: unchanged while they
    /// fit, else at least doubled (and at least the reserve).
    pub fn capacity_for(&self, needed: usize) -> usize {
        let capacity = self.capacity();
        if needed <= capacity { capacity } else { needed.max(2 * capacity).max(self.reserve) }
    }

    /// Writes new keys/values after the filled part (growing the buffers when full) and
    /// returns the whole buffers, `[B, n_kv_heads, capacity, head_dim]`: the caller's mask
    /// hides the steps not filled yet (see `KvCache::step`). Handing over the buffers rather
    /// than views of the filled prefix spares attention a copy of the prefix (the prefix of a
    /// buffer with spare room is not contiguous) in every layer at every step.
    pub fn append(&mut self, k: Tensor<4>, v: Tensor<4>) -> (Tensor<4>, Tensor<4>) {
        let [b, h, t, dh] = k.dims();
        let past = self.len;
        let needed = past + t;
        let capacity = self.capacity_for(needed);
        let (k_buf, v_buf) = match (self.k.take(), self.v.take()) {
            (Some(k_buf), Some(v_buf)) if capacity == k_buf.dims()[2] => (k_buf, v_buf),
            (old_k, old_v) => (grow(old_k, past, capacity, &k), grow(old_v, past, capacity, &v)),
        };
        let [_, hv, _, dv] = v.dims();
        let k_buf = k_buf.slice_assign([0..b, 0..h, past..needed, 0..dh], k);
        let v_buf = v_buf.slice_assign([0..b, 0..hv, past..needed, 0..dv], v);
        let buffers = (k_buf.clone(), v_buf.clone());
        self.k = Some(k_buf);
        self.v = Some(v_buf);
        self.len = needed;
        buffers
    }
}

fn filled(buffer: &Tensor<4>, len: usize) -> Tensor<4> {
    if buffer.dims()[2] == len { buffer.clone() } else { buffer.clone().narrow(2, 0, len) }
}

/// A buffer of `capacity` steps holding the first `len` steps of `old` (shaped like `like`).
fn grow(old: Option<Tensor<4>>, len: usize, capacity: usize, like: &Tensor<4>) -> Tensor<4> {
    let [b, h, _, dh] = like.dims();
    let fresh = Tensor::<4>::zeros([b, h, capacity, dh], (&like.device(), like.dtype()));
    match old {
        Some(old) if len > 0 => fresh.slice_assign([0..b, 0..h, 0..len, 0..dh], old.narrow(2, 0, len)),
        _ => fresh,
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
        match memory.filled() {
            Some((k, v)) => self.attend(q, k, v, mask),
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

#[cfg(test)]
mod tests {
    use burn::module::Param;
    use burn::tensor::Distribution;
    use burn::tensor::activation::softmax;

    use super::*;
    use crate::blocks::mask::self_attention_mask;
    use crate::config::{CommonFields, MlpKind, PositionKind};

    fn spec(n_kv_heads: usize) -> BlockSpec {
        CommonFields {
            vocab_size: 10,
            d_model: 32,
            n_heads: 4,
            n_kv_heads,
            d_ff: 0,
            position: PositionKind::Rope,
            rope_theta: 10_000.0,
            norm: NormKind::Rms,
            norm_eps: 1e-5,
            mlp: MlpKind::Swiglu,
            qk_norm: false,
            bias: false,
            dropout: 0.0,
            init_std: 0.2,
        }
        .block_spec(1)
    }

    /// Textbook causal multi-head attention written with plain tensor ops.
    fn reference_mha(attn: &Attention, x: Tensor<3>) -> Tensor<3> {
        let [b, t, _] = x.dims();
        let (h, dh) = (attn.n_heads, attn.head_dim);
        let heads = |y: Tensor<3>| y.reshape([b, t, h, dh]).swap_dims(1, 2);
        let q = heads(x.clone().matmul(attn.q_proj.weight.val().unsqueeze()));
        let k = heads(x.clone().matmul(attn.k_proj.weight.val().unsqueeze()));
        let v = heads(x.matmul(attn.v_proj.weight.val().unsqueeze()));
        let scores = q.matmul(k.swap_dims(2, 3)).div_scalar((dh as f32).sqrt());
        let future = Tensor::<2, Bool>::tril_mask([t, t], 0, &scores.device());
        let scores = scores.mask_fill(future.unsqueeze::<4>().expand([b, h, t, t]), f32::NEG_INFINITY);
        let out = softmax(scores, 3).matmul(v).swap_dims(1, 2).reshape([b, t, h * dh]);
        out.matmul(attn.o_proj.weight.val().unsqueeze())
    }

    fn max_diff(a: Tensor<3>, b: Tensor<3>) -> f32 {
        (a - b).abs().max().into_scalar::<f32>()
    }

    #[test]
    fn gqa_with_all_kv_heads_is_plain_multi_head_attention() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            let attn = Attention::new(&spec(4), &device);
            let x = Tensor::<3>::random([2, 5, 32], Distribution::Normal(0.0, 1.0), &device);
            let mask = self_attention_mask(true, 5, 0, None, None, &device);
            let ours = attn.forward(x.clone(), None, &mask, None);
            let diff = max_diff(ours, reference_mha(&attn, x));
            assert!(diff < 1e-5, "GQA(n_kv = n_heads) vs MHA: {diff}");
        }
    }

    #[test]
    fn gqa_equals_mha_with_each_kv_head_repeated_for_its_group() {
        for device in [Device::flex(), Device::flex().autodiff()] {
            let gqa = Attention::new(&spec(2), &device);
            let mut mha = Attention::new(&spec(4), &device);
            let repeat = |w: Tensor<2>| {
                // [d, n_kv·dh] -> [d, n_heads·dh]: query head i reads kv head i / group.
                let r = w.reshape([32, 2, 1, 8]).expand([32, 2, 2, 8]).reshape([32, 32]);
                Tensor::<2>::from_data(r.clone().into_data(), &r.device())
            };
            mha.q_proj = gqa.q_proj.clone();
            mha.o_proj = gqa.o_proj.clone();
            mha.k_proj.weight = Param::from_tensor(repeat(gqa.k_proj.weight.val()));
            mha.v_proj.weight = Param::from_tensor(repeat(gqa.v_proj.weight.val()));
            let x = Tensor::<3>::random([2, 6, 32], Distribution::Normal(0.0, 1.0), &device);
            let pad = Tensor::<2, Bool>::from_bool(
                TensorData::new(vec![true, false, false, false, false, false, false, false, false, false, false, true], [2, 6]),
                &device,
            );
            for mask in [
                self_attention_mask(true, 6, 0, None, None, &device),
                self_attention_mask(false, 6, 0, Some(&pad), None, &device),
            ] {
                let diff = max_diff(gqa.forward(x.clone(), None, &mask, None), mha.forward(x.clone(), None, &mask, None));
                assert!(diff < 1e-5, "GQA vs repeated-KV MHA: {diff}");
            }
        }
    }
}
