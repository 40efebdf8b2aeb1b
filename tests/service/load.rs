//! 200 concurrent diagnoses against a real server: every answer is the right one for its
//! own window, and the engine batched them.

use crate::common::*;
use drsn::data::Normalization;
use drsn::nn::Model;
use drsn::registry::{ModelCard, WEIGHTS_FILE};
use serde_json::{json, Value};
use tch::{Device, Kind, Tensor};

/// The model's probabilities for `windows`, computed directly (one batch, no server).
fn direct(windows: &[Vec<f32>]) -> Vec<Vec<f32>> {
    let dir = fixtures().models.join(BEARING);
    let card = ModelCard::read(&dir).unwrap();
    let model = Model::load(&card.spec, &dir.join(WEIGHTS_FILE), Device::Cpu).unwrap();
    let mut flat = Vec::new();
    for w in windows {
        let mut w = w.clone();
        Normalization::ZScore.apply(&mut w);
        flat.extend(w);
    }
    let xs = Tensor::from_slice(&flat).view([windows.len() as i64, 1, 2048]);
    let probs = model.infer(&xs, false).unwrap().probabilities().to_kind(Kind::Float);
    (0..windows.len() as i64).map(|i| Vec::<f32>::try_from(probs.get(i)).unwrap()).collect()
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{prefix} missing from\n{text}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_are_all_answered_correctly_in_batches() {
    let app = spawn_app().await;
    let windows: Vec<Vec<f32>> = (0..200).map(|i| signal(2048, 1000 + i)).collect();
    let expected = direct(&windows);
    let classes: Vec<String> = CWRU_CLASSES.iter().map(|c| c.to_string()).collect();

    let tasks: Vec<_> = windows
        .iter()
        .map(|w| {
            let (client, url) = (app.client.clone(), app.url("/diagnose"));
            let body = json!({"model": BEARING, "signal": w, "diagnostics": "none"});
            tokio::spawn(async move {
                let r = client.post(url).json(&body).send().await.expect("sent");
                assert_eq!(r.status().as_u16(), 200);
                r.json::<Value>().await.expect("JSON")
            })
        })
        .collect();
    let mut largest_batch = 0;
    for (i, task) in tasks.into_iter().enumerate() {
        let body = task.await.expect("request task");
        largest_batch = largest_batch.max(body["timings"]["batch_windows"].as_u64().unwrap());
        let got = probabilities(&body["windows"][0]);
        for (class, p) in got {
            let k = classes.iter().position(|c| *c == class).expect("a known class");
            assert!((p - expected[i][k] as f64).abs() < 1e-4, "request {i}, {class}: {p} vs {}", expected[i][k]);
        }
    }
    assert!(largest_batch > 1, "no request shared its forward pass");

    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    let singles = metric(&text, &format!("drsn_batch_size_bucket{{model=\"{BEARING}\",le=\"1\"}}"));
    let batches = metric(&text, &format!("drsn_batch_size_count{{model=\"{BEARING}\"}}"));
    let windows_run = metric(&text, &format!("drsn_batch_size_sum{{model=\"{BEARING}\"}}"));
    assert!(windows_run >= 200.0, "{windows_run} windows in the batch-size histogram");
    assert!(batches > singles, "every one of {batches} forward passes held a single window");
    assert!(batches < 200.0, "{batches} forward passes for 200 windows: no batching");
}
