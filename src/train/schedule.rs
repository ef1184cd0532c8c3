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
}

impl FromStr for Schedule {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "constant" => Ok(Schedule::Constant),
            "multistep" => Ok(Schedule::MultiStep),
            "onecycle" => Ok(Schedule::OneCycle),
            _ => Err(format!("unknown schedule {s:?}; expected constant, multistep or onecycle")),
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
        }
    }

    /// The rate for step `step` (0-based) of epoch `epoch` (0-based).
    pub fn lr(&self, base: f32, epoch: usize, step: usize, epochs: usize, steps_per_epoch: usize) -> f32 {
        let base = base as f64;
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
                let cos = |from: f64, to: f64, frac: f64| {
                    to + (from - to) * 0.5 * (1.0 + (std::f64::consts::PI * frac.clamp(0.0, 1.0)).cos())
                };
                if t < up {
                    cos(base / 25.0, base, t / up)
                } else {
                    cos(base, base / 1e4, (t - up) / (total - up).max(1.0))
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
        assert_eq!(s.lr(0.1, 0, 0, 300, 10), 0.1);
        assert!((s.lr(0.1, 150, 0, 300, 10) - 0.01).abs() < 1e-9);
        assert!((s.lr(0.1, 225, 0, 300, 10) - 0.001).abs() < 1e-9);
    }
    #[test]
    fn onecycle_rises_then_falls() {
        let s = Schedule::OneCycle;
        let lrs: Vec<f32> = (0..40).map(|i| s.lr(1.0, i / 10, i % 10, 4, 10)).collect();
        assert!((lrs[0] - 0.04).abs() < 1e-6);
        assert!((lrs[10] - 1.0).abs() < 1e-6);
        assert!(lrs[39] < 0.01);
        assert!(lrs[..10].windows(2).all(|w| w[0] < w[1]) && lrs[10..].windows(2).all(|w| w[0] > w[1]));
    }
}
