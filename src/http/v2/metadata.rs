//! What a model looks like through the protocol: one FP32 input of windows (or images)
//! and its outputs, the class probabilities, the label and the thresholds of every
//! shrinkage unit, all with a variable batch axis.

use serde::Serialize;
use utoipa::ToSchema;

use crate::nn::{Arch, ModelSpec};
use crate::registry::ModelCard;

/// The one input every model takes.
pub const INPUT: &str = "input";
pub const FP32: &str = "FP32";
pub const BYTES: &str = "BYTES";
/// What `platform` says: the models are this service's own networks, run by libtorch.
pub const PLATFORM: &str = "drsn_libtorch";

/// One output of a model.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Output {
    /// FP32 `[N, classes]`, in the card's class order.
    Probabilities,
    /// BYTES `[N]`, the most probable class's name.
    Label,
    /// FP32 `[N]`: the out-of-distribution score (models with a calibrated card only; the
    /// card's `ood.threshold` flags it).
    OodScore,
    /// FP32 `[N, T]`: the thresholds of residual unit `i` (`T` channels for DRSN-CW, 1 for DRSN-CS).
    Thresholds { unit: String, width: usize },
}

impl Output {
    /// The protocol name; thresholds are named after the unit's variable path
    /// (`units.{i}`, `members.{m}.units.{i}` in an ensemble: as the network names its units
    /// and the engine reports them).
    pub fn name(&self) -> String {
        match self {
            Output::Probabilities => "probabilities".into(),
            Output::Label => "label".into(),
            Output::OodScore => "ood_score".into(),
            Output::Thresholds { unit, .. } => format!("thresholds/{unit}"),
        }
    }

    pub fn datatype(&self) -> &'static str {
        match self {
            Output::Label => BYTES,
            _ => FP32,
        }
    }

    /// The shape with `-1` for the batch axis.
    fn shape(&self, classes: usize) -> Vec<i64> {
        match self {
            Output::Probabilities => vec![-1, classes as i64],
            Output::Label | Output::OodScore => vec![-1],
            Output::Thresholds { width, .. } => vec![-1, *width as i64],
        }
    }
}

/// Every output of a model, in the order metadata lists them and inference returns them;
/// `calibrated`: the card has an out-of-distribution score.
pub fn outputs(spec: &ModelSpec, calibrated: bool) -> Vec<Output> {
    let mut outputs = vec![Output::Probabilities, Output::Label];
    if calibrated {
        outputs.push(Output::OodScore);
    }
    for (unit, stage) in spec.shrink_units() {
        let channels = spec.stages.get(stage).map_or(1, |s| s.channels as usize);
        let width = if spec.arch == Arch::DrsnCw { channels } else { 1 };
        outputs.push(Output::Thresholds { unit, width });
    }
    outputs
}

/// A tensor's name, datatype and shape (`-1`: any length).
#[derive(Debug, Clone, PartialEq, Serialize, ToSchema)]
pub struct TensorMetadata {
    pub name: String,
    pub datatype: String,
    pub shape: Vec<i64>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServerMetadata {
    pub name: String,
    pub version: String,
    /// Protocol extensions served: `binary_tensor_data`.
    pub extensions: Vec<String>,
}

impl Default for ServerMetadata {
    fn default() -> Self {
        ServerMetadata {
            name: env!("CARGO_PKG_NAME").into(),
            version: env!("CARGO_PKG_VERSION").into(),
            extensions: vec!["binary_tensor_data".into()],
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ModelMetadata {
    pub name: String,
    /// Every version of the model, as strings.
    pub versions: Vec<String>,
    pub platform: String,
    /// One input, `input`: FP32 `[-1, channels, length]` or `[-1, channels, height, width]`;
    /// single-channel models also take it without the channel axis.
    pub inputs: Vec<TensorMetadata>,
    /// `probabilities`, `label`, then `thresholds/units.{i}` (`thresholds/members.{m}.units.{i}`
    /// in an ensemble) for every shrinkage unit.
    pub outputs: Vec<TensorMetadata>,
}

impl ModelMetadata {
    pub fn new(card: &ModelCard, versions: Vec<u32>) -> Self {
        let input_shape = std::iter::once(-1).chain(card.spec.sample_shape()).collect();
        let classes = card.classes.len();
        ModelMetadata {
            name: card.name.clone(),
            versions: versions.iter().map(u32::to_string).collect(),
            platform: PLATFORM.into(),
            inputs: vec![TensorMetadata { name: INPUT.into(), datatype: FP32.into(), shape: input_shape }],
            outputs: outputs(&card.spec, card.ood.is_some())
                .iter()
                .map(|o| TensorMetadata { name: o.name(), datatype: o.datatype().into(), shape: o.shape(classes) })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outputs_name_every_shrinkage_unit_with_its_threshold_count() {
        let cw = ModelSpec::preset("paper-1d", Arch::DrsnCw, 10).unwrap();
        let names: Vec<String> = outputs(&cw, false).iter().map(Output::name).collect();
        assert_eq!(names.len(), 2 + 12);
        assert_eq!(names[..3], ["probabilities", "label", "thresholds/units.0"]);
        assert_eq!(names[13], "thresholds/units.11");
        let widths: Vec<usize> = outputs(&cw, false)
            .iter()
            .filter_map(|o| match o {
                Output::Thresholds { width, .. } => Some(*width),
                _ => None,
            })
            .collect();
        assert_eq!(widths, [4, 4, 4, 4, 8, 8, 8, 8, 16, 16, 16, 16]);
        let cs = ModelSpec::preset("mnist-2d", Arch::DrsnCs, 10).unwrap();
        assert!(outputs(&cs, false).iter().skip(2).all(|o| matches!(o, Output::Thresholds { width: 1, .. })));
        let resnet = ModelSpec::preset("paper-1d", Arch::Resnet, 10).unwrap();
        assert_eq!(outputs(&resnet, false), [Output::Probabilities, Output::Label]);
        assert_eq!(outputs(&resnet, true), [Output::Probabilities, Output::Label, Output::OodScore]);
    }
}
