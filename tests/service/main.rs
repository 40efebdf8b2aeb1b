//! The service end to end: a real server on a loopback port (in this process, built by
//! `Application::build`, or the real `drsn serve` binary), real HTTP clients, the shipped
//! models and the real data sets. One test binary: each links libtorch.

mod common;

mod dashboard;
mod docker_runtime;
mod engine;
mod fuzz;
mod hostile;
mod inputs;
mod jobs;
mod jobs_process;
mod load;
mod open_world;
mod replicas;
mod serve_binary;
mod service;
mod shipped;
mod store;
mod v2;
