//! The cascade trace: one row per stage with what it read, wrote, kept, lost and cost, and the
//! data stage's losses in detail.

use serde_json::Value;

use crate::doc::Doc;
use crate::fmt::{bytes, get, int, num, pct, show, show_int};
use crate::run::{RunView, StageRecord, numeric_leaves};

/// Words that make a metric a headline in a stage the report has no special case for.
const HEADLINE_WORDS: [&str; 12] =
    ["loss", "accuracy", "auc", "bits_per_byte", "reward", "margin", "win_rate", "kl", "end_of_turn", "distinct", "perplexity", "params"];

/// Adds the trace table and the data-loss details.
pub fn write_trace(doc: &mut Doc, run: &RunView) {
    doc.heading(2, "Cascade trace");
    doc.para(
        "One row per stage in cascade order. Cache: `fresh` when the last cascade ran the stage (with the runner's reason), \
         `reused` when it found it up to date. Stages that have not run are listed as `not run`.",
    );
    let rows = run.stages.iter().map(trace_row).collect();
    doc.table(&["stage", "status", "cache", "inputs", "outputs", "kept", "lost", "cost / quality", "wall time"], rows);
    if let Some(data) = run.finished("data") {
        write_data_losses(doc, data.metrics());
    }
}

fn trace_row(stage: &StageRecord) -> Vec<String> {
    let Some(manifest) = &stage.manifest else {
        return vec![stage.name.clone(), "not run".into(), "-".into()];
    };
    let metrics = &manifest.metrics;
    let mut sources: Vec<String> = Vec::new();
    for input in &manifest.inputs {
        let source = input.name.split('/').next().unwrap_or(&input.name).to_owned();
        if !sources.contains(&source) {
            sources.push(source);
        }
    }
    let inputs = format!("{} ({} files)", sources.join(", "), manifest.inputs.len());
    let out_bytes: u64 = manifest.outputs.iter().map(|o| o.bytes).sum();
    let outputs = format!("{} files, {}", manifest.outputs.len(), bytes(out_bytes));
    let (kept, lost, cost) = match stage.name.as_str() {
        "data" => data_cells(metrics),
        "tokenizer" => tokenizer_cells(metrics),
        name if name.starts_with("pretrain-") => pretrain_cells(metrics),
        "report" => (String::new(), String::new(), String::new()),
        _ => (String::new(), String::new(), headline(metrics)),
    };
    vec![stage.name.clone(), "done".into(), stage.cache.to_string(), inputs, outputs, kept, lost, cost, format!("{:.1} s", manifest.wall_s)]
}

fn data_cells(m: &Value) -> (String, String, String) {
    let kept = format!(
        "{} train + {} val docs; {} + {} of text",
        show_int(m, "/split/train/docs"),
        show_int(m, "/split/val/docs"),
        bytes(get(m, "/split/train/bytes").unwrap_or(0.0) as u64),
        bytes(get(m, "/split/val/bytes").unwrap_or(0.0) as u64),
    );
    let filtered: (f64, f64) = m
        .pointer("/filters")
        .and_then(Value::as_object)
        .map(|f| f.values().fold((0.0, 0.0), |acc, r| (acc.0 + get(r, "/docs").unwrap_or(0.0), acc.1 + get(r, "/bytes").unwrap_or(0.0))))
        .unwrap_or_default();
    let removed = |key: &str| format!("{} docs ({})", show_int(m, &format!("/{key}/docs")), bytes(get(m, &format!("/{key}/bytes")).unwrap_or(0.0) as u64));
    let bad: u64 = m.pointer("/bad_inputs/counts").and_then(Value::as_object).map_or(0, |c| c.values().filter_map(Value::as_u64).sum());
    let lost = format!(
        "filters {} docs ({}); exact dup {}; near dup {}; same-work dup {}; bad inputs {bad}",
        filtered.0,
        bytes(filtered.1 as u64),
        removed("exact_duplicates"),
        removed("near_duplicates"),
        removed("same_work_duplicates"),
    );
    let cost = format!(
        "MinHash-LSH {}x{} (threshold {}): {} candidate pairs, {} confirmed",
        show(m, "/near_dedup/bands"),
        show(m, "/near_dedup/rows"),
        show(m, "/near_dedup/threshold"),
        show_int(m, "/near_dedup/candidate_pairs"),
        show_int(m, "/near_dedup/confirmed_pairs"),
    );
    (kept, lost, cost)
}

fn tokenizer_cells(m: &Value) -> (String, String, String) {
    let kept = format!(
        "vocab {} ({} merges); {} train + {} val tokens",
        show_int(m, "/vocab_size"),
        show_int(m, "/n_merges"),
        show_int(m, "/train/n_tokens"),
        show_int(m, "/val/n_tokens"),
    );
    let lost = format!(
        "{} round-trip failures; text compressed to {} bytes/token (val)",
        get(m, "/train/n_round_trip_failures").unwrap_or(0.0) + get(m, "/val/n_round_trip_failures").unwrap_or(0.0),
        show(m, "/val_bytes_per_token"),
    );
    let cost = format!("{} tokens/doc on val (longest {})", show(m, "/val/tokens_per_document"), show_int(m, "/val/max_document_tokens"));
    (kept, lost, cost)
}

fn pretrain_cells(m: &Value) -> (String, String, String) {
    let kept = format!("{} tokens in {} steps (stopped by {})", show_int(m, "/tokens"), show_int(m, "/steps"), m["stop_reason"].as_str().unwrap_or("?"));
    let lost = format!("val loss {} -> {} nats", show(m, "/initial_val_loss"), show(m, "/final_val_loss"));
    let params = get(m, "/model_costs/params_total").or_else(|| get(m, "/params")).unwrap_or(0.0);
    let embedding = get(m, "/model_costs/params_embedding").unwrap_or(0.0);
    let quality = match get(m, "/val_bits_per_byte") {
        Some(bpb) => format!("{} bits/byte", num(bpb)),
        None => format!("accuracy {}", show(m, "/val_accuracy")),
    };
    let cost = format!(
        "{} params ({} embedding); {quality}; {} tok/s; MFU {}",
        int(params as u64),
        pct(embedding, params),
        show(m, "/tokens_per_s"),
        get(m, "/mfu").map_or_else(|| "n/a".into(), |x| format!("{:.1}%", 100.0 * x)),
    );
    (kept, lost, cost)
}

/// One metric of a stage, with its value before the stage when the stage reports one
/// (`x_before` beside `x` or `x_after`).
#[derive(Debug, Clone, PartialEq)]
pub struct StageMetric {
    /// Path in the metrics without the leading `/` and the `_before`/`_after` suffix.
    pub name: String,
    /// The value before the stage.
    pub before: Option<f64>,
    /// The value the stage reached.
    pub after: f64,
}

/// The numeric metrics of a stage at most two levels deep (architecture costs left out, they
/// have their own table), before/after pairs joined.
pub fn stage_metrics(metrics: &Value) -> Vec<StageMetric> {
    let leaves: Vec<(String, f64)> = numeric_leaves(metrics)
        .into_iter()
        .filter(|(path, _)| path.matches('/').count() <= 2 && !path.starts_with("/model_costs"))
        .map(|(path, value)| (path.trim_start_matches('/').to_owned(), value))
        .collect();
    let value_of = |name: &str| leaves.iter().find(|(path, _)| path == name).map(|(_, v)| *v);
    let mut used = std::collections::HashSet::new();
    let mut out = Vec::new();
    for (path, value) in &leaves {
        // `x_before` pairs with `x` or `x_after`; `initial/x` (or `initial_x`) with
        // `final_eval/x`, `final/x` or `final_x`.
        let (base, afters): (String, Vec<String>) = if let Some(base) = path.strip_suffix("_before") {
            (base.to_owned(), vec![base.to_owned(), format!("{base}_after")])
        } else if let Some(base) = path.strip_prefix("initial/").or_else(|| path.strip_prefix("initial_")) {
            (base.to_owned(), vec![format!("final_eval/{base}"), format!("final/{base}"), format!("final_{base}")])
        } else if let Some((first, rest)) = path.split_once('/').and_then(|(f, r)| Some((f.strip_suffix("_before")?, r))) {
            // `val_before/loss` pairs with `val_after/loss` or `val/loss`.
            (format!("{first}/{rest}"), vec![format!("{first}_after/{rest}"), format!("{first}/{rest}")])
        } else {
            continue;
        };
        if let Some(after_name) = afters.into_iter().find(|name| value_of(name).is_some() && !used.contains(name)) {
            out.push(StageMetric { name: base, before: Some(*value), after: value_of(&after_name).unwrap_or(f64::NAN) });
            used.insert(path.clone());
            used.insert(after_name);
        }
    }
    for (path, value) in &leaves {
        if !used.contains(path) {
            out.push(StageMetric { name: path.clone(), before: None, after: *value });
        }
    }
    out
}

/// Up to eight headline metrics of a stage the report has no special case for: before/after
/// pairs first, then metrics whose names say loss, accuracy, reward...
pub fn headline(metrics: &Value) -> String {
    let all = stage_metrics(metrics);
    let paired = all.iter().filter(|m| m.before.is_some());
    let named = all.iter().filter(|m| m.before.is_none() && HEADLINE_WORDS.iter().any(|w| m.name.contains(w)));
    paired
        .chain(named)
        .take(8)
        .map(|m| match m.before {
            Some(before) => format!("{} {} -> {}", m.name, num(before), num(m.after)),
            None => format!("{}={}", m.name, num(m.after)),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn write_data_losses(doc: &mut Doc, m: &Value) {
    doc.heading(3, "What the data stage dropped, step by step");
    let steps = m.pointer("/steps").and_then(Value::as_array).cloned().unwrap_or_default();
    let rows = steps
        .iter()
        .map(|s| {
            let (din, dout) = (get(s, "/docs_in").unwrap_or(0.0), get(s, "/docs_out").unwrap_or(0.0));
            let (bin, bout) = (get(s, "/bytes_in").unwrap_or(0.0), get(s, "/bytes_out").unwrap_or(0.0));
            vec![
                s["step"].as_str().unwrap_or("?").to_owned(),
                int(din as u64),
                int(dout as u64),
                bytes(bin as u64),
                bytes(bout as u64),
                format!("{} docs, {} ({} of bytes)", int((din - dout) as u64), bytes((bin - bout) as u64), pct(bin - bout, bin)),
            ]
        })
        .collect();
    doc.table(&["step", "docs in", "docs out", "bytes in", "bytes out", "removed"], rows);
    let filters = m.pointer("/filters").and_then(Value::as_object).cloned().unwrap_or_default();
    if filters.values().any(|r| get(r, "/docs").unwrap_or(0.0) > 0.0) {
        let rows = filters
            .iter()
            .filter(|(_, r)| get(r, "/docs").unwrap_or(0.0) > 0.0)
            .map(|(name, r)| vec![name.clone(), show_int(r, "/docs"), bytes(get(r, "/bytes").unwrap_or(0.0) as u64), show_int(r, "/words")])
            .collect();
        doc.table(&["quality filter", "docs removed", "bytes", "words"], rows);
    } else {
        doc.para("No document failed a quality filter.");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_and_after_metrics_pair_up() {
        let metrics = serde_json::json!({
            "loss_before": 5.0, "loss": 4.0, "kl_before": 0.0, "kl_after": 0.2, "auc": 0.9,
            "initial": {"val_auc": 0.5}, "final_eval": {"val_auc": 0.7},
            "val_before": {"margin": 0.0}, "val_after": {"margin": 0.3},
            "model_costs": {"params_total": 10}, "deep": {"er": {"x": 1}}
        });
        let all = stage_metrics(&metrics);
        assert!(all.contains(&StageMetric { name: "loss".into(), before: Some(5.0), after: 4.0 }));
        assert!(all.contains(&StageMetric { name: "kl".into(), before: Some(0.0), after: 0.2 }));
        assert!(all.contains(&StageMetric { name: "val_auc".into(), before: Some(0.5), after: 0.7 }));
        assert!(all.contains(&StageMetric { name: "val/margin".into(), before: Some(0.0), after: 0.3 }));
        assert_eq!(all.len(), 5, "{all:?}");
        assert_eq!(headline(&metrics), "val_auc 0.500 -> 0.700; kl 0 -> 0.200; loss 5 -> 4; val/margin 0 -> 0.300; auc=0.900");
    }
}
