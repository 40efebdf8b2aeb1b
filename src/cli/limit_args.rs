//! The bounds `drsn serve` puts on what requests and jobs may make it take on: every
//! size an input controls has a flag (and an env var) here. The README's "Limits" table
//! lists them.

use std::time::Duration;

use clap::Args;

use crate::data::Limits;

#[derive(Debug, Args)]
pub struct LimitArgs {
    /// Lowest sampling rate accepted (Hz).
    #[arg(long, env = "DRSN_MIN_SAMPLE_RATE", default_value_t = Limits::DEFAULT.min_sample_rate)]
    pub min_sample_rate: u32,
    /// Highest sampling rate accepted (Hz).
    #[arg(long, env = "DRSN_MAX_SAMPLE_RATE", default_value_t = Limits::DEFAULT.max_sample_rate)]
    pub max_sample_rate: u32,
    /// Largest factor between a signal's rate and the model's (either way).
    #[arg(long, env = "DRSN_MAX_RESAMPLE_RATIO", default_value_t = Limits::DEFAULT.max_resample_ratio)]
    pub max_resample_ratio: u32,
    /// Largest term of the reduced rate ratio (48000:12000 is 4:1, 44100:12000 is 147:40);
    /// the resampler's buffers and time per sample grow with it.
    #[arg(long, env = "DRSN_MAX_RATE_BLOCK", default_value_t = Limits::DEFAULT.max_rate_block)]
    pub max_rate_block: u32,
    /// Most values one request's signal may hold once decoded and resampled.
    #[arg(long, env = "DRSN_MAX_SAMPLES", default_value_t = Limits::DEFAULT.max_samples)]
    pub max_samples: usize,
    /// Most channels in one recording.
    #[arg(long, env = "DRSN_MAX_CHANNELS", default_value_t = Limits::DEFAULT.max_channels)]
    pub max_channels: usize,
    /// Widest or tallest image (pixels), read from its header before it is decoded.
    #[arg(long, env = "DRSN_MAX_IMAGE_SIDE", default_value_t = Limits::DEFAULT.max_image_side)]
    pub max_image_side: u32,
    /// Most pixels in one image.
    #[arg(long, env = "DRSN_MAX_IMAGE_PIXELS", default_value_t = Limits::DEFAULT.max_image_pixels)]
    pub max_image_pixels: u64,
    /// Most bytes a compressed part (a .mat variable, a gzip file) may inflate to.
    #[arg(long, env = "DRSN_MAX_INFLATED_BYTES", default_value_t = Limits::DEFAULT.max_inflated_bytes)]
    pub max_inflated_bytes: u64,
    /// Largest training file a job reads.
    #[arg(long, env = "DRSN_MAX_FILE_BYTES", default_value_t = Limits::DEFAULT.max_file_bytes)]
    pub max_file_bytes: u64,
    /// Most values in one training file a job reads.
    #[arg(long, env = "DRSN_MAX_FILE_SAMPLES", default_value_t = Limits::FILES.max_samples)]
    pub max_file_samples: usize,
    /// Most windows (or images) in one request.
    #[arg(long, env = "DRSN_MAX_REQUEST_WINDOWS", default_value_t = 4096)]
    pub max_request_windows: usize,
    /// Most parts in one multipart form.
    #[arg(long, env = "DRSN_MAX_PARTS", default_value_t = 256)]
    pub max_parts: usize,
    /// Bodies decoded at once (each up to --max-samples values); others wait their turn.
    #[arg(long, env = "DRSN_DECODE_CONCURRENCY", default_value_t = 4)]
    pub decode_concurrency: usize,
    /// Seconds a request may take, from its head (request line and headers) to its answer,
    /// body included (event streams and dataset uploads excepted); beyond it, 408. Also how
    /// long requests in flight get to finish at shutdown.
    #[arg(long, env = "DRSN_REQUEST_TIMEOUT_S", default_value_t = 30.0)]
    pub request_timeout_s: f64,
    /// Seconds a request's head (request line and headers) may take to arrive, counted on a
    /// kept-alive connection from the end of the previous answer: a client that trickles its
    /// headers, or a kept-alive connection unused this long, is closed (HTTP/1, the only
    /// protocol served).
    #[arg(long, env = "DRSN_HEADER_TIMEOUT_S", default_value_t = 60.0)]
    pub header_timeout_s: f64,
    /// Requests handled at once; beyond it, 503 at once.
    #[arg(long, env = "DRSN_MAX_CONCURRENT_REQUESTS", default_value_t = 256)]
    pub max_concurrent_requests: usize,
    /// Open connections at once; further ones wait to be accepted.
    #[arg(long, env = "DRSN_MAX_CONNECTIONS", default_value_t = 1024)]
    pub max_connections: usize,
    /// Versions other than the active ones kept loaded in the engine for requests that
    /// name one; the least recently used is unloaded to make room.
    #[arg(long, env = "DRSN_MAX_LOADED_VERSIONS", default_value_t = 4)]
    pub max_loaded_versions: usize,
    /// Smallest training stride a job may ask for (samples).
    #[arg(long, env = "DRSN_JOB_MIN_STRIDE", default_value_t = 16)]
    pub job_min_stride: usize,
    /// Most windows (or images) one job may load.
    #[arg(long, env = "DRSN_JOB_MAX_WINDOWS", default_value_t = 250_000)]
    pub job_max_windows: usize,
    /// Most training and validation windows times epochs one job may ask for (its training
    /// time; times a comparison's runs and an ensemble's members).
    #[arg(long, env = "DRSN_JOB_MAX_WINDOW_EPOCHS", default_value_t = 50_000_000)]
    pub job_max_window_epochs: u64,
    /// Most files in one uploaded archive.
    #[arg(long, env = "DRSN_ARCHIVE_FILES", default_value_t = 100_000)]
    pub archive_files: usize,
}

impl LimitArgs {
    /// The decoders' limits for request bodies.
    pub fn request_limits(&self) -> Limits {
        Limits {
            min_sample_rate: self.min_sample_rate,
            max_sample_rate: self.max_sample_rate,
            max_resample_ratio: self.max_resample_ratio,
            max_rate_block: self.max_rate_block,
            max_samples: self.max_samples,
            max_channels: self.max_channels,
            max_image_side: self.max_image_side,
            max_image_pixels: self.max_image_pixels,
            max_inflated_bytes: self.max_inflated_bytes,
            max_file_bytes: self.max_file_bytes,
        }
    }

    /// The decoders' limits for the files a job reads.
    pub fn file_limits(&self) -> Limits {
        Limits { max_samples: self.max_file_samples, ..self.request_limits() }
    }

    pub fn request_timeout(&self) -> anyhow::Result<Duration> {
        seconds("--request-timeout-s", self.request_timeout_s)
    }

    pub fn header_timeout(&self) -> anyhow::Result<Duration> {
        seconds("--header-timeout-s", self.header_timeout_s)
    }
}

fn seconds(flag: &str, value: f64) -> anyhow::Result<Duration> {
    anyhow::ensure!(value.is_finite() && value > 0.0, "{flag} must be a positive number of seconds, got {value}");
    Ok(Duration::from_secs_f64(value))
}
