//! Plain f64 references of the GEMM family, written for clarity, for the tests.

use super::{ConvShape, Layout, Strides};

/// C (M,N) = op(A)·op(B) (+ bias) in the given layout.
pub fn matmul(
    layout: Layout,
    (m, k, n): (usize, usize, usize),
    a: &[f64],
    b: &[f64],
    bias: Option<&[f64]>,
) -> Vec<f64> {
    let mut c = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            let mut s = bias.map_or(0.0, |b| b[j]);
            for l in 0..k {
                let av = match layout {
                    Layout::AtB => a[l * m + i],
                    _ => a[i * k + l],
                };
                let bv = match layout {
                    Layout::ABt => b[j * k + l],
                    _ => b[l * n + j],
                };
                s += av * bv;
            }
            c[i * n + j] = s;
        }
    }
    c
}

/// C_g (=|+=) alpha·op(A_g)·op(B_g) for g in 0..G into `c`, with A_g at
/// `a[g*strides.a ..]`, B_g at `b[g*strides.b ..]`, C_g at `c[g*strides.c ..]` (see
/// `super::matmul_batched`); the rest of `c` is left as it is.
#[allow(clippy::too_many_arguments)]
pub fn matmul_batched(
    layout: Layout,
    (g, m, k, n): (usize, usize, usize, usize),
    strides: Strides,
    alpha: f64,
    a: &[f64],
    b: &[f64],
    c: &mut [f64],
    accumulate: bool,
) {
    for gi in 0..g {
        let f = strides.first;
        let ag = &a[f[0] + gi * strides.a..][..m * k];
        let bg = &b[f[1] + gi * strides.b..][..k * n];
        let cg = &mut c[f[2] + gi * strides.c..][..m * n];
        for (o, v) in cg.iter_mut().zip(matmul(layout, (m, k, n), ag, bg, None)) {
            *o = alpha * v + if accumulate { *o } else { 0.0 };
        }
    }
}

fn at(s: &ConvShape, x: &[f64], img: usize, c: usize, y: isize, xx: isize) -> f64 {
    if y < 0 || xx < 0 || y >= s.h_in as isize || xx >= s.w_in as isize {
        return 0.0;
    }
    x[((img * s.c_in + c) * s.h_in + y as usize) * s.w_in + xx as usize]
}

/// y (B,Co,Ho,Wo) = conv(x, w), zero padding.
pub fn conv_forward(s: &ConvShape, x: &[f64], w: &[f64]) -> Vec<f64> {
    let (ho, wo) = (s.h_out(), s.w_out());
    let mut y = vec![0.0; s.batch * s.c_out * ho * wo];
    for img in 0..s.batch {
        for co in 0..s.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut acc = 0.0;
                    for ci in 0..s.c_in {
                        for r in 0..s.kh {
                            for q in 0..s.kw {
                                let iy = (oy * s.stride + r) as isize - s.pad as isize;
                                let ix = (ox * s.stride + q) as isize - s.pad as isize;
                                acc += w[((co * s.c_in + ci) * s.kh + r) * s.kw + q] * at(s, x, img, ci, iy, ix);
                            }
                        }
                    }
                    y[((img * s.c_out + co) * ho + oy) * wo + ox] = acc;
                }
            }
        }
    }
    y
}

/// (dx, dw) for upstream gradient dy: the adjoint of `conv_forward`, by scattering.
pub fn conv_backward(s: &ConvShape, x: &[f64], w: &[f64], dy: &[f64]) -> (Vec<f64>, Vec<f64>) {
    let (ho, wo) = (s.h_out(), s.w_out());
    let mut dx = vec![0.0; x.len()];
    let mut dw = vec![0.0; w.len()];
    for img in 0..s.batch {
        for co in 0..s.c_out {
            for oy in 0..ho {
                for ox in 0..wo {
                    let g = dy[((img * s.c_out + co) * ho + oy) * wo + ox];
                    for ci in 0..s.c_in {
                        for r in 0..s.kh {
                            for q in 0..s.kw {
                                let iy = (oy * s.stride + r) as isize - s.pad as isize;
                                let ix = (ox * s.stride + q) as isize - s.pad as isize;
                                if iy < 0 || ix < 0 || iy >= s.h_in as isize || ix >= s.w_in as isize {
                                    continue;
                                }
                                let xi = ((img * s.c_in + ci) * s.h_in + iy as usize) * s.w_in + ix as usize;
                                let wi = ((co * s.c_in + ci) * s.kh + r) * s.kw + q;
                                dx[xi] += g * w[wi];
                                dw[wi] += g * x[xi];
                            }
                        }
                    }
                }
            }
        }
    }
    (dx, dw)
}
