//! BatchNorm2d (`graph::BatchNorm`), with the residual add and ReLU that end a residual
//! block fused in when the planner found them right after it: y = relu(bn(x) + r).
//!
//! Owns its batch statistics (between forward and backward) and its running statistics
//! (kept between steps, saved in checkpoints). Backward folds the ReLU mask into its own
//! two passes, so no activation-sized "gradient before the ReLU" buffer exists; the
//! residual's gradient is the masked dy, written straight into the residual input's
//! gradient.

use super::{Epilogue, Io, Steps};
use crate::gpu::{GpuError, Tensor};
use crate::nn::graph::{self, ParamId};
use crate::ops::batchnorm::{self as bn, BnShape};
use crate::ops::elementwise;

/// A BatchNorm's state kept between steps and saved with checkpoints.
pub struct BnState {
    pub prefix: String,
    /// (2C,): running mean then running variance.
    pub running: Tensor,
}

pub struct BatchNorm {
    pub state: BnState,
    /// (2C,): batch mean then 1/√(σ²+ε), from forward to backward.
    pub stats: Tensor,
    pub gamma: ParamId,
    pub beta: ParamId,
    pub epilogue: Epilogue,
}

/// x (B, C, H, W) [+ r (B, C, H, W), input 1 when `epi.residual`] -> y (B, C, H, W).
pub fn plan(io: &Io, op: &graph::BatchNorm, epi: Epilogue, steps: &mut Steps) -> Result<BatchNorm, GpuError> {
    let (gpu, p, c) = (io.gpu, io.params, op.channels);
    let mut running0 = vec![0.0f32; c];
    running0.extend(vec![1.0f32; c]);
    let running = Tensor::from_slice(gpu, &format!("{}.running", op.prefix), &[2 * c], &running0)?;
    let stats = Tensor::zeros(gpu, &format!("{}.stats", op.prefix), &[2 * c])?;
    let [_, h, w] = io.image(0);
    let s = BnShape { batch: io.batch, channels: c, hw: h * w };
    let (x, y, dy) = (io.x(0), io.y, io.dy);
    let (gamma, beta) = (p.weight(op.gamma), p.weight(op.beta));

    let flags = if epi.relu { bn::RELU } else { 0 } | if epi.residual { bn::RESIDUAL } else { 0 };
    let residual = epi.residual.then(|| io.x(1));
    steps.train.push(bn::stats(gpu, io.name, s, x, &stats, &running));
    steps.eval.push(bn::eval_stats(gpu, io.name, s, &running, &stats));
    steps.forward([bn::apply(gpu, io.name, s, flags, x, &stats, &gamma, &beta, residual, y)]);

    let name = io.backward_label();
    let (dgamma, dbeta) = (p.grad(op.gamma), p.grad(op.beta));
    let relu_output = epi.relu.then_some(y);
    let bwd = &mut steps.backward;
    let dx = io.dx[0].as_ref().map(|d| (d.t, d.accumulate));
    bwd.extend(bn::backward(gpu, &name, s, x, &stats, &gamma, dy, relu_output, &dgamma, &dbeta, dx));
    if let Some(Some(dr)) = io.dx.get(1).filter(|_| epi.residual) {
        bwd.push(match relu_output {
            Some(y) => elementwise::relu_backward(gpu, &name, y, dy, dr.t, dr.accumulate),
            None => elementwise::add(gpu, &name, dy, dr.t, dr.accumulate),
        });
    }
    let state = BnState { prefix: op.prefix.clone(), running };
    Ok(BatchNorm { state, stats, gamma: op.gamma, beta: op.beta, epilogue: epi })
}
