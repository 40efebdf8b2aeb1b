//! drsn: fault diagnosis with Deep Residual Shrinkage Networks.

pub mod cli;
pub mod data;
pub mod datasets;
pub mod device;
pub mod nn;
pub mod registry;
pub mod store;
pub mod train;
