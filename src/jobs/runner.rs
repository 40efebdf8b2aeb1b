//! The runner: worker threads (std threads, never the inference engine's) that claim jobs
//! from the database's queue and carry each to a terminal state, whatever happens inside:
//! errors and panics become `failed` with the message, a cancel becomes `cancelled`.
//!
//! The queue is the `jobs` table, so any replica sharing the database may take a job
//! ([`Store::claim_next`]). A claim holds a lease that the runner's heartbeat renews; the
//! same beat learns of cancels asked through other replicas and settles jobs whose replica
//! died ([`Store::settle`]). With PostgreSQL, notifications wake idle workers at
//! once, stop cancelled jobs at once and carry job events to every replica's streams; the
//! heartbeat and a poll make up for any notification lost.

use std::collections::HashMap;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio::sync::{broadcast, mpsc, watch};

use super::events::JobEvent;
use super::execute::{execute, ExecuteError, JobContext};
use super::wake::Wake;
use crate::store::{CancelOutcome, Channel, JobOutcome, JobRow, Lease, Notifications, Orphans, Store, StoreError};
use crate::telemetry;
use crate::train::CancelToken;

/// The error recorded on a job stopped because the service shut down.
pub const SHUT_DOWN: &str = "interrupted: the service shut down";

/// Capacity of the event channel; a listener that falls further behind skips events.
const EVENT_CAPACITY: usize = 1024;

/// How the runner takes part in the queue.
#[derive(Clone, Debug)]
pub struct RunnerConfig {
    /// Jobs trained at once, each on its own thread.
    pub workers: usize,
    /// This replica's name in the jobs it claims (unique among replicas).
    pub replica: String,
    /// How long a claim holds without renewal; a replica that dies has its jobs settled by
    /// another this long after its last heartbeat (which beats every quarter of it).
    pub lease: Duration,
    /// How often idle workers look for queued jobs and versions are compared with the store
    /// when no notification came.
    pub poll: Duration,
}

impl RunnerConfig {
    /// One process on its own database: a lease of 30 s, polling every 5 s.
    pub fn single(workers: usize) -> RunnerConfig {
        RunnerConfig {
            workers,
            replica: default_replica_name(),
            lease: Duration::from_secs(30),
            poll: Duration::from_secs(5),
        }
    }
}

/// The host name (a pod's name under Kubernetes) and the process id.
pub fn default_replica_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "drsn".into());
    format!("{host}-{}", std::process::id())
}

pub struct Runner {
    inner: Arc<Shared>,
    workers: Mutex<Vec<JoinHandle<()>>>,
}

/// A job this replica runs: its cancel token and when it was claimed.
struct Running {
    token: CancelToken,
    claimed: Instant,
}

pub(super) struct Shared {
    pub store: Store,
    pub rt: Handle,
    pub ctx: JobContext,
    pub lease: Lease,
    poll: Duration,
    wake: Wake,
    running: Mutex<HashMap<String, Running>>,
    events: broadcast::Sender<JobEvent>,
    /// Events for other replicas, sent in order by one task (PostgreSQL only); taken at the
    /// end of a shutdown, which ends the task once it has sent the last of them.
    outgoing: Mutex<Option<mpsc::UnboundedSender<JobEvent>>>,
    shutting_down: AtomicBool,
    /// Turns true when the runner shuts down, so that event streams and the heartbeat end.
    closed: watch::Sender<bool>,
}

impl Runner {
    /// Settles jobs a crash left running (only process on the database) and starts the
    /// workers, the heartbeat and (PostgreSQL) the listener. Call within the tokio runtime.
    pub async fn start(store: Store, ctx: JobContext, config: RunnerConfig) -> Result<Self, StoreError> {
        // Whatever an earlier process left running: on its own database every running job;
        // among replicas, the jobs of an earlier process with this replica's name (others'
        // are settled when their lease expires).
        let orphans = match store.is_shared() {
            false => Orphans::All,
            true => Orphans::OwnedBy(&config.replica),
        };
        let settled: Vec<String> = store.settle(orphans).await?.into_iter().map(|row| row.id).collect();
        if !settled.is_empty() {
            tracing::warn!(jobs = ?settled, "settled jobs left running by an earlier process");
        }
        let notifications = store.listen().await?;
        let (events, _) = broadcast::channel(EVENT_CAPACITY);
        let (outgoing, outbox) = match store.is_shared() {
            true => {
                let (tx, rx) = mpsc::unbounded_channel();
                (Some(tx), Some(rx))
            }
            false => (None, None),
        };
        let inner = Arc::new(Shared {
            store,
            rt: Handle::current(),
            ctx,
            lease: Lease { owner: config.replica.clone(), duration: config.lease },
            poll: config.poll,
            wake: Wake::default(),
            running: Mutex::new(HashMap::new()),
            events,
            outgoing: Mutex::new(outgoing),
            shutting_down: AtomicBool::new(false),
            closed: watch::channel(false).0,
        });
        tracing::info!(replica = %config.replica, lease_s = config.lease.as_secs_f64(), shared = inner.store.is_shared(), "job runner started");
        tokio::spawn(heartbeat(inner.clone()));
        if let Some(outbox) = outbox {
            tokio::spawn(send_events(inner.clone(), outbox));
        }
        if let Some(notifications) = notifications {
            tokio::spawn(listen(inner.clone(), notifications));
        }
        // At start-up, not on a job's path: without its threads there is no service.
        #[allow(clippy::expect_used)]
        let handles = (0..config.workers.max(1))
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

    /// A job was recorded as `queued`: wakes the workers here and on other replicas.
    pub async fn submit(&self, row: &JobRow) {
        self.inner.wake.notify();
        if let Err(e) = self.inner.store.notify(Channel::JobQueued, &row.id).await {
            tracing::warn!(job = %row.id, error = %e, "could not notify other replicas of a new job; they find it when they poll");
        }
        self.inner.publish_status(row);
    }

    /// Cancels a queued job at once, or asks a running one to stop at its next step
    /// (whichever replica runs it).
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome, StoreError> {
        let outcome = self.inner.store.cancel_job(id).await?;
        match &outcome {
            CancelOutcome::Requested(_) => {
                if !self.inner.cancel_local(id) {
                    if let Err(e) = self.inner.store.notify(Channel::JobCancel, id).await {
                        tracing::warn!(job = id, error = %e, "could not notify the job's replica; its heartbeat will see the cancel");
                    }
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

    /// Stops taking jobs, stops the running ones (recorded as failed with [`SHUT_DOWN`];
    /// queued ones stay queued for this or another replica) and waits up to `wait` for the
    /// workers.
    pub fn shutdown(&self, wait: Duration) {
        self.inner.shutting_down.store(true, Ordering::SeqCst);
        self.inner.closed.send_replace(true);
        self.inner.wake.close();
        for running in lock(&self.inner.running).values() {
            running.token.cancel();
        }
        let handles = std::mem::take(&mut *lock(&self.workers));
        let deadline = Instant::now() + wait;
        for h in handles {
            while !h.is_finished() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(20));
            }
            if h.is_finished() {
                let _ = h.join();
            }
        }
        // The workers' last events (their jobs' ends) are queued: the sender ends after them.
        lock(&self.inner.outgoing).take();
    }
}

impl Shared {
    pub(super) fn publish_status(&self, row: &JobRow) {
        self.publish(JobEvent::Status {
            job_id: row.id.clone(),
            status: row.status,
            error: row.error.clone(),
            model_version: row.model_version,
        });
    }

    /// To every event stream: here directly, or through the database to every replica.
    pub(super) fn publish(&self, event: JobEvent) {
        let unsent = match lock(&self.outgoing).as_ref() {
            Some(outgoing) => outgoing.send(event).err().map(|mpsc::error::SendError(event)| event),
            None => Some(event),
        };
        if let Some(event) = unsent {
            let _ = self.events.send(event);
        }
    }

    /// Stops a job if this replica runs it; `false` when it does not.
    fn cancel_local(&self, id: &str) -> bool {
        match lock(&self.running).get(id) {
            Some(running) => {
                running.token.cancel();
                true
            }
            None => false,
        }
    }

    fn closed(&self) -> bool {
        *self.closed.borrow()
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn worker(inner: &Arc<Shared>) {
    loop {
        if inner.shutting_down.load(Ordering::SeqCst) {
            return;
        }
        let seen = inner.wake.generation();
        let wait = match inner.rt.block_on(inner.store.claim_next(&inner.lease)) {
            Ok(Some(row)) => {
                let token = CancelToken::new();
                {
                    let mut running = lock(&inner.running);
                    running.insert(row.id.clone(), Running { token: token.clone(), claimed: Instant::now() });
                    // Claimed while the shutdown cancelled the others: it stops at once too.
                    if inner.shutting_down.load(Ordering::SeqCst) {
                        token.cancel();
                    }
                }
                metrics::gauge!(telemetry::JOBS_RUNNING).increment(1.0);
                run_one(inner, row, &token);
                metrics::gauge!(telemetry::JOBS_RUNNING).decrement(1.0);
                continue;
            }
            Ok(None) => inner.poll,
            Err(e) => {
                tracing::warn!(error = %e, "could not claim a job; trying again");
                Duration::from_secs(1).min(inner.poll)
            }
        };
        if !inner.wake.wait(seen, wait) {
            return;
        }
    }
}

/// How often recording a job's end is tried before giving up on it.
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

/// Runs one claimed job to a terminal state.
fn run_one(inner: &Arc<Shared>, row: JobRow, token: &CancelToken) {
    let id = row.id.clone();
    inner.publish_status(&row);
    tracing::info!(job = %id, model = %row.model_name, replica = %inner.lease.owner, "job started");
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
    finish(inner, &id, &outcome);
    lock(&inner.running).remove(&id);
}

/// Records the outcome, retrying: a job must not stay `running` because the database was
/// briefly busy. An outcome that cannot be recorded is replaced by a failure saying so.
fn finish(inner: &Shared, id: &str, outcome: &JobOutcome) {
    let owner = &inner.lease.owner;
    let record = |outcome: &JobOutcome| {
        retry("record the outcome", id, || inner.rt.block_on(inner.store.finish_job(id, owner, outcome)))
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
        Ok(None) => {
            tracing::warn!(job = id, "the job was settled elsewhere (its lease expired); its outcome is dropped")
        }
        Err(e) => {
            tracing::error!(job = id, error = %e, "could not record the job's end; once its lease expires (or at the next start) it is settled")
        }
    }
}

/// Every quarter lease: renews this replica's leases (stopping jobs cancelled elsewhere
/// or no longer held), settles jobs whose replica died, and counts the queue.
async fn heartbeat(inner: Arc<Shared>) {
    let mut closed = inner.closed.subscribe();
    let mut beat = tokio::time::interval(inner.lease.duration / 4);
    beat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = beat.tick() => {}
            () = async { drop(closed.wait_for(|c| *c).await) } => return,
        }
        let started = Instant::now();
        let ids: Vec<String> = lock(&inner.running).keys().cloned().collect();
        match inner.store.renew_leases(&inner.lease, &ids).await {
            Ok(held) => {
                let held: HashMap<String, bool> = held.into_iter().collect();
                for (id, running) in lock(&inner.running).iter() {
                    match held.get(id) {
                        Some(true) => running.token.cancel(),
                        Some(false) => {}
                        // Claimed after the renewal began: not yet in its answer.
                        None if running.claimed >= started => {}
                        None => {
                            tracing::warn!(job = %id, "this replica's lease on the job was lost; stopping it");
                            running.token.cancel();
                        }
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not renew job leases"),
        }
        match inner.store.settle(Orphans::Expired).await {
            Ok(settled) => {
                for row in settled {
                    tracing::warn!(job = %row.id, owner = ?row.owner, status = row.status.as_str(), "settled a job whose replica stopped renewing its lease");
                    inner.publish_status(&row);
                }
            }
            Err(e) => tracing::warn!(error = %e, "could not settle expired jobs"),
        }
        if let Ok(queued) = inner.store.queued_jobs().await {
            metrics::gauge!(telemetry::JOBS_QUEUED).set(queued as f64);
        }
    }
}

/// Sends this replica's job events to every replica, in order (PostgreSQL only).
async fn send_events(inner: Arc<Shared>, mut outbox: mpsc::UnboundedReceiver<JobEvent>) {
    while let Some(event) = outbox.recv().await {
        let sent = match serde_json::to_string(&event) {
            Ok(json) => inner.store.notify(Channel::JobEvent, &json).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        // Streams on this replica still get it; others read the job's state when they poll.
        if let Err(e) = sent {
            tracing::warn!(job = event.job_id(), error = %e, "could not send a job event to the other replicas");
            let _ = inner.events.send(event);
        }
    }
}

/// Acts on other replicas' notifications, and every poll interval compares versions with
/// the store in case a notification was lost (idle workers poll for jobs on their own).
async fn listen(inner: Arc<Shared>, mut notifications: Notifications) {
    let mut poll = tokio::time::interval(inner.poll);
    poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut closed = inner.closed.subscribe();
    loop {
        tokio::select! {
            () = async { drop(closed.wait_for(|c| *c).await) } => return,
            _ = poll.tick() => sync_versions(&inner).await,
            heard = notifications.next() => match heard {
                Ok((Channel::JobQueued, _)) => inner.wake.notify(),
                Ok((Channel::JobCancel, id)) => { inner.cancel_local(&id); }
                Ok((Channel::JobEvent, json)) => match serde_json::from_str::<JobEvent>(&json) {
                    Ok(event) => { let _ = inner.events.send(event); }
                    Err(e) => tracing::warn!(error = %e, "a job event from another replica could not be read"),
                },
                Ok((Channel::Versions, _)) => sync_versions(&inner).await,
                Err(e) => {
                    if inner.closed() {
                        return;
                    }
                    tracing::warn!(error = %e, "lost the database's notifications; reconnecting (polling meanwhile)");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                }
            }
        }
    }
}

async fn sync_versions(inner: &Shared) {
    match inner.ctx.catalog.sync().await {
        Ok(0) => {}
        Ok(changed) => tracing::info!(changed, "model versions brought in line with the other replicas"),
        Err(e) => tracing::warn!(error = %e, "could not bring model versions in line with the store"),
    }
}

fn panic_message(panic: &(dyn std::any::Any + Send)) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic payload".into())
}
