//! Fused SGD with momentum (and optional Nesterov) over every parameter at once
//! (`shaders/sgd.wgsl`). Parameters, gradients and momentum are flat (len,) buffers;
//! indices below `n_decay` take weight decay, the rest (BatchNorm γ/β, biases) do not.
//! The learning rate is read from the per-step state.

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub len: u32,
    pub n_decay: u32,
    pub flags: u32,
    pub _pad: u32,
    pub momentum: f32,
    pub weight_decay: f32,
    pub _p: [f32; 2],
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct SgdConfig {
    pub momentum: f32,
    pub weight_decay: f32,
    pub nesterov: bool,
}

impl Default for SgdConfig {
    fn default() -> Self {
        SgdConfig { momentum: 0.9, weight_decay: 5e-4, nesterov: false }
    }
}

#[allow(clippy::too_many_arguments)]
pub fn update(
    gpu: &Gpu,
    cfg: SgdConfig,
    n_decay: usize,
    weights: &Tensor,
    grads: &Tensor,
    momentum: &Tensor,
    step: &Tensor,
) -> Dispatch {
    let len = weights.len();
    let p = Params {
        len: len as u32,
        n_decay: n_decay as u32,
        flags: cfg.nesterov as u32,
        _pad: 0,
        momentum: cfg.momentum,
        weight_decay: cfg.weight_decay,
        _p: [0.0; 2],
    };
    Dispatch::new(gpu, "sgd", ("sgd", "update"), &[], &p, &[weights, grads, momentum, step], grid_1d(len, 256))
}

pub mod cpu {
    use super::SgdConfig;
    /// One step in place, as PyTorch's SGD (dampening 0).
    pub fn update(cfg: SgdConfig, lr: f64, n_decay: usize, w: &mut [f64], g: &[f64], v: &mut [f64]) {
        for i in 0..w.len() {
            let mut d = g[i];
            if i < n_decay {
                d += cfg.weight_decay as f64 * w[i];
            }
            v[i] = cfg.momentum as f64 * v[i] + d;
            d = if cfg.nesterov { d + cfg.momentum as f64 * v[i] } else { v[i] };
            w[i] -= lr * d;
        }
    }
}
