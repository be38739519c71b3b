//! The cascade runner: resolves a request, then runs the selected stages in order, skipping
//! each one whose manifest matches its config and inputs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use cascade_core::manifest::check_stage;
use cascade_core::{RunLayout, StageDir, Staleness};

use crate::cli::DeviceArg;
use crate::config::{self, CascadeConfig};
use crate::corpus::CorpusInput;
use crate::progress::{Bars, RunLog};
use crate::stages::{self, Stage};

/// The command line before validation.
#[derive(Debug)]
pub struct RawRequest {
    /// `--preset`.
    pub preset: Option<String>,
    /// `--config`.
    pub config: Option<PathBuf>,
    /// `--corpus`.
    pub corpus: Option<PathBuf>,
    /// `--run-dir`.
    pub run_dir: Option<PathBuf>,
    /// `--device`.
    pub device: DeviceArg,
    /// `--quiet`.
    pub quiet: bool,
}

/// Options that change how a stage runs but not what it produces (so not in its config hash).
#[derive(Debug, Clone, Default)]
pub struct StageOptions {
    /// `data --strict`: bad input is an error rather than a counted skip.
    pub strict: bool,
    /// `data --merge N`: build the data stage from `N` shard results instead of the corpus.
    pub merge_shards: Option<usize>,
}

/// A validated request: everything the stages need.
#[derive(Debug)]
pub struct RunRequest {
    /// The resolved config.
    pub config: CascadeConfig,
    /// Where it came from (preset name or file), for the log.
    pub config_origin: String,
    /// The corpus.
    pub corpus: CorpusInput,
    /// The run directory.
    pub layout: RunLayout,
    /// Device for model stages.
    pub device: DeviceArg,
    /// No progress bars.
    pub quiet: bool,
    /// First stage to consider.
    pub from: Option<String>,
    /// Last stage to consider.
    pub to: Option<String>,
    /// Stages to rerun even when up to date (`all` for every one).
    pub force_stages: Vec<String>,
    /// Stage options outside the config.
    pub stage_options: StageOptions,
}

impl RunRequest {
    /// Validates the raw command line: loads the config, picks the run directory and checks
    /// the device is available in this build.
    pub fn resolve(raw: RawRequest) -> Result<Self> {
        let (config_path, name) = match (&raw.config, &raw.preset) {
            (Some(path), _) => {
                let name = path.file_stem().map_or_else(|| "custom".into(), |s| s.to_string_lossy().into_owned());
                (path.clone(), name)
            }
            (None, preset) => {
                let name = preset.clone().unwrap_or_else(|| "small".into());
                (config::preset_path(&name)?, name)
            }
        };
        let config = config::load(&config_path)?;
        // Fail before any stage runs when the device is not in this build.
        if let Err(err) = cascade_model::parse_device(raw.device.name()) {
            bail!(
                "--device {}: {err}; the runner is built with it by `cargo run -p xtask --release --features wgpu -- <command> --device wgpu`",
                raw.device.name()
            );
        }
        let corpus = match raw.corpus {
            Some(path) if !path.exists() => bail!("corpus {} does not exist", path.display()),
            Some(path) => CorpusInput::Path(path),
            None => CorpusInput::Default,
        };
        let run_dir = raw.run_dir.unwrap_or_else(|| config::workspace_root().join("runs").join(&name));
        Ok(Self {
            config,
            config_origin: config_path.display().to_string(),
            corpus,
            layout: RunLayout::new(run_dir),
            device: raw.device,
            quiet: raw.quiet,
            from: None,
            to: None,
            force_stages: Vec::new(),
            stage_options: StageOptions::default(),
        })
    }

    fn forced(&self, stage: &str) -> bool {
        self.force_stages.iter().any(|s| s == stage || s == "all")
    }
}

/// What a running stage can see.
#[derive(Debug)]
pub struct Ctx {
    /// The request.
    pub request: RunRequest,
    /// Progress bars handed to the stage crates.
    pub bars: Bars,
    /// Status lines and the run log.
    pub log: RunLog,
}

impl Ctx {
    fn new(request: RunRequest) -> Result<Self> {
        let root = request.layout.root();
        std::fs::create_dir_all(root).with_context(|| format!("cannot create run directory {}", root.display()))?;
        let bars = Bars::new(request.quiet);
        let log = RunLog::new(request.layout.log_path());
        Ok(Self { request, bars, log })
    }
}

/// Runs the stages between `from` and `to` in cascade order.
pub fn run(request: RunRequest) -> Result<()> {
    let all = stages::all();
    let index_of = |name: &Option<String>, default: usize| -> usize {
        name.as_ref().and_then(|n| all.iter().position(|s| s.name() == n)).unwrap_or(default)
    };
    let (first, last) = (index_of(&request.from, 0), index_of(&request.to, all.len() - 1));
    if first > last {
        bail!("--from {} comes after --to {} in the cascade", all[first].name(), all[last].name());
    }
    let ctx = Ctx::new(request)?;
    let started = Instant::now();
    let layout = &ctx.request.layout;
    std::fs::write(layout.config_path(), config::to_toml(&ctx.request.config)?)
        .with_context(|| format!("cannot write {}", layout.config_path().display()))?;
    ctx.log.line(&format!(
        "cascade: run {} with {} on {:?}, stages {}..{}",
        layout.root().display(),
        ctx.request.config_origin,
        ctx.request.device,
        all[first].name(),
        all[last].name()
    ));
    for stage in &all[first..=last] {
        run_stage(&ctx, stage.as_ref())?;
    }
    ctx.log.line(&format!("cascade: finished in {:.1}s", started.elapsed().as_secs_f64()));
    Ok(())
}

fn run_stage(ctx: &Ctx, stage: &dyn Stage) -> Result<()> {
    let name = stage.name();
    let layout = &ctx.request.layout;
    let inputs = stage.inputs(ctx).with_context(|| format!("stage {name}"))?;
    let config_hash = stage.config_hash(ctx);
    let staleness = if ctx.request.forced(name) {
        None
    } else {
        Some(check_stage(&layout.stage_dir(name), &config_hash, &inputs).with_context(|| format!("stage {name}"))?)
    };
    let reason = match &staleness {
        Some(Staleness::UpToDate) => {
            ctx.log.line(&format!("  {name:<24} up to date"));
            return Ok(());
        }
        Some(other) => other.to_string(),
        None => "forced".to_owned(),
    };
    let stage_dir = if stage.resumable() {
        let resume_key = cascade_core::hash::config_hash(&serde_json::json!({ "config": config_hash, "inputs": inputs }));
        let (stage_dir, resumed) = StageDir::begin_resumable(layout, name, &resume_key, ctx.request.forced(name))?;
        let reason = if resumed { format!("{reason}; resuming the interrupted run") } else { reason };
        ctx.log.line(&format!("  {name:<24} running ({reason})"));
        stage_dir
    } else {
        ctx.log.line(&format!("  {name:<24} running ({reason})"));
        StageDir::begin(layout, name)?
    };
    let metrics = stage.run(ctx, stage_dir.path()).with_context(|| format!("stage {name} failed"))?;
    let summary = stage.summary(&metrics);
    let manifest = stage_dir.commit(&config_hash, inputs, metrics)?;
    ctx.log.line(&format!("  {name:<24} done in {:.1}s: {summary}", manifest.wall_s));
    Ok(())
}

/// The directory of shard `index` of `count` of the data stage's signature pass.
pub fn data_shard_dir(layout: &RunLayout, index: usize, count: usize) -> PathBuf {
    layout.root().join("data-shards").join(format!("{index}-of-{count}"))
}

/// `cargo xtask data --shard I/N`: the signature pass over slice `I` of `N` of the input files,
/// into `<run-dir>/data-shards/I-of-N/` (written under a temporary name, then renamed).
pub fn run_data_shard(request: RunRequest, (index, count): (usize, usize)) -> Result<()> {
    let ctx = Ctx::new(request)?;
    let spec = cascade_data::ShardSpec::new(index, count)?;
    let final_dir = data_shard_dir(&ctx.request.layout, index, count);
    let parent = final_dir.parent().context("shard directory has no parent")?;
    let temp_dir = parent.join(format!(".{index}-of-{count}.tmp-{}", std::process::id()));
    std::fs::create_dir_all(&temp_dir).with_context(|| format!("cannot create {}", temp_dir.display()))?;
    ctx.log.line(&format!("  data shard {index}/{count} running"));
    let corpus = ctx.request.corpus.materialize()?;
    let options = cascade_data::RunOptions { strict: ctx.request.stage_options.strict };
    let result = cascade_data::run_shard(&ctx.request.config.data, &corpus, spec, &temp_dir, &options, &ctx.bars);
    let summary = match result {
        Ok(summary) => summary,
        Err(err) => {
            let _ = std::fs::remove_dir_all(&temp_dir);
            return Err(err).context(format!("data shard {index}/{count} failed"));
        }
    };
    if final_dir.exists() {
        std::fs::remove_dir_all(&final_dir).with_context(|| format!("cannot replace {}", final_dir.display()))?;
    }
    std::fs::rename(&temp_dir, &final_dir).with_context(|| format!("cannot move shard into {}", final_dir.display()))?;
    ctx.log.line(&format!(
        "  data shard {index}/{count} done: {} documents signed into {}; merge with `cargo xtask data --merge {count}`",
        summary.docs,
        final_dir.display()
    ));
    Ok(())
}

/// `cargo xtask data --merge N`: the data stage built from the `N` shard results.
pub fn run_data_merge(mut request: RunRequest, count: usize) -> Result<()> {
    if count == 0 {
        bail!("--merge 0: need at least one shard");
    }
    request.stage_options.merge_shards = Some(count);
    request.force_stages.push("data".into());
    run(request)
}
