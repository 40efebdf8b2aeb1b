//! Training-mode convolution, batch norm, soft thresholding and mean |x| of the 1-D networks
//! on the CPU, as libtorch autograd functions (`autograd.cpp`) over hand-written kernels
//! (`kernels`).
//!
//! For these networks' few channels, libtorch's own versions spend most of a training
//! step outside the arithmetic: oneDNN reorders every activation into 16-channel blocks and
//! back around each convolution and its stride-1 input gradient costs some 15 times the
//! forward; native batch norm's training statistics cost about 15 times a ReLU. These
//! compute the same values (to float rounding) with the same gradients; everything else
//! (2-D, CUDA, inference, other types) stays on libtorch's operators.

mod kernels;

use std::ffi::{c_char, CStr};
use std::sync::Once;

use tch::{Device, Kind, Tensor};
use torch_sys::C_tensor;

extern "C" {
    fn drsn_cpu_set_kernels(table: *const kernels::Table);
    fn drsn_cpu_last_error() -> *const c_char;
    fn drsn_cpu_conv1d(x: *const C_tensor, w: *const C_tensor, b: *const C_tensor, stride: i64) -> *mut C_tensor;
    fn drsn_cpu_batch_norm1d(
        x: *const C_tensor,
        w: *const C_tensor,
        b: *const C_tensor,
        running_mean: *const C_tensor,
        running_var: *const C_tensor,
        momentum: f64,
        eps: f64,
    ) -> *mut C_tensor;
    fn drsn_cpu_soft_threshold(x: *const C_tensor, tau: *const C_tensor) -> *mut C_tensor;
    fn drsn_cpu_mean_abs(x: *const C_tensor) -> *mut C_tensor;
}

/// Whether `xs` takes these functions: a single-precision `N x C x L` tensor on the CPU.
pub fn applies(xs: &Tensor) -> bool {
    xs.device() == Device::Cpu && xs.kind() == Kind::Float && xs.dim() == 3
}

/// A convolution with "same" padding (odd kernel) of `xs` (`N x C_in x L`) with `weight`
/// (`C_out x C_in x K`) and `bias`.
pub fn conv1d(xs: &Tensor, weight: &Tensor, bias: &Tensor, stride: i64) -> Result<Tensor, String> {
    // SAFETY: the pointers are live tensors for the duration of the call; the C++ side
    // reads them and returns a new tensor that we own, or null.
    call(|| unsafe { drsn_cpu_conv1d(xs.as_ptr(), weight.as_ptr(), bias.as_ptr(), stride) })
}

/// Training-mode batch norm over axis 1 of `xs` (`N x C x L`), updating the running
/// statistics with `momentum` as libtorch's does.
pub fn batch_norm1d(
    xs: &Tensor,
    weight: &Tensor,
    bias: &Tensor,
    running_mean: &Tensor,
    running_var: &Tensor,
    momentum: f64,
    eps: f64,
) -> Result<Tensor, String> {
    // SAFETY: as in `conv1d`.
    call(|| unsafe {
        drsn_cpu_batch_norm1d(
            xs.as_ptr(),
            weight.as_ptr(),
            bias.as_ptr(),
            running_mean.as_ptr(),
            running_var.as_ptr(),
            momentum,
            eps,
        )
    })
}

/// `sign(x) * max(|x| - tau, 0)` of `xs` (`N x C x L`) with `tau` (`N x C x 1`, or
/// `N x 1 x 1` for one threshold per sample), and its gradients in one pass each.
pub fn soft_threshold(xs: &Tensor, tau: &Tensor) -> Result<Tensor, String> {
    // SAFETY: as in `conv1d`.
    call(|| unsafe { drsn_cpu_soft_threshold(xs.as_ptr(), tau.as_ptr()) })
}

/// `mean |x|` over the length of `xs` (`N x C x L`): `N x C`.
pub fn mean_abs(xs: &Tensor) -> Result<Tensor, String> {
    // SAFETY: as in `conv1d`.
    call(|| unsafe { drsn_cpu_mean_abs(xs.as_ptr()) })
}

/// The result of one of these functions when it ran and succeeded, else `libtorch`'s
/// (which did not apply, or failed: the shapes are checked on the C++ side first, so a
/// failure means a bug here; training goes on, with a warning).
pub fn or_libtorch(ours: Option<Result<Tensor, String>>, what: &str, libtorch: impl FnOnce() -> Tensor) -> Tensor {
    match ours {
        Some(Ok(out)) => out,
        Some(Err(e)) => {
            tracing::warn!("the hand-written {what} failed, libtorch's runs instead: {e}");
            libtorch()
        }
        None => libtorch(),
    }
}

/// Runs one C++ entry point (the kernels handed over first) and owns the tensor it
/// returned, or reads its error.
fn call(entry: impl FnOnce() -> *mut C_tensor) -> Result<Tensor, String> {
    install();
    let ptr = entry();
    if ptr.is_null() {
        // SAFETY: a null result leaves a NUL-terminated message in this thread's slot.
        return Err(unsafe { CStr::from_ptr(drsn_cpu_last_error()) }.to_string_lossy().into_owned());
    }
    // SAFETY: a new heap tensor, ours to free (tch's Drop does).
    Ok(unsafe { Tensor::from_ptr(ptr) })
}

/// Hands the kernels to the C++ side, once, before the first call.
fn install() {
    static ONCE: Once = Once::new();
    // SAFETY: the table is a static that lives as long as the program.
    ONCE.call_once(|| unsafe { drsn_cpu_set_kernels(&kernels::TABLE) });
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Largest difference relative to the largest value of `b`.
    fn rel_diff(a: &Tensor, b: &Tensor) -> f64 {
        (a - b).abs().max().double_value(&[]) / b.abs().max().double_value(&[]).max(1e-12)
    }

    /// Values and gradients of `ours` and `theirs` on the same leaf inputs and upstream
    /// gradient, compared pairwise.
    fn compare(inputs: &[Tensor], ours: impl Fn(&[Tensor]) -> Tensor, theirs: impl Fn(&[Tensor]) -> Tensor) {
        let leaves = |ts: &[Tensor]| -> Vec<Tensor> { ts.iter().map(|t| t.detach().set_requires_grad(true)).collect() };
        let (a, b) = (leaves(inputs), leaves(inputs));
        let (ya, yb) = (ours(&a), theirs(&b));
        assert_eq!(ya.size(), yb.size());
        assert!(rel_diff(&ya, &yb) < 1e-5, "values differ by {}", rel_diff(&ya, &yb));
        let upstream = Tensor::randn(ya.size(), (Kind::Float, Device::Cpu));
        (&ya * &upstream).sum(Kind::Float).backward();
        (&yb * &upstream).sum(Kind::Float).backward();
        for (i, (a, b)) in a.iter().zip(&b).enumerate() {
            let d = rel_diff(&a.grad(), &b.grad());
            assert!(d < 1e-4, "gradient of input {i} differs by {d}");
        }
    }

    #[test]
    fn convolution_matches_libtorch_in_values_and_gradients() {
        tch::manual_seed(1);
        // Odd and even lengths, strides 1 and 2, blocks of four output channels and singles.
        let cases = [(1, 4, 64, 2, 3), (3, 6, 37, 1, 3), (4, 4, 40, 2, 3), (5, 7, 33, 2, 3), (8, 8, 16, 1, 3)];
        // Wide kernels over rows shorter than their reach, stride 3.
        let short =
            [(2, 5, 1, 1, 5), (2, 4, 2, 1, 7), (3, 4, 3, 1, 9), (2, 4, 2, 2, 7), (2, 5, 11, 3, 5), (1, 1, 1, 1, 3)];
        for (c_in, c_out, len, stride, kernel) in cases.into_iter().chain(short) {
            let x = Tensor::randn([3, c_in, len], (Kind::Float, Device::Cpu));
            let w = Tensor::randn([c_out, c_in, kernel], (Kind::Float, Device::Cpu));
            let b = Tensor::randn([c_out], (Kind::Float, Device::Cpu));
            compare(
                &[x, w, b],
                |t| conv1d(&t[0], &t[1], &t[2], stride).unwrap(),
                |t| t[0].conv1d(&t[1], Some(&t[2]), [stride], [kernel / 2], [1], 1),
            );
        }
    }

    #[test]
    fn batch_norm_matches_libtorch_in_values_gradients_and_running_statistics() {
        tch::manual_seed(2);
        // An offset and scale far from 0 and 1: the variance must not come from E[x^2] - E[x]^2.
        let x = Tensor::randn([6, 5, 33], (Kind::Float, Device::Cpu)) * 3.0 + 40.0;
        let w = Tensor::randn([5], (Kind::Float, Device::Cpu));
        let b = Tensor::randn([5], (Kind::Float, Device::Cpu));
        let running =
            || (Tensor::zeros([5], (Kind::Float, Device::Cpu)), Tensor::ones([5], (Kind::Float, Device::Cpu)));
        let ((m1, v1), (m2, v2)) = (running(), running());
        compare(
            &[x, w, b],
            |t| batch_norm1d(&t[0], &t[1], &t[2], &m1, &v1, 0.1, 1e-3).unwrap(),
            |t| Tensor::batch_norm(&t[0], Some(&t[1]), Some(&t[2]), Some(&m2), Some(&v2), true, 0.1, 1e-3, false),
        );
        assert!(rel_diff(&m1, &m2) < 1e-6 && rel_diff(&v1, &v2) < 1e-5, "running statistics differ");
    }

    #[test]
    fn soft_thresholding_matches_the_relu_form_in_values_and_gradients() {
        tch::manual_seed(3);
        for (n, channels, per_channel) in [(4, 6, true), (4, 6, false), (1, 1, false)] {
            let x = Tensor::randn([n, channels, 29], (Kind::Float, Device::Cpu));
            let tau = Tensor::rand([n, if per_channel { channels } else { 1 }, 1], (Kind::Float, Device::Cpu));
            compare(
                &[x, tau],
                |t| soft_threshold(&t[0], &t[1]).unwrap(),
                |t| (&t[0] - &t[1]).relu() - (-&t[0] - &t[1]).relu(),
            );
        }
    }

    #[test]
    fn a_nan_threshold_shows_in_the_output_and_its_gradient() {
        let x = Tensor::randn([2, 3, 8], (Kind::Float, Device::Cpu)).set_requires_grad(true);
        let tau = Tensor::from_slice(&[0.5f32, f32::NAN]).view([2, 1, 1]).set_requires_grad(true);
        let out = soft_threshold(&x, &tau).unwrap();
        let nan_share = |t: &Tensor| t.isnan().to_kind(Kind::Float).mean(Kind::Float).double_value(&[]);
        assert_eq!(nan_share(&out), 0.5, "the second sample's values are NaN, the first's are not");
        out.sum(Kind::Float).backward();
        assert!(tau.grad().double_value(&[1, 0, 0]).is_nan());
        assert!(tau.grad().double_value(&[0, 0, 0]).is_finite());
    }

    #[test]
    fn mean_abs_matches_libtorch_in_values_and_gradients() {
        tch::manual_seed(4);
        let x = Tensor::randn([3, 5, 21], (Kind::Float, Device::Cpu));
        // Exact zeros, whose gradient is zero in both.
        let _ = x.narrow(2, 0, 3).fill_(0.0);
        compare(&[x], |t| mean_abs(&t[0]).unwrap(), |t| t[0].abs().mean_dim(2, false, Kind::Float));
    }

    #[test]
    fn wrong_shapes_are_errors_not_crashes() {
        let x = Tensor::randn([2, 3, 10], (Kind::Float, Device::Cpu));
        let w = Tensor::randn([4, 2, 3], (Kind::Float, Device::Cpu));
        let err = conv1d(&x, &w, &Tensor::zeros([4], (Kind::Float, Device::Cpu)), 1).unwrap_err();
        assert!(err.contains("weight must be C_out x 3 x K"), "{err}");
        let err = conv1d(&x, &w.narrow(1, 0, 1).repeat([1, 3, 1]), &Tensor::zeros([5], (Kind::Float, Device::Cpu)), 1)
            .unwrap_err();
        assert!(err.contains("bias must hold one value per channel (4)"), "{err}");
        let ones = Tensor::ones([2], (Kind::Float, Device::Cpu));
        let err = batch_norm1d(&x, &ones, &ones, &ones, &ones, 0.1, 1e-3).unwrap_err();
        assert!(err.contains("weight must hold one value per channel (3)"), "{err}");
        let err = soft_threshold(&x, &Tensor::ones([2, 2, 1], (Kind::Float, Device::Cpu))).unwrap_err();
        assert!(err.contains("thresholds must be N x C x 1"), "{err}");
    }
}
