//! Content hashes (sha256, hex) for files, directory trees and configs: the keys of stage caching.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use rayon::prelude::*;
use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::error::{CoreError, Result};

/// Hex sha256 of `bytes`.
pub fn sha256_bytes(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Hex sha256 and length of the file at `path`, streamed.
pub fn sha256_file(path: &Path) -> Result<(String, u64)> {
    let mut file = File::open(path).map_err(|e| CoreError::io(path, e))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut total = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| CoreError::io(path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        total += n as u64;
    }
    Ok((hex::encode(hasher.finalize()), total))
}

/// Hex sha256 of a config value, independent of field order: the value is serialized to JSON
/// with its object keys sorted first.
pub fn config_hash<T: Serialize + ?Sized>(config: &T) -> String {
    // serde_json's Value keeps objects in a BTreeMap (sorted), so this is canonical.
    let value = serde_json::to_value(config).unwrap_or(serde_json::Value::Null);
    sha256_bytes(value.to_string().as_bytes())
}

/// Every regular file under `root`, as paths relative to it, sorted.
pub fn list_files(root: &Path) -> Result<Vec<PathBuf>> {
    fn walk(root: &Path, dir: &Path, out: &mut Vec<PathBuf>) -> Result<()> {
        for entry in std::fs::read_dir(dir).map_err(|e| CoreError::io(dir, e))? {
            let entry = entry.map_err(|e| CoreError::io(dir, e))?;
            let path = entry.path();
            let kind = entry.file_type().map_err(|e| CoreError::io(&path, e))?;
            if kind.is_dir() {
                walk(root, &path, out)?;
            } else if kind.is_file() || path.is_file() {
                out.push(path.strip_prefix(root).unwrap_or(&path).to_path_buf());
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    walk(root, root, &mut out)?;
    out.sort();
    Ok(out)
}

/// Hex sha256 of a file or of a whole directory tree (relative paths and contents, in sorted
/// order, so the hash does not depend on how the directory is listed).
pub fn sha256_path(path: &Path) -> Result<String> {
    if !path.is_dir() {
        return Ok(sha256_file(path)?.0);
    }
    let files = list_files(path)?;
    let hashes: Vec<String> =
        files.par_iter().map(|rel| sha256_file(&path.join(rel)).map(|(h, _)| h)).collect::<Result<_>>()?;
    let mut hasher = Sha256::new();
    for (rel, hash) in files.iter().zip(&hashes) {
        hasher.update(rel.to_string_lossy().as_bytes());
        hasher.update([0]);
        hasher.update(hash.as_bytes());
        hasher.update([b'\n']);
    }
    Ok(hex::encode(hasher.finalize()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_hash_ignores_field_order_but_not_values() {
        let a = serde_json::json!({"vocab_size": 4096, "min_frequency": 2});
        let b = serde_json::json!({"min_frequency": 2, "vocab_size": 4096});
        let c = serde_json::json!({"min_frequency": 2, "vocab_size": 8192});
        assert_eq!(config_hash(&a), config_hash(&b));
        assert_ne!(config_hash(&a), config_hash(&c));
    }

    #[test]
    fn directory_hash_tracks_names_and_contents() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("sub")).unwrap();
        std::fs::write(dir.path().join("sub/a.txt"), "to be").unwrap();
        std::fs::write(dir.path().join("b.txt"), "or not").unwrap();
        let before = sha256_path(dir.path()).unwrap();
        assert_eq!(before, sha256_path(dir.path()).unwrap());
        std::fs::write(dir.path().join("b.txt"), "or not!").unwrap();
        assert_ne!(before, sha256_path(dir.path()).unwrap());
        assert_eq!(sha256_bytes(b"abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    }
}
