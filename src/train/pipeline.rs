//! One training run from data to held-out metrics, as the CLI and background jobs both
//! need it: optional fixed noise on the validation and test parts (noisy-test
//! experiments), training, evaluation on the test part, and the SNR sweep.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::noise::noisy_copy;
use crate::data::{Dataset, NoiseKind, Normalization, Samples};
use crate::nn::{Model, ModelSpec};
use crate::ood::OodCalibration;

use super::calibrate::{calibrate, OodSettings};
use super::evaluate::{evaluate, paper_snrs, snr_sweep, Evaluation, SnrSweep};
use super::progress::{CancelToken, Progress};
use super::trainer::{init_model, train, TrainReport};
use super::{TrainConfig, TrainError};

/// A fixed amount of one kind of noise, e.g. `gaussian:-4` or `uniform-pixel`.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoiseSetting {
    pub kind: NoiseKind,
    /// Ignored by `uniform-pixel`.
    pub snr_db: f64,
}

impl std::str::FromStr for NoiseSetting {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (kind, snr) = match s.split_once(':') {
            Some((kind, snr)) => (kind, Some(snr)),
            None => (s, None),
        };
        let kind: NoiseKind = kind.trim().parse()?;
        let snr_db = match (snr, kind.uses_snr()) {
            (Some(snr), _) => snr
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("{s:?}: {snr:?} is not an SNR in dB"))?,
            (None, false) => 0.0,
            (None, true) => return Err(format!("{s:?}: give the SNR in dB, e.g. {kind}:-4")),
        };
        Ok(NoiseSetting { kind, snr_db })
    }
}

impl std::fmt::Display for NoiseSetting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.kind.uses_snr() {
            write!(f, "{}:{}", self.kind, self.snr_db)
        } else {
            write!(f, "{}", self.kind)
        }
    }
}

/// What to train and how to judge it.
#[derive(Clone, Debug)]
pub struct RunRequest {
    pub spec: ModelSpec,
    pub config: TrainConfig,
    pub normalization: Normalization,
    /// Added once (seeded) to the validation and test parts: a noisy-test experiment.
    pub test_noise: Option<NoiseSetting>,
    /// Kinds for the SNR sweep on the clean test part (empty: no sweep).
    pub sweep_kinds: Vec<NoiseKind>,
    /// How the new model says "I don't know" (calibrated on the validation part).
    pub ood: OodSettings,
    pub device: tch::Device,
}

pub struct RunOutcome {
    /// Holding the best weights.
    pub model: Model,
    pub report: TrainReport,
    /// On the test part as trained for (with the test noise, if any); `None` without test data.
    pub test: Option<Evaluation>,
    /// On the clean test part, when the test part was noisy.
    pub clean_test: Option<Evaluation>,
    pub sweep: Option<SnrSweep>,
    /// The out-of-distribution score's calibration; `None` without validation data.
    pub ood: Option<OodCalibration>,
    /// Set by callers that left classes out of training ([`super::leave_out`]).
    pub open_set: Option<super::OpenSetReport>,
    /// For a model adapted rather than trained ([`super::adapt_run`]).
    pub adaptation: Option<super::AdaptReport>,
    /// For the model a comparison recommended ([`super::compare`]): the whole comparison.
    pub comparison: Option<super::CompareReport>,
}

impl RunOutcome {
    /// Everything measured, for the model card's `metrics`.
    pub fn metrics(&self, request: &RunRequest) -> super::RunMetrics {
        super::RunMetrics {
            test: self.test.clone(),
            test_noise: request.test_noise,
            clean_test: self.clean_test.clone(),
            snr_sweep: self.sweep.clone(),
            best_epoch: Some(self.report.best_epoch),
            validation_accuracy: self.report.best_val_accuracy,
            history: self.report.history.clone(),
            train_samples_per_s: Some(self.report.samples_per_s),
            train_seconds: Some(self.report.elapsed_s),
            training: Some(request.config.clone()),
            open_set: self.open_set.clone(),
            adaptation: self.adaptation.clone(),
            comparison: self.comparison.clone(),
        }
    }
}

/// Mixed into the run's seed for each use of fixed noise, so that none repeats and
/// `drsn evaluate` can redraw the noise that training used.
pub const VALIDATION_NOISE_SEED: u64 = 0x5EED_0001;
pub const TEST_NOISE_SEED: u64 = 0x5EED_0002;
pub const SWEEP_NOISE_SEED: u64 = 0x5EED_0003;

/// Trains a freshly initialised model (seeded) and judges it; see [`run_from`].
pub fn run(
    dataset: &Dataset,
    request: &RunRequest,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
) -> Result<RunOutcome, TrainError> {
    request.config.validate()?;
    let model = init_model(&request.spec, request.device, request.config.seed)
        .map_err(|e| TrainError::Config(e.to_string()))?;
    run_from(model, dataset, request, on_progress, cancel)
}

/// Trains `model` from the weights it holds (fine-tuning, e.g. a background job starting
/// from the version in service), then judges it on the test part.
pub fn run_from(
    mut model: Model,
    dataset: &Dataset,
    request: &RunRequest,
    on_progress: &mut dyn FnMut(&Progress),
    cancel: &CancelToken,
) -> Result<RunOutcome, TrainError> {
    request.config.validate()?;
    request.ood.validate()?;
    if model.spec() != &request.spec {
        return Err(TrainError::Config("the starting model's network differs from the requested spec".into()));
    }
    let seed = request.config.seed;
    let mut data = dataset.clone();
    if let Some(noise) = request.test_noise {
        data.validation = noisy_copy(&data.validation, noise.kind, noise.snr_db, seed ^ VALIDATION_NOISE_SEED);
    }
    data.test = judged_test(dataset, request);
    let report = train(&mut model, &data, request.normalization, &request.config, on_progress, cancel)?;
    if cancel.is_cancelled() {
        return Err(TrainError::CancelledEvaluation);
    }
    let has_test = !data.test.is_empty();
    let test = has_test.then(|| evaluate(&model, &data.test, request.normalization, &data.classes)).transpose()?;
    let clean_test = (has_test && request.test_noise.is_some())
        .then(|| evaluate(&model, &dataset.test, request.normalization, &dataset.classes))
        .transpose()?;
    let sweep = (has_test && !request.sweep_kinds.is_empty())
        .then(|| {
            snr_sweep(
                &[&model],
                &dataset.test,
                request.normalization,
                &request.sweep_kinds,
                &paper_snrs(),
                seed ^ SWEEP_NOISE_SEED,
                cancel,
            )
        })
        .transpose()?;
    // Thresholded on the validation windows as the run judged them (with the test noise of
    // a noisy-test experiment: that is the world such a model is meant for).
    let ood = (!data.validation.is_empty())
        .then(|| {
            calibrate(&model, &dataset.train, &data.validation, request.normalization, request.ood, "validation", None)
        })
        .transpose()?;
    Ok(RunOutcome { model, report, test, clean_test, sweep, ood, open_set: None, adaptation: None, comparison: None })
}

/// The test part a run judges its model on: with the request's fixed test noise, if any,
/// so that another model can be judged on exactly the same samples.
pub fn judged_test(dataset: &Dataset, request: &RunRequest) -> Samples {
    match request.test_noise {
        Some(noise) => noisy_copy(&dataset.test, noise.kind, noise.snr_db, request.config.seed ^ TEST_NOISE_SEED),
        None => dataset.test.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn noise_settings_parse_with_and_without_an_snr() {
        let g: NoiseSetting = "gaussian:-4".parse().unwrap();
        assert_eq!(g, NoiseSetting { kind: NoiseKind::Gaussian, snr_db: -4.0 });
        assert_eq!(g.to_string(), "gaussian:-4");
        let u: NoiseSetting = "uniform-pixel".parse().unwrap();
        assert_eq!(u.kind, NoiseKind::UniformPixel);
        assert!("pink".parse::<NoiseSetting>().unwrap_err().contains("pink:-4"));
        assert!("pink:loud".parse::<NoiseSetting>().unwrap_err().contains("loud"));
        assert!("brown:3".parse::<NoiseSetting>().unwrap_err().contains("brown"));
    }
}
