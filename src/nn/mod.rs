//! Networks only: spec, layers, shrinkage, residual units, the model and its weights.
//! Nothing here reads files other than weights, or knows about HTTP handlers or SQL; the
//! spec derives its OpenAPI schema (`utoipa::ToSchema`) because the API accepts it as is
//! (a job's custom network), and a mirror type at the boundary would be a second copy to
//! keep in step.

mod cpu;
mod layers;
mod model;
mod network;
mod shrink;
mod spec;
mod unit;
mod values;

pub use layers::BN_EPS;
pub use model::Model;
pub use network::{BlockDiagnostics, Forward, Network};
pub use shrink::{soft_threshold, ShrinkDiagnostics};
pub use spec::{Arch, Dim, ModelSpec, StageSpec, StemSpec, PRESETS};
pub use values::{ForwardValues, ShrinkUnit, UnitValues};

/// A tensor's values as `f32`, row-major, copied to the CPU; none for an undefined or empty
/// tensor (a forward pass in training mode has no stage features).
pub fn flat_values(t: &tch::Tensor) -> Result<Vec<f32>, tch::TchError> {
    if !t.defined() || t.numel() == 0 {
        return Ok(Vec::new());
    }
    Vec::<f32>::try_from(t.to_device(tch::Device::Cpu).to_kind(tch::Kind::Float).contiguous().flatten(0, -1))
}

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("invalid model spec: {0}")]
    Spec(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("weights: {0}")]
    Weights(String),
}
