//! Training: the learning-rate schedule and the loop that replays a planned step.

pub mod checkpoint;
pub mod schedule;
pub mod trainer;

pub use schedule::Schedule;
pub use trainer::{AugmentKind, EpochReport, TrainConfig, Trainer};
