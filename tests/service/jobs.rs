//! Training jobs through HTTP on a real server with a real SQLite file: jobs on real CWRU
//! recordings (read from the shared data, and uploaded over HTTP as WAV files and as an
//! archive), progress and metrics, the new version put into service, cancel, failures,
//! idempotency, the data root's walls, and the bearer token.

use std::path::Path;
use std::time::{Duration, Instant};

use crate::common::real::shared_root;
use crate::common::*;
use drsn::data::{read_recording, ReadOptions};
use drsn::nn::{Arch, ModelSpec};
use drsn::store::DB_FILE;
use futures::StreamExt;
use serde_json::{json, Value};

/// Training jobs compete for two cores: tests that train take turns.
static TRAINING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The service with jobs, on a random loopback port, with the fixture models.
async fn spawn(data_root: &Path, token: Option<&str>) -> TestApp {
    Setup::with_jobs(data_root, token).spawn().await
}

/// A small, quick job on the load-0 CWRU recordings (10 classes, the normal baseline
/// resampled from 48 kHz).
fn cwru_job(model: &str, epochs: usize, promote: &str) -> Value {
    json!({
        "model": model,
        "dataset": "cwru/manifest.csv",
        "data": {"sample_rate": 12000, "filter": {"load_hp": ["0"]}, "max_per_class": 16, "train_stride": 1024},
        "train": {"epochs": epochs, "batch_size": 32, "seed": 7},
        "promote": promote,
    })
}

/// One real drive-end window of a CWRU recording: `(label, 2048 samples)`.
fn cwru_window(file: &str, variable: &str, label: &str) -> (String, Vec<f32>) {
    let path = shared_root().join("cwru").join(file);
    let recording = read_recording(&path, &ReadOptions { variable: Some(variable.into()), ..Default::default() })
        .unwrap_or_else(|e| panic!("{e}"));
    (label.to_string(), recording.channels[0][10_000..10_000 + 2048].to_vec())
}

/// Server-sent events of a job until the stream ends: `(event name, data)`.
async fn collect_events(url: String) -> Vec<(String, Value)> {
    let response = reqwest::get(url).await.expect("events request");
    assert_eq!(response.status().as_u16(), 200);
    assert!(response.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    let mut stream = response.bytes_stream();
    let (mut text, mut events) = (String::new(), Vec::new());
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.expect("event bytes")));
        while let Some(end) = text.find("\n\n") {
            let block: String = text.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event:") {
                    name = n.trim().to_string();
                } else if let Some(d) = line.strip_prefix("data:") {
                    data.push_str(d.trim());
                }
            }
            if !data.is_empty() {
                events.push((name, serde_json::from_str(&data).expect("event data is JSON")));
            }
        }
    }
    events
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_real_cwru_data_records_every_epoch_and_its_version_serves_diagnose_at_once() {
    let _turn = TRAINING.lock().await;
    let app = spawn(&shared_root(), None).await;
    let (status, job) = app.submit(&cwru_job(BEARING, 3, "always")).await;
    assert_eq!(status, 202, "{job}");
    let id = job["id"].as_str().unwrap().to_string();
    assert_eq!(job["links"]["self"], format!("/jobs/{id}"));
    let events = tokio::spawn(collect_events(app.url(&format!("/jobs/{id}/events"))));

    let done = app.finished(&id, Duration::from_secs(240)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["model_version"], 2, "the fixture is version 1");
    let metrics = done["metrics"].as_array().unwrap();
    assert_eq!(metrics.iter().map(|m| m["epoch"].as_i64().unwrap()).collect::<Vec<_>>(), vec![1, 2, 3]);
    for m in metrics {
        assert!(m["loss"].as_f64().unwrap().is_finite() && m["lr"].as_f64().unwrap() > 0.0, "{m}");
        let acc = m["val_accuracy"].as_f64().expect("validation accuracy per epoch");
        assert!((0.0..=1.0).contains(&acc));
    }
    let progress = &done["progress"];
    assert_eq!((progress["epoch"].as_i64(), progress["epochs"].as_i64()), (Some(3), Some(3)));
    assert_eq!(progress["step"], progress["steps"]);
    let test_accuracy = done["result"]["test_accuracy"].as_f64().expect("held-out accuracy");
    assert!((0.0..=1.0).contains(&test_accuracy));
    assert_eq!(done["result"]["promotion"]["activated"], true);

    // Events: the state at subscription, epochs as they ended, and the end.
    let events = tokio::time::timeout(Duration::from_secs(10), events).await.expect("stream ended").unwrap();
    let epochs: Vec<i64> =
        events.iter().filter(|(n, _)| n == "epoch").map(|(_, d)| d["epoch"].as_i64().unwrap()).collect();
    assert!(
        !epochs.is_empty() && epochs.windows(2).all(|w| w[1] == w[0] + 1) && *epochs.last().unwrap() == 3,
        "{epochs:?}"
    );
    let (last_name, last) = events.last().unwrap();
    assert_eq!(
        (last_name.as_str(), last["status"].as_str(), last["model_version"].as_i64()),
        ("status", Some("succeeded"), Some(2))
    );

    // The new version is in service and recorded with its job.
    let versions = app.get(&format!("/models/{BEARING}/versions")).await;
    assert_eq!(versions["active"], 2);
    let v2 = &versions["versions"].as_array().unwrap()[1];
    assert_eq!(
        (v2["version"].as_i64(), v2["active"].as_bool(), v2["job_id"].as_str()),
        (Some(2), Some(true), Some(id.as_str()))
    );
    assert_eq!(v2["origin"], "data_dir");
    assert_eq!(v2["metrics"]["test_accuracy"].as_f64(), Some(test_accuracy));
    let card = app.get(&format!("/models/{BEARING}")).await;
    assert_eq!(card["version"], 2);
    assert_eq!(card["classes"].as_array().unwrap().len(), 10);
    assert_eq!(card["sample_rate"], 12000);
    // Calibrated on its validation windows, so that it can say "I don't know".
    let ood = &card["ood"];
    assert_eq!(
        (ood["method"].as_str(), ood["calibrated_on"]["part"].as_str()),
        (Some("mahalanobis-stages"), Some("validation"))
    );
    assert!(ood["measured_false_alarm_rate"].as_f64().unwrap() <= 0.01, "{ood}");

    let (_, window) = cwru_window("12k_Drive_End_IR007_0_105.mat", "X105_DE_time", "IR007");
    let response =
        app.client.post(app.url("/diagnose")).json(&json!({"model": BEARING, "signal": window})).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["model"]["version"], 2, "the next /diagnose uses the new version");
    let probabilities = body["windows"][0]["probabilities"].as_object().unwrap();
    assert!(probabilities.contains_key("IR007") && probabilities.contains_key("normal"), "{probabilities:?}");

    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("drsn_jobs_finished_total{status=\"succeeded\"}"), "{metrics}");

    // Roll back and forward without a restart.
    let back = app.post(&format!("/models/{BEARING}/activate")).json(&json!({"version": 1})).send().await.unwrap();
    assert_eq!(back.status().as_u16(), 200);
    let body: Value = app
        .client
        .post(app.url("/diagnose"))
        .json(&json!({"model": BEARING, "signal": signal(2048, 3)}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(body["model"]["version"], 1);
    let store = app.jobs.as_ref().expect("jobs").runner.store();
    assert_eq!(store.active_version(BEARING).await.unwrap().unwrap().version, 1);
    let missing = app.post(&format!("/models/{BEARING}/activate")).json(&json!({"version": 9})).send().await.unwrap();
    expect_error(missing, 404, "unknown_model").await;
}

/// Real CWRU recordings (load 0) of three classes as 12 kHz float WAV files, cut short.
fn cwru_wavs() -> Vec<(String, String, Vec<u8>)> {
    let picks = [
        ("B007", "12k_Drive_End_B007_0_118.mat", "X118_DE_time"),
        ("IR007", "12k_Drive_End_IR007_0_105.mat", "X105_DE_time"),
        ("OR007", "12k_Drive_End_OR007@6_0_130.mat", "X130_DE_time"),
    ];
    picks
        .iter()
        .map(|(label, file, variable)| {
            let path = shared_root().join("cwru").join(file);
            let recording =
                read_recording(&path, &ReadOptions { variable: Some(variable.to_string()), ..Default::default() })
                    .unwrap_or_else(|e| panic!("{e}"));
            let wav = wav_f32(&[recording.channels[0][..40_000].to_vec()], 12_000);
            (label.to_string(), format!("{}.wav", file.trim_end_matches(".mat")), wav)
        })
        .collect()
}

fn wav_job(model: &str, dataset: &str) -> Value {
    json!({
        "model": model,
        "dataset": dataset,
        "data": {"train_stride": 1024},
        "train": {"epochs": 2, "batch_size": 16},
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_that_leaves_a_fault_family_out_reports_how_each_score_flags_it() {
    let _turn = TRAINING.lock().await;
    let app = spawn(&shared_root(), None).await;
    let mut request = cwru_job("open-set-probe", 2, "never");
    request["leave_out"] = json!(["ball"]);
    let (status, job) = app.submit(&request).await;
    assert_eq!(status, 202, "{job}");
    let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(240)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let card = app.get("/models/open-set-probe").await;
    assert_eq!(card["classes"].as_array().unwrap().len(), 7, "trained without the three ball classes");
    let report = &card["metrics"]["open_set"];
    assert_eq!(report["left_out"], json!(["B007", "B014", "B021"]));
    let methods: Vec<&str> =
        report["methods"].as_array().unwrap().iter().map(|m| m["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["max-softmax", "energy", "mahalanobis", "mahalanobis-stages"]);
    for m in report["methods"].as_array().unwrap() {
        let auroc = m["auroc"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&auroc), "{m}");
    }
    assert!(report["unknown_windows"].as_u64().unwrap() > 0);
    // A name that is neither a class nor a family fails the job plainly.
    let mut promoted = cwru_job("open-set-probe", 1, "always");
    promoted["leave_out"] = json!(["ball"]);
    let (status, body) = app.submit(&promoted).await;
    assert_eq!(status, 422, "a probe may not be promoted: {body}");
    let mut bad = cwru_job("open-set-probe", 1, "never");
    bad["leave_out"] = json!(["bearing-x"]);
    let (_, job) = app.submit(&bad).await;
    let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed");
    assert!(done["error"].as_str().unwrap().contains("bearing-x"), "{done}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_comparison_job_reports_every_network_and_publishes_the_recommended_one() {
    let _turn = TRAINING.lock().await;
    let app = spawn(&shared_root(), None).await;
    let mut request = cwru_job("compare-probe", 1, "always");
    // A preset's architecture against a network of one's own (a narrower ResNet).
    let mut narrow = ModelSpec::preset("paper-1d", Arch::Resnet, 2).unwrap();
    for (stage, channels) in narrow.stages.iter_mut().zip([2, 4, 8]) {
        stage.channels = channels;
    }
    narrow.stem.channels = 2;
    request["compare"] = json!({"archs": ["drsn-cw"], "specs": {"narrow-resnet": narrow},
                                "seeds": 2, "noise": ["gaussian"], "snr_db": [-4]});
    let (status, job) = app.submit(&request).await;
    assert_eq!(status, 202, "{job}");
    let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(240)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    // Progress counts epochs across the four runs, one after another.
    let epochs: Vec<i64> = done["metrics"].as_array().unwrap().iter().map(|m| m["epoch"].as_i64().unwrap()).collect();
    assert_eq!(epochs, [1, 2, 3, 4]);
    let card = app.get("/models/compare-probe").await;
    let report = &card["metrics"]["comparison"];
    let names: Vec<&str> =
        report["candidates"].as_array().unwrap().iter().map(|c| c["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["drsn-cw", "narrow-resnet"]);
    let narrow_report = &report["candidates"][1];
    assert!(narrow_report["parameters"].as_i64() < report["candidates"][0]["parameters"].as_i64());
    for c in report["candidates"].as_array().unwrap() {
        let conditions: Vec<&str> =
            c["conditions"].as_array().unwrap().iter().map(|r| r["condition"].as_str().unwrap()).collect();
        assert_eq!(conditions, ["clean", "gaussian -4 dB"]);
        assert_eq!(c["conditions"][0]["accuracy_per_seed"].as_array().unwrap().len(), 2);
    }
    // The version in service is the network the report recommends.
    let recommendation = report["recommendation"].as_str().unwrap();
    let winner = if card["spec"]["arch"] == "resnet" { "narrow-resnet" } else { "drsn-cw" };
    assert!(
        recommendation.contains(&format!("choose the cheaper, {winner}")) || recommendation.starts_with(winner),
        "{winner}: {recommendation}"
    );
    if winner == "narrow-resnet" {
        assert_eq!(card["spec"]["stages"][2]["channels"], 8);
    }
    assert!(report["test_windows"].as_u64().unwrap() > 0 && report["window_points"].as_f64().unwrap() > 0.0);
    // One network is no comparison.
    request["compare"] = json!({"archs": ["resnet"]});
    let (status, body) = app.submit(&request).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("two or more"), "{body}");
    // A spec of another input than the preset's is refused before queueing.
    let mut long = narrow.clone();
    long.input_size = vec![4096];
    request["compare"] = json!({"archs": ["resnet"], "specs": {"long": long}});
    let (status, body) = app.submit(&request).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("long: takes another input"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_adapt_job_re_estimates_the_active_version_on_another_sensor_without_training() {
    let _turn = TRAINING.lock().await;
    let app = spawn(&shared_root(), None).await;
    // A quick drive-end model to adapt, then the fan-end channel of the same recordings:
    // another sensor position.
    let (_, first) = app.submit(&cwru_job("adapt-probe", 1, "always")).await;
    let done = app.finished(first["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    let mut request = cwru_job("adapt-probe", 1, "always");
    request["data"]["variable"] = json!("*_FE_time");
    request["init"] = json!("active");
    request["adapt"] = json!(true);
    let (status, job) = app.submit(&request).await;
    assert_eq!(status, 202, "{job}");
    let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(120)).await;
    assert_eq!(done["status"], "succeeded", "{done:#}");
    assert_eq!(done["model_version"], 2);
    let card = app.get("/models/adapt-probe").await;
    assert_eq!(card["version"], 2);
    let adaptation = &card["metrics"]["adaptation"];
    assert_eq!(adaptation["method"], "adabn", "{card:#}");
    assert!(adaptation["windows"].as_u64().unwrap() > 0 && adaptation["passes"].as_u64().unwrap() >= 50);
    assert!(card["metrics"]["history"].as_array().unwrap().is_empty(), "no training epochs");
    assert_eq!(card["ood"]["calibrated_on"]["part"], "target (held out)");
    // Adapting needs a version to adapt.
    let mut scratch = request.clone();
    scratch["init"] = json!("scratch");
    let (status, body) = app.submit(&scratch).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("adapt"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datasets_uploaded_as_wav_files_and_as_one_archive_are_listed_and_train() {
    let _turn = TRAINING.lock().await;
    let root = tempfile::tempdir().unwrap();
    let app = spawn(root.path(), None).await;
    let wavs = cwru_wavs();

    for (label, file, bytes) in &wavs {
        let response = app
            .post(&format!("/datasets/cwru-wav/files?label={label}&file={file}"))
            .header("content-type", "audio/wav")
            .body(bytes.clone())
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 201);
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["stored"][0]["kind"], "wav");
        assert_eq!(body["path"], "datasets/cwru-wav");
    }
    // Written where the issue says, byte for byte.
    let (label, file, bytes) = &wavs[1];
    assert_eq!(&std::fs::read(root.path().join("datasets/cwru-wav").join(label).join(file)).unwrap(), bytes);

    let mut zip = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (label, file, bytes) in &wavs {
        zip.start_file(format!("bearings/{label}/{file}"), zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut zip, bytes).unwrap();
    }
    let archive = zip.finish().unwrap().into_inner();
    let response = app.post("/datasets/cwru-zip/archive").body(archive).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 201);

    let listed = app.get("/datasets").await;
    let names: Vec<&str> = listed.as_array().unwrap().iter().map(|d| d["name"].as_str().unwrap()).collect();
    assert_eq!(names, vec!["cwru-wav", "cwru-zip"]);
    let one = app.get("/datasets/cwru-zip").await;
    let classes: Vec<(String, i64)> = one["classes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["label"].as_str().unwrap().to_string(), c["files"].as_i64().unwrap()))
        .collect();
    assert_eq!(classes, vec![("B007".into(), 1), ("IR007".into(), 1), ("OR007".into(), 1)]);
    assert_eq!(one["files"], 3);

    for (model, dataset) in [("from-wav", "datasets/cwru-wav"), ("from-zip", "datasets/cwru-zip")] {
        let (status, job) = app.submit(&wav_job(model, dataset)).await;
        assert_eq!(status, 202, "{job}");
        let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(240)).await;
        assert_eq!(done["status"], "succeeded", "{done:#}");
        assert_eq!(done["metrics"].as_array().unwrap().len(), 2);
        let versions = app.get(&format!("/models/{model}/versions")).await;
        assert_eq!(versions["active"], 1, "a new model's first version is in service");
        let card = app.get(&format!("/models/{model}")).await;
        assert_eq!(card["classes"], json!(["B007", "IR007", "OR007"]));
    }
    let (_, window) = cwru_window("12k_Drive_End_B007_0_118.mat", "X118_DE_time", "B007");
    let response = app
        .client
        .post(app.url("/diagnose"))
        .json(&json!({"model": "from-zip", "signal": window}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);

    // `never` keeps the version in service; `if_better`, fine-tuning the active weights,
    // judges the active version on the very samples the new one was judged on.
    let mut never = wav_job("from-zip", "datasets/cwru-zip");
    never["promote"] = json!("never");
    let (_, job) = app.submit(&never).await;
    let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(240)).await;
    assert_eq!((done["status"].as_str(), done["model_version"].as_i64()), (Some("succeeded"), Some(2)), "{done:#}");
    assert_eq!(done["result"]["promotion"]["activated"], false);
    assert_eq!(app.get("/models/from-zip/versions").await["active"], 1);

    let mut better = wav_job("from-zip", "datasets/cwru-zip");
    better["init"] = json!("active");
    better["promote"] = json!("if_better");
    let (_, job) = app.submit(&better).await;
    let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(240)).await;
    assert_eq!((done["status"].as_str(), done["model_version"].as_i64()), (Some("succeeded"), Some(3)), "{done:#}");
    let promotion = &done["result"]["promotion"];
    let new = done["result"]["test_accuracy"].as_f64().unwrap();
    let old = promotion["active_accuracy"].as_f64().expect("the active version was judged");
    assert_eq!(promotion["activated"].as_bool(), Some(new >= old), "{promotion}");
    assert!(promotion["reason"].as_str().unwrap().contains("same samples"), "{promotion}");
    let expected_active = if new >= old { 3 } else { 1 };
    assert_eq!(app.get("/models/from-zip/versions").await["active"], expected_active);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_upload_is_refused_on_arrival_and_a_refused_archive_stores_nothing() {
    let root = tempfile::tempdir().unwrap();
    let app = spawn(root.path(), None).await;
    let response = app
        .post("/datasets/bad/files?label=ball&file=broken.wav")
        .body(b"RIFF\x10\x00\x00\x00WAVEjunk".to_vec())
        .send()
        .await
        .unwrap();
    let message = expect_error(response, 422, "validation").await;
    assert!(message.contains("ball/broken.wav"), "{message}");
    let response =
        app.post("/datasets/bad/files?label=ball&file=notes.docx").body(b"hello".to_vec()).send().await.unwrap();
    expect_error(response, 422, "validation").await;
    let response = app.post("/datasets/bad/files?label=..&file=a.csv").body(b"1\n2\n".to_vec()).send().await.unwrap();
    expect_error(response, 422, "validation").await;

    let mut tar = tar::Builder::new(Vec::new());
    let mut header = tar::Header::new_gnu();
    header.set_size(4);
    header.set_mode(0o644);
    header.as_old_mut().name[..14].copy_from_slice(b"../outside.csv");
    header.set_cksum();
    tar.append(&header, &b"1\n2\n"[..]).unwrap();
    let response = app.post("/datasets/bad/archive").body(tar.into_inner().unwrap()).send().await.unwrap();
    let message = expect_error(response, 422, "validation").await;
    assert!(message.contains("'..'"), "{message}");
    assert!(!root.path().join("outside.csv").exists() && !root.path().join("datasets/outside.csv").exists());
    let response = app.client.get(app.url("/datasets/bad")).send().await.unwrap();
    expect_error(response, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_its_limit_answers_413_and_stores_nothing() {
    let root = tempfile::tempdir().unwrap();
    let app = Setup { jobs: Some((root.path().to_path_buf(), None, 64 << 10)), ..Setup::default() }.spawn().await;
    let samples: Vec<f32> = (0..100_000).map(|i| (i as f32 * 0.01).sin()).collect();
    let wav = wav_f32(&[samples], 12_000);
    for path in ["/datasets/big/files?label=normal&file=long.wav", "/datasets/big/archive"] {
        let response = app.post(path).body(wav.clone()).send().await.expect("a 413, not a reset connection");
        let message = expect_error(response, 413, "payload_too_large").await;
        assert!(message.contains("65536 bytes") && message.contains("--upload-limit"), "{message}");
    }
    let response = app.client.get(app.url("/datasets/big")).send().await.unwrap();
    expect_error(response, 404, "not_found").await;
    // The upload limit is its own: a diagnosis larger than it is still answered.
    let windows: Vec<Vec<f32>> = (0..8).map(|i| signal(2048, i)).collect();
    let body = json!({"model": BEARING, "signals": windows});
    assert!(body.to_string().len() > 64 << 10);
    let response = app.client.post(app.url("/diagnose")).json(&body).send().await.unwrap();
    assert_eq!(response.status(), 200);
}

/// A dataset folder written straight to the data root (not uploaded, so not checked on
/// arrival) with one unreadable recording.
fn corrupt_dataset(root: &Path) {
    let write = |path: &str, bytes: &[u8]| {
        let path = root.join(path);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, bytes).unwrap();
    };
    let samples: String = signal(20_000, 1).iter().map(|v| format!("{v}\n")).collect();
    write("plant/normal/a.csv", samples.as_bytes());
    write("plant/ball/b.csv", samples.as_bytes());
    write("plant/ball/c.csv", b"0.1\n0.2\nnot-a-number\n0.4\n");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_on_a_corrupt_dataset_fails_with_the_file_and_the_reason() {
    let root = tempfile::tempdir().unwrap();
    corrupt_dataset(root.path());
    let app = spawn(root.path(), None).await;
    let (status, job) = app.submit(&json!({"model": "plant", "dataset": "plant", "train": {"epochs": 1}})).await;
    assert_eq!(status, 202, "{job}");
    let done = app.finished(job["id"].as_str().unwrap(), Duration::from_secs(60)).await;
    assert_eq!(done["status"], "failed");
    let error = done["error"].as_str().unwrap();
    assert!(error.contains("c.csv") && error.contains("not-a-number"), "{error}");
    assert!(done["model_version"].is_null());
    let response = app.client.get(app.url("/models/plant/versions")).send().await.unwrap();
    expect_error(response, 404, "unknown_model").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_a_running_job_within_a_step_and_a_queued_one_at_once() {
    let _turn = TRAINING.lock().await;
    let app = spawn(&shared_root(), None).await;
    let (_, long) = app.submit(&cwru_job("long", 500, "never")).await;
    let long_id = long["id"].as_str().unwrap().to_string();
    let (_, queued) = app.submit(&cwru_job("queued", 1, "never")).await;
    let queued_id = queued["id"].as_str().unwrap().to_string();

    app.wait_for(&long_id, Duration::from_secs(120), |j| j["progress"]["step"].as_i64().unwrap_or(0) > 0).await;
    let response = app.post(&format!("/jobs/{queued_id}/cancel")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 200, "a queued job is cancelled at once");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], "cancelled");

    let asked = Instant::now();
    let response = app.post(&format!("/jobs/{long_id}/cancel")).send().await.unwrap();
    assert_eq!(response.status().as_u16(), 202);
    let body: Value = response.json().await.unwrap();
    assert_eq!((body["status"].as_str(), body["cancel_requested"].as_bool()), (Some("running"), Some(true)));
    let done = app.finished(&long_id, Duration::from_secs(30)).await;
    let took = asked.elapsed();
    assert_eq!(done["status"], "cancelled", "{done:#}");
    assert!(done["error"].is_null() && done["model_version"].is_null());
    assert!(took < Duration::from_secs(5), "cancel took {took:?}");
    assert!(done["progress"]["epoch"].as_i64().unwrap() < 500);

    let cancelled: Value = app.get("/jobs?status=cancelled").await;
    assert_eq!(cancelled["total"], 2);
    let again = app.post(&format!("/jobs/{long_id}/cancel")).send().await.unwrap();
    assert_eq!(again.status().as_u16(), 200, "cancelling a cancelled job is a no-op");
    let unknown = app.post("/jobs/nope/cancel").send().await.unwrap();
    expect_error(unknown, 404, "not_found").await;
    assert!(app.client.get(app.url("/models/long")).send().await.unwrap().status().is_client_error());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idempotency_key_returns_the_first_job_and_refuses_a_different_request() {
    let root = tempfile::tempdir().unwrap();
    corrupt_dataset(root.path());
    let app = spawn(root.path(), None).await;
    let request = json!({"model": "plant", "dataset": "plant", "idempotency_key": "nightly-2024-06-01"});
    let (status, first) = app.submit(&request).await;
    assert_eq!(status, 202);
    let (status, again) = app.submit(&request).await;
    assert_eq!(status, 200, "{again}");
    assert_eq!(again["id"], first["id"]);
    // The same key as a header.
    let response = app
        .post("/jobs")
        .header("Idempotency-Key", "nightly-2024-06-01")
        .json(&json!({"model": "plant", "dataset": "plant"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status().as_u16(), 200);
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["id"], first["id"]);
    let (status, _) = app.submit(&json!({"model": "plant", "dataset": "plant", "idempotency_key": "nightly-2024-06-01", "train": {"epochs": 3}})).await;
    assert_eq!(status, 409);
    let list = app.get("/jobs").await;
    assert_eq!(list["total"], 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_job_requests_are_refused_before_queueing_with_what_is_wrong() {
    let root = tempfile::tempdir().unwrap();
    corrupt_dataset(root.path());
    let outside = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(outside.path().join("secret/a")).unwrap();
    std::os::unix::fs::symlink(outside.path().join("secret"), root.path().join("escape")).unwrap();
    let app = spawn(root.path(), None).await;
    let cases = [
        (json!({"model": "m", "dataset": "../etc"}), "'..'"),
        (json!({"model": "m", "dataset": "plant/../../etc"}), "'..'"),
        (json!({"model": "m", "dataset": "/etc"}), "absolute"),
        (json!({"model": "m", "dataset": "escape"}), "outside the data root"),
        (json!({"model": "m", "dataset": "nothing-here"}), "does not exist"),
        (json!({"model": "Bad Name", "dataset": "plant"}), "model"),
        (json!({"model": "m", "dataset": "plant", "preset": "huge-3d"}), "huge-3d"),
        (json!({"model": "m", "dataset": "plant", "train": {"epochs": 0}}), "epochs"),
        (json!({"model": "m", "dataset": "plant", "train": {"lr": -1.0}}), "learning rate"),
        (
            json!({"model": "m", "dataset": "plant", "augment": {"kinds": [], "snr_db": [0, 5], "probability": 0.5}}),
            "noise",
        ),
        (json!({"model": "m", "dataset": "plant", "promote": "sometimes"}), "sometimes"),
        (json!({"model": "m", "dataset": "plant", "init": "active"}), "no active version"),
        (json!({"model": "m", "dataset": "plant", "epochs": 3}), "unknown field"),
        (json!({"model": "m", "dataset": "plant", "data": {"test_fraction": 1.5}}), "fraction"),
        (json!({"model": "m", "dataset": "plant", "data": {"speed_factors": [1.03, 4.0]}}), "speed factors"),
        (json!({"model": "m", "dataset": "plant", "data": {"test_stride": 0}}), "test stride"),
        (json!({"model": "m", "dataset": "plant", "data": {"validation_stride": 4096}}), "validation stride"),
        (json!({"model": "m", "dataset": "plant", "promote": "never", "leave_out": vec!["ball"; 65]}), "leave_out"),
        (json!({"model": "m", "dataset": "plant", "compare": {"seeds": 1000}}), "seeds"),
        (json!({"model": "m", "dataset": "plant", "compare": {"snr_db": vec![-4.0; 12]}}), "SNRs"),
        (json!({"model": "m", "dataset": "plant", "ood": {"false_alarm_rate": 0.9}}), "false_alarm_rate"),
    ];
    for (request, expected) in cases {
        let response = app.post("/jobs").json(&request).send().await.unwrap();
        let message = expect_error(response, 422, "validation").await;
        assert!(message.contains(expected), "{request}: {message}");
    }
    let response = app.post("/jobs").header("content-type", "text/plain").body("{}").send().await.unwrap();
    expect_error(response, 415, "unsupported_media_type").await;
    assert_eq!(app.get("/jobs").await["total"], 0, "nothing was queued");
    let response = app.client.get(app.url("/jobs?status=sleeping")).send().await.unwrap();
    expect_error(response, 422, "validation").await;
    let response = app.client.get(app.url("/jobs/unknown")).send().await.unwrap();
    expect_error(response, 404, "not_found").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mutating_endpoints_need_the_token_when_one_is_configured() {
    let root = tempfile::tempdir().unwrap();
    corrupt_dataset(root.path());
    let app = spawn(root.path(), Some("s3cret")).await;
    let job = json!({"model": "plant", "dataset": "plant"});
    let anonymous = [
        app.client.post(app.url("/jobs")).json(&job),
        app.client.post(app.url("/jobs/x/cancel")),
        app.client.post(app.url(&format!("/models/{BEARING}/activate"))).json(&json!({"version": 1})),
        app.client.post(app.url("/datasets/d/files?label=a&file=a.csv")).body("1\n"),
        app.client.post(app.url("/datasets/d/archive")).body("x"),
        app.client.post(app.url("/jobs")).bearer_auth("wrong").json(&job),
    ];
    for request in anonymous {
        let response = request.send().await.unwrap();
        assert_eq!(response.headers()["www-authenticate"], "Bearer");
        expect_error(response, 401, "unauthorized").await;
    }
    assert_eq!(app.get("/jobs").await["total"], 0, "reading needs no token");
    let (status, _) = app.submit(&job).await;
    assert_eq!(status, 202, "with the token");
    let diagnose = app
        .client
        .post(app.url("/diagnose"))
        .json(&json!({"model": BEARING, "signal": signal(2048, 1)}))
        .send()
        .await
        .unwrap();
    assert_eq!(diagnose.status().as_u16(), 200, "diagnosis stays open");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_describes_jobs_versions_and_datasets() {
    let root = tempfile::tempdir().unwrap();
    let app = spawn(root.path(), None).await;
    let doc = app.get("/openapi.json").await;
    let paths = doc["paths"].as_object().unwrap();
    for (path, method) in [
        ("/jobs", "post"),
        ("/jobs", "get"),
        ("/jobs/{id}", "get"),
        ("/jobs/{id}/cancel", "post"),
        ("/jobs/{id}/events", "get"),
        ("/models/{name}/versions", "get"),
        ("/models/{name}/activate", "post"),
        ("/datasets", "get"),
        ("/datasets/{name}", "get"),
        ("/datasets/{name}/files", "post"),
        ("/datasets/{name}/archive", "post"),
        ("/diagnose", "post"),
    ] {
        assert!(paths.get(path).and_then(|p| p.get(method)).is_some(), "{method} {path} missing");
    }
    assert_eq!(paths["/jobs"]["post"]["security"][0]["bearer"], json!([]));
    assert!(doc["components"]["securitySchemes"]["bearer"].is_object());
    assert!(doc["components"]["schemas"]["JobRequest"].is_object());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_with_a_queue_of_bad_jobs_fails_each_with_its_reason_and_serves_on() {
    let data_dir = tempfile::tempdir().unwrap();
    let root = tempfile::tempdir().unwrap();
    {
        let store = drsn::store::Store::open(&data_dir.path().join(DB_FILE)).await.unwrap();
        let bad = [
            ("unreadable", json!({"not": "a job request"})),
            ("missing", json!({"model": "m", "dataset": "no/such/manifest.csv"})),
            ("outside", json!({"model": "m", "dataset": "../../etc"})),
        ];
        for (id, request) in bad {
            let new = drsn::store::NewJob { id: id.into(), idempotency_key: None, model_name: "m".into(), request };
            store.create_job(&new).await.unwrap();
        }
        store.close().await;
    }
    let app =
        Setup { data_dir: Some(data_dir.path().to_path_buf()), ..Setup::with_jobs(root.path(), None) }.spawn().await;
    for (id, says) in [("unreadable", "stored request"), ("missing", "does not exist"), ("outside", "'..'")] {
        let job = app.finished(id, Duration::from_secs(20)).await;
        assert_eq!(job["status"], "failed", "{job:#}");
        assert!(job["error"].as_str().unwrap().contains(says), "{job:#}");
    }
    let health = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
}
