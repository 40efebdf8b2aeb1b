//! The fused CPU forward against libtorch, the reference: every 1-D architecture of the
//! parity test's specs (the `paper-1d` presets and an ensemble of two members with odd
//! sizes, several input channels, kernel 5 and stride 3) and the shipped `cwru-bearing`
//! give libtorch's probabilities, logits, pooled and stage features and every unit's
//! diagnostics, within the ONNX Runtime path's tolerances, on one thread and with the batch
//! split over several.

use std::path::Path;

use drsn::fused::{FusedError, FusedModel};
use drsn::nn::{Dim, Model, ModelSpec};
use tch::{Device, Tensor};

use super::onnx::{compare, inputs, max_diff, max_logit_diff, TOLERANCE};
use super::parity::specs;

fn check_model(what: &str, model: &Model) -> f64 {
    let mut worst = 0f64;
    for threads in [1, 3] {
        let fused = FusedModel::new(model, threads).unwrap();
        for n in [1, 5] {
            let what = format!("{what}, batch {n}, {threads} threads");
            let xs = inputs(model.spec(), n);
            let flat = Vec::<f32>::try_from(xs.flatten(0, -1)).unwrap();
            let torch = model.infer(&xs, true).unwrap();
            let with = fused.infer(&flat, n as usize, true).unwrap();
            worst = worst.max(compare(&what, &torch, &with.to_forward().unwrap()));
            let probabilities = Tensor::from_slice(&with.probabilities).view([n, -1]);
            let d = max_diff(&torch.probabilities(), &probabilities);
            assert!(d < TOLERANCE, "{what}: probabilities differ by {d}");
            let without = fused.infer(&flat, n as usize, false).unwrap();
            assert!(without.units.is_empty(), "{what}: diagnostics that were not asked for");
            let pooled = without.pooled().unwrap();
            let d = max_logit_diff(&torch.logits, &pooled.logits);
            assert!(d < TOLERANCE, "{what}: logits without diagnostics differ by {d}");
            assert_eq!(without.probabilities, with.probabilities, "{what}: diagnostics changed the answer");
        }
    }
    worst
}

#[test]
fn the_fused_forward_gives_libtorchs_values_for_every_1d_architecture_and_the_shipped_model() {
    tch::manual_seed(12);
    let mut worst = 0f64;
    let mut checked = 0;
    for (name, spec) in specs().into_iter().filter(|(_, s)| s.dim == Dim::One) {
        let model = Model::new(&spec, Device::Cpu).unwrap();
        // Batch-norm statistics that are not the initial zeros and ones, as after training.
        tch::no_grad(|| {
            for _ in 0..3 {
                model.forward_t(&(inputs(&spec, 8) * 3.0 + 0.5), true);
            }
        });
        worst = worst.max(check_model(&name, &model));
        checked += 1;
    }
    assert_eq!(checked, 6, "paper-1d and the custom ensemble, three architectures each");
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("models/cwru-bearing");
    let card: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("card.json")).unwrap()).unwrap();
    let spec: ModelSpec = serde_json::from_value(card["spec"].clone()).unwrap();
    let model = Model::load(&spec, &dir.join("weights.safetensors"), Device::Cpu).unwrap();
    worst = worst.max(check_model("cwru-bearing", &model));
    eprintln!("largest difference from libtorch: {worst:.2e}");
}

#[test]
fn images_and_batches_of_the_wrong_size_are_refused_not_run() {
    let image = ModelSpec::preset("seed-2d", drsn::nn::Arch::DrsnCw, 10).unwrap();
    let err = FusedModel::new(&Model::new(&image, Device::Cpu).unwrap(), 1).unwrap_err();
    assert!(matches!(err, FusedError::Unsupported), "{err}");
    let spec = ModelSpec::preset("paper-1d", drsn::nn::Arch::DrsnCw, 10).unwrap();
    let fused = FusedModel::new(&Model::new(&spec, Device::Cpu).unwrap(), 2).unwrap();
    let err = fused.infer(&vec![0.0; spec.sample_len() * 2 - 1], 2, false).unwrap_err();
    assert!(err.to_string().contains("for 2 windows"), "{err}");
    assert!(fused.infer(&[], 0, false).is_err());
}
