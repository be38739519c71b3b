//! Turns token windows into model inputs and a loss for each family: the decoder predicts the
//! next token, the encoder the selected (masked) tokens, the encoder-decoder the corrupted spans.

use cascade_model::burn;
use burn::prelude::*;
use burn::tensor::activation::log_softmax;
use cascade_model::{Decoder, Encoder, EncoderDecoder, Family};

use crate::objectives::{SpecialIds, causal_lm, masked_lm, span_corruption};
use crate::rng::SplitMix64;

/// Which objective a run trains.
#[derive(Clone, Debug, PartialEq)]
pub(crate) enum Objective {
    CausalLm,
    MaskedLm { probability: f64, vocab_size: u32 },
    SpanCorruption { noise_density: f64, mean_span_length: f64 },
}

impl Objective {
    /// Window length to draw for a configured `seq_len`: the decoder needs one more id for
    /// its shifted targets.
    pub(crate) fn window_len(&self, seq_len: usize) -> usize {
        match self {
            Self::CausalLm => seq_len + 1,
            _ => seq_len,
        }
    }
}

/// A batch on the host: row-major `[rows, width]` ids.
#[derive(Clone, Debug)]
pub(crate) struct HostBatch {
    rows: usize,
    inputs: Vec<i64>,
    input_width: usize,
    decoder_inputs: Option<Vec<i64>>,
    targets: Vec<i64>,
    target_width: usize,
    /// 1.0 where the loss is taken; `None` = everywhere.
    weights: Option<Vec<f32>>,
}

impl HostBatch {
    /// Target positions that count in the loss.
    pub(crate) fn n_predicted(&self) -> usize {
        match &self.weights {
            Some(w) => w.iter().filter(|&&x| x > 0.0).count(),
            None => self.targets.len(),
        }
    }
}

/// Applies `objective` to each window. `None` only when span corruption lacks sentinels.
pub(crate) fn make_batch(
    windows: &[Vec<u32>],
    objective: &Objective,
    special: &SpecialIds,
    rng: &mut SplitMix64,
) -> Option<HostBatch> {
    let rows = windows.len();
    let ids = |v: &[u32]| v.iter().map(|&x| x as i64).collect::<Vec<_>>();
    let mut inputs = Vec::new();
    let mut targets = Vec::new();
    let (mut input_width, mut target_width) = (0, 0);
    let mut decoder_inputs = None;
    let mut weights = None;
    match objective {
        Objective::CausalLm => {
            for w in windows {
                let (x, y) = causal_lm(w);
                (input_width, target_width) = (x.len(), y.len());
                inputs.extend(ids(&x));
                targets.extend(ids(&y));
            }
        }
        Objective::MaskedLm { probability, vocab_size } => {
            let mut mask = Vec::new();
            for w in windows {
                let ex = masked_lm(w, *probability, *vocab_size, special, rng);
                (input_width, target_width) = (w.len(), w.len());
                inputs.extend(ids(&ex.inputs));
                targets.extend(ids(&ex.targets));
                mask.extend(ex.selected.iter().map(|&s| if s { 1.0f32 } else { 0.0 }));
            }
            weights = Some(mask);
        }
        Objective::SpanCorruption { noise_density, mean_span_length } => {
            let mut dec = Vec::new();
            for w in windows {
                let ex = span_corruption(w, *noise_density, *mean_span_length, special, rng)?;
                (input_width, target_width) = (ex.inputs.len(), ex.targets.len());
                inputs.extend(ids(&ex.inputs));
                // Teacher forcing: the decoder sees pad (T5's start token) then the target shifted right.
                dec.push(special.pad as i64);
                dec.extend(ids(&ex.targets[..ex.targets.len() - 1]));
                targets.extend(ids(&ex.targets));
            }
            decoder_inputs = Some(dec);
        }
    }
    Some(HostBatch { rows, inputs, input_width, decoder_inputs, targets, target_width, weights })
}

/// A batch as tensors on a device.
#[derive(Debug)]
pub(crate) struct DeviceBatch {
    pub(crate) inputs: Tensor<2, Int>,
    pub(crate) decoder_inputs: Option<Tensor<2, Int>>,
    pub(crate) targets: Tensor<2, Int>,
    pub(crate) weights: Option<Tensor<2>>,
}

impl DeviceBatch {
    pub(crate) fn new(batch: &HostBatch, device: &Device) -> Self {
        let ints = |v: &[i64], width: usize| Tensor::<1, Int>::from_ints(v, device).reshape([batch.rows, width]);
        Self {
            inputs: ints(&batch.inputs, batch.input_width),
            decoder_inputs: batch.decoder_inputs.as_ref().map(|d| ints(d, batch.target_width)),
            targets: ints(&batch.targets, batch.target_width),
            weights: batch.weights.as_ref().map(|w| {
                Tensor::<1>::from_data(TensorData::new(w.clone(), [w.len()]), device).reshape([batch.rows, batch.target_width])
            }),
        }
    }
}

/// A model family that can be pretrained: logits `[B, T, vocab]` aligned with the targets.
pub(crate) trait Pretrainable: Family + Clone + Send {
    fn batch_logits(&self, batch: &DeviceBatch) -> Tensor<3>;
}

impl Pretrainable for Decoder {
    fn batch_logits(&self, batch: &DeviceBatch) -> Tensor<3> {
        self.forward(batch.inputs.clone())
    }
}

impl Pretrainable for Encoder {
    fn batch_logits(&self, batch: &DeviceBatch) -> Tensor<3> {
        self.forward(batch.inputs.clone())
    }
}

impl Pretrainable for EncoderDecoder {
    fn batch_logits(&self, batch: &DeviceBatch) -> Tensor<3> {
        let target = batch.decoder_inputs.clone().unwrap_or_else(|| batch.targets.clone());
        self.forward(batch.inputs.clone(), target)
    }
}

/// Sum of negative log-likelihoods over the predicted positions, and their count.
pub(crate) fn nll_sum(logits: Tensor<3>, batch: &DeviceBatch) -> (Tensor<1>, Option<Tensor<2>>) {
    let lp = log_softmax(logits, 2).gather(2, batch.targets.clone().unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
    match &batch.weights {
        Some(w) => ((lp * w.clone()).sum().neg(), Some(w.clone())),
        None => (lp.sum().neg(), None),
    }
}

/// Mean NLL over predicted positions (the training loss).
pub(crate) fn mean_loss(logits: Tensor<3>, batch: &DeviceBatch, n_predicted: usize) -> Tensor<1> {
    nll_sum(logits, batch).0.div_scalar(n_predicted.max(1) as f32)
}

/// Host-side evaluation of one batch: (NLL sum, correct argmax predictions, predicted count).
pub(crate) fn eval_batch<M: Pretrainable>(model: &M, batch: &HostBatch, device: &Device) -> (f64, f64, f64) {
    let db = DeviceBatch::new(batch, device);
    let logits = model.batch_logits(&db);
    let predicted = logits.clone().argmax(2).squeeze_dim::<2>(2);
    let hits = predicted.equal(db.targets.clone()).float();
    let (nll, w) = nll_sum(logits, &db);
    let correct = match w {
        Some(w) => (hits * w).sum(),
        None => hits.sum(),
    };
    (nll.into_scalar::<f32>() as f64, correct.into_scalar::<f32>() as f64, batch.n_predicted() as f64)
}
