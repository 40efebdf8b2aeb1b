//! The real `drsn serve` binary: configured by environment variables, ready only after
//! loading its models, and finishing in-flight requests on SIGTERM.

use std::process::Command;
use std::time::Duration;

use crate::common::process::start;
use crate::common::*;
use serde_json::{json, Value};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn drsn_serve_is_ready_after_warm_up_and_finishes_in_flight_requests_on_sigterm() {
    let data = tempfile::tempdir().unwrap();
    let mut served = start(data.path(), &[], &[]);
    let client = reqwest::Client::new();
    let url = {
        let addr = served.addr.clone();
        move |p: &str| format!("http://{addr}{p}")
    };

    let ready: Value = client.get(url("/health/ready")).send().await.unwrap().json().await.unwrap();
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["models"].as_array().unwrap().len(), 3);

    // A request whose body is half sent when SIGTERM arrives, the rest after it.
    let body = serde_json::to_vec(&json!({"model": BEARING, "signal": signal(2048, 1)})).unwrap();
    let (first, rest) = body.split_at(body.len() / 2);
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(2);
    tx.send(Ok(first.to_vec())).await.unwrap();
    let in_flight = {
        let request = client
            .post(url("/diagnose"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx)));
        tokio::spawn(request.send())
    };
    tokio::time::sleep(Duration::from_millis(500)).await;
    served.signal(libc::SIGTERM);
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(rest.to_vec())).await.unwrap();
    drop(tx);

    let response = in_flight.await.unwrap().expect("the in-flight request is answered");
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["windows"].as_array().unwrap().len(), 1);

    let status = served.exit_within(Duration::from_secs(20)).await;
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
