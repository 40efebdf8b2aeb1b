//! A forward pass's results as plain values (row-major `Vec<f32>`s), as the inference
//! backends that are not libtorch give them (ONNX Runtime, the fused CPU forward): the
//! engine reads them without touching a tensor, the parity tests turn them into a
//! [`Forward`] to compare with libtorch's.

use std::sync::Arc;

use tch::Tensor;

use super::{BlockDiagnostics, Forward, NnError, ShrinkDiagnostics};

/// A shrinkage unit of the network: its name (variable path, shared by every answer that
/// reports it) and its stage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShrinkUnit {
    pub name: Arc<str>,
    pub stage: usize,
}

/// What one forward pass of `windows` windows gave, each value row-major (`windows` rows).
#[derive(Debug)]
pub struct ForwardValues {
    pub windows: usize,
    pub probabilities: Vec<f32>,
    pub logits: Vec<f32>,
    pub features: Vec<f32>,
    pub stage_features: Vec<f32>,
    /// One per shrinkage unit when diagnostics were asked for.
    pub units: Vec<UnitValues>,
}

/// A shrinkage unit's diagnostics, as in [`ShrinkDiagnostics`].
#[derive(Debug)]
pub struct UnitValues {
    pub unit: ShrinkUnit,
    pub thresholds: Vec<f32>,
    pub scales: Vec<f32>,
    pub mean_abs: Vec<f32>,
    pub zeroed_fraction: Vec<f32>,
}

impl ForwardValues {
    /// The same values as libtorch tensors, as `Model::infer` gives them (for the parity
    /// tests).
    pub fn to_forward(&self) -> Result<Forward, NnError> {
        let mut forward = self.pooled()?;
        for u in &self.units {
            forward.blocks.push(BlockDiagnostics {
                name: u.unit.name.to_string(),
                stage: u.unit.stage,
                diagnostics: ShrinkDiagnostics {
                    thresholds: self.matrix(&u.thresholds)?,
                    scales: self.matrix(&u.scales)?,
                    mean_abs: self.matrix(&u.mean_abs)?,
                    zeroed_fraction: Tensor::from_slice(&u.zeroed_fraction),
                },
            });
        }
        Ok(forward)
    }

    /// Logits and pooled features only, as tensors.
    pub fn pooled(&self) -> Result<Forward, NnError> {
        Ok(Forward {
            member_logits: Vec::new(),
            logits: self.matrix(&self.logits)?,
            blocks: Vec::new(),
            features: self.matrix(&self.features)?,
            stage_features: self.matrix(&self.stage_features)?,
        })
    }

    /// `values` as a `windows x k` tensor.
    fn matrix(&self, values: &[f32]) -> Result<Tensor, NnError> {
        Tensor::from_slice(values).f_view([self.windows as i64, -1]).map_err(|e| NnError::Input(e.to_string()))
    }
}
