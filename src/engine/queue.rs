//! Dynamic batching: after the first request, keep taking queued requests until the batch
//! holds `max_batch_size` windows or the first request has waited `max_wait`.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, TryRecvError};

use super::{Job, ModelKey};

/// Collects a batch that starts with `first`. A request already older than `max_wait`
/// (the workers were busy) does not wait further: the batch takes only what is queued.
pub(super) fn collect(first: Job, work: &Receiver<Job>, max_batch_size: usize, max_wait: Duration) -> Vec<Job> {
    let deadline = first.enqueued + max_wait;
    let mut windows = first.request.windows;
    let mut jobs = vec![first];
    while windows < max_batch_size {
        let next = match work.try_recv() {
            Ok(job) => job,
            Err(TryRecvError::Disconnected) => break,
            Err(TryRecvError::Empty) => {
                let now = Instant::now();
                if now >= deadline {
                    break;
                }
                match work.recv_timeout(deadline - now) {
                    Ok(job) => job,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        windows += next.request.windows;
        jobs.push(next);
    }
    jobs
}

/// Splits a batch by model, keeping each model's requests in arrival order.
pub(super) fn group_by_model(jobs: Vec<Job>) -> BTreeMap<ModelKey, Vec<Job>> {
    let mut groups: BTreeMap<ModelKey, Vec<Job>> = BTreeMap::new();
    for job in jobs {
        groups.entry(job.request.model.clone()).or_default().push(job);
    }
    groups
}
