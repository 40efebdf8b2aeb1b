//! What `POST /diagnose` answers: per window a label, probabilities by class name and
//! (as asked) what every shrinkage unit did; for recordings a verdict over all windows.

use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};
use utoipa::ToSchema;

use crate::engine::{BlockValues, Prediction, WindowPrediction};
use crate::ood::{OodCalibration, OodMethod};
use crate::telemetry;

/// How much of each shrinkage unit's work to report.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize, Serialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiagnosticsLevel {
    /// Labels and probabilities only.
    None,
    /// Per unit: name, stage, thresholds and the share of values zeroed.
    #[default]
    Summary,
    /// Also the scales (`tau = scale * mean|x|`) and the mean |x| per channel.
    Full,
}

/// Probabilities by class name, in the model's class order.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassProbabilities(pub Vec<(String, f32)>);

impl Serialize for ClassProbabilities {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (class, p) in &self.0 {
            map.serialize_entry(class, p)?;
        }
        map.end()
    }
}

impl ClassProbabilities {
    fn new(classes: &[String], values: &[f32]) -> Self {
        ClassProbabilities(classes.iter().cloned().zip(values.iter().copied()).collect())
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelRef {
    pub name: String,
    pub version: u32,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct BlockReport {
    /// The unit's variable path, e.g. `units.4`.
    pub name: String,
    /// Index of the stage the unit belongs to.
    pub stage: usize,
    /// One threshold per channel (DRSN-CW) or one for all channels (DRSN-CS).
    pub thresholds: Vec<f32>,
    /// `tau = scale * mean|x|` (full diagnostics only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scales: Option<Vec<f32>>,
    /// Mean |x| per channel before thresholding (full diagnostics only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mean_abs: Option<Vec<f32>>,
    /// Share of the unit's values set to zero, in [0, 1].
    pub zeroed_fraction: f32,
}

impl BlockReport {
    fn new(b: &BlockValues, level: DiagnosticsLevel) -> Self {
        let full = level == DiagnosticsLevel::Full;
        BlockReport {
            name: b.name.to_string(),
            stage: b.stage,
            thresholds: b.thresholds.clone(),
            scales: full.then(|| b.scales.clone()),
            mean_abs: full.then(|| b.mean_abs.clone()),
            zeroed_fraction: b.zeroed_fraction,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct WindowReport {
    /// Position in the request (0-based).
    pub index: usize,
    /// First sample of the window at the model's rate (recordings only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<usize>,
    /// The most probable class.
    pub label: String,
    /// Probability by class name; they sum to 1.
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub probabilities: ClassProbabilities,
    /// One entry per shrinkage unit, unless diagnostics are `none`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocks: Option<Vec<BlockReport>>,
    /// How far the window lies from what the model was trained on (higher: stranger; the
    /// card's `ood` says which score); absent when the model is not calibrated.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ood_score: Option<f32>,
    /// Whether the score is above the calibrated threshold: the model does not know this
    /// window, and its label should not be trusted.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_distribution: Option<bool>,
}

/// The out-of-distribution flags over a request's windows.
#[derive(Debug, Serialize, ToSchema)]
pub struct OodSummary {
    pub method: OodMethod,
    pub threshold: f32,
    /// The false-alarm rate the threshold was calibrated for.
    pub false_alarm_rate: f64,
    pub flagged: usize,
    pub windows: usize,
    pub flagged_share: f64,
}

impl OodSummary {
    /// `None` when the model is not calibrated.
    pub fn new(calibration: Option<&OodCalibration>, windows: &[WindowPrediction]) -> Option<Self> {
        let calibration = calibration?;
        let flagged = windows.iter().filter(|w| w.ood_score.is_some_and(|s| calibration.flags(s))).count();
        Some(OodSummary {
            method: calibration.method,
            threshold: calibration.threshold,
            false_alarm_rate: calibration.false_alarm_rate,
            flagged,
            windows: windows.len(),
            flagged_share: flagged as f64 / windows.len().max(1) as f64,
        })
    }
}

/// The verdict over every window of a recording.
#[derive(Debug, Serialize, ToSchema)]
pub struct RecordingReport {
    /// The class with the highest mean probability, or `unknown` when more than the
    /// configured share of windows (`--unknown-share`) is out of distribution.
    pub label: String,
    /// With `label: unknown`: the class the model would have named.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub closest: Option<String>,
    /// Mean probability by class over all windows.
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub probabilities: ClassProbabilities,
    /// Share of windows labelled with each class.
    #[schema(value_type = std::collections::HashMap<String, f32>)]
    pub shares: ClassProbabilities,
    pub windows: usize,
    /// Samples between window starts, at the model's rate.
    pub stride: usize,
    /// The model's rate, which the windows are at.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sample_rate: Option<u32>,
    /// The recording's own rate when it was resampled to the model's.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub resampled_from: Option<u32>,
    /// Samples per channel after resampling; the tail that does not fill a window is not diagnosed.
    pub samples: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct Timings {
    /// Reading and checking the body, cutting and normalising windows.
    pub decode_ms: f64,
    /// Waiting for a batch (0 for a small request run on its HTTP thread).
    pub queue_ms: f64,
    /// The forward pass(es) of the batch.
    pub inference_ms: f64,
    pub total_ms: f64,
    /// Windows in the batch that carried this request (with other requests'; its own alone
    /// when it ran on its HTTP thread).
    pub batch_windows: usize,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DiagnoseResponse {
    pub model: ModelRef,
    /// In request order.
    pub windows: Vec<WindowReport>,
    /// For recordings (WAV, raw samples): the verdict over all windows.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub recording: Option<RecordingReport>,
    /// For recordings, when the card names a bearing (or the request one): the physics
    /// evidence, the severity and whether they agree with the model's verdict.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub physics: Option<super::physics::PhysicsReport>,
    /// When the model is calibrated: how many windows it does not know.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub out_of_distribution: Option<OodSummary>,
    /// For recordings, with `trace=true`: the signal's outline, to draw it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub trace: Option<super::trace::Trace>,
    pub timings: Timings,
}

/// Index of the largest value (the first of equals).
pub fn argmax(values: &[f32]) -> usize {
    values.iter().enumerate().fold((0, f32::NEG_INFINITY), |best, (i, &v)| if v > best.1 { (i, v) } else { best }).0
}

/// The class with the highest probability.
fn label_of(classes: &[String], probabilities: &[f32]) -> String {
    classes.get(argmax(probabilities)).cloned().unwrap_or_default()
}

/// Per-window reports in request order.
pub fn window_reports(
    classes: &[String],
    windows: &[WindowPrediction],
    starts: Option<&[usize]>,
    level: DiagnosticsLevel,
    ood: Option<&OodCalibration>,
) -> Vec<WindowReport> {
    windows
        .iter()
        .enumerate()
        .map(|(index, w)| WindowReport {
            index,
            start: starts.and_then(|s| s.get(index).copied()),
            label: label_of(classes, &w.probabilities),
            probabilities: ClassProbabilities::new(classes, &w.probabilities),
            blocks: (level != DiagnosticsLevel::None)
                .then(|| w.blocks.iter().map(|b| BlockReport::new(b, level)).collect()),
            ood_score: w.ood_score.filter(|_| ood.is_some()),
            out_of_distribution: ood.zip(w.ood_score).map(|(c, s)| c.flags(s)),
        })
        .collect()
}

/// Mean probabilities and label shares over a recording's windows.
pub fn verdict(classes: &[String], prediction: &Prediction) -> (String, ClassProbabilities, ClassProbabilities) {
    let n = prediction.windows.len().max(1) as f32;
    let mut mean = vec![0f32; classes.len()];
    let mut shares = vec![0f32; classes.len()];
    for w in &prediction.windows {
        for (m, p) in mean.iter_mut().zip(&w.probabilities) {
            *m += p / n;
        }
        if let Some(share) = shares.get_mut(argmax(&w.probabilities)) {
            *share += 1.0 / n;
        }
    }
    let label = label_of(classes, &mean);
    (label, ClassProbabilities::new(classes, &mean), ClassProbabilities::new(classes, &shares))
}

/// A JSON response (serialised straight into the body, as axum's `Json` does), its time
/// recorded as the encoding stage of a diagnosis (`drsn_encode_duration_seconds`).
pub struct Encoded<T>(pub T);

impl<T: Serialize> IntoResponse for Encoded<T> {
    fn into_response(self) -> Response {
        let started = std::time::Instant::now();
        let response = Json(self.0).into_response();
        metrics::histogram!(telemetry::ENCODE_DURATION).record(started.elapsed().as_secs_f64());
        response
    }
}
