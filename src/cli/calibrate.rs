//! `drsn calibrate`: fits and thresholds a model folder's out-of-distribution score on a
//! data set read as training read it, and rewrites its card (the weights stay as they are).

use std::path::PathBuf;

use clap::Args;

use super::data_args::DataArgs;
use super::evaluate::{load, Loaded};
use super::ood_args::OodArgs;
use crate::data::noise::noisy_copy;
use crate::train::{calibrate, NoiseSetting, VALIDATION_NOISE_SEED};

#[derive(Debug, Args)]
pub struct CalibrateArgs {
    /// A model folder (card.json and weights.safetensors); its card is rewritten.
    #[arg(long, env = "DRSN_MODEL")]
    pub model: PathBuf,
    #[command(flatten)]
    pub data: DataArgs,
    /// Seed of the split [default: the one the card records, so that the validation part
    /// is the one training held out]. `--validation-stride` likewise defaults to the card's,
    /// so a model is recalibrated on the windows it was calibrated on.
    #[arg(long, env = "DRSN_SEED")]
    pub seed: Option<u64>,
    #[command(flatten)]
    pub ood: OodArgs,
    /// Fixed noise on the validation windows, e.g. `uniform-pixel`: for a model meant for
    /// noisy inputs, as `drsn train --test-noise` judged it.
    #[arg(long, allow_hyphen_values = true)]
    pub test_noise: Option<NoiseSetting>,
    #[arg(long, env = "DRSN_TORCH_THREADS")]
    pub threads: Option<usize>,
    #[arg(long, env = "DRSN_DEVICE", default_value = "auto")]
    pub device: String,
}

pub fn run(args: CalibrateArgs) -> anyhow::Result<()> {
    if let Some(t) = args.threads {
        tch::set_num_threads(t as i32);
    }
    let device = crate::device::parse(&args.device)?;
    let Loaded { mut card, model, dataset, seed } = load(&args.model, &args.data, args.seed, device)?;
    let source = Some(args.data.data.display().to_string());
    let validation = match args.test_noise {
        Some(n) => noisy_copy(&dataset.validation, n.kind, n.snr_db, seed ^ VALIDATION_NOISE_SEED),
        None => dataset.validation.clone(),
    };
    let ood =
        calibrate(&model, &dataset.train, &validation, card.normalization, args.ood.settings(), "validation", source)?;
    println!(
        "{} v{}: {} score, threshold {:.4}, {:.2}% of {} validation windows flagged (aimed for {:.2}%)",
        card.name,
        card.version,
        ood.method,
        ood.threshold,
        100.0 * ood.measured_false_alarm_rate,
        ood.calibrated_on.windows,
        100.0 * ood.false_alarm_rate
    );
    card.ood = Some(ood);
    card.write(&args.model)?;
    println!("rewrote {}", args.model.join(crate::registry::CARD_FILE).display());
    Ok(())
}
