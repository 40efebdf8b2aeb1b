//! The service put together: engine, registry (models loaded and warmed up), HTTP app;
//! serving until a shutdown signal, then letting in-flight requests finish.

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;

use crate::engine::{Engine, EngineConfig};
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
}

/// A started service: models loaded and warmed up, not yet listening.
pub struct Server {
    pub state: AppState,
}

impl Server {
    /// Starts the engine and loads every model with a warm-up pass.
    pub async fn start(config: ServerConfig) -> Result<Server, RegistryError> {
        let engine = Engine::start(config.engine)?;
        let registry = Registry::open(&config.models_dir, &config.data_dir, engine).await?;
        Ok(Server { state: AppState::new(Arc::new(registry), config.http) })
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
    pub async fn serve(
        self,
        listener: TcpListener,
        app: Router,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let metrics = self.state.metrics.clone();
        let upkeep = tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_secs(5));
            loop {
                tick.tick().await;
                metrics.run_upkeep();
            }
        });
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        upkeep.abort();
        let engine = self.engine().clone();
        engine.shutdown();
        tokio::task::spawn_blocking(move || engine.join()).await.ok();
        tracing::info!("stopped");
        served
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
