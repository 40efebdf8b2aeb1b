//! Forward-pass throughput of `paper-1d` DRSN-CW (10 classes) at batch 1 and 64: Rust
//! against the PyTorch twin (`python/drsn_twin.py`), in one run, with the same weights,
//! inputs and intra-op thread count, eval mode and no gradients on both sides.
//!
//!     cargo bench --bench forward [-- --threads 2 --rounds 15 --seconds 0.2]
//!
//! The twin runs in a child process that times forward passes on request, so the two
//! sides take turns (alternating which goes first) and share whatever noise the machine
//! has. Both report probabilities and every unit's diagnostics.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use drsn::nn::{Arch, Model, ModelSpec};
use tch::{Device, Kind, Tensor};

const BATCHES: [i64; 2] = [1, 64];

#[derive(Parser)]
struct Args {
    /// Intra-op threads for both libtorch (Rust) and torch (Python).
    #[arg(long, default_value_t = 2)]
    threads: i32,
    /// Timed rounds per batch size and side.
    #[arg(long, default_value_t = 15)]
    rounds: usize,
    /// Roughly how long one timed round takes, in seconds.
    #[arg(long, default_value_t = 0.2)]
    seconds: f64,
    /// Passed by `cargo bench`.
    #[arg(long, hide = true)]
    bench: bool,
}

/// The twin, timing forward passes on request.
struct Twin {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Twin {
    fn start(dir: &Path, threads: i32) -> anyhow::Result<Self> {
        let python = std::env::var("DRSN_PYTHON").unwrap_or_else(|_| "python3".to_string());
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/drsn_twin.py");
        let mut child = Command::new(&python)
            .arg(&script)
            .arg("bench")
            .args(["--spec", &path(dir, "spec.json"), "--weights", &path(dir, "weights.safetensors")])
            .args(["--inputs", &path(dir, "inputs.safetensors"), "--threads", &threads.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {python:?} (set DRSN_PYTHON: eval \"$(bash scripts/libtorch.sh)\")"))?;
        let stdin = child.stdin.take().context("twin stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("twin stdout")?);
        let mut twin = Twin { child, stdin, stdout };
        let ready = twin.reply()?;
        if ready["threads"] != threads {
            bail!("the twin runs {} threads, not {threads}", ready["threads"]);
        }
        Ok(twin)
    }

    fn reply(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("the twin exited early: {:?}", self.child.wait()?);
        }
        serde_json::from_str(&line).with_context(|| format!("the twin answered {line:?}"))
    }

    /// Seconds that `iterations` forward passes at `batch` took in the twin.
    fn time(&mut self, batch: i64, iterations: usize) -> anyhow::Result<f64> {
        writeln!(self.stdin, "{batch} {iterations}")?;
        self.stdin.flush()?;
        let reply = self.reply()?;
        reply["seconds"].as_f64().with_context(|| format!("no seconds in {reply}"))
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// Seconds that `iterations` forward passes (probabilities and diagnostics) took in Rust.
fn time_rust(model: &Model, xs: &Tensor, iterations: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..iterations {
        let out = model.infer(xs, true)?;
        drop(std::hint::black_box(out.probabilities()));
    }
    Ok(start.elapsed().as_secs_f64())
}

fn best(xs: &[f64]) -> f64 {
    xs.iter().copied().fold(0.0, f64::max)
}

fn median(mut xs: Vec<f64>) -> f64 {
    xs.sort_by(f64::total_cmp);
    xs[xs.len() / 2]
}

/// Writes the model's spec and weights and one input per batch size for the twin.
fn export(model: &Model, inputs: &[(String, Tensor)], dir: &Path) -> anyhow::Result<()> {
    std::fs::write(dir.join("spec.json"), serde_json::to_string(model.spec())?)?;
    model.save(&dir.join("weights.safetensors"))?;
    Tensor::write_safetensors(inputs, dir.join("inputs.safetensors"))?;
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    tch::set_num_threads(args.threads);
    tch::manual_seed(0);
    let spec = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10)?;
    let model = Model::new(&spec, Device::Cpu)?;
    // Realistic batch-norm statistics, as after training.
    tch::no_grad(|| {
        for _ in 0..5 {
            model.forward_t(&Tensor::randn([32, 1, 2048], (Kind::Float, Device::Cpu)), true);
        }
    });
    let inputs: Vec<(String, Tensor)> = BATCHES
        .iter()
        .map(|&n| (format!("batch{n}"), Tensor::randn([n, 1, 2048], (Kind::Float, Device::Cpu))))
        .collect();
    let dir = tempfile::tempdir()?;
    export(&model, &inputs, dir.path())?;
    let mut twin = Twin::start(dir.path(), args.threads)?;

    println!(
        "paper-1d DRSN-CW, 10 classes, CPU, {} threads, {} interleaved rounds of about {} s",
        args.threads, args.rounds, args.seconds
    );
    println!("samples/s of the best round (and the median round)");
    println!("{:>6} {:>22} {:>22} {:>14}", "batch", "Rust", "PyTorch", "Rust/PyTorch");
    let mut ratios = Vec::new();
    for (batch, (_, xs)) in BATCHES.iter().zip(&inputs) {
        // Warm both up, then size a round to take about `seconds` in Rust.
        let probe = time_rust(&model, xs, 5)?;
        twin.time(*batch, 5)?;
        let iterations = ((args.seconds * 5.0 / probe).ceil() as usize).max(1);
        let per_second = |s: f64| (*batch as f64 * iterations as f64) / s;
        let (mut rust, mut torch) = (Vec::new(), Vec::new());
        for round in 0..args.rounds {
            if round % 2 == 0 {
                rust.push(per_second(time_rust(&model, xs, iterations)?));
                torch.push(per_second(twin.time(*batch, iterations)?));
            } else {
                torch.push(per_second(twin.time(*batch, iterations)?));
                rust.push(per_second(time_rust(&model, xs, iterations)?));
            }
        }
        // Other processes can only slow a round down: the best round is the closest to
        // the undisturbed speed (as with Python's timeit), the median the typical one.
        let (rust_best, torch_best) = (best(&rust), best(&torch));
        let (rust_median, torch_median) = (median(rust), median(torch));
        println!(
            "{batch:>6} {:>22} {:>22} {:>14}",
            format!("{rust_best:.1} ({rust_median:.1})"),
            format!("{torch_best:.1} ({torch_median:.1})"),
            format!("{:.2} ({:.2})", rust_best / torch_best, rust_median / torch_median),
        );
        ratios.push((*batch, rust_best / torch_best));
    }
    drop(twin.stdin);
    twin.child.wait()?;
    for (batch, ratio) in ratios {
        let target = if batch == 1 { 2.0 } else { 1.0 };
        let verdict = if ratio >= target { "meets" } else { "MISSES" };
        println!("batch {batch}: Rust/PyTorch {ratio:.2} (best rounds) {verdict} the target of {target:.1}");
    }
    Ok(())
}
