//! The shared building blocks: norms, MLPs, positions, masks, attention and pre-norm layers.
//!
//! Every family is assembled from these; they are crate-private so that the public surface is
//! the three models, their configs and the cache/layout types.

pub(crate) mod attention;
pub(crate) mod layer;
pub(crate) mod mask;
pub(crate) mod mlp;
pub(crate) mod norm;
pub(crate) mod position;

use burn::module::{Module, ModuleVisitor, Param};
use burn::nn::{Embedding, EmbeddingConfig, Initializer, Linear};
use burn::prelude::*;

/// A linear layer `d_in -> d_out` with N(0, std) weights and zero bias (burn's default would
/// draw the bias from the weight initializer too).
pub(crate) fn linear(d_in: usize, d_out: usize, bias: bool, std: f64, device: &Device) -> Linear {
    let weight = Initializer::Normal { mean: 0.0, std }.init_with(
        [d_in, d_out],
        Some(d_in),
        Some(d_out),
        device,
    );
    let bias = bias.then(|| Initializer::Zeros.init([d_out], device));
    Linear { weight, bias }
}

/// A `[rows, d]` embedding table drawn from N(0, std).
pub(crate) fn embedding(rows: usize, d: usize, std: f64, device: &Device) -> Embedding {
    EmbeddingConfig::new(rows, d).with_initializer(Initializer::Normal { mean: 0.0, std }).init(device)
}

/// Draws every lazily initialized parameter now, in visit order, so that seeding the device
/// right before `init` fixes the weights (burn draws lazy params on first use otherwise).
pub(crate) fn materialize<M: Module>(module: &M) {
    struct Touch;
    impl ModuleVisitor for Touch {
        fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<D>>) {
            let _ = param.val();
        }
    }
    module.visit(&mut Touch);
}

/// Output projection to the vocabulary: the untied head, or the token embedding transposed.
pub(crate) fn vocab_logits(hidden: Tensor<3>, head: Option<&Linear>, embed: &Embedding) -> Tensor<3> {
    match head {
        Some(head) => head.forward(hidden),
        // [B,T,d] x [1,d,V]: the embedding gets gradients from both ends.
        None => hidden.matmul(embed.weight.val().transpose().unsqueeze::<3>()),
    }
}
