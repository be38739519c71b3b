//! The cascade config: one TOML file with a section per stage, each deserialized into its
//! crate's typed config. Unknown keys are errors that name the file, line and key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow, bail};
use serde::{Deserialize, Serialize};

/// The whole cascade's configuration, one section per stage crate.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CascadeConfig {
    /// `[data]`: ingest, filters, dedup, split.
    #[serde(default)]
    pub data: cascade_data::DataConfig,
    /// `[tokenizer]`: BPE training and encoding.
    #[serde(default)]
    pub tokenizer: cascade_tokenizer::TokenizerConfig,
    /// `[model.decoder]`, `[model.encoder]`, `[model.encoder_decoder]`: the architectures.
    #[serde(default)]
    pub model: ModelSection,
    /// `[pretrain.decoder]`, `[pretrain.encoder]`, `[pretrain.encoder_decoder]`: each family's
    /// pretraining run (objective settings, schedule, budget).
    #[serde(default)]
    pub pretrain: PretrainSection,
    /// `[sft]`: supervised fine-tuning of the pretrained decoder (`[sft.data]` conversations,
    /// `[sft.train]` the loop's settings).
    #[serde(default)]
    pub sft: cascade_posttrain::SftConfig,
    /// `[sft_judge]`: the pretrained encoder fine-tuned into the reply judge on the same
    /// conversations (`[sft_judge.train]` the loop's settings).
    #[serde(default)]
    pub sft_judge: cascade_posttrain::JudgeConfig,
    /// `[sft_seq2seq]`: the pretrained encoder-decoder fine-tuned on the same conversations,
    /// at the decoder SFT's training FLOPs (`[sft_seq2seq.train]` the loop's settings).
    #[serde(default)]
    pub sft_seq2seq: cascade_posttrain::Seq2SeqConfig,
    /// `[report]`: what the report stage samples and costs beyond the run's files.
    #[serde(default)]
    pub report: cascade_report::ReportConfig,
    /// `[dpo]`: preference optimization of the SFT decoder (`[dpo.pairs]` where the pairs come
    /// from, `[dpo.train]` the loop's settings).
    #[serde(default)]
    pub dpo: cascade_posttrain::DpoConfig,
}

/// One architecture config per family. `vocab_size` is not set here: it is the tokenizer's.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelSection {
    /// Decoder-only (GPT/Llama style).
    pub decoder: cascade_model::DecoderConfig,
    /// Encoder-only (BERT style).
    pub encoder: cascade_model::EncoderConfig,
    /// Encoder-decoder (T5 style).
    pub encoder_decoder: cascade_model::EncoderDecoderConfig,
}

/// One pretraining config per family.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PretrainSection {
    /// Causal LM for the decoder.
    pub decoder: cascade_pretrain::PretrainConfig,
    /// Masked LM for the encoder.
    pub encoder: cascade_pretrain::PretrainConfig,
    /// Span corruption for the encoder-decoder.
    pub encoder_decoder: cascade_pretrain::PretrainConfig,
}

/// The workspace root (xtask lives one level below it).
pub fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// The file of preset `name` in `configs/`.
pub fn preset_path(name: &str) -> Result<PathBuf> {
    let dir = workspace_root().join("configs");
    let path = dir.join(format!("{name}.toml"));
    if path.is_file() {
        return Ok(path);
    }
    let mut known: Vec<String> = std::fs::read_dir(&dir)
        .map(|entries| {
            entries
                .filter_map(|e| e.ok())
                .filter_map(|e| e.path().file_stem().map(|s| s.to_string_lossy().into_owned()))
                .collect()
        })
        .unwrap_or_default();
    known.sort();
    Err(anyhow!("no preset `{name}` in {}; the presets are: {}", dir.display(), known.join(", ")))
}

/// Reads and validates a config file.
pub fn load(path: &Path) -> Result<CascadeConfig> {
    let text = std::fs::read_to_string(path).with_context(|| format!("cannot read config {}", path.display()))?;
    parse(&text, &path.display().to_string())
}

/// Parses and validates config text; `origin` names it in errors.
pub fn parse(text: &str, origin: &str) -> Result<CascadeConfig> {
    let mut config: CascadeConfig = toml::from_str(text).map_err(|err| {
        let location = err.span().map(|span| {
            let before = &text[..span.start.min(text.len())];
            let line = before.matches('\n').count() + 1;
            let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
            format!("{line}:{column}")
        });
        let message = err.message().replace('\n', " ");
        match location {
            Some(at) => anyhow!("{origin}:{at}: {message}"),
            None => anyhow!("{origin}: {message}"),
        }
    })?;
    config.data.validate().map_err(|e| anyhow!("{origin}: [data] {e}"))?;
    config.tokenizer.validate().map_err(|e| anyhow!("{origin}: [tokenizer] {e}"))?;
    config.report.validate().map_err(|e| anyhow!("{origin}: {e}"))?;
    config.sft_judge.validate().map_err(|e| anyhow!("{origin}: {e}"))?;
    config.sft_seq2seq.validate().map_err(|e| anyhow!("{origin}: {e}"))?;
    config.dpo.validate().map_err(|e| anyhow!("{origin}: [dpo] {e}"))?;
    resolve_models(&mut config, text, origin)?;
    Ok(config)
}

/// Gives every model the tokenizer's vocabulary size (one source of truth: a model whose
/// embedding table disagrees with the token ids is a bug, not a choice), then validates the
/// model and pretraining sections against each other.
fn resolve_models(config: &mut CascadeConfig, text: &str, origin: &str) -> Result<()> {
    let vocab_size = config.tokenizer.vocab_size as usize;
    let table: toml::Table = toml::from_str(text).unwrap_or_default();
    for family in ["decoder", "encoder", "encoder_decoder"] {
        let written = table.get("model").and_then(|m| m.get(family)).and_then(|f| f.get("vocab_size"));
        if let Some(written) = written.filter(|v| v.as_integer() != Some(vocab_size as i64)) {
            bail!(
                "{origin}: [model.{family}] vocab_size = {written} differs from [tokenizer] vocab_size = {vocab_size}; models take the tokenizer's, leave it out"
            );
        }
    }
    let model = &mut config.model;
    model.decoder.vocab_size = vocab_size;
    model.encoder.vocab_size = vocab_size;
    model.encoder_decoder.vocab_size = vocab_size;
    model.decoder.validate().map_err(|e| anyhow!("{origin}: [model.decoder] {e}"))?;
    model.encoder.validate().map_err(|e| anyhow!("{origin}: [model.encoder] {e}"))?;
    model.encoder_decoder.validate().map_err(|e| anyhow!("{origin}: [model.encoder_decoder] {e}"))?;
    let pretrain = &config.pretrain;
    for (family, section) in
        [("decoder", &pretrain.decoder), ("encoder", &pretrain.encoder), ("encoder_decoder", &pretrain.encoder_decoder)]
    {
        section.validate().map_err(|e| anyhow!("{origin}: [pretrain.{family}] {e}"))?;
    }
    let fits = [
        ("decoder", pretrain.decoder.seq_len, model.decoder.max_seq_len, "max_seq_len"),
        ("encoder", pretrain.encoder.seq_len, model.encoder.max_seq_len, "max_seq_len"),
        ("encoder_decoder", pretrain.encoder_decoder.seq_len, model.encoder_decoder.max_source_len, "max_source_len"),
    ];
    for (family, seq_len, limit, key) in fits {
        if seq_len > limit {
            bail!("{origin}: [pretrain.{family}] seq_len = {seq_len} is longer than [model.{family}] {key} = {limit}");
        }
    }
    let reply_lengths = [
        ("sft_judge", "max_len", config.sft_judge.max_len, "encoder", "max_seq_len", model.encoder.max_seq_len),
        ("sft_seq2seq", "max_source_len", config.sft_seq2seq.max_source_len, "encoder_decoder", "max_source_len", model.encoder_decoder.max_source_len),
        ("sft_seq2seq", "max_target_len", config.sft_seq2seq.max_target_len, "encoder_decoder", "max_target_len", model.encoder_decoder.max_target_len),
        ("dpo.train", "seq_len", config.dpo.train.seq_len, "decoder", "max_seq_len", model.decoder.max_seq_len),
    ];
    for (section, key, len, family, model_key, limit) in reply_lengths {
        if len > limit {
            bail!("{origin}: [{section}] {key} = {len} is longer than [model.{family}] {model_key} = {limit}");
        }
    }
    Ok(())
}

/// The resolved config as TOML, written into the run directory.
pub fn to_toml(config: &CascadeConfig) -> Result<String> {
    toml::to_string_pretty(config).context("cannot serialize the resolved config")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_preset_parses() {
        for preset in ["smoke", "small", "base"] {
            load(&preset_path(preset).unwrap()).unwrap_or_else(|e| panic!("{preset}: {e:#}"));
        }
    }

    #[test]
    fn resolved_config_round_trips() {
        let config = load(&preset_path("smoke").unwrap()).unwrap();
        let text = to_toml(&config).unwrap();
        let again = parse(&text, "resolved").unwrap();
        assert_eq!(to_toml(&again).unwrap(), text);
    }

    #[test]
    fn unknown_keys_and_sections_name_file_line_and_key() {
        let err = parse("[tokenizer]\nvocab_sise = 4096\n", "my.toml").unwrap_err().to_string();
        assert!(err.starts_with("my.toml:2:"), "{err}");
        assert!(err.contains("vocab_sise"), "{err}");
        let err = parse("[pretrian]\nsteps = 3\n", "my.toml").unwrap_err().to_string();
        assert!(err.contains("pretrian") && err.contains("my.toml:1"), "{err}");
        let err = parse("[tokenizer]\nvocab_size = \"big\"\n", "my.toml").unwrap_err().to_string();
        assert!(err.contains("my.toml:2:"), "{err}");
    }

    #[test]
    fn models_take_the_tokenizer_vocabulary_and_must_fit_the_pretraining_windows() {
        let config = parse("[tokenizer]\nvocab_size = 2048\n", "v.toml").unwrap();
        assert_eq!(config.model.decoder.vocab_size, 2048);
        assert_eq!(config.model.encoder_decoder.vocab_size, 2048);
        parse("[tokenizer]\nvocab_size = 2048\n[model.decoder]\nvocab_size = 2048\n", "v.toml").unwrap();
        let err = parse("[tokenizer]\nvocab_size = 2048\n[model.decoder]\nvocab_size = 99\n", "v.toml").unwrap_err().to_string();
        assert!(err.contains("[model.decoder] vocab_size = 99") && err.contains("[tokenizer] vocab_size = 2048"), "{err}");
        let err = parse("[model.decoder]\nmax_seq_len = 64\n[pretrain.decoder]\nseq_len = 128\n", "v.toml")
            .unwrap_err()
            .to_string();
        assert!(err.contains("seq_len = 128") && err.contains("max_seq_len = 64"), "{err}");
        let err = parse("[model.encoder]\nd_model = 100\nn_heads = 8\n", "v.toml").unwrap_err().to_string();
        assert!(err.contains("[model.encoder]") && err.contains("d_model"), "{err}");
    }

    #[test]
    fn empty_config_means_defaults_and_unknown_preset_lists_presets() {
        parse("", "empty.toml").unwrap();
        let err = preset_path("huge").unwrap_err().to_string();
        assert!(err.contains("smoke") && err.contains("small"), "{err}");
    }
}
