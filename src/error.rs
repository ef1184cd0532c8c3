//! The crate's error type: every failure a user can cause or meet, each with a message that
//! names what is wrong.

use crate::data::DataError;
use crate::gpu::GpuError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Gpu(#[from] GpuError),
    #[error(transparent)]
    Data(#[from] DataError),
    #[error("{0}")]
    Config(String),
    /// The loss left the range a learning run can be in ([`crate::train::trainer::loss_limit`]);
    /// `epoch` and `step` are 1-based; `steps_per_interval` is given for a step-counted run
    /// (a language model's, whose "epochs" are evaluation intervals), which names the
    /// global step instead; `what` says which loss and why it counts as diverged.
    #[error(
        "training diverged at {}: {what}; the run stopped and kept its last checkpoint from before (if any)",
        place(*epoch, *step, *steps_per_interval)
    )]
    Diverged { epoch: usize, step: usize, steps_per_interval: Option<usize>, what: String },
    /// Stopped on request (Ctrl-C) after checkpointing.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;

/// Where a run stands, in its own unit: "epoch 3, step 10", or a step-counted run's "step 210".
fn place(epoch: usize, step: usize, steps_per_interval: Option<usize>) -> String {
    match steps_per_interval {
        Some(n) => format!("step {}", epoch.saturating_sub(1) * n + step),
        None => format!("epoch {epoch}, step {step}"),
    }
}
