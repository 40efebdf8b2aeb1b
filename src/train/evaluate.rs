//! Held-out metrics: accuracy, per-class precision and recall, the confusion matrix, and
//! the paper's SNR sweep (noise added to the raw test windows, then normalised). Every
//! result serialises (it goes into the model card) and renders as a plain-text table.

use std::fmt::Write;

use serde::{Deserialize, Serialize};
use tch::{Device, Kind, Tensor};
use utoipa::ToSchema;

use crate::data::noise::noisy_copy;
use crate::data::{NoiseKind, Normalization, Samples};
use crate::nn::{Forward, Model};

use super::batch::make_batch;
use super::progress::CancelToken;
use super::trainer::check_samples;
use super::TrainError;

/// Samples per forward pass when predicting; inference keeps no activations for backward.
const EVAL_BATCH: usize = 256;

/// Every sample's forward pass in eval mode (no diagnostics), in batches, gathered on the
/// CPU: logits, pooled features and stage features of all samples in order.
pub fn forward_all(model: &Model, samples: &Samples, normalization: Normalization) -> Result<Forward, TrainError> {
    check_samples(model.spec(), samples, "evaluation")?;
    let indices: Vec<usize> = (0..samples.len()).collect();
    let (mut logits, mut features, mut stages) = (Vec::new(), Vec::new(), Vec::new());
    for chunk in indices.chunks(EVAL_BATCH) {
        let (xs, _) = make_batch(samples, chunk, normalization, None, model.device());
        let forward = model.infer(&xs, false).map_err(|e| TrainError::Data(e.to_string()))?;
        logits.push(forward.logits.to_device(Device::Cpu));
        features.push(forward.features.to_device(Device::Cpu));
        stages.push(forward.stage_features.to_device(Device::Cpu));
    }
    let cat = |parts: Vec<Tensor>| if parts.is_empty() { Tensor::new() } else { Tensor::cat(&parts, 0) };
    Ok(Forward {
        logits: cat(logits),
        blocks: Vec::new(),
        features: cat(features),
        stage_features: cat(stages),
        member_logits: Vec::new(),
    })
}

/// The predicted class of every sample, in eval mode.
pub fn predict(model: &Model, samples: &Samples, normalization: Normalization) -> Result<Vec<i64>, TrainError> {
    predict_ensemble(&[model], samples, normalization)
}

/// The class of every sample by the models' mean logits, as an ensemble network of them
/// would judge (for one model, its own prediction).
pub fn predict_ensemble(
    models: &[&Model],
    samples: &Samples,
    normalization: Normalization,
) -> Result<Vec<i64>, TrainError> {
    if samples.is_empty() {
        return Ok(Vec::new());
    }
    let mut summed: Option<Tensor> = None;
    for model in models {
        let logits = forward_all(model, samples, normalization)?.logits;
        summed = Some(match summed {
            Some(sum) => sum + logits,
            None => logits,
        });
    }
    let summed = summed.ok_or_else(|| TrainError::Config("no model to predict with".into()))?;
    let labels = summed.argmax(-1, false).to_kind(Kind::Int64);
    Vec::<i64>::try_from(&labels).map_err(|e| TrainError::Torch(e.to_string()))
}

/// Share of samples whose predicted class is their label (0 for no samples).
pub fn accuracy(model: &Model, samples: &Samples, normalization: Normalization) -> Result<f64, TrainError> {
    Ok(share_correct(&predict(model, samples, normalization)?, &samples.labels))
}

fn share_correct(predictions: &[i64], labels: &[i64]) -> f64 {
    let correct = predictions.iter().zip(labels).filter(|(p, l)| p == l).count();
    correct as f64 / labels.len().max(1) as f64
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ClassMetrics {
    pub class: String,
    /// Share of the samples predicted as this class that are; `None` if none were.
    pub precision: Option<f64>,
    /// Share of this class's samples predicted as it; `None` if it has none.
    pub recall: Option<f64>,
    /// Samples of this class.
    pub support: usize,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Evaluation {
    pub accuracy: f64,
    pub samples: usize,
    pub per_class: Vec<ClassMetrics>,
    /// `confusion[true][predicted]` counts.
    pub confusion: Vec<Vec<usize>>,
}

impl Evaluation {
    /// Metrics of `predictions` against `labels`, with `classes` naming the labels.
    pub fn from_predictions(labels: &[i64], predictions: &[i64], classes: &[String]) -> Self {
        let k = classes.len();
        let mut confusion = vec![vec![0usize; k]; k];
        for (&t, &p) in labels.iter().zip(predictions) {
            if let (Some(row), true) = (confusion.get_mut(t as usize), (p as usize) < k) {
                row[p as usize] += 1;
            }
        }
        let correct: usize = (0..k).map(|i| confusion[i][i]).sum();
        let per_class = classes
            .iter()
            .enumerate()
            .map(|(i, class)| {
                let support: usize = confusion[i].iter().sum();
                let predicted: usize = confusion.iter().map(|row| row[i]).sum();
                let ratio = |num: usize, den: usize| (den > 0).then(|| num as f64 / den as f64);
                ClassMetrics {
                    class: class.clone(),
                    precision: ratio(confusion[i][i], predicted),
                    recall: ratio(confusion[i][i], support),
                    support,
                }
            })
            .collect();
        Evaluation {
            accuracy: correct as f64 / labels.len().max(1) as f64,
            samples: labels.len(),
            per_class,
            confusion,
        }
    }

    /// Accuracy and the per-class precision / recall table.
    pub fn table(&self) -> String {
        let width = name_width(self.per_class.iter().map(|c| c.class.as_str()));
        let pct = |v: Option<f64>| v.map_or("n/a".to_string(), |v| format!("{:.2}", 100.0 * v));
        let mut out = format!("accuracy: {:.2}% of {} samples\n", 100.0 * self.accuracy, self.samples);
        let _ = writeln!(out, "{:<width$}  {:>9}  {:>9}  {:>7}", "class", "precision", "recall", "support");
        for c in &self.per_class {
            let _ =
                writeln!(out, "{:<width$}  {:>9}  {:>9}  {:>7}", c.class, pct(c.precision), pct(c.recall), c.support);
        }
        out
    }

    /// The confusion matrix, rows true classes, columns predicted ones.
    pub fn confusion_table(&self) -> String {
        let names: Vec<&str> = self.per_class.iter().map(|c| c.class.as_str()).collect();
        let width = name_width(names.iter().copied()).max("true \\ predicted".len());
        let col = names
            .iter()
            .map(|n| n.len())
            .max()
            .unwrap_or(1)
            .max(self.confusion.iter().flatten().max().map_or(1, |m| m.to_string().len()));
        let mut out = format!("{:<width$}", "true \\ predicted");
        for n in &names {
            let _ = write!(out, "  {n:>col$}");
        }
        out.push('\n');
        for (name, row) in names.iter().zip(&self.confusion) {
            let _ = write!(out, "{name:<width$}");
            for v in row {
                let _ = write!(out, "  {v:>col$}");
            }
            out.push('\n');
        }
        out
    }
}

fn name_width<'a>(names: impl Iterator<Item = &'a str>) -> usize {
    names.map(str::len).max().unwrap_or(0).max("class".len())
}

/// Full metrics of `model` on `samples`.
pub fn evaluate(
    model: &Model,
    samples: &Samples,
    normalization: Normalization,
    classes: &[String],
) -> Result<Evaluation, TrainError> {
    evaluate_ensemble(&[model], samples, normalization, classes)
}

/// [`evaluate`] for the models' mean logits.
pub fn evaluate_ensemble(
    models: &[&Model],
    samples: &Samples,
    normalization: Normalization,
    classes: &[String],
) -> Result<Evaluation, TrainError> {
    if let Some(model) = models.iter().find(|m| m.spec().classes != classes.len() as i64) {
        return Err(TrainError::Data(format!(
            "{} class names for a model with {} classes",
            classes.len(),
            model.spec().classes
        )));
    }
    let predictions = predict_ensemble(models, samples, normalization)?;
    Ok(Evaluation::from_predictions(&samples.labels, &predictions, classes))
}

/// The paper's SNRs: -5 to +5 dB in 1 dB steps.
pub fn paper_snrs() -> Vec<f64> {
    (-5..=5).map(f64::from).collect()
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SweepRow {
    pub kind: NoiseKind,
    /// Accuracy at each of the sweep's SNRs.
    pub accuracy: Vec<f64>,
    /// Mean over the SNRs.
    pub mean: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct SnrSweep {
    pub snr_db: Vec<f64>,
    pub rows: Vec<SweepRow>,
    pub samples: usize,
    pub seed: u64,
}

/// Accuracy with each kind of noise at each SNR added to the raw samples (then normalised).
/// The noise of each (kind, SNR) cell is reproducible from `seed`; `cancel` is checked
/// before each cell.
pub fn snr_sweep(
    models: &[&Model],
    samples: &Samples,
    normalization: Normalization,
    kinds: &[NoiseKind],
    snrs: &[f64],
    seed: u64,
    cancel: &CancelToken,
) -> Result<SnrSweep, TrainError> {
    let mut rows = Vec::with_capacity(kinds.len());
    for (k, &kind) in kinds.iter().enumerate() {
        let mut accuracies = Vec::with_capacity(snrs.len());
        for (s, &snr) in snrs.iter().enumerate() {
            if cancel.is_cancelled() {
                return Err(TrainError::CancelledEvaluation);
            }
            let cell_seed = seed.wrapping_add((k * 1_000 + s) as u64);
            let noisy = noisy_copy(samples, kind, snr, cell_seed);
            accuracies.push(share_correct(&predict_ensemble(models, &noisy, normalization)?, &noisy.labels));
        }
        let mean = accuracies.iter().sum::<f64>() / accuracies.len().max(1) as f64;
        rows.push(SweepRow { kind, accuracy: accuracies, mean });
    }
    Ok(SnrSweep { snr_db: snrs.to_vec(), rows, samples: samples.len(), seed })
}

impl SnrSweep {
    /// Accuracy in percent, one row per noise kind, one column per SNR, and the mean.
    pub fn table(&self) -> String {
        let width = self.rows.iter().map(|r| r.kind.to_string().len()).max().unwrap_or(0).max("SNR (dB)".len());
        let mut out = format!("{:<width$}", "SNR (dB)");
        for snr in &self.snr_db {
            let _ = write!(out, "  {snr:>6}");
        }
        let _ = writeln!(out, "  {:>6}", "mean");
        for row in &self.rows {
            let _ = write!(out, "{:<width$}", row.kind.to_string());
            for acc in &row.accuracy {
                let _ = write!(out, "  {:>6.2}", 100.0 * acc);
            }
            let _ = writeln!(out, "  {:>6.2}", 100.0 * row.mean);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_from_predictions_match_a_hand_count() {
        let classes: Vec<String> = ["a", "b", "c"].iter().map(|s| s.to_string()).collect();
        let labels = [0, 0, 0, 1, 1, 2];
        let predictions = [0, 0, 1, 1, 0, 0];
        let e = Evaluation::from_predictions(&labels, &predictions, &classes);
        assert!((e.accuracy - 3.0 / 6.0).abs() < 1e-12);
        assert_eq!(e.confusion, vec![vec![2, 1, 0], vec![1, 1, 0], vec![1, 0, 0]]);
        // class a: predicted 4 times, 2 right; 3 samples, 2 found.
        assert_eq!(e.per_class[0].precision, Some(0.5));
        assert_eq!(e.per_class[0].recall, Some(2.0 / 3.0));
        assert_eq!(e.per_class[1].precision, Some(0.5));
        assert_eq!(e.per_class[1].recall, Some(0.5));
        // class c: never predicted, never found.
        assert_eq!(e.per_class[2].precision, None);
        assert_eq!(e.per_class[2].recall, Some(0.0));
        assert_eq!(e.per_class[2].support, 1);
        let table = e.table();
        assert!(table.contains("accuracy: 50.00% of 6 samples"), "{table}");
        assert!(table.lines().any(|l| l.starts_with("c ") && l.contains("n/a") && l.contains("0.00")), "{table}");
        let confusion = e.confusion_table();
        assert_eq!(confusion.lines().nth(1).unwrap().split_whitespace().collect::<Vec<_>>(), ["a", "2", "1", "0"]);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["per_class"][2]["precision"], serde_json::Value::Null);
    }

    #[test]
    fn the_sweep_table_has_a_row_per_kind_and_a_column_per_snr() {
        let sweep = SnrSweep {
            snr_db: paper_snrs(),
            rows: vec![SweepRow { kind: NoiseKind::Pink, accuracy: vec![0.5; 11], mean: 0.5 }],
            samples: 4,
            seed: 0,
        };
        let table = sweep.table();
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0].split_whitespace().count(), 2 + 11 + 1, "{table}");
        assert!(lines[1].starts_with("pink") && lines[1].matches("50.00").count() == 12, "{table}");
    }
}
