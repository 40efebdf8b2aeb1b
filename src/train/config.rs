//! What a training run is asked to do: optimiser, schedule, regularisation, batches,
//! augmentation. Serialisable, so that a job can store the request it ran.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::data::NoiseKind;

use super::TrainError;

#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum Optimizer {
    /// Adam with PyTorch's defaults (betas 0.9, 0.999, eps 1e-8), the seed's choice.
    Adam,
    /// SGD with momentum, the paper's choice (momentum 0.9).
    Sgd { momentum: f64 },
}

impl std::fmt::Display for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Optimizer::Adam => f.write_str("adam"),
            Optimizer::Sgd { momentum } => write!(f, "sgd (momentum {momentum})"),
        }
    }
}

/// Noise added to training batches before normalisation.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct NoiseAugment {
    /// One kind is drawn per sample, uniformly among these.
    pub kinds: Vec<NoiseKind>,
    /// SNR range in dB, drawn uniformly per sample (ignored by `uniform-pixel`).
    pub snr_db: [f64; 2],
    /// Share of training samples that get noise, in `[0, 1]`.
    pub probability: f64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct TrainConfig {
    pub optimizer: Optimizer,
    /// Learning rate of the first epoch.
    pub lr: f64,
    /// Step schedule: at each milestone (a fraction of the epochs, in `(0, 1)`) the
    /// learning rate is multiplied by `lr_gamma`. Empty: constant.
    #[serde(default)]
    pub lr_milestones: Vec<f64>,
    #[serde(default = "default_gamma")]
    pub lr_gamma: f64,
    pub epochs: usize,
    pub batch_size: usize,
    /// L2 factor on every convolution and dense kernel (not on biases or batch norm), as
    /// Keras' `l2(weight_decay)`: the loss gains `weight_decay * sum(w^2)`.
    pub weight_decay: f64,
    /// Seeds libtorch and the shuffling and noise generators.
    pub seed: u64,
    #[serde(default)]
    pub augment: Option<NoiseAugment>,
    /// libtorch intra-op threads (process-wide); `None` leaves libtorch's choice.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Validate and keep an exponential moving average of the weights over the steps, with
    /// this decay (e.g. 0.999: about the last 1000 steps), instead of the weights themselves.
    #[serde(default)]
    pub ema_decay: Option<f64>,
}

fn default_gamma() -> f64 {
    0.1
}

impl TrainConfig {
    /// The seed's recipe: Adam, lr 1e-3, batch 100, 5 epochs, L2 1e-4.
    pub fn seed_adam() -> Self {
        TrainConfig {
            optimizer: Optimizer::Adam,
            lr: 1e-3,
            lr_milestones: Vec::new(),
            lr_gamma: 0.1,
            epochs: 5,
            batch_size: 100,
            weight_decay: 1e-4,
            seed: 0,
            augment: None,
            threads: None,
            ema_decay: None,
        }
    }

    /// The paper's recipe: SGD momentum 0.9, lr 0.1 for 40% of the epochs, 0.01 for 40%,
    /// 0.001 for the last 20%, batch 128, L2 1e-4, 100 epochs.
    pub fn paper_sgd() -> Self {
        TrainConfig {
            optimizer: Optimizer::Sgd { momentum: 0.9 },
            lr: 0.1,
            lr_milestones: vec![0.4, 0.8],
            lr_gamma: 0.1,
            epochs: 100,
            batch_size: 128,
            weight_decay: 1e-4,
            seed: 0,
            augment: None,
            threads: None,
            ema_decay: None,
        }
    }

    /// The learning rate of `epoch` (0-based).
    pub fn lr_at(&self, epoch: usize) -> f64 {
        let drops = self.lr_milestones.iter().filter(|&&m| epoch >= (m * self.epochs as f64).round() as usize).count();
        self.lr * self.lr_gamma.powi(drops as i32)
    }

    pub fn validate(&self) -> Result<(), TrainError> {
        let bad = |msg: String| Err(TrainError::Config(msg));
        if self.epochs == 0 {
            return bad("epochs must be at least 1".into());
        }
        if self.batch_size < 2 {
            return bad(format!("batch size must be at least 2 (batch norm), got {}", self.batch_size));
        }
        if !(self.lr.is_finite() && self.lr > 0.0) {
            return bad(format!("learning rate must be positive, got {}", self.lr));
        }
        if !(self.lr_gamma.is_finite() && self.lr_gamma > 0.0) {
            return bad(format!("lr gamma must be positive, got {}", self.lr_gamma));
        }
        if let Some(m) = self.lr_milestones.iter().find(|m| !(**m > 0.0 && **m < 1.0)) {
            return bad(format!("lr milestones are fractions of the epochs in (0, 1), got {m}"));
        }
        if !(self.weight_decay.is_finite() && self.weight_decay >= 0.0) {
            return bad(format!("weight decay must be zero or positive, got {}", self.weight_decay));
        }
        if let Optimizer::Sgd { momentum } = self.optimizer {
            if !(0.0..1.0).contains(&momentum) {
                return bad(format!("momentum must be in [0, 1), got {momentum}"));
            }
        }
        if let Some(d) = self.ema_decay {
            if !(d > 0.0 && d < 1.0) {
                return bad(format!("the weight average's decay must be in (0, 1), got {d}"));
            }
        }
        if self.threads == Some(0) {
            return bad("threads must be at least 1".into());
        }
        if let Some(a) = &self.augment {
            if a.kinds.is_empty() {
                return bad("noise augmentation needs at least one noise kind".into());
            }
            let [lo, hi] = a.snr_db;
            if !(lo.is_finite() && hi.is_finite() && lo <= hi) {
                return bad(format!("augmentation SNR range {lo}..{hi} dB is not a range"));
            }
            if !(0.0..=1.0).contains(&a.probability) {
                return bad(format!("augmentation probability must be in [0, 1], got {}", a.probability));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_paper_schedule_drops_tenfold_at_forty_and_eighty_percent() {
        let c = TrainConfig::paper_sgd();
        let lrs: Vec<f64> = [0, 39, 40, 79, 80, 99].iter().map(|&e| c.lr_at(e)).collect();
        let expected = [0.1, 0.1, 0.01, 0.01, 0.001, 0.001];
        for (got, want) in lrs.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{lrs:?}");
        }
        let short = TrainConfig { epochs: 5, ..c };
        // round(0.4 * 5) = 2, round(0.8 * 5) = 4
        let lrs: Vec<f64> = (0..5).map(|e| short.lr_at(e)).collect();
        assert!((lrs[1] - 0.1).abs() < 1e-12 && (lrs[2] - 0.01).abs() < 1e-12 && (lrs[4] - 0.001).abs() < 1e-12);
        assert!((TrainConfig::seed_adam().lr_at(4) - 1e-3).abs() < 1e-15);
    }

    #[test]
    fn invalid_settings_are_refused_with_the_field_named() {
        let ok = TrainConfig::seed_adam();
        ok.validate().unwrap();
        let cases = [
            (TrainConfig { epochs: 0, ..ok.clone() }, "epochs"),
            (TrainConfig { batch_size: 1, ..ok.clone() }, "batch size"),
            (TrainConfig { lr: -1.0, ..ok.clone() }, "learning rate"),
            (TrainConfig { lr_milestones: vec![1.5], ..ok.clone() }, "milestones"),
            (TrainConfig { optimizer: Optimizer::Sgd { momentum: 1.0 }, ..ok.clone() }, "momentum"),
            (TrainConfig { ema_decay: Some(1.0), ..ok.clone() }, "decay"),
            (
                TrainConfig {
                    augment: Some(NoiseAugment { kinds: vec![], snr_db: [-5.0, 5.0], probability: 0.5 }),
                    ..ok.clone()
                },
                "noise kind",
            ),
            (
                TrainConfig {
                    augment: Some(NoiseAugment { kinds: vec![NoiseKind::Pink], snr_db: [5.0, -5.0], probability: 0.5 }),
                    ..ok.clone()
                },
                "SNR range",
            ),
        ];
        for (config, word) in cases {
            let err = config.validate().unwrap_err().to_string();
            assert!(err.contains(word), "{err:?} should mention {word:?}");
        }
    }

    #[test]
    fn configs_round_trip_through_json() {
        let mut c = TrainConfig::paper_sgd();
        c.augment = Some(NoiseAugment {
            kinds: vec![NoiseKind::Gaussian, NoiseKind::Pink],
            snr_db: [-5.0, 5.0],
            probability: 0.5,
        });
        let json = serde_json::to_value(&c).unwrap();
        assert_eq!(json["optimizer"], serde_json::json!({"kind": "sgd", "momentum": 0.9}));
        assert_eq!(serde_json::from_value::<TrainConfig>(json).unwrap(), c);
    }
}
