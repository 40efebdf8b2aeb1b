//! Open-set evaluation: train without some classes, then measure how many windows of those
//! classes each out-of-distribution score flags (AUROC, detection at the calibrated false-
//! alarm rate), and how many known test windows it flags by mistake.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::{Dataset, Normalization, Samples};
use crate::nn::Model;
use crate::ood::{auroc, exceeding_share, CalibrationSet, OodMethod, Scorer};
use crate::physics::FaultFamily;

use super::calibrate::{calibrate_from, fit_outputs, scores};
use super::evaluate::forward_all;
use super::TrainError;

/// A data set with some classes taken out of training: `known` keeps the others (labels
/// renumbered), `unknown` holds every window of the left-out classes from all parts.
#[derive(Clone, Debug)]
pub struct OpenSetSplit {
    pub known: Dataset,
    pub unknown: Samples,
    pub left_out: Vec<String>,
}

impl OpenSetSplit {
    /// An open-set evaluation needs known validation windows (for the thresholds), known
    /// test windows and left-out ones: said before any training.
    pub fn check(&self) -> Result<(), TrainError> {
        let parts = [
            ("known validation", self.known.validation.len()),
            ("known test", self.known.test.len()),
            ("left-out", self.unknown.len()),
        ];
        match parts.iter().find(|(_, n)| *n == 0) {
            Some((what, _)) => Err(TrainError::Data(format!(
                "an open-set evaluation needs {what} windows and the data has none (check the fractions and filters)"
            ))),
            None => Ok(()),
        }
    }
}

/// The classes `names` mean: class names as they are, or fault families (`ball`,
/// `inner_race`, `outer_race`, `normal`, `cage`) standing for every class of that family.
pub fn classes_named(names: &[String], classes: &[String]) -> Result<Vec<String>, String> {
    let mut chosen = Vec::new();
    for name in names {
        let family = FaultFamily::from_class(name);
        let matching: Vec<&String> = if classes.contains(name) {
            classes.iter().filter(|c| *c == name).collect()
        } else if family != FaultFamily::Other {
            classes.iter().filter(|c| FaultFamily::from_class(c) == family).collect()
        } else {
            Vec::new()
        };
        if matching.is_empty() {
            return Err(format!(
                "{name:?} is neither a class of the data ({}) nor a fault family of one",
                classes.join(", ")
            ));
        }
        chosen.extend(matching.into_iter().filter(|c| !chosen.contains(*c)).cloned().collect::<Vec<_>>());
    }
    Ok(chosen)
}

/// Splits `dataset` into the known classes and the windows of `left_out` (class names).
pub fn leave_out(dataset: &Dataset, left_out: &[String]) -> Result<OpenSetSplit, TrainError> {
    let known_classes: Vec<String> = dataset.classes.iter().filter(|c| !left_out.contains(c)).cloned().collect();
    if known_classes.len() < 2 {
        return Err(TrainError::Config(format!(
            "leaving out {} leaves {} known classes; at least two are needed",
            left_out.join(", "),
            known_classes.len()
        )));
    }
    // Old label -> new label, or None for a left-out class.
    let map: Vec<Option<i64>> =
        dataset.classes.iter().map(|c| known_classes.iter().position(|k| k == c).map(|i| i as i64)).collect();
    let mut unknown = Samples { sample_shape: dataset.train.sample_shape.clone(), ..Default::default() };
    let mut keep = |part: &Samples| {
        let mut known = Samples { sample_shape: part.sample_shape.clone(), ..Default::default() };
        for (i, &label) in part.labels.iter().enumerate() {
            let target = match map.get(label as usize).copied().flatten() {
                Some(new) => {
                    known.labels.push(new);
                    &mut known
                }
                None => {
                    unknown.labels.push(label);
                    &mut unknown
                }
            };
            target.values.extend_from_slice(part.sample(i));
        }
        known
    };
    let known = Dataset {
        classes: known_classes,
        train: keep(&dataset.train),
        validation: keep(&dataset.validation),
        test: keep(&dataset.test),
        ..dataset.clone()
    };
    let split = OpenSetSplit { known, unknown, left_out: left_out.to_vec() };
    split.check()?;
    Ok(split)
}

/// One score's figures in an open-set evaluation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenSetRow {
    pub method: OodMethod,
    /// Telling left-out windows from known test windows, threshold-free (1 is perfect, 0.5
    /// is chance).
    pub auroc: Option<f64>,
    /// Share of left-out windows flagged at the threshold calibrated on validation windows.
    pub detection: f64,
    /// Share of known test windows flagged at that threshold (the false alarms).
    pub false_alarms: f64,
    pub threshold: f32,
}

/// How well a model trained without some classes knows that it does not know them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct OpenSetReport {
    pub left_out: Vec<String>,
    /// The false-alarm rate the thresholds were calibrated for.
    pub false_alarm_rate: f64,
    pub known_test_windows: usize,
    pub unknown_windows: usize,
    /// Accuracy on the known classes' test windows.
    pub known_accuracy: f64,
    pub methods: Vec<OpenSetRow>,
}

/// Scores the known test windows and the left-out windows with every method, each
/// calibrated on the validation part at `false_alarm_rate`.
pub fn evaluate_open_set(
    model: &Model,
    split: &OpenSetSplit,
    normalization: Normalization,
    false_alarm_rate: f64,
) -> Result<OpenSetReport, TrainError> {
    let known = &split.known;
    split.check()?;
    let fit = fit_outputs(model, &known.train, normalization)?;
    let validation = forward_all(model, &known.validation, normalization)?;
    let test = forward_all(model, &known.test, normalization)?;
    // The left-out classes have no output of this model: label their windows 0 to pass the
    // range check; only their scores are read.
    let unlabelled = Samples { labels: vec![0; split.unknown.len()], ..split.unknown.clone() };
    let unknown = forward_all(model, &unlabelled, normalization)?;
    let predictions =
        Vec::<i64>::try_from(test.logits.argmax(-1, false)).map_err(|e| TrainError::Torch(e.to_string()))?;
    let correct = predictions.iter().zip(&known.test.labels).filter(|(p, l)| p == l).count();
    let mut methods = Vec::new();
    for method in OodMethod::ALL {
        let set = CalibrationSet { part: "validation".into(), windows: known.validation.len(), dataset: None };
        let (calibration, _) = calibrate_from(method, false_alarm_rate, &fit, &validation, set)?;
        let scorer = Scorer::new(&calibration).map_err(|e| TrainError::Data(e.to_string()))?;
        let inside = scores(&scorer, &test)?;
        let outside = scores(&scorer, &unknown)?;
        methods.push(OpenSetRow {
            method,
            auroc: auroc(&inside, &outside),
            detection: exceeding_share(&outside, calibration.threshold),
            false_alarms: exceeding_share(&inside, calibration.threshold),
            threshold: calibration.threshold,
        });
    }
    Ok(OpenSetReport {
        left_out: split.left_out.clone(),
        false_alarm_rate,
        known_test_windows: known.test.len(),
        unknown_windows: split.unknown.len(),
        known_accuracy: correct as f64 / known.test.len().max(1) as f64,
        methods,
    })
}

impl OpenSetReport {
    /// A plain-text table of the methods.
    pub fn table(&self) -> String {
        let mut out = format!(
            "open set: left out {} ({} windows); known test windows {}, accuracy {:.2}%; thresholds at {:.1}% false alarms on validation\n",
            self.left_out.join(", "),
            self.unknown_windows,
            self.known_test_windows,
            100.0 * self.known_accuracy,
            100.0 * self.false_alarm_rate
        );
        out.push_str(&format!("{:<20}  {:>7}  {:>9}  {:>12}\n", "method", "AUROC", "detected", "false alarms"));
        for row in &self.methods {
            let auroc = row.auroc.map_or("n/a".to_string(), |a| format!("{a:.4}"));
            out.push_str(&format!(
                "{:<20}  {:>7}  {:>8.2}%  {:>11.2}%\n",
                row.method.name(),
                auroc,
                100.0 * row.detection,
                100.0 * row.false_alarms
            ));
        }
        out
    }
}
