//! The options of a training run, in one struct with one set of defaults: the CLI's flags
//! (`cuttle train --epochs 4`), its TOML files (`--config FILE`, the `config.toml` each run
//! saves) and the browser page's JSON all fill this [`RunConfig`], and the page's presets
//! ([`PRESETS`]) are partial configs of it.
//!
//! Keys are the flags' names with `_` for `-` (`train_subset = 3000`). A missing key takes
//! its default; an unknown key, or a value of the wrong type, is an error naming the key.
//!
//! Some defaults depend on the model ([`ModelDefaults`], the one place they are written):
//! CNNs train with SGD and a one-cycle schedule as they always have, vision transformers
//! (vit*, deit*) with AdamW, a warmed-up cosine schedule and label smoothing, and the
//! language models (gpt*) with AdamW and gradient clipping, in steps with an evaluation
//! every `eval_every` steps (one "epoch" of the run, and of the Cuttlefish detector). Those fields are `Option`s here (None: the model's default) and are
//! resolved once, by [`RunConfig::resolved`]: the CLI resolves before it saves a run's
//! `config.toml` and prints its header, and the page's `Engine.options` returns the
//! resolved options, so what a run shows and saves is what it trains with.
//! This module is not the run directory (the CLI's `src/cli/config.rs`) nor the trainer's
//! own settings: [`RunConfig::settings`] turns it into [`TrainConfig`] and
//! [`CuttlefishConfig`].

use crate::cuttlefish::{CuttlefishConfig, FactorizeMode};
use crate::nn::models::{self, is_language_model, is_transformer};
use crate::ops::adamw::AdamWConfig;
use crate::ops::sgd::SgdConfig;
use crate::train::{trainer::TextConfig, AugmentKind, Optimizer, OptimizerKind, Schedule, TrainConfig};
use crate::{Error, Result};
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

/// The browser page's presets, as JSON: `{name: partial RunConfig}` (missing keys take
/// the defaults). `web/app.js` reads them through the wasm `Engine.presets()`.
pub const PRESETS: &str = include_str!("presets.json");

/// The defaults that depend on the model, written once here: [`ModelDefaults::CNN`] for
/// every convolutional model (today's defaults, unchanged), [`ModelDefaults::TRANSFORMER`]
/// for the vision transformers (a scaled-down DeiT recipe).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ModelDefaults {
    pub epochs: usize,
    pub batch: usize,
    pub lr: f32,
    pub schedule: Schedule,
    /// The cosine schedule's warm-up; a run on another schedule has none.
    pub warmup_epochs: f32,
    pub optimizer: OptimizerKind,
    pub weight_decay: f32,
    pub label_smoothing: f32,
    /// Global gradient norm to clip to; 0 is off.
    pub clip_grad: f32,
    /// Language models: steps per evaluation (an "epoch"); 0 for image models.
    pub eval_every: usize,
    /// Language models: batches of fixed validation windows per evaluation.
    pub eval_batches: usize,
}

impl ModelDefaults {
    /// ResNets, VGG, the small CNN: SGD (momentum 0.9, weight decay 5e-4, the
    /// `SgdConfig` default) on a one-cycle schedule peaking at 0.05.
    pub const CNN: ModelDefaults = ModelDefaults {
        epochs: 6,
        batch: 64,
        lr: 0.05,
        schedule: Schedule::OneCycle,
        warmup_epochs: 0.0,
        optimizer: OptimizerKind::Sgd,
        weight_decay: 5e-4,
        label_smoothing: 0.0,
        clip_grad: 0.0,
        eval_every: 0,
        eval_batches: 0,
    };

    /// ViT / DeiT: AdamW at 1e-3 with weight decay 0.05, cosine after one warm-up epoch,
    /// label smoothing 0.1, no clipping.
    pub const TRANSFORMER: ModelDefaults = ModelDefaults {
        epochs: 8,
        batch: 64,
        lr: 1e-3,
        schedule: Schedule::Cosine,
        warmup_epochs: 1.0,
        optimizer: OptimizerKind::AdamW,
        weight_decay: 0.05,
        label_smoothing: 0.1,
        clip_grad: 0.0,
        eval_every: 0,
        eval_batches: 0,
    };

    /// `gpt-mini`: 600 steps of 32 windows (evaluated every 50 on 8 batches), AdamW at
    /// 3e-3 with weight decay 0.1, cosine after a 25-step warm-up, clipping at norm 1:
    /// nanoGPT's recipe, with the rate of a model this small.
    pub const GPT: ModelDefaults = ModelDefaults {
        epochs: 12,
        batch: 32,
        lr: 3e-3,
        schedule: Schedule::Cosine,
        warmup_epochs: 0.5,
        optimizer: OptimizerKind::AdamW,
        weight_decay: 0.1,
        label_smoothing: 0.0,
        clip_grad: 1.0,
        eval_every: 50,
        eval_batches: 8,
    };

    /// `gpt-char`: nanoGPT's Shakespeare run: 5,000 steps of batch 64 at 1e-3 (warm-up 100
    /// steps), evaluated every 250.
    pub const GPT_CHAR: ModelDefaults = ModelDefaults {
        epochs: 20,
        batch: 64,
        lr: 1e-3,
        warmup_epochs: 0.4,
        eval_every: 250,
        eval_batches: 20,
        ..ModelDefaults::GPT
    };

    pub fn for_model(model: &str) -> ModelDefaults {
        if model == "gpt-char" {
            ModelDefaults::GPT_CHAR
        } else if is_language_model(model) {
            ModelDefaults::GPT
        } else if is_transformer(model) {
            ModelDefaults::TRANSFORMER
        } else {
            ModelDefaults::CNN
        }
    }
}

/// `--help` text of a flag whose default depends on the model.
#[cfg(not(target_arch = "wasm32"))]
fn per_model(what: &str, value: impl Fn(&ModelDefaults) -> String) -> String {
    let (c, t, g) = (value(&ModelDefaults::CNN), value(&ModelDefaults::TRANSFORMER), value(&ModelDefaults::GPT));
    if c == t && t == g {
        format!("{what} [default: {c}]")
    } else {
        format!("{what} [default: {c} for CNNs, {t} for vision transformers (vit*, deit*), {g} for gpt-mini]")
    }
}

/// Everything a run is started with. `Default` is the CLI's behaviour without flags (the
/// main job adds `cuttlefish = true`).
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq)]
#[cfg_attr(not(target_arch = "wasm32"), derive(clap::Args))]
#[serde(deny_unknown_fields, default)]
pub struct RunConfig {
    /// Model: resnet18, resnet8, resnet6, vgg19, cnn, vit-mini, deit-tiny, or a language
    /// model: gpt-mini, gpt-char.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().model))]
    pub model: String,
    /// Data: cifar10:DIR, cifar100:DIR, folder:DIR (train/ and test/ of class folders),
    /// mnist:DIR, fashion-mnist:DIR, builtin (the Fashion-MNIST subset inside cuttle); for a
    /// language model text:FILE (UTF-8) or builtin-text (Tiny Shakespeare inside cuttle)
    /// [default: builtin, builtin-text for a language model].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub data: Option<String>,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model("Epochs (a language model's: evaluation intervals)", |d| d.epochs.to_string())))]
    pub epochs: Option<usize>,
    /// Language models: training steps, a multiple of --eval-every [default: 600 for
    /// gpt-mini, 5000 for gpt-char].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub steps: Option<usize>,
    /// Language models: steps between evaluations; one such interval is an "epoch" of the
    /// run and of the Cuttlefish detector [default: 50 for gpt-mini, 250 for gpt-char].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub eval_every: Option<usize>,
    /// Language models: batches of fixed validation windows per evaluation [default: 8 for
    /// gpt-mini, 20 for gpt-char].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub eval_batches: Option<usize>,
    /// Language models: tokens per window, at most the model's [default: 64 for
    /// gpt-mini, 256 for gpt-char].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub context: Option<usize>,
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model("Batch size", |d| d.batch.to_string())))]
    pub batch: Option<usize>,
    /// Peak learning rate.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model("Peak learning rate", |d| d.lr.to_string())))]
    pub lr: Option<f32>,
    /// constant, multistep (x0.1 at 50% and 75%), onecycle or cosine (linear warm-up, then
    /// cosine to lr/100 at the last step).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model(
        "constant, multistep (x0.1 at 50% and 75%), onecycle, or cosine (linear warm-up from lr/1000, then cosine to lr/100 at the last step)",
        |d| d.schedule.to_string())))]
    #[serde(with = "opt_text")]
    pub schedule: Option<Schedule>,
    /// Warm-up epochs of the cosine schedule (fractional allowed, counted in steps).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model(
        "Warm-up epochs of the cosine schedule (fractional allowed, counted in steps; other schedules have none)",
        |d| d.warmup_epochs.to_string())))]
    pub warmup_epochs: Option<f32>,
    /// sgd (with --momentum, --nesterov) or adamw (with --beta1, --beta2, --adam-eps).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model(
        "sgd (with --momentum, --nesterov) or adamw (with --beta1, --beta2, --adam-eps)",
        |d| d.optimizer.to_string())))]
    #[serde(with = "opt_text")]
    pub optimizer: Option<OptimizerKind>,
    /// SGD's momentum.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().momentum))]
    pub momentum: f32,
    /// Weight decay (SGD: L2 added to the gradient; AdamW: decoupled).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model(
        "Weight decay (SGD: added to the gradient; AdamW: decoupled), never on biases and norms",
        |d| d.weight_decay.to_string())))]
    pub weight_decay: Option<f32>,
    /// Nesterov momentum (SGD only).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub nesterov: bool,
    /// AdamW's β1.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().beta1))]
    pub beta1: f32,
    /// AdamW's β2.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().beta2))]
    pub beta2: f32,
    /// AdamW's eps.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().adam_eps))]
    pub adam_eps: f32,
    /// Label smoothing of the training loss (the test loss is plain cross-entropy).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, help = per_model(
        "Label smoothing of the training loss (the test loss stays plain cross-entropy)",
        |d| d.label_smoothing.to_string())))]
    pub label_smoothing: Option<f32>,
    /// Clip the gradient to this global norm before each optimizer step (0: off).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, value_name = "MAX", help = per_model(
        "Clip the gradient to this global norm before each optimizer step (0: off)",
        |d| d.clip_grad.to_string())))]
    pub clip_grad: Option<f32>,
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
    /// Lower bound on each rank as a fraction of full rank [default: 0, or 0.5 for
    /// transformers, the reference's DeiT floor].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub rank_floor: Option<f64>,
    /// Epochs of learning-rate re-warm after the switch [default: 5 with multistep, else 0].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub rewarm_epochs: Option<usize>,
    /// The learning rate after the switch as a fraction of the schedule's [default: 1; the
    /// reference's DeiT runs use 1/3].
    #[cfg_attr(not(target_arch = "wasm32"), arg(long))]
    pub lr_after_switch: Option<f32>,
    /// `--factorize auto` factorizes a layer only when its median time falls by more than
    /// this fraction (0.1: 10% faster).
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().auto_margin))]
    pub auto_margin: f64,
    /// Read the loss back (progress display, divergence check) every this many steps.
    #[cfg_attr(not(target_arch = "wasm32"), arg(long, default_value_t = RunConfig::default().report_every))]
    pub report_every: usize,
}

impl Default for RunConfig {
    fn default() -> Self {
        let (sgd, adamw) = (SgdConfig::default(), AdamWConfig::default());
        RunConfig {
            model: "resnet6".into(),
            data: None,
            epochs: None,
            steps: None,
            eval_every: None,
            eval_batches: None,
            context: None,
            batch: None,
            lr: None,
            schedule: None,
            warmup_epochs: None,
            optimizer: None,
            momentum: sgd.momentum,
            weight_decay: None,
            nesterov: sgd.nesterov,
            beta1: adamw.beta1,
            beta2: adamw.beta2,
            adam_eps: adamw.eps,
            label_smoothing: None,
            clip_grad: None,
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
            rank_floor: None,
            rewarm_epochs: None,
            lr_after_switch: None,
            auto_margin: 0.1,
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

    /// The settings whose default depends on the model: those given, the rest the model's
    /// defaults. The cosine schedule's warm-up defaults to none on other schedules.
    pub fn model_settings(&self) -> ModelDefaults {
        let d = ModelDefaults::for_model(&self.model);
        let schedule = self.schedule.unwrap_or(d.schedule);
        let warmup = if schedule == Schedule::Cosine { d.warmup_epochs } else { 0.0 };
        let eval_every = self.eval_every.unwrap_or(d.eval_every);
        let epochs = match (self.epochs, self.steps) {
            (Some(e), _) => e,
            (None, Some(s)) if eval_every > 0 => s / eval_every,
            _ => d.epochs,
        };
        ModelDefaults {
            epochs,
            eval_every,
            eval_batches: self.eval_batches.unwrap_or(d.eval_batches),
            batch: self.batch.unwrap_or(d.batch),
            lr: self.lr.unwrap_or(d.lr),
            schedule,
            warmup_epochs: self.warmup_epochs.unwrap_or(warmup),
            optimizer: self.optimizer.unwrap_or(d.optimizer),
            weight_decay: self.weight_decay.unwrap_or(d.weight_decay),
            label_smoothing: self.label_smoothing.unwrap_or(d.label_smoothing),
            clip_grad: self.clip_grad.unwrap_or(d.clip_grad),
        }
    }

    /// This config with every model-dependent default filled in: what a run saves, shows
    /// and trains with. Resolving twice changes nothing; a resolved config keeps its values
    /// if the model's defaults change later.
    pub fn resolved(&self) -> RunConfig {
        let m = self.model_settings();
        let lm = is_language_model(&self.model);
        RunConfig {
            data: Some(self.data()),
            epochs: Some(m.epochs),
            steps: if lm { Some(self.steps.unwrap_or(m.epochs.saturating_mul(m.eval_every))) } else { self.steps },
            eval_every: if lm { Some(m.eval_every) } else { self.eval_every },
            eval_batches: if lm { Some(m.eval_batches) } else { self.eval_batches },
            context: if lm {
                self.context.or_else(|| models::gpt_sizes(&self.model).ok().map(|g| g.context))
            } else {
                self.context
            },
            batch: Some(m.batch),
            lr: Some(m.lr),
            schedule: Some(m.schedule),
            warmup_epochs: Some(m.warmup_epochs),
            optimizer: Some(m.optimizer),
            weight_decay: Some(m.weight_decay),
            label_smoothing: Some(m.label_smoothing),
            clip_grad: Some(m.clip_grad),
            rank_floor: Some(self.cuttlefish_config().rank_floor),
            ..self.clone()
        }
    }

    /// The trainer's and (with `cuttlefish`) Cuttlefish's settings, checked: a setting
    /// that cannot train is an error naming it. `train_images` is the training set's size.
    pub fn settings(&self, train_images: usize) -> Result<(TrainConfig, Option<CuttlefishConfig>)> {
        self.check_ranges()?;
        self.check_text_options()?;
        let cfg = self.train_config();
        cfg.validate(train_images)?;
        if self.nesterov && cfg.optimizer.kind() != OptimizerKind::Sgd {
            return Err(Error::Config(format!("--nesterov needs --optimizer sgd, not {}", cfg.optimizer.kind())));
        }
        if self.report_every == 0 {
            return Err(Error::Config("--report-every must be at least 1".into()));
        }
        let cf = self.cuttlefish.then(|| self.cuttlefish_config());
        if let Some(c) = &cf {
            c.validate()?;
        }
        Ok((cfg, cf))
    }

    /// The data spec: as given, else the model's default (the built-in images, or the
    /// built-in text for a language model).
    pub fn data(&self) -> String {
        self.data
            .clone()
            .unwrap_or_else(|| if is_language_model(&self.model) { "builtin-text" } else { "builtin" }.into())
    }

    /// The language-model options: only for a language model, and consistent.
    fn check_text_options(&self) -> Result<()> {
        let bad = |m: String| Err(Error::Config(m));
        if !is_language_model(&self.model) {
            for (flag, given) in [
                ("--steps", self.steps.is_some()),
                ("--eval-every", self.eval_every.is_some()),
                ("--eval-batches", self.eval_batches.is_some()),
                ("--context", self.context.is_some()),
            ] {
                if given {
                    return bad(format!("{flag} is for language models (gpt-mini, gpt-char), not {}", self.model));
                }
            }
            return Ok(());
        }
        let m = self.model_settings();
        if m.eval_every == 0 {
            return bad("--eval-every must be at least 1".into());
        }
        if m.eval_batches == 0 {
            return bad("--eval-batches must be at least 1".into());
        }
        if let Some(s) = self.steps {
            if s == 0 || s % m.eval_every != 0 {
                return bad(format!("--steps {s} must be a positive multiple of --eval-every {}", m.eval_every));
            }
            if self.epochs.is_some_and(|e| e.checked_mul(m.eval_every) != Some(s)) {
                return bad(format!(
                    "--steps {s} and --epochs {} disagree at --eval-every {} (give one of them)",
                    m.epochs, m.eval_every
                ));
            }
        }
        Ok(())
    }

    /// The trainer's settings (unchecked; see [`RunConfig::settings`]), model defaults
    /// resolved.
    pub fn train_config(&self) -> TrainConfig {
        let m = self.model_settings();
        let optimizer = match m.optimizer {
            OptimizerKind::Sgd => Optimizer::Sgd(SgdConfig {
                momentum: self.momentum,
                weight_decay: m.weight_decay,
                nesterov: self.nesterov,
            }),
            OptimizerKind::AdamW => Optimizer::AdamW(AdamWConfig {
                beta1: self.beta1,
                beta2: self.beta2,
                eps: self.adam_eps,
                weight_decay: m.weight_decay,
            }),
        };
        TrainConfig {
            model: self.model.clone(),
            epochs: m.epochs,
            batch: m.batch,
            lr: m.lr,
            schedule: m.schedule,
            warmup_epochs: m.warmup_epochs,
            optimizer,
            // 0 is off; a negative or NaN norm stays, for `validate` to name.
            clip_grad: (m.clip_grad != 0.0).then_some(m.clip_grad),
            label_smoothing: m.label_smoothing,
            seed: self.seed,
            augment: self.augment,
            report_every: self.report_every,
            text: is_language_model(&self.model).then(|| TextConfig {
                context: self.context.or_else(|| models::gpt_sizes(&self.model).ok().map(|g| g.context)).unwrap_or(0),
                eval_every: m.eval_every,
                eval_batches: m.eval_batches,
            }),
            normalize: None,
        }
    }

    /// Cuttlefish's settings: the defaults for the schedule with this config's choices.
    pub fn cuttlefish_config(&self) -> CuttlefishConfig {
        let m = self.model_settings();
        let mut c = CuttlefishConfig::for_model(is_transformer(&self.model), m.schedule);
        c.factorize = self.factorize.clone();
        c.frobenius_decay = (self.frobenius_decay > 0.0).then_some(self.frobenius_decay);
        c.extra_bn = self.extra_bn;
        if let Some(f) = self.rank_floor {
            c.rank_floor = f;
        }
        if let Some(r) = self.rewarm_epochs {
            c.rewarm_epochs = r;
        }
        if let Some(l) = self.lr_after_switch {
            c.lr_after_switch = l;
        }
        c.auto_margin = self.auto_margin;
        c
    }
}

/// As [`text`], for an `Option` of such a type (None: null in JSON, absent in TOML).
mod opt_text {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::fmt::Display;
    use std::str::FromStr;

    pub fn serialize<T: Display, S: Serializer>(v: &Option<T>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(v) => s.collect_str(v),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, T, D>(d: D) -> Result<Option<T>, D::Error>
    where
        T: FromStr,
        T::Err: Display,
        D: Deserializer<'de>,
    {
        Option::<String>::deserialize(d)?.map(|s| s.parse().map_err(serde::de::Error::custom)).transpose()
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
            schedule: Some(Schedule::MultiStep),
            optimizer: Some(OptimizerKind::AdamW),
            clip_grad: Some(1.0),
            factorize: FactorizeMode::List(vec!["conv2".into(), "conv3".into()]),
            train_subset: Some(300),
            out: Some("somewhere".into()),
            rewarm_epochs: Some(2),
            ..Default::default()
        };
        assert_eq!(RunConfig::from_json(&serde_json::to_string(&c).unwrap()).unwrap(), c);
        let r = c.resolved();
        assert_eq!(RunConfig::from_json(&serde_json::to_string(&r).unwrap()).unwrap(), r);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_key() {
        let e = RunConfig::from_json(r#"{"epochs": 2, "epoch": 3}"#).unwrap_err();
        assert!(e.starts_with("unknown key `epoch`") && e.contains("report_every"), "{e}");
        let e = RunConfig::from_json(r#"{"epochs": "six"}"#).unwrap_err();
        assert!(e.starts_with("key `epochs`"), "{e}");
        let e = RunConfig::from_json(r#"{"schedule": "linear"}"#).unwrap_err();
        assert!(e.starts_with("key `schedule`") && e.contains("unknown schedule"), "{e}");
        let e = RunConfig::from_json(r#"{"optimizer": "adam"}"#).unwrap_err();
        assert!(e.starts_with("key `optimizer`") && e.contains("expected sgd or adamw"), "{e}");
        let e = RunConfig::from_json("[1]").unwrap_err();
        assert!(e.contains("not a JSON object"), "{e}");
    }

    /// The trainer's and Cuttlefish's own defaults are this struct's.
    #[test]
    fn the_settings_of_the_defaults_are_the_libraries_defaults() {
        let d = RunConfig::default();
        assert_eq!(d.train_config(), TrainConfig::default());
        let m = d.model_settings();
        assert_eq!(d.cuttlefish_config(), CuttlefishConfig::for_schedule(m.schedule));
        assert_eq!(m, ModelDefaults::CNN, "the default model is a CNN");
        // The CNN recipe's weight decay is SGD's own default; AdamW's betas and eps are
        // the flags' defaults.
        assert_eq!(ModelDefaults::CNN.weight_decay, SgdConfig::default().weight_decay);
        let a = AdamWConfig::default();
        assert_eq!((d.beta1, d.beta2, d.adam_eps), (a.beta1, a.beta2, a.eps));
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
        let named = |c: RunConfig, flag: &str| {
            let e = c.settings(1000).unwrap_err().to_string();
            assert!(e.contains(flag), "expected {flag} in {e:?}");
        };
        let adamw = || RunConfig { optimizer: Some(OptimizerKind::AdamW), ..Default::default() };
        named(RunConfig { beta1: 1.0, ..adamw() }, "--beta1");
        named(RunConfig { beta2: -0.1, ..adamw() }, "--beta2");
        named(RunConfig { adam_eps: 0.0, ..adamw() }, "--adam-eps");
        named(RunConfig { nesterov: true, ..adamw() }, "--nesterov needs --optimizer sgd");
        named(RunConfig { weight_decay: Some(-1.0), ..adamw() }, "--weight-decay");
        named(RunConfig { momentum: 1.0, ..Default::default() }, "--momentum");
        named(RunConfig { clip_grad: Some(-1.0), ..Default::default() }, "--clip-grad");
        named(RunConfig { clip_grad: Some(f32::NAN), ..Default::default() }, "--clip-grad");
        named(RunConfig { label_smoothing: Some(1.0), ..Default::default() }, "--label-smoothing");
        named(RunConfig { warmup_epochs: Some(1.0), ..Default::default() }, "needs --schedule cosine");
        let cosine = RunConfig { schedule: Some(Schedule::Cosine), ..Default::default() };
        named(RunConfig { warmup_epochs: Some(-1.0), ..cosine.clone() }, "--warmup-epochs");
        named(RunConfig { warmup_epochs: Some(7.0), ..cosine.clone() }, "longer than the run");
        assert!(RunConfig { warmup_epochs: Some(0.5), ..cosine }.settings(1000).is_ok());
        assert!(RunConfig { clip_grad: Some(0.0), ..Default::default() }.settings(1000).unwrap().0.clip_grad.is_none());
    }

    /// CNNs keep today's defaults exactly; transformers get theirs without flags; a flag
    /// beats the model's default; the resolved config is what trains.
    #[test]
    fn defaults_depend_on_the_model() {
        for model in ["resnet6", "resnet18", "resnet8", "vgg19", "cnn"] {
            let c = RunConfig { model: model.into(), ..Default::default() }.train_config();
            let sgd = SgdConfig { momentum: 0.9, weight_decay: 5e-4, nesterov: false };
            assert_eq!((c.epochs, c.batch, c.lr, c.schedule), (6, 64, 0.05, Schedule::OneCycle), "{model}");
            assert_eq!(
                (c.optimizer, c.clip_grad, c.label_smoothing, c.warmup_epochs),
                (Optimizer::Sgd(sgd), None, 0.0, 0.0)
            );
        }
        for model in ["vit-mini", "deit-tiny"] {
            let run = RunConfig { model: model.into(), ..Default::default() };
            let c = run.train_config();
            let adamw = AdamWConfig { beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.05 };
            assert_eq!((c.epochs, c.batch, c.lr, c.schedule), (8, 64, 1e-3, Schedule::Cosine), "{model}");
            assert_eq!(
                (c.optimizer, c.clip_grad, c.label_smoothing, c.warmup_epochs),
                (Optimizer::AdamW(adamw), None, 0.1, 1.0)
            );
            // Resolution fills every model-dependent key, once and for all.
            let r = run.resolved();
            assert_eq!(r.optimizer, Some(OptimizerKind::AdamW));
            assert_eq!(
                (r.lr, r.weight_decay, r.warmup_epochs, r.clip_grad),
                (Some(1e-3), Some(0.05), Some(1.0), Some(0.0))
            );
            assert_eq!(r.resolved(), r);
            assert_eq!(r.train_config(), c);
            // Flags beat the model: SGD for a transformer, another schedule without warm-up.
            let mine = RunConfig { optimizer: Some(OptimizerKind::Sgd), schedule: Some(Schedule::OneCycle), ..run };
            let c = mine.train_config();
            assert_eq!(
                (c.optimizer.kind(), c.schedule, c.warmup_epochs),
                (OptimizerKind::Sgd, Schedule::OneCycle, 0.0)
            );
            assert_eq!(c.optimizer.weight_decay(), 0.05, "the model's weight decay stays");
            mine.settings(1000).unwrap();
        }
        assert!(is_transformer("vit-mini") && is_transformer("deit-tiny") && !is_transformer("resnet6"));
    }

    /// A language model trains in steps with an evaluation every `eval_every`: its own
    /// defaults, `--steps` counted in intervals, the text options refused elsewhere.
    #[test]
    fn language_models_train_in_steps() {
        let run = RunConfig { model: "gpt-mini".into(), ..Default::default() };
        let c = run.train_config();
        assert_eq!((c.epochs, c.batch, c.lr, c.clip_grad), (12, 32, 3e-3, Some(1.0)));
        assert_eq!(c.text, Some(TextConfig { context: 64, eval_every: 50, eval_batches: 8 }));
        assert_eq!(run.data(), "builtin-text");
        let r = run.resolved();
        assert_eq!(
            (r.steps, r.eval_every, r.context, r.data.as_deref()),
            (Some(600), Some(50), Some(64), Some("builtin-text"))
        );
        assert_eq!(r.resolved(), r);
        r.settings(1_000_000).unwrap();
        let steps = RunConfig { steps: Some(200), eval_every: Some(20), context: Some(32), ..run.clone() };
        let c = steps.train_config();
        assert_eq!((c.epochs, c.text.unwrap().context), (10, 32));
        let g = RunConfig { model: "gpt-char".into(), ..Default::default() }.train_config();
        assert_eq!((g.epochs * g.text.unwrap().eval_every, g.batch, g.text.unwrap().context), (5000, 64, 256));
        let named = |c: RunConfig, flag: &str| {
            let e = c.settings(1_000_000).unwrap_err().to_string();
            assert!(e.contains(flag), "expected {flag} in {e:?}");
        };
        named(RunConfig { steps: Some(75), ..run.clone() }, "multiple of --eval-every 50");
        named(RunConfig { steps: Some(100), epochs: Some(3), ..run.clone() }, "disagree");
        named(RunConfig { eval_every: Some(0), ..run.clone() }, "--eval-every must be at least 1");
        named(RunConfig { eval_batches: Some(0), ..run }, "--eval-batches must be at least 1");
        named(RunConfig { context: Some(8), ..Default::default() }, "--context is for language models");
    }

    /// Each preset is a valid config for the built-in data set at its own subset sizes:
    /// its model exists, its batch fits, its layer choice names layers of the model.
    #[test]
    fn every_preset_parses_and_trains() {
        let presets: serde_json::Map<String, serde_json::Value> = serde_json::from_str(PRESETS).unwrap();
        for name in ["quick", "full", "cnn", "resnet8", "test", "vit", "gpt", "gpt-test"] {
            assert!(
                presets.contains_key(name),
                "preset {name} (web/index.html offers it; the browser test runs `test`)"
            );
        }
        for (name, p) in &presets {
            let c = RunConfig::from_json(&p.to_string()).unwrap_or_else(|e| panic!("preset {name}: {e}"));
            // A language model's training samples are its window starts (a text of ~1M
            // characters, as the built-in one); its graph reads the built-in text's 65.
            let lm = is_language_model(&c.model);
            let samples = if lm { 1_000_000 } else { c.train_subset.unwrap_or(10_000) };
            let (_, cf) = c.settings(samples).unwrap_or_else(|e| panic!("preset {name}: {e}"));
            let g = if lm {
                crate::nn::models::language_model(&c.model, c.context, 65).unwrap()
            } else {
                crate::nn::models::model_by_name(&c.model, [1, 28, 28], 10).unwrap()
            };
            let cf = cf.unwrap_or_else(|| panic!("preset {name}: the page's presets run Cuttlefish"));
            crate::cuttlefish::run::check_layers(&g, &cf.factorize).unwrap_or_else(|e| panic!("preset {name}: {e}"));
        }
        let test = RunConfig::from_json(&presets["test"].to_string()).unwrap();
        assert_eq!(
            (test.model.as_str(), test.epochs, test.batch),
            ("cnn", Some(4), Some(50)),
            "web/test/browser.mjs expects it"
        );
    }
}
