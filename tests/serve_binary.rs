//! The real `drsn serve` binary: configured by environment variables, ready only after
//! loading its models, and finishing in-flight requests on SIGTERM.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::{json, Value};

struct Served {
    child: Child,
    addr: String,
    /// Log lines after the ready line.
    logs: mpsc::Receiver<String>,
}

/// Starts the binary and waits for its JSON `ready` log line, which names the address.
fn start(data_dir: &std::path::Path, extra: &[&str]) -> Served {
    let mut child = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["--log-format", "json", "serve"])
        .args(extra)
        .env("DRSN_ADDR", "127.0.0.1:0")
        .env("DRSN_MODELS", &fixtures().models)
        .env("DRSN_DATA_DIR", data_dir)
        .env("RUST_LOG", "info")
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
        let line = rx.recv_timeout(left).unwrap_or_else(|_| {
            let _ = child.kill();
            panic!("no ready line from drsn serve within 60 s")
        });
        let entry: Value = serde_json::from_str(&line).unwrap_or_else(|_| panic!("not a JSON log line: {line}"));
        if entry["fields"]["message"] == "ready" {
            let addr = entry["fields"]["addr"].as_str().expect("ready names the address").to_string();
            return Served { child, addr, logs: rx };
        }
    }
}

fn terminate(child: &Child) {
    // SAFETY: sending a signal to our own child process by its id.
    let rc = unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
    assert_eq!(rc, 0, "SIGTERM not delivered");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drsn_serve_is_ready_after_warm_up_and_finishes_in_flight_requests_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    // A long batching wait keeps a request in flight while the signal arrives.
    let mut served = start(data.path(), &["--max-wait-ms", "800", "--max-batch-size", "8"]);
    let client = reqwest::Client::new();
    let url = |p: &str| format!("http://{}{p}", served.addr);

    let ready: Value = client.get(url("/health/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["models"].as_array().unwrap().len(), 3);

    let in_flight = {
        let (client, url) = (client.clone(), url("/diagnose"));
        tokio::spawn(async move {
            client.post(url).json(&json!({"model": BEARING, "signal": signal(2048, 1)})).send().await
        })
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    terminate(&served.child);

    let response = in_flight.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["windows"].as_array().unwrap().len(), 1);

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(status) = served.child.try_wait().unwrap() {
            break status;
        }
        assert!(Instant::now() < deadline, "drsn serve still running 20 s after SIGTERM");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "exit status {status}");
    let logs: Vec<String> = served.logs.try_iter().collect();
    assert!(logs.iter().any(|l| l.contains("SIGTERM received")), "{logs:?}");
    assert!(client.get(url("/health/live")).send().await.is_err(), "still answering after exit");
}

#[test]
fn drsn_serve_refuses_to_start_with_a_missing_models_folder() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["serve", "--addr", "127.0.0.1:0", "--models", "/nonexistent/models"])
        .arg("--data-dir")
        .arg(data.path())
        .output()
        .expect("drsn runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/nonexistent/models does not exist"), "{stderr}");
}
