//! The service put together: engine, registry (models loaded and warmed up), training
//! jobs, the HTTP app on its listener. [`Application::build`] is the one way to build it,
//! for `drsn serve` and for every test; [`Application::run_until`] serves until a shutdown
//! signal, then lets in-flight requests finish.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::engine::{Engine, EngineConfig};
use crate::http::connections::{BoundedListener, Deadlines};
use crate::http::{AppState, HttpConfig};
use crate::registry::{Registry, RegistryError};

#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Shipped models, one folder each.
    pub models_dir: PathBuf,
    /// The service's own folder (new model versions, the active-version markers).
    pub data_dir: PathBuf,
    pub engine: EngineConfig,
    pub http: HttpConfig,
    /// Versions kept loaded besides the active ones (for requests that name a version).
    pub max_loaded_versions: usize,
    /// Connections open at once.
    pub max_connections: usize,
    /// The longest a request's head may take to arrive (and a kept-alive connection may wait
    /// for the next one).
    pub header_timeout: Duration,
}

/// A started service: models loaded and warmed up, not yet listening.
pub struct Server {
    pub state: AppState,
    max_connections: usize,
    header_timeout: Duration,
}

impl Server {
    /// Starts the engine and loads every model with a warm-up pass.
    pub async fn start(config: ServerConfig) -> Result<Server, RegistryError> {
        let engine = Engine::start(config.engine)?;
        let registry =
            Registry::open_with(&config.models_dir, &config.data_dir, engine, config.max_loaded_versions).await?;
        let (max_connections, header_timeout) = (config.max_connections, config.header_timeout);
        Ok(Server { state: AppState::new(Arc::new(registry), config.http), max_connections, header_timeout })
    }

    /// The HTTP application, with `extra` routes merged in.
    pub fn app(&self, extra: Router<AppState>) -> Router {
        crate::http::app(self.state.clone(), extra)
    }

    pub fn engine(&self) -> &Engine {
        self.state.registry.engine()
    }

    /// Serves `app` on `listener` until `shutdown` resolves; then stops taking connections,
    /// lets every request in flight finish, and stops the engine.
    pub async fn serve(self, listener: TcpListener, app: Router, shutdown: impl Future<Output = ()> + Send + 'static) {
        let metrics = self.state.metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        });
        // Idle longer than twice a request's deadline (and than the event streams'
        // keep-alive): nobody is coming back on this connection.
        let idle = (self.state.config.request_timeout * 2).max(Duration::from_secs(60));
        let listener = BoundedListener::new(listener, self.max_connections, idle);
        // Requests in flight end within their deadline (408 at worst); a connection still open
        // a little after that is not coming back.
        let deadlines =
            Deadlines { head: self.header_timeout, drain: self.state.config.request_timeout + Duration::from_secs(1) };
        crate::http::connections::serve(listener, app, deadlines, shutdown).await;
        upkeep.abort();
        let engine = self.engine().clone();
        engine.shutdown();
        tokio::task::spawn_blocking(move || engine.join()).await.ok();
        tracing::info!("stopped");
    }
}

/// Resolves on SIGINT (Ctrl-C) or SIGTERM.
pub async fn shutdown_signal() {
    let interrupt = async {
        if let Err(e) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %e, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => tracing::info!("SIGINT received, shutting down"),
        _ = terminate => tracing::info!("SIGTERM received, shutting down"),
    }
}

/// Settings of training jobs and dataset uploads.
#[derive(Clone, Debug)]
pub struct JobsConfig {
    /// The folder job datasets must lie in; uploads go to its `datasets/`.
    pub data_root: PathBuf,
    /// The database of jobs, versions and datasets: a SQLite file, or PostgreSQL shared
    /// with other replicas.
    pub database: crate::store::Location,
    /// Jobs trained at once, each on its own thread; this replica's name, lease and poll.
    pub runner: crate::jobs::RunnerConfig,
    /// Bearer token of mutating endpoints; `None`: open.
    pub token: Option<String>,
    /// Largest upload body (one file or one archive) in bytes.
    pub upload_limit: usize,
    /// Most bytes an archive may unpack to.
    pub unpacked_limit: u64,
    /// Most files in one archive.
    pub archive_files: usize,
    /// What the files a job reads (and uploads) may make the readers take on.
    pub file_limits: crate::data::Limits,
    /// Bounds on what one job may ask for.
    pub job_limits: crate::jobs::JobLimits,
    /// Deadline of job, version and dataset requests (not event streams or uploads).
    pub request_timeout: Duration,
    /// Where jobs train.
    pub device: tch::Device,
}

/// Why jobs could not start.
#[derive(Debug, thiserror::Error)]
pub enum JobsStartError {
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    #[error(transparent)]
    Catalog(#[from] crate::catalog::CatalogError),
    #[error(transparent)]
    Path(#[from] crate::datasets::PathError),
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}

/// Training jobs, started: the runner (to shut down at the end) and the routes to serve.
pub struct Jobs {
    pub runner: Arc<crate::jobs::Runner>,
    pub state: crate::http::jobs::JobsState,
}

impl Jobs {
    /// Opens the database (migrating it), settles what a crash left, starts the workers.
    pub async fn start(server: &Server, config: JobsConfig) -> Result<Jobs, JobsStartError> {
        if let crate::store::Location::Sqlite(path) = &config.database {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)
                    .map_err(|source| JobsStartError::Io { path: parent.display().to_string(), source })?;
            }
        }
        let root = crate::datasets::canonical_root(&config.data_root)?;
        let limits = crate::datasets::Limits {
            max_files: config.archive_files,
            max_file_bytes: config.unpacked_limit,
            max_total_bytes: config.unpacked_limit,
        };
        let uploads = crate::datasets::Uploads::new(&root, limits, config.file_limits);
        let store = crate::store::Store::connect(&config.database).await?;
        tracing::info!(database = %config.database.describe(), "database open");
        let catalog = Arc::new(crate::catalog::Catalog::open(server.state.registry.clone(), store.clone()).await?);
        let ctx = crate::jobs::JobContext::new(root, catalog, config.device)
            .with_limits(config.file_limits, config.job_limits);
        let runner = Arc::new(crate::jobs::Runner::start(store, ctx, config.runner).await?);
        let state = crate::http::jobs::JobsState {
            runner: runner.clone(),
            uploads: Arc::new(uploads),
            upload_limit: config.upload_limit,
            token: config.token.map(Arc::from),
            request_timeout: config.request_timeout,
        };
        Ok(Jobs { runner, state })
    }

    pub fn routes(&self) -> Router<AppState> {
        crate::http::jobs::routes(self.state.clone())
    }

    /// Stops the workers: running jobs end as failed ("interrupted: the service shut
    /// down"), queued ones stay queued for the next start; event streams end.
    pub async fn shutdown(&self) {
        let runner = self.runner.clone();
        let _ = tokio::task::spawn_blocking(move || runner.shutdown(Duration::from_secs(10))).await;
    }

    /// Closes the database (after the last request).
    pub async fn close(&self) {
        self.runner.store().close().await;
    }
}

/// Everything the service is built from.
#[derive(Clone, Debug)]
pub struct AppConfig {
    /// Where to listen (port 0: any free port; see [`Application::addr`]).
    pub addr: std::net::SocketAddr,
    pub server: ServerConfig,
    /// Training jobs, versions over HTTP and dataset uploads; `None`: inference only.
    pub jobs: Option<JobsConfig>,
}

/// Why the service could not be built.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error("cannot start the service: {0}")]
    Start(#[from] RegistryError),
    #[error("cannot listen on {addr}: {source}")]
    Listen { addr: std::net::SocketAddr, source: std::io::Error },
    #[error("cannot start training jobs: {0}")]
    Jobs(#[from] JobsStartError),
}

/// The service, built and listening, not yet serving.
pub struct Application {
    server: Server,
    listener: TcpListener,
    addr: std::net::SocketAddr,
    jobs: Option<Arc<Jobs>>,
}

impl Application {
    /// Starts the engine, loads and warms up every model, binds the listener and starts
    /// the training jobs.
    pub async fn build(config: AppConfig) -> Result<Application, BuildError> {
        let server = Server::start(config.server).await?;
        let listener =
            TcpListener::bind(config.addr).await.map_err(|source| BuildError::Listen { addr: config.addr, source })?;
        let addr = listener.local_addr().map_err(|source| BuildError::Listen { addr: config.addr, source })?;
        let jobs = match config.jobs {
            Some(jobs) => Some(Arc::new(Jobs::start(&server, jobs).await?)),
            None => None,
        };
        Ok(Application { server, listener, addr, jobs })
    }

    /// The address it listens on.
    pub fn addr(&self) -> std::net::SocketAddr {
        self.addr
    }

    /// What the handlers reach (registry, engine, configuration).
    pub fn state(&self) -> AppState {
        self.server.state.clone()
    }

    pub fn jobs(&self) -> Option<Arc<Jobs>> {
        self.jobs.clone()
    }

    /// Serves until `shutdown` resolves: then jobs stop first (their event streams end, so
    /// that open connections can drain), requests in flight finish, the engine stops and
    /// the database is closed.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let routes = self.jobs.as_ref().map(|j| j.routes()).unwrap_or_default();
        let app = self.server.app(routes);
        tracing::info!(addr = %self.addr, models = ?self.server.state.registry.names(), "ready");
        let stopping = self.jobs.clone();
        let shutdown = async move {
            shutdown.await;
            if let Some(jobs) = stopping {
                jobs.shutdown().await;
            }
        };
        self.server.serve(self.listener, app, shutdown).await;
        if let Some(jobs) = &self.jobs {
            jobs.close().await;
        }
    }
}
