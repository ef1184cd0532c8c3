//! How the GEMM core reads A and B and writes C: the host side of gemm.wgsl's `A_MODE`,
//! `B_MODE`, `C_MODE` and `BATCHED` overrides, and the one list of combinations in use.

use super::Layout;

/// How the GEMM reads A (M x K): gemm.wgsl `A_MODE` is the discriminant.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AView {
    /// `a[g*a_stride + m*K + k]`.
    RowMajor = 0,
    /// Stored transposed (K x M): `a[g*a_stride + k*M + m]`.
    Transposed = 1,
    /// A conv weight (Co, Ci, kh, kw) read as Ci x (Co·t_h·t_w), the taps of one stride
    /// phase (the data gradient).
    ConvWeightPhase = 2,
    /// An NCHW tensor (B, Co, Ho, Wo) read as Co x (B·Ho·Wo) (dy in the weight gradient).
    Nchw = 3,
}

/// How the GEMM reads B (K x N): gemm.wgsl `B_MODE` is the discriminant.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BView {
    /// `b[g*b_stride + k*N + n]`.
    RowMajor = 0,
    /// Stored transposed (N x K): `b[g*b_stride + n*K + k]`.
    Transposed = 1,
    /// im2col of x (B, Ci, H, W): k = (ci, r, s), n = (img, oy, ox) (conv forward).
    Im2col = 2,
    /// dy (B, Co, Ho, Wo) gathered for one stride phase of the data gradient.
    DyPhase = 3,
    /// im2col of x transposed: k = (img, oy, ox), n = (ci, r, s) (the weight gradient).
    Im2colT = 4,
}

/// How the GEMM writes C (M x N): gemm.wgsl `C_MODE` is the discriminant.
#[repr(u32)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CView {
    /// `c[slice*G*M*N + g*c_stride + m*N + n]` (split-K slices, batched products).
    RowMajor = 0,
    /// Scattered to NCHW (B, M, N/B) (conv forward).
    Nchw = 1,
    /// Scattered to one stride phase's pixels of NCHW (B, M, H, W) (the data gradient).
    NchwPhase = 2,
}

/// The operand views of one GEMM, and whether it is batched (gemm.wgsl `BATCHED`: grid z
/// is the product g and the row-major/transposed views are offset by g·stride; otherwise
/// z is a split-K slice).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Views {
    pub a: AView,
    pub b: BView,
    pub c: CView,
    pub batched: bool,
}

impl Views {
    const fn new(a: AView, b: BView, c: CView) -> Views {
        Views { a, b, c, batched: false }
    }
    pub const AB: Views = Views::new(AView::RowMajor, BView::RowMajor, CView::RowMajor);
    pub const ATB: Views = Views::new(AView::Transposed, BView::RowMajor, CView::RowMajor);
    pub const ABT: Views = Views::new(AView::RowMajor, BView::Transposed, CView::RowMajor);
    pub const CONV_FORWARD: Views = Views::new(AView::RowMajor, BView::Im2col, CView::Nchw);
    pub const CONV_DATA_GRAD: Views = Views::new(AView::ConvWeightPhase, BView::DyPhase, CView::NchwPhase);
    pub const CONV_WEIGHT_GRAD: Views = Views::new(AView::Nchw, BView::Im2colT, CView::RowMajor);

    /// The views of a matmul in `layout`.
    pub const fn matmul(layout: Layout) -> Views {
        match layout {
            Layout::AB => Views::AB,
            Layout::AtB => Views::ATB,
            Layout::ABt => Views::ABT,
        }
    }

    /// The views of a batched matmul in `layout`.
    pub const fn matmul_batched(layout: Layout) -> Views {
        Views { batched: true, ..Views::matmul(layout) }
    }

    /// The gemm.wgsl override constants that select these views.
    pub fn constants(&self) -> [(&'static str, f64); 4] {
        [
            ("A_MODE", self.a as u32 as f64),
            ("B_MODE", self.b as u32 as f64),
            ("C_MODE", self.c as u32 as f64),
            ("BATCHED", self.batched as u32 as f64),
        ]
    }

    /// The mode numbers (A_MODE, B_MODE, C_MODE).
    pub fn modes(&self) -> (u32, u32, u32) {
        (self.a as u32, self.b as u32, self.c as u32)
    }
}

/// Every view combination the engine builds a GEMM with: the three matmul layouts, conv
/// forward, data gradient, weight gradient (split-K keeps its row-major C), and the three
/// batched matmul layouts. `gemm` refuses any other (debug builds), and
/// `tests/shaders.rs` translates exactly these under every tile.
pub const VIEWS_IN_USE: &[Views] = &[
    Views::AB,
    Views::ATB,
    Views::ABT,
    Views::CONV_FORWARD,
    Views::CONV_DATA_GRAD,
    Views::CONV_WEIGHT_GRAD,
    Views::matmul_batched(Layout::AB),
    Views::matmul_batched(Layout::AtB),
    Views::matmul_batched(Layout::ABt),
];
