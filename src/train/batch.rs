//! Raw samples to a batch tensor: optional noise on the raw values, then the model's
//! normalisation per sample and channel, as inference will see them.

use rand::Rng;
use tch::{Device, Tensor};

use crate::data::noise::add_noise_to_sample;
use crate::data::{Normalization, Samples};

use super::config::NoiseAugment;

/// Builds the input tensor (`N x sample_shape`) of the samples at `indices`, and their labels.
pub fn make_batch(
    samples: &Samples,
    indices: &[usize],
    normalization: Normalization,
    mut augment: Option<(&NoiseAugment, &mut dyn rand::RngCore)>,
    device: Device,
) -> (Tensor, Tensor) {
    let n = samples.sample_len();
    let channels = samples.sample_shape.first().copied().unwrap_or(1).max(1);
    let mut values = Vec::with_capacity(indices.len() * n);
    let mut labels = Vec::with_capacity(indices.len());
    for &i in indices {
        let start = values.len();
        values.extend_from_slice(samples.sample(i));
        let sample = &mut values[start..];
        if let Some((aug, rng)) = augment.as_mut() {
            if rng.random::<f64>() < aug.probability {
                let kind = aug.kinds[rng.random_range(0..aug.kinds.len())];
                let [lo, hi] = aug.snr_db;
                let snr = if hi > lo { rng.random_range(lo..=hi) } else { lo };
                add_noise_to_sample(sample, channels, kind, snr, rng);
            }
        }
        for channel in sample.chunks_mut(n / channels) {
            normalization.apply(channel);
        }
        labels.push(samples.labels[i]);
    }
    let mut shape = vec![indices.len() as i64];
    shape.extend(samples.sample_shape.iter().map(|&s| s as i64));
    let xs = Tensor::from_slice(&values).view(shape.as_slice()).to_device(device);
    let ys = Tensor::from_slice(&labels).to_device(device);
    (xs, ys)
}
