use std::path::PathBuf;

use anyhow::Context;
use clap::Args;
use tch::Device;

use crate::nn::Model;
use crate::registry::{ModelCard, WEIGHTS_FILE};

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// A model folder (card.json and weights.safetensors).
    #[arg(long, env = "DRSN_MODEL")]
    model: PathBuf,
    /// Where to write the `.onnx` file.
    #[arg(long)]
    out: PathBuf,
    /// Also output every shrinkage unit's thresholds, scales, mean |x| and zeroed share
    /// (`units.{i}.{what}`, `members.{m}.units.{i}.{what}` in an ensemble), besides `logits`,
    /// `features` and `stage_features`.
    #[arg(long, env = "DRSN_DIAGNOSTICS")]
    diagnostics: bool,
}

pub fn run(args: ExportArgs) -> anyhow::Result<()> {
    let card = ModelCard::read(&args.model)?;
    let model = Model::load(&card.spec, &args.model.join(WEIGHTS_FILE), Device::Cpu)?;
    let (bytes, _) = crate::onnx::export(&model, args.diagnostics)?;
    std::fs::write(&args.out, &bytes).with_context(|| format!("writing {}", args.out.display()))?;
    let shape: Vec<String> = card.spec.sample_shape().iter().map(i64::to_string).collect();
    println!("{}: {} bytes, input `windows` of shape [batch, {}]", args.out.display(), bytes.len(), shape.join(", "));
    Ok(())
}
