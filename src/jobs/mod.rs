//! Training jobs in the background: requests and their checks, the queue, the worker
//! threads that run them to a terminal state, and their progress events.
// On the path of every request or job: no panicking shortcuts outside tests.
#![cfg_attr(not(test), deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic))]

mod events;
mod execute;
mod limits;
mod queue;
mod request;
mod result;
mod runner;

pub use events::JobEvent;
pub use execute::JobContext;
pub use limits::JobLimits;
pub use request::{
    DataSettings, Init, Invalid, JobRequest, NetworkChoice, Plan, Promotion, Recipe, TestSettings, TrainSettings,
    MAX_EPOCHS, MAX_KEY_LEN,
};
pub use result::{JobResult, PromotionOutcome};
pub use runner::{Runner, SHUT_DOWN};
