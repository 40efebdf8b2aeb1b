//! 200 concurrent diagnoses against a real server: every answer is the right one for its
//! own window, whether the engine batched them or each ran on its HTTP thread.

use crate::common::*;
use drsn::data::Normalization;
use drsn::engine::EngineConfig;
use drsn::http::HttpConfig;
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

/// What 200 concurrent single-window requests showed: the batch each answer says it ran
/// in and how long it queued, and the batch-size histogram's count, sum and passes of one
/// window (process-wide: other tests add to them).
struct Served {
    batches: Vec<u64>,
    longest_queue_ms: f64,
    passes: f64,
    windows_run: f64,
    singles: f64,
}

/// Sends 200 concurrent requests of one window each to a server with `engine` and checks
/// every answer against the model run directly.
async fn two_hundred_concurrent(engine: EngineConfig) -> Served {
    let app = spawn_app_with(engine, HttpConfig::default()).await;
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
    let (mut batches, mut longest_queue_ms) = (Vec::new(), 0f64);
    for (i, task) in tasks.into_iter().enumerate() {
        let body = task.await.expect("request task");
        batches.push(body["timings"]["batch_windows"].as_u64().unwrap());
        longest_queue_ms = longest_queue_ms.max(body["timings"]["queue_ms"].as_f64().unwrap());
        let got = probabilities(&body["windows"][0]);
        for (class, p) in got {
            let k = classes.iter().position(|c| *c == class).expect("a known class");
            assert!((p - expected[i][k] as f64).abs() < 1e-4, "request {i}, {class}: {p} vs {}", expected[i][k]);
        }
    }
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    Served {
        batches,
        longest_queue_ms,
        singles: metric(&text, &format!("drsn_batch_size_bucket{{model=\"{BEARING}\",le=\"1\"}}")),
        passes: metric(&text, &format!("drsn_batch_size_count{{model=\"{BEARING}\"}}")),
        windows_run: metric(&text, &format!("drsn_batch_size_sum{{model=\"{BEARING}\"}}")),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_requests_through_the_queue_are_answered_correctly_in_batches() {
    let served = two_hundred_concurrent(EngineConfig { inline_max_windows: 0, ..engine_config() }).await;
    let shared = served.batches.iter().filter(|&&b| b > 1).count();
    assert!(shared >= 2, "{shared} of 200 requests shared their forward pass");
    assert!(served.windows_run >= 200.0, "{} windows in the batch-size histogram", served.windows_run);
    assert!(served.passes > served.singles, "every one of {} forward passes held a single window", served.passes);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_concurrent_small_requests_run_on_their_http_threads_and_are_answered_correctly() {
    // The default: a request of one window for a model on the fused forward runs where it
    // was read, in a forward pass of its own.
    let served = two_hundred_concurrent(engine_config()).await;
    assert!(served.batches.iter().all(|&b| b == 1), "{:?}", served.batches);
    assert_eq!(served.longest_queue_ms, 0.0);
    assert!(served.singles >= 200.0, "{} forward passes of one window", served.singles);
}
