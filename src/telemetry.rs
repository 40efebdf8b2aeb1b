//! Every metric the service records, named in one place, and the Prometheus recorder.

use std::sync::OnceLock;

use metrics::{describe_counter, describe_gauge, describe_histogram, Unit};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};

/// HTTP requests, labelled `route` (the matched path template), `method` and `status`.
pub const HTTP_REQUESTS: &str = "drsn_http_requests_total";
/// Time from request to response, labelled `route`.
pub const HTTP_DURATION: &str = "drsn_http_request_duration_seconds";
/// Requests refused, labelled `reason` (the error type of the response).
pub const HTTP_FAILURES: &str = "drsn_http_failures_total";
/// Windows waiting in the engine's queue, not yet taken into a batch.
pub const QUEUE_DEPTH: &str = "drsn_queue_depth";
/// Windows per forward pass, labelled `model`.
pub const BATCH_SIZE: &str = "drsn_batch_size";
/// Time a request waited in the queue before its batch started, labelled `model`.
pub const QUEUE_DURATION: &str = "drsn_queue_duration_seconds";
/// Time of one forward pass (including reading its results back), labelled `model`.
pub const INFERENCE_DURATION: &str = "drsn_inference_duration_seconds";
/// Reading, checking and cutting a diagnosis request's body into normalised windows.
pub const DECODE_DURATION: &str = "drsn_decode_duration_seconds";
/// Writing a diagnosis's JSON answer.
pub const ENCODE_DURATION: &str = "drsn_encode_duration_seconds";
/// Windows diagnosed, labelled `model`.
pub const WINDOWS: &str = "drsn_windows_total";
/// Requests dropped from the queue because their client had gone.
pub const ABANDONED_REQUESTS: &str = "drsn_abandoned_requests_total";
/// Windows flagged out of distribution, labelled `model`.
pub const OOD_WINDOWS: &str = "drsn_ood_windows_total";
/// Share of the recent windows flagged out of distribution, labelled `model` (the drift
/// monitor's figure: see `--drift-windows`).
pub const OOD_RECENT_SHARE: &str = "drsn_ood_recent_share";
/// Training jobs that ended, labelled `status` (succeeded, failed, cancelled).
pub const JOBS_FINISHED: &str = "drsn_jobs_finished_total";
/// Training jobs running now.
pub const JOBS_RUNNING: &str = "drsn_jobs_running";
/// Training jobs waiting in this process's queue.
pub const JOBS_QUEUED: &str = "drsn_jobs_queued";

const BATCH_BUCKETS: &[f64] = &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0];
const SECONDS_BUCKETS: &[f64] =
    &[0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0];

static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();

/// Installs the process-wide Prometheus recorder once and returns its handle; later calls
/// (several servers in one test binary) share it.
pub fn prometheus() -> PrometheusHandle {
    HANDLE
        .get_or_init(|| {
            let handle = PrometheusBuilder::new()
                .set_buckets_for_metric(Matcher::Full(BATCH_SIZE.into()), BATCH_BUCKETS)
                .and_then(|b| b.set_buckets_for_metric(Matcher::Suffix("_seconds".into()), SECONDS_BUCKETS))
                .expect("bucket lists are non-empty")
                .install_recorder()
                .expect("no other metrics recorder is installed in this process");
            describe();
            handle
        })
        .clone()
}

fn describe() {
    describe_counter!(HTTP_REQUESTS, "HTTP requests by route, method and status");
    describe_histogram!(HTTP_DURATION, Unit::Seconds, "HTTP request duration by route");
    describe_counter!(HTTP_FAILURES, "HTTP requests answered with an error, by error type");
    describe_gauge!(QUEUE_DEPTH, "Windows waiting for a batch");
    // Listed from the start: a service whose requests all run on the HTTP threads may never
    // queue one.
    metrics::gauge!(QUEUE_DEPTH).set(0.0);
    describe_histogram!(BATCH_SIZE, "Windows per forward pass");
    describe_histogram!(QUEUE_DURATION, Unit::Seconds, "Time from enqueue to the start of its batch");
    describe_histogram!(INFERENCE_DURATION, Unit::Seconds, "Duration of one forward pass");
    describe_histogram!(DECODE_DURATION, Unit::Seconds, "Reading a diagnosis request into normalised windows");
    describe_histogram!(ENCODE_DURATION, Unit::Seconds, "Writing a diagnosis's JSON answer");
    describe_counter!(WINDOWS, "Windows diagnosed");
    describe_counter!(ABANDONED_REQUESTS, "Requests dropped from the queue because their client had gone");
    describe_counter!(OOD_WINDOWS, "Windows flagged out of distribution");
    describe_gauge!(OOD_RECENT_SHARE, "Share of the recent windows flagged out of distribution");
    describe_counter!(JOBS_FINISHED, "Training jobs that ended, by status");
    describe_gauge!(JOBS_RUNNING, "Training jobs running");
    describe_gauge!(JOBS_QUEUED, "Training jobs waiting to run");
}
