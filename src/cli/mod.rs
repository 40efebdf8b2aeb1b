//! The command line: one sub-module per sub-command. Every flag is also an env var.

mod adapt;
mod analyze;
mod calibrate;
mod compare;
mod data_args;
mod evaluate;
mod export;
mod healthcheck;
mod limit_args;
mod machine_args;
mod noise_args;
mod ood_args;
mod recipe_args;
mod report;
mod serve;
mod spec;
mod train;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "drsn", version, about = "Fault diagnosis with Deep Residual Shrinkage Networks")]
// A flag given twice (say, a script's default then the user's) takes the last value.
#[command(args_override_self = true)]
pub struct Cli {
    /// Log lines as human-readable text or as JSON objects.
    #[arg(long, env = "DRSN_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text, global = true)]
    pub log_format: LogFormat,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Serve every model over HTTP (diagnosis, models, health, metrics, OpenAPI at /docs).
    Serve(Box<serve::ServeArgs>),
    /// Ask a running service whether it is ready (exit 0) or not (exit 1); for container
    /// health checks.
    Healthcheck(healthcheck::HealthcheckArgs),
    /// Print a preset's model spec as JSON (a starting point for custom networks).
    Spec(spec::SpecArgs),
    /// Train a model on a data set, evaluate it on held-out data, write its model folder.
    Train(Box<train::TrainArgs>),
    /// Evaluate a model folder on a data set: accuracy, per-class table, confusion, SNR sweep.
    Evaluate(Box<evaluate::EvaluateArgs>),
    /// Fit and threshold a model folder's out-of-distribution score ("I don't know") on a
    /// data set, at a chosen false-alarm rate; rewrites its card.
    Calibrate(Box<calibrate::CalibrateArgs>),
    /// Which network for this data: several architectures over several seeds, judged clean
    /// and under noise on the same test windows, with paired intervals and a recommendation.
    Compare(Box<compare::CompareArgs>),
    /// Adapt a model folder to another machine or sensor with its unlabelled windows
    /// (re-estimated batch-norm statistics, AdaBN); writes a new folder.
    Adapt(Box<adapt::AdaptArgs>),
    /// The physics evidence on a recording (shaft speed, envelope spectrum, defect
    /// frequencies) or on every recording of a manifest against its labels.
    Analyze(Box<analyze::AnalyzeArgs>),
    /// Write a model folder's network, with its weights, as an ONNX graph (the one the
    /// service runs on ONNX Runtime), to run or inspect with any ONNX tool.
    ExportOnnx(export::ExportArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(args) => serve::run(*args),
            Command::Spec(args) => spec::run(args),
            Command::Train(args) => train::run(*args),
            Command::Evaluate(args) => evaluate::run(*args),
            Command::Healthcheck(args) => healthcheck::run(args),
            Command::Analyze(args) => analyze::run(*args),
            Command::Calibrate(args) => calibrate::run(*args),
            Command::Adapt(args) => adapt::run(*args),
            Command::Compare(args) => compare::run(*args),
            Command::ExportOnnx(args) => export::run(args),
        }
    }
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_tracing(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
