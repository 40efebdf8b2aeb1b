//! Envelope analysis: the band where the signal is most impulsive (spectral kurtosis over
//! a dyadic split of the spectrum, a fast-kurtogram-like search), the Hilbert envelope of
//! that band, and the envelope's spectrum averaged over segments.

use std::sync::Arc;

use rustfft::num_complex::Complex;
use rustfft::{Fft, FftPlanner};

/// A frequency band in Hz.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Band {
    pub low_hz: f64,
    pub high_hz: f64,
    /// Spectral kurtosis of the band's complex envelope (0 for Gaussian noise).
    pub kurtosis: f64,
}

/// An amplitude spectrum on a regular grid: bin `k` is `k * resolution_hz`.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, utoipa::ToSchema)]
pub struct Spectrum {
    pub resolution_hz: f64,
    pub amplitudes: Vec<f64>,
}

impl Spectrum {
    pub fn frequency(&self, bin: usize) -> f64 {
        bin as f64 * self.resolution_hz
    }

    /// The bins within `low..=high` Hz, clipped to the spectrum.
    pub fn bins(&self, low_hz: f64, high_hz: f64) -> std::ops::Range<usize> {
        let lo = (low_hz / self.resolution_hz).floor().max(0.0) as usize;
        let hi = ((high_hz / self.resolution_hz).ceil() as usize + 1).min(self.amplitudes.len());
        lo.min(hi)..hi
    }
}

struct Transforms {
    forward: Arc<dyn Fft<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

fn transforms(n: usize) -> Transforms {
    let mut planner = FftPlanner::new();
    Transforms { forward: planner.plan_fft_forward(n), inverse: planner.plan_fft_inverse(n) }
}

/// A signal's FFT, taken once for every band looked at, with the inverse transform of its
/// length.
pub struct Transformed {
    rate: f64,
    spectrum: Vec<Complex<f64>>,
    inverse: Arc<dyn Fft<f64>>,
}

impl Transformed {
    pub fn new(signal: &[f64], rate: f64) -> Self {
        let t = transforms(signal.len());
        let mut spectrum: Vec<Complex<f64>> = signal.iter().map(|&x| Complex::new(x, 0.0)).collect();
        t.forward.process(&mut spectrum);
        Transformed { rate, spectrum, inverse: t.inverse }
    }
}

/// The analytic signal of `spectrum`'s band `low..high` Hz (negative frequencies and
/// everything outside the band zeroed), back in time; `spectrum` is the FFT of a real
/// signal of its length at `rate`.
fn band_analytic(
    spectrum: &[Complex<f64>],
    rate: f64,
    low: f64,
    high: f64,
    inverse: &dyn Fft<f64>,
) -> Vec<Complex<f64>> {
    let n = spectrum.len();
    let bin_hz = rate / n as f64;
    let mut out: Vec<Complex<f64>> = spectrum
        .iter()
        .enumerate()
        .map(|(k, &c)| {
            let f = k as f64 * bin_hz;
            if k > 0 && k < n.div_ceil(2) && f >= low && f < high {
                c * 2.0
            } else {
                Complex::new(0.0, 0.0)
            }
        })
        .collect();
    inverse.process(&mut out);
    let scale = 1.0 / n as f64;
    out.iter_mut().for_each(|c| *c *= scale);
    out
}

/// Spectral kurtosis of a complex envelope: `E|x|^4 / (E|x|^2)^2 - 2`.
fn spectral_kurtosis(analytic: &[Complex<f64>]) -> f64 {
    let n = analytic.len().max(1) as f64;
    let (m2, m4) = analytic.iter().fold((0.0, 0.0), |(m2, m4), c| {
        let p = c.norm_sqr();
        (m2 + p, m4 + p * p)
    });
    let (m2, m4) = (m2 / n, m4 / n);
    if m2 <= 0.0 {
        0.0
    } else {
        m4 / (m2 * m2) - 2.0
    }
}

/// The band with the highest spectral kurtosis among the halves, thirds, quarters,
/// sixths, ... (down to `levels` dyadic splits) of `0..rate/2`, above `min_hz` (the shaft
/// harmonics below it are not impacts) and at least `min_width` Hz wide (an envelope
/// shows modulation only up to its band's width).
pub fn most_impulsive_band(signal: &Transformed, levels: u32, min_hz: f64, min_width: f64) -> Band {
    let (spectrum, rate) = (&signal.spectrum, signal.rate);
    let nyquist = rate / 2.0;
    let mut best = Band { low_hz: min_hz, high_hz: nyquist, kurtosis: f64::NEG_INFINITY };
    let splits = (1..=levels).flat_map(|level| [1u32 << level, 3u32 << (level - 1)]);
    for parts in splits {
        let width = nyquist / f64::from(parts);
        if width < min_width {
            continue;
        }
        for i in 0..parts {
            let (low, high) = ((f64::from(i) * width).max(min_hz), f64::from(i + 1) * width);
            if high - low < width / 2.0 {
                continue;
            }
            let kurtosis = spectral_kurtosis(&band_analytic(spectrum, rate, low, high, signal.inverse.as_ref()));
            if kurtosis > best.kurtosis {
                best = Band { low_hz: low, high_hz: high, kurtosis };
            }
        }
    }
    best
}

/// The spectrum of the band's envelope, averaged over Hann-windowed segments of
/// `segment` samples overlapping by half (the envelope's mean removed).
pub fn envelope_spectrum(signal: &Transformed, band: &Band, segment: usize) -> Spectrum {
    let (n, rate) = (signal.spectrum.len(), signal.rate);
    let analytic = band_analytic(&signal.spectrum, rate, band.low_hz, band.high_hz, signal.inverse.as_ref());
    let envelope: Vec<f64> = analytic.iter().map(|c| c.norm()).collect();
    let segment = segment.min(n).max(2);
    let hann: Vec<f64> =
        (0..segment).map(|i| 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / segment as f64).cos()).collect();
    let seg = transforms(segment);
    let mut sum = vec![0.0; segment / 2 + 1];
    let mut count = 0usize;
    let mut start = 0;
    while start + segment <= n {
        let piece = envelope.get(start..start + segment).unwrap_or_default();
        let mean = piece.iter().sum::<f64>() / segment as f64;
        let mut buffer: Vec<Complex<f64>> =
            piece.iter().zip(&hann).map(|(&x, &w)| Complex::new((x - mean) * w, 0.0)).collect();
        seg.forward.process(&mut buffer);
        for (s, c) in sum.iter_mut().zip(&buffer) {
            *s += c.norm();
        }
        count += 1;
        start += segment / 2;
    }
    let scale = 2.0 / (count.max(1) as f64 * hann.iter().sum::<f64>());
    Spectrum { resolution_hz: rate / segment as f64, amplitudes: sum.into_iter().map(|s| s * scale).collect() }
}

/// The amplitude spectrum of the whole signal (Hann window), for the shaft speed.
pub fn amplitude_spectrum(signal: &[f64], rate: f64) -> Spectrum {
    let n = signal.len();
    let t = transforms(n);
    let mean = signal.iter().sum::<f64>() / n.max(1) as f64;
    let mut buffer: Vec<Complex<f64>> = signal
        .iter()
        .enumerate()
        .map(|(i, &x)| {
            let w = 0.5 - 0.5 * (2.0 * std::f64::consts::PI * i as f64 / n as f64).cos();
            Complex::new((x - mean) * w, 0.0)
        })
        .collect();
    t.forward.process(&mut buffer);
    let amplitudes = buffer.iter().take(n / 2 + 1).map(|c| c.norm() * 4.0 / n as f64).collect();
    Spectrum { resolution_hz: rate / n as f64, amplitudes }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_impulse_train_on_a_resonance_shows_its_rate_in_the_envelope() {
        // Impacts 107 times a second ringing a resonance, in a little noise.
        let rate = super::super::synthetic::RATE;
        let x: Vec<f64> =
            super::super::synthetic::impacts(107.0, |_| 1.0, 0.05, 5.0).iter().map(|&v| f64::from(v)).collect();
        let transformed = Transformed::new(&x, rate);
        let band = most_impulsive_band(&transformed, 4, 500.0, 400.0);
        assert!(band.kurtosis > 1.0, "{band:?}");
        let spectrum = envelope_spectrum(&transformed, &band, 8192);
        let peak = spectrum
            .bins(20.0, 300.0)
            .max_by(|&a, &b| spectrum.amplitudes[a].total_cmp(&spectrum.amplitudes[b]))
            .unwrap();
        assert!((spectrum.frequency(peak) - 107.0).abs() < 2.0, "peak at {} Hz", spectrum.frequency(peak));
    }
}
