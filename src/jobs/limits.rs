//! What one job may ask for, so that no job can take the machine's memory or hold a worker
//! for days: the stride and number of windows (memory), windows times epochs (time), and
//! the size of a custom network.

use crate::nn::{Dim, ModelSpec};

use super::request::Invalid;

/// Bounds on a job's data, training and network.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct JobLimits {
    /// Smallest training stride, in samples.
    pub min_stride: usize,
    /// Most windows (or images) the job may load, all parts together.
    pub max_windows: usize,
    /// Most training and validation windows times epochs.
    pub max_window_epochs: u64,
    /// Most channels anywhere in a custom network (input, stem, stages).
    pub max_channels: i64,
    /// Most residual units in all stages (and all members of an ensemble) together.
    pub max_units: i64,
    /// Most stages.
    pub max_stages: usize,
    /// Widest kernel and largest stride.
    pub max_kernel: i64,
    /// Longest 1-D window, in samples.
    pub max_length: i64,
    /// Widest or tallest 2-D input, in pixels.
    pub max_side: i64,
    /// Most classes.
    pub max_classes: i64,
}

impl Default for JobLimits {
    fn default() -> Self {
        JobLimits {
            min_stride: 16,
            max_windows: 250_000,
            max_window_epochs: 50_000_000,
            max_channels: 512,
            max_units: 64,
            max_stages: 16,
            max_kernel: 63,
            max_length: 65_536,
            max_side: 1024,
            max_classes: 1000,
        }
    }
}

/// Most features the out-of-distribution score may read (every member's stage widths and
/// last width side by side): its Gaussian fit holds several square matrices of this side.
/// The largest single network the other bounds allow (16 stages of 512 channels) reads 8704.
pub const MAX_SCORE_FEATURES: i64 = 8704;

fn over(field: &'static str, what: &str, value: impl std::fmt::Display, limit: impl std::fmt::Display) -> Invalid {
    Invalid { field, problem: format!("{what} {value} is over the limit of {limit}") }
}

impl JobLimits {
    /// Checks a network's size (presets pass; custom specs may not).
    pub fn check_spec(&self, spec: &ModelSpec) -> Result<(), Invalid> {
        let side = match spec.dim {
            Dim::One => self.max_length,
            Dim::Two => self.max_side,
        };
        if let Some(&s) = spec.input_size.iter().find(|&&s| s > side) {
            return Err(over("spec.input_size", "an input size of", s, side));
        }
        let widths = std::iter::once(spec.in_channels)
            .chain(std::iter::once(spec.stem.channels))
            .chain(spec.stages.iter().map(|s| s.channels));
        if let Some(c) = widths.max().filter(|&c| c > self.max_channels) {
            return Err(over("spec", "a width of", format!("{c} channels"), self.max_channels));
        }
        if spec.stages.len() > self.max_stages {
            return Err(over("spec.stages", "a count of", spec.stages.len(), self.max_stages));
        }
        let units = spec.stages.iter().map(|s| s.units.max(0)).fold(0i64, i64::saturating_add);
        let units = units.saturating_mul(spec.members.max(1));
        if units > self.max_units {
            return Err(over("spec.stages", "a total of", format!("{units} units"), self.max_units));
        }
        let steps =
            [spec.kernel, spec.stem.kernel, spec.stem.stride].into_iter().chain(spec.stages.iter().map(|s| s.stride));
        if let Some(k) = steps.max().filter(|&k| k > self.max_kernel) {
            return Err(over("spec", "a kernel or stride of", k, self.max_kernel));
        }
        let last = spec.stages.last().map_or(0, |s| s.channels);
        let features = spec.stages.iter().map(|s| s.channels.max(0)).fold(last.max(0), i64::saturating_add);
        let features = features.saturating_mul(spec.members.max(1));
        if features > MAX_SCORE_FEATURES {
            return Err(over("spec", "an ensemble reading", format!("{features} features"), MAX_SCORE_FEATURES));
        }
        if spec.classes > self.max_classes {
            return Err(over("spec.classes", "a count of", spec.classes, self.max_classes));
        }
        Ok(())
    }

    pub fn check_stride(&self, stride: usize) -> Result<(), Invalid> {
        if stride < self.min_stride {
            return Err(Invalid {
                field: "data.train_stride",
                problem: format!(
                    "{stride} is under the smallest stride allowed, {} (--job-min-stride)",
                    self.min_stride
                ),
            });
        }
        Ok(())
    }

    /// Checks training and validation windows times epochs (times runs and ensemble members)
    /// once the data is known.
    pub fn check_work(&self, windows: usize, epochs: usize) -> Result<(), Invalid> {
        let work = (windows as u64).saturating_mul(epochs as u64);
        if work > self.max_window_epochs {
            return Err(Invalid {
                field: "train.epochs",
                problem: format!(
                    "{windows} training and validation windows x {epochs} epochs = {work}, over the limit of {} (--job-max-window-epochs)",
                    self.max_window_epochs
                ),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::Arch;

    #[test]
    fn presets_pass_and_oversized_specs_are_refused_by_name() {
        let l = JobLimits::default();
        for preset in crate::nn::PRESETS {
            assert!(l.check_spec(&ModelSpec::preset(preset, Arch::DrsnCw, 10).unwrap()).is_ok(), "{preset}");
        }
        let mut wide = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        wide.stages[2].channels = 4096;
        assert!(l.check_spec(&wide).unwrap_err().problem.contains("4096 channels"));
        let mut long = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        long.input_size = vec![1 << 40];
        assert!(l.check_spec(&long).unwrap_err().problem.contains("65536"));
        let mut deep = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        deep.stages[0].units = 1000;
        assert!(l.check_spec(&deep).unwrap_err().problem.contains("units"));
        // 12 units a member.
        let mut ensemble = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        ensemble.members = 5;
        assert!(l.check_spec(&ensemble).is_ok());
        ensemble.members = 6;
        assert!(l.check_spec(&ensemble).unwrap_err().problem.contains("72 units"));
        let mut wide = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        wide.stages = vec![crate::nn::StageSpec { channels: 512, units: 1, stride: 1 }; 8];
        assert!(l.check_spec(&wide).is_ok(), "8 x 512 + 512 features");
        wide.members = 2;
        assert!(l.check_spec(&wide).unwrap_err().problem.contains("9216 features"));
        assert!(l.check_stride(1).unwrap_err().problem.contains("--job-min-stride"));
        assert!(l.check_work(100_000, 1000).unwrap_err().problem.contains("--job-max-window-epochs"));
        assert!(l.check_work(10_000, 40).is_ok());
    }
}
