//! The Open Inference Protocol (KServe v2) endpoints, driven by the unmodified Triton HTTP
//! client from PyPI (`tests/triton_client.py`) against a real server with the shipped
//! models, fed held-out CWRU windows and MNIST test digits from `../shared/data`.

use std::path::Path;

use crate::common::real::*;
use crate::common::*;
use drsn::http::HttpConfig;
use drsn::registry::ModelCard;
use serde_json::{json, Value};

/// Most a probability or threshold may differ between `/v2/.../infer` and `/diagnose`.
const TOLERANCE: f64 = 1e-5;
const DIGITS: usize = 20;

/// Runs the Triton client script; its findings as JSON.
async fn triton_client(url: String, cases: Value) -> Value {
    let dir = tempfile::tempdir().unwrap();
    let (cases_path, findings_path) = (dir.path().join("cases.json"), dir.path().join("findings.json"));
    std::fs::write(&cases_path, cases.to_string()).unwrap();
    let python = std::env::var("DRSN_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/triton_client.py");
    let output = tokio::process::Command::new(&python)
        .arg(&script)
        .arg(&url)
        .arg(&cases_path)
        .arg(&findings_path)
        .output()
        .await
        .unwrap_or_else(|e| {
            panic!("could not run {python:?} (DRSN_PYTHON): {e}; eval \"$(bash scripts/libtorch.sh)\"")
        });
    assert!(
        output.status.success(),
        "the Triton client failed (is tritonclient[http] installed? scripts/libtorch.sh installs it):\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    serde_json::from_slice(&std::fs::read(findings_path).unwrap()).unwrap()
}

/// `/diagnose` with full diagnostics: per window, the probabilities in the card's class
/// order, the label, and every block's thresholds.
struct Diagnosis {
    labels: Vec<String>,
    probabilities: Vec<Vec<f64>>,
    /// `[block][window][channel]`.
    thresholds: Vec<Vec<Vec<f64>>>,
    block_names: Vec<String>,
    /// Per window, when the model is calibrated.
    ood_scores: Option<Vec<f64>>,
}

async fn diagnose(app: &TestApp, card: &ModelCard, signals: Value) -> Diagnosis {
    let body = ok(app.diagnose(&json!({"model": card.name, "signals": signals, "diagnostics": "full"})).await).await;
    let windows = body["windows"].as_array().unwrap();
    let numbers = |v: &Value| -> Vec<f64> { v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect() };
    let blocks = windows[0]["blocks"].as_array().unwrap();
    Diagnosis {
        labels: windows.iter().map(|w| w["label"].as_str().unwrap().to_string()).collect(),
        probabilities: windows
            .iter()
            .map(|w| card.classes.iter().map(|c| w["probabilities"][c].as_f64().unwrap()).collect())
            .collect(),
        thresholds: (0..blocks.len())
            .map(|b| windows.iter().map(|w| numbers(&w["blocks"][b]["thresholds"])).collect())
            .collect(),
        block_names: blocks.iter().map(|b| b["name"].as_str().unwrap().to_string()).collect(),
        ood_scores: card.ood.as_ref().map(|_| windows.iter().map(|w| w["ood_score"].as_f64().unwrap()).collect()),
    }
}

/// Largest difference between a `[N, K]` output and the expected rows.
fn largest_difference(output: &Value, expected: &[Vec<f64>]) -> f64 {
    let rows = output["values"].as_array().unwrap();
    assert_eq!(rows.len(), expected.len());
    rows.iter()
        .zip(expected)
        .flat_map(|(row, want)| {
            let row = row.as_array().unwrap();
            assert_eq!(row.len(), want.len());
            row.iter().zip(want).map(|(g, w)| (g.as_f64().unwrap() - w).abs()).collect::<Vec<_>>()
        })
        .fold(0.0, f64::max)
}

fn names(tensors: &Value) -> Vec<String> {
    tensors.as_array().unwrap().iter().map(|t| t["name"].as_str().unwrap().to_string()).collect()
}

/// What the client saw of one model, checked against `/diagnose` and the truth.
fn check_model(found: &Value, card: &ModelCard, diagnosis: &Diagnosis, truth: &[String], min_right: usize) {
    let name = &card.name;
    assert_eq!(found["ready"], true, "{name} ready");
    assert_eq!(found["version_ready"], true, "{name} version ready");

    let metadata = &found["metadata"];
    assert_eq!(metadata["name"], name.as_str());
    assert_eq!(metadata["versions"], json!([card.version.to_string()]));
    assert_eq!(metadata["inputs"][0]["name"], "input");
    assert_eq!(metadata["inputs"][0]["datatype"], "FP32");
    let sample_shape: Vec<i64> = card.spec.sample_shape();
    assert_eq!(metadata["inputs"][0]["shape"], json!([vec![-1], sample_shape.clone()].concat()));
    let mut expected_outputs = vec!["probabilities".to_string(), "label".to_string()];
    if card.ood.is_some() {
        expected_outputs.push("ood_score".to_string());
    }
    expected_outputs.extend(diagnosis.block_names.iter().map(|b| format!("thresholds/{b}")));
    assert_eq!(names(&metadata["outputs"]), expected_outputs, "{name} outputs");
    assert_eq!(metadata["outputs"][0]["shape"], json!([-1, card.classes.len()]));
    assert_eq!(metadata["outputs"][1]["datatype"], "BYTES");
    assert_eq!(found["version_metadata"], *metadata);

    let runs = found["runs"].as_object().unwrap();
    assert_eq!(runs.len(), 4, "{name}: two shapes, JSON and binary: {:?}", runs.keys());
    for (run, result) in runs {
        let outputs = &result["outputs"];
        assert_eq!(result["model_name"], name.as_str(), "{run}");
        let labels: Vec<String> = serde_json::from_value(outputs["label"].clone()).unwrap();
        assert_eq!(labels, diagnosis.labels, "{name} {run}: labels as /diagnose");
        let right = labels.iter().zip(truth).filter(|(l, t)| l == t).count();
        assert!(right >= min_right, "{name} {run}: {right}/{} true: {labels:?} vs {truth:?}", truth.len());
        let probabilities = &outputs["probabilities"];
        assert_eq!(probabilities["shape"], json!([truth.len(), card.classes.len()]));
        let gap = largest_difference(probabilities, &diagnosis.probabilities);
        assert!(gap <= TOLERANCE, "{name} {run}: probabilities differ from /diagnose by {gap}");
        if let Some(expected) = &diagnosis.ood_scores {
            let got: Vec<f64> = serde_json::from_value(outputs["ood_score"]["values"].clone()).unwrap();
            assert_eq!(got.len(), expected.len(), "{name} {run}: ood_score");
            for (g, e) in got.iter().zip(expected) {
                assert!((g - e).abs() <= 1e-4 * e.abs().max(1.0), "{name} {run}: ood_score {g} vs /diagnose {e}");
            }
        }
        for (block, expected) in diagnosis.block_names.iter().zip(&diagnosis.thresholds) {
            let gap = largest_difference(&outputs[format!("thresholds/{block}")], expected);
            assert!(gap <= TOLERANCE, "{name} {run}: thresholds of {block} differ from /diagnose by {gap}");
        }
        let binary: Vec<String> = serde_json::from_value(result["binary_outputs"].clone()).unwrap();
        if run.starts_with("binary") {
            assert_eq!(binary, expected_outputs, "{name} {run}: outputs in binary form");
        } else {
            assert!(binary.is_empty(), "{name} {run}: outputs in JSON form, got binary {binary:?}");
        }
    }
    let unnamed = &found["unnamed"];
    let binary: Vec<String> = serde_json::from_value(unnamed["binary_outputs"].clone()).unwrap();
    assert_eq!(binary, expected_outputs, "{name}: every output, in binary form, when none is named");
    assert_eq!(unnamed["outputs"]["label"], json!(diagnosis.labels));

    let subset = &found["subset"];
    let asked: Vec<String> = serde_json::from_value(found["subset_asked"].clone()).unwrap();
    let mut got: Vec<String> = subset["outputs"].as_object().unwrap().keys().cloned().collect();
    got.sort();
    let mut asked_sorted = asked.clone();
    asked_sorted.sort();
    assert_eq!(got, asked_sorted, "{name}: only the outputs asked for");
    assert_eq!(subset["model_version"], card.version.to_string());

    let wrong = &found["wrong_shape"];
    assert_eq!(wrong["raised"], "InferenceServerException", "{name}: {wrong}");
    assert_eq!(wrong["status"], "400", "{wrong}");
    let message = wrong["message"].as_str().unwrap();
    assert!(message.contains("[3, 1000]") && message.contains(&sample_shape.last().unwrap().to_string()), "{message}");
    let unknown = &found["unknown_version"];
    assert_eq!(unknown["status"], "404", "{unknown}");
    assert!(unknown["message"].as_str().unwrap().contains("999"), "{unknown}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_unmodified_triton_client_gets_the_true_class_and_the_probabilities_of_diagnose() {
    let app = spawn_app_serving(shipped(), engine_config(), HttpConfig::default()).await;

    // One held-out window of every CWRU class, and the first MNIST test digits.
    let bearing = ModelCard::read(&shipped().join("cwru-bearing")).unwrap();
    let stretches = cwru_test_stretches(&bearing);
    let windows: Vec<Vec<f32>> = bearing
        .classes
        .iter()
        .map(|c| {
            stretches.iter().find(|s| &s.label == c).unwrap_or_else(|| panic!("no {c} test stretch")).samples[..2048]
                .to_vec()
        })
        .collect();
    let mnist = ModelCard::read(&shipped().join("mnist")).unwrap();
    let (digits, digit_labels) = mnist_test(DIGITS);
    let images: Vec<Vec<Vec<f32>>> =
        digits.iter().map(|d| d.chunks(28).map(|r| r.iter().map(|&p| p as f32 / 255.0).collect()).collect()).collect();
    let bearing_diagnosis = diagnose(&app, &bearing, json!(windows)).await;
    let mnist_diagnosis = diagnose(&app, &mnist, json!(images)).await;

    let n = windows.len();
    let cases = json!({
        "cwru-bearing": {"inputs": windows, "shapes": [[n, 2048], [n, 1, 2048]]},
        "mnist": {"inputs": images, "shapes": [[DIGITS, 28, 28], [DIGITS, 1, 28, 28]]},
    });
    let found = triton_client(app.addr.to_string(), cases).await;

    assert_eq!(found["live"], true);
    assert_eq!(found["ready"], true);
    assert_eq!(found["server"]["name"], "drsn");
    assert_eq!(found["server"]["extensions"], json!(["binary_tensor_data"]));
    check_model(&found["models"]["cwru-bearing"], &bearing, &bearing_diagnosis, &bearing.classes, n);
    let truth: Vec<String> = digit_labels.iter().map(u8::to_string).collect();
    check_model(&found["models"]["mnist"], &mnist, &mnist_diagnosis, &truth, DIGITS - 1);

    let unknown = &found["unknown_model"];
    assert_eq!(unknown["ready"], false);
    for call in ["metadata", "infer"] {
        assert_eq!(unknown[call]["raised"], "InferenceServerException", "{call}: {unknown}");
        assert_eq!(unknown[call]["status"], "404", "{call}: {unknown}");
        assert!(unknown[call]["message"].as_str().unwrap().contains("no-such-model"), "{call}: {unknown}");
    }
}
