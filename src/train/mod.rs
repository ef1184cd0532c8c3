//! Training: a run's options (`config`), the learning-rate schedule, the optimizer and the
//! loop that replays a planned step.

pub mod checkpoint;
pub mod config;
pub mod meta;
pub mod optimizer;
mod options_check;
pub mod schedule;
pub mod step;
pub mod train_config;
pub mod trainer;

pub use config::{ModelDefaults, RunConfig};
pub use optimizer::{Optimizer, OptimizerKind};
pub use schedule::Schedule;
pub use trainer::{AugmentKind, EpochReport, TrainConfig, Trainer};
