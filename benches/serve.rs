//! Serving benchmark (not a test): `drsn serve` on its fused forward (the default, with JSON
//! and raw f32 windows; and JSON with every request through the queue), on ONNX Runtime with
//! batching on and off (JSON and raw f32 windows), on libtorch with batching on, and two
//! Python peers
//! on the same model: mosec with dynamic batching running the twin's ONNX export on
//! onnxruntime (`bench/mosec_server.py`), and the usual FastAPI + PyTorch server
//! (`bench/fastapi_server.py`); all measured in one run by the same client.
//!
//!     eval "$(bash scripts/libtorch.sh)"
//!     cargo bench --bench serve -- [--seconds 10] [--clients 64] [--model models/cwru-bearing]
//!                                  [--serve-args "--torch-threads 1"] [--no-python]
//!                                  [--curve] [--only "LABEL-PREFIX|..."] [--mosec-args "--decoders 2"]
//!                                  [--baseline OLD-DRSN-BINARY] [--rounds 1]
//!
//! For each server: single-window latency p50/p99 with one client (unloaded), then
//! throughput and latency p50/p99 with `--clients` clients in a closed loop. Every request
//! is one 2048-sample window with `"diagnostics": "none"` (the Python servers return
//! probabilities only). `--curve` adds drsn on its fused forward at 1, 8, 64 and 256 clients,
//! each request on the HTTP thread that read it (the default), and queued with at most 1, 8
//! and 64 windows a batch. Without `--model`, `models/cwru-bearing` is used when
//! present, else a freshly initialised paper-1d DRSN-CW (speed does not depend on the
//! weights' values). `--baseline` adds another `drsn` binary (e.g. built from an older
//! commit) serving the same model and JSON bodies with its own defaults, for ratios against
//! the service as it was. `--rounds N` measures the set-ups N times, taking turns, and keeps
//! each one's median round (by throughput): the machine's speed drifts between minutes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

#[path = "support/cpu.rs"]
mod cpu;
#[path = "support/load.rs"]
mod load;
mod support;
use std::time::Instant;

use anyhow::{bail, Context};
use bytes::Bytes;
use cpu::{cpu_seconds, machine_busy_seconds};
use drsn::data::Normalization;
use drsn::nn::{Arch, Model, ModelSpec};
use drsn::registry::{sha256_file, ModelCard, WindowInfo, WEIGHTS_FILE};
use load::{load, percentile, signals, windows, Bodies, Connection, Measured};
use support::{free_port, resident_kb, wait_ready, Server};

/// Starts a server on the given port.
type Starter<'a> = dyn Fn(u16) -> anyhow::Result<Child> + 'a;

struct Args {
    seconds: f64,
    clients: usize,
    model: Option<PathBuf>,
    python: bool,
    curve: bool,
    /// Only the set-ups whose label starts with one of these.
    only: Vec<String>,
    /// Turns each set-up is measured in.
    rounds: usize,
    /// mosec_server.py's own flags (e.g. "--decoders 2").
    mosec_args: Vec<String>,
    /// Further `drsn serve` flags for both drsn set-ups (e.g. "--torch-threads 2").
    serve_args: Vec<String>,
    /// Another drsn binary to run beside this one, with its own defaults.
    baseline: Option<PathBuf>,
}

fn args() -> anyhow::Result<Args> {
    let mut args = Args {
        seconds: 10.0,
        clients: 64,
        model: None,
        python: true,
        curve: false,
        only: Vec::new(),
        rounds: 1,
        mosec_args: Vec::new(),
        serve_args: Vec::new(),
        baseline: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--seconds" => args.seconds = it.next().context("--seconds N")?.parse()?,
            "--clients" => args.clients = it.next().context("--clients N")?.parse()?,
            "--model" => args.model = Some(it.next().context("--model DIR")?.into()),
            "--no-python" => args.python = false,
            "--baseline" => args.baseline = Some(it.next().context("--baseline BINARY")?.into()),
            "--curve" => args.curve = true,
            "--only" => {
                args.only = it.next().context("--only \"LABEL-PREFIX|...\"")?.split('|').map(String::from).collect()
            }
            "--rounds" => args.rounds = it.next().context("--rounds N")?.parse::<usize>()?.max(1),
            "--mosec-args" => {
                args.mosec_args =
                    it.next().context("--mosec-args \"FLAGS\"")?.split_whitespace().map(String::from).collect()
            }
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

/// Single-window latency with one client: 50 requests to warm up, then 500 timed.
async fn unloaded(url: &str, bodies: &Bodies) -> Measured {
    let (address, requests) = bodies.requests(url);
    let mut connection = Connection::new(&address);
    for r in requests.iter().take(50) {
        connection.send(r).await;
    }
    let started = Instant::now();
    let mut latencies = Vec::new();
    let mut errors = 0;
    for i in 0..500 {
        let t0 = Instant::now();
        errors += usize::from(!connection.send(&requests[i % requests.len()]).await);
        latencies.push(t0.elapsed());
    }
    latencies.sort();
    let seconds = started.elapsed().as_secs_f64();
    Measured {
        requests: latencies.len(),
        errors,
        seconds,
        sent: latencies.len(),
        wall: seconds,
        p50_ms: percentile(&latencies, 0.5),
        p99_ms: percentile(&latencies, 0.99),
    }
}

/// Sums and counts of the stage histograms of a drsn server's /metrics.
#[derive(Default, Clone, Copy)]
struct Stages {
    /// `(sum, count)` of: request (the `/diagnose` route), decode, queue, forward pass, encode.
    request: (f64, f64),
    decode: (f64, f64),
    queue: (f64, f64),
    forward: (f64, f64),
    encode: (f64, f64),
    /// Windows over all forward passes.
    windows: f64,
}

async fn stages(client: &reqwest::Client, base: &str) -> Option<Stages> {
    let text = client.get(format!("{base}/metrics")).send().await.ok()?.text().await.ok()?;
    // Summed over every label set whose line contains `filter`.
    let value = |name: &str, filter: &str| -> f64 {
        text.lines()
            .filter(|l| l.starts_with(name) && l[name.len()..].starts_with(['{', ' ']) && l.contains(filter))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    };
    let pair =
        |name: &str, filter: &str| (value(&format!("{name}_sum"), filter), value(&format!("{name}_count"), filter));
    let stages = Stages {
        request: pair("drsn_http_request_duration_seconds", "route=\"/diagnose\""),
        decode: pair("drsn_decode_duration_seconds", ""),
        queue: pair("drsn_queue_duration_seconds", ""),
        forward: pair("drsn_inference_duration_seconds", ""),
        encode: pair("drsn_encode_duration_seconds", ""),
        windows: value("drsn_batch_size_sum", ""),
    };
    (stages.request.1 > 0.0).then_some(stages)
}

impl Stages {
    /// Where a request's time went between two snapshots: mean ms per request of each stage
    /// (a forward pass is shared by the windows of its batch), and the rest of the server's
    /// time (HTTP, routing, handing over to the engine and back).
    fn between(&self, later: &Stages) -> String {
        let mean = |a: (f64, f64), b: (f64, f64)| (b.0 - a.0) * 1e3 / (b.1 - a.1).max(1.0);
        let passes = later.forward.1 - self.forward.1;
        let batch = (later.windows - self.windows) / passes.max(1.0);
        let [total, decode, queue, forward, encode] = [
            mean(self.request, later.request),
            mean(self.decode, later.decode),
            mean(self.queue, later.queue),
            mean(self.forward, later.forward),
            mean(self.encode, later.encode),
        ];
        let rest = total - decode - queue - forward - encode;
        format!(
            "request {total:.3} ms = decode {decode:.3} + queue {queue:.3} + forward pass {forward:.3} ({batch:.1} windows) + encode {encode:.3} + rest {rest:.3}"
        )
    }
}

/// The benchmark's windows as raw little-endian f32 bodies (the model and `diagnostics=none`
/// go in the query).
fn raw_windows() -> Bodies {
    let body = |s: Vec<f32>| Bytes::from(s.iter().flat_map(|v| v.to_le_bytes()).collect::<Vec<u8>>());
    Bodies { content_type: "application/octet-stream", bodies: signals().into_iter().map(body).collect() }
}

/// One server set-up: how to start it, where it says it is ready, what to send where.
struct Setup<'a> {
    label: String,
    start: Box<Starter<'a>>,
    ready: &'static str,
    path: &'static str,
    bodies: &'a Bodies,
}

/// What one set-up measured.
struct Row {
    label: String,
    alone: Measured,
    loaded: Measured,
}

fn main() -> anyhow::Result<()> {
    let args = args()?;
    let tmp = tempfile::tempdir()?;
    let model = model_dir(&args, tmp.path())?;
    let models = model.parent().context("model folder has a parent")?.to_path_buf();
    let python = std::env::var("DRSN_PYTHON").unwrap_or_else(|_| "python3".into());
    let (json, raw) = (windows(), raw_windows());
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
    let client = reqwest::Client::builder().pool_max_idle_per_host(256 * 2).build()?;

    // `binary serve` on the models, with its own data folder and `extra` flags.
    let serve = |binary: PathBuf, data: PathBuf, extra: Vec<String>| -> Box<Starter<'_>> {
        let models = models.clone();
        Box::new(move |port| {
            Ok(Command::new(&binary)
                .args(["serve", "--addr", &format!("127.0.0.1:{port}")])
                .arg("--models")
                .arg(&models)
                .arg("--data-dir")
                .arg(&data)
                .args(&extra)
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()?)
        })
    };
    let drsn = |extra: Vec<String>| {
        serve(env!("CARGO_BIN_EXE_drsn").into(), tmp.path().join("data"), [extra, args.serve_args.clone()].concat())
    };
    let flags = |backend: &str, batch: usize| -> Vec<String> {
        let wait = if batch > 1 { "2" } else { "0" };
        ["--backend", backend, "--max-batch-size", &batch.to_string(), "--max-wait-ms", wait].map(String::from).to_vec()
    };
    let setup = |label: &str, start, bodies| Setup {
        label: label.to_string(),
        start,
        ready: "/health/ready",
        path: "/diagnose",
        bodies,
    };
    let mut setups = vec![
        setup("drsn fused (its defaults: small requests on the HTTP thread)", drsn(flags("fused", 64)), &json),
        setup(
            "drsn fused, every request queued (max 64, 2 ms)",
            drsn([flags("fused", 64), vec!["--inline-max-windows".into(), "0".into()]].concat()),
            &json,
        ),
        Setup {
            path: "/diagnose?model=cwru-bearing&diagnostics=none&evidence=false",
            ..setup("drsn fused, raw f32 body", drsn(flags("fused", 64)), &raw)
        },
        setup("drsn onnxruntime, batching on (max 64, 2 ms)", drsn(flags("onnxruntime", 64)), &json),
        setup("drsn libtorch, batching on (max 64, 2 ms)", drsn(flags("libtorch", 64)), &json),
        setup("drsn onnxruntime, batching off (max 1)", drsn(flags("onnxruntime", 1)), &json),
        Setup {
            // A recording to the service: no physics, as for JSON windows.
            path: "/diagnose?model=cwru-bearing&diagnostics=none&evidence=false",
            ..setup("drsn onnxruntime, batching on, raw f32 body", drsn(flags("onnxruntime", 64)), &raw)
        },
    ];
    if let Some(binary) = &args.baseline {
        // Its own data folder: an older binary need not read this one's database.
        let start = serve(binary.clone(), tmp.path().join("baseline-data"), Vec::new());
        setups.push(setup("drsn baseline binary (its defaults)", start, &json));
    }
    if args.python {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let peer = |script: &'static str, extra: Vec<String>| -> Box<Starter<'_>> {
            let (python, model, script) = (python.clone(), model.clone(), here.join(script));
            Box::new(move |p| {
                Ok(Command::new(&python)
                    .arg(&script)
                    .arg("--model")
                    .arg(&model)
                    .args(["--port", &p.to_string()])
                    .args(&extra)
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()?)
            })
        };
        setups.push(Setup {
            ready: "/",
            ..setup(
                &format!("mosec + onnxruntime (batching max 64, 2 ms) {}", args.mosec_args.join(" ")),
                peer(
                    "bench/mosec_server.py",
                    [&["--address".to_string(), "127.0.0.1".into()][..], &args.mosec_args].concat(),
                ),
                &json,
            )
        });
        setups.push(setup("FastAPI + PyTorch (uvicorn, 1 worker)", peer("bench/fastapi_server.py", Vec::new()), &json));
    }
    if !args.only.is_empty() {
        setups.retain(|s| args.only.iter().any(|o| s.label.starts_with(o.as_str())));
    }
    let mut rounds: Vec<Vec<Row>> = setups.iter().map(|_| Vec::new()).collect();
    for _ in 0..args.rounds {
        for (s, measured) in setups.iter().zip(&mut rounds) {
            measured.push(measure(&runtime, &client, s, args.clients, args.seconds)?);
        }
    }
    // Each round's throughputs, for ratios taken within a round (set-ups measured minutes
    // apart share less of the machine's drift than those measured back to back).
    let by_round: Vec<(String, Vec<f64>)> = rounds
        .iter()
        .zip(&setups)
        .map(|(r, s)| (s.label.clone(), r.iter().map(|row| tp(&row.loaded)).collect()))
        .collect();
    let rows: Vec<Row> = rounds.into_iter().map(median_round).collect();

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
    for Row { label, alone: a, loaded: l } in &rows {
        println!(
            "| {label} | {:.2} | {:.2} | {:.0} | {:.1} | {:.1} | {} |",
            a.p50_ms,
            a.p99_ms,
            tp(l),
            l.p50_ms,
            l.p99_ms,
            a.errors + l.errors
        );
    }
    let find = |prefix: &str| rows.iter().find(|r| r.label.starts_with(prefix));
    // The default (fused) and ONNX Runtime, JSON, against the other servers.
    for (ours_label, ours_name) in
        [("drsn fused (", "drsn fused"), ("drsn onnxruntime, batching on (", "drsn onnxruntime")]
    {
        let Some(ours) = find(ours_label) else { continue };
        for (peer, name) in [
            ("drsn fused, every request queued", "drsn fused with every request queued"),
            ("drsn onnxruntime, batching on (", "drsn on onnxruntime"),
            ("drsn libtorch", "drsn on libtorch"),
            ("drsn baseline", "the baseline binary"),
            ("mosec", "mosec"),
            ("FastAPI", "FastAPI"),
        ] {
            if let Some(theirs) = find(peer).filter(|t| t.label != ours.label) {
                println!(
                    "{ours_name} vs {name}: throughput x{:.2}, p99 {:.2} of theirs",
                    tp(&ours.loaded) / tp(&theirs.loaded),
                    ours.loaded.p99_ms / theirs.loaded.p99_ms
                );
                let round = |label: &str| by_round.iter().find(|(l, _)| l == label).map(|(_, t)| t.clone());
                if let (Some(a), Some(b), true) = (round(&ours.label), round(&theirs.label), args.rounds > 1) {
                    let mut ratios: Vec<f64> = a.iter().zip(&b).map(|(x, y)| x / y).collect();
                    let listed = ratios.iter().map(|r| format!("{r:.2}")).collect::<Vec<_>>().join(", ");
                    ratios.sort_by(f64::total_cmp);
                    println!(
                        "  round by round (each pair measured back to back): x{listed}; median x{:.2}",
                        ratios[ratios.len() / 2]
                    );
                }
            }
        }
    }

    if args.curve {
        println!("\ndrsn fused: windows/s and p99 ms by clients (columns) and how requests run (rows)");
        let clients = [1, 8, 64, 256];
        println!("| requests | {} |", clients.map(|c| format!("{c} clients")).join(" | "));
        println!("|---|{}", "---|".repeat(clients.len()));
        let queued = |batch: usize| [flags("fused", batch), vec!["--inline-max-windows".into(), "0".into()]].concat();
        let rows = [
            ("on the HTTP thread (default)".to_string(), flags("fused", 64)),
            ("queued, max batch 1".to_string(), queued(1)),
            ("queued, max batch 8".to_string(), queued(8)),
            ("queued, max batch 64".to_string(), queued(64)),
        ];
        for (name, row_flags) in rows {
            let mut cells = Vec::new();
            for c in clients {
                let s = setup(&format!("curve: {name}, {c} clients"), drsn(row_flags.clone()), &json);
                let row = measure(&runtime, &client, &s, c, args.seconds)?;
                cells.push(format!("{:.0} / {:.1}", tp(&row.loaded), row.loaded.p99_ms));
            }
            println!("| {name} | {} |", cells.join(" | "));
        }
    }
    Ok(())
}

/// The round with the median throughput, after printing every round's.
fn median_round(mut rounds: Vec<Row>) -> Row {
    rounds.sort_by(|a, b| tp(&a.loaded).total_cmp(&tp(&b.loaded)));
    if rounds.len() > 1 {
        let each: Vec<String> = rounds.iter().map(|r| format!("{:.0}", tp(&r.loaded))).collect();
        eprintln!("{}: windows/s by round, sorted: {}", rounds[0].label, each.join(" / "));
    }
    rounds.swap_remove(rounds.len() / 2)
}

fn tp(m: &Measured) -> f64 {
    m.requests as f64 / m.seconds
}

/// Starts a set-up's server, measures it unloaded and with `clients`, stops it.
fn measure(
    runtime: &tokio::runtime::Runtime,
    client: &reqwest::Client,
    s: &Setup<'_>,
    clients: usize,
    seconds: f64,
) -> anyhow::Result<Row> {
    let port = free_port()?;
    let mut server = Server((s.start)(port)?);
    let base = format!("http://127.0.0.1:{port}");
    let url = format!("{base}{}", s.path);
    let (alone, loaded) = runtime.block_on(async {
        wait_ready(client, &format!("{base}{}", s.ready), &mut server).await?;
        let start = stages(client, &base).await.unwrap_or_default();
        let alone = unloaded(&url, s.bodies).await;
        let between = stages(client, &base).await;
        let pid = server.0.id();
        let cpu_before = (cpu_seconds(pid), machine_busy_seconds());
        let loaded = load(std::slice::from_ref(&url), s.bodies, clients, seconds).await;
        if let ((Ok(server_before), Ok(machine_before)), Ok(server_after), Ok(machine_after)) =
            (cpu_before, cpu_seconds(pid), machine_busy_seconds())
        {
            let (server, machine) = (server_after - server_before, machine_after - machine_before);
            eprintln!(
                "{}: {clients} clients: server CPU {:.3} ms a request ({:.2} cores; main process), machine busy {:.2} cores",
                s.label,
                server * 1e3 / (loaded.sent as f64).max(1.0),
                server / loaded.wall,
                machine / loaded.wall
            );
        }
        if let (Some(between), Some(end)) = (between, stages(client, &base).await) {
            eprintln!("{}: 1 client: {}", s.label, start.between(&between));
            eprintln!("{}: {clients} clients: {}", s.label, between.between(&end));
        }
        if let Ok((_, peak)) = resident_kb(server.0.id()) {
            eprintln!("{}: peak resident memory {} MiB (main process)", s.label, peak / 1024);
        }
        anyhow::Ok((alone, loaded))
    })?;
    eprintln!(
        "{}: unloaded p50 {:.2} ms p99 {:.2} ms; {clients} clients: {:.0} windows/s p50 {:.1} ms p99 {:.1} ms ({} errors)",
        s.label,
        alone.p50_ms,
        alone.p99_ms,
        tp(&loaded),
        loaded.p50_ms,
        loaded.p99_ms,
        loaded.errors + alone.errors
    );
    Ok(Row { label: s.label.clone(), alone, loaded })
}
