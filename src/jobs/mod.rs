//! Training jobs in the background: requests and their checks, the worker threads that
//! claim them from the database's queue and run them to a terminal state, and their
//! progress events.
// On the path of every request or job: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod events;
mod execute;
mod limits;
mod request;
mod result;
mod runner;
mod wake;

pub use events::JobEvent;
pub use execute::JobContext;
pub use limits::JobLimits;
pub use request::{
    DataSettings, Init, Invalid, JobRequest, NetworkChoice, Plan, Promotion, Recipe, TestSettings, TrainSettings,
    MAX_EPOCHS, MAX_KEY_LEN,
};
pub use result::{JobResult, PromotionOutcome};
pub use runner::{default_replica_name, Runner, RunnerConfig, SHUT_DOWN};
