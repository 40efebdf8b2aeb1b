//! Training throughput (samples/s) of `drsn::train::train` against the PyTorch twin
//! (`python/train_bench.py`) on the same network (paper-1d DRSN-CW, 10 classes), batch
//! (128 by default), optimiser (SGD momentum 0.9, L2 1e-4 on kernels), data and thread count, in one
//! run. Rounds alternate between the two so that load from elsewhere on the machine hits
//! both alike; the medians of the paired rounds are compared, by wall-clock time and by
//! CPU time (which a busy shared machine disturbs less).
//!
//!     cargo bench --bench train
//!
//! Environment: DRSN_BENCH_THREADS (default 1), DRSN_BENCH_BATCHES (batches per round,
//! default 4), DRSN_BENCH_BATCH (windows a batch, default 128), DRSN_BENCH_ROUNDS (default
//! 5), DRSN_BENCH_DEVICE (cpu or cuda, default cpu), DRSN_BENCH_TWIN (`eager`, default, or
//! `compile`: the twin's forward pass and loss through `torch.compile`), DRSN_PYTHON (a
//! Python with torch; `scripts/libtorch.sh` exports it).
//!
//! One thread by default: on a small machine shared with other work, two intra-op
//! threads made both sides about ten times slower (OpenMP threads spinning at barriers
//! while the other is descheduled), which measures the neighbours rather than the code.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::Instant;

use anyhow::{bail, Context};
use drsn::data::{Dataset, Normalization, Samples};
use drsn::nn::{Arch, Model, ModelSpec};
use drsn::train::{init_model, train, CancelToken, Optimizer, TrainConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use tch::Tensor;

const LR: f64 = 0.01;
const L2: f64 = 1e-4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v.parse().map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// Gaussian windows with random labels: throughput does not depend on the values.
fn samples(n: usize, len: usize, seed: u64) -> Samples {
    let mut rng = StdRng::seed_from_u64(seed);
    Samples {
        values: (0..n * len).map(|_| rng.sample::<f32, _>(StandardNormal)).collect(),
        sample_shape: vec![1, len],
        labels: (0..n).map(|_| rng.random_range(0..10)).collect(),
    }
}

/// CPU seconds used so far by every thread of this process.
fn cpu_seconds() -> f64 {
    // SAFETY: getrusage fills the zeroed struct it is given.
    let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut usage) };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 * 1e-6;
    t(usage.ru_utime) + t(usage.ru_stime)
}

/// One measurement: samples trained, wall-clock seconds, CPU seconds.
struct Timing {
    samples: f64,
    seconds: f64,
    cpu_seconds: f64,
}

fn rust_round(model: &mut Model, data: &Dataset, config: &TrainConfig) -> anyhow::Result<Timing> {
    let (wall, cpu) = (Instant::now(), cpu_seconds());
    let report = train(model, data, Normalization::ZScore, config, &mut |_| {}, &CancelToken::new())?;
    Ok(Timing {
        samples: (report.steps * config.batch_size) as f64,
        seconds: wall.elapsed().as_secs_f64(),
        cpu_seconds: cpu_seconds() - cpu,
    })
}

/// The twin's training loop in a Python process that answers timing requests.
struct Twin {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

impl Twin {
    fn start(
        python: &str,
        dir: &Path,
        threads: usize,
        device: &str,
        batch: usize,
        compile: bool,
    ) -> anyhow::Result<Self> {
        // Relative to the package root, where cargo runs benchmarks (and scripts/gpu-check.sh
        // runs them, built elsewhere).
        let script = Path::new("python/train_bench.py");
        let mut child = Command::new(python)
            .arg(script)
            .args(["--spec", &dir.join("spec.json").display().to_string()])
            .args(["--data", &dir.join("data.safetensors").display().to_string()])
            .args(["--batch", &batch.to_string(), "--lr", &LR.to_string(), "--l2", &L2.to_string()])
            .args(["--threads", &threads.to_string(), "--device", device])
            .args(compile.then_some("--compile"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("starting {python} {}", script.display()))?;
        let stdin = child.stdin.take().context("no stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("no stdout")?);
        let mut twin = Twin { child, stdin, stdout };
        twin.answer()?;
        Ok(twin)
    }

    fn answer(&mut self) -> anyhow::Result<serde_json::Value> {
        let mut line = String::new();
        if self.stdout.read_line(&mut line)? == 0 {
            bail!("python/train_bench.py ended early (its error is above)");
        }
        serde_json::from_str(&line).with_context(|| format!("python/train_bench.py said {line:?}"))
    }

    fn round(&mut self) -> anyhow::Result<Timing> {
        writeln!(self.stdin, "1")?;
        self.stdin.flush()?;
        let json = self.answer()?;
        let field = |name: &str| json[name].as_f64().with_context(|| format!("no {name} in {json}"));
        Ok(Timing { samples: field("samples")?, seconds: field("seconds")?, cpu_seconds: field("cpu_seconds")? })
    }
}

impl Drop for Twin {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    }
}

fn main() -> anyhow::Result<()> {
    let threads: usize = env_or("DRSN_BENCH_THREADS", 1)?;
    let batches: usize = env_or("DRSN_BENCH_BATCHES", 4)?;
    let batch: usize = env_or("DRSN_BENCH_BATCH", 128)?;
    let rounds: usize = env_or("DRSN_BENCH_ROUNDS", 5)?;
    let twin_mode: String = env_or("DRSN_BENCH_TWIN", "eager".to_string())?;
    let compile = match twin_mode.as_str() {
        "eager" => false,
        "compile" => true,
        other => bail!("DRSN_BENCH_TWIN={other:?}: expected eager or compile"),
    };
    let device_name: String = env_or("DRSN_BENCH_DEVICE", "cpu".to_string())?;
    let device = drsn::device::parse(&device_name)?;
    let python = std::env::var("DRSN_PYTHON")
        .context("DRSN_PYTHON is not set: run `eval \"$(bash scripts/libtorch.sh)\"` first")?;

    let spec = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10)?;
    let len = spec.sample_len();
    let train_set = samples(batch * batches, len, 1);
    let data =
        Dataset { classes: (0..10).map(|i| format!("c{i}")).collect(), train: train_set.clone(), ..Default::default() };
    // One epoch per round; no validation data, so nothing but training is timed.
    let config = TrainConfig {
        optimizer: Optimizer::Sgd { momentum: 0.9 },
        lr: LR,
        lr_milestones: vec![],
        lr_gamma: 0.1,
        epochs: 1,
        batch_size: batch,
        weight_decay: L2,
        seed: 0,
        augment: None,
        threads: Some(threads),
        ema_decay: None,
    };

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("spec.json"), serde_json::to_string(&spec)?)?;
    let x = Tensor::from_slice(&train_set.values).view([train_set.len() as i64, 1, len as i64]);
    let y = Tensor::from_slice(&train_set.labels);
    Tensor::write_safetensors(&[("x", &x), ("y", &y)], dir.path().join("data.safetensors"))?;

    println!(
        "training throughput: paper-1d DRSN-CW, batch {batch}, SGD momentum 0.9, L2 {L2}, \
         {batches} steps per round, {rounds} rounds, {threads} threads, {device_name}, the twin {twin_mode}"
    );
    let mut twin = Twin::start(&python, dir.path(), threads, &device_name, batch, compile)?;
    let mut model = init_model(&spec, device, 0)?;
    // Warm-up: first-touch allocations and kernel selection on both sides.
    rust_round(&mut model, &data, &config)?;
    twin.round()?;
    let (mut rust_wall, mut py_wall, mut wall_ratio, mut cpu_ratio) = (vec![], vec![], vec![], vec![]);
    for round in 1..=rounds {
        let r = rust_round(&mut model, &data, &config)?;
        let p = twin.round()?;
        let (rw, pw) = (r.samples / r.seconds, p.samples / p.seconds);
        let (rc, pc) = (r.samples / r.cpu_seconds, p.samples / p.cpu_seconds);
        println!(
            "round {round}: drsn {rw:7.1} samples/s ({rc:6.1} per CPU-s)   \
             pytorch twin ({twin_mode}) {pw:7.1} samples/s ({pc:6.1} per CPU-s)   ratio {:.2} (CPU {:.2})",
            rw / pw,
            rc / pc
        );
        rust_wall.push(rw);
        py_wall.push(pw);
        wall_ratio.push(rw / pw);
        cpu_ratio.push(rc / pc);
    }
    println!(
        "median: drsn {:.1} samples/s, pytorch twin {:.1} samples/s; ratio {:.2} by wall clock, {:.2} by CPU time",
        median(rust_wall),
        median(py_wall),
        median(wall_ratio),
        median(cpu_ratio)
    );
    Ok(())
}
