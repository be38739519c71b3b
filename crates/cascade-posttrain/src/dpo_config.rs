//! The `[dpo]` section: where the preference pairs come from (`[dpo.pairs]`: the user's JSONL
//! files or pairs built from the SFT conversations), the loss (`beta`, `label_smoothing`,
//! `loss`), the optimizer and budget (`[dpo.train]`, the pretraining loop's settings) and how
//! replies are sampled for the rejected side and for the measured effects.

use std::path::PathBuf;

use cascade_pretrain::PretrainConfig;
use serde::{Deserialize, Serialize};

use crate::dpo_loss::{DpoLoss, DpoLossKind};
use crate::error::PosttrainError;

/// Where a default pair's rejected reply comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectedSource {
    /// The SFT model's own sampled reply to the prompt.
    #[default]
    Sampled,
    /// The real reply of another conversation (seeded draw, different text).
    Mismatched,
}

/// `[dpo.pairs]`: the user's files, or default pairs from the SFT validation conversations.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoPairsConfig {
    /// The user's training pairs (JSONL `{"prompt","chosen","rejected"}`); with `val_file`.
    pub train_file: Option<PathBuf>,
    /// The user's validation pairs; with `train_file`.
    pub val_file: Option<PathBuf>,
    /// Stop at the first malformed record (file:line) instead of skipping and counting.
    pub strict: bool,
    /// Default pairs: `"sampled"` or `"mismatched"` rejected replies.
    pub rejected: RejectedSource,
    /// Default pairs: training pairs to build (a seeded subset of the prompts).
    pub train_pairs: usize,
    /// Default pairs: held-out pairs (disjoint prompts) for validation and the measured effects.
    pub val_pairs: usize,
}

impl Default for DpoPairsConfig {
    fn default() -> Self {
        Self { train_file: None, val_file: None, strict: false, rejected: RejectedSource::Sampled, train_pairs: 512, val_pairs: 64 }
    }
}

impl DpoPairsConfig {
    /// The user's (train, val) files when both are set.
    pub fn user_files(&self) -> Option<(&PathBuf, &PathBuf)> {
        self.train_file.as_ref().zip(self.val_file.as_ref())
    }
}

/// DPO settings. Every key has a default; unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DpoConfig {
    /// `[dpo.pairs]`: where the pairs come from.
    pub pairs: DpoPairsConfig,
    /// `[dpo.train]`: the pretraining loop's settings; `batch_size` is pairs per micro-batch,
    /// `max_tokens` a budget in pairs, `seq_len` the longest prompt + reply kept.
    pub train: PretrainConfig,
    /// `"sigmoid"` (DPO) or `"ipo"`.
    pub loss: DpoLossKind,
    /// KL strength / reward scale.
    pub beta: f64,
    /// Conservative DPO's ε (sigmoid loss only), in [0, 0.5).
    pub label_smoothing: f64,
    /// Longest sampled reply in tokens (rejected replies and the measured effects).
    pub max_reply_tokens: usize,
    /// Sampling temperature of those replies.
    pub temperature: f64,
    /// Held-out prompts replied to by the SFT and DPO models for the win rate, diversity and KL.
    pub eval_prompts: usize,
}

impl Default for DpoConfig {
    fn default() -> Self {
        Self {
            pairs: DpoPairsConfig::default(),
            train: PretrainConfig {
                lr: 5e-5,
                warmup_steps: 10,
                max_steps: 200,
                batch_size: 8,
                eval_every: 25,
                checkpoint_every: 100,
                weight_decay: 0.0,
                ..PretrainConfig::default()
            },
            loss: DpoLossKind::Sigmoid,
            beta: 0.1,
            label_smoothing: 0.0,
            max_reply_tokens: 64,
            temperature: 1.0,
            eval_prompts: 32,
        }
    }
}

impl DpoConfig {
    /// The loss settings.
    pub fn loss(&self) -> DpoLoss {
        DpoLoss { kind: self.loss, beta: self.beta, label_smoothing: self.label_smoothing }
    }

    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), PosttrainError> {
        self.train.validate()?;
        let bad = |key: &'static str, message: String| Err(PosttrainError::Config { key, message });
        if !(self.beta.is_finite() && self.beta > 0.0) {
            return bad("dpo.beta", format!("must be > 0, got {}", self.beta));
        }
        if !(0.0..0.5).contains(&self.label_smoothing) {
            return bad("dpo.label_smoothing", format!("must be in [0, 0.5), got {}", self.label_smoothing));
        }
        if self.max_reply_tokens == 0 {
            return bad("dpo.max_reply_tokens", "must be at least 1".into());
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return bad("dpo.temperature", format!("must be >= 0, got {}", self.temperature));
        }
        if self.pairs.train_file.is_some() != self.pairs.val_file.is_some() {
            return bad("dpo.pairs.train_file", "set both train_file and val_file, or neither".into());
        }
        if self.pairs.user_files().is_none() && (self.pairs.train_pairs == 0 || self.pairs.val_pairs == 0) {
            return bad("dpo.pairs.train_pairs", "train_pairs and val_pairs must be at least 1".into());
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_section_defaults_and_unknown_keys() {
        let config: DpoConfig = toml::from_str("loss = \"ipo\"\nbeta = 0.5\n[pairs]\nrejected = \"mismatched\"\n[train]\nlr = 1e-4\n").unwrap();
        assert_eq!(config.loss, DpoLossKind::Ipo);
        assert_eq!(config.pairs.rejected, RejectedSource::Mismatched);
        assert_eq!(config.train.lr, 1e-4);
        config.validate().unwrap();
        assert_eq!(DpoConfig::default().beta, 0.1);
        let err = toml::from_str::<DpoConfig>("[pairs]\nrejectd = \"sampled\"\n").unwrap_err().to_string();
        assert!(err.contains("rejectd"), "{err}");
        let err = DpoConfig { label_smoothing: 0.5, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("label_smoothing"), "{err}");
        let only_train = DpoPairsConfig { train_file: Some("a.jsonl".into()), ..Default::default() };
        let err = DpoConfig { pairs: only_train, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("train_file"), "{err}");
    }
}
