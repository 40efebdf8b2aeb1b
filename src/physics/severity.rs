//! How bad the vibration is: acceleration RMS, peak, crest factor and kurtosis always;
//! with the sensor's unit, the overall velocity RMS from 10 to 1000 Hz (integrated in the
//! frequency domain) and its zone by the boundaries of ISO 10816-3:2009 (Annex A), the
//! values ISO 20816-3 kept for these machine groups.

use rustfft::num_complex::Complex;
use rustfft::FftPlanner;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// What one unit of the signal is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum SensorUnit {
    /// Standard gravity (9.80665 m/s²), as the CWRU files.
    #[serde(rename = "g")]
    G,
    #[serde(rename = "m/s^2")]
    MetersPerSecondSquared,
    #[serde(rename = "unknown")]
    Unknown,
}

/// The machine group and foundation that pick the zone boundaries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IsoGroup {
    /// Group 1 (300 kW to 50 MW), rigid foundation.
    Group1Rigid,
    Group1Flexible,
    /// Group 2 (15 to 300 kW), rigid foundation.
    Group2Rigid,
    Group2Flexible,
}

impl IsoGroup {
    /// Zone boundaries A/B, B/C, C/D in mm/s RMS.
    pub fn boundaries(self) -> [f64; 3] {
        match self {
            IsoGroup::Group2Rigid => [1.4, 2.8, 4.5],
            IsoGroup::Group2Flexible => [2.3, 4.5, 7.1],
            IsoGroup::Group1Rigid => [2.3, 4.5, 7.1],
            IsoGroup::Group1Flexible => [3.5, 7.1, 11.0],
        }
    }

    pub fn zone(self, velocity_mm_s: f64) -> char {
        let [ab, bc, cd] = self.boundaries();
        if velocity_mm_s < ab {
            'A'
        } else if velocity_mm_s < bc {
            'B'
        } else if velocity_mm_s < cd {
            'C'
        } else {
            'D'
        }
    }
}

#[derive(Clone, Debug, PartialEq, Serialize, ToSchema)]
pub struct Severity {
    /// In the signal's own unit.
    pub acceleration_rms: f64,
    pub acceleration_peak: f64,
    pub crest_factor: f64,
    /// Of the samples (3 for Gaussian noise; impacts raise it).
    pub kurtosis: f64,
    /// Overall velocity RMS, 10-1000 Hz, when the unit is known.
    pub velocity_rms_mm_s: Option<f64>,
    /// `A` (new machines) to `D` (damage likely), with a machine group.
    pub zone: Option<char>,
    pub standard: Option<String>,
}

pub fn severity(signal: &[f32], rate: f64, unit: SensorUnit, group: Option<IsoGroup>) -> Severity {
    let n = signal.len().max(1) as f64;
    let mean = signal.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let centred: Vec<f64> = signal.iter().map(|&v| f64::from(v) - mean).collect();
    let m2 = centred.iter().map(|v| v * v).sum::<f64>() / n;
    let m4 = centred.iter().map(|v| v.powi(4)).sum::<f64>() / n;
    let rms = m2.sqrt();
    let peak = centred.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let to_si = match unit {
        SensorUnit::G => Some(9.80665),
        SensorUnit::MetersPerSecondSquared => Some(1.0),
        SensorUnit::Unknown => None,
    };
    let velocity_rms_mm_s = to_si.map(|k| velocity_rms(&centred, rate, 10.0, 1000.0) * k * 1000.0);
    let zone = velocity_rms_mm_s.zip(group).map(|(v, g)| g.zone(v));
    Severity {
        acceleration_rms: rms,
        acceleration_peak: peak,
        crest_factor: if rms > 0.0 { peak / rms } else { 0.0 },
        kurtosis: if m2 > 0.0 { m4 / (m2 * m2) } else { 0.0 },
        velocity_rms_mm_s,
        zone,
        standard: zone.map(|_| "ISO 10816-3:2009 Annex A zone boundaries (as kept by ISO 20816-3)".to_string()),
    }
}

/// RMS of the velocity whose acceleration is `signal` (same unit per second), over `low`
/// to `high` Hz: each bin divided by `2 pi f`, then Parseval.
fn velocity_rms(signal: &[f64], rate: f64, low: f64, high: f64) -> f64 {
    let n = signal.len();
    if n < 2 {
        return 0.0;
    }
    let mut buffer: Vec<Complex<f64>> = signal.iter().map(|&x| Complex::new(x, 0.0)).collect();
    FftPlanner::new().plan_fft_forward(n).process(&mut buffer);
    let bin_hz = rate / n as f64;
    let power: f64 = buffer
        .iter()
        .enumerate()
        .take(n / 2 + 1)
        .skip(1)
        .filter_map(|(k, c)| {
            let f = k as f64 * bin_hz;
            (f >= low && f <= high).then(|| {
                let v = c.norm() / (2.0 * std::f64::consts::PI * f);
                // One-sided: every bin but Nyquist stands for its negative twin too.
                let twice = if 2 * k == n { 1.0 } else { 2.0 };
                twice * v * v
            })
        })
        .sum();
    (power / (n as f64 * n as f64)).sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sine_in_g_has_the_velocity_its_frequency_says_and_a_zone() {
        // 0.2 g at 100 Hz: velocity amplitude 0.2 * 9.80665 / (2 pi 100) m/s, RMS / sqrt 2.
        let rate = 12_000.0;
        let x: Vec<f32> =
            (0..120_000).map(|i| (0.2 * (2.0 * std::f64::consts::PI * 100.0 * i as f64 / rate).sin()) as f32).collect();
        let s = severity(&x, rate, SensorUnit::G, Some(IsoGroup::Group2Rigid));
        let expected = 0.2 * 9.80665 / (2.0 * std::f64::consts::PI * 100.0) / 2f64.sqrt() * 1000.0;
        let v = s.velocity_rms_mm_s.unwrap();
        assert!((v - expected).abs() / expected < 0.01, "{v} vs {expected}");
        assert_eq!(s.zone, Some('B'), "{v} mm/s");
        assert!((s.crest_factor - 2f64.sqrt()).abs() < 0.01 && (s.kurtosis - 1.5).abs() < 0.01, "{s:?}");
        assert_eq!(severity(&x, rate, SensorUnit::Unknown, Some(IsoGroup::Group2Rigid)).zone, None);
    }
}
