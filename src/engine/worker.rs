//! One engine thread: owns its copy of every loaded model (a `Tensor` may move between
//! threads but not be shared), takes batches off the queue and runs them.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::{select, Receiver};
use tch::{Device, Kind, Tensor};

use super::queue;
use super::{
    BlockValues, Control, EngineConfig, EngineError, LoadSpec, ModelKey, Occupancy, Prediction, Queued,
    WindowPrediction,
};
use crate::nn::{Forward, Model};
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
    model: Model,
    scorer: Option<Scorer>,
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
                let result = load_and_warm_up(&load, self.config.device).map(|model| {
                    self.models.insert(key.clone(), model);
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
        let busy = |collected| load.busy(collected);
        let mut jobs = queue::collect(first, &self.work, self.config.max_batch_size, self.config.max_wait, busy);
        let taken: usize = jobs.iter().map(|j| j.request.windows).sum();
        let depth = self.load.queued.fetch_sub(taken, Ordering::Relaxed).saturating_sub(taken);
        metrics::gauge!(telemetry::QUEUE_DEPTH).set(depth as f64);
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
    fn run_group(&self, key: &ModelKey, jobs: Vec<Queued>) {
        let started = Instant::now();
        let Some(loaded) = self.models.get(key) else {
            for job in jobs {
                let _ = job.reply.send(Err(EngineError::NotLoaded(key.clone())));
            }
            return;
        };
        let sample_len = loaded.model.spec().sample_len();
        let (jobs, wrong): (Vec<Queued>, Vec<Queued>) =
            jobs.into_iter().partition(|j| j.request.inputs.len() == j.request.windows * sample_len);
        for job in wrong {
            let message = format!(
                "{} values for {} windows of {sample_len} values each",
                job.request.inputs.len(),
                job.request.windows
            );
            let _ = job.reply.send(Err(EngineError::Input(message)));
        }
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
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            run_windows(loaded, &jobs, total, diagnostics, self.config.max_batch_size, &model_label)
        }));
        let inference = started.elapsed();
        let mut windows = match outcome {
            Ok(Ok(windows)) => windows.into_iter(),
            Ok(Err(e)) => return reply_all(jobs, || EngineError::Internal(e.clone())),
            Err(panic) => {
                let message = panic_message(&panic);
                tracing::error!(model = %key, error = %message, "forward pass panicked");
                return reply_all(jobs, || EngineError::Internal(message.clone()));
            }
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
            let _ = job.reply.send(Ok(prediction));
        }
    }
}

fn reply_all(jobs: Vec<Queued>, error: impl Fn() -> EngineError) {
    for job in jobs {
        let _ = job.reply.send(Err(error()));
    }
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

fn load_and_warm_up(load: &LoadSpec, device: Device) -> Result<Loaded, EngineError> {
    let fail = |message: String| EngineError::Load { key: load.key.clone(), message };
    let model = Model::load(&load.spec, &load.weights, device).map_err(|e| fail(e.to_string()))?;
    let scorer = load.ood.as_ref().map(|ood| Scorer::new(ood, device)).transpose().map_err(|e| fail(e.to_string()))?;
    let mut shape = vec![1];
    shape.extend(load.spec.sample_shape());
    let started = Instant::now();
    let out = model
        .infer(&Tensor::zeros(shape.as_slice(), (Kind::Float, device)), true)
        .map_err(|e| fail(format!("warm-up forward pass: {e}")))?;
    let sum = f64::try_from(out.probabilities().sum(Kind::Float)).map_err(|e| fail(e.to_string()))?;
    if (sum - 1.0).abs() > 1e-3 {
        return Err(fail(format!("warm-up probabilities sum to {sum}, not 1")));
    }
    if let Some(scorer) = &scorer {
        // A calibration that does not fit the network (features of another width) fails here,
        // not on the first request.
        let _ = scorer.score(&out).map_err(|e| fail(format!("out-of-distribution score: {e}")))?;
    }
    tracing::info!(model = %load.key, warm_up_ms = started.elapsed().as_secs_f64() * 1e3, "model loaded");
    Ok(Loaded { model, scorer })
}

/// Stacks every request's windows and runs them in chunks of `max_batch`.
fn run_windows(
    loaded: &Loaded,
    jobs: &[Queued],
    total: usize,
    diagnostics: bool,
    max_batch: usize,
    model_label: &str,
) -> Result<Vec<WindowPrediction>, String> {
    let model = &loaded.model;
    let mut shape = vec![total as i64];
    shape.extend(model.spec().sample_shape());
    let parts: Vec<Tensor> = jobs.iter().map(|j| Tensor::from_slice(&j.request.inputs)).collect();
    let xs = Tensor::cat(&parts, 0).view(shape.as_slice());
    let mut windows = Vec::with_capacity(total);
    for start in (0..total).step_by(max_batch) {
        let len = max_batch.min(total - start);
        let t0 = Instant::now();
        let out = model.infer(&xs.narrow(0, start as i64, len as i64), diagnostics).map_err(|e| e.to_string())?;
        let scores = loaded.scorer.as_ref().map(|s| s.score(&out)).transpose().map_err(|e| e.to_string())?;
        windows.extend(read_back(&out, scores.as_ref(), len).map_err(|e| e.to_string())?);
        let elapsed: Duration = t0.elapsed();
        metrics::histogram!(telemetry::BATCH_SIZE, "model" => model_label.to_string()).record(len as f64);
        metrics::histogram!(telemetry::INFERENCE_DURATION, "model" => model_label.to_string())
            .record(elapsed.as_secs_f64());
    }
    Ok(windows)
}

/// Copies one forward pass's results off the device into per-window values.
fn read_back(out: &Forward, scores: Option<&Tensor>, n: usize) -> Result<Vec<WindowPrediction>, tch::TchError> {
    let probabilities = to_vec(&out.probabilities())?;
    let scores = scores.map(to_vec).transpose()?;
    let classes = probabilities.len() / n;
    let mut windows: Vec<WindowPrediction> = probabilities
        .chunks(classes)
        .enumerate()
        .map(|(i, p)| WindowPrediction {
            probabilities: p.to_vec(),
            blocks: Vec::new(),
            ood_score: scores.as_ref().and_then(|s| s.get(i).copied()),
        })
        .collect();
    for block in &out.blocks {
        let d = &block.diagnostics;
        let name: Arc<str> = Arc::from(block.name.as_str());
        let thresholds = to_vec(&d.thresholds)?;
        let scales = to_vec(&d.scales)?;
        let mean_abs = to_vec(&d.mean_abs)?;
        let zeroed = to_vec(&d.zeroed_fraction)?;
        let (t, c) = (thresholds.len() / n, mean_abs.len() / n);
        for (i, w) in windows.iter_mut().enumerate() {
            w.blocks.push(BlockValues {
                name: name.clone(),
                stage: block.stage,
                thresholds: thresholds.get(i * t..(i + 1) * t).unwrap_or_default().to_vec(),
                scales: scales.get(i * t..(i + 1) * t).unwrap_or_default().to_vec(),
                mean_abs: mean_abs.get(i * c..(i + 1) * c).unwrap_or_default().to_vec(),
                zeroed_fraction: zeroed.get(i).copied().unwrap_or_default(),
            });
        }
    }
    Ok(windows)
}

fn to_vec(t: &Tensor) -> Result<Vec<f32>, tch::TchError> {
    Vec::<f32>::try_from(t.to_device(Device::Cpu).to_kind(Kind::Float).contiguous().flatten(0, -1))
}
