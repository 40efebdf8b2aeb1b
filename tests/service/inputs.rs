//! Every kind of body `POST /diagnose` takes: WAV (body and multipart), raw f32, PNG and
//! JPEG (body and multipart), JSON at another sampling rate; and how each is refused.

use crate::common::*;
use image::ImageFormat;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

fn all_probabilities(body: &Value) -> Vec<Vec<(String, f64)>> {
    body["windows"].as_array().unwrap().iter().map(probabilities).collect()
}

fn assert_close(a: &[Vec<(String, f64)>], b: &[Vec<(String, f64)>], tol: f64) {
    assert_eq!(a.len(), b.len(), "window counts differ");
    for (i, (wa, wb)) in a.iter().zip(b).enumerate() {
        for ((ca, pa), (cb, pb)) in wa.iter().zip(wb) {
            assert_eq!(ca, cb);
            assert!((pa - pb).abs() < tol, "window {i} {ca}: {pa} vs {pb}");
        }
    }
}

/// Five whole windows and a tail too short for a sixth.
fn recording() -> Vec<f32> {
    signal(5 * 2048 + 100, 42)
}

/// The same windows as JSON, cut by hand.
async fn json_answers(app: &TestApp, rec: &[f32], stride: usize) -> Vec<Vec<(String, f64)>> {
    let windows: Vec<&[f32]> =
        (0..).map(|i| i * stride).take_while(|s| s + 2048 <= rec.len()).map(|s| &rec[s..s + 2048]).collect();
    let body = ok(app.diagnose(&json!({"model": BEARING, "signals": windows, "diagnostics": "none"})).await).await;
    all_probabilities(&body)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wav_body_is_cut_into_windows_with_a_verdict_for_the_recording() {
    let app = spawn_app().await;
    let rec = recording();
    let wav = wav_f32(std::slice::from_ref(&rec), 12_000);
    let expected = json_answers(&app, &rec, 2048).await;
    for content_type in ["audio/wav", "audio/x-wav", "audio/wave"] {
        let body =
            ok(app.post_diagnose(&format!("?model={BEARING}&diagnostics=none"), content_type, wav.clone()).await).await;
        assert_close(&all_probabilities(&body), &expected, 1e-5);
        let starts: Vec<u64> =
            body["windows"].as_array().unwrap().iter().map(|w| w["start"].as_u64().unwrap()).collect();
        assert_eq!(starts, vec![0, 2048, 4096, 6144, 8192]);
        let verdict = &body["recording"];
        assert_eq!(
            (verdict["windows"].clone(), verdict["stride"].clone(), verdict["samples"].clone()),
            (json!(5), json!(2048), json!(rec.len()))
        );
        assert!(verdict.get("resampled_from").is_none());
        let mean: Vec<(String, f64)> = verdict["probabilities"]
            .as_object()
            .unwrap()
            .iter()
            .map(|(k, v)| (k.clone(), v.as_f64().unwrap()))
            .collect();
        assert!((mean.iter().map(|p| p.1).sum::<f64>() - 1.0).abs() < 1e-4);
        for (class, p) in &mean {
            let by_hand: f64 =
                expected.iter().map(|w| w.iter().find(|(c, _)| c == class).unwrap().1).sum::<f64>() / 5.0;
            assert!((p - by_hand).abs() < 1e-5, "{class}");
        }
        let shares: f64 = verdict["shares"].as_object().unwrap().values().map(|v| v.as_f64().unwrap()).sum();
        assert!((shares - 1.0).abs() < 1e-5);
        let best = mean.iter().max_by(|a, b| a.1.total_cmp(&b.1)).unwrap();
        assert_eq!(verdict["label"], best.0.as_str());
    }
    // A stride shorter than the window: overlapping windows.
    let body =
        ok(app.post_diagnose(&format!("?model={BEARING}&stride=1024&diagnostics=none"), "audio/wav", wav).await).await;
    assert_close(&all_probabilities(&body), &json_answers(&app, &rec, 1024).await, 1e-5);
    assert_eq!(body["recording"]["stride"], 1024);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_at_another_rate_is_resampled_to_the_models() {
    let app = spawn_app().await;
    let rec = signal(48_000, 3); // one second at 48 kHz
    let body = ok(app
        .post_diagnose(&format!("?model={BEARING}"), "audio/wav", wav_f32(std::slice::from_ref(&rec), 48_000))
        .await)
    .await;
    let verdict = &body["recording"];
    assert_eq!(verdict["resampled_from"], 48_000);
    assert_eq!(verdict["sample_rate"], 12_000);
    assert_eq!(verdict["samples"], 12_000);
    assert_eq!(verdict["windows"], 12_000 / 2048);
    // Raw samples say their rate in the query; same recording, same answers.
    let raw = ok(app
        .post_diagnose(&format!("?model={BEARING}&sample_rate=48000"), "application/octet-stream", f32_le(&rec))
        .await)
    .await;
    assert_close(&all_probabilities(&raw), &all_probabilities(&body), 1e-6);
    // JSON windows at 24 kHz: 4096 samples each become the model's 2048.
    let at_24k = signal(4096, 5);
    let body = ok(app.diagnose(&json!({"model": BEARING, "signal": at_24k, "sample_rate": 24_000})).await).await;
    assert_eq!(body["windows"].as_array().unwrap().len(), 1);
    let message = expect_error(
        app.diagnose(&json!({"model": BEARING, "signal": signal(2048, 5), "sample_rate": 24_000})).await,
        422,
        "validation",
    )
    .await;
    assert!(message.contains("becomes 1024 samples") && message.contains("send 4096 samples"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_f32_bodies_are_recordings_for_signal_models_and_images_for_image_models() {
    let app = spawn_app().await;
    let rec = recording();
    let wav = ok(app
        .post_diagnose(&format!("?model={BEARING}"), "audio/wav", wav_f32(std::slice::from_ref(&rec), 12_000))
        .await)
    .await;
    let raw = ok(app.post_diagnose(&format!("?model={BEARING}"), "application/octet-stream", f32_le(&rec)).await).await;
    assert_close(&all_probabilities(&raw), &all_probabilities(&wav), 1e-6);
    // Two channels interleaved for the two-channel model.
    let (a, b) = (signal(600, 1), signal(600, 2));
    let interleaved: Vec<f32> = a.iter().zip(&b).flat_map(|(x, y)| [*x, *y]).collect();
    let raw = ok(app
        .post_diagnose(&format!("?model={TWO_CHANNEL}&stride=256"), "application/octet-stream", f32_le(&interleaved))
        .await)
    .await;
    let by_json = ok(app
        .diagnose(&json!({"model": TWO_CHANNEL, "signals": [[&a[..256], &b[..256]], [&a[256..512], &b[256..512]]]}))
        .await)
    .await;
    assert_close(&all_probabilities(&raw), &all_probabilities(&by_json), 1e-6);
    // Images back to back for the image model.
    let images: Vec<f32> = (0..2 * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    let raw =
        ok(app.post_diagnose(&format!("?model={DIGITS}"), "application/octet-stream", f32_le(&images)).await).await;
    let rows = |k: usize| -> Vec<Vec<f32>> { images[k * 784..(k + 1) * 784].chunks(28).map(|r| r.to_vec()).collect() };
    let by_json = ok(app.diagnose(&json!({"model": DIGITS, "signals": [rows(0), rows(1)]})).await).await;
    assert_close(&all_probabilities(&raw), &all_probabilities(&by_json), 1e-6);
    assert!(raw.get("recording").is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn png_and_jpeg_images_are_read_as_pixels_over_255_in_the_order_sent() {
    let app = spawn_app().await;
    let digits: Vec<Vec<u8>> =
        (0..3u32).map(|k| (0..784u32).map(|i| ((i * (k + 3) + k * 50) % 256) as u8).collect()).collect();
    let as_json =
        |px: &[u8]| -> Vec<Vec<f32>> { px.chunks(28).map(|r| r.iter().map(|&v| v as f32 / 255.0).collect()).collect() };
    let expected = ok(app.diagnose(&json!({"model": DIGITS, "signals": digits.iter().map(|d| as_json(d)).collect::<Vec<_>>(), "diagnostics": "none"})).await).await;
    let expected = all_probabilities(&expected);
    let png = encode_image(&digits[0], 28, 28, ImageFormat::Png);
    let body = ok(app.post_diagnose(&format!("?model={DIGITS}&diagnostics=none"), "image/png", png).await).await;
    assert_close(&all_probabilities(&body), &expected[..1], 1e-5);
    // Multipart: several images, answered in the order of the parts.
    let mut form = Form::new().text("model", DIGITS);
    for (k, d) in digits.iter().enumerate() {
        let part = Part::bytes(encode_image(d, 28, 28, ImageFormat::Png))
            .file_name(format!("digit{k}.png"))
            .mime_str("image/png")
            .unwrap();
        form = form.part(format!("file{k}"), part);
    }
    let body = ok(app.client.post(app.url("/diagnose?diagnostics=none")).multipart(form).send().await.unwrap()).await;
    assert_close(&all_probabilities(&body), &expected, 1e-5);
    // JPEG is lossy: close, not equal; a flat image survives JPEG exactly.
    let flat = vec![128u8; 784];
    let jpeg = encode_image(&flat, 28, 28, ImageFormat::Jpeg);
    let by_jpeg = ok(app.post_diagnose(&format!("?model={DIGITS}&diagnostics=none"), "image/jpeg", jpeg).await).await;
    let by_json =
        ok(app.diagnose(&json!({"model": DIGITS, "signal": as_json(&flat), "diagnostics": "none"})).await).await;
    assert_close(&all_probabilities(&by_jpeg), &all_probabilities(&by_json), 1e-3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_multipart_wav_upload_names_its_model_in_the_query_or_the_form() {
    let app = spawn_app().await;
    let rec = recording();
    let expected = json_answers(&app, &rec, 2048).await;
    // A client that labels the file application/octet-stream: the WAV signature decides.
    let part = || {
        Part::bytes(wav_f32(std::slice::from_ref(&rec), 12_000))
            .file_name("pump.wav")
            .mime_str("application/octet-stream")
            .unwrap()
    };
    let by_query = ok(app
        .client
        .post(app.url(&format!("/diagnose?model={BEARING}&diagnostics=none")))
        .multipart(Form::new().part("file", part()))
        .send()
        .await
        .unwrap())
    .await;
    assert_close(&all_probabilities(&by_query), &expected, 1e-5);
    let form = Form::new().text("model", BEARING).part("file", part());
    let by_form =
        ok(app.client.post(app.url("/diagnose?diagnostics=none")).multipart(form).send().await.unwrap()).await;
    assert_close(&all_probabilities(&by_form), &expected, 1e-5);
    assert_eq!(by_form["recording"]["windows"], 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_of_a_stereo_recording_can_be_chosen_for_a_mono_model() {
    let app = spawn_app().await;
    let (left, right) = (signal(4096, 8), signal(4096, 9));
    let stereo = wav_f32(&[left.clone(), right.clone()], 12_000);
    let message = expect_error(
        app.post_diagnose(&format!("?model={BEARING}"), "audio/wav", stereo.clone()).await,
        422,
        "validation",
    )
    .await;
    assert!(message.contains("2 channel(s)") && message.contains("?channel=N"), "{message}");
    let picked = ok(app.post_diagnose(&format!("?model={BEARING}&channel=1"), "audio/wav", stereo.clone()).await).await;
    let mono = ok(app.post_diagnose(&format!("?model={BEARING}"), "audio/wav", wav_f32(&[right], 12_000)).await).await;
    assert_close(&all_probabilities(&picked), &all_probabilities(&mono), 1e-6);
    let message = expect_error(
        app.post_diagnose(&format!("?model={BEARING}&channel=2"), "audio/wav", stereo.clone()).await,
        422,
        "validation",
    )
    .await;
    assert!(message.contains("numbered from 0"), "{message}");
    // The two-channel model takes both.
    let stereo_256 = wav_f32(&[left[..512].to_vec(), signal(512, 3)], 12_000);
    let both = ok(app.post_diagnose(&format!("?model={TWO_CHANNEL}"), "audio/wav", stereo_256).await).await;
    assert_eq!(both["windows"].as_array().unwrap().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn undecodable_short_and_ill_fitting_uploads_are_refused_with_422() {
    let app = spawn_app().await;
    let q = format!("?model={BEARING}");
    let d = format!("?model={DIGITS}");
    let mut with_nan = signal(4096, 1);
    with_nan[3000] = f32::NAN;
    let cases: Vec<(String, &str, Vec<u8>, &str)> = vec![
        (q.clone(), "audio/wav", b"RIFF....not a wav".to_vec(), "cannot decode the WAV body"),
        (
            q.clone(),
            "audio/wav",
            wav_f32(&[signal(1000, 1)], 12_000),
            "1000 samples per channel at 12000 Hz, fewer than one window of 2048",
        ),
        (q.clone(), "audio/wav", wav_f32(std::slice::from_ref(&with_nan), 12_000), "NaN"),
        (q.clone(), "application/octet-stream", vec![0, 0, 128, 63, 0], "not a whole number of 4-byte"),
        (q.clone(), "application/octet-stream", f32_le(&with_nan), "NaN"),
        (q.clone(), "application/octet-stream", Vec::new(), "no samples"),
        (format!("{q}&stride=0"), "audio/wav", wav_f32(&[signal(4096, 1)], 12_000), "stride must be at least 1"),
        (format!("{q}&stride=x"), "audio/wav", wav_f32(&[signal(4096, 1)], 12_000), "query string"),
        ("".into(), "audio/wav", wav_f32(&[signal(4096, 1)], 12_000), "?model=NAME"),
        (q.clone(), "image/png", encode_image(&[0; 784], 28, 28, ImageFormat::Png), "takes 1-D signal windows"),
        (d.clone(), "image/png", b"\x89PNG broken".to_vec(), "cannot decode the image 0"),
        (d.clone(), "image/png", encode_image(&[0; 30 * 28], 30, 28, ImageFormat::Png), "image 0 is 30x28 pixels"),
        (d.clone(), "audio/wav", wav_f32(&[signal(4096, 1)], 12_000), "takes images"),
        (d.clone(), "application/octet-stream", f32_le(&[0.5; 700]), "not a whole number of images of 784 values"),
    ];
    for (query, content_type, body, needle) in cases {
        let message = expect_error(app.post_diagnose(&query, content_type, body).await, 422, "validation").await;
        assert!(message.contains(needle), "{query} {content_type}: {message}");
    }
    let message = expect_error(
        app.post_diagnose("?model=pump", "audio/wav", wav_f32(&[signal(4096, 1)], 12_000)).await,
        404,
        "unknown_model",
    )
    .await;
    assert!(message.contains("pump"));
    // A multipart form without a file, and with a part of an unknown type.
    let form = Form::new().text("model", BEARING);
    let message =
        expect_error(app.client.post(app.url("/diagnose")).multipart(form).send().await.unwrap(), 422, "validation")
            .await;
    assert!(message.contains("no file"), "{message}");
    // A CSV part without a number in it is read as CSV and refused as such.
    let form = Form::new().part("file", Part::bytes(b"a,b".to_vec()).file_name("x.csv").mime_str("text/csv").unwrap());
    let message = expect_error(
        app.client.post(app.url(&format!("/diagnose{q}"))).multipart(form).send().await.unwrap(),
        422,
        "validation",
    )
    .await;
    assert!(message.to_lowercase().contains("csv"), "{message}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_cut_into_more_windows_than_the_queue_holds_answers_413() {
    let app = spawn_app().await;
    // 4096 windows fit the default queue; stride 2 over 20 000 samples makes 8977.
    let wav = wav_f32(&[signal(20_000, 1)], 12_000);
    let message = expect_error(
        app.post_diagnose(&format!("?model={BEARING}&stride=2"), "audio/wav", wav).await,
        413,
        "payload_too_large",
    )
    .await;
    assert!(message.contains("8977 windows"), "{message}");
    // A multipart body over the body limit.
    let small =
        spawn_app_with(engine_config(), drsn::http::HttpConfig { body_limit: 20_000, ..Default::default() }).await;
    let form = Form::new().part("file", Part::bytes(wav_f32(&[signal(12_000, 1)], 12_000)).file_name("a.wav"));
    let response =
        small.client.post(small.url(&format!("/diagnose?model={BEARING}"))).multipart(form).send().await.unwrap();
    expect_error(response, 413, "payload_too_large").await;
}
