//! The inference engine: dedicated threads own the models; requests reach them through a
//! bounded queue, are batched dynamically and answered through oneshot channels. Nothing
//! here runs on the async runtime except handing requests over and awaiting replies, and
//! the forward pass of a small request for a model on the fused forward (`inline`), which
//! costs less where it is than the hand-over would.
//!
//! Capacity is counted in windows (a long recording is many windows): a request takes as
//! many permits as it has windows and holds them until it is answered; when too few are
//! left, it is refused at once as [`EngineError::Overloaded`] rather than queued.
// On the path of every request or job: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod inline;
mod queue;
mod values;
mod worker;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::{Sender, TrySendError};
use tch::Device;
use tokio::sync::{oneshot, OwnedSemaphorePermit, Semaphore};

use crate::nn::ModelSpec;
use crate::ood::OodCalibration;
use crate::telemetry;

/// How the engine batches and where it runs.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    /// Most windows in one forward pass.
    pub max_batch_size: usize,
    /// How long a batch may wait for more requests after its first one was queued.
    pub max_wait: Duration,
    /// Most windows queued or in a forward pass at once; more answer 429.
    pub queue_capacity: usize,
    /// Threads each owning a copy of every model.
    pub workers: usize,
    /// libtorch intra-op threads (process-wide); `None` keeps libtorch's default.
    pub torch_threads: Option<usize>,
    pub device: Device,
    /// What runs the forward passes.
    pub backend: Backend,
    /// Requests of at most this many windows (and `max_batch_size`) for a model on the
    /// fused forward run on the calling thread, unbatched (see `inline`); 0: every request
    /// goes through the queue.
    pub inline_max_windows: usize,
}

/// What runs a model's forward passes. libtorch is the reference (and trains every model);
/// ONNX Runtime runs the same network exported from the same weights, on the CPU; the
/// fused CPU forward (`crate::fused`) runs 1-D networks from the same weights. A model that
/// disagrees with libtorch at load is served by the next backend down (fused, ONNX
/// Runtime, libtorch), as is a 2-D model asked to run fused.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    Libtorch,
    /// Needs `onnx::init` first.
    Onnxruntime,
    /// 1-D models; the others on ONNX Runtime when `onnx::init` has run, else libtorch.
    Fused,
}

impl std::fmt::Display for Backend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Backend::Libtorch => "libtorch",
            Backend::Onnxruntime => "onnxruntime",
            Backend::Fused => "fused",
        })
    }
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            max_batch_size: 64,
            max_wait: Duration::from_millis(2),
            queue_capacity: 4096,
            workers: 1,
            torch_threads: None,
            device: Device::Cpu,
            backend: Backend::Libtorch,
            inline_max_windows: 4,
        }
    }
}

/// A model as the engine knows it: its name and version.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ModelKey {
    pub name: String,
    pub version: u32,
}

impl std::fmt::Display for ModelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} v{}", self.name, self.version)
    }
}

/// Windows for one model, already shaped and normalised: `windows` samples of
/// `spec.sample_len()` values each, row-major.
#[derive(Debug)]
pub struct Request {
    pub model: ModelKey,
    pub inputs: Vec<f32>,
    pub windows: usize,
    /// Whether to report what every shrinkage unit did.
    pub diagnostics: bool,
}

/// The engine's answer to one [`Request`], windows in request order.
#[derive(Debug)]
pub struct Prediction {
    pub windows: Vec<WindowPrediction>,
    /// From enqueue to the start of the forward pass.
    pub queued: Duration,
    /// The forward pass(es) of the batch that carried this request.
    pub inference: Duration,
    /// Windows in that batch (this request's and others').
    pub batch_windows: usize,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WindowPrediction {
    /// One probability per class, in the model's class order.
    pub probabilities: Vec<f32>,
    /// One entry per shrinkage unit when diagnostics were asked for, else empty.
    pub blocks: Vec<BlockValues>,
    /// The out-of-distribution score (higher: stranger) when the model is calibrated.
    pub ood_score: Option<f32>,
}

/// What one shrinkage unit did to one window.
#[derive(Debug, Clone, PartialEq)]
pub struct BlockValues {
    pub name: Arc<str>,
    pub stage: usize,
    /// One per channel (DRSN-CW) or one (DRSN-CS).
    pub thresholds: Vec<f32>,
    pub scales: Vec<f32>,
    /// Mean |x| per channel, before thresholding.
    pub mean_abs: Vec<f32>,
    pub zeroed_fraction: f32,
}

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("the inference queue is full ({capacity} windows); try again shortly")]
    Overloaded { capacity: usize },
    #[error("{windows} windows in one request exceed the queue's capacity of {capacity}; send fewer windows (a larger stride or a shorter recording)")]
    TooLarge { windows: usize, capacity: usize },
    #[error("model {0} is not loaded in the engine")]
    NotLoaded(ModelKey),
    #[error("{0}")]
    Input(String),
    #[error("cannot load model {key}: {message}")]
    Load { key: ModelKey, message: String },
    #[error("the inference engine has stopped")]
    Stopped,
    #[error("inference failed: {0}")]
    Internal(String),
}

/// A model to load on every worker.
#[derive(Debug, Clone)]
struct LoadSpec {
    key: ModelKey,
    spec: ModelSpec,
    weights: PathBuf,
    ood: Option<OodCalibration>,
}

/// What a worker reports of a model it loaded.
struct LoadReport {
    backend: Backend,
    /// The model for any thread to run, when it is on the fused forward.
    inline: Option<Arc<inline::InlineModel>>,
}

enum Control {
    // Boxed: the calibration makes a load much larger than an unload.
    Load(Box<LoadSpec>, oneshot::Sender<Result<LoadReport, EngineError>>),
    Unload(ModelKey, oneshot::Sender<()>),
}

/// One request on its way through the queue.
struct Queued {
    request: Request,
    enqueued: Instant,
    reply: oneshot::Sender<Result<Prediction, EngineError>>,
    /// Released when the job is answered (or dropped).
    permit: OwnedSemaphorePermit,
}

impl Queued {
    /// Answers the request, its windows' permits released first: a client that asks again
    /// the moment it has its answer finds them free (not a 429 at the queue's edge).
    fn answer(self, result: Result<Prediction, EngineError>) {
        let Queued { reply, permit, .. } = self;
        drop(permit);
        let _ = reply.send(result);
    }
}

/// Senders, taken away on shutdown so that workers finish the queue and stop.
struct Channels {
    work: Sender<Queued>,
    controls: Vec<Sender<Control>>,
}

/// What the handle and the workers both see of the engine's load.
struct Occupancy {
    /// One permit per window the engine may hold (queued or in a forward pass).
    permits: Arc<Semaphore>,
    /// Windows queued and not yet taken into a batch (counted in before a request is sent,
    /// off as a worker takes it).
    queued: AtomicUsize,
    /// Requests announced by [`Engine::incoming`] and not yet queued (being read or decoded).
    incoming: AtomicUsize,
}

impl Occupancy {
    /// Whether requests that could join the batch being formed are on their way: queued and
    /// not yet taken, or still being read by a handler. (Not those in batches running or
    /// being formed on other workers, which will not join it: waiting for them left cores
    /// idle under load.)
    fn busy(&self) -> bool {
        self.queued.load(Ordering::Relaxed) > 0 || self.incoming.load(Ordering::Relaxed) > 0
    }
}

/// A request on its way to the engine (see [`Engine::incoming`]); dropping it withdraws
/// the announcement.
pub struct Incoming(Arc<Occupancy>);

impl Drop for Incoming {
    fn drop(&mut self) {
        self.0.incoming.fetch_sub(1, Ordering::Relaxed);
    }
}

struct EngineShared {
    config: EngineConfig,
    channels: Mutex<Option<Channels>>,
    load: Arc<Occupancy>,
    threads: Mutex<Vec<JoinHandle<()>>>,
    /// The models small requests run on the calling thread (`config.inline_max_windows`).
    inline: RwLock<HashMap<ModelKey, Arc<inline::InlineModel>>>,
}

/// A cheap handle to the engine; clones share it. Dropping the last one stops the workers
/// once they have answered everything queued.
#[derive(Clone)]
pub struct Engine {
    inner: Arc<EngineShared>,
}

impl Engine {
    /// Starts the worker threads (with no models yet).
    pub fn start(config: EngineConfig) -> Result<Engine, EngineError> {
        if config.max_batch_size == 0 || config.workers == 0 || config.queue_capacity == 0 {
            return Err(EngineError::Internal(
                "max batch size, workers and queue capacity must all be at least 1".into(),
            ));
        }
        if let Some(n) = config.torch_threads {
            tch::set_num_threads(n as i32);
        }
        let (work_tx, work_rx) = crossbeam_channel::bounded(config.queue_capacity);
        let load = Arc::new(Occupancy {
            permits: Arc::new(Semaphore::new(config.queue_capacity)),
            queued: AtomicUsize::new(0),
            incoming: AtomicUsize::new(0),
        });
        let mut controls = Vec::new();
        let mut threads = Vec::new();
        for i in 0..config.workers {
            let (control_tx, control_rx) = crossbeam_channel::unbounded();
            controls.push(control_tx);
            let worker = worker::Worker::new(config.clone(), work_rx.clone(), control_rx, load.clone());
            let handle = std::thread::Builder::new()
                .name(format!("drsn-engine-{i}"))
                .spawn(move || worker.run())
                .map_err(|e| EngineError::Internal(format!("cannot start an engine thread: {e}")))?;
            threads.push(handle);
        }
        Ok(Engine {
            inner: Arc::new(EngineShared {
                config,
                channels: Mutex::new(Some(Channels { work: work_tx, controls })),
                load,
                threads: Mutex::new(threads),
                inline: RwLock::new(HashMap::new()),
            }),
        })
    }

    pub fn config(&self) -> &EngineConfig {
        &self.inner.config
    }

    /// Whether the engine still takes requests (not shut down, no worker lost).
    pub fn is_running(&self) -> bool {
        let open = self.inner.channels.lock().map(|c| c.is_some()).unwrap_or(false);
        let threads = self.inner.threads.lock().map(|t| t.iter().all(|h| !h.is_finished()));
        open && threads.unwrap_or(false)
    }

    /// Loads a model on every worker (with its out-of-distribution score, if calibrated)
    /// and runs a warm-up forward pass with it. Loading a key that is already loaded
    /// replaces it. Says which backend serves it: on ONNX Runtime, a model whose export
    /// fails the load check stays on libtorch.
    pub async fn load(
        &self,
        key: ModelKey,
        spec: ModelSpec,
        weights: PathBuf,
        ood: Option<OodCalibration>,
    ) -> Result<Backend, EngineError> {
        let load = LoadSpec { key: key.clone(), spec, weights, ood };
        let replies = self.broadcast(|reply| Control::Load(Box::new(load.clone()), reply))?;
        // Every worker runs the same check on the same windows: they agree.
        let mut backend = self.inner.config.backend;
        let mut inline = None;
        for reply in replies {
            let loaded = reply.await.map_err(|_| EngineError::Stopped)??;
            backend = loaded.backend;
            inline = inline.or(loaded.inline);
        }
        // Under the map's lock, as `shutdown` clears it: a load that finishes after a shutdown
        // puts nothing back.
        if let Ok(mut models) = self.inner.inline.write() {
            let running = self.inner.channels.lock().is_ok_and(|c| c.is_some());
            match inline.filter(|_| running && self.inner.config.inline_max_windows > 0) {
                Some(model) => models.insert(key, model),
                None => models.remove(&key),
            };
        }
        Ok(backend)
    }

    /// Drops a model from every worker; requests for it then fail with `NotLoaded`.
    pub async fn unload(&self, key: ModelKey) -> Result<(), EngineError> {
        if let Ok(mut models) = self.inner.inline.write() {
            models.remove(&key);
        }
        let replies = self.broadcast(|reply| Control::Unload(key.clone(), reply))?;
        for reply in replies {
            reply.await.map_err(|_| EngineError::Stopped)?;
        }
        Ok(())
    }

    fn broadcast<T>(
        &self,
        make: impl Fn(oneshot::Sender<T>) -> Control,
    ) -> Result<Vec<oneshot::Receiver<T>>, EngineError> {
        let channels = self.inner.channels.lock().map_err(|_| EngineError::Stopped)?;
        let channels = channels.as_ref().ok_or(EngineError::Stopped)?;
        let mut replies = Vec::new();
        for control in &channels.controls {
            let (tx, rx) = oneshot::channel();
            control.send(make(tx)).map_err(|_| EngineError::Stopped)?;
            replies.push(rx);
        }
        Ok(replies)
    }

    /// Announces a request that will reach [`Engine::infer`] once its body is read, so that
    /// a batch being formed waits for it; drop the guard when the request is queued or
    /// abandoned. A request that arrives at an idle engine with nothing announced runs at
    /// once instead of waiting `max_wait` for company that is not coming.
    pub fn incoming(&self) -> Incoming {
        self.inner.load.incoming.fetch_add(1, Ordering::Relaxed);
        Incoming(self.inner.load.clone())
    }

    /// Queues a request and waits for its prediction. Refuses at once when the queue
    /// cannot take its windows.
    pub async fn infer(&self, request: Request) -> Result<Prediction, EngineError> {
        let capacity = self.inner.config.queue_capacity;
        let windows = request.windows;
        if windows == 0 {
            return Err(EngineError::Input("no windows to diagnose".into()));
        }
        if windows > capacity {
            return Err(EngineError::TooLarge { windows, capacity });
        }
        let permit = self
            .inner
            .load
            .permits
            .clone()
            .try_acquire_many_owned(windows as u32)
            .map_err(|_| EngineError::Overloaded { capacity })?;
        if let Some(model) = self.inline_model(&request) {
            // Its permits are held while it runs, as a queued request's are.
            let _permit = permit;
            return model.run(&request);
        }
        let (reply, answer) = oneshot::channel();
        let job = Queued { request, enqueued: Instant::now(), reply, permit };
        {
            let channels = self.inner.channels.lock().map_err(|_| EngineError::Stopped)?;
            let channels = channels.as_ref().ok_or(EngineError::Stopped)?;
            // Counted before sending so that a worker never takes more than was added.
            let depth = self.inner.load.queued.fetch_add(windows, Ordering::Relaxed) + windows;
            match channels.work.try_send(job) {
                Ok(()) => metrics::gauge!(telemetry::QUEUE_DEPTH).set(depth as f64),
                Err(e) => {
                    self.inner.load.queued.fetch_sub(windows, Ordering::Relaxed);
                    return Err(match e {
                        TrySendError::Full(_) => EngineError::Overloaded { capacity },
                        TrySendError::Disconnected(_) => EngineError::Stopped,
                    });
                }
            }
        }
        answer.await.map_err(|_| EngineError::Stopped)?
    }

    /// The model to run `request` on this thread, when it is small and its model is on the
    /// fused forward.
    fn inline_model(&self, request: &Request) -> Option<Arc<inline::InlineModel>> {
        let config = &self.inner.config;
        if request.windows > config.inline_max_windows.min(config.max_batch_size) {
            return None;
        }
        self.inner.inline.read().ok()?.get(&request.model).cloned()
    }

    /// Stops taking requests; the workers answer what is queued, then exit.
    pub fn shutdown(&self) {
        // The map's lock first, as in `load`.
        let models = self.inner.inline.write();
        if let Ok(mut channels) = self.inner.channels.lock() {
            channels.take();
        }
        if let Ok(mut models) = models {
            models.clear();
        }
    }

    /// Waits for the worker threads to exit (after [`Engine::shutdown`]). Blocking.
    pub fn join(&self) {
        let threads = self.inner.threads.lock().map(|mut t| std::mem::take(&mut *t)).unwrap_or_default();
        for t in threads {
            if t.join().is_err() {
                tracing::error!("an engine thread panicked");
            }
        }
    }
}

/// Why a request's inputs do not fit a model of `sample_len` values a window, if they do not.
fn size_mismatch(request: &Request, sample_len: usize) -> Option<String> {
    (request.windows.checked_mul(sample_len) != Some(request.inputs.len()))
        .then(|| format!("{} values for {} windows of {sample_len} values each", request.inputs.len(), request.windows))
}

/// Records one forward pass of `windows` windows of the model named `model`.
fn record_pass(model: &str, windows: usize, elapsed: Duration) {
    metrics::histogram!(telemetry::BATCH_SIZE, "model" => model.to_string()).record(windows as f64);
    metrics::histogram!(telemetry::INFERENCE_DURATION, "model" => model.to_string()).record(elapsed.as_secs_f64());
}
