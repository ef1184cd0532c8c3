//! The checks of a run's options that the trainer and Cuttlefish cannot make themselves:
//! values out of range for options they read only in some configurations, and options
//! given where they have no effect (another optimizer's, Cuttlefish's without
//! `--cuttlefish`, an image option on a language model). An option that silently does
//! nothing misleads as much as one that does the wrong thing: each is an error that
//! names the option, its value and why, before any data is read or GPU work done.

use super::config::RunConfig;
use super::optimizer::OptimizerKind;
use crate::nn::models::is_language_model;
use crate::{Error, Result};

/// The most epochs (a language model's: evaluation intervals, and steps per interval).
const MAX_COUNT: usize = 1_000_000;

impl RunConfig {
    /// Every option that has no effect in this configuration, as an error. The command
    /// line checks this; the library does not (the same options with `cuttlefish` off
    /// give a run's full-rank baseline, and the demo page turns Cuttlefish off on a
    /// preset that names its layers).
    pub fn check_no_unused_options(&self) -> Result<()> {
        let d = RunConfig::default();
        let m = self.model_settings();
        let mut unused: Vec<(String, &str)> = vec![];
        let mut given = |flag: &str, value: String, differs: bool, why: &'static str| {
            if differs {
                unused.push((format!("{flag} {value}"), why));
            }
        };
        let adamw = m.optimizer == OptimizerKind::AdamW;
        given(
            "--momentum",
            self.momentum.to_string(),
            adamw && self.momentum != d.momentum,
            "is SGD's, and the optimizer is adamw",
        );
        for (flag, v, dv) in [
            ("--beta1", self.beta1, d.beta1),
            ("--beta2", self.beta2, d.beta2),
            ("--adam-eps", self.adam_eps, d.adam_eps),
        ] {
            given(flag, v.to_string(), !adamw && v.to_bits() != dv.to_bits(), "is AdamW's, and the optimizer is sgd");
        }
        if !self.cuttlefish {
            let why = "is Cuttlefish's, and the run has no --cuttlefish";
            // The floor the model would get by default (resolved runs carry it).
            let floor = RunConfig { rank_floor: None, ..self.clone() }.cuttlefish_config().rank_floor;
            given("--factorize", self.factorize.to_string(), self.factorize != d.factorize, why);
            given(
                "--frobenius-decay",
                self.frobenius_decay.to_string(),
                self.frobenius_decay.to_bits() != d.frobenius_decay.to_bits(),
                why,
            );
            given("--extra-bn", String::new(), self.extra_bn, why);
            given(
                "--rank-floor",
                format!("{:?}", self.rank_floor.unwrap_or(floor)),
                self.rank_floor.is_some_and(|f| f != floor),
                why,
            );
            given(
                "--rewarm-epochs",
                format!("{:?}", self.rewarm_epochs.unwrap_or(0)),
                self.rewarm_epochs.is_some(),
                why,
            );
            given(
                "--lr-after-switch",
                format!("{:?}", self.lr_after_switch.unwrap_or(1.0)),
                self.lr_after_switch.is_some(),
                why,
            );
            given("--auto-margin", self.auto_margin.to_string(), self.auto_margin != d.auto_margin, why);
        } else if self.factorize != crate::cuttlefish::FactorizeMode::Auto {
            given(
                "--auto-margin",
                self.auto_margin.to_string(),
                self.auto_margin != d.auto_margin,
                "is for --factorize auto",
            );
        }
        if is_language_model(&self.model) {
            given(
                "--augment",
                self.augment.to_string(),
                self.augment != d.augment,
                "is for images, and the model reads text",
            );
        }
        if let Some((option, why)) = unused.first() {
            let more = match unused.len() {
                1 => String::new(),
                n => format!(
                    " (and {} more: {})",
                    n - 1,
                    unused[1..].iter().map(|u| u.0.trim()).collect::<Vec<_>>().join(", ")
                ),
            };
            return Err(Error::Config(format!("{} has no effect here: it {why}; drop it{more}", option.trim())));
        }
        Ok(())
    }

    /// The ranges of the options that the trainer and Cuttlefish check only where they
    /// take effect (`settings` checks these always).
    pub(crate) fn check_ranges(&self) -> Result<()> {
        let m = self.model_settings();
        let lm = is_language_model(&self.model);
        // Bounds no run means to pass, so that no count overflows on the way.
        if lm && m.eval_every > MAX_COUNT {
            return Err(Error::Config(format!("--eval-every {} is out of range (1 to {MAX_COUNT})", m.eval_every)));
        }
        if m.epochs > MAX_COUNT {
            return Err(Error::Config(match lm {
                true => format!(
                    "{} evaluation intervals (--steps / --eval-every {}, or --epochs) is out of range (1 to {MAX_COUNT})",
                    m.epochs, m.eval_every
                ),
                false => format!("--epochs {} is out of range (1 to {MAX_COUNT})", m.epochs),
            }));
        }
        let fd = self.frobenius_decay;
        if !(fd.is_finite() && fd >= 0.0) {
            return Err(Error::Config(format!("--frobenius-decay must be a finite number >= 0 (0: off), not {fd}")));
        }
        if let Some(r) = self.rewarm_epochs.filter(|&r| r > m.epochs) {
            return Err(Error::Config(format!(
                "--rewarm-epochs {r} is longer than the run (0 to --epochs {})",
                m.epochs
            )));
        }
        Ok(())
    }
}
