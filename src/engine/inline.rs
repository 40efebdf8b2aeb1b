//! Small requests for a model on the fused forward run on the thread that asks, not on an
//! engine thread: the hand-over there and back (a queue, two wake-ups, a thread switch each
//! way) cost a loaded two-core server more than batching saved, and kept part of it idle
//! while requests waited for the hand-over. The fused model is plain Rust and read-only, so
//! any thread may run it; the engine's threads keep their own copies for larger requests.

use std::sync::Arc;
use std::time::{Duration, Instant};

use super::values::Values;
use super::{record_pass, size_mismatch, worker::guarded, EngineError, Prediction, Request};
use crate::fused::FusedModel;
use crate::ood::Scorer;
use crate::telemetry;

/// A model any thread may run, with its out-of-distribution scorer when calibrated.
#[derive(Debug)]
pub(super) struct InlineModel {
    pub(super) model: Arc<FusedModel>,
    pub(super) scorer: Option<Arc<Scorer>>,
    /// Values in one window.
    pub(super) sample_len: usize,
}

impl InlineModel {
    /// Runs the request's windows in one forward pass on this thread.
    pub(super) fn run(&self, request: &Request) -> Result<Prediction, EngineError> {
        if let Some(message) = size_mismatch(request, self.sample_len) {
            return Err(EngineError::Input(message));
        }
        let (n, label) = (request.windows, request.model.name.as_str());
        let started = Instant::now();
        let values = guarded(&request.model, || {
            let out = self.model.infer_here(&request.inputs, n, request.diagnostics).map_err(|e| e.to_string())?;
            Values::scored(out, self.scorer.as_deref())
        })
        .map_err(EngineError::Internal)?;
        let inference = started.elapsed();
        record_pass(label, n, inference);
        metrics::histogram!(telemetry::QUEUE_DURATION, "model" => label.to_string()).record(0.0);
        metrics::counter!(telemetry::WINDOWS, "model" => label.to_string()).increment(n as u64);
        Ok(Prediction { windows: values.into_windows(n), queued: Duration::ZERO, inference, batch_windows: n })
    }
}
