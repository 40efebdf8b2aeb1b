//! The physics second opinion beside a recording's verdict: the evidence at the card's
//! bearing's defect frequencies, the severity, and whether they agree with the model.

use serde::Serialize;
use utoipa::ToSchema;

use crate::http::error::ApiError;
use crate::physics::{
    self, agreement, Agreement, Bearing, Evidence, FaultFamily, SensorUnit, Settings, Severity, Spectrum,
};
use crate::registry::ModelCard;

/// At most this many samples (the first ones) are looked at: 87 s at 12 kHz.
pub const MAX_SAMPLES: usize = 1 << 20;

/// What the request asks of the physics.
#[derive(Clone, Debug, Default)]
pub struct Ask {
    /// `Some(false)`: none; `Some(true)`: required (422 when the card names no bearing and
    /// the request none either); `None`: when the card names a bearing.
    pub evidence: Option<bool>,
    pub rpm: Option<f64>,
    pub bearing: Option<String>,
    /// Whether to send the envelope spectrum along.
    pub spectrum: bool,
}

#[derive(Clone, Debug, Serialize, ToSchema)]
pub struct PhysicsReport {
    pub evidence: Evidence,
    pub severity: Severity,
    /// The family of the recording's label.
    pub model_family: FaultFamily,
    pub agreement: Agreement,
    /// Why, in a line.
    pub agreement_reason: String,
    /// The envelope spectrum up to a little past the highest harmonic looked at (with
    /// `spectrum=true`): what the defect frequencies in `evidence` are read from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub envelope_spectrum: Option<Spectrum>,
}

/// The second opinion on `signal` (one channel at the card's rate) whose verdict was
/// `label`, if asked for and possible.
pub fn second_opinion(
    card: &ModelCard,
    signal: &[f32],
    label: &str,
    ask: &Ask,
) -> Result<Option<PhysicsReport>, ApiError> {
    if ask.evidence == Some(false) {
        return Ok(None);
    }
    let machine = card.machine.clone().unwrap_or_default();
    let Some(name) = ask.bearing.clone().or(machine.bearing.clone()) else {
        return match ask.evidence {
            Some(true) => Err(ApiError::Validation(format!(
                "evidence: model {}'s card names no bearing; name one with ?bearing= (6205-2RS JEM SKF, 6203-2RS JEM SKF)",
                card.name
            ))),
            _ => Ok(None),
        };
    };
    let bearing = Bearing::named(&name).ok_or_else(|| {
        ApiError::Validation(format!(
            "bearing {name:?} is not in the built-in table (6205-2RS JEM SKF, 6203-2RS JEM SKF)"
        ))
    })?;
    let Some(rate) = card.sample_rate else {
        return Err(ApiError::Validation(format!("evidence: model {} records no sampling rate", card.name)));
    };
    let mut settings = Settings::new(bearing);
    if let Some(rpm) = ask.rpm {
        if !(rpm.is_finite() && (1.0..=100_000.0).contains(&rpm)) {
            return Err(ApiError::Validation(format!("rpm {rpm} is not a shaft speed (1 to 100000)")));
        }
        settings.shaft_hz = Some(rpm / 60.0);
    } else if let Some([low, high]) = machine.shaft_rpm_range {
        settings.shaft_range_hz = (low / 60.0, high / 60.0);
    } else if let Some(rpm) = machine.shaft_rpm {
        settings.shaft_hz = Some(rpm / 60.0);
    }
    let signal = signal.get(..signal.len().min(MAX_SAMPLES)).unwrap_or_default();
    let evidence = physics::analyze(signal, f64::from(rate), &settings);
    let severity = physics::severity(
        signal,
        f64::from(rate),
        machine.sensor_unit.unwrap_or(SensorUnit::Unknown),
        machine.iso_group,
    );
    let model_family = machine.family(label);
    let (agreement, agreement_reason) = agreement(model_family, evidence.verdict);
    let envelope_spectrum = ask.spectrum.then(|| evidence.envelope.clone());
    Ok(Some(PhysicsReport { evidence, severity, model_family, agreement, agreement_reason, envelope_spectrum }))
}
