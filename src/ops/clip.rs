//! Gradient clipping by global norm (`shaders/clip.wgsl`), PyTorch's `clip_grad_norm_`:
//! norm = sqrt(Σ g²) over the whole flat (len,) gradient buffer, scale =
//! min(1, max_norm / (norm + 1e-6)). The optimizer of the same step multiplies every
//! gradient by the scale (`sgd::update` / `adamw::update` with `clip`), so clipping adds two
//! dispatches and no pass over the gradients of its own.
//!
//! Deterministic: fixed chunks of [`CHUNK`] elements into partial sums (one workgroup
//! each, a fixed order inside), then one workgroup adds the partials in a fixed order. No
//! float atomics. The padding between parameters in the flat buffer is zero and adds
//! nothing.

use crate::gpu::{grid_1d, Dispatch, Gpu, GpuError, Tensor};

/// Elements per partial sum (the WGSL `CHUNK`): part of the summation order, not a tile.
pub const CHUNK: usize = 4096;

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// `partials_sq`: gradient length; `finish`: partial count.
    pub len: u32,
    pub max_norm: f32,
    pub _p: [u32; 2],
}

/// The buffers of one clipping plan, allocated once for a gradient length.
pub struct GradClip {
    /// (ceil(len / CHUNK),) Σ g² per chunk.
    pub partials: Tensor,
    /// (2,): [scale, norm], what the optimizer reads.
    pub out: Tensor,
    len: usize,
}

impl GradClip {
    pub fn new(gpu: &Gpu, len: usize) -> Result<GradClip, GpuError> {
        Ok(GradClip {
            partials: Tensor::zeros(gpu, "clip-partials", &[len.div_ceil(CHUNK).max(1)])?,
            out: Tensor::zeros(gpu, "clip-scale", &[2])?,
            len,
        })
    }

    /// The two dispatches that compute `out` from the (len,) `grads` for `max_norm`.
    pub fn dispatches(&self, gpu: &Gpu, max_norm: f32, grads: &Tensor) -> Vec<Dispatch> {
        assert_eq!(grads.len(), self.len, "clip: gradient length");
        let n = self.partials.len();
        let p = Params { len: self.len as u32, max_norm, _p: [0; 2] };
        let part = Dispatch::with_bindings(
            gpu,
            "clip.partials",
            ("clip", "partials_sq"),
            &[],
            &p,
            &[(1, grads), (2, &self.partials)],
            grid_1d(n * 256, 256),
        );
        let p = Params { len: n as u32, max_norm, _p: [0; 2] };
        let finish = Dispatch::with_bindings(
            gpu,
            "clip.finish",
            ("clip", "finish"),
            &[],
            &p,
            &[(2, &self.partials), (3, &self.out)],
            [1, 1, 1],
        );
        vec![part, finish]
    }
}

pub mod cpu {
    /// (norm, scale) of `g` for `max_norm`, in f64.
    pub fn scale(max_norm: f64, g: &[f64]) -> (f64, f64) {
        let norm = g.iter().map(|x| x * x).sum::<f64>().sqrt();
        (norm, (max_norm / (norm + 1e-6)).min(1.0))
    }
}
