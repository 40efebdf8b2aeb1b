//! Networks, data and training without a server: the data readers on the real data sets,
//! the networks' shapes and their parity with the PyTorch twin, and training runs. One test
//! binary: each links libtorch.

mod cuda;
mod data;
mod fused;
mod nn;
mod onnx;
mod ood;
mod parity;
mod physics;
mod train;
