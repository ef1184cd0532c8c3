//! Tiled GEMM on the GPU, and the two things built on it: matmul in the three layouts
//! training needs, and 2-D convolution as implicit GEMM (forward, data gradient, weight
//! gradient) with no materialised im2col. Kernel: `shaders/gemm.wgsl`.
//!
//! Shapes (row-major unless said otherwise):
//! - `Layout::AB`:  C (M,N) = A (M,K) · B (K,N)
//! - `Layout::AtB`: C (M,N) = Aᵀ · B with A stored (K,M)
//! - `Layout::ABt`: C (M,N) = A · Bᵀ with B stored (N,K)
//! - batched (`matmul_batched`): C_g = op(A_g)·op(B_g) for g in 0..G, each as above, with
//!   A_g, B_g, C_g at element strides (0 for a shared operand) in one dispatch
//! - conv forward:  y (B,Co,Ho,Wo) = W (Co, Ci·kh·kw) · im2col(x)   [M=Co, N=B·Ho·Wo, K=Ci·kh·kw]
//! - conv data grad: dx (B,Ci,H,W) = Wᵀ · gather(dy)               [M=Ci, N=B·H·W,  K=Co·kh·kw]
//! - conv weight grad: dW (Co,Ci,kh,kw) = dy · im2col(x)ᵀ           [M=Co, N=Ci·kh·kw, K=B·Ho·Wo]
//!
//! Operand views (`AView`, `BView`, `CView`: how a logical element of A, B, C maps to
//! memory) are the shader's `A_MODE`, `B_MODE`, `C_MODE`; `VIEWS_IN_USE` lists every
//! combination the engine builds, which `tests/shaders.rs` translates under every tile.
//!
//! Files: this one (Params, the dispatch builders), `views.rs` (operand views and the list
//! in use), `tile.rs` (workgroup tiles), `cpu.rs` (the f64 references).
//!
//! Functions here build `Dispatch`es at plan time and allocate what they need then (the
//! split-K scratch buffer). The only GPU work they do is tile tuning (`tune.rs`), which
//! times candidate tiles on scratch operands the first time a shape is planned.

pub mod cpu;
mod tile;
mod views;

pub use tile::Tile;
pub use views::{AView, BView, CView, Views, VIEWS_IN_USE};

use crate::gpu::{grid_1d, Dispatch, Gpu, GpuError, Tensor};

/// Matches `Params` in gemm.wgsl field for field.
#[repr(C)]
#[derive(Clone, Copy, Debug, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub m: u32,
    pub n: u32,
    pub k: u32,
    pub flags: u32,
    pub batch: u32,
    pub c_in: u32,
    pub h_in: u32,
    pub w_in: u32,
    pub c_out: u32,
    pub h_out: u32,
    pub w_out: u32,
    pub kh: u32,
    pub kw: u32,
    pub stride: u32,
    pub pad: u32,
    pub k_split: u32,
    pub alpha: f32,
    /// One stride phase of the data gradient: see "stride phases" in gemm.wgsl.
    pub ph_y: u32,
    pub ph_x: u32,
    pub y0: u32,
    pub x0: u32,
    pub q_h: u32,
    pub q_w: u32,
    pub t_h: u32,
    pub t_w: u32,
    pub base_y: u32,
    pub base_x: u32,
    /// Products of a batched GEMM (G; 1 otherwise) and the element strides between
    /// consecutive A_g, B_g, C_g (0: one operand shared by all). Read only by batched
    /// pipelines (`Views::batched`); G is the grid's z there.
    pub groups: u32,
    pub a_stride: u32,
    pub b_stride: u32,
    pub c_stride: u32,
    /// Element offsets of A_0, B_0, C_0 in their buffers (batched pipelines only).
    pub a_first: u32,
    pub b_first: u32,
    pub c_first: u32,
    pub _pad: [u32; 2],
}

impl Default for Params {
    /// Zero sizes, batch 1, stride 1, scale 1, one product.
    fn default() -> Self {
        Params { batch: 1, stride: 1, alpha: 1.0, groups: 1, ..bytemuck::Zeroable::zeroed() }
    }
}

/// Matches `Params` in elementwise.wgsl.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct EwParams {
    pub len: u32,
    pub rows: u32,
    pub flags: u32,
    pub _pad: u32,
}

pub const FLAG_BIAS: u32 = 1;
pub const FLAG_ACCUMULATE: u32 = 2;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    AB,
    AtB,
    ABt,
}

/// Geometry of a 2-D convolution over NCHW tensors.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvShape {
    pub batch: usize,
    pub c_in: usize,
    pub h_in: usize,
    pub w_in: usize,
    pub c_out: usize,
    pub kh: usize,
    pub kw: usize,
    pub stride: usize,
    pub pad: usize,
}

impl ConvShape {
    pub fn h_out(&self) -> usize {
        (self.h_in + 2 * self.pad - self.kh) / self.stride + 1
    }
    pub fn w_out(&self) -> usize {
        (self.w_in + 2 * self.pad - self.kw) / self.stride + 1
    }
    pub fn input_shape(&self) -> [usize; 4] {
        [self.batch, self.c_in, self.h_in, self.w_in]
    }
    pub fn output_shape(&self) -> [usize; 4] {
        [self.batch, self.c_out, self.h_out(), self.w_out()]
    }
    pub fn weight_shape(&self) -> [usize; 4] {
        [self.c_out, self.c_in, self.kh, self.kw]
    }
    /// Multiply-adds of the forward pass.
    pub fn macs(&self) -> usize {
        self.batch * self.c_out * self.h_out() * self.w_out() * self.c_in * self.kh * self.kw
    }
    fn params(&self) -> Params {
        Params {
            batch: self.batch as u32,
            c_in: self.c_in as u32,
            h_in: self.h_in as u32,
            w_in: self.w_in as u32,
            c_out: self.c_out as u32,
            h_out: self.h_out() as u32,
            w_out: self.w_out() as u32,
            kh: self.kh as u32,
            kw: self.kw as u32,
            stride: self.stride as u32,
            pad: self.pad as u32,
            ..Default::default()
        }
    }
}

/// How many K slices to run in parallel. A GEMM with few output tiles and a long K (the
/// weight gradient of a convolution: K = batch·Ho·Wo) would otherwise leave most of a
/// large GPU idle. CPU adapters have few cores: no split there.
fn split_count(gpu: &Gpu, m: usize, n: usize, k: usize) -> usize {
    if gpu.adapter().is_cpu() {
        // A few workgroups keep every core busy; more only add the reduction pass.
        let tile = Tile::for_shape(m, n);
        let tiles = m.div_ceil(tile.rows()) * n.div_ceil(tile.cols());
        return if tiles >= 8 { 1 } else { (8 / tiles).min(k / 1024).max(1) };
    }
    let tile = Tile::for_shape(m, n);
    let tiles = m.div_ceil(tile.rows()) * n.div_ceil(tile.cols());
    let want = 256usize.div_ceil(tiles);
    want.min(k / 256).clamp(1, 64)
}

/// The general entry: C (M,N) = A·B through the given operand views (one of
/// `VIEWS_IN_USE`). `flags` may hold FLAG_BIAS (not with split-K) and FLAG_ACCUMULATE.
/// A batched GEMM (`views.batched`: `p.groups` products) runs unsplit.
#[allow(clippy::too_many_arguments)]
fn gemm(
    gpu: &Gpu,
    label: &str,
    views: Views,
    mut p: Params,
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    allow_split: bool,
) -> Result<Vec<Dispatch>, GpuError> {
    debug_assert!(VIEWS_IN_USE.contains(&views), "GEMM `{label}`: views {views:?} are not in VIEWS_IN_USE");
    let (m, n, k) = (p.m as usize, p.n as usize, p.k as usize);
    let groups = if views.batched { p.groups as usize } else { 1 };
    let splits = if allow_split && bias.is_none() && !views.batched { split_count(gpu, m, n, k) } else { 1 };
    let dummy;
    let bias_t = match bias {
        Some(t) => {
            p.flags |= FLAG_BIAS;
            t
        }
        None => {
            dummy = Tensor::zeros(gpu, "no-bias", &[1])?;
            &dummy
        }
    };
    // Slices of K are multiples of the largest K step, so the partition is the tile's
    // business no more than the result is (see tune.rs).
    let k_split = if splits == 1 { k } else { k.div_ceil(splits).div_ceil(Tile::MAX_BK) * Tile::MAX_BK };
    let splits = k.div_ceil(k_split.max(1)).max(1);
    let accumulate = p.flags & FLAG_ACCUMULATE;
    if splits > 1 {
        assert_eq!(views.c, CView::RowMajor, "split-K writes row-major slices");
        p.flags &= !FLAG_ACCUMULATE;
    }
    p.k_split = k_split as u32;
    let [a_mode, b_mode, c_mode, batched] = views.constants();
    let main = |tile: Tile, label: &str, ops: [&Tensor; 4]| {
        let consts = [
            a_mode,
            b_mode,
            c_mode,
            batched,
            ("WG_M", tile.wg_m as f64),
            ("WG_N", tile.wg_n as f64),
            ("BK", tile.bk as f64),
            ("TM", tile.tm as f64),
            ("STAGES", tile.stages as f64),
        ];
        let grid = [n.div_ceil(tile.cols()) as u32, m.div_ceil(tile.rows()) as u32, (splits * groups) as u32];
        Dispatch::new(gpu, label, ("gemm", tile.entry()), &consts, &p, &ops, grid)
    };
    let c_len = if splits > 1 { splits * m * n } else { c.len() };
    let tile = super::tune::choose(gpu, views, &p, splits, (a.len(), b.len(), c_len), |t, ops| main(t, "tune", ops))?;
    if splits == 1 {
        return Ok(vec![main(tile, label, [a, b, bias_t, c])]);
    }
    let scratch = Tensor::zeros(gpu, &format!("{label}.split-k"), &[splits, m, n])?;
    let partial = main(tile, label, [a, b, bias_t, &scratch]);
    let ew = EwParams { len: (m * n) as u32, rows: splits as u32, flags: accumulate, _pad: 0 };
    let reduce = Dispatch::new(
        gpu,
        &format!("{label}.sum-slices"),
        ("elementwise", "sum_slices"),
        &[],
        &ew,
        &[&scratch, c],
        grid_1d(m * n, 256),
    );
    Ok(vec![partial, reduce])
}

/// C (M,N) (+)= op(A)·op(B) (+ bias (N,)). The shapes of `a` and `b` must match `layout`
/// as documented at the top of this file.
#[allow(clippy::too_many_arguments)]
pub fn matmul(
    gpu: &Gpu,
    label: &str,
    layout: Layout,
    (m, k, n): (usize, usize, usize),
    a: &Tensor,
    b: &Tensor,
    bias: Option<&Tensor>,
    c: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>, GpuError> {
    assert_eq!(a.len(), m * k, "matmul `{label}`: A is not {m}x{k}");
    assert_eq!(b.len(), k * n, "matmul `{label}`: B is not {k}x{n}");
    assert_eq!(c.len(), m * n, "matmul `{label}`: C is not {m}x{n}");
    let p = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        flags: if accumulate { FLAG_ACCUMULATE } else { 0 },
        batch: 1,
        ..Default::default()
    };
    gemm(gpu, label, Views::matmul(layout), p, a, b, bias, c, true)
}

/// C (M,N) += alpha · op(A)·op(B): the accumulate-and-scale form regularisers use.
#[allow(clippy::too_many_arguments)]
pub fn matmul_scaled_add(
    gpu: &Gpu,
    label: &str,
    layout: Layout,
    (m, k, n): (usize, usize, usize),
    alpha: f32,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
) -> Result<Vec<Dispatch>, GpuError> {
    assert!(a.len() == m * k && b.len() == k * n && c.len() == m * n, "matmul `{label}`: shapes");
    let p = Params { m: m as u32, n: n as u32, k: k as u32, flags: FLAG_ACCUMULATE, alpha, ..Default::default() };
    gemm(gpu, label, Views::matmul(layout), p, a, b, None, c, true)
}

/// Where the products of a batched GEMM sit: A_g starts at element `first[0] + g*a` of A,
/// B_g at `first[1] + g*b`, C_g at `first[2] + g*c`. A stride of 0 shares one operand
/// among all products (one weight for every batch); C's stride must not make two
/// products' outputs overlap. The first offsets let operands be blocks of one buffer at
/// offsets a binding could not start at (attention's Q, K and V).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Strides {
    pub a: usize,
    pub b: usize,
    pub c: usize,
    pub first: [usize; 3],
}

impl Strides {
    /// Products stored back to back from element 0: A (G,·) of M·K each, B of K·N, C of M·N.
    pub fn dense((m, k, n): (usize, usize, usize)) -> Strides {
        Strides { a: m * k, b: k * n, c: m * n, first: [0; 3] }
    }
}

/// C_g (M,N) (+)= alpha · op(A_g)·op(B_g) for g in 0..G, in one dispatch (grid z = g; no
/// split-K): attention's (batch x head) products. Each product has the shapes of `layout`
/// (top of this file): A_g is (M,K), or (K,M) for `AtB`; B_g (K,N), or (N,K) for `ABt`;
/// C_g (M,N) row-major. A_g = `a[g*strides.a ..]`, likewise B_g and C_g, so `a` holds at
/// least (G-1)·strides.a + M·K elements (M·K when shared: stride 0), and so on. Every
/// product sums its K in the order `matmul` does: G = 1 gives `matmul`'s bits.
#[allow(clippy::too_many_arguments)]
pub fn matmul_batched(
    gpu: &Gpu,
    label: &str,
    layout: Layout,
    (g, m, k, n): (usize, usize, usize, usize),
    strides: Strides,
    alpha: f32,
    a: &Tensor,
    b: &Tensor,
    c: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>, GpuError> {
    assert!(g >= 1, "matmul_batched `{label}`: no products");
    assert!(g <= crate::gpu::MAX_GROUPS as usize, "matmul_batched `{label}`: {g} products exceed the grid limit");
    let f = strides.first;
    for (name, t, first, stride, one) in
        [("A", a, f[0], strides.a, m * k), ("B", b, f[1], strides.b, k * n), ("C", c, f[2], strides.c, m * n)]
    {
        let need = first + (g - 1) * stride + one;
        assert!(
            t.len() >= need,
            "matmul_batched `{label}`: {name} holds {} elements, {g} products need {need}",
            t.len()
        );
    }
    assert!(g == 1 || strides.c >= m * n, "matmul_batched `{label}`: C stride {} overlaps {m}x{n} products", strides.c);
    let p = Params {
        m: m as u32,
        n: n as u32,
        k: k as u32,
        flags: if accumulate { FLAG_ACCUMULATE } else { 0 },
        alpha,
        groups: g as u32,
        a_stride: strides.a as u32,
        b_stride: strides.b as u32,
        c_stride: strides.c as u32,
        a_first: f[0] as u32,
        b_first: f[1] as u32,
        c_first: f[2] as u32,
        ..Default::default()
    };
    gemm(gpu, label, Views::matmul_batched(layout), p, a, b, None, c, false)
}

/// y (B,Co,Ho,Wo) = conv(x (B,Ci,H,W), w (Co,Ci,kh,kw)).
pub fn conv_forward(
    gpu: &Gpu,
    label: &str,
    s: &ConvShape,
    x: &Tensor,
    w: &Tensor,
    y: &Tensor,
) -> Result<Vec<Dispatch>, GpuError> {
    assert_eq!(y.len(), s.output_shape().iter().product::<usize>(), "conv `{label}` output");
    let mut p = s.params();
    p.m = s.c_out as u32;
    p.n = (s.batch * s.h_out() * s.w_out()) as u32;
    p.k = (s.c_in * s.kh * s.kw) as u32;
    gemm(gpu, label, Views::CONV_FORWARD, p, w, x, None, y, false)
}

/// One stride phase of a data gradient: the input pixels whose (coordinate + pad) is
/// `ph` modulo the stride, along one axis of `size` pixels and a kernel of `k` taps.
/// Returns (first pixel, pixels, taps, base) with output index = base + q - t.
fn phase(size: usize, k: usize, stride: usize, pad: usize, ph: usize) -> (usize, usize, usize, usize) {
    let first = (ph + stride - pad % stride) % stride;
    let pixels = if first < size { (size - first).div_ceil(stride) } else { 0 };
    let taps = if ph < k { (k - ph).div_ceil(stride) } else { 0 };
    // first + pad ≡ ph (mod stride) and first + pad >= ph, so this divides exactly.
    let base = (first + pad - ph) / stride;
    (first, pixels, taps, base)
}

/// dx (B,Ci,H,W) (+)= data gradient of the convolution given dy (B,Co,Ho,Wo) and w: one
/// GEMM per stride phase (stride² of them; one under stride 1), each over its own pixels
/// and only the taps that reach them. A phase no tap reaches (a 1x1 kernel under stride
/// 2) still runs, with K = 0, so its pixels are written (zero, or left as they were when
/// accumulating).
pub fn conv_backward_data(
    gpu: &Gpu,
    label: &str,
    s: &ConvShape,
    dy: &Tensor,
    w: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>, GpuError> {
    assert_eq!(dx.len(), s.input_shape().iter().product::<usize>(), "conv `{label}` data gradient");
    let mut out = Vec::new();
    for ph_y in 0..s.stride {
        let (y0, q_h, t_h, base_y) = phase(s.h_in, s.kh, s.stride, s.pad, ph_y);
        for ph_x in 0..s.stride {
            let (x0, q_w, t_w, base_x) = phase(s.w_in, s.kw, s.stride, s.pad, ph_x);
            if q_h * q_w == 0 {
                continue;
            }
            let p = Params {
                m: s.c_in as u32,
                n: (s.batch * q_h * q_w) as u32,
                k: (s.c_out * t_h * t_w) as u32,
                flags: if accumulate { FLAG_ACCUMULATE } else { 0 },
                ph_y: ph_y as u32,
                ph_x: ph_x as u32,
                y0: y0 as u32,
                x0: x0 as u32,
                q_h: q_h as u32,
                q_w: q_w as u32,
                t_h: t_h as u32,
                t_w: t_w as u32,
                base_y: base_y as u32,
                base_x: base_x as u32,
                ..s.params()
            };
            let name = if s.stride == 1 { label.to_string() } else { format!("{label}.phase{ph_y}{ph_x}") };
            out.extend(gemm(gpu, &name, Views::CONV_DATA_GRAD, p, w, dy, None, dx, false)?);
        }
    }
    Ok(out)
}

/// dw (Co,Ci,kh,kw) (+)= weight gradient given dy (B,Co,Ho,Wo) and x (B,Ci,H,W).
pub fn conv_backward_weight(
    gpu: &Gpu,
    label: &str,
    s: &ConvShape,
    dy: &Tensor,
    x: &Tensor,
    dw: &Tensor,
    accumulate: bool,
) -> Result<Vec<Dispatch>, GpuError> {
    let mut p = s.params();
    p.m = s.c_out as u32;
    p.n = (s.c_in * s.kh * s.kw) as u32;
    p.k = (s.batch * s.h_out() * s.w_out()) as u32;
    p.flags = if accumulate { FLAG_ACCUMULATE } else { 0 };
    gemm(gpu, label, Views::CONV_WEIGHT_GRAD, p, dy, x, None, dw, true)
}

/// db (N,) (+)= column sums of dy (rows, N): the gradient of a bias added to every row.
pub fn bias_grad(gpu: &Gpu, label: &str, rows: usize, dy: &Tensor, db: &Tensor, accumulate: bool) -> Dispatch {
    let n = db.len();
    assert_eq!(dy.len(), rows * n, "bias_grad `{label}`");
    let p = EwParams { len: n as u32, rows: rows as u32, flags: if accumulate { FLAG_ACCUMULATE } else { 0 }, _pad: 0 };
    Dispatch::new(gpu, label, ("elementwise", "column_sum"), &[], &p, &[dy, db], grid_1d(n, 256))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn views_map_to_shader_modes_once() {
        assert_eq!(Views::AB.modes(), (0, 0, 0));
        assert_eq!(Views::ATB.modes(), (1, 0, 0));
        assert_eq!(Views::ABT.modes(), (0, 1, 0));
        assert_eq!(Views::CONV_FORWARD.modes(), (0, 2, 1));
        assert_eq!(Views::CONV_DATA_GRAD.modes(), (2, 3, 2));
        assert_eq!(Views::CONV_WEIGHT_GRAD.modes(), (3, 4, 0));
        for (i, v) in VIEWS_IN_USE.iter().enumerate() {
            assert!(!VIEWS_IN_USE[..i].contains(v), "{v:?} listed twice");
        }
        for l in [Layout::AB, Layout::AtB, Layout::ABt] {
            assert!(VIEWS_IN_USE.contains(&Views::matmul(l)));
            assert!(VIEWS_IN_USE.contains(&Views::matmul_batched(l)));
            assert_eq!(Views::matmul_batched(l).modes(), Views::matmul(l).modes());
        }
    }

    #[test]
    fn params_is_a_whole_number_of_16_bytes() {
        assert_eq!(std::mem::size_of::<Params>() % 16, 0);
        assert_eq!(Params::default().groups, 1);
    }
}
