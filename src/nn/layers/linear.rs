//! A linear layer (`graph::Linear`): y (B·rows, out) = x (B·rows, in) · Wᵀ + b, one GEMM
//! over every row of the batch (a token of a `[T, D]` activation, or a flattened image).

use super::{Io, Steps};
use crate::gpu::GpuError;
use crate::nn::graph::{self, ParamId};
use crate::ops::gemm::{self, Layout};

pub struct Linear {
    /// (out, in)
    pub weight: ParamId,
    /// (out,), if the layer has one.
    pub bias: Option<ParamId>,
}

pub fn plan(io: &Io, l: &graph::Linear, steps: &mut Steps) -> Result<Linear, GpuError> {
    let (gpu, p) = (io.gpu, io.params);
    let rows = io.batch * l.rows;
    let (w, b) = (p.weight(l.weight), l.bias.map(|b| p.weight(b)));
    let (x, dy) = (io.x(0), io.dy);
    let dims = (rows, l.inputs, l.outputs);
    steps.forward(gemm::matmul(gpu, io.name, Layout::ABt, dims, x, &w, b.as_ref(), io.y, false)?);

    // dW (out, in) = dyᵀ (out, rows) · x (rows, in); db = Σ_rows dy; dx (rows, in) = dy · W.
    let name = io.backward_label();
    let dw = p.grad(l.weight);
    let bwd = &mut steps.backward;
    let acc = io.accumulates(l.weight);
    bwd.extend(gemm::matmul(gpu, &name, Layout::AtB, (l.outputs, rows, l.inputs), dy, x, None, &dw, acc)?);
    if let Some(bias) = l.bias {
        assert!(!io.accumulates(bias), "{}: a bias is never shared", io.name);
        bwd.push(gemm::bias_grad(gpu, &name, rows, dy, &p.grad(bias), false));
    }
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
