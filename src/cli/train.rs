//! `drsn train`: read a data set, train a network on it, evaluate it on held-out data and
//! write a model folder (weights and card) that the service loads.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::bail;
use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressStyle};

use super::data_args::DataArgs;
use super::machine_args::MachineArgs;
use super::noise_args::EvalNoiseArgs;
use super::ood_args::OodArgs;
use super::recipe_args::RecipeArgs;
use super::report::print_outcome;
use crate::data::Normalization;
use crate::nn::{Arch, Dim, ModelSpec, PRESETS};
use crate::registry::{write_model_folder, CardInfo, WindowInfo};
use crate::train::{self, CancelToken, Progress, RunRequest};

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
    /// Networks trained side by side from different initial weights, judging together by
    /// their mean logits (a seed ensemble; each costs a network's time) [default: the
    /// spec's, 1 for a preset].
    #[arg(long, env = "DRSN_MEMBERS")]
    pub members: Option<i64>,
    /// Sample rate the model works at, in Hz: recordings at other rates are resampled to it.
    #[arg(long, env = "DRSN_SAMPLE_RATE")]
    pub sample_rate: Option<u32>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
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
    /// cpu, cuda or auto.
    #[arg(long, env = "DRSN_DEVICE", default_value = "auto")]
    pub device: String,
}

impl TrainArgs {
    fn base_spec(&self) -> anyhow::Result<ModelSpec> {
        let mut spec = match &self.spec {
            Some(path) => super::spec::read_file(path)?,
            // The class count is set from the data once it is read.
            None => ModelSpec::preset(&self.preset, self.arch, 2)
                .map_err(|e| anyhow::anyhow!("{e} (presets: {})", PRESETS.join(", ")))?,
        };
        if let Some(members) = self.members {
            spec.members = members;
            spec.validate()?;
        }
        Ok(spec)
    }
}

pub fn run(args: TrainArgs) -> anyhow::Result<()> {
    let config = args.recipe.config()?;
    let mut spec = args.base_spec()?;
    let device = crate::device::parse(&args.device)?;
    if let Some(t) = args.recipe.threads {
        tch::set_num_threads(t as i32);
    }
    let window = spec.input_size[0] as usize;
    // Checked before minutes of training, not after.
    let machine = args.machine.machine()?;
    let mut dataset = args.data.load(window, args.sample_rate, args.recipe.seed)?;
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
