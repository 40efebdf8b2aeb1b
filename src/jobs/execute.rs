//! One job, on a worker thread: read the data, train with progress written to the store,
//! write the new model version, and put it into service as its policy says.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use super::events::JobEvent;
use super::limits::JobLimits;
use super::request::{Init, JobRequest, NetworkChoice, Plan, Promotion};
use super::runner::Shared;
use crate::data::{load_dataset_until, DataError, Dataset, Limits};
use crate::nn::{Dim, Model};
use crate::registry::{write_model_folder, CardInfo, ModelCard, Registry, WindowInfo};
use crate::store::{EpochRow, JobProgress, JobRow, NewModelVersion};
use crate::train::{self, judged_test, CancelToken, Progress, RunOutcome, RunRequest};

/// What jobs need from the rest of the service.
pub struct JobContext {
    /// Canonical data root: job datasets must lie inside it.
    pub data_root: PathBuf,
    pub registry: Arc<Registry>,
    /// Where training runs (the service's device).
    pub device: tch::Device,
    /// What one job may ask for.
    pub limits: JobLimits,
    /// What the files a job reads may make the readers take on.
    pub files: Limits,
    /// Serialises choosing a version number and registering it, across workers.
    publishing: Mutex<()>,
}

impl JobContext {
    pub fn new(data_root: PathBuf, registry: Arc<Registry>, device: tch::Device) -> Self {
        JobContext {
            data_root,
            registry,
            device,
            limits: JobLimits::default(),
            files: Limits::FILES,
            publishing: Mutex::new(()),
        }
    }

    pub fn with_limits(self, files: Limits, limits: JobLimits) -> Self {
        JobContext { files, limits, ..self }
    }

    /// `message` without the server's folders: paths inside the data root are shown
    /// relative to it (as jobs name them), the service's own folder as `<data-dir>`. Job
    /// errors and cards are readable without a token.
    pub fn redact(&self, message: &str) -> String {
        let mut out = message.to_string();
        let root = self.data_root.display().to_string();
        out = out.replace(&format!("{root}/"), "").replace(&root, ".");
        if let Ok(dir) = self.registry.data_models_dir() {
            let dir = dir.display().to_string();
            out = out.replace(&dir, "<data-dir>/models");
        }
        out
    }
}

#[derive(Debug)]
pub enum ExecuteError {
    Cancelled,
    Failed(String),
}

fn failed(e: impl std::fmt::Display) -> ExecuteError {
    ExecuteError::Failed(e.to_string())
}

/// Runs the job; returns the new version and what was measured and decided.
pub fn execute(inner: &Shared, row: &JobRow, cancel: &CancelToken) -> Result<(i64, serde_json::Value), ExecuteError> {
    let request: JobRequest =
        serde_json::from_value(row.request.0.clone()).map_err(|e| failed(format!("stored request: {e}")))?;
    let registry = &inner.ctx.registry;
    let active = registry.active(&request.model).ok();
    let ctx = &inner.ctx;
    let plan =
        request.plan(&ctx.data_root, active.as_ref().map(|e| &e.card), &ctx.limits, &ctx.files).map_err(failed)?;
    let stop = || cancel.is_cancelled();
    let dataset = load_dataset_until(&plan.source, &plan.options, &stop).map_err(|e| match e {
        DataError::Cancelled => ExecuteError::Cancelled,
        other => failed(format!("dataset: {other}")),
    })?;
    if cancel.is_cancelled() {
        return Err(ExecuteError::Cancelled);
    }
    ctx.limits.check_work(dataset.train.len(), plan.config.epochs).map_err(failed)?;
    let spec = plan.network.spec(dataset.classes.len()).map_err(failed)?;
    let run_request = RunRequest {
        spec,
        config: plan.config.clone(),
        normalization: plan.normalization,
        test_noise: request.test_noise,
        sweep_kinds: request.snr_sweep.clone(),
        device: inner.ctx.device,
    };
    let mut reporter = Reporter::new(inner, &row.id);
    let mut on_progress = |p: &Progress| reporter.report(p);
    let outcome = match (&plan.network, request.init) {
        (NetworkChoice::Active(card), Init::Active) => {
            if card.classes != dataset.classes {
                return Err(failed(format!(
                    "init: active: the data's classes {:?} differ from the active model's {:?}",
                    dataset.classes, card.classes
                )));
            }
            let weights = active.as_ref().map(|e| e.weights()).ok_or_else(|| failed("the active version went away"))?;
            let model = Model::load(&run_request.spec, &weights, inner.ctx.device).map_err(failed)?;
            train::run_from(model, &dataset, &run_request, &mut on_progress, cancel)
        }
        _ => train::run(&dataset, &run_request, &mut on_progress, cancel),
    }
    .map_err(|e| match e {
        e if e.is_cancelled() => ExecuteError::Cancelled,
        other => failed(other),
    })?;
    if cancel.is_cancelled() {
        return Err(ExecuteError::Cancelled);
    }
    publish(inner, row, &request, &plan, &dataset, &run_request, &outcome)
}

/// Writes the version folder, records it in the database, registers it (the engine
/// loads it: from then on it is visible) and activates it per the policy. A cancel that
/// comes before publishing begins wins (no version); after, it is refused.
fn publish(
    inner: &Shared,
    row: &JobRow,
    request: &JobRequest,
    plan: &Plan,
    dataset: &Dataset,
    run_request: &RunRequest,
    outcome: &RunOutcome,
) -> Result<(i64, serde_json::Value), ExecuteError> {
    let registry = &inner.ctx.registry;
    let name = request.model.as_str();
    let accuracy = outcome.test.as_ref().map(|t| t.accuracy).or(outcome.report.best_val_accuracy);
    // Judged before the new version is registered: "the active version" is the old one.
    let decision = decide(inner, request, dataset, run_request, accuracy);

    let _publishing = inner.ctx.publishing.lock().unwrap_or_else(|e| e.into_inner());
    let stored_max = inner.rt.block_on(inner.store.max_version(name)).map_err(failed)?;
    let version = registry.next_version(name).max(stored_max as u32 + 1);
    let dir = registry.version_dir(name, version).map_err(failed)?;
    let parent = dir.parent().ok_or_else(|| failed("model folder has no parent"))?;
    // Written under a hidden name and renamed: the registry never sees half a version.
    let partial = parent.join(format!(".{version}.partial-{}", uuid::Uuid::new_v4()));
    let window = (run_request.spec.dim == Dim::One)
        .then_some(WindowInfo { length: plan.options.window, train_stride: plan.options.train_stride });
    let info = CardInfo {
        name: name.to_string(),
        version,
        classes: dataset.classes.clone(),
        sample_rate: dataset.sample_rate,
        window,
        normalization: plan.normalization,
        // The card is readable without a token: no server folders in it.
        data: json!({
            "job": row.id,
            "dataset": request.dataset,
            "description": serde_json::from_str::<serde_json::Value>(&inner.ctx.redact(&dataset.description.to_string()))
                .unwrap_or_default(),
        }),
        metrics: outcome.metrics(run_request),
    };
    let card = write_model_folder(&partial, &outcome.model, info).map_err(failed)?;
    let discard = || {
        let _ = std::fs::remove_dir_all(&partial);
    };
    match inner.rt.block_on(inner.store.begin_publishing(&row.id)) {
        Ok(true) => {}
        Ok(false) => {
            discard();
            return Err(ExecuteError::Cancelled);
        }
        Err(e) => {
            discard();
            return Err(failed(e));
        }
    }
    let record = NewModelVersion {
        name: name.to_string(),
        version: version as i64,
        path: dir.display().to_string(),
        weights_sha256: card.weights_sha256.clone(),
        metrics: metrics_summary(&card.metrics),
        job_id: Some(row.id.clone()),
    };
    if let Err(e) = inner.rt.block_on(inner.store.insert_version(&record)) {
        discard();
        return Err(failed(e));
    }
    // Recorded first, so that what the registry serves is always in the database.
    let put_in_place = std::fs::rename(&partial, &dir)
        .map_err(|e| failed(format!("{}: {e}", dir.display())))
        .and_then(|()| inner.rt.block_on(registry.add_version(name, version)).map_err(failed));
    if let Err(e) = put_in_place {
        discard();
        let _ = std::fs::remove_dir_all(&dir);
        if let Err(forget) = inner.rt.block_on(inner.store.delete_version(name, version as i64)) {
            tracing::error!(model = name, version, error = %forget, "could not forget a version that was not put in place");
        }
        return Err(e);
    }

    // The first version of a new name is in service at once, whatever the policy.
    let first = registry.active(name).is_ok_and(|e| e.card.version == version);
    let activate = first || decision.activate;
    if activate {
        if !first {
            inner
                .rt
                .block_on(registry.activate(name, version))
                .map_err(|e| failed(format!("version {version} was written but could not be put into service: {e}")))?;
        }
        inner.rt.block_on(inner.store.activate(name, version as i64)).map_err(failed)?;
    }
    let result = json!({
        "model": name,
        "model_version": version,
        "test_accuracy": outcome.test.as_ref().map(|t| t.accuracy),
        "validation_accuracy": outcome.report.best_val_accuracy,
        "best_epoch": outcome.report.best_epoch,
        "train_seconds": outcome.report.elapsed_s,
        "promotion": {
            "policy": request.promote,
            "activated": activate,
            "reason": if first { "the first version of a new model".to_string() } else { decision.reason },
            "active_accuracy": decision.active_accuracy,
        },
    });
    Ok((version as i64, result))
}

/// The metrics kept in the database, taken from a card's (which holds the full set).
pub(super) fn metrics_summary(card_metrics: &serde_json::Value) -> serde_json::Value {
    json!({
        "test_accuracy": card_metrics.pointer("/test/accuracy"),
        "test_samples": card_metrics.pointer("/test/samples"),
        "validation_accuracy": card_metrics.get("validation_accuracy"),
        "best_epoch": card_metrics.get("best_epoch"),
    })
}

struct Decision {
    activate: bool,
    reason: String,
    active_accuracy: Option<f64>,
}

/// Whether the new version goes into service. `if_better` judges the active version on
/// exactly the test samples the new one was judged on.
fn decide(
    inner: &Shared,
    request: &JobRequest,
    dataset: &Dataset,
    run_request: &RunRequest,
    accuracy: Option<f64>,
) -> Decision {
    let decision =
        |activate, reason: &str, active_accuracy| Decision { activate, reason: reason.into(), active_accuracy };
    match request.promote {
        Promotion::Never => decision(false, "policy never", None),
        Promotion::Always => decision(true, "policy always", None),
        Promotion::IfBetter => {
            let Ok(active) = inner.ctx.registry.active(&request.model) else {
                return decision(true, "no active version", None);
            };
            let Some(new) = accuracy else {
                return decision(false, "no held-out data to judge the new version on", None);
            };
            match active_accuracy(&active.card, &active.weights(), dataset, run_request, inner.ctx.device) {
                Ok(old) => Decision {
                    activate: new >= old,
                    reason: format!(
                        "held-out accuracy {new:.4} vs the active version {}'s {old:.4} on the same samples",
                        active.card.version
                    ),
                    active_accuracy: Some(old),
                },
                Err(why) => decision(false, &format!("not comparable with the active version: {why}"), None),
            }
        }
    }
}

fn active_accuracy(
    card: &ModelCard,
    weights: &std::path::Path,
    dataset: &Dataset,
    run_request: &RunRequest,
    device: tch::Device,
) -> Result<f64, String> {
    if card.classes != dataset.classes {
        return Err(format!("its classes {:?} differ from the data's {:?}", card.classes, dataset.classes));
    }
    if card.spec.sample_shape() != run_request.spec.sample_shape() {
        return Err(format!("it takes samples of shape {:?}", card.spec.sample_shape()));
    }
    if card.sample_rate != dataset.sample_rate {
        return Err(format!("it expects {:?} Hz, the data is at {:?} Hz", card.sample_rate, dataset.sample_rate));
    }
    let test = judged_test(dataset, run_request);
    if test.is_empty() {
        return Err("no test data".into());
    }
    let model = Model::load(&card.spec, weights, device).map_err(|e| e.to_string())?;
    train::evaluate(&model, &test, card.normalization, &card.classes).map(|e| e.accuracy).map_err(|e| e.to_string())
}

/// Writes progress to the store and the event channel without slowing training: step
/// progress at most once a second to the database and four times a second to listeners;
/// every epoch's metrics at once.
struct Reporter<'a> {
    inner: &'a Shared,
    job_id: String,
    last_write: Option<Instant>,
    last_event: Option<Instant>,
}

const WRITE_EVERY: Duration = Duration::from_secs(1);
const EVENT_EVERY: Duration = Duration::from_millis(250);

impl<'a> Reporter<'a> {
    fn new(inner: &'a Shared, job_id: &str) -> Self {
        Reporter { inner, job_id: job_id.to_string(), last_write: None, last_event: None }
    }

    fn due(last: &mut Option<Instant>, every: Duration) -> bool {
        let now = Instant::now();
        if last.is_some_and(|t| now.duration_since(t) < every) {
            return false;
        }
        *last = Some(now);
        true
    }

    fn report(&mut self, progress: &Progress) {
        match progress {
            Progress::Step(s) => {
                let last_step = s.step == s.steps_per_epoch;
                if Self::due(&mut self.last_write, WRITE_EVERY) || last_step {
                    self.write(JobProgress {
                        epoch: s.epoch as i64,
                        epochs: s.epochs as i64,
                        step: s.step as i64,
                        steps: s.steps_per_epoch as i64,
                        eta_seconds: Some(s.eta_s),
                    });
                }
                if Self::due(&mut self.last_event, EVENT_EVERY) || last_step {
                    let _ = self.inner.events.send(JobEvent::Step { job_id: self.job_id.clone(), progress: s.clone() });
                }
            }
            Progress::Epoch(m) => {
                let row = EpochRow {
                    job_id: self.job_id.clone(),
                    epoch: m.epoch as i64,
                    loss: m.loss,
                    train_accuracy: m.train_accuracy,
                    val_accuracy: m.val_accuracy,
                    lr: m.lr,
                    best: m.best,
                    elapsed_s: m.elapsed_s,
                    recorded_at: chrono::Utc::now(),
                };
                if let Err(e) = self.inner.rt.block_on(self.inner.store.record_epoch(&row)) {
                    tracing::warn!(job = %self.job_id, epoch = m.epoch, error = %e, "could not record epoch metrics");
                }
                let _ = self.inner.events.send(JobEvent::Epoch { job_id: self.job_id.clone(), metrics: m.clone() });
            }
        }
    }

    fn write(&self, p: JobProgress) {
        if let Err(e) = self.inner.rt.block_on(self.inner.store.update_progress(&self.job_id, &p)) {
            tracing::warn!(job = %self.job_id, error = %e, "could not record progress");
        }
    }
}
