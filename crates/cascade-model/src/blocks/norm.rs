//! RMSNorm and LayerNorm behind one module, with HF-style parameter names (`weight`, `bias`).

use burn::module::{Module, Param};
use burn::nn::Initializer;
use burn::prelude::*;

use crate::config::NormKind;

/// Normalizes over the last dimension; RMSNorm when `bias` is absent, LayerNorm otherwise.
#[derive(Module, Debug)]
pub(crate) struct Norm {
    weight: Param<Tensor<1>>,
    bias: Option<Param<Tensor<1>>>,
    eps: f64,
}

impl Norm {
    pub fn new(kind: NormKind, d: usize, eps: f64, device: &Device) -> Self {
        Self {
            weight: Initializer::Ones.init([d], device),
            bias: (kind == NormKind::Layer).then(|| Initializer::Zeros.init([d], device)),
            eps,
        }
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let normed = match &self.bias {
            None => {
                let mean_sq = x.clone().square().mean_dim(D - 1);
                x * mean_sq.add_scalar(self.eps).sqrt().recip()
            }
            Some(_) => {
                let (var, mean) = x.clone().var_mean_bias(D - 1);
                (x - mean) * var.add_scalar(self.eps).sqrt().recip()
            }
        };
        let scaled = normed * self.weight.val().unsqueeze::<D>();
        match &self.bias {
            Some(bias) => scaled + bias.val().unsqueeze::<D>(),
            None => scaled,
        }
    }
}
