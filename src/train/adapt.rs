//! Adapting a model to a new site without labels: AdaBN (Li et al., 2016) re-estimates every
//! batch-norm layer's running statistics on the target machine's windows, so that what a
//! different sensor, mounting or acquisition filter shifts is normalised away; the weights
//! stay as trained. The out-of-distribution score is then refitted on the target windows
//! with the adapted model's own labels (there are no others) and thresholded on a held-out
//! share of them.

use rand::seq::SliceRandom;
use rand::SeedableRng;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::{Dataset, Normalization, Samples};
use crate::nn::Model;
use crate::ood::OodCalibration;

use super::batch::make_batch;
use super::calibrate::{calibrate, OodSettings};
use super::evaluate::{evaluate, predict};
use super::pipeline::{RunOutcome, RunRequest};
use super::progress::CancelToken;
use super::trainer::TrainReport;
use super::TrainError;

/// Windows per train-mode pass.
const BATCH: usize = 128;
/// At least this many passes: with batch norm's momentum of 0.1 the running statistics
/// then hold less than 0.2% of the source's (0.9^60). They are a moving average over the
/// last few dozen batches (thousands of windows), drawn at random from the whole target.
const MIN_PASSES: usize = 60;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct AdaptReport {
    pub method: String,
    /// Unlabelled target windows the statistics were taken from.
    pub windows: usize,
    /// Train-mode forward passes run.
    pub passes: usize,
}

/// Re-estimates `model`'s batch-norm statistics on `target` (labels ignored).
pub fn adapt_batch_norm(
    model: &mut Model,
    target: &Samples,
    normalization: Normalization,
    seed: u64,
    cancel: &CancelToken,
) -> Result<AdaptReport, TrainError> {
    super::check_samples(model.spec(), &Samples { labels: vec![0; target.len()], ..target.clone() }, "target")?;
    if target.len() < 2 {
        return Err(TrainError::Data("at least two target windows are needed to adapt".into()));
    }
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..target.len()).collect();
    let batch = BATCH.min(target.len());
    let passes = MIN_PASSES.max(target.len().div_ceil(batch));
    let mut chunks = Vec::new();
    while chunks.len() < passes {
        order.shuffle(&mut rng);
        chunks.extend(order.chunks(batch).filter(|c| c.len() == batch).map(<[usize]>::to_vec));
    }
    tch::no_grad(|| {
        for chunk in chunks.iter().take(passes) {
            if cancel.is_cancelled() {
                return Err(TrainError::CancelledEvaluation);
            }
            let (xs, _) = make_batch(target, chunk, normalization, None, model.device());
            let _ = model.forward_t(&xs, true);
        }
        Ok(())
    })?;
    Ok(AdaptReport { method: "adabn".into(), windows: target.len(), passes })
}

/// Adapts `model` to `dataset` as a job does instead of training it: AdaBN on the training
/// part, the score refitted on it and thresholded on the validation part, and the test
/// part (labelled) judging the result.
pub fn adapt_run(
    mut model: Model,
    dataset: &Dataset,
    request: &RunRequest,
    cancel: &CancelToken,
) -> Result<RunOutcome, TrainError> {
    request.ood.validate()?;
    let started = std::time::Instant::now();
    let norm = request.normalization;
    let adaptation = adapt_batch_norm(&mut model, &dataset.train, norm, request.config.seed, cancel)?;
    let ood = (!dataset.validation.is_empty())
        .then(|| recalibrate_unlabelled(&model, &dataset.train, &dataset.validation, norm, request.ood, None))
        .transpose()?;
    let test =
        (!dataset.test.is_empty()).then(|| evaluate(&model, &dataset.test, norm, &dataset.classes)).transpose()?;
    let elapsed_s = started.elapsed().as_secs_f64();
    let report = TrainReport {
        history: Vec::new(),
        best_epoch: 0,
        best_val_accuracy: None,
        steps: adaptation.passes,
        train_samples: adaptation.windows,
        elapsed_s,
        samples_per_s: (adaptation.passes * BATCH.min(adaptation.windows)) as f64 / elapsed_s.max(1e-9),
    };
    Ok(RunOutcome {
        model,
        report,
        test,
        clean_test: None,
        sweep: None,
        ood,
        open_set: None,
        adaptation: Some(adaptation),
        comparison: None,
    })
}

/// Refits and thresholds the out-of-distribution score of an adapted model on target
/// windows: the Gaussian on `fit` with the model's predicted labels, the threshold on
/// `held_out`.
pub fn recalibrate_unlabelled(
    model: &Model,
    fit: &Samples,
    held_out: &Samples,
    normalization: Normalization,
    settings: OodSettings,
    dataset: Option<String>,
) -> Result<OodCalibration, TrainError> {
    let unlabelled = |s: &Samples| Samples { labels: vec![0; s.len()], ..s.clone() };
    let fit = unlabelled(fit);
    let predicted = Samples { labels: predict(model, &fit, normalization)?, ..fit };
    calibrate(model, &predicted, &unlabelled(held_out), normalization, settings, "target (held out)", dataset)
}
