//! The reply-format check: sample a reply to validation prompts and count the replies that
//! close their turn with `<|end_of_turn|>` within the length limit. A pretrained model has never
//! seen the chat tokens and rambles on; a fine-tuned one should answer and stop.
//!
//! [`format_prompts`] and [`FormatReport::tally`] do the counting for any generator (the `sft`
//! stage uses cascade-infer's batched engine); [`measure_format`] pairs them with a plain loop on
//! [`Decoder::forward_cached`] (one prompt at a time, greedy or with a temperature), the
//! reference that needs nothing beyond the model crate.

use cascade_core::{ChatTemplate, Message, Tokenizer};
use cascade_model::Decoder;
use cascade_model::burn::prelude::*;
use cascade_pretrain::rng::SplitMix64;
use serde::{Deserialize, Serialize};

use crate::dataset::Conversation;

/// How replies are sampled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleSettings {
    /// Longest reply in tokens.
    pub max_reply_tokens: usize,
    /// 0 = greedy; otherwise softmax temperature.
    pub temperature: f64,
    /// Seed of the sampling draws.
    pub seed: u64,
}

/// One sampled reply.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SampledReply {
    /// The last user turn of the prompt.
    pub prompt: String,
    /// The reply text (control tokens removed).
    pub reply: String,
    /// Tokens generated (the end-of-turn included when emitted).
    pub tokens: usize,
    /// Whether the reply closed its turn within the limit.
    pub ended_turn: bool,
}

/// What the format check found.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FormatReport {
    /// Prompts sampled.
    pub prompts: u64,
    /// Replies that emitted `<|end_of_turn|>` within `max_reply_tokens`.
    pub ended_turn: u64,
    /// `ended_turn / prompts`.
    pub fraction_ended_turn: f64,
    /// Mean tokens per reply.
    pub mean_reply_tokens: f64,
    /// Prompts left out because prompt plus one reply token exceed the model's length.
    pub skipped_too_long: u64,
    /// The first few replies, to read.
    pub examples: Vec<SampledReply>,
}

/// How many sampled replies a [`FormatReport`] keeps to read.
pub const LISTED_REPLIES: usize = 5;

fn last_row(logits: Tensor<3>) -> Vec<f32> {
    let [_, t, v] = logits.dims();
    logits.narrow(1, t - 1, 1).reshape([v]).into_data().try_to_vec::<f32>().unwrap_or_default()
}

fn choose(row: &[f32], temperature: f64, rng: &mut SplitMix64) -> u32 {
    let argmax = row.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &x)| if x > best.1 { (i, x) } else { best }).0;
    if temperature <= 0.0 {
        return argmax as u32;
    }
    let max = row[argmax] as f64;
    let weights: Vec<f64> = row.iter().map(|&x| ((x as f64 - max) / temperature).exp()).collect();
    let mut draw = rng.next_f64() * weights.iter().sum::<f64>();
    for (i, w) in weights.iter().enumerate() {
        draw -= w;
        if draw <= 0.0 {
            return i as u32;
        }
    }
    argmax as u32
}

/// Samples a reply to `context` (rendered with `template` and an opened assistant turn).
/// Returns the generated ids and whether the reply closed its turn, or `None` when the prompt
/// leaves no room for a reply in the model's length.
pub fn sample_reply(
    model: &Decoder,
    template: &ChatTemplate,
    tokenizer: &dyn Tokenizer,
    context: &[Message],
    settings: &SampleSettings,
    rng: &mut SplitMix64,
    device: &Device,
) -> Option<(Vec<u32>, bool)> {
    sample_ids(model, template, &template.encode_prompt(tokenizer, context), settings, rng, device)
}

/// [`sample_reply`] for a rendered prompt.
pub fn sample_ids(
    model: &Decoder,
    template: &ChatTemplate,
    prompt: &[u32],
    settings: &SampleSettings,
    rng: &mut SplitMix64,
    device: &Device,
) -> Option<(Vec<u32>, bool)> {
    let room = model.config().max_seq_len.checked_sub(prompt.len())?;
    if room == 0 || prompt.is_empty() {
        return None;
    }
    let limit = settings.max_reply_tokens.min(room);
    let mut cache = model.new_cache();
    let ids: Vec<i64> = prompt.iter().map(|&id| id as i64).collect();
    let tokens = Tensor::<1, Int>::from_ints(ids.as_slice(), device).reshape([1, ids.len()]);
    let mut row = last_row(model.forward_cached(tokens, &mut cache));
    let mut reply = Vec::with_capacity(limit);
    while reply.len() < limit {
        let next = choose(&row, settings.temperature, rng);
        reply.push(next);
        if next == template.end_of_turn {
            return Some((reply, true));
        }
        if reply.len() < limit {
            let token = Tensor::<1, Int>::from_ints([next as i64].as_slice(), device).reshape([1, 1]);
            row = last_row(model.forward_cached(token, &mut cache));
        }
    }
    Some((reply, false))
}

/// One prompt of the format check: the rendered ids (an assistant turn opened) and the last user
/// turn, to show beside the reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FormatPrompt {
    /// Prompt ids ending with `<|assistant|>`.
    pub ids: Vec<u32>,
    /// The content of the turn the reply answers.
    pub last_turn: String,
}

/// The prompts of `n_prompts` conversations spread evenly over `conversations`: everything
/// before each one's last assistant turn.
pub fn format_prompts(
    template: &ChatTemplate,
    tokenizer: &dyn Tokenizer,
    conversations: &[Conversation],
    n_prompts: usize,
) -> Vec<FormatPrompt> {
    let n = n_prompts.min(conversations.len());
    (0..n)
        .filter_map(|i| {
            let (context, _) = conversations[i * conversations.len() / n].last_reply()?;
            Some(FormatPrompt {
                ids: template.encode_prompt(tokenizer, context),
                last_turn: context.last().map(|m| m.content.clone()).unwrap_or_default(),
            })
        })
        .collect()
}

impl FormatReport {
    /// Tallies `replies[i]` (the generated ids and whether `<|end_of_turn|>` closed them within
    /// the limit; `None` when prompt `i` left no room for a reply) for `prompts[i]`.
    pub fn tally(
        prompts: &[FormatPrompt],
        replies: &[Option<(Vec<u32>, bool)>],
        template: &ChatTemplate,
        tokenizer: &dyn Tokenizer,
    ) -> Self {
        let mut report = Self {
            prompts: 0,
            ended_turn: 0,
            fraction_ended_turn: 0.0,
            mean_reply_tokens: 0.0,
            skipped_too_long: 0,
            examples: Vec::new(),
        };
        let mut total_tokens = 0usize;
        for (prompt, reply) in prompts.iter().zip(replies) {
            let Some((ids, ended)) = reply else {
                report.skipped_too_long += 1;
                continue;
            };
            report.prompts += 1;
            report.ended_turn += u64::from(*ended);
            total_tokens += ids.len();
            if report.examples.len() < LISTED_REPLIES {
                let text: Vec<u32> = ids.iter().copied().filter(|&id| !template.is_control(id)).collect();
                report.examples.push(SampledReply {
                    prompt: prompt.last_turn.clone(),
                    reply: String::from_utf8_lossy(&tokenizer.decode_bytes(&text).unwrap_or_default()).into_owned(),
                    tokens: ids.len(),
                    ended_turn: *ended,
                });
            }
        }
        if report.prompts > 0 {
            report.fraction_ended_turn = report.ended_turn as f64 / report.prompts as f64;
            report.mean_reply_tokens = total_tokens as f64 / report.prompts as f64;
        }
        report
    }
}

/// The format check with this module's sampler: one reply per prompt of [`format_prompts`].
pub fn measure_format(
    model: &Decoder,
    template: &ChatTemplate,
    tokenizer: &dyn Tokenizer,
    conversations: &[Conversation],
    n_prompts: usize,
    settings: &SampleSettings,
    device: &Device,
) -> FormatReport {
    let mut rng = SplitMix64::new(settings.seed);
    let prompts = format_prompts(template, tokenizer, conversations, n_prompts);
    let replies: Vec<Option<(Vec<u32>, bool)>> =
        prompts.iter().map(|prompt| sample_ids(model, template, &prompt.ids, settings, &mut rng, device)).collect();
    FormatReport::tally(&prompts, &replies, template, tokenizer)
}
