//! `drsn evaluate`: a model folder (or several, judging by their mean logits) against
//! a data set: accuracy, per-class precision and recall, the confusion matrix and the SNR
//! sweep.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use clap::{Args, ValueEnum};

use super::data_args::DataArgs;
use super::noise_args::EvalNoiseArgs;
use super::report::print_outcome;
use crate::data::noise::noisy_copy;
use crate::data::{Dataset, Samples};
use crate::nn::Model;
use crate::ood::exceeding_share;
use crate::registry::{ModelCard, WEIGHTS_FILE};
use crate::train::{
    evaluate_ensemble, paper_snrs, score_samples, snr_sweep, CancelToken, SWEEP_NOISE_SEED, TEST_NOISE_SEED,
};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SplitArg {
    /// The test part, as `drsn train` split the same data with the same seed and fractions.
    Test,
    Validation,
    Train,
    /// Every sample: for data the model never saw (another load, another machine).
    All,
}

#[derive(Debug, Args)]
pub struct EvaluateArgs {
    /// A model folder (card.json and weights.safetensors). Given more than once (or as a
    /// comma-separated list), the models judge together by their mean logits (a seed
    /// ensemble); they must share classes, window, rate and normalisation.
    #[arg(long, env = "DRSN_MODEL", required = true, value_delimiter = ',')]
    pub model: Vec<PathBuf>,
    #[command(flatten)]
    pub data: DataArgs,
    /// Which part of the data to evaluate on.
    #[arg(long, value_enum, default_value = "test")]
    pub split: SplitArg,
    /// Seed of the split and of all noise [default: the split seed the (first) model's card
    /// records, so that `--split test` is the part its training held out].
    #[arg(long, env = "DRSN_SEED")]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub eval_noise: EvalNoiseArgs,
    /// Print the results as one JSON object instead of tables.
    #[arg(long)]
    pub json: bool,
    #[arg(long, env = "DRSN_TORCH_THREADS")]
    pub threads: Option<usize>,
    #[arg(long, env = "DRSN_DEVICE", default_value = "auto")]
    pub device: String,
}

/// Appends `more` to `all`, relabelling through `map` (data-set label -> model label).
fn append(all: &mut Samples, more: &Samples, map: &[i64]) {
    if all.sample_shape.is_empty() {
        all.sample_shape = more.sample_shape.clone();
    }
    all.values.extend_from_slice(&more.values);
    all.labels.extend(more.labels.iter().map(|&l| map[l as usize]));
}

/// A model folder and the data set it is judged on, read as training read it (window,
/// rate, split seed), with the data's labels turned into the model's.
pub(super) struct Loaded {
    pub card: ModelCard,
    pub model: Model,
    pub dataset: Dataset,
    /// The split's seed: the one asked for, else the one the card records.
    pub seed: u64,
}

/// `seed` (of the split) and `data`'s validation stride default to what the card records,
/// so that the data is split into the parts training used and held-out windows are held
/// out; `None` where the card records none either means seed 0, as training's default.
pub(super) fn load(
    model_dir: &Path,
    data: &DataArgs,
    seed: Option<u64>,
    device: tch::Device,
) -> anyhow::Result<Loaded> {
    let card = ModelCard::read(model_dir)?;
    let model = Model::load(&card.spec, &model_dir.join(WEIGHTS_FILE), device)?;
    let window = card.window.as_ref().map_or(card.spec.input_size[0] as usize, |w| w.length);
    let trained = &card.data.description;
    let seed = seed.or(trained.split.as_ref().map(|s| s.seed)).unwrap_or_default();
    let data = DataArgs { validation_stride: data.validation_stride.or(trained.validation_stride), ..data.clone() };
    let dataset = data.load(window, card.sample_rate, seed)?;
    // The data set's classes may be fewer or in another order than the model's.
    let map = dataset
        .classes
        .iter()
        .map(|c| {
            card.classes.iter().position(|k| k == c).map(|i| i as i64).with_context(|| {
                format!("class {c:?} of the data is not one of the model's classes {:?}", card.classes)
            })
        })
        .collect::<anyhow::Result<Vec<i64>>>()?;
    let relabel = |part: &Samples| {
        let mut out = Samples::default();
        append(&mut out, part, &map);
        out
    };
    let dataset = Dataset {
        classes: card.classes.clone(),
        train: relabel(&dataset.train),
        validation: relabel(&dataset.validation),
        test: relabel(&dataset.test),
        ..dataset
    };
    Ok(Loaded { card, model, dataset, seed })
}

/// A further member of an ensemble: its card must read the data as the first's does and,
/// unless every sample is judged (`same_split`), have been split the same way: otherwise
/// one model's held-out windows were another's training windows.
fn member(first: &ModelCard, dir: &Path, same_split: bool, device: tch::Device) -> anyhow::Result<Model> {
    let card = ModelCard::read(dir)?;
    if same_split && card.data.description.split != first.data.description.split {
        bail!(
            "{} was split otherwise than the first model (another seed or fractions): its held-out windows \
             may be the others' training windows; judge an ensemble of separately trained models with \
             --split all on data none of them trained on",
            dir.display()
        );
    }
    let same = card.classes == first.classes
        && card.sample_rate == first.sample_rate
        && card.normalization == first.normalization
        && card.spec.sample_shape() == first.spec.sample_shape();
    if !same {
        bail!(
            "{} does not judge like the first model (classes, sample rate, normalisation and window must match)",
            dir.display()
        );
    }
    Ok(Model::load(&card.spec, &dir.join(WEIGHTS_FILE), device)?)
}

pub fn run(args: EvaluateArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    let device = crate::device::parse(&args.device)?;
    let (first, others) = args.model.split_first().context("--model names no model folder")?;
    let Loaded { card, model, dataset, seed } = load(first, &args.data, args.seed, device)?;
    let mut members = vec![model];
    for dir in others {
        members.push(member(&card, dir, args.split != SplitArg::All, device)?);
    }
    let models: Vec<&Model> = members.iter().collect();
    let parts = match args.split {
        SplitArg::Test => vec![&dataset.test],
        SplitArg::Validation => vec![&dataset.validation],
        SplitArg::Train => vec![&dataset.train],
        SplitArg::All => vec![&dataset.train, &dataset.validation, &dataset.test],
    };
    let identity: Vec<i64> = (0..card.classes.len() as i64).collect();
    let mut samples = Samples::default();
    for part in parts {
        append(&mut samples, part, &identity);
    }
    if samples.is_empty() {
        bail!("the {:?} part of {} holds no samples", args.split, args.data.data.display());
    }
    let noise = &args.eval_noise;
    let noisy = noise.test_noise.map(|n| noisy_copy(&samples, n.kind, n.snr_db, seed ^ TEST_NOISE_SEED));
    let judge = |samples: &Samples| evaluate_ensemble(&models, samples, card.normalization, &card.classes);
    let test = judge(noisy.as_ref().unwrap_or(&samples))?;
    let clean = noisy.is_some().then(|| judge(&samples)).transpose()?;
    // Each card's threshold is calibrated on its own scores: no share for an ensemble.
    let flagged = card
        .ood
        .as_ref()
        .filter(|_| models.len() == 1)
        .map(|ood| {
            let scores = score_samples(models[0], noisy.as_ref().unwrap_or(&samples), card.normalization, ood)?;
            anyhow::Ok(exceeding_share(&scores, ood.threshold))
        })
        .transpose()?;
    let kinds = noise.sweep_kinds();
    let sweep = (!kinds.is_empty())
        .then(|| {
            snr_sweep(
                &models,
                &samples,
                card.normalization,
                &kinds,
                &paper_snrs(),
                seed ^ SWEEP_NOISE_SEED,
                &CancelToken::new(),
            )
        })
        .transpose()?;
    if args.json {
        let json = serde_json::json!({
            "model": card.name,
            "version": card.version,
            "models": args.model,
            "split": format!("{:?}", args.split).to_lowercase(),
            "test": test,
            "test_noise": noise.test_noise,
            "clean_test": clean,
            "snr_sweep": sweep,
            "out_of_distribution_share": flagged,
        });
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else {
        let ensemble =
            if models.len() > 1 { format!(" and {} more (mean logits)", models.len() - 1) } else { String::new() };
        println!(
            "model {} version {}{ensemble} on {} ({:?} part)",
            card.name,
            card.version,
            args.data.data.display(),
            args.split
        );
        print_outcome(Some(&test), noise.test_noise, clean.as_ref(), sweep.as_ref());
        if let (Some(share), Some(ood)) = (flagged, &card.ood) {
            println!(
                "out of distribution: {:.2}% of {} windows flagged ({} score, calibrated for {:.1}% false alarms)",
                100.0 * share,
                test.samples,
                ood.method,
                100.0 * ood.false_alarm_rate
            );
        }
    }
    Ok(())
}
