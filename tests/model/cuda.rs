//! The CUDA path: every architecture in both dimensions gives the CPU's probabilities and
//! shrinkage diagnostics on the GPU (within 1e-4: cuDNN's convolutions sum in another
//! order), and a training step runs there with a finite loss. Runs when libtorch sees a
//! CUDA device; otherwise it says plainly that it was skipped (the machine this suite
//! usually runs on has none; `scripts/gpu-check.sh` is the prepared run for one that does).

use drsn::nn::{Arch, Model, ModelSpec};
use tch::nn::OptimizerConfig;
use tch::{Device, Kind, Tensor};

const TOLERANCE: f64 = 1e-4;

fn max_diff(a: &Tensor, b: &Tensor) -> f64 {
    (a - b.to_device(a.device())).abs().max().double_value(&[])
}

#[test]
fn every_network_matches_the_cpu_on_cuda_and_trains_there() {
    // As `drsn` itself does: libtorch_cuda.so is loaded first (the PyPI build links it
    // lazily; without it libtorch reports no GPU even on a machine that has one).
    let gpu = drsn::device::parse("auto").unwrap();
    if gpu == Device::Cpu {
        eprintln!("SKIPPED: no CUDA device visible to libtorch (drsn::device::parse(\"auto\") chose the CPU); the CUDA path was not tested");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    for arch in [Arch::Resnet, Arch::DrsnCs, Arch::DrsnCw] {
        for preset in ["paper-1d", "seed-2d"] {
            let spec = ModelSpec::preset(preset, arch, 10).unwrap();
            tch::manual_seed(7);
            let cpu = Model::new(&spec, Device::Cpu).unwrap();
            let weights = dir.path().join(format!("{preset}-{arch}.safetensors"));
            cpu.save(&weights).unwrap();
            let cuda = Model::load(&spec, &weights, gpu).unwrap();
            let mut shape = vec![8];
            shape.extend(spec.sample_shape());
            let xs = Tensor::randn(shape.as_slice(), (Kind::Float, Device::Cpu));

            let on_cpu = cpu.infer(&xs, true).unwrap();
            let on_gpu = cuda.infer(&xs.to_device(gpu), true).unwrap();
            let what = format!("{preset} {arch}");
            let probs = |f: &drsn::nn::Forward| f.logits.softmax(-1, Kind::Float);
            assert!(max_diff(&probs(&on_cpu), &probs(&on_gpu)) < TOLERANCE, "{what}: probabilities");
            assert_eq!(on_cpu.blocks.len(), on_gpu.blocks.len(), "{what}: units");
            for (c, g) in on_cpu.blocks.iter().zip(&on_gpu.blocks) {
                let (c, g) = (&c.diagnostics, &g.diagnostics);
                assert!(max_diff(&c.thresholds, &g.thresholds) < TOLERANCE, "{what}: thresholds");
                assert!(max_diff(&c.zeroed_fraction, &g.zeroed_fraction) < 1e-3, "{what}: zeroed share");
            }

            let mut opt = tch::nn::Adam::default().build(cuda.var_store(), 1e-3).unwrap();
            let labels = Tensor::from_slice(&[0i64, 1, 2, 3, 4, 5, 6, 7]).to_device(gpu);
            let loss = cuda.forward_t(&xs.to_device(gpu), true).loss(&labels);
            opt.backward_step(&loss);
            let loss = loss.double_value(&[]);
            assert!(loss.is_finite() && loss > 0.0, "{what}: training loss {loss}");
        }
    }
}
