//! The one thread that owns the [`Engine`]: it blocks for a job, gathers what else is queued
//! (waiting up to the batch window for more), generates them together as one batch and forwards
//! each request's stream events to that request's channel. A client that went away (its
//! channel closed) cancels only its own request.

use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{Completion, Engine, GenerationRequest, StreamEvent};

/// One request waiting for the engine, with the channel its answer goes to.
#[derive(Debug)]
pub struct Job {
    /// What to generate (checked by the handler, so it cannot fail a batch).
    pub request: GenerationRequest,
    /// Where its events go; closed when the client went away.
    pub events: UnboundedSender<JobEvent>,
}

/// What a job's channel receives: text as it becomes final, then the completion or an error.
#[derive(Debug, Clone, PartialEq)]
pub enum JobEvent {
    /// Text that became final (never empty).
    Text(String),
    /// The request is done.
    Finished(Completion),
    /// The engine failed on this request.
    Failed(String),
}

/// The sizes of the batches the worker ran, in order (to see that concurrent clients share one).
#[derive(Debug, Default)]
pub struct BatchLog {
    sizes: Mutex<Vec<usize>>,
}

impl BatchLog {
    fn record(&self, size: usize) {
        if let Ok(mut sizes) = self.sizes.lock() {
            sizes.push(size);
        }
    }

    /// Every batch size so far.
    pub fn sizes(&self) -> Vec<usize> {
        self.sizes.lock().map(|s| s.clone()).unwrap_or_default()
    }
}

/// How the worker groups jobs.
#[derive(Debug, Clone, Copy)]
pub struct BatchPolicy {
    /// Most requests generated together.
    pub max_batch: usize,
    /// After the first job arrives, how long to wait for more before starting.
    pub window: Duration,
}

/// Runs until every sender of `jobs` is dropped.
pub fn run(engine: Engine, jobs: Receiver<Job>, policy: BatchPolicy, log: Arc<BatchLog>) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        let deadline = Instant::now() + policy.window;
        while batch.len() < policy.max_batch.max(1) {
            let next = match deadline.checked_duration_since(Instant::now()) {
                Some(left) if !left.is_zero() => jobs.recv_timeout(left).map_err(|e| e == RecvTimeoutError::Disconnected),
                _ => jobs.try_recv().map_err(|e| e == TryRecvError::Disconnected),
            };
            match next {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        // Clients that left while queued cost nothing.
        batch.retain(|job| !job.events.is_closed());
        if batch.is_empty() {
            continue;
        }
        log.record(batch.len());
        generate_batch(&engine, &batch);
    }
}

/// Generates `batch` together; if the engine refuses the batch before streaming anything, each
/// request is retried alone so that one bad request cannot fail the others.
fn generate_batch(engine: &Engine, batch: &[Job]) {
    let requests: Vec<GenerationRequest> = batch.iter().map(|job| job.request.clone()).collect();
    let mut streamed = false;
    let result = engine.generate(&requests, &mut |event: &StreamEvent<'_>| {
        streamed = true;
        forward(&batch[event.request], event)
    });
    match result {
        Ok(completions) => {
            for (job, completion) in batch.iter().zip(completions) {
                // A send fails only when the client left; nothing to do then.
                let _ = job.events.send(JobEvent::Finished(completion));
            }
        }
        Err(_) if !streamed && batch.len() > 1 => {
            for job in batch {
                generate_batch(engine, std::slice::from_ref(job));
            }
        }
        Err(error) => {
            for job in batch {
                let _ = job.events.send(JobEvent::Failed(error.to_string()));
            }
        }
    }
}

/// Sends an event's text to its job; `Break` (cancel this request) when the client is gone.
fn forward(job: &Job, event: &StreamEvent<'_>) -> ControlFlow<()> {
    let sent = if event.text.is_empty() {
        !job.events.is_closed()
    } else {
        job.events.send(JobEvent::Text(event.text.to_owned())).is_ok()
    };
    if sent { ControlFlow::Continue(()) } else { ControlFlow::Break(()) }
}
