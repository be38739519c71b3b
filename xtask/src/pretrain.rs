//! The three pretraining stages (`pretrain-decoder`, `pretrain-encoder`,
//! `pretrain-encoder-decoder`): each trains one family on the tokenizer's shards with its
//! objective, through `cascade_pretrain::run`.

use std::path::Path;

use anyhow::{Context, Result, bail};
use cascade_core::hash::config_hash;
use cascade_core::{InputRecord, Progress as _, StageManifest, Tokenizer as _};
use cascade_model::ModelConfig;
use cascade_pretrain::{PretrainConfig, PretrainJob, SpecialIds};
use cascade_tokenizer::BpeTokenizer;
use cascade_tokenizer::special;
use serde_json::Value;

use crate::runner::Ctx;
use crate::stages::{Stage, metric, upstream};

/// Which family a pretraining stage trains.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Arch {
    /// Causal LM.
    Decoder,
    /// Masked LM.
    Encoder,
    /// Span corruption.
    EncoderDecoder,
}

impl Arch {
    /// The stage's name.
    pub fn stage_name(self) -> &'static str {
        match self {
            Self::Decoder => "pretrain-decoder",
            Self::Encoder => "pretrain-encoder",
            Self::EncoderDecoder => "pretrain-encoder-decoder",
        }
    }
}

/// The pretraining stage of one family.
pub struct Pretrain(pub Arch);

impl Pretrain {
    fn sections<'a>(&self, ctx: &'a Ctx) -> (ModelConfig, &'a PretrainConfig) {
        let config = &ctx.request.config;
        match self.0 {
            Arch::Decoder => (ModelConfig::Decoder(config.model.decoder.clone()), &config.pretrain.decoder),
            Arch::Encoder => (ModelConfig::Encoder(config.model.encoder.clone()), &config.pretrain.encoder),
            Arch::EncoderDecoder => {
                (ModelConfig::EncoderDecoder(config.model.encoder_decoder.clone()), &config.pretrain.encoder_decoder)
            }
        }
    }
}

/// The special ids the objectives need, looked up by name in the run's tokenizer.
fn special_ids(tokenizer: &BpeTokenizer, path: &Path) -> Result<SpecialIds> {
    let id = |name: &str| {
        tokenizer.special_token(name).with_context(|| format!("{}: no special token {name}", path.display()))
    };
    let (pad, mask, endoftext) = (id(special::PAD)?, id(special::MASK)?, id(special::ENDOFTEXT)?);
    let sentinels: Vec<u32> =
        (0..).map_while(|idx| tokenizer.special_token(&special::sentinel(idx))).collect();
    let named = [pad, mask, endoftext];
    let others = tokenizer
        .special_tokens()
        .iter()
        .map(|(_, id)| *id)
        .filter(|id| !named.contains(id) && !sentinels.contains(id))
        .collect();
    Ok(SpecialIds { pad, mask, endoftext, sentinels, others })
}

impl Stage for Pretrain {
    fn name(&self) -> &'static str {
        self.0.stage_name()
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        let (model, pretrain) = self.sections(ctx);
        config_hash(&serde_json::json!({ "model": model, "pretrain": pretrain }))
    }

    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        upstream(
            ctx,
            "tokenizer",
            &["tokenizer.json", "train.tokens", "train.tokens.json", "val.tokens", "val.tokens.json"],
        )
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let layout = &ctx.request.layout;
        let tokenizer_path = layout.stage_file("tokenizer", "tokenizer.json");
        let tokenizer = BpeTokenizer::load_hf(&tokenizer_path)?;
        let (model, config) = self.sections(ctx);
        // Every model section was given the tokenizer config's vocabulary size (config.rs).
        let model_vocab = ctx.request.config.tokenizer.vocab_size as usize;
        if tokenizer.vocab_size() > model_vocab {
            bail!(
                "{} has {} ids but the model's vocabulary is {model_vocab}",
                tokenizer_path.display(),
                tokenizer.vocab_size()
            );
        }
        let special = special_ids(&tokenizer, &tokenizer_path)?;
        // Bits per byte needs the text bytes behind each validation token, separators included.
        let tokenizer_manifest = StageManifest::load(&layout.stage_dir("tokenizer"))?
            .with_context(|| format!("{} has no manifest", layout.stage_dir("tokenizer").display()))?;
        let val = &tokenizer_manifest.metrics["val"];
        let val_bytes_per_token = match (val["n_text_bytes"].as_f64(), val["n_tokens"].as_f64()) {
            (Some(bytes), Some(tokens)) if tokens > 0.0 => Some(bytes / tokens),
            _ => None,
        };
        let device = cascade_model::parse_device(ctx.request.device.name())?;
        ctx.bars.begin("matmul peak", None, "runs");
        let peak_flops = cascade_pretrain::measure_matmul_peak_flops(&device, 512, 3);
        ctx.bars.end();
        // An interrupted run of this stage left its checkpoint in the kept work directory.
        let checkpoint = out_dir.join("checkpoint");
        let resume_from = checkpoint.join(cascade_pretrain::STATE_FILE).is_file().then_some(checkpoint);
        let job = PretrainJob {
            model: &model,
            config,
            train_tokens: &layout.stage_file("tokenizer", "train.tokens"),
            val_tokens: &layout.stage_file("tokenizer", "val.tokens"),
            val_bytes_per_token,
            special: &special,
            out_dir,
            resume_from: resume_from.as_deref(),
            peak_flops: Some(peak_flops),
        };
        let report = cascade_pretrain::run(&job, &device, &ctx.bars)?;
        // The architecture's costs (parameters, FLOPs and KV-cache bytes per token) beside what
        // training achieved, so the run report can put compute against memory per family.
        let mut metrics = serde_json::to_value(report)?;
        metrics["model_costs"] = serde_json::to_value(model.costs())?;
        Ok(metrics)
    }

    fn resumable(&self) -> bool {
        true
    }

    fn summary(&self, metrics: &Value) -> String {
        let bits_per_byte = match metrics.get("val_bits_per_byte") {
            Some(Value::Number(_)) => format!(", {} bits/byte", metric(metrics, "/val_bits_per_byte")),
            _ => format!(", accuracy {}", metric(metrics, "/val_accuracy")),
        };
        format!(
            "{} steps, {} tokens ({} tok/s); val loss {} -> {}{bits_per_byte}; stopped by {}",
            metric(metrics, "/steps"),
            metric(metrics, "/tokens"),
            metric(metrics, "/tokens_per_s"),
            metric(metrics, "/initial_val_loss"),
            metric(metrics, "/final_val_loss"),
            metric(metrics, "/stop_reason"),
        )
    }
}
