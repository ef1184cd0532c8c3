//! Training: a run's options (`config`), the learning-rate schedule and the loop that
//! replays a planned step.

pub mod checkpoint;
pub mod config;
pub mod schedule;
pub mod trainer;

pub use config::RunConfig;
pub use schedule::Schedule;
pub use trainer::{AugmentKind, EpochReport, TrainConfig, Trainer};
