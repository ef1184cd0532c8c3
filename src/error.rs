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
    #[error("training diverged: the loss is {loss} at epoch {epoch}, step {step}")]
    Diverged { epoch: usize, step: usize, loss: f32 },
    /// Stopped on request (Ctrl-C) after checkpointing.
    #[error("interrupted")]
    Interrupted,
}

pub type Result<T> = std::result::Result<T, Error>;
