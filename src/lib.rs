//! cuttle: a portable WebGPU training engine.
//!
//! WGSL compute shaders do all the arithmetic; this crate plans the buffers and dispatches,
//! records one command buffer per training step and runs Cuttlefish low-rank training on
//! any adapter wgpu reaches (Vulkan, Metal, DX12, browser WebGPU).
//!
//! It is not a general tensor library: there is no autograd tape. Layers are
//! forward/backward pairs over a static memory plan.

pub mod cuttlefish;
pub mod data;
pub mod error;
pub mod gpu;
pub mod nn;
pub mod ops;
pub mod rng;
pub mod sample;
pub mod session;
pub mod train;
#[cfg(target_arch = "wasm32")]
pub mod web;

pub use error::{Error, Result};
