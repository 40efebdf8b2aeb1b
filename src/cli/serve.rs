//! `drsn serve`: load every model, warm it up, then listen.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::Args;

use super::limit_args::LimitArgs;
use crate::engine::{Backend, EngineConfig};
use crate::http::HttpConfig;
use crate::ood::DriftSettings;
use crate::server::{shutdown_signal, AppConfig, Application, JobsConfig, ServerConfig};
use crate::store::{Location, DB_FILE};

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
    /// Requests of at most this many windows for a model on the fused forward run
    /// unbatched on the HTTP thread that read them, without the hand-over to an inference
    /// thread (faster under load on few cores: see the README); 0 queues every request.
    #[arg(long, env = "DRSN_INLINE_MAX_WINDOWS", default_value_t = 4)]
    pub inline_max_windows: usize,
    /// Most windows queued or running at once; beyond it requests answer 429.
    #[arg(long, env = "DRSN_QUEUE_CAPACITY", default_value_t = 4096)]
    pub queue_capacity: usize,
    /// Inference threads, each with its own copy of every model; 0: one per core on the
    /// fused forward and ONNX Runtime, one on libtorch (the fastest of each, measured: see
    /// the README).
    #[arg(long, env = "DRSN_WORKERS", default_value_t = 0)]
    pub workers: usize,
    /// Intra-op threads per forward pass (libtorch's, ONNX Runtime's pool, the fused
    /// forward's split of a batch); 0 leaves the choice to the library (one per core). One is fastest for these small networks,
    /// and does not fight the HTTP threads for cores; scale with --workers instead.
    #[arg(long, env = "DRSN_TORCH_THREADS", default_value_t = 1)]
    pub torch_threads: usize,
    /// What runs forward passes: fused (1-D models on drsn's own CPU forward, the others on
    /// ONNX Runtime, or on libtorch with a warning when its library does not load),
    /// onnxruntime (every model exported from the same weights), libtorch, or auto (fused
    /// on the CPU, libtorch on a GPU). Fused and onnxruntime run on the CPU only, and a
    /// model is checked against libtorch when it loads: one that fails the check is served
    /// by the next backend down, logged. A library named by --onnxruntime-lib must load.
    /// Training always runs on libtorch.
    #[arg(long, env = "DRSN_BACKEND", value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// ONNX Runtime's shared library (libonnxruntime.so, e.g. from PyPI's onnxruntime
    /// wheel); default: the first lib/libonnxruntime.so* beside the executable.
    #[arg(long, env = "DRSN_ONNXRUNTIME_LIB")]
    pub onnxruntime_lib: Option<PathBuf>,
    /// Largest request body in bytes; larger ones answer 413.
    #[arg(long, env = "DRSN_BODY_LIMIT", default_value_t = 16 * 1024 * 1024)]
    pub body_limit: usize,
    /// A recording is labelled `unknown` when more than this share of its windows is out
    /// of distribution.
    #[arg(long, env = "DRSN_UNKNOWN_SHARE", default_value_t = 0.5)]
    pub unknown_share: f64,
    /// The drift monitor's span: the share of flagged windows is taken over each model's
    /// most recent this many windows.
    #[arg(long, env = "DRSN_DRIFT_WINDOWS", default_value_t = DriftSettings::default().windows)]
    pub drift_windows: usize,
    /// The log warns when the recent share of flagged windows rises above this.
    #[arg(long, env = "DRSN_DRIFT_WARN", default_value_t = DriftSettings::default().warn_share)]
    pub drift_warn: f64,
    /// Bearer token required by mutating endpoints (jobs, cancel, activate, uploads).
    #[arg(long, env = "DRSN_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// Listen on a non-loopback address without a token (anyone who can reach it can
    /// start jobs and change the model in service).
    #[arg(long, env = "DRSN_ALLOW_INSECURE")]
    pub allow_insecure: bool,
    /// Folder that job datasets must lie in (uploads go to its `datasets/`); default: the data folder.
    #[arg(long, env = "DRSN_DATA_ROOT")]
    pub data_root: Option<PathBuf>,
    /// SQLite database file of jobs, versions and datasets; default: `<data-dir>/drsn.sqlite`.
    #[arg(long, env = "DRSN_DATABASE", conflicts_with = "database_url")]
    pub database: Option<PathBuf>,
    /// The database as a URL: `sqlite://PATH`, or `postgres://USER:PASSWORD@HOST/DB` for
    /// replicas sharing jobs and model versions; default: `sqlite://<data-dir>/drsn.sqlite`.
    #[arg(long, env = "DRSN_DATABASE_URL", hide_env_values = true)]
    pub database_url: Option<String>,
    /// Training jobs run at once (each on its own thread).
    #[arg(long, env = "DRSN_JOB_WORKERS", default_value_t = 1)]
    pub job_workers: usize,
    /// This replica's name in the jobs it runs; default: host name and process id.
    #[arg(long, env = "DRSN_REPLICA_NAME")]
    pub replica_name: Option<String>,
    /// Seconds a replica holds a job without renewing its lease (renewed every quarter of
    /// it); a replica that dies has its jobs settled by another after this long.
    #[arg(long, env = "DRSN_JOB_LEASE_S", default_value_t = 30.0)]
    pub job_lease_s: f64,
    /// Seconds between looks at the shared database for jobs and versions when no
    /// notification came (PostgreSQL notifies at once; this is the fallback).
    #[arg(long, env = "DRSN_POLL_S", default_value_t = 5.0)]
    pub poll_s: f64,
    /// Largest dataset upload (one file or one archive) in bytes.
    #[arg(long, env = "DRSN_UPLOAD_LIMIT", default_value_t = 512 * 1024 * 1024)]
    pub upload_limit: usize,
    /// Most bytes an uploaded archive may unpack to.
    #[arg(long, env = "DRSN_UNPACKED_LIMIT", default_value_t = 2 * 1024 * 1024 * 1024)]
    pub unpacked_limit: u64,
    #[command(flatten)]
    pub limits: LimitArgs,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    Auto,
    Fused,
    Libtorch,
    Onnxruntime,
}

impl ServeArgs {
    /// The backend to serve with, loading ONNX Runtime unless it is libtorch.
    fn backend(&self, device: tch::Device) -> anyhow::Result<Backend> {
        if self.backend == BackendChoice::Libtorch {
            return Ok(Backend::Libtorch);
        }
        if device != tch::Device::Cpu {
            anyhow::ensure!(
                self.backend == BackendChoice::Auto,
                "--backend {:?} runs on the CPU only, and --device chose {device:?}",
                self.backend
            );
            tracing::info!(?device, "serving with libtorch: the fused forward and ONNX Runtime serve on the CPU only");
            return Ok(Backend::Libtorch);
        }
        // Asked for by name, or its library named: a failure to load is an error, not a
        // quiet fall-back to the slower libtorch.
        let explicit = self.backend == BackendChoice::Onnxruntime || self.onnxruntime_lib.is_some();
        let loaded = {
            let library =
                self.onnxruntime_lib.clone().or_else(beside_executable).context(
                    "no ONNX Runtime library: set --onnxruntime-lib (DRSN_ONNXRUNTIME_LIB) to libonnxruntime.so",
                );
            let threads = match self.torch_threads {
                0 => cores(),
                n => n,
            };
            library.and_then(|lib| crate::onnx::init(&lib, threads).map_err(anyhow::Error::from))
        };
        match (loaded, self.backend) {
            (Ok(()), BackendChoice::Onnxruntime) => Ok(Backend::Onnxruntime),
            (Ok(()), _) => Ok(Backend::Fused),
            (Err(e), _) if explicit => Err(e.context("ONNX Runtime (--backend onnxruntime or --onnxruntime-lib)")),
            (Err(e), _) => {
                tracing::warn!(error = %format!("{e:#}"), "ONNX Runtime is not available: models the fused forward does not run (2-D) are served by libtorch");
                Ok(Backend::Fused)
            }
        }
    }

    pub fn config(&self) -> anyhow::Result<ServerConfig> {
        anyhow::ensure!(
            self.max_wait_ms.is_finite() && self.max_wait_ms >= 0.0,
            "--max-wait-ms must be a non-negative number of milliseconds, got {}",
            self.max_wait_ms
        );
        anyhow::ensure!(
            (0.0..=1.0).contains(&self.unknown_share),
            "--unknown-share must lie in [0, 1], got {}",
            self.unknown_share
        );
        anyhow::ensure!(
            self.drift_windows >= 1 && (0.0..=1.0).contains(&self.drift_warn),
            "--drift-windows must be at least 1 and --drift-warn lie in [0, 1]"
        );
        let device = crate::device::parse(&self.device)?;
        let backend = self.backend(device)?;
        let workers = match (self.workers, backend) {
            (0, Backend::Onnxruntime | Backend::Fused) => cores(),
            (0, Backend::Libtorch) => 1,
            (n, _) => n,
        };
        Ok(ServerConfig {
            models_dir: self.models.clone(),
            data_dir: self.data_dir.clone(),
            engine: EngineConfig {
                max_batch_size: self.max_batch_size,
                inline_max_windows: self.inline_max_windows,
                max_wait: Duration::from_secs_f64(self.max_wait_ms / 1e3),
                queue_capacity: self.queue_capacity,
                workers,
                torch_threads: (self.torch_threads > 0).then_some(self.torch_threads),
                device,
                backend,
            },
            http: HttpConfig {
                body_limit: self.body_limit,
                limits: self.limits.request_limits(),
                max_request_windows: self.limits.max_request_windows,
                max_parts: self.limits.max_parts,
                decode_concurrency: self.limits.decode_concurrency,
                request_timeout: self.limits.request_timeout()?,
                max_concurrent_requests: self.limits.max_concurrent_requests,
                unknown_share: self.unknown_share,
                drift: DriftSettings { windows: self.drift_windows, warn_share: self.drift_warn },
            },
            max_loaded_versions: self.limits.max_loaded_versions,
            max_connections: self.limits.max_connections,
            header_timeout: self.limits.header_timeout()?,
        })
    }

    pub fn jobs_config(&self, device: tch::Device) -> anyhow::Result<JobsConfig> {
        anyhow::ensure!(self.job_workers >= 1, "--job-workers must be at least 1");
        anyhow::ensure!(
            self.job_lease_s.is_finite() && (1.0..=3600.0).contains(&self.job_lease_s),
            "--job-lease-s must lie in [1, 3600] seconds, got {}",
            self.job_lease_s
        );
        anyhow::ensure!(
            self.poll_s.is_finite() && (0.1..=600.0).contains(&self.poll_s),
            "--poll-s must lie in [0.1, 600] seconds, got {}",
            self.poll_s
        );
        let database = match &self.database_url {
            Some(url) => Location::parse(url).map_err(anyhow::Error::msg)?,
            None => Location::Sqlite(self.database.clone().unwrap_or_else(|| self.data_dir.join(DB_FILE))),
        };
        let replica = match &self.replica_name {
            Some(name) => {
                anyhow::ensure!(
                    !name.trim().is_empty() && name.len() <= 128,
                    "--replica-name must be 1 to 128 characters"
                );
                name.clone()
            }
            None => crate::jobs::default_replica_name(),
        };
        if let Some(token) = &self.token {
            anyhow::ensure!(!token.trim().is_empty(), "--token (DRSN_TOKEN) is empty");
        }
        Ok(JobsConfig {
            data_root: self.data_root.clone().unwrap_or_else(|| self.data_dir.clone()),
            database,
            runner: crate::jobs::RunnerConfig {
                workers: self.job_workers,
                replica,
                lease: Duration::from_secs_f64(self.job_lease_s),
                poll: Duration::from_secs_f64(self.poll_s),
            },
            token: self.token.clone(),
            upload_limit: self.upload_limit,
            unpacked_limit: self.unpacked_limit,
            archive_files: self.limits.archive_files,
            file_limits: self.limits.file_limits(),
            job_limits: crate::jobs::JobLimits {
                min_stride: self.limits.job_min_stride,
                max_windows: self.limits.job_max_windows,
                max_window_epochs: self.limits.job_max_window_epochs,
                ..crate::jobs::JobLimits::default()
            },
            request_timeout: self.limits.request_timeout()?,
            device,
        })
    }

    /// Refuses a non-loopback address without a token, unless told to allow it.
    pub fn check_exposure(&self) -> anyhow::Result<()> {
        if !self.addr.ip().is_loopback() && self.token.is_none() {
            anyhow::ensure!(
                self.allow_insecure,
                "refusing to listen on {} without a token: anyone who reaches it could start jobs and \
                 change the model in service. Set --token (DRSN_TOKEN), listen on 127.0.0.1, or pass \
                 --allow-insecure (DRSN_ALLOW_INSECURE=true)",
                self.addr
            );
            tracing::warn!(addr = %self.addr, "listening on a non-loopback address without a token (--allow-insecure)");
        }
        Ok(())
    }
}

/// The cores this process may use (its cgroup's CPU limit included).
fn cores() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// The first `lib/libonnxruntime.so*` beside the running executable (where the image and
/// `docker/collect-runtime.sh` put it).
fn beside_executable() -> Option<PathBuf> {
    let lib = std::env::current_exe().ok()?.parent()?.join("lib");
    let mut found: Vec<PathBuf> = std::fs::read_dir(lib)
        .ok()?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so")))
        .collect();
    found.sort();
    found.into_iter().next()
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.check_exposure()?;
    let config = args.config()?;
    let jobs_config = args.jobs_config(config.engine.device)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("drsn-http")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let config = AppConfig { addr: args.addr, server: config, jobs: Some(jobs_config) };
        let app = Application::build(config).await?;
        app.run_until(shutdown_signal()).await;
        anyhow::Ok(())
    })
}
