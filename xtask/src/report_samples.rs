//! The report's measurements that need generation (through `cascade-infer`): fixed prompts
//! answered by each of the run's generating models, reply lengths and diversity, and the
//! temperature sweep (the model's own log-likelihood of its samples against their diversity).
//! A model that cannot be loaded or sampled becomes a note in the report, never a failed stage.

use std::collections::HashSet;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::{Context, Result};
use cascade_core::{Progress as _, Tokenizer};
use cascade_core::chat::{ChatTemplate, Message, Role};
use cascade_infer::{Completion, Engine, LanguageModel, SamplingParams};
use cascade_model::Decoder;
use cascade_model::burn::prelude::*;
use cascade_model::burn::tensor::activation::log_softmax;
use cascade_report::{Extras, ReplyStats, SampleRow, Samples, TemperaturePoint};
use cascade_tokenizer::BpeTokenizer;

use crate::runner::Ctx;

/// The models that can answer, in the order of the samples table: (stage, prompt style).
const MODELS: [(&str, PromptStyle); 4] = [
    ("pretrain-decoder", PromptStyle::Continue),
    ("sft", PromptStyle::Chat),
    ("dpo", PromptStyle::Chat),
    ("sft-seq2seq", PromptStyle::Source),
];

/// How a prompt is put to a model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PromptStyle {
    /// A pretrained decoder continues `<|endoftext|>` + the prompt and a newline.
    Continue,
    /// A chat model gets the prompt as a user turn and an open assistant turn.
    Chat,
    /// An encoder-decoder reads the prompt as its source.
    Source,
}

/// Fills `extras` with samples, reply statistics and the temperature sweep of every model the
/// run has; what fails is recorded in `extras.notes`.
pub fn measure(ctx: &Ctx, extras: &mut Extras) {
    let config = &ctx.request.config.report;
    if !config.samples {
        extras.notes.push("Sampling is off ([report] samples = false): no samples, reply statistics or temperature sweep.".into());
        return;
    }
    let layout = &ctx.request.layout;
    let tokenizer_path = layout.stage_file("tokenizer", "tokenizer.json");
    let tokenizer = match BpeTokenizer::load_hf(&tokenizer_path) {
        Ok(tokenizer) => Arc::new(tokenizer),
        Err(err) => {
            extras.notes.push(format!("No samples: the run's tokenizer {} did not load ({err}).", tokenizer_path.display()));
            return;
        }
    };
    let mut samples = Samples {
        settings: format!(
            "temperature {}, no top-k/top-p, at most {} new tokens, seed {}",
            config.temperature, config.max_new_tokens, config.seed
        ),
        ..Samples::default()
    };
    let mut columns: Vec<Vec<String>> = Vec::new();
    for (stage, style) in MODELS {
        let weights = layout.stage_file(stage, "model.safetensors");
        if !weights.is_file() {
            continue;
        }
        ctx.bars.begin(&format!("report: {stage}"), None, "samples");
        let measured = measure_model(ctx, stage, style, weights, tokenizer.clone());
        ctx.bars.end();
        match measured {
            Ok((replies, stats, sweep)) => {
                samples.models.push(stage.to_owned());
                columns.push(replies);
                extras.reply_stats.push(stats);
                extras.temperature_sweep.extend(sweep);
            }
            Err(err) => extras.notes.push(format!("{stage}: could not sample ({err:#}).")),
        }
    }
    if columns.is_empty() {
        extras.notes.push("No generating model in the run (pretrain-decoder, sft, dpo, sft-seq2seq): no samples.".into());
        return;
    }
    samples.rows = config
        .prompts
        .iter()
        .enumerate()
        .map(|(idx, prompt)| SampleRow { prompt: prompt.clone(), replies: columns.iter().map(|c| c[idx].clone()).collect() })
        .collect();
    extras.samples = Some(samples);
}

type Measured = (Vec<String>, ReplyStats, Vec<TemperaturePoint>);

fn measure_model(ctx: &Ctx, stage: &str, style: PromptStyle, weights: PathBuf, tokenizer: Arc<BpeTokenizer>) -> Result<Measured> {
    let config = &ctx.request.config.report;
    let device = cascade_model::parse_device(ctx.request.device.name())?;
    let model = LanguageModel::load(&weights, &device).with_context(|| format!("cannot load {}", weights.display()))?;
    let prompts: Vec<Vec<u32>> = config.prompts.iter().map(|p| encode_prompt(&*tokenizer, style, p)).collect::<Result<_>>()?;
    let max_prompt = model.max_prompt_len().saturating_sub(1);
    let prompts: Vec<Vec<u32>> = prompts.into_iter().map(|p| p[p.len().saturating_sub(max_prompt)..].to_vec()).collect();
    let engine = Engine::new(model, tokenizer.clone(), device.clone());
    let per_prompt = config.replies_per_prompt.max(1);

    let sample_all = |temperature: f64| -> Result<Vec<Completion>> {
        let requests: Vec<_> = prompts
            .iter()
            .enumerate()
            .flat_map(|(p, prompt)| (0..per_prompt).map(move |r| (p, r, prompt)))
            .map(|(p, r, prompt)| {
                let sampling = SamplingParams {
                    temperature: temperature as f32,
                    seed: config.seed + (p * per_prompt + r) as u64,
                    ..SamplingParams::default()
                };
                engine.request(prompt.clone(), sampling, config.max_new_tokens)
            })
            .collect();
        Ok(engine.generate_all(&requests)?)
    };

    let completions = sample_all(config.temperature)?;
    ctx.bars.advance(completions.len() as u64);
    let replies = (0..prompts.len()).map(|p| completions[p * per_prompt].text.trim().to_owned()).collect();
    let stats = ReplyStats {
        model: stage.to_owned(),
        lengths_tokens: completions.iter().map(|c| c.tokens.len() as f64).collect(),
        distinct_2: completions.iter().filter(|c| c.tokens.len() >= 2).map(|c| distinct_2(&[&c.tokens])).collect(),
    };
    let mut sweep = Vec::new();
    if let LanguageModel::Decoder(decoder) = engine.model() {
        for &temperature in &config.sweep_temperatures {
            let completions = sample_all(temperature)?;
            ctx.bars.advance(completions.len() as u64);
            let (mut log_likelihood, mut tokens) = (0.0, 0usize);
            for (idx, completion) in completions.iter().enumerate() {
                log_likelihood += reply_log_likelihood(decoder, &device, &prompts[idx / per_prompt], &completion.tokens)?;
                tokens += completion.tokens.len();
            }
            let replies: Vec<&[u32]> = completions.iter().map(|c| c.tokens.as_slice()).collect();
            sweep.push(TemperaturePoint {
                model: stage.to_owned(),
                temperature,
                mean_log_likelihood: log_likelihood / tokens.max(1) as f64,
                distinct_2: distinct_2(&replies),
                n_samples: completions.len(),
            });
        }
    }
    Ok((replies, stats, sweep))
}

fn encode_prompt(tokenizer: &dyn Tokenizer, style: PromptStyle, prompt: &str) -> Result<Vec<u32>> {
    let allowed = cascade_core::AllowedSpecial::None;
    Ok(match style {
        PromptStyle::Continue => {
            let start = tokenizer.special_token(cascade_infer::ENDOFTEXT).context("the tokenizer has no <|endoftext|>")?;
            std::iter::once(start).chain(tokenizer.encode(&format!("{prompt}\n"), &allowed)).collect()
        }
        PromptStyle::Chat => {
            let template = ChatTemplate::new(tokenizer)?;
            template.encode_prompt(tokenizer, &[Message::new(Role::User, prompt)])
        }
        PromptStyle::Source => tokenizer.encode(prompt, &allowed),
    })
}

/// Distinct token 2-grams over all 2-grams of `replies` together (1 = nothing repeats).
fn distinct_2(replies: &[&[u32]]) -> f64 {
    let mut seen = HashSet::new();
    let mut total = 0usize;
    for reply in replies {
        for pair in reply.windows(2) {
            seen.insert((pair[0], pair[1]));
            total += 1;
        }
    }
    if total == 0 { 0.0 } else { seen.len() as f64 / total as f64 }
}

/// Summed log-probability (nats, temperature 1) of `reply` after `prompt` under `decoder`.
fn reply_log_likelihood(decoder: &Decoder, device: &Device, prompt: &[u32], reply: &[u32]) -> Result<f64> {
    if reply.is_empty() {
        return Ok(0.0);
    }
    let ids: Vec<i64> = prompt.iter().chain(reply).map(|&id| i64::from(id)).collect();
    let ids = &ids[ids.len().saturating_sub(decoder.config().max_seq_len + 1)..];
    let len = ids.len();
    let scored = reply.len().min(len - 1);
    let tokens = Tensor::<1, Int>::from_ints(ids, device).reshape([1, len]);
    let inputs = tokens.clone().narrow(1, 0, len - 1);
    let targets = tokens.narrow(1, 1, len - 1);
    let logp = log_softmax(decoder.forward(inputs), 2).gather(2, targets.unsqueeze_dim::<3>(2));
    let reply_logp = logp.narrow(1, len - 1 - scored, scored).sum();
    let values = reply_logp.into_data().convert::<f64>().try_into_vec::<f64>().map_err(|e| anyhow::anyhow!("reading log-probabilities back: {e:?}"))?;
    Ok(values.first().copied().unwrap_or(0.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn distinct_2_counts_repeated_pairs_once() {
        assert_eq!(distinct_2(&[&[1, 2, 3]]), 1.0);
        assert_eq!(distinct_2(&[&[1, 2, 1, 2, 1]]), 0.5);
        assert_eq!(distinct_2(&[&[1, 2], &[1, 2]]), 0.5);
        assert_eq!(distinct_2(&[&[7]]), 0.0);
    }
}
