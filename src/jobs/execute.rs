//! One job, on a worker thread: read the data, train with progress written to the store,
//! write the new model version, and put it into service as its policy says.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::events::JobEvent;
use super::limits::JobLimits;
use super::request::{Init, JobRequest, NetworkChoice, Plan, Promotion};
use super::result::{JobResult, PromotionOutcome};
use super::runner::Shared;
use crate::catalog::{Catalog, Reservation};
use crate::data::{load_dataset_until, DataError, Dataset, DatasetDescription, Limits};
use crate::nn::{Dim, Model, ModelSpec};
use crate::registry::{write_model_folder, CardData, CardInfo, ModelCard, Registry, WindowInfo};
use crate::store::{EpochRow, JobProgress, JobRow};
use crate::train::{self, judged_test, CancelToken, Candidate, Progress, RunOutcome, RunRequest, Watch};

/// What jobs need from the rest of the service.
pub struct JobContext {
    /// Canonical data root: job datasets must lie inside it.
    pub data_root: PathBuf,
    /// The one owner of model versions (and, through it, the registry).
    pub catalog: Arc<Catalog>,
    /// Where training runs (the service's device).
    pub device: tch::Device,
    /// What one job may ask for.
    pub limits: JobLimits,
    /// What the files a job reads may make the readers take on.
    pub files: Limits,
}

impl JobContext {
    pub fn new(data_root: PathBuf, catalog: Arc<Catalog>, device: tch::Device) -> Self {
        JobContext { data_root, catalog, device, limits: JobLimits::default(), files: Limits::FILES }
    }

    pub fn registry(&self) -> &Arc<Registry> {
        self.catalog.registry()
    }

    /// A data set's description with its paths redacted (see [`JobContext::redact`]).
    pub fn redacted(&self, description: &DatasetDescription) -> DatasetDescription {
        serde_json::to_string(description)
            .ok()
            .and_then(|text| serde_json::from_str(&self.redact(&text)).ok())
            .unwrap_or_default()
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
        if let Ok(dir) = self.registry().data_models_dir() {
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
pub fn execute(inner: &Shared, row: &JobRow, cancel: &CancelToken) -> Result<(i64, JobResult), ExecuteError> {
    let request: JobRequest =
        serde_json::from_value(row.request.0.clone()).map_err(|e| failed(format!("stored request: {e}")))?;
    let active = inner.ctx.registry().active(&request.model).ok();
    let ctx = &inner.ctx;
    let plan =
        request.plan(&ctx.data_root, active.as_ref().map(|e| &e.card), &ctx.limits, &ctx.files).map_err(failed)?;
    let stop = || cancel.is_cancelled();
    let mut dataset = load_dataset_until(&plan.source, &plan.options, &stop).map_err(|e| match e {
        DataError::Cancelled => ExecuteError::Cancelled,
        other => failed(format!("dataset: {other}")),
    })?;
    if cancel.is_cancelled() {
        return Err(ExecuteError::Cancelled);
    }
    // Open-set evaluation: train without the classes named, then see which score flags them.
    let open_set = if request.leave_out.is_empty() {
        None
    } else {
        let names = train::classes_named(&request.leave_out, &dataset.classes)
            .map_err(|e| failed(format!("leave_out: {e}")))?;
        let split = train::leave_out(&dataset, &names).map_err(failed)?;
        dataset = split.known.clone();
        Some(split)
    };
    let spec = plan.network.spec(dataset.classes.len()).map_err(failed)?;
    // Each member of an ensemble trains as a whole network; every epoch also judges the
    // validation windows, which a small validation stride can multiply.
    let runs = request.compare.as_ref().map_or(spec.members.max(1) as usize, |c| c.runs());
    let windows = dataset.train.len().saturating_add(dataset.validation.len());
    ctx.limits.check_work(windows, plan.config.epochs.saturating_mul(runs)).map_err(failed)?;
    let mut run_request = RunRequest {
        spec,
        config: plan.config.clone(),
        normalization: plan.normalization,
        test_noise: request.test_noise,
        sweep_kinds: request.snr_sweep.clone(),
        ood: request.ood,
        device: inner.ctx.device,
    };
    let mut reporter = Reporter::new(inner, &row.id);
    let mut on_progress = |p: &Progress| reporter.report(p);
    let mut outcome = match (&plan.network, request.init) {
        (NetworkChoice::Preset { name, .. }, _) if request.compare.is_some() => {
            let settings = request.compare.clone().unwrap_or_default();
            let candidates = settings
                .archs
                .iter()
                .map(|&arch| {
                    let spec = ModelSpec::preset(name, arch, dataset.classes.len() as i64).map_err(failed)?;
                    Ok(Candidate { name: arch.to_string(), spec })
                })
                .chain(settings.specs.iter().map(|(name, spec)| {
                    let spec = ModelSpec { classes: dataset.classes.len() as i64, ..spec.clone() };
                    Ok(Candidate { name: name.clone(), spec })
                }))
                .collect::<Result<Vec<_>, ExecuteError>>()?;
            let seeds: Vec<u64> = (0..settings.seeds).collect();
            let conditions = train::conditions(&settings.noise, &settings.snr_db);
            let job = row.id.clone();
            let mut watch = |watch: Watch<'_>| match watch {
                Watch::Stage(stage) => tracing::info!(job = %job, "comparison: {stage}"),
                Watch::Run(progress) => on_progress(progress),
            };
            train::compare(&dataset, &candidates, &run_request, &seeds, &conditions, &mut watch, cancel).map(|c| {
                run_request.spec = c.winner.spec;
                c.outcome
            })
        }
        (NetworkChoice::Active(card), Init::Active) => {
            if card.classes != dataset.classes {
                return Err(failed(format!(
                    "init: active: the data's classes {:?} differ from the active model's {:?}",
                    dataset.classes, card.classes
                )));
            }
            let weights = active.as_ref().map(|e| e.weights()).ok_or_else(|| failed("the active version went away"))?;
            let model = Model::load(&run_request.spec, &weights, inner.ctx.device).map_err(failed)?;
            if request.adapt {
                train::adapt_run(model, &dataset, &run_request, cancel)
            } else {
                train::run_from(model, &dataset, &run_request, &mut on_progress, cancel)
            }
        }
        _ => train::run(&dataset, &run_request, &mut on_progress, cancel),
    }
    .map_err(|e| match e {
        e if e.is_cancelled() => ExecuteError::Cancelled,
        other => failed(other),
    })?;
    if let Some(split) = &open_set {
        let rate = run_request.ood.false_alarm_rate;
        let report =
            train::evaluate_open_set(&outcome.model, split, run_request.normalization, rate).map_err(failed)?;
        outcome.open_set = Some(report);
    }
    if cancel.is_cancelled() {
        return Err(ExecuteError::Cancelled);
    }
    let trained = Trained {
        row,
        request: &request,
        plan: &plan,
        dataset: &dataset,
        run_request: &run_request,
        outcome: &outcome,
    };
    publish(inner, &trained)
}

/// A job whose training is done: what it was asked, what it read and what it made.
struct Trained<'a> {
    row: &'a JobRow,
    request: &'a JobRequest,
    plan: &'a Plan,
    dataset: &'a Dataset,
    run_request: &'a RunRequest,
    outcome: &'a RunOutcome,
}

/// Writes the version folder, has the catalog record, register and (per the policy)
/// activate it. A cancel that comes before publishing begins wins (no version); after,
/// it is refused.
fn publish(inner: &Shared, trained: &Trained) -> Result<(i64, JobResult), ExecuteError> {
    let Trained { row, request, dataset, run_request, outcome, .. } = *trained;
    let catalog = &inner.ctx.catalog;
    let name = request.model.as_str();
    let accuracy = outcome.test.as_ref().map(|t| t.accuracy).or(outcome.report.best_val_accuracy);
    // Judged before the new version is registered: "the active version" is the old one.
    let decision = decide(inner, request, dataset, run_request, accuracy);

    let reservation = inner.rt.block_on(catalog.reserve(name)).map_err(failed)?;
    let version = reservation.version;
    let written = write_version(inner, trained, &reservation)?;
    let discard = || {
        let _ = std::fs::remove_dir_all(&written);
    };
    match inner.rt.block_on(inner.store.begin_publishing(&row.id, &inner.lease.owner)) {
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
    if let Err(e) = inner.rt.block_on(catalog.add(reservation, &written, Some(row.id.clone()))) {
        discard();
        return Err(failed(e));
    }

    // The first version of a new name is in service at once, whatever the policy.
    let first = inner.ctx.registry().active(name).is_ok_and(|e| e.card.version == version);
    let activated = first || decision.activate;
    if decision.activate && !first {
        inner
            .rt
            .block_on(catalog.activate(name, version))
            .map_err(|e| failed(format!("version {version} was written but could not be put into service: {e}")))?;
    }
    let result = JobResult {
        model: name.to_string(),
        model_version: version,
        test_accuracy: outcome.test.as_ref().map(|t| t.accuracy),
        validation_accuracy: outcome.report.best_val_accuracy,
        best_epoch: outcome.report.best_epoch,
        train_seconds: outcome.report.elapsed_s,
        promotion: PromotionOutcome {
            policy: request.promote,
            activated,
            reason: if first { "the first version of a new model".to_string() } else { decision.reason },
            active_accuracy: decision.active_accuracy,
        },
    };
    Ok((i64::from(version), result))
}

/// Writes the reserved version's card and weights under a hidden name beside its folder
/// (the registry never sees half a version); returns where.
fn write_version(inner: &Shared, trained: &Trained, reservation: &Reservation) -> Result<PathBuf, ExecuteError> {
    let Trained { row, request, plan, dataset, run_request, outcome } = *trained;
    let parent = reservation.dir.parent().ok_or_else(|| failed("model folder has no parent"))?;
    let partial = parent.join(format!(".{}.partial-{}", reservation.version, uuid::Uuid::new_v4()));
    let window = (run_request.spec.dim == Dim::One)
        .then_some(WindowInfo { length: plan.options.window, train_stride: plan.options.train_stride });
    let info = CardInfo {
        name: reservation.name.clone(),
        version: reservation.version,
        classes: dataset.classes.clone(),
        sample_rate: dataset.sample_rate,
        window,
        normalization: plan.normalization,
        // The card is readable without a token: no server folders in it.
        data: CardData {
            job: Some(row.id.clone()),
            dataset: Some(request.dataset.clone()),
            description: inner.ctx.redacted(&dataset.description),
        },
        metrics: outcome.metrics(run_request),
        // As the request says, else as the version in service says.
        machine: request
            .machine
            .clone()
            .or_else(|| inner.ctx.registry().active(&reservation.name).ok().and_then(|e| e.card.machine.clone())),
        ood: outcome.ood.clone(),
    };
    write_model_folder(&partial, &outcome.model, info).map_err(|e| {
        let _ = std::fs::remove_dir_all(&partial);
        failed(e)
    })?;
    Ok(partial)
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
            let Ok(active) = inner.ctx.registry().active(&request.model) else {
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
                    self.inner.publish(JobEvent::Step { job_id: self.job_id.clone(), progress: s.clone() });
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
                self.inner.publish(JobEvent::Epoch { job_id: self.job_id.clone(), metrics: m.clone() });
            }
        }
    }

    fn write(&self, p: JobProgress) {
        if let Err(e) =
            self.inner.rt.block_on(self.inner.store.update_progress(&self.job_id, &self.inner.lease.owner, &p))
        {
            tracing::warn!(job = %self.job_id, error = %e, "could not record progress");
        }
    }
}
