//! A training step in named phases: the batch built on the GPU, the forward pass, the
//! loss (and its gradient), the backward pass (with any regularisers' gradients), and the
//! update (gradient clipping, then the optimizer). Without a gradient hook the phases go
//! to the GPU as one submit, as they always did; with one, the step is two submits with
//! the hook between backward and the update: the place of a gradient all-reduce across
//! devices (summing every rank's gradients before any rank clips or steps), or of any
//! other host-side look at the gradients.

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::Result;

/// The phases of a training step, in order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Batch,
    Forward,
    Loss,
    /// The gradients of every parameter, summed into `ParamStore::grads` (regularisers'
    /// included).
    Backward,
    /// Clipping (when on) and the optimizer, reading the gradients.
    Update,
}

impl Phase {
    pub const ALL: [Phase; 5] = [Phase::Batch, Phase::Forward, Phase::Loss, Phase::Backward, Phase::Update];
}

/// One training step's dispatches, kept in order with where each phase begins.
#[derive(Default)]
pub struct TrainStep {
    dispatches: Vec<Dispatch>,
    /// The index in `dispatches` of each phase's first dispatch, in `Phase::ALL` order.
    starts: [usize; 5],
}

impl TrainStep {
    /// The step from each phase's dispatches, given in `Phase::ALL` order.
    pub fn new(phases: [Vec<Dispatch>; 5]) -> TrainStep {
        let mut step = TrainStep::default();
        for (i, d) in phases.into_iter().enumerate() {
            step.starts[i] = step.dispatches.len();
            step.dispatches.extend(d);
        }
        step
    }

    /// Every dispatch of the step, in order.
    pub fn all(&self) -> &[Dispatch] {
        &self.dispatches
    }

    /// The dispatches of one phase.
    pub fn phase(&self, p: Phase) -> &[Dispatch] {
        let i = Phase::ALL.iter().position(|&q| q == p).expect("a phase");
        let end = self.starts.get(i + 1).copied().unwrap_or(self.dispatches.len());
        &self.dispatches[self.starts[i]..end]
    }

    /// Batch, forward, loss and backward: what runs before a gradient hook.
    pub fn until_update(&self) -> &[Dispatch] {
        &self.dispatches[..self.starts[4]]
    }
}

/// Called once per training step between backward and the update, with the flat
/// gradient buffer `(ParamStore::len(),)` f32 that backward has just filled (padding
/// between parameters zero). It may read it and write it back (an all-reduce stages it
/// through host memory: one readback, the reduction, one write); what it leaves there is
/// what the update clips and applies. Not called by evaluation.
pub trait GradientHook {
    fn after_backward(&mut self, gpu: &Gpu, grads: &Tensor) -> Result<()>;
}
