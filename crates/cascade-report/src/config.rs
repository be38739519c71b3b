//! `[report]`: what the report stage measures with the run's models (samples, the temperature
//! sweep, GQA variants). Everything it reads from files needs no setting.

use serde::{Deserialize, Serialize};

/// The `[report]` config section.
///
/// ```toml
/// [report]
/// samples = true                     # sample replies from the run's decoders
/// prompts = ["HAMLET: To be, or not to be?"]
/// max_new_tokens = 48
/// temperature = 0.8                  # for the side-by-side samples and reply statistics
/// replies_per_prompt = 4             # reply statistics: samples per prompt and model
/// sweep_temperatures = [0.3, 0.6, 0.9, 1.2, 1.5]
/// seed = 1
/// gqa_kv_heads = []                  # KV-head counts to cost; empty = every divisor of n_heads
/// ```
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// Sample replies from the run's decoders (samples, reply statistics, temperature sweep).
    pub samples: bool,
    /// The fixed prompts, each a user turn (chat models) or a text to continue (pretrained).
    pub prompts: Vec<String>,
    /// Most tokens per reply.
    pub max_new_tokens: usize,
    /// Temperature of the side-by-side samples and reply statistics.
    pub temperature: f64,
    /// Replies per prompt and model for the length and diversity histograms.
    pub replies_per_prompt: usize,
    /// Temperatures of the faithfulness-vs-fluency sweep.
    pub sweep_temperatures: Vec<f64>,
    /// Seed of the first sample (each sample adds its index).
    pub seed: u64,
    /// Key/value head counts to cost each family with; empty means every divisor of `n_heads`.
    pub gqa_kv_heads: Vec<usize>,
}

impl Default for ReportConfig {
    fn default() -> Self {
        Self {
            samples: true,
            prompts: [
                "HAMLET: To be, or not to be, that is the question.",
                "KING LEAR: Who is it that can tell me who I am?",
                "ROMEO: But soft, what light through yonder window breaks?",
                "PORTIA: The quality of mercy is not strained.",
            ]
            .map(String::from)
            .to_vec(),
            max_new_tokens: 48,
            temperature: 0.8,
            replies_per_prompt: 4,
            sweep_temperatures: vec![0.3, 0.6, 0.9, 1.2, 1.5],
            seed: 1,
            gqa_kv_heads: Vec::new(),
        }
    }
}

impl ReportConfig {
    /// Checks the values; errors name the key.
    pub fn validate(&self) -> Result<(), String> {
        if self.samples && self.prompts.is_empty() {
            return Err("report.prompts: give at least one prompt, or set samples = false".into());
        }
        if self.max_new_tokens == 0 {
            return Err("report.max_new_tokens: must be at least 1".into());
        }
        if let Some(t) = std::iter::once(&self.temperature).chain(&self.sweep_temperatures).find(|t| !(t.is_finite() && **t > 0.0)) {
            return Err(format!("report temperatures: {t} is not a positive number"));
        }
        if self.gqa_kv_heads.contains(&0) {
            return Err("report.gqa_kv_heads: 0 heads is not a variant".into());
        }
        Ok(())
    }
}
