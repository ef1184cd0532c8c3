//! Learning-rate schedules, as a pure function of (epoch, step) so that a resumed run
//! gets exactly the rates of an uninterrupted one.

use std::str::FromStr;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Schedule {
    /// The base rate throughout.
    Constant,
    /// ×0.1 at 50% and 75% of the epochs (the reference's 150/225 of 300).
    MultiStep,
    /// One cycle: cosine rise from base/25 to base over the first 25% of steps, then cosine
    /// decay to base/10⁴ (PyTorch's OneCycleLR shape).
    OneCycle,
    /// The transformer recipe (DeiT, timm): a linear warm-up over `warmup_epochs` (per
    /// step, fractional epochs allowed) from base·[`WARMUP_START`] to base, then a cosine
    /// decay that reaches base·[`COSINE_FLOOR`] at the last step.
    Cosine,
}

/// The cosine schedule's first rate, as a fraction of the base rate.
pub const WARMUP_START: f64 = 1e-3;
/// The cosine schedule's last rate (its floor, timm's `min_lr`), as a fraction of the base
/// rate: base/100 (DeiT's 1e-5 for 5e-4 is base/50).
pub const COSINE_FLOOR: f64 = 1e-2;

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "multistep" => Ok(Schedule::MultiStep),
            "onecycle" => Ok(Schedule::OneCycle),
            "cosine" => Ok(Schedule::Cosine),
            _ => Err(format!("unknown schedule {s:?}; expected constant, multistep, onecycle or cosine")),
        }
    }
}

impl std::fmt::Display for Schedule {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl Schedule {
    pub fn name(&self) -> &'static str {
        match self {
            Schedule::Constant => "constant",
            Schedule::MultiStep => "multistep",
            Schedule::OneCycle => "onecycle",
            Schedule::Cosine => "cosine",
        }
    }

    /// Steps before the rate reaches its peak: one-cycle's rising quarter, the cosine
    /// schedule's warm-up, none for the others (the Cuttlefish detector waits for it).
    pub fn warmup_steps(&self, epochs: usize, steps_per_epoch: usize, warmup_epochs: f32) -> usize {
        let total = epochs * steps_per_epoch;
        match self {
            Schedule::Constant | Schedule::MultiStep => 0,
            Schedule::OneCycle => ((0.25 * total as f64).ceil() as usize).min(total),
            Schedule::Cosine => ((warmup_epochs.max(0.0) as f64 * steps_per_epoch as f64).round() as usize).min(total),
        }
    }

    /// The rate for step `step` (0-based) of epoch `epoch` (0-based) of a run of `epochs`
    /// epochs. `warmup_epochs` is the cosine schedule's warm-up (the others have none and
    /// ignore it; `TrainConfig::validate` rejects it with them).
    pub fn lr(
        &self,
        base: f32,
        epoch: usize,
        step: usize,
        epochs: usize,
        steps_per_epoch: usize,
        warmup_epochs: f32,
    ) -> f32 {
        let base = base as f64;
        let cos = |from: f64, to: f64, frac: f64| {
            to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * frac.clamp(0.0, 1.0)).cos())
        };
        let lr = match self {
            Schedule::Constant => base,
            Schedule::MultiStep => {
                let passed = [epochs / 2, epochs * 3 / 4].iter().filter(|&&m| m > 0 && epoch >= m).count();
                base * 0.1f64.powi(passed as i32)
            }
            Schedule::OneCycle => {
                let total = (epochs * steps_per_epoch).max(1) as f64;
                let t = (epoch * steps_per_epoch + step) as f64;
                let up = (0.25 * total).max(1.0);
                if t < up {
                    cos(base / 25.0, base, t / up)
                } else {
                    cos(base, base / 1e4, (t - up) / (total - up).max(1.0))
                }
            }
            Schedule::Cosine => {
                let total = epochs * steps_per_epoch;
                let t = epoch * steps_per_epoch + step;
                // Warm-up steps, rounded: 0.5 epochs of 25 steps is 13 steps.
                let warm = ((warmup_epochs.max(0.0) as f64 * steps_per_epoch as f64).round() as usize).min(total);
                if t < warm {
                    base * (WARMUP_START + (1.0 - WARMUP_START) * t as f64 / warm as f64)
                } else {
                    // From base at the first step after the warm-up to the floor at the last.
                    let last = total.saturating_sub(1).max(warm + 1);
                    cos(base, base * COSINE_FLOOR, (t - warm) as f64 / (last - warm) as f64)
                }
            }
        };
        lr as f32
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn multistep_drops_at_half_and_three_quarters() {
        let s = Schedule::MultiStep;
        assert_eq!(s.lr(0.1, 0, 0, 300, 10, 0.0), 0.1);
        assert!((s.lr(0.1, 150, 0, 300, 10, 0.0) - 0.01).abs() < 1e-9);
        assert!((s.lr(0.1, 225, 0, 300, 10, 0.0) - 0.001).abs() < 1e-9);
    }
    #[test]
    fn onecycle_rises_then_falls() {
        let s = Schedule::OneCycle;
        let lrs: Vec<f32> = (0..40).map(|i| s.lr(1.0, i / 10, i % 10, 4, 10, 0.0)).collect();
        assert!((lrs[0] - 0.04).abs() < 1e-6);
        assert!((lrs[10] - 1.0).abs() < 1e-6);
        assert!(lrs[39] < 0.01);
        assert!(lrs[..10].windows(2).all(|w| w[0] < w[1]) && lrs[10..].windows(2).all(|w| w[0] > w[1]));
    }

    /// Every step's rate of a cosine run of `epochs` x `spe` steps.
    fn cosine(epochs: usize, spe: usize, warmup: f32) -> Vec<f64> {
        (0..epochs * spe).map(|i| Schedule::Cosine.lr(2.0, i / spe, i % spe, epochs, spe, warmup) as f64).collect()
    }

    #[test]
    fn cosine_warms_up_linearly_then_decays_to_the_floor() {
        // 1 warm-up epoch of 10 steps in a 5-epoch run.
        let lrs = cosine(5, 10, 1.0);
        let close = |a: f64, b: f64| (a - b).abs() <= 1e-6 * b.abs().max(1e-3);
        assert!(close(lrs[0], 2.0 * WARMUP_START), "starts at base·1e-3: {}", lrs[0]);
        for (t, &lr) in lrs[..10].iter().enumerate() {
            let want = 2.0 * (WARMUP_START + (1.0 - WARMUP_START) * t as f64 / 10.0);
            assert!(close(lr, want), "warm-up step {t}: {lr} vs {want}");
        }
        assert!(close(lrs[10], 2.0), "base right after the warm-up: {}", lrs[10]);
        assert!(close(lrs[49], 2.0 * COSINE_FLOOR), "the floor at the last step: {}", lrs[49]);
        assert!(lrs[..11].windows(2).all(|w| w[0] < w[1]), "rises through the warm-up");
        assert!(lrs[10..].windows(2).all(|w| w[0] > w[1]), "falls after it");
        // Halfway through the cosine part: the mean of base and floor.
        let mid = Schedule::Cosine.lr(2.0, 0, 0, 1, 21, 0.0) as f64;
        assert!(close(mid, 2.0));
        assert!(close(Schedule::Cosine.lr(2.0, 0, 10, 1, 21, 0.0) as f64, 1.0 + COSINE_FLOOR));
    }

    #[test]
    fn cosine_warm_up_is_per_step_and_may_be_fractional() {
        // Half an epoch of 25 steps: 13 warm-up steps (rounded).
        let lrs = cosine(4, 25, 0.5);
        assert!(lrs[..14].windows(2).all(|w| w[0] < w[1]));
        assert!((lrs[13] - 2.0).abs() < 1e-6 && lrs[14] < 2.0, "{:?}", &lrs[12..15]);
        // No warm-up: the base rate at the first step.
        let lrs = cosine(3, 7, 0.0);
        assert_eq!(lrs[0], 2.0);
        assert!((lrs[20] - 2.0 * COSINE_FLOOR).abs() < 1e-6);
        // A pure function of (epoch, step): the same rate however often it is asked.
        assert_eq!(cosine(3, 7, 1.5), cosine(3, 7, 1.5));
        // Degenerate lengths stay finite: one step, a warm-up as long as the run.
        assert!(cosine(1, 1, 0.0).iter().chain(&cosine(2, 3, 2.0)).all(|v| v.is_finite() && *v > 0.0));
    }
}
