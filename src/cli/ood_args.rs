//! Out-of-distribution flags shared by `drsn train` and `drsn calibrate`.

use clap::Args;

use crate::ood::{OodMethod, DEFAULT_FALSE_ALARM_RATE};
use crate::train::OodSettings;

#[derive(Debug, Args)]
pub struct OodArgs {
    /// The out-of-distribution score: max-softmax, energy, mahalanobis or mahalanobis-stages.
    #[arg(long, env = "DRSN_OOD_METHOD", default_value_t = OodMethod::default())]
    pub ood_method: OodMethod,
    /// Share of held-out in-distribution windows the threshold may flag.
    #[arg(long, env = "DRSN_FALSE_ALARM_RATE", default_value_t = DEFAULT_FALSE_ALARM_RATE)]
    pub false_alarm_rate: f64,
}

impl OodArgs {
    pub fn settings(&self) -> OodSettings {
        OodSettings { method: self.ood_method, false_alarm_rate: self.false_alarm_rate }
    }
}
