//! Stage manifests: `manifest.json` in each stage directory, the record of what a stage did
//! and the key of the runner's cache.
//!
//! A manifest names the stage, the hash of its resolved config, the hashes of its inputs, every
//! output file with its sha256 and size, the stage's metrics (what it kept, lost and cost) and
//! its wall time. It is written last, after every output is in place, so a stage directory with
//! a manifest is complete and one without is not.

use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Result};
use crate::hash::{list_files, sha256_file};

/// File name of the manifest inside a stage directory.
pub const MANIFEST_FILE: &str = "manifest.json";

/// One input of a stage: a name (usually `stage/file`, or `corpus`) and its content hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InputRecord {
    /// What the input is, e.g. `data/train.jsonl`.
    pub name: String,
    /// Hex sha256 of its content.
    pub sha256: String,
}

impl InputRecord {
    /// An input record.
    pub fn new(name: impl Into<String>, sha256: impl Into<String>) -> Self {
        Self { name: name.into(), sha256: sha256.into() }
    }
}

/// One output file of a stage, relative to the stage directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileRecord {
    /// Path relative to the stage directory, with `/` separators.
    pub path: String,
    /// Hex sha256 of the content.
    pub sha256: String,
    /// Size in bytes.
    pub bytes: u64,
}

/// The record a finished stage leaves in `manifest.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StageManifest {
    /// Stage name (`data`, `tokenizer`, ...).
    pub stage: String,
    /// [`crate::hash::config_hash`] of the stage's resolved config.
    pub config_hash: String,
    /// Hashes of everything the stage read.
    pub inputs: Vec<InputRecord>,
    /// Every file the stage wrote.
    pub outputs: Vec<FileRecord>,
    /// What the stage kept, lost and cost, as the stage defines it.
    pub metrics: serde_json::Value,
    /// Wall-clock seconds the stage took.
    pub wall_s: f64,
    /// Version of the tool that wrote it.
    pub tool_version: String,
    /// When it finished, seconds since the Unix epoch.
    pub finished_unix_s: u64,
}

/// Why a stage must run again, or that it need not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Staleness {
    /// Config, inputs and outputs all match the manifest.
    UpToDate,
    /// No manifest: the stage never finished here.
    NeverRun,
    /// The resolved config changed.
    ConfigChanged,
    /// An input was added, removed or changed.
    InputsChanged(String),
    /// An output file is missing or has another size.
    OutputChanged(String),
}

impl Staleness {
    /// Whether the stage can be skipped.
    pub fn is_up_to_date(&self) -> bool {
        matches!(self, Self::UpToDate)
    }
}

impl std::fmt::Display for Staleness {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UpToDate => write!(f, "up to date"),
            Self::NeverRun => write!(f, "not run yet"),
            Self::ConfigChanged => write!(f, "config changed"),
            Self::InputsChanged(name) => write!(f, "input {name} changed"),
            Self::OutputChanged(path) => write!(f, "output {path} missing or changed"),
        }
    }
}

impl StageManifest {
    /// Path of the manifest in `stage_dir`.
    pub fn path_in(stage_dir: &Path) -> PathBuf {
        stage_dir.join(MANIFEST_FILE)
    }

    /// Reads the manifest of `stage_dir`: `Ok(None)` when there is none, an error naming the
    /// file when it exists but is corrupt.
    pub fn load(stage_dir: &Path) -> Result<Option<Self>> {
        let path = Self::path_in(stage_dir);
        let raw = match std::fs::read(&path) {
            Ok(raw) => raw,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(CoreError::io(&path, e)),
        };
        serde_json::from_slice(&raw)
            .map(Some)
            .map_err(|e| CoreError::bad_file(&path, format!("corrupt stage manifest ({e}); delete the stage directory or rerun with --force")))
    }

    /// Writes the manifest into `stage_dir`.
    pub fn save(&self, stage_dir: &Path) -> Result<()> {
        let path = Self::path_in(stage_dir);
        let json = serde_json::to_vec_pretty(self).map_err(|e| CoreError::bad_file(&path, e.to_string()))?;
        std::fs::write(&path, json).map_err(|e| CoreError::io(&path, e))
    }

    /// The record of output `path` (relative to the stage directory).
    pub fn output(&self, path: &str) -> Option<&FileRecord> {
        self.outputs.iter().find(|o| o.path == path)
    }

    /// Compares this manifest with what a new run would use. Outputs are checked by presence
    /// and size (cheap); their hashes were taken when they were written.
    pub fn staleness(&self, stage_dir: &Path, config_hash: &str, inputs: &[InputRecord]) -> Staleness {
        if self.config_hash != config_hash {
            return Staleness::ConfigChanged;
        }
        if self.inputs.len() != inputs.len() {
            return Staleness::InputsChanged("set of inputs".into());
        }
        for input in inputs {
            if !self.inputs.iter().any(|old| old == input) {
                return Staleness::InputsChanged(input.name.clone());
            }
        }
        for output in &self.outputs {
            let size = std::fs::metadata(stage_dir.join(&output.path)).map(|m| m.len()).ok();
            if size != Some(output.bytes) {
                return Staleness::OutputChanged(output.path.clone());
            }
        }
        Staleness::UpToDate
    }
}

/// Hashes every file under `stage_dir` except the manifest itself, in parallel.
pub fn record_outputs(stage_dir: &Path) -> Result<Vec<FileRecord>> {
    let files: Vec<PathBuf> =
        list_files(stage_dir)?.into_iter().filter(|rel| rel.as_os_str() != MANIFEST_FILE).collect();
    files
        .par_iter()
        .map(|rel| {
            let (sha256, bytes) = sha256_file(&stage_dir.join(rel))?;
            let path = rel.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
            Ok(FileRecord { path, sha256, bytes })
        })
        .collect()
}

/// Staleness of the stage in `stage_dir` against a new run's config and inputs; a corrupt
/// manifest is an error.
pub fn check_stage(stage_dir: &Path, config_hash: &str, inputs: &[InputRecord]) -> Result<Staleness> {
    Ok(match StageManifest::load(stage_dir)? {
        None => Staleness::NeverRun,
        Some(manifest) => manifest.staleness(stage_dir, config_hash, inputs),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn manifest_for(dir: &Path) -> StageManifest {
        StageManifest {
            stage: "tokenizer".into(),
            config_hash: "c1".into(),
            inputs: vec![InputRecord::new("data/train.jsonl", "i1")],
            outputs: record_outputs(dir).unwrap(),
            metrics: serde_json::json!({"bytes_per_token": 3.9}),
            wall_s: 1.5,
            tool_version: "0.1.0".into(),
            finished_unix_s: 0,
        }
    }

    #[test]
    fn staleness_tracks_config_inputs_and_outputs() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/vocab.json"), "{}").unwrap();
        let manifest = manifest_for(dir.path());
        assert_eq!(manifest.output("sub/vocab.json").unwrap().bytes, 2);
        manifest.save(dir.path()).unwrap();
        let loaded = StageManifest::load(dir.path()).unwrap().unwrap();
        assert_eq!(loaded, manifest);

        let inputs = [InputRecord::new("data/train.jsonl", "i1")];
        assert_eq!(check_stage(dir.path(), "c1", &inputs).unwrap(), Staleness::UpToDate);
        assert_eq!(check_stage(dir.path(), "c2", &inputs).unwrap(), Staleness::ConfigChanged);
        let changed = [InputRecord::new("data/train.jsonl", "i2")];
        assert!(matches!(check_stage(dir.path(), "c1", &changed).unwrap(), Staleness::InputsChanged(_)));
        std::fs::write(dir.path().join("sub/vocab.json"), "{ }").unwrap();
        assert!(matches!(check_stage(dir.path(), "c1", &inputs).unwrap(), Staleness::OutputChanged(_)));
    }

    #[test]
    fn missing_and_corrupt_manifests() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(check_stage(dir.path(), "c", &[]).unwrap(), Staleness::NeverRun);
        std::fs::write(dir.path().join(MANIFEST_FILE), "{\"stage\": ").unwrap();
        let err = check_stage(dir.path(), "c", &[]).unwrap_err().to_string();
        assert!(err.contains("manifest.json") && err.contains("corrupt"), "{err}");
    }
}
