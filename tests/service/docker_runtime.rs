//! The Docker image's runtime stage, reproduced without a Docker engine: the script the
//! Dockerfile runs (`docker/collect-runtime.sh`) stages the test-built binary, the libtorch
//! libraries of `docker/runtime-libs.txt` and the shipped `models/` in an empty folder; the
//! binary then starts as the Dockerfile's ENTRYPOINT, ENV and HEALTHCHECK say (their paths
//! mapped into that folder, a loopback port instead of 0.0.0.0), in an environment without
//! cargo, Python or LD_LIBRARY_PATH, and diagnoses real CWRU windows.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use drsn::data::{read_recording, shared_data_root, ReadOptions};
use serde_json::Value;

const REPO: &str = env!("CARGO_MANIFEST_DIR");
/// The search path of `debian:*-slim`, which the image does not change.
const IMAGE_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
/// The bearer-token variable the ENTRYPOINT reads (the image leaves it to `docker run -e`).
const TOKEN_VAR: &str = "DRSN_TOKEN";
/// The shipped bearing model, and the CWRU classes diagnosed with it: healthy and one fault.
const BEARING_MODEL: &str = "cwru-bearing";
const CWRU_LABELS: [&str; 2] = ["normal", "IR021"];
/// Windows diagnosed per recording (from its start, not overlapping).
const MAX_WINDOWS: usize = 48;
/// Loading and warming up every model, in a debug build on a busy machine.
const START_TIMEOUT: Duration = Duration::from_secs(180);
const STOP_TIMEOUT: Duration = Duration::from_secs(30);

/// What the Dockerfile's runtime stage says about starting the binary.
#[derive(Debug)]
struct RuntimeStage {
    /// Where `COPY --from=build <staged> <install>` puts the folder collect-runtime.sh fills.
    install: String,
    volume: String,
    exposed_port: u16,
    env: Vec<(String, String)>,
    entrypoint: Vec<String>,
    healthcheck: Vec<String>,
}

/// Instructions with their continuation lines joined, comments left out.
fn instructions(dockerfile: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut current = String::new();
    for line in dockerfile.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('#') || (trimmed.is_empty() && current.is_empty()) {
            continue;
        }
        match trimmed.strip_suffix('\\') {
            Some(part) => {
                current.push_str(part);
                current.push(' ');
            }
            None => {
                current.push_str(trimmed);
                out.push(std::mem::take(&mut current));
            }
        }
    }
    out
}

fn json_array(instruction: &str, text: &str) -> Vec<String> {
    serde_json::from_str(text.trim())
        .unwrap_or_else(|e| panic!("{instruction} must be in exec (JSON array) form, got {text:?}: {e}"))
}

fn runtime_stage(dockerfile: &str) -> RuntimeStage {
    let all = instructions(dockerfile);
    let last_from = all.iter().rposition(|i| i.starts_with("FROM ")).expect("a FROM line");
    let (build, runtime) = all.split_at(last_from);
    let field = |keyword: &str| -> Option<&str> { runtime.iter().find_map(|i| i.strip_prefix(keyword).map(str::trim)) };
    let copy = field("COPY --from=build").expect("the runtime stage copies the staged folder from the build stage");
    let (staged, install) = copy.split_once(' ').expect("COPY --from=build <staged> <install>");
    let collect = format!("docker/collect-runtime.sh target/release/drsn {staged}");
    assert!(build.iter().any(|i| i.contains(&collect)), "the build stage must run `{collect}`");
    let env = runtime
        .iter()
        .filter_map(|i| i.strip_prefix("ENV "))
        .flat_map(str::split_whitespace)
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or_else(|| panic!("ENV entries as KEY=VALUE, got {pair:?}"));
            (k.to_string(), v.to_string())
        })
        .collect();
    let mut volumes = json_array("VOLUME", field("VOLUME ").expect("a VOLUME"));
    assert_eq!(volumes.len(), 1, "one volume: {volumes:?}");
    let healthcheck = field("HEALTHCHECK ").expect("a HEALTHCHECK");
    let (_, command) = healthcheck.split_once(" CMD ").expect("HEALTHCHECK ... CMD [...]");
    RuntimeStage {
        install: install.trim().to_string(),
        volume: volumes.remove(0),
        exposed_port: field("EXPOSE ").and_then(|p| p.parse().ok()).expect("EXPOSE <port>"),
        env,
        entrypoint: json_array("ENTRYPOINT", field("ENTRYPOINT ").expect("an ENTRYPOINT")),
        healthcheck: json_array("HEALTHCHECK CMD", command),
    }
}

/// The image's paths, mapped onto the staged folder and a data folder on this machine.
struct Mapping<'a> {
    stage: &'a RuntimeStage,
    install: &'a Path,
    data: &'a Path,
}

impl Mapping<'_> {
    fn path(&self, value: &str) -> String {
        for (from, to) in [(&self.stage.install, self.install), (&self.stage.volume, self.data)] {
            if let Some(rest) = value.strip_prefix(from.as_str()) {
                if rest.is_empty() || rest.starts_with('/') {
                    return format!("{}{rest}", to.display());
                }
            }
        }
        value.to_string()
    }

    /// The image's command line, ready to run here with only the image's environment.
    fn command(&self, args: &[String], addr: &str, token: &str) -> Command {
        let mut command = Command::new(self.path(&args[0]));
        command.args(args[1..].iter().map(|a| self.path(a))).env_clear().env("PATH", IMAGE_PATH);
        for (key, value) in &self.stage.env {
            command.env(key, self.path(value));
        }
        command.env("DRSN_ADDR", addr).env(TOKEN_VAR, token).current_dir(self.data);
        command
    }
}

/// The service started from the staged folder; killed if a test fails before stopping it.
struct Service {
    child: Child,
    logs: Arc<Mutex<Vec<String>>>,
    addr: String,
}

impl Service {
    /// Starts `command` and waits for its JSON "ready" log line, which names the address.
    fn start(mut command: Command) -> Service {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stderr = child.stderr.take().expect("piped stderr");
        let logs = Arc::new(Mutex::new(Vec::new()));
        let (ready, addr) = mpsc::channel();
        let sink = logs.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                let fields = serde_json::from_str::<Value>(&line).ok().map(|v| v["fields"].clone());
                if let Some(fields) = fields.filter(|f| f["message"] == "ready") {
                    ready.send(fields["addr"].as_str().unwrap_or_default().to_string()).ok();
                }
                sink.lock().unwrap().push(line);
            }
        });
        let mut service = Service { child, logs, addr: String::new() };
        match addr.recv_timeout(START_TIMEOUT) {
            Ok(addr) => service.addr = addr,
            Err(_) => panic!("no \"ready\" log line within {START_TIMEOUT:?}; logs:\n{}", service.logs()),
        }
        service
    }

    fn logs(&self) -> String {
        self.logs.lock().unwrap().join("\n")
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// SIGTERM, as `docker stop` sends it, then the exit status.
    fn stop(&mut self) -> ExitStatus {
        let pid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with our own child's pid and a valid signal number.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0, "SIGTERM not delivered");
        let deadline = Instant::now() + STOP_TIMEOUT;
        loop {
            if let Some(status) = self.child.try_wait().expect("child status") {
                return status;
            }
            assert!(Instant::now() < deadline, "still running {STOP_TIMEOUT:?} after SIGTERM; logs:\n{}", self.logs());
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            self.child.kill().ok();
            self.child.wait().ok();
        }
    }
}

/// Every shared library the running process has mapped, by path.
fn mapped_libraries(pid: u32) -> Vec<PathBuf> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).expect("/proc/<pid>/maps");
    let mut libs: Vec<PathBuf> = maps
        .lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .filter(|path| path.contains(".so"))
        .map(PathBuf::from)
        .collect();
    libs.sort();
    libs.dedup();
    libs
}

/// A whole CWRU drive-end recording of `label` at 0 hp, from the shared data's manifest,
/// with its sampling rate (the normal baseline is at 48 kHz, the faults at 12 kHz).
fn cwru_recording(label: &str) -> (Vec<f32>, u32) {
    let root = shared_data_root().join("cwru");
    let manifest = root.join("manifest.csv");
    assert!(
        manifest.is_file(),
        "missing {}: the CWRU data (set DRSN_SHARED_DATA to the folder holding cwru/)",
        manifest.display()
    );
    let mut reader = csv::Reader::from_path(&manifest).expect("readable manifest");
    let headers = reader.headers().expect("manifest header").clone();
    let column = |name: &str| headers.iter().position(|h| h == name).unwrap_or_else(|| panic!("no {name} column"));
    let (file, label_col, load, variable, rate) =
        (column("file"), column("label"), column("load_hp"), column("variable"), column("sampling_rate_hz"));
    let row = reader
        .records()
        .map(|r| r.expect("manifest row"))
        .find(|r| &r[label_col] == label && &r[load] == "0")
        .unwrap_or_else(|| panic!("no {label} recording at 0 hp in {}", manifest.display()));
    let options = ReadOptions { variable: Some(row[variable].to_string()), ..ReadOptions::default() };
    let recording = read_recording(&root.join(&row[file]), &options).expect("CWRU recording");
    let rate: u32 = row[rate].parse().expect("numeric sampling rate");
    (recording.channels.into_iter().next().expect("one channel"), rate)
}

fn shipped_models() -> Vec<String> {
    let dir = Path::new(REPO).join("models");
    let entries = std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("no shipped models at {}: {e}", dir.display()));
    let mut names: Vec<String> = entries
        .map(|e| e.expect("models/ entry").path())
        .filter(|p| p.is_dir())
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

fn stage_runtime(dest: &Path) {
    let libtorch = std::env::var("LIBTORCH")
        .expect("LIBTORCH must name the torch folder (eval \"$(scripts/libtorch.sh)\"), as for the build");
    let output = Command::new("bash")
        .arg(Path::new(REPO).join("docker/collect-runtime.sh"))
        .arg(env!("CARGO_BIN_EXE_drsn"))
        .arg(dest)
        .env("LIBTORCH", libtorch)
        .output()
        .expect("bash runs");
    assert!(
        output.status.success(),
        "collect-runtime.sh failed:\n{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_dockerfile_serves_on_all_interfaces_from_the_staged_folder_configured_by_env() {
    let stage = runtime_stage(&std::fs::read_to_string(Path::new(REPO).join("docker/Dockerfile")).unwrap());
    assert_eq!(stage.entrypoint[0], format!("{}/drsn", stage.install), "{stage:?}");
    assert_eq!(stage.entrypoint[1..], ["serve"], "configuration by environment only: {stage:?}");
    assert_eq!(stage.healthcheck, [format!("{}/drsn", stage.install), "healthcheck".to_string()]);
    let env: std::collections::HashMap<_, _> = stage.env.iter().cloned().collect();
    assert_eq!(env.get("DRSN_ADDR"), Some(&format!("0.0.0.0:{}", stage.exposed_port)));
    assert_eq!(env.get("DRSN_MODELS"), Some(&format!("{}/models", stage.install)));
    assert_eq!(env.get("DRSN_DATA_DIR"), Some(&stage.volume));
    assert!(!env.contains_key("LD_LIBRARY_PATH") && !env.contains_key(TOKEN_VAR), "{env:?}");
}

#[test]
fn the_entrypoint_refuses_all_interfaces_without_a_token() {
    let stage = runtime_stage(&std::fs::read_to_string(Path::new(REPO).join("docker/Dockerfile")).unwrap());
    let data = tempfile::tempdir().expect("temporary folder");
    // The image's ENV as it is, on a free port; the refusal comes before anything is loaded.
    let output = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(&stage.entrypoint[1..])
        .env_clear()
        .env("PATH", IMAGE_PATH)
        .envs(stage.env.iter().cloned())
        .env("DRSN_ADDR", "0.0.0.0:0")
        .current_dir(data.path())
        .output()
        .expect("drsn runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "served without a token: {stderr}");
    assert!(stderr.contains(TOKEN_VAR), "the refusal names {TOKEN_VAR}: {stderr}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_staged_runtime_serves_a_real_diagnosis_without_the_build_environment() {
    let stage = runtime_stage(&std::fs::read_to_string(Path::new(REPO).join("docker/Dockerfile")).unwrap());
    let recordings: Vec<(&str, (Vec<f32>, u32))> = CWRU_LABELS.iter().map(|&l| (l, cwru_recording(l))).collect();
    let scratch = tempfile::tempdir().expect("temporary folder");
    let install = scratch.path().join("install");
    let data = scratch.path().join("data");
    std::fs::create_dir(&data).unwrap();
    stage_runtime(&install);
    let install = install.canonicalize().unwrap();
    let mapping = Mapping { stage: &stage, install: &install, data: &data };
    let token = format!("test-token-{}", std::process::id());
    let mut service = Service::start(mapping.command(&stage.entrypoint, "127.0.0.1:0", &token));
    let client = reqwest::Client::new();

    let ready = client.get(service.url("/health/ready")).send().await.expect("readiness answered");
    assert_eq!(ready.status(), 200);
    let ready: Value = ready.json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    let mut served: Vec<String> =
        ready["models"].as_array().unwrap().iter().map(|m| m.as_str().unwrap().to_string()).collect();
    served.sort();
    assert_eq!(served, shipped_models(), "every shipped model is in service");

    let health = mapping.command(&stage.healthcheck, &service.addr, &token).output().unwrap();
    assert!(health.status.success(), "HEALTHCHECK failed: {}", String::from_utf8_lossy(&health.stderr));
    assert!(String::from_utf8_lossy(&health.stdout).contains("\"ready\""));

    // Everything the process loaded comes from the staged folder or the base system, and
    // forward passes run on the staged ONNX Runtime (found beside the binary).
    let libraries = mapped_libraries(service.child.id());
    assert!(
        libraries.iter().any(|lib| lib.starts_with(install.join("lib"))
            && lib.file_name().is_some_and(|n| n.to_string_lossy().starts_with("libonnxruntime.so"))),
        "ONNX Runtime is not loaded from the staged folder: {libraries:?}"
    );
    for lib in libraries {
        assert!(
            lib.starts_with(install.join("lib")) || lib.starts_with("/lib") || lib.starts_with("/usr/lib"),
            "{} is loaded from outside the staged folder and the system",
            lib.display()
        );
    }

    // The volume holds the database, and version changes need the token from the environment.
    assert!(data.join("drsn.sqlite").is_file(), "no database in the data volume");
    let activate = service.url(&format!("/models/{BEARING_MODEL}/activate"));
    let body = serde_json::json!({"version": 1});
    let refused = client.post(&activate).json(&body).send().await.unwrap();
    assert_eq!(refused.status(), 401, "activate without the token");
    let accepted = client.post(&activate).bearer_auth(&token).json(&body).send().await.unwrap();
    assert_eq!(accepted.status(), 200, "activate with the token: {}", accepted.text().await.unwrap());
    assert!(data.join("models").join(BEARING_MODEL).join("ACTIVE").is_file());

    let card: Value =
        client.get(service.url(&format!("/models/{BEARING_MODEL}"))).send().await.unwrap().json().await.unwrap();
    let length = card["window"]["length"].as_u64().expect("the bearing model's window length") as usize;
    let model_rate = card["sample_rate"].as_u64().expect("the bearing model's rate") as usize;
    for (label, (samples, rate)) in &recordings {
        // Windows at the recording's own rate, resampled by the service to the model's.
        let span = length * *rate as usize / model_rate;
        let windows: Vec<&[f32]> = samples.chunks_exact(span).take(MAX_WINDOWS).collect();
        let request = serde_json::json!({"model": BEARING_MODEL, "signals": windows,
            "sample_rate": rate, "diagnostics": "none"});
        let response = client.post(service.url("/diagnose")).json(&request).send().await.expect("diagnosis answered");
        let status = response.status();
        let report: Value = response.json().await.expect("JSON report");
        assert_eq!(status, 200, "{report}");
        assert_eq!(report["model"]["name"], BEARING_MODEL);
        let labels: Vec<&str> =
            report["windows"].as_array().unwrap().iter().map(|w| w["label"].as_str().unwrap()).collect();
        assert_eq!(labels.len(), windows.len());
        let right = labels.iter().filter(|l| *l == label).count();
        assert!(
            2 * right > labels.len(),
            "{right} of {} windows of {label} diagnosed as {label}: {labels:?}",
            labels.len()
        );
    }

    let status = service.stop();
    assert!(status.success(), "exit after SIGTERM: {status:?}; logs:\n{}", service.logs());
    assert!(service.logs().contains("\"stopped\""), "logs:\n{}", service.logs());
    // Every model passed its load check: the bearing model served on the fused forward, the
    // digits on the staged ONNX Runtime, none on libtorch.
    let logs = service.logs();
    assert!(
        logs.contains("\"backend\":\"fused\"")
            && logs.contains("\"backend\":\"onnxruntime\"")
            && !logs.contains("\"backend\":\"libtorch\""),
        "logs:\n{logs}"
    );
    let health = mapping.command(&stage.healthcheck, &service.addr, &token).output().unwrap();
    assert!(!health.status.success(), "HEALTHCHECK must fail once the service is gone");
}
