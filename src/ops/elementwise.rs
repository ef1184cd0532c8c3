//! Small element-wise passes (`shaders/elementwise.wgsl`): ReLU and its gradient, the sum
//! of two tensors (a standalone residual connection), adding one tensor into another
//! (merging the gradients of two branches). The split-K slice sum
//! and bias column sums live in the same shader and are built by `ops::gemm`.

pub use super::gemm::EwParams as Params;
use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

fn params(len: usize, accumulate: bool) -> Params {
    Params { len: len as u32, rows: 0, flags: if accumulate { ACCUMULATE } else { 0 }, _pad: 0 }
}

/// y = max(x, 0).   x, y: same length
pub fn relu(gpu: &Gpu, label: &str, x: &Tensor, y: &Tensor) -> Dispatch {
    Dispatch::new(gpu, label, ("elementwise", "relu"), &[], &params(x.len(), false), &[x, y], grid_1d(x.len(), 256))
}

/// dx (+)= dy · [y > 0], from the saved ReLU output y.
pub fn relu_backward(gpu: &Gpu, label: &str, y: &Tensor, dy: &Tensor, dx: &Tensor, accumulate: bool) -> Dispatch {
    let p = params(y.len(), accumulate);
    Dispatch::new(gpu, label, ("elementwise", "relu_backward"), &[], &p, &[y, dx, dy], grid_1d(y.len(), 256))
}

/// y (+)= x.
pub fn add(gpu: &Gpu, label: &str, x: &Tensor, y: &Tensor, accumulate: bool) -> Dispatch {
    let p = params(x.len(), accumulate);
    Dispatch::new(gpu, label, ("elementwise", "add"), &[], &p, &[x, y], grid_1d(x.len(), 256))
}

/// y = a + b.   a, b, y: same length
pub fn add_two(gpu: &Gpu, label: &str, a: &Tensor, b: &Tensor, y: &Tensor) -> Dispatch {
    let p = params(a.len(), false);
    Dispatch::new(gpu, label, ("elementwise", "add_two"), &[], &p, &[a, y, b], grid_1d(a.len(), 256))
}
