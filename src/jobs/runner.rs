//! The runner: worker threads (std threads, never the inference engine's) that take job
//! ids from the queue and carry each job to a terminal state, whatever happens inside:
//! errors and panics become `failed` with the message, a cancel becomes `cancelled`.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::{broadcast, watch};

use super::events::JobEvent;
use super::execute::{execute, ExecuteError, JobContext};
use super::queue::WorkQueue;
use crate::store::{CancelOutcome, JobOutcome, JobRow, Store, StoreError};
use crate::telemetry;
use crate::train::CancelToken;

/// The error recorded on a job stopped because the service shut down.
pub const SHUT_DOWN: &str = "interrupted: the service shut down";

/// Capacity of the event channel; a listener that falls further behind skips events.
const EVENT_CAPACITY: usize = 1024;

pub struct Runner {
    inner: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

pub(super) struct Shared {
    pub store: Store,
    pub rt: Handle,
    pub ctx: JobContext,
    queue: WorkQueue,
    running: Mutex<HashMap<String, CancelToken>>,
    pub events: broadcast::Sender<JobEvent>,
    shutting_down: AtomicBool,
    /// Turns true when the runner shuts down, so that event streams end.
    closed: watch::Sender<bool>,
}

impl Runner {
    /// Settles jobs a crash left running, queues the jobs still queued (oldest first), and starts `workers`
    /// threads. Call from within the tokio runtime.
    pub async fn start(store: Store, ctx: JobContext, workers: usize) -> Result<Self, StoreError> {
        let settled = store.settle_interrupted().await?;
        if !settled.is_empty() {
            tracing::warn!(jobs = ?settled, "settled jobs left running by an earlier process");
        }
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let inner = Arc::new(Shared {
            store,
            rt: Handle::current(),
            ctx,
            queue: WorkQueue::default(),
            running: Mutex::new(HashMap::new()),
            events,
            shutting_down: AtomicBool::new(false),
            closed: watch::channel(false).0,
        });
        for id in inner.store.queued_job_ids().await? {
            inner.queue.push(id);
        }
        // At start-up, not on a job's path: without its threads there is no service.
        #[allow(clippy::expect_used)]
        let handles = (0..workers.max(1))
            .map(|i| {
                let inner = inner.clone();
                std::thread::Builder::new()
                    .name(format!("drsn-job-{i}"))
                    .spawn(move || worker(&inner))
                    .expect("spawning a job worker thread")
            })
            .collect();
        Ok(Self { inner, workers: Mutex::new(handles) })
    }

    pub fn store(&self) -> &Store {
        &self.inner.store
    }

    pub fn context(&self) -> &JobContext {
        &self.inner.ctx
    }

    /// Queues a job already recorded as `queued`.
    pub fn submit(&self, id: &str) {
        self.inner.queue.push(id.to_string());
        metrics::gauge!(telemetry::JOBS_QUEUED).set(self.inner.queue.len() as f64);
        self.publish(JobEvent::Status {
            job_id: id.to_string(),
            status: crate::store::JobStatus::Queued,
            error: None,
            model_version: None,
        });
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next step.
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let outcome = self.inner.store.cancel_job(id).await?;
        match &outcome {
            CancelOutcome::Requested(_) => {
                if let Some(token) = lock(&self.inner.running).get(id) {
                    token.cancel();
                }
            }
            CancelOutcome::Cancelled(row) => self.inner.publish_status(row),
            CancelOutcome::AlreadyFinished(_) | CancelOutcome::Publishing(_) => {}
        }
        Ok(outcome)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<JobEvent> {
        self.inner.events.subscribe()
    }

    /// Becomes true when the runner shuts down.
    pub fn closed(&self) -> watch::Receiver<bool> {
        self.inner.closed.subscribe()
    }

    /// Jobs waiting in this process's queue.
    pub fn queued(&self) -> usize {
        self.inner.queue.len()
    }

    /// Stops taking jobs, stops the running ones (recorded as failed with [`SHUT_DOWN`];
    /// queued ones stay queued for the next start) and waits up to `wait` for the workers.
    pub fn shutdown(&self, wait: Duration) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.closed.send_replace(true);
        self.inner.queue.close();
        for token in lock(&self.inner.running).values() {
            token.cancel();
        }
        let handles = std::mem::take(&mut *lock(&self.workers));
        let deadline = std::time::Instant::now() + wait;
        for h in handles {
            while !h.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
    }

    fn publish(&self, event: JobEvent) {
        let _ = self.inner.events.send(event);
    }
}

impl Shared {
    pub(super) fn publish_status(&self, row: &JobRow) {
        let _ = self.events.send(JobEvent::Status {
            job_id: row.id.clone(),
            status: row.status,
            error: row.error.clone(),
            model_version: row.model_version,
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker(inner: &Arc<Shared>) {
    while let Some(id) = inner.queue.pop() {
        metrics::gauge!(telemetry::JOBS_QUEUED).set(inner.queue.len() as f64);
        let token = CancelToken::new();
        lock(&inner.running).insert(id.clone(), token.clone());
        metrics::gauge!(telemetry::JOBS_RUNNING).increment(1.0);
        run_one(inner, &id, &token);
        metrics::gauge!(telemetry::JOBS_RUNNING).decrement(1.0);
        lock(&inner.running).remove(&id);
    }
}

/// How often recording a job's start or end is tried before giving up on it.
const ATTEMPTS: u32 = 5;

/// Runs `op` until it succeeds, [`ATTEMPTS`] times at most, backing off in between: the
/// database may be busy for a moment.
fn retry<T>(what: &str, id: &str, mut op: impl FnMut() -> Result<T, StoreError>) -> Result<T, StoreError> {
    let mut attempt = 0;
    loop {
        match op() {
            Ok(value) => return Ok(value),
            Err(e) if attempt + 1 >= ATTEMPTS => return Err(e),
            Err(e) => {
                tracing::warn!(job = id, error = %e, attempt, "could not {what}; retrying");
                std::thread::sleep(Duration::from_millis(200 << attempt));
                attempt += 1;
            }
        }
    }
}

/// Runs one job from `queued` to a terminal state.
fn run_one(inner: &Arc<Shared>, id: &str, token: &CancelToken) {
    let row = match retry("start the job", id, || inner.rt.block_on(inner.store.start_job(id))) {
        Ok(Some(row)) => row,
        // Cancelled while queued, or already taken: nothing to do.
        Ok(None) => return,
        Err(e) => {
            tracing::error!(job = id, error = %e, "could not start the job; failing it");
            let reason = format!("the job could not be started: {e}");
            match inner.rt.block_on(inner.store.fail_queued(id, &inner.ctx.redact(&reason))) {
                Ok(Some(row)) => inner.publish_status(&row),
                Ok(None) => {}
                Err(e) => {
                    tracing::error!(job = id, error = %e, "could not fail the job either; it runs after a restart")
                }
            }
            return;
        }
    };
    inner.publish_status(&row);
    tracing::info!(job = id, model = %row.model_name, "job started");
    let result = catch_unwind(AssertUnwindSafe(|| execute(inner, &row, token)));
    let outcome = match result {
        Ok(Ok((model_version, result))) => match serde_json::to_value(&result) {
            Ok(result) => JobOutcome::Succeeded { model_version, result },
            Err(e) => JobOutcome::Failed(format!("the job's result could not be encoded: {e}")),
        },
        Ok(Err(ExecuteError::Cancelled)) if inner.shutting_down.load(Ordering::SeqCst) => {
            JobOutcome::Failed(SHUT_DOWN.into())
        }
        Ok(Err(ExecuteError::Cancelled)) => JobOutcome::Cancelled,
        Ok(Err(ExecuteError::Failed(message))) => JobOutcome::Failed(inner.ctx.redact(&message)),
        Err(panic) => {
            JobOutcome::Failed(inner.ctx.redact(&format!("internal error (panic): {}", panic_message(&panic))))
        }
    };
    finish(inner, id, &outcome);
}

/// Records the outcome, retrying: a job must not stay `running` because the database was
/// briefly busy. An outcome that cannot be recorded is replaced by a failure saying so.
fn finish(inner: &Shared, id: &str, outcome: &JobOutcome) {
    let record = |outcome: &JobOutcome| {
        retry("record the outcome", id, || inner.rt.block_on(inner.store.finish_job(id, outcome)))
    };
    let recorded = record(outcome).or_else(|e| {
        tracing::error!(job = id, error = %e, "could not record the job's outcome; recording a failure instead");
        record(&JobOutcome::Failed(inner.ctx.redact(&format!("the job's outcome could not be recorded: {e}"))))
    });
    match recorded {
        Ok(Some(row)) => {
            tracing::info!(job = id, status = row.status.as_str(), error = ?row.error, "job finished");
            metrics::counter!(telemetry::JOBS_FINISHED, "status" => row.status.as_str()).increment(1);
            inner.publish_status(&row);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::error!(job = id, error = %e, "could not record the job's end; it is settled at the next start")
        }
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}
