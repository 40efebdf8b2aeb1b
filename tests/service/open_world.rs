//! "I don't know" over HTTP: the shipped bearing model, served, flags windows it was never
//! trained for, calls a recording of them `unknown` (its closest class beside it), keeps
//! its own held-out recordings as they are, and reports the recent share of flagged
//! windows per model (drift) in `GET /models/{name}` and `/metrics`; `/v2` offers the score
//! as an output.

use crate::common::real::*;
use crate::common::*;

use drsn::http::HttpConfig;
use drsn::ood::DriftSettings;
use drsn::registry::ModelCard;
use serde_json::{json, Value};

fn white_noise(n: usize, seed: u64) -> Vec<f32> {
    use rand::SeedableRng;
    use rand_distr::Distribution;
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let normal = rand_distr::Normal::new(0.0f32, 1.0).unwrap();
    (0..n).map(|_| normal.sample(&mut rng)).collect()
}

fn flags(body: &Value) -> Vec<bool> {
    body["windows"].as_array().unwrap().iter().map(|w| w["out_of_distribution"].as_bool().unwrap()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_from_outside_the_models_world_are_flagged_and_a_recording_of_them_is_unknown() {
    let config = HttpConfig { drift: DriftSettings { windows: 40, warn_share: 0.2 }, ..HttpConfig::default() };
    let app = spawn_app_serving(shipped(), engine_config(), config).await;
    let card = ModelCard::read(&shipped().join("cwru-bearing")).unwrap();
    let ood = card.ood.as_ref().expect("the shipped card is calibrated");

    // A real inner-race test stretch: known, labelled as it is, hardly a window flagged.
    let stretch = cwru_test_stretches(&card).into_iter().find(|s| s.label == "IR021").unwrap();
    let wav = wav_f32(std::slice::from_ref(&stretch.samples), 12_000);
    let known = ok(app.post_diagnose("?model=cwru-bearing&diagnostics=none", "audio/wav", wav).await).await;
    assert_eq!(known["recording"]["label"], "IR021", "{:#}", known["recording"]);
    assert!(known["recording"].get("closest").is_none());
    let summary = &known["out_of_distribution"];
    assert_eq!(summary["method"], ood.method.name());
    assert!(summary["flagged_share"].as_f64().unwrap() <= 0.2, "{summary}");
    let known_windows = flags(&known).len();

    // White noise as a recording: every window flagged, the verdict `unknown`.
    let noise = wav_f32(&[white_noise(12 * 2048, 1)], 12_000);
    let unknown = ok(app.post_diagnose("?model=cwru-bearing&diagnostics=none", "audio/wav", noise).await).await;
    assert!(flags(&unknown).iter().all(|&f| f), "{:#}", unknown["out_of_distribution"]);
    assert_eq!(unknown["recording"]["label"], "unknown");
    let closest = unknown["recording"]["closest"].as_str().unwrap();
    assert!(card.classes.iter().any(|c| c == closest), "{closest}");
    for w in unknown["windows"].as_array().unwrap() {
        assert!(w["ood_score"].as_f64().unwrap() > f64::from(ood.threshold));
    }

    // JSON windows too: a sine and a constant (a stuck sensor).
    let sine: Vec<f32> = (0..2048).map(|i| (i as f32 * 0.3).sin()).collect();
    let body = ok(app.diagnose(&json!({"model": "cwru-bearing", "signals": [sine, vec![0.5f32; 2048]]})).await).await;
    assert_eq!(flags(&body), [true, true]);
    assert_eq!(body["out_of_distribution"]["flagged"], 2);

    // Drift: fewer than 40 windows so far, all counted; 14 of them flagged.
    let model = app.get("/models/cwru-bearing").await;
    assert_eq!(model["name"], "cwru-bearing", "the card is still there: {model}");
    let drift = &model["drift"];
    let seen = known_windows + 12 + 2;
    assert!(seen < 40, "{seen} windows");
    assert_eq!(drift["windows"].as_u64().unwrap() as usize, seen, "{drift}");
    assert!(drift["drifting"].as_bool().unwrap(), "{drift}");
    assert!(drift["flagged"].as_u64().unwrap() >= 14, "{drift}");
    let metrics = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("drsn_ood_recent_share{model=\"cwru-bearing\"}"), "{metrics}");
    assert!(metrics.contains("drsn_ood_windows_total{model=\"cwru-bearing\"}"));

    // /v2: the score is an output of the calibrated model, equal to /diagnose's.
    let metadata = app.get("/v2/models/cwru-bearing").await;
    let outputs: Vec<&str> =
        metadata["outputs"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(&outputs[..3], ["probabilities", "label", "ood_score"]);
    let request = json!({
        "inputs": [{"name": "input", "datatype": "FP32", "shape": [1, 1, 2048], "data": white_noise(2048, 9)}],
        "outputs": [{"name": "ood_score"}],
    });
    let v2 = ok(app.client.post(app.url("/v2/models/cwru-bearing/infer")).json(&request).send().await.unwrap()).await;
    let score = v2["outputs"][0]["data"][0].as_f64().unwrap();
    let same = ok(app.diagnose(&json!({"model": "cwru-bearing", "signals": [white_noise(2048, 9)]})).await).await;
    let expected = same["windows"][0]["ood_score"].as_f64().unwrap();
    assert!((score - expected).abs() <= 1e-4 * expected.abs().max(1.0), "{score} vs {expected}");
}
