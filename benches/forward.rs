//! Forward-pass throughput of `paper-1d` DRSN-CW (10 classes) at batch 1 and 64, in one run,
//! with the same weights, inputs and intra-op thread count, eval mode and no gradients:
//! drsn on libtorch, drsn on ONNX Runtime (its own export, `src/onnx`) and drsn's fused CPU
//! forward (`src/fused`), against the
//! PyTorch twin (`python/drsn_twin.py`) eager and exported with `torch.onnx.export` to
//! onnxruntime's Python API.
//!
//!     cargo bench --bench forward [-- --threads 2 --rounds 15 --seconds 0.2]
//!
//! With `--device cuda` (and say `--batches 256,4096`): drsn on libtorch on the GPU against
//! the twin eager and through `torch.compile` on the same GPU (`scripts/gpu-check.sh`).
//!
//! The twin runs in a child process that times forward passes on request, so the sides
//! take turns (rotating which goes first) and share whatever noise the machine has.
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
    /// `cpu` (drsn's three backends against eager PyTorch and onnxruntime) or `cuda` (drsn
    /// on libtorch against eager PyTorch and torch.compile, on the first GPU).
    #[arg(long, default_value = "cpu")]
    device: String,
    /// Also time the twin through torch.compile (always on CUDA).
    #[arg(long)]
    compile: bool,
    /// Batch sizes, comma-separated.
    #[arg(long, value_delimiter = ',', default_values_t = [1, 64])]
    batches: Vec<i64>,
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
    fn start(dir: &Path, threads: i32, device: &str, compile: bool) -> anyhow::Result<Self> {
        let python = std::env::var("DRSN_PYTHON").unwrap_or_else(|_| "python3".to_string());
        // Relative to the package root, where cargo runs benchmarks (and scripts/gpu-check.sh
        // runs them, built elsewhere).
        let script = Path::new("python/drsn_twin.py");
        let mut child = Command::new(&python)
            .arg(script)
            .arg("bench")
            .args(["--spec", &path(dir, "spec.json"), "--weights", &path(dir, "weights.safetensors")])
            .args(["--inputs", &path(dir, "inputs.safetensors"), "--threads", &threads.to_string()])
            .args(["--device", device])
            .args(compile.then_some("--compile"))
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
    /// (`torch`), compiled (`compiled`) or exported (`onnxruntime`).
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
/// libtorch, on the device `xs` lives on (waiting for a GPU to finish).
fn time_libtorch(model: &Model, xs: &Tensor, iterations: usize) -> anyhow::Result<f64> {
    let start = Instant::now();
    for _ in 0..iterations {
        let out = model.infer(xs, true)?;
        drop(std::hint::black_box(out.probabilities()));
    }
    if let Device::Cuda(index) = xs.device() {
        tch::Cuda::synchronize(index as i64);
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

/// What is timed: drsn's backends and the twin's.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    Libtorch,
    Onnx,
    Fused,
    Eager,
    Compiled,
    PythonOnnx,
}

impl Side {
    fn label(self) -> &'static str {
        match self {
            Side::Libtorch => "drsn libtorch",
            Side::Onnx => "drsn onnxruntime",
            Side::Fused => "drsn fused",
            Side::Eager => "PyTorch eager",
            Side::Compiled => "torch.compile",
            Side::PythonOnnx => "Python onnxruntime",
        }
    }

    fn is_drsn(self) -> bool {
        matches!(self, Side::Libtorch | Side::Onnx | Side::Fused)
    }
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
    let device = drsn::device::parse(&args.device)?;
    let mut sides = match device {
        Device::Cpu => vec![Side::Libtorch, Side::Onnx, Side::Fused, Side::Eager, Side::PythonOnnx],
        _ => vec![Side::Libtorch, Side::Eager, Side::Compiled],
    };
    if args.compile && !sides.contains(&Side::Compiled) {
        sides.push(Side::Compiled);
    }
    let spec = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10)?;
    let model = Model::new(&spec, Device::Cpu)?;
    // Realistic batch-norm statistics, as after training.
    tch::no_grad(|| {
        for _ in 0..5 {
            model.forward_t(&Tensor::randn([32, 1, 2048], (Kind::Float, Device::Cpu)), true);
        }
    });
    let inputs: Vec<(String, Tensor)> = args
        .batches
        .iter()
        .map(|&n| (format!("batch{n}"), Tensor::randn([n, 1, 2048], (Kind::Float, Device::Cpu))))
        .collect();
    let dir = tempfile::tempdir()?;
    export(&model, &inputs, dir.path())?;
    // The CPU backends only where they are timed (ONNX Runtime need not be installed on a GPU machine).
    let (mut onnx, fused) = if device == Device::Cpu {
        drsn::onnx::init_from_env(args.threads as usize)?;
        (Some(OnnxModel::new(&model)?), Some(FusedModel::new(&model, args.threads as usize)?))
    } else {
        (None, None)
    };
    let model = if device == Device::Cpu {
        model
    } else {
        Model::load(model.spec(), &dir.path().join("weights.safetensors"), device)?
    };
    let twin_device = if device == Device::Cpu { "cpu" } else { "cuda" };
    let mut twin = Twin::start(dir.path(), args.threads, twin_device, sides.contains(&Side::Compiled))?;

    println!(
        "paper-1d DRSN-CW, 10 classes, {device:?}, {} threads, {} interleaved rounds of about {} s",
        args.threads, args.rounds, args.seconds
    );
    println!("windows/s of the best round (and the median round)");
    print!("{:>6}", "batch");
    sides.iter().for_each(|side| print!(" {:>20}", side.label()));
    println!();
    let mut results = Vec::new();
    for (batch, (_, xs)) in args.batches.iter().zip(&inputs) {
        let n = *batch as usize;
        let flat = Vec::<f32>::try_from(xs.flatten(0, -1))?;
        let on_device = xs.to_device(device);
        let mut time = |side: Side, iterations: usize| -> anyhow::Result<f64> {
            match (side, &mut onnx, &fused) {
                (Side::Libtorch, _, _) => time_libtorch(&model, &on_device, iterations),
                (Side::Onnx, Some(onnx), _) => time_onnx(onnx, &flat, n, iterations),
                (Side::Fused, _, Some(fused)) => time_fused(fused, &flat, n, iterations),
                (Side::Eager, _, _) => twin.time(*batch, iterations, "torch"),
                (Side::Compiled, _, _) => twin.time(*batch, iterations, "compiled"),
                (Side::PythonOnnx, _, _) => twin.time(*batch, iterations, "onnxruntime"),
                (side, _, _) => bail!("{} is not prepared on {device:?}", side.label()),
            }
        };
        // Warm every side up (torch.compile compiles here), then size each side's round to
        // take about `seconds`: a round of a fast side sized by the slowest would last a few
        // milliseconds, short enough for the previous side's thread pools, still spinning,
        // to weigh on it.
        let mut iterations = Vec::with_capacity(sides.len());
        for &side in &sides {
            time(side, 1)?;
            let warm = time(side, 5)?;
            iterations.push(((args.seconds * 5.0 / warm).ceil() as usize).max(1));
        }
        let mut rounds = vec![Vec::new(); sides.len()];
        for round in 0..args.rounds {
            for k in 0..sides.len() {
                let i = (round + k) % sides.len();
                let seconds = time(sides[i], iterations[i])?;
                rounds[i].push((*batch as f64 * iterations[i] as f64) / seconds);
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
        let lines: Vec<String> = sides
            .iter()
            .zip(&best)
            .filter(|(side, _)| side.is_drsn())
            .map(|(side, ours)| {
                let to: Vec<String> = sides
                    .iter()
                    .zip(&best)
                    .filter(|(peer, _)| !peer.is_drsn() || **peer == Side::Onnx && *side == Side::Fused)
                    .map(|(peer, theirs)| format!("/ {} {:.2}", peer.label(), ours / theirs))
                    .collect();
                format!("{} {}", side.label(), to.join(", "))
            })
            .collect();
        println!("batch {batch:>4}: {}", lines.join("; "));
    }
    Ok(())
}
