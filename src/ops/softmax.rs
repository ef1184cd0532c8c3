//! Softmax over the last axis of a (rows, n) matrix (`shaders/softmax.wgsl`): attention
//! probabilities from materialised scores, and the backward pass.
//!
//! Forward: y_j = exp(x_j − m) / Σ_k exp(x_k − m), m = max_k x_k (subtracting the max keeps
//! exp in range). With `causal`, row r is query i = r % n of a square (n, n) attention
//! block: columns j > i are masked (y = 0 there) and the sums run over j ≤ i, so rows are
//! laid out (B·H·n, n) with each block's queries in order.
//! Backward: dx_j = y_j·(dy_j − Σ_k y_k·dy_k). Masked entries have y = 0 and get dx = 0, so
//! the backward needs no mask.
//!
//! Each row is reduced by `tpr` invocations (a power of two from n alone, see
//! [`threads_per_row`]); 256 / tpr rows share a workgroup. Reductions run in a fixed order
//! that depends only on n, never on the adapter: reruns on one adapter are bit-identical.

use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub n: u32,
    /// Bit 0: causal (forward); `ACCUMULATE` (bit 1): add into dx (backward).
    pub flags: u32,
    /// Invocations per row, a power of two in 1..=256.
    pub tpr: u32,
}

pub const CAUSAL: u32 = 1;
/// Invocations per workgroup in both entry points.
pub const WG: usize = 256;

/// Invocations reducing one row of length n: about four elements each, a power of two
/// between 1 and 256. Shared by LayerNorm (`ops::layernorm`). Fewer invocations per row
/// than elements keeps the tree (one barrier per level) short; whole rows per workgroup
/// keep short rows from idling most of a workgroup.
pub fn threads_per_row(n: usize) -> usize {
    n.div_ceil(4).next_power_of_two().clamp(1, WG)
}

/// The grid for `rows` rows of `tpr` invocations each, 256 per workgroup, folded into y
/// past 65,535 workgroups.
pub(crate) fn row_grid(rows: usize, tpr: usize) -> glam::UVec3 {
    let groups = rows.div_ceil(WG / tpr).max(1);
    grid_1d(groups * WG, WG as u32)
}

fn params(rows: usize, n: usize, flags: u32) -> Params {
    assert!(rows * n <= u32::MAX as usize, "softmax: {rows} x {n} elements do not fit u32 indexing");
    Params { rows: rows as u32, n: n as u32, flags, tpr: threads_per_row(n) as u32 }
}

/// y = softmax(x) per row, max-subtracted; causal masks columns j > r % n.   x, y: (rows, n)
pub fn forward(gpu: &Gpu, label: &str, (rows, n): (usize, usize), causal: bool, x: &Tensor, y: &Tensor) -> Dispatch {
    assert!(x.len() >= rows * n && y.len() >= rows * n, "softmax `{label}`: tensors smaller than ({rows}, {n})");
    let p = params(rows, n, if causal { CAUSAL } else { 0 });
    let grid = row_grid(rows, p.tpr as usize);
    Dispatch::new(gpu, label, ("softmax", "forward"), &[], &p, &[x, y], grid)
}

/// dx (+)= y ⊙ (dy − Σ_j y_j·dy_j) per row, from the saved output y (masked entries have
/// y = 0 and so give 0).   y, dy, dx: (rows, n)
pub fn backward(
    gpu: &Gpu,
    label: &str,
    (rows, n): (usize, usize),
    y: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> Dispatch {
    let ok = y.len() >= rows * n && dy.len() >= rows * n && dx.len() >= rows * n;
    assert!(ok, "softmax `{label}`: tensors smaller than ({rows}, {n})");
    let p = params(rows, n, if accumulate { ACCUMULATE } else { 0 });
    let grid = row_grid(rows, p.tpr as usize);
    Dispatch::new(gpu, label, ("softmax", "backward"), &[], &p, &[y, dy, dx], grid)
}

pub mod cpu {
    /// y (rows, n) = softmax(x) per row, max-subtracted; causal masks j > r % n to 0.
    pub fn forward(rows: usize, n: usize, causal: bool, x: &[f64]) -> Vec<f64> {
        let mut y = vec![0.0; rows * n];
        for r in 0..rows {
            let len = if causal { r % n + 1 } else { n };
            let row = &x[r * n..r * n + len];
            let m = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            // f64::max drops NaN; keep it, as the GPU does.
            let m = if row.iter().any(|v| v.is_nan()) { f64::NAN } else { m };
            let s: f64 = row.iter().map(|v| (v - m).exp()).sum();
            for j in 0..len {
                y[r * n + j] = (row[j] - m).exp() / s;
            }
        }
        y
    }

    /// dx (rows, n) = y ⊙ (dy − Σ_j y_j·dy_j) per row.
    pub fn backward(rows: usize, n: usize, y: &[f64], dy: &[f64]) -> Vec<f64> {
        let mut dx = vec![0.0; rows * n];
        for r in 0..rows {
            let o = r * n;
            let d: f64 = (0..n).map(|j| y[o + j] * dy[o + j]).sum();
            for j in 0..n {
                dx[o + j] = y[o + j] * (dy[o + j] - d);
            }
        }
        dx
    }
}
