//! The one thread that owns the [`Engine`]: it blocks for a job, gathers what else is queued
//! (waiting up to the batch window for more), generates them together as one batch and forwards
//! each request's stream events to that request's channel. A client that went away (its
//! channel closed) cancels only its own request.

use std::ops::ControlFlow;
use std::sync::mpsc::{Receiver, RecvTimeoutError, TryRecvError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::sync::mpsc::UnboundedSender;

use crate::engine::{Completion, Engine, FinishReason, GenerationRequest, StreamEvent};

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

/// The sizes of the batches the worker ran, in order (to see that concurrent clients share
/// one), and how many requests were cancelled because their client went away.
#[derive(Debug, Default)]
pub struct BatchLog {
    sizes: Mutex<Vec<usize>>,
    cancelled: std::sync::atomic::AtomicUsize,
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

    /// Requests cancelled mid-generation (their client disconnected).
    pub fn cancelled(&self) -> usize {
        self.cancelled.load(std::sync::atomic::Ordering::Relaxed)
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
        let cancelled = generate_batch(&engine, &batch);
        log.cancelled.fetch_add(cancelled, std::sync::atomic::Ordering::Relaxed);
    }
}

/// Generates `batch` together; if the engine refuses the batch before streaming anything, each
/// request is retried alone so that one bad request cannot fail the others. Returns how many
/// requests were cancelled because their client left.
fn generate_batch(engine: &Engine, batch: &[Job]) -> usize {
    let requests: Vec<GenerationRequest> = batch.iter().map(|job| job.request.clone()).collect();
    let mut streamed = false;
    let result = engine.generate(&requests, &mut |event: &StreamEvent<'_>| {
        streamed = true;
        forward(&batch[event.request], event)
    });
    match result {
        Ok(completions) => {
            let cancelled = completions.iter().filter(|c| c.finish_reason == FinishReason::Cancelled).count();
            for (job, completion) in batch.iter().zip(completions) {
                // A send fails only when the client left; nothing to do then.
                let _ = job.events.send(JobEvent::Finished(completion));
            }
            cancelled
        }
        Err(_) if !streamed && batch.len() > 1 => {
            batch.iter().map(|job| generate_batch(engine, std::slice::from_ref(job))).sum()
        }
        Err(error) => {
            for job in batch {
                let _ = job.events.send(JobEvent::Failed(error.to_string()));
            }
            0
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

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use cascade_core::{AllowedSpecial, Tokenizer, TokenizerError};
    use cascade_model::DecoderConfig;
    use cascade_model::burn::prelude::Device;
    use tokio::sync::mpsc::unbounded_channel;

    use super::*;
    use crate::{LanguageModel, SamplingParams};

    /// One id per byte; id 256 is `<|endoftext|>`.
    struct Bytes;

    impl Tokenizer for Bytes {
        fn encode(&self, text: &str, _allowed: &AllowedSpecial) -> Vec<u32> {
            text.bytes().map(u32::from).collect()
        }
        fn decode_bytes(&self, ids: &[u32]) -> Result<Vec<u8>, TokenizerError> {
            Ok(ids.iter().filter_map(|&id| u8::try_from(id).ok()).collect())
        }
        fn vocab_size(&self) -> usize {
            257
        }
        fn special_token(&self, name: &str) -> Option<u32> {
            (name == crate::ENDOFTEXT).then_some(256)
        }
        fn fingerprint(&self) -> String {
            "bytes".into()
        }
    }

    fn engine() -> Engine {
        let device = Device::flex();
        let config = DecoderConfig {
            vocab_size: 257,
            d_model: 16,
            n_layers: 1,
            n_heads: 2,
            n_kv_heads: 1,
            max_seq_len: 64,
            init_std: 0.3,
            ..DecoderConfig::default()
        };
        let model = config.init(&device).expect("tiny decoder");
        Engine::new(LanguageModel::Decoder(model), Arc::new(Bytes), device)
    }

    fn greedy(engine: &Engine, prompt: &str) -> GenerationRequest {
        let mut request = engine.request(engine.encode(prompt), SamplingParams::greedy(), 30);
        request.stop_token_ids.clear();
        request
    }

    #[test]
    fn a_client_gone_mid_batch_cancels_only_its_own_request() {
        let engine = engine();
        let alone = engine.generate_all(&[greedy(&engine, "stay")]).expect("alone").remove(0);
        let (stay_events, mut stay) = unbounded_channel();
        let (gone_events, gone) = unbounded_channel();
        drop(gone);
        let batch = [
            Job { request: greedy(&engine, "stay"), events: stay_events },
            Job { request: greedy(&engine, "gone away"), events: gone_events },
        ];
        assert_eq!(generate_batch(&engine, &batch), 1, "the request whose client left is cancelled");
        let mut text = String::new();
        let mut finished = None;
        while let Ok(event) = stay.try_recv() {
            match event {
                JobEvent::Text(t) => text.push_str(&t),
                JobEvent::Finished(completion) => finished = Some(completion),
                JobEvent::Failed(message) => panic!("{message}"),
            }
        }
        let finished = finished.expect("the remaining request finishes");
        assert_eq!(finished.finish_reason, FinishReason::MaxNewTokens);
        assert_eq!(finished.tokens, alone.tokens);
        assert_eq!(text, finished.text);
    }
}
