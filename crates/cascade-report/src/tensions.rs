//! The six tensions of the cascade, each measured on this run as far as its stages exist.

use serde_json::Value;

use crate::doc::Doc;
use crate::error::Result;
use crate::extras::{CostVariant, Extras};
use crate::figures::pretrain_logs;
use crate::fmt::{bytes, get, int, num, show};
use crate::plots::{Chart, Mark, Series, draw_charts};
use crate::run::{MetricsLog, RunView};
use crate::trace::{StageMetric, headline, stage_metrics};

/// Metric names that speak to alignment or to what the model still knows.
const ALIGNMENT_WORDS: [&str; 8] = ["bits_per_byte", "distinct", "reward", "win_rate", "kl", "end_of_turn", "ended_turn", "margin"];

/// The post-training stages of the depth-vs-width comparison: (family, stage).
const REPLY_STAGES: [(&str, &str); 3] = [("decoder", "sft"), ("encoder", "sft-judge"), ("encoder-decoder", "sft-seq2seq")];

/// Writes the six tension sections.
pub fn write_tensions(doc: &mut Doc, run: &RunView, extras: &Extras) -> Result<()> {
    doc.heading(2, "The six tensions, measured on this run");
    compute_vs_memory(doc, run, extras)?;
    let logs = pretrain_logs(run)?;
    expressiveness_vs_generalization(doc, run, &logs);
    stability_vs_speed(doc, run, &logs);
    depth_vs_width(doc, run);
    alignment_vs_capability(doc, run);
    faithfulness_vs_fluency(doc, extras)?;
    Ok(())
}

/// The configured costs from the manifests, plus the variants the caller computed.
fn cost_points(run: &RunView, extras: &Extras) -> Vec<CostVariant> {
    let mut points = extras.cost_variants.clone();
    for stage in run.stages.iter().filter(|s| s.name.starts_with("pretrain-")) {
        let family = stage.name.trim_start_matches("pretrain-").replace('-', "_");
        let costs = &stage.metrics()["model_costs"];
        if costs.is_null() || points.iter().any(|p| p.family == family && p.configured) {
            continue;
        }
        points.push(CostVariant {
            family,
            n_heads: 0,
            n_kv_heads: 0,
            configured: true,
            params_total: costs["params_total"].as_u64().unwrap_or(0),
            train_flops_per_token: costs["train_flops_per_token"].as_f64().unwrap_or(0.0),
            kv_cache_bytes_per_token: costs["kv_cache_bytes_per_token"].as_u64().unwrap_or(0),
            cross_kv_bytes_per_source_token: costs["cross_kv_bytes_per_source_token"].as_u64().unwrap_or(0),
        });
    }
    points
}

fn compute_vs_memory(doc: &mut Doc, run: &RunView, extras: &Extras) -> Result<()> {
    doc.heading(3, "Compute vs memory");
    let points = cost_points(run, extras);
    if points.is_empty() {
        doc.para("No pretraining stage has run and no costs were computed: nothing to compare.");
        return Ok(());
    }
    doc.para(
        "Training FLOPs per token (PaLM accounting) against the KV-cache bytes each generated token keeps (f32), per family, \
         as configured and with other numbers of key/value heads (GQA; n_kv_heads = n_heads is plain multi-head attention, 1 is MQA). \
         Fewer KV heads shrink the cache proportionally and cost almost no compute; the encoder keeps no cache.",
    );
    let rows = points
        .iter()
        .map(|p| {
            let heads = if p.n_heads > 0 { format!("{}/{}", p.n_kv_heads, p.n_heads) } else { "as configured".into() };
            vec![
                p.family.clone(),
                heads,
                if p.configured { "configured".into() } else { "variant".into() },
                int(p.params_total),
                num(p.train_flops_per_token),
                bytes(p.kv_cache_bytes_per_token),
                bytes(p.cross_kv_bytes_per_source_token),
            ]
        })
        .collect();
    doc.table(&["family", "kv heads / heads", "", "params", "train FLOPs/token", "KV cache/token", "cross KV/source token"], rows);
    let mut families: Vec<&str> = points.iter().map(|p| p.family.as_str()).collect();
    families.dedup();
    families.sort_unstable();
    families.dedup();
    let mut chart = Chart::new("Compute vs memory per family", "KV-cache bytes per generated token", "training FLOPs per token");
    for (idx, family) in families.iter().enumerate() {
        let mut family_points: Vec<(f64, f64, usize)> = points
            .iter()
            .filter(|p| p.family == *family)
            .map(|p| (p.kv_cache_bytes_per_token as f64, p.train_flops_per_token, p.n_kv_heads))
            .collect();
        family_points.sort_by(|a, b| a.0.total_cmp(&b.0));
        let labels = family_points.iter().map(|p| if p.2 > 0 { format!("kv {}", p.2) } else { String::new() }).collect();
        let xy = family_points.iter().map(|p| (p.0, p.1)).collect();
        chart = chart.with(Series::new(family.to_string(), xy, Mark::LinePoints, idx).labelled(labels));
    }
    let configured: Vec<(f64, f64)> =
        points.iter().filter(|p| p.configured).map(|p| (p.kv_cache_bytes_per_token as f64, p.train_flops_per_token)).collect();
    chart = chart.with(Series::new("configured", configured, Mark::Points, 7));
    chart.legend = crate::plots::Legend::LowerRight;
    let svg = draw_charts("compute-vs-memory.svg", &[chart])?;
    doc.figure("compute-vs-memory.svg", svg, "Each family's line joins its GQA variants (more KV heads to the right); black dots are the configured models");
    Ok(())
}

/// Mean training loss over the last tenth of the steps.
fn late_train_loss(log: &MetricsLog) -> Option<f64> {
    let losses: Vec<f64> = log.series("step", "train_loss").into_iter().map(|p| p.1).collect();
    let tail = &losses[losses.len() - (losses.len() / 10).max(1).min(losses.len())..];
    (!tail.is_empty()).then(|| tail.iter().sum::<f64>() / tail.len() as f64)
}

fn expressiveness_vs_generalization(doc: &mut Doc, run: &RunView, logs: &[(String, MetricsLog)]) {
    doc.heading(3, "Expressiveness vs generalization");
    if logs.is_empty() {
        doc.para("No pretraining stage has run.");
        return;
    }
    doc.para(
        "Training loss (mean of the last tenth of the steps) against validation loss at the end, and tokens seen per parameter. \
         A validation loss well above the training loss means the model memorises its training split; the passes column \
         says how many times, on average, it saw each training token.",
    );
    let train_tokens = run.finished("tokenizer").and_then(|t| get(t.metrics(), "/train/n_tokens")).filter(|n| *n > 0.0);
    let rows = logs
        .iter()
        .map(|(stage, log)| {
            let m = run.stage(stage).map_or(&Value::Null, |s| s.metrics());
            let train = late_train_loss(log);
            let val = get(m, "/final_val_loss");
            let params = get(m, "/model_costs/params_total").or_else(|| get(m, "/params"));
            let gap = train.zip(val).map_or_else(|| "?".into(), |(t, v)| num(v - t));
            let per_param = get(m, "/tokens").zip(params).map_or_else(|| "?".into(), |(t, p)| num(t / p));
            let passes = get(m, "/tokens").zip(train_tokens).map_or_else(|| "?".into(), |(t, n)| num(t / n));
            vec![stage.clone(), train.map_or_else(|| "?".into(), num), val.map_or_else(|| "?".into(), num), gap, per_param, passes]
        })
        .collect();
    doc.table(&["stage", "late train loss", "final val loss", "val - train", "tokens per parameter", "passes over the train split"], rows);
}

/// Steps whose gradient norm exceeds three times the median of the previous 20 steps.
fn grad_spikes(log: &MetricsLog) -> (usize, f64, f64) {
    let norms: Vec<f64> = log.series("step", "grad_norm").into_iter().map(|p| p.1).collect();
    let mut spikes = 0;
    for idx in 20..norms.len() {
        let mut window = norms[idx - 20..idx].to_vec();
        window.sort_by(f64::total_cmp);
        if norms[idx] > 3.0 * window[10] {
            spikes += 1;
        }
    }
    let mut sorted = norms.clone();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied().unwrap_or(f64::NAN);
    (spikes, median, sorted.last().copied().unwrap_or(f64::NAN))
}

fn stability_vs_speed(doc: &mut Doc, run: &RunView, logs: &[(String, MetricsLog)]) {
    doc.heading(3, "Stability vs speed");
    if logs.is_empty() {
        doc.para("No pretraining stage has run.");
        return;
    }
    doc.para(
        "A higher learning rate learns faster until the gradient norm starts to spike. Spikes are steps whose norm exceeds \
         three times the median of the previous 20 steps. One run gives one point per family of loss against learning rate; \
         `cargo xtask sweep pretrain.decoder.lr=...` draws the curve.",
    );
    let rows = logs
        .iter()
        .map(|(stage, log)| {
            let m = run.stage(stage).map_or(&Value::Null, |s| s.metrics());
            let peak_lr = log.series("step", "lr").into_iter().map(|p| p.1).fold(f64::NAN, f64::max);
            let (spikes, median, max) = grad_spikes(log);
            vec![stage.clone(), num(peak_lr), num(median), num(max), spikes.to_string(), show(m, "/final_val_loss"), show(m, "/tokens_per_s")]
        })
        .collect();
    doc.table(&["stage", "peak lr", "median grad norm", "max grad norm", "spikes", "final val loss", "tokens/s"], rows);
}

fn depth_vs_width(doc: &mut Doc, run: &RunView) {
    doc.heading(3, "Sequential depth vs parallel width");
    doc.para(
        "The three families on the same reply task (speech -> next speech): the decoder generates replies token by token \
         (sft), the encoder-decoder reads the speech in parallel and generates (sft-seq2seq), the encoder only judges \
         a reply (sft-judge). Costs per family are under Compute vs memory.",
    );
    // The reply figures each stage reports, found by name wherever they sit in its metrics.
    let columns = ["val_reply_loss_per_token", "val_reply_bits_per_byte", "accuracy", "auc", "train_flops"];
    let rows = REPLY_STAGES
        .iter()
        .map(|(family, stage)| match run.finished(stage) {
            Some(record) => {
                let metrics = stage_metrics(record.metrics());
                let mut row = vec![family.to_string(), stage.to_string(), "done".into()];
                for column in columns {
                    row.push(reply_figure(&metrics, column).map_or_else(|| "-".into(), num));
                }
                let params = run.finished(&format!("pretrain-{family}")).and_then(|p| get(p.metrics(), "/model_costs/params_total"));
                row.push(params.map_or_else(|| "-".into(), |p| int(p as u64)));
                row.push(headline(record.metrics()));
                row
            }
            None => vec![family.to_string(), stage.to_string(), "not run".into()],
        })
        .collect();
    doc.table(
        &["family", "stage", "status", "reply loss/token", "reply bits/byte", "accuracy", "AUC", "training FLOPs", "params", "other metrics"],
        rows,
    );
}

/// The stage's own value of `column` (e.g. `val_reply_loss_per_token`): the shallowest metric
/// with that name, not one it reports about a reference (`decoder_sft/...`) or from before it.
fn reply_figure(metrics: &[StageMetric], column: &str) -> Option<f64> {
    const NOT_OWN: [&str; 6] = ["initial", "decoder", "encoder", "reference", "baseline", "before"];
    metrics
        .iter()
        .filter(|m| m.name.rsplit('/').next().is_some_and(|leaf| leaf == column || leaf.ends_with(&format!("_{column}"))))
        .filter(|m| !m.name.contains('/') || !NOT_OWN.iter().any(|w| m.name.split('/').next().is_some_and(|first| first.contains(w))))
        .min_by_key(|m| m.name.matches('/').count())
        .map(|m| m.after)
}

fn alignment_vs_capability(doc: &mut Doc, run: &RunView) {
    doc.heading(3, "Alignment vs capability");
    doc.para(
        "Validation bits per byte of the pretraining text (what the model knows) before and after post-training, beside the \
         stages' own alignment metrics; a rise in bits per byte after SFT or DPO is the alignment tax.",
    );
    let mut rows = Vec::new();
    for stage in ["pretrain-decoder", "sft", "dpo"] {
        let Some(record) = run.finished(stage) else {
            rows.push(vec![stage.to_owned(), "not run".into()]);
            continue;
        };
        let chosen: Vec<StageMetric> = stage_metrics(record.metrics())
            .into_iter()
            .filter(|m| ALIGNMENT_WORDS.iter().any(|w| m.name.contains(w)))
            .collect();
        if chosen.is_empty() {
            rows.push(vec![stage.to_owned(), "(no bits-per-byte or alignment metric)".into()]);
        }
        for m in chosen {
            rows.push(vec![stage.to_owned(), m.name, m.before.map_or_else(String::new, num), num(m.after)]);
        }
    }
    doc.table(&["stage", "metric", "before the stage", "after"], rows);
}

fn faithfulness_vs_fluency(doc: &mut Doc, extras: &Extras) -> Result<()> {
    doc.heading(3, "Faithfulness vs fluency");
    if extras.temperature_sweep.is_empty() {
        doc.para(
            "Not measured on this run: the temperature sweep samples replies from the run's decoders and needs the inference \
             engine (cascade-infer); see the notes at the end for why it did not run.",
        );
        return Ok(());
    }
    doc.para(
        "Replies sampled at several temperatures: the model's own mean log-likelihood per token of its samples (how typical, \
         and so how faithful to what it learnt, they are) against their diversity (distinct 2-grams). Raising the temperature \
         buys diversity with likelihood.",
    );
    let rows = extras
        .temperature_sweep
        .iter()
        .map(|p| vec![p.model.clone(), num(p.temperature), num(p.mean_log_likelihood), num(p.distinct_2), p.n_samples.to_string()])
        .collect();
    doc.table(&["model", "temperature", "mean log-likelihood / token", "distinct 2-grams", "samples"], rows);
    let mut models: Vec<&str> = extras.temperature_sweep.iter().map(|p| p.model.as_str()).collect();
    models.sort_unstable();
    models.dedup();
    let mut chart = models.iter().enumerate().fold(
        Chart::new("Faithfulness vs fluency: temperature sweep", "distinct 2-grams of the samples", "mean log-likelihood per token (nats)"),
        |chart, (idx, model)| {
            let mut points: Vec<(f64, f64, f64)> = extras
                .temperature_sweep
                .iter()
                .filter(|p| p.model == *model)
                .map(|p| (p.distinct_2, p.mean_log_likelihood, p.temperature))
                .collect();
            points.sort_by(|a, b| a.0.total_cmp(&b.0));
            let labels = points.iter().map(|p| format!("T={}", crate::plots::short_number(p.2))).collect();
            let xy = points.iter().map(|p| (p.0, p.1)).collect();
            chart.with(Series::new(model.to_string(), xy, Mark::LinePoints, idx).labelled(labels))
        },
    );
    chart.legend = crate::plots::Legend::LowerLeft;
    let svg = draw_charts("temperature-sweep.svg", &[chart])?;
    doc.figure("temperature-sweep.svg", svg, "Each point is one temperature; lower temperatures sit top-left (likely, repetitive)");
    Ok(())
}
