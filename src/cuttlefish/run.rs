//! Cuttlefish attached to a trainer: stable ranks at initialisation and after every epoch,
//! the convergence test, and the switch (layer choice, ranks, SVD init, new net, optimizer
//! reset, Frobenius decay or extra BatchNorms, learning-rate re-warm).
//!
//! The mechanism only looks at the graph: any model built from the engine's conv layers
//! can be factorized, by name, with no per-model index lists.

use super::factorize::{
    candidates, factor_names, factorized_graph, matrices, reference_layers, svd_factors, Factor, Matrix,
};
use super::srank::{RankProbe, Watched};
use super::tracker::{chosen_rank, Checks, Detector, Tracker};
use crate::gpu::{Dispatch, Gpu, Tensor};
use crate::nn::graph::{Graph, Op};
use crate::nn::Net;
use crate::ops::gemm::{self, ConvShape, Layout};
use crate::train::{Schedule, Trainer};
use crate::{Error, Result};
use std::collections::HashMap;
use web_time::Instant;

/// Which layers to factorize at the switch.
#[derive(Clone, Debug, PartialEq)]
pub enum FactorizeMode {
    /// Time every candidate full-rank vs factorized at its rank on this adapter and keep
    /// the factorization only where it is faster.
    Auto,
    /// The reference's fixed choice (`factorize::reference_layers`).
    Reference,
    /// These layers (conv names, e.g. `layer3.0.conv1`).
    List(Vec<String>),
}

impl std::str::FromStr for FactorizeMode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(FactorizeMode::Auto),
            "reference" => Ok(FactorizeMode::Reference),
            "" => Err("--factorize needs auto, reference or a comma-separated list of layers".into()),
            list => Ok(FactorizeMode::List(list.split(',').map(|x| x.trim().to_string()).collect())),
        }
    }
}

impl std::fmt::Display for FactorizeMode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FactorizeMode::Auto => f.write_str("auto"),
            FactorizeMode::Reference => f.write_str("reference"),
            FactorizeMode::List(l) => f.write_str(&l.join(",")),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct CuttlefishConfig {
    pub factorize: FactorizeMode,
    /// Frobenius decay λ on factor pairs (the CIFAR default, 1e-4); None to disable.
    pub frobenius_decay: Option<f32>,
    /// A BatchNorm between the two factors (exclusive with Frobenius decay).
    pub extra_bn: bool,
    /// Lower bound on each rank as a fraction of full rank (0 for CIFAR, 0.2 ImageNet).
    pub rank_floor: f64,
    /// Epochs of learning-rate re-warm after the switch (the reference CIFAR recipe: 5).
    pub rewarm_epochs: usize,
    /// The learning rate after the switch as a fraction of the schedule's (default 1). The
    /// reference's DeiT runs divide it by 3 (`--factorized-lr-decay 3.0`) over 300 epochs;
    /// on our short schedules that cost accuracy (vit-mini in `tests/transformer_e2e.rs`:
    /// 42.2% against 55.8% with 1), so it is an option, not the transformer default.
    pub lr_after_switch: f32,
    /// The convergence test as the reference runs it over its 300 epochs; a run applies it
    /// at 300 checks spread over its own schedule ([`Checks`], [`Detector::scaled`]).
    pub detector: Detector,
    /// Relative change of σ_max² between rounds at which power iteration stops.
    pub srank_tol: f64,
    /// How much faster `auto` needs the factorized layer to be (0.1: 10%).
    pub auto_margin: f64,
}

impl CuttlefishConfig {
    /// Defaults for a schedule: reference settings, re-warm on with the reference's
    /// multistep schedule only.
    pub fn for_schedule(schedule: Schedule) -> CuttlefishConfig {
        Self::for_model(false, schedule)
    }

    /// As `for_schedule`, with the reference's transformer settings (DeiT's detector and
    /// rank floor of half the full rank) when `transformer`.
    pub fn for_model(transformer: bool, schedule: Schedule) -> CuttlefishConfig {
        if transformer {
            return CuttlefishConfig {
                rank_floor: 0.5,
                detector: Detector::REFERENCE_TRANSFORMER,
                ..Self::for_model(false, schedule)
            };
        }
        CuttlefishConfig {
            factorize: FactorizeMode::Auto,
            frobenius_decay: Some(1e-4),
            extra_bn: false,
            rank_floor: 0.0,
            rewarm_epochs: if schedule == Schedule::MultiStep { 5 } else { 0 },
            lr_after_switch: 1.0,
            detector: Detector::REFERENCE,
            srank_tol: 1e-4,
            auto_margin: 0.1,
        }
    }

    pub fn validate(&self) -> Result<()> {
        if self.extra_bn && self.frobenius_decay.is_some() {
            return Err(Error::Config(
                "Frobenius decay and extra BatchNorms are mutually exclusive: pass --frobenius-decay 0 with --extra-bn"
                    .into(),
            ));
        }
        if !(self.lr_after_switch > 0.0 && self.lr_after_switch.is_finite()) {
            return Err(Error::Config(format!(
                "--lr-after-switch must be a positive fraction of the rate, not {}",
                self.lr_after_switch
            )));
        }
        if !(0.0..1.0).contains(&self.auto_margin) {
            return Err(Error::Config(format!("--auto-margin must be in [0, 1), not {}", self.auto_margin)));
        }
        if !(0.0..=1.0).contains(&self.rank_floor) {
            return Err(Error::Config(format!("--rank-floor must be in [0, 1], not {}", self.rank_floor)));
        }
        Ok(())
    }
}

/// The layers Cuttlefish tracks for `mode` on graph `g`: every candidate for `auto`, the
/// reference choice, or the given list (each must be a factorizable conv of `g`).
pub fn check_layers(g: &Graph, mode: &FactorizeMode) -> Result<Vec<String>> {
    let cands = candidates(g);
    match mode {
        FactorizeMode::Auto => Ok(cands),
        FactorizeMode::Reference => reference_layers(g).map_err(Error::Config),
        FactorizeMode::List(l) => {
            for name in l {
                if !cands.contains(name) {
                    return Err(Error::Config(format!(
                        "--factorize: {name:?} is not a factorizable conv of {}; candidates: {}",
                        g.name,
                        cands.join(", ")
                    )));
                }
            }
            Ok(l.clone())
        }
    }
}

/// What the switch decided for one tracked layer, and why.
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct LayerDecision {
    pub layer: String,
    pub rank: usize,
    pub full_rank: usize,
    /// `auto`: the median forward+backward time of the layer at the training batch, full
    /// and factorized, over `samples` interleaved timings each (None where not measured).
    pub full_ms: Option<f64>,
    pub factorized_ms: Option<f64>,
    #[serde(default)]
    pub samples: usize,
    pub factorized: bool,
    /// Parameters of the layer's weight, and of the factor pair at `rank`.
    #[serde(default)]
    pub params_full: usize,
    #[serde(default)]
    pub params_factorized: usize,
    /// Why, in words ("1.32x faster, margin 10%", "not smaller: ...").
    #[serde(default)]
    pub reason: String,
}

/// `auto` times each side this many times (interleaved) and compares medians.
pub const AUTO_SAMPLES: usize = 7;

/// `auto`'s rule on `samples` timings of each side: factorize when the factorized median is
/// below the full-rank median by more than `margin` (a fraction: 0.1 asks for 10% faster).
/// Medians of interleaved timings let one slow sample (another process, a clock step)
/// shift neither side, and the margin keeps a layer whose two forms are equally fast from
/// flipping between runs on noise. Returns (factorize, full median, factorized median).
pub fn auto_decision(full: &[f64], factorized: &[f64], margin: f64) -> (bool, f64, f64) {
    let (f, l) = (median(full), median(factorized));
    (l.is_finite() && f.is_finite() && l < (1.0 - margin) * f, f, l)
}

/// The median of `v` (the mean of the middle two for an even count; NaN when empty).
pub fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// Where `auto`'s timings come from: this adapter, or given samples (milliseconds, full
/// and factorized per layer), which tests use to check that the same timings give the
/// same decisions.
#[derive(Clone, Debug, Default)]
pub enum LayerTimer {
    #[default]
    Adapter,
    Fixed(HashMap<String, (Vec<f64>, Vec<f64>)>),
}

#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SwitchReport {
    /// Epochs trained full-rank; the next epoch is the first low-rank one.
    pub epoch: usize,
    pub decisions: Vec<LayerDecision>,
    pub params_before: usize,
    pub params_after: usize,
    pub macs_before: usize,
    pub macs_after: usize,
    pub seconds: f64,
}

impl SwitchReport {
    /// The layers the switch factorized, at their ranks: what rebuilds the low-rank graph
    /// from a checkpoint (resume, `cuttle sample`).
    pub fn factors(&self) -> Vec<Factor> {
        let chosen = self.decisions.iter().filter(|d| d.factorized);
        chosen.map(|d| Factor { layer: d.layer.clone(), rank: d.rank, full_rank: d.full_rank }).collect()
    }
}

/// What a checkpoint keeps of Cuttlefish besides the power-iteration vectors (a tensor).
#[derive(Clone, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CuttlefishState {
    pub tracker: Tracker,
    pub switched: Option<SwitchReport>,
    /// Stable-rank checks per epoch the tracker's history was taken at (absent in
    /// checkpoints from before checks within epochs: one per epoch).
    #[serde(default = "one")]
    pub checks_per_epoch: usize,
}

fn one() -> usize {
    1
}

pub struct Cuttlefish {
    pub cfg: CuttlefishConfig,
    /// The convergence test for this run's number of checks.
    pub detector: Detector,
    /// When this run estimates stable ranks.
    pub checks: Checks,
    pub tracker: Tracker,
    probe: RankProbe,
    pub switched: Option<SwitchReport>,
    /// Total seconds spent estimating stable ranks.
    pub estimate_seconds: f64,
    /// Power iterations the last estimate ran.
    pub last_iterations: usize,
    /// Where `auto` gets its layer timings.
    pub timer: LayerTimer,
    /// Checks per epoch of the checkpoint this was resumed from (see
    /// [`Cuttlefish::check_continuable`]).
    resumed_checks: Option<usize>,
}

impl Cuttlefish {
    /// Chooses the tracked layers and records their stable ranks at initialisation.
    pub async fn new(gpu: &Gpu, trainer: &Trainer, cfg: CuttlefishConfig) -> Result<Cuttlefish> {
        let mut cf = Self::plan(gpu, trainer, cfg)?;
        cf.observe(gpu, 0).await?;
        Ok(cf)
    }

    fn plan(gpu: &Gpu, trainer: &Trainer, cfg: CuttlefishConfig) -> Result<Cuttlefish> {
        cfg.validate()?;
        let g = &trainer.net.graph;
        let names = check_layers(g, &cfg.factorize)?;
        let mats = matrices(g);
        let params = &trainer.net.params;
        let mut watched = Vec::new();
        for name in &names {
            let m = &mats[name];
            watched.push(Watched {
                name: name.clone(),
                offset: params.get(m.weight).offset,
                rows: m.rows,
                cols: m.cols,
            });
        }
        let probe = RankProbe::new(gpu, &params.weights, watched, trainer.cfg.seed ^ 0x5eed)?;
        let c = &trainer.cfg;
        let checks = Checks::for_schedule(c.epochs, trainer.steps_per_epoch);
        let warm = c.schedule.warmup_steps(c.epochs, trainer.steps_per_epoch, c.warmup_epochs);
        let detector = Detector::scaled(cfg.detector, checks.total(c.epochs))
            .not_before((warm * checks.per_epoch).div_ceil(checks.steps));
        Ok(Cuttlefish {
            detector,
            checks,
            tracker: Tracker::new(names),
            probe,
            cfg,
            switched: None,
            estimate_seconds: 0.0,
            last_iterations: 0,
            timer: LayerTimer::Adapter,
            resumed_checks: None,
        })
    }

    /// Estimates the stable ranks at check `check` (0: initialisation; see [`Checks`]) and
    /// runs the convergence test. Returns the stable ranks (empty after the switch: ranks
    /// are fixed then).
    pub async fn observe(&mut self, gpu: &Gpu, check: usize) -> Result<Vec<f64>> {
        if self.switched.is_some() {
            return Ok(vec![]);
        }
        let t0 = Instant::now();
        // A cold start needs a few hundred iterations on flat spectra; later checks start
        // from the last one's vectors.
        let est = self.probe.estimate(gpu, self.cfg.srank_tol, 1000).await?;
        self.estimate_seconds += t0.elapsed().as_secs_f64();
        self.last_iterations = est.first().map_or(0, |e| e.iterations);
        let s: Vec<f64> = est.iter().map(|e| e.stable_rank()).collect();
        if let Some(bad) = s.iter().position(|v| !v.is_finite()) {
            // Check c > 0 comes after step step_of(j) of epoch e, where c = e * per_epoch + j.
            let (epoch, step) = match check.checked_sub(1) {
                Some(c) => (c / self.checks.per_epoch + 1, self.checks.step_of(c % self.checks.per_epoch + 1)),
                None => (0, 0),
            };
            let what = format!(
                "the stable rank of {} is {} at check {check} (the weights are no longer finite)",
                self.tracker.layers[bad].name, s[bad]
            );
            return Err(Error::Diverged { epoch, step, steps_per_interval: None, what });
        }
        self.tracker.observe(&self.detector, check, &s);
        Ok(s)
    }

    /// True while the stable ranks are still estimated (tracked layers, no switch yet).
    pub fn watching(&self) -> bool {
        self.switched.is_none() && !self.tracker.layers.is_empty()
    }

    /// True when every tracked layer is stable and the switch has not happened.
    pub fn ready(&self) -> bool {
        self.switched.is_none() && !self.tracker.layers.is_empty() && self.tracker.all_stable()
    }

    /// Ranks now: `min(full, ceil(s_now · full / s_init))` per tracked layer of `g` (the
    /// full-rank graph), as (layer, rank, full rank).
    pub fn ranks(&self, g: &Graph) -> Vec<(String, usize, usize)> {
        let mats = matrices(g);
        self.tracker
            .layers
            .iter()
            .map(|l| {
                let full = mats[&l.name].full_rank();
                let h = &l.history;
                let (first, last) = (h[0].floor(), h[h.len() - 1].floor());
                (l.name.clone(), chosen_rank(last, first, full, self.cfg.rank_floor), full)
            })
            .collect()
    }

    /// The factorized net for `factors` (weights not yet set) and its Frobenius-decay
    /// dispatches.
    fn low_rank_net(&self, gpu: &Gpu, trainer: &Trainer, factors: &[Factor]) -> Result<(Net, Vec<Dispatch>)> {
        let g = &trainer.net.graph;
        let mats = matrices(g);
        let fd = self.cfg.frobenius_decay.filter(|&l| l > 0.0);
        let net = Net::new(gpu, factorized_graph(g, factors, self.cfg.extra_bn, fd.is_some()), trainer.cfg.batch)?;
        let mut regularisers = Vec::new();
        if let Some(lambda) = fd {
            for f in factors {
                regularisers.extend(frobenius_decay(gpu, &net, f, &mats[&f.layer], lambda, self.cfg.extra_bn)?);
            }
        }
        Ok((net, regularisers))
    }

    /// Adds the Cuttlefish state to a checkpoint made by `Trainer::checkpoint`: tracker and
    /// switch into its run state, the power-iteration vectors as a tensor.
    pub async fn checkpoint_into(&self, gpu: &Gpu, ck: &mut crate::train::checkpoint::Checkpoint) -> Result<()> {
        let run = ck.meta.run.as_mut().expect("a checkpoint from Trainer::checkpoint has a run state");
        run.cuttlefish = Some(CuttlefishState {
            tracker: self.tracker.clone(),
            switched: self.switched.clone(),
            checks_per_epoch: self.checks.per_epoch,
        });
        let v = crate::gpu::read_f32(gpu, &[&self.probe.v]).await?.remove(0);
        ck.tensors.insert("cuttlefish.probe".into(), (vec![v.len()], v));
        Ok(())
    }

    /// Cuttlefish state from a checkpoint, without the initial estimate; if the run had
    /// switched, the trainer is moved onto the same factorized net (its weights then come
    /// from `Trainer::restore`).
    pub async fn resume(
        gpu: &Gpu,
        trainer: &mut Trainer,
        cfg: CuttlefishConfig,
        ck: &crate::train::checkpoint::Checkpoint,
        path: &std::path::Path,
    ) -> Result<Cuttlefish> {
        let bad = |what: String| Error::Config(format!("checkpoint {}: {what}", path.display()));
        let CuttlefishState { tracker, switched, checks_per_epoch } = ck
            .run(path)?
            .cuttlefish
            .clone()
            .ok_or_else(|| bad("it has no Cuttlefish state, but this run uses Cuttlefish".into()))?;
        let mut cf = Self::plan(gpu, trainer, cfg)?;
        if tracker.names() != cf.tracker.names() {
            return Err(bad("its Cuttlefish tracks other layers than this configuration".into()));
        }
        cf.resumed_checks = Some(checks_per_epoch);
        cf.tracker = tracker;
        let (_, v) = ck.tensor(path, "cuttlefish.probe")?;
        if v.len() != cf.probe.v.len() {
            return Err(bad("power-iteration vectors of the wrong size".into()));
        }
        cf.probe.v.write(gpu, v);
        if let Some(report) = switched {
            let (net, regularisers) = cf.low_rank_net(gpu, trainer, &report.factors())?;
            trainer.replace_net(gpu, net, regularisers)?;
            cf.switched = Some(report);
        }
        Ok(cf)
    }

    /// Whether training can continue from `at` with this state: a resumed run must check
    /// its stable ranks as often as the run that wrote the checkpoint, and its tracker must
    /// hold one entry per check made by then. (Evaluating or exporting a run on other
    /// data, with another number of steps per epoch, needs neither.)
    pub fn check_continuable(&self, at: crate::train::trainer::Position, path: &std::path::Path) -> Result<()> {
        let bad = |what: String| Error::Config(format!("checkpoint {}: {what}", path.display()));
        if self.switched.is_some() || self.tracker.layers.is_empty() {
            return Ok(());
        }
        if let Some(saved) = self.resumed_checks.filter(|&c| c != self.checks.per_epoch) {
            return Err(bad(format!(
                "its stable ranks were checked {saved} times per epoch, this run checks {} times",
                self.checks.per_epoch
            )));
        }
        let made = 1 + self.checks.made(at.epochs_done, at.step);
        if self.tracker.len() != made {
            return Err(bad(format!(
                "its Cuttlefish tracker holds {} stable-rank checks, but {made} are made by epoch {} step {}",
                self.tracker.len(),
                at.epochs_done,
                at.step
            )));
        }
        Ok(())
    }

    /// Factorizes the chosen layers and swaps the trainer onto the low-rank net.
    pub async fn switch(&mut self, gpu: &Gpu, trainer: &mut Trainer, epochs_done: usize) -> Result<&SwitchReport> {
        let t0 = Instant::now();
        let g = trainer.net.graph.clone();
        let mats = matrices(&g);
        let batch = trainer.cfg.batch;
        let mut decisions = Vec::new();
        for (name, rank, full) in self.ranks(&g) {
            let m = &mats[&name];
            let params_full = m.rows * m.cols;
            let params_factorized = rank * (m.rows + m.cols) + if self.cfg.extra_bn { 2 * rank } else { 0 };
            let mut d = LayerDecision {
                layer: name,
                rank,
                full_rank: full,
                full_ms: None,
                factorized_ms: None,
                samples: 0,
                factorized: false,
                params_full,
                params_factorized,
                reason: String::new(),
            };
            // Never factorize into a pair that holds as many parameters as the layer, in
            // any mode: it would be slower to train and no smaller.
            if params_factorized >= params_full {
                d.reason = format!("not smaller: the pair at rank {rank} holds {params_factorized} parameters, the layer {params_full}");
            } else if self.cfg.factorize == FactorizeMode::Auto {
                let (f, l) = match &self.timer {
                    LayerTimer::Adapter => time_layer(gpu, &g, m, batch, rank, AUTO_SAMPLES).await?,
                    LayerTimer::Fixed(t) => t.get(&d.layer).cloned().unwrap_or_default(),
                };
                let margin = self.cfg.auto_margin;
                let (faster, fm, lm) = auto_decision(&f, &l, margin);
                (d.full_ms, d.factorized_ms, d.samples, d.factorized) =
                    (Some(fm), Some(lm), f.len().min(l.len()), faster);
                let pct = 100.0 * margin;
                d.reason = if faster {
                    format!("{:.2}x faster, more than the {pct:.0}% margin", fm / lm)
                } else if lm < fm {
                    format!("only {:.1}% faster, within the {pct:.0}% margin", 100.0 * (1.0 - lm / fm))
                } else {
                    "not faster on this adapter".into()
                };
            } else {
                d.factorized = true;
                d.reason = format!("{} smaller", ratio(params_full, params_factorized));
            }
            decisions.push(d);
        }
        let factors: Vec<Factor> = decisions
            .iter()
            .filter(|d| d.factorized)
            .map(|d| Factor { layer: d.layer.clone(), rank: d.rank, full_rank: d.full_rank })
            .collect();
        let (net, regularisers) = self.low_rank_net(gpu, trainer, &factors)?;

        // Weights: copied by name, factors from the truncated SVD.
        let old: HashMap<String, Vec<f32>> =
            trainer.net.params.read(gpu).await?.into_iter().map(|(n, _, v)| (n, v)).collect();
        let mut values: HashMap<String, Vec<f32>> = HashMap::new();
        for f in &factors {
            let m = &mats[&f.layer];
            let (first, second) =
                svd_factors(&old[&format!("{}.weight", f.layer)], m.rows, m.cols, f.rank).map_err(Error::Config)?;
            let (n1, n2) = factor_names(&f.layer, self.cfg.extra_bn);
            values.insert(format!("{n1}.weight"), first);
            values.insert(format!("{n2}.weight"), second);
            // A linear layer's bias moves to the second factor.
            if let Some(b) = old.get(&format!("{}.bias", f.layer)) {
                values.insert(format!("{n2}.bias"), b.clone());
            }
        }
        let mut flat = net.params.initial_values(trainer.cfg.seed);
        for p in net.params.all() {
            if let Some(v) = values.get(&p.spec.name).or_else(|| old.get(&p.spec.name)) {
                flat[p.offset..p.offset + p.spec.len()].copy_from_slice(v);
            }
        }
        net.params.weights.write(gpu, &flat);
        // A fresh optimizer, as the reference builds at the switch: every moment zero and
        // AdamW's step count back to 0 (`Trainer::replace_net`, which allocates AdamW's
        // second moment for the new net).
        net.params.clear_optimizer_state(gpu);
        // BatchNorm running statistics carry over; extra BatchNorms start fresh.
        let old_bn: HashMap<&str, &Tensor> = trainer.net.bn_states().map(|b| (b.prefix.as_str(), &b.running)).collect();
        let copies: Vec<(&Tensor, &Tensor)> =
            net.bn_states().filter_map(|b| old_bn.get(b.prefix.as_str()).map(|&src| (src, &b.running))).collect();
        gpu.copy(&copies);

        let report = SwitchReport {
            epoch: epochs_done,
            decisions,
            params_before: g.param_count(),
            params_after: net.graph.param_count(),
            macs_before: g.macs(),
            macs_after: net.graph.macs(),
            seconds: 0.0,
        };
        trainer.replace_net(gpu, net, regularisers)?;
        // The reference CIFAR recipe: the switch epoch at 1/8 of the rate, rising linearly
        // back to the schedule over the re-warm epochs.
        let r = self.cfg.rewarm_epochs;
        let after = self.cfg.lr_after_switch;
        trainer.lr_scale = (epochs_done..trainer.cfg.epochs)
            .map(|e| {
                let i = e - epochs_done;
                let rewarm = if i < r { (1.0 + 7.0 * i as f32 / r as f32) / 8.0 } else { 1.0 };
                (e, rewarm * after)
            })
            .filter(|&(_, s)| s != 1.0)
            .collect();
        gpu.finished().await;
        self.switched = Some(SwitchReport { seconds: t0.elapsed().as_secs_f64(), ..report });
        Ok(self.switched.as_ref().expect("just set"))
    }
}

/// Frobenius decay for one factor pair of the net.
fn frobenius_decay(gpu: &Gpu, net: &Net, f: &Factor, m: &Matrix, lambda: f32, extra_bn: bool) -> Result<Vec<Dispatch>> {
    let (n1, n2) = factor_names(&f.layer, extra_bn);
    let id = |n: &str| {
        let name = format!("{n}.weight");
        net.graph.param_named(&name).ok_or_else(|| Error::Config(format!("the factorized model has no `{name}`")))
    };
    let (first, second) = (id(&n1)?, id(&n2)?);
    let (u, v) = (net.params.weight(first), net.params.weight(second));
    let (gu, gv) = (net.params.grad(first), net.params.grad(second));
    let dims = (f.rank, m.cols, m.rows);
    frobenius_decay_grad(gpu, &format!("{}.frobenius-decay", f.layer), dims, lambda, (&u, &v), (&gu, &gv))
}

/// The gradient of (λ/2)·||V·U||_F² added to the factors' gradients, with U the first
/// factor (r, K) and V the second (c_out, r): P = V·U; grad_U += λ·Vᵀ·P; grad_V += λ·P·Uᵀ.
/// Allocates the (c_out, K) product buffer once, at plan time.
pub fn frobenius_decay_grad(
    gpu: &Gpu,
    label: &str,
    (r, k, c_out): (usize, usize, usize),
    lambda: f32,
    (u, v): (&Tensor, &Tensor),
    (gu, gv): (&Tensor, &Tensor),
) -> Result<Vec<Dispatch>> {
    let p = Tensor::zeros(gpu, &format!("{label}.product"), &[c_out, k])?;
    let mut ds = gemm::matmul(gpu, label, Layout::AB, (c_out, r, k), v, u, None, &p, false)?;
    ds.extend(gemm::matmul_scaled_add(gpu, label, Layout::AtB, (r, c_out, k), lambda, v, &p, gu)?);
    ds.extend(gemm::matmul_scaled_add(gpu, label, Layout::ABt, (c_out, k, r), lambda, &p, u, gv)?);
    Ok(ds)
}

/// `a / b` as "1.35x".
fn ratio(a: usize, b: usize) -> String {
    format!("{:.2}x", a as f64 / b.max(1) as f64)
}

/// Forward + backward of a conv or linear layer of `g` at full rank and factorized at
/// `rank` on this adapter, in milliseconds: `samples` timings of each, interleaved (full,
/// factorized, full, ...) after a warm-up of both, so that a slow spell of the machine
/// falls on both sides.
pub async fn time_layer(
    gpu: &Gpu,
    g: &Graph,
    m: &Matrix,
    batch: usize,
    rank: usize,
    samples: usize,
) -> Result<(Vec<f64>, Vec<f64>)> {
    let node = &g.nodes[m.node];
    let (full, low) = match &node.op {
        Op::Conv(c) => {
            let input = g.shape(node.inputs[0]).image().expect("conv input");
            conv_steps(gpu, &c.shape(batch, input), rank)?
        }
        Op::Linear(l) => linear_steps(gpu, batch * l.rows, l.inputs, l.outputs, rank)?,
        _ => unreachable!("matrices() holds convs and linear layers only"),
    };
    // One submit of a small layer is mostly fixed cost on a GPU: repeat it inside a sample.
    let reps = if gpu.adapter().is_cpu() { 1 } else { 10 };
    gpu.seconds_per_run(&full, reps).await;
    gpu.seconds_per_run(&low, reps).await;
    let (mut f, mut l) = (Vec::with_capacity(samples), Vec::with_capacity(samples));
    for _ in 0..samples.max(1) {
        f.push(gpu.seconds_per_run(&full, reps).await * 1e3);
        l.push(gpu.seconds_per_run(&low, reps).await * 1e3);
    }
    Ok((f, l))
}

/// A linear layer over `rows` rows: y = x Wᵀ against y = (x Uᵀ) Vᵀ, forward and backward.
fn linear_steps(
    gpu: &Gpu,
    rows: usize,
    inputs: usize,
    outputs: usize,
    rank: usize,
) -> Result<(Vec<Dispatch>, Vec<Dispatch>)> {
    let t = |name: &str, shape: &[usize]| Tensor::zeros(gpu, name, shape);
    let (x, dx) = (t("x", &[rows, inputs])?, t("dx", &[rows, inputs])?);
    let (y, dy) = (t("y", &[rows, outputs])?, t("dy", &[rows, outputs])?);
    let (w, dw) = (t("w", &[outputs, inputs])?, t("dw", &[outputs, inputs])?);
    let (h, dh) = (t("h", &[rows, rank])?, t("dh", &[rows, rank])?);
    let (u, du) = (t("u", &[rank, inputs])?, t("du", &[rank, inputs])?);
    let (v, dv) = (t("v", &[outputs, rank])?, t("dv", &[outputs, rank])?);
    // Forward, weight gradient, input gradient of one linear map (rows, a) -> (rows, b).
    let layer = |label: &str,
                 (a, b): (usize, usize),
                 x: &Tensor,
                 w: &Tensor,
                 y: &Tensor,
                 dy: &Tensor,
                 dw: &Tensor,
                 dx: &Tensor| {
        let mut ds = gemm::matmul(gpu, label, Layout::ABt, (rows, a, b), x, w, None, y, false)?;
        ds.extend(gemm::matmul(gpu, label, Layout::AtB, (b, rows, a), dy, x, None, dw, false)?);
        ds.extend(gemm::matmul(gpu, label, Layout::AB, (rows, b, a), dy, w, None, dx, false)?);
        Ok::<_, Error>(ds)
    };
    let full = layer("full", (inputs, outputs), &x, &w, &y, &dy, &dw, &dx)?;
    let mut low = layer("u", (inputs, rank), &x, &u, &h, &dh, &du, &dx)?;
    low.extend(layer("v", (rank, outputs), &h, &v, &y, &dy, &dv, &dh)?);
    Ok((full, low))
}

/// A convolution, forward and backward, full against the k x k, r-channel conv and the
/// 1x1 after it.
fn conv_steps(gpu: &Gpu, s: &ConvShape, rank: usize) -> Result<(Vec<Dispatch>, Vec<Dispatch>)> {
    let t = |name: &str, shape: &[usize]| Tensor::zeros(gpu, name, shape);
    let (x, dx) = (t("x", &s.input_shape())?, t("dx", &s.input_shape())?);
    let (y, dy) = (t("y", &s.output_shape())?, t("dy", &s.output_shape())?);
    let (w, dw) = (t("w", &s.weight_shape())?, t("dw", &s.weight_shape())?);
    let mut full = gemm::conv_forward(gpu, "full", s, &x, &w, &y)?;
    full.extend(gemm::conv_backward_weight(gpu, "full", s, &dy, &x, &dw, false)?);
    full.extend(gemm::conv_backward_data(gpu, "full", s, &dy, &w, &dx, false)?);

    let su = ConvShape { c_out: rank, ..*s };
    let sv = ConvShape { c_in: rank, h_in: s.h_out(), w_in: s.w_out(), kh: 1, kw: 1, stride: 1, pad: 0, ..*s };
    let (h, dh) = (t("h", &su.output_shape())?, t("dh", &su.output_shape())?);
    let (wu, dwu) = (t("wu", &su.weight_shape())?, t("dwu", &su.weight_shape())?);
    let (wv, dwv) = (t("wv", &sv.weight_shape())?, t("dwv", &sv.weight_shape())?);
    let mut low = gemm::conv_forward(gpu, "u", &su, &x, &wu, &h)?;
    low.extend(gemm::conv_forward(gpu, "v", &sv, &h, &wv, &y)?);
    low.extend(gemm::conv_backward_weight(gpu, "v", &sv, &dy, &h, &dwv, false)?);
    low.extend(gemm::conv_backward_data(gpu, "v", &sv, &dy, &wv, &dh, false)?);
    low.extend(gemm::conv_backward_weight(gpu, "u", &su, &dh, &x, &dwu, false)?);
    low.extend(gemm::conv_backward_data(gpu, "u", &su, &dh, &wu, &dx, false)?);
    Ok((full, low))
}
