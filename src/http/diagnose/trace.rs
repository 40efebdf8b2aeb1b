//! The outline of a recording, for drawing it: the smallest and largest value of each of a
//! bounded number of equal slices, so a picture of any length costs the same few kilobytes.

use serde::Serialize;
use utoipa::ToSchema;

/// At most this many points.
pub const POINTS: usize = 2000;

#[derive(Debug, PartialEq, Serialize, ToSchema)]
pub struct Trace {
    /// Rate of the outlined samples (the model's, after any resampling), in Hz.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// Samples each point stands for; point `i` covers samples `i * n .. (i + 1) * n`.
    pub samples_per_point: usize,
    pub min: Vec<f32>,
    pub max: Vec<f32>,
}

impl Trace {
    /// The outline of `signal` (the first channel, before normalisation).
    pub fn of(signal: &[f32], sample_rate: Option<u32>) -> Trace {
        let samples_per_point = signal.len().div_ceil(POINTS).max(1);
        let (min, max) = signal
            .chunks(samples_per_point)
            .map(|c| c.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v))))
            .unzip();
        Trace { sample_rate, samples_per_point, min, max }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_signals_keep_every_sample_and_long_ones_at_most_the_points() {
        let t = Trace::of(&[1.0, -2.0, 3.0], Some(10));
        assert_eq!((t.samples_per_point, t.min, t.max), (1, vec![1.0, -2.0, 3.0], vec![1.0, -2.0, 3.0]));
        let long: Vec<f32> = (0..10_001).map(|i| (i % 7) as f32 - 3.0).collect();
        let t = Trace::of(&long, None);
        assert_eq!(t.samples_per_point, 6);
        assert_eq!(t.min.len(), 1667);
        assert!(t.min.len() <= POINTS);
        assert_eq!((t.min[0], t.max[0]), (-3.0, 2.0));
        // The last slice holds the five samples left over, 9996..=10000, i.e. -3..=1.
        assert_eq!((t.min[1666], t.max[1666]), (-3.0, 1.0));
    }
}
