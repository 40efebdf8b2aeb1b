//! Per-window normalisation, recorded in the model card so that inference applies
//! exactly what training did.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Normalization {
    /// Values go in as they are (images already scaled to pixel / 255).
    None,
    /// Each window (per channel) minus its mean, divided by its standard deviation.
    #[default]
    ZScore,
}

impl Normalization {
    /// Normalises one channel of one window in place.
    pub fn apply(self, values: &mut [f32]) {
        match self {
            Normalization::None => {}
            Normalization::ZScore => {
                let n = values.len().max(1) as f64;
                let mean = values.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = values.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                // A flat window stays flat (zeros) instead of becoming NaN.
                let std = var.sqrt().max(1e-12);
                for v in values.iter_mut() {
                    *v = ((*v as f64 - mean) / std) as f32;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn z_score_gives_zero_mean_unit_variance_and_keeps_flat_windows_finite() {
        let mut v = vec![1.0f32, 2.0, 3.0, 4.0];
        Normalization::ZScore.apply(&mut v);
        let mean: f32 = v.iter().sum::<f32>() / 4.0;
        let var: f32 = v.iter().map(|x| (x - mean).powi(2)).sum::<f32>() / 4.0;
        assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5, "{v:?}");
        let mut flat = vec![5.0f32; 8];
        Normalization::ZScore.apply(&mut flat);
        assert!(flat.iter().all(|&x| x == 0.0));
    }
}
