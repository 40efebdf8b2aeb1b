//! `drsn compare`: which network for this data? Several architectures trained with the same
//! data, split and recipe over several seeds, judged clean and under noise on the same test
//! windows; the report gives mean and spread, paired intervals for the differences, cost,
//! and a recommendation.

use clap::Args;

use super::data_args::DataArgs;
use super::recipe_args::RecipeArgs;
use crate::data::{NoiseKind, Normalization};
use crate::nn::{Arch, ModelSpec};
use crate::train::{self, CancelToken, Candidate, RunRequest, Watch};

#[derive(Debug, Args)]
pub struct CompareArgs {
    #[command(flatten)]
    pub data: DataArgs,
    /// The architectures to compare (with --preset).
    #[arg(long, value_delimiter = ',', default_value = "drsn-cw,drsn-cs,resnet")]
    pub archs: Vec<Arch>,
    #[arg(long, default_value = "paper-1d")]
    pub preset: String,
    /// A network of your own besides the architectures, `NAME=SPEC.json` (as `drsn spec`
    /// prints one; same input as the preset, class count taken from the data); repeatable.
    #[arg(long = "candidate", value_name = "NAME=SPEC.json")]
    pub candidates: Vec<String>,
    /// Sample rate the models work at, in Hz.
    #[arg(long)]
    pub sample_rate: Option<u32>,
    /// Seeds: each network is trained once per seed (0, 1, ... this many).
    #[arg(long, default_value_t = 3)]
    pub seeds: u64,
    /// Noise kinds of the test conditions (besides clean).
    #[arg(long, value_delimiter = ',', default_value = "gaussian,laplacian,pink")]
    pub noise: Vec<NoiseKind>,
    /// SNRs of the test conditions, dB.
    #[arg(long, value_delimiter = ',', default_value = "-4,-8", allow_hyphen_values = true)]
    pub snr: Vec<f64>,
    #[command(flatten)]
    pub recipe: RecipeArgs,
    /// Print the report as JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    #[arg(long, env = "DRSN_DEVICE", default_value = "auto")]
    pub device: String,
}

pub fn run(args: CompareArgs) -> anyhow::Result<()> {
    let config = args.recipe.config()?;
    let device = crate::device::parse(&args.device)?;
    if let Some(t) = args.recipe.threads {
        tch::set_num_threads(t as i32);
    }
    anyhow::ensure!(args.seeds >= 1, "--seeds must be at least 1");
    let probe = ModelSpec::preset(&args.preset, Arch::DrsnCw, 2)?;
    let window = probe.input_size.first().map_or(2048, |&l| l as usize);
    // The split is the same for every network and seed: the data's seed is the recipe's.
    let dataset = args.data.load(window, args.sample_rate, args.recipe.seed)?;
    let classes = dataset.classes.len() as i64;
    let mut candidates = args
        .archs
        .iter()
        .map(|&arch| Ok(Candidate { name: arch.to_string(), spec: ModelSpec::preset(&args.preset, arch, classes)? }))
        .collect::<anyhow::Result<Vec<_>>>()?;
    for text in &args.candidates {
        let (name, path) =
            text.split_once('=').ok_or_else(|| anyhow::anyhow!("--candidate {text:?}: give NAME=SPEC.json"))?;
        let mut spec = super::spec::read_file(std::path::Path::new(path))?;
        anyhow::ensure!(
            spec.dim == probe.dim && spec.input_size == probe.input_size && spec.in_channels == probe.in_channels,
            "--candidate {name}: its input ({:?} x {}) is not the preset's ({:?} x {})",
            spec.input_size,
            spec.in_channels,
            probe.input_size,
            probe.in_channels
        );
        anyhow::ensure!(candidates.iter().all(|c| c.name != name), "--candidate {name}: the name is taken");
        spec.classes = classes;
        candidates.push(Candidate { name: name.to_string(), spec });
    }
    anyhow::ensure!(candidates.len() >= 2, "a comparison needs two networks or more");
    let normalization = if probe.dim == crate::nn::Dim::One { Normalization::ZScore } else { Normalization::None };
    let request = RunRequest {
        spec: candidates[0].spec.clone(),
        config,
        normalization,
        test_noise: None,
        sweep_kinds: Vec::new(),
        ood: Default::default(),
        device,
    };
    let seeds: Vec<u64> = (0..args.seeds).collect();
    let conditions = train::conditions(&args.noise, &args.snr);
    eprintln!(
        "data: {} classes; {} training, {} validation, {} test windows; {} networks x {} seeds",
        classes,
        dataset.train.len(),
        dataset.validation.len(),
        dataset.test.len(),
        candidates.len(),
        seeds.len()
    );
    let report = train::compare(
        &dataset,
        &candidates,
        &request,
        &seeds,
        &conditions,
        &mut |watch| {
            if let Watch::Stage(stage) = watch {
                eprintln!("{stage}");
            }
        },
        &CancelToken::new(),
    )?
    .report;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.table());
    }
    Ok(())
}
