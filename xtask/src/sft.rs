//! The `sft` stage: the pretrained decoder fine-tuned on conversations (the user's JSONL or the
//! corpus dialogue) through `cascade_posttrain`, with the effects measured before and after:
//! reply loss on validation conversations, bits per byte on the pretraining validation split
//! (the alignment tax) and the share of sampled replies that close their turn.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cascade_core::hash::{config_hash, sha256_file};
use cascade_core::{ChatTemplate, InputRecord, Progress as _, StageManifest, Tokenizer as _};
use cascade_model::Decoder;
use cascade_posttrain::batch::{SftExample, encode_conversations};
use cascade_infer::{Engine, FinishReason, LanguageModel, SamplingParams};
use cascade_posttrain::SftConfig;
use cascade_posttrain::replies::{FormatPrompt, FormatReport, format_prompts};
use cascade_posttrain::sft::{ReplyEval, eval_batches, evaluate_replies, reply_bytes};
use cascade_posttrain::{SftJob, load_conversations, write_conversations};
use cascade_tokenizer::{BpeTokenizer, special};
use serde_json::{Value, json};

use crate::runner::Ctx;
use crate::stages::{Stage, metric, upstream};

/// The decoder checkpoint SFT starts from.
const BASE_STAGE: &str = "pretrain-decoder";

/// `sft`: supervised fine-tuning of the pretrained decoder into a chat model.
pub struct Sft;

/// Evenly spaced `n` of `items` (all when `n` is 0 or at least their number).
fn spread<T: Clone>(items: &[T], n: usize) -> Vec<T> {
    if n == 0 || n >= items.len() {
        return items.to_vec();
    }
    (0..n).map(|i| items[i * items.len() / n].clone()).collect()
}

/// Reply loss per token and bits per reply byte.
fn reply_figures(eval: &ReplyEval, bytes: u64) -> Value {
    let bits_per_byte = if bytes > 0 { eval.loss * eval.tokens as f64 / std::f64::consts::LN_2 / bytes as f64 } else { f64::NAN };
    json!({ "loss_per_token": eval.loss, "bits_per_byte": bits_per_byte, "accuracy": eval.accuracy, "tokens": eval.tokens, "bytes": bytes })
}

impl Stage for Sft {
    fn name(&self) -> &'static str {
        "sft"
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        // The pretraining decoder section sets the bits-per-byte windows measured here.
        let config = &ctx.request.config;
        config_hash(&json!({ "sft": config.sft, "pretrain_eval": config.pretrain.decoder }))
    }

    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        let mut inputs = upstream(ctx, "data", &["train.jsonl", "val.jsonl"])?;
        inputs.extend(upstream(ctx, "tokenizer", &["tokenizer.json", "val.tokens", "val.tokens.json"])?);
        inputs.extend(upstream(ctx, BASE_STAGE, &["model.safetensors", "model.config.json"])?);
        if let Some((train, val)) = ctx.request.config.sft.data.user_files() {
            for path in [train, val] {
                let (sha256, _) = sha256_file(path).with_context(|| format!("[sft.data] file {}", path.display()))?;
                inputs.push(InputRecord::new(path.display().to_string(), sha256));
            }
        }
        Ok(inputs)
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let layout = &ctx.request.layout;
        let config = &ctx.request.config.sft;
        config.validate()?;
        let tokenizer_path = layout.stage_file("tokenizer", "tokenizer.json");
        let tokenizer = BpeTokenizer::load_hf(&tokenizer_path)?;
        let template = ChatTemplate::new(&tokenizer).with_context(|| tokenizer_path.display().to_string())?;
        let pad_id = tokenizer
            .special_token(special::PAD)
            .with_context(|| format!("{}: no special token {}", tokenizer_path.display(), special::PAD))?;

        let data = load_conversations(&config.data, &layout.stage_file("data", "train.jsonl"), &layout.stage_file("data", "val.jsonl"))?;
        write_conversations(&out_dir.join("sft_train.jsonl"), &data.train)?;
        write_conversations(&out_dir.join("sft_val.jsonl"), &data.val)?;

        let weights = layout.stage_file(BASE_STAGE, "model.safetensors");
        let device = cascade_model::parse_device(ctx.request.device.name())?;
        let base: Decoder = cascade_model::load_safetensors(&weights, &device)?;
        let seq_len = config.train.seq_len;
        if seq_len > base.config().max_seq_len {
            bail!("[sft.train] seq_len = {seq_len} is longer than the decoder's max_seq_len = {}", base.config().max_seq_len);
        }
        let (train, train_encoding) = encode_conversations(&template, &tokenizer, &data.train, seq_len, config.truncation);
        let (val_all, val_encoding) = encode_conversations(&template, &tokenizer, &data.val, seq_len, config.truncation);
        let val: Vec<SftExample> = spread(&val_all, config.eval_conversations);
        if train.is_empty() || val.is_empty() {
            bail!(
                "no conversation fits [sft.train] seq_len = {seq_len} ({} train, {} val kept); raise seq_len, lower the [sft.data] character limits or set truncation = \"drop_leading_turns\"",
                train.len(),
                val.len()
            );
        }
        let val_reply_bytes = reply_bytes(&tokenizer, &template, &val);
        let val_batches = eval_batches(&val, &config.train, config.pack, pad_id);
        let pretrain_eval = &ctx.request.config.pretrain.decoder;
        let val_tokens = layout.stage_file("tokenizer", "val.tokens");
        let bytes_per_token = val_bytes_per_token(ctx)?;
        let prompts = format_prompts(&template, &tokenizer, &data.val, config.sample_prompts);
        let shared_tokenizer: Arc<dyn cascade_core::Tokenizer> = Arc::new(BpeTokenizer::load_hf(&tokenizer_path)?);

        let measure = |model: &Decoder, label: &str| -> Result<(ReplyEval, Value, FormatReport)> {
            ctx.bars.begin(&format!("sft: measure {label}"), None, "checks");
            let replies = evaluate_replies(model, &val_batches, &device)?;
            let lm = cascade_pretrain::evaluate_causal_lm(model, &val_tokens, pretrain_eval, &device)?;
            let bits_per_byte = bytes_per_token.map(|bpt| lm.loss / std::f64::consts::LN_2 / bpt);
            let format = sample_format(model, &shared_tokenizer, &template, &prompts, config, &device)?;
            ctx.bars.end();
            Ok((replies, json!({ "loss": lm.loss, "bits_per_byte": bits_per_byte, "accuracy": lm.accuracy, "windows": lm.windows }), format))
        };
        let (replies_before, pretrain_before, format_before) = measure(&base, "before")?;

        // An interrupted run of this stage left its checkpoint in the kept work directory.
        let checkpoint = out_dir.join("checkpoint");
        let resume_from = checkpoint.join(cascade_pretrain::STATE_FILE).is_file().then_some(checkpoint);
        let job = SftJob {
            config: &config.train,
            pack: config.pack,
            init_weights: &weights,
            train: &train,
            val: &val,
            pad_id,
            out_dir,
            resume_from: resume_from.as_deref(),
        };
        let (tuned, report) = cascade_posttrain::train_sft(&job, &device, &ctx.bars)?;
        let (replies_after, pretrain_after, format_after) = measure(&tuned, "after")?;

        let before = reply_figures(&replies_before, val_reply_bytes);
        let after = reply_figures(&replies_after, val_reply_bytes);
        Ok(json!({
            "steps": report.steps,
            "tokens": report.tokens,
            "tokens_per_s": report.tokens_per_s,
            "train_flops": report.train_flops,
            "val_reply_loss_per_token_before": before["loss_per_token"],
            "val_reply_loss_per_token": after["loss_per_token"],
            "val_reply_bits_per_byte_before": before["bits_per_byte"],
            "val_reply_bits_per_byte": after["bits_per_byte"],
            "pretrain_val_bits_per_byte_before": pretrain_before["bits_per_byte"],
            "pretrain_val_bits_per_byte_after": pretrain_after["bits_per_byte"],
            "format_ended_turn_before": format_before.fraction_ended_turn,
            "format_ended_turn_after": format_after.fraction_ended_turn,
            "effects": {
                "reply_loss": { "before": before, "after": after },
                "pretrain_val": { "before": pretrain_before, "after": pretrain_after },
                "format": { "max_reply_tokens": config.max_reply_tokens, "temperature": config.temperature, "before": format_before, "after": format_after },
            },
            "dataset": {
                "source": data.report,
                "train_conversations": data.train.len(),
                "val_conversations": data.val.len(),
                "val_conversations_evaluated": val.len(),
                "train_encoding": train_encoding,
                "val_encoding": val_encoding,
            },
            "sft": report,
            "model_costs": base.config().costs(),
        }))
    }

    fn resumable(&self) -> bool {
        true
    }

    fn summary(&self, metrics: &Value) -> String {
        format!(
            "{} steps, {} tok/s; reply loss {} -> {}; ended turn {} -> {}; pretrain bits/byte {} -> {}",
            metric(metrics, "/steps"),
            metric(metrics, "/tokens_per_s"),
            metric(metrics, "/val_reply_loss_per_token_before"),
            metric(metrics, "/val_reply_loss_per_token"),
            metric(metrics, "/format_ended_turn_before"),
            metric(metrics, "/format_ended_turn_after"),
            metric(metrics, "/pretrain_val_bits_per_byte_before"),
            metric(metrics, "/pretrain_val_bits_per_byte_after"),
        )
    }
}

/// The format check with cascade-infer's batched engine: one reply per prompt, stopping only on
/// `<|end_of_turn|>` (a reply that ends the document instead has not closed its turn).
fn sample_format(
    model: &Decoder,
    tokenizer: &Arc<dyn cascade_core::Tokenizer>,
    template: &ChatTemplate,
    prompts: &[FormatPrompt],
    config: &SftConfig,
    device: &cascade_model::burn::prelude::Device,
) -> Result<FormatReport> {
    let engine = Engine::new(LanguageModel::Decoder(model.clone()), Arc::clone(tokenizer), device.clone());
    let max_prompt_len = engine.model().max_prompt_len();
    let sampling = SamplingParams { temperature: config.temperature as f32, seed: config.train.seed, ..Default::default() };
    let fits: Vec<usize> = (0..prompts.len()).filter(|&i| prompts[i].ids.len() < max_prompt_len).collect();
    let requests: Vec<_> = fits
        .iter()
        .map(|&i| {
            let mut request = engine.request(prompts[i].ids.clone(), sampling.clone(), config.max_reply_tokens);
            request.stop_token_ids = vec![template.end_of_turn];
            request
        })
        .collect();
    let completions = engine.generate_all(&requests)?;
    let mut replies: Vec<Option<(Vec<u32>, bool)>> = vec![None; prompts.len()];
    for (&i, completion) in fits.iter().zip(completions) {
        let ended = completion.finish_reason == FinishReason::StopToken(template.end_of_turn);
        let mut ids = completion.tokens;
        if ended {
            ids.push(template.end_of_turn);
        }
        replies[i] = Some((ids, ended));
    }
    Ok(FormatReport::tally(prompts, &replies, template, tokenizer.as_ref()))
}

/// Bytes of validation text per validation token, from the tokenizer stage's manifest.
fn val_bytes_per_token(ctx: &Ctx) -> Result<Option<f64>> {
    let dir = ctx.request.layout.stage_dir("tokenizer");
    let manifest = StageManifest::load(&dir)?.with_context(|| format!("{} has no manifest", dir.display()))?;
    let val = &manifest.metrics["val"];
    Ok(match (val["n_text_bytes"].as_f64(), val["n_tokens"].as_f64()) {
        (Some(bytes), Some(tokens)) if tokens > 0.0 => Some(bytes / tokens),
        _ => None,
    })
}
