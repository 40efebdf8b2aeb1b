//! Forward-pass throughput of `paper-1d` DRSN-CW (10 classes) at batch 1 and 64, in one run,
//! with the same weights, inputs and intra-op thread count, eval mode and no gradients:
//! drsn on libtorch, drsn on ONNX Runtime (its own export, `src/onnx`) and drsn's fused CPU
//! forward (`src/fused`), against the
//! PyTorch twin (`python/drsn_twin.py`) eager and exported with `torch.onnx.export` to
//! onnxruntime's Python API.
//!
//!     cargo bench --bench forward [-- --threads 2 --rounds 15 --seconds 0.2]
//!
//! The twin runs in a child process that times forward passes on request, so the five
//! sides take turns (rotating which goes first) and share whatever noise the machine has.
//! All report probabilities and every unit's diagnostics.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use clap::Parser;
use drsn::fused::FusedModel;
use drsn::nn::{Arch, Model, ModelSpec};
use drsn::onnx::OnnxModel;
use tch::{Device, Kind, Tensor};

const BATCHES: [i64; 2] = [1, 64];

#[derive(Parser)]
struct Args {
    /// Intra-op threads on every side: libtorch and ONNX Runtime's pool in drsn, torch and
    /// onnxruntime in Python.
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

    /// Seconds that `iterations` forward passes at `batch` took in the twin, eager
    /// (`torch`) or exported (`onnxruntime`).
    fn time(&mut self, batch: i64, iterations: usize, side: &str) -> anyhow::Result<f64> {
        writeln!(self.stdin, "{batch} {iterations} {side}")?;
        self.stdin.flush()?;
        let reply = self.reply()?;
        reply["seconds"].as_f64().with_context(|| format!("no seconds in {reply}"))
    }
}

fn path(dir: &Path, name: &str) -> String {
    dir.join(name).to_string_lossy().into_owned()
}

/// Seconds that `iterations` forward passes (probabilities and diagnostics) took in drsn on
/// libtorch.
fn time_libtorch(model: &Model, xs: &Tensor, iterations: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..iterations {
        let out = model.infer(xs, true)?;
        drop(std::hint::black_box(out.probabilities()));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The same in drsn on ONNX Runtime, from the flat input the engine hands it.
fn time_onnx(model: &mut OnnxModel, xs: &[f32], n: usize, iterations: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..iterations {
        drop(std::hint::black_box(model.infer(xs, n, true)?.probabilities));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The same in drsn's fused forward.
fn time_fused(model: &FusedModel, xs: &[f32], n: usize, iterations: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..iterations {
        drop(std::hint::black_box(model.infer(xs, n, true)?.probabilities));
    }
    Ok(start.elapsed().as_secs_f64())
}

/// The five sides, in the order of the table's columns.
const SIDES: [&str; 5] = ["drsn libtorch", "drsn onnxruntime", "drsn fused", "PyTorch eager", "Python onnxruntime"];

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
    drsn::onnx::init_from_env(args.threads as usize)?;
    let mut onnx = OnnxModel::new(&model)?;
    let fused = FusedModel::new(&model, args.threads as usize)?;
    let mut twin = Twin::start(dir.path(), args.threads)?;

    println!(
        "paper-1d DRSN-CW, 10 classes, CPU, {} threads, {} interleaved rounds of about {} s",
        args.threads, args.rounds, args.seconds
    );
    println!("windows/s of the best round (and the median round)");
    print!("{:>6}", "batch");
    SIDES.iter().for_each(|side| print!(" {side:>20}"));
    println!();
    let mut results = Vec::new();
    for (batch, (_, xs)) in BATCHES.iter().zip(&inputs) {
        let n = *batch as usize;
        let flat = Vec::<f32>::try_from(xs.flatten(0, -1))?;
        let mut time = |side: usize, iterations: usize| -> anyhow::Result<f64> {
            match side {
                0 => time_libtorch(&model, xs, iterations),
                1 => time_onnx(&mut onnx, &flat, n, iterations),
                2 => time_fused(&fused, &flat, n, iterations),
                3 => twin.time(*batch, iterations, "torch"),
                _ => twin.time(*batch, iterations, "onnxruntime"),
            }
        };
        // Warm every side up, then size each side's round to take about `seconds`: a round
        // of a fast side sized by the slowest would last a few milliseconds, short enough
        // for the previous side's thread pools, still spinning, to weigh on it.
        let mut iterations = Vec::with_capacity(SIDES.len());
        for side in 0..SIDES.len() {
            let warm = time(side, 5)?;
            iterations.push(((args.seconds * 5.0 / warm).ceil() as usize).max(1));
        }
        let mut rounds = vec![Vec::new(); SIDES.len()];
        for round in 0..args.rounds {
            for k in 0..SIDES.len() {
                let side = (round + k) % SIDES.len();
                let seconds = time(side, iterations[side])?;
                rounds[side].push((*batch as f64 * iterations[side] as f64) / seconds);
            }
        }
        // Other processes can only slow a round down: the best round is the closest to
        // the undisturbed speed (as with Python's timeit), the median the typical one.
        let best: Vec<f64> = rounds.iter().map(|r| best(r)).collect();
        print!("{batch:>6}");
        for (b, r) in best.iter().zip(rounds) {
            print!(" {:>20}", format!("{b:.1} ({:.1})", median(r)));
        }
        println!();
        results.push((*batch, best));
    }
    drop(twin.stdin);
    twin.child.wait()?;
    println!("ratios of the best rounds:");
    for (batch, best) in results {
        let [libtorch, onnx, fused, eager, python_onnx] = [best[0], best[1], best[2], best[3], best[4]];
        println!(
            "batch {batch:>2}: drsn fused / Python onnxruntime {:.2}, / drsn onnxruntime {:.2}, / PyTorch eager {:.2}; \
             drsn onnxruntime / Python onnxruntime {:.2}, / PyTorch eager {:.2}; drsn libtorch / PyTorch eager {:.2}",
            fused / python_onnx,
            fused / onnx,
            fused / eager,
            onnx / python_onnx,
            onnx / eager,
            libtorch / eager
        );
    }
    Ok(())
}
