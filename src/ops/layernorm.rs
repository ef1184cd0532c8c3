//! LayerNorm over the last axis of a (rows, dim) matrix (`shaders/layernorm.wgsl`): the
//! normalisation of every transformer block, tokens as rows.
//!
//! Forward, per row: μ = mean(x), σ² = mean((x−μ)²) (biased, as PyTorch; two passes, not
//! E[x²]−μ², which cancels in f32), rstd = 1/√(σ²+ε), x̂ = (x−μ)·rstd, y = x̂·γ + β.
//! `stats` (rows, 2) keeps [μ, rstd] per row for the backward.
//! Backward, with g = dy·γ: dx = rstd·(g − mean(g) − x̂·mean(g·x̂)) per row;
//! dγ_j = Σ_r dy·x̂, dβ_j = Σ_r dy over rows.
//!
//! Row reductions share the softmax layout (`softmax::threads_per_row` invocations per
//! row, whole rows per 256-invocation workgroup). The column sums for dγ, dβ are two
//! deterministic stages: fixed chunks of rows into a scratch buffer (allocated by
//! [`backward`] at plan time), then the chunks added in order. Chunking and every
//! reduction order depend only on the shape, never on the adapter, so reruns are
//! bit-identical.

use super::softmax::{row_grid, threads_per_row};
use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, GpuError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub rows: u32,
    pub dim: u32,
    /// `ACCUMULATE` (bit 1): backward_rows adds into dx.
    pub flags: u32,
    /// Invocations per row (forward, backward_rows), a power of two in 1..=256.
    pub tpr: u32,
    pub eps: f32,
    /// Rows per chunk of the column sums (backward_partial).
    pub chunk: u32,
    /// ceil(rows / chunk).
    pub chunks: u32,
    pub _pad: u32,
}

/// PyTorch's default ε.
pub const EPS: f32 = 1e-5;

/// LayerNorm over the last axis of a (rows, dim) matrix.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LnShape {
    pub rows: usize,
    pub dim: usize,
}

/// Fewest rows per chunk of the column sums, and most chunks: chunks ≈ rows per chunk
/// ≈ √rows for big inputs balances the two stages (the second stage has only 2·dim
/// invocations, each adding `chunks` values), and the scratch stays ≤ 256·2·dim floats.
const MIN_CHUNK: usize = 32;
const MAX_CHUNKS: usize = 256;

impl LnShape {
    /// Rows per chunk and the number of chunks of the dγ, dβ column sums (a function of
    /// rows only).
    pub fn chunking(&self) -> (usize, usize) {
        let chunk = self.rows.div_ceil(MAX_CHUNKS).max(MIN_CHUNK);
        (chunk, self.rows.div_ceil(chunk).max(1))
    }

    fn params(&self, flags: u32, eps: f32) -> Params {
        assert!(self.rows * self.dim <= u32::MAX as usize, "layernorm: {self:?} does not fit u32 indexing");
        let (chunk, chunks) = self.chunking();
        Params {
            rows: self.rows as u32,
            dim: self.dim as u32,
            flags,
            tpr: threads_per_row(self.dim) as u32,
            eps,
            chunk: chunk as u32,
            chunks: chunks as u32,
            _pad: 0,
        }
    }

    fn check(&self, label: &str, tensors: &[(&Tensor, usize)]) {
        for (t, want) in tensors {
            assert!(
                t.len() >= *want,
                "layernorm `{label}`: `{}` has {} elements, {self:?} needs {want}",
                t.name,
                t.len()
            );
        }
    }
}

/// y = (x − mean)·rstd·γ + β per row; stats gets [mean, rstd] per row (saved for backward).
/// Two-pass statistics, biased variance as PyTorch, rstd = 1/√(var + eps).
/// x, y: (rows, dim); gamma, beta: (dim,); stats: (rows, 2)
#[allow(clippy::too_many_arguments)]
pub fn forward(
    gpu: &Gpu,
    label: &str,
    s: LnShape,
    eps: f32,
    x: &Tensor,
    gamma: &Tensor,
    beta: &Tensor,
    y: &Tensor,
    stats: &Tensor,
) -> Dispatch {
    let (n, d) = (s.rows * s.dim, s.dim);
    s.check(label, &[(x, n), (gamma, d), (beta, d), (y, n), (stats, 2 * s.rows)]);
    let p = s.params(0, eps);
    let grid = row_grid(s.rows, p.tpr as usize);
    Dispatch::new(gpu, label, ("layernorm", "forward"), &[], &p, &[x, gamma, beta, y, stats], grid)
}

/// dx (+)= the LayerNorm input gradient (added when `accumulate`); dgamma and dbeta are
/// OVERWRITTEN. Deterministic: per-chunk column sums into a scratch (chunks, 2, dim)
/// allocated here, then the chunks added in order. Three dispatches, in order.
/// x, dy, dx: (rows, dim); gamma, dgamma, dbeta: (dim,); stats: (rows, 2) from `forward`
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    label: &str,
    s: LnShape,
    x: &Tensor,
    gamma: &Tensor,
    stats: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    accumulate: bool,
    dgamma: &Tensor,
    dbeta: &Tensor,
) -> Result<Vec<Dispatch>, GpuError> {
    let (n, d) = (s.rows * s.dim, s.dim);
    s.check(label, &[(x, n), (gamma, d), (stats, 2 * s.rows), (dy, n), (dx, n), (dgamma, d), (dbeta, d)]);
    let p = s.params(if accumulate { ACCUMULATE } else { 0 }, 0.0);
    let (_, chunks) = s.chunking();
    let part = Tensor::zeros(gpu, &format!("{label}.chunk-sums"), &[chunks, 2, s.dim])?;
    let rows = Dispatch::new(
        gpu,
        label,
        ("layernorm", "backward_rows"),
        &[],
        &p,
        &[x, gamma, stats, dy, dx],
        row_grid(s.rows, p.tpr as usize),
    );
    let partial = Dispatch::new(
        gpu,
        &format!("{label}.chunk-sums"),
        ("layernorm", "backward_partial"),
        &[],
        &p,
        &[x, stats, dy, &part],
        grid_1d(chunks * s.dim, 256),
    );
    let fin = Dispatch::new(
        gpu,
        &format!("{label}.param-grads"),
        ("layernorm", "backward_final"),
        &[],
        &p,
        &[&part, dgamma, dbeta],
        grid_1d(2 * s.dim, 256),
    );
    Ok(vec![rows, partial, fin])
}

pub mod cpu {
    use super::LnShape;

    /// (y (rows, dim), mean (rows,), rstd (rows,)).
    pub fn forward(s: LnShape, eps: f64, x: &[f64], gamma: &[f64], beta: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let d = s.dim;
        let mut y = vec![0.0; s.rows * d];
        let (mut means, mut rstds) = (vec![0.0; s.rows], vec![0.0; s.rows]);
        for r in 0..s.rows {
            let row = &x[r * d..(r + 1) * d];
            let mean = row.iter().sum::<f64>() / d as f64;
            let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / d as f64;
            let rstd = 1.0 / (var + eps).sqrt();
            for j in 0..d {
                y[r * d + j] = (row[j] - mean) * rstd * gamma[j] + beta[j];
            }
            means[r] = mean;
            rstds[r] = rstd;
        }
        (y, means, rstds)
    }

    /// (dx (rows, dim), dgamma (dim,), dbeta (dim,)) for the loss Σ dy·y.
    pub fn backward(s: LnShape, eps: f64, x: &[f64], gamma: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let d = s.dim;
        let (_, means, rstds) = forward(s, eps, x, gamma, &vec![0.0; d]);
        let mut dx = vec![0.0; s.rows * d];
        let (mut dg, mut db) = (vec![0.0; d], vec![0.0; d]);
        for r in 0..s.rows {
            let o = r * d;
            let xhat: Vec<f64> = (0..d).map(|j| (x[o + j] - means[r]) * rstds[r]).collect();
            let g: Vec<f64> = (0..d).map(|j| dy[o + j] * gamma[j]).collect();
            let mg = g.iter().sum::<f64>() / d as f64;
            let mgx = g.iter().zip(&xhat).map(|(a, b)| a * b).sum::<f64>() / d as f64;
            for j in 0..d {
                dx[o + j] = rstds[r] * (g[j] - mg - xhat[j] * mgx);
                dg[j] += dy[o + j] * xhat[j];
                db[j] += dy[o + j];
            }
        }
        (dx, dg, db)
    }
}
