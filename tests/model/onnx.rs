//! The ONNX Runtime path against libtorch, the reference: for every architecture in both
//! dimensions (the parity test's specs) and for the shipped models, the exported graph run
//! by ONNX Runtime gives libtorch's probabilities, logits (relative to the row's largest),
//! pooled features and every unit's thresholds, scales and mean |x| within 1e-5 (relative
//! above 1), and its share of zeroed
//! values within 1e-3 (a value within rounding of its threshold may fall either side: in a
//! unit of 4 channels of 512 values one such value is 4.9e-4).

use std::path::Path;

use drsn::nn::{Forward, Model, ModelSpec};
use drsn::onnx::{self, OnnxModel};
use tch::{Device, Kind, Tensor};

use super::parity::specs;

pub(crate) const TOLERANCE: f64 = 1e-5;

/// ONNX Runtime from the library that `scripts/libtorch.sh` installs and names.
fn init_onnxruntime() {
    onnx::init_from_env(2).unwrap();
}

/// The largest difference, relative where `a`'s values exceed 1 (pooled features reach tens:
/// float rounding alone moves them by more than 1e-5 there).
pub(crate) fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    if a.size() != b.size() {
        return f64::INFINITY;
    }
    ((a - b).abs() / a.abs().clamp_min(1.0)).max().double_value(&[])
}

/// The largest difference between two rows of logits, relative to the row's largest |logit|
/// where that exceeds 1. A logit is a sum of terms as large as the row's: a logit near zero
/// among logits near 10 carries their rounding, so an element-wise relative measure fails on
/// rounding alone (1.06e-5 seen over 500 random windows of the shipped model, while the
/// probabilities agreed within 1e-6).
pub(crate) fn max_logit_diff(a: &Tensor, b: &Tensor) -> f64 {
    if a.size() != b.size() {
        return f64::INFINITY;
    }
    let scale = a.abs().amax([-1i64].as_slice(), true).clamp_min(1.0);
    ((a - b).abs() / scale).max().double_value(&[])
}

/// Asserts that the two forward passes agree, and returns the largest difference seen.
pub(crate) fn compare(what: &str, torch: &Forward, ort: &Forward) -> f64 {
    let probs = |f: &Forward| f.logits.softmax(-1, Kind::Float);
    let mut worst = 0f64;
    let mut check = |name: &str, a: &Tensor, b: &Tensor| {
        let d = max_diff(a, b);
        assert!(d < TOLERANCE, "{what}: {name} differ by {d} (shapes {:?} and {:?})", a.size(), b.size());
        worst = worst.max(d);
    };
    check("probabilities", &probs(torch), &probs(ort));
    let logits = max_logit_diff(&torch.logits, &ort.logits);
    assert!(logits < TOLERANCE, "{what}: logits differ by {logits}");
    check("features", &torch.features, &ort.features);
    check("stage features", &torch.stage_features, &ort.stage_features);
    assert_eq!(torch.blocks.len(), ort.blocks.len(), "{what}: units with diagnostics");
    for (t, o) in torch.blocks.iter().zip(&ort.blocks) {
        assert_eq!((&t.name, t.stage), (&o.name, o.stage), "{what}: unit order");
        let (t, o) = (&t.diagnostics, &o.diagnostics);
        check("thresholds", &t.thresholds, &o.thresholds);
        check("scales", &t.scales, &o.scales);
        check("mean |x|", &t.mean_abs, &o.mean_abs);
        let zeroed = max_diff(&t.zeroed_fraction, &o.zeroed_fraction);
        assert!(zeroed < 1e-3, "{what}: zeroed shares differ by {zeroed}");
    }
    worst
}

pub(crate) fn inputs(spec: &ModelSpec, n: i64) -> Tensor {
    let mut shape = vec![n];
    shape.extend(spec.sample_shape());
    Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu))
}

fn check_model(what: &str, model: &Model) -> f64 {
    let mut ort = OnnxModel::new(model).unwrap();
    let mut worst = 0f64;
    for n in [1, 5] {
        let xs = inputs(model.spec(), n);
        let flat = Vec::<f32>::try_from(xs.flatten(0, -1)).unwrap();
        let torch = model.infer(&xs, true).unwrap();
        let outputs = ort.infer(&flat, n as usize, true).unwrap();
        let with = outputs.to_forward().unwrap();
        worst = worst.max(compare(&format!("{what}, batch {n}"), &torch, &with));
        // The graph's own softmax, which the engine reads.
        let probabilities = Tensor::from_slice(&outputs.probabilities).view([n, -1]);
        let d = max_diff(&torch.probabilities(), &probabilities);
        assert!(d < TOLERANCE, "{what}: the graph's probabilities differ by {d}");
        // The session without diagnostics, which serves most requests.
        let without = ort.infer(&flat, n as usize, false).unwrap();
        assert!(without.units.is_empty(), "{what}: diagnostics that were not asked for");
        let d = max_diff(&probabilities, &Tensor::from_slice(&without.probabilities).view([n, -1]));
        assert!(d < TOLERANCE, "{what}: probabilities without diagnostics differ by {d}");
        let pooled = without.pooled().unwrap();
        let d = max_logit_diff(&torch.logits, &pooled.logits);
        assert!(d < TOLERANCE, "{what}: logits without diagnostics differ by {d}");
        for (name, a, b) in [
            ("features", &torch.features, &pooled.features),
            ("stage features", &torch.stage_features, &pooled.stage_features),
        ] {
            let d = max_diff(a, b);
            assert!(d < TOLERANCE, "{what}: {name} without diagnostics differ by {d}");
        }
    }
    worst
}

#[test]
fn onnxruntime_gives_libtorchs_values_for_every_architecture_and_shipped_model() {
    init_onnxruntime();
    tch::manual_seed(11);
    let mut worst = 0f64;
    for (name, spec) in specs() {
        let model = Model::new(&spec, Device::Cpu).unwrap();
        // Batch-norm statistics that are not the initial zeros and ones, as after training.
        tch::no_grad(|| {
            for _ in 0..3 {
                model.forward_t(&(inputs(&spec, 8) * 3.0 + 0.5), true);
            }
        });
        worst = worst.max(check_model(&name, &model));
    }
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("models");
    for name in ["cwru-bearing", "mnist"] {
        let dir = shipped.join(name);
        let card: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(dir.join("card.json")).unwrap()).unwrap();
        let spec: ModelSpec = serde_json::from_value(card["spec"].clone()).unwrap();
        let model = Model::load(&spec, &dir.join("weights.safetensors"), Device::Cpu).unwrap();
        worst = worst.max(check_model(name, &model));
    }
    eprintln!("largest difference from libtorch: {worst:.2e}");
}

#[test]
fn a_batch_of_the_wrong_size_is_refused_not_run() {
    init_onnxruntime();
    let spec = ModelSpec::preset("paper-1d", drsn::nn::Arch::DrsnCw, 10).unwrap();
    let model = Model::new(&spec, Device::Cpu).unwrap();
    let mut ort = OnnxModel::new(&model).unwrap();
    let err = ort.infer(&vec![0.0; spec.sample_len() * 2 - 1], 2, false).unwrap_err();
    assert!(err.to_string().contains("for 2 windows"), "{err}");
    assert!(ort.infer(&[], 0, false).is_err());
}
