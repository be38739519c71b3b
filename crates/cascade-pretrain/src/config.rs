//! The `[pretrain]` section of the cascade's TOML file: batch shape, optimizer, schedule,
//! budgets, evaluation and checkpoint cadence, and the objectives' noise parameters.

use serde::{Deserialize, Serialize};

use crate::error::PretrainError;

/// Pretraining settings. Every key has a default; unknown keys are rejected.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainConfig {
    /// Tokens per training window (the source length for span corruption).
    pub seq_len: usize,
    /// Windows per micro-batch.
    pub batch_size: usize,
    /// Micro-batches whose gradients are summed into one optimizer step.
    pub grad_accum: usize,
    /// Peak learning rate.
    pub lr: f64,
    /// The cosine decay ends at `min_lr_ratio * lr`.
    pub min_lr_ratio: f64,
    /// Steps of linear warmup from 0 to `lr`.
    pub warmup_steps: u64,
    /// Optimizer steps to run (also the length of the cosine schedule).
    pub max_steps: u64,
    /// Stop once this many training tokens were seen (0 = no token budget).
    pub max_tokens: u64,
    /// Stop after this many seconds of wall clock (0 = no time budget).
    pub max_wall_s: f64,
    /// AdamW decoupled weight decay, applied to matrices only (never to norms or biases).
    pub weight_decay: f64,
    /// Whether token and position embeddings get weight decay (matrices do; norms and biases
    /// never). Default true, as nanoGPT; set false to keep embeddings undecayed.
    pub decay_embeddings: bool,
    /// AdamW beta 1.
    pub beta1: f64,
    /// AdamW beta 2.
    pub beta2: f64,
    /// Global gradient-norm clip (0 = no clipping).
    pub grad_clip: f64,
    /// Evaluate every this many steps (0 = only at the end).
    pub eval_every: u64,
    /// Fixed validation windows per evaluation.
    pub eval_windows: usize,
    /// Write a resumable checkpoint every this many steps (0 = only at the end).
    pub checkpoint_every: u64,
    /// Seed of weights, batches and noise.
    pub seed: u64,
    /// Masked LM: probability of selecting a token.
    pub mlm_probability: f64,
    /// Span corruption: fraction of source tokens that are noise.
    pub span_noise_density: f64,
    /// Span corruption: mean noise span length in tokens.
    pub span_mean_length: f64,
}

impl Default for PretrainConfig {
    fn default() -> Self {
        Self {
            seq_len: 256,
            batch_size: 16,
            grad_accum: 1,
            lr: 1e-3,
            min_lr_ratio: 0.1,
            warmup_steps: 100,
            max_steps: 1000,
            max_tokens: 0,
            max_wall_s: 0.0,
            weight_decay: 0.1,
            decay_embeddings: true,
            beta1: 0.9,
            beta2: 0.95,
            grad_clip: 1.0,
            eval_every: 100,
            eval_windows: 32,
            checkpoint_every: 500,
            seed: 1337,
            mlm_probability: 0.15,
            span_noise_density: 0.15,
            span_mean_length: 3.0,
        }
    }
}

fn bad(key: &'static str, message: impl Into<String>) -> PretrainError {
    PretrainError::Config { key, message: message.into() }
}

fn unit_open(key: &'static str, v: f64) -> Result<(), PretrainError> {
    if v > 0.0 && v < 1.0 { Ok(()) } else { Err(bad(key, format!("must be in (0, 1), got {v}"))) }
}

impl PretrainConfig {
    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), PretrainError> {
        for (key, v) in [
            ("seq_len", self.seq_len),
            ("batch_size", self.batch_size),
            ("grad_accum", self.grad_accum),
            ("eval_windows", self.eval_windows),
        ] {
            if v == 0 {
                return Err(bad(key, "must be at least 1"));
            }
        }
        if self.seq_len < 2 {
            return Err(bad("seq_len", "must be at least 2"));
        }
        if self.max_steps == 0 {
            return Err(bad("max_steps", "must be at least 1"));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return Err(bad("lr", format!("must be positive, got {}", self.lr)));
        }
        if !(0.0..=1.0).contains(&self.min_lr_ratio) {
            return Err(bad("min_lr_ratio", format!("must be in [0, 1], got {}", self.min_lr_ratio)));
        }
        if !(self.max_wall_s.is_finite() && self.max_wall_s >= 0.0) {
            return Err(bad("max_wall_s", format!("must be >= 0, got {}", self.max_wall_s)));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return Err(bad("weight_decay", format!("must be >= 0, got {}", self.weight_decay)));
        }
        unit_open("beta1", self.beta1)?;
        unit_open("beta2", self.beta2)?;
        if !(self.grad_clip.is_finite() && self.grad_clip >= 0.0) {
            return Err(bad("grad_clip", format!("must be >= 0, got {}", self.grad_clip)));
        }
        unit_open("mlm_probability", self.mlm_probability)?;
        unit_open("span_noise_density", self.span_noise_density)?;
        if !(self.span_mean_length.is_finite() && self.span_mean_length >= 1.0) {
            return Err(bad("span_mean_length", format!("must be >= 1, got {}", self.span_mean_length)));
        }
        Ok(())
    }

    /// Learning rate at optimizer step `step` (0-based): linear warmup to `lr` over
    /// `warmup_steps`, then cosine decay to `min_lr_ratio * lr` at `max_steps`.
    pub fn lr_at(&self, step: u64) -> f64 {
        if step < self.warmup_steps {
            return self.lr * (step + 1) as f64 / self.warmup_steps as f64;
        }
        let floor = self.lr * self.min_lr_ratio;
        let span = self.max_steps.saturating_sub(self.warmup_steps).max(1) as f64;
        let progress = ((step - self.warmup_steps) as f64 / span).min(1.0);
        floor + 0.5 * (self.lr - floor) * (1.0 + (std::f64::consts::PI * progress).cos())
    }

    /// Tokens consumed by one optimizer step.
    pub fn tokens_per_step(&self) -> u64 {
        (self.seq_len * self.batch_size * self.grad_accum) as u64
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_section_with_defaults_and_unknown_keys() {
        let cfg: PretrainConfig = toml::from_str("seq_len = 64\nlr = 3e-4\n").unwrap();
        assert_eq!(cfg.seq_len, 64);
        assert_eq!(cfg.beta2, 0.95);
        assert_eq!(cfg.mlm_probability, 0.15);
        let err = toml::from_str::<PretrainConfig>("seq_lenn = 3\n").unwrap_err().to_string();
        assert!(err.contains("seq_lenn"), "{err}");
        PretrainConfig::default().validate().unwrap();
    }

    #[test]
    fn validate_names_the_key() {
        let cases: Vec<(PretrainConfig, &str)> = vec![
            (PretrainConfig { batch_size: 0, ..Default::default() }, "batch_size"),
            (PretrainConfig { lr: -1.0, ..Default::default() }, "`lr`"),
            (PretrainConfig { beta2: 1.0, ..Default::default() }, "beta2"),
            (PretrainConfig { min_lr_ratio: 2.0, ..Default::default() }, "min_lr_ratio"),
            (PretrainConfig { span_mean_length: 0.5, ..Default::default() }, "span_mean_length"),
            (PretrainConfig { max_steps: 0, ..Default::default() }, "max_steps"),
        ];
        for (cfg, key) in cases {
            let err = cfg.validate().unwrap_err().to_string();
            assert!(err.contains(key), "{err} should name {key}");
        }
    }

    #[test]
    fn schedule_warmup_then_cosine_to_floor() {
        let cfg = PretrainConfig { lr: 1.0, min_lr_ratio: 0.1, warmup_steps: 10, max_steps: 110, ..Default::default() };
        assert!((cfg.lr_at(0) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(4) - 0.5).abs() < 1e-12);
        assert!((cfg.lr_at(10) - 1.0).abs() < 1e-12);
        assert!((cfg.lr_at(60) - 0.55).abs() < 1e-12, "halfway is the midpoint");
        assert!((cfg.lr_at(110) - 0.1).abs() < 1e-12);
        assert!((cfg.lr_at(1000) - 0.1).abs() < 1e-12, "stays at the floor");
        for s in 10..110 {
            assert!(cfg.lr_at(s + 1) <= cfg.lr_at(s) + 1e-15, "monotone decay");
        }
        let no_warmup = PretrainConfig { warmup_steps: 0, lr: 2.0, ..cfg };
        assert!((no_warmup.lr_at(0) - 2.0).abs() < 1e-12);
    }
}
