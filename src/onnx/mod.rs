//! Inference through ONNX Runtime: a model's eval-mode network exported as an ONNX graph
//! from its spec and weights (`export`), and run by the runtime's shared library, loaded at
//! start-up (`runtime`). libtorch stays the engine for training and the reference: the
//! parity tests hold this path to its values.

// On the path of every model load and request: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod export;
mod graph;
mod proto;
mod runtime;

pub use export::export;
pub use runtime::{init, init_from_env, loaded, OnnxModel};

#[derive(Debug, thiserror::Error)]
pub enum OnnxError {
    #[error("cannot export the network: {0}")]
    Export(String),
    #[error("onnxruntime: {0}")]
    Runtime(String),
    #[error("invalid input: {0}")]
    Input(String),
}
