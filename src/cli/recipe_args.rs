//! The training recipe's flags (optimiser, schedule, batch, L2, seed, augmentation), shared
//! by `drsn train` and `drsn compare`.

use anyhow::Context;
use clap::{Args, ValueEnum};

use crate::data::NoiseKind;
use crate::train::{NoiseAugment, Optimizer, TrainConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum OptimizerArg {
    /// Adam, lr 1e-3 by default (the seed).
    Adam,
    /// SGD with momentum and a step schedule, lr 0.1 by default (the paper).
    Sgd,
}

#[derive(Debug, Args)]
pub struct RecipeArgs {
    #[arg(long, env = "DRSN_OPTIMIZER", value_enum, default_value = "adam")]
    pub optimizer: OptimizerArg,
    /// Initial learning rate [default: 1e-3 for adam, 0.1 for sgd].
    #[arg(long, env = "DRSN_LR")]
    pub lr: Option<f64>,
    #[arg(long, default_value_t = 0.9)]
    pub momentum: f64,
    /// Fractions of the epochs at which the learning rate is multiplied by --lr-gamma
    /// [default: 0.4,0.8 for sgd, none for adam].
    #[arg(long, value_delimiter = ',')]
    pub lr_milestones: Option<Vec<f64>>,
    #[arg(long, default_value_t = 0.1)]
    pub lr_gamma: f64,
    #[arg(long, env = "DRSN_EPOCHS", default_value_t = 30)]
    pub epochs: usize,
    #[arg(long, env = "DRSN_BATCH", default_value_t = 128)]
    pub batch: usize,
    /// L2 factor on every kernel (not on biases or batch norm).
    #[arg(long, default_value_t = 1e-4)]
    pub weight_decay: f64,
    /// Seeds the split, the initial weights, the shuffling and all noise.
    #[arg(long, env = "DRSN_SEED", default_value_t = 0)]
    pub seed: u64,
    /// Noise augmentation of training samples: kinds, e.g. `gaussian,laplacian,pink` or `uniform-pixel`.
    #[arg(long, value_delimiter = ',')]
    pub augment_noise: Vec<NoiseKind>,
    /// SNR range of the augmentation in dB, `LOW:HIGH` (or one value).
    #[arg(long, default_value = "-5:5", allow_hyphen_values = true)]
    pub augment_snr: String,
    /// Share of training samples that get augmentation noise.
    #[arg(long, default_value_t = 0.5)]
    pub augment_prob: f64,
    /// Validate and keep an exponential moving average of the weights with this decay
    /// (e.g. 0.999) instead of the weights themselves [default: none].
    #[arg(long, env = "DRSN_EMA_DECAY")]
    pub ema_decay: Option<f64>,
    /// libtorch threads [default: libtorch's choice].
    #[arg(long, env = "DRSN_TORCH_THREADS")]
    pub threads: Option<usize>,
}

/// `LOW:HIGH` or a single value, in dB.
fn parse_snr_range(text: &str) -> anyhow::Result<[f64; 2]> {
    let parse = |v: &str| {
        v.trim().parse::<f64>().with_context(|| format!("--augment-snr {text:?}: {v:?} is not a number of dB"))
    };
    Ok(match text.split_once(':') {
        Some((lo, hi)) => [parse(lo)?, parse(hi)?],
        None => [parse(text)?; 2],
    })
}

impl RecipeArgs {
    pub fn config(&self) -> anyhow::Result<TrainConfig> {
        let (optimizer, lr, milestones) = match self.optimizer {
            OptimizerArg::Adam => (Optimizer::Adam, 1e-3, vec![]),
            OptimizerArg::Sgd => (Optimizer::Sgd { momentum: self.momentum }, 0.1, vec![0.4, 0.8]),
        };
        let augment = (!self.augment_noise.is_empty())
            .then(|| -> anyhow::Result<NoiseAugment> {
                Ok(NoiseAugment {
                    kinds: self.augment_noise.clone(),
                    snr_db: parse_snr_range(&self.augment_snr)?,
                    probability: self.augment_prob,
                })
            })
            .transpose()?;
        let config = TrainConfig {
            optimizer,
            lr: self.lr.unwrap_or(lr),
            lr_milestones: self.lr_milestones.clone().unwrap_or(milestones),
            lr_gamma: self.lr_gamma,
            epochs: self.epochs,
            batch_size: self.batch,
            weight_decay: self.weight_decay,
            seed: self.seed,
            augment,
            threads: self.threads,
            ema_decay: self.ema_decay,
        };
        config.validate()?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snr_ranges_parse_as_pairs_or_single_values() {
        assert_eq!(parse_snr_range("-5:5").unwrap(), [-5.0, 5.0]);
        assert_eq!(parse_snr_range("-4").unwrap(), [-4.0, -4.0]);
        assert!(parse_snr_range("-5:x").unwrap_err().to_string().contains("\"x\""));
    }
}
