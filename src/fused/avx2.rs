//! The convolution's register tile and its stride-2 input split in AVX2 + FMA intrinsics,
//! for the kernels' FMA copies.
//!
//! Written out because the compiler, given the portable tile of `layers.rs`, kept the
//! accumulators in registers but also stored all of them to the stack after every tap
//! (eight stores per eight multiply-adds: the store port, not the FMA units, set the pace).
//! Each output is the same fused multiply-add chain in the same order as the portable
//! tile's, so both give bit-identical values.

use std::arch::x86_64::{
    __m256, _mm256_add_ps, _mm256_broadcast_ss, _mm256_castpd_ps, _mm256_castps_pd, _mm256_fmadd_ps, _mm256_loadu_ps,
    _mm256_max_ps, _mm256_mul_ps, _mm256_permute4x64_pd, _mm256_set1_ps, _mm256_setzero_ps, _mm256_shuffle_ps,
    _mm256_storeu_ps,
};

use super::layers::{Block, TILE};

/// Eight lanes a register: a tile is two of them.
const HALF: usize = TILE / 2;

/// A block of `B` output channels, a tile at a time, as `layers::conv_block`. Returns
/// `None`, having written nothing, if some tap's tiles would read past the phases (never, as
/// `Conv::split_phases` sizes them).
///
/// # Safety
/// The CPU must have AVX2 and FMA; inlined into a function compiled for them, the
/// intrinsics become single instructions.
#[inline(always)]
pub(super) unsafe fn conv_block<const B: usize>(block: &mut Block<'_>) -> Option<()> {
    debug_assert!(super::fma_available(), "the AVX2 tile on a CPU without AVX2 and FMA");
    let Block { weights, bias, taps, phases, ref mut out, out_len, relu } = *block;
    let reach = taps.iter().max()?.checked_add(out_len.div_ceil(TILE).checked_mul(TILE)?)?;
    if reach > phases.len()
        || weights.len() < taps.len().checked_mul(B)?
        || bias.len() < B
        || out.len() < out_len.checked_mul(B)?
    {
        return None;
    }
    let (src, w) = (phases.as_ptr(), weights.as_ptr());
    for t0 in (0..out_len).step_by(TILE) {
        // SAFETY: every load is inside `phases` (tap + t0 + TILE <= reach) or `weights`
        // (j * B + c < taps * B), checked above; the CPU has AVX2 and FMA (the caller).
        let acc = unsafe {
            let mut acc: [[__m256; 2]; B] = [[_mm256_setzero_ps(); 2]; B];
            for (a, &b) in acc.iter_mut().zip(bias) {
                *a = [_mm256_set1_ps(b); 2];
            }
            for (j, &tap) in taps.iter().enumerate() {
                let x = src.add(tap + t0);
                let (lo, hi) = (_mm256_loadu_ps(x), _mm256_loadu_ps(x.add(HALF)));
                for (c, a) in acc.iter_mut().enumerate() {
                    let wc = _mm256_broadcast_ss(&*w.add(j * B + c));
                    a[0] = _mm256_fmadd_ps(wc, lo, a[0]);
                    a[1] = _mm256_fmadd_ps(wc, hi, a[1]);
                }
            }
            if relu {
                for a in &mut acc {
                    *a = a.map(|v| _mm256_max_ps(v, _mm256_setzero_ps()));
                }
            }
            acc
        };
        let n = TILE.min(out_len - t0);
        for (c, a) in acc.iter().enumerate() {
            let dst = &mut out[c * out_len + t0..c * out_len + t0 + n];
            if let Some(dst) = dst.first_chunk_mut::<TILE>() {
                // SAFETY: `dst` holds TILE = 2 x 8 values; the CPU has AVX2 (the caller).
                unsafe {
                    _mm256_storeu_ps(dst.as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(dst.as_mut_ptr().add(HALF), a[1]);
                }
            } else {
                let mut tile = [0f32; TILE];
                // SAFETY: as above, into a local tile.
                unsafe {
                    _mm256_storeu_ps(tile.as_mut_ptr(), a[0]);
                    _mm256_storeu_ps(tile.as_mut_ptr().add(HALF), a[1]);
                }
                dst.copy_from_slice(&tile[..n]);
            }
        }
    }
    Some(())
}

/// `dst[t] = f(src[2 t])` eight outputs at a time while sixteen samples remain, `f` as in
/// `layers::gather` (a multiply, an add and a ReLU: the same roundings); returns how many
/// outputs it wrote, the rest for the caller.
///
/// # Safety
/// The CPU must have AVX2 (the caller's copy is compiled for it).
#[inline(always)]
pub(super) unsafe fn gather_even(dst: &mut [f32], src: &[f32], bn_relu: Option<(f32, f32)>) -> usize {
    debug_assert!(super::fma_available(), "the AVX2 split on a CPU without AVX2");
    let mut done = 0;
    for (s, d) in src.chunks_exact(TILE).zip(dst.chunks_exact_mut(HALF)) {
        // SAFETY: `s` holds 16 values and `d` 8; the CPU has AVX2 (the caller).
        unsafe {
            let (a, b) = (_mm256_loadu_ps(s.as_ptr()), _mm256_loadu_ps(s.as_ptr().add(HALF)));
            // a0 a2 b0 b2 | a4 a6 b4 b6, then the middle quarters swapped: a0 a2 a4 a6 b0 b2 b4 b6.
            let even = _mm256_shuffle_ps::<0b10_00_10_00>(a, b);
            let mut v = _mm256_castpd_ps(_mm256_permute4x64_pd::<0b11_01_10_00>(_mm256_castps_pd(even)));
            if let Some((scale, shift)) = bn_relu {
                let scaled = _mm256_mul_ps(v, _mm256_set1_ps(scale));
                v = _mm256_max_ps(_mm256_add_ps(scaled, _mm256_set1_ps(shift)), _mm256_setzero_ps());
            }
            _mm256_storeu_ps(d.as_mut_ptr(), v);
        }
        done += HALF;
    }
    done
}

#[cfg(test)]
mod tests {
    use super::super::fma_available;
    use super::super::layers::{conv_tiles, gather, Block, Conv, Phases};

    /// Reproducible values in [-1, 1).
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761) | 1;
        (0..n)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                (x >> 8) as f32 / (1u32 << 23) as f32 - 1.0
            })
            .collect()
    }

    #[test]
    fn the_intrinsics_give_the_portable_fma_copys_values_bit_for_bit() {
        if !fma_available() {
            eprintln!("skipped: this CPU has no AVX2 + FMA");
            return;
        }
        // Lengths with and without a partial last tile; strides 1, 2 and 3.
        for (c_in, kernel, stride, len) in [(1, 3, 2, 2048), (4, 3, 1, 37), (3, 5, 3, 101), (8, 3, 2, 255)] {
            let conv = Conv::new(c_in, 4, kernel, stride, values(4 * c_in * kernel, 1), values(4, 2));
            let x = values(c_in * len, 3);
            let mut split = Phases::default();
            conv.split_phases::<true>(&x, len, None, &mut split);
            let Phases { values: phases, taps } = split;
            let out_len = conv.out_len(len);
            let weights = values(taps.len() * 4, 4);
            for relu in [false, true] {
                let bias = [0.5, -0.5, 0.0, 1.0];
                let block =
                    |out| Block { weights: &weights, bias: &bias, taps: &taps, phases: &phases, out, out_len, relu };
                let mut portable = vec![f32::NAN; 4 * out_len];
                conv_tiles::<true, 4>(&mut block(&mut portable));
                let mut intrinsics = vec![f32::NAN; 4 * out_len];
                // SAFETY: the CPU has AVX2 and FMA (checked above).
                let wrote = unsafe { super::conv_block::<4>(&mut block(&mut intrinsics)) };
                assert!(wrote.is_some(), "c_in {c_in}, stride {stride}, len {len}: phases too short");
                let bits = |v: &[f32]| v.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert_eq!(bits(&portable), bits(&intrinsics), "c_in {c_in}, stride {stride}, len {len}, relu {relu}");
            }
            // A phase buffer one value short of the last tile's reach is refused, not read past.
            let reach = taps.iter().max().unwrap() + out_len.div_ceil(16) * 16;
            let short = &phases[..reach - 1];
            let mut out = vec![0.0; 4 * out_len];
            let mut block = Block {
                weights: &weights,
                bias: &[0.0; 4],
                taps: &taps,
                phases: short,
                out: &mut out,
                out_len,
                relu: false,
            };
            // SAFETY: as above.
            let wrote = unsafe { super::conv_block::<4>(&mut block) };
            assert!(wrote.is_none());
        }
        for n in [0, 7, 8, 16, 33, 1000] {
            let src = values(n, 5);
            for bn in [None, Some((1.5, -0.25))] {
                let mut with = vec![f32::NAN; n / 2 + 3];
                gather::<true>(&mut with, &src, 2, bn);
                let mut without = vec![f32::NAN; n / 2 + 3];
                gather::<false>(&mut without, &src, 2, bn);
                let f = |v: f32| bn.map_or(v, |(s, t)| (v * s + t).max(0.0));
                let expected: Vec<f32> = src.iter().step_by(2).map(|&v| f(v)).collect();
                assert_eq!(with[..expected.len()], expected[..], "{n} samples, {bn:?}");
                assert_eq!(without[..expected.len()], expected[..], "{n} samples, {bn:?}");
                assert!(with[expected.len()..].iter().all(|v| v.is_nan()), "wrote past the samples");
            }
        }
    }
}
