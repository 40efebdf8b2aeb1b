//! The arithmetic behind `autograd.cpp`, over runs of consecutive samples of contiguous
//! `N x C x L` buffers. C++ calls these through function pointers, one run per thread of
//! libtorch's pool; each returns 0, or non-zero (never unwinds) when a shape does not add
//! up or a kernel panicked.

use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::fused::fma_available;
use crate::fused::layers::{lane_sum, madd, mean, Conv, Phases};

/// The table `drsn_cpu_set_kernels` takes (`drsn_cpu_kernels` in autograd.cpp).
#[repr(C)]
pub(super) struct Table {
    conv_forward: unsafe extern "C" fn(*const f32, *const f32, *const f32, *mut f32, ConvShape) -> i32,
    conv_weight_grad: unsafe extern "C" fn(*const f32, *const f32, *mut f32, *mut f32, ConvShape) -> i32,
    channel_moments: unsafe extern "C" fn(*const f32, *const f32, *mut f64, Rows) -> i32,
    channel_grad_sums: unsafe extern "C" fn(*const f32, *const f32, *const f32, *mut f64, Rows) -> i32,
    channel_combine: unsafe extern "C" fn(*const f32, *const f32, *const f32, *mut f32, Rows) -> i32,
    soft_threshold: unsafe extern "C" fn(*const f32, *const f32, *mut f32, Rows, i64) -> i32,
    soft_threshold_grad: unsafe extern "C" fn(*const f32, *const f32, *const f32, *mut f32, *mut f32, Rows, i64) -> i32,
    mean_abs: unsafe extern "C" fn(*const f32, *mut f32, Rows) -> i32,
    mean_abs_grad: unsafe extern "C" fn(*const f32, *const f32, *mut f32, Rows) -> i32,
}

pub(super) static TABLE: Table = Table {
    conv_forward,
    conv_weight_grad,
    channel_moments,
    channel_grad_sums,
    channel_combine,
    soft_threshold,
    soft_threshold_grad,
    mean_abs,
    mean_abs_grad,
};

/// Runs `f`, mapping a shape error to 1 and a panic to 2.
fn guarded(f: impl FnOnce() -> Option<()>) -> i32 {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Some(())) => 0,
        Ok(None) => 1,
        Err(_) => 2,
    }
}

/// The sizes of a convolution call (`drsn_conv_shape` in autograd.cpp): `n` samples of
/// `c_in x len` in, `c_out` channels out, an odd `kernel` with "same" padding.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct ConvShape {
    n: i64,
    c_in: i64,
    c_out: i64,
    kernel: i64,
    len: i64,
    stride: i64,
}

impl ConvShape {
    /// `(n, len)` and a convolution of this shape with `weight` and `bias` (zeros where
    /// absent), once every size is checked.
    fn conv(self, weight: Option<Vec<f32>>, bias: Option<Vec<f32>>) -> Option<(usize, usize, Conv)> {
        let s = [self.n, self.c_in, self.c_out, self.kernel, self.len, self.stride].map(|v| usize::try_from(v).ok());
        let [Some(n), Some(c_in), Some(c_out), Some(kernel), Some(len), Some(stride)] = s else { return None };
        if c_in == 0 || c_out == 0 || kernel % 2 == 0 || len == 0 || stride == 0 {
            return None;
        }
        let per_w = c_out.checked_mul(c_in)?.checked_mul(kernel)?;
        let weight = weight.unwrap_or_else(|| vec![0.0; per_w]);
        let bias = bias.unwrap_or_else(|| vec![0.0; c_out]);
        (weight.len() == per_w && bias.len() == c_out)
            .then(|| (n, len, Conv::new(c_in, c_out, kernel, stride, weight, bias)))
    }

    fn weights(self) -> Option<usize> {
        usize::try_from(self.c_out.checked_mul(self.c_in)?.checked_mul(self.kernel)?).ok()
    }
}

/// A slice over `len` values at `p` (`len` computed with checked arithmetic by the caller).
///
/// # Safety
/// `p` must point at `len` initialised values that stay alive and unaliased by writes.
unsafe fn slice<'a, T>(p: *const T, len: usize) -> Option<&'a [T]> {
    (!p.is_null()).then(|| std::slice::from_raw_parts(p, len))
}

/// # Safety
/// As [`slice`], and nothing else reads or writes the values meanwhile.
unsafe fn slice_mut<'a, T>(p: *mut T, len: usize) -> Option<&'a mut [T]> {
    (!p.is_null()).then(|| std::slice::from_raw_parts_mut(p, len))
}

/// `out[i] = conv(x[i])` for each of the shape's samples; `b` may be null (no bias).
unsafe extern "C" fn conv_forward(x: *const f32, w: *const f32, b: *const f32, out: *mut f32, shape: ConvShape) -> i32 {
    guarded(|| {
        let weight = slice(w, shape.weights()?)?.to_vec();
        let bias = if b.is_null() { None } else { Some(slice(b, usize::try_from(shape.c_out).ok()?)?.to_vec()) };
        let (n, len, conv) = shape.conv(Some(weight), bias)?;
        let (per_in, per_out) = (conv.c_in.checked_mul(len)?, conv.c_out.checked_mul(conv.out_len(len))?);
        let x = slice(x, n.checked_mul(per_in)?)?;
        let out = slice_mut(out, n.checked_mul(per_out)?)?;
        dispatch(ConvForward { conv, x, len, out });
        Some(())
    })
}

/// A kernel compiled twice: for AVX2 with FMA, and for the baseline instruction set.
trait Simd {
    fn run<const FMA: bool>(self);
}

/// Runs `kernel`'s AVX2 + FMA copy where the CPU has them.
fn dispatch(kernel: impl Simd) {
    #[cfg(target_arch = "x86_64")]
    if fma_available() {
        // SAFETY: the CPU has AVX2 and FMA.
        return unsafe { run_fma(kernel) };
    }
    kernel.run::<false>()
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
fn run_fma(kernel: impl Simd) {
    kernel.run::<true>()
}

struct ConvForward<'a> {
    conv: Conv,
    x: &'a [f32],
    len: usize,
    out: &'a mut [f32],
}

impl Simd for ConvForward<'_> {
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let (conv, len) = (&self.conv, self.len);
        let mut phases = Phases::default();
        let per_out = conv.c_out * conv.out_len(len);
        for (x, out) in self.x.chunks_exact(conv.c_in * len).zip(self.out.chunks_exact_mut(per_out)) {
            conv.forward::<FMA>(x, len, None, out, &mut phases, false);
        }
    }
}

/// Adds to `gw` (`c_out x c_in x kernel`) and `gb` (`c_out`) the gradients of a
/// convolution's weights and bias from the shape's samples of its input `x` and of the
/// gradient `g` at its output: `gw[o][i][k] += sum_t g[o][t] * x_padded[i][stride * t + k]`.
unsafe extern "C" fn conv_weight_grad(
    x: *const f32,
    g: *const f32,
    gw: *mut f32,
    gb: *mut f32,
    shape: ConvShape,
) -> i32 {
    guarded(|| {
        let (n, len, conv) = shape.conv(None, None)?;
        let out_len = conv.out_len(len);
        let x = slice(x, n.checked_mul(conv.c_in.checked_mul(len)?)?)?;
        let g = slice(g, n.checked_mul(conv.c_out.checked_mul(out_len)?)?)?;
        let (gw, gb) = (slice_mut(gw, shape.weights()?)?, slice_mut(gb, conv.c_out)?);
        dispatch(WeightGrad { shape: conv, x, g, len, gw, gb });
        Some(())
    })
}

struct WeightGrad<'a> {
    /// The convolution's shape (its weights are not read).
    shape: Conv,
    x: &'a [f32],
    g: &'a [f32],
    len: usize,
    gw: &'a mut [f32],
    gb: &'a mut [f32],
}

impl Simd for WeightGrad<'_> {
    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let WeightGrad { shape, x, g, len, gw, gb } = self;
        weight_grad::<FMA>(&shape, x, g, len, gw, gb)
    }
}

#[inline(always)]
fn weight_grad<const FMA: bool>(shape: &Conv, x: &[f32], g: &[f32], len: usize, gw: &mut [f32], gb: &mut [f32]) {
    let mut phases = Phases::default();
    let (k_size, out_len) = (shape.kernel, shape.out_len(len));
    let per_out = shape.c_in * k_size;
    for (x, g) in x.chunks_exact(shape.c_in * len).zip(g.chunks_exact(shape.c_out * out_len)) {
        // Stride 1 reads the input rows in place (the padding only trims the range of
        // outputs a tap sees); other strides read the phases, zeros included.
        let direct = shape.stride == 1;
        if !direct {
            shape.split_phases::<FMA>(x, len, None, &mut phases);
        }
        // Where tap `j` reads, and the outputs it reaches: (source, first, end).
        let source = |j: usize| -> (&[f32], usize, usize) {
            if direct {
                let (ci, k, pad) = (j / k_size, j % k_size, k_size / 2);
                // The outputs whose input sample `t + k - pad` lies inside the row (none
                // when the kernel reaches past a short row on both sides).
                let first = pad.saturating_sub(k).min(out_len);
                let end = (len + pad).saturating_sub(k).min(out_len).max(first);
                if first == end {
                    return (&[], first, end);
                }
                let start = ci * len + first + k - pad;
                (x.get(start..start + (end - first)).unwrap_or_default(), first, end)
            } else {
                let tap = phases.taps.get(j).copied().unwrap_or_default();
                (phases.values.get(tap..tap + out_len).unwrap_or_default(), 0, out_len)
            }
        };
        let mut co = 0;
        while co < shape.c_out {
            let g = g.get(co * out_len..).unwrap_or_default();
            let (gw, gb) = (gw.get_mut(co * per_out..).unwrap_or_default(), gb.get_mut(co..).unwrap_or_default());
            if shape.c_out - co >= BLOCK {
                grad_block::<FMA, BLOCK>(g, out_len, &source, per_out, gw, gb);
                co += BLOCK;
            } else {
                grad_block::<FMA, 1>(g, out_len, &source, per_out, gw, gb);
                co += 1;
            }
        }
    }
}

/// Adds the gradients of `B` consecutive output channels: their rows of `g` (`out_len`
/// each) against every tap's `source` into `gw` (`B x per_out`), and their sums into `gb`.
#[inline(always)]
fn grad_block<'a, const FMA: bool, const B: usize>(
    g: &[f32],
    out_len: usize,
    source: &impl Fn(usize) -> (&'a [f32], usize, usize),
    per_out: usize,
    gw: &mut [f32],
    gb: &mut [f32],
) {
    let rows: [&[f32]; B] = std::array::from_fn(|b| g.get(b * out_len..(b + 1) * out_len).unwrap_or_default());
    for j in 0..per_out {
        let (src, first, end) = source(j);
        let sums = dot_block::<FMA, B>(rows.map(|r| r.get(first..end).unwrap_or_default()), src);
        for (b, s) in sums.iter().enumerate() {
            gw[b * per_out + j] += s;
        }
    }
    for (b, r) in rows.iter().enumerate() {
        gb[b] += sum(r);
    }
}

/// Output channels whose gradients are summed together, sharing each input load.
const BLOCK: usize = 4;

/// The dot products of `B` rows with `x` (all as long as the shortest), side by side.
#[inline(always)]
fn dot_block<const FMA: bool, const B: usize>(rows: [&[f32]; B], x: &[f32]) -> [f32; B] {
    const W: usize = 8;
    let n = rows.iter().map(|r| r.len()).min().unwrap_or(0).min(x.len());
    let mut lanes = [[0f32; W]; B];
    let mut t = 0;
    while t + W <= n {
        let xs = x[t..t + W].first_chunk::<W>().unwrap_or(&[0.0; W]);
        for (l, r) in lanes.iter_mut().zip(&rows) {
            let rs = r[t..t + W].first_chunk::<W>().unwrap_or(&[0.0; W]);
            for i in 0..W {
                l[i] = madd::<FMA>(l[i], rs[i], xs[i]);
            }
        }
        t += W;
    }
    std::array::from_fn(|b| {
        let tail: f32 = (t..n).map(|i| rows[b][i] * x[i]).sum();
        lanes[b].iter().sum::<f32>() + tail
    })
}

/// Lanes summed side by side: vectorised, and each sums a sixteenth of the values.
const LANES: usize = 16;

#[inline(always)]
fn sum(a: &[f32]) -> f32 {
    lane_sum::<LANES>(a, |v| v)
}

/// Adds to `out` (`channels`, in double) each channel's sum over `n` samples of `x`, or,
/// with `centre` (`channels`), its sum of `(x - centre)^2`. Each row of `len` values is
/// summed in single precision lanes, the rows in double.
unsafe extern "C" fn channel_moments(x: *const f32, centre: *const f32, out: *mut f64, rows: Rows) -> i32 {
    guarded(|| {
        let (_, channels, len, size) = rows.checked()?;
        let x = slice(x, size)?;
        let centre = if centre.is_null() { None } else { Some(slice(centre, channels)?) };
        let out = slice_mut(out, channels)?;
        for sample in x.chunks_exact(channels * len) {
            for (c, (row, o)) in sample.chunks_exact(len).zip(out.iter_mut()).enumerate() {
                *o += f64::from(match centre {
                    None => sum(row),
                    Some(m) => lane_sum::<LANES>(row, |v| (v - m[c]) * (v - m[c])),
                });
            }
        }
        Some(())
    })
}

/// The sizes of a per-channel call (`drsn_rows` in autograd.cpp): `n` samples of
/// `channels x len`.
#[repr(C)]
#[derive(Clone, Copy)]
pub(super) struct Rows {
    n: i64,
    channels: i64,
    len: i64,
}

impl Rows {
    /// `(n, channels, len, n * channels * len)`, once every size is checked.
    fn checked(self) -> Option<(usize, usize, usize, usize)> {
        let [n, channels, len] = [self.n, self.channels, self.len].map(|v| usize::try_from(v).ok());
        let (n, channels, len) = (n?, channels?, len?);
        (channels > 0 && len > 0).then_some((n, channels, len, n.checked_mul(channels)?.checked_mul(len)?))
    }
}

/// The sums batch norm's backward needs, added to `out` (`2 x channels`, in double): per
/// channel, `sum g` and `sum g * (x - mean)` over `n` samples of `x` and `g`.
unsafe extern "C" fn channel_grad_sums(
    x: *const f32,
    g: *const f32,
    mean: *const f32,
    out: *mut f64,
    rows: Rows,
) -> i32 {
    guarded(|| {
        let (_, channels, len, size) = rows.checked()?;
        let (x, g, mean) = (slice(x, size)?, slice(g, size)?, slice(mean, channels)?);
        let (sum_g, sum_gx) = slice_mut(out, 2 * channels)?.split_at_mut(channels);
        for (x, g) in x.chunks_exact(channels * len).zip(g.chunks_exact(channels * len)) {
            for (c, (x, g)) in x.chunks_exact(len).zip(g.chunks_exact(len)).enumerate() {
                sum_g[c] += f64::from(sum(g));
                sum_gx[c] += f64::from(centred_dot(g, x, mean[c]));
            }
        }
        Some(())
    })
}

/// `out = g * k[0][c] + (x - k[3][c]) * k[1][c] + k[2][c]` per channel `c` of `n` samples,
/// with `k` (`4 x channels`) the coefficients batch norm's input gradient reduces to and the
/// batch mean (subtracted first: no cancellation when the mean is large).
unsafe extern "C" fn channel_combine(g: *const f32, x: *const f32, k: *const f32, out: *mut f32, rows: Rows) -> i32 {
    guarded(|| {
        let (_, channels, len, size) = rows.checked()?;
        let (g, x, out) = (slice(g, size)?, slice(x, size)?, slice_mut(out, size)?);
        let k = slice(k, channels.checked_mul(4)?)?;
        let (k_g, rest) = k.split_at(channels);
        let (k_x, rest) = rest.split_at(channels);
        let (k_0, mean) = rest.split_at(channels);
        let rows = g.chunks_exact(len).zip(x.chunks_exact(len)).zip(out.chunks_exact_mut(len));
        // Rows run through the channels in order, sample after sample.
        for (((g, x), out), c) in rows.zip((0..channels).cycle()) {
            let (a, b, d, m) = (k_g[c], k_x[c], k_0[c], mean[c]);
            for ((o, &g), &x) in out.iter_mut().zip(g).zip(x) {
                *o = g * a + (x - m) * b + d;
            }
        }
        Some(())
    })
}

#[inline(always)]
fn centred_dot(g: &[f32], x: &[f32], m: f32) -> f32 {
    let mut lanes = [0f32; LANES];
    let (gc, xc) = (g.chunks_exact(LANES), x.chunks_exact(LANES));
    let rest: f32 = gc.remainder().iter().zip(xc.remainder()).map(|(&g, &x)| g * (x - m)).sum();
    for (g, x) in gc.zip(xc) {
        for i in 0..LANES {
            lanes[i] += g[i] * (x[i] - m);
        }
    }
    lanes.iter().sum::<f32>() + rest
}

/// Checked sizes of a soft-thresholding call: `(n, channels, len, size, thresholds per
/// sample)`, the last 1 (one per sample) or `channels` (one per channel).
fn threshold_shape(rows: Rows, per_sample: i64) -> Option<(usize, usize, usize, usize, usize)> {
    let (n, channels, len, size) = rows.checked()?;
    let per_sample = usize::try_from(per_sample).ok()?;
    (per_sample == 1 || per_sample == channels).then_some((n, channels, len, size, per_sample))
}

/// `out = x - clamp(x, -tau, tau)` (`sign(x) * max(|x| - tau, 0)`) per row, with `tau`
/// (`n x per_sample`) one threshold per sample or per channel.
unsafe extern "C" fn soft_threshold(x: *const f32, tau: *const f32, out: *mut f32, rows: Rows, per_sample: i64) -> i32 {
    guarded(|| {
        let (n, channels, len, size, per_sample) = threshold_shape(rows, per_sample)?;
        let (x, out, tau) = (slice(x, size)?, slice_mut(out, size)?, slice(tau, n.checked_mul(per_sample)?)?);
        for (row, (x, out)) in x.chunks_exact(len).zip(out.chunks_exact_mut(len)).enumerate() {
            let t = tau[threshold_index(row, channels, per_sample)];
            if t.is_nan() {
                // As libtorch's form gives: a diverged threshold must show in the loss.
                out.fill(f32::NAN);
                continue;
            }
            for (o, &v) in out.iter_mut().zip(x) {
                // max/min rather than clamp: no panic on a NaN threshold.
                *o = v - v.max(-t).min(t);
            }
        }
        Some(())
    })
}

/// The threshold of row `row` (sample `row / channels`, channel `row % channels`).
fn threshold_index(row: usize, channels: usize, per_sample: usize) -> usize {
    let (sample, channel) = (row / channels, row % channels);
    sample * per_sample + if per_sample == 1 { 0 } else { channel }
}

/// Gradients of [`soft_threshold`] from `g` at its output: `gx = g` where `|x| > tau`, else
/// 0; `gtau = -sum g * sign(x)` over those values (of the row, or of the sample's rows).
unsafe extern "C" fn soft_threshold_grad(
    x: *const f32,
    tau: *const f32,
    g: *const f32,
    gx: *mut f32,
    gtau: *mut f32,
    rows: Rows,
    per_sample: i64,
) -> i32 {
    guarded(|| {
        let (n, channels, len, size, per_sample) = threshold_shape(rows, per_sample)?;
        let (x, g, gx) = (slice(x, size)?, slice(g, size)?, slice_mut(gx, size)?);
        let thresholds = n.checked_mul(per_sample)?;
        let (tau, gtau) = (slice(tau, thresholds)?, slice_mut(gtau, thresholds)?);
        gtau.fill(0.0);
        let rows = x.chunks_exact(len).zip(g.chunks_exact(len)).zip(gx.chunks_exact_mut(len));
        for (row, ((x, g), gx)) in rows.enumerate() {
            let i = threshold_index(row, channels, per_sample);
            let t = tau[i];
            if t.is_nan() {
                gx.fill(f32::NAN);
                gtau[i] = f32::NAN;
                continue;
            }
            // What passes, and its share of the threshold's gradient (selects, no branches).
            let step = |gx: &mut f32, g: f32, v: f32| -> f32 {
                let pass = if v.abs() > t { g } else { 0.0 };
                *gx = pass;
                if v < 0.0 {
                    pass
                } else {
                    -pass
                }
            };
            let mut lanes = [0f32; LANES];
            let (mut gxc, gc, xc) = (gx.chunks_exact_mut(LANES), g.chunks_exact(LANES), x.chunks_exact(LANES));
            let (g_rest, x_rest) = (gc.remainder(), xc.remainder());
            for ((gx, g), x) in (&mut gxc).zip(gc).zip(xc) {
                for i in 0..LANES {
                    lanes[i] += step(&mut gx[i], g[i], x[i]);
                }
            }
            let rows_rest = gxc.into_remainder().iter_mut().zip(g_rest).zip(x_rest);
            let rest: f32 = rows_rest.map(|((gx, &g), &v)| step(gx, g, v)).sum();
            gtau[i] += lanes.iter().sum::<f32>() + rest;
        }
        Some(())
    })
}

/// `out[row] = mean |x[row]|` for every row (sample and channel) of `x`.
unsafe extern "C" fn mean_abs(x: *const f32, out: *mut f32, rows: Rows) -> i32 {
    guarded(|| {
        let (n, channels, len, size) = rows.checked()?;
        let (x, out) = (slice(x, size)?, slice_mut(out, n.checked_mul(channels)?)?);
        for (row, o) in x.chunks_exact(len).zip(out.iter_mut()) {
            *o = mean(row, f32::abs);
        }
        Some(())
    })
}

/// The gradient of [`mean_abs`] from `g` (one value per row): `gx = sign(x) * g / len`.
unsafe extern "C" fn mean_abs_grad(x: *const f32, g: *const f32, gx: *mut f32, rows: Rows) -> i32 {
    guarded(|| {
        let (n, channels, len, size) = rows.checked()?;
        let (x, g, gx) = (slice(x, size)?, slice(g, n.checked_mul(channels)?)?, slice_mut(gx, size)?);
        for ((x, gx), &g) in x.chunks_exact(len).zip(gx.chunks_exact_mut(len)).zip(g) {
            let share = g / len as f32;
            for (o, &v) in gx.iter_mut().zip(x) {
                // sign(0) = 0, as libtorch's.
                *o = if v > 0.0 {
                    share
                } else if v < 0.0 {
                    -share
                } else {
                    0.0
                };
            }
        }
        Some(())
    })
}
