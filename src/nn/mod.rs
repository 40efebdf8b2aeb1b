//! Networks only: spec, layers, shrinkage, residual units, the model and its weights.
//! Nothing here reads files other than weights, or knows about HTTP handlers or SQL; the
//! spec derives its OpenAPI schema (`utoipa::ToSchema`) because the API accepts it as is
//! (a job's custom network), and a mirror type at the boundary would be a second copy to
//! keep in step.

mod layers;
mod model;
mod network;
mod shrink;
mod spec;
mod unit;

pub use layers::BN_EPS;
pub use model::Model;
pub use network::{BlockDiagnostics, Forward, Network};
pub use shrink::{soft_threshold, ShrinkDiagnostics};
pub use spec::{Arch, Dim, ModelSpec, StageSpec, StemSpec, PRESETS};

#[derive(Debug, thiserror::Error)]
pub enum NnError {
    #[error("invalid model spec: {0}")]
    Spec(String),
    #[error("invalid input: {0}")]
    Input(String),
    #[error("weights: {0}")]
    Weights(String),
}
