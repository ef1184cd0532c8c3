//! Kernel families. Each module owns one WGSL file's host side: its `Params` struct (field
//! for field the WGSL one), functions that build `Dispatch`es at plan time, and `mod cpu`
//! with plain f64 references that the tests hold the GPU to.

pub mod adamw;
pub mod attention;
pub mod augment;
pub mod batchnorm;
pub mod clip;
pub mod elementwise;
pub mod gemm;
pub mod layernorm;
pub mod loss;
pub mod pool;
pub mod sgd;
pub mod softmax;
pub mod tokens;
pub mod tune;

/// Flag bit shared by kernels that can add into their output instead of overwriting it
/// (merging gradients of branches).
pub const ACCUMULATE: u32 = 2;

/// The per-step state the host writes once before each step's submit, read by the kernels
/// that vary per step (batch position, augmentation seed, learning rate, valid rows, the
/// optimizer's bias correction). Matches `Step` in augment.wgsl, loss.wgsl, sgd.wgsl and
/// adamw.wgsl (tests/params_layout.rs holds the sizes equal); 32 bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct StepState {
    /// Batch index within the epoch.
    pub step: u32,
    pub epoch: u32,
    /// Rows of this batch that count (the last eval batch may be partial).
    pub valid: u32,
    pub lr: f32,
    pub seed_lo: u32,
    pub seed_hi: u32,
    /// AdamW: lr / (1 - β1^t) for the optimizer's step count t (from 1), computed on the
    /// host in f64 (`adamw::bias_correction`); unused by SGD.
    pub step_size: f32,
    /// AdamW: sqrt(1 - β2^t); unused by SGD.
    pub bc2_sqrt: f32,
}
