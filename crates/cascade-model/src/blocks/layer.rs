//! Pre-norm residual layers: `x + sublayer(norm(x))` for attention, cross-attention and MLP.

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig};
use burn::prelude::*;

use super::attention::{Attention, LayerKv};
use super::mask::AttnMask;
use super::mlp::Mlp;
use super::norm::Norm;
use super::position::RopeTables;
use crate::config::BlockSpec;

/// Self-attention then MLP: the layer of the decoder-only and encoder-only stacks.
#[derive(Module, Debug)]
pub(crate) struct SelfAttentionLayer {
    attn_norm: Norm,
    attn: Attention,
    mlp_norm: Norm,
    mlp: Mlp,
    dropout: Dropout,
}

impl SelfAttentionLayer {
    pub fn new(spec: &BlockSpec, device: &Device) -> Self {
        Self {
            attn_norm: Norm::new(spec.norm, spec.d_model, spec.norm_eps, device),
            attn: Attention::new(spec, device),
            mlp_norm: Norm::new(spec.norm, spec.d_model, spec.norm_eps, device),
            mlp: Mlp::new(spec, device),
            dropout: DropoutConfig::new(spec.dropout).init(),
        }
    }

    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&RopeTables>,
        mask: &AttnMask,
        cache: Option<&mut LayerKv>,
    ) -> Tensor<3> {
        let attn = self.attn.forward(self.attn_norm.forward(x.clone()), rope, mask, cache);
        let x = x + self.dropout.forward(attn);
        x.clone() + self.mlp.forward(self.mlp_norm.forward(x))
    }
}

/// Causal self-attention, cross-attention over the encoder output, then MLP (T5 decoder layer).
#[derive(Module, Debug)]
pub(crate) struct CrossAttentionLayer {
    self_attn_norm: Norm,
    self_attn: Attention,
    cross_attn_norm: Norm,
    cross_attn: Attention,
    mlp_norm: Norm,
    mlp: Mlp,
    dropout: Dropout,
}

impl CrossAttentionLayer {
    pub fn new(spec: &BlockSpec, device: &Device) -> Self {
        Self {
            self_attn_norm: Norm::new(spec.norm, spec.d_model, spec.norm_eps, device),
            self_attn: Attention::new(spec, device),
            cross_attn_norm: Norm::new(spec.norm, spec.d_model, spec.norm_eps, device),
            cross_attn: Attention::new(spec, device),
            mlp_norm: Norm::new(spec.norm, spec.d_model, spec.norm_eps, device),
            mlp: Mlp::new(spec, device),
            dropout: DropoutConfig::new(spec.dropout).init(),
        }
    }

    /// Keys/values of the encoder output for this layer's cross-attention (computed once per
    /// source, then reused for every target step).
    pub fn cross_keys_values(&self, memory: Tensor<3>) -> LayerKv {
        let (k, v) = self.cross_attn.keys_values(memory, None);
        LayerKv::full(k, v)
    }

    pub fn forward(
        &self,
        x: Tensor<3>,
        rope: Option<&RopeTables>,
        self_mask: &AttnMask,
        memory: &LayerKv,
        cross_mask: &AttnMask,
        cache: Option<&mut LayerKv>,
    ) -> Tensor<3> {
        let attn = self.self_attn.forward(self.self_attn_norm.forward(x.clone()), rope, self_mask, cache);
        let x = x + self.dropout.forward(attn);
        let cross = self.cross_attn.forward_cross(self.cross_attn_norm.forward(x.clone()), memory, cross_mask);
        let x = x + self.dropout.forward(cross);
        x.clone() + self.mlp.forward(self.mlp_norm.forward(x))
    }
}
