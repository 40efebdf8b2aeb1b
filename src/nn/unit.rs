//! The pre-activation residual unit, with or without shrinkage:
//! `BN -> ReLU -> Conv(stride) -> BN -> ReLU -> Conv [-> shrink] + identity`.

use tch::nn::Path;
use tch::Tensor;

use super::layers::{Conv, Norm};
use super::shrink::{ShrinkDiagnostics, Shrinkage};
use super::spec::Arch;

#[derive(Debug)]
pub struct ResidualUnit {
    bn1: Norm,
    conv1: Conv,
    bn2: Norm,
    conv2: Conv,
    shrink: Option<Shrinkage>,
    stride: i64,
    c_in: i64,
    /// Zero channels before the identity's own when the unit widens (the rest go after).
    pad_before: i64,
}

impl ResidualUnit {
    #[allow(clippy::too_many_arguments)]
    pub fn new(p: Path, arch: Arch, spatial: usize, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        let shrink = match arch {
            Arch::Resnet => None,
            Arch::DrsnCs => Some(Shrinkage::new(&p / "shrink", c_out, true)),
            Arch::DrsnCw => Some(Shrinkage::new(&p / "shrink", c_out, false)),
        };
        ResidualUnit {
            bn1: Norm::new(&p / "bn1", c_in),
            conv1: Conv::new(&p / "conv1", spatial, c_in, c_out, kernel, stride),
            bn2: Norm::new(&p / "bn2", c_out),
            conv2: Conv::new(&p / "conv2", spatial, c_out, c_out, kernel, 1),
            shrink,
            stride,
            c_in,
            pad_before: (c_out - c_in) / 2,
        }
    }

    pub fn forward_t(&self, xs: &Tensor, train: bool, diagnostics: bool) -> (Tensor, Option<ShrinkDiagnostics>) {
        let r = self.conv1.forward_t(&self.bn1.forward_t(xs, train).relu_(), train);
        let r = self.conv2.forward_t(&self.bn2.forward_t(&r, train).relu_(), train);
        let (r, diag) = match &self.shrink {
            Some(shrink) => shrink.forward_t(r, train, diagnostics),
            None => (r, None),
        };
        (self.add_identity(r, xs), diag)
    }

    /// Adds the shortcut to `r` in place: every `stride`-th sample of `xs` (the seed's 1x1
    /// average pooling) onto the middle channels, which is `r` plus `xs` padded with
    /// symmetric zero channels (no 1x1 convolution), without building the padded copy.
    /// Autograd allows it: neither the convolution nor the shrinkage keeps its output.
    fn add_identity(&self, r: Tensor, xs: &Tensor) -> Tensor {
        let mut id = xs.shallow_clone();
        if self.stride > 1 {
            for axis in 2..xs.dim() as i64 {
                id = id.slice(axis, 0, None, self.stride);
            }
        }
        let _ = r.narrow(1, self.pad_before, self.c_in).g_add_(&id);
        r
    }

    pub fn kernels(&self) -> Vec<&Tensor> {
        let mut k = vec![self.conv1.kernel(), self.conv2.kernel()];
        if let Some(s) = &self.shrink {
            k.extend(s.kernels());
        }
        k
    }
}
