//! Sample-rate conversion with an anti-aliasing filter: rubato's synchronous FFT
//! resampler (a windowed-sinc low-pass applied in the frequency domain), with its delay
//! removed so that sample `i` of the output lies at the time of sample `i * from / to`.

use rubato::{FftFixedInOut, Resampler};

/// Input frames per FFT chunk; the low-pass filter is as long as a chunk, so this sets
/// how steep it is (1024 taps leave a tone just past the new Nyquist > 60 dB down).
const CHUNK: usize = 1024;

/// Resamples `signal` from `from_hz` to `to_hz`. The output has `round(len * to / from)`
/// samples. A zero rate means nothing; the result is then empty.
pub fn resample(signal: &[f32], from_hz: u32, to_hz: u32) -> Vec<f32> {
    if from_hz == 0 || to_hz == 0 || signal.is_empty() {
        return Vec::new();
    }
    if from_hz == to_hz {
        return signal.to_vec();
    }
    let expected = ((signal.len() as u128 * to_hz as u128 + from_hz as u128 / 2) / from_hz as u128) as usize;
    // The filter is centred on input sample `chunk / 2` (rounded down): an even number of
    // the smallest whole-ratio blocks makes that an exact whole number of output samples,
    // which is what `output_delay` reports.
    let gcd = gcd(from_hz as usize, to_hz as usize);
    let (block_in, block_out) = (from_hz as usize / gcd, to_hz as usize / gcd);
    let blocks = CHUNK.div_ceil(block_in).next_multiple_of(2);
    let mut resampler = FftFixedInOut::<f32>::new(from_hz as usize, to_hz as usize, blocks * block_in, 1)
        .expect("rates checked non-zero above");
    let chunk_in = resampler.input_frames_next();
    let delay = resampler.output_delay();
    debug_assert_eq!((chunk_in, delay), (blocks * block_in, blocks * block_out / 2));
    let mut out = Vec::with_capacity(expected + delay + resampler.output_frames_max());
    let mut input = vec![0.0f32; chunk_in];
    let mut pos = 0;
    // Feed the signal, then zeros until the delayed tail has come out.
    while out.len() < delay + expected {
        let take = signal.len().saturating_sub(pos).min(chunk_in);
        input[..take].copy_from_slice(&signal[pos..pos + take]);
        input[take..].fill(0.0);
        pos += take;
        let produced = resampler.process(&[&input[..]], None).expect("buffers sized by the resampler itself");
        out.extend_from_slice(&produced[0]);
    }
    out.drain(..delay);
    out.truncate(expected);
    out
}

fn gcd(mut a: usize, mut b: usize) -> usize {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f32::consts::PI;

    fn sine(freq: f32, rate: u32, n: usize) -> Vec<f32> {
        (0..n).map(|i| (2.0 * PI * freq * i as f32 / rate as f32).sin()).collect()
    }

    fn rms(x: &[f32]) -> f32 {
        (x.iter().map(|v| v * v).sum::<f32>() / x.len() as f32).sqrt()
    }

    #[test]
    fn a_sine_keeps_its_frequency_phase_and_amplitude() {
        let (from, to) = (48_000, 12_000);
        let x = sine(1000.0, from, 48_000);
        let y = resample(&x, from, to);
        assert_eq!(y.len(), 12_000);
        // Away from the edges, the output is the same sine sampled at the new rate.
        let ideal = sine(1000.0, to, 12_000);
        let err: f32 = y[500..11_500].iter().zip(&ideal[500..11_500]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "max deviation {err}");
    }

    #[test]
    fn a_tone_above_the_new_nyquist_is_removed() {
        // 7 kHz would fold to 5 kHz at 12 kHz without the anti-aliasing filter.
        let y = resample(&sine(7000.0, 48_000, 48_000), 48_000, 12_000);
        let level = rms(&y[500..11_500]) / (0.5f32).sqrt();
        assert!(20.0 * level.log10() < -60.0, "alias at {} dB", 20.0 * level.log10());
    }

    #[test]
    fn upsampling_and_odd_ratios_give_the_expected_length() {
        assert_eq!(resample(&sine(100.0, 12_000, 1000), 12_000, 48_000).len(), 4000);
        let y = resample(&sine(440.0, 44_100, 44_100), 44_100, 12_800);
        assert_eq!(y.len(), 12_800);
        let ideal = sine(440.0, 12_800, 12_800);
        let err: f32 = y[500..12_000].iter().zip(&ideal[500..12_000]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "max deviation {err}");
    }
}
