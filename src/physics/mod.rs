//! The physics second opinion on a diagnosis: bearing geometry and defect frequencies, the
//! shaft speed, envelope analysis of the most impulsive band, and what fault family the
//! evidence supports, and how severe the vibration is. Signal processing only: nothing here
//! knows about HTTP or tensors (the reports derive their OpenAPI schema, as the API returns
//! them as they are).

mod bearing;
mod envelope;
mod evidence;
mod severity;

pub use bearing::{Bearing, DefectFrequencies, FaultFamily};
pub use envelope::{amplitude_spectrum, envelope_spectrum, most_impulsive_band, Band, Spectrum};
pub use evidence::{
    agreement, analyze, estimate_shaft_hz, Agreement, Evidence, FamilyEvidence, Peak, Settings, ShaftSpeed,
    SpeedSource, Verdict,
};
pub use severity::{severity, IsoGroup, SensorUnit, Severity};
