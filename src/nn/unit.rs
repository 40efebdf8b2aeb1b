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
    /// Zero channels added before and after the identity's own channels.
    pad: (i64, i64),
}

impl ResidualUnit {
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        p: Path,
        arch: Arch,
        spatial: usize,
        c_in: i64,
        c_out: i64,
        kernel: i64,
        stride: i64,
    ) -> Self {
        let shrink = match arch {
            Arch::Resnet => None,
            Arch::DrsnCs => Some(Shrinkage::new(&p / "shrink", c_out, true)),
            Arch::DrsnCw => Some(Shrinkage::new(&p / "shrink", c_out, false)),
        };
        let grow = c_out - c_in;
        ResidualUnit {
            bn1: Norm::new(&p / "bn1", c_in),
            conv1: Conv::new(&p / "conv1", spatial, c_in, c_out, kernel, stride),
            bn2: Norm::new(&p / "bn2", c_out),
            conv2: Conv::new(&p / "conv2", spatial, c_out, c_out, kernel, 1),
            shrink,
            stride,
            pad: (grow / 2, grow - grow / 2),
        }
    }

    pub fn forward_t(
        &self,
        xs: &Tensor,
        train: bool,
        diagnostics: bool,
    ) -> (Tensor, Option<ShrinkDiagnostics>) {
        let r = self.conv1.forward(&self.bn1.forward_t(xs, train).relu());
        let r = self.conv2.forward(&self.bn2.forward_t(&r, train).relu());
        let (r, diag) = match &self.shrink {
            Some(shrink) => shrink.forward_t(&r, train, diagnostics),
            None => (r, None),
        };
        (r + self.identity(xs), diag)
    }

    /// The shortcut: every `stride`-th sample (the seed's 1x1 average pooling), then
    /// symmetric zero channels up to the unit's width (no 1x1 convolution).
    fn identity(&self, xs: &Tensor) -> Tensor {
        let mut id = xs.shallow_clone();
        if self.stride > 1 {
            for axis in 2..xs.dim() as i64 {
                id = id.slice(axis, 0, None, self.stride);
            }
        }
        if self.pad != (0, 0) {
            // constant_pad_nd lists (before, after) pairs from the last axis backwards.
            let mut pad = vec![0i64; 2 * (xs.dim() - 2)];
            pad.extend([self.pad.0, self.pad.1]);
            id = id.constant_pad_nd(pad.as_slice());
        }
        id
    }

    pub fn kernels(&self) -> Vec<&Tensor> {
        let mut k = vec![self.conv1.kernel(), self.conv2.kernel()];
        if let Some(s) = &self.shrink {
            k.extend(s.kernels());
        }
        k
    }
}
