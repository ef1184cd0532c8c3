//! LayerNorm (`graph::LayerNorm`) over the last axis: every token of a `[T, D]`
//! activation is one row of D features. Owns its per-row statistics, kept from forward
//! to backward; it has no running statistics, so training and evaluation are the same pass.

use super::{Io, Steps};
use crate::gpu::{GpuError, Tensor};
use crate::nn::graph::{self, ParamId};
use crate::ops::layernorm::{self as ln, LnShape};

pub struct LayerNorm {
    /// (rows, 2): mean and 1/√(σ²+ε) of each row, from forward to backward.
    pub stats: Tensor,
    pub gamma: ParamId,
    pub beta: ParamId,
}

/// x (B, ..., D) -> y (B, ..., D).
pub fn plan(io: &Io, op: &graph::LayerNorm, steps: &mut Steps) -> Result<LayerNorm, GpuError> {
    let (gpu, p) = (io.gpu, io.params);
    let s = LnShape { rows: io.batch * io.x[0].1.len() / op.dim, dim: op.dim };
    let stats = Tensor::zeros(gpu, &format!("{}.stats", op.prefix), &[s.rows, 2])?;
    let (gamma, beta) = (p.weight(op.gamma), p.weight(op.beta));
    steps.forward([ln::forward(gpu, io.name, s, op.eps, io.x(0), &gamma, &beta, io.y, &stats)]);

    let name = io.backward_label();
    let (dgamma, dbeta) = (p.grad(op.gamma), p.grad(op.beta));
    let dx = io.dx[0].as_ref().expect("a LayerNorm never reads the network input");
    steps.backward.extend(ln::backward(
        gpu,
        &name,
        s,
        io.x(0),
        &gamma,
        &stats,
        io.dy,
        dx.t,
        dx.accumulate,
        &dgamma,
        &dbeta,
    )?);
    Ok(LayerNorm { stats, gamma: op.gamma, beta: op.beta })
}
