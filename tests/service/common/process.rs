//! The real `drsn serve` binary as a child process, for the tests that need one (signals,
//! kills, restarts, latency apart from the test's own runtime).

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::fixtures;

pub struct Served {
    pub child: Child,
    pub addr: String,
    pub client: reqwest::Client,
    /// Log lines after the ready line.
    pub logs: mpsc::Receiver<String>,
    /// The `DRSN_TOKEN` it was started with.
    pub token: Option<String>,
}

/// Starts `drsn serve` on a loopback port with the fixture models, the given data folder,
/// further flags and environment, and waits for its JSON `ready` log line (which names the
/// address).
pub fn start(data_dir: &Path, extra: &[&str], env: &[(&str, &OsStr)]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["--log-format", "json", "serve"])
        .args(extra)
        .env("DRSN_ADDR", "127.0.0.1:0")
        .env("DRSN_MODELS", &fixtures().models)
        .env("DRSN_DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
        .envs(env.iter().copied())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("drsn starts");
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let Ok(line) = rx.recv_timeout(left) else {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no ready line from drsn serve within 60 s");
        };
        // libtorch may write plain lines of its own.
        let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
        if entry["fields"]["message"] == "ready" {
            let addr = entry["fields"]["addr"].as_str().expect("ready names the address").to_string();
            let token = env.iter().find(|(k, _)| *k == "DRSN_TOKEN").map(|(_, v)| v.to_string_lossy().into_owned());
            return Served { child, addr, client: reqwest::Client::new(), logs: rx, token };
        }
    }
}

impl super::Service for Served {
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

impl Served {
    pub fn url(&self, path: &str) -> String {
        super::Service::url(self, path)
    }

    pub fn signal(&self, signal: libc::c_int) {
        // SAFETY: sending a signal to our own child process by its id.
        let rc = unsafe { libc::kill(self.child.id() as libc::pid_t, signal) };
        assert_eq!(rc, 0, "signal {signal} not delivered");
    }

    pub async fn exit_within(&mut self, timeout: Duration) -> ExitStatus {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(Instant::now() < deadline, "drsn serve still running after {timeout:?}");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
