//! Windows of token ids from memory-mapped token shards: seeded random training windows whose
//! generator state is saved in checkpoints, and a fixed, evenly spaced set of validation
//! windows. Only the requested windows are copied out of the map, never the whole shard.

use std::path::Path;

use cascade_core::TokenShard;
use serde::{Deserialize, Serialize};

use crate::error::PretrainError;
use crate::rng::SplitMix64;

/// Where a [`WindowLoader`] stands: restoring it replays the same windows from there on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoaderState {
    /// The window-start generator.
    pub rng: SplitMix64,
    /// Windows handed out so far.
    pub windows_served: u64,
}

/// Random training windows of `window_len` ids from a token shard.
#[derive(Debug)]
pub struct WindowLoader {
    shard: TokenShard,
    window_len: usize,
    state: LoaderState,
}

/// Opens `path` and checks it holds at least `window_len` ids of a vocabulary that fits.
pub fn open_shard(path: &Path, window_len: usize, vocab_size: usize) -> Result<TokenShard, PretrainError> {
    let shard = TokenShard::open(path)?;
    if shard.len() < window_len {
        return Err(PretrainError::Data {
            path: path.to_path_buf(),
            message: format!("holds {} tokens, fewer than one window of {window_len}", shard.len()),
        });
    }
    let shard_vocab = shard.header().vocab_size as usize;
    if shard_vocab > vocab_size {
        return Err(PretrainError::Data {
            path: path.to_path_buf(),
            message: format!("tokenizer vocabulary {shard_vocab} is larger than the model's vocab_size {vocab_size}"),
        });
    }
    Ok(shard)
}

impl WindowLoader {
    /// A loader over `shard` seeded with `seed`.
    pub fn new(shard: TokenShard, window_len: usize, seed: u64) -> Self {
        Self { shard, window_len, state: LoaderState { rng: SplitMix64::new(seed), windows_served: 0 } }
    }

    /// The current state (save it with a checkpoint).
    pub fn state(&self) -> LoaderState {
        self.state
    }

    /// Continues from a saved state.
    pub fn restore(&mut self, state: LoaderState) {
        self.state = state;
    }

    /// The next random window.
    pub fn next_window(&mut self) -> Result<Vec<u32>, PretrainError> {
        let n_starts = (self.shard.len() - self.window_len + 1) as u64;
        let start = self.state.rng.below(n_starts) as usize;
        self.state.windows_served += 1;
        Ok(self.shard.window(start, self.window_len)?.to_vec())
    }

    /// The next `n` random windows.
    pub fn next_windows(&mut self, n: usize) -> Result<Vec<Vec<u32>>, PretrainError> {
        (0..n).map(|_| self.next_window()).collect()
    }
}

/// `n` windows of `window_len` ids at evenly spaced starts covering the whole shard (they
/// overlap when the shard is short). The same shard always gives the same windows.
pub fn validation_windows(shard: &TokenShard, window_len: usize, n: usize) -> Result<Vec<Vec<u32>>, PretrainError> {
    let last_start = shard.len() - window_len;
    (0..n)
        .map(|i| {
            let start = if n <= 1 { 0 } else { last_start * i / (n - 1) };
            Ok(shard.window(start, window_len)?.to_vec())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use cascade_core::TokenShardWriter;

    fn shard(dir: &Path, n: u32) -> TokenShard {
        let path = dir.join("t.tokens");
        let mut w = TokenShardWriter::create(&path, 1000, "test").unwrap();
        w.push_document(&(0..n).collect::<Vec<_>>()).unwrap();
        w.finish().unwrap();
        open_shard(&path, 8, 1000).unwrap()
    }

    #[test]
    fn same_seed_same_windows_and_resume() {
        let dir = tempfile::tempdir().unwrap();
        let mut a = WindowLoader::new(shard(dir.path(), 500), 8, 9);
        let mut b = WindowLoader::new(shard(dir.path(), 500), 8, 9);
        let first = a.next_windows(5).unwrap();
        assert_eq!(first, b.next_windows(5).unwrap());
        for w in &first {
            assert_eq!(w.len(), 8);
            assert!(w.windows(2).all(|p| p[1] == p[0] + 1), "contiguous window");
        }
        let saved = a.state();
        let rest = a.next_windows(5).unwrap();
        let mut c = WindowLoader::new(shard(dir.path(), 500), 8, 1);
        c.restore(saved);
        assert_eq!(c.next_windows(5).unwrap(), rest);
        assert_eq!(c.state().windows_served, 10);
    }

    #[test]
    fn validation_windows_are_fixed_and_span_the_shard() {
        let dir = tempfile::tempdir().unwrap();
        let s = shard(dir.path(), 100);
        let w = validation_windows(&s, 8, 4).unwrap();
        assert_eq!(w[0][0], 0);
        assert_eq!(w[3][7], 99);
        assert_eq!(w, validation_windows(&s, 8, 4).unwrap());
    }

    #[test]
    fn short_shard_is_an_error_naming_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.tokens");
        let mut w = TokenShardWriter::create(&path, 1000, "test").unwrap();
        w.push_document(&[1, 2, 3]).unwrap();
        w.finish().unwrap();
        let err = open_shard(&path, 8, 1000).unwrap_err().to_string();
        assert!(err.contains("s.tokens"), "{err}");
    }
}
