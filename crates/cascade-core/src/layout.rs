//! The run directory: `runs/<name>/<stage>/…`, and atomic stage directories.
//!
//! ```text
//! runs/<name>/
//!   config.toml          the resolved config of the last cascade run
//!   run.log              what the runner did, appended per run
//!   data/manifest.json   one directory per stage, each with its manifest
//!   tokenizer/…
//! ```
//! A stage writes into a hidden temporary directory and [`StageDir::commit`] renames it into
//! place after writing the manifest, so an interrupted stage leaves no manifest behind and is
//! redone on the next run. A long stage can instead begin with [`StageDir::begin_resumable`]:
//! its work directory `.<stage>.partial/` survives an interruption or a failure, so the next
//! run with the same key (config and inputs) continues from the checkpoints inside it.

use std::path::{Path, PathBuf};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use crate::error::{CoreError, Result};
use crate::manifest::{InputRecord, StageManifest, record_outputs};

/// The root of one run and the places of things inside it.
#[derive(Debug, Clone)]
pub struct RunLayout {
    root: PathBuf,
}

impl RunLayout {
    /// A layout rooted at `root` (created on demand).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    /// The run directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The directory of `stage`.
    pub fn stage_dir(&self, stage: &str) -> PathBuf {
        self.root.join(stage)
    }

    /// A file of `stage`'s directory.
    pub fn stage_file(&self, stage: &str, file: &str) -> PathBuf {
        self.stage_dir(stage).join(file)
    }

    /// Where the resolved config is written.
    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.toml")
    }

    /// Where the run log is appended.
    pub fn log_path(&self) -> PathBuf {
        self.root.join("run.log")
    }
}

/// A stage's output directory while the stage runs. Files go into [`path`](Self::path); on
/// [`commit`](Self::commit) it becomes `<run>/<stage>/`; dropped uncommitted, it is removed.
#[derive(Debug)]
pub struct StageDir {
    stage: String,
    final_dir: PathBuf,
    temp_dir: PathBuf,
    started: Instant,
    committed: bool,
    /// Kept when dropped uncommitted (resumable stages); its key file beside it.
    resume_key_path: Option<PathBuf>,
}

impl StageDir {
    /// Starts `stage` in `layout`: creates an empty temporary directory beside its final place.
    pub fn begin(layout: &RunLayout, stage: &str) -> Result<Self> {
        let final_dir = layout.stage_dir(stage);
        let temp_dir = layout.root().join(format!(".{stage}.tmp-{}", std::process::id()));
        if temp_dir.exists() {
            std::fs::remove_dir_all(&temp_dir).map_err(|e| CoreError::io(&temp_dir, e))?;
        }
        std::fs::create_dir_all(&temp_dir).map_err(|e| CoreError::io(&temp_dir, e))?;
        Ok(Self { stage: stage.into(), final_dir, temp_dir, started: Instant::now(), committed: false, resume_key_path: None })
    }

    /// Starts `stage` in a work directory `.<stage>.partial/` that is kept if the stage is
    /// interrupted or fails. If one exists from an earlier run with the same `resume_key` (a
    /// hash of the stage's config and inputs), its contents are kept and `resumed` is `true`;
    /// otherwise it starts empty. `fresh` discards any earlier work (a forced rerun).
    pub fn begin_resumable(layout: &RunLayout, stage: &str, resume_key: &str, fresh: bool) -> Result<(Self, bool)> {
        let final_dir = layout.stage_dir(stage);
        let temp_dir = layout.root().join(format!(".{stage}.partial"));
        let key_path = layout.root().join(format!(".{stage}.partial.key"));
        let same_key = std::fs::read_to_string(&key_path).is_ok_and(|key| key.trim() == resume_key);
        let resumed = !fresh && same_key && temp_dir.is_dir();
        if !resumed {
            if temp_dir.exists() {
                std::fs::remove_dir_all(&temp_dir).map_err(|e| CoreError::io(&temp_dir, e))?;
            }
            std::fs::create_dir_all(&temp_dir).map_err(|e| CoreError::io(&temp_dir, e))?;
            std::fs::write(&key_path, resume_key).map_err(|e| CoreError::io(&key_path, e))?;
        }
        let dir = Self {
            stage: stage.into(),
            final_dir,
            temp_dir,
            started: Instant::now(),
            committed: false,
            resume_key_path: Some(key_path),
        };
        Ok((dir, resumed))
    }

    /// Where the stage writes its outputs now.
    pub fn path(&self) -> &Path {
        &self.temp_dir
    }

    /// Where the outputs will be after commit.
    pub fn final_path(&self) -> &Path {
        &self.final_dir
    }

    /// Hashes the outputs, writes the manifest and moves the directory into place, replacing
    /// any previous run of the stage. Returns the manifest.
    pub fn commit(
        mut self,
        config_hash: &str,
        inputs: Vec<InputRecord>,
        metrics: serde_json::Value,
    ) -> Result<StageManifest> {
        let manifest = StageManifest {
            stage: self.stage.clone(),
            config_hash: config_hash.into(),
            inputs,
            outputs: record_outputs(&self.temp_dir)?,
            metrics,
            wall_s: self.started.elapsed().as_secs_f64(),
            tool_version: env!("CARGO_PKG_VERSION").into(),
            finished_unix_s: SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()),
        };
        manifest.save(&self.temp_dir)?;
        if self.final_dir.exists() {
            std::fs::remove_dir_all(&self.final_dir).map_err(|e| CoreError::io(&self.final_dir, e))?;
        }
        std::fs::rename(&self.temp_dir, &self.final_dir).map_err(|e| CoreError::io(&self.final_dir, e))?;
        self.committed = true;
        if let Some(key_path) = &self.resume_key_path {
            std::fs::remove_file(key_path).map_err(|e| CoreError::io(key_path, e))?;
        }
        Ok(manifest)
    }
}

impl Drop for StageDir {
    fn drop(&mut self) {
        if !self.committed && self.resume_key_path.is_none() {
            // Best effort: an interrupted stage must not leave half-written outputs that look
            // finished; without a manifest they never would, this only saves disk space.
            let _ = std::fs::remove_dir_all(&self.temp_dir);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::{Staleness, check_stage};

    #[test]
    fn commit_moves_outputs_into_place_and_drop_cleans_up() {
        let run = tempfile::tempdir().unwrap();
        let layout = RunLayout::new(run.path());
        let stage = StageDir::begin(&layout, "data").unwrap();
        std::fs::write(stage.path().join("train.jsonl"), "{}\n").unwrap();
        assert_eq!(check_stage(&layout.stage_dir("data"), "h", &[]).unwrap(), Staleness::NeverRun);
        let manifest = stage.commit("h", vec![], serde_json::json!({})).unwrap();
        assert_eq!(manifest.outputs.len(), 1);
        assert!(layout.stage_file("data", "train.jsonl").exists());
        assert_eq!(check_stage(&layout.stage_dir("data"), "h", &[]).unwrap(), Staleness::UpToDate);

        let failed = StageDir::begin(&layout, "data").unwrap();
        let temp = failed.path().to_path_buf();
        std::fs::write(temp.join("partial"), "x").unwrap();
        drop(failed);
        assert!(!temp.exists());
        assert!(layout.stage_file("data", "manifest.json").exists(), "a failed rerun keeps the last good output");
    }

    #[test]
    fn resumable_work_survives_a_failure_for_the_same_key_only() {
        let run = tempfile::tempdir().unwrap();
        let layout = RunLayout::new(run.path());
        let (stage, resumed) = StageDir::begin_resumable(&layout, "train", "k1", false).unwrap();
        assert!(!resumed);
        std::fs::write(stage.path().join("checkpoint"), "step 5").unwrap();
        drop(stage);

        let (stage, resumed) = StageDir::begin_resumable(&layout, "train", "k1", false).unwrap();
        assert!(resumed, "same key continues");
        assert!(stage.path().join("checkpoint").exists());
        drop(stage);

        let (stage, resumed) = StageDir::begin_resumable(&layout, "train", "k2", false).unwrap();
        assert!(!resumed, "a changed config starts over");
        assert!(!stage.path().join("checkpoint").exists());
        std::fs::write(stage.path().join("checkpoint"), "step 1").unwrap();
        drop(stage);

        let (stage, resumed) = StageDir::begin_resumable(&layout, "train", "k2", true).unwrap();
        assert!(!resumed, "fresh discards earlier work");
        assert!(!stage.path().join("checkpoint").exists());
        std::fs::write(stage.path().join("model"), "w").unwrap();
        stage.commit("h", vec![], serde_json::json!({})).unwrap();
        assert!(layout.stage_file("train", "model").exists());
        assert!(!run.path().join(".train.partial").exists());
        assert!(!run.path().join(".train.partial.key").exists());
    }
}
