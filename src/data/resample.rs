//! Sample-rate conversion with an anti-aliasing filter: rubato's synchronous FFT
//! resampler (a windowed-sinc low-pass applied in the frequency domain), with its delay
//! removed so that sample `i` of the output lies at the time of sample `i * from / to`.

use rubato::{FftFixedInOut, Resampler};

use super::{DataError, Limits};

/// Input frames per FFT chunk; the low-pass filter is as long as a chunk, so this sets
/// how steep it is (1024 taps leave a tone just past the new Nyquist > 60 dB down).
const CHUNK: usize = 1024;

/// How many samples resampling `len` samples from `from_hz` to `to_hz` gives, once both
/// rates, their ratio, the resampler's chunk (which grows with the reduced ratio's terms)
/// and the output's size are within `limits`; the error names the limit that refused.
/// Cheap: call it before any work that depends on the result.
pub fn resampled_len(len: usize, from_hz: u32, to_hz: u32, limits: &Limits) -> Result<usize, DataError> {
    limits.check_rate("input", "the signal's rate", from_hz)?;
    limits.check_rate("input", "the target rate", to_hz)?;
    let refuse = |problem: String| Err(DataError::SampleRate { file: "input".into(), problem });
    let (low, high) = (from_hz.min(to_hz), from_hz.max(to_hz));
    if u64::from(high) > u64::from(low) * u64::from(limits.max_resample_ratio) {
        return refuse(format!(
            "{from_hz} Hz to {to_hz} Hz is a factor beyond the limit of {} (--max-resample-ratio)",
            limits.max_resample_ratio
        ));
    }
    let gcd = gcd(from_hz as usize, to_hz as usize);
    let (block_in, block_out) = (from_hz as usize / gcd, to_hz as usize / gcd);
    if block_in.max(block_out) > limits.max_rate_block as usize {
        return refuse(format!(
            "{from_hz} Hz to {to_hz} Hz reduces to the ratio {block_in}:{block_out}, whose terms exceed the limit of {} (--max-rate-block); use a rate with a simpler ratio to {to_hz} Hz",
            limits.max_rate_block
        ));
    }
    let expected = (len as u128 * u128::from(to_hz) + u128::from(from_hz) / 2) / u128::from(from_hz);
    limits.check_samples(
        "input",
        &format!("resampled to {to_hz} Hz, the signal would hold"),
        usize::try_from(expected).ok(),
    )
}

/// Resamples `signal` from `from_hz` to `to_hz` within `limits` (see [`resampled_len`]).
/// The output has `round(len * to / from)` samples.
pub fn resample(signal: &[f32], from_hz: u32, to_hz: u32, limits: &Limits) -> Result<Vec<f32>, DataError> {
    let expected = resampled_len(signal.len(), from_hz, to_hz, limits)?;
    if from_hz == to_hz || signal.is_empty() {
        return Ok(signal.to_vec());
    }
    let failed = |e: &dyn std::fmt::Display| DataError::SampleRate { file: "input".into(), problem: e.to_string() };
    // The filter is centred on input sample `chunk / 2` (rounded down): an even number of
    // the smallest whole-ratio blocks makes that an exact whole number of output samples,
    // which is what `output_delay` reports.
    let gcd = gcd(from_hz as usize, to_hz as usize);
    let (block_in, block_out) = (from_hz as usize / gcd, to_hz as usize / gcd);
    let blocks = CHUNK.div_ceil(block_in).next_multiple_of(2);
    let mut resampler =
        FftFixedInOut::<f32>::new(from_hz as usize, to_hz as usize, blocks * block_in, 1).map_err(|e| failed(&e))?;
    let chunk_in = resampler.input_frames_next();
    let delay = resampler.output_delay();
    debug_assert_eq!((chunk_in, delay), (blocks * block_in, blocks * block_out / 2));
    let mut out = Vec::with_capacity(expected + delay + resampler.output_frames_max());
    let mut input = vec![0.0f32; chunk_in];
    let mut pos = 0;
    // Feed the signal, then zeros until the delayed tail has come out.
    while out.len() < delay + expected {
        let rest = signal.get(pos..).unwrap_or_default();
        let take = rest.len().min(chunk_in);
        let (head, tail) = input.split_at_mut(take);
        head.copy_from_slice(rest.get(..take).unwrap_or_default());
        tail.fill(0.0);
        pos += take;
        let produced = resampler.process(&[&input[..]], None).map_err(|e| failed(&e))?;
        out.extend(produced.into_iter().flatten());
    }
    out.drain(..delay);
    out.truncate(expected);
    Ok(out)
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
        let y = resample(&x, from, to, &Limits::DEFAULT).unwrap();
        assert_eq!(y.len(), 12_000);
        // Away from the edges, the output is the same sine sampled at the new rate.
        let ideal = sine(1000.0, to, 12_000);
        let err: f32 = y[500..11_500].iter().zip(&ideal[500..11_500]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "max deviation {err}");
    }

    #[test]
    fn a_tone_above_the_new_nyquist_is_removed() {
        // 7 kHz would fold to 5 kHz at 12 kHz without the anti-aliasing filter.
        let y = resample(&sine(7000.0, 48_000, 48_000), 48_000, 12_000, &Limits::DEFAULT).unwrap();
        let level = rms(&y[500..11_500]) / (0.5f32).sqrt();
        assert!(20.0 * level.log10() < -60.0, "alias at {} dB", 20.0 * level.log10());
    }

    #[test]
    fn upsampling_and_odd_ratios_give_the_expected_length() {
        let l = Limits::DEFAULT;
        assert_eq!(resample(&sine(100.0, 12_000, 1000), 12_000, 48_000, &l).unwrap().len(), 4000);
        let y = resample(&sine(440.0, 44_100, 44_100), 44_100, 12_800, &l).unwrap();
        assert_eq!(y.len(), 12_800);
        let ideal = sine(440.0, 12_800, 12_800);
        let err: f32 = y[500..12_000].iter().zip(&ideal[500..12_000]).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(err < 1e-3, "max deviation {err}");
    }

    #[test]
    fn rates_ratios_and_sizes_beyond_the_limits_are_refused_before_any_work() {
        let l = Limits::DEFAULT;
        let refused = |len, from, to| resampled_len(len, from, to, &l).unwrap_err().to_string();
        assert!(refused(2048, 100_000_007, 12_000).contains("--max-sample-rate"));
        assert!(refused(2048, 0, 12_000).contains("--min-sample-rate"));
        assert!(refused(262_144, 1, 12_000).contains("--max-resample-ratio"));
        let e = refused(2048, 48_001, 12_000);
        assert!(e.contains("48001:12000") && e.contains("--max-rate-block"), "{e}");
        assert!(refused(1 << 26, 3_000, 12_000).contains("--max-samples"));
        assert_eq!(resampled_len(8192, 48_000, 12_000, &l).unwrap(), 2048);
        assert_eq!(resampled_len(8192, 12_000, 12_000, &l).unwrap(), 8192);
    }
}
