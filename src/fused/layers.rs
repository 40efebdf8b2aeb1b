//! The layers of an eval-mode 1-D network over one window's activations, stored channel by
//! channel (`channels x length`, row-major), in plain loops that the compiler vectorises.
//!
//! Every function here is `#[inline(always)]`: they are compiled into the forward pass of
//! `member.rs`, once for AVX2 with FMA and once for the baseline instruction set, and
//! take the instruction set of the copy they are inlined into.

/// Output samples computed together: they stay in registers while every input channel
/// and kernel tap is added in, so each output is loaded and stored once.
pub(super) const TILE: usize = 16;

/// A multiply-add, fused into one instruction (one rounding) in the FMA copy.
#[inline(always)]
pub(crate) fn madd<const FMA: bool>(acc: f32, w: f32, x: f32) -> f32 {
    if FMA {
        w.mul_add(x, acc)
    } else {
        acc + w * x
    }
}

/// A convolution with "same" padding (`kernel / 2` zeros each side), as `nn::layers::Conv`.
#[derive(Debug, Clone)]
pub(crate) struct Conv {
    pub c_in: usize,
    pub c_out: usize,
    pub kernel: usize,
    pub stride: usize,
    /// `c_out x c_in x kernel`.
    weight: Vec<f32>,
    bias: Vec<f32>,
    /// The same weights as [`conv_block`] reads them: in blocks of [`BLOCK`] output
    /// channels (the last ones singly), each block `taps x channels`.
    blocked: Vec<f32>,
    /// Per kernel tap `k`: its phase `k % stride` and its offset `k / stride` in it.
    tap_phase: Vec<(usize, usize)>,
}

/// A convolution's input split into phases ([`Conv::split_phases`]): working memory that
/// one thread reuses from one convolution to the next.
#[derive(Debug, Default)]
pub(crate) struct Phases {
    /// Per input channel, its `stride` phases, zero-padded.
    pub values: Vec<f32>,
    /// Where each (input channel, kernel tap) starts in `values`, in the weights' order.
    pub taps: Vec<usize>,
}

/// Output channels computed together, sharing every input load.
const BLOCK: usize = 4;

impl Conv {
    /// `weight` is `c_out x c_in x kernel`, `bias` `c_out` (checked by the caller).
    pub fn new(c_in: usize, c_out: usize, kernel: usize, stride: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        let tap_phase = (0..kernel).map(|k| (k % stride, k / stride)).collect();
        let mut conv = Conv { c_in, c_out, kernel, stride, weight, bias, blocked: Vec::new(), tap_phase };
        conv.blocked = conv.block_weights();
        conv
    }

    /// The block of output channels that starts at `co`: its size.
    fn block_at(&self, co: usize) -> usize {
        if self.c_out - co >= BLOCK {
            BLOCK
        } else {
            1
        }
    }

    fn block_weights(&self) -> Vec<f32> {
        let per_out = self.c_in * self.kernel;
        let mut blocked = Vec::with_capacity(self.weight.len());
        let mut co = 0;
        while co < self.c_out {
            let block = self.block_at(co);
            for j in 0..per_out {
                blocked.extend((co..co + block).map(|c| self.weight[c * per_out + j]));
            }
            co += block;
        }
        blocked
    }

    /// Output length for an input of `len` samples (odd kernels: `ceil(len / stride)`).
    pub fn out_len(&self, len: usize) -> usize {
        (len + 2 * (self.kernel / 2) - self.kernel) / self.stride + 1
    }

    /// Folds an eval-mode batch norm that follows the convolution into it:
    /// `scale * (w * x + b) + shift = (scale * w) * x + (scale * b + shift)`.
    pub fn fold(&mut self, bn: &Affine) {
        let per_out = self.c_in * self.kernel;
        for (co, (w, b)) in self.weight.chunks_mut(per_out).zip(&mut self.bias).enumerate() {
            let (s, t) = (bn.scale[co], bn.shift[co]);
            w.iter_mut().for_each(|w| *w *= s);
            *b = *b * s + t;
        }
        self.blocked = self.block_weights();
    }

    /// Splits the zero-padded `x` (`c_in x len`) into `stride` phases (phase `r` holds
    /// samples `stride * t + r`), so that every kernel tap reads a contiguous run of one
    /// phase: tap `k` of output `t` is sample `t + k / stride` of phase `k % stride`.
    /// With `bn_relu`, the samples are taken through that batch norm and a ReLU on the way
    /// (the padding stays zero, as when a ReLU's output is padded).
    /// Every tap can read whole tiles up to the output length rounded up to a tile.
    #[inline(always)]
    pub fn split_phases<const FMA: bool>(&self, x: &[f32], len: usize, bn_relu: Option<&Affine>, into: &mut Phases) {
        let Phases { values: phases, taps } = into;
        let (k_size, stride, pad) = (self.kernel, self.stride, self.kernel / 2);
        let tiles = self.out_len(len).div_ceil(TILE);
        // Every tile reads TILE samples from each tap's start: room for the last tile's.
        let plen = tiles * TILE + (k_size - 1) / stride;
        phases.clear();
        phases.resize(self.c_in * stride * plen, 0.0);
        for (ci, (row, p)) in x.chunks_exact(len).zip(phases.chunks_exact_mut(stride * plen)).enumerate() {
            for (r, phase) in p.chunks_exact_mut(plen).enumerate() {
                // Phase r, position t: padded sample stride * t + r, input sample
                // stride * t + r - pad; the first position inside the input, and its sample.
                let first = pad.saturating_sub(r).div_ceil(stride);
                let start = stride * first + r - pad;
                let samples = row.get(start..).unwrap_or_default();
                let dst = phase.get_mut(first..).unwrap_or_default();
                gather::<FMA>(dst, samples, stride, bn_relu.map(|bn| (bn.scale[ci], bn.shift[ci])));
            }
        }
        taps.clear();
        for ci in 0..self.c_in {
            let channel = ci * stride * plen;
            taps.extend(self.tap_phase.iter().map(|&(phase, at)| channel + phase * plen + at));
        }
    }

    /// `out` (`c_out x out_len`) gets the convolution of `x` (`c_in x len`), taken through
    /// `bn_relu` first when given, and through ReLU when `relu`.
    #[inline(always)]
    pub fn forward<const FMA: bool>(
        &self,
        x: &[f32],
        len: usize,
        bn_relu: Option<&Affine>,
        out: &mut [f32],
        phases: &mut Phases,
        relu: bool,
    ) {
        let out_len = self.out_len(len);
        self.split_phases::<FMA>(x, len, bn_relu, phases);
        let Phases { values: phases, taps } = phases;
        let per_out = taps.len();
        let mut co = 0;
        while co < self.c_out {
            let size = self.block_at(co);
            let block = Block {
                weights: &self.blocked[co * per_out..(co + size) * per_out],
                bias: &self.bias[co..co + size],
                taps,
                phases,
                out: &mut out[co * out_len..(co + size) * out_len],
                out_len,
                relu,
            };
            if size == BLOCK {
                conv_block::<FMA, BLOCK>(block);
            } else {
                conv_block::<FMA, 1>(block);
            }
            co += size;
        }
    }
}

/// `dst[t] = f(src[stride * t])` while both last, `f` the batch norm `(scale, shift)` and a
/// ReLU when given, else the identity. Strides 1 and 2 (every convolution of the shipped
/// networks) run in vector registers; others one value at a time.
#[inline(always)]
pub(super) fn gather<const FMA: bool>(dst: &mut [f32], src: &[f32], stride: usize, bn_relu: Option<(f32, f32)>) {
    let f = |v: f32| match bn_relu {
        Some((scale, shift)) => (v * scale + shift).max(0.0),
        None => v,
    };
    let mut done = 0;
    if stride == 1 {
        dst.iter_mut().zip(src).for_each(|(d, &v)| *d = f(v));
        return;
    }
    #[cfg(target_arch = "x86_64")]
    if FMA && stride == 2 {
        // SAFETY: the FMA copies run only where the CPU has AVX2 and FMA (`fma_available`).
        done = unsafe { super::avx2::gather_even(dst, src, bn_relu) };
    }
    let rest = dst.get_mut(done..).unwrap_or_default();
    rest.iter_mut()
        .zip(src.get(stride * done..).unwrap_or_default().iter().step_by(stride))
        .for_each(|(d, &v)| *d = f(v));
}

/// `B` output channels of a convolution over the whole length: what a tile kernel reads and
/// writes.
pub(super) struct Block<'a> {
    /// `taps x B`.
    pub weights: &'a [f32],
    pub bias: &'a [f32],
    pub taps: &'a [usize],
    pub phases: &'a [f32],
    /// `B x out_len`.
    pub out: &'a mut [f32],
    pub out_len: usize,
    /// Through ReLU.
    pub relu: bool,
}

/// A block, a tile at a time.
#[inline(always)]
fn conv_block<const FMA: bool, const B: usize>(mut block: Block<'_>) {
    // SAFETY: the FMA copies run only where the CPU has AVX2 and FMA (`fma_available`).
    #[cfg(target_arch = "x86_64")]
    if FMA && unsafe { super::avx2::conv_block::<B>(&mut block) }.is_some() {
        return;
    }
    conv_tiles::<FMA, B>(&mut block);
}

/// [`conv_block`] in portable code.
#[inline(always)]
pub(super) fn conv_tiles<const FMA: bool, const B: usize>(block: &mut Block<'_>) {
    let Block { weights, bias, taps, phases, ref mut out, out_len, relu } = *block;
    for t0 in (0..out_len).step_by(TILE) {
        let mut acc = [[0f32; TILE]; B];
        for (a, &b) in acc.iter_mut().zip(bias) {
            *a = [b; TILE];
        }
        for (&tap, w) in taps.iter().zip(weights.chunks_exact(B)) {
            // Fixed-size views: the compiler keeps the tiles in vector registers (and also
            // stores them after every tap, hence the AVX2 copy in intrinsics). The phases
            // hold every tile's reach, by construction: the zeros are never read.
            let src = phases.get(tap + t0..).and_then(|p| p.first_chunk::<TILE>()).unwrap_or(&[0.0; TILE]);
            let w = w.first_chunk::<B>().unwrap_or(&[0.0; B]);
            for (a, &w) in acc.iter_mut().zip(w) {
                for i in 0..TILE {
                    a[i] = madd::<FMA>(a[i], w, src[i]);
                }
            }
        }
        let n = TILE.min(out_len - t0);
        for (c, a) in acc.iter().enumerate() {
            let dst = &mut out[c * out_len + t0..c * out_len + t0 + n];
            for (d, &v) in dst.iter_mut().zip(a) {
                *d = if relu { v.max(0.0) } else { v };
            }
        }
    }
}

/// An eval-mode batch norm as one multiply-add per value: `x * scale + shift` with
/// `scale = weight / sqrt(running_var + eps)`, `shift = bias - running_mean * scale`
/// (how libtorch computes it at inference).
#[derive(Debug, Clone)]
pub(crate) struct Affine {
    pub scale: Vec<f32>,
    pub shift: Vec<f32>,
}

impl Affine {
    pub fn from_batch_norm(weight: &[f32], bias: &[f32], mean: &[f32], var: &[f32], eps: f64) -> Self {
        let scale: Vec<f32> =
            weight.iter().zip(var).map(|(&w, &v)| (f64::from(w) / (f64::from(v) + eps).sqrt()) as f32).collect();
        let shift = bias.iter().zip(mean).zip(&scale).map(|((&b, &m), &s)| b - m * s).collect();
        Affine { scale, shift }
    }

    /// `x = relu(x * scale + shift)` on a vector of channels, in place.
    #[inline(always)]
    pub fn relu_in_place(&self, x: &mut [f32]) {
        for ((v, &s), &t) in x.iter_mut().zip(&self.scale).zip(&self.shift) {
            *v = (*v * s + t).max(0.0);
        }
    }
}

/// `y = x W^T + b`, as `nn::layers::Dense`.
#[derive(Debug, Clone)]
pub(super) struct Dense {
    pub c_in: usize,
    pub c_out: usize,
    /// `c_in x c_out`: the weights transposed, so that all outputs advance together.
    by_input: Vec<f32>,
    bias: Vec<f32>,
}

impl Dense {
    /// `weight` is `c_out x c_in`, `bias` `c_out` (checked by the caller).
    pub fn new(c_in: usize, c_out: usize, weight: Vec<f32>, bias: Vec<f32>) -> Self {
        let by_input = (0..c_in).flat_map(|i| weight.iter().skip(i).step_by(c_in.max(1)).copied()).collect();
        Dense { c_in, c_out, by_input, bias }
    }

    /// Every output is `b + w_0 x_0 + w_1 x_1 + ...` in that order, as before; the outputs
    /// are summed side by side (in vector lanes) instead of one dependent chain after another.
    #[inline(always)]
    pub fn forward(&self, x: &[f32], out: &mut [f32]) {
        let out = &mut out[..self.c_out];
        out.copy_from_slice(&self.bias);
        for (&x, w) in x.iter().zip(self.by_input.chunks_exact(self.c_out.max(1))) {
            out.iter_mut().zip(w).for_each(|(o, &w)| *o += w * x);
        }
    }
}

/// Mean over the length of every channel of `x` (`channels x len`) of `f(value)`.
#[inline(always)]
pub(super) fn channel_means(x: &[f32], len: usize, out: &mut [f32], f: impl Fn(f32) -> f32) {
    for (row, o) in x.chunks_exact(len).zip(out.iter_mut()) {
        *o = mean(row, &f);
    }
}

/// Mean of `f(value)` over `row`, summed in eight interleaved lanes (vectorised, and close
/// to libtorch's own lane-wise reduction).
#[inline(always)]
pub(crate) fn mean(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    lane_sum::<8>(row, f) / row.len() as f32
}

/// Sum of `f(value)` over `row` in `L` interleaved lanes (vectorised; each lane sums every
/// `L`-th value), the leftover values after them.
#[inline(always)]
pub(crate) fn lane_sum<const L: usize>(row: &[f32], f: impl Fn(f32) -> f32) -> f32 {
    let mut lanes = [0f32; L];
    let chunks = row.chunks_exact(L);
    let rest: f32 = chunks.remainder().iter().map(|&v| f(v)).sum();
    for c in chunks {
        for (l, &v) in lanes.iter_mut().zip(c) {
            *l += f(v);
        }
    }
    lanes.iter().sum::<f32>() + rest
}
