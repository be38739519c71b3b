//! The comparison report of a sweep: one run directory per value of one config key, side by
//! side (sequence length, embedding share of parameters, bits per byte, losses, costs, and which
//! stages each run had to redo).

use std::path::{Path, PathBuf};

use crate::doc::Doc;
use crate::error::Result;
use crate::fmt::{bytes, get, int, num, pct};
use crate::plots::{Chart, Mark, Series, draw_charts};
use crate::run::{CacheStatus, RunView};
use crate::{REPORT_STAGE, write_doc};

/// One value of the swept key and the run it produced.
#[derive(Debug, Clone)]
pub struct SweepRun {
    /// The value as written on the command line.
    pub value: String,
    /// Its run directory.
    pub run_dir: PathBuf,
}

/// Writes `report.md`, `report.html` and `plots/` comparing the runs into `out_dir`.
pub fn write_sweep_report(key: &str, runs: &[SweepRun], stage_order: &[&str], out_dir: &Path) -> Result<()> {
    let views: Vec<RunView> = runs.iter().map(|r| RunView::load(&r.run_dir, stage_order, &[REPORT_STAGE])).collect::<Result<_>>()?;
    let mut doc = Doc::default();
    doc.heading(1, format!("Sweep of {key}"));
    doc.para(format!(
        "{} runs, one per value of {key}; each run directory has its own full report in report/. Each run started from \
         hard links to the base run's stages and the manifests decided what had to run again: the `redone` column lists it \
         (stages upstream of the key are reused).",
        runs.len()
    ));
    let rows = runs.iter().zip(&views).map(|(run, view)| row(run, view)).collect();
    doc.table(
        &[
            key,
            "run dir",
            "redone",
            "val bytes/token",
            "val tokens/doc",
            "decoder params",
            "embedding share",
            "decoder tokens (stopped by)",
            "decoder val bits/byte",
            "final val loss (dec / enc / enc-dec)",
            "decoder KV cache/token",
            "decoder train FLOPs/token",
        ],
        rows,
    );
    let numeric: Option<Vec<f64>> = runs.iter().map(|r| r.value.parse::<f64>().ok()).collect();
    let xs: Vec<f64> = numeric.clone().unwrap_or_else(|| (0..runs.len()).map(|i| i as f64).collect());
    let x_label = if numeric.is_some() { key.to_owned() } else { format!("{key} (run index)") };
    let metric = |pointer: &str, stage: &str| -> Vec<(f64, f64)> {
        xs.iter().zip(&views).filter_map(|(x, v)| Some((*x, get(v.finished(stage)?.metrics(), pointer)?))).collect()
    };
    let embedding_share: Vec<(f64, f64)> = xs
        .iter()
        .zip(&views)
        .filter_map(|(x, v)| {
            let m = v.finished("pretrain-decoder")?.metrics();
            Some((*x, get(m, "/model_costs/params_embedding")? / get(m, "/model_costs/params_total")?))
        })
        .collect();
    let charts: Vec<Chart> = [
        Chart::new("Decoder validation bits per byte", x_label.as_str(), "bits per byte")
            .with(Series::new("pretrain-decoder", metric("/val_bits_per_byte", "pretrain-decoder"), Mark::LinePoints, 0)),
        Chart::new("Validation tokens per document (sequence length)", x_label.as_str(), "tokens per document")
            .with(Series::new("tokenizer", metric("/val/tokens_per_document", "tokenizer"), Mark::LinePoints, 1)),
        Chart::new("Embedding share of the decoder's parameters", x_label.as_str(), "share")
            .with(Series::new("pretrain-decoder", embedding_share, Mark::LinePoints, 2)),
        Chart::new("Decoder KV-cache bytes per token", x_label.as_str(), "bytes")
            .with(Series::new("pretrain-decoder", metric("/model_costs/kv_cache_bytes_per_token", "pretrain-decoder"), Mark::LinePoints, 3)),
    ]
    .into_iter()
    .filter(|c| c.series.first().is_some_and(|s| s.points.len() > 1 && s.points.iter().any(|p| p.1 != s.points[0].1)))
    .collect();
    if !charts.is_empty() {
        let svg = draw_charts("sweep-metrics.svg", &charts)?;
        doc.figure("sweep-metrics.svg", svg, format!("What changed with {key} (metrics that did not change are left out)"));
    }
    let mut curves = Chart::new(format!("Decoder validation bits per byte by {key}"), "training tokens", "bits per byte");
    for (idx, (run, view)) in runs.iter().zip(&views).enumerate() {
        if let Some(log) = view.finished("pretrain-decoder").map(|s| s.metrics_log()).transpose()?.flatten() {
            curves = curves.with(Series::new(format!("{key}={}", run.value), log.series("tokens", "val_bits_per_byte"), Mark::LinePoints, idx));
        }
    }
    if !curves.is_empty() {
        let svg = draw_charts("sweep-val-bits-per-byte.svg", &[curves])?;
        doc.figure("sweep-val-bits-per-byte.svg", svg, "Decoder validation bits per byte against training tokens, one line per value (per byte, so vocabularies compare)");
    }
    write_doc(&doc, &format!("Sweep of {key}"), out_dir)
}

fn row(run: &SweepRun, view: &RunView) -> Vec<String> {
    let redone: Vec<&str> = view
        .stages
        .iter()
        .filter(|s| s.manifest.is_some() && matches!(s.cache, CacheStatus::Fresh(_)))
        .map(|s| s.name.as_str())
        .collect();
    let m = |stage: &str| view.finished(stage).map(|s| s.metrics().clone()).unwrap_or_default();
    let (tok, dec) = (m("tokenizer"), m("pretrain-decoder"));
    let (params, embedding) = (get(&dec, "/model_costs/params_total"), get(&dec, "/model_costs/params_embedding"));
    let loss = |stage: &str| get(&m(stage), "/final_val_loss").map_or_else(|| "-".into(), num);
    let opt = |value: Option<f64>, f: fn(f64) -> String| value.map_or_else(|| "-".into(), f);
    vec![
        run.value.clone(),
        run.run_dir.file_name().map_or_else(|| run.run_dir.display().to_string(), |name| format!("{}/", name.to_string_lossy())),
        if redone.is_empty() { "nothing".into() } else { redone.join(", ") },
        opt(get(&tok, "/val_bytes_per_token"), num),
        opt(get(&tok, "/val/tokens_per_document"), num),
        opt(params, |p| int(p as u64)),
        params.zip(embedding).map_or_else(|| "-".into(), |(p, e)| pct(e, p)),
        format!("{} ({})", opt(get(&dec, "/tokens"), |t| int(t as u64)), dec["stop_reason"].as_str().unwrap_or("-")),
        opt(get(&dec, "/val_bits_per_byte"), num),
        format!("{} / {} / {}", loss("pretrain-decoder"), loss("pretrain-encoder"), loss("pretrain-encoder-decoder")),
        opt(get(&dec, "/model_costs/kv_cache_bytes_per_token"), |b| bytes(b as u64)),
        opt(get(&dec, "/model_costs/train_flops_per_token"), num),
    ]
}
