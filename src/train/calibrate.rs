//! Teaching a trained model to say "I don't know": fit its out-of-distribution score on the
//! training windows, set the threshold on held-out in-distribution windows at a chosen
//! false-alarm rate.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::{Normalization, Samples};
use crate::nn::{Forward, Model};
use crate::ood::{
    exceeding_share, fit_gaussian, threshold_at, CalibrationSet, OodCalibration, OodMethod, Scorer,
    DEFAULT_FALSE_ALARM_RATE,
};

use super::evaluate::forward_all;
use super::TrainError;

/// Training windows the Gaussian fit reads at most (evenly spread over the part): the fit
/// is a mean and a covariance, which a few thousand windows pin down.
const MAX_FIT_WINDOWS: usize = 20_000;

/// Which score and at what false-alarm rate.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(default)]
pub struct OodSettings {
    pub method: OodMethod,
    /// Share of held-out in-distribution windows the threshold may flag, in (0, 0.5].
    pub false_alarm_rate: f64,
}

impl Default for OodSettings {
    fn default() -> Self {
        OodSettings { method: OodMethod::default(), false_alarm_rate: DEFAULT_FALSE_ALARM_RATE }
    }
}

impl OodSettings {
    pub fn validate(&self) -> Result<(), TrainError> {
        if !(self.false_alarm_rate > 0.0 && self.false_alarm_rate <= 0.5) {
            return Err(TrainError::Config(format!(
                "false_alarm_rate must lie in (0, 0.5], got {}",
                self.false_alarm_rate
            )));
        }
        Ok(())
    }
}

/// The network's outputs for the training part (at most [`MAX_FIT_WINDOWS`], evenly
/// spread) and their labels: what every Gaussian method fits.
pub fn fit_outputs(
    model: &Model,
    train: &Samples,
    normalization: Normalization,
) -> Result<(Forward, Vec<i64>), TrainError> {
    let subset = if train.len() > MAX_FIT_WINDOWS {
        let step = train.len() as f64 / MAX_FIT_WINDOWS as f64;
        let picked: Vec<usize> = (0..MAX_FIT_WINDOWS).map(|i| (i as f64 * step) as usize).collect();
        train.subset(&picked)
    } else {
        train.clone()
    };
    let forward = forward_all(model, &subset, normalization)?;
    Ok((forward, subset.labels))
}

/// Scores of every window of `forward` under `scorer`.
pub fn scores(scorer: &Scorer, forward: &Forward) -> Result<Vec<f32>, TrainError> {
    scorer.score_forward(forward).map_err(|e| TrainError::Data(e.to_string()))
}

/// The calibrated score of every sample (higher: stranger).
pub fn score_samples(
    model: &Model,
    samples: &Samples,
    normalization: Normalization,
    calibration: &OodCalibration,
) -> Result<Vec<f32>, TrainError> {
    let scorer = Scorer::new(calibration).map_err(|e| TrainError::Data(e.to_string()))?;
    scores(&scorer, &forward_all(model, samples, normalization)?)
}

/// A calibration of `method` from outputs already computed: fitted on `fit` (training
/// windows and labels), thresholded on `held_out` (in-distribution windows not trained on).
pub fn calibrate_from(
    method: OodMethod,
    false_alarm_rate: f64,
    fit: &(Forward, Vec<i64>),
    held_out: &Forward,
    calibrated_on: CalibrationSet,
) -> Result<(OodCalibration, Vec<f32>), TrainError> {
    let gaussian = method
        .needs_fit()
        .then(|| fit_gaussian(method, &fit.0, &fit.1))
        .transpose()
        .map_err(|e| TrainError::Data(format!("fitting the {method} score: {e}")))?;
    let scorer = Scorer::for_method(method, gaussian.as_ref()).map_err(|e| TrainError::Data(e.to_string()))?;
    if held_out.logits.numel() == 0 {
        return Err(TrainError::Data("no held-out windows to set the out-of-distribution threshold on".into()));
    }
    let held_scores = scores(&scorer, held_out)?;
    // A card holds finite numbers only (JSON has no infinity).
    let threshold = threshold_at(&held_scores, false_alarm_rate).filter(|t| t.is_finite()).ok_or_else(|| {
        TrainError::Data(format!("the {method} score is not finite on the held-out windows (has training diverged?)"))
    })?;
    let calibration = OodCalibration {
        method,
        threshold,
        false_alarm_rate,
        measured_false_alarm_rate: exceeding_share(&held_scores, threshold),
        calibrated_on,
        gaussian,
    };
    Ok((calibration, held_scores))
}

/// Calibrates `model`'s score: fitted on `train`, thresholded on `held_out` (the
/// validation part). `part` and `dataset` say what the held-out windows were.
pub fn calibrate(
    model: &Model,
    train: &Samples,
    held_out: &Samples,
    normalization: Normalization,
    settings: OodSettings,
    part: &str,
    dataset: Option<String>,
) -> Result<OodCalibration, TrainError> {
    settings.validate()?;
    if held_out.is_empty() {
        return Err(TrainError::Data(format!("the {part} part is empty: no windows to calibrate on")));
    }
    // The scores without a fit only need some (any) training outputs to be passed along.
    let fit_part = if settings.method.needs_fit() { train.clone() } else { train.subset(&[]) };
    let fit = fit_outputs(model, &fit_part, normalization)?;
    let held = forward_all(model, held_out, normalization)?;
    let set = CalibrationSet { part: part.to_string(), windows: held_out.len(), dataset };
    Ok(calibrate_from(settings.method, settings.false_alarm_rate, &fit, &held, set)?.0)
}
