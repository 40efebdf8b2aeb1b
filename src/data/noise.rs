//! Additive noise for augmentation and for the paper's noise protocol: Gaussian, Laplacian
//! and pink (1/f) noise at a signal-to-noise ratio, and the seed's uniform pixel noise.
//!
//! SNR = 10 log10(P_signal / P_noise), with P the mean square over the window (per
//! channel). The noise drawn is rescaled by its own measured power, so every window gets
//! exactly the SNR asked for rather than that SNR on average.

use std::cell::RefCell;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp1, StandardNormal};
use rustfft::num_complex::Complex;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::Samples;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum NoiseKind {
    /// White Gaussian noise.
    Gaussian,
    /// White Laplacian noise (heavier tails: impulsive disturbances).
    Laplacian,
    /// Pink noise, power falling as 1/f.
    Pink,
    /// The seed's image noise: `+ 0.5 * U[0, 1)` on every value, whatever the signal.
    UniformPixel,
}

/// Amplitude of the seed's uniform pixel noise.
pub const SEED_PIXEL_AMPLITUDE: f32 = 0.5;

impl NoiseKind {
    /// The kinds of the paper's protocol, which are added at an SNR.
    pub const SNR_KINDS: [NoiseKind; 3] = [NoiseKind::Gaussian, NoiseKind::Laplacian, NoiseKind::Pink];

    /// Whether the amount of this noise is set by an SNR (all but the seed's pixel noise).
    pub fn uses_snr(self) -> bool {
        !matches!(self, NoiseKind::UniformPixel)
    }
}

impl std::fmt::Display for NoiseKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            NoiseKind::Gaussian => "gaussian",
            NoiseKind::Laplacian => "laplacian",
            NoiseKind::Pink => "pink",
            NoiseKind::UniformPixel => "uniform-pixel",
        })
    }
}

impl std::str::FromStr for NoiseKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "gaussian" => Ok(NoiseKind::Gaussian),
            "laplacian" => Ok(NoiseKind::Laplacian),
            "pink" => Ok(NoiseKind::Pink),
            "uniform-pixel" => Ok(NoiseKind::UniformPixel),
            other => Err(format!("unknown noise kind {other:?}; expected gaussian, laplacian, pink or uniform-pixel")),
        }
    }
}

/// Mean square of a window: its power.
pub fn power(values: &[f32]) -> f64 {
    if values.is_empty() {
        return 0.0;
    }
    values.iter().map(|&v| (v as f64).powi(2)).sum::<f64>() / values.len() as f64
}

/// The SNR in dB of `noisy` against the `clean` window it was made from.
pub fn measured_snr_db(clean: &[f32], noisy: &[f32]) -> f64 {
    let noise: Vec<f32> = noisy.iter().zip(clean).map(|(n, c)| n - c).collect();
    10.0 * (power(clean) / power(&noise)).log10()
}

/// `len` values of zero-mean noise of `kind` (for `UniformPixel`: `U[0, 1)`), unscaled.
pub fn draw(kind: NoiseKind, len: usize, rng: &mut impl Rng) -> Vec<f64> {
    match kind {
        NoiseKind::Gaussian => (0..len).map(|_| StandardNormal.sample(rng)).collect(),
        // A Laplace variate is an exponential one with a random sign.
        NoiseKind::Laplacian => (0..len)
            .map(|_| {
                let e: f64 = Exp1.sample(rng);
                if rng.random::<bool>() {
                    e
                } else {
                    -e
                }
            })
            .collect(),
        NoiseKind::Pink => pink(len, rng),
        NoiseKind::UniformPixel => (0..len).map(|_| rng.random::<f64>()).collect(),
    }
}

thread_local! {
    // Plans are cached by the planner; training draws pink noise for many equal-length windows.
    static PLANNER: RefCell<FftPlanner<f64>> = RefCell::new(FftPlanner::new());
}

/// Pink noise: white Gaussian noise whose spectrum is shaped by 1/sqrt(f), so that its
/// power spectral density falls as 1/f. The DC bin is removed.
fn pink(len: usize, rng: &mut impl Rng) -> Vec<f64> {
    let mut buf: Vec<Complex<f64>> = (0..len).map(|_| Complex::new(StandardNormal.sample(rng), 0.0)).collect();
    PLANNER.with(|planner| {
        let mut planner = planner.borrow_mut();
        planner.plan_fft_forward(len).process(&mut buf);
        // Bin k and bin len-k are the same frequency; scaling both alike keeps the
        // spectrum Hermitian, so the inverse transform is real.
        for (k, c) in buf.iter_mut().enumerate() {
            let f = k.min(len - k);
            *c = if f == 0 { Complex::new(0.0, 0.0) } else { *c / (f as f64).sqrt() };
        }
        planner.plan_fft_inverse(len).process(&mut buf);
    });
    buf.into_iter().map(|c| c.re).collect()
}

/// Adds noise of `kind` to one window (one channel) in place, at `snr_db` relative to the
/// window's own power. `UniformPixel` ignores `snr_db` and adds `0.5 * U[0, 1)`, as the
/// seed does. A silent window (zero power) stays as it is under the SNR kinds.
pub fn add_noise(values: &mut [f32], kind: NoiseKind, snr_db: f64, rng: &mut impl Rng) {
    let noise = draw(kind, values.len(), rng);
    let scale = if kind.uses_snr() {
        let noise_power = noise.iter().map(|v| v * v).sum::<f64>() / noise.len().max(1) as f64;
        if noise_power == 0.0 {
            return;
        }
        let target = power(values) / 10f64.powf(snr_db / 10.0);
        (target / noise_power).sqrt()
    } else {
        SEED_PIXEL_AMPLITUDE as f64
    };
    for (v, n) in values.iter_mut().zip(noise) {
        *v = (*v as f64 + scale * n) as f32;
    }
}

/// Adds noise to every channel of one sample (`sample_shape[0]` channels, contiguous).
pub fn add_noise_to_sample(sample: &mut [f32], channels: usize, kind: NoiseKind, snr_db: f64, rng: &mut impl Rng) {
    let per_channel = sample.len() / channels.max(1);
    if per_channel == 0 {
        return;
    }
    for channel in sample.chunks_mut(per_channel) {
        add_noise(channel, kind, snr_db, rng);
    }
}

/// A noisy copy of `samples`: every sample and channel at `snr_db`, reproducible from `seed`.
pub fn noisy_copy(samples: &Samples, kind: NoiseKind, snr_db: f64, seed: u64) -> Samples {
    let mut out = samples.clone();
    let n = out.sample_len();
    let channels = out.sample_shape.first().copied().unwrap_or(1);
    let mut rng = StdRng::seed_from_u64(seed);
    if n > 0 {
        for sample in out.values.chunks_mut(n) {
            add_noise_to_sample(sample, channels, kind, snr_db, &mut rng);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_signal(len: usize) -> Vec<f32> {
        // A bearing-like signal: two tones and an offset, so that P is not just variance.
        (0..len)
            .map(|i| {
                let t = i as f32 / 12_000.0;
                0.3 + (2.0 * std::f32::consts::PI * 157.0 * t).sin()
                    + 0.4 * (2.0 * std::f32::consts::PI * 1_600.0 * t).sin()
            })
            .collect()
    }

    #[test]
    fn measured_snr_is_within_a_fifth_of_a_db_of_the_request_for_each_kind() {
        let clean = test_signal(2048);
        let mut rng = StdRng::seed_from_u64(7);
        for kind in NoiseKind::SNR_KINDS {
            for snr in [-5.0, -4.0, 0.0, 3.0, 5.0] {
                let mut noisy = clean.clone();
                add_noise(&mut noisy, kind, snr, &mut rng);
                let measured = measured_snr_db(&clean, &noisy);
                assert!((measured - snr).abs() < 0.2, "{kind} at {snr} dB measured {measured} dB");
            }
        }
    }

    #[test]
    fn noisy_copies_are_reproducible_from_the_seed_and_differ_between_seeds() {
        let samples = Samples { values: test_signal(2 * 2 * 256), sample_shape: vec![2, 256], labels: vec![0, 1] };
        let a = noisy_copy(&samples, NoiseKind::Pink, -2.0, 11);
        let b = noisy_copy(&samples, NoiseKind::Pink, -2.0, 11);
        let c = noisy_copy(&samples, NoiseKind::Pink, -2.0, 12);
        assert_eq!(a, b);
        assert_ne!(a.values, c.values);
        assert_eq!(a.labels, samples.labels);
        // Each channel of each sample gets its own SNR.
        for (i, chunk) in a.values.chunks(256).enumerate() {
            let clean = &samples.values[i * 256..(i + 1) * 256];
            let snr = measured_snr_db(clean, chunk);
            assert!((snr + 2.0).abs() < 0.2, "channel {i}: {snr} dB");
        }
    }

    /// Slope of log power against log frequency, averaged periodogram over many windows.
    fn spectral_slope(kind: NoiseKind) -> f64 {
        let len = 4096;
        let mut rng = StdRng::seed_from_u64(3);
        let mut psd = vec![0.0f64; len / 2];
        for _ in 0..64 {
            let mut buf: Vec<Complex<f64>> =
                draw(kind, len, &mut rng).into_iter().map(|v| Complex::new(v, 0.0)).collect();
            FftPlanner::new().plan_fft_forward(len).process(&mut buf);
            for (p, c) in psd.iter_mut().zip(&buf) {
                *p += c.norm_sqr();
            }
        }
        // Least squares over bins 1..len/2 (DC excluded).
        let pts: Vec<(f64, f64)> = (1..len / 2).map(|k| ((k as f64).ln(), psd[k].ln())).collect();
        let n = pts.len() as f64;
        let (mx, my) = (pts.iter().map(|p| p.0).sum::<f64>() / n, pts.iter().map(|p| p.1).sum::<f64>() / n);
        let sxy: f64 = pts.iter().map(|(x, y)| (x - mx) * (y - my)).sum();
        let sxx: f64 = pts.iter().map(|(x, _)| (x - mx).powi(2)).sum();
        sxy / sxx
    }

    #[test]
    fn pink_noise_power_falls_as_one_over_f_and_white_noise_is_flat() {
        let pink = spectral_slope(NoiseKind::Pink);
        assert!((pink + 1.0).abs() < 0.05, "pink slope {pink}");
        for kind in [NoiseKind::Gaussian, NoiseKind::Laplacian] {
            let white = spectral_slope(kind);
            assert!(white.abs() < 0.05, "{kind} slope {white}");
        }
    }

    #[test]
    fn laplacian_noise_has_the_laplace_kurtosis() {
        // Excess kurtosis: 3 for Laplace, 0 for Gauss; tells the two apart.
        let mut rng = StdRng::seed_from_u64(5);
        let kurt = |v: Vec<f64>| {
            let n = v.len() as f64;
            let m = v.iter().sum::<f64>() / n;
            let m2 = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n;
            let m4 = v.iter().map(|x| (x - m).powi(4)).sum::<f64>() / n;
            m4 / (m2 * m2) - 3.0
        };
        let lap = kurt(draw(NoiseKind::Laplacian, 200_000, &mut rng));
        let gauss = kurt(draw(NoiseKind::Gaussian, 200_000, &mut rng));
        assert!((lap - 3.0).abs() < 0.3, "laplacian excess kurtosis {lap}");
        assert!(gauss.abs() < 0.1, "gaussian excess kurtosis {gauss}");
    }

    #[test]
    fn uniform_pixel_noise_adds_half_a_unit_uniform_whatever_the_snr() {
        let mut rng = StdRng::seed_from_u64(9);
        let mut img = vec![0.25f32; 28 * 28];
        add_noise(&mut img, NoiseKind::UniformPixel, -5.0, &mut rng);
        assert!(img.iter().all(|&v| (0.25..0.75).contains(&v)), "values leave [0.25, 0.75)");
        let mean = img.iter().map(|&v| v as f64).sum::<f64>() / img.len() as f64;
        assert!((mean - 0.5).abs() < 0.02, "mean {mean}, expected 0.25 + 0.5 * 0.5");
    }

    #[test]
    fn noise_kinds_parse_and_serialise_in_kebab_case() {
        for kind in [NoiseKind::Gaussian, NoiseKind::Laplacian, NoiseKind::Pink, NoiseKind::UniformPixel] {
            let text = kind.to_string();
            assert_eq!(text.parse::<NoiseKind>().unwrap(), kind);
            assert_eq!(serde_json::to_string(&kind).unwrap(), format!("\"{text}\""));
        }
        assert!("white".parse::<NoiseKind>().unwrap_err().contains("gaussian"));
    }
}
