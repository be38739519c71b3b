//! `cargo xtask export --format hf|gguf`: a decoder checkpoint in the HuggingFace Llama layout,
//! with the run's tokenizer beside it, so `transformers` loads the directory; or as one GGUF file
//! (llama architecture, the run's tokenizer in its metadata) that llama.cpp loads.
//!
//! The GGUF tokenizer metadata is filled here, from the tokenizer crate, so that the model crate
//! (which writes the file) does not depend on the tokenizer crate.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cascade_core::Tokenizer as _;
use cascade_model::{
    Decoder, GgufDtype, GgufOptions, GgufTokenType, GgufTokenizer, HfSpecialTokens, ModelConfig, config_path, read_config,
};
use cascade_tokenizer::{BpeTokenizer, CL100K_PATTERN, GPT2_PATTERN, special};

/// What to export and where.
#[derive(Debug)]
pub struct ExportRequest {
    /// The run directory to take the checkpoint and tokenizer from.
    pub run_dir: PathBuf,
    /// A decoder `*.safetensors` checkpoint; default: the newest one under the run directory.
    pub checkpoint: Option<PathBuf>,
    /// `tokenizer.json` to ship beside the weights; default: the run's tokenizer stage output.
    pub tokenizer: Option<PathBuf>,
    /// Output directory (HF) or file (GGUF); default: `<run-dir>/export/hf` or
    /// `<run-dir>/export/model.gguf`.
    pub out: Option<PathBuf>,
}

/// Exports to the HF Llama layout and prints where it went.
pub fn export_hf(request: &ExportRequest) -> Result<()> {
    let checkpoint = checkpoint_to_export(request)?;
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

/// Exports to one GGUF file (llama architecture, the run's tokenizer in the metadata, matrices
/// in `dtype`) and prints where it went.
pub fn export_gguf(request: &ExportRequest, dtype: GgufDtype) -> Result<()> {
    let checkpoint = checkpoint_to_export(request)?;
    let tokenizer_path =
        request.tokenizer.clone().unwrap_or_else(|| request.run_dir.join("tokenizer").join("tokenizer.json"));
    if !tokenizer_path.is_file() {
        bail!(
            "GGUF needs the tokenizer and {} does not exist; pass --tokenizer FILE",
            tokenizer_path.display()
        );
    }
    let tokenizer = gguf_tokenizer(&tokenizer_path)?;
    let device = cascade_model::parse_device("flex")?;
    let model: Decoder = cascade_model::load_safetensors(&checkpoint, &device)
        .with_context(|| format!("cannot load decoder checkpoint {}", checkpoint.display()))?;
    let out = request.out.clone().unwrap_or_else(|| request.run_dir.join("export").join("model.gguf"));
    let options = GgufOptions { dtype, ..GgufOptions::default() };
    let written = cascade_model::export_gguf_llama(&model, &tokenizer, &options, &out)
        .with_context(|| format!("exporting {} with the tokenizer {}", checkpoint.display(), tokenizer_path.display()))?;
    eprintln!(
        "exported {} ({} tensors, {:?}, {} tokens, pre-tokenizer {}) to {} ({:.1} MB)",
        checkpoint.display(),
        written.tensor_names.len(),
        dtype,
        tokenizer.tokens.len(),
        tokenizer.pre,
        out.display(),
        written.bytes as f64 / 1e6
    );
    Ok(())
}

/// The tokenizer as GGUF metadata: HF spellings by id, special tokens as control tokens, the
/// merges, llama.cpp's name for the pre-tokenizer, the special ids and the chat template.
fn gguf_tokenizer(path: &Path) -> Result<GgufTokenizer> {
    let tokenizer = BpeTokenizer::load_hf(path)?;
    let pre = match tokenizer.pattern() {
        GPT2_PATTERN => "gpt-2",
        // llama.cpp's `llama-bpe` (Llama 3) pre-tokenizer splits like cl100k's pattern:
        // identical tokens on the smoke corpus (scripts/check_gguf_export.py).
        CL100K_PATTERN => "llama-bpe",
        other => bail!(
            "{}: the pre-tokenizer pattern {other:?} has no llama.cpp equivalent (GGUF supports the `gpt2` and `cl100k` patterns)",
            path.display()
        ),
    };
    let hf = tokenizer.to_hf_json();
    let vocab = hf["model"]["vocab"].as_object().context("tokenizer.json without model.vocab")?;
    let mut tokens = vec![String::new(); vocab.len()];
    for (spelled, id) in vocab {
        let id = id.as_u64().and_then(|id| usize::try_from(id).ok()).filter(|id| *id < tokens.len());
        let id = id.with_context(|| format!("{}: model.vocab[{spelled:?}] has a bad id", path.display()))?;
        tokens[id] = spelled.clone();
    }
    let token_types = (0..tokens.len() as u32)
        .map(|id| if tokenizer.is_special(id) { GgufTokenType::Control } else { GgufTokenType::Normal })
        .collect();
    let merges = hf["model"]["merges"]
        .as_array()
        .context("tokenizer.json without model.merges")?
        .iter()
        .map(|m| m.as_str().map(str::to_owned).context("a merge is not a \"left right\" string"))
        .collect::<Result<Vec<_>>>()?;
    let endoftext = tokenizer.special_token(special::ENDOFTEXT);
    let roles = [special::SYSTEM, special::USER, special::ASSISTANT, special::END_OF_TURN];
    let has_chat_tokens = roles.iter().all(|name| tokenizer.special_token(name).is_some());
    Ok(GgufTokenizer {
        tokens,
        token_types,
        merges,
        pre: pre.into(),
        bos_token_id: endoftext,
        eos_token_id: endoftext,
        eot_token_id: tokenizer.special_token(special::END_OF_TURN),
        padding_token_id: tokenizer.special_token(special::PAD),
        chat_template: has_chat_tokens.then(chat_template_jinja),
    })
}

/// `cascade_core::chat`'s template in Jinja, for tools that format chats from GGUF metadata:
/// each turn is its role token, the content, then the end-of-turn token; a generation prompt
/// opens an assistant turn.
fn chat_template_jinja() -> String {
    "{% for message in messages %}\
     {% if message['role'] == 'system' %}{{ 'SYSTEM' }}\
     {% elif message['role'] == 'user' %}{{ 'USER' }}\
     {% elif message['role'] == 'assistant' %}{{ 'ASSISTANT' }}\
     {% else %}{{ raise_exception('unknown role: ' + message['role']) }}{% endif %}\
     {{ message['content'] + 'END_OF_TURN' }}{% endfor %}\
     {% if add_generation_prompt %}{{ 'ASSISTANT' }}{% endif %}"
        .replace("SYSTEM", special::SYSTEM)
        .replace("USER", special::USER)
        .replace("END_OF_TURN", special::END_OF_TURN)
        .replace("ASSISTANT", special::ASSISTANT)
}

fn checkpoint_to_export(request: &ExportRequest) -> Result<PathBuf> {
    match &request.checkpoint {
        Some(path) => Ok(path.clone()),
        None => newest_decoder_checkpoint(&request.run_dir)?.with_context(|| {
            format!(
                "no decoder checkpoint (*.safetensors with a decoder config beside it) under {}; pass --checkpoint FILE",
                request.run_dir.display()
            )
        }),
    }
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
