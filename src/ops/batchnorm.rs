//! BatchNorm2d over NCHW activations (`shaders/batchnorm.wgsl`).
//!
//! Training: per channel c over n = B·H·W elements, mean μ, biased variance σ², and
//! x̂ = (x-μ)/√(σ²+ε), y = γ·x̂ + β (optionally + residual, then ReLU: the fused form
//! ends every residual block). Running statistics take the unbiased variance, as PyTorch.
//! Backward: dγ = Σ dy·x̂, dβ = Σ dy, dx = γ/(n√(σ²+ε)) · (n·dy − dβ − x̂·dγ).
//! `stats` (2C,) holds [μ; 1/√(σ²+ε)] between forward and backward.

use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub batch: u32,
    pub channels: u32,
    pub hw: u32,
    pub flags: u32,
    pub eps: f32,
    pub momentum: f32,
    pub _pad: [u32; 2],
}

pub const RELU: u32 = 1;
pub const RESIDUAL: u32 = 2;
pub const EPS: f32 = 1e-5;
pub const MOMENTUM: f32 = 0.1;

/// Shape of a BatchNorm2d application: x is (batch, channels, hw).
#[derive(Clone, Copy, Debug)]
pub struct BnShape {
    pub batch: usize,
    pub channels: usize,
    pub hw: usize,
}

impl BnShape {
    fn params(&self, flags: u32) -> Params {
        Params {
            batch: self.batch as u32,
            channels: self.channels as u32,
            hw: self.hw as u32,
            flags,
            eps: EPS,
            momentum: MOMENTUM,
            _pad: [0; 2],
        }
    }
    fn len(&self) -> usize {
        self.batch * self.channels * self.hw
    }
}

/// Batch statistics of x into `stats` (2C,), and the running update of `running` (2C,).
pub fn stats(gpu: &Gpu, label: &str, s: BnShape, x: &Tensor, stats: &Tensor, running: &Tensor) -> Dispatch {
    Dispatch::new(
        gpu,
        label,
        ("batchnorm", "stats"),
        &[],
        &s.params(0),
        &[x, stats, running],
        [s.channels as u32, 1, 1],
    )
}

/// Eval statistics: `stats` (2C,) from `running` (2C,).
pub fn eval_stats(gpu: &Gpu, label: &str, s: BnShape, running: &Tensor, stats: &Tensor) -> Dispatch {
    let groups = [s.channels.div_ceil(64) as u32, 1, 1];
    Dispatch::new(gpu, label, ("batchnorm", "eval_stats"), &[], &s.params(0), &[running, stats], groups)
}

/// y = [relu](γ·x̂ + β [+ residual]). `residual` must be given iff `flags` has RESIDUAL.
#[allow(clippy::too_many_arguments)]
pub fn apply(
    gpu: &Gpu,
    label: &str,
    s: BnShape,
    flags: u32,
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    residual: Option<&Tensor>,
    y: &Tensor,
) -> Dispatch {
    assert_eq!(residual.is_some(), flags & RESIDUAL != 0, "bn `{label}`: residual flag");
    let res = residual.unwrap_or(x);
    let t = [x, stats, gamma, beta, res, y];
    Dispatch::new(gpu, label, ("batchnorm", "apply"), &[], &s.params(flags), &t, grid_1d(s.len(), 256))
}

/// dγ, dβ (C,) and, given `dx` = (tensor, accumulate), dx (+)= the input gradient, from dy
/// and the saved forward input x.
/// With `relu_output` (the saved output y of a fused BatchNorm+ReLU) the gradient at the
/// normalised value is dy·[y > 0]: the ReLU's backward folded into both passes.
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    label: &str,
    s: BnShape,
    x: &Tensor,
    stats: &Tensor,
    gamma: &Tensor,
    dy: &Tensor,
    relu_output: Option<&Tensor>,
    dgamma: &Tensor,
    dbeta: &Tensor,
    dx: Option<(&Tensor, bool)>,
) -> Vec<Dispatch> {
    let mask = if relu_output.is_some() { RELU } else { 0 };
    let y = relu_output.unwrap_or(dy);
    let reduce = Dispatch::new(
        gpu,
        label,
        ("batchnorm", "backward_reduce"),
        &[],
        &s.params(mask),
        &[x, stats, dy, dgamma, dbeta, y],
        [s.channels as u32, 1, 1],
    );
    let Some((dx, accumulate)) = dx else { return vec![reduce] };
    let flags = mask | if accumulate { ACCUMULATE } else { 0 };
    let apply = Dispatch::new(
        gpu,
        label,
        ("batchnorm", "backward_apply"),
        &[],
        &s.params(flags),
        &[x, stats, gamma, dy, dgamma, dbeta, dx, y],
        grid_1d(s.len(), 256),
    );
    vec![reduce, apply]
}

pub mod cpu {
    use super::BnShape;

    fn idx(s: BnShape, c: usize, i: usize) -> usize {
        ((i / s.hw) * s.channels + c) * s.hw + i % s.hw
    }

    /// Training-mode forward: (y, mean, invstd) with y = γ·x̂ + β.
    pub fn forward(s: BnShape, x: &[f64], gamma: &[f64], beta: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let n = s.batch * s.hw;
        let mut y = vec![0.0; x.len()];
        let (mut means, mut invs) = (vec![0.0; s.channels], vec![0.0; s.channels]);
        for c in 0..s.channels {
            let mean = (0..n).map(|i| x[idx(s, c, i)]).sum::<f64>() / n as f64;
            let var = (0..n).map(|i| (x[idx(s, c, i)] - mean).powi(2)).sum::<f64>() / n as f64;
            let inv = 1.0 / (var + super::EPS as f64).sqrt();
            for i in 0..n {
                let j = idx(s, c, i);
                y[j] = gamma[c] * (x[j] - mean) * inv + beta[c];
            }
            means[c] = mean;
            invs[c] = inv;
        }
        (y, means, invs)
    }

    /// Training-mode backward: (dx, dγ, dβ).
    pub fn backward(s: BnShape, x: &[f64], gamma: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let (_, means, invs) = forward(s, x, gamma, &vec![0.0; s.channels]);
        let n = (s.batch * s.hw) as f64;
        let mut dx = vec![0.0; x.len()];
        let (mut dg, mut db) = (vec![0.0; s.channels], vec![0.0; s.channels]);
        for c in 0..s.channels {
            for i in 0..s.batch * s.hw {
                let j = idx(s, c, i);
                db[c] += dy[j];
                dg[c] += dy[j] * (x[j] - means[c]) * invs[c];
            }
            for i in 0..s.batch * s.hw {
                let j = idx(s, c, i);
                let xh = (x[j] - means[c]) * invs[c];
                dx[j] = gamma[c] * invs[c] / n * (n * dy[j] - db[c] - xh * dg[c]);
            }
        }
        (dx, dg, db)
    }
}
