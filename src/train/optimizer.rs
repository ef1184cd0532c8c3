//! The optimizer of a run: which one (SGD for the CNNs, AdamW for the transformers), its
//! settings, and the dispatches of its part of the training step: optional gradient
//! clipping by global norm (two small reductions, `ops::clip`), then one fused update over
//! the flat parameter buffer (`ops::sgd` or `ops::adamw`), all inside the step's one submit.
//!
//! Optimizer state lives beside the parameters in the `ParamStore`: `momentum` is SGD's
//! momentum buffer or AdamW's first moment, `second_moment` AdamW's second moment
//! (allocated only for AdamW, once, when the step is planned). AdamW's step count is the
//! trainer's (`Trainer::optimizer_steps`), handed to the shader through the per-step state.

use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::nn::params::ParamStore;
use crate::ops::adamw::{self, AdamWConfig};
use crate::ops::clip::GradClip;
use crate::ops::sgd::{self, SgdConfig};
use crate::{Error, Result};

/// The optimizer's name, as `--optimizer` takes it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OptimizerKind {
    Sgd,
    AdamW,
}

impl std::str::FromStr for OptimizerKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "sgd" => Ok(OptimizerKind::Sgd),
            "adamw" => Ok(OptimizerKind::AdamW),
            _ => Err(format!("unknown optimizer {s:?}; expected sgd or adamw")),
        }
    }
}

impl std::fmt::Display for OptimizerKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            OptimizerKind::Sgd => "sgd",
            OptimizerKind::AdamW => "adamw",
        })
    }
}

/// An optimizer with its settings.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Optimizer {
    Sgd(SgdConfig),
    AdamW(AdamWConfig),
}

impl Default for Optimizer {
    fn default() -> Self {
        Optimizer::Sgd(SgdConfig::default())
    }
}

impl Optimizer {
    pub fn kind(&self) -> OptimizerKind {
        match self {
            Optimizer::Sgd(_) => OptimizerKind::Sgd,
            Optimizer::AdamW(_) => OptimizerKind::AdamW,
        }
    }

    pub fn weight_decay(&self) -> f32 {
        match self {
            Optimizer::Sgd(c) => c.weight_decay,
            Optimizer::AdamW(c) => c.weight_decay,
        }
    }

    /// Rejects settings that cannot train, naming the flag.
    pub fn validate(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        let wd = self.weight_decay();
        if !wd.is_finite() || wd < 0.0 {
            return bad(format!("--weight-decay must be a non-negative number, not {wd}"));
        }
        match self {
            Optimizer::Sgd(c) => {
                if !(0.0..1.0).contains(&c.momentum) {
                    return bad(format!("--momentum must be in [0, 1), not {}", c.momentum));
                }
            }
            Optimizer::AdamW(c) => {
                for (flag, b) in [("--beta1", c.beta1), ("--beta2", c.beta2)] {
                    if !(0.0..1.0).contains(&b) {
                        return bad(format!("{flag} must be in [0, 1), not {b}"));
                    }
                }
                if !c.eps.is_finite() || c.eps <= 0.0 {
                    return bad(format!("--adam-eps must be a positive finite number, not {}", c.eps));
                }
            }
        }
        Ok(())
    }

    /// One line for a run's header: the optimizer and its settings.
    pub fn describe(&self) -> String {
        match self {
            Optimizer::Sgd(c) => format!(
                "sgd (momentum {}{}, weight decay {})",
                c.momentum,
                if c.nesterov { ", Nesterov" } else { "" },
                c.weight_decay
            ),
            Optimizer::AdamW(c) => {
                format!("adamw (betas {}, {}, eps {:e}, weight decay {})", c.beta1, c.beta2, c.eps, c.weight_decay)
            }
        }
    }

    /// The per-step state's bias-correction terms (`StepState::step_size`, `bc2_sqrt`) for
    /// the optimizer's step `t` (from 1) at rate `lr`: AdamW's, zero for SGD (unread).
    pub fn step_terms(&self, lr: f32, t: u64) -> (f32, f32) {
        match self {
            Optimizer::Sgd(_) => (0.0, 0.0),
            Optimizer::AdamW(c) => adamw::bias_correction(*c, lr, t),
        }
    }
}

/// The optimizer's dispatches for the net whose parameters are `params`: clipping (when
/// `clip_grad` is given) and the fused update, reading the per-step state `step`.
/// Allocates, once: AdamW's second moment in `params` (zero) unless it exists, and the
/// clipping buffers, which are returned so the caller keeps them with the step.
pub fn plan(
    gpu: &Gpu,
    optimizer: Optimizer,
    clip_grad: Option<f32>,
    params: &mut ParamStore,
    step: &Tensor,
) -> Result<(Vec<Dispatch>, Option<GradClip>)> {
    let mut ds = Vec::new();
    let clip = match clip_grad {
        Some(max) => {
            let c = GradClip::new(gpu, params.grads.len())?;
            ds.extend(c.dispatches(gpu, max, &params.grads));
            Some(c)
        }
        None => None,
    };
    if optimizer.kind() == OptimizerKind::AdamW {
        params.add_second_moment(gpu)?;
    }
    let (p, scale) = (&*params, clip.as_ref().map(|c| &c.out));
    let update = match (optimizer, &p.second_moment) {
        (Optimizer::Sgd(c), _) => sgd::update(gpu, c, p.n_decay, &p.weights, &p.grads, &p.momentum, step, scale),
        (Optimizer::AdamW(c), Some(v)) => {
            adamw::update(gpu, c, p.n_decay, &p.weights, &p.grads, &p.momentum, v, step, scale)
        }
        (Optimizer::AdamW(_), None) => unreachable!("allocated above"),
    };
    ds.push(update);
    Ok((ds, clip))
}
