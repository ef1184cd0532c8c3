//! Softmax cross-entropy with label smoothing and accuracy count (`shaders/loss.wgsl`).
//!
//! logits (R, K), labels (R,) → dlogits (R, K) = (softmax − target)/valid for the first
//! `valid` rows (0 for the rest), and totals (4,) += [Σ loss, Σ correct, valid, 1].
//! A row is a sample of a classifier (R = B) or one position of a language model's window
//! (R = B·T, `per_sample` = T): `valid` = the step's valid samples · `per_sample`.
//! The target is PyTorch's `label_smoothing`: (1 − ε)·onehot + ε/K, and the loss of a row
//! Σ −target·log softmax; ε = 0 is plain cross-entropy (evaluation always uses 0, so the
//! test loss is plain cross-entropy while the training loss is the smoothed one).
//! Loss is the mean over valid rows; "correct" counts rows whose first argmax is the label.

use crate::gpu::{Dispatch, Gpu, Tensor};

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
pub struct Params {
    /// Rows R.
    pub batch: u32,
    pub classes: u32,
    pub flags: u32,
    /// ε in [0, 1).
    pub smoothing: f32,
    /// Rows per sample (1 for a classifier, T for a language model).
    pub per_sample: u32,
    pub _pad: [u32; 3],
}

pub const WRITE_GRAD: u32 = 1;

/// `step` is the (8,) StepState tensor; `dlogits` is written only when `train`;
/// `smoothing` is ε (0: plain cross-entropy). `(samples, per_sample, classes)`: logits
/// (samples·per_sample, classes).
#[allow(clippy::too_many_arguments)]
pub fn cross_entropy(
    gpu: &Gpu,
    label: &str,
    (samples, per_sample, classes): (usize, usize, usize),
    train: bool,
    smoothing: f32,
    logits: &Tensor,
    labels: &Tensor,
    step: &Tensor,
    dlogits: &Tensor,
    totals: &Tensor,
) -> Dispatch {
    let flags = if train { WRITE_GRAD } else { 0 };
    let p = Params {
        batch: (samples * per_sample) as u32,
        classes: classes as u32,
        flags,
        smoothing,
        per_sample: per_sample as u32,
        _pad: [0; 3],
    };
    Dispatch::new(gpu, label, ("loss", "cross_entropy"), &[], &p, &[logits, labels, step, dlogits, totals], [1, 1, 1])
}

pub mod cpu {
    /// (mean loss over valid rows, correct count, dlogits) with label smoothing `eps`.
    pub fn cross_entropy(
        classes: usize,
        valid: usize,
        eps: f64,
        logits: &[f64],
        labels: &[u32],
    ) -> (f64, usize, Vec<f64>) {
        let batch = labels.len();
        let mut loss = 0.0;
        let mut correct = 0;
        let mut d = vec![0.0; logits.len()];
        for r in 0..batch.min(valid) {
            let row = &logits[r * classes..(r + 1) * classes];
            let mx = row.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let arg = row.iter().position(|&v| v == mx).unwrap();
            let z: f64 = row.iter().map(|v| (v - mx).exp()).sum();
            let l = labels[r] as usize;
            let target = |j: usize| (1.0 - eps) * (j == l) as u8 as f64 + eps / classes as f64;
            let lse = z.ln() + mx;
            // Σ_j −target_j · log softmax_j, with log softmax_j = z_j − lse.
            loss += (0..classes).map(|j| target(j) * (lse - row[j])).sum::<f64>();
            correct += (arg == l) as usize;
            for j in 0..classes {
                d[r * classes + j] = ((row[j] - mx).exp() / z - target(j)) / valid as f64;
            }
        }
        (loss / valid as f64, correct, d)
    }
}
