//! `drsn train`: read a data set, train a network on it, evaluate it on held-out data and
//! write a model folder (weights and card) that the service loads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::data_args::DataArgs;
use super::machine_args::MachineArgs;
use super::noise_args::EvalNoiseArgs;
use super::ood_args::OodArgs;
use super::report::print_outcome;
use crate::data::{NoiseKind, Normalization};
use crate::nn::{Arch, Dim, ModelSpec, PRESETS};
use crate::registry::{write_model_folder, CardInfo, WindowInfo};
use crate::train::{self, CancelToken, NoiseAugment, Optimizer, Progress, RunRequest, TrainConfig};

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OptimizerArg {
    /// Adam, lr 1e-3 by default (the seed).
    Adam,
    /// SGD with momentum and a step schedule, lr 0.1 by default (the paper).
    Sgd,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum NormalizationArg {
    /// z-score for signal windows, none for images (pixel / 255, as the seed).
    Auto,
    ZScore,
    None,
}

#[derive(Debug, Args)]
pub struct TrainArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The model's name (its card's `name`).
    #[arg(long, env = "DRSN_MODEL_NAME")]
    pub name: String,
    #[arg(long, env = "DRSN_MODEL_VERSION", default_value_t = 1)]
    pub version: u32,
    /// Model folder to write [default: models/<name>].
    #[arg(long, env = "DRSN_MODEL_OUT")]
    pub out: Option<PathBuf>,
    /// Network preset (paper-1d, seed-2d, mnist-2d); the number of classes comes from the data.
    #[arg(long, env = "DRSN_PRESET", default_value = "paper-1d", conflicts_with = "spec")]
    pub preset: String,
    /// A model spec JSON file instead of a preset (see `drsn spec`).
    #[arg(long, env = "DRSN_SPEC")]
    pub spec: Option<PathBuf>,
    /// resnet, drsn-cs or drsn-cw (with --preset).
    #[arg(long, env = "DRSN_ARCH", default_value = "drsn-cw")]
    pub arch: Arch,
    /// Sample rate the model works at, in Hz: recordings at other rates are resampled to it.
    #[arg(long, env = "DRSN_SAMPLE_RATE")]
    pub sample_rate: Option<u32>,
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
    #[command(flatten)]
    pub eval_noise: EvalNoiseArgs,
    #[command(flatten)]
    pub ood: OodArgs,
    #[command(flatten)]
    pub machine: MachineArgs,
    /// Open-set evaluation: leave these classes (or fault families: ball, inner_race,
    /// outer_race, normal) out of training, then report how many of their windows each
    /// out-of-distribution score flags.
    #[arg(long, env = "DRSN_LEAVE_OUT", value_delimiter = ',')]
    pub leave_out: Vec<String>,
    #[arg(long, value_enum, default_value = "auto")]
    pub normalization: NormalizationArg,
    /// libtorch threads [default: libtorch's choice].
    #[arg(long, env = "DRSN_TORCH_THREADS")]
    pub threads: Option<usize>,
    /// cpu, cuda or auto.
    #[arg(long, env = "DRSN_DEVICE", default_value = "auto")]
    pub device: String,
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

impl TrainArgs {
    fn base_spec(&self) -> anyhow::Result<ModelSpec> {
        match &self.spec {
            Some(path) => {
                let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
                let spec: ModelSpec =
                    serde_json::from_str(&text).with_context(|| format!("{}: not a model spec", path.display()))?;
                spec.validate().with_context(|| path.display().to_string())?;
                Ok(spec)
            }
            // The class count is set from the data once it is read.
            None => ModelSpec::preset(&self.preset, self.arch, 2)
                .map_err(|e| anyhow::anyhow!("{e} (presets: {})", PRESETS.join(", "))),
        }
    }

    fn config(&self) -> anyhow::Result<TrainConfig> {
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
        };
        config.validate()?;
        Ok(config)
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.config()?;
    let mut spec = args.base_spec()?;
    let device = crate::device::parse(&args.device)?;
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    let window = spec.input_size[0] as usize;
    // Checked before minutes of training, not after.
    let machine = args.machine.machine()?;
    let mut dataset = args.data.load(window, args.sample_rate, args.seed)?;
    let open_set = if args.leave_out.is_empty() {
        None
    } else {
        let names = train::classes_named(&args.leave_out, &dataset.classes).map_err(anyhow::Error::msg)?;
        let split = train::leave_out(&dataset, &names)?;
        dataset = split.known.clone();
        eprintln!("open set: {} left out of training ({} windows)", names.join(", "), split.unknown.len());
        Some(split)
    };
    let classes = dataset.classes.len() as i64;
    if args.spec.is_none() {
        spec.classes = classes;
    } else if spec.classes != classes {
        bail!("the spec has {} classes but the data set {} ({:?})", spec.classes, classes, dataset.classes);
    }
    let normalization = match (args.normalization, spec.dim) {
        (NormalizationArg::ZScore, _) | (NormalizationArg::Auto, Dim::One) => Normalization::ZScore,
        (NormalizationArg::None, _) | (NormalizationArg::Auto, Dim::Two) => Normalization::None,
    };
    eprintln!(
        "data: {} classes; {} training, {} validation, {} test samples of shape {:?}",
        classes,
        dataset.train.len(),
        dataset.validation.len(),
        dataset.test.len(),
        dataset.train.sample_shape
    );
    let request = RunRequest {
        spec,
        config,
        normalization,
        test_noise: args.eval_noise.test_noise,
        sweep_kinds: args.eval_noise.sweep_kinds(),
        ood: args.ood.settings(),
        device,
    };

    let bar = ProgressBar::new(0);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:30}] {pos}/{len} steps, ETA {eta} {msg}")
            .expect("a valid template")
            .progress_chars("=> "),
    );
    bar.enable_steady_tick(Duration::from_millis(500));
    let mut on_progress = |p: &Progress| match p {
        Progress::Step(s) => {
            bar.set_length((s.steps_per_epoch * s.epochs) as u64);
            bar.set_position(((s.epoch - 1) * s.steps_per_epoch + s.step) as u64);
            bar.set_message(format!(
                "epoch {}/{} loss {:.4} acc {:.1}% lr {:.3e}",
                s.epoch,
                s.epochs,
                s.loss,
                100.0 * s.train_accuracy,
                s.lr
            ));
        }
        Progress::Epoch(e) => {
            let val = e.val_accuracy.map_or("n/a".into(), |v| format!("{:.2}%", 100.0 * v));
            let line = format!(
                "epoch {:>3}/{}: loss {:.4}, train {:.2}%, validation {val}, lr {:.3e}{}",
                e.epoch,
                e.epochs,
                e.loss,
                100.0 * e.train_accuracy,
                e.lr,
                if e.best { " (best)" } else { "" }
            );
            if bar.is_hidden() {
                eprintln!("{line}");
            } else {
                bar.println(line);
            }
        }
    };
    let mut outcome = train::run(&dataset, &request, &mut on_progress, &CancelToken::new())?;
    bar.finish_and_clear();
    if let Some(split) = &open_set {
        let rate = request.ood.false_alarm_rate;
        outcome.open_set = Some(train::evaluate_open_set(&outcome.model, split, normalization, rate)?);
    }

    let out = args.out.clone().unwrap_or_else(|| PathBuf::from("models").join(&args.name));
    let info = CardInfo {
        name: args.name.clone(),
        version: args.version,
        classes: dataset.classes.clone(),
        sample_rate: dataset.sample_rate,
        window: (request.spec.dim == Dim::One).then_some(WindowInfo { length: window, train_stride: args.data.stride }),
        normalization,
        data: dataset.description.clone().into(),
        metrics: outcome.metrics(&request),
        machine,
        ood: outcome.ood.clone(),
    };
    let card = write_model_folder(&out, &outcome.model, info)?;
    let r = &outcome.report;
    println!(
        "trained {} epochs in {:.1} s ({:.1} samples/s); best validation accuracy {} at epoch {}",
        r.history.len(),
        r.elapsed_s,
        r.samples_per_s,
        r.best_val_accuracy.map_or("n/a".into(), |v| format!("{:.2}%", 100.0 * v)),
        r.best_epoch
    );
    print_outcome(outcome.test.as_ref(), request.test_noise, outcome.clean_test.as_ref(), outcome.sweep.as_ref());
    if let Some(ood) = &card.ood {
        println!(
            "out of distribution: {} score, threshold {:.4} ({:.2}% of {} {} windows flagged)",
            ood.method,
            ood.threshold,
            100.0 * ood.measured_false_alarm_rate,
            ood.calibrated_on.windows,
            ood.calibrated_on.part
        );
    }
    if let Some(report) = &outcome.open_set {
        print!("{}", report.table());
    }
    println!("wrote {} (version {}, weights sha256 {})", out.display(), card.version, card.weights_sha256);
    Ok(())
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
