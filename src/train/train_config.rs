//! What the trainer is given (`TrainConfig`, resolved from a run's options by
//! `RunConfig::settings`): epochs, batch, rate and schedule, optimizer, augmentation, a
//! language model's text settings; its checks and its one-line summary for a run's header.

use super::optimizer::Optimizer;
use super::Schedule;
use crate::{Error, Result};

/// How training batches are augmented.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AugmentKind {
    /// Crop with padding 4 and horizontal flip for 3-channel images (CIFAR recipe), none
    /// for grayscale digits and clothes.
    Auto,
    None,
    CropFlip,
}

impl std::str::FromStr for AugmentKind {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(AugmentKind::Auto),
            "none" => Ok(AugmentKind::None),
            "crop-flip" => Ok(AugmentKind::CropFlip),
            _ => Err(format!("unknown augmentation {s:?}; expected auto, none or crop-flip")),
        }
    }
}

impl std::fmt::Display for AugmentKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            AugmentKind::Auto => "auto",
            AugmentKind::None => "none",
            AugmentKind::CropFlip => "crop-flip",
        })
    }
}

/// A language model's run: windows of `context` tokens, an "epoch" of `eval_every` steps
/// (what the Cuttlefish detector counts), then a validation loss over `eval_batches`
/// batches of fixed windows spread over the validation split.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TextConfig {
    pub context: usize,
    pub eval_every: usize,
    pub eval_batches: usize,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub model: String,
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub schedule: Schedule,
    /// Warm-up of the cosine schedule, in epochs (fractional allowed; 0 for the others).
    pub warmup_epochs: f32,
    pub optimizer: Optimizer,
    /// Clip the gradient to this global norm before the optimizer; None: no clipping.
    pub clip_grad: Option<f32>,
    /// Label smoothing ε of the training loss (evaluation uses plain cross-entropy).
    pub label_smoothing: f32,
    pub seed: u64,
    pub augment: AugmentKind,
    /// Read the loss totals back every this many steps (progress display, NaN check).
    pub report_every: usize,
    /// A language model's settings (None for image models).
    pub text: Option<TextConfig>,
    /// Per-channel (mean, std) to normalise images with instead of the training split's:
    /// a run's own, recorded in its checkpoint, when it is evaluated on other data
    /// (`cuttle eval --data`). None: the training split's `channel_mean_std`.
    pub normalize: Option<Vec<(f32, f32)>>,
}

/// The defaults of a run ([`super::RunConfig`]), the one place they are written.
impl Default for TrainConfig {
    fn default() -> Self {
        super::RunConfig::default().train_config()
    }
}

impl TrainConfig {
    /// Rejects settings that cannot train, naming the setting.
    pub fn validate(&self, train_images: usize) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if self.epochs == 0 {
            return bad("--epochs must be at least 1".into());
        }
        if self.batch == 0 {
            return bad("--batch must be at least 1".into());
        }
        if self.batch > train_images {
            let set = match self.text {
                Some(t) => format!("{train_images} windows of {} characters", t.context),
                None => format!("{train_images} images"),
            };
            return bad(format!("--batch {} is larger than the training set ({set})", self.batch));
        }
        if !self.lr.is_finite() || self.lr <= 0.0 {
            return bad(format!("--lr must be a positive finite number, not {}", self.lr));
        }
        self.optimizer.validate()?;
        let w = self.warmup_epochs;
        if !w.is_finite() || w < 0.0 {
            return bad(format!("--warmup-epochs must be a non-negative number, not {w}"));
        }
        if w > 0.0 && self.schedule != Schedule::Cosine {
            return bad(format!(
                "--warmup-epochs {w} needs --schedule cosine (--schedule {} has no warm-up)",
                self.schedule
            ));
        }
        if w > self.epochs as f32 {
            return bad(format!("--warmup-epochs {w} is longer than the run (--epochs {})", self.epochs));
        }
        if let Some(c) = self.clip_grad {
            if !c.is_finite() || c <= 0.0 {
                return bad(format!("--clip-grad must be a positive finite norm (0 turns clipping off), not {c}"));
            }
        }
        if !(0.0..1.0).contains(&self.label_smoothing) {
            return bad(format!("--label-smoothing must be in [0, 1), not {}", self.label_smoothing));
        }
        Ok(())
    }

    /// The run's optimization settings in one line, for its header.
    pub fn summary(&self) -> String {
        let (epochs, warm) = match self.text {
            Some(t) => (
                format!(
                    "{} steps (evaluated every {}, on {}) of batch {} x {} tokens",
                    self.epochs * t.eval_every,
                    t.eval_every,
                    count(t.eval_batches, "batch"),
                    self.batch,
                    t.context
                ),
                format!(", {}", count((self.warmup_epochs * t.eval_every as f32).round(), "warm-up step")),
            ),
            None => (
                format!("{} of batch {}", count(self.epochs, "epoch"), self.batch),
                format!(", {}", count(self.warmup_epochs, "warm-up epoch")),
            ),
        };
        let warm = if self.schedule == Schedule::Cosine { warm } else { String::new() };
        let clip = self.clip_grad.map_or("off".to_string(), |c| format!("at norm {c}"));
        format!(
            "{epochs}, optimizer {}, lr {} ({} schedule{warm}), label smoothing {}, gradient clipping {clip}",
            self.optimizer.describe(),
            self.lr,
            self.schedule,
            self.label_smoothing
        )
    }
}

/// `n` and the noun, plural unless `n` reads as 1 (`1`, or an f32's `1`): "1 step",
/// "3 batches", "0.5 warm-up epochs".
pub fn count(n: impl std::fmt::Display, noun: &str) -> String {
    let n = n.to_string();
    let plural = match (n == "1", noun.ends_with("ch") || noun.ends_with('s')) {
        (true, _) => "",
        (false, true) => "es",
        (false, false) => "s",
    };
    format!("{n} {noun}{plural}")
}
