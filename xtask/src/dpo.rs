//! The `dpo` stage: the SFT decoder trained with DPO against itself frozen (reference
//! log-probabilities computed once, stored in `reference_logps.jsonl`), on the user's preference
//! files or on default pairs from the SFT conversations: `chosen` is the real next speech,
//! `rejected` the SFT model's own sampled reply (or another conversation's reply). Measured:
//! held-out reward accuracy and margin before/after, the win rate of DPO over SFT replies under
//! the reply judge, the alignment tax (pretraining bits per byte, distinct-n of replies) and the
//! sequence-level KL to the reference.
//!
//! Default pairs, documented and seeded: training prompts are a seeded subset of
//! `sft/sft_train.jsonl` (`[dpo.pairs] train_pairs`), held-out prompts a seeded subset of
//! `sft/sft_val.jsonl` (`val_pairs`), which neither SFT nor DPO trains on.

use std::collections::HashSet;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use cascade_core::hash::{config_hash, sha256_file};
use cascade_core::{ChatTemplate, InputRecord, Message, Progress as _, StageManifest, Tokenizer};
use cascade_infer::{Engine, FinishReason, LanguageModel, SamplingParams};
use cascade_model::Decoder;
use cascade_posttrain::batch::SftExample;
use cascade_posttrain::dpo::{example_logps, pair_logps, write_reference_logps};
use cascade_posttrain::preference::seeded_subset;
use cascade_posttrain::{
    Conversation, DpoConfig, DpoJob, PreferencePair, ReadMode, RejectedSource, ReplyJudge, encode_pairs, mismatched_pairs,
    read_conversations, read_pairs, write_pairs,
};
use cascade_tokenizer::{BpeTokenizer, special};
use serde_json::{Value, json};

use crate::runner::Ctx;
use crate::stages::{Stage, metric, upstream};

/// `dpo`: preference optimization of the SFT decoder.
pub struct Dpo;

/// One sampled reply: its token ids (stop token excluded), text and whether it ended its turn.
struct Reply {
    tokens: Vec<u32>,
    text: String,
    ended_turn: bool,
}

/// Samples one reply per prompt (`None` where the prompt leaves no room), request `i` seeded
/// with `seed + i`: the same prompts and seeds give the SFT and the DPO model the same draws.
fn sample_replies(engine: &Engine, prompts: &[Vec<u32>], config: &DpoConfig, seed: u64, end_of_turn: u32) -> Result<Vec<Option<Reply>>> {
    let max_prompt = engine.model().max_prompt_len();
    let fitting: Vec<usize> = (0..prompts.len()).filter(|&i| !prompts[i].is_empty() && prompts[i].len() < max_prompt).collect();
    let requests: Vec<_> = fitting
        .iter()
        .map(|&i| {
            let sampling = SamplingParams { temperature: config.temperature as f32, seed: seed.wrapping_add(i as u64), ..Default::default() };
            engine.request(prompts[i].clone(), sampling, config.max_reply_tokens)
        })
        .collect();
    let mut out: Vec<Option<Reply>> = prompts.iter().map(|_| None).collect();
    for chunk in fitting.chunks(16).zip(requests.chunks(16)) {
        for (&i, completion) in chunk.0.iter().zip(engine.generate_all(chunk.1)?) {
            let ended_turn = completion.finish_reason == FinishReason::StopToken(end_of_turn);
            out[i] = Some(Reply { tokens: completion.tokens, text: completion.text, ended_turn });
        }
    }
    Ok(out)
}

/// Distinct-n: unique word n-grams over all n-grams of `texts` (0 when there are none).
fn distinct_n(texts: &[&str], n: usize) -> f64 {
    let (mut seen, mut total) = (HashSet::new(), 0usize);
    for text in texts {
        let words: Vec<&str> = text.split_whitespace().collect();
        for gram in words.windows(n) {
            total += 1;
            seen.insert(gram.join(" "));
        }
    }
    if total == 0 { 0.0 } else { seen.len() as f64 / total as f64 }
}

/// The conversations' default pairs: `chosen` the real reply, `rejected` per `source`.
/// Returns the pairs and a count of prompts skipped per reason.
fn default_pairs(
    conversations: &[Conversation],
    config: &DpoConfig,
    seed: u64,
    engine: &Engine,
    template: &ChatTemplate,
    tokenizer: &dyn Tokenizer,
) -> Result<(Vec<PreferencePair>, Value)> {
    match config.pairs.rejected {
        RejectedSource::Mismatched => {
            let (pairs, skipped) = mismatched_pairs(conversations, seed);
            Ok((pairs, json!({ "no_other_reply": skipped })))
        }
        RejectedSource::Sampled => {
            let exchanges: Vec<(&[Message], &Message)> = conversations.iter().filter_map(Conversation::last_reply).collect();
            let prompts: Vec<Vec<u32>> = exchanges.iter().map(|(context, _)| template.encode_prompt(tokenizer, context)).collect();
            let replies = sample_replies(engine, &prompts, config, seed, template.end_of_turn)?;
            let (mut too_long, mut empty, mut same) = (conversations.len() - exchanges.len(), 0, 0);
            let mut pairs = Vec::new();
            for ((context, real), reply) in exchanges.iter().zip(replies) {
                match reply {
                    None => too_long += 1,
                    Some(reply) if reply.text.trim().is_empty() => empty += 1,
                    Some(reply) if reply.text == real.content => same += 1,
                    Some(reply) => pairs.push(PreferencePair { prompt: context.to_vec(), chosen: real.content.clone(), rejected: reply.text }),
                }
            }
            Ok((pairs, json!({ "prompt_too_long_or_no_reply": too_long, "empty_sampled_reply": empty, "sampled_equals_real": same })))
        }
    }
}

impl Stage for Dpo {
    fn name(&self) -> &'static str {
        "dpo"
    }

    fn config_hash(&self, ctx: &Ctx) -> String {
        // The pretraining decoder section sets the bits-per-byte windows measured here.
        let config = &ctx.request.config;
        config_hash(&json!({ "dpo": config.dpo, "pretrain_eval": config.pretrain.decoder }))
    }

    fn inputs(&self, ctx: &Ctx) -> Result<Vec<InputRecord>> {
        let mut inputs = upstream(ctx, "tokenizer", &["tokenizer.json", "val.tokens", "val.tokens.json"])?;
        inputs.extend(upstream(ctx, "sft", &["model.safetensors", "model.config.json", "sft_train.jsonl", "sft_val.jsonl"])?);
        inputs.extend(upstream(ctx, "sft-judge", &["model.safetensors", "judge.json"])?);
        if let Some((train, val)) = ctx.request.config.dpo.pairs.user_files() {
            for path in [train, val] {
                let (sha256, _) = sha256_file(path).with_context(|| format!("[dpo.pairs] file {}", path.display()))?;
                inputs.push(InputRecord::new(path.display().to_string(), sha256));
            }
        }
        Ok(inputs)
    }

    fn run(&self, ctx: &Ctx, out_dir: &Path) -> Result<Value> {
        let layout = &ctx.request.layout;
        let config = &ctx.request.config.dpo;
        config.validate()?;
        let seed = config.train.seed;
        let tokenizer_path = layout.stage_file("tokenizer", "tokenizer.json");
        let tokenizer: Arc<dyn Tokenizer> = Arc::new(BpeTokenizer::load_hf(&tokenizer_path)?);
        let template = ChatTemplate::new(tokenizer.as_ref()).with_context(|| tokenizer_path.display().to_string())?;
        let pad_id = tokenizer
            .special_token(special::PAD)
            .with_context(|| format!("{}: no special token {}", tokenizer_path.display(), special::PAD))?;
        let device = cascade_model::parse_device(ctx.request.device.name())?;
        let sft_weights = layout.stage_file("sft", "model.safetensors");
        let sft_engine = Engine::new(LanguageModel::load(&sft_weights, &device)?, tokenizer.clone(), device.clone());
        let reference: Decoder = cascade_model::load_safetensors(&sft_weights, &device)?;

        ctx.bars.begin("dpo: pairs", None, "steps");
        let (train_pairs, val_pairs, pair_source) = match config.pairs.user_files() {
            Some((train_file, val_file)) => {
                let mode = if config.pairs.strict { ReadMode::Strict } else { ReadMode::Lenient };
                let (train, train_report) = read_pairs(train_file, mode)?;
                let (val, val_report) = read_pairs(val_file, mode)?;
                (train, val, json!({ "source": "user_files", "train": train_report, "val": val_report }))
            }
            None => {
                let read = |file: &str| -> Result<Vec<Conversation>> { Ok(read_conversations(&layout.stage_file("sft", file), ReadMode::Strict)?.0) };
                let (sft_train, sft_val) = (read("sft_train.jsonl")?, read("sft_val.jsonl")?);
                let pick = |all: &[Conversation], n: usize, salt: u64| -> Vec<Conversation> {
                    seeded_subset(all.len(), n, seed ^ salt).into_iter().map(|i| all[i].clone()).collect()
                };
                let (train_convs, val_convs) = (pick(&sft_train, config.pairs.train_pairs, 1), pick(&sft_val, config.pairs.val_pairs, 2));
                let (train, train_skips) = default_pairs(&train_convs, config, seed, &sft_engine, &template, tokenizer.as_ref())?;
                let (val, val_skips) = default_pairs(&val_convs, config, seed ^ 0xE7A1, &sft_engine, &template, tokenizer.as_ref())?;
                let source = json!({
                    "source": "sft_conversations",
                    "rejected": config.pairs.rejected,
                    "train_prompts": train_convs.len(), "train_skipped": train_skips,
                    "val_prompts": val_convs.len(), "val_skipped": val_skips,
                });
                (train, val, source)
            }
        };
        ctx.bars.end();
        write_pairs(&out_dir.join("dpo_train.jsonl"), &train_pairs)?;
        write_pairs(&out_dir.join("dpo_val.jsonl"), &val_pairs)?;

        let seq_len = config.train.seq_len;
        if seq_len > reference.config().max_seq_len {
            bail!("[dpo.train] seq_len = {seq_len} is longer than the decoder's max_seq_len = {}", reference.config().max_seq_len);
        }
        let (train, _, train_too_long) = encode_pairs(&template, tokenizer.as_ref(), &train_pairs, seq_len);
        let (val, val_kept, val_too_long) = encode_pairs(&template, tokenizer.as_ref(), &val_pairs, seq_len);
        if train.is_empty() || val.is_empty() {
            bail!(
                "{} training and {} validation pairs fit [dpo.train] seq_len = {seq_len} (of {} and {}): raise seq_len or use shorter pairs",
                train.len(),
                val.len(),
                train_pairs.len(),
                val_pairs.len()
            );
        }
        ctx.bars.begin("dpo: reference log-probabilities", None, "steps");
        let train_reference = pair_logps(&reference, &train, config.train.batch_size, pad_id, &device)?;
        let val_reference = pair_logps(&reference, &val, config.train.batch_size, pad_id, &device)?;
        write_reference_logps(&out_dir.join("reference_logps.jsonl"), &[("train", &train_reference), ("val", &val_reference)])?;
        ctx.bars.end();

        // Held-out prompts for the effects: the validation pairs' prompts.
        let eval_context: Vec<&PreferencePair> = val_kept.iter().map(|&i| &val_pairs[i]).take(config.eval_prompts.max(1)).collect();
        let eval_prompts: Vec<Vec<u32>> = eval_context.iter().map(|p| template.encode_prompt(tokenizer.as_ref(), &p.prompt)).collect();
        let eval_seed = seed ^ 0xE4A1;
        let pretrain_eval = &ctx.request.config.pretrain.decoder;
        let val_tokens = layout.stage_file("tokenizer", "val.tokens");
        let bytes_per_token = val_bytes_per_token(ctx)?;
        let bits_per_byte = |model: &Decoder| -> Result<Value> {
            let lm = cascade_pretrain::evaluate_causal_lm(model, &val_tokens, pretrain_eval, &device)?;
            Ok(json!({ "loss": lm.loss, "bits_per_byte": bytes_per_token.map(|bpt| lm.loss / std::f64::consts::LN_2 / bpt), "windows": lm.windows }))
        };
        ctx.bars.begin("dpo: measure before", None, "checks");
        let pretrain_before = bits_per_byte(&reference)?;
        let sft_replies = sample_replies(&sft_engine, &eval_prompts, config, eval_seed, template.end_of_turn)?;
        ctx.bars.end();
        drop(sft_engine);

        let checkpoint = out_dir.join("checkpoint");
        let resume_from = checkpoint.join(cascade_pretrain::STATE_FILE).is_file().then_some(checkpoint);
        let job = DpoJob {
            config: &config.train,
            loss: config.loss(),
            init_weights: &sft_weights,
            train: &train,
            train_reference: &train_reference,
            val: &val,
            val_reference: &val_reference,
            pad_id,
            out_dir,
            resume_from: resume_from.as_deref(),
        };
        let (tuned, report) = cascade_posttrain::train_dpo(&job, &device, &ctx.bars)?;

        ctx.bars.begin("dpo: measure after", None, "checks");
        let pretrain_after = bits_per_byte(&tuned)?;
        let dpo_engine = Engine::new(LanguageModel::load(&out_dir.join("model.safetensors"), &device)?, tokenizer.clone(), device.clone());
        let dpo_replies = sample_replies(&dpo_engine, &eval_prompts, config, eval_seed, template.end_of_turn)?;
        drop(dpo_engine);
        let judge = ReplyJudge::load(&layout.stage_dir("sft-judge"), tokenizer.clone(), &device)?;
        let (mut wins, mut losses, mut ties) = (0u64, 0u64, 0u64);
        let (mut sft_texts, mut dpo_texts, mut kl_examples) = (Vec::new(), Vec::new(), Vec::new());
        let (mut sft_ended, mut dpo_ended) = (0u64, 0u64);
        let mut examples = Vec::new();
        for ((pair, prompt), (sft, dpo)) in eval_context.iter().zip(&eval_prompts).zip(sft_replies.iter().zip(&dpo_replies)) {
            let (Some(sft), Some(dpo)) = (sft, dpo) else { continue };
            let scores = judge.score_batch(&[(pair.last_turn(), sft.text.as_str()), (pair.last_turn(), dpo.text.as_str())])?;
            match scores[1].partial_cmp(&scores[0]) {
                Some(std::cmp::Ordering::Greater) => wins += 1,
                Some(std::cmp::Ordering::Less) => losses += 1,
                _ => ties += 1,
            }
            sft_texts.push(sft.text.as_str());
            dpo_texts.push(dpo.text.as_str());
            sft_ended += u64::from(sft.ended_turn);
            dpo_ended += u64::from(dpo.ended_turn);
            let mut ids = prompt.clone();
            ids.extend(&dpo.tokens);
            if dpo.ended_turn {
                ids.push(template.end_of_turn);
            }
            let loss_mask = (0..ids.len()).map(|i| i >= prompt.len()).collect();
            kl_examples.push(SftExample { ids, loss_mask });
            if examples.len() < 5 {
                examples.push(json!({ "prompt": pair.last_turn(), "sft": sft.text, "dpo": dpo.text, "judge_sft": scores[0], "judge_dpo": scores[1] }));
            }
        }
        let fitting: Vec<SftExample> = kl_examples.into_iter().filter(|e| e.n_positions() <= tuned.config().max_seq_len && e.n_targets() > 0).collect();
        let policy_logps = example_logps(&tuned, &fitting, config.train.batch_size, pad_id, &device)?;
        let reference_logps = example_logps(&reference, &fitting, config.train.batch_size, pad_id, &device)?;
        let kl = if fitting.is_empty() {
            f64::NAN
        } else {
            policy_logps.iter().zip(&reference_logps).map(|(p, r)| p - r).sum::<f64>() / fitting.len() as f64
        };
        ctx.bars.end();

        let judged = wins + losses + ties;
        let win_rate = if judged > 0 { (wins as f64 + 0.5 * ties as f64) / judged as f64 } else { f64::NAN };
        let diversity = |texts: &[&str]| json!({ "distinct_1": distinct_n(texts, 1), "distinct_2": distinct_n(texts, 2) });
        let share = |n: u64| if judged > 0 { n as f64 / judged as f64 } else { f64::NAN };
        Ok(json!({
            "steps": report.steps,
            "train_pairs": train.len(),
            "val_pairs": val.len(),
            "val_reward_accuracy_before": report.val_before.rewards_accuracies,
            "val_reward_accuracy_after": report.val_after.rewards_accuracies,
            "val_reward_margin_before": report.val_before.rewards_margins,
            "val_reward_margin_after": report.val_after.rewards_margins,
            "win_rate_vs_sft": win_rate,
            "pretrain_val_bits_per_byte_before": pretrain_before["bits_per_byte"],
            "pretrain_val_bits_per_byte_after": pretrain_after["bits_per_byte"],
            "distinct_2_before": distinct_n(&sft_texts, 2),
            "distinct_2_after": distinct_n(&dpo_texts, 2),
            "sequence_kl_to_reference": kl,
            "effects": {
                "preference": { "before": report.val_before, "after": report.val_after },
                "win_rate": {
                    "judge": "sft-judge", "prompts": judged, "dpo_wins": wins, "sft_wins": losses, "ties": ties,
                    "win_rate": win_rate, "tie_rate": share(ties),
                    "sampling": { "temperature": config.temperature, "max_reply_tokens": config.max_reply_tokens, "seed": eval_seed },
                    "ended_turn_sft": share(sft_ended), "ended_turn_dpo": share(dpo_ended),
                    "examples": examples,
                },
                "alignment_tax": {
                    "pretrain_val": { "before": pretrain_before, "after": pretrain_after },
                    "diversity": { "before": diversity(&sft_texts), "after": diversity(&dpo_texts) },
                },
                "kl": { "sequence_kl_to_reference": kl, "replies": fitting.len(), "definition": "mean over sampled DPO replies y of log pi(y|x) - log pi_ref(y|x), nats" },
            },
            "pairs": {
                "source": pair_source,
                "train_written": train_pairs.len(), "val_written": val_pairs.len(),
                "train_dropped_too_long": train_too_long, "val_dropped_too_long": val_too_long,
                "loss": config.loss(),
            },
            "dpo": report,
        }))
    }

    fn resumable(&self) -> bool {
        true
    }

    fn summary(&self, metrics: &Value) -> String {
        format!(
            "{} pairs, {} steps; held-out reward acc {} -> {}, margin {}; win rate vs SFT {}; KL {}; pretrain bits/byte {} -> {}",
            metric(metrics, "/train_pairs"),
            metric(metrics, "/steps"),
            metric(metrics, "/val_reward_accuracy_before"),
            metric(metrics, "/val_reward_accuracy_after"),
            metric(metrics, "/val_reward_margin_after"),
            metric(metrics, "/win_rate_vs_sft"),
            metric(metrics, "/sequence_kl_to_reference"),
            metric(metrics, "/pretrain_val_bits_per_byte_before"),
            metric(metrics, "/pretrain_val_bits_per_byte_after"),
        )
    }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_n_counts_unique_word_ngrams() {
        assert_eq!(distinct_n(&["a b a b", "a b"], 1), 2.0 / 6.0);
        assert_eq!(distinct_n(&["a b a b", "a b"], 2), 2.0 / 4.0);
        assert_eq!(distinct_n(&[""], 2), 0.0);
    }
}
