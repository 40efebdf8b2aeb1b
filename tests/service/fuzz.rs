//! Property-based fuzzing of every decoder: random bytes, and valid files with their
//! headers and bodies mutated (bytes overwritten, cut short, garbage appended). Every
//! input must come back as a value or an error (never a panic) within a bounded time,
//! within small configured limits. The HTTP-level decoders (JSON windows, multipart forms,
//! `/v2` binary tensors) are fuzzed through a real server on a loopback port, which must
//! answer every input without a 500.
//!
//! `DRSN_FUZZ_CASES` sets the inputs per decoder (default 200, the suite's budget); the
//! README gives the longer run's command and figures.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::common::files::{gz, mat, npy};
use crate::common::*;
use drsn::data::{self, Limits, ReadOptions};
use drsn::datasets::archive;
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Small limits: the decoders are checked for refusing, not for working hard.
const LIMITS: Limits = Limits {
    max_samples: 1 << 20,
    max_inflated_bytes: 4 << 20,
    max_image_side: 2048,
    max_image_pixels: 1 << 20,
    ..Limits::DEFAULT
};

/// The longest any one input may take.
const SLOWEST: Duration = Duration::from_secs(2);

fn cases() -> u32 {
    std::env::var("DRSN_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(200)
}

/// Random bytes, or `seed` with some bytes overwritten (mostly in its header), cut short
/// and garbage appended.
fn around(seed: Vec<u8>) -> BoxedStrategy<Vec<u8>> {
    let len = seed.len().max(1);
    let header = len.min(128);
    let index = prop_oneof![0..header, 0..len];
    let mutated =
        (prop::collection::vec((index, any::<u8>()), 0..12), 0..=len, prop::collection::vec(any::<u8>(), 0..24))
            .prop_map(move |(edits, cut, tail)| {
                let mut b = seed.clone();
                for (i, v) in edits {
                    if let Some(x) = b.get_mut(i) {
                        *x = v;
                    }
                }
                if cut < b.len() && cut % 3 == 0 {
                    b.truncate(cut);
                }
                b.extend(tail);
                b
            });
    prop_oneof![1 => prop::collection::vec(any::<u8>(), 0..2048), 4 => mutated].boxed()
}

/// Runs `check` on `cases()` inputs drawn from `strategy`; fails on a panic (proptest
/// reports it, shrunk) or an input slower than [`SLOWEST`]. Returns the inputs tried.
fn fuzz(name: &str, strategy: BoxedStrategy<Vec<u8>>, check: impl Fn(&[u8])) -> u64 {
    let tried = AtomicU64::new(0);
    let mut runner = TestRunner::new(Config { cases: cases(), failure_persistence: None, ..Config::default() });
    let outcome = runner.run(&strategy, |bytes| {
        tried.fetch_add(1, Ordering::Relaxed);
        let started = Instant::now();
        check(&bytes);
        let took = started.elapsed();
        if took > SLOWEST {
            return Err(TestCaseError::fail(format!("{name}: {took:?} for {} bytes", bytes.len())));
        }
        Ok(())
    });
    if let Err(e) = outcome {
        panic!("{name}: {e}");
    }
    let tried = tried.into_inner();
    println!("{name}: {tried} inputs, no crash");
    tried
}

fn wav_seed() -> Vec<u8> {
    let spec = hound::WavSpec {
        channels: 2,
        sample_rate: 48_000,
        bits_per_sample: 16,
        sample_format: hound::SampleFormat::Int,
    };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).unwrap();
    for s in signal(512, 1) {
        w.write_sample((s * 8000.0) as i16).unwrap();
    }
    w.finalize().unwrap();
    out.into_inner()
}

fn npy_seed() -> Vec<u8> {
    npy("(64, 2)", &signal(128, 2).iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<_>>())
}

fn mat_seed(compressed: bool) -> Vec<u8> {
    mat(64, 1, &signal(64, 3).iter().flat_map(|v| (*v as f64).to_le_bytes()).collect::<Vec<_>>(), compressed)
}

fn png_seed() -> Vec<u8> {
    let img = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).unwrap();
    out
}

fn jpeg_seed() -> Vec<u8> {
    let img = image::GrayImage::from_fn(28, 28, |x, y| image::Luma([(x * 9 + y) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Jpeg).unwrap();
    out
}

fn idx_seed() -> Vec<u8> {
    let mut out = vec![0, 0, 8, 3, 0, 0, 0, 4, 0, 0, 0, 5, 0, 0, 0, 5];
    out.extend((0..100u8).collect::<Vec<_>>());
    out
}

fn tar_seed() -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in [("set/normal/a.csv", &b"1\n2\n3\n"[..]), ("set/ball/b.csv", b"4\n5\n")] {
        let mut h = tar::Header::new_gnu();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        b.append_data(&mut h, name, data).unwrap();
    }
    let mut h = tar::Header::new_gnu();
    h.set_size(3);
    h.set_mode(0o644);
    b.append_data(&mut h, format!("set/long/{}.csv", "n".repeat(150)), &b"1\n\n"[..]).unwrap();
    b.into_inner().unwrap()
}

fn zip_seed() -> Vec<u8> {
    let mut w = zip::ZipWriter::new(std::io::Cursor::new(Vec::new()));
    for (name, data) in [("normal/a.csv", &b"1\n2\n"[..]), ("ball/b.csv", b"3\n")] {
        w.start_file(name, zip::write::SimpleFileOptions::default()).unwrap();
        w.write_all(data).unwrap();
    }
    w.finish().unwrap().into_inner()
}

#[test]
fn file_decoders_never_panic_and_stay_within_their_limits() {
    let options = |name: &str| (name.to_string(), ReadOptions { limits: LIMITS, ..ReadOptions::default() });
    let mut tried = 0;
    tried += fuzz("wav", around(wav_seed()), |b| drop(data::decode_wav(b, &LIMITS)));
    tried += fuzz("npy", around(npy_seed()), |b| drop(data::decode_npy(b, &LIMITS)));
    for (name, seed) in [("mat", mat_seed(false)), ("mat (compressed)", mat_seed(true))] {
        let (file, opts) = options("x.mat");
        tried += fuzz(name, around(seed), |b| drop(data::decode_recording(b, &file, &opts)));
    }
    tried += fuzz("csv", around(b"time;accel\n0;0.5\n1;-0.5\n2;1e3\n".to_vec()), |b| {
        drop(data::decode_csv(b, None, &LIMITS))
    });
    tried += fuzz("idx", around(idx_seed()), |b| drop(data::decode_idx::<3>(b, "x", &LIMITS)));
    tried += fuzz("idx (gzip)", around(gz(&idx_seed())), |b| drop(data::decode_idx::<3>(b, "x", &LIMITS)));
    tried += fuzz("png", around(png_seed()), |b| drop(data::decode_image(b, &LIMITS)));
    tried += fuzz("jpeg", around(jpeg_seed()), |b| drop(data::decode_image(b, &LIMITS)));
    tried += fuzz("raw f32", around(vec![0; 64]), |b| drop(data::decode_f32_le(b, &LIMITS)));
    println!("file decoders: {tried} inputs in all");
}

#[test]
fn archives_never_panic_and_never_write_outside_their_folder() {
    let limits = archive::Limits { max_files: 16, max_file_bytes: 1 << 16, max_total_bytes: 1 << 18 };
    let outer = tempfile::tempdir().unwrap();
    let check = |b: &[u8]| {
        let dest = tempfile::tempdir_in(outer.path()).unwrap();
        let _ = archive::extract(b, dest.path(), limits);
        // Nothing lands beside the destination.
        let beside = std::fs::read_dir(outer.path()).unwrap().count();
        assert_eq!(beside, 1, "an archive wrote outside its folder");
    };
    let mut tried = 0;
    tried += fuzz("tar", around(tar_seed()), check);
    tried += fuzz("tar.gz", around(gz(&tar_seed())), check);
    tried += fuzz("zip", around(zip_seed()), check);
    println!("archives: {tried} inputs in all");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_decoders_never_answer_500_and_keep_serving() {
    let app = spawn_app().await;
    let rt = tokio::runtime::Handle::current();
    let send = |path: String, content_type: &'static str, headers: Vec<(&'static str, String)>| {
        let (client, url) = (app.client.clone(), app.url(&path));
        let rt = rt.clone();
        move |b: &[u8]| {
            let mut request = client.post(&url).header("content-type", content_type).body(b.to_vec());
            for (name, value) in &headers {
                request = request.header(*name, value);
            }
            let status =
                tokio::task::block_in_place(|| rt.block_on(request.send())).expect("the server answers").status();
            assert!(status.as_u16() != 500 && status.as_u16() < 600, "{status} for {} bytes", b.len());
        }
    };
    let window: Vec<f32> = signal(2048, 4);
    let json =
        serde_json::to_vec(&serde_json::json!({"model": BEARING, "signals": [window], "sample_rate": 12000})).unwrap();
    let mut tried = fuzz("JSON windows", around(json), send("/diagnose".into(), "application/json", vec![]));

    let boundary = "FuzzBoundary";
    let mut form = format!(
        "--{boundary}\r\ncontent-disposition: form-data; name=\"model\"\r\n\r\n{DIGITS}\r\n--{boundary}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"a.png\"\r\ncontent-type: image/png\r\n\r\n"
    )
    .into_bytes();
    form.extend(png_seed());
    form.extend(format!("\r\n--{boundary}--\r\n").into_bytes());
    tried +=
        fuzz("multipart", around(form), send("/diagnose".into(), "multipart/form-data; boundary=FuzzBoundary", vec![]));

    let header = serde_json::to_vec(&serde_json::json!({"inputs": [{"name": "input", "shape": [1, 2048], "datatype": "FP32",
        "parameters": {"binary_data_size": 8192}}], "outputs": [{"name": "label", "parameters": {"binary_data": true}}]}))
    .unwrap();
    let mut binary = header.clone();
    binary.extend(window.iter().flat_map(|v| v.to_le_bytes()));
    tried += fuzz(
        "v2 binary tensors",
        around(binary),
        send(
            format!("/v2/models/{BEARING}/infer"),
            "application/octet-stream",
            vec![("inference-header-content-length", header.len().to_string())],
        ),
    );
    tried += fuzz(
        "WAV bodies",
        around(wav_seed()),
        send(format!("/diagnose?model={TWO_CHANNEL}&stride=256"), "audio/wav", vec![]),
    );
    let ready = app.client.get(app.url("/health/ready")).send().await.unwrap();
    assert_eq!(ready.status().as_u16(), 200, "the service still answers");
    println!("HTTP decoders: {tried} inputs in all");
}
