//! The serialisable description of a network: architecture, dimension, input shape,
//! stem, stages and classes. Presets are plain values of this type.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use super::NnError;

/// Which residual unit the network is built from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Arch {
    /// Pre-activation ResNet: the same units without shrinkage.
    Resnet,
    /// Deep residual shrinkage network, one threshold shared by all channels.
    DrsnCs,
    /// Deep residual shrinkage network, one threshold per channel.
    DrsnCw,
}

impl Arch {
    pub fn has_shrinkage(self) -> bool {
        !matches!(self, Arch::Resnet)
    }
}

impl std::fmt::Display for Arch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Arch::Resnet => "resnet",
            Arch::DrsnCs => "drsn-cs",
            Arch::DrsnCw => "drsn-cw",
        })
    }
}

impl std::str::FromStr for Arch {
    type Err = NnError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "resnet" => Ok(Arch::Resnet),
            "drsn-cs" => Ok(Arch::DrsnCs),
            "drsn-cw" => Ok(Arch::DrsnCw),
            other => Err(NnError::Spec(format!("unknown architecture {other:?}; expected resnet, drsn-cs or drsn-cw"))),
        }
    }
}

/// Signal windows (`N x C x L`) or images (`N x C x H x W`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub enum Dim {
    #[serde(rename = "1d")]
    One,
    #[serde(rename = "2d")]
    Two,
}

impl Dim {
    /// Number of spatial axes.
    pub fn spatial(self) -> usize {
        match self {
            Dim::One => 1,
            Dim::Two => 2,
        }
    }
}

/// The first convolution, before any residual unit.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StemSpec {
    pub channels: i64,
    pub kernel: i64,
    pub stride: i64,
}

/// A run of residual units at one width; the first unit applies `stride`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StageSpec {
    pub channels: i64,
    pub units: i64,
    pub stride: i64,
}

/// Everything needed to build a network and to check inputs and weights against it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct ModelSpec {
    pub arch: Arch,
    pub dim: Dim,
    pub in_channels: i64,
    /// `[length]` for 1-D, `[height, width]` for 2-D.
    pub input_size: Vec<i64>,
    pub stem: StemSpec,
    pub stages: Vec<StageSpec>,
    pub classes: i64,
    /// Kernel width of the convolutions inside residual units.
    #[serde(default = "default_kernel")]
    pub kernel: i64,
    /// Networks of this shape trained side by side from different initial weights, judging
    /// by their mean logits (an ensemble); 1 (the default) is a single network.
    #[serde(default = "one_member", skip_serializing_if = "is_one_member")]
    pub members: i64,
}

fn default_kernel() -> i64 {
    3
}

fn one_member() -> i64 {
    1
}

fn is_one_member(members: &i64) -> bool {
    *members == 1
}

/// Most members of an ensemble: each costs a whole network's time and memory.
pub const MAX_MEMBERS: i64 = 8;

/// Names accepted by [`ModelSpec::preset`].
pub const PRESETS: &[&str] = &["paper-1d", "seed-2d", "mnist-2d"];

impl ModelSpec {
    /// A named preset with the given architecture and number of classes.
    ///
    /// - `paper-1d`: the paper's Table II network, 1 x 2048, stem 4@3 stride 2, three
    ///   stages of four units (the first with stride 2) at 4, 8 and 16 channels.
    /// - `seed-2d`: the seed's MNIST network, 1 x 28 x 28, stem 8@3, one unit of 8
    ///   channels with stride 2.
    /// - `mnist-2d`: a deeper 2-D net for the shipped MNIST model (8, 16, 32 channels).
    pub fn preset(name: &str, arch: Arch, classes: i64) -> Result<Self, NnError> {
        let stage = |channels, units, stride| StageSpec { channels, units, stride };
        let spec = match name {
            "paper-1d" => ModelSpec {
                arch,
                dim: Dim::One,
                in_channels: 1,
                input_size: vec![2048],
                stem: StemSpec { channels: 4, kernel: 3, stride: 2 },
                stages: vec![stage(4, 4, 2), stage(8, 4, 2), stage(16, 4, 2)],
                classes,
                kernel: 3,
                members: 1,
            },
            "seed-2d" => ModelSpec {
                arch,
                dim: Dim::Two,
                in_channels: 1,
                input_size: vec![28, 28],
                stem: StemSpec { channels: 8, kernel: 3, stride: 1 },
                stages: vec![stage(8, 1, 2)],
                classes,
                kernel: 3,
                members: 1,
            },
            "mnist-2d" => ModelSpec {
                arch,
                dim: Dim::Two,
                in_channels: 1,
                input_size: vec![28, 28],
                stem: StemSpec { channels: 8, kernel: 3, stride: 1 },
                stages: vec![stage(8, 1, 1), stage(16, 1, 2), stage(32, 1, 2)],
                classes,
                kernel: 3,
                members: 1,
            },
            other => {
                return Err(NnError::Spec(format!("unknown preset {other:?}; expected one of {}", PRESETS.join(", "))))
            }
        };
        Ok(spec)
    }

    /// Checks that the spec describes a network that can be built.
    pub fn validate(&self) -> Result<(), NnError> {
        let bad = |msg: String| Err(NnError::Spec(msg));
        if self.input_size.len() != self.dim.spatial() {
            return bad(format!(
                "input_size {:?} has {} axes but a {} model needs {}",
                self.input_size,
                self.input_size.len(),
                if self.dim == Dim::One { "1d" } else { "2d" },
                self.dim.spatial()
            ));
        }
        if self.input_size.iter().any(|&s| s < 1) || self.in_channels < 1 {
            return bad("input_size and in_channels must be positive".into());
        }
        if self.classes < 2 {
            return bad(format!("classes must be at least 2, got {}", self.classes));
        }
        for (what, k) in [("stem.kernel", self.stem.kernel), ("kernel", self.kernel)] {
            if k < 1 || k % 2 == 0 {
                return bad(format!("{what} must be a positive odd number, got {k}"));
            }
        }
        if self.stem.channels < 1 || self.stem.stride < 1 {
            return bad("stem channels and stride must be positive".into());
        }
        if self.stages.is_empty() {
            return bad("a network needs at least one stage".into());
        }
        if !(1..=MAX_MEMBERS).contains(&self.members) {
            return bad(format!("members must be 1 to {MAX_MEMBERS}, got {}", self.members));
        }
        let mut width = self.stem.channels;
        for (i, s) in self.stages.iter().enumerate() {
            if s.units < 1 || s.stride < 1 {
                return bad(format!("stage {i}: units and stride must be positive"));
            }
            // The identity path only pads channels with zeros; it never drops any.
            if s.channels < width {
                return bad(format!("stage {i}: {} channels after {width}; widths may only grow", s.channels));
            }
            width = s.channels;
        }
        Ok(())
    }

    /// Number of residual units of one member.
    pub fn unit_count(&self) -> usize {
        self.stages.iter().map(|s| s.units as usize).sum()
    }

    /// Where a member's variables live: at the root for a single network, under
    /// `members.{m}.` in an ensemble.
    pub fn member_prefix(&self, member: usize) -> String {
        if self.members == 1 {
            String::new()
        } else {
            format!("members.{member}.")
        }
    }

    /// The name (variable path) and stage of every shrinkage unit, member by member, in
    /// the order the network reports them: `units.{i}`, or `members.{m}.units.{i}`.
    pub fn shrink_units(&self) -> Vec<(String, usize)> {
        if !self.arch.has_shrinkage() {
            return Vec::new();
        }
        let stages: Vec<usize> = self
            .stages
            .iter()
            .enumerate()
            .flat_map(|(s, stage)| std::iter::repeat_n(s, stage.units as usize))
            .collect();
        (0..self.members as usize)
            .flat_map(|m| stages.iter().enumerate().map(move |(i, &s)| (m, i, s)))
            .map(|(m, i, s)| (format!("{}units.{i}", self.member_prefix(m)), s))
            .collect()
    }

    /// The expected input shape of one sample: `[C, L]` or `[C, H, W]`.
    pub fn sample_shape(&self) -> Vec<i64> {
        std::iter::once(self.in_channels).chain(self.input_size.iter().copied()).collect()
    }

    /// Number of values in one sample.
    pub fn sample_len(&self) -> usize {
        self.sample_shape().iter().product::<i64>() as usize
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presets_validate_and_round_trip_through_json() {
        for name in PRESETS {
            for arch in [Arch::Resnet, Arch::DrsnCs, Arch::DrsnCw] {
                let spec = ModelSpec::preset(name, arch, 10).unwrap();
                spec.validate().unwrap();
                let json = serde_json::to_string(&spec).unwrap();
                assert_eq!(serde_json::from_str::<ModelSpec>(&json).unwrap(), spec);
            }
        }
        let paper = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        assert_eq!(paper.unit_count(), 12);
        assert_eq!(paper.sample_shape(), vec![1, 2048]);
    }

    #[test]
    fn an_ensembles_units_are_named_member_by_member_and_its_size_is_bounded() {
        let mut spec = ModelSpec::preset("seed-2d", Arch::DrsnCw, 10).unwrap();
        assert_eq!(spec.shrink_units(), vec![("units.0".to_string(), 0)]);
        assert!(!serde_json::to_string(&spec).unwrap().contains("members"), "a single network's card stays as it was");
        spec.members = 2;
        assert_eq!(
            spec.shrink_units(),
            vec![("members.0.units.0".to_string(), 0), ("members.1.units.0".to_string(), 0)]
        );
        assert_eq!(serde_json::from_str::<ModelSpec>(&serde_json::to_string(&spec).unwrap()).unwrap(), spec);
        for bad in [0, MAX_MEMBERS + 1] {
            spec.members = bad;
            assert!(spec.validate().unwrap_err().to_string().contains("members"), "{bad}");
        }
        assert!(ModelSpec::preset("paper-1d", Arch::Resnet, 10).unwrap().shrink_units().is_empty());
    }

    #[test]
    fn shrinking_widths_and_wrong_axes_are_refused() {
        let mut spec = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        spec.stages[1].channels = 2;
        let err = spec.validate().unwrap_err().to_string();
        assert!(err.contains("stage 1"), "{err}");
        let mut spec = ModelSpec::preset("seed-2d", Arch::DrsnCs, 10).unwrap();
        spec.input_size = vec![28];
        assert!(spec.validate().unwrap_err().to_string().contains("needs 2"));
        assert!(ModelSpec::preset("nope", Arch::Resnet, 10).is_err());
    }
}
