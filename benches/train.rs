//! Training throughput (samples/s) of `drsn::train::train` against the PyTorch twin on
//! the same network (paper-1d DRSN-CW, 10 classes), batch (128), optimiser (SGD momentum
//! 0.9, L2 1e-4 on kernels), data and thread count, in one run. Rounds alternate between
//! the two so that load from elsewhere on the machine hits both alike; the best round of
//! each is compared.
//!
//!     cargo bench --bench train
//!
//! Environment: DRSN_BENCH_THREADS (default 2), DRSN_BENCH_EPOCHS (default 2),
//! DRSN_BENCH_BATCHES (batches per epoch, default 8), DRSN_BENCH_ROUNDS (default 3),
//! DRSN_BENCH_DEVICE (cpu or cuda, default cpu), DRSN_PYTHON (a Python with torch).

use std::path::Path;
use std::process::Command;

use anyhow::{bail, Context};
use drsn::data::{Dataset, Normalization, Samples};
use drsn::nn::{Arch, ModelSpec};
use drsn::train::{init_model, train, CancelToken, Optimizer, TrainConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::StandardNormal;
use tch::{Device, Tensor};

const BATCH: usize = 128;
const LR: f64 = 0.01;
const L2: f64 = 1e-4;

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> anyhow::Result<T> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v:?} is not a valid value")),
        Err(_) => Ok(default),
    }
}

/// Gaussian windows with random labels: throughput does not depend on the values.
fn samples(n: usize, len: usize, seed: u64) -> Samples {
    let mut rng = StdRng::seed_from_u64(seed);
    Samples {
        values: (0..n * len)
            .map(|_| rng.sample::<f32, _>(StandardNormal))
            .collect(),
        sample_shape: vec![1, len],
        labels: (0..n).map(|_| rng.random_range(0..10)).collect(),
    }
}

fn rust_round(
    spec: &ModelSpec,
    data: &Dataset,
    config: &TrainConfig,
    device: Device,
) -> anyhow::Result<f64> {
    let mut model = init_model(spec, device, config.seed)?;
    let report = train(
        &mut model,
        data,
        Normalization::ZScore,
        config,
        &mut |_| {},
        &CancelToken::new(),
    )?;
    Ok(report.samples_per_s)
}

fn python_round(
    python: &str,
    dir: &Path,
    epochs: usize,
    threads: usize,
    device: &str,
) -> anyhow::Result<f64> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/train_bench.py");
    let out = Command::new(python)
        .arg(&script)
        .args(["--spec", &dir.join("spec.json").display().to_string()])
        .args([
            "--data",
            &dir.join("data.safetensors").display().to_string(),
        ])
        .args([
            "--epochs",
            &epochs.to_string(),
            "--batch",
            &BATCH.to_string(),
        ])
        .args(["--lr", &LR.to_string(), "--l2", &L2.to_string()])
        .args(["--threads", &threads.to_string(), "--device", device])
        .output()
        .with_context(|| format!("running {python} {}", script.display()))?;
    if !out.status.success() {
        bail!(
            "{} failed: {}",
            script.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let line = String::from_utf8_lossy(&out.stdout);
    let json: serde_json::Value = serde_json::from_str(line.trim())
        .with_context(|| format!("train_bench.py printed {line:?}"))?;
    json["samples_per_s"]
        .as_f64()
        .context("train_bench.py gave no samples_per_s")
}

fn main() -> anyhow::Result<()> {
    let threads: usize = env_or("DRSN_BENCH_THREADS", 2)?;
    let epochs: usize = env_or("DRSN_BENCH_EPOCHS", 2)?;
    let batches: usize = env_or("DRSN_BENCH_BATCHES", 8)?;
    let rounds: usize = env_or("DRSN_BENCH_ROUNDS", 3)?;
    let device_name: String = env_or("DRSN_BENCH_DEVICE", "cpu".to_string())?;
    let device = drsn::device::parse(&device_name)?;
    let python = std::env::var("DRSN_PYTHON")
        .context("DRSN_PYTHON is not set: run `eval \"$(bash scripts/libtorch.sh)\"` first")?;

    let spec = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10)?;
    let len = spec.sample_len();
    let train_set = samples(BATCH * batches, len, 1);
    let data = Dataset {
        classes: (0..10).map(|i| format!("c{i}")).collect(),
        train: train_set.clone(),
        ..Default::default()
    };
    let config = TrainConfig {
        optimizer: Optimizer::Sgd { momentum: 0.9 },
        lr: LR,
        lr_milestones: vec![],
        lr_gamma: 0.1,
        epochs,
        batch_size: BATCH,
        weight_decay: L2,
        seed: 0,
        augment: None,
        threads: Some(threads),
    };

    let dir = tempfile::tempdir()?;
    std::fs::write(dir.path().join("spec.json"), serde_json::to_string(&spec)?)?;
    let x = Tensor::from_slice(&train_set.values).view([train_set.len() as i64, 1, len as i64]);
    let y = Tensor::from_slice(&train_set.labels);
    Tensor::write_safetensors(&[("x", &x), ("y", &y)], dir.path().join("data.safetensors"))?;

    println!(
        "training throughput: paper-1d DRSN-CW, batch {BATCH}, SGD momentum 0.9, L2 {L2}, \
         {batches} batches x {epochs} epochs per round, {rounds} rounds, {threads} threads, {device_name}"
    );
    // Warm-up: first-touch allocations and kernel selection on both sides.
    rust_round(
        &spec,
        &Dataset {
            train: samples(BATCH * 2, len, 2),
            ..data.clone()
        },
        &TrainConfig {
            epochs: 1,
            ..config.clone()
        },
        device,
    )?;
    let (mut best_rust, mut best_py) = (0.0f64, 0.0f64);
    for round in 1..=rounds {
        let rust = rust_round(&spec, &data, &config, device)?;
        let py = python_round(&python, dir.path(), epochs, threads, &device_name)?;
        println!("round {round}: drsn {rust:8.1} samples/s   pytorch twin {py:8.1} samples/s   ratio {:.2}", rust / py);
        best_rust = best_rust.max(rust);
        best_py = best_py.max(py);
    }
    println!(
        "best: drsn {best_rust:.1} samples/s, pytorch twin {best_py:.1} samples/s, ratio {:.2}",
        best_rust / best_py
    );
    Ok(())
}
