//! Progress reporting handed in by the caller, so library crates never print.
//!
//! A stage calls [`Progress::begin`] for each long step, [`Progress::advance`] as work is done
//! and [`Progress::end`] when the step is over. The runner implements it with progress bars;
//! tests and embedders pass [`NoProgress`].

/// Receives progress events from a long-running step. Implementations must be cheap to call
/// from many threads at once.
pub trait Progress: Send + Sync {
    /// A step named `label` starts; `total` is its size in `unit`s when known.
    fn begin(&self, label: &str, total: Option<u64>, unit: &str);
    /// `n` more units of the current step are done.
    fn advance(&self, n: u64);
    /// A status line for the current step (e.g. the latest loss).
    fn message(&self, _text: &str) {}
    /// The current step is finished.
    fn end(&self);
}

/// A [`Progress`] that ignores every event.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoProgress;

impl Progress for NoProgress {
    fn begin(&self, _label: &str, _total: Option<u64>, _unit: &str) {}
    fn advance(&self, _n: u64) {}
    fn end(&self) {}
}
