//! Reading a run directory: every stage's manifest (or its absence), its `metrics.jsonl`, and
//! from `run.log` whether the last cascade ran it afresh or reused it.

use std::path::{Path, PathBuf};

use cascade_core::StageManifest;
use serde_json::{Map, Value};

use crate::error::{ReportError, Result};

/// What the runner last did with a stage, read from `run.log`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheStatus {
    /// The stage ran (the reason the runner gave: `not run yet`, `config changed`, ...).
    Fresh(String),
    /// The stage was up to date and reused.
    Reused,
    /// `run.log` says nothing about it (e.g. the stage directory was copied in).
    Unknown,
}

impl std::fmt::Display for CacheStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Fresh(reason) => write!(f, "fresh ({reason})"),
            Self::Reused => write!(f, "reused"),
            Self::Unknown => write!(f, "unknown"),
        }
    }
}

/// One stage of the run, finished or not.
#[derive(Debug, Clone)]
pub struct StageRecord {
    /// Stage name (= directory name).
    pub name: String,
    /// Its directory.
    pub dir: PathBuf,
    /// The manifest, when the stage has finished.
    pub manifest: Option<StageManifest>,
    /// What the last cascade did with it.
    pub cache: CacheStatus,
}

impl StageRecord {
    /// The manifest's metrics, or `null` when the stage has not run.
    pub fn metrics(&self) -> &Value {
        static NULL: Value = Value::Null;
        self.manifest.as_ref().map_or(&NULL, |m| &m.metrics)
    }

    /// The stage's `metrics.jsonl`, when it wrote one.
    pub fn metrics_log(&self) -> Result<Option<MetricsLog>> {
        let path = self.dir.join("metrics.jsonl");
        if self.manifest.is_none() || !path.is_file() {
            return Ok(None);
        }
        MetricsLog::read(&path).map(Some)
    }
}

/// The run directory as the report sees it.
#[derive(Debug, Clone)]
pub struct RunView {
    /// The run directory.
    pub root: PathBuf,
    /// The known stages in cascade order, then any other stage directory found, by name.
    pub stages: Vec<StageRecord>,
}

impl RunView {
    /// Reads `root`: one record per stage of `stage_order` (finished or not) and one per other
    /// directory holding a `manifest.json`, except those named in `skip`.
    pub fn load(root: &Path, stage_order: &[&str], skip: &[&str]) -> Result<Self> {
        if !root.is_dir() {
            return Err(ReportError::NoRun(root.to_path_buf()));
        }
        let log = read_log(&root.join("run.log"))?;
        let mut names: Vec<String> = stage_order.iter().map(|s| (*s).to_owned()).collect();
        let mut extra = Vec::new();
        let entries = std::fs::read_dir(root).map_err(|e| ReportError::io(root, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| ReportError::io(root, e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if !name.starts_with('.') && !names.contains(&name) && entry.path().join("manifest.json").is_file() {
                extra.push(name);
            }
        }
        extra.sort();
        names.extend(extra);
        let mut stages = Vec::new();
        for name in names.into_iter().filter(|n| !skip.contains(&n.as_str())) {
            let dir = root.join(&name);
            let manifest = StageManifest::load(&dir)?;
            let cache = cache_status(&log, &name);
            stages.push(StageRecord { name, dir, manifest, cache });
        }
        Ok(Self { root: root.to_path_buf(), stages })
    }

    /// The record of `name`, finished or not.
    pub fn stage(&self, name: &str) -> Option<&StageRecord> {
        self.stages.iter().find(|s| s.name == name)
    }

    /// The finished record of `name`.
    pub fn finished(&self, name: &str) -> Option<&StageRecord> {
        self.stage(name).filter(|s| s.manifest.is_some())
    }
}

fn read_log(path: &Path) -> Result<Vec<String>> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(text.lines().map(str::to_owned).collect()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(ReportError::io(path, e)),
    }
}

/// The runner logs `<timestamp>   <stage>   up to date` or `... running (<reason>)`; the last
/// such line for the stage decides.
fn cache_status(log: &[String], stage: &str) -> CacheStatus {
    for line in log.iter().rev() {
        let mut words = line.split_whitespace();
        let (Some(_timestamp), Some(name)) = (words.next(), words.next()) else { continue };
        if name != stage {
            continue;
        }
        let rest = words.collect::<Vec<_>>().join(" ");
        if rest == "up to date" {
            return CacheStatus::Reused;
        }
        if let Some(reason) = rest.strip_prefix("running (").and_then(|r| r.strip_suffix(')')) {
            return CacheStatus::Fresh(reason.to_owned());
        }
    }
    CacheStatus::Unknown
}

/// A `metrics.jsonl`: one JSON object per line (training steps, evaluations).
#[derive(Debug, Clone, Default)]
pub struct MetricsLog {
    /// The records, in file order.
    pub records: Vec<Map<String, Value>>,
    /// Lines that were not JSON objects (counted, not fatal: a crashed run may end mid-line).
    pub skipped_lines: usize,
}

impl MetricsLog {
    /// Reads `path`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| ReportError::io(path, e))?;
        let mut log = Self::default();
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            match serde_json::from_str::<Value>(line) {
                Ok(value @ Value::Object(_)) => log.records.push(flatten(&value)),
                _ => log.skipped_lines += 1,
            }
        }
        Ok(log)
    }

    /// Every numeric key of any record, sorted.
    pub fn numeric_keys(&self) -> Vec<String> {
        let mut keys: Vec<String> = self
            .records
            .iter()
            .flat_map(|r| r.iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k.clone()))
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }

    /// `(x, y)` for every record where both keys are finite numbers.
    pub fn series(&self, x_key: &str, y_key: &str) -> Vec<(f64, f64)> {
        self.records
            .iter()
            .filter_map(|r| Some((r.get(x_key)?.as_f64()?, r.get(y_key)?.as_f64()?)))
            .filter(|(x, y)| x.is_finite() && y.is_finite())
            .collect()
    }

    /// The x axis to plot against: `tokens` when recorded, else `step`, else the line index.
    pub fn x_key(&self) -> &'static str {
        if self.records.iter().any(|r| r.get("tokens").is_some_and(Value::is_number)) {
            "tokens"
        } else {
            "step"
        }
    }
}

/// A record with nested objects (`{"val": {"loss": 1}}`) as one level of `a/b` keys
/// (`val/loss`), so nested metrics plot like flat ones.
fn flatten(value: &Value) -> Map<String, Value> {
    fn walk(value: &Value, prefix: &str, out: &mut Map<String, Value>) {
        match value {
            Value::Object(map) => {
                for (key, child) in map {
                    let name = if prefix.is_empty() { key.clone() } else { format!("{prefix}/{key}") };
                    walk(child, &name, out);
                }
            }
            other => {
                out.insert(prefix.to_owned(), other.clone());
            }
        }
    }
    let mut out = Map::new();
    walk(value, "", &mut out);
    out
}

/// Every numeric leaf of `value` with its JSON pointer (`/a/b`), arrays excluded.
pub fn numeric_leaves(value: &Value) -> Vec<(String, f64)> {
    fn walk(value: &Value, path: &str, out: &mut Vec<(String, f64)>) {
        match value {
            Value::Number(n) => {
                if let Some(x) = n.as_f64() {
                    out.push((path.to_owned(), x));
                }
            }
            Value::Object(map) => {
                for (key, child) in map {
                    walk(child, &format!("{path}/{key}"), out);
                }
            }
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(value, "", &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cache_status_is_the_last_decision_in_the_log() {
        let log: Vec<String> = [
            "2026-01-01T00:00:00Z cascade: run x",
            "2026-01-01T00:00:00Z   data                     running (not run yet)",
            "2026-01-01T00:00:01Z   data                     done in 1.0s: ok",
            "2026-01-01T00:00:02Z   tokenizer                running (config changed)",
            "2026-01-02T00:00:00Z   data                     up to date",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(cache_status(&log, "data"), CacheStatus::Reused);
        assert_eq!(cache_status(&log, "tokenizer"), CacheStatus::Fresh("config changed".into()));
        assert_eq!(cache_status(&log, "pretrain-decoder"), CacheStatus::Unknown);
    }

    #[test]
    fn metrics_log_series_skip_missing_and_broken_lines() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("metrics.jsonl");
        std::fs::write(&path, "{\"step\":1,\"tokens\":8,\"loss\":3.0}\n{\"step\":2,\"tokens\":16,\"loss\":2.0,\"val_loss\":2.5,\"val\":{\"margin\":0.5}}\n{\"step\":3,").unwrap();
        let log = MetricsLog::read(&path).unwrap();
        assert_eq!(log.skipped_lines, 1);
        assert_eq!(log.x_key(), "tokens");
        assert_eq!(log.series("tokens", "val_loss"), vec![(16.0, 2.5)]);
        assert_eq!(log.numeric_keys(), ["loss", "step", "tokens", "val/margin", "val_loss"]);
        assert_eq!(log.series("step", "val/margin"), vec![(2.0, 0.5)]);
    }

    #[test]
    fn numeric_leaves_name_their_path() {
        let leaves = numeric_leaves(&serde_json::json!({"a": {"b": 1.5, "c": "x"}, "d": 2, "e": [1]}));
        assert_eq!(leaves, vec![("/a/b".to_owned(), 1.5), ("/d".to_owned(), 2.0)]);
    }
}
