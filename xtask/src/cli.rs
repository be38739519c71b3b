//! Command-line arguments, parsed once and validated into a [`runner::RunRequest`].

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::runner::{self, RunRequest};
use crate::{bench, export, stages};

/// `cargo xtask`: run the Cascade pipeline, one stage or all of them.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", version, about, long_about = None)]
pub struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run every stage in cascade order, skipping those that are up to date.
    Cascade(CascadeArgs),
    /// Ingest, normalize, filter, deduplicate and split the corpus (`<run-dir>/data/`).
    Data(DataArgs),
    /// Train the BPE tokenizer on the train split and write the token shards (`<run-dir>/tokenizer/`).
    Tokenizer(StageArgs),
    /// Pretrain one family (`--arch`), or all three in cascade order (`<run-dir>/pretrain-<arch>/`).
    Pretrain(PretrainArgs),
    /// Fine-tune the pretrained decoder on conversations, with the effects measured before and
    /// after (`<run-dir>/sft/`), then the encoder into a reply judge (`sft-judge/`) and the
    /// encoder-decoder into a reply generator (`sft-seq2seq/`) on the same conversations.
    Sft(StageArgs),
    /// Train the SFT decoder with DPO on preference pairs (`[dpo.pairs]`: the user's JSONL or
    /// real vs sampled replies), with the preference, win rate, KL and alignment tax measured
    /// (`<run-dir>/dpo/`).
    Dpo(StageArgs),
    /// Export a decoder checkpoint for other tools (`--format hf`: the HuggingFace Llama layout;
    /// `--format gguf`: one GGUF file for llama.cpp).
    Export(ExportArgs),
    /// Run criterion benchmarks side by side with peer libraries: `data`, `tokenizer`, `model` or all.
    Bench(BenchArgs),
    /// Write the run report (`<run-dir>/report/report.md`, `report.html`, `plots/`): every stage's
    /// trace, the plots and the six tensions. Also the cascade's last stage.
    Report(StageArgs),
    /// Run the cascade once per value of one config key (`tokenizer.vocab_size=2048,4096`), reusing
    /// the stages the key does not affect, then compare the runs (`<run-dir>.sweep/<key>/report/`).
    Sweep(SweepArgs),
    /// Continue a prompt with a run's model, streaming the text to stdout.
    Generate(crate::infer::GenerateArgs),
    /// Chat with a run's model (the chat template; the oldest turns leave the context window first).
    Chat(crate::infer::ChatArgs),
    /// Perplexity and bits per byte of a text file under a run's decoder.
    Eval(crate::infer::EvalArgs),
    /// Serve a run's model over HTTP with OpenAI's API (`/v1/models`, `/v1/completions`,
    /// `/v1/chat/completions`, streaming), batching concurrent requests; loopback by default.
    Serve(crate::serve::ServeArgs),
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportFormat {
    /// `config.json` + `model.safetensors` (+ `tokenizer.json`) for `transformers`' `LlamaForCausalLM`.
    Hf,
    /// One `.gguf` file: llama architecture with the BPE tokenizer in its metadata, for llama.cpp.
    Gguf,
}

/// Element type of the exported matrices (GGUF only; HF exports are f32).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum ExportDtype {
    /// 32-bit floats.
    F32,
    /// Half floats (matrices only).
    F16,
}

#[derive(Debug, Args)]
struct ExportArgs {
    /// Output format.
    #[arg(long, value_enum)]
    format: ExportFormat,
    /// The run directory holding the checkpoint and tokenizer. Default: `runs/small`.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// A decoder checkpoint (`*.safetensors` with its `.config.json`). Default: the newest
    /// decoder checkpoint under the run directory.
    #[arg(long)]
    checkpoint: Option<PathBuf>,
    /// The `tokenizer.json` to ship. Default: `<run-dir>/tokenizer/tokenizer.json`.
    #[arg(long)]
    tokenizer: Option<PathBuf>,
    /// Output directory (hf) or file (gguf). Default: `<run-dir>/export/hf` or `<run-dir>/export/model.gguf`.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Element type of the GGUF matrices (norm weights stay f32). Default: f32.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: ExportDtype,
}

/// Where a compute-heavy stage runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceArg {
    /// burn's pure-Rust CPU backend (always built).
    Flex,
    /// GPU through wgpu (build with `cargo run -p xtask --features wgpu -- ...`).
    Wgpu,
}

impl DeviceArg {
    /// The name `cascade_model::parse_device` takes.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flex => "flex",
            Self::Wgpu => "wgpu",
        }
    }
}

#[derive(Debug, Args)]
struct CommonArgs {
    /// A preset from `configs/` (smoke, small, base). Default: small.
    #[arg(long, conflicts_with = "config")]
    preset: Option<String>,
    /// A cascade config file (TOML, one section per stage).
    #[arg(long)]
    config: Option<PathBuf>,
    /// A directory of .txt/.md/.jsonl files (optionally .gz/.zst) or one such file, instead of
    /// the default Shakespeare corpus.
    #[arg(long)]
    corpus: Option<PathBuf>,
    /// The run directory. Default: `runs/<preset or config name>`.
    #[arg(long)]
    run_dir: Option<PathBuf>,
    /// Device for the model stages.
    #[arg(long, value_enum, default_value_t = DeviceArg::Flex)]
    device: DeviceArg,
    /// Turn progress bars off (stage status lines are still printed).
    #[arg(long)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct StageArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Rerun the stage even if it is up to date.
    #[arg(long)]
    force: bool,
}

#[derive(Debug, Args)]
struct CascadeArgs {
    #[command(flatten)]
    common: CommonArgs,
    /// Start at this stage; earlier stages must already be up to date.
    #[arg(long, value_parser = stage_name)]
    from: Option<String>,
    /// Stop after this stage.
    #[arg(long, value_parser = stage_name)]
    to: Option<String>,
    /// Rerun these stages even if up to date (repeatable, or `all`).
    #[arg(long = "force", value_name = "STAGE", value_parser = stage_name_or_all)]
    force_stages: Vec<String>,
}

#[derive(Debug, Args)]
struct DataArgs {
    #[command(flatten)]
    stage: StageArgs,
    /// Turn bad input (unreadable files, malformed lines, binary files) into errors instead of
    /// counted skips.
    #[arg(long)]
    strict: bool,
    /// Run the signature pass on slice I of N of the input files only, into
    /// `<run-dir>/data-shards/I-of-N/`; combine the slices with `--merge N`.
    #[arg(long, value_name = "I/N", conflicts_with = "merge")]
    shard: Option<String>,
    /// Merge the N slices written by `--shard I/N` into the data stage's outputs.
    #[arg(long, value_name = "N")]
    merge: Option<usize>,
}

#[derive(Debug, Args)]
struct PretrainArgs {
    #[command(flatten)]
    stage: StageArgs,
    /// The family to pretrain; all three when omitted.
    #[arg(long, value_enum)]
    arch: Option<crate::pretrain::Arch>,
}

#[derive(Debug, Args)]
struct SweepArgs {
    /// `SECTION.KEY=V1,V2,...`, e.g. `tokenizer.vocab_size=2048,4096,8192` or
    /// `model.decoder.n_kv_heads=1,2,8`.
    assignment: String,
    #[command(flatten)]
    common: CommonArgs,
    /// Stop each run after this stage (the report stage still compares what ran).
    #[arg(long, value_parser = stage_name)]
    to: Option<String>,
}

#[derive(Debug, Args)]
struct BenchArgs {
    /// Which bench: data, tokenizer, model; all when omitted.
    target: Option<String>,
    /// Extra arguments passed to criterion (after `--`).
    #[arg(last = true)]
    criterion_args: Vec<String>,
}

fn stage_name(name: &str) -> Result<String, String> {
    if stages::STAGE_NAMES.contains(&name) {
        Ok(name.to_owned())
    } else {
        Err(format!("unknown stage `{name}`; the stages are {}", stages::STAGE_NAMES.join(", ")))
    }
}

fn stage_name_or_all(name: &str) -> Result<String, String> {
    if name == "all" { Ok(name.to_owned()) } else { stage_name(name) }
}

/// Parses `I/N` with `I < N`.
pub fn parse_shard(spec: &str) -> Result<(usize, usize)> {
    let (index, count) = spec.split_once('/').with_context(|| format!("--shard {spec}: expected I/N, e.g. 0/4"))?;
    let index: usize = index.trim().parse().with_context(|| format!("--shard {spec}: `{index}` is not a number"))?;
    let count: usize = count.trim().parse().with_context(|| format!("--shard {spec}: `{count}` is not a number"))?;
    if count == 0 || index >= count {
        bail!("--shard {spec}: need 0 <= I < N");
    }
    Ok((index, count))
}

impl StageArgs {
    /// A request that runs `stage` alone.
    fn request(self, stage: &str) -> Result<RunRequest> {
        let mut request = self.common.request()?;
        request.from = Some(stage.to_owned());
        request.to = Some(stage.to_owned());
        if self.force {
            request.force_stages.push(stage.to_owned());
        }
        Ok(request)
    }
}

impl CommonArgs {
    fn request(self) -> Result<RunRequest> {
        RunRequest::resolve(runner::RawRequest {
            preset: self.preset,
            config: self.config,
            corpus: self.corpus,
            run_dir: self.run_dir,
            device: self.device,
            quiet: self.quiet,
        })
    }
}

/// Runs the parsed command.
pub fn dispatch(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Cascade(args) => {
            let mut request = args.common.request()?;
            request.from = args.from;
            request.to = args.to;
            request.force_stages = args.force_stages;
            runner::run(request)
        }
        Command::Data(args) => {
            let mut request = args.stage.request("data")?;
            request.stage_options.strict = args.strict;
            match (args.shard, args.merge) {
                (Some(spec), _) => runner::run_data_shard(request, parse_shard(&spec)?),
                (None, Some(count)) => runner::run_data_merge(request, count),
                (None, None) => runner::run(request),
            }
        }
        Command::Tokenizer(args) => runner::run(args.request("tokenizer")?),
        Command::Dpo(args) => runner::run(args.request("dpo")?),
        Command::Sft(args) => {
            let force = args.force;
            let mut request = args.common.request()?;
            request.from = Some("sft".to_owned());
            request.to = Some("sft-seq2seq".to_owned());
            if force {
                request.force_stages = ["sft", "sft-judge", "sft-seq2seq"].map(str::to_owned).to_vec();
            }
            runner::run(request)
        }
        Command::Pretrain(args) => match args.arch {
            Some(arch) => runner::run(args.stage.request(arch.stage_name())?),
            None => {
                let force = args.stage.force;
                let mut request = args.stage.common.request()?;
                request.from = Some(crate::pretrain::Arch::Decoder.stage_name().to_owned());
                request.to = Some(crate::pretrain::Arch::EncoderDecoder.stage_name().to_owned());
                if force {
                    request.force_stages = ["decoder", "encoder", "encoder-decoder"].map(|a| format!("pretrain-{a}")).to_vec();
                }
                runner::run(request)
            }
        },
        Command::Export(args) => {
            let request = export::ExportRequest {
                run_dir: args.run_dir.unwrap_or_else(|| crate::config::workspace_root().join("runs").join("small")),
                checkpoint: args.checkpoint,
                tokenizer: args.tokenizer,
                out: args.out,
            };
            match (args.format, args.dtype) {
                (ExportFormat::Hf, ExportDtype::F32) => export::export_hf(&request),
                (ExportFormat::Hf, ExportDtype::F16) => bail!("--dtype f16 is for --format gguf; HF exports are f32"),
                (ExportFormat::Gguf, ExportDtype::F32) => export::export_gguf(&request, cascade_model::GgufDtype::F32),
                (ExportFormat::Gguf, ExportDtype::F16) => export::export_gguf(&request, cascade_model::GgufDtype::F16),
            }
        }
        Command::Bench(args) => bench::run(args.target.as_deref(), &args.criterion_args),
        Command::Report(mut args) => {
            // Without --preset/--config, report on the run with the config it was run with.
            if args.common.config.is_none() && args.common.preset.is_none() {
                let run_dir = args.common.run_dir.clone().unwrap_or_else(|| crate::config::workspace_root().join("runs").join("small"));
                let resolved = run_dir.join("config.toml");
                if resolved.is_file() {
                    args.common.config = Some(resolved);
                    args.common.run_dir = Some(run_dir);
                }
            }
            let request = args.request(crate::report::STAGE)?;
            if !request.layout.root().join("data").is_dir() {
                bail!("{} holds no run: run `cargo xtask cascade` into it first", request.layout.root().display());
            }
            runner::run(request)
        }
        Command::Sweep(args) => {
            let assignment = crate::sweep::parse_assignment(&args.assignment)?;
            crate::sweep::run(args.common.request()?, &assignment, args.to).map(|_| ())
        }
        Command::Generate(args) => crate::infer::generate(&args),
        Command::Chat(args) => crate::infer::chat(&args),
        Command::Eval(args) => crate::infer::eval(&args),
        Command::Serve(args) => crate::serve::serve(&args),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shard_specs() {
        assert_eq!(parse_shard("0/4").unwrap(), (0, 4));
        assert_eq!(parse_shard("3/4").unwrap(), (3, 4));
        for bad in ["4/4", "1", "a/2", "0/0"] {
            assert!(parse_shard(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn command_line_parses() {
        Cli::try_parse_from(["xtask", "cascade", "--preset", "smoke", "--from", "tokenizer", "--force", "data"]).unwrap();
        assert!(Cli::try_parse_from(["xtask", "cascade", "--from", "nope"]).is_err());
        assert!(Cli::try_parse_from(["xtask", "cascade", "--preset", "a", "--config", "b.toml"]).is_err());
    }
}
