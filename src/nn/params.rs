//! All parameters of a model in one flat buffer, with their gradients and momentum in two
//! more of the same layout, so the optimizer updates everything in one dispatch.
//!
//! Layout: parameters that take weight decay first, then the exempt ones; each starts at
//! a multiple of the device's storage-offset alignment so it can be bound on its own.
//! The padding between them stays zero (zero gradient, zero weight) and never moves.

use super::graph::{Init, ParamSpec};
use crate::gpu::{read_f32, Gpu, GpuError, Tensor};
use crate::rng::SplitMix64;

pub struct ParamStore {
    /// In buffer order (decayed first).
    pub specs: Vec<ParamSpec>,
    /// Element offset of each spec in the flat buffers.
    pub offsets: Vec<usize>,
    /// Elements [0, n_decay) take weight decay.
    pub n_decay: usize,
    pub weights: Tensor,
    pub grads: Tensor,
    pub momentum: Tensor,
}

impl ParamStore {
    pub fn new(gpu: &Gpu, specs: &[ParamSpec]) -> Result<ParamStore, GpuError> {
        let align = (gpu.limits.min_storage_buffer_offset_alignment as usize / 4).max(1);
        let mut ordered: Vec<ParamSpec> = specs.iter().filter(|p| p.decay).cloned().collect();
        ordered.extend(specs.iter().filter(|p| !p.decay).cloned());
        let mut offsets = Vec::with_capacity(ordered.len());
        let mut at = 0;
        let mut n_decay = 0;
        for p in &ordered {
            offsets.push(at);
            at = (at + p.len()).div_ceil(align) * align;
            if p.decay {
                n_decay = at;
            }
        }
        let len = at.max(1);
        Ok(ParamStore {
            specs: ordered,
            offsets,
            n_decay,
            weights: Tensor::zeros(gpu, "parameters", &[len])?,
            grads: Tensor::zeros(gpu, "gradients", &[len])?,
            momentum: Tensor::zeros(gpu, "momentum", &[len])?,
        })
    }

    fn index(&self, name: &str) -> usize {
        self.specs.iter().position(|p| p.name == name).unwrap_or_else(|| panic!("no parameter named {name}"))
    }

    fn view(&self, buf: &Tensor, name: &str, suffix: &str) -> Tensor {
        let i = self.index(name);
        Tensor::view(&format!("{name}{suffix}"), &self.specs[i].shape, &buf.buf, self.offsets[i] as u64 * 4)
    }

    pub fn weight(&self, name: &str) -> Tensor {
        self.view(&self.weights, name, "")
    }

    pub fn grad(&self, name: &str) -> Tensor {
        self.view(&self.grads, name, ".grad")
    }

    /// PyTorch-style initial values for every parameter, from `seed`, in the flat layout.
    pub fn initial_values(&self, seed: u64) -> Vec<f32> {
        let mut flat = vec![0.0f32; self.weights.len()];
        let mut rng = SplitMix64::new(seed);
        for (p, &off) in self.specs.iter().zip(&self.offsets) {
            let dst = &mut flat[off..off + p.len()];
            match p.init {
                Init::Const(v) => dst.fill(v),
                Init::UniformFanIn(fan_in) => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    for v in dst {
                        *v = ((rng.uniform() * 2.0 - 1.0) * bound) as f32;
                    }
                }
            }
        }
        flat
    }

    /// Sets every parameter to its initial value and clears the momentum.
    pub fn initialise(&self, gpu: &Gpu, seed: u64) {
        self.weights.write(gpu, &self.initial_values(seed));
        self.momentum.write(gpu, &vec![0.0f32; self.momentum.len()]);
    }

    /// Reads every parameter to the host: (name, shape, values) in buffer order.
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, GpuError> {
        self.read_buffer(gpu, &self.weights).await
    }

    /// Reads one of the flat buffers (weights, gradients, momentum) split by parameter.
    pub async fn read_buffer(&self, gpu: &Gpu, buf: &Tensor) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, GpuError> {
        let flat = read_f32(gpu, &[buf]).await?.remove(0);
        Ok(self
            .specs
            .iter()
            .zip(&self.offsets)
            .map(|(p, &o)| (p.name.clone(), p.shape.clone(), flat[o..o + p.len()].to_vec()))
            .collect())
    }
}
