//! The `[sft]` section: where the conversations come from (`[sft.data]`), how they become
//! batches, the optimizer, schedule and budget (`[sft.train]`, the pretraining loop's own
//! settings), and how the reply format is measured.

use cascade_pretrain::PretrainConfig;
use serde::{Deserialize, Serialize};

use crate::batch::Truncation;
use crate::data_source::DataSourceConfig;
use crate::error::PosttrainError;

/// Supervised fine-tuning settings. Every key has a default; unknown keys are rejected.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SftConfig {
    /// `[sft.data]`: the user's JSONL files or the corpus dialogue.
    pub data: DataSourceConfig,
    /// `[sft.train]`: the pretraining loop's settings, reused. `seq_len` is the positions per
    /// row, `batch_size` the rows per micro-batch, `max_tokens` counts real (unpadded)
    /// positions; the objective keys (`mlm_probability`, spans) and `eval_windows` are unused
    /// (the bits-per-byte check uses `[pretrain.decoder]`'s windows, to compare with the
    /// pretraining figure). Keys left out of a written `[sft.train]` take the pretraining
    /// defaults.
    pub train: PretrainConfig,
    /// Pack several conversations into each row (attention never crosses between them);
    /// false puts one conversation per row with right padding.
    pub pack: bool,
    /// Conversations longer than `train.seq_len` positions: `"drop"` or `"drop_leading_turns"`.
    pub truncation: Truncation,
    /// Validation conversations for the reply loss (0 = all of them).
    pub eval_conversations: usize,
    /// Validation prompts to sample a reply for when measuring the reply format.
    pub sample_prompts: usize,
    /// Longest sampled reply in tokens: a reply "ends its turn" when it emits
    /// `<|end_of_turn|>` within this many tokens.
    pub max_reply_tokens: usize,
    /// Sampling temperature for the format check (0 = greedy).
    pub temperature: f64,
}

impl Default for SftConfig {
    fn default() -> Self {
        Self {
            data: DataSourceConfig::default(),
            train: PretrainConfig {
                lr: 3e-4,
                warmup_steps: 20,
                max_steps: 300,
                eval_every: 50,
                checkpoint_every: 100,
                ..PretrainConfig::default()
            },
            pack: true,
            truncation: Truncation::Drop,
            eval_conversations: 256,
            sample_prompts: 32,
            max_reply_tokens: 96,
            temperature: 0.0,
        }
    }
}

impl SftConfig {
    /// Checks every key; the error names the first one at fault.
    pub fn validate(&self) -> Result<(), PosttrainError> {
        self.data.validate()?;
        self.train.validate()?;
        if self.max_reply_tokens == 0 {
            return Err(PosttrainError::Config { key: "max_reply_tokens", message: "must be at least 1".into() });
        }
        if !(self.temperature.is_finite() && self.temperature >= 0.0) {
            return Err(PosttrainError::Config { key: "temperature", message: format!("must be >= 0, got {}", self.temperature) });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn toml_section_defaults_and_unknown_keys() {
        assert!(SftConfig::default().pack);
        let err = toml::from_str::<SftConfig>("[sft_typo]\n").unwrap_err().to_string();
        assert!(err.contains("sft_typo"), "{err}");
        let config: SftConfig = toml::from_str("pack = false\ntruncation = \"drop_leading_turns\"\n[train]\nlr = 1e-4\n[data]\nmax_reply_chars = 99\n").unwrap();
        assert!(!config.pack);
        assert_eq!(config.truncation, Truncation::DropLeadingTurns);
        assert_eq!(config.train.lr, 1e-4);
        assert_eq!(config.data.max_reply_chars, 99);
        config.validate().unwrap();
        let err = toml::from_str::<SftConfig>("[data]\nmax_reply_charz = 3\n").unwrap_err().to_string();
        assert!(err.contains("max_reply_charz"), "{err}");
        let err = SftConfig { temperature: -1.0, ..Default::default() }.validate().unwrap_err().to_string();
        assert!(err.contains("temperature"), "{err}");
    }
}
