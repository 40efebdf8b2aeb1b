//! `drsn adapt`: a model folder adapted to another machine or sensor with that machine's
//! windows, unlabelled (AdaBN); written as a new folder. When the target data has labels,
//! its test part measures the accuracy before and after (they play no part in adapting).

use std::path::PathBuf;

use clap::Args;

use super::data_args::DataArgs;
use super::evaluate::{load, Loaded};
use super::ood_args::OodArgs;
use crate::registry::{write_model_folder, CardInfo};
use crate::train::{adapt_batch_norm, evaluate, recalibrate_unlabelled, CancelToken, RunMetrics};

#[derive(Debug, Args)]
pub struct AdaptArgs {
    /// The model folder to adapt (left as it is).
    #[arg(long, env = "DRSN_MODEL")]
    pub model: PathBuf,
    /// The target machine's data: its training and validation parts adapt the model, its
    /// test part measures it.
    #[command(flatten)]
    pub data: DataArgs,
    /// Where the adapted model folder goes.
    #[arg(long, env = "DRSN_MODEL_OUT")]
    pub out: PathBuf,
    /// The adapted version's number [default: the source's + 1].
    #[arg(long)]
    pub version: Option<u32>,
    #[arg(long, env = "DRSN_SEED", default_value_t = 0)]
    pub seed: u64,
    #[command(flatten)]
    pub ood: OodArgs,
    #[arg(long, env = "DRSN_TORCH_THREADS")]
    pub threads: Option<usize>,
    #[arg(long, env = "DRSN_DEVICE", default_value = "auto")]
    pub device: String,
}

pub fn run(args: AdaptArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    let device = crate::device::parse(&args.device)?;
    // The target machine's data was never split by training: the seed is this command's.
    let Loaded { card, mut model, dataset, .. } = load(&args.model, &args.data, Some(args.seed), device)?;
    let norm = card.normalization;
    let has_test = !dataset.test.is_empty();
    let before = has_test.then(|| evaluate(&model, &dataset.test, norm, &card.classes)).transpose()?;
    let report = adapt_batch_norm(&mut model, &dataset.train, norm, args.seed, &CancelToken::new())?;
    let after = has_test.then(|| evaluate(&model, &dataset.test, norm, &card.classes)).transpose()?;
    let source = Some(args.data.data.display().to_string());
    let ood = recalibrate_unlabelled(&model, &dataset.train, &dataset.validation, norm, args.ood.settings(), source)?;
    println!(
        "adapted {} v{} with {} unlabelled target windows ({} batch-norm passes)",
        card.name, card.version, report.windows, report.passes
    );
    if let (Some(before), Some(after)) = (&before, &after) {
        println!(
            "target test windows ({}): accuracy {:.2}% before, {:.2}% after",
            after.samples,
            100.0 * before.accuracy,
            100.0 * after.accuracy
        );
    }
    let info = CardInfo {
        name: card.name.clone(),
        version: args.version.unwrap_or(card.version + 1),
        classes: card.classes.clone(),
        sample_rate: card.sample_rate,
        window: card.window.clone(),
        normalization: norm,
        data: dataset.description.clone().into(),
        metrics: RunMetrics { test: after, adaptation: Some(report), ..Default::default() },
        machine: card.machine.clone(),
        ood: Some(ood),
    };
    let written = write_model_folder(&args.out, &model, info)?;
    println!("wrote {} (version {})", args.out.display(), written.version);
    Ok(())
}
