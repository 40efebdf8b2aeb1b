//! The diagnosis service through HTTP on a real server: every input kind, the reports,
//! the errors, live model swaps.

use std::time::Duration;

use crate::common::*;
use drsn::engine::EngineConfig;
use drsn::http::HttpConfig;
use serde_json::{json, Value};

fn sum(probs: &[(String, f64)]) -> f64 {
    probs.iter().map(|(_, p)| p).sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints_answer_once_models_are_loaded() {
    let app = spawn_app().await;
    let live = ok(app.client.get(app.url("/health/live")).send().await.unwrap()).await;
    assert_eq!(live["status"], "live");
    let ready = ok(app.client.get(app.url("/health/ready")).send().await.unwrap()).await;
    assert_eq!(ready["status"], "ready");
    assert_eq!(ready["models"], json!([BEARING, DIGITS, TWO_CHANNEL]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn models_are_listed_with_their_versions_and_cards() {
    let app = spawn_app().await;
    let list = ok(app.client.get(app.url("/models")).send().await.unwrap()).await;
    let bearing = list.as_array().unwrap().iter().find(|m| m["name"] == BEARING).expect("listed");
    assert_eq!(bearing["version"], 1);
    assert_eq!(bearing["versions"], json!([1]));
    assert_eq!(bearing["input_shape"], json!([1, 2048]));
    assert_eq!(bearing["arch"], "drsn-cw");
    assert_eq!(bearing["sample_rate"], 12_000);
    assert_eq!(bearing["classes"].as_array().unwrap().len(), 10);
    let card = ok(app.client.get(app.url(&format!("/models/{DIGITS}"))).send().await.unwrap()).await;
    assert_eq!(card["name"], DIGITS);
    assert_eq!(card["spec"]["dim"], "2d");
    assert_eq!(card["normalization"], "none");
    let response = app.client.get(app.url("/models/nope")).send().await.unwrap();
    let message = expect_error(response, 404, "unknown_model").await;
    assert!(message.contains("\"nope\"") && message.contains(BEARING), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_json_window_gets_probabilities_over_every_class_that_sum_to_one() {
    let app = spawn_app().await;
    let body = ok(app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 1)})).await).await;
    assert_eq!(body["model"], json!({"name": BEARING, "version": 1}));
    let windows = body["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 1);
    let probs = probabilities(&windows[0]);
    let mut names: Vec<&str> = probs.iter().map(|(c, _)| c.as_str()).collect();
    names.sort();
    let mut expected = CWRU_CLASSES.to_vec();
    expected.sort();
    assert_eq!(names, expected);
    assert!((sum(&probs) - 1.0).abs() < 1e-4, "{probs:?}");
    let best = probs.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
    assert_eq!(windows[0]["label"], best.0.as_str());
    let t = &body["timings"];
    assert!(t["total_ms"].as_f64().unwrap() >= t["inference_ms"].as_f64().unwrap());
    assert!(t["batch_windows"].as_u64().unwrap() >= 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn windows_come_back_in_request_order_with_the_same_answers_as_alone() {
    let app = spawn_app().await;
    let signals: Vec<Vec<f32>> = (0..6).map(|i| signal(2048, 10 + i)).collect();
    let many = ok(app.diagnose(&json!({"model": BEARING, "signals": signals, "diagnostics": "none"})).await).await;
    let windows = many["windows"].as_array().unwrap();
    assert_eq!(windows.len(), 6);
    for (i, s) in signals.iter().enumerate() {
        assert_eq!(windows[i]["index"], i);
        let alone = ok(app.diagnose(&json!({"model": BEARING, "signal": s, "diagnostics": "none"})).await).await;
        let (a, b) = (probabilities(&windows[i]), probabilities(&alone["windows"][0]));
        for ((ca, pa), (cb, pb)) in a.iter().zip(&b) {
            assert_eq!(ca, cb);
            assert!((pa - pb).abs() < 1e-5, "window {i}: {ca} {pa} vs {pb}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn z_score_normalisation_makes_the_answer_independent_of_offset_and_gain() {
    let app = spawn_app().await;
    let x = signal(2048, 3);
    let scaled: Vec<f32> = x.iter().map(|v| 7.5 * v - 3.0).collect();
    let a = ok(app.diagnose(&json!({"model": BEARING, "signal": x})).await).await;
    let b = ok(app.diagnose(&json!({"model": BEARING, "signal": scaled})).await).await;
    for ((_, pa), (_, pb)) in probabilities(&a["windows"][0]).iter().zip(&probabilities(&b["windows"][0])) {
        assert!((pa - pb).abs() < 1e-4, "{pa} vs {pb}");
    }
    // Without normalisation (the image model), the scale matters.
    let image: Vec<Vec<f32>> = (0..28).map(|r| (0..28).map(|c| ((r * 28 + c) % 17) as f32 / 16.0).collect()).collect();
    let dark: Vec<Vec<f32>> = image.iter().map(|row| row.iter().map(|v| v * 0.1).collect()).collect();
    let a = ok(app.diagnose(&json!({"model": DIGITS, "signal": image})).await).await;
    let b = ok(app.diagnose(&json!({"model": DIGITS, "signal": dark})).await).await;
    let diff: f64 = probabilities(&a["windows"][0])
        .iter()
        .zip(&probabilities(&b["windows"][0]))
        .map(|((_, pa), (_, pb))| (pa - pb).abs())
        .sum();
    assert!(diff > 1e-4, "a darker image gave the same probabilities");
}

/// Checks the blocks of one window against the model's layout: `widths` channels per unit.
fn check_blocks(window: &Value, widths: &[usize], per_channel: bool, full: bool) {
    let blocks = window["blocks"].as_array().expect("blocks");
    assert_eq!(blocks.len(), widths.len());
    for (i, (block, &c)) in blocks.iter().zip(widths).enumerate() {
        assert_eq!(block["name"], format!("units.{i}"));
        let thresholds = block["thresholds"].as_array().unwrap();
        assert_eq!(thresholds.len(), if per_channel { c } else { 1 }, "{block}");
        assert!(thresholds.iter().all(|t| t.as_f64().unwrap() > 0.0), "{block}");
        let zeroed = block["zeroed_fraction"].as_f64().unwrap();
        assert!((0.0..=1.0).contains(&zeroed), "{zeroed}");
        if full {
            assert_eq!(block["scales"].as_array().unwrap().len(), thresholds.len());
            let mean_abs = block["mean_abs"].as_array().unwrap();
            assert_eq!(mean_abs.len(), c);
            // tau = scale * mean|x| <= mean|x| (per channel for CW, over channels for CS).
            let m: Vec<f64> = mean_abs.iter().map(|v| v.as_f64().unwrap()).collect();
            for (j, t) in thresholds.iter().enumerate() {
                let bound = if per_channel { m[j] } else { m.iter().sum::<f64>() / c as f64 };
                assert!(t.as_f64().unwrap() <= bound * (1.0 + 1e-5), "{block}");
            }
        } else {
            assert!(block.get("scales").is_none() && block.get("mean_abs").is_none(), "{block}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn diagnostics_follow_the_model_one_threshold_per_channel_for_cw_and_one_for_cs() {
    let app = spawn_app().await;
    let cw_widths: Vec<usize> = [4, 8, 16].iter().flat_map(|&c| [c; 4]).collect();
    for level in ["summary", "full"] {
        let body = ok(app
            .diagnose(&json!({"model": BEARING, "signals": [signal(2048, 4), signal(2048, 5)], "diagnostics": level}))
            .await)
        .await;
        for w in body["windows"].as_array().unwrap() {
            check_blocks(w, &cw_widths, true, level == "full");
        }
        let image = vec![vec![0.5f32; 28]; 28];
        let body = ok(app.diagnose(&json!({"model": DIGITS, "signal": image, "diagnostics": level})).await).await;
        check_blocks(&body["windows"][0], &[8], false, level == "full");
    }
    let body =
        ok(app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 4), "diagnostics": "none"})).await).await;
    assert!(body["windows"][0].get("blocks").is_none());
    // The default is a summary.
    let body = ok(app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 4)})).await).await;
    check_blocks(&body["windows"][0], &cw_widths, true, false);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn multi_channel_and_image_shapes_are_accepted_in_every_documented_form() {
    let app = spawn_app().await;
    let window = vec![signal(256, 1), signal(256, 2)];
    let one = ok(app.diagnose(&json!({"model": TWO_CHANNEL, "signal": window})).await).await;
    assert_eq!(one["windows"].as_array().unwrap().len(), 1);
    let two = ok(app.diagnose(&json!({"model": TWO_CHANNEL, "signals": [window.clone(), window.clone()]})).await).await;
    assert_eq!(two["windows"].as_array().unwrap().len(), 2);
    let image = vec![vec![0.25f32; 28]; 28];
    for body in [
        json!({"model": DIGITS, "signal": image}),
        json!({"model": DIGITS, "signal": [image]}),
        json!({"model": DIGITS, "signals": [image, image, image]}),
        json!({"model": DIGITS, "signals": [[image], [image]]}),
        json!({"model": BEARING, "signal": [signal(2048, 1)]}),
        json!({"model": BEARING, "signals": [[signal(2048, 1)], [signal(2048, 2)]]}),
    ] {
        let n = body["signals"].as_array().map_or(1, |a| a.len());
        let r = ok(app.diagnose(&body).await).await;
        assert_eq!(r["windows"].as_array().unwrap().len(), n, "{}", r["windows"]);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_json_windows_are_refused_with_422_saying_what_was_expected() {
    let app = spawn_app().await;
    let cases = vec![
        (json!({"model": BEARING, "signal": signal(1000, 1)}), "2048 samples"),
        (json!({"model": BEARING, "signals": signal(2048, 1)}), "shape [2048]"),
        (json!({"model": BEARING, "signal": [[[1.0]]]}), "shape [1, 1, 1]"),
        (json!({"model": BEARING, "signals": []}), "empty array"),
        (json!({"model": BEARING, "signal": [1.0, "a"]}), "invalid JSON body"),
        (json!({"model": BEARING, "signal": [[1.0, 2.0], [3.0]]}), "rectangular"),
        (json!({"model": BEARING}), "exactly one of"),
        (json!({"model": BEARING, "signal": [1.0], "signals": [[1.0]]}), "exactly one of"),
        (json!({"signal": [1.0]}), "missing field `model`"),
        (json!({"model": BEARING, "signal": [1.0], "colour": "red"}), "unknown field `colour`"),
        (json!({"model": BEARING, "signal": signal(2048, 1), "diagnostics": "lots"}), "unknown variant `lots`"),
        (json!({"model": DIGITS, "signal": vec![vec![0.0f32; 27]; 28]}), "28x28 pixels"),
        (json!({"model": DIGITS, "signal": vec![0.0f32; 28]}), "shape [28]"),
        (json!({"model": DIGITS, "signal": vec![vec![0.0f32; 28]; 28], "sample_rate": 8000}), "images"),
        (json!({"model": TWO_CHANNEL, "signal": signal(256, 1)}), "[2, 256]"),
    ];
    for (body, needle) in cases {
        let message = expect_error(app.diagnose(&body).await, 422, "validation").await;
        assert!(message.contains(needle), "{body:.80}: {message}");
    }
    // Numbers JSON cannot hold as f32, and tokens JSON does not allow.
    let huge = format!("{{\"model\": \"{BEARING}\", \"signal\": [1e39{}]}}", ", 0.0".repeat(2047));
    let nan = format!("{{\"model\": \"{BEARING}\", \"signal\": [NaN{}]}}", ", 0.0".repeat(2047));
    for (text, needle) in [(huge, "not a finite"), (nan, "invalid JSON body")] {
        let response = app
            .client
            .post(app.url("/diagnose"))
            .header("content-type", "application/json")
            .body(text)
            .send()
            .await
            .unwrap();
        let message = expect_error(response, 422, "validation").await;
        assert!(message.contains(needle), "{message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_models_and_versions_answer_404() {
    let app = spawn_app().await;
    let message =
        expect_error(app.diagnose(&json!({"model": "pump", "signal": [1.0]})).await, 404, "unknown_model").await;
    assert!(message.contains("\"pump\""), "{message}");
    let message = expect_error(
        app.diagnose(&json!({"model": BEARING, "version": 9, "signal": signal(2048, 1)})).await,
        404,
        "unknown_model",
    )
    .await;
    assert!(message.contains("no version 9"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_content_types_answer_415() {
    let app = spawn_app().await;
    let response = app
        .client
        .post(app.url("/diagnose"))
        .header("content-type", "application/xml")
        .body("<a/>")
        .send()
        .await
        .unwrap();
    let message = expect_error(response, 415, "unsupported_media_type").await;
    // The answer names what came and every type that is read (CSV among them).
    assert!(
        message.contains("application/xml") && message.contains("application/json") && message.contains("text/csv"),
        "{message}"
    );
    let response = app.client.post(app.url("/diagnose")).body("[1]").send().await.unwrap();
    expect_error(response, 415, "unsupported_media_type").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_over_the_configured_limit_answers_413() {
    let app = spawn_app_with(engine_config(), HttpConfig { body_limit: 10_000, ..Default::default() }).await;
    let message = expect_error(
        app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 1)})).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(message.contains("10000 bytes"), "{message}");
    // Far over the limit (64 windows, about 1.3 MB): still a clean 413, not a reset connection.
    let many: Vec<Vec<f32>> = (0..64).map(|i| signal(2048, i)).collect();
    for _ in 0..5 {
        expect_error(app.diagnose(&json!({"model": BEARING, "signals": many})).await, 413, "payload_too_large").await;
    }
    // Within the limit it works.
    let small =
        ok(app.diagnose(&json!({"model": TWO_CHANNEL, "signal": [vec![0.5f32; 256], vec![0.25f32; 256]]})).await).await;
    assert_eq!(small["windows"].as_array().unwrap().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_queue_answers_429_and_the_queued_request_still_succeeds() {
    // Two windows fit. A request announced as on its way (and never sent) makes the first
    // request's batch wait 600 ms for it, so the second finds no room. (Every request
    // through the queue: run where they are read, they would hold no room while waiting.)
    let engine = EngineConfig {
        queue_capacity: 2,
        max_wait: Duration::from_millis(600),
        inline_max_windows: 0,
        ..engine_config()
    };
    let app = spawn_app_with(engine, HttpConfig::default()).await;
    let announced = app.state.registry.engine().incoming();
    let first = {
        let (client, url) = (app.client.clone(), app.url("/diagnose"));
        let body = json!({"model": BEARING, "signals": [signal(2048, 1), signal(2048, 2)]});
        tokio::spawn(async move { client.post(url).json(&body).send().await.unwrap() })
    };
    tokio::time::sleep(Duration::from_millis(150)).await;
    let response = app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 3)})).await;
    assert_eq!(response.headers()["retry-after"], "1");
    let message = expect_error(response, 429, "overloaded").await;
    assert!(message.contains("queue is full"), "{message}");
    drop(announced);
    let first = ok(first.await.unwrap()).await;
    assert_eq!(first["windows"].as_array().unwrap().len(), 2);
    // More windows than the queue can ever hold: 413, not a retry loop.
    let three: Vec<Vec<f32>> = (0..3).map(|i| signal(2048, i)).collect();
    let message =
        expect_error(app.diagnose(&json!({"model": BEARING, "signals": three})).await, 413, "payload_too_large").await;
    assert!(message.contains("3 windows"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopped_engine_makes_the_service_not_ready_with_503() {
    let app = spawn_app().await;
    app.state.registry.engine().shutdown();
    let response = app.client.get(app.url("/health/ready")).send().await.unwrap();
    expect_error(response, 503, "not_ready").await;
    let response = app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 1)})).await;
    expect_error(response, 503, "not_ready").await;
    let live = app.client.get(app.url("/health/live")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_routes_and_methods_answer_in_the_error_format() {
    let app = spawn_app().await;
    expect_error(app.client.get(app.url("/nothing")).send().await.unwrap(), 404, "not_found").await;
    expect_error(app.client.get(app.url("/diagnose")).send().await.unwrap(), 405, "method_not_allowed").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_openapi_document_and_swagger_ui_are_served() {
    let app = spawn_app().await;
    let doc = ok(app.client.get(app.url("/openapi.json")).send().await.unwrap()).await;
    for path in ["/diagnose", "/models", "/models/{name}", "/health/ready", "/metrics"] {
        assert!(doc["paths"].get(path).is_some(), "{path} missing from the OpenAPI document");
    }
    assert!(doc["components"]["schemas"].get("DiagnoseResponse").is_some());
    let ui = app.client.get(app.url("/docs/")).send().await.unwrap();
    assert_eq!(ui.status().as_u16(), 200);
    assert!(ui.text().await.unwrap().contains("swagger"), "not the Swagger UI");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_count_requests_by_route_and_status() {
    let app = spawn_app().await;
    ok(app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 1)})).await).await;
    expect_error(app.diagnose(&json!({"model": "pump", "signal": [1.0]})).await, 404, "unknown_model").await;
    let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
    for needle in [
        "drsn_http_requests_total{route=\"/diagnose\",method=\"POST\",status=\"200\"}",
        "drsn_http_requests_total{route=\"/diagnose\",method=\"POST\",status=\"404\"}",
        "drsn_http_failures_total{reason=\"unknown_model\"}",
        "drsn_batch_size_bucket{model=\"bearing-cw\"",
        "drsn_queue_duration_seconds_bucket{model=\"bearing-cw\"",
        "drsn_inference_duration_seconds_bucket{model=\"bearing-cw\"",
        "drsn_queue_depth",
    ] {
        assert!(text.contains(needle), "{needle} missing from\n{text}");
    }
}

async fn served_version(app: &TestApp, body: Value) -> (u64, Vec<(String, f64)>) {
    let r = ok(app.diagnose(&body).await).await;
    (r["model"]["version"].as_u64().unwrap(), probabilities(&r["windows"][0]))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_goes_into_service_live_survives_a_restart_and_rolls_back() {
    let app = spawn_app().await;
    let registry = app.state.registry.clone();
    assert_eq!(registry.next_version(BEARING), 2);
    let card = registry.active(BEARING).unwrap().card.clone();
    let dir = registry.version_dir(BEARING, 2).unwrap();
    write_model(&dir, BEARING, 2, &card.spec, &card.classes, card.sample_rate, card.normalization, 99);
    let body = json!({"model": BEARING, "signal": signal(2048, 7), "diagnostics": "none"});
    let (v, before) = served_version(&app, body.clone()).await;
    assert_eq!(v, 1);

    // Added: loaded and reachable by version, but not yet in service.
    registry.add_version(BEARING, 2).await.unwrap();
    assert_eq!(served_version(&app, body.clone()).await.0, 1);
    let mut pinned = body.clone();
    pinned["version"] = json!(2);
    let (v, v2) = served_version(&app, pinned).await;
    assert_eq!(v, 2);
    assert_ne!(before, v2, "a differently seeded model gave identical probabilities");

    registry.activate(BEARING, 2).await.unwrap();
    let (v, after) = served_version(&app, body.clone()).await;
    assert_eq!((v, &after), (2, &v2));
    let list = ok(app.client.get(app.url("/models")).send().await.unwrap()).await;
    let entry = list.as_array().unwrap().iter().find(|m| m["name"] == BEARING).unwrap().clone();
    assert_eq!(
        (entry["version"].clone(), entry["versions"].clone(), entry["origin"].clone()),
        (json!(2), json!([1, 2]), json!("data_dir"))
    );

    // A restart on the same data folder serves the activated version.
    let again =
        spawn_app_on(fixtures().models.clone(), app.data_dir.clone(), engine_config(), HttpConfig::default()).await;
    assert_eq!(served_version(&again, body.clone()).await.0, 2);

    // Roll back.
    registry.activate(BEARING, 1).await.unwrap();
    let (v, rolled) = served_version(&app, body.clone()).await;
    assert_eq!((v, rolled), (1, before));
    let err = registry.activate(BEARING, 7).await.unwrap_err().to_string();
    assert!(err.contains("no version 7"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_under_a_new_name_is_served_with_its_first_version() {
    let app = spawn_app().await;
    let registry = app.state.registry.clone();
    let spec = drsn::nn::ModelSpec::preset("seed-2d", drsn::nn::Arch::DrsnCw, 4).unwrap();
    let classes: Vec<String> = ["w", "x", "y", "z"].iter().map(|c| c.to_string()).collect();
    assert_eq!(registry.next_version("glyphs"), 1);
    let dir = registry.version_dir("glyphs", 1).unwrap();
    write_model(&dir, "glyphs", 1, &spec, &classes, None, drsn::data::Normalization::None, 5);
    registry.add_version("glyphs", 1).await.unwrap();
    let r = ok(app.diagnose(&json!({"model": "glyphs", "signal": vec![vec![0.3f32; 28]; 28]})).await).await;
    assert_eq!(r["model"], json!({"name": "glyphs", "version": 1}));
    assert_eq!(probabilities(&r["windows"][0]).len(), 4);
    // Names that could escape the data folder are refused.
    assert!(registry.version_dir("../etc", 1).is_err());
    // A version whose card disagrees with its folder is refused, and nothing changes.
    let dir = registry.version_dir("glyphs", 2).unwrap();
    write_model(&dir, "glyphs", 3, &spec, &classes, None, drsn::data::Normalization::None, 6);
    let err = registry.add_version("glyphs", 2).await.unwrap_err().to_string();
    assert!(err.contains("the card says glyphs version 3"), "{err}");
    assert_eq!(registry.next_version("glyphs"), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn versions_named_by_requests_are_loaded_on_demand_and_the_least_used_unloaded() {
    let data = tempfile::tempdir().unwrap();
    let spec = drsn::nn::ModelSpec::preset("paper-1d", drsn::nn::Arch::DrsnCw, 10).unwrap();
    let classes: Vec<String> = CWRU_CLASSES.iter().map(|c| c.to_string()).collect();
    for version in 2..=8 {
        let dir = data.path().join(format!("models/{BEARING}/{version}"));
        write_model(
            &dir,
            BEARING,
            version,
            &spec,
            &classes,
            Some(12_000),
            drsn::data::Normalization::ZScore,
            version as i64,
        );
    }
    // Version 1 stays in service: the highest is served unless ACTIVE says otherwise.
    std::fs::write(data.path().join(format!("models/{BEARING}/ACTIVE")), "1\n").unwrap();
    let app =
        spawn_app_on(fixtures().models.clone(), data.path().to_path_buf(), engine_config(), HttpConfig::default())
            .await;
    let loaded = |app: &TestApp| app.state.registry.loaded().into_iter().filter(|k| k.name == BEARING).count();
    assert_eq!(loaded(&app), 1, "only the active version is loaded at start");
    for version in (2..=8).chain([2, 3]) {
        let response =
            app.diagnose(&json!({"model": BEARING, "version": version, "signal": signal(2048, version)})).await;
        assert_eq!(response.status(), 200, "version {version}");
        let body: Value = response.json().await.unwrap();
        assert_eq!(body["model"]["version"], version);
        let inactive = loaded(&app) - 1;
        assert!(inactive <= drsn::registry::DEFAULT_MAX_LOADED_VERSIONS, "{inactive} inactive versions loaded");
    }
    let mut keys: Vec<u32> =
        app.state.registry.loaded().into_iter().filter(|k| k.name == BEARING).map(|k| k.version).collect();
    keys.sort();
    // The active one and the four used last (8, 7 and 6 before 2 and 3 came back).
    assert_eq!(keys, vec![1, 2, 3, 7, 8]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_whose_client_has_gone_is_dropped_from_the_queue_before_it_is_computed() {
    // Every request through the queue (one of a window would otherwise run where it is read).
    let engine = EngineConfig { queue_capacity: 16_384, inline_max_windows: 0, ..engine_config() };
    let app = spawn_app_with(engine, HttpConfig::default()).await;
    let abandoned = |text: &str| -> f64 {
        text.lines()
            .find(|l| l.starts_with("drsn_abandoned_requests_total"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0)
    };
    let before = abandoned(&app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap());
    // Long requests keep the one worker busy while another waits in the queue behind them.
    let long: Vec<u8> = signal(2048 * 1900, 1).iter().flat_map(|v| v.to_le_bytes()).collect();
    let busy: Vec<_> = (0..4)
        .map(|_| {
            let (client, url) = (app.client.clone(), app.url(&format!("/diagnose?model={BEARING}&diagnostics=full")));
            let long = long.clone();
            tokio::spawn(async move {
                client.post(url).header("content-type", "application/octet-stream").body(long).send().await
            })
        })
        .collect();
    // Wait until at least two of them are queued (decoded, not yet taken by the worker).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let text = app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap();
        let depth: f64 = text
            .lines()
            .find(|l| l.starts_with("drsn_queue_depth"))
            .and_then(|l| l.rsplit(' ').next()?.parse().ok())
            .unwrap_or(0.0);
        if depth >= 2.0 * 1900.0 {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "the long requests never queued");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let gone = {
        let (client, url) = (reqwest::Client::new(), app.url("/diagnose"));
        tokio::spawn(async move {
            client.post(url).json(&json!({"model": BEARING, "signal": signal(2048, 2)})).send().await
        })
    };
    tokio::time::sleep(Duration::from_millis(50)).await;
    gone.abort();
    for request in busy {
        assert_eq!(request.await.unwrap().unwrap().status(), 200);
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    let after = abandoned(&app.client.get(app.url("/metrics")).send().await.unwrap().text().await.unwrap());
    // (The counter is process-wide; no other test here abandons requests.)
    assert!(after - before >= 1.0, "the abandoned request was not dropped from the queue ({before} -> {after})");
}
