//! The scores as tensor maths over a forward pass, and the Gaussian fit they need.

use tch::{Device, Kind, Tensor};

use crate::nn::Forward;

use super::{GaussianFit, OodCalibration, OodError, OodMethod};

/// A calibration made ready for one device: scores a forward pass in a few tensor ops.
#[derive(Debug)]
pub struct Scorer {
    method: OodMethod,
    /// `W` transposed (`D x D`) and the whitened means (`C x D`).
    gaussian: Option<(Tensor, Tensor)>,
}

impl Scorer {
    pub fn new(calibration: &OodCalibration, device: Device) -> Result<Self, OodError> {
        Scorer::for_method(calibration.method, calibration.gaussian.as_ref(), device)
    }

    pub fn for_method(method: OodMethod, gaussian: Option<&GaussianFit>, device: Device) -> Result<Self, OodError> {
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
                let w = matrix(&fit.whitening, device).tr();
                Some((w, matrix(&fit.means, device)))
            }
        };
        Ok(Scorer { method, gaussian })
    }

    /// One score per window of `forward` (higher: stranger), `N` floats on its device.
    pub fn score(&self, forward: &Forward) -> Result<Tensor, OodError> {
        match (&self.gaussian, self.method) {
            (Some((w, means)), method) => {
                let x = method_features(method, forward);
                let width = w.size()[0];
                if x.size().get(1) != Some(&width) {
                    return Err(OodError::Mismatch(format!(
                        "the network gives {:?} features, the fit has {width}",
                        x.size().get(1)
                    )));
                }
                // |y - m|^2 = |y|^2 - 2 y.m + |m|^2: N x C, never N x C x D.
                let y = x.to_kind(Kind::Float).matmul(w);
                let sum = |t: &Tensor| t.square().sum_dim_intlist([-1i64].as_slice(), true, Kind::Float);
                let distances = sum(&y) - y.matmul(&means.tr()) * 2.0 + sum(means).tr();
                Ok(distances.amin([1i64].as_slice(), false).clamp_min(0.0).sqrt())
            }
            (None, method) => Ok(raw_scores(method, forward)),
        }
    }
}

/// The scores that need no fit (max-softmax and energy); others give NaN.
fn raw_scores(method: OodMethod, forward: &Forward) -> Tensor {
    let logits = forward.logits.to_kind(Kind::Float);
    match method {
        OodMethod::MaxSoftmax => logits.softmax(-1, Kind::Float).amax([-1i64].as_slice(), false).neg() + 1.0,
        OodMethod::Energy => logits.logsumexp([-1i64].as_slice(), false).neg(),
        OodMethod::Mahalanobis | OodMethod::MahalanobisStages => {
            Tensor::full([logits.size()[0]].as_slice(), f64::NAN, (Kind::Float, logits.device()))
        }
    }
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

fn matrix(rows: &[Vec<f32>], device: Device) -> Tensor {
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let cols = rows.first().map_or(0, Vec::len) as i64;
    Tensor::from_slice(&flat).view([rows.len() as i64, cols]).to_device(device)
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
    let flat = Vec::<f32>::try_from(t.to_kind(Kind::Float).contiguous().flatten(0, -1))?;
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
        Forward { logits, blocks: Vec::new(), features, stage_features: Tensor::new() }
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
        let scorer = Scorer::for_method(OodMethod::Mahalanobis, Some(&fit), Device::Cpu).unwrap();
        let probe = forward(&[[10.0, 0.0], [5.0, 0.0], [0.0, 1.0]]);
        let scores = Vec::<f32>::try_from(scorer.score(&probe).unwrap()).unwrap();
        assert!(scores[0] < 0.1, "at a class mean: {scores:?}");
        // Halfway between the classes is 5 x-deviations away; 1.0 along y is ~10 y-deviations.
        assert!((scores[1] - 5.0).abs() < 0.2, "{scores:?}");
        assert!(scores[2] > 8.0, "{scores:?}");
    }

    #[test]
    fn softmax_and_energy_need_no_fit_and_a_gaussian_method_refuses_to_run_without_one() {
        let probe = forward(&[[0.0, 0.0]]);
        let msp = Scorer::for_method(OodMethod::MaxSoftmax, None, Device::Cpu).unwrap();
        let p0 = 2f32.exp() / (2f32.exp() + 1.0);
        assert!((msp.score(&probe).unwrap().double_value(&[0]) as f32 - (1.0 - p0)).abs() < 1e-6);
        let energy = Scorer::for_method(OodMethod::Energy, None, Device::Cpu).unwrap();
        let e = -(2f32.exp() + 1.0).ln();
        assert!((energy.score(&probe).unwrap().double_value(&[0]) as f32 - e).abs() < 1e-5);
        assert!(Scorer::for_method(OodMethod::Mahalanobis, None, Device::Cpu).is_err());
    }
}
