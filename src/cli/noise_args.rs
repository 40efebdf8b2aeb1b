//! Evaluation-noise flags shared by `drsn train` and `drsn evaluate`.

use clap::Args;

use crate::data::NoiseKind;
use crate::train::NoiseSetting;

#[derive(Debug, Args)]
pub struct EvalNoiseArgs {
    /// Fixed noise on the evaluated data, e.g. `gaussian:-4` or `uniform-pixel` (noisy-test
    /// experiments; `drsn train` puts it on validation and test data); the clean data is
    /// evaluated too.
    #[arg(long, allow_hyphen_values = true)]
    pub test_noise: Option<NoiseSetting>,
    /// Noise kinds of the SNR sweep (-5..+5 dB) on the clean evaluated data.
    #[arg(long, value_delimiter = ',', default_value = "gaussian,laplacian,pink")]
    pub sweep: Vec<NoiseKind>,
    /// Skip the SNR sweep.
    #[arg(long)]
    pub no_sweep: bool,
}

impl EvalNoiseArgs {
    /// The kinds the SNR sweep runs; none when it is skipped.
    pub fn sweep_kinds(&self) -> Vec<NoiseKind> {
        if self.no_sweep {
            Vec::new()
        } else {
            self.sweep.clone()
        }
    }
}
