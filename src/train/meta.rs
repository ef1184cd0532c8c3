//! What a checkpoint holds besides tensors ([`Meta`]): the model, what it reads (input
//! shape, normalisation, class names or a language model's vocabulary), and for a run
//! checkpoint where the run stands ([`RunState`]). Stored as JSON under the checkpoint's
//! `cuttle` key, inside its checksum; repeated as plain strings for PyTorch readers.

use crate::cuttlefish::run::CuttlefishState;
use crate::train::trainer::Totals;
use std::collections::BTreeMap;

/// The plain metadata strings written beside `cuttle` for readers without it (PyTorch).
pub const PLAIN_KEYS: [&str; 8] =
    ["model", "input_shape", "normalize_mean", "normalize_std", "class_names", "vocab_size", "vocab", "ranks"];

/// Everything a checkpoint holds besides tensors.
///
/// The fields after `run` came with the export metadata; a checkpoint written before them
/// loads with them empty (`#[serde(default)]`).
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Meta {
    /// The model's name (`cnn`, `resnet18`, ...).
    pub model: String,
    /// Where the run stands; None in a model-only export ([`Checkpoint::model_only`]).
    pub run: Option<RunState>,
    /// The shape of one input: `[C, H, W]` for an image model, `[T]` (tokens) for a
    /// language model.
    #[serde(default)]
    pub input_shape: Vec<usize>,
    /// Per input channel, the (mean, std) the images were normalised with, of pixel
    /// values scaled to [0, 1]: `x = (pixel / 255 - mean) / std`. The training split's
    /// (`Dataset::channel_mean_std`) unless the trainer was given others. Empty for a
    /// language model.
    #[serde(default)]
    pub normalize: Vec<(f32, f32)>,
    /// The name of each class id (image models).
    #[serde(default)]
    pub class_names: Vec<String>,
    /// Outputs of the head: the number of classes, or a language model's vocabulary size.
    #[serde(default)]
    pub classes: usize,
    /// A language model's characters in id order (id i is the i-th). It belongs to the
    /// checkpoint, inside its checksum: rebuilt from the text instead, a text edited since
    /// would shift every id. Empty for image models, and in checkpoints from before it was
    /// recorded (those read the run's `vocab.json`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub vocab: String,
    /// Rank of each factorized layer, in a model-only export. A run checkpoint has them in
    /// its switch report (`run.cuttlefish.switched`); [`Meta::factorized_ranks`] reads
    /// either.
    #[serde(default)]
    pub ranks: BTreeMap<String, usize>,
}

impl Meta {
    /// Rank of each factorized layer: from the switch report of a run checkpoint, or the
    /// `ranks` of an export. Empty before the switch and for a run without Cuttlefish.
    pub fn factorized_ranks(&self) -> BTreeMap<String, usize> {
        match self.run.as_ref() {
            Some(run) => run
                .cuttlefish
                .as_ref()
                .and_then(|c| c.switched.as_ref())
                .map(|s| s.decisions.iter().filter(|d| d.factorized).map(|d| (d.layer.clone(), d.rank)).collect())
                .unwrap_or_default(),
            None => self.ranks.clone(),
        }
    }

    /// True for a checkpoint written before the input description was recorded.
    pub fn lacks_input(&self) -> bool {
        self.input_shape.is_empty()
    }

    /// A language model's metadata (a `[T]` input, no normalisation).
    pub fn is_text(&self) -> bool {
        self.input_shape.len() == 1
    }

    /// Checks that the description agrees with itself (a hand-edited or foreign record
    /// must not reach the trainer).
    pub fn check(&self) -> std::result::Result<(), String> {
        check_normalize(&self.normalize)?;
        if self.lacks_input() {
            return match self.normalize.len() {
                0 => Ok(()),
                n => Err(format!("normalize has {n} channels but there is no input shape")),
            };
        }
        match self.input_shape.len() {
            1 if !self.normalize.is_empty() => {
                return Err(format!("a [T] (token) input with {} normalisation channels", self.normalize.len()))
            }
            1 => {}
            3 if self.normalize.len() != self.input_shape[0] => {
                return Err(format!(
                    "input shape {:?} has {} channels but normalize has {}",
                    self.input_shape,
                    self.input_shape[0],
                    self.normalize.len()
                ))
            }
            3 => {}
            n => {
                return Err(format!("input shape {:?} has {n} dimensions; expected [C, H, W] or [T]", self.input_shape))
            }
        }
        if self.input_shape.contains(&0) {
            return Err(format!("input shape {:?} has a zero dimension", self.input_shape));
        }
        if !self.vocab.is_empty() {
            let v: Vec<char> = self.vocab.chars().collect();
            if !self.is_text() {
                return Err("a vocabulary in an image model's record".into());
            }
            if v.windows(2).any(|w| w[0] >= w[1]) {
                return Err("the vocabulary must be distinct characters in sorted order".into());
            }
            if v.len() != self.classes {
                return Err(format!("a vocabulary of {} characters for {} outputs", v.len(), self.classes));
            }
        }
        if !self.class_names.is_empty() && self.class_names.len() != self.classes {
            return Err(format!("{} class names for {} classes", self.class_names.len(), self.classes));
        }
        Ok(())
    }

    /// The model's description as plain metadata strings ([`PLAIN_KEYS`]), each value JSON.
    pub(crate) fn plain(&self) -> Vec<(String, String)> {
        // Serialised from the typed values (not through `serde_json::Value`, which would
        // widen the f32s to f64 and print 0.49 as 0.49000000953674316).
        fn json(v: &impl serde::Serialize) -> String {
            serde_json::to_string(v).expect("plain metadata serialises")
        }
        let mut out = vec![("model".to_string(), self.model.clone())];
        if self.lacks_input() {
            return out;
        }
        out.push(("input_shape".into(), json(&self.input_shape)));
        if !self.is_text() {
            let mean: Vec<f32> = self.normalize.iter().map(|n| n.0).collect();
            let std: Vec<f32> = self.normalize.iter().map(|n| n.1).collect();
            out.push(("normalize_mean".into(), json(&mean)));
            out.push(("normalize_std".into(), json(&std)));
            out.push(("class_names".into(), json(&self.class_names)));
        } else {
            out.push(("vocab_size".into(), self.classes.to_string()));
            if !self.vocab.is_empty() {
                out.push(("vocab".into(), json(&self.vocab)));
            }
        }
        out.push(("ranks".into(), json(&self.factorized_ranks())));
        out
    }

    /// The description in readable lines (what `cuttle export` prints).
    pub fn describe(&self) -> Vec<String> {
        let mut lines = vec![format!("model: {}", self.model)];
        if self.lacks_input() {
            lines.push("input: not recorded (a checkpoint from before cuttle recorded its input)".into());
        } else if self.is_text() {
            lines.push(format!("input: {} tokens (character ids); no normalisation", self.input_shape[0]));
            match self.vocab.is_empty() {
                true => lines.push(format!("vocabulary: {} characters (the run's vocab.json)", self.classes)),
                false => lines.push(format!("vocabulary: {} characters, in id order {:?}", self.classes, self.vocab)),
            }
        } else {
            let [c, h, w] = [self.input_shape[0], self.input_shape[1], self.input_shape[2]];
            lines.push(format!("input: [{c}, {h}, {w}] (C, H, W), pixels scaled to [0, 1]"));
            let f = |v: Vec<f32>| v.iter().map(|x| format!("{x:.4}")).collect::<Vec<_>>().join(", ");
            lines.push(format!(
                "normalize: mean [{}], std [{}] (per channel: x = (pixel - mean) / std)",
                f(self.normalize.iter().map(|n| n.0).collect()),
                f(self.normalize.iter().map(|n| n.1).collect())
            ));
            lines.push(format!("classes: {} ({})", self.classes, self.class_names.join(", ")));
        }
        let ranks = self.factorized_ranks();
        if ranks.is_empty() {
            lines.push("ranks: no factorized layers".into());
        } else {
            let r: Vec<String> = ranks.iter().map(|(l, r)| format!("{l} {r}")).collect();
            lines.push(format!("ranks: {}", r.join(", ")));
        }
        lines
    }
}

/// Per-channel (mean, std) that can normalise: finite, std positive.
pub fn check_normalize(n: &[(f32, f32)]) -> std::result::Result<(), String> {
    for (c, &(m, s)) in n.iter().enumerate() {
        if !m.is_finite() || !s.is_finite() || s <= 0.0 {
            return Err(format!("channel {c}: mean {m}, std {s} (a finite mean and a positive std are needed)"));
        }
    }
    Ok(())
}

/// A run's position and the state besides tensors needed to continue it exactly.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunState {
    /// Whole epochs trained.
    pub epochs_done: usize,
    /// Steps of the next epoch already trained (non-zero after an interruption).
    pub step_in_epoch: usize,
    /// That epoch's loss totals so far.
    pub epoch_totals: Totals,
    /// The learning-rate re-warm: (epoch, scale) pairs.
    pub lr_scale: Vec<(usize, f32)>,
    /// Steps the optimizer has taken since it was created (AdamW's bias-correction count;
    /// reset at the Cuttlefish switch). Absent in checkpoints from before AdamW: 0.
    #[serde(default)]
    pub optimizer_steps: u64,
    /// The Cuttlefish tracker and switch; None for a run without Cuttlefish.
    pub cuttlefish: Option<CuttlefishState>,
    /// A CRC-32 of the data the run trains and evaluates on (both splits, as the trainer
    /// sees them), so that resuming on data that changed since is refused. None in
    /// checkpoints from before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data_crc32: Option<u32>,
    /// The figures of the run's report so far, so that a resumed run reports the whole
    /// run (not only what followed the resume), and a run killed between its last
    /// checkpoint and its report can still write it. Zero in older checkpoints.
    #[serde(default)]
    pub figures: RunFigures,
}

/// What a run's final report sums or keeps from its epochs (`Session::final_report`).
#[derive(Clone, Copy, Debug, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RunFigures {
    pub seconds_full_rank: f64,
    pub seconds_low_rank: f64,
    pub seconds_rank_estimation: f64,
    /// The last epoch's test accuracy and loss (a language model's validation loss).
    pub last_test_acc: f32,
    pub last_test_loss: f32,
}
