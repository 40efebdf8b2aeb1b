//! The physics second opinion on a diagnosis: bearing geometry and defect frequencies, the
//! shaft speed, envelope analysis of the most impulsive band, and what fault family the
//! evidence supports. Signal processing only: nothing here knows about HTTP or tensors.

mod bearing;
mod envelope;
mod evidence;

pub use bearing::{Bearing, DefectFrequencies, FaultFamily};
pub use envelope::{amplitude_spectrum, envelope_spectrum, most_impulsive_band, Band, Spectrum};
pub use evidence::{
    agreement, analyze, estimate_shaft_hz, Agreement, Evidence, FamilyEvidence, Peak, Settings, ShaftSpeed,
    SpeedSource, Verdict,
};
