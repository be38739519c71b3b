//! Measurements the report cannot read from files and that need a model: architecture costs of
//! config variants (GQA), samples from the run's checkpoints and a temperature sweep. The
//! caller (xtask, which depends on cascade-model and cascade-infer) computes them and hands them
//! in; they are also written to `report/measurements.json`.

use serde::{Deserialize, Serialize};

/// Everything measured outside this crate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Extras {
    /// Architecture costs of each family as configured and with other `n_kv_heads`.
    pub cost_variants: Vec<CostVariant>,
    /// Fixed prompts answered by the run's models side by side.
    pub samples: Option<Samples>,
    /// Sampled replies per model: lengths and diversity, for histograms.
    pub reply_stats: Vec<ReplyStats>,
    /// Temperature sweep: likelihood of samples against their diversity.
    pub temperature_sweep: Vec<TemperaturePoint>,
    /// What could not be measured, and why (shown in the report).
    pub notes: Vec<String>,
}

/// One architecture variant's costs (from cascade-model's `ModelCosts`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CostVariant {
    /// `decoder`, `encoder` or `encoder_decoder`.
    pub family: String,
    /// Query heads.
    pub n_heads: usize,
    /// Key/value heads (= `n_heads` without GQA, 1 for MQA).
    pub n_kv_heads: usize,
    /// Whether this is the run's configured architecture.
    pub configured: bool,
    /// Trainable parameters.
    pub params_total: u64,
    /// Training FLOPs per token.
    pub train_flops_per_token: f64,
    /// Self-attention KV-cache bytes per generated token.
    pub kv_cache_bytes_per_token: u64,
    /// Cross-attention KV bytes per source token (encoder-decoder).
    pub cross_kv_bytes_per_source_token: u64,
}

/// Prompts and each model's reply.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Samples {
    /// Column names: the models (`pretrain-decoder`, `sft`, `dpo`...).
    pub models: Vec<String>,
    /// How the replies were sampled (temperature, max tokens, seed).
    pub settings: String,
    /// One row per prompt.
    pub rows: Vec<SampleRow>,
}

/// One prompt and each model's reply, in [`Samples::models`] order.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SampleRow {
    /// The prompt.
    pub prompt: String,
    /// Replies, one per model.
    pub replies: Vec<String>,
}

/// Reply statistics of one model.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ReplyStats {
    /// The model (stage name).
    pub model: String,
    /// Length of each reply in tokens.
    pub lengths_tokens: Vec<f64>,
    /// Distinct 2-grams over 2-grams of each reply.
    pub distinct_2: Vec<f64>,
}

/// One temperature of the sweep.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TemperaturePoint {
    /// The model (stage name).
    pub model: String,
    /// Sampling temperature.
    pub temperature: f64,
    /// Mean log-likelihood per token of the samples under the model at temperature 1 (nats).
    pub mean_log_likelihood: f64,
    /// Distinct 2-grams over all 2-grams of the samples together.
    pub distinct_2: f64,
    /// Samples drawn.
    pub n_samples: usize,
}
