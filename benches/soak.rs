//! Soak benchmark (not a test): `drsn serve` with the shipped models takes a long stream
//! of mixed requests (valid windows, recordings and images; invalid, hostile and
//! oversized bodies) from closed-loop clients, while slow clients trickle bodies that
//! never finish. Reports throughput, answers by status, and resident memory after the
//! warm-up and at the end: memory must stay flat.
//!
//!     eval "$(bash scripts/libtorch.sh)"
//!     cargo bench --bench soak -- [--requests 100000] [--clients 32] [--slow 16]

use std::collections::BTreeMap;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use bytes::Bytes;
use support::{free_port, resident_kb, wait_ready, Server};

mod support;

struct Args {
    requests: usize,
    clients: usize,
    slow: usize,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args { requests: 100_000, clients: 32, slow: 16 };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--requests" => args.requests = it.next().context("--requests N")?.parse()?,
            "--clients" => args.clients = it.next().context("--clients N")?.parse()?,
            "--slow" => args.slow = it.next().context("--slow N")?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other}; see benches/soak.rs"),
        }
    }
    Ok(args)
}

/// The service's limits in this run: a small body limit, so that oversized bodies are
/// cheap to send, and a short request deadline, so that slow clients cycle.
const BODY_LIMIT: usize = 512 * 1024;
const DEADLINE_S: &str = "2";

/// One kind of request: its path, content type and body.
struct Kind {
    name: &'static str,
    path: String,
    content_type: &'static str,
    body: Bytes,
}

fn tone(n: usize, seed: usize) -> Vec<f32> {
    (0..n).map(|i| ((i * (7 + seed)) as f32 * 0.013).sin() + 0.05 * ((i * 7919 + seed) % 97) as f32 / 97.0).collect()
}

fn wav(rate: u32, samples: &[f32]) -> Vec<u8> {
    let spec =
        hound::WavSpec { channels: 1, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut out = std::io::Cursor::new(Vec::new());
    let mut w = hound::WavWriter::new(&mut out, spec).expect("WAV header");
    for s in samples {
        w.write_sample((s * 10_000.0) as i16).expect("WAV sample");
    }
    w.finalize().expect("WAV");
    out.into_inner()
}

fn png(side: u32) -> Vec<u8> {
    let img = image::GrayImage::from_fn(side, side, |x, y| image::Luma([((x * 7 + y * 3) % 256) as u8]));
    let mut out = Vec::new();
    img.write_to(&mut std::io::Cursor::new(&mut out), image::ImageFormat::Png).expect("PNG");
    out
}

/// A WAV header claiming `rate` Hz before a few samples.
fn lying_wav(rate: u32) -> Vec<u8> {
    let mut out = wav(12_000, &tone(4096, 1));
    out[24..28].copy_from_slice(&rate.to_le_bytes());
    out
}

fn kinds() -> Vec<(u32, Kind)> {
    let json = |v: serde_json::Value| Bytes::from(serde_json::to_vec(&v).expect("JSON"));
    let kind = |name, path: &str, content_type, body| Kind { name, path: path.to_string(), content_type, body };
    let f32s = |v: &[f32]| Bytes::from(v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>());
    let mut parts = Vec::new();
    for i in 0..500 {
        write!(parts, "--B\r\ncontent-disposition: form-data; name=\"f{i}\"; filename=\"a.png\"\r\ncontent-type: image/png\r\n\r\nx\r\n")
            .expect("write to a Vec");
    }
    parts.extend(b"--B--\r\n");
    // Weights: how many of every 100 requests are of each kind.
    vec![
        (
            30,
            kind(
                "valid JSON window",
                "/diagnose",
                "application/json",
                json(serde_json::json!({"model": "cwru-bearing", "signal": tone(2048, 1)})),
            ),
        ),
        (
            10,
            kind(
                "valid WAV, 48 kHz, resampled",
                "/diagnose?model=cwru-bearing",
                "audio/wav",
                Bytes::from(wav(48_000, &tone(48_000, 2))),
            ),
        ),
        (
            10,
            kind(
                "valid raw f32, 4 windows",
                "/diagnose?model=cwru-bearing",
                "application/octet-stream",
                f32s(&tone(8192, 3)),
            ),
        ),
        (8, kind("valid PNG digit", "/diagnose?model=mnist", "image/png", Bytes::from(png(28)))),
        (
            8,
            kind(
                "valid v2 JSON",
                "/v2/models/cwru-bearing/infer",
                "application/json",
                json(
                    serde_json::json!({"inputs": [{"name": "input", "shape": [1, 2048], "datatype": "FP32", "data": tone(2048, 4)}]}),
                ),
            ),
        ),
        (
            6,
            kind(
                "invalid: wrong window length",
                "/diagnose",
                "application/json",
                json(serde_json::json!({"model": "cwru-bearing", "signal": tone(100, 5)})),
            ),
        ),
        (4, kind("invalid: not JSON", "/diagnose", "application/json", Bytes::from_static(b"{\"model\": [1,"))),
        (
            4,
            kind(
                "hostile: rate 100000007",
                "/diagnose",
                "application/json",
                json(serde_json::json!({"model": "cwru-bearing", "signal": tone(2048, 6), "sample_rate": 100_000_007})),
            ),
        ),
        (
            4,
            kind(
                "hostile: WAV at 4294967291 Hz",
                "/diagnose?model=cwru-bearing",
                "audio/wav",
                Bytes::from(lying_wav(4_294_967_291)),
            ),
        ),
        (
            4,
            kind(
                "hostile: raw at 1 Hz",
                "/diagnose?model=cwru-bearing&sample_rate=1",
                "application/octet-stream",
                f32s(&tone(65_536, 7)),
            ),
        ),
        (
            4,
            kind(
                "hostile: PNG header of 20000x20000",
                "/diagnose?model=mnist",
                "image/png",
                Bytes::from(png_header(20_000)),
            ),
        ),
        (
            4,
            kind(
                "hostile: 500 multipart parts",
                "/diagnose?model=mnist",
                "multipart/form-data; boundary=B",
                Bytes::from(parts),
            ),
        ),
        (
            2,
            kind(
                "oversized body",
                "/diagnose?model=cwru-bearing",
                "application/octet-stream",
                Bytes::from(vec![0u8; BODY_LIMIT + 4096]),
            ),
        ),
        (2, kind("unknown model", "/diagnose?model=nope", "application/octet-stream", f32s(&tone(2048, 8)))),
    ]
}

/// An 8x8 PNG whose header (checksum recomputed) says `side` x `side`.
fn png_header(side: u32) -> Vec<u8> {
    let mut out = png(8);
    out[16..20].copy_from_slice(&side.to_be_bytes());
    out[20..24].copy_from_slice(&side.to_be_bytes());
    let mut crc = flate2::Crc::new();
    crc.update(&out[12..29]);
    out[29..33].copy_from_slice(&crc.sum().to_be_bytes());
    out
}

/// Statuses seen per kind.
type Tally = Arc<Mutex<BTreeMap<(&'static str, u16), usize>>>;

async fn fire(client: &reqwest::Client, base: &str, kind: &Kind) -> u16 {
    let sent = client
        .post(format!("{base}{}", kind.path))
        .header("content-type", kind.content_type)
        .body(kind.body.clone())
        .send()
        .await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        }
        // 0: the connection failed (an error of its own in the report).
        Err(_) => 0,
    }
}

/// Sends half a body and then nothing, until the server gives up on it.
async fn slow_client(base: String, stop: Arc<std::sync::atomic::AtomicBool>, timed_out: Arc<AtomicUsize>) {
    let client = reqwest::Client::new();
    while !stop.load(Ordering::Relaxed) {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(1);
        let _ = tx.send(Ok(b"{\"model\": \"cwru-bearing\", \"signal\": [0.1, ".to_vec())).await;
        let request = client
            .post(format!("{base}/diagnose"))
            .header("content-type", "application/json")
            .body(reqwest::Body::wrap_stream(tokio_stream::wrappers::ReceiverStream::new(rx)))
            .send();
        if let Ok(Ok(r)) = tokio::time::timeout(Duration::from_secs(30), request).await {
            if r.status().as_u16() == 408 {
                timed_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        drop(tx);
    }
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let models = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    anyhow::ensure!(
        models.join("cwru-bearing/card.json").is_file(),
        "the shipped models are missing from {}",
        models.display()
    );
    let tmp = tempfile::tempdir()?;
    let port = free_port()?;
    let mut server = Server(
        Command::new(env!("CARGO_BIN_EXE_drsn"))
            .args(["serve", "--addr", &format!("127.0.0.1:{port}"), "--body-limit", &BODY_LIMIT.to_string()])
            .args(["--request-timeout-s", DEADLINE_S])
            .arg("--models")
            .arg(&models)
            .arg("--data-dir")
            .arg(tmp.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    let pid = server.0.id();
    let base = format!("http://127.0.0.1:{port}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients * 2).build()?;
    let kinds = Arc::new(kinds());
    // Request i is of the kind its position in the weights' cycle of 100 says.
    let schedule: Arc<Vec<usize>> =
        Arc::new(kinds.iter().enumerate().flat_map(|(k, (w, _))| std::iter::repeat_n(k, *w as usize)).collect());
    let tally: Tally = Arc::default();
    let (series, end, seconds, slow_timeouts) = runtime.block_on(async {
        wait_ready(&client, &format!("{base}/health/ready"), &mut server).await?;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let slow_timeouts = Arc::new(AtomicUsize::new(0));
        let slow: Vec<_> = (0..args.slow)
            .map(|_| tokio::spawn(slow_client(base.clone(), stop.clone(), slow_timeouts.clone())))
            .collect();
        let next = Arc::new(AtomicUsize::new(0));
        let warm = Arc::new(Mutex::new(Vec::new()));
        let started = Instant::now();
        let clients: Vec<_> = (0..args.clients)
            .map(|_| {
                let (client, base, kinds, schedule) = (client.clone(), base.clone(), kinds.clone(), schedule.clone());
                let (next, tally, warm, total) = (next.clone(), tally.clone(), warm.clone(), args.requests);
                tokio::spawn(async move {
                    loop {
                        let i = next.fetch_add(1, Ordering::Relaxed);
                        if i >= total {
                            break;
                        }
                        if i % (total / 10).max(1) == 0 {
                            if let Ok(rss) = resident_kb(pid) {
                                let mut series = warm.lock().expect("lock");
                                series.push((i, rss.0));
                            }
                        }
                        let kind = &kinds[schedule[(i * 37) % schedule.len()]].1;
                        let status = fire(&client, &base, kind).await;
                        *tally.lock().expect("lock").entry((kind.name, status)).or_default() += 1;
                    }
                })
            })
            .collect();
        for c in clients {
            c.await?;
        }
        let seconds = started.elapsed().as_secs_f64();
        stop.store(true, Ordering::Relaxed);
        for s in slow {
            s.abort();
        }
        let series = std::mem::take(&mut *warm.lock().expect("lock"));
        anyhow::Ok((series, resident_kb(pid)?, seconds, slow_timeouts.load(Ordering::Relaxed)))
    })?;
    anyhow::ensure!(server.0.try_wait()?.is_none(), "drsn serve died during the soak");

    println!("\n{} requests from {} clients in {seconds:.1} s: {:.0} requests/s; {} slow clients alongside ({slow_timeouts} answered 408)",
        args.requests, args.clients, args.requests as f64 / seconds, args.slow);
    println!("| request | count | answers |");
    println!("|---|---|---|");
    let tally = tally.lock().expect("lock");
    for (_, kind) in kinds.iter() {
        let answers: Vec<String> =
            tally.iter().filter(|((k, _), _)| *k == kind.name).map(|((_, s), n)| format!("{s}: {n}")).collect();
        let count: usize = tally.iter().filter(|((k, _), _)| *k == kind.name).map(|(_, n)| n).sum();
        println!("| {} | {count} | {} |", kind.name, answers.join(", "));
    }
    let failures: usize = tally.iter().filter(|((_, s), _)| *s == 0 || *s >= 500).map(|(_, n)| n).sum();
    // The warm-up is the first fifth of the run: the allocator's pools and the
    // connection pool have grown to the load by then.
    let warm_at = args.requests / 5;
    let warm = series.iter().find(|(i, _)| *i >= warm_at).map(|(_, kb)| *kb).context("no reading after the warm-up")?;
    let growth = (end.0 as f64 - warm as f64) / warm as f64 * 100.0;
    let readings: Vec<String> = series.iter().map(|(i, kb)| format!("{i}: {}", kb / 1024)).collect();
    println!("resident memory (MiB) by requests sent: {}, end: {}", readings.join(", "), end.0 / 1024);
    println!(
        "resident memory: {} MiB after the warm-up ({warm_at} requests), {} MiB at the end ({growth:+.1}%), peak {} MiB; {failures} server errors or failed connections",
        warm / 1024,
        end.0 / 1024,
        end.1 / 1024
    );
    anyhow::ensure!(growth.abs() <= 10.0, "resident memory grew by {growth:.1}% after the warm-up");
    anyhow::ensure!(failures == 0, "{failures} requests got a 5xx or no answer");
    Ok(())
}
