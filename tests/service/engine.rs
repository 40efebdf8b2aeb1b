//! The inference engine on its own: batching across requests and models, answers routed
//! back to their requests, live load and unload.

use std::time::Duration;

use crate::common::*;
use drsn::engine::{Backend, Engine, EngineConfig, EngineError, ModelKey, Prediction, Request};
use drsn::registry::{ModelCard, WEIGHTS_FILE};

fn key(name: &str) -> ModelKey {
    ModelKey { name: name.to_string(), version: 1 }
}

async fn load(engine: &Engine, name: &str) -> ModelCard {
    let dir = fixtures().models.join(name);
    let card = ModelCard::read(&dir).unwrap();
    engine.load(key(name), card.spec.clone(), dir.join(WEIGHTS_FILE), card.ood.clone()).await.unwrap();
    card
}

fn request(name: &str, inputs: Vec<f32>, windows: usize) -> Request {
    Request { model: key(name), inputs, windows, diagnostics: false }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_for_two_models_in_one_batch_each_get_their_own_models_answer() {
    let config = EngineConfig { max_wait: Duration::from_millis(200), workers: 1, ..EngineConfig::default() };
    let engine = Engine::start(config).unwrap();
    load(&engine, BEARING).await;
    load(&engine, DIGITS).await;
    let window = signal(2048, 1);
    let image = vec![0.3f32; 784];
    // Alone first, for reference.
    let alone_w = engine.infer(request(BEARING, window.clone(), 1)).await.unwrap();
    let alone_i = engine.infer(request(DIGITS, image.clone(), 1)).await.unwrap();
    // Then together in one batch (an announced request keeps the batch open for 200 ms),
    // with a request for a model never loaded.
    let announced = engine.incoming();
    let (a, a2, b, c) = tokio::join!(
        engine.infer(request(BEARING, window.clone(), 1)),
        engine.infer(request(BEARING, signal(2048, 2), 1)),
        engine.infer(request(DIGITS, image.clone(), 1)),
        engine.infer(request("ghost", vec![0.0; 10], 1)),
    );
    drop(announced);
    let (a, a2, b) = (a.unwrap(), a2.unwrap(), b.unwrap());
    assert_eq!((a.batch_windows, a2.batch_windows, b.batch_windows), (2, 2, 1));
    assert_eq!(a.windows[0].probabilities.len(), 10);
    for (x, y) in a.windows[0].probabilities.iter().zip(&alone_w.windows[0].probabilities) {
        assert!((x - y).abs() < 1e-5);
    }
    for (x, y) in b.windows[0].probabilities.iter().zip(&alone_i.windows[0].probabilities) {
        assert!((x - y).abs() < 1e-5);
    }
    assert!(matches!(c, Err(EngineError::NotLoaded(k)) if k.name == "ghost"));
    // Inputs of the wrong size are refused without disturbing anyone.
    let wrong = engine.infer(request(BEARING, vec![0.0; 100], 1)).await.unwrap_err();
    assert!(wrong.to_string().contains("100 values for 1 windows of 2048"), "{wrong}");
    assert!(engine.infer(request(BEARING, window, 1)).await.is_ok());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_alone_at_an_idle_engine_does_not_wait_for_company() {
    let config = EngineConfig { max_wait: Duration::from_secs(5), ..EngineConfig::default() };
    let engine = Engine::start(config).unwrap();
    load(&engine, BEARING).await;
    let started = std::time::Instant::now();
    let answer = engine.infer(request(BEARING, signal(2048, 3), 1)).await.unwrap();
    assert!(started.elapsed() < Duration::from_secs(2), "waited {:?}", started.elapsed());
    assert!(answer.queued < Duration::from_secs(1), "queued {:?}", answer.queued);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_larger_than_the_batch_size_runs_in_several_passes_in_order() {
    let config = EngineConfig { max_batch_size: 4, max_wait: Duration::ZERO, ..EngineConfig::default() };
    let engine = Engine::start(config).unwrap();
    load(&engine, BEARING).await;
    let windows: Vec<Vec<f32>> = (0..10).map(|i| signal(2048, 50 + i)).collect();
    let all = engine.infer(request(BEARING, windows.concat(), 10)).await.unwrap();
    assert_eq!(all.windows.len(), 10);
    for (i, w) in windows.iter().enumerate() {
        let one = engine.infer(request(BEARING, w.clone(), 1)).await.unwrap();
        for (x, y) in all.windows[i].probabilities.iter().zip(&one.windows[0].probabilities) {
            assert!((x - y).abs() < 1e-5, "window {i}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_worker_serves_a_model_loaded_live_until_it_is_unloaded() {
    let config = EngineConfig { workers: 2, max_wait: Duration::ZERO, ..EngineConfig::default() };
    let engine = Engine::start(config).unwrap();
    let window = signal(2048, 2);
    assert!(matches!(engine.infer(request(BEARING, window.clone(), 1)).await, Err(EngineError::NotLoaded(_))));
    load(&engine, BEARING).await;
    let answers = futures::future::join_all((0..16).map(|_| engine.infer(request(BEARING, window.clone(), 1)))).await;
    assert!(answers.iter().all(|a| a.is_ok()));
    engine.unload(key(BEARING)).await.unwrap();
    assert!(matches!(engine.infer(request(BEARING, window.clone(), 1)).await, Err(EngineError::NotLoaded(_))));
    // Weights that do not fit the spec are refused at load time with the reason.
    let card = ModelCard::read(&fixtures().models.join(DIGITS)).unwrap();
    let err = engine
        .load(key("mixed"), card.spec, fixtures().models.join(BEARING).join(WEIGHTS_FILE), None)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("cannot load model mixed v1"), "{err}");
    engine.shutdown();
    assert!(matches!(engine.infer(request(BEARING, window, 1)).await, Err(EngineError::Stopped)));
    tokio::task::spawn_blocking(move || engine.join()).await.unwrap();
}

/// Every window's answer from every backend for the same requests: probabilities, every
/// unit's values and the out-of-distribution score. The fused forward runs the 1-D model
/// and hands the 2-D one to ONNX Runtime.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fused_onnxruntime_and_libtorch_engines_give_the_same_answers_diagnostics_and_scores() {
    async fn answers(backend: Backend) -> Vec<Prediction> {
        // Every request through the queue, so that the fused forward runs batches of several
        // requests too (run where they are read, each would be a pass of its own).
        let config =
            EngineConfig { backend, max_wait: Duration::from_millis(50), inline_max_windows: 0, ..engine_config() };
        let engine = Engine::start(config).unwrap();
        let mut out = Vec::new();
        // The shipped models: calibrated, so every window also has a score.
        let shipped = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
        for (name, len, seeds) in [("cwru-bearing", 2048, [1u32, 2, 3]), ("mnist", 784, [4, 5, 6])] {
            let dir = shipped.join(name);
            let card = ModelCard::read(&dir).unwrap();
            assert!(card.ood.is_some(), "{name} is calibrated");
            let served = engine.load(key(name), card.spec.clone(), dir.join(WEIGHTS_FILE), card.ood.clone()).await;
            let expected = if backend == Backend::Fused && name == "mnist" { Backend::Onnxruntime } else { backend };
            assert_eq!(served.unwrap(), expected, "{name} is served on {expected}, asked for {backend}");
            let requests = seeds.map(|seed| {
                let inputs: Vec<f32> = (0..seed).flat_map(|i| signal(len, seed * 10 + i)).collect();
                Request { model: key(name), inputs, windows: seed as usize, diagnostics: seed % 3 != 2 }
            });
            let announced = engine.incoming();
            let [a, b, c] = requests;
            let (a, b, c) = tokio::join!(engine.infer(a), engine.infer(b), engine.infer(c));
            drop(announced);
            out.extend([a.unwrap(), b.unwrap(), c.unwrap()]);
            // Alone, without diagnostics: the session that serves most requests.
            let inputs = signal(len, seeds[0] + 100);
            out.push(engine.infer(Request { model: key(name), inputs, windows: 1, diagnostics: false }).await.unwrap());
        }
        out
    }
    init_onnxruntime();
    let torch = answers(Backend::Libtorch).await;
    let (ort, fused) = (answers(Backend::Onnxruntime).await, answers(Backend::Fused).await);
    for other in [&ort, &fused] {
        same_answers(&torch, other);
    }
    // Diagnostics only where asked for: the second request of each model asked for none, and
    // so did the fourth (alone in its batch).
    for out in [&ort, &fused] {
        assert!(out[1].windows.iter().all(|w| w.blocks.is_empty()));
        assert!(out[0].windows.iter().all(|w| !w.blocks.is_empty()));
        assert!(out[3].windows.iter().all(|w| w.blocks.is_empty() && w.ood_score.is_some()));
    }
}

/// Asserts that two backends answered the same requests alike.
fn same_answers(torch: &[Prediction], other: &[Prediction]) {
    let close = |a: &[f32], b: &[f32], tolerance: f32| {
        a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= tolerance)
    };
    let mut windows = 0;
    for (t, o) in torch.iter().zip(other) {
        assert_eq!(t.windows.len(), o.windows.len());
        for (t, o) in t.windows.iter().zip(&o.windows) {
            assert!(close(&t.probabilities, &o.probabilities, 1e-5), "{:?} vs {:?}", t.probabilities, o.probabilities);
            match (t.ood_score, o.ood_score) {
                (Some(a), Some(b)) => assert!((a - b).abs() <= 1e-4 * a.abs().max(1.0), "scores {a} and {b}"),
                (a, b) => panic!("scores {a:?} and {b:?}"),
            }
            assert_eq!(t.blocks.len(), o.blocks.len());
            for (tb, ob) in t.blocks.iter().zip(&o.blocks) {
                assert_eq!((&tb.name, tb.stage), (&ob.name, ob.stage));
                assert!(close(&tb.thresholds, &ob.thresholds, 1e-5), "{}: thresholds", tb.name);
                assert!(close(&tb.scales, &ob.scales, 1e-5), "{}: scales", tb.name);
                assert!(close(&tb.mean_abs, &ob.mean_abs, 1e-5), "{}: mean |x|", tb.name);
                assert!((tb.zeroed_fraction - ob.zeroed_fraction).abs() < 1e-3, "{}: zeroed share", tb.name);
            }
            windows += 1;
        }
    }
    assert_eq!(windows, (1 + 2 + 3) + (4 + 5 + 6) + 2);
}

/// Small requests for a model on the fused forward run on the caller's thread: the same
/// answers (bit for bit) as through the queue, each in a pass of its own, within the same
/// capacity; larger ones still go through the queue; unload and shutdown apply to both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn small_fused_requests_run_on_the_callers_thread_with_the_queues_answers() {
    async fn answers(inline_max_windows: usize) -> (Engine, Vec<Prediction>) {
        let config = EngineConfig { inline_max_windows, queue_capacity: 8, ..engine_config() };
        let engine = Engine::start(config).unwrap();
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cwru-bearing");
        let card = ModelCard::read(&dir).unwrap();
        let served = engine.load(key(BEARING), card.spec, dir.join(WEIGHTS_FILE), card.ood).await.unwrap();
        assert_eq!(served, Backend::Fused);
        let mut out = Vec::new();
        for (windows, diagnostics) in [(1, false), (3, true), (4, false), (5, true)] {
            let inputs = (0..windows).flat_map(|i| signal(2048, 70 + i)).collect();
            let request = Request { model: key(BEARING), inputs, windows: windows as usize, diagnostics };
            out.push(engine.infer(request).await.unwrap());
        }
        (engine, out)
    }
    let (_, queued) = answers(0).await;
    let (engine, inline) = answers(4).await;
    for (q, i) in queued.iter().zip(&inline) {
        assert_eq!(q.windows, i.windows, "the same values from either path");
    }
    // Up to four windows ran here, alone and unqueued; five went through the queue.
    for p in &inline[..3] {
        assert_eq!((p.batch_windows, p.queued), (p.windows.len(), Duration::ZERO));
    }
    assert_eq!(inline[3].batch_windows, 5);
    assert!(inline[1].windows.iter().all(|w| !w.blocks.is_empty() && w.ood_score.is_some()));
    // The queue's capacity (8 windows here) bounds them too; wrong sizes are refused alike.
    let nine = Request { model: key(BEARING), inputs: vec![0.1; 9 * 2048], windows: 9, diagnostics: false };
    assert!(matches!(engine.infer(nine).await, Err(EngineError::TooLarge { windows: 9, capacity: 8 })));
    let wrong = engine.infer(request(BEARING, vec![0.0; 100], 1)).await.unwrap_err();
    assert!(wrong.to_string().contains("100 values for 1 windows of 2048"), "{wrong}");
    engine.unload(key(BEARING)).await.unwrap();
    assert!(matches!(engine.infer(request(BEARING, signal(2048, 1), 1)).await, Err(EngineError::NotLoaded(_))));
    let (engine, _) = answers(4).await;
    engine.shutdown();
    assert!(matches!(engine.infer(request(BEARING, signal(2048, 1), 1)).await, Err(EngineError::Stopped)));
    tokio::task::spawn_blocking(move || engine.join()).await.unwrap();
}
