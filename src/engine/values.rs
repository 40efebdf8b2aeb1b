//! A forward pass's outputs as plain values, split into one prediction per window; the
//! same for every backend and for batches run on the engine's threads or inline.

use std::sync::Arc;

use super::{BlockValues, WindowPrediction};
use crate::nn::{flat_values, Forward, ForwardValues};
use crate::ood::{Pooled, Scorer};

/// One forward pass's results as plain values, from either backend.
pub(super) struct Values {
    probabilities: Vec<f32>,
    scores: Option<Vec<f32>>,
    /// Per shrinkage unit: name, stage, thresholds, scales, mean |x|, zeroed shares.
    units: Vec<(Arc<str>, usize, [Vec<f32>; 4])>,
}

impl Values {
    /// Copies a libtorch forward pass off its device.
    pub(super) fn from_forward(out: &Forward, scores: Option<Vec<f32>>) -> Result<Self, tch::TchError> {
        let mut units = Vec::with_capacity(out.blocks.len());
        for block in &out.blocks {
            let d = &block.diagnostics;
            let values = [
                flat_values(&d.thresholds)?,
                flat_values(&d.scales)?,
                flat_values(&d.mean_abs)?,
                flat_values(&d.zeroed_fraction)?,
            ];
            units.push((Arc::from(block.name.as_str()), block.stage, values));
        }
        Ok(Values { probabilities: flat_values(&out.probabilities())?, scores, units })
    }

    /// Another backend's values, with their out-of-distribution scores when calibrated.
    pub(super) fn scored(out: ForwardValues, scorer: Option<&Scorer>) -> Result<Self, String> {
        let pooled = Pooled {
            windows: out.windows,
            logits: &out.logits,
            features: &out.features,
            stage_features: &out.stage_features,
        };
        let scores = scorer.map(|s| s.score(&pooled)).transpose().map_err(|e| e.to_string())?;
        Ok(Values::from_values(out, scores))
    }

    fn from_values(out: ForwardValues, scores: Option<Vec<f32>>) -> Self {
        let units = out
            .units
            .into_iter()
            .map(|u| (u.unit.name, u.unit.stage, [u.thresholds, u.scales, u.mean_abs, u.zeroed_fraction]))
            .collect();
        Values { probabilities: out.probabilities, scores, units }
    }

    /// Splits the batch's values into its `n` windows.
    pub(super) fn into_windows(self, n: usize) -> Vec<WindowPrediction> {
        let classes = self.probabilities.len() / n.max(1);
        let mut windows: Vec<WindowPrediction> = self
            .probabilities
            .chunks(classes.max(1))
            .enumerate()
            .map(|(i, p)| WindowPrediction {
                probabilities: p.to_vec(),
                blocks: Vec::with_capacity(self.units.len()),
                ood_score: self.scores.as_ref().and_then(|s| s.get(i).copied()),
            })
            .collect();
        for (name, stage, [thresholds, scales, mean_abs, zeroed]) in &self.units {
            let (t, c) = (thresholds.len() / n.max(1), mean_abs.len() / n.max(1));
            for (i, w) in windows.iter_mut().enumerate() {
                w.blocks.push(BlockValues {
                    name: name.clone(),
                    stage: *stage,
                    thresholds: thresholds.get(i * t..(i + 1) * t).unwrap_or_default().to_vec(),
                    scales: scales.get(i * t..(i + 1) * t).unwrap_or_default().to_vec(),
                    mean_abs: mean_abs.get(i * c..(i + 1) * c).unwrap_or_default().to_vec(),
                    zeroed_fraction: zeroed.get(i).copied().unwrap_or_default(),
                });
            }
        }
        windows
    }
}
