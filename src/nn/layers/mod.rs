//! Planned layers: one file per kind, each holding what it owns on the GPU (buffers,
//! parameter ids) and its dispatches, forward written directly above backward.
//!
//! `Net` (net.rs) groups the graph's nodes into layers (a BatchNorm absorbs a following
//! residual `Add` and `Relu`), decides where every input gradient goes (overwrite or
//! accumulate), and calls `Layer::plan` once per layer; the step is then the layers'
//! dispatches concatenated: forward in order, backward in reverse.
//!
//! Adding a layer kind: its op in `graph.rs` (with a builder), its file here with a
//! `plan` that fills `Steps`, one arm in `Layer` and `Layer::plan` below. Nothing else.

pub mod add;
pub mod attention;
pub mod batchnorm;
pub mod conv;
pub mod gelu;
pub mod layernorm;
pub mod linear;
pub mod pool;
pub mod relu;
pub mod tokens;

use super::graph::{Op, ParamId, Shape};
use super::params::ParamStore;
use crate::gpu::{Dispatch, Gpu, GpuError, Tensor};

/// Where a layer writes the gradient of one of its inputs.
pub struct GradOut<'a> {
    pub t: &'a Tensor,
    /// Add into it (another consumer wrote it first) instead of overwriting.
    pub accumulate: bool,
}

/// What one layer is planned against: its activations and their gradients, all
/// (batch, per-sample shape).
pub struct Io<'a> {
    pub gpu: &'a Gpu,
    pub name: &'a str,
    pub batch: usize,
    pub params: &'a ParamStore,
    /// The inputs, in the order of `Unit::inputs`, with their per-sample shapes.
    pub x: Vec<(&'a Tensor, &'a Shape)>,
    pub y: &'a Tensor,
    /// d loss / d y, written before this layer's backward runs.
    pub dy: &'a Tensor,
    /// Per input: where its gradient goes; `None` for the network input. A layer writes
    /// them in input order (so that an activation read twice is overwritten first).
    pub dx: Vec<Option<GradOut<'a>>>,
    /// This layer's parameters whose gradient another layer wrote first in the backward
    /// pass (a tied embedding after its head): add to those instead of overwriting.
    pub accumulate_params: Vec<ParamId>,
}

impl<'a> Io<'a> {
    pub fn x(&self, i: usize) -> &'a Tensor {
        self.x[i].0
    }
    /// `[C, H, W]` of input `i` (the graph builder checked it).
    pub fn image(&self, i: usize) -> [usize; 3] {
        self.x[i].1.image().expect("image-shaped input")
    }
    /// Whether parameter `p`'s gradient is added to (see `accumulate_params`).
    pub fn accumulates(&self, p: ParamId) -> bool {
        self.accumulate_params.contains(&p)
    }
    fn backward_label(&self) -> String {
        format!("{}.backward", self.name)
    }
}

/// A layer's dispatches: training forward, eval forward, backward.
#[derive(Default)]
pub struct Steps {
    pub train: Vec<Dispatch>,
    pub eval: Vec<Dispatch>,
    pub backward: Vec<Dispatch>,
}

impl Steps {
    /// Forward work that is the same in training and evaluation.
    pub fn forward(&mut self, ds: impl IntoIterator<Item = Dispatch>) {
        for d in ds {
            self.eval.push(d.clone());
            self.train.push(d);
        }
    }
}

/// Ops fused into a BatchNorm by the planner: `relu(bn(x) + residual)`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Epilogue {
    /// Input 1 of the layer is added after normalisation.
    pub residual: bool,
    pub relu: bool,
}

/// A planned layer.
pub enum Layer {
    Conv(conv::Conv),
    BatchNorm(batchnorm::BatchNorm),
    Relu,
    MaxPool2,
    GlobalAvgPool,
    Linear(linear::Linear),
    Add,
    LayerNorm(layernorm::LayerNorm),
    Gelu,
    Attention(attention::Attention),
    Patchify,
    ClassToken(tokens::ClassToken),
    FirstToken,
    Embed(tokens::Embed),
}

impl Layer {
    /// Plans `op` (with `epi` fused into it when it is a BatchNorm) into `steps`.
    pub fn plan(io: &Io, op: &Op, epi: Epilogue, steps: &mut Steps) -> Result<Layer, GpuError> {
        Ok(match op {
            Op::Conv(c) => Layer::Conv(conv::plan(io, c, steps)?),
            Op::BatchNorm(b) => Layer::BatchNorm(batchnorm::plan(io, b, epi, steps)?),
            Op::Relu => {
                relu::plan(io, steps);
                Layer::Relu
            }
            Op::MaxPool2 => {
                pool::plan_max(io, steps);
                Layer::MaxPool2
            }
            Op::GlobalAvgPool => {
                pool::plan_avg(io, steps);
                Layer::GlobalAvgPool
            }
            Op::Linear(l) => Layer::Linear(linear::plan(io, l, steps)?),
            Op::Add => {
                add::plan(io, steps);
                Layer::Add
            }
            Op::LayerNorm(l) => Layer::LayerNorm(layernorm::plan(io, l, steps)?),
            Op::Gelu => {
                gelu::plan(io, steps);
                Layer::Gelu
            }
            Op::Attention(a) => Layer::Attention(attention::plan(io, a, steps)?),
            Op::Patchify(p) => {
                tokens::plan_patchify(io, *p, steps);
                Layer::Patchify
            }
            Op::ClassToken(c) => Layer::ClassToken(tokens::plan_class_token(io, c, steps)),
            Op::FirstToken => {
                tokens::plan_first_token(io, steps);
                Layer::FirstToken
            }
            Op::Embed(e) => Layer::Embed(tokens::plan_embed(io, e, steps)),
        })
    }
}
