//! Token positions: rotary embeddings (HF `rotate_half` convention) and learned absolute tables.
//!
//! Burn's own `RotaryEncoding` rotates interleaved pairs `(x0,x1),(x2,x3)` and takes one start
//! offset for the whole batch; this one rotates the halves `(x_i, x_{i+d/2})` like HF Llama, so
//! exported weights need no permutation, and accepts a position per row and token, which
//! left-padded batched generation needs.

use burn::module::Module;
use burn::nn::Embedding;
use burn::prelude::*;

/// Where the tokens of a forward pass sit in their sequences.
// Built once per forward pass and passed by reference: boxing the tensor would buy nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone, Debug)]
pub(crate) enum Positions {
    /// Every row holds positions `start, start + 1, ...`.
    Offset(usize),
    /// `[B, T]`: one position per row and token.
    PerRow(Tensor<2, Int>),
}

/// Precomputed `cos`/`sin` tables `[max_len, head_dim]` (constants, not parameters).
#[derive(Module, Debug)]
pub(crate) struct Rope {
    cos: Tensor<2>,
    sin: Tensor<2>,
}

/// The rows of the tables for one forward pass, broadcastable to `[B, H, T, head_dim]`.
#[derive(Clone, Debug)]
pub(crate) struct RopeTables {
    cos: Tensor<4>,
    sin: Tensor<4>,
}

impl Rope {
    pub fn new(max_len: usize, head_dim: usize, theta: f64, device: &Device) -> Self {
        let half = head_dim / 2;
        let mut cos = Vec::with_capacity(max_len * head_dim);
        let mut sin = Vec::with_capacity(max_len * head_dim);
        for pos in 0..max_len {
            // HF: inv_freq_i = theta^(-2i/d), angles repeated for both halves.
            let angles: Vec<f64> = (0..half)
                .map(|i| pos as f64 / theta.powf((2 * i) as f64 / head_dim as f64))
                .collect();
            for _ in 0..2 {
                cos.extend(angles.iter().map(|a| a.cos() as f32));
                sin.extend(angles.iter().map(|a| a.sin() as f32));
            }
        }
        let table = |values: Vec<f32>| {
            Tensor::<1>::from_floats(values.as_slice(), device).reshape([max_len, head_dim])
        };
        Self { cos: table(cos), sin: table(sin) }
    }

    /// Gathers the table rows for `positions` over `t` tokens.
    pub fn tables(&self, positions: &Positions, t: usize) -> RopeTables {
        let [_, head_dim] = self.cos.dims();
        let pick = |table: &Tensor<2>| -> Tensor<4> {
            match positions {
                Positions::Offset(start) => {
                    table.clone().narrow(0, *start, t).reshape([1, 1, t, head_dim])
                }
                Positions::PerRow(pos) => {
                    let [b, t] = pos.dims();
                    table.clone().select(0, pos.clone().reshape([b * t])).reshape([b, 1, t, head_dim])
                }
            }
        };
        RopeTables { cos: pick(&self.cos), sin: pick(&self.sin) }
    }
}

impl RopeTables {
    /// Rotates `x: [B, H, T, head_dim]`: `x * cos + rotate_half(x) * sin`.
    pub fn apply(&self, x: Tensor<4>) -> Tensor<4> {
        let [_, _, _, d] = x.dims();
        let half = d / 2;
        let x1 = x.clone().narrow(3, 0, half);
        let x2 = x.clone().narrow(3, half, half);
        let rotated = Tensor::cat(vec![x2.neg(), x1], 3);
        x * self.cos.clone() + rotated * self.sin.clone()
    }
}

/// Looks up learned absolute position vectors: `[1 or B, T, d]`, to add to the embeddings.
pub(crate) fn learned_positions(table: &Embedding, positions: &Positions, t: usize) -> Tensor<3> {
    match positions {
        Positions::Offset(start) => table.weight.val().narrow(0, *start, t).unsqueeze::<3>(),
        Positions::PerRow(pos) => table.forward(pos.clone()),
    }
}
