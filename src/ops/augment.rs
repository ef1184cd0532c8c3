//! Batches built on the GPU from a uint8 data set uploaded once (`shaders/augment.wgsl`):
//! gather by this epoch's permutation, random crop with zero padding, random horizontal
//! flip, per-channel normalisation. Output x (B, C, H, W) f32 and labels (B,) u32.
//!
//! The images are split into two chunks of whole images so a data set up to twice the
//! adapter's storage-binding limit fits (CIFAR-10's 153 MB on lavapipe's 128 MiB); a larger
//! one is refused at upload with both sizes named.

use crate::data::Dataset;
use crate::gpu::{grid_1d, Dispatch, Gpu, GpuError, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    pub batch: u32,
    pub channels: u32,
    pub height: u32,
    pub width: u32,
    pub n: u32,
    pub per_chunk: u32,
    pub pad: u32,
    pub flags: u32,
    pub mean: [f32; 4],
    pub inv_std: [f32; 4],
}

pub const FLIP: u32 = 1;

/// How a batch is drawn: crop padding (0 = none), flip, and normalisation per channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Augment {
    pub pad: usize,
    pub flip: bool,
    pub mean_std: Vec<(f32, f32)>,
}

impl Augment {
    /// No augmentation and no normalisation (a language model's runs, which have no images).
    pub fn none() -> Augment {
        Augment { pad: 0, flip: false, mean_std: vec![] }
    }
}

/// A data set split resident on the GPU.
pub struct DeviceData {
    pub chunks: [Tensor; 2],
    pub labels: Tensor,
    pub n: usize,
    pub per_chunk: usize,
    pub channels: usize,
    pub height: usize,
    pub width: usize,
}

fn pack(bytes: &[u8]) -> Vec<u32> {
    bytes.chunks(4).map(|c| c.iter().enumerate().fold(0u32, |w, (i, &b)| w | (b as u32) << (8 * i))).collect()
}

impl DeviceData {
    pub fn upload(gpu: &Gpu, name: &str, d: &Dataset) -> Result<DeviceData, GpuError> {
        let img = d.image_bytes();
        let limit = gpu.adapter().max_storage_binding.min(gpu.adapter().max_buffer);
        // Whole images per chunk, rounded so the chunk stays within the limit.
        let per_chunk = ((limit as usize).saturating_sub(4) / img.max(1)).max(1).min(d.n.max(1));
        if d.n > 2 * per_chunk {
            return Err(GpuError::TooLarge {
                tensor: format!("{name} images"),
                bytes: (d.n * img) as u64,
                limit: 2 * limit,
                what: "data set (two storage bindings)",
                adapter: gpu.adapter().name.clone(),
            });
        }
        let split = per_chunk.min(d.n) * img;
        let first = pack(&d.images[..split]);
        let second = pack(&d.images[split..]);
        let c0 = Tensor::from_slice(gpu, &format!("{name}.images0"), &[first.len()], &first)?;
        let c1 = if second.is_empty() {
            Tensor::zeros(gpu, &format!("{name}.images1"), &[1])?
        } else {
            Tensor::from_slice(gpu, &format!("{name}.images1"), &[second.len()], &second)?
        };
        let labels = Tensor::from_slice(gpu, &format!("{name}.labels"), &[d.labels.len()], &d.labels)?;
        Ok(DeviceData {
            chunks: [c0, c1],
            labels,
            n: d.n,
            per_chunk,
            channels: d.channels,
            height: d.height,
            width: d.width,
        })
    }
}

/// x (B,C,H,W), labels (B,) for this step's batch; `perm` (n,) u32, `step` the StepState.
#[allow(clippy::too_many_arguments)]
pub fn batch(
    gpu: &Gpu,
    label: &str,
    data: &DeviceData,
    aug: &Augment,
    batch: usize,
    perm: &Tensor,
    step: &Tensor,
    x: &Tensor,
    labels: &Tensor,
) -> Dispatch {
    assert!(data.channels <= 4 && aug.mean_std.len() == data.channels, "augment `{label}`: channels");
    let mut mean = [0.0; 4];
    let mut inv_std = [1.0; 4];
    for (c, &(m, s)) in aug.mean_std.iter().enumerate() {
        mean[c] = m;
        inv_std[c] = 1.0 / s;
    }
    let p = Params {
        batch: batch as u32,
        channels: data.channels as u32,
        height: data.height as u32,
        width: data.width as u32,
        n: data.n as u32,
        per_chunk: data.per_chunk as u32,
        pad: aug.pad as u32,
        flags: if aug.flip { FLIP } else { 0 },
        mean,
        inv_std,
    };
    let t = [&data.chunks[0], &data.chunks[1], &data.labels, perm, step, x, labels];
    Dispatch::new(
        gpu,
        label,
        ("augment", "batch"),
        &[],
        &p,
        &t,
        grid_1d(batch * data.channels * data.height * data.width, 256),
    )
}

pub mod cpu {
    use super::Augment;
    use crate::data::Dataset;
    use crate::ops::StepState;

    /// The same hash as augment.wgsl `pcg`.
    pub fn pcg(v: u32) -> u32 {
        let s = v.wrapping_mul(747796405).wrapping_add(2891336453);
        let w = ((s >> ((s >> 28) + 4)) ^ s).wrapping_mul(277803737);
        (w >> 22) ^ w
    }

    /// The batch the GPU builds for `st`: (x, labels).
    pub fn batch(d: &Dataset, aug: &Augment, batch: usize, perm: &[u32], st: &StepState) -> (Vec<f64>, Vec<u32>) {
        let (c_n, h, w) = (d.channels, d.height, d.width);
        let mut x = vec![0.0; batch * c_n * h * w];
        let mut labels = vec![0; batch];
        for b in 0..batch {
            let pos = (st.step as usize * batch + b).min(d.n - 1) as u32;
            let img = perm[pos as usize] as usize;
            labels[b] = d.labels[img];
            let hsh = pcg(pcg(pcg(st.seed_lo ^ pcg(st.seed_hi)) ^ st.epoch) ^ pos);
            let (mut dy, mut dx, mut flip) = (aug.pad, aug.pad, false);
            if aug.pad > 0 || aug.flip {
                if aug.pad > 0 {
                    dy = hsh as usize % (2 * aug.pad + 1);
                    dx = (hsh / 256) as usize % (2 * aug.pad + 1);
                }
                flip = aug.flip && (hsh >> 20) & 1 == 1;
            }
            for c in 0..c_n {
                let (m, s) = aug.mean_std[c];
                for y in 0..h {
                    for xx in 0..w {
                        let sx = if flip { w - 1 - xx } else { xx };
                        let yy = (y + dy) as isize - aug.pad as isize;
                        let xs = (sx + dx) as isize - aug.pad as isize;
                        let v = if yy >= 0 && xs >= 0 && (yy as usize) < h && (xs as usize) < w {
                            d.image(img)[(c * h + yy as usize) * w + xs as usize] as f64 / 255.0
                        } else {
                            0.0
                        };
                        x[((b * c_n + c) * h + y) * w + xx] = (v - m as f64) / s as f64;
                    }
                }
            }
        }
        (x, labels)
    }
}
