//! Soft thresholding and the threshold branch of a residual shrinkage unit.

use tch::nn::Path;
use tch::{Kind, Tensor};

use super::cpu;
use super::layers::{global_average, Dense, Norm, HE_NORMAL};

/// `sign(x) * max(|x| - tau, 0)`, written as `x - clamp(x, -tau, tau)`: the same values
/// (exact zeros inside `[-tau, tau]`) and gradients, in fewer passes over the data.
pub fn soft_threshold(xs: &Tensor, tau: &Tensor) -> Tensor {
    xs - clamp_within(xs, tau)
}

/// `clamp(x, -tau, tau)` as `clamp_max` then `clamp_min`: libtorch vectorises these two
/// with broadcast tensor bounds, but not `clamp` with both (several times slower).
fn clamp_within(xs: &Tensor, tau: &Tensor) -> Tensor {
    xs.clamp_max_tensor(tau).clamp_min_tensor_(&tau.neg())
}

/// Soft thresholding with gradients: one pass each way for 1-D inputs on the CPU, else
/// `relu(x - tau) - relu(-x - tau)` (the clamp form's backward, with masks and reductions
/// for both tensor bounds, made the whole backward pass about 1.5x slower than this one's).
fn training_soft_threshold(xs: &Tensor, tau: &Tensor) -> Tensor {
    cpu::or_libtorch(cpu::applies(xs).then(|| cpu::soft_threshold(xs, tau)), "soft thresholding", || {
        (xs - tau).relu() - (-xs - tau).relu()
    })
}

/// `mean |x|` over the spatial axes with gradients: one pass each way for 1-D inputs on the
/// CPU.
fn training_mean_abs(xs: &Tensor) -> Tensor {
    cpu::or_libtorch(cpu::applies(xs).then(|| cpu::mean_abs(xs)), "mean |x|", || global_average(&xs.abs()))
}

/// What one shrinkage unit did to a batch: the explanation behind a verdict.
#[derive(Debug)]
pub struct ShrinkDiagnostics {
    /// Thresholds, `N x C` (channel-wise) or `N x 1` (channel-shared).
    pub thresholds: Tensor,
    /// The sigmoid scales `alpha` with `tau = alpha * mean|x|`, same shape as `thresholds`.
    pub scales: Tensor,
    /// Mean absolute value per channel, `N x C`.
    pub mean_abs: Tensor,
    /// Share of values set to zero, per sample, `N`.
    pub zeroed_fraction: Tensor,
}

/// `GAP(|x|) -> FC -> BN -> ReLU -> FC -> sigmoid`, scaled by the mean |x|.
#[derive(Debug)]
pub struct Shrinkage {
    fc1: Dense,
    bn: Norm,
    fc2: Dense,
    /// One threshold per sample (DRSN-CS) rather than per channel (DRSN-CW).
    shared: bool,
}

impl Shrinkage {
    pub fn new(p: Path, channels: i64, shared: bool) -> Self {
        let out = if shared { 1 } else { channels };
        Shrinkage {
            fc1: Dense::new(&p / "fc1", channels, channels, HE_NORMAL),
            bn: Norm::new(&p / "bn", channels),
            fc2: Dense::new(&p / "fc2", channels, out, Dense::glorot_uniform(channels, out)),
            shared,
        }
    }

    /// Shrinks `xs` (a unit's own convolution output, which it may overwrite); with
    /// `diagnostics`, also reports what the thresholds were and did.
    pub fn forward_t(&self, mut xs: Tensor, train: bool, diagnostics: bool) -> (Tensor, Option<ShrinkDiagnostics>) {
        let mean_abs = if xs.requires_grad() { training_mean_abs(&xs) } else { global_average(&xs.abs()) };
        let scales = self.fc2.forward(&self.bn.forward_t(&self.fc1.forward(&mean_abs), train).relu_()).sigmoid();
        let thresholds =
            if self.shared { &scales * mean_abs.mean_dim(1, true, Kind::Float) } else { &scales * &mean_abs };
        // N x C' -> N x C' x 1 [x 1] to broadcast over the spatial axes.
        let mut shape = thresholds.size();
        shape.extend(std::iter::repeat_n(1, xs.dim() - 2));
        let tau = thresholds.view(shape.as_slice());
        let out = if xs.requires_grad() {
            training_soft_threshold(&xs, &tau)
        } else {
            // Inference: nothing needs `xs` afterwards, so the result takes its place.
            let inside = clamp_within(&xs, &tau);
            xs.g_sub_(&inside)
        };
        let diag = diagnostics.then(|| ShrinkDiagnostics {
            zeroed_fraction: zeroed_fraction(&out),
            thresholds,
            scales,
            mean_abs,
        });
        (out, diag)
    }

    pub fn kernels(&self) -> [&Tensor; 2] {
        [self.fc1.kernel(), self.fc2.kernel()]
    }
}

/// Share of zeros per sample, counted as `n - sum(sign(|x|))`: float passes that libtorch
/// vectorises, unlike comparisons that yield booleans. Exact: the counts are integers.
fn zeroed_fraction(xs: &Tensor) -> Tensor {
    let axes = &[1, 2, 3][..xs.dim() - 1];
    let n: i64 = xs.size()[1..].iter().product();
    xs.abs().sign_().sum_dim_intlist(axes, false, Kind::Float).neg_().g_add_scalar_(n).g_div_scalar_(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn soft_threshold_matches_hand_computed_values() {
        let xs = Tensor::from_slice(&[-3.0f32, -1.0, -0.5, 0.0, 0.2, 0.5, 2.0, 4.5]);
        let tau = Tensor::from_slice(&[1.0f32]);
        let out: Vec<f32> = Vec::try_from(soft_threshold(&xs, &tau)).unwrap();
        assert_eq!(out, vec![-2.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0, 3.5]);
        // Per-channel thresholds broadcast over the length axis.
        let xs = Tensor::from_slice(&[1.0f32, -2.0, 3.0, 1.0, -2.0, 3.0]).view([1, 2, 3]);
        let tau = Tensor::from_slice(&[0.5f32, 2.5]).view([1, 2, 1]);
        let out: Vec<f32> = Vec::try_from(soft_threshold(&xs, &tau).flatten(0, -1)).unwrap();
        assert_eq!(out, vec![0.5, -1.5, 2.5, 0.0, 0.0, 0.5]);
    }
}
