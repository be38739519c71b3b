//! `cargo xtask export --format hf`: a decoder checkpoint in the HuggingFace Llama layout, with
//! the run's tokenizer beside it, so `transformers` loads the directory.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cascade_core::Tokenizer as _;
use cascade_model::{Decoder, HfSpecialTokens, ModelConfig, config_path, read_config};

/// What to export and where.
#[derive(Debug)]
pub struct ExportRequest {
    /// The run directory to take the checkpoint and tokenizer from.
    pub run_dir: PathBuf,
    /// A decoder `*.safetensors` checkpoint; default: the newest one under the run directory.
    pub checkpoint: Option<PathBuf>,
    /// `tokenizer.json` to ship beside the weights; default: the run's tokenizer stage output.
    pub tokenizer: Option<PathBuf>,
    /// Output directory; default: `<run-dir>/export/hf`.
    pub out: Option<PathBuf>,
}

/// Exports to the HF Llama layout and prints where it went.
pub fn export_hf(request: &ExportRequest) -> Result<()> {
    let checkpoint = match &request.checkpoint {
        Some(path) => path.clone(),
        None => newest_decoder_checkpoint(&request.run_dir)?.with_context(|| {
            format!(
                "no decoder checkpoint (*.safetensors with a decoder config beside it) under {}; pass --checkpoint FILE",
                request.run_dir.display()
            )
        })?,
    };
    let tokenizer_path = match &request.tokenizer {
        Some(path) => Some(path.clone()),
        None => Some(request.run_dir.join("tokenizer").join("tokenizer.json")).filter(|p| p.is_file()),
    };
    let special = match &tokenizer_path {
        Some(path) => {
            let tokenizer = cascade_tokenizer::BpeTokenizer::load_hf(path)?;
            let endoftext = tokenizer.special_token(cascade_tokenizer::special::ENDOFTEXT);
            HfSpecialTokens {
                bos_token_id: endoftext,
                eos_token_id: endoftext,
                pad_token_id: tokenizer.special_token(cascade_tokenizer::special::PAD),
            }
        }
        None => HfSpecialTokens::default(),
    };
    let device = cascade_model::parse_device("flex")?;
    let model: Decoder = cascade_model::load_safetensors(&checkpoint, &device)
        .with_context(|| format!("cannot load decoder checkpoint {}", checkpoint.display()))?;
    let out = request.out.clone().unwrap_or_else(|| request.run_dir.join("export").join("hf"));
    let written = cascade_model::export_hf_llama(&model, &special, tokenizer_path.as_deref(), &out)?;
    eprintln!(
        "exported {} ({} tensors) to {}{}",
        checkpoint.display(),
        written.tensor_names.len(),
        out.display(),
        if written.tokenizer_path.is_some() { " with tokenizer.json" } else { " without a tokenizer" }
    );
    Ok(())
}

/// The most recently written decoder checkpoint under `run_dir`, if any.
fn newest_decoder_checkpoint(run_dir: &Path) -> Result<Option<PathBuf>> {
    if !run_dir.is_dir() {
        bail!("run directory {} does not exist", run_dir.display());
    }
    let mut newest: Option<(std::time::SystemTime, PathBuf)> = None;
    for rel in cascade_core::hash::list_files(run_dir)? {
        let path = run_dir.join(&rel);
        if path.extension().is_none_or(|e| e != "safetensors") {
            continue;
        }
        if !matches!(read_config(&config_path(&path)), Ok(ModelConfig::Decoder(_))) {
            continue;
        }
        let modified = std::fs::metadata(&path).and_then(|m| m.modified()).with_context(|| path.display().to_string())?;
        if newest.as_ref().is_none_or(|(t, _)| modified > *t) {
            newest = Some((modified, path));
        }
    }
    Ok(newest.map(|(_, path)| path))
}
