//! AdamW with weight decay on matrices only, and nanoGPT-style global-norm gradient clipping
//! (one L2 norm over every parameter's gradient, not burn's per-tensor clipping).

use cascade_model::burn;
use burn::module::{Module, ModuleVisitor, Param, ParamGroup, ParamId};
use burn::optim::{AdamWConfig, GradientsParams, ModuleOptimizer};
use burn::prelude::*;

use crate::config::PretrainConfig;
use crate::error::PretrainError;

/// Ids of the parameters that are not matrices (norm gains, biases): they get no decay.
fn vector_param_ids<M: Module>(model: &M) -> Vec<ParamId> {
    struct V(Vec<ParamId>);
    impl ModuleVisitor for V {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if D < 2 {
                self.0.push(p.id);
            }
        }
    }
    let mut v = V(Vec::new());
    model.visit(&mut v);
    v.0
}

/// Parameter paths of token and position embedding tables in cascade-model's families.
const EMBEDDING_PATHS: &str = r"(^|\.)(embed_tokens|embed_positions|source_positions|target_positions)\.weight$";

/// AdamW (betas and decay from `config`, eps 1e-8) whose weight decay applies to tensors of
/// rank 2 and above only; norms and biases are in a no-decay group, and so are the embedding
/// tables when `decay_embeddings` is false.
pub fn build_optimizer<M: Module>(model: &M, config: &PretrainConfig) -> Result<ModuleOptimizer, PretrainError> {
    let base = AdamWConfig::new().with_beta_1(config.beta1 as f32).with_beta_2(config.beta2 as f32).with_epsilon(1e-8);
    let mut optimizer = ModuleOptimizer::from(base.clone().with_weight_decay(config.weight_decay as f32).build())
        .with_group(ParamGroup::from_ids(vector_param_ids(model)), base.clone().with_weight_decay(0.0).build(), None);
    if !config.decay_embeddings {
        let group = ParamGroup::from_regex(EMBEDDING_PATHS)
            .map_err(|e| PretrainError::Config { key: "decay_embeddings", message: format!("{e:?}") })?;
        optimizer = optimizer.with_group(group, base.with_weight_decay(0.0).build(), None);
    }
    Ok(optimizer)
}

/// The L2 norm of all gradients together (one host sync).
pub fn global_grad_norm<M: Module>(model: &M, grads: &GradientsParams) -> f32 {
    struct V<'a> {
        grads: &'a GradientsParams,
        acc: Option<Tensor<1>>,
    }
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.get::<D>(p.id) {
                let s = g.square().sum();
                self.acc = Some(match self.acc.take() {
                    Some(a) => a + s,
                    None => s,
                });
            }
        }
    }
    let mut v = V { grads, acc: None };
    model.visit(&mut v);
    v.acc.map(|a| a.sqrt().into_scalar::<f32>()).unwrap_or(0.0)
}

/// Multiplies every gradient by `scale`.
pub fn scale_grads<M: Module>(model: &M, grads: &mut GradientsParams, scale: f32) {
    struct V<'a> {
        grads: &'a mut GradientsParams,
        scale: f32,
    }
    impl ModuleVisitor for V<'_> {
        fn visit_float<const D: usize>(&mut self, p: &Param<Tensor<D>>) {
            if let Some(g) = self.grads.remove::<D>(p.id) {
                self.grads.register::<D>(p.id, g.mul_scalar(self.scale));
            }
        }
    }
    model.visit(&mut V { grads, scale });
}

/// Clips the gradients to global norm `max_norm` (no-op when `max_norm` is 0 or the norm is
/// below it); returns the norm before clipping.
pub fn clip_global_norm<M: Module>(model: &M, grads: &mut GradientsParams, max_norm: f32) -> f32 {
    let norm = global_grad_norm(model, grads);
    if max_norm > 0.0 && norm.is_finite() && norm > max_norm {
        scale_grads(model, grads, max_norm / norm);
    }
    norm
}

#[cfg(test)]
mod tests {
    use super::*;
    use burn::nn::{Linear, LinearConfig};

    #[test]
    fn global_norm_clipping_scales_all_grads_together() {
        let device = Device::flex().autodiff();
        let lin: Linear = LinearConfig::new(3, 2).init(&device);
        let x = Tensor::<2>::from_data(TensorData::new(vec![1.0f32, -2.0, 3.0, 0.5, 4.0, -1.0], [2, 3]), &device);
        let loss = lin.forward(x).powf_scalar(2.0).sum().mul_scalar(10.0);
        let mut grads = GradientsParams::from_grads(loss.backward(), &lin);
        // Host norm over weight and bias together.
        let w = grads.get::<2>(lin.weight.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let b = grads.get::<1>(lin.bias.as_ref().unwrap().id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        let host: f32 = w.iter().chain(b.iter()).map(|g| g * g).sum::<f32>().sqrt();
        let norm = clip_global_norm(&lin, &mut grads, 1.0);
        assert!((norm - host).abs() / host < 1e-5, "{norm} vs {host}");
        assert!(host > 1.0);
        let after = global_grad_norm(&lin, &grads);
        assert!((after - 1.0).abs() < 1e-5, "clipped to {after}");
        // Direction is kept: each grad is scaled by the same factor.
        let w2 = grads.get::<2>(lin.weight.id).unwrap().into_data().try_to_vec::<f32>().unwrap();
        assert!((w2[0] / w[0] - 1.0 / host).abs() < 1e-5);
        // Below the threshold nothing changes.
        assert!((clip_global_norm(&lin, &mut grads, 5.0) - 1.0).abs() < 1e-5);
        assert!((global_grad_norm(&lin, &grads) - 1.0).abs() < 1e-5);
    }

    #[derive(Module, Debug)]
    struct Tiny {
        embed_tokens: burn::nn::Embedding,
        proj: Linear,
    }

    fn decay_only_step(decay_embeddings: bool) -> (bool, bool, bool) {
        let device = Device::flex().autodiff();
        let model = Tiny {
            embed_tokens: burn::nn::EmbeddingConfig::new(5, 3).init(&device),
            proj: LinearConfig::new(3, 2).init(&device),
        };
        let cfg = PretrainConfig { weight_decay: 0.5, decay_embeddings, ..Default::default() };
        let mut optimizer = build_optimizer(&model, &cfg).unwrap();
        // Zero gradients: Adam's update is 0, so any change is weight decay alone.
        let ids = Tensor::<1, Int>::from_ints([0, 1, 2].as_slice(), &device).reshape([1, 3]);
        let loss = model.proj.forward(model.embed_tokens.forward(ids)).sum().mul_scalar(0.0);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        let before = |m: &Tiny| {
            (
                m.embed_tokens.weight.val().into_data().try_to_vec::<f32>().unwrap(),
                m.proj.weight.val().into_data().try_to_vec::<f32>().unwrap(),
                m.proj.bias.as_ref().unwrap().val().into_data().try_to_vec::<f32>().unwrap(),
            )
        };
        let (e0, w0, b0) = before(&model);
        let model = optimizer.step(0.1, model, grads);
        let (e1, w1, b1) = before(&model);
        (e0 != e1, w0 != w1, b0 != b1)
    }

    #[test]
    fn weight_decay_groups() {
        assert_eq!(decay_only_step(true), (true, true, false), "matrices and embeddings decay, biases not");
        assert_eq!(decay_only_step(false), (false, true, false), "embeddings excluded when configured");
    }

    #[test]
    fn no_weight_decay_on_vectors() {
        let device = Device::flex().autodiff();
        let lin: Linear = LinearConfig::new(3, 2).init(&device);
        let ids = vector_param_ids(&lin);
        assert_eq!(ids, vec![lin.bias.as_ref().unwrap().id]);
    }
}
