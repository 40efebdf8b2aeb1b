//! Parity with the PyTorch twin (`python/drsn_twin.py`): given the weights Rust exported and
//! the same input, it must give the same probabilities and shrinkage diagnostics in eval
//! mode, and the same gradients and batch-norm statistics after a train-mode step, within
//! 1e-5, for every architecture in both dimensions.

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use drsn::nn::{Arch, Dim, Model, ModelSpec, StageSpec, StemSpec};
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-5;
const BATCH: i64 = 4;

/// The presets of both dimensions, and two specs that no preset covers: odd lengths and
/// sizes, several input channels, wider kernels, stride 3, odd channel growth (so that
/// the identity's zero channels split unevenly), and an ensemble of two members.
pub(crate) fn specs() -> Vec<(String, ModelSpec)> {
    let mut specs = Vec::new();
    for arch in [Arch::Resnet, Arch::DrsnCs, Arch::DrsnCw] {
        for preset in ["paper-1d", "seed-2d"] {
            specs.push((format!("{preset}-{arch}"), ModelSpec::preset(preset, arch, 10).unwrap()));
        }
        let stage = |channels, units, stride| StageSpec { channels, units, stride };
        specs.push((
            format!("custom-1d-{arch}"),
            ModelSpec {
                arch,
                dim: Dim::One,
                in_channels: 2,
                input_size: vec![301],
                stem: StemSpec { channels: 3, kernel: 5, stride: 1 },
                stages: vec![stage(4, 2, 2), stage(7, 1, 3)],
                classes: 5,
                kernel: 5,
                // An ensemble: members under `members.{m}.`, mean logits, a loss per member.
                members: 2,
            },
        ));
        specs.push((
            format!("custom-2d-{arch}"),
            ModelSpec {
                arch,
                dim: Dim::Two,
                in_channels: 3,
                input_size: vec![15, 12],
                stem: StemSpec { channels: 5, kernel: 3, stride: 2 },
                stages: vec![stage(6, 1, 1), stage(9, 2, 2)],
                classes: 4,
                kernel: 3,
                members: 1,
            },
        ));
    }
    specs
}

fn batch(spec: &ModelSpec) -> Tensor {
    let mut shape = vec![BATCH];
    shape.extend(spec.sample_shape());
    Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu))
}

/// Builds a model whose every parameter and running statistic is far from its initial
/// value (so that a twin which skipped a bias or a batch-norm statistic would disagree),
/// and writes into `dir` its spec and weights, an input with the eval-mode outputs, and
/// an input with labels with the gradients and running statistics after one train-mode
/// step. Returns the names of the outputs.
fn write_case(dir: &Path, spec: &ModelSpec) -> Vec<String> {
    std::fs::create_dir_all(dir).unwrap();
    let model = Model::new(spec, Device::Cpu).unwrap();
    tch::no_grad(|| {
        for mut var in model.var_store().trainable_variables() {
            let noisy = &var + var.randn_like() * 0.2;
            var.copy_(&noisy);
        }
        for _ in 0..3 {
            model.forward_t(&(batch(spec) * 2.0 + 0.3), true);
        }
    });
    model.save(&dir.join("weights.safetensors")).unwrap();
    std::fs::write(dir.join("spec.json"), serde_json::to_string(spec).unwrap()).unwrap();

    let xs = batch(spec);
    let out = model.infer(&xs, true).unwrap();
    let mut eval = vec![("probabilities".to_string(), out.probabilities())];
    for block in out.blocks {
        let d = block.diagnostics;
        for (what, value) in [
            ("thresholds", d.thresholds),
            ("scales", d.scales),
            ("mean_abs", d.mean_abs),
            ("zeroed_fraction", d.zeroed_fraction),
        ] {
            eval.push((format!("{}.{what}", block.name), value));
        }
    }

    let xs_train = batch(spec);
    let labels = Tensor::randint(spec.classes, [BATCH], (Kind::Int64, Device::Cpu));
    model.forward_t(&xs_train, true).loss(&labels).backward();
    let mut train = Vec::new();
    for (name, var) in model.var_store().variables() {
        if var.requires_grad() {
            train.push((format!("grad.{name}"), var.grad()));
        } else {
            train.push((format!("running.{name}"), var.copy()));
        }
    }

    let names = eval.iter().chain(&train).map(|(n, _)| n.clone()).collect();
    eval.push(("input".to_string(), xs));
    Tensor::write_safetensors(&eval, dir.join("eval.safetensors")).unwrap();
    train.push(("input".to_string(), xs_train));
    train.push(("labels".to_string(), labels));
    Tensor::write_safetensors(&train, dir.join("train.safetensors")).unwrap();
    names
}

/// Runs the twin's parity check over every case in `dir`: case -> output -> max |diff|
/// (null where the difference is not a number).
fn run_twin(dir: &Path) -> BTreeMap<String, BTreeMap<String, Option<f64>>> {
    let python = std::env::var("DRSN_PYTHON").unwrap_or_else(|_| "python3".to_string());
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("python/drsn_twin.py");
    let hint = "set DRSN_PYTHON to a Python with torch and safetensors: eval \"$(bash scripts/libtorch.sh)\"";
    let output = Command::new(&python)
        .arg(&script)
        .arg("parity")
        .arg(dir)
        .output()
        .unwrap_or_else(|e| panic!("could not run {python:?} (DRSN_PYTHON): {e}; {hint}"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{python} {} parity failed ({}):\n{stderr}\n{hint}",
        script.display(),
        output.status
    );
    serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!("the twin's report is not the expected JSON ({e}):\n{}", String::from_utf8_lossy(&output.stdout))
    })
}

#[test]
fn the_pytorch_twin_agrees_on_probabilities_thresholds_and_gradients_for_every_architecture() {
    tch::manual_seed(7);
    let dir = tempfile::tempdir().unwrap();
    let mut expected = BTreeMap::new();
    for (name, spec) in specs() {
        let outputs = write_case(&dir.path().join(&name), &spec);
        expected.insert(name, outputs);
    }
    let report = run_twin(dir.path());

    assert_eq!(report.keys().collect::<Vec<_>>(), expected.keys().collect::<Vec<_>>());
    let mut failures = Vec::new();
    let mut largest = 0.0f64;
    for (case, outputs) in &expected {
        let diffs = &report[case];
        let mut reported: Vec<&String> = diffs.keys().collect();
        let mut wanted: Vec<&String> = outputs.iter().collect();
        reported.sort();
        wanted.sort();
        assert_eq!(reported, wanted, "{case}: the twin compared other outputs than Rust wrote");
        // Every shrinkage unit reports its thresholds; a ResNet has none.
        let thresholds = outputs.iter().filter(|n| n.ends_with(".thresholds")).count();
        assert_eq!(thresholds > 0, !case.contains("resnet"), "{case}");
        for (output, diff) in diffs {
            match diff {
                Some(d) if *d <= TOLERANCE => largest = largest.max(*d),
                _ => failures.push(format!("{case} {output}: max |diff| {diff:?}")),
            }
        }
    }
    println!("largest difference over {} cases: {largest:e}", expected.len());
    assert!(failures.is_empty(), "Rust and the PyTorch twin differ by more than {TOLERANCE}:\n{}", failures.join("\n"));
}
