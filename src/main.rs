use clap::Parser;

fn main() -> anyhow::Result<()> {
    let cli = drsn::cli::Cli::parse();
    drsn::cli::init_tracing(cli.log_format);
    cli.command.run()
}
