//! The options of a training run, in one struct with one set of defaults: the CLI's flags
//! (`cuttle train --epochs 4`), its TOML files (`--config FILE`, the `config.toml` each run
//! saves) and the browser page's JSON all fill this [`RunConfig`], and the page's presets
//! ([`PRESETS`]) are partial configs of it.
//!
//! Keys are the flags' names with `_` for `-` (`train_subset = 3000`). A missing key takes
//! its default; an unknown key, or a value of the wrong type, is an error naming the key.
//! This module is not the run directory (the CLI's `src/cli/config.rs`) nor the trainer's
//! own settings: [`RunConfig::settings`] turns it into [`TrainConfig`] and
//! [`CuttlefishConfig`].

use crate::cuttlefish::{CuttlefishConfig, FactorizeMode};
use crate::ops::sgd::SgdConfig;
use crate::train::{AugmentKind, Schedule, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The browser page's presets, as JSON: `{name: partial RunConfig}` (missing keys take
/// the defaults). `web/app.js` reads them through the wasm `Engine.presets()`.
pub const PRESETS: &str = include_str!("presets.json");

/// Everything a run is started with. `Default` is the CLI's behaviour without flags (the
/// main job adds `cuttlefish = true`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Model: resnet18, resnet8, resnet6, vgg19 or cnn.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().model))]
    pub model: String,
    /// Data: cifar10:DIR, cifar100:DIR, folder:DIR (train/ and test/ of class folders),
    /// mnist:DIR, fashion-mnist:DIR, or builtin (the Fashion-MNIST subset inside cuttle).
    ///
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().data))]
    pub data: String,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().epochs))]
    pub epochs: usize,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().batch))]
    pub batch: usize,
    /// Peak learning rate.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().lr))]
    pub lr: f32,
    /// constant, multistep (x0.1 at 50% and 75%) or onecycle.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().schedule))]
    #[serde(with = "text")]
    pub schedule: Schedule,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().momentum))]
    pub momentum: f32,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().weight_decay))]
    pub weight_decay: f32,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub nesterov: bool,
    /// auto (crop+flip for RGB), none or crop-flip.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().augment))]
    #[serde(with = "text")]
    pub augment: AugmentKind,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().seed))]
    pub seed: u64,
    /// Use only this many training images (class-balanced), for quick runs.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub train_subset: Option<usize>,
    /// Use only this many test images (class-balanced).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub test_subset: Option<usize>,
    /// Name of the run: its directory is runs/NAME [default: MODEL-seedSEED, with
    /// -cuttlefish for Cuttlefish runs].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub name: Option<String>,
    /// Run directory, instead of runs/NAME.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub out: Option<PathBuf>,
    /// Cuttlefish: train full-rank while watching stable ranks, then factorize.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub cuttlefish: bool,
    /// Which layers to factorize: auto (time each on this adapter, keep what pays),
    /// reference (the paper's fixed choice) or a comma-separated list of conv names.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().factorize))]
    #[serde(with = "text")]
    pub factorize: FactorizeMode,
    /// Frobenius decay on factor pairs (0 disables; exclusive with --extra-bn).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().frobenius_decay))]
    pub frobenius_decay: f32,
    /// A BatchNorm between the two factors instead of Frobenius decay.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub extra_bn: bool,
    /// Lower bound on each rank as a fraction of full rank.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().rank_floor))]
    pub rank_floor: f64,
    /// Epochs of learning-rate re-warm after the switch [default: 5 with multistep, else 0].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub rewarm_epochs: Option<usize>,
    /// Read the loss back (progress display, divergence check) every this many steps.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().report_every))]
    pub report_every: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        let sgd = SgdConfig::default();
        RunConfig {
            model: "resnet6".into(),
            data: "builtin".into(),
            epochs: 6,
            batch: 64,
            lr: 0.05,
            schedule: Schedule::OneCycle,
            momentum: sgd.momentum,
            weight_decay: sgd.weight_decay,
            nesterov: sgd.nesterov,
            augment: AugmentKind::Auto,
            seed: 0,
            train_subset: None,
            test_subset: None,
            name: None,
            out: None,
            cuttlefish: false,
            factorize: FactorizeMode::Auto,
            frobenius_decay: 1e-4,
            extra_bn: false,
            rank_floor: 0.0,
            rewarm_epochs: None,
            report_every: 20,
        }
    }
}

impl RunConfig {
    /// Every key a config may hold, sorted.
    pub fn keys() -> Vec<String> {
        match serde_json::to_value(RunConfig::default()) {
            Ok(serde_json::Value::Object(m)) => m.keys().cloned().collect(),
            _ => unreachable!("a struct serialises to an object"),
        }
    }

    /// A config from JSON (the browser's): an object whose keys override the defaults.
    /// An unknown key or a value of the wrong type is an error naming the key.
    pub fn from_json(text: &str) -> std::result::Result<RunConfig, String> {
        let given: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(text).map_err(|e| format!("not a JSON object of options: {e}"))?;
        let serde_json::Value::Object(base) = serde_json::to_value(RunConfig::default()).expect("serialises") else {
            unreachable!("a struct serialises to an object")
        };
        let keys = RunConfig::keys();
        let mut merged = base.clone();
        for (key, value) in given {
            if !keys.contains(&key) {
                return Err(format!("unknown key `{key}`; known keys: {}", keys.join(", ")));
            }
            // Each key on its own over the defaults, so a type error names its key.
            let mut one = base.clone();
            one.insert(key.clone(), value.clone());
            serde_json::from_value::<RunConfig>(one.into()).map_err(|e| format!("key `{key}`: {e}"))?;
            merged.insert(key, value);
        }
        serde_json::from_value(merged.into()).map_err(|e| e.to_string())
    }

    /// The trainer's and (with `cuttlefish`) Cuttlefish's settings, checked: a setting
    /// that cannot train is an error naming it. `train_images` is the training set's size.
    pub fn settings(&self, train_images: usize) -> Result<(TrainConfig, Option<CuttlefishConfig>)> {
        let cfg = self.train_config();
        cfg.validate(train_images)?;
        if self.report_every == 0 {
            return Err(Error::Config("--report-every must be at least 1".into()));
        }
        let cf = self.cuttlefish.then(|| self.cuttlefish_config());
        if let Some(c) = &cf {
            c.validate()?;
        }
        Ok((cfg, cf))
    }

    /// The trainer's settings (unchecked; see [`RunConfig::settings`]).
    pub fn train_config(&self) -> TrainConfig {
        TrainConfig {
            model: self.model.clone(),
            epochs: self.epochs,
            batch: self.batch,
            lr: self.lr,
            schedule: self.schedule,
            sgd: SgdConfig { momentum: self.momentum, weight_decay: self.weight_decay, nesterov: self.nesterov },
            seed: self.seed,
            augment: self.augment,
            report_every: self.report_every,
        }
    }

    /// Cuttlefish's settings: the defaults for the schedule with this config's choices.
    pub fn cuttlefish_config(&self) -> CuttlefishConfig {
        let mut c = CuttlefishConfig::for_schedule(self.epochs, self.schedule);
        c.factorize = self.factorize.clone();
        c.frobenius_decay = (self.frobenius_decay > 0.0).then_some(self.frobenius_decay);
        c.extra_bn = self.extra_bn;
        c.rank_floor = self.rank_floor;
        if let Some(r) = self.rewarm_epochs {
            c.rewarm_epochs = r;
        }
        c
    }
}

/// Serde through `Display` / `FromStr`, for option types that are written as words.
mod text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(v)
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<T, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_json_is_the_defaults() {
        assert_eq!(RunConfig::from_json("{}").unwrap(), RunConfig::default());
    }

    #[test]
    fn json_round_trips() {
        let c = RunConfig {
            model: "cnn".into(),
            schedule: Schedule::MultiStep,
            factorize: FactorizeMode::List(vec!["conv2".into(), "conv3".into()]),
            train_subset: Some(300),
            out: Some("somewhere".into()),
            rewarm_epochs: Some(2),
            ..Default::default()
        };
        assert_eq!(RunConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap(), c);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let e = RunConfig::from_json(r#"{"epochs": 2, "epoch": 3}"#).unwrap_err();
        assert!(e.starts_with("unknown key `epoch`") && e.contains("report_every"), "{e}");
        let e = RunConfig::from_json(r#"{"epochs": "six"}"#).unwrap_err();
        assert!(e.starts_with("key `epochs`"), "{e}");
        let e = RunConfig::from_json(r#"{"schedule": "cosine"}"#).unwrap_err();
        assert!(e.starts_with("key `schedule`") && e.contains("unknown schedule"), "{e}");
        let e = RunConfig::from_json("[1]").unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
    }

    /// The trainer's and Cuttlefish's own defaults are this struct's.
    #[test]
    fn the_settings_of_the_defaults_are_the_libraries_defaults() {
        let d = RunConfig::default();
        assert_eq!(d.train_config(), TrainConfig::default());
        assert_eq!(d.cuttlefish_config(), CuttlefishConfig::for_schedule(d.epochs, d.schedule));
        // Switches are flags that can only turn a setting on, so they must default to off.
        assert!(!d.nesterov && !d.cuttlefish && !d.extra_bn);
    }

    #[test]
    fn bad_settings_are_named() {
        let c = RunConfig { cuttlefish: true, extra_bn: true, ..Default::default() };
        assert!(c.settings(1000).unwrap_err().to_string().contains("mutually exclusive"));
        let c = RunConfig { report_every: 0, ..Default::default() };
        assert!(c.settings(1000).unwrap_err().to_string().contains("--report-every"));
        let c = RunConfig::default();
        assert!(c.settings(10).unwrap_err().to_string().contains("--batch 64 is larger"));
        assert!(c.settings(1000).unwrap().1.is_none(), "no Cuttlefish settings without cuttlefish");
    }

    /// Each preset is a valid config for the built-in data set at its own subset sizes:
    /// its model exists, its batch fits, its layer choice names layers of the model.
    #[test]
    fn every_preset_parses_and_trains() {
        let presets: serde_json::Map<String, serde_json::Value> = serde_json::from_str(PRESETS).unwrap();
        for name in ["quick", "full", "cnn", "resnet8", "test"] {
            assert!(
                presets.contains_key(name),
                "preset {name} (web/index.html offers it; the browser test runs `test`)"
            );
        }
        for (name, p) in &presets {
            let c = RunConfig::from_json(&p.to_string()).unwrap_or_else(|e| panic!("preset {name}: {e}"));
            let (_, cf) = c.settings(c.train_subset.unwrap_or(10_000)).unwrap_or_else(|e| panic!("preset {name}: {e}"));
            let g = crate::nn::models::model_by_name(&c.model, [1, 28, 28], 10).unwrap();
            let cf = cf.unwrap_or_else(|| panic!("preset {name}: the page's presets run Cuttlefish"));
            crate::cuttlefish::run::check_layers(&g, &cf.factorize).unwrap_or_else(|e| panic!("preset {name}: {e}"));
        }
        let test = RunConfig::from_json(&presets["test"].to_string()).unwrap();
        assert_eq!((test.model.as_str(), test.epochs, test.batch), ("cnn", 4, 50), "web/test/browser.mjs expects it");
    }
}
