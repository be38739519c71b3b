//! The `report` stage, the cascade's last: measures what needs the run's models (architecture
//! costs of GQA variants, samples) and hands them with the run directory to `cascade-report`,
//! which writes `report/report.md`, `report/report.html` and `report/plots/*.svg`.

use std::path::Path;

use anyhow::{Context, Result};
use cascade_core::hash::{config_hash, sha256_file};
use cascade_core::{InputRecord, StageManifest};
use cascade_model::ModelConfig;
use cascade_report::{CostVariant, Extras};
use serde_json::Value;

use crate::config::{CascadeConfig, ModelSection};
use crate::runner::Ctx;
use crate::stages::Stage;

/// The report stage's name.
pub const STAGE: &str = cascade_report::REPORT_STAGE;

/// The report stage.
pub struct Report;

impl Stage for Report {
    fn name(&self) -> &'static str {
        STAGE
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        // The model sections decide the GQA variants the report costs.
        let config = &ctx.request.config;
        config_hash(&serde_json::json!({ "report": config.report, "model": config.model }))
    }

    /// Every finished stage's manifest: any stage that reruns, or appears, reruns the report.
    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        upstream_manifests(ctx.request.layout.root())
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let mut extras = Extras { cost_variants: cost_variants(&ctx.request.config), ..Extras::default() };
        crate::report_samples::measure(ctx, &mut extras);
        let stage_order: Vec<&str> = crate::stages::STAGE_NAMES.iter().copied().filter(|s| *s != STAGE).collect();
        let summary = cascade_report::write_report(ctx.request.layout.root(), &stage_order, &extras, out_dir)?;
        Ok(serde_json::to_value(summary)?)
    }

    fn summary(&self, metrics: &Value) -> String {
        let count = |key: &str| metrics[key].as_array().map_or(0, Vec::len);
        format!(
            "{} stages reported, {} not run, {} plots, {} notes; open report/report.html",
            count("stages_done"),
            count("stages_not_run"),
            count("plots"),
            count("notes")
        )
    }
}

/// `<stage>/manifest.json` of every finished stage directory in `root`, by name.
pub fn upstream_manifests(root: &Path) -> Result<Vec<InputRecord>> {
    let mut inputs = Vec::new();
    if !root.is_dir() {
        return Ok(inputs);
    }
    let mut names: Vec<String> = std::fs::read_dir(root)
        .with_context(|| format!("cannot list {}", root.display()))?
        .filter_map(|entry| entry.ok())
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| !name.starts_with('.') && name != STAGE)
        .collect();
    names.sort();
    for name in names {
        let path = StageManifest::path_in(&root.join(&name));
        if path.is_file() {
            let (sha256, _) = sha256_file(&path)?;
            inputs.push(InputRecord::new(format!("{name}/manifest.json"), sha256));
        }
    }
    Ok(inputs)
}

/// The KV-head counts to cost a family with `n_heads` query heads.
fn kv_head_variants(n_heads: usize, configured: usize, requested: &[usize]) -> Vec<usize> {
    let mut counts: Vec<usize> = if requested.is_empty() {
        (1..=n_heads).filter(|k| n_heads.is_multiple_of(*k)).collect()
    } else {
        requested.iter().copied().filter(|k| *k <= n_heads && n_heads.is_multiple_of(*k)).collect()
    };
    counts.push(configured);
    counts.sort_unstable();
    counts.dedup();
    counts
}

/// `family`'s architecture with `n_kv_heads` key/value heads.
fn with_kv_heads(model: &ModelSection, family: &str, n_kv_heads: usize) -> ModelConfig {
    match family {
        "decoder" => ModelConfig::Decoder(cascade_model::DecoderConfig { n_kv_heads, ..model.decoder.clone() }),
        "encoder" => ModelConfig::Encoder(cascade_model::EncoderConfig { n_kv_heads, ..model.encoder.clone() }),
        _ => ModelConfig::EncoderDecoder(cascade_model::EncoderDecoderConfig { n_kv_heads, ..model.encoder_decoder.clone() }),
    }
}

/// Each family's costs as configured and with every other valid number of KV heads, from
/// cascade-model's accounting (the same numbers the pretraining manifests record).
pub fn cost_variants(config: &CascadeConfig) -> Vec<CostVariant> {
    let model = &config.model;
    let families = [
        ("decoder", model.decoder.n_heads, model.decoder.n_kv_heads),
        ("encoder", model.encoder.n_heads, model.encoder.n_kv_heads),
        ("encoder_decoder", model.encoder_decoder.n_heads, model.encoder_decoder.n_kv_heads),
    ];
    let mut variants = Vec::new();
    for (family, n_heads, n_kv_heads) in families {
        // 0 means as many KV heads as query heads.
        let configured = if n_kv_heads == 0 { n_heads } else { n_kv_heads };
        for k in kv_head_variants(n_heads, configured, &config.report.gqa_kv_heads) {
            let costs = with_kv_heads(model, family, k).costs();
            variants.push(CostVariant {
                family: family.to_owned(),
                n_heads,
                n_kv_heads: k,
                configured: k == configured,
                params_total: costs.params_total,
                train_flops_per_token: costs.train_flops_per_token,
                kv_cache_bytes_per_token: costs.kv_cache_bytes_per_token,
                cross_kv_bytes_per_source_token: costs.cross_kv_bytes_per_source_token,
            });
        }
    }
    variants
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kv_head_variants_are_divisors_plus_the_configured_count() {
        assert_eq!(kv_head_variants(8, 2, &[]), vec![1, 2, 4, 8]);
        assert_eq!(kv_head_variants(8, 8, &[1, 3]), vec![1, 8]);
    }

    #[test]
    fn gqa_shrinks_the_cache_in_proportion_and_matches_the_manifest_accounting() {
        let config = crate::config::load(&crate::config::preset_path("smoke").unwrap()).unwrap();
        let variants = cost_variants(&config);
        let decoder: Vec<&CostVariant> = variants.iter().filter(|v| v.family == "decoder").collect();
        let (one, all) = (decoder.first().unwrap(), decoder.last().unwrap());
        assert_eq!(all.kv_cache_bytes_per_token, one.kv_cache_bytes_per_token * all.n_kv_heads as u64);
        let configured = decoder.iter().find(|v| v.configured).unwrap();
        assert_eq!(configured.kv_cache_bytes_per_token, ModelConfig::Decoder(config.model.decoder.clone()).costs().kv_cache_bytes_per_token);
        assert!(variants.iter().filter(|v| v.family == "encoder").all(|v| v.kv_cache_bytes_per_token == 0));
    }
}
