use clap::Args;

use crate::nn::{Arch, ModelSpec, PRESETS};

#[derive(Debug, Args)]
pub struct SpecArgs {
    /// One of the presets (paper-1d, seed-2d, mnist-2d).
    #[arg(long, default_value = "paper-1d")]
    preset: String,
    /// resnet, drsn-cs or drsn-cw.
    #[arg(long, default_value = "drsn-cw")]
    arch: Arch,
    #[arg(long, default_value_t = 10)]
    classes: i64,
}

/// A model spec from a JSON file (as `drsn spec` prints one), checked.
pub fn read_file(path: &std::path::Path) -> anyhow::Result<ModelSpec> {
    use anyhow::Context;
    let text = std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let spec: ModelSpec =
        serde_json::from_str(&text).with_context(|| format!("{}: not a model spec", path.display()))?;
    spec.validate().with_context(|| path.display().to_string())?;
    Ok(spec)
}

pub fn run(args: SpecArgs) -> anyhow::Result<()> {
    let spec = ModelSpec::preset(&args.preset, args.arch, args.classes)
        .map_err(|e| anyhow::anyhow!("{e} (presets: {})", PRESETS.join(", ")))?;
    println!("{}", serde_json::to_string_pretty(&spec)?);
    Ok(())
}
