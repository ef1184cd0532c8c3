//! 2x2/stride-2 max-pool and global average pool over NCHW planes (`shaders/pool.wgsl`).
//! x: (planes, H, W) with planes = B·C; max-pool y: (planes, H/2, W/2); avg-pool y: (planes,).

use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub planes: u32,
    pub h_in: u32,
    pub w_in: u32,
    pub flags: u32,
}

fn params(planes: usize, h: usize, w: usize, accumulate: bool) -> Params {
    Params { planes: planes as u32, h_in: h as u32, w_in: w as u32, flags: if accumulate { ACCUMULATE } else { 0 } }
}

pub fn max_forward(gpu: &Gpu, label: &str, (planes, h, w): (usize, usize, usize), x: &Tensor, y: &Tensor) -> Dispatch {
    let p = params(planes, h, w, false);
    Dispatch::new(gpu, label, ("pool", "max_forward"), &[], &p, &[x, y], grid_1d(planes * (h / 2) * (w / 2), 256))
}

#[allow(clippy::too_many_arguments)]
pub fn max_backward(
    gpu: &Gpu,
    label: &str,
    (planes, h, w): (usize, usize, usize),
    x: &Tensor,
    dy: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> Dispatch {
    let p = params(planes, h, w, accumulate);
    Dispatch::new(gpu, label, ("pool", "max_backward"), &[], &p, &[dy, dx, x], grid_1d(planes * h * w, 256))
}

pub fn avg_forward(gpu: &Gpu, label: &str, (planes, h, w): (usize, usize, usize), x: &Tensor, y: &Tensor) -> Dispatch {
    Dispatch::new(gpu, label, ("pool", "avg_forward"), &[], &params(planes, h, w, false), &[x, y], grid_1d(planes, 256))
}

pub fn avg_backward(
    gpu: &Gpu,
    label: &str,
    (planes, h, w): (usize, usize, usize),
    dy: &Tensor,
    dx: &Tensor,
    accumulate: bool,
) -> Dispatch {
    let p = params(planes, h, w, accumulate);
    Dispatch::new(gpu, label, ("pool", "avg_backward"), &[], &p, &[dy, dx], grid_1d(planes * h * w, 256))
}

pub mod cpu {
    /// 2x2 max-pool, stride 2.
    pub fn max_forward((planes, h, w): (usize, usize, usize), x: &[f64]) -> Vec<f64> {
        let (ho, wo) = (h / 2, w / 2);
        let mut y = vec![0.0; planes * ho * wo];
        for pl in 0..planes {
            for oy in 0..ho {
                for ox in 0..wo {
                    let b = (pl * h + 2 * oy) * w + 2 * ox;
                    y[(pl * ho + oy) * wo + ox] = x[b].max(x[b + 1]).max(x[b + w]).max(x[b + w + 1]);
                }
            }
        }
        y
    }
    /// Gradient to the first maximum of each window (row-major), as PyTorch.
    pub fn max_backward((planes, h, w): (usize, usize, usize), x: &[f64], dy: &[f64]) -> Vec<f64> {
        let (ho, wo) = (h / 2, w / 2);
        let mut dx = vec![0.0; x.len()];
        for pl in 0..planes {
            for oy in 0..ho {
                for ox in 0..wo {
                    let b = (pl * h + 2 * oy) * w + 2 * ox;
                    let cands = [b, b + 1, b + w, b + w + 1];
                    let mut best = b;
                    for &j in &cands[1..] {
                        if x[j] > x[best] {
                            best = j;
                        }
                    }
                    dx[best] += dy[(pl * ho + oy) * wo + ox];
                }
            }
        }
        dx
    }
    pub fn avg_forward((planes, h, w): (usize, usize, usize), x: &[f64]) -> Vec<f64> {
        (0..planes).map(|p| x[p * h * w..(p + 1) * h * w].iter().sum::<f64>() / (h * w) as f64).collect()
    }
    pub fn avg_backward((planes, h, w): (usize, usize, usize), dy: &[f64]) -> Vec<f64> {
        (0..planes * h * w).map(|i| dy[i / (h * w)] / (h * w) as f64).collect()
    }
}
