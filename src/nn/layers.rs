//! Layers that work for any number of spatial axes, so that one network definition
//! serves signal windows (1-D) and images (2-D).

use tch::nn::{Init, Path};
use tch::{Kind, Tensor};

use super::cpu;

/// He-normal (Keras `he_normal`, fan-in) initialisation of convolution and dense kernels.
pub const HE_NORMAL: Init = tch::nn::init::DEFAULT_KAIMING_NORMAL;

/// A convolution with "same" padding over `spatial` axes.
#[derive(Debug)]
pub struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: Vec<i64>,
    padding: Vec<i64>,
    ones: Vec<i64>,
    zeros: Vec<i64>,
}

impl Conv {
    pub fn new(p: Path, spatial: usize, c_in: i64, c_out: i64, kernel: i64, stride: i64) -> Self {
        let mut dims = vec![c_out, c_in];
        dims.extend(std::iter::repeat_n(kernel, spatial));
        Conv {
            weight: p.var("weight", &dims, HE_NORMAL),
            bias: p.zeros("bias", &[c_out]),
            stride: vec![stride; spatial],
            padding: vec![kernel / 2; spatial],
            ones: vec![1; spatial],
            zeros: vec![0; spatial],
        }
    }

    /// The convolution of `xs`; in training (`train`), 1-D inputs on the CPU take
    /// [`cpu::conv1d`].
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let ours = (train && self.stride.len() == 1 && cpu::applies(xs))
            .then(|| cpu::conv1d(xs, &self.weight, &self.bias, self.stride[0]));
        cpu::or_libtorch(ours, "convolution", || {
            xs.convolution(
                &self.weight,
                Some(&self.bias),
                &self.stride,
                &self.padding,
                &self.ones,
                false,
                &self.zeros,
                1,
            )
        })
    }

    /// The kernel, for weight decay.
    pub fn kernel(&self) -> &Tensor {
        &self.weight
    }
}

/// Batch normalisation over axis 1 of an input of any rank (`N x C [x ...]`).
#[derive(Debug)]
pub struct Norm {
    weight: Tensor,
    bias: Tensor,
    running_mean: Tensor,
    running_var: Tensor,
}

/// Keras' epsilon; PyTorch's default momentum (Keras' 0.99 is too slow for short runs).
pub const BN_EPS: f64 = 1e-3;
pub const BN_MOMENTUM: f64 = 0.1;

impl Norm {
    pub fn new(p: Path, channels: i64) -> Self {
        Norm {
            weight: p.ones("weight", &[channels]),
            bias: p.zeros("bias", &[channels]),
            running_mean: p.zeros_no_train("running_mean", &[channels]),
            running_var: p.ones_no_train("running_var", &[channels]),
        }
    }

    /// Normalised `xs`: by the batch's statistics in training (`train`, which also moves
    /// the running ones), where 1-D inputs on the CPU take [`cpu::batch_norm1d`].
    pub fn forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        let (w, b, m, v) = (&self.weight, &self.bias, &self.running_mean, &self.running_var);
        let ours = (train && cpu::applies(xs)).then(|| cpu::batch_norm1d(xs, w, b, m, v, BN_MOMENTUM, BN_EPS));
        cpu::or_libtorch(ours, "batch norm", || self.libtorch_forward_t(xs, train))
    }

    fn libtorch_forward_t(&self, xs: &Tensor, train: bool) -> Tensor {
        Tensor::batch_norm(
            xs,
            Some(&self.weight),
            Some(&self.bias),
            Some(&self.running_mean),
            Some(&self.running_var),
            train,
            BN_MOMENTUM,
            BN_EPS,
            true,
        )
    }
}

/// A dense layer, `y = x W^T + b`.
#[derive(Debug)]
pub struct Dense {
    weight: Tensor,
    bias: Tensor,
}

impl Dense {
    pub fn new(p: Path, c_in: i64, c_out: i64, init: Init) -> Self {
        Dense { weight: p.var("weight", &[c_out, c_in], init), bias: p.zeros("bias", &[c_out]) }
    }

    /// Keras' default for dense kernels (the seed's sigmoid layer has no initialiser).
    pub fn glorot_uniform(c_in: i64, c_out: i64) -> Init {
        let bound = (6.0 / (c_in + c_out) as f64).sqrt();
        Init::Uniform { lo: -bound, up: bound }
    }

    pub fn forward(&self, xs: &Tensor) -> Tensor {
        xs.linear(&self.weight, Some(&self.bias))
    }

    pub fn kernel(&self) -> &Tensor {
        &self.weight
    }
}

/// Mean over every spatial axis: `N x C x ...` to `N x C`.
///
/// Written as a sum and an in-place division, which is exactly how libtorch computes a
/// mean on the CPU (the same values), minus the overhead of `mean` itself, which
/// costs more than the reduction at the sizes of these networks.
pub fn global_average(xs: &Tensor) -> Tensor {
    let axes = &SPATIAL_AXES[..xs.dim() - 2];
    let count: i64 = xs.size()[2..].iter().product();
    xs.sum_dim_intlist(axes, false, Kind::Float).g_div_scalar_(count)
}

/// The spatial axes of `N x C x L` and `N x C x H x W` tensors.
const SPATIAL_AXES: [i64; 2] = [2, 3];
