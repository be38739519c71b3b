//! The report on a small synthetic run directory (the files the real stages write, in their
//! formats): every stage is a row, missing stages say `not run`, an unknown stage is read
//! generically, and every SVG parses as XML.

use std::path::Path;

use cascade_core::{InputRecord, RunLayout, StageDir};
use cascade_report::{CostVariant, Extras, TemperaturePoint, write_report};
use serde_json::json;

fn stage(layout: &RunLayout, name: &str, inputs: &[&str], metrics: serde_json::Value, files: &[(&str, String)]) {
    let dir = StageDir::begin(layout, name).unwrap();
    for (file, text) in files {
        std::fs::write(dir.path().join(file), text).unwrap();
    }
    let inputs = inputs.iter().map(|i| InputRecord::new(*i, "0".repeat(64))).collect();
    dir.commit("c", inputs, metrics).unwrap();
}

fn metrics_jsonl(steps: u64, with_bits: bool) -> String {
    (1..=steps)
        .map(|step| {
            let mut record = json!({"step": step, "tokens": step * 512, "train_loss": 7.0 - step as f64 * 0.05, "lr": 1e-3, "grad_norm": 1.0 + (step % 3) as f64, "tokens_per_s": 1000.0, "wall_s": step as f64});
            if step % 10 == 0 {
                record["val_loss"] = json!(7.2 - step as f64 * 0.05);
                if with_bits {
                    record["val_bits_per_byte"] = json!(3.0 - step as f64 * 0.02);
                } else {
                    record["val_accuracy"] = json!(step as f64 / 100.0);
                }
            }
            record.to_string() + "\n"
        })
        .collect()
}

fn synthetic_run(root: &Path) {
    let layout = RunLayout::new(root);
    std::fs::create_dir_all(root).unwrap();
    let data_metrics = json!({
        "files": 3, "split": {"train": {"docs": 2, "bytes": 2000}, "val": {"docs": 2, "bytes": 30}},
        "filters": {"min_words": {"docs": 1, "bytes": 10, "words": 2}},
        "exact_duplicates": {"docs": 1, "bytes": 100}, "near_duplicates": {"docs": 1, "bytes": 90}, "same_work_duplicates": {"docs": 0, "bytes": 0},
        "bad_inputs": {"counts": {"empty_file": 1}},
        "steps": [{"step": "filter", "docs_in": 6, "docs_out": 5, "bytes_in": 2230, "bytes_out": 2220}],
        "near_dedup": {"bands": 14, "rows": 8, "threshold": 0.8, "candidate_pairs": 3, "confirmed_pairs": 1},
        "same_work": {"enabled": true, "threshold": 0.08}
    });
    let clusters = [
        json!({"kind": "near_duplicate", "keeper": "a", "members": [{"id": "a", "estimated": 1.0, "exact": null}, {"id": "b", "estimated": 0.9, "exact": 0.87}], "split": "train"}),
        json!({"kind": "same_work", "keeper": "c", "members": [{"id": "c", "estimated": 1.0, "exact": null}, {"id": "d", "estimated": 0.15, "exact": null}], "split": "val"}),
    ]
    .map(|c| c.to_string() + "\n")
    .concat();
    let val = [json!({"id": "c", "text": "x".repeat(12), "source": "c.txt"}), json!({"id": "d", "text": "y".repeat(18), "source": "d.txt"})]
        .map(|d| d.to_string() + "\n")
        .concat();
    stage(&layout, "data", &["corpus"], data_metrics, &[("clusters.jsonl", clusters), ("val.jsonl", val)]);
    let header = json!({"format": "cascade-tokens", "version": 1, "dtype": "u16", "vocab_size": 300, "tokenizer": "f", "n_tokens": 9, "doc_starts": [0, 4]});
    let tokenizer_metrics = json!({"vocab_size": 300, "n_merges": 40, "val_bytes_per_token": 3.33, "train": {"n_tokens": 600}, "val": {"n_tokens": 9, "tokens_per_document": 4.5, "max_document_tokens": 5}});
    stage(&layout, "tokenizer", &["data/train.jsonl", "data/val.jsonl"], tokenizer_metrics, &[("val.tokens.json", header.to_string())]);
    let costs = json!({"params_total": 10000, "params_embedding": 4000, "train_flops_per_token": 60000.0, "kv_cache_bytes_per_token": 1024, "cross_kv_bytes_per_source_token": 0});
    let decoder = json!({"steps": 30, "tokens": 15360, "stop_reason": "max_steps", "initial_val_loss": 7.1, "final_val_loss": 5.7, "val_bits_per_byte": 2.4, "tokens_per_s": 1000.0, "model_costs": costs});
    stage(&layout, "pretrain-decoder", &["tokenizer/train.tokens"], decoder, &[("metrics.jsonl", metrics_jsonl(30, true))]);
    let encoder = json!({"steps": 20, "tokens": 10240, "stop_reason": "max_wall", "initial_val_loss": 7.0, "final_val_loss": 6.0, "val_accuracy": 0.2, "model_costs": costs});
    stage(&layout, "pretrain-encoder", &["tokenizer/train.tokens"], encoder, &[("metrics.jsonl", metrics_jsonl(20, false))]);
    // A stage the report has no special case for, with DPO-like metrics.
    let dpo_log = (1..=5).map(|s| json!({"step": s, "loss": 0.69 - 0.01 * s as f64, "rewards/margins": 0.1 * s as f64}).to_string() + "\n").collect();
    stage(&layout, "dpo", &["sft/model.safetensors"], json!({"val": {"reward_accuracy": 0.7}, "alignment_tax_bits_per_byte": 0.01}), &[("metrics.jsonl", dpo_log)]);
    std::fs::write(
        root.join("run.log"),
        "2026-01-01T00:00:00Z   data                     up to date\n2026-01-01T00:00:00Z   tokenizer                running (config changed)\n",
    )
    .unwrap();
}

#[test]
fn every_stage_is_a_row_and_every_plot_is_well_formed_svg() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("run");
    synthetic_run(&root);
    let extras = Extras {
        cost_variants: vec![CostVariant {
            family: "decoder".into(),
            n_heads: 4,
            n_kv_heads: 1,
            configured: false,
            params_total: 9000,
            train_flops_per_token: 59000.0,
            kv_cache_bytes_per_token: 256,
            cross_kv_bytes_per_source_token: 0,
        }],
        temperature_sweep: [0.5, 1.0].map(|t| TemperaturePoint { model: "sft".into(), temperature: t, mean_log_likelihood: -1.0 - t, distinct_2: t / 2.0, n_samples: 4 }).to_vec(),
        notes: vec!["samples skipped in this test".into()],
        ..Extras::default()
    };
    let out = dir.path().join("report");
    let stages = ["data", "tokenizer", "pretrain-decoder", "pretrain-encoder", "pretrain-encoder-decoder", "sft"];
    let summary = write_report(&root, &stages, &extras, &out).unwrap();
    assert_eq!(summary.stages_done, ["data", "tokenizer", "pretrain-decoder", "pretrain-encoder", "dpo"]);
    assert_eq!(summary.stages_not_run, ["pretrain-encoder-decoder", "sft"]);

    let md = std::fs::read_to_string(out.join("report.md")).unwrap();
    for needle in [
        "| data | done | reused |",
        "| tokenizer | done | fresh (config changed) |",
        "| pretrain-encoder-decoder | not run |",
        "| sft | not run |",
        "| dpo | done | unknown |",
        "val/reward_accuracy=0.700",
        "2.400 bits/byte",
        "exact dup 1 docs",
        "samples skipped in this test",
    ] {
        assert!(md.contains(needle), "`{needle}` not in report.md:\n{md}");
    }
    let html = std::fs::read_to_string(out.join("report.html")).unwrap();
    assert!(html.contains("<svg") && !html.contains("src=\"http"), "the HTML is self-contained");
    for expected in ["pretrain-decoder-loss.svg", "optimizer.svg", "dedup-s-curve.svg", "tokenizer-bytes-per-token.svg", "dpo-metrics.svg", "compute-vs-memory.svg", "temperature-sweep.svg"] {
        assert!(summary.plots.iter().any(|p| p == expected), "{expected} missing from {:?}", summary.plots);
    }
    for plot in &summary.plots {
        let svg = std::fs::read_to_string(out.join("plots").join(plot)).unwrap();
        roxmltree::Document::parse(&svg).unwrap_or_else(|e| panic!("{plot} is not well-formed: {e}"));
        assert!(md.contains(&format!("(plots/{plot})")), "{plot} not linked");
    }
}

#[test]
fn an_empty_run_reports_every_stage_as_not_run_and_a_missing_run_is_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let summary = write_report(dir.path(), &["data", "tokenizer"], &Extras::default(), &dir.path().join("report")).unwrap();
    assert_eq!(summary.stages_not_run, ["data", "tokenizer"]);
    let md = std::fs::read_to_string(dir.path().join("report/report.md")).unwrap();
    assert!(md.contains("| data | not run |") && md.contains("not measured on this run") || md.contains("Not measured on this run"), "{md}");
    let err = write_report(&dir.path().join("nope"), &["data"], &Extras::default(), dir.path()).unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("cargo xtask cascade"), "{err}");
}
