//! The command line: one sub-module per sub-command. Every flag is also an env var.

mod serve;
mod spec;

use clap::{Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(name = "drsn", version, about = "Fault diagnosis with Deep Residual Shrinkage Networks")]
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
    /// Print a preset's model spec as JSON (a starting point for custom networks).
    Spec(spec::SpecArgs),
}

impl Command {
    pub fn run(self) -> anyhow::Result<()> {
        match self {
            Command::Serve(args) => serve::run(*args),
            Command::Spec(args) => spec::run(args),
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
