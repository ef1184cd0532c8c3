//! Fused SGD with momentum (and optional Nesterov) over every parameter at once
//! (`shaders/sgd.wgsl`). Parameters, gradients and momentum are flat (len,) buffers;
//! indices below `n_decay` take weight decay, the rest (BatchNorm γ/β, biases) do not.
//! The learning rate is read from the per-step state. With `clip` (the (2,) output of
//! `ops::clip`, computed earlier in the same step) each gradient is first multiplied by
//! the clipping factor; a factor of exactly 1 gives `update`'s bits (see sgd.wgsl).

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

/// One step over the flat (len,) `weights` with their `grads` and `momentum`; `step` is the
/// (8,) StepState tensor, `clip` the (2,) clipping output when clipping is on.
#[allow(clippy::too_many_arguments)]
pub fn update(
    gpu: &Gpu,
    cfg: SgdConfig,
    n_decay: usize,
    weights: &Tensor,
    grads: &Tensor,
    momentum: &Tensor,
    step: &Tensor,
    clip: Option<&Tensor>,
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
    let grid = grid_1d(len, 256);
    match clip {
        None => Dispatch::new(gpu, "sgd", ("sgd", "update"), &[], &p, &[weights, grads, momentum, step], grid),
        Some(c) => {
            let t = [weights, grads, momentum, step, c];
            Dispatch::new(gpu, "sgd", ("sgd", "update_clipped"), &[], &p, &t, grid)
        }
    }
}

pub mod cpu {
    use super::SgdConfig;
    /// One step in place, as PyTorch's SGD (dampening 0), the gradient multiplied by
    /// `scale` (the clipping factor; 1 without clipping).
    pub fn update(cfg: SgdConfig, lr: f64, scale: f64, n_decay: usize, w: &mut [f64], g: &[f64], v: &mut [f64]) {
        for i in 0..w.len() {
            let mut d = g[i] * scale;
            if i < n_decay {
                d += cfg.weight_decay as f64 * w[i];
            }
            v[i] = cfg.momentum as f64 * v[i] + d;
            d = if cfg.nesterov { d + cfg.momentum as f64 * v[i] } else { v[i] };
            w[i] -= lr * d;
        }
    }
}
