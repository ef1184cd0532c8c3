//! All parameters of a model in one flat buffer, with their gradients and the optimizer's
//! state (momentum or AdamW's first moment; AdamW's second moment, allocated only for
//! AdamW) in more of the same layout, so the optimizer updates everything in one dispatch.
//!
//! Layout: parameters that take weight decay first, then the exempt ones; each starts at
//! a multiple of the device's storage-offset alignment so it can be bound on its own.
//! The padding between them stays zero (zero gradient, zero weight) and never moves.
//! Parameters are addressed by the graph's `ParamId`s; names only for files.

use super::graph::{Init, ParamId, ParamSpec};
use crate::gpu::{read_f32, Gpu, GpuError, Tensor};
use crate::rng::SplitMix64;

/// One parameter and where it lives in the flat buffers.
#[derive(Clone, Debug, PartialEq)]
pub struct StoredParam {
    pub spec: ParamSpec,
    /// Element offset in the flat buffers.
    pub offset: usize,
}

/// A standard normal draw truncated to [-2, 2] by rejection (Box–Muller on two uniforms;
/// about 4.6% of draws are rejected).
fn truncated_normal(rng: &mut SplitMix64) -> f64 {
    loop {
        let z = normal(rng);
        if z.abs() <= 2.0 {
            return z;
        }
    }
}

/// N(0, 1) by Box-Muller (one draw of the pair).
fn normal(rng: &mut SplitMix64) -> f64 {
    let (u1, u2) = (1.0 - rng.uniform(), rng.uniform());
    (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
}

pub struct ParamStore {
    /// Indexed by `ParamId` (the graph's declaration order).
    params: Vec<StoredParam>,
    /// Elements [0, n_decay) take weight decay.
    pub n_decay: usize,
    pub weights: Tensor,
    pub grads: Tensor,
    /// SGD's momentum buffer, or AdamW's first moment.
    pub momentum: Tensor,
    /// AdamW's second moment; None for SGD (see [`ParamStore::add_second_moment`]).
    pub second_moment: Option<Tensor>,
}

impl ParamStore {
    pub fn new(gpu: &Gpu, specs: &[ParamSpec]) -> Result<ParamStore, GpuError> {
        let align = (gpu.storage_offset_alignment() as usize / 4).max(1);
        let mut params: Vec<StoredParam> = specs.iter().map(|s| StoredParam { spec: s.clone(), offset: 0 }).collect();
        // Decayed parameters first, each group in declaration order.
        let mut order: Vec<usize> = (0..specs.len()).filter(|&i| specs[i].decay).collect();
        order.extend((0..specs.len()).filter(|&i| !specs[i].decay));
        let mut at = 0;
        let mut n_decay = 0;
        for i in order {
            params[i].offset = at;
            at = (at + specs[i].len()).div_ceil(align) * align;
            if specs[i].decay {
                n_decay = at;
            }
        }
        let len = at.max(1);
        Ok(ParamStore {
            params,
            n_decay,
            weights: Tensor::zeros(gpu, "parameters", &[len])?,
            grads: Tensor::zeros(gpu, "gradients", &[len])?,
            momentum: Tensor::zeros(gpu, "momentum", &[len])?,
            second_moment: None,
        })
    }

    /// Allocates AdamW's second moment (zero), once: a no-op when it exists.
    pub fn add_second_moment(&mut self, gpu: &Gpu) -> Result<(), GpuError> {
        if self.second_moment.is_none() {
            self.second_moment = Some(Tensor::zeros(gpu, "second-moment", &[self.weights.len()])?);
        }
        Ok(())
    }

    /// Every parameter, indexed by `ParamId`.
    pub fn all(&self) -> &[StoredParam] {
        &self.params
    }

    pub fn get(&self, id: ParamId) -> &StoredParam {
        &self.params[id.index()]
    }

    fn view(&self, buf: &Tensor, id: ParamId, suffix: &str) -> Tensor {
        let p = self.get(id);
        buf.slice(&format!("{}{suffix}", p.spec.name), &p.spec.shape, p.offset)
    }

    pub fn weight(&self, id: ParamId) -> Tensor {
        self.view(&self.weights, id, "")
    }

    pub fn grad(&self, id: ParamId) -> Tensor {
        self.view(&self.grads, id, ".grad")
    }

    /// PyTorch-style initial values for every parameter, from `seed`, in the flat layout.
    /// The generator is drawn in buffer order (decayed parameters first).
    pub fn initial_values(&self, seed: u64) -> Vec<f32> {
        let mut flat = vec![0.0f32; self.weights.len()];
        let mut rng = SplitMix64::new(seed);
        let mut in_buffer_order: Vec<&StoredParam> = self.params.iter().collect();
        in_buffer_order.sort_by_key(|p| p.offset);
        for p in in_buffer_order {
            let dst = &mut flat[p.offset..p.offset + p.spec.len()];
            match p.spec.init {
                Init::Const(v) => dst.fill(v),
                Init::UniformFanIn(fan_in) => {
                    let bound = 1.0 / (fan_in as f64).sqrt();
                    for v in dst {
                        *v = ((rng.uniform() * 2.0 - 1.0) * bound) as f32;
                    }
                }
                Init::TruncNormal(std) => {
                    for v in dst {
                        *v = (truncated_normal(&mut rng) * std as f64) as f32;
                    }
                }
                Init::Normal(std) => {
                    for v in dst {
                        *v = (normal(&mut rng) * std as f64) as f32;
                    }
                }
            }
        }
        flat
    }

    /// Sets every parameter to its initial value and clears the optimizer state.
    pub fn initialise(&self, gpu: &Gpu, seed: u64) {
        self.weights.write(gpu, &self.initial_values(seed));
        self.clear_optimizer_state(gpu);
    }

    /// Zeroes the momentum / first moment and the second moment (a fresh optimizer).
    pub fn clear_optimizer_state(&self, gpu: &Gpu) {
        for t in std::iter::once(&self.momentum).chain(&self.second_moment) {
            t.write(gpu, &vec![0.0f32; t.len()]);
        }
    }

    /// Reads every parameter to the host: (name, shape, values) by `ParamId`.
    pub async fn read(&self, gpu: &Gpu) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, GpuError> {
        self.read_buffer(gpu, &self.weights).await
    }

    /// Reads one of the flat buffers (weights, gradients, optimizer state) split by parameter.
    pub async fn read_buffer(&self, gpu: &Gpu, buf: &Tensor) -> Result<Vec<(String, Vec<usize>, Vec<f32>)>, GpuError> {
        let flat = read_f32(gpu, &[buf]).await?.remove(0);
        Ok(self.split(&flat).map(|(p, v)| (p.spec.name.clone(), p.spec.shape.clone(), v.to_vec())).collect())
    }

    /// A flat host copy of one of the buffers, split by parameter.
    pub fn split<'a>(&'a self, flat: &'a [f32]) -> impl Iterator<Item = (&'a StoredParam, &'a [f32])> + 'a {
        self.params.iter().map(move |p| (p, &flat[p.offset..p.offset + p.spec.len()]))
    }
}
