//! Fused multi-head self-attention (`shaders/attention.wgsl`): one dispatch forward, two
//! backward, on the qkv linear's output as it is, with no head-split or merge permutes.
//!
//! Shapes (D = H·d): qkv (B, T, 3, H, d) = (B, T, 3·D), Q then K then V, each split into
//! heads (timm's `qkv`); out (B, T, H, d) = (B, T, D) (what timm's `proj` reads); probs
//! and the backward's scratch dS (B, H, T, T).
//!
//! Forward, per (b, h) and query i: S_ij = (q_i·k_j)/√d, P_i = softmax_j(S_i) over j ≤ i
//! when causal (masked P = 0) else all j, max-subtracted; o_i = Σ_j P_ij v_j. P is kept for
//! backward.
//! Backward: dP_ij = dO_i·v_j, dS_ij = P_ij (dP_ij − Σ_j P_ij dP_ij), dq_i = Σ_j dS_ij k_j/√d,
//! dk_j = Σ_i dS_ij q_i/√d, dv_j = Σ_i P_ij dO_i. The first dispatch owns query rows (dS
//! into scratch, dq); the second owns key rows (dk, dv): two dispatches rather than one
//! with a barrier, so that a (b, h) need not fit one workgroup and no invocation waits.
//!
//! One invocation per row, no workgroup memory and no barriers: at the short sequences
//! vision transformers train (T = 17..257, d = 16..64) the per-head products are too small
//! for GEMM tiles, and CPU adapters pay for every barrier. Every sum runs in a fixed order
//! inside one invocation: reruns are bit-identical on any adapter.
//!
//! What this is not: flash attention (P is materialised, O(T²) memory per (b, h)); fast on
//! large discrete GPUs at long sequences (no K/V tiles shared through workgroup memory).

use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub batch: u32,
    pub tokens: u32,
    pub heads: u32,
    pub head_dim: u32,
    /// `CAUSAL` (bit 0); `ACCUMULATE` (bit 1): the backward adds into dqkv.
    pub flags: u32,
    /// 1/√d.
    pub scale: f32,
    /// B·H·T: invocations with work.
    pub rows: u32,
    pub _pad: u32,
}

pub const CAUSAL: u32 = 1;
/// Invocations per workgroup in every entry point (`WG` in the shader).
pub const WG: u32 = 64;
/// The longest head the shader's private row arrays hold (`MAXD`).
pub const MAX_HEAD_DIM: usize = 64;
/// The longest sequence `fused_fits` accepts: every invocation loops over T keys, and
/// past this a per-row kernel is the wrong tool anyway.
pub const MAX_TOKENS: usize = 1024;

/// Layout: qkv (B, T, 3, H, d), i.e. (B, T, 3·D) with D = H·d, Q then K then V, each split
/// into heads (timm's qkv); out (B, T, H, d) = (B, T, D); probs (B, H, T, T).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AttnShape {
    pub batch: usize,
    pub tokens: usize,
    pub heads: usize,
    pub head_dim: usize,
    pub causal: bool,
}

impl AttnShape {
    /// H·d.
    pub fn dim(&self) -> usize {
        self.heads * self.head_dim
    }
    /// Elements of qkv (and dqkv): B·T·3·D.
    pub fn qkv_len(&self) -> usize {
        self.batch * self.tokens * 3 * self.dim()
    }
    /// Elements of out (and dout): B·T·D.
    pub fn out_len(&self) -> usize {
        self.batch * self.tokens * self.dim()
    }
    /// Elements of probs (and the backward's scratch): B·H·T·T.
    pub fn probs_len(&self) -> usize {
        self.batch * self.heads * self.tokens * self.tokens
    }
}

/// Whether the fused kernels handle this shape: 1 ≤ d ≤ 64, 1 ≤ T ≤ 1024, at least one
/// (batch, head), and every index within u32. Otherwise use the GEMM path.
pub fn fused_fits(s: AttnShape) -> bool {
    let nonempty = s.batch > 0 && s.heads > 0 && s.tokens > 0 && s.head_dim > 0;
    nonempty
        && s.head_dim <= MAX_HEAD_DIM
        && s.tokens <= MAX_TOKENS
        && s.qkv_len() <= u32::MAX as usize
        && s.probs_len() <= u32::MAX as usize
}

fn params(s: AttnShape, flags: u32) -> Params {
    assert!(fused_fits(s), "fused attention: shape {s:?} not supported (see fused_fits)");
    Params {
        batch: s.batch as u32,
        tokens: s.tokens as u32,
        heads: s.heads as u32,
        head_dim: s.head_dim as u32,
        flags: flags | if s.causal { CAUSAL } else { 0 },
        scale: 1.0 / (s.head_dim as f32).sqrt(),
        rows: (s.batch * s.heads * s.tokens) as u32,
        _pad: 0,
    }
}

fn check(label: &str, what: &str, t: &Tensor, len: usize) {
    assert!(t.len() >= len, "attention `{label}`: {what} `{}` has {} elements, needs {len}", t.name, t.len());
}

/// out = softmax(Q Kᵀ/√d [causal: key j > query i excluded]) V per (batch, head); probs saved.
/// qkv (B, T, 3, H, d), out (B, T, H, d), probs (B, H, T, T). Panics unless `fused_fits(s)`.
pub fn forward(gpu: &Gpu, label: &str, s: AttnShape, qkv: &Tensor, out: &Tensor, probs: &Tensor) -> Dispatch {
    check(label, "qkv", qkv, s.qkv_len());
    check(label, "out", out, s.out_len());
    check(label, "probs", probs, s.probs_len());
    let p = params(s, 0);
    let grid = grid_1d(p.rows as usize, WG);
    Dispatch::new(gpu, label, ("attention", "forward"), &[], &p, &[qkv, out, probs], grid)
}

/// dqkv (+)= d loss / d qkv (`accumulate`), from qkv, forward's probs and dout = d loss / d out.
/// Two dispatches: query rows (dS into `scratch`, the Q slots of dqkv), then key rows (the K
/// and V slots). `scratch` is a (B, H, T, T) buffer the caller owns (its contents on entry do
/// not matter; it may be shared by every attention layer of a net). Deterministic.
/// qkv, dqkv (B, T, 3, H, d); probs, scratch (B, H, T, T); dout (B, T, H, d).
#[allow(clippy::too_many_arguments)]
pub fn backward(
    gpu: &Gpu,
    label: &str,
    s: AttnShape,
    qkv: &Tensor,
    probs: &Tensor,
    dout: &Tensor,
    dqkv: &Tensor,
    accumulate: bool,
    scratch: &Tensor,
) -> Vec<Dispatch> {
    check(label, "qkv", qkv, s.qkv_len());
    check(label, "probs", probs, s.probs_len());
    check(label, "dout", dout, s.out_len());
    check(label, "dqkv", dqkv, s.qkv_len());
    check(label, "scratch", scratch, s.probs_len());
    let p = params(s, if accumulate { ACCUMULATE } else { 0 });
    let grid = grid_1d(p.rows as usize, WG);
    let ts = [qkv, probs, dout, dqkv, scratch];
    vec![
        Dispatch::new(gpu, label, ("attention", "backward_q"), &[], &p, &ts, grid),
        Dispatch::new(gpu, label, ("attention", "backward_kv"), &[], &p, &ts, grid),
    ]
}

/// Plain f64 loops, the references the GPU is held to.
pub mod cpu {
    use super::AttnShape;

    fn at(s: AttnShape, b: usize, t: usize, which: usize, h: usize) -> usize {
        ((b * s.tokens + t) * 3 + which) * s.dim() + h * s.head_dim
    }
    fn out_at(s: AttnShape, b: usize, t: usize, h: usize) -> usize {
        (b * s.tokens + t) * s.dim() + h * s.head_dim
    }
    fn dot(a: &[f64], b: &[f64]) -> f64 {
        a.iter().zip(b).map(|(x, y)| x * y).sum()
    }

    /// (out (B, T, H, d), probs (B, H, T, T)) from qkv (B, T, 3, H, d).
    pub fn forward(s: AttnShape, qkv: &[f64]) -> (Vec<f64>, Vec<f64>) {
        let (t, dh) = (s.tokens, s.head_dim);
        let scale = 1.0 / (dh as f64).sqrt();
        let mut out = vec![0.0; s.out_len()];
        let mut probs = vec![0.0; s.probs_len()];
        for b in 0..s.batch {
            for h in 0..s.heads {
                for i in 0..t {
                    let n = if s.causal { i + 1 } else { t };
                    let q = &qkv[at(s, b, i, 0, h)..][..dh];
                    let sc: Vec<f64> = (0..n).map(|j| dot(q, &qkv[at(s, b, j, 1, h)..][..dh]) * scale).collect();
                    let m = sc.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    // f64::max drops NaN; keep it, as the GPU does.
                    let m = if sc.iter().any(|v| v.is_nan()) { f64::NAN } else { m };
                    let z: f64 = sc.iter().map(|v| (v - m).exp()).sum();
                    let row = ((b * s.heads + h) * t + i) * t;
                    for j in 0..n {
                        let pij = (sc[j] - m).exp() / z;
                        probs[row + j] = pij;
                        let v = &qkv[at(s, b, j, 2, h)..][..dh];
                        for (o, v) in out[out_at(s, b, i, h)..][..dh].iter_mut().zip(v) {
                            *o += pij * v;
                        }
                    }
                }
            }
        }
        (out, probs)
    }

    /// dqkv (B, T, 3, H, d) = d(Σ dout·out)/d qkv, dout (B, T, H, d).
    pub fn backward(s: AttnShape, qkv: &[f64], dout: &[f64]) -> Vec<f64> {
        let (t, dh) = (s.tokens, s.head_dim);
        let scale = 1.0 / (dh as f64).sqrt();
        let (_, probs) = forward(s, qkv);
        let mut dqkv = vec![0.0; s.qkv_len()];
        for b in 0..s.batch {
            for h in 0..s.heads {
                let pb = (b * s.heads + h) * t * t;
                // dS (T, T) of this (b, h).
                let mut ds = vec![0.0; t * t];
                for i in 0..t {
                    let g = &dout[out_at(s, b, i, h)..][..dh];
                    let dp: Vec<f64> = (0..t).map(|j| dot(g, &qkv[at(s, b, j, 2, h)..][..dh])).collect();
                    let r: f64 = (0..t).map(|j| probs[pb + i * t + j] * dp[j]).sum();
                    for j in 0..t {
                        ds[i * t + j] = probs[pb + i * t + j] * (dp[j] - r);
                    }
                }
                for i in 0..t {
                    for j in 0..t {
                        let (dsij, pij) = (ds[i * t + j], probs[pb + i * t + j]);
                        for c in 0..dh {
                            let (qi, kj) = (qkv[at(s, b, i, 0, h) + c], qkv[at(s, b, j, 1, h) + c]);
                            dqkv[at(s, b, i, 0, h) + c] += scale * dsij * kj;
                            dqkv[at(s, b, j, 1, h) + c] += scale * dsij * qi;
                            dqkv[at(s, b, j, 2, h) + c] += pij * dout[out_at(s, b, i, h) + c];
                        }
                    }
                }
            }
        }
        dqkv
    }
}
