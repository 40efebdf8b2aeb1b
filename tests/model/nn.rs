//! The networks: shapes, thresholds, weights on disk.

use drsn::nn::{Arch, Model, ModelSpec, PRESETS};
use tch::{Device, Kind, Tensor};

const ARCHS: [Arch; 3] = [Arch::Resnet, Arch::DrsnCs, Arch::DrsnCw];

fn batch(spec: &ModelSpec, n: i64) -> Tensor {
    let mut shape = vec![n];
    shape.extend(spec.sample_shape());
    Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu))
}

#[test]
fn every_preset_and_architecture_gives_one_probability_row_per_sample() {
    tch::manual_seed(0);
    for preset in PRESETS {
        for arch in ARCHS {
            let spec = ModelSpec::preset(preset, arch, 7).unwrap();
            let model = Model::new(&spec, Device::Cpu).unwrap();
            let out = model.infer(&batch(&spec, 3), true).unwrap();
            assert_eq!(out.logits.size(), vec![3, 7], "{preset} {arch}");
            let sums = out.probabilities().sum_dim_intlist(1, false, Kind::Float);
            assert!(sums.allclose(&Tensor::ones([3], (Kind::Float, Device::Cpu)), 1e-5, 1e-6, false));
            let expected_blocks = if arch == Arch::Resnet { 0 } else { spec.unit_count() };
            assert_eq!(out.blocks.len(), expected_blocks, "{preset} {arch}");
        }
    }
}

#[test]
fn channel_wise_units_give_one_threshold_per_channel_and_shared_units_one() {
    tch::manual_seed(1);
    for preset in ["paper-1d", "seed-2d"] {
        for (arch, per_channel) in [(Arch::DrsnCw, true), (Arch::DrsnCs, false)] {
            let spec = ModelSpec::preset(preset, arch, 10).unwrap();
            let model = Model::new(&spec, Device::Cpu).unwrap();
            let out = model.infer(&batch(&spec, 4), true).unwrap();
            let widths: Vec<i64> =
                spec.stages.iter().flat_map(|s| std::iter::repeat_n(s.channels, s.units as usize)).collect();
            for (block, channels) in out.blocks.iter().zip(widths) {
                let d = &block.diagnostics;
                let expected = if per_channel { channels } else { 1 };
                assert_eq!(d.thresholds.size(), vec![4, expected], "{preset} {}", block.name);
                assert_eq!(d.scales.size(), vec![4, expected]);
                assert_eq!(d.mean_abs.size(), vec![4, channels]);
                assert_eq!(d.zeroed_fraction.size(), vec![4]);
            }
        }
    }
}

#[test]
fn every_threshold_lies_above_zero_and_at_most_the_mean_absolute_value() {
    tch::manual_seed(2);
    for preset in ["paper-1d", "seed-2d"] {
        for arch in [Arch::DrsnCw, Arch::DrsnCs] {
            let spec = ModelSpec::preset(preset, arch, 10).unwrap();
            let model = Model::new(&spec, Device::Cpu).unwrap();
            let xs = batch(&spec, 8) * 5.0;
            // Calibrate batch-norm's running statistics as training would, so that eval
            // mode sees activations of a realistic scale.
            tch::no_grad(|| {
                for _ in 0..30 {
                    model.forward_t(&xs, true);
                }
            });
            let out = model.infer(&xs, true).unwrap();
            for block in &out.blocks {
                let d = &block.diagnostics;
                // CW: the channel's own mean |x|; CS: the mean over the whole feature map.
                let bound = if arch == Arch::DrsnCw {
                    d.mean_abs.shallow_clone()
                } else {
                    d.mean_abs.mean_dim(1, true, Kind::Float)
                };
                let tau = &d.thresholds;
                assert!(bool::try_from(tau.gt(0.0).all()).unwrap(), "{preset} {arch} {}", block.name);
                assert!(bool::try_from(tau.le_tensor(&(&bound * (1.0 + 1e-6))).all()).unwrap());
                let zf = &d.zeroed_fraction;
                assert!(bool::try_from(zf.ge(0.0).logical_and(&zf.le(1.0)).all()).unwrap());
            }
        }
    }
}

#[test]
fn weights_saved_then_loaded_give_identical_outputs() {
    tch::manual_seed(3);
    let dir = tempfile::tempdir().unwrap();
    for arch in ARCHS {
        let spec = ModelSpec::preset("paper-1d", arch, 10).unwrap();
        let model = Model::new(&spec, Device::Cpu).unwrap();
        let path = dir.path().join(format!("{arch}.safetensors"));
        model.save(&path).unwrap();
        let loaded = Model::load(&spec, &path, Device::Cpu).unwrap();
        let xs = batch(&spec, 5);
        let a = model.infer(&xs, true).unwrap();
        let b = loaded.infer(&xs, true).unwrap();
        assert!(a.logits.equal(&b.logits), "{arch}");
        for (x, y) in a.blocks.iter().zip(&b.blocks) {
            assert!(x.diagnostics.thresholds.equal(&y.diagnostics.thresholds));
        }
    }
}

#[test]
fn weights_that_do_not_fit_the_spec_are_refused_with_the_mismatch_named() {
    let dir = tempfile::tempdir().unwrap();
    let cw = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
    let path = dir.path().join("cw.safetensors");
    Model::new(&cw, Device::Cpu).unwrap().save(&path).unwrap();

    // Fewer classes: the head's shape differs.
    let fewer = ModelSpec::preset("paper-1d", Arch::DrsnCw, 4).unwrap();
    let err = Model::load(&fewer, &path, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("head.fc.weight has shape [10, 16]"), "{err}");

    // CS: the second threshold layer has one output instead of C.
    let cs = ModelSpec::preset("paper-1d", Arch::DrsnCs, 10).unwrap();
    let err = Model::load(&cs, &path, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("units.0.shrink.fc2.weight"), "{err}");

    // ResNet has no shrinkage: the file's extra variables are named.
    let resnet = ModelSpec::preset("paper-1d", Arch::Resnet, 10).unwrap();
    let err = Model::load(&resnet, &path, Device::Cpu).unwrap_err().to_string();
    assert!(err.contains("unexpected units.0.shrink"), "{err}");

    // A wrong input shape is an error, not a panic.
    let model = Model::new(&cw, Device::Cpu).unwrap();
    let err = model.infer(&Tensor::zeros([2, 1, 1000], (Kind::Float, Device::Cpu)), false).unwrap_err();
    assert!(err.to_string().contains("[N, 1, 2048]"), "{err}");
}

#[test]
fn an_ensemble_judges_by_its_members_mean_logits_and_trains_each_member_on_its_own_loss() {
    tch::manual_seed(4);
    let single = ModelSpec::preset("paper-1d", Arch::DrsnCw, 5).unwrap();
    let spec = ModelSpec { members: 3, ..single.clone() };
    let ensemble = Model::new(&spec, Device::Cpu).unwrap();
    // Each member is a whole network of the single spec: its weights, loaded alone, give
    // the member's logits.
    let vars = ensemble.var_store().variables();
    let xs = batch(&spec, 4);
    let out = ensemble.infer(&xs, true).unwrap();
    let mut sum = Tensor::zeros([4, 5], (Kind::Float, Device::Cpu));
    for m in 0..3 {
        let mut member = Model::new(&single, Device::Cpu).unwrap();
        tch::no_grad(|| {
            for (name, mut var) in member.var_store_mut().variables() {
                var.copy_(&vars[&format!("members.{m}.{name}")]);
            }
        });
        sum += member.infer(&xs, false).unwrap().logits;
    }
    let diff = (&out.logits - sum / 3.0).abs().max().double_value(&[]);
    assert!(diff < 1e-5, "ensemble logits differ from the members' mean by {diff}");
    assert_eq!(out.features.size(), vec![4, 3 * 16], "features side by side");
    assert_eq!(out.blocks.len(), 3 * single.unit_count());
    assert_eq!(out.blocks[single.unit_count()].name, "members.1.units.0");
    // Training: the loss is the sum of each member's own cross-entropy.
    let labels = Tensor::from_slice(&[0i64, 1, 2, 3]);
    let train = ensemble.forward_t(&xs, true);
    assert_eq!(train.member_logits.len(), 3);
    let own: f64 = train.member_logits.iter().map(|l| l.cross_entropy_for_logits(&labels).double_value(&[])).sum();
    assert!((train.loss(&labels).double_value(&[]) - own).abs() < 1e-5);
}
