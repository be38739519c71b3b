//! `cargo xtask serve`: an OpenAI-compatible HTTP server (`cascade_infer::server`) on a run's
//! checkpoint, on loopback unless `--host` says otherwise. Concurrent requests are batched.

use std::time::Duration;

use anyhow::Result;
use cascade_infer::server::{Server, ServerOptions};
use clap::Args;

/// `cargo xtask serve`.
#[derive(Debug, Args)]
pub struct ServeArgs {
    #[command(flatten)]
    model: crate::infer::ModelArgs,
    /// Address to listen on. The server has no authentication: keep it on loopback unless the
    /// network is trusted.
    #[arg(long, default_value = "127.0.0.1")]
    host: String,
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 8080)]
    port: u16,
    /// The model id clients see in `/v1/models` and send as `model`.
    #[arg(long, default_value = "cascade")]
    model_name: String,
    /// Most concurrent requests generated together in one batch.
    #[arg(long, default_value_t = 16)]
    max_batch: usize,
    /// After a request arrives, how long to wait for others to batch with it (milliseconds).
    #[arg(long, default_value_t = 5)]
    batch_window_ms: u64,
}

/// Loads the checkpoint and serves until the process is stopped (Ctrl-C).
pub fn serve(args: &ServeArgs) -> Result<()> {
    let engine = crate::infer::load_engine(&args.model)?;
    let window = engine.model().context_window();
    let options = ServerOptions {
        max_batch: args.max_batch.max(1),
        batch_window: Duration::from_millis(args.batch_window_ms),
        ..ServerOptions::new(args.model_name.clone())
    };
    let server = Server::start(engine, (args.host.as_str(), args.port), options)?;
    let addr = server.local_addr();
    if !addr.ip().is_loopback() {
        eprintln!("warning: listening on {addr}, reachable from other machines; the server has no authentication");
    }
    eprintln!(
        "serving `{}` (context {window} tokens) on http://{addr}/v1: GET /models, POST /completions, POST /chat/completions; Ctrl-C stops",
        args.model_name
    );
    server.wait()?;
    Ok(())
}
