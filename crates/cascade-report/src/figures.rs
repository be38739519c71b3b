//! The report's plots, each drawn from the run's files: training curves per family, optimizer
//! traces, the dedup S-curve with the corpus's similarities, the tokenizer's bytes per token on
//! validation, any other stage's `metrics.jsonl`, and reply statistics when measured.

use cascade_core::{ShardReader, TokenShardHeader};
use serde_json::Value;

use crate::doc::Doc;
use crate::error::{ReportError, Result};
use crate::extras::Extras;
use crate::fmt::{get, num};
use crate::plots::{Chart, Mark, Series, draw_charts, draw_histograms};
use crate::run::{MetricsLog, RunView};

/// The pretraining stages present in the run, with their metrics logs.
pub fn pretrain_logs(run: &RunView) -> Result<Vec<(String, MetricsLog)>> {
    let mut out = Vec::new();
    for stage in run.stages.iter().filter(|s| s.name.starts_with("pretrain-")) {
        if let Some(log) = stage.metrics_log()? {
            out.push((stage.name.clone(), log));
        }
    }
    Ok(out)
}

/// Training and validation loss (and bits per byte) against tokens, one figure per family, and
/// the learning rate and gradient norm of every family.
pub fn training_curves(doc: &mut Doc, run: &RunView) -> Result<()> {
    doc.heading(2, "Training curves");
    let logs = pretrain_logs(run)?;
    if logs.is_empty() {
        doc.para("No pretraining stage has run: no training curves.");
        return Ok(());
    }
    for (stage, log) in &logs {
        // The untrained model's validation loss is in the manifest, not in metrics.jsonl.
        let initial = run.stage(stage).and_then(|s| get(s.metrics(), "/initial_val_loss")).map(|loss| (0.0, loss));
        let val_loss: Vec<(f64, f64)> = initial.into_iter().chain(log.series("tokens", "val_loss")).collect();
        let loss = Chart::new(format!("{stage}: loss"), "training tokens", "loss (nats/token)")
            .with(Series::new("train loss", log.series("tokens", "train_loss"), Mark::Line, 0))
            .with(Series::new("val loss", val_loss, Mark::LinePoints, 1));
        let bits = Chart::new(format!("{stage}: validation bits per byte"), "training tokens", "bits per byte")
            .with(Series::new("val bits/byte", log.series("tokens", "val_bits_per_byte"), Mark::LinePoints, 2));
        let accuracy = Chart::new(format!("{stage}: validation accuracy"), "training tokens", "accuracy")
            .with(Series::new("val accuracy", log.series("tokens", "val_accuracy"), Mark::LinePoints, 2));
        let second = if bits.is_empty() { accuracy } else { bits };
        let charts: Vec<Chart> = [loss, second].into_iter().filter(|c| !c.is_empty()).collect();
        let file = format!("{stage}-loss.svg");
        let svg = draw_charts(&file, &charts)?;
        let skipped = if log.skipped_lines > 0 { format!(" ({} unreadable lines skipped)", log.skipped_lines) } else { String::new() };
        doc.figure(file, svg, format!("{stage}: training loss per step, validation loss (from the untrained model on) and its second metric at each evaluation{skipped}"));
    }
    // Every stage that logs an optimizer, post-training included.
    let mut optimized = logs;
    for stage in run.stages.iter().filter(|s| !s.name.starts_with("pretrain-") && s.manifest.is_some()) {
        if let Some(log) = stage.metrics_log()?.filter(|log| !log.series("step", "lr").is_empty()) {
            optimized.push((stage.name.clone(), log));
        }
    }
    let lr = optimized.iter().enumerate().fold(Chart::new("Learning rate", "step", "learning rate"), |chart, (idx, (stage, log))| {
        chart.with(Series::new(stage.clone(), log.series("step", "lr"), Mark::Line, idx))
    });
    let grad = optimized.iter().enumerate().fold(Chart::new("Gradient norm (before clipping)", "step", "global L2 norm"), |chart, (idx, (stage, log))| {
        chart.with(Series::new(stage.clone(), log.series("step", "grad_norm"), Mark::Line, idx))
    });
    let svg = draw_charts("optimizer.svg", &[lr, grad])?;
    doc.figure("optimizer.svg", svg, "Learning-rate schedule (warmup, cosine decay) and global gradient norm per step, every family");
    Ok(())
}

/// `1 - (1 - s^rows)^bands`.
pub fn candidate_probability(similarity: f64, bands: f64, rows: f64) -> f64 {
    1.0 - (1.0 - similarity.powf(rows)).powf(bands)
}

/// The LSH S-curve of the configured bands x rows with the clusters' similarities on it.
pub fn dedup_s_curve(doc: &mut Doc, run: &RunView) -> Result<()> {
    let Some(data) = run.finished("data") else {
        doc.para("The data stage has not run: no dedup S-curve.");
        return Ok(());
    };
    let m = data.metrics();
    let (Some(bands), Some(rows)) = (get(m, "/near_dedup/bands"), get(m, "/near_dedup/rows")) else {
        doc.para("The data stage's metrics have no near_dedup bands/rows: no dedup S-curve.");
        return Ok(());
    };
    let threshold = get(m, "/near_dedup/threshold").unwrap_or(f64::NAN);
    let curve: Vec<(f64, f64)> = (0..=200).map(|i| i as f64 / 200.0).map(|s| (s, candidate_probability(s, bands, rows))).collect();
    let (mut near, mut same) = (Vec::new(), Vec::new());
    let clusters_path = data.dir.join("clusters.jsonl");
    if clusters_path.is_file() {
        let text = std::fs::read_to_string(&clusters_path).map_err(|e| ReportError::io(&clusters_path, e))?;
        for (idx, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
            let cluster: Value = serde_json::from_str(line).map_err(|e| ReportError::BadFile {
                path: clusters_path.clone(),
                message: format!("line {}: {e}", idx + 1),
            })?;
            let target = match cluster["kind"].as_str() {
                Some("near_duplicate") => &mut near,
                Some("same_work") => &mut same,
                _ => continue,
            };
            for member in cluster["members"].as_array().into_iter().flatten().skip(1) {
                if let Some(s) = member["exact"].as_f64().or_else(|| member["estimated"].as_f64()) {
                    target.push((s, candidate_probability(s, bands, rows)));
                }
            }
        }
    }
    let mut vlines = vec![(threshold, format!("threshold {}", num(threshold)))];
    if let Some(same_threshold) = get(m, "/same_work/threshold").filter(|_| m.pointer("/same_work/enabled") == Some(&Value::Bool(true))) {
        vlines.push((same_threshold, format!("same-work {}", num(same_threshold))));
    }
    let (n_near, n_same) = (near.len(), same.len());
    let mut chart = Chart::new(format!("MinHash-LSH S-curve: {bands} bands x {rows} rows"), "Jaccard similarity s", "P(candidate pair)")
        .with(Series::new(format!("1-(1-s^{rows})^{bands}"), curve, Mark::Line, 7))
        .with(Series::new(format!("near-duplicate members ({n_near})"), near, Mark::Points, 1))
        .with(Series::new(format!("same-work members ({n_same})"), same, Mark::Points, 0));
    chart.vlines = vlines;
    chart.legend = crate::plots::Legend::UpperLeft;
    chart.vline_label_height = Some(0.15);
    chart.x_range = Some((0.0, 1.0));
    chart.y_range = Some((-0.02, 1.05));
    let svg = draw_charts("dedup-s-curve.svg", &[chart])?;
    doc.figure(
        "dedup-s-curve.svg",
        svg,
        format!(
            "Probability that LSH proposes a pair at similarity s, with each cluster member's similarity to its keeper \
             (exact Jaccard when verified): {n_near} near-duplicate and {n_same} same-work members"
        ),
    );
    Ok(())
}

/// Bytes per token of each validation document.
pub fn tokenizer_bytes_per_token(doc: &mut Doc, run: &RunView) -> Result<Option<Vec<f64>>> {
    let (Some(tokenizer), Some(data)) = (run.finished("tokenizer"), run.finished("data")) else {
        doc.para("The tokenizer has not run: no bytes-per-token plot.");
        return Ok(None);
    };
    let per_doc = match per_document_bytes_per_token(&tokenizer.dir, &data.dir)? {
        Ok(values) => values,
        Err(why) => {
            doc.para(format!("No bytes-per-token plot: {why}."));
            return Ok(None);
        }
    };
    let mean = get(tokenizer.metrics(), "/val_bytes_per_token").unwrap_or(f64::NAN);
    let svg = draw_histograms(
        "tokenizer-bytes-per-token.svg",
        "Tokenizer: bytes per token of each validation document",
        "UTF-8 bytes per token",
        &[("validation documents".to_owned(), per_doc.clone())],
        30,
        &[(mean, format!("corpus {}", num(mean)))],
    )?;
    doc.figure(
        "tokenizer-bytes-per-token.svg",
        svg,
        format!("How much text one token carries on the validation split (vocabulary {}); the line is the whole split's ratio", crate::fmt::show_int(tokenizer.metrics(), "/vocab_size")),
    );
    Ok(Some(per_doc))
}

/// Pairs the validation token shard's documents with `val.jsonl`'s texts; an `Err` string says
/// why they do not pair.
fn per_document_bytes_per_token(tokenizer_dir: &std::path::Path, data_dir: &std::path::Path) -> Result<std::result::Result<Vec<f64>, String>> {
    let header_path = tokenizer_dir.join("val.tokens.json");
    let raw = std::fs::read(&header_path).map_err(|e| ReportError::io(&header_path, e))?;
    let header: TokenShardHeader =
        serde_json::from_slice(&raw).map_err(|e| ReportError::BadFile { path: header_path.clone(), message: e.to_string() })?;
    let mut text_bytes = Vec::new();
    for document in ShardReader::open(&data_dir.join("val.jsonl"))? {
        text_bytes.push(document?.text.len() as f64);
    }
    if text_bytes.len() != header.doc_starts.len() {
        return Ok(Err(format!(
            "val.jsonl has {} documents but val.tokens has {}",
            text_bytes.len(),
            header.doc_starts.len()
        )));
    }
    let ends = header.doc_starts.iter().skip(1).copied().chain(std::iter::once(header.n_tokens));
    Ok(Ok(header
        .doc_starts
        .iter()
        .zip(ends)
        .zip(&text_bytes)
        .filter(|((start, end), _)| end > start)
        .map(|((start, end), bytes)| bytes / (end - start) as f64)
        .collect()))
}

/// A figure per other stage that wrote a `metrics.jsonl` (SFT, the judge, DPO...): its losses,
/// its rewards and margins, its accuracies, against tokens or steps.
pub fn other_stage_curves(doc: &mut Doc, run: &RunView) -> Result<()> {
    let others: Vec<_> = run.stages.iter().filter(|s| !s.name.starts_with("pretrain-") && s.manifest.is_some()).collect();
    let mut drawn = 0;
    for stage in others {
        let Some(log) = stage.metrics_log()? else { continue };
        let x = log.x_key();
        let keys = log.numeric_keys();
        let is_accuracy = |k: &str| ["accuracy", "accuracies", "auc"].iter().any(|w| k.contains(w));
        let group = |title: &str, words: &[&str]| {
            let accuracy_group = words.contains(&"accuracy");
            keys.iter()
                .filter(|k| words.iter().any(|w| k.contains(w)) && (accuracy_group || !is_accuracy(k)))
                .enumerate()
                .fold(Chart::new(format!("{}: {title}", stage.name), x, title), |chart, (idx, key)| {
                    let mark = if log.series(x, key).len() < log.records.len() / 2 { Mark::LinePoints } else { Mark::Line };
                    chart.with(Series::new(key.clone(), log.series(x, key), mark, idx))
                })
        };
        let charts: Vec<Chart> = [
            group("loss", &["loss"]),
            group("rewards and margins", &["reward", "margin"]),
            group("accuracy", &["accuracy", "accuracies", "auc"]),
        ]
        .into_iter()
        .filter(|c| !c.is_empty())
        .collect();
        if charts.is_empty() {
            continue;
        }
        let file = format!("{}-metrics.svg", stage.name);
        let svg = draw_charts(&file, &charts)?;
        doc.figure(file, svg, format!("{}: every loss, reward/margin and accuracy series of its metrics.jsonl against {x}", stage.name));
        drawn += 1;
    }
    if drawn == 0 {
        doc.para("No post-training stage (sft, sft-judge, sft-seq2seq, dpo) has written a metrics.jsonl yet: no post-training curves, no DPO rewards or margins.");
    }
    Ok(())
}

/// Reply-length and diversity histograms per model, when replies were sampled.
pub fn reply_histograms(doc: &mut Doc, extras: &Extras) -> Result<()> {
    if extras.reply_stats.is_empty() {
        doc.para("No replies were sampled (see the notes below): no reply-length or diversity histograms.");
        return Ok(());
    }
    let lengths: Vec<(String, Vec<f64>)> = extras.reply_stats.iter().map(|r| (r.model.clone(), r.lengths_tokens.clone())).collect();
    let svg = draw_histograms("reply-lengths.svg", "Reply length per model", "tokens per reply", &lengths, 20, &[])?;
    doc.figure("reply-lengths.svg", svg, "Length of sampled replies, before and after post-training (a model that learnt to end its turn stops early)");
    let diversity: Vec<(String, Vec<f64>)> = extras.reply_stats.iter().map(|r| (r.model.clone(), r.distinct_2.clone())).collect();
    let svg = draw_histograms("reply-diversity.svg", "Reply diversity per model", "distinct 2-grams / 2-grams in a reply", &diversity, 20, &[])?;
    doc.figure("reply-diversity.svg", svg, "Diversity of each sampled reply (1 = no repeated word pair)");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s_curve_matches_the_formula_and_is_steep_around_its_threshold() {
        assert!((candidate_probability(0.8, 14.0, 8.0) - (1.0 - (1.0 - 0.8_f64.powi(8)).powi(14))).abs() < 1e-12);
        assert!(candidate_probability(0.95, 14.0, 8.0) > 0.99);
        assert!(candidate_probability(0.3, 14.0, 8.0) < 0.001);
    }
}
