//! An OpenAI-compatible HTTP server over one [`Engine`]: `GET /v1/models`,
//! `POST /v1/completions` and `POST /v1/chat/completions` (the chat template of
//! [`cascade_core::chat`]), JSON or server-sent-event streaming (`stream: true`, OpenAI's chunk
//! format ending with `data: [DONE]`), and 4xx answers with OpenAI's error body
//! (`{"error": {"message", "type", "param", "code"}}`) for malformed requests.
//!
//! Concurrent requests are generated together: handlers check and encode each request, then
//! queue it for one worker thread that owns the engine; the worker takes the first job, gathers
//! what else arrives within the batch window (up to `max_batch`), runs them as one batch and
//! forwards every request's text to its own channel. A client that disconnects cancels only its
//! own request. [`Server::batch_sizes`] tells how requests were grouped.
//!
//! ```no_run
//! # fn demo(engine: cascade_infer::Engine) -> Result<(), cascade_infer::server::ServerError> {
//! use cascade_infer::server::{Server, ServerOptions};
//! let server = Server::start(engine, "127.0.0.1:8080", ServerOptions::new("small/sft"))?;
//! println!("listening on http://{}", server.local_addr());
//! server.wait()
//! # }
//! ```

mod error;
mod openai;
mod routes;
mod worker;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::thread::JoinHandle;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use cascade_core::chat::ChatTemplate;
use tokio::sync::oneshot;

pub use error::ApiError;
pub use openai::{Endpoint, MAX_STOP_STRINGS, ParsedRequest, PromptInput, parse_request};
pub use routes::finish_reason;
pub use worker::{BatchLog, BatchPolicy};

use crate::engine::Engine;

/// Why the server could not start or stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// Binding the address failed (in use, no permission, unresolvable).
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The async runtime or a thread could not be started.
    #[error("cannot start the server: {0}")]
    Start(std::io::Error),
    /// Serving failed.
    #[error("the server stopped: {0}")]
    Serve(std::io::Error),
    /// A server thread panicked.
    #[error("a server thread panicked")]
    Panicked,
}

/// How to serve.
#[derive(Debug, Clone)]
pub struct ServerOptions {
    /// The model id clients see in `/v1/models` and name in `model`.
    pub model_id: String,
    /// Most requests generated together.
    pub max_batch: usize,
    /// After a request arrives, how long the worker waits for others to batch with it.
    pub batch_window: Duration,
    /// Threads of the async runtime (HTTP only; generation runs on the worker thread).
    pub http_threads: usize,
}

impl ServerOptions {
    /// Serves `model_id`, batching up to 16 requests with a 5 ms window, on 2 HTTP threads.
    pub fn new(model_id: impl Into<String>) -> Self {
        Self { model_id: model_id.into(), max_batch: 16, batch_window: Duration::from_millis(5), http_threads: 2 }
    }
}

/// A running server: it stops when [`Server::shutdown`] is called or the value is dropped.
#[derive(Debug)]
pub struct Server {
    addr: SocketAddr,
    log: Arc<BatchLog>,
    shutdown: Option<oneshot::Sender<()>>,
    http: Option<JoinHandle<Result<(), ServerError>>>,
    worker: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `addr` (port 0 picks a free port) and serves `engine` on background threads.
    pub fn start(engine: Engine, addr: impl ToSocketAddrs + std::fmt::Debug, options: ServerOptions) -> Result<Self, ServerError> {
        let shown = format!("{addr:?}");
        let listener = std::net::TcpListener::bind(&addr).map_err(|source| ServerError::Bind { addr: shown.clone(), source })?;
        let local = listener.local_addr().map_err(|source| ServerError::Bind { addr: shown.clone(), source })?;
        listener.set_nonblocking(true).map_err(|source| ServerError::Bind { addr: shown, source })?;

        let tokenizer = Arc::clone(engine.tokenizer());
        let model = engine.model();
        let (jobs, queue) = std::sync::mpsc::channel();
        let state = Arc::new(routes::AppState {
            model_id: options.model_id.clone(),
            created: SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0),
            chat: ChatTemplate::new(tokenizer.as_ref()).ok(),
            tokenizer,
            max_prompt_len: model.max_prompt_len(),
            prompt_key: match model {
                crate::LanguageModel::Decoder(_) => "max_seq_len",
                crate::LanguageModel::EncoderDecoder(_) => "max_source_len",
            },
            context_window: model.context_window(),
            vocab_size: model.vocab_size(),
            default_stop_ids: engine.default_stop_ids().to_vec(),
            jobs: std::sync::Mutex::new(jobs),
            counter: AtomicU64::new(0),
        });

        let log = Arc::new(BatchLog::default());
        let policy = BatchPolicy { max_batch: options.max_batch, window: options.batch_window };
        let worker_log = Arc::clone(&log);
        let worker = std::thread::Builder::new()
            .name("cascade-infer-engine".into())
            .spawn(move || worker::run(engine, queue, policy, worker_log))
            .map_err(ServerError::Start)?;

        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(options.http_threads.max(1))
            .thread_name("cascade-infer-http")
            .enable_io()
            .build()
            .map_err(ServerError::Start)?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let app = routes::router(state);
        let http = std::thread::Builder::new()
            .name("cascade-infer-serve".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let listener = tokio::net::TcpListener::from_std(listener).map_err(ServerError::Serve)?;
                    axum::serve(listener, app)
                        .with_graceful_shutdown(async move {
                            // Either a shutdown call or the `Server` being dropped ends serving.
                            let _ = stopped.await;
                        })
                        .await
                        .map_err(ServerError::Serve)
                })
            })
            .map_err(ServerError::Start)?;
        Ok(Self { addr: local, log, shutdown: Some(shutdown), http: Some(http), worker: Some(worker) })
    }

    /// The address it listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// The size of every batch generated so far, in order.
    pub fn batch_sizes(&self) -> Vec<usize> {
        self.log.sizes()
    }

    /// Requests cancelled mid-generation because their client disconnected.
    pub fn cancelled_requests(&self) -> usize {
        self.log.cancelled()
    }

    /// Blocks while the server runs (until a serving error; it has no other end).
    pub fn wait(mut self) -> Result<(), ServerError> {
        self.join()
    }

    /// Stops accepting connections, lets open requests finish, and joins the threads.
    pub fn shutdown(mut self) -> Result<(), ServerError> {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
        self.join()
    }

    fn join(&mut self) -> Result<(), ServerError> {
        let served = match self.http.take() {
            Some(http) => http.join().map_err(|_| ServerError::Panicked)?,
            None => Ok(()),
        };
        // The worker ends once the router (holding the queue's sender) is gone.
        if let Some(worker) = self.worker.take() {
            worker.join().map_err(|_| ServerError::Panicked)?;
        }
        served
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(shutdown) = self.shutdown.take() {
            let _ = shutdown.send(());
        }
    }
}
