//! The real `drsn serve` binary with training jobs: killed outright while a job trains
//! and restarted on the same database (the job is settled, the database intact, earlier
//! records all there), stopped with SIGTERM while a job trains, refusing to listen on a
//! non-loopback address without a token; and the /diagnose latency figure while a job
//! trains versus idle (an ignored test, run on demand).

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::process::{self, Served};
use crate::common::real::shared_root;
use crate::common::*;
use drsn::store::{Store, DB_FILE, INTERRUPTED};
use serde_json::{json, Value};

/// Waits until the job has taken at least one training step.
async fn training(served: &Served, id: &str) {
    served.wait_for(id, Duration::from_secs(120), |j| j["progress"]["step"].as_i64().unwrap_or(0) > 0).await;
}

/// Starts the binary on the shared data and waits for its JSON `ready` line.
fn start(data_dir: &Path, extra: &[&str]) -> Served {
    process::start(data_dir, extra, &[("DRSN_DATA_ROOT", shared_root().as_os_str())])
}

fn cwru_job(model: &str, epochs: usize) -> Value {
    json!({
        "model": model,
        "dataset": "cwru/manifest.csv",
        "data": {"sample_rate": 12000, "filter": {"load_hp": ["0"]}, "max_per_class": 16, "train_stride": 1024},
        "train": {"epochs": epochs, "batch_size": 32},
        "promote": "always",
    })
}

async fn integrity(db: &Path) -> String {
    let store = Store::open(db).await.expect("database opens");
    let check = store.integrity_check().await.unwrap();
    store.close().await;
    check
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_restarts_on_the_same_database_with_its_jobs_settled_and_records_intact() {
    let data = tempfile::tempdir().unwrap();
    let db = data.path().join(DB_FILE);

    let mut first = start(data.path(), &[]);
    let done_id = first.submit_ok(&cwru_job("bearing-kill", 2)).await;
    let done = first.wait_for(&done_id, Duration::from_secs(240), |j| j["status"] == "succeeded").await;
    assert_eq!(done["model_version"], 1);
    let killed_id = first.submit_ok(&cwru_job("bearing-kill", 500)).await;
    training(&first, &killed_id).await;
    first.signal(libc::SIGKILL);
    let status = first.exit_within(Duration::from_secs(10)).await;
    assert!(!status.success(), "killed: {status}");
    drop(first);
    assert_eq!(integrity(&db).await, "ok", "after SIGKILL, before restart");

    let mut second = start(data.path(), &[]);
    let killed = second.get(&format!("/jobs/{killed_id}")).await;
    assert_eq!((killed["status"].as_str(), killed["error"].as_str()), (Some("failed"), Some(INTERRUPTED)));
    assert!(killed["finished_at"].is_string());
    let earlier = second.get(&format!("/jobs/{done_id}")).await;
    assert_eq!(earlier["status"], "succeeded");
    assert_eq!(earlier["metrics"].as_array().unwrap().len(), 2, "epoch metrics survive");
    assert_eq!(earlier["result"], done["result"]);
    let versions = second.get("/models/bearing-kill/versions").await;
    assert_eq!(versions["active"], 1);
    assert_eq!(versions["versions"][0]["job_id"], done_id.as_str());

    // SIGTERM while a job trains: the job ends at once as interrupted, the process exits.
    let stopped_id = second.submit_ok(&cwru_job("bearing-kill", 500)).await;
    training(&second, &stopped_id).await;
    second.signal(libc::SIGTERM);
    let status = second.exit_within(Duration::from_secs(30)).await;
    assert!(status.success(), "SIGTERM: {status}");
    drop(second);

    let third = start(data.path(), &[]);
    let stopped = third.get(&format!("/jobs/{stopped_id}")).await;
    assert_eq!((stopped["status"].as_str(), stopped["error"].as_str()), (Some("failed"), Some(drsn::jobs::SHUT_DOWN)));
    let all = third.get("/jobs").await;
    assert_eq!(all["total"], 3);
    assert_eq!(integrity(&db).await, "ok", "with the restarted server running");
}

#[test]
fn drsn_serve_refuses_a_non_loopback_address_without_a_token() {
    let data = tempfile::tempdir().unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_drsn"))
        .args(["serve", "--addr", "0.0.0.0:0"])
        .arg("--models")
        .arg(&fixtures().models)
        .arg("--data-dir")
        .arg(data.path())
        .env_remove("DRSN_TOKEN")
        .env_remove("DRSN_ALLOW_INSECURE")
        .output()
        .expect("drsn runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("refusing to listen on 0.0.0.0:0 without a token") && stderr.contains("--allow-insecure"),
        "{stderr}"
    );
}

/// Latencies of `n` sequential single-window /diagnose requests, in milliseconds.
async fn latencies(served: &Served, n: usize) -> Vec<f64> {
    let body = json!({"model": BEARING, "signal": signal(2048, 5), "diagnostics": "none"});
    let mut ms = Vec::with_capacity(n);
    for _ in 0..n {
        let started = Instant::now();
        let response = served.client.post(served.url("/diagnose")).json(&body).send().await.unwrap();
        assert_eq!(response.status().as_u16(), 200);
        response.bytes().await.unwrap();
        ms.push(started.elapsed().as_secs_f64() * 1e3);
    }
    ms
}

/// p50 and p99.
fn percentiles(mut ms: Vec<f64>) -> (f64, f64) {
    ms.sort_by(f64::total_cmp);
    let at = |q: f64| ms[((ms.len() as f64 * q).ceil() as usize).clamp(1, ms.len()) - 1];
    (at(0.50), at(0.99))
}

/// The figure: /diagnose latency idle and while a job trains, in one run of one server.
/// Idle is measured before the job starts and again after it is cancelled, so that a
/// change in the machine's background load does not fall on one side only.
/// `cargo test --release --test jobs_process -- --ignored --nocapture diagnose_latency`
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check; run on demand"]
async fn diagnose_latency_while_a_job_trains_vs_idle() {
    let n: usize = std::env::var("DRSN_LATENCY_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let data = tempfile::tempdir().unwrap();
    let served = start(data.path(), &[]);
    latencies(&served, 50).await; // warm-up
    let mut idle = latencies(&served, n / 2).await;
    let id = served.submit_ok(&cwru_job("latency", 1000)).await;
    training(&served, &id).await;
    let busy = latencies(&served, n).await;
    let job = served.get(&format!("/jobs/{id}")).await;
    assert_eq!(job["status"], "running", "the job trained throughout the measurement");
    let response = served.client.post(served.url(&format!("/jobs/{id}/cancel"))).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    served.wait_for(&id, Duration::from_secs(30), |j| j["status"] == "cancelled").await;
    idle.extend(latencies(&served, n / 2).await);
    let (idle_p50, idle_p99) = percentiles(idle);
    let (busy_p50, busy_p99) = percentiles(busy);
    println!("/diagnose, one 2048-sample window, sequential requests, one server:");
    println!("  idle ({n} requests):            p50 {idle_p50:.2} ms  p99 {idle_p99:.2} ms");
    println!(
        "  while training ({n} requests):  p50 {busy_p50:.2} ms  p99 {busy_p99:.2} ms  (job at epoch {})",
        job["progress"]["epoch"]
    );
}
