//! A k x k convolution without bias (`graph::Conv`), as implicit GEMM: forward, then the
//! weight gradient and the data gradient (`ops::gemm`).

use super::{Io, Steps};
use crate::gpu::GpuError;
use crate::nn::graph::{self, ParamId};
use crate::ops::gemm::{self, ConvShape};

pub struct Conv {
    /// (c_out, c_in, k, k)
    pub weight: ParamId,
    pub shape: ConvShape,
}

/// x (B, c_in, H, W) -> y (B, c_out, Ho, Wo).
pub fn plan(io: &Io, op: &graph::Conv, steps: &mut Steps) -> Result<Conv, GpuError> {
    let (gpu, s) = (io.gpu, op.shape(io.batch, io.image(0)));
    let w = io.params.weight(op.weight);
    steps.forward(gemm::conv_forward(gpu, io.name, &s, io.x(0), &w, io.y)?);

    let name = io.backward_label();
    let dw = io.params.grad(op.weight);
    steps.backward.extend(gemm::conv_backward_weight(gpu, &name, &s, io.dy, io.x(0), &dw, false)?);
    if let Some(dx) = &io.dx[0] {
        steps.backward.extend(gemm::conv_backward_data(gpu, &name, &s, io.dy, &w, dx.t, dx.accumulate)?);
    }
    Ok(Conv { weight: op.weight, shape: s })
}
