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
    /// `epoch` and `step` are 1-based, `what` says which loss and why it counts as diverged.
    #[error("training diverged at epoch {epoch}, step {step}: {what}; the run stopped and its last checkpoint (if any) is kept")]
    Diverged { epoch: usize, step: usize, what: String },
    /// Stopped on request (Ctrl-C) after checkpointing.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;
