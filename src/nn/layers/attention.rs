//! Multi-head self-attention (`graph::Attention`) on a fused q/k/v activation:
//! qkv (B, T, 3·D) laid out (B, T, 3, H, d) as timm's `qkv` linear writes it, output
//! (B, T, D) = the heads' softmax(Q Kᵀ/√d) V side by side, as timm's `proj` reads it.
//! The probabilities P (B·H, T, T) are kept from forward to backward, not recomputed:
//! at the lengths this engine trains (T ≤ 257) they cost T/d times an activation per
//! layer, and recomputing them would add a third of the attention work to backward.
//!
//! Two ways to run it, chosen by the work per row T·d (`uses_fused`; measured on lavapipe,
//! `examples/attention_bench`, forward + backward):
//! - T·d < 4096 (vit-mini's T = 17, d = 16; gpt-mini's T = 64, d = 16): the fused kernels
//!   of `ops::attention`, one dispatch forward and two backward, reading Q, K, V straight
//!   from the qkv layout. Per-head products this thin leave a GEMM tile mostly idle: at
//!   B=64, T=17, H=4, d=16 fused takes 21 ms against 210 ms, in a fifth of the memory;
//!   causal at B=32, T=64, H=4, d=16, 98 ms against 190; at B=8, T=128, d=16, 83 against 178.
//! - From T·d = 4096 (deit-tiny's T = 65, d = 64; gpt-char's T = 256, d = 64): the heads are
//!   gathered into (3, B, H, T, d) and the four products are batched GEMMs over B·H
//!   (`gemm::matmul_batched`), which use the GEMM core's tiles well (at B=8, T=65, H=3,
//!   d=64: 133 ms against the fused kernel's 145 ms; causal T=64, H=6, d=64: 93 against 143).

use super::{Io, Steps};
use crate::gpu::{GpuError, Tensor};
use crate::nn::graph;
use crate::ops::attention::{self as fused, AttnShape};
use crate::ops::gemm::{self, Layout, Strides};
use crate::ops::{softmax, tokens};

/// (B, T, 3, H, d) -> (3, B, H, T, d).
const SPLIT: [usize; 5] = [2, 0, 3, 1, 4];
/// (B, H, T, d) <-> (B, T, H, d) (its own inverse).
const MERGE: [usize; 4] = [0, 2, 1, 3];

/// Heads whose tokens x head size is below this take the fused kernels (where they fit).
pub const FUSED_BELOW_WORK: usize = 4096;

/// Whether attention of this shape runs on the fused kernels (else the GEMM chain).
pub fn uses_fused(s: AttnShape) -> bool {
    s.tokens * s.head_dim < FUSED_BELOW_WORK && fused::fused_fits(s)
}

pub struct Attention {
    /// (3, B, H, T, d): Q, K and V per head, from forward to backward (GEMM path only).
    pub heads: Option<Tensor>,
    /// (B·H, T, T) softmax probabilities, from forward to backward.
    pub probs: Tensor,
}

pub fn plan(io: &Io, op: &graph::Attention, steps: &mut Steps) -> Result<Attention, GpuError> {
    let [t, d3] = io.x[0].1.tokens().expect("[T, 3D] input");
    let s = AttnShape { batch: io.batch, tokens: t, heads: op.heads, head_dim: d3 / 3 / op.heads, causal: op.causal };
    if uses_fused(s) {
        plan_fused(io, s, steps)
    } else {
        plan_gemm(io, s, steps)
    }
}

/// The fused kernels: forward, then backward's two passes (per query row, per key row).
pub fn plan_fused(io: &Io, s: AttnShape, steps: &mut Steps) -> Result<Attention, GpuError> {
    let t_ = |name: &str, shape: &[usize]| Tensor::zeros(io.gpu, &format!("{}.{name}", io.name), shape);
    let shape = [s.batch, s.heads, s.tokens, s.tokens];
    let probs = t_("probs", &shape)?;
    steps.forward([fused::forward(io.gpu, io.name, s, io.x(0), io.y, &probs)]);
    if let Some(dx) = &io.dx[0] {
        let ds = t_("scores.grad", &shape)?;
        let name = io.backward_label();
        steps.backward.extend(fused::backward(io.gpu, &name, s, io.x(0), &probs, io.dy, dx.t, dx.accumulate, &ds));
    }
    Ok(Attention { heads: None, probs })
}

/// The head permutes, batched GEMMs and the softmax kernels.
pub fn plan_gemm(io: &Io, s: AttnShape, steps: &mut Steps) -> Result<Attention, GpuError> {
    let gpu = io.gpu;
    let (b, t, h, dh) = (s.batch, s.tokens, s.heads, s.head_dim);
    let op = s;
    let g = b * h;
    let block = g * t * dh; // one of Q, K, V
    let t_ = |name: &str, shape: &[usize]| Tensor::zeros(gpu, &format!("{}.{name}", io.name), shape);
    let heads = t_("heads", &[3, b, h, t, dh])?;
    let scores = t_("scores", &[g, t, t])?;
    let probs = t_("probs", &[g, t, t])?;
    let ctx = t_("context", &[b, h, t, dh])?;
    let scale = 1.0 / (dh as f32).sqrt();
    // Products per (batch, head): (T,d)·(T,d)ᵀ -> (T,T) and (T,T)·(T,d) -> (T,d). Q, K and
    // V are blocks 0, 1, 2 of `heads` (and of its gradient), addressed by first offsets:
    // a slice could not start there (binding offsets must be aligned).
    let (q, k, v) = (0, block, 2 * block);
    let tt = |a0: usize, b0: usize| Strides { a: t * dh, b: t * dh, c: t * t, first: [a0, b0, 0] };
    let pv = |b0: usize, c0: usize| Strides { a: t * t, b: t * dh, c: t * dh, first: [0, b0, c0] };

    let mut f = vec![tokens::permute(gpu, io.name, &[b, t, 3, h, dh], &SPLIT, io.x(0), &heads, false)];
    f.extend(gemm::matmul_batched(
        gpu,
        io.name,
        Layout::ABt,
        (g, t, dh, t),
        tt(q, k),
        scale,
        &heads,
        &heads,
        &scores,
        false,
    )?);
    f.push(softmax::forward(gpu, io.name, (g * t, t), op.causal, &scores, &probs));
    f.extend(gemm::matmul_batched(
        gpu,
        io.name,
        Layout::AB,
        (g, t, t, dh),
        pv(v, 0),
        1.0,
        &probs,
        &heads,
        &ctx,
        false,
    )?);
    f.push(tokens::permute(gpu, io.name, &[b, h, t, dh], &MERGE, &ctx, io.y, false));
    steps.forward(f);

    // Backward. The context buffer takes d context, the scores buffer d P (neither is
    // needed after forward); dS needs its own, since the softmax backward reads P.
    let name = io.backward_label();
    let dheads = t_("heads.grad", &[3, b, h, t, dh])?;
    let dscores = t_("scores.grad", &[g, t, t])?;
    let dctx = &ctx;
    let dp = &scores;
    let bwd = &mut steps.backward;
    bwd.push(tokens::permute(gpu, &name, &[b, t, h, dh], &MERGE, io.dy, dctx, false));
    // dV = Pᵀ dC;  dP = dC Vᵀ;  dS = softmax'(P, dP);  dQ = s·dS K;  dK = s·dSᵀ Q.
    let (dq, dk, dv) = (q, k, v);
    let bmm = |layout, dims, st, alpha, a: &Tensor, b: &Tensor, c: &Tensor| {
        gemm::matmul_batched(gpu, &name, layout, dims, st, alpha, a, b, c, false)
    };
    bwd.extend(bmm(Layout::AtB, (g, t, t, dh), pv(0, dv), 1.0, &probs, dctx, &dheads)?);
    bwd.extend(bmm(Layout::ABt, (g, t, dh, t), tt(0, v), 1.0, dctx, &heads, dp)?);
    bwd.push(softmax::backward(gpu, &name, (g * t, t), &probs, dp, &dscores, false));
    bwd.extend(bmm(Layout::AB, (g, t, t, dh), pv(k, dq), scale, &dscores, &heads, &dheads)?);
    bwd.extend(bmm(Layout::AtB, (g, t, t, dh), pv(q, dk), scale, &dscores, &heads, &dheads)?);
    if let Some(dx) = &io.dx[0] {
        let inv = tokens::inverse(&SPLIT);
        bwd.push(tokens::permute(gpu, &name, &[3, b, h, t, dh], &inv, &dheads, dx.t, dx.accumulate));
    }
    Ok(Attention { heads: Some(heads), probs })
}

/// The f64 reference of one attention forward, for tests: qkv (B, T, 3, H, d) -> (B, T, H·d).
pub mod cpu {
    pub fn forward(b: usize, t: usize, heads: usize, dh: usize, causal: bool, qkv: &[f64]) -> Vec<f64> {
        let d = heads * dh;
        let at = |bi: usize, ti: usize, which: usize, hi: usize, k: usize| {
            qkv[((bi * t + ti) * 3 + which) * d + hi * dh + k]
        };
        let mut y = vec![0.0; b * t * d];
        let scale = 1.0 / (dh as f64).sqrt();
        for bi in 0..b {
            for hi in 0..heads {
                for i in 0..t {
                    let n = if causal { i + 1 } else { t };
                    let s: Vec<f64> = (0..n)
                        .map(|j| (0..dh).map(|k| at(bi, i, 0, hi, k) * at(bi, j, 1, hi, k)).sum::<f64>() * scale)
                        .collect();
                    let mx = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|v| (v - mx).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for k in 0..dh {
                        y[(bi * t + i) * d + hi * dh + k] = (0..n).map(|j| e[j] / z * at(bi, j, 2, hi, k)).sum();
                    }
                }
            }
        }
        y
    }
}
