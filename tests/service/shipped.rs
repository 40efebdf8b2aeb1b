//! The shipped models (`models/cwru-bearing`, `models/mnist`) served over HTTP, fed real
//! CWRU recordings and MNIST digits from `../shared/data` through every input kind.
//!
//! Two kinds of checks: the windows a model card says it was tested on, sent to the
//! service, score exactly the accuracy the card records (so the service windows, resamples
//! and normalises as training did); and single recordings and digits come back as their
//! true class.

use crate::common::real::*;
use crate::common::*;

use drsn::http::HttpConfig;
use drsn::registry::ModelCard;
use image::ImageFormat;
use reqwest::multipart::{Form, Part};
use serde_json::{json, Value};

async fn app() -> TestApp {
    spawn_app_serving(shipped(), engine_config(), HttpConfig::default()).await
}

fn labels(body: &Value) -> Vec<String> {
    body["windows"].as_array().unwrap().iter().map(|w| w["label"].as_str().unwrap().to_string()).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cwru_test_windows_score_through_the_service_exactly_what_the_card_records() {
    let app = app().await;
    let card = ModelCard::read(&shipped().join("cwru-bearing")).unwrap();
    let test = card.metrics.test.as_ref().expect("the card records a test accuracy");
    let (recorded, samples) = (test.accuracy, test.samples);
    let stretches = cwru_test_stretches(&card);
    assert!(stretches.len() >= 28, "{} test stretches", stretches.len());
    let (mut right, mut total) = (0, 0);
    for s in &stretches {
        let wav = wav_f32(std::slice::from_ref(&s.samples), 12_000);
        let body = ok(app.post_diagnose("?model=cwru-bearing&diagnostics=none", "audio/wav", wav).await).await;
        let got = labels(&body);
        total += got.len();
        right += got.iter().filter(|l| **l == s.label).count();
    }
    assert_eq!(total, samples, "windows cut by the service vs the card's test set");
    let accuracy = right as f64 / total as f64;
    assert!((accuracy - recorded).abs() <= 1.0 / total as f64 + 1e-9, "service {accuracy} vs card {recorded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn real_cwru_recordings_come_back_as_their_true_class_through_every_input_kind() {
    let app = app().await;
    let card = ModelCard::read(&shipped().join("cwru-bearing")).unwrap();
    let stretches = cwru_test_stretches(&card);
    for class in ["IR007", "IR021", "OR014@6", "B014"] {
        let s = stretches.iter().find(|s| s.label == class).unwrap_or_else(|| panic!("no {class} test stretch"));
        let windows: Vec<&[f32]> = s.samples.chunks_exact(2048).collect();
        let json_body = ok(app.diagnose(&json!({"model": "cwru-bearing", "signals": windows})).await).await;
        let wav = ok(app
            .post_diagnose("?model=cwru-bearing", "audio/wav", wav_f32(std::slice::from_ref(&s.samples), 12_000))
            .await)
        .await;
        let raw = ok(app
            .post_diagnose("?model=cwru-bearing&sample_rate=12000", "application/octet-stream", f32_le(&s.samples))
            .await)
        .await;
        let part =
            Part::bytes(wav_f32(std::slice::from_ref(&s.samples), 12_000)).file_name(s.file.replace(".mat", ".wav"));
        let form = Form::new().text("model", "cwru-bearing").part("file", part);
        let multipart = ok(app.client.post(app.url("/diagnose")).multipart(form).send().await.unwrap()).await;
        let expected = labels(&json_body);
        let right = expected.iter().filter(|l| *l == class).count();
        assert!(right * 10 >= expected.len() * 9, "{class} ({}): {expected:?}", s.file);
        for (kind, body) in [("WAV", &wav), ("raw f32", &raw), ("multipart", &multipart)] {
            assert_eq!(labels(body), expected, "{kind} vs JSON for {}", s.file);
            assert_eq!(body["recording"]["label"], class, "{kind} verdict for {}", s.file);
            let share = body["recording"]["shares"][class].as_f64().unwrap();
            assert!(share >= 0.9, "{kind}: {share} of the windows of {} said {class}", s.file);
        }
        // Diagnostics of the shipped DRSN-CW: every unit of every member, in order, one
        // threshold per channel (4/8/16 channels).
        let units = card.spec.shrink_units();
        assert_eq!(units.len(), 12 * card.spec.members as usize);
        for w in json_body["windows"].as_array().unwrap() {
            let probabilities: f64 = probabilities(w).iter().map(|(_, p)| p).sum();
            assert!((probabilities - 1.0).abs() < 1e-4);
            let blocks = w["blocks"].as_array().unwrap();
            assert_eq!(blocks.len(), units.len());
            for (b, (name, stage)) in blocks.iter().zip(&units) {
                assert_eq!(b["name"], name.as_str());
                assert_eq!(b["thresholds"].as_array().unwrap().len(), [4, 8, 16][*stage]);
                let z = b["zeroed_fraction"].as_f64().unwrap();
                assert!((0.0..=1.0).contains(&z));
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_mnist_test_set_scores_through_the_service_what_the_card_records() {
    let app = app().await;
    let card = ModelCard::read(&shipped().join("mnist")).unwrap();
    let recorded = card.metrics.clean_test.as_ref().expect("the card records a clean test accuracy").accuracy;
    let (digits, truth) = mnist_test(10_000);
    let mut right = 0;
    for (chunk, labels_chunk) in digits.chunks(1000).zip(truth.chunks(1000)) {
        let values: Vec<f32> = chunk.iter().flatten().map(|&p| p as f32 / 255.0).collect();
        let body =
            ok(app.post_diagnose("?model=mnist&diagnostics=none", "application/octet-stream", f32_le(&values)).await)
                .await;
        right += labels(&body).iter().zip(labels_chunk).filter(|(l, t)| **l == t.to_string()).count();
    }
    let accuracy = right as f64 / digits.len() as f64;
    assert!((accuracy - recorded).abs() <= 2e-4, "service {accuracy} vs card {recorded}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mnist_digits_come_back_as_their_true_class_as_png_jpeg_multipart_and_json() {
    let app = app().await;
    let (digits, truth) = mnist_test(40);
    let truth: Vec<String> = truth.iter().map(|t| t.to_string()).collect();
    let png: Vec<Vec<u8>> = digits.iter().map(|d| encode_image(d, 28, 28, ImageFormat::Png)).collect();
    let mut one_by_one = Vec::new();
    for p in &png {
        let body = ok(app.post_diagnose("?model=mnist", "image/png", p.clone()).await).await;
        one_by_one.extend(labels(&body));
    }
    let right = one_by_one.iter().zip(&truth).filter(|(a, b)| a == b).count();
    assert!(right >= 36, "{right}/40 PNG digits right: {one_by_one:?} vs {truth:?}");

    let mut form = Form::new().text("model", "mnist");
    for (i, p) in png.iter().enumerate() {
        form = form.part(
            format!("digit{i}"),
            Part::bytes(p.clone()).file_name(format!("{i}.png")).mime_str("image/png").unwrap(),
        );
    }
    let multipart = ok(app.client.post(app.url("/diagnose")).multipart(form).send().await.unwrap()).await;
    assert_eq!(labels(&multipart), one_by_one, "multipart PNGs in order");

    let images: Vec<Vec<Vec<f32>>> =
        digits.iter().map(|d| d.chunks(28).map(|r| r.iter().map(|&p| p as f32 / 255.0).collect()).collect()).collect();
    let json_body = ok(app.diagnose(&json!({"model": "mnist", "signals": images})).await).await;
    assert_eq!(labels(&json_body), one_by_one, "JSON vs PNG");
    // The shipped 2-D model is DRSN-CW at 8, 16 and 32 channels.
    let blocks = json_body["windows"][0]["blocks"].as_array().unwrap();
    let widths: Vec<usize> = blocks.iter().map(|b| b["thresholds"].as_array().unwrap().len()).collect();
    assert_eq!(widths, vec![8, 16, 32]);

    let mut jpeg_right = 0;
    for (d, t) in digits.iter().zip(&truth) {
        let jpeg = encode_image(d, 28, 28, ImageFormat::Jpeg);
        let body = ok(app.post_diagnose("?model=mnist&diagnostics=none", "image/jpeg", jpeg).await).await;
        jpeg_right += usize::from(labels(&body)[0] == *t);
    }
    assert!(jpeg_right >= 34, "{jpeg_right}/40 JPEG digits right");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_recording_gets_the_physics_second_opinion_beside_the_models_verdict() {
    let app = spawn_app_serving(shipped(), engine_config(), drsn::http::HttpConfig::default()).await;
    // A whole inner-race recording and a whole outer-race one, as 12 kHz WAV files.
    for (file, variable, family) in [
        ("12k_Drive_End_IR014_0_169.mat", "X169_DE_time", "inner_race"),
        ("12k_Drive_End_OR021@6_1_235.mat", "X235_DE_time", "outer_race"),
    ] {
        let options = drsn::data::ReadOptions { variable: Some(variable.into()), ..Default::default() };
        let recording = drsn::data::read_recording(&shared(&format!("cwru/{file}")), &options).unwrap();
        let wav = wav_f32(&recording.channels, 12_000);
        let body = ok(app.post_diagnose("?model=cwru-bearing&diagnostics=none", "audio/wav", wav).await).await;
        let physics = &body["physics"];
        assert_eq!(physics["evidence"]["verdict"]["fault"], family, "{file}: {physics:#}");
        assert_eq!(physics["model_family"], family, "{file}: the model's verdict {}", body["recording"]["label"]);
        assert_eq!(physics["agreement"], "agrees", "{file}: {}", physics["agreement_reason"]);
        // The shaft speed, estimated within the card's range, within 1% of the file's.
        let rpm = physics["evidence"]["shaft"]["rpm"].as_f64().unwrap();
        assert_eq!(physics["evidence"]["shaft"]["source"], "estimated");
        let truth = if file.contains("_0_") { 1796.0 } else { 1771.0 };
        assert!((rpm - truth).abs() / truth < 0.01, "{file}: {rpm} rpm");
        // The card says the sensor is in g: a velocity and the acceleration statistics.
        assert!(physics["severity"]["velocity_rms_mm_s"].as_f64().unwrap() > 0.0, "{physics:#}");
        assert!(physics["severity"]["kurtosis"].as_f64().unwrap() > 3.0, "impacts raise the kurtosis");
    }
    // JSON windows, when asked: taken as consecutive pieces of one recording.
    let options = drsn::data::ReadOptions { variable: Some("X169_DE_time".into()), ..Default::default() };
    let recording = drsn::data::read_recording(&shared("cwru/12k_Drive_End_IR014_0_169.mat"), &options).unwrap();
    let windows: Vec<&[f32]> = recording.channels[0].chunks_exact(2048).take(48).collect();
    let request =
        json!({"model": "cwru-bearing", "signals": windows, "diagnostics": "none", "evidence": true, "spectrum": true});
    let body = ok(app.diagnose(&request).await).await;
    assert_eq!(body["physics"]["evidence"]["verdict"]["fault"], "inner_race", "{:#}", body["physics"]);
    assert_eq!(body["physics"]["agreement"], "agrees");
    // The spectrum itself, for a picture: BPFI stands far above the spectrum's median.
    let spectrum = &body["physics"]["envelope_spectrum"];
    let resolution = spectrum["resolution_hz"].as_f64().unwrap();
    let amplitudes: Vec<f64> = serde_json::from_value(spectrum["amplitudes"].clone()).unwrap();
    let bpfi = body["physics"]["evidence"]["families"][0]["peaks"][0]["found_hz"].as_f64().unwrap();
    let mut sorted = amplitudes.clone();
    sorted.sort_by(f64::total_cmp);
    let at_bpfi = amplitudes[(bpfi / resolution).round() as usize];
    assert!(at_bpfi > 10.0 * sorted[sorted.len() / 2], "BPFI {at_bpfi} vs median {}", sorted[sorted.len() / 2]);
    let request = json!({"model": "cwru-bearing", "signals": windows, "diagnostics": "none"});
    assert!(ok(app.diagnose(&request).await).await.get("physics").is_none(), "JSON windows: only when asked");
    // Asked of a model whose card names no bearing: said plainly.
    let wav = wav_f32(&[vec![0.0f32; 4096]], 12_000);
    let response = app.post_diagnose("?model=cwru-bearing&evidence=false", "audio/wav", wav).await;
    assert!(ok(response).await.get("physics").is_none(), "evidence=false leaves it out");
}

/// A little-endian f32 `.npy` array of one dimension.
fn npy_f32(values: &[f32]) -> Vec<u8> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({},), }}", values.len());
    while (10 + header.len() + 1) % 64 != 0 {
        header.push(' ');
    }
    header.push('\n');
    let mut out = b"\x93NUMPY\x01\x00".to_vec();
    out.extend_from_slice(&(header.len() as u16).to_le_bytes());
    out.extend_from_slice(header.as_bytes());
    out.extend(f32_le(values));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn csv_npy_and_mat_recordings_are_read_as_training_reads_them_and_outlined_on_request() {
    let app = app().await;
    let card = ModelCard::read(&shipped().join("cwru-bearing")).unwrap();
    let s = cwru_test_stretches(&card).into_iter().find(|s| s.label == "IR014").unwrap();
    let wav = ok(app
        .post_diagnose("?model=cwru-bearing&trace=true", "audio/wav", wav_f32(std::slice::from_ref(&s.samples), 12_000))
        .await)
    .await;
    assert_eq!(wav["recording"]["label"], "IR014");
    let csv: String = s.samples.iter().map(|v| format!("{v}\n")).collect();
    let upload = |bytes: Vec<u8>, name: &str, content_type: &str| {
        let part = Part::bytes(bytes).file_name(name.to_string()).mime_str(content_type).unwrap();
        let form = Form::new().text("model", "cwru-bearing").part("file", part);
        app.client.post(app.url("/diagnose?sample_rate=12000&trace=true")).multipart(form).send()
    };
    // A spreadsheet type some systems give CSV files is looked into, as the generic one is.
    let from_csv = ok(upload(csv.clone().into_bytes(), "ir014.csv", "application/vnd.ms-excel").await.unwrap()).await;
    let from_npy = ok(upload(npy_f32(&s.samples), "ir014.npy", "application/octet-stream").await.unwrap()).await;
    let as_body = ok(app.post_diagnose("?model=cwru-bearing", "text/csv", csv.into_bytes()).await).await;
    for (kind, body) in [("CSV", &from_csv), ("npy", &from_npy), ("CSV body", &as_body)] {
        assert_eq!(labels(body), labels(&wav), "{kind}");
        assert_eq!(body["recording"]["samples"], wav["recording"]["samples"], "{kind}");
    }
    // The outline: every sample's extremes, the same whatever the format.
    assert_eq!(from_npy["trace"], wav["trace"]);
    let outline_max = wav["trace"]["max"].as_array().unwrap();
    let peak = s.samples.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    assert_eq!(outline_max.iter().map(|v| v.as_f64().unwrap() as f32).fold(f32::NEG_INFINITY, f32::max), peak);
    assert!(as_body.get("trace").is_none(), "only on request");
    // A whole CWRU MAT-file as recorded (its drive-end variable, 12 kHz).
    let mat = std::fs::read(shared(&format!("cwru/{}", s.file))).unwrap();
    let from_mat = ok(upload(mat, &s.file, "application/octet-stream").await.unwrap()).await;
    assert_eq!(from_mat["recording"]["label"], "IR014");
    assert!(from_mat["recording"]["samples"].as_u64().unwrap() > 100_000);
}
