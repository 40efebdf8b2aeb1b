//! `drsn serve`: load every model, warm it up, then listen.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use crate::engine::EngineConfig;
use crate::http::HttpConfig;
use crate::server::{shutdown_signal, Server, ServerConfig};

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// Address to listen on.
    #[arg(long, env = "DRSN_ADDR", default_value = "127.0.0.1:8080")]
    pub addr: SocketAddr,
    /// Folder of shipped models, one sub-folder (card.json + weights.safetensors) each.
    #[arg(long, env = "DRSN_MODELS", default_value = "models")]
    pub models: PathBuf,
    /// The service's own folder: new model versions and which version is active.
    #[arg(long, env = "DRSN_DATA_DIR", default_value = "drsn-data")]
    pub data_dir: PathBuf,
    /// cpu, cuda or auto.
    #[arg(long, env = "DRSN_DEVICE", default_value = "cpu")]
    pub device: String,
    /// Most windows in one forward pass (1 turns batching off).
    #[arg(long, env = "DRSN_MAX_BATCH_SIZE", default_value_t = 64)]
    pub max_batch_size: usize,
    /// How long a batch may wait for more requests, in milliseconds.
    #[arg(long, env = "DRSN_MAX_WAIT_MS", default_value_t = 2.0)]
    pub max_wait_ms: f64,
    /// Most windows queued or running at once; beyond it requests answer 429.
    #[arg(long, env = "DRSN_QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: usize,
    /// Inference threads, each with its own copy of every model.
    #[arg(long, env = "DRSN_WORKERS", default_value_t = 1)]
    pub workers: usize,
    /// libtorch intra-op threads per forward pass; 0 leaves libtorch's choice (one per
    /// core). One is fastest for these small networks, and does not fight the HTTP
    /// threads for cores; scale with --workers instead.
    #[arg(long, env = "DRSN_TORCH_THREADS", default_value_t = 1)]
    pub torch_threads: usize,
    /// Largest request body in bytes; larger ones answer 413.
    #[arg(long, env = "DRSN_BODY_LIMIT", default_value_t = 16 * 1024 * 1024)]
    pub body_limit: usize,
}

impl ServeArgs {
    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        anyhow::ensure!(
            self.max_wait_ms.is_finite() && self.max_wait_ms >= 0.0,
            "--max-wait-ms must be a non-negative number of milliseconds, got {}",
            self.max_wait_ms
        );
        Ok(ServerConfig {
            models_dir: self.models.clone(),
            data_dir: self.data_dir.clone(),
            engine: EngineConfig {
                max_batch_size: self.max_batch_size,
                max_wait: Duration::from_secs_f64(self.max_wait_ms / 1e3),
                queue_capacity: self.queue_capacity,
                workers: self.workers,
                torch_threads: (self.torch_threads > 0).then_some(self.torch_threads),
                device: crate::device::parse(&self.device)?,
            },
            http: HttpConfig { body_limit: self.body_limit },
        })
    }
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("drsn-http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::start(config).await.context("cannot start the service")?;
        let listener = tokio::net::TcpListener::bind(args.addr)
            .await
            .with_context(|| format!("cannot listen on {}", args.addr))?;
        let addr = listener.local_addr().context("listening address")?;
        let app = server.app(axum::Router::new());
        tracing::info!(addr = %addr, models = ?server.state.registry.names(), "ready");
        server.serve(listener, app, shutdown_signal()).await.context("serving")
    })
}
