//! The stages in cascade order, each adapting one stage crate to the runner: its config
//! section, its inputs (the corpus or upstream outputs, by hash) and its entry function.

use std::path::Path;

use anyhow::{Context, Result};
use cascade_core::hash::config_hash;
use cascade_core::{InputRecord, StageManifest};
use serde_json::Value;

use crate::runner::Ctx;

/// The stage names in cascade order.
pub const STAGE_NAMES: &[&str] = &["data", "tokenizer", "pretrain-decoder", "pretrain-encoder", "pretrain-encoder-decoder", "sft", "sft-judge", "sft-seq2seq", "dpo", "report"];

/// One stage as the runner sees it.
pub trait Stage {
    /// Directory and command name.
    fn name(&self) -> &'static str;
    /// Hash of the config section that determines the stage's outputs.
    fn config_hash(&self, ctx: &Ctx) -> String;
    /// Hashes of what the stage reads; fails when an upstream stage has not run.
    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>>;
    /// Runs the stage into `out_dir`; returns its metrics for the manifest.
    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value>;
    /// A one-line summary of the metrics: what was kept, lost and what it cost.
    fn summary(&self, metrics: &Value) -> String;
    /// Whether an interrupted or failed run leaves its work directory for the next run to
    /// continue from (training stages with checkpoints). The stage finds its own checkpoints
    /// in `out_dir`.
    fn resumable(&self) -> bool {
        false
    }
}

/// Every stage, in cascade order.
pub fn all() -> Vec<Box<dyn Stage>> {
    vec![
        Box::new(Data),
        Box::new(Tokenizer),
        Box::new(crate::pretrain::Pretrain(crate::pretrain::Arch::Decoder)),
        Box::new(crate::pretrain::Pretrain(crate::pretrain::Arch::Encoder)),
        Box::new(crate::pretrain::Pretrain(crate::pretrain::Arch::EncoderDecoder)),
        Box::new(crate::sft::Sft),
        Box::new(crate::reply_models::SftJudge),
        Box::new(crate::reply_models::SftSeq2Seq),
        Box::new(crate::dpo::Dpo),
        // The report reads every stage before it: it stays last.
        Box::new(crate::report::Report),
    ]
}

/// Input records for `files` of the finished stage `stage`, read from its manifest.
pub fn upstream(ctx: &Ctx, stage: &str, files: &[&str]) -> Result<Vec<InputRecord>> {
    let dir = ctx.request.layout.stage_dir(stage);
    let manifest = StageManifest::load(&dir)?.with_context(|| {
        format!("{} has no manifest: run the {stage} stage first (`cargo xtask {stage}`)", dir.display())
    })?;
    files
        .iter()
        .map(|file| {
            let record = manifest
                .output(file)
                .with_context(|| format!("{}: the {stage} stage wrote no {file}", StageManifest::path_in(&dir).display()))?;
            Ok(InputRecord::new(format!("{stage}/{file}"), record.sha256.clone()))
        })
        .collect()
}

pub fn metric(metrics: &Value, pointer: &str) -> String {
    match metrics.pointer(pointer) {
        Some(Value::Number(n)) if n.is_f64() => format!("{:.3}", n.as_f64().unwrap_or(f64::NAN)),
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
        None => "?".into(),
    }
}

struct Data;

impl Stage for Data {
    fn name(&self) -> &'static str {
        "data"
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        config_hash(&ctx.request.config.data)
    }

    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        Ok(vec![InputRecord::new("corpus", ctx.request.corpus.fingerprint()?)])
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let corpus = ctx.request.corpus.materialize()?;
        let options = cascade_data::RunOptions { strict: ctx.request.stage_options.strict };
        let config = &ctx.request.config.data;
        let report = match ctx.request.stage_options.merge_shards {
            None => cascade_data::run(config, &corpus, out_dir, &options, &ctx.bars)?,
            Some(count) => {
                let layout = &ctx.request.layout;
                let shard_dirs: Vec<_> = (0..count).map(|idx| crate::runner::data_shard_dir(layout, idx, count)).collect();
                cascade_data::merge(config, &corpus, &shard_dirs, out_dir, &options, &ctx.bars)?
            }
        };
        Ok(serde_json::to_value(report)?)
    }

    fn summary(&self, metrics: &Value) -> String {
        let kept = |side: &str| metric(metrics, &format!("/split/{side}/docs"));
        format!(
            "{} files -> {} train + {} val docs; removed {} by filters, {} exact and {} near duplicates",
            metric(metrics, "/files"),
            kept("train"),
            kept("val"),
            metrics.pointer("/filters").and_then(Value::as_object).map_or(0, |filters| {
                filters.values().filter_map(|r| r.pointer("/docs").and_then(Value::as_u64)).sum::<u64>()
            }),
            metric(metrics, "/exact_duplicates/docs"),
            metric(metrics, "/near_duplicates/docs"),
        )
    }
}

struct Tokenizer;

impl Stage for Tokenizer {
    fn name(&self) -> &'static str {
        "tokenizer"
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        config_hash(&ctx.request.config.tokenizer)
    }

    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        upstream(ctx, "data", &["train.jsonl", "val.jsonl"])
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let data = |file| ctx.request.layout.stage_file("data", file);
        let report = cascade_tokenizer::run(
            &ctx.request.config.tokenizer,
            &data("train.jsonl"),
            &data("val.jsonl"),
            out_dir,
            &ctx.bars,
        )?;
        Ok(serde_json::to_value(report)?)
    }

    fn summary(&self, metrics: &Value) -> String {
        format!("vocab {}, {} bytes/token on val", metric(metrics, "/vocab_size"), metric(metrics, "/val_bytes_per_token"))
    }
}
