//! `cargo xtask sweep <section>.<key>=v1,v2,...`: the cascade once per value, each in its own
//! run directory seeded with hard links to the base run's stage directories, so the stages the
//! key does not touch are found up to date and only the rest reruns; then a report comparing
//! the runs.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use cascade_report::sweep::{SweepRun, write_sweep_report};

use crate::config;
use crate::corpus::CorpusInput;
use crate::runner::{self, RawRequest, RunRequest};

/// A parsed `section.key=v1,v2,...`.
#[derive(Debug, Clone, PartialEq)]
pub struct Assignment {
    /// The dotted key, e.g. `tokenizer.vocab_size`.
    pub key: String,
    /// The values as written.
    pub values: Vec<String>,
}

/// Parses `section.key=v1,v2,...`.
pub fn parse_assignment(text: &str) -> Result<Assignment> {
    let (key, values) = text.split_once('=').with_context(|| format!("`{text}`: expected SECTION.KEY=V1,V2,... e.g. tokenizer.vocab_size=2048,4096"))?;
    let key = key.trim();
    if !key.contains('.') || key.split('.').any(str::is_empty) {
        bail!("`{key}`: the key needs its config section, e.g. tokenizer.vocab_size or model.decoder.n_kv_heads");
    }
    let values: Vec<String> = values.split(',').map(|v| v.trim().to_owned()).filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        bail!("`{text}`: no values after `=`");
    }
    Ok(Assignment { key: key.to_owned(), values })
}

/// A command-line value as TOML: integer, float, boolean, else string.
fn toml_value(text: &str) -> toml::Value {
    match toml::from_str::<toml::Table>(&format!("v = {text}")) {
        Ok(mut table) => table.remove("v").unwrap_or_else(|| toml::Value::String(text.to_owned())),
        Err(_) => toml::Value::String(text.to_owned()),
    }
}

/// The base config with `key` set to `value`, as TOML text (validated when loaded).
fn config_with(base: &config::CascadeConfig, key: &str, value: &str) -> Result<String> {
    let toml::Value::Table(mut table) = toml::Value::try_from(base).context("cannot serialize the base config")? else {
        bail!("the base config did not serialize to a table");
    };
    // Model vocabularies are derived from [tokenizer]; leave them out so they follow it.
    if let Some(models) = table.get_mut("model").and_then(toml::Value::as_table_mut) {
        for family in models.iter_mut().filter_map(|(_, family)| family.as_table_mut()) {
            family.remove("vocab_size");
        }
    }
    let parts: Vec<&str> = key.split('.').collect();
    let (leaf, sections) = parts.split_last().context("empty key")?;
    let mut current = &mut table;
    for (depth, section) in sections.iter().enumerate() {
        current = current
            .get_mut(*section)
            .and_then(toml::Value::as_table_mut)
            .with_context(|| format!("sweep key `{key}`: the config has no section [{}]", parts[..=depth].join(".")))?;
    }
    if !current.contains_key(*leaf) {
        let mut known: Vec<&String> = current.keys().collect();
        known.sort();
        bail!(
            "sweep key `{key}`: [{}] has no key `{leaf}`; its keys are {}",
            sections.join("."),
            known.iter().map(|k| k.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    current.insert((*leaf).to_owned(), toml_value(value));
    toml::to_string_pretty(&table).context("cannot serialize the swept config")
}

/// Makes `to` a copy of `from` by hard links (plain copies across file systems).
fn link_tree(from: &Path, to: &Path) -> Result<()> {
    std::fs::create_dir_all(to).with_context(|| format!("cannot create {}", to.display()))?;
    for entry in std::fs::read_dir(from).with_context(|| format!("cannot list {}", from.display()))? {
        let entry = entry?;
        let (source, target) = (entry.path(), to.join(entry.file_name()));
        if entry.file_type()?.is_dir() {
            link_tree(&source, &target)?;
        } else if std::fs::hard_link(&source, &target).is_err() {
            std::fs::copy(&source, &target).with_context(|| format!("cannot copy {} to {}", source.display(), target.display()))?;
        }
    }
    Ok(())
}

/// Seeds `run_dir` with every finished stage of `base` (except the report): stages are replaced
/// whole on rerun (StageDir::commit), never edited in place, so sharing their files is safe.
fn seed_from(base: &Path, run_dir: &Path) -> Result<usize> {
    let mut seeded = 0;
    if !base.is_dir() {
        return Ok(seeded);
    }
    for entry in std::fs::read_dir(base).with_context(|| format!("cannot list {}", base.display()))? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let target = run_dir.join(&name);
        if name.starts_with('.') || name == crate::report::STAGE || target.exists() || !entry.path().join("manifest.json").is_file() {
            continue;
        }
        link_tree(&entry.path(), &target)?;
        seeded += 1;
    }
    Ok(seeded)
}

/// Runs the sweep: one cascade per value, then the comparison report; returns its directory.
pub fn run(base: RunRequest, assignment: &Assignment, to: Option<String>) -> Result<PathBuf> {
    let base_dir = base.layout.root().to_path_buf();
    let name = base_dir.file_name().map_or_else(|| "run".into(), |n| n.to_string_lossy().into_owned());
    let sweep_dir = base_dir.with_file_name(format!("{name}.sweep")).join(&assignment.key);
    std::fs::create_dir_all(&sweep_dir).with_context(|| format!("cannot create {}", sweep_dir.display()))?;
    let corpus = match &base.corpus {
        CorpusInput::Path(path) => Some(path.clone()),
        CorpusInput::Default => None,
    };
    let mut runs = Vec::new();
    for value in &assignment.values {
        let config_text = config_with(&base.config, &assignment.key, value)?;
        let config_path = sweep_dir.join(format!("{value}.toml"));
        std::fs::write(&config_path, &config_text).with_context(|| format!("cannot write {}", config_path.display()))?;
        let run_dir = sweep_dir.join(value);
        // The base run if it exists, else the first value's run, provides the cached stages.
        let seed = if base_dir.join("data").join("manifest.json").is_file() { base_dir.clone() } else { sweep_dir.join(&assignment.values[0]) };
        if seed != run_dir {
            seed_from(&seed, &run_dir)?;
        }
        let mut request = RunRequest::resolve(RawRequest {
            preset: None,
            config: Some(config_path),
            corpus: corpus.clone(),
            run_dir: Some(run_dir.clone()),
            device: base.device,
            quiet: base.quiet,
        })
        .with_context(|| format!("{}={value}", assignment.key))?;
        request.to = to.clone();
        eprintln!("sweep: {}={value} in {}", assignment.key, run_dir.display());
        runner::run(request).with_context(|| format!("sweep run {}={value}", assignment.key))?;
        runs.push(SweepRun { value: value.clone(), run_dir });
    }
    let stage_order: Vec<&str> = crate::stages::STAGE_NAMES.iter().copied().filter(|s| *s != crate::report::STAGE).collect();
    let report_dir = sweep_dir.join("report");
    write_sweep_report(&assignment.key, &runs, &stage_order, &report_dir)?;
    eprintln!("sweep: comparison in {}", report_dir.join("report.html").display());
    Ok(report_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn assignments_parse_and_bad_ones_say_why() {
        let a = parse_assignment("model.decoder.n_kv_heads=1, 2,4").unwrap();
        assert_eq!(a.key, "model.decoder.n_kv_heads");
        assert_eq!(a.values, ["1", "2", "4"]);
        assert!(parse_assignment("vocab_size=1").unwrap_err().to_string().contains("section"));
        assert!(parse_assignment("tokenizer.vocab_size").is_err());
        assert!(parse_assignment("tokenizer.vocab_size=").is_err());
    }

    #[test]
    fn swept_configs_set_the_key_and_keep_models_on_the_tokenizer_vocabulary() {
        let base = config::load(&config::preset_path("smoke").unwrap()).unwrap();
        let text = config_with(&base, "tokenizer.vocab_size", "2048").unwrap();
        let swept = config::parse(&text, "swept").unwrap();
        assert_eq!(swept.tokenizer.vocab_size, 2048);
        assert_eq!(swept.model.decoder.vocab_size, 2048);
        let text = config_with(&base, "model.decoder.n_kv_heads", "1").unwrap();
        assert_eq!(config::parse(&text, "swept").unwrap().model.decoder.n_kv_heads, 1);
        let err = config_with(&base, "tokenizer.vocab_sise", "1").unwrap_err().to_string();
        assert!(err.contains("vocab_sise") && err.contains("vocab_size"), "{err}");
        assert!(config_with(&base, "nope.key", "1").unwrap_err().to_string().contains("[nope]"));
    }
}
