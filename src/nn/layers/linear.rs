//! A linear layer (`graph::Linear`): y (B·rows, out) = x (B·rows, in) · Wᵀ + b, one GEMM
//! over every row of the batch (a token of a `[T, D]` activation, or a flattened image).

use super::{Io, Steps};
use crate::gpu::GpuError;
use crate::nn::graph::{self, ParamId};
use crate::ops::gemm::{self, Layout};

pub struct Linear {
    /// (out, in)
    pub weight: ParamId,
    /// (out,)
    pub bias: ParamId,
}

pub fn plan(io: &Io, l: &graph::Linear, steps: &mut Steps) -> Result<Linear, GpuError> {
    let (gpu, p) = (io.gpu, io.params);
    let rows = io.batch * l.rows;
    let (w, b) = (p.weight(l.weight), p.weight(l.bias));
    let (x, dy) = (io.x(0), io.dy);
    steps.forward(gemm::matmul(gpu, io.name, Layout::ABt, (rows, l.inputs, l.outputs), x, &w, Some(&b), io.y, false)?);

    // dW (out, in) = dyᵀ (out, rows) · x (rows, in); db = Σ_rows dy; dx (rows, in) = dy · W.
    let name = io.backward_label();
    let (dw, db) = (p.grad(l.weight), p.grad(l.bias));
    let bwd = &mut steps.backward;
    bwd.extend(gemm::matmul(gpu, &name, Layout::AtB, (l.outputs, rows, l.inputs), dy, x, None, &dw, false)?);
    bwd.push(gemm::bias_grad(gpu, &name, rows, dy, &db, false));
    if let Some(dx) = &io.dx[0] {
        bwd.extend(gemm::matmul(
            gpu,
            &name,
            Layout::AB,
            (rows, l.outputs, l.inputs),
            dy,
            &w,
            None,
            dx.t,
            dx.accumulate,
        )?);
    }
    Ok(Linear { weight: l.weight, bias: l.bias })
}
