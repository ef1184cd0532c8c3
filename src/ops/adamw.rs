//! Fused AdamW over every parameter at once (`shaders/adamw.wgsl`): PyTorch's AdamW
//! (amsgrad off) on flat (len,) buffers of parameters, gradients, first moment m and
//! second moment v. Indices below `n_decay` take the decoupled weight decay
//! (w *= 1 - lr·wd), the rest none (norms, biases, embeddings, class token: the graph
//! declares them exempt). Then m = β1 m + (1-β1) g, v = β2 v + (1-β2) g²,
//! w -= lr/(1-β1^t) · m / (sqrt(v)/sqrt(1-β2^t) + eps).
//!
//! The optimizer's step count t (1 on its first step) reaches the shader through the
//! per-step state: the host computes the two bias-correction terms in f64
//! ([`bias_correction`]) and writes them beside the learning rate (`StepState::step_size`,
//! `StepState::bc2_sqrt`), so the shader needs neither a counter nor `pow`, and a
//! resumed run (whose checkpoint holds t) gets the same bits. With `clip` each gradient
//! is first multiplied by the clipping factor (`ops::clip`), as in `ops::sgd`.

use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub len: u32,
    pub n_decay: u32,
    pub _p0: [u32; 2],
    pub beta1: f32,
    pub one_minus_beta1: f32,
    pub beta2: f32,
    pub one_minus_beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
    pub _p1: [f32; 2],
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamWConfig {
    pub beta1: f32,
    pub beta2: f32,
    pub eps: f32,
    pub weight_decay: f32,
}

impl Default for AdamWConfig {
    /// PyTorch's betas and eps, with the DeiT weight decay.
    fn default() -> Self {
        AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 }
    }
}

/// (lr / (1 - β1^t), sqrt(1 - β2^t)) for step `t` (from 1), in f64 then rounded: the
/// per-step state's `step_size` and `bc2_sqrt`. `t = 0` (no step taken, e.g. an
/// evaluation's state) is treated as 1 so the values stay finite.
pub fn bias_correction(cfg: AdamWConfig, lr: f32, t: u64) -> (f32, f32) {
    let t = t.max(1).min(i32::MAX as u64) as i32;
    let bc1 = 1.0 - (cfg.beta1 as f64).powi(t);
    let bc2 = 1.0 - (cfg.beta2 as f64).powi(t);
    ((lr as f64 / bc1) as f32, bc2.sqrt() as f32)
}

/// One step over the flat (len,) `weights`, `grads`, first moment `m` and second moment `v`;
/// `step` is the (8,) StepState tensor (lr, step_size, bc2_sqrt), `clip` the (2,)
/// clipping output when clipping is on.
#[allow(clippy::too_many_arguments)]
pub fn update(
    gpu: &Gpu,
    cfg: AdamWConfig,
    n_decay: usize,
    weights: &Tensor,
    grads: &Tensor,
    m: &Tensor,
    v: &Tensor,
    step: &Tensor,
    clip: Option<&Tensor>,
) -> Dispatch {
    let len = weights.len();
    assert!(grads.len() == len && m.len() == len && v.len() == len, "adamw: buffers of different lengths");
    let p = Params {
        len: len as u32,
        n_decay: n_decay as u32,
        _p0: [0; 2],
        beta1: cfg.beta1,
        one_minus_beta1: (1.0 - cfg.beta1 as f64) as f32,
        beta2: cfg.beta2,
        one_minus_beta2: (1.0 - cfg.beta2 as f64) as f32,
        eps: cfg.eps,
        weight_decay: cfg.weight_decay,
        _p1: [0.0; 2],
    };
    let grid = grid_1d(len, 256);
    match clip {
        None => Dispatch::new(gpu, "adamw", ("adamw", "update"), &[], &p, &[weights, grads, m, v, step], grid),
        Some(c) => {
            let t = [weights, grads, m, v, step, c];
            Dispatch::new(gpu, "adamw", ("adamw", "update_clipped"), &[], &p, &t, grid)
        }
    }
}

pub mod cpu {
    use super::AdamWConfig;

    /// Step `t` (from 1) in place, as PyTorch's AdamW (amsgrad off), in f64, with the
    /// gradient multiplied by `scale` (the clipping factor; 1 without clipping).
    #[allow(clippy::too_many_arguments)]
    pub fn update(
        cfg: AdamWConfig,
        lr: f64,
        t: u64,
        scale: f64,
        n_decay: usize,
        w: &mut [f64],
        g: &[f64],
        m: &mut [f64],
        v: &mut [f64],
    ) {
        let (b1, b2) = (cfg.beta1 as f64, cfg.beta2 as f64);
        let bc1 = 1.0 - b1.powi(t as i32);
        let bc2 = 1.0 - b2.powi(t as i32);
        for i in 0..w.len() {
            let gi = g[i] * scale;
            if i < n_decay {
                w[i] -= lr * cfg.weight_decay as f64 * w[i];
            }
            m[i] = b1 * m[i] + (1.0 - b1) * gi;
            v[i] = b2 * v[i] + (1.0 - b2) * gi * gi;
            let (m_hat, v_hat) = (m[i] / bc1, v[i] / bc2);
            w[i] -= lr * m_hat / (v_hat.sqrt() + cfg.eps as f64);
        }
    }
}
