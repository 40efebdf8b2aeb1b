//! The physics second opinion on a diagnosis: bearing geometry and defect frequencies, the
//! shaft speed, envelope analysis of the most impulsive band, and what fault family the
//! evidence supports, and how severe the vibration is. Signal processing only: nothing here
//! knows about HTTP or tensors (the reports derive their OpenAPI schema, as the API returns
//! them as they are).

mod bearing;
mod envelope;
mod evidence;
mod plot;
mod severity;

pub use bearing::{Bearing, DefectFrequencies, FaultFamily};
pub use envelope::{amplitude_spectrum, envelope_spectrum, most_impulsive_band, Band, Spectrum, Transformed};
pub use evidence::{
    agreement, analyze, estimate_shaft_hz, Agreement, Evidence, FamilyEvidence, Peak, Settings, ShaftSpeed,
    SpeedSource, Verdict,
};
pub use plot::{envelope_svg, WindowVerdict};
pub use severity::{severity, IsoGroup, SensorUnit, Severity};

/// Signals with known answers for the tests.
#[cfg(test)]
pub(crate) mod synthetic {
    pub(crate) const RATE: f64 = 12_000.0;

    /// Impacts at `rate_hz` ringing a 3.5 kHz resonance, each scaled by `gain(t)`, in
    /// white noise of standard deviation `noise` (seeded).
    pub(crate) fn impacts(rate_hz: f64, gain: impl Fn(f64) -> f64, noise: f64, seconds: f64) -> Vec<f32> {
        let n = (RATE * seconds) as usize;
        let mut x = vec![0.0f64; n];
        let mut k = 0.0;
        while k / rate_hz * RATE < n as f64 {
            let t0 = k / rate_hz;
            let start = (t0 * RATE) as usize;
            for j in 0..240 {
                if let Some(v) = x.get_mut(start + j) {
                    let t = j as f64 / RATE;
                    *v += gain(t0) * (-t * 900.0).exp() * (2.0 * std::f64::consts::PI * 3500.0 * t).sin();
                }
            }
            k += 1.0;
        }
        let mut state = 7u64;
        let mut gauss = || {
            // Box-Muller on a small LCG: reproducible noise without a dependency.
            let mut u = || {
                state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
                ((state >> 11) as f64 + 0.5) / (1u64 << 53) as f64
            };
            let (a, b) = (u(), u());
            (-2.0 * a.ln()).sqrt() * (2.0 * std::f64::consts::PI * b).cos()
        };
        x.iter().map(|&v| (v + noise * gauss()) as f32).collect()
    }
}
