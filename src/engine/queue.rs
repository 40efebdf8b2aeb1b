//! Dynamic batching: after the first request, keep taking queued requests until the batch
//! holds `max_batch_size` windows or the first request has waited `max_wait`. Waiting only
//! pays when others are on their way: a request that arrives alone at an idle engine runs
//! at once.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::{ModelKey, Queued};

/// Collects a batch that starts with `first` (already taken off the queue). It takes
/// whatever is queued, telling `took(windows)` of each request it takes; it waits for more
/// (until `max_wait` after `first` was queued) only while `busy()` says others are on their
/// way (queued, or still being read).
pub(super) fn collect(
    first: Queued,
    work: &Receiver<Queued>,
    max_batch_size: usize,
    max_wait: Duration,
    busy: impl Fn() -> bool,
    took: impl Fn(usize),
) -> Vec<Queued> {
    let deadline = first.enqueued + max_wait;
    let mut windows = first.request.windows;
    let mut jobs = vec![first];
    while windows < max_batch_size {
        let next = match work.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                if now >= deadline || !busy() {
                    break;
                }
                match work.recv_timeout(deadline - now) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        took(next.request.windows);
        windows += next.request.windows;
        jobs.push(next);
    }
    jobs
}

/// Splits a batch by model, keeping each model's requests in arrival order.
pub(super) fn group_by_model(jobs: Vec<Queued>) -> BTreeMap<ModelKey, Vec<Queued>> {
    let mut groups: BTreeMap<ModelKey, Vec<Queued>> = BTreeMap::new();
    for job in jobs {
        groups.entry(job.request.model.clone()).or_default().push(job);
    }
    groups
}
