//! Shared by the service tests: model folders built once per test binary, and a real
//! server on a random loopback port.

pub mod browser;
pub mod files;
pub mod postgres;
pub mod process;
pub mod real;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use drsn::data::Normalization;
use drsn::engine::{Backend, EngineConfig};
use drsn::http::{AppState, HttpConfig};
use drsn::nn::{Arch, Model, ModelSpec};
use drsn::registry::{sha256_file, ModelCard, WindowInfo, WEIGHTS_FILE};
use drsn::server::{AppConfig, Application, JobsConfig, ServerConfig};
use drsn::store::DB_FILE;
use tch::Device;

pub const CWRU_CLASSES: [&str; 10] =
    ["normal", "B007", "B014", "B021", "IR007", "IR014", "IR021", "OR007", "OR014", "OR021"];

/// A 1-D DRSN-CW like the shipped bearing model (paper-1d, 2048 samples at 12 kHz, z-score).
pub const BEARING: &str = "bearing-cw";
/// A 2-D DRSN-CS on 28x28 images (seed-2d), no normalisation.
pub const DIGITS: &str = "digits-cs";
/// A two-channel 1-D DRSN-CW with 256-sample windows, for multi-channel inputs.
pub const TWO_CHANNEL: &str = "two-channel";

pub struct Fixtures {
    _dir: tempfile::TempDir,
    /// A models folder holding the three fixture models.
    pub models: PathBuf,
}

/// The fixture models, written once per test binary.
pub fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = tempfile::tempdir().expect("temporary folder");
        let models = dir.path().join("models");
        let classes: Vec<String> = CWRU_CLASSES.iter().map(|c| c.to_string()).collect();
        let digits: Vec<String> = (0..10).map(|d| d.to_string()).collect();
        let paper = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        write_model(&models.join(BEARING), BEARING, 1, &paper, &classes, Some(12_000), Normalization::ZScore, 1);
        let seed = ModelSpec::preset("seed-2d", Arch::DrsnCs, 10).unwrap();
        write_model(&models.join(DIGITS), DIGITS, 1, &seed, &digits, None, Normalization::None, 2);
        let mut two = ModelSpec::preset("paper-1d", Arch::DrsnCw, 3).unwrap();
        two.in_channels = 2;
        two.input_size = vec![256];
        let three: Vec<String> = ["a", "b", "c"].iter().map(|c| c.to_string()).collect();
        write_model(&models.join(TWO_CHANNEL), TWO_CHANNEL, 1, &two, &three, Some(12_000), Normalization::ZScore, 3);
        Fixtures { _dir: dir, models }
    })
}

/// Writes a freshly initialised model (seeded) with its card into `dir`.
#[allow(clippy::too_many_arguments)]
pub fn write_model(
    dir: &Path,
    name: &str,
    version: u32,
    spec: &ModelSpec,
    classes: &[String],
    sample_rate: Option<u32>,
    normalization: Normalization,
    seed: i64,
) -> ModelCard {
    std::fs::create_dir_all(dir).unwrap();
    tch::manual_seed(seed);
    let model = Model::new(spec, Device::Cpu).unwrap();
    model.save(&dir.join(WEIGHTS_FILE)).unwrap();
    let card = ModelCard {
        name: name.to_string(),
        version,
        spec: spec.clone(),
        classes: classes.to_vec(),
        sample_rate,
        window: (spec.input_size.len() == 1)
            .then(|| WindowInfo { length: spec.input_size[0] as usize, train_stride: spec.input_size[0] as usize }),
        normalization,
        data: drsn::data::DatasetDescription {
            scale: Some(format!("untrained fixture, seed {seed}")),
            ..Default::default()
        }
        .into(),
        metrics: Default::default(),
        machine: None,
        ood: None,
        created_at: chrono::Utc::now(),
        weights_sha256: sha256_file(&dir.join(WEIGHTS_FILE)).unwrap(),
    };
    card.write(dir).unwrap();
    card
}

/// What every harness offers a test, in-process ([`TestApp`]) or a child process
/// ([`process::Served`]): a base URL, a client, the token; and the job helpers built on them.
#[allow(async_fn_in_trait)] // test code: no callers that need a Send bound
pub trait Service {
    fn url(&self, path: &str) -> String;
    fn client(&self) -> &reqwest::Client;
    fn token(&self) -> Option<&str> {
        None
    }

    /// A POST carrying the token, if there is one.
    fn post(&self, path: &str) -> reqwest::RequestBuilder {
        let builder = self.client().post(self.url(path));
        match self.token() {
            Some(t) => builder.bearer_auth(t),
            None => builder,
        }
    }

    /// GETs `path`, expecting 200 and JSON.
    async fn get(&self, path: &str) -> serde_json::Value {
        let response = self.client().get(self.url(path)).send().await.expect("request sent");
        assert_eq!(response.status().as_u16(), 200, "GET {path}");
        response.json().await.expect("JSON body")
    }

    /// POSTs a job; returns the status code and the body.
    async fn submit(&self, request: &serde_json::Value) -> (u16, serde_json::Value) {
        let response = self.post("/jobs").json(request).send().await.expect("request sent");
        let status = response.status().as_u16();
        (status, response.json().await.expect("JSON body"))
    }

    /// POSTs a job that must be accepted; returns its id.
    async fn submit_ok(&self, request: &serde_json::Value) -> String {
        let (status, body) = self.submit(request).await;
        assert_eq!(status, 202, "{body:#}");
        body["id"].as_str().expect("a job id").to_string()
    }

    /// Polls the job until `done` holds for it or `timeout` passes.
    async fn wait_for(
        &self,
        id: &str,
        timeout: Duration,
        done: impl Fn(&serde_json::Value) -> bool,
    ) -> serde_json::Value {
        let deadline = std::time::Instant::now() + timeout;
        loop {
            let job = self.get(&format!("/jobs/{id}")).await;
            if done(&job) {
                return job;
            }
            assert!(std::time::Instant::now() < deadline, "job {id} not there after {timeout:?}: {job:#}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits until the job has ended, however.
    async fn finished(&self, id: &str, timeout: Duration) -> serde_json::Value {
        self.wait_for(id, timeout, |j| {
            ["succeeded", "failed", "cancelled"].contains(&j["status"].as_str().unwrap_or(""))
        })
        .await
    }
}

/// The service in this process on a loopback port, built by `Application::build` as
/// `drsn serve` builds it.
pub struct TestApp {
    pub addr: SocketAddr,
    pub client: reqwest::Client,
    pub state: AppState,
    pub data_dir: PathBuf,
    pub token: Option<String>,
    pub jobs: Option<std::sync::Arc<drsn::server::Jobs>>,
    _tmp: Option<tempfile::TempDir>,
}

impl Service for TestApp {
    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    fn client(&self) -> &reqwest::Client {
        &self.client
    }

    fn token(&self) -> Option<&str> {
        self.token.as_deref()
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        Service::url(self, path)
    }

    /// POSTs JSON to /diagnose.
    pub async fn diagnose(&self, body: &serde_json::Value) -> reqwest::Response {
        self.client.post(self.url("/diagnose")).json(body).send().await.expect("request sent")
    }

    /// POSTs a body of the given type to `/diagnose{query}` (`query` starts with `?`).
    pub async fn post_diagnose(&self, query: &str, content_type: &str, body: Vec<u8>) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/diagnose{query}")))
            .header("content-type", content_type)
            .body(body)
            .send()
            .await
            .expect("request sent")
    }
}

/// The engine as `drsn serve` runs it by default: 1-D models on the fused forward, 2-D
/// models on ONNX Runtime.
pub fn engine_config() -> EngineConfig {
    init_onnxruntime();
    EngineConfig { max_wait: Duration::from_millis(2), backend: Backend::Fused, ..EngineConfig::default() }
}

/// ONNX Runtime from the library that `scripts/libtorch.sh` installs and names.
pub fn init_onnxruntime() {
    drsn::onnx::init_from_env(1).unwrap();
}

/// How a test wants its service: the fixture models and defaults unless it says otherwise.
pub struct Setup {
    pub models_dir: PathBuf,
    /// The data folder; `None`: a fresh temporary one.
    pub data_dir: Option<PathBuf>,
    pub engine: EngineConfig,
    pub http: HttpConfig,
    /// Training jobs on this data root, with this token and upload limit.
    pub jobs: Option<(PathBuf, Option<String>, usize)>,
}

impl Default for Setup {
    fn default() -> Self {
        Setup {
            models_dir: fixtures().models.clone(),
            data_dir: None,
            engine: engine_config(),
            http: HttpConfig::default(),
            jobs: None,
        }
    }
}

impl Setup {
    /// With training jobs on `data_root`, a token if given, uploads up to 64 MiB.
    pub fn with_jobs(data_root: &Path, token: Option<&str>) -> Self {
        Setup { jobs: Some((data_root.to_path_buf(), token.map(String::from), 64 << 20)), ..Setup::default() }
    }

    pub async fn spawn(self) -> TestApp {
        let tmp = match self.data_dir {
            Some(_) => None,
            None => Some(tempfile::tempdir().expect("temporary data folder")),
        };
        let data_dir =
            self.data_dir.unwrap_or_else(|| tmp.as_ref().map(|t| t.path().to_path_buf()).unwrap_or_default());
        let token = self.jobs.as_ref().and_then(|(_, token, _)| token.clone());
        let jobs = self.jobs.map(|(data_root, token, upload_limit)| JobsConfig {
            data_root,
            database: data_dir.join(DB_FILE).into(),
            runner: drsn::jobs::RunnerConfig::single(1),
            token,
            upload_limit,
            unpacked_limit: 64 << 20,
            archive_files: 1000,
            file_limits: drsn::data::Limits::FILES,
            job_limits: drsn::jobs::JobLimits::default(),
            request_timeout: Duration::from_secs(30),
            device: Device::Cpu,
        });
        let server = ServerConfig {
            models_dir: self.models_dir,
            data_dir: data_dir.clone(),
            engine: self.engine,
            http: self.http,
            max_loaded_versions: drsn::registry::DEFAULT_MAX_LOADED_VERSIONS,
            max_connections: 1024,
            header_timeout: Duration::from_secs(60),
        };
        let config = AppConfig { addr: "127.0.0.1:0".parse().expect("loopback address"), server, jobs };
        let app = Application::build(config).await.expect("the service starts");
        let (addr, state, jobs) = (app.addr(), app.state(), app.jobs());
        tokio::spawn(app.run_until(std::future::pending()));
        TestApp { addr, client: reqwest::Client::new(), state, data_dir, token, jobs, _tmp: tmp }
    }
}

/// The service on a random loopback port with the fixture models and default settings.
pub async fn spawn_app() -> TestApp {
    Setup::default().spawn().await
}

pub async fn spawn_app_with(engine: EngineConfig, http: HttpConfig) -> TestApp {
    Setup { engine, http, ..Setup::default() }.spawn().await
}

/// The service on another models folder (e.g. the shipped one), with a fresh data folder.
pub async fn spawn_app_serving(models_dir: PathBuf, engine: EngineConfig, http: HttpConfig) -> TestApp {
    Setup { models_dir, engine, http, ..Setup::default() }.spawn().await
}

/// The service on given folders (e.g. a data folder shared with an earlier instance).
pub async fn spawn_app_on(models_dir: PathBuf, data_dir: PathBuf, engine: EngineConfig, http: HttpConfig) -> TestApp {
    Setup { models_dir, data_dir: Some(data_dir), engine, http, ..Setup::default() }.spawn().await
}

/// A deterministic test signal: a few tones and a little pseudo-random noise.
pub fn signal(len: usize, seed: u32) -> Vec<f32> {
    let mut state = seed.wrapping_mul(2_654_435_761).wrapping_add(1);
    (0..len)
        .map(|i| {
            state = state.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            let noise = (state >> 8) as f32 / (1u32 << 24) as f32 - 0.5;
            let t = i as f32 / 12_000.0;
            let f = 100.0 + 37.0 * seed as f32;
            (2.0 * std::f32::consts::PI * f * t).sin()
                + 0.3 * (2.0 * std::f32::consts::PI * 3.1 * f * t).sin()
                + 0.2 * noise
        })
        .collect()
}

/// Probabilities of one window of a response, by class name.
pub fn probabilities(window: &serde_json::Value) -> Vec<(String, f64)> {
    window["probabilities"]
        .as_object()
        .expect("probabilities object")
        .iter()
        .map(|(k, v)| (k.clone(), v.as_f64().expect("a number")))
        .collect()
}

/// The JSON body of a response that must be 200.
pub async fn ok(response: reqwest::Response) -> serde_json::Value {
    let status = response.status();
    let body: serde_json::Value = response.json().await.expect("JSON body");
    assert_eq!(status.as_u16(), 200, "{body}");
    body
}

/// Parses an error response, checking its status and error type.
pub async fn expect_error(response: reqwest::Response, status: u16, error_type: &str) -> String {
    assert_eq!(response.status().as_u16(), status, "status");
    let body: serde_json::Value = response.json().await.expect("JSON error body");
    assert_eq!(body["error_type"], error_type, "{body}");
    body["error"].as_str().expect("error message").to_string()
}

/// A 32-bit float WAV of `channels` (all the same length).
pub fn wav_f32(channels: &[Vec<f32>], rate: u32) -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: channels.len() as u16,
        sample_rate: rate,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut writer = hound::WavWriter::new(&mut out, spec).unwrap();
    for i in 0..channels[0].len() {
        for c in channels {
            writer.write_sample(c[i]).unwrap();
        }
    }
    writer.finalize().unwrap();
    out.into_inner()
}

/// Little-endian f32 bytes.
pub fn f32_le(values: &[f32]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_le_bytes()).collect()
}

/// An 8-bit grayscale image encoded as PNG or JPEG.
pub fn encode_image(pixels: &[u8], width: u32, height: u32, format: image::ImageFormat) -> Vec<u8> {
    let img = image::GrayImage::from_raw(width, height, pixels.to_vec()).unwrap();
    let mut out = std::io::Cursor::new(Vec::new());
    img.write_to(&mut out, format).unwrap();
    out.into_inner()
}
