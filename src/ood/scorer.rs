//! The scores as tensor maths over a forward pass, and the Gaussian fit they need.

use tch::{Device, Kind, Tensor};

use crate::nn::{flat_values, Forward};

use super::{GaussianFit, OodCalibration, OodError, OodMethod};

/// A calibration made ready to score: plain arithmetic over a batch's pooled outputs, so
/// that either inference backend can use it without tensor maths (on the ONNX Runtime path a
/// libtorch operation would wake libtorch's thread pool beside ONNX Runtime's).
#[derive(Debug)]
pub struct Scorer {
    method: OodMethod,
    gaussian: Option<Whitened>,
}

/// The whitening `W` (`D x D`, row-major: `y = W x`) and the whitened class means (`C x D`).
#[derive(Debug)]
struct Whitened {
    width: usize,
    whitening: Vec<f32>,
    means: Vec<f32>,
}

/// What the scores read of a batch of `windows` windows, each row-major (`windows` rows).
#[derive(Debug, Clone, Copy)]
pub struct Pooled<'a> {
    pub windows: usize,
    pub logits: &'a [f32],
    pub features: &'a [f32],
    pub stage_features: &'a [f32],
}

impl Scorer {
    pub fn new(calibration: &OodCalibration) -> Result<Self, OodError> {
        Scorer::for_method(calibration.method, calibration.gaussian.as_ref())
    }

    pub fn for_method(method: OodMethod, gaussian: Option<&GaussianFit>) -> Result<Self, OodError> {
        let gaussian = match (method.needs_fit(), gaussian) {
            (false, _) => None,
            (true, None) => return Err(OodError::Mismatch(format!("{method} needs a fitted Gaussian"))),
            (true, Some(fit)) => {
                let d = fit.whitening.len();
                if d == 0 || fit.whitening.iter().any(|row| row.len() != d) {
                    return Err(OodError::Mismatch("the whitening matrix is not square".into()));
                }
                if fit.means.is_empty() {
                    return Err(OodError::Mismatch("the fit holds no class means".into()));
                }
                if fit.means.iter().any(|row| row.len() != d) {
                    return Err(OodError::Mismatch("class means and whitening differ in width".into()));
                }
                let flat = |rows: &[Vec<f32>]| rows.iter().flatten().copied().collect();
                Some(Whitened { width: d, whitening: flat(&fit.whitening), means: flat(&fit.means) })
            }
        };
        Ok(Scorer { method, gaussian })
    }

    /// One score per window (higher: stranger).
    pub fn score(&self, pooled: &Pooled<'_>) -> Result<Vec<f32>, OodError> {
        let logit_rows = (0..pooled.windows).map(|i| row(pooled.logits, pooled.windows, i));
        match (&self.gaussian, self.method) {
            (Some(g), method) => {
                let stages = method == OodMethod::MahalanobisStages && !pooled.stage_features.is_empty();
                let mut x = Vec::with_capacity(g.width);
                let mut scores = Vec::with_capacity(pooled.windows);
                for i in 0..pooled.windows {
                    x.clear();
                    if stages {
                        x.extend(row(pooled.stage_features, pooled.windows, i));
                    }
                    x.extend(row(pooled.features, pooled.windows, i));
                    if x.len() != g.width {
                        return Err(OodError::Mismatch(format!(
                            "the network gives {} features, the fit has {}",
                            x.len(),
                            g.width
                        )));
                    }
                    scores.push(g.distance(&x));
                }
                Ok(scores)
            }
            // The largest softmax probability is exp(max - logsumexp).
            (None, OodMethod::MaxSoftmax) => Ok(logit_rows
                .map(|l| {
                    let (top, lse) = max_and_log_sum_exp(l);
                    (1.0 - (top - lse).exp()) as f32
                })
                .collect()),
            (None, OodMethod::Energy) => Ok(logit_rows.map(|l| -max_and_log_sum_exp(l).1 as f32).collect()),
            (None, OodMethod::Mahalanobis | OodMethod::MahalanobisStages) => Ok(vec![f32::NAN; pooled.windows]),
        }
    }

    /// [`Scorer::score`] of a libtorch forward pass.
    pub fn score_forward(&self, forward: &Forward) -> Result<Vec<f32>, OodError> {
        let windows = forward.logits.size().first().copied().unwrap_or(0).max(0) as usize;
        let (logits, features, stage_features) =
            (flat_values(&forward.logits)?, flat_values(&forward.features)?, flat_values(&forward.stage_features)?);
        self.score(&Pooled { windows, logits: &logits, features: &features, stage_features: &stage_features })
    }
}

/// Row `i` of `n` equal rows of `values` (empty when `values` is).
fn row(values: &[f32], n: usize, i: usize) -> &[f32] {
    let width = values.len() / n.max(1);
    values.get(i * width..(i + 1) * width).unwrap_or_default()
}

impl Whitened {
    /// The distance from `W x` to the nearest whitened class mean.
    fn distance(&self, x: &[f32]) -> f32 {
        let y: Vec<f64> = self
            .whitening
            .chunks(self.width)
            .map(|w| w.iter().zip(x).map(|(a, b)| f64::from(*a) * f64::from(*b)).sum())
            .collect();
        let nearest = self
            .means
            .chunks(self.width)
            .map(|m| y.iter().zip(m).map(|(a, b)| (a - f64::from(*b)).powi(2)).sum::<f64>())
            .fold(f64::INFINITY, f64::min);
        nearest.sqrt() as f32
    }
}

/// The largest logit and `log(sum(exp(logits)))`, computed stably (shifted by the largest).
fn max_and_log_sum_exp(logits: &[f32]) -> (f64, f64) {
    let top = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let sum: f64 = logits.iter().map(|l| f64::from(l - top).exp()).sum();
    (f64::from(top), f64::from(top) + sum.ln())
}

/// The features a Gaussian method models.
fn method_features(method: OodMethod, forward: &Forward) -> Tensor {
    match method {
        OodMethod::MahalanobisStages if forward.stage_features.numel() > 0 => {
            Tensor::cat(&[&forward.stage_features, &forward.features], 1)
        }
        _ => forward.features.shallow_clone(),
    }
}

/// Fits class-conditional Gaussians with one shared covariance to the features `method`
/// reads from `forward` (training windows, eval mode), `labels` their classes.
pub fn fit_gaussian(method: OodMethod, forward: &Forward, labels: &[i64]) -> Result<GaussianFit, OodError> {
    let x = method_features(method, forward).to_device(Device::Cpu).to_kind(Kind::Double);
    let size = x.size();
    let (n, d) = match size.as_slice() {
        [n, d] if *n as usize == labels.len() && *d > 0 => (*n, *d),
        _ => return Err(OodError::Fit(format!("{size:?} features for {} labels", labels.len()))),
    };
    if n < 2 {
        return Err(OodError::Fit("at least two training windows are needed".into()));
    }
    if !bool::try_from(x.isfinite().all())? {
        return Err(OodError::Fit("the network gives non-finite features (has training diverged?)".into()));
    }
    let y = Tensor::from_slice(labels);
    let mut centred = x.shallow_clone();
    let mut means = Vec::new();
    let classes = labels.iter().copied().max().unwrap_or(0) + 1;
    for c in 0..classes {
        let mask = y.eq(c);
        let count = mask.sum(Kind::Int64).int64_value(&[]);
        if count == 0 {
            continue;
        }
        let members = x.index_select(0, &mask.nonzero().squeeze_dim(1));
        let mean = members.mean_dim([0i64].as_slice(), false, Kind::Double);
        centred = centred.where_self(&mask.unsqueeze(1).logical_not(), &(&x - &mean));
        means.push(mean);
    }
    let covariance = centred.tr().matmul(&centred) / (n as f64);
    // Shrinkage towards the mean variance: post-ReLU channels can be all zero.
    let scale = f64::try_from(covariance.diagonal(0, 0, 1).mean(Kind::Double))?.max(1e-12);
    let shrunk = covariance * 0.99 + Tensor::eye(d, (Kind::Double, Device::Cpu)) * (0.01 * scale);
    let lower = shrunk.f_linalg_cholesky(false)?;
    let identity = Tensor::eye(d, (Kind::Double, Device::Cpu));
    let whitening = Tensor::f_linalg_solve_triangular(&lower, &identity, false, true, false)?;
    let whitened_means = Tensor::stack(&means, 0).matmul(&whitening.tr());
    Ok(GaussianFit { whitening: rows(&whitening)?, means: rows(&whitened_means)?, windows: n as usize })
}

fn rows(t: &Tensor) -> Result<Vec<Vec<f32>>, OodError> {
    let cols = t.size().get(1).copied().unwrap_or(0).max(1) as usize;
    let flat = flat_values(t)?;
    Ok(flat.chunks(cols).map(<[f32]>::to_vec).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A forward pass whose pooled features are `rows` (and whose logits favour class 0).
    fn forward(rows: &[[f32; 2]]) -> Forward {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let features = Tensor::from_slice(&flat).view([rows.len() as i64, 2]);
        let logits = Tensor::from_slice(&[2.0f32, 0.0].repeat(rows.len())).view([rows.len() as i64, 2]);
        Forward { logits, blocks: Vec::new(), features, stage_features: Tensor::new(), member_logits: Vec::new() }
    }

    #[test]
    fn mahalanobis_distance_is_small_at_a_class_and_large_far_from_both() {
        // Two classes around (0, 0) and (10, 0), unit spread along x, 0.1 along y.
        let mut rows = Vec::new();
        let mut labels = Vec::new();
        for (c, centre) in [0.0f32, 10.0].into_iter().enumerate() {
            for dx in [-1.0f32, 1.0] {
                for dy in [-0.1f32, 0.1] {
                    rows.push([centre + dx, dy]);
                    labels.push(c as i64);
                }
            }
        }
        let fit = fit_gaussian(OodMethod::Mahalanobis, &forward(&rows), &labels).unwrap();
        assert_eq!((fit.whitening.len(), fit.means.len(), fit.windows), (2, 2, 8));
        let scorer = Scorer::for_method(OodMethod::Mahalanobis, Some(&fit)).unwrap();
        let probe = forward(&[[10.0, 0.0], [5.0, 0.0], [0.0, 1.0]]);
        let scores = scorer.score_forward(&probe).unwrap();
        assert!(scores[0] < 0.1, "at a class mean: {scores:?}");
        // Halfway between the classes is 5 x-deviations away; 1.0 along y is ~10 y-deviations.
        assert!((scores[1] - 5.0).abs() < 0.2, "{scores:?}");
        assert!(scores[2] > 8.0, "{scores:?}");
    }

    #[test]
    fn softmax_and_energy_need_no_fit_and_a_gaussian_method_refuses_to_run_without_one() {
        let probe = forward(&[[0.0, 0.0]]);
        let msp = Scorer::for_method(OodMethod::MaxSoftmax, None).unwrap();
        let p0 = 2f32.exp() / (2f32.exp() + 1.0);
        assert!((msp.score_forward(&probe).unwrap()[0] - (1.0 - p0)).abs() < 1e-6);
        let energy = Scorer::for_method(OodMethod::Energy, None).unwrap();
        let e = -(2f32.exp() + 1.0).ln();
        assert!((energy.score_forward(&probe).unwrap()[0] - e).abs() < 1e-5);
        assert!(Scorer::for_method(OodMethod::Mahalanobis, None).is_err());
    }
}
