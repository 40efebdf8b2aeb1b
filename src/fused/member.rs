//! One member of a 1-D network in eval mode, one window at a time: the operations of
//! `nn::network::Member` and `nn::unit::ResidualUnit`, each unit's second batch norm
//! folded into its first convolution, and the shrinkage, the identity and the
//! diagnostics computed in passes over activations that stay in the core's cache.

use super::layers::{channel_means, mean, Affine, Conv, Dense, Phases};

#[derive(Debug, Clone)]
pub(super) struct Member {
    pub stem: Conv,
    pub units: Vec<Unit>,
    pub head: Affine,
    pub fc: Dense,
}

/// `BN -> ReLU -> Conv(stride) -> BN -> ReLU -> Conv [-> shrink] + identity`.
#[derive(Debug, Clone)]
pub(super) struct Unit {
    pub bn1: Affine,
    /// The first convolution with the second batch norm folded in (its ReLU follows).
    pub conv1: Conv,
    pub conv2: Conv,
    pub shrink: Option<Shrink>,
    pub stride: usize,
    /// The identity's channels land at `pad_before..pad_before + c_in` when the unit widens.
    pub pad_before: usize,
    /// Its output's mean |x| per channel is one of the stage features.
    pub last_of_stage: bool,
}

/// `GAP(|x|) -> FC -> BN -> ReLU -> FC -> sigmoid`, scaled by the mean |x|.
#[derive(Debug, Clone)]
pub(super) struct Shrink {
    pub fc1: Dense,
    pub bn: Affine,
    pub fc2: Dense,
    /// One threshold per window (DRSN-CS) rather than per channel (DRSN-CW).
    pub shared: bool,
}

/// Working memory of one thread; every buffer holds the largest activation of the network.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    h: Vec<f32>,
    a: Vec<f32>,
    b: Vec<f32>,
    phases: Phases,
    small: Small,
}

/// Per-channel values of one unit.
#[derive(Debug, Default)]
struct Small {
    mean_abs: Vec<f32>,
    hidden: Vec<f32>,
    scales: Vec<f32>,
    thresholds: Vec<f32>,
}

impl Scratch {
    pub fn new(activations: usize, channels: usize) -> Self {
        let big = || vec![0f32; activations];
        let small = || vec![0f32; channels];
        Scratch {
            h: big(),
            a: big(),
            b: big(),
            phases: Phases::default(),
            small: Small { mean_abs: small(), hidden: small(), scales: small(), thresholds: small() },
        }
    }
}

/// Where one member's results for one window go: appended, so that windows taken in order
/// give row-major `windows x values` arrays.
pub(super) struct Sink<'a> {
    pub logits: &'a mut [f32],
    pub features: &'a mut Vec<f32>,
    pub stage_features: &'a mut Vec<f32>,
    /// Per shrinkage unit of this member: thresholds, scales, mean |x|, zeroed share.
    pub units: Option<&'a mut [[Vec<f32>; 4]]>,
}

impl Member {
    /// The largest activation (`channels x length`) for an input of `len` samples, and the
    /// widest layer.
    pub fn sizes(&self, len: usize) -> (usize, usize) {
        let mut len_now = self.stem.out_len(len);
        // The input itself is read where it lies, not copied into the scratch buffers.
        let mut largest = self.stem.c_out * len_now;
        let mut widest = self.stem.c_out;
        for u in &self.units {
            len_now = u.conv1.out_len(len_now);
            largest = largest.max(u.conv2.c_out * len_now);
            widest = widest.max(u.conv2.c_out);
        }
        (largest, widest.max(self.fc.c_out))
    }

    /// Runs one window `x` (`in_channels x len`), adding this member's logits to
    /// `sink.logits` and appending the rest.
    #[inline(always)]
    pub fn forward<const FMA: bool>(&self, x: &[f32], len: usize, s: &mut Scratch, sink: &mut Sink<'_>) {
        let mut len = len;
        let mut width = self.stem.c_out;
        let out_len = self.stem.out_len(len);
        self.stem.forward::<FMA>(x, len, None, &mut s.h[..width * out_len], &mut s.phases, false);
        len = out_len;
        let mut shrink_index = 0;
        for unit in &self.units {
            let c_out = unit.conv2.c_out;
            let out_len = unit.conv1.out_len(len);
            let (input, wide) = (width * len, c_out * out_len);
            let (h, b) = (&s.h[..input], &mut s.b[..wide]);
            unit.conv1.forward::<FMA>(h, len, Some(&unit.bn1), b, &mut s.phases, true);
            unit.conv2.forward::<FMA>(b, out_len, None, &mut s.a[..wide], &mut s.phases, false);
            if let Some(shrink) = &unit.shrink {
                let diagnostics = sink.units.as_deref_mut().and_then(|u| u.get_mut(shrink_index));
                shrink.apply(&mut s.a[..wide], out_len, &mut s.small, diagnostics);
                shrink_index += 1;
            }
            // The shortcut: every `stride`-th sample of the unit's input onto the middle channels.
            let residual = &mut s.a[unit.pad_before * out_len..(unit.pad_before + width) * out_len];
            for (dst, src) in residual.chunks_exact_mut(out_len).zip(s.h[..input].chunks_exact(len)) {
                if unit.stride == 1 {
                    dst.iter_mut().zip(src).for_each(|(d, &v)| *d += v);
                } else {
                    dst.iter_mut().zip(src.iter().step_by(unit.stride)).for_each(|(d, &v)| *d += v);
                }
            }
            std::mem::swap(&mut s.h, &mut s.a);
            len = out_len;
            width = c_out;
            if unit.last_of_stage {
                let at = sink.stage_features.len();
                sink.stage_features.resize(at + width, 0.0);
                channel_means(&s.h[..width * len], len, &mut sink.stage_features[at..], f32::abs);
            }
        }
        // The head: BN -> ReLU -> global average -> dense.
        let at = sink.features.len();
        sink.features.resize(at + width, 0.0);
        let features = &mut sink.features[at..];
        for ((row, f), (&scale, &shift)) in s.h[..width * len]
            .chunks_exact(len)
            .zip(features.iter_mut())
            .zip(self.head.scale.iter().zip(&self.head.shift))
        {
            *f = mean(row, |v| (v * scale + shift).max(0.0));
        }
        let logits = &mut s.small.scales[..self.fc.c_out];
        self.fc.forward(&sink.features[at..], logits);
        sink.logits.iter_mut().zip(logits.iter()).for_each(|(l, &v)| *l += v);
    }
}

impl Shrink {
    /// Soft-thresholds `r` (`channels x len`) in place, as `nn::shrink::Shrinkage` at
    /// inference (`x - min(max(x, -tau), tau)`: exact zeros inside the threshold), and
    /// appends the unit's diagnostics when asked.
    #[inline(always)]
    fn apply(&self, r: &mut [f32], len: usize, s: &mut Small, diagnostics: Option<&mut [Vec<f32>; 4]>) {
        let c = self.fc1.c_in;
        let mean_abs = &mut s.mean_abs[..c];
        channel_means(r, len, mean_abs, f32::abs);
        let hidden = &mut s.hidden[..self.fc1.c_out];
        self.fc1.forward(mean_abs, hidden);
        self.bn.relu_in_place(hidden);
        let scales = &mut s.scales[..self.fc2.c_out];
        self.fc2.forward(hidden, scales);
        scales.iter_mut().for_each(|v| *v = 1.0 / (1.0 + (-*v).exp()));
        let thresholds = &mut s.thresholds[..self.fc2.c_out];
        if self.shared {
            let level = mean_abs.iter().sum::<f32>() / c as f32;
            thresholds.iter_mut().zip(scales.iter()).for_each(|(t, &a)| *t = a * level);
        } else {
            thresholds.iter_mut().zip(scales.iter()).zip(mean_abs.iter()).for_each(|((t, &a), &m)| *t = a * m);
        }
        let mut zeros = 0usize;
        for (ch, row) in r.chunks_exact_mut(len).enumerate() {
            let tau = if self.shared { thresholds[0] } else { thresholds[ch] };
            zeros += soft_threshold(row, tau);
        }
        if let Some([t, a, m, z]) = diagnostics {
            t.extend_from_slice(thresholds);
            a.extend_from_slice(scales);
            m.extend_from_slice(mean_abs);
            z.push(zeros as f32 / r.len() as f32);
        }
    }
}

/// `x - clamp(x, -tau, tau)` in place (exact zeros inside the threshold), in lanes of
/// eight; returns how many values became zero.
#[inline(always)]
fn soft_threshold(row: &mut [f32], tau: f32) -> usize {
    let shrink = |v: f32| {
        let below = if v < tau { v } else { tau };
        v - if below > -tau { below } else { -tau }
    };
    // Counted in f32 lanes (exact below 2^24 a lane), which vectorise with the shrinking;
    // integer counts from the comparisons kept the loop scalar.
    let mut lanes = [0f32; 8];
    let mut chunks = row.chunks_exact_mut(8);
    for chunk in &mut chunks {
        for (l, v) in lanes.iter_mut().zip(chunk) {
            *v = shrink(*v);
            *l += if *v == 0.0 { 1.0 } else { 0.0 };
        }
    }
    let rest = chunks.into_remainder().iter_mut().fold(0usize, |n, v| {
        *v = shrink(*v);
        n + usize::from(*v == 0.0)
    });
    lanes.iter().sum::<f32>() as usize + rest
}
