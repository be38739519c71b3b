//! The DPO objective and its pieces: sequence log-probabilities summed over completion tokens,
//! the sigmoid loss on the policy-minus-reference log-ratio difference `h` with `beta` and label
//! smoothing (conservative DPO), and the IPO variant `(h - 1/(2 beta))^2`. The tensor versions
//! train; the scalar versions report and test against hand-computed values.

use cascade_model::Decoder;
use cascade_model::burn::prelude::*;
use cascade_model::burn::tensor::activation::{log_sigmoid, log_softmax};
use serde::{Deserialize, Serialize};

use crate::batch::DeviceBatch;

/// Which preference loss.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DpoLossKind {
    /// `-(1-ε) log σ(βh) - ε log σ(-βh)` (Rafailov et al.; ε > 0 is conservative DPO).
    #[default]
    Sigmoid,
    /// `(h - 1/(2β))²` (Azar et al., IPO).
    Ipo,
}

/// The loss settings.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct DpoLoss {
    /// Sigmoid or IPO.
    pub kind: DpoLossKind,
    /// Strength of the KL anchor to the reference (also the reward scale).
    pub beta: f64,
    /// ε: the assumed share of flipped labels (sigmoid only; 0 = plain DPO).
    pub label_smoothing: f64,
}

impl Default for DpoLoss {
    fn default() -> Self {
        Self { kind: DpoLossKind::Sigmoid, beta: 0.1, label_smoothing: 0.0 }
    }
}

fn ln_sigmoid(x: f64) -> f64 {
    // log σ(x) = -log(1 + e^{-x}), computed without overflow on either side.
    x.min(0.0) - (-x.abs()).exp().ln_1p()
}

impl DpoLoss {
    /// The loss of one pair whose log-ratio difference is `h` =
    /// (log π(chosen) − log π_ref(chosen)) − (log π(rejected) − log π_ref(rejected)).
    pub fn pair_loss(&self, h: f64) -> f64 {
        match self.kind {
            DpoLossKind::Sigmoid => {
                let eps = self.label_smoothing;
                -(1.0 - eps) * ln_sigmoid(self.beta * h) - eps * ln_sigmoid(-self.beta * h)
            }
            DpoLossKind::Ipo => (h - 1.0 / (2.0 * self.beta)).powi(2),
        }
    }

    /// Per-pair losses `[n]` from the policy's and the reference's sequence log-probabilities
    /// `[n]` of the chosen and rejected replies.
    pub fn losses(&self, policy_chosen: Tensor<1>, policy_rejected: Tensor<1>, ref_chosen: Tensor<1>, ref_rejected: Tensor<1>) -> Tensor<1> {
        let h = (policy_chosen - ref_chosen) - (policy_rejected - ref_rejected);
        match self.kind {
            DpoLossKind::Sigmoid => {
                let eps = self.label_smoothing;
                let scaled = h.mul_scalar(self.beta as f32);
                let preferred = log_sigmoid(scaled.clone()).mul_scalar(-(1.0 - eps) as f32);
                if eps > 0.0 { preferred - log_sigmoid(scaled.neg()).mul_scalar(eps as f32) } else { preferred }
            }
            DpoLossKind::Ipo => h.sub_scalar((1.0 / (2.0 * self.beta)) as f32).powi_scalar(2),
        }
    }
}

/// Log-probability of each row's weighted targets, summed: `[rows]`. With one sequence per row
/// and the chat template's loss mask as weights this is log π(reply | prompt) over the
/// assistant content and its end-of-turn.
pub fn sequence_logps(model: &Decoder, batch: &DeviceBatch) -> Tensor<1> {
    let logits = model.forward_layout(batch.inputs.clone(), &batch.layout);
    let lp = log_softmax(logits, 2).gather(2, batch.targets.clone().unsqueeze_dim::<3>(2)).squeeze_dim::<2>(2);
    (lp * batch.weights.clone()).sum_dim(1).squeeze_dim::<1>(1)
}

/// Means over pairs of the figures TRL reports, from host values.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct PreferenceStats {
    /// Pairs measured.
    pub pairs: u64,
    /// Mean loss.
    pub loss: f64,
    /// Mean β (log π(chosen) − log π_ref(chosen)).
    #[serde(rename = "rewards/chosen")]
    pub rewards_chosen: f64,
    /// Mean β (log π(rejected) − log π_ref(rejected)).
    #[serde(rename = "rewards/rejected")]
    pub rewards_rejected: f64,
    /// Mean reward margin (chosen − rejected).
    #[serde(rename = "rewards/margins")]
    pub rewards_margins: f64,
    /// Share of pairs whose chosen reward is strictly above the rejected one.
    #[serde(rename = "rewards/accuracies")]
    pub rewards_accuracies: f64,
    /// Mean policy log-probability of the chosen replies.
    #[serde(rename = "logps/chosen")]
    pub logps_chosen: f64,
    /// Mean policy log-probability of the rejected replies.
    #[serde(rename = "logps/rejected")]
    pub logps_rejected: f64,
}

/// Sequence log-probabilities of one pair under a model.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct PairLogps {
    /// log π(chosen | prompt).
    pub chosen: f64,
    /// log π(rejected | prompt).
    pub rejected: f64,
}

impl PreferenceStats {
    /// The figures of `policy` against `reference` (same pairs, same order).
    pub fn measure(loss: &DpoLoss, policy: &[PairLogps], reference: &[PairLogps]) -> Self {
        let mut stats = Self::default();
        for (p, r) in policy.iter().zip(reference) {
            let (chosen, rejected) = (loss.beta * (p.chosen - r.chosen), loss.beta * (p.rejected - r.rejected));
            stats.pairs += 1;
            stats.loss += loss.pair_loss((p.chosen - r.chosen) - (p.rejected - r.rejected));
            stats.rewards_chosen += chosen;
            stats.rewards_rejected += rejected;
            stats.rewards_margins += chosen - rejected;
            stats.rewards_accuracies += f64::from(u8::from(chosen > rejected));
            stats.logps_chosen += p.chosen;
            stats.logps_rejected += p.rejected;
        }
        let n = stats.pairs.max(1) as f64;
        for field in [
            &mut stats.loss,
            &mut stats.rewards_chosen,
            &mut stats.rewards_rejected,
            &mut stats.rewards_margins,
            &mut stats.rewards_accuracies,
            &mut stats.logps_chosen,
            &mut stats.logps_rejected,
        ] {
            *field /= n;
        }
        stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hand_computed_values() {
        let plain = DpoLoss::default();
        assert!((plain.pair_loss(0.0) - std::f64::consts::LN_2).abs() < 1e-12);
        // h = 10, β = 0.1: -log σ(1) = ln(1 + e^-1) = 0.3132616875.
        assert!((plain.pair_loss(10.0) - 0.313_261_687_518_222_8).abs() < 1e-12);
        // ε = 0.2: 0.8 * 0.3132616875 + 0.2 * ln(1 + e^1) (= 1.3132616875) = 0.5132616875.
        let smooth = DpoLoss { label_smoothing: 0.2, ..plain };
        assert!((smooth.pair_loss(10.0) - 0.513_261_687_518_222_8).abs() < 1e-12);
        assert!((smooth.pair_loss(0.0) - std::f64::consts::LN_2).abs() < 1e-12);
        // IPO, β = 0.1: target margin 1/(2β) = 5; h = 3 gives (3 - 5)² = 4, h = 5 gives 0.
        let ipo = DpoLoss { kind: DpoLossKind::Ipo, ..plain };
        assert!((ipo.pair_loss(3.0) - 4.0).abs() < 1e-12);
        assert_eq!(ipo.pair_loss(5.0), 0.0);
        assert!((ln_sigmoid(-800.0) + 800.0).abs() < 1e-9, "no overflow");
    }

    #[test]
    fn tensor_losses_match_the_scalar_ones() {
        let device = Device::flex();
        let t = |v: &[f32]| Tensor::<1>::from_floats(v, &device);
        // h = (pc - rc) - (pr - rr): 0, 10, -4.
        let (pc, pr, rc, rr) = (t(&[-5.0, -2.0, -9.0]), t(&[-7.0, -12.0, -3.0]), t(&[-5.0, -4.0, -8.0]), t(&[-7.0, -4.0, -6.0]));
        for loss in [
            DpoLoss::default(),
            DpoLoss { label_smoothing: 0.2, ..Default::default() },
            DpoLoss { kind: DpoLossKind::Ipo, beta: 0.5, label_smoothing: 0.0 },
        ] {
            let got = loss.losses(pc.clone(), pr.clone(), rc.clone(), rr.clone()).into_data().try_to_vec::<f32>().unwrap();
            for (g, h) in got.iter().zip([0.0, 10.0, -4.0]) {
                assert!((*g as f64 - loss.pair_loss(h)).abs() < 1e-5, "{loss:?} h={h}: {g}");
            }
        }
    }

    #[test]
    fn stats_at_the_reference_are_zero_rewards_and_ln2() {
        let logps = [PairLogps { chosen: -12.0, rejected: -9.0 }, PairLogps { chosen: -3.0, rejected: -30.0 }];
        let stats = PreferenceStats::measure(&DpoLoss::default(), &logps, &logps);
        assert_eq!(stats.pairs, 2);
        assert!((stats.loss - std::f64::consts::LN_2).abs() < 1e-12);
        assert_eq!((stats.rewards_chosen, stats.rewards_rejected, stats.rewards_margins, stats.rewards_accuracies), (0.0, 0.0, 0.0, 0.0));
        assert_eq!((stats.logps_chosen, stats.logps_rejected), (-7.5, -19.5));
        let moved = [PairLogps { chosen: -11.0, rejected: -10.0 }, PairLogps { chosen: -3.0, rejected: -30.0 }];
        let stats = PreferenceStats::measure(&DpoLoss::default(), &moved, &logps);
        assert!((stats.rewards_margins - 0.1).abs() < 1e-12);
        assert_eq!(stats.rewards_accuracies, 0.5);
        let json = serde_json::to_value(stats).unwrap();
        assert!(json.get("rewards/accuracies").is_some(), "{json}");
    }
}
