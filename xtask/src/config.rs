//! The cascade config: one TOML file with a section per stage, each deserialized into its
//! crate's typed config. Unknown keys are errors that name the file, line and key.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, anyhow};
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
    let config: CascadeConfig = toml::from_str(text).map_err(|err| {
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
    Ok(config)
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
    fn empty_config_means_defaults_and_unknown_preset_lists_presets() {
        parse("", "empty.toml").unwrap();
        let err = preset_path("huge").unwrap_err().to_string();
        assert!(err.contains("smoke") && err.contains("small"), "{err}");
    }
}
