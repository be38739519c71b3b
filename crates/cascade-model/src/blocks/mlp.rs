//! The feed-forward block: SwiGLU (gate, up, down) or GELU (up, down).

use burn::module::Module;
use burn::nn::{Dropout, DropoutConfig, Linear};
use burn::prelude::*;
use burn::tensor::activation::{gelu, silu};

use super::linear;
use crate::config::{BlockSpec, MlpKind};

/// Position-wise MLP; `gate_proj` exists only for SwiGLU.
#[derive(Module, Debug)]
pub(crate) struct Mlp {
    gate_proj: Option<Linear>,
    up_proj: Linear,
    down_proj: Linear,
    dropout: Dropout,
}

impl Mlp {
    pub fn new(spec: &BlockSpec, device: &Device) -> Self {
        let (d, f) = (spec.d_model, spec.d_ff);
        Self {
            gate_proj: (spec.mlp == MlpKind::Swiglu)
                .then(|| linear(d, f, spec.bias, spec.init_std, device)),
            up_proj: linear(d, f, spec.bias, spec.init_std, device),
            down_proj: linear(f, d, spec.bias, spec.resid_std, device),
            dropout: DropoutConfig::new(spec.dropout).init(),
        }
    }

    pub fn forward(&self, x: Tensor<3>) -> Tensor<3> {
        let hidden = match &self.gate_proj {
            Some(gate) => silu(gate.forward(x.clone())) * self.up_proj.forward(x),
            None => gelu(self.up_proj.forward(x)),
        };
        self.dropout.forward(self.down_proj.forward(hidden))
    }
}
