//! Serving benchmark (not a test): `drsn serve` on ONNX Runtime with batching on and off and
//! on libtorch with batching on, and the usual alternative, a FastAPI + PyTorch server
//! (`bench/fastapi_server.py`) on the same model, measured in one run by the same client.
//!
//!     eval "$(bash scripts/libtorch.sh)"
//!     cargo bench --bench serve -- [--seconds 10] [--clients 64] [--model models/cwru-bearing]
//!                                  [--serve-args "--torch-threads 1"] [--no-python]
//!
//! For each server: single-window latency p50/p99 with one client (unloaded), then
//! throughput and latency p50/p99 with `--clients` clients in a closed loop. Every request
//! is one 2048-sample window as JSON with `"diagnostics": "none"` (the Python server returns
//! probabilities only). Without `--model`, `models/cwru-bearing` is used when present, else a
//! freshly initialised paper-1d DRSN-CW (speed does not depend on the weights' values).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[path = "support/load.rs"]
mod load;
mod support;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use drsn::data::Normalization;
use drsn::nn::{Arch, Model, ModelSpec};
use drsn::registry::{sha256_file, ModelCard, WindowInfo, WEIGHTS_FILE};
use load::{load, one, percentile, windows, Measured};
use support::{free_port, resident_kb, wait_ready, Server};

/// Starts a server on the given port.
type Starter<'a> = dyn Fn(u16) -> anyhow::Result<Child> + 'a;

struct Args {
    seconds: f64,
    clients: usize,
    model: Option<PathBuf>,
    python: bool,
    /// Further `drsn serve` flags for both drsn set-ups (e.g. "--torch-threads 2").
    serve_args: Vec<String>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args { seconds: 10.0, clients: 64, model: None, python: true, serve_args: Vec::new() };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => args.seconds = it.next().context("--seconds N")?.parse()?,
            "--clients" => args.clients = it.next().context("--clients N")?.parse()?,
            "--model" => args.model = Some(it.next().context("--model DIR")?.into()),
            "--no-python" => args.python = false,
            "--serve-args" => {
                args.serve_args =
                    it.next().context("--serve-args \"FLAGS\"")?.split_whitespace().map(String::from).collect()
            }
            "--bench" => {}
            other => bail!("unknown argument {other}; see benches/serve.rs"),
        }
    }
    Ok(args)
}

/// A model folder named `cwru-bearing`: the shipped one, or a fresh paper-1d DRSN-CW.
fn model_dir(args: &Args, tmp: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = &args.model {
        return Ok(dir.clone());
    }
    let shipped = Path::new("models/cwru-bearing");
    if shipped.join("card.json").is_file() {
        return Ok(shipped.to_path_buf());
    }
    let dir = tmp.join("models/cwru-bearing");
    std::fs::create_dir_all(&dir)?;
    let spec = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10)?;
    tch::manual_seed(0);
    Model::new(&spec, tch::Device::Cpu)?.save(&dir.join(WEIGHTS_FILE))?;
    let card = ModelCard {
        name: "cwru-bearing".into(),
        version: 1,
        spec,
        classes: (0..10).map(|i| format!("class{i}")).collect(),
        sample_rate: Some(12_000),
        window: Some(WindowInfo { length: 2048, train_stride: 2048 }),
        normalization: Normalization::ZScore,
        data: Default::default(),
        metrics: Default::default(),
        machine: None,
        ood: None,
        created_at: chrono::Utc::now(),
        weights_sha256: sha256_file(&dir.join(WEIGHTS_FILE))?,
    };
    card.write(&dir)?;
    Ok(dir)
}

async fn unloaded(client: &reqwest::Client, url: &str, bodies: &[Bytes]) -> Measured {
    for b in bodies.iter().take(50) {
        one(client, url, b).await;
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for i in 0..500 {
        let t0 = Instant::now();
        errors += usize::from(!one(client, url, &bodies[i % bodies.len()]).await);
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    Measured {
        requests: latencies.len(),
        errors,
        seconds: started.elapsed().as_secs_f64(),
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    }
}

/// Mean windows and milliseconds per forward pass, from a drsn server's /metrics.
async fn batching(client: &reqwest::Client, base: &str) -> Option<String> {
    let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    let value = |prefix: &str| -> Option<f64> {
        text.lines().find(|l| l.starts_with(prefix))?.rsplit(' ').next()?.parse().ok()
    };
    let passes = value("drsn_batch_size_count")?;
    let windows = value("drsn_batch_size_sum")?;
    let seconds = value("drsn_inference_duration_seconds_sum")?;
    Some(format!(
        "{passes:.0} forward passes, {:.1} windows and {:.2} ms each on average",
        windows / passes,
        seconds * 1e3 / passes
    ))
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let tmp = tempfile::tempdir()?;
    let model = model_dir(&args, tmp.path())?;
    let models = model.parent().context("model folder has a parent")?.to_path_buf();
    let python = std::env::var("DRSN_PYTHON").unwrap_or_else(|_| "python3".into());
    let bodies = windows();
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(args.clients * 2).build()?;

    let drsn = |extra: &[&str], port: u16| -> anyhow::Result<Child> {
        Ok(Command::new(env!("CARGO_BIN_EXE_drsn"))
            .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
            .arg("--models")
            .arg(&models)
            .arg("--data-dir")
            .arg(tmp.path().join("data"))
            .args(extra)
            .args(&args.serve_args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?)
    };
    let mut rows: Vec<(String, Measured, Measured)> = Vec::new();
    let batching_on = ["--max-batch-size", "64", "--max-wait-ms", "2"];
    let mut setups: Vec<(&str, Box<Starter<'_>>)> = vec![
        (
            "drsn onnxruntime, batching on (max 64, 2 ms)",
            Box::new(|p| drsn(&[&batching_on[..], &["--backend", "onnxruntime"]].concat(), p)),
        ),
        (
            "drsn libtorch, batching on (max 64, 2 ms)",
            Box::new(|p| drsn(&[&batching_on[..], &["--backend", "libtorch"]].concat(), p)),
        ),
        (
            "drsn onnxruntime, batching off (max 1)",
            Box::new(|p| drsn(&["--max-batch-size", "1", "--max-wait-ms", "0", "--backend", "onnxruntime"], p)),
        ),
    ];
    if args.python {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/fastapi_server.py");
        let (python, model) = (python.clone(), model.clone());
        setups.push((
            "FastAPI + PyTorch (uvicorn, 1 worker)",
            Box::new(move |p| {
                Ok(Command::new(&python)
                    .arg(&script)
                    .arg("--model")
                    .arg(&model)
                    .args(["--port", &p.to_string()])
                    .stdout(Stdio::null())
                    .stderr(Stdio::inherit())
                    .spawn()?)
            }),
        ));
    }
    for (label, start) in &setups {
        let port = free_port()?;
        let mut server = Server(start(port)?);
        let base = format!("http://127.0.0.1:{port}");
        let url = format!("{base}/diagnose");
        let (alone, loaded) = runtime.block_on(async {
            wait_ready(&client, &base, &mut server).await?;
            let alone = unloaded(&client, &url, &bodies).await;
            let loaded = load(&client, std::slice::from_ref(&url), &bodies, args.clients, args.seconds).await;
            if let Some(batching) = batching(&client, &base).await {
                eprintln!("{label}: {batching}");
            }
            if let Ok((_, peak)) = resident_kb(server.0.id()) {
                eprintln!("{label}: peak resident memory {} MiB", peak / 1024);
            }
            anyhow::Ok((alone, loaded))
        })?;
        eprintln!(
            "{label}: unloaded p50 {:.2} ms p99 {:.2} ms; {} clients: {:.0} windows/s p50 {:.1} ms p99 {:.1} ms ({} errors)",
            alone.p50_ms,
            alone.p99_ms,
            args.clients,
            loaded.requests as f64 / loaded.seconds,
            loaded.p50_ms,
            loaded.p99_ms,
            loaded.errors + alone.errors
        );
        rows.push((label.to_string(), alone, loaded));
    }

    println!(
        "\nmodel: {} | {} clients for {} s | {} logical CPUs",
        model.display(),
        args.clients,
        args.seconds,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    println!(
        "| server | unloaded p50 ms | unloaded p99 ms | windows/s ({} clients) | p50 ms | p99 ms | errors |",
        args.clients
    );
    println!("|---|---|---|---|---|---|---|");
    for (label, a, l) in &rows {
        println!(
            "| {label} | {:.2} | {:.2} | {:.0} | {:.1} | {:.1} | {} |",
            a.p50_ms,
            a.p99_ms,
            l.requests as f64 / l.seconds,
            l.p50_ms,
            l.p99_ms,
            a.errors + l.errors
        );
    }
    let tp = |m: &Measured| m.requests as f64 / m.seconds;
    if let (Some(ort), Some(torch)) = (rows.first(), rows.get(1)) {
        println!(
            "\ndrsn onnxruntime vs libtorch (batching on): throughput x{:.2}, p99 {:.2} of libtorch's",
            tp(&ort.2) / tp(&torch.2),
            ort.2.p99_ms / torch.2.p99_ms
        );
    }
    if let (Some(ours), Some(theirs)) = (rows.first(), rows.iter().find(|r| r.0.starts_with("FastAPI"))) {
        println!(
            "drsn onnxruntime (batching on) vs FastAPI: throughput x{:.1} (target >= 10), p99 {:.2} of theirs (target <= 0.2)",
            tp(&ours.2) / tp(&theirs.2),
            ours.2.p99_ms / theirs.2.p99_ms
        );
    }
    Ok(())
}
