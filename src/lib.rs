//! drsn: fault diagnosis with Deep Residual Shrinkage Networks.

pub mod catalog;
pub mod cli;
pub mod data;
pub mod datasets;
pub mod device;
pub mod engine;
pub mod fused;
pub mod http;
pub mod jobs;
pub mod nn;
pub mod onnx;
pub mod ood;
pub mod physics;
pub mod registry;
pub mod server;
pub mod store;
pub mod telemetry;
pub mod train;
