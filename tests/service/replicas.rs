//! Three `drsn serve` processes on one PostgreSQL database (a throw-away server): jobs
//! submitted to any replica each run exactly once, on whichever replica is free; `/jobs`
//! reads the same from every replica; a version activated through one is served by all
//! within seconds; a cancel through another replica stops the job where it runs; a replica
//! killed with SIGKILL mid-job has its job settled by another within the lease; events
//! reach a stream opened on a replica that does not run the job.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::common::postgres;
use crate::common::process::{self, Served};
use crate::common::real::shared_root;
use crate::common::*;
use drsn::store::LEASE_EXPIRED;

const LEASE_S: f64 = 3.0;

fn job(epochs: usize) -> Value {
    json!({
        "model": "bearing-replicas",
        "dataset": "cwru/manifest.csv",
        "data": {"sample_rate": 12000, "filter": {"load_hp": ["0"]}, "max_per_class": 16, "train_stride": 1024},
        "train": {"epochs": epochs, "batch_size": 32},
        "promote": "always",
    })
}

fn start(name: &str, url: &str, data: &tempfile::TempDir) -> Served {
    let lease = LEASE_S.to_string();
    process::start(
        data.path(),
        &["--database-url", url, "--replica-name", name, "--job-lease-s", &lease, "--poll-s", "1"],
        &[("DRSN_DATA_ROOT", shared_root().as_os_str())],
    )
}

/// Polls `what` on every live replica until all give the same value and `ok` holds for it.
async fn agree(replicas: &[&Served], timeout: Duration, path: &str, ok: impl Fn(&Value) -> bool) -> Value {
    let deadline = Instant::now() + timeout;
    loop {
        let mut seen = Vec::new();
        for r in replicas {
            seen.push(r.get(path).await);
        }
        if seen.windows(2).all(|w| w[0] == w[1]) && ok(&seen[0]) {
            return seen.swap_remove(0);
        }
        assert!(Instant::now() < deadline, "replicas disagree on {path} after {timeout:?}: {seen:#?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// How many times each job was started, from every replica's log so far.
fn read_starts(replicas: &[&Served], counts: &mut BTreeMap<String, usize>) {
    for r in replicas {
        while let Ok(line) = r.logs.try_recv() {
            let Ok(entry) = serde_json::from_str::<Value>(&line) else { continue };
            if entry["fields"]["message"] == "job started" {
                let id = entry["fields"]["job"].as_str().unwrap_or_default().to_string();
                *counts.entry(id).or_default() += 1;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_replicas_on_one_postgres_share_jobs_and_versions_and_survive_a_killed_replica() {
    let url = postgres::server().fresh_database().await;
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let mut replicas: Vec<Served> = (0..3).map(|i| start(&format!("r{i}"), &url, &dirs[i])).collect();
    let mut counts = BTreeMap::new();

    // Six short jobs, two through each replica.
    let mut ids = Vec::new();
    for i in 0..6 {
        ids.push(replicas[i % 3].submit_ok(&job(1)).await);
    }
    let mut versions = Vec::new();
    for id in &ids {
        let done = replicas[0].finished(id, Duration::from_secs(600)).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        versions.push(done["model_version"].as_i64().unwrap());
    }
    versions.sort();
    assert_eq!(versions, vec![1, 2, 3, 4, 5, 6], "every job wrote its own version number");
    let all: Vec<&Served> = replicas.iter().collect();
    read_starts(&all, &mut counts);
    let jobs = agree(&all, Duration::from_secs(5), "/jobs?limit=100", |j| j["total"] == 6).await;
    let ran_on: std::collections::BTreeSet<_> =
        jobs["jobs"].as_array().unwrap().iter().map(|j| j["replica"].as_str().unwrap().to_string()).collect();
    println!("the six jobs ran on {ran_on:?}");

    // Every replica has every version, and the same one in service.
    let listed = agree(&all, Duration::from_secs(10), "/models/bearing-replicas/versions", |v| {
        v["versions"].as_array().is_some_and(|a| a.len() == 6)
    })
    .await;
    let active = listed["active"].as_i64().unwrap();

    // Activation through replica 2 is served by all within seconds.
    let target = if active == 2 { 3 } else { 2 };
    let response =
        replicas[2].post("/models/bearing-replicas/activate").json(&json!({"version": target})).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let activated = Instant::now();
    agree(&all, Duration::from_secs(5), "/models/bearing-replicas/versions", |v| v["active"] == target).await;
    let body = json!({"model": "bearing-replicas", "signal": signal(2048, 5), "diagnostics": "none"});
    for r in &replicas {
        let answer: Value = r.client.post(r.url("/diagnose")).json(&body).send().await.unwrap().json().await.unwrap();
        assert_eq!(answer["model"]["version"], target, "{answer:#}");
    }
    println!("activation seen by every replica after {:?}", activated.elapsed());

    // A cancel through a replica that does not run the job stops it where it runs, and a
    // stream opened on a third replica sees its events.
    let long = replicas[0].submit_ok(&job(500)).await;
    let running = replicas[0]
        .wait_for(&long, Duration::from_secs(120), |j| j["progress"]["step"].as_i64().unwrap_or(0) > 0)
        .await;
    let owner: usize = running["replica"].as_str().unwrap()[1..].parse().unwrap();
    let (other, third) = ((owner + 1) % 3, (owner + 2) % 3);
    let mut stream =
        replicas[third].client.get(replicas[third].url(&format!("/jobs/{long}/events"))).send().await.unwrap();
    let mut text = String::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    while !text.contains("event: step") {
        let chunk = tokio::time::timeout_at(deadline.into(), stream.chunk()).await.expect("a step event within 60 s");
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap().expect("the stream stays open")));
    }
    let response = replicas[other].post(&format!("/jobs/{long}/cancel")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202, "cancel of a running job through another replica");
    let cancelled = replicas[third].finished(&long, Duration::from_secs(30)).await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled:#}");

    // A replica killed mid-job: another settles the job once its lease expires.
    let doomed = replicas[0].submit_ok(&job(500)).await;
    let running = replicas[0]
        .wait_for(&doomed, Duration::from_secs(120), |j| j["progress"]["step"].as_i64().unwrap_or(0) > 0)
        .await;
    let owner: usize = running["replica"].as_str().unwrap()[1..].parse().unwrap();
    replicas[owner].signal(libc::SIGKILL);
    let killed = Instant::now();
    replicas[owner].exit_within(Duration::from_secs(10)).await;
    let survivor = (owner + 1) % 3;
    let settled = replicas[survivor].finished(&doomed, Duration::from_secs_f64(LEASE_S * 4.0)).await;
    let settled_after = killed.elapsed();
    assert_eq!((settled["status"].as_str(), settled["error"].as_str()), (Some("failed"), Some(LEASE_EXPIRED)));
    println!("the killed replica's job was settled {settled_after:?} after the kill (lease {LEASE_S} s)");
    read_starts(&replicas.iter().collect::<Vec<_>>(), &mut counts);

    // The killed replica comes back under its name (a restarted container) and takes part.
    replicas[owner] = start(&format!("r{owner}"), &url, &dirs[owner]);
    let after = replicas[owner].submit_ok(&job(1)).await;
    assert_eq!(replicas[survivor].finished(&after, Duration::from_secs(300)).await["status"], "succeeded");
    let all: Vec<&Served> = replicas.iter().collect();
    let jobs = agree(&all, Duration::from_secs(10), "/jobs?limit=100", |j| j["total"] == 9).await;
    let statuses: BTreeMap<String, usize> =
        jobs["jobs"].as_array().unwrap().iter().fold(BTreeMap::new(), |mut m, j| {
            *m.entry(j["status"].as_str().unwrap().to_string()).or_default() += 1;
            m
        });
    assert_eq!(statuses, BTreeMap::from([("cancelled".into(), 1), ("failed".into(), 1), ("succeeded".into(), 7)]));
    // Every job started exactly once, on one replica (the log lines may trail the state).
    let ids: Vec<String> =
        jobs["jobs"].as_array().unwrap().iter().map(|j| j["id"].as_str().unwrap().to_string()).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    while !ids.iter().all(|id| counts.contains_key(id)) && Instant::now() < deadline {
        read_starts(&all, &mut counts);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for id in &ids {
        assert_eq!(counts.get(id), Some(&1), "job {id} started {:?} times: {counts:?}", counts.get(id));
    }
}
