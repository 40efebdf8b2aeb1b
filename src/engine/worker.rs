//! One engine thread: owns its copy of every loaded model (a `Tensor` may move between
//! threads but not be shared), takes batches off the queue and runs them.

use std::borrow::Cow;
use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::{select, Receiver};
use tch::{Kind, Tensor};

use super::inline::InlineModel;
use super::values::Values;
use super::{
    queue, record_pass, size_mismatch, Backend, Control, EngineConfig, EngineError, LoadReport, LoadSpec, ModelKey,
    Occupancy, Prediction, Queued, WindowPrediction,
};
use crate::fused::{FusedError, FusedModel};
use crate::nn::{flat_values, Forward, ForwardValues, Model};
use crate::onnx::OnnxModel;
use crate::ood::Scorer;
use crate::telemetry;

pub(super) struct Worker {
    config: EngineConfig,
    work: Receiver<Queued>,
    control: Receiver<Control>,
    load: Arc<Occupancy>,
    models: HashMap<ModelKey, Loaded>,
}

/// A model on this thread, with its out-of-distribution scorer when calibrated.
struct Loaded {
    network: Network,
    sample_shape: Vec<i64>,
    scorer: Option<Arc<Scorer>>,
}

/// The model as the backend that serves it runs it.
enum Network {
    Libtorch(Model),
    Onnxruntime(OnnxModel),
    Fused(Arc<FusedModel>),
}

impl Worker {
    pub(super) fn new(
        config: EngineConfig,
        work: Receiver<Queued>,
        control: Receiver<Control>,
        load: Arc<Occupancy>,
    ) -> Self {
        Worker { config, work, control, load, models: HashMap::new() }
    }

    pub(super) fn run(mut self) {
        loop {
            select! {
                recv(self.control) -> msg => match msg {
                    Ok(control) => self.handle(control),
                    // Shut down: answer whatever is still queued, then stop.
                    Err(_) => {
                        while let Ok(job) = self.work.recv() {
                            self.run_batch(job);
                        }
                        return;
                    }
                },
                recv(self.work) -> job => match job {
                    Ok(job) => self.run_batch(job),
                    Err(_) => return,
                },
            }
        }
    }

    fn handle(&mut self, control: Control) {
        match control {
            Control::Load(load, reply) => {
                let key = load.key.clone();
                // A panic inside libtorch or the export must not take this worker (and every
                // model it holds) down: it fails this load only.
                let loaded =
                    catch_unwind(AssertUnwindSafe(|| load_and_warm_up(&load, &self.config))).unwrap_or_else(|panic| {
                        Err(EngineError::Load { key: key.clone(), message: panic_message(&panic) })
                    });
                let result = loaded.map(|model| {
                    let reported = LoadReport { backend: model.backend(), inline: model.inline() };
                    self.models.insert(key.clone(), model);
                    reported
                });
                if let Err(e) = &result {
                    tracing::error!(model = %key, error = %e, "model not loaded");
                }
                let _ = reply.send(result);
            }
            Control::Unload(key, reply) => {
                self.models.remove(&key);
                let _ = reply.send(());
            }
        }
    }

    fn run_batch(&mut self, first: Queued) {
        let load = &self.load;
        // Counted off as they are taken: another worker forming a batch at the same time
        // then does not wait for windows already in this one.
        let took = |windows| {
            load.queued.fetch_sub(windows, Ordering::Relaxed);
        };
        took(first.request.windows);
        let (max_batch, max_wait) = (self.config.max_batch_size, self.config.max_wait);
        let mut jobs = queue::collect(first, &self.work, max_batch, max_wait, || load.busy(), took);
        metrics::gauge!(telemetry::QUEUE_DEPTH).set(load.queued.load(Ordering::Relaxed) as f64);
        // A request whose client has gone (its handler dropped the reply's receiver) is not
        // worth a forward pass; dropping it releases its permits.
        let before = jobs.len();
        jobs.retain(|j| !j.reply.is_closed());
        if jobs.len() < before {
            metrics::counter!(telemetry::ABANDONED_REQUESTS).increment((before - jobs.len()) as u64);
        }
        for (key, group) in queue::group_by_model(jobs) {
            self.run_group(&key, group);
        }
    }

    /// Runs every window of one model's requests in forward passes of at most
    /// `max_batch_size`, then hands each request its own windows back.
    fn run_group(&mut self, key: &ModelKey, jobs: Vec<Queued>) {
        let started = Instant::now();
        let Some(loaded) = self.models.get_mut(key) else {
            for job in jobs {
                job.answer(Err(EngineError::NotLoaded(key.clone())));
            }
            return;
        };
        let sample_len = loaded.sample_len();
        let mut fitting = Vec::with_capacity(jobs.len());
        for job in jobs {
            match size_mismatch(&job.request, sample_len) {
                Some(message) => job.answer(Err(EngineError::Input(message))),
                None => fitting.push(job),
            }
        }
        let jobs = fitting;
        if jobs.is_empty() {
            return;
        }
        let model_label = key.name.clone();
        for job in &jobs {
            metrics::histogram!(telemetry::QUEUE_DURATION, "model" => model_label.clone())
                .record(started.duration_since(job.enqueued).as_secs_f64());
        }
        let diagnostics = jobs.iter().any(|j| j.request.diagnostics);
        let total: usize = jobs.iter().map(|j| j.request.windows).sum();
        let max_batch = self.config.max_batch_size;
        let outcome = guarded(key, || run_windows(loaded, &jobs, total, diagnostics, max_batch, &model_label));
        let inference = started.elapsed();
        let mut windows = match outcome {
            Ok(windows) => windows.into_iter(),
            Err(e) => return reply_all(jobs, || EngineError::Internal(e.clone())),
        };
        metrics::counter!(telemetry::WINDOWS, "model" => model_label).increment(total as u64);
        for job in jobs {
            let mut mine: Vec<WindowPrediction> = windows.by_ref().take(job.request.windows).collect();
            if !job.request.diagnostics {
                mine.iter_mut().for_each(|w| w.blocks.clear());
            }
            let prediction = Prediction {
                windows: mine,
                queued: started.duration_since(job.enqueued),
                inference,
                batch_windows: total,
            };
            job.answer(Ok(prediction));
        }
    }
}

fn reply_all(jobs: Vec<Queued>, error: impl Fn() -> EngineError) {
    for job in jobs {
        job.answer(Err(error()));
    }
}

/// Runs a forward pass; a panic inside it (libtorch, ONNX Runtime, the fused kernels) becomes
/// its message, logged, and fails the requests it carried, not the thread running it.
pub(super) fn guarded<T>(model: &ModelKey, run: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    catch_unwind(AssertUnwindSafe(run)).unwrap_or_else(|panic| {
        let message = panic_message(&panic);
        tracing::error!(model = %model, error = %message, "forward pass panicked");
        Err(message)
    })
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .map(String::as_str)
        .or_else(|| panic.downcast_ref::<&str>().copied())
        .unwrap_or("unknown panic")
        .lines()
        .next()
        .unwrap_or_default()
        .to_string()
}

fn load_and_warm_up(load: &LoadSpec, config: &EngineConfig) -> Result<Loaded, EngineError> {
    let fail = |message: String| EngineError::Load { key: load.key.clone(), message };
    let device = config.device;
    let model = Model::load(&load.spec, &load.weights, device).map_err(|e| fail(e.to_string()))?;
    let scorer = load.ood.as_ref().map(Scorer::new).transpose().map_err(|e| fail(e.to_string()))?.map(Arc::new);
    let sample_shape = load.spec.sample_shape();
    let mut shape = vec![WARM_UP_WINDOWS as i64];
    shape.extend(&sample_shape);
    let started = Instant::now();
    // Not zeros: a window that every unit shrinks to nothing would compare little. Not
    // random either: libtorch's generator belongs to the training jobs (their seeds).
    let values = (WARM_UP_WINDOWS as usize) * load.spec.sample_len();
    let wave: Vec<f32> = (0..values).map(|i| ((i as f32) * 0.37).sin() + 0.5 * ((i as f32) * 1.9).cos()).collect();
    let xs = Tensor::from_slice(&wave).view(shape.as_slice()).to_device(device);
    let out = model.infer(&xs, true).map_err(|e| fail(format!("warm-up forward pass: {e}")))?;
    let sum = f64::try_from(out.probabilities().sum(Kind::Float)).map_err(|e| fail(e.to_string()))? / WARM_UP_WINDOWS;
    if (sum - 1.0).abs() > 1e-3 {
        return Err(fail(format!("warm-up probabilities sum to {sum}, not 1")));
    }
    if let Some(scorer) = &scorer {
        // A calibration that does not fit the network (features of another width) fails here,
        // not on the first request.
        let _ = scorer.score_forward(&out).map_err(|e| fail(format!("out-of-distribution score: {e}")))?;
    }
    let on_onnx = |model: Model| match onnx_twin(&model, &xs, &out) {
        Ok(onnx) => Network::Onnxruntime(onnx),
        Err(e) => {
            tracing::error!(model = %load.key, error = %e, "kept on libtorch: its ONNX Runtime export failed the load check");
            Network::Libtorch(model)
        }
    };
    let network = match config.backend {
        Backend::Libtorch => Network::Libtorch(model),
        Backend::Onnxruntime => on_onnx(model),
        Backend::Fused => match fused_twin(&model, fused_threads(config), &xs, &out) {
            Ok(fused) => Network::Fused(Arc::new(fused)),
            Err(e) => {
                if !matches!(e, FusedError::Unsupported) {
                    tracing::error!(model = %load.key, error = %e, "not on the fused forward: it failed the load check");
                }
                if crate::onnx::loaded() {
                    on_onnx(model)
                } else {
                    Network::Libtorch(model)
                }
            }
        },
    };
    let loaded = Loaded { network, sample_shape, scorer };
    let warm_up_ms = started.elapsed().as_secs_f64() * 1e3;
    tracing::info!(model = %load.key, backend = %loaded.backend(), warm_up_ms, "model loaded");
    Ok(loaded)
}

impl Loaded {
    /// Values in one window.
    fn sample_len(&self) -> usize {
        self.sample_shape.iter().product::<i64>() as usize
    }

    /// The model for any thread to run, when it is on the fused forward.
    fn inline(&self) -> Option<Arc<InlineModel>> {
        match &self.network {
            Network::Fused(model) => Some(Arc::new(InlineModel {
                model: Arc::clone(model),
                scorer: self.scorer.clone(),
                sample_len: self.sample_len(),
            })),
            _ => None,
        }
    }

    fn backend(&self) -> Backend {
        match self.network {
            Network::Libtorch(_) => Backend::Libtorch,
            Network::Onnxruntime(_) => Backend::Onnxruntime,
            Network::Fused(_) => Backend::Fused,
        }
    }
}

/// Windows of the warm-up pass, which also compares the two backends.
const WARM_UP_WINDOWS: f64 = 4.0;

/// The model in ONNX Runtime, if both its sessions give libtorch's values on the warm-up
/// windows `xs` (see [`matches_libtorch`]).
fn onnx_twin(model: &Model, xs: &Tensor, reference: &Forward) -> Result<OnnxModel, String> {
    let mut onnx = OnnxModel::new(model).map_err(|e| e.to_string())?;
    let flat = flat_values(xs).map_err(|e| e.to_string())?;
    matches_libtorch(reference, |n, diagnostics| onnx.infer(&flat, n, diagnostics).map_err(|e| e.to_string()))?;
    Ok(onnx)
}

/// The fused forward's threads: `--torch-threads`, or one per core when left to the library.
fn fused_threads(config: &EngineConfig) -> usize {
    config.torch_threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, usize::from))
}

/// The model on the fused forward over `threads` threads, if it gives libtorch's values on
/// the warm-up windows `xs` (see [`matches_libtorch`]).
fn fused_twin(model: &Model, threads: usize, xs: &Tensor, reference: &Forward) -> Result<FusedModel, FusedError> {
    let fused = FusedModel::new(model, threads)?;
    let flat = flat_values(xs).map_err(|e| FusedError::Input(e.to_string()))?;
    matches_libtorch(reference, |n, diagnostics| fused.infer(&flat, n, diagnostics).map_err(|e| e.to_string()))
        .map_err(FusedError::Check)?;
    Ok(fused)
}

/// Whether another backend's forward passes over the warm-up windows, without and with
/// diagnostics (`run(windows, diagnostics)`), give libtorch's values (`reference`) within
/// 1e-4, relative above 1: probabilities, logits, pooled features and stage features (which
/// the out-of-distribution scores read), and every unit's thresholds, scales and mean |x|
/// (not its zeroed share: a value within rounding of its threshold may fall either side).
fn matches_libtorch(
    reference: &Forward,
    mut run: impl FnMut(usize, bool) -> Result<ForwardValues, String>,
) -> Result<(), String> {
    let n = reference.logits.size().first().copied().unwrap_or(0) as usize;
    let mut worst = 0f64;
    let mut compare = |what: &str, a: &Tensor, ours: &[f32]| -> Result<(), String> {
        let a = flat_values(a).map_err(|e| e.to_string())?;
        if a.len() != ours.len() {
            return Err(format!("{what}: {} values where libtorch gives {}", ours.len(), a.len()));
        }
        let d = a.iter().zip(ours).map(|(x, y)| f64::from((x - y).abs() / x.abs().max(1.0))).fold(0.0, f64::max);
        worst = if d.is_nan() { f64::INFINITY } else { worst.max(d) };
        Ok(())
    };
    for diagnostics in [false, true] {
        let out = run(n, diagnostics)?;
        compare("probabilities", &reference.probabilities(), &out.probabilities)?;
        compare("logits", &reference.logits, &out.logits)?;
        compare("features", &reference.features, &out.features)?;
        compare("stage features", &reference.stage_features, &out.stage_features)?;
        if diagnostics {
            if out.units.len() != reference.blocks.len() {
                return Err(format!(
                    "{} units with diagnostics, libtorch has {}",
                    out.units.len(),
                    reference.blocks.len()
                ));
            }
            for (r, o) in reference.blocks.iter().zip(&out.units) {
                compare("thresholds", &r.diagnostics.thresholds, &o.thresholds)?;
                compare("scales", &r.diagnostics.scales, &o.scales)?;
                compare("mean |x|", &r.diagnostics.mean_abs, &o.mean_abs)?;
            }
        }
    }
    if worst > 1e-4 {
        return Err(format!("its outputs differ from libtorch's by {worst}"));
    }
    Ok(())
}

/// Stacks every request's windows and runs them in chunks of `max_batch`.
fn run_windows(
    loaded: &mut Loaded,
    jobs: &[Queued],
    total: usize,
    diagnostics: bool,
    max_batch: usize,
    model_label: &str,
) -> Result<Vec<WindowPrediction>, String> {
    let inputs: Cow<'_, [f32]> = match jobs {
        [one] => Cow::Borrowed(&one.request.inputs),
        _ => Cow::Owned(jobs.iter().flat_map(|j| j.request.inputs.iter().copied()).collect()),
    };
    let per_window = loaded.sample_len();
    let mut windows = Vec::with_capacity(total);
    for chunk in inputs.chunks(max_batch * per_window) {
        let len = chunk.len() / per_window;
        let t0 = Instant::now();
        let values = match &mut loaded.network {
            Network::Libtorch(model) => {
                let mut shape = vec![len as i64];
                shape.extend(&loaded.sample_shape);
                let xs = Tensor::from_slice(chunk).view(shape.as_slice());
                let out = model.infer(&xs, diagnostics).map_err(|e| e.to_string())?;
                let scores =
                    loaded.scorer.as_ref().map(|s| s.score_forward(&out)).transpose().map_err(|e| e.to_string())?;
                Values::from_forward(&out, scores).map_err(|e| e.to_string())?
            }
            Network::Onnxruntime(model) => {
                let out = model.infer(chunk, len, diagnostics).map_err(|e| {
                    // ONNX Runtime's messages may name its source files: logged, not answered.
                    tracing::error!(model = model_label, error = %e, "ONNX Runtime forward pass failed");
                    "the forward pass failed (see the service log)".to_string()
                })?;
                Values::scored(out, loaded.scorer.as_deref())?
            }
            Network::Fused(model) => {
                let out = model.infer(chunk, len, diagnostics).map_err(|e| e.to_string())?;
                Values::scored(out, loaded.scorer.as_deref())?
            }
        };
        windows.extend(values.into_windows(len));
        record_pass(model_label, len, t0.elapsed());
    }
    Ok(windows)
}
