//! `cargo xtask generate | chat | eval`: the inference front ends over `cascade-infer`, on a
//! run's checkpoints (`--stage pretrain|sft|dpo`, the latest by default) and its tokenizer.

use std::io::{BufRead, Write};
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cascade_core::Tokenizer;
use cascade_core::chat::{ChatTemplate, Message, Role};
use cascade_infer::{Completion, Engine, EvalOptions, FinishReason, LanguageModel, SamplingParams};
use clap::{Args, ValueEnum};

use crate::cli::DeviceArg;
use crate::config::workspace_root;

/// The checkpoint stages, latest last.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum CheckpointStage {
    /// `pretrain-decoder/model.safetensors`.
    Pretrain,
    /// `sft/model.safetensors`.
    Sft,
    /// `dpo/model.safetensors`.
    Dpo,
}

impl CheckpointStage {
    fn weights(self, run_dir: &Path) -> PathBuf {
        let dir = match self {
            Self::Pretrain => "pretrain-decoder",
            Self::Sft => "sft",
            Self::Dpo => "dpo",
        };
        run_dir.join(dir).join("model.safetensors")
    }
}

/// Which model to load, shared by the three commands.
#[derive(Debug, Args)]
pub struct ModelArgs {
    /// The run directory. Default: `runs/small`.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// The checkpoint: `pretrain`, `sft` or `dpo`. Default: the latest of them that exists.
    #[arg(long, value_enum, conflicts_with = "checkpoint")]
    stage: Option<CheckpointStage>,
    /// A checkpoint file instead (`*.safetensors` with its `.config.json`), e.g. an
    /// encoder-decoder's `pretrain-encoder-decoder/model.safetensors`.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// Device to run on.
    #[arg(long, value_enum, default_value_t = DeviceArg::Flex)]
    device: DeviceArg,
}

/// How to sample, shared by `generate` and `chat`.
#[derive(Debug, Args)]
pub struct SamplingArgs {
    /// Most tokens to generate (the context window may stop earlier; the summary says so).
    #[arg(long, default_value_t = 200)]
    max_new_tokens: usize,
    /// 0 = greedy.
    #[arg(long, default_value_t = 0.8)]
    temperature: f32,
    /// Keep the K most likely tokens; 0 = off.
    #[arg(long, default_value_t = 40)]
    top_k: usize,
    /// Nucleus sampling; 1 = off.
    #[arg(long, default_value_t = 0.95)]
    top_p: f32,
    /// Drop tokens less likely than M times the best one; 0 = off.
    #[arg(long, default_value_t = 0.05)]
    min_p: f32,
    /// Penalty on tokens already in the text; 1 = off.
    #[arg(long, default_value_t = 1.1)]
    repetition_penalty: f32,
    /// Random seed: the same seed gives the same text.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Stop when the text reaches this string (repeatable).
    #[arg(long = "stop", value_name = "TEXT")]
    stop: Vec<String>,
}

impl SamplingArgs {
    fn params(&self) -> SamplingParams {
        SamplingParams {
            temperature: self.temperature,
            top_k: self.top_k,
            top_p: self.top_p,
            min_p: self.min_p,
            repetition_penalty: self.repetition_penalty,
            seed: self.seed,
        }
    }
}

/// `cargo xtask generate`.
#[derive(Debug, Args)]
pub struct GenerateArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// The text to continue (the encoder-decoder's source).
    #[arg(long)]
    prompt: String,
}

/// `cargo xtask chat`.
#[derive(Debug, Args)]
pub struct ChatArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    sampling: SamplingArgs,
    /// A system message opening the conversation (always kept).
    #[arg(long)]
    system: Option<String>,
}

/// `cargo xtask eval`.
#[derive(Debug, Args)]
pub struct EvalArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// The UTF-8 text file to score.
    #[arg(long)]
    file: PathBuf,
    /// Tokens per window (default: the model's context window).
    #[arg(long, default_value_t = 0)]
    window: usize,
    /// Windows per forward pass.
    #[arg(long, default_value_t = 8)]
    batch_size: usize,
}

/// Loads the engine the arguments name, saying on stderr which checkpoint it is.
pub(crate) fn load_engine(args: &ModelArgs) -> Result<Engine> {
    let run_dir = args.run_dir.clone().unwrap_or_else(|| workspace_root().join("runs").join("small"));
    let weights = match (&args.checkpoint, args.stage) {
        (Some(path), _) => path.clone(),
        (None, Some(stage)) => {
            let path = stage.weights(&run_dir);
            if !path.is_file() {
                let name = stage.to_possible_value().map(|v| v.get_name().to_owned()).unwrap_or_default();
                bail!("no {name} checkpoint: {} does not exist", path.display());
            }
            path
        }
        (None, None) => [CheckpointStage::Dpo, CheckpointStage::Sft, CheckpointStage::Pretrain]
            .iter()
            .map(|s| s.weights(&run_dir))
            .find(|p| p.is_file())
            .with_context(|| {
                format!(
                    "no checkpoint in {} (looked for dpo/, sft/ and pretrain-decoder/model.safetensors); run `cargo xtask pretrain --arch decoder` first",
                    run_dir.display()
                )
            })?,
    };
    let tokenizer_path = run_dir.join("tokenizer").join("tokenizer.json");
    let tokenizer = cascade_tokenizer::BpeTokenizer::load_hf(&tokenizer_path)
        .with_context(|| format!("cannot load the run's tokenizer {}", tokenizer_path.display()))?;
    let device = cascade_model::parse_device(args.device.name())?;
    let model = LanguageModel::load(&weights, &device)?;
    eprintln!(
        "model: {} ({}, context {} tokens)",
        weights.display(),
        model.family(),
        model.context_window()
    );
    Ok(Engine::new(model, Arc::new(tokenizer), device))
}

/// Runs one request, printing its text to stdout as it is produced.
fn stream_to_stdout(engine: &Engine, request: cascade_infer::GenerationRequest) -> Result<Completion> {
    let mut stdout = std::io::stdout().lock();
    let mut write_error = None;
    let mut completions = engine.generate(std::slice::from_ref(&request), &mut |event| {
        if let Err(e) = stdout.write_all(event.text.as_bytes()).and_then(|()| stdout.flush()) {
            write_error = Some(e);
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    })?;
    if let Some(e) = write_error {
        return Err(e).context("writing to stdout");
    }
    completions.pop().context("the engine returned no completion")
}

fn describe(reason: &FinishReason, tokenizer: &dyn Tokenizer) -> String {
    match reason {
        FinishReason::StopToken(id) => format!("stop token {}", tokenizer.decode(&[*id]).unwrap_or_else(|_| id.to_string())),
        FinishReason::StopString(s) => format!("stop string {s:?}"),
        FinishReason::MaxNewTokens => "--max-new-tokens reached".into(),
        FinishReason::ContextWindow => "the context window is full".into(),
        FinishReason::Cancelled => "cancelled".into(),
    }
}

/// `cargo xtask generate --prompt TEXT`.
pub fn generate(args: &GenerateArgs) -> Result<()> {
    let engine = load_engine(&args.model)?;
    let prompt = engine.encode(&args.prompt);
    let mut request = engine.request(prompt, args.sampling.params(), args.sampling.max_new_tokens);
    request.stop_strings = args.sampling.stop.clone();
    if matches!(engine.model(), LanguageModel::Decoder(_)) {
        print!("{}", args.prompt);
    }
    let started = Instant::now();
    let completion = stream_to_stdout(&engine, request)?;
    let wall_s = started.elapsed().as_secs_f64();
    println!();
    let decode_s = (wall_s - completion.time_to_first_token_s).max(1e-9);
    eprintln!(
        "{} prompt + {} new tokens; stopped: {}; first token after {:.0} ms, then {:.1} tokens/s",
        completion.prompt_tokens,
        completion.tokens.len(),
        describe(&completion.finish_reason, engine.tokenizer().as_ref()),
        completion.time_to_first_token_s * 1e3,
        completion.tokens.len().saturating_sub(1) as f64 / decode_s,
    );
    Ok(())
}

/// `cargo xtask chat`: a REPL; history is kept within the context window by dropping the
/// oldest turns (the system message stays), and each drop is reported.
pub fn chat(args: &ChatArgs) -> Result<()> {
    let engine = load_engine(&args.model)?;
    if !matches!(engine.model(), LanguageModel::Decoder(_)) {
        bail!("chat needs a decoder checkpoint");
    }
    let tokenizer = Arc::clone(engine.tokenizer());
    let template = ChatTemplate::new(tokenizer.as_ref())?;
    let window = engine.model().context_window();
    // Room kept for the reply: the requested budget, but never more than half the window.
    let reply_room = args.sampling.max_new_tokens.min(window / 2);
    let system: Vec<Message> = args.system.iter().map(|s| Message::new(Role::System, s.clone())).collect();
    let mut history: Vec<Message> = Vec::new();
    eprintln!("chat: type a message; /reset clears the history, /quit or end of input leaves.");
    let stdin = std::io::stdin();
    let mut turn = 0u64;
    loop {
        eprint!("> ");
        std::io::stderr().flush().ok();
        let mut line = String::new();
        if stdin.lock().read_line(&mut line)? == 0 {
            break;
        }
        let line = line.trim_end_matches(['\n', '\r']);
        match line.trim() {
            "" => continue,
            "/quit" | "/exit" => break,
            "/reset" => {
                history.clear();
                eprintln!("(history cleared)");
                continue;
            }
            _ => {}
        }
        history.push(Message::new(Role::User, line));
        let (prompt, dropped) = fit_history(&template, tokenizer.as_ref(), &system, &mut history, window - reply_room);
        if dropped > 0 {
            eprintln!("(dropped the {dropped} oldest turn(s) to keep the conversation within the {window}-token context window)");
        }
        let Some(prompt) = prompt else {
            eprintln!("(that message alone does not fit the {window}-token context window with room for a reply; say less)");
            history.pop();
            continue;
        };
        let mut params = args.sampling.params();
        params.seed = params.seed.wrapping_add(turn);
        turn += 1;
        let mut request = engine.request(prompt, params, args.sampling.max_new_tokens);
        request.stop_strings = args.sampling.stop.clone();
        let completion = stream_to_stdout(&engine, request)?;
        println!();
        if !matches!(completion.finish_reason, FinishReason::StopToken(_)) {
            eprintln!("(reply stopped: {})", describe(&completion.finish_reason, tokenizer.as_ref()));
        }
        history.push(Message::new(Role::Assistant, completion.text));
    }
    Ok(())
}

/// Drops the oldest turns of `history` until the prompt fits `limit` tokens; returns the
/// prompt (None when even the last turn does not fit) and how many turns were dropped.
fn fit_history(
    template: &ChatTemplate,
    tokenizer: &dyn Tokenizer,
    system: &[Message],
    history: &mut Vec<Message>,
    limit: usize,
) -> (Option<Vec<u32>>, usize) {
    let mut dropped = 0;
    loop {
        let messages: Vec<Message> = system.iter().chain(history.iter()).cloned().collect();
        let prompt = template.encode_prompt(tokenizer, &messages);
        if prompt.len() <= limit {
            return (Some(prompt), dropped);
        }
        if history.len() <= 1 {
            return (None, dropped);
        }
        history.remove(0);
        dropped += 1;
    }
}

/// `cargo xtask eval --file PATH`.
pub fn eval(args: &EvalArgs) -> Result<()> {
    let engine = load_engine(&args.model)?;
    let LanguageModel::Decoder(model) = engine.model() else {
        bail!("eval scores decoder checkpoints; this one is an encoder-decoder");
    };
    let options = EvalOptions { window: args.window, batch_size: args.batch_size };
    let progress = crate::progress::Bars::new(false);
    let started = Instant::now();
    let report = cascade_infer::evaluate_file(model, engine.tokenizer().as_ref(), &args.file, &options, &progress)?;
    let wall_s = started.elapsed().as_secs_f64();
    eprintln!(
        "{}: {} tokens, {} bytes, {} windows of {}: perplexity {:.3}, {:.4} bits per byte ({:.1} s, {:.0} tokens/s)",
        args.file.display(),
        report.tokens,
        report.bytes,
        report.windows,
        report.window,
        report.perplexity,
        report.bits_per_byte,
        wall_s,
        report.tokens as f64 / wall_s.max(1e-9)
    );
    println!("{}", serde_json::to_string(&report)?);
    Ok(())
}
