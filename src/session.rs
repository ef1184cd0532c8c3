//! A whole training run, epoch by epoch: the Cuttlefish switch once the stable ranks
//! settle, an epoch of training and testing, the stable-rank estimate, and the figures
//! of the final report. The command line and the browser page drive the same session;
//! they differ only in how they show progress and where checkpoints go.

use crate::cuttlefish::{Cuttlefish, CuttlefishConfig, SwitchReport};
use crate::data::Source;
use crate::gpu::Gpu;
use crate::train::checkpoint::Checkpoint;
use crate::train::trainer::{EpochReport, Position, Totals};
use crate::train::{TrainConfig, Trainer};
use crate::Result;
use web_time::Instant;

/// What one epoch of a session produced.
#[derive(Clone, Debug)]
pub struct EpochOutcome {
    /// The switch to low rank, when it happened before this epoch.
    pub switch: Option<SwitchReport>,
    pub report: EpochReport,
    /// Stable rank per tracked layer after this epoch (until the switch).
    pub stable_ranks: Option<Vec<f64>>,
}

/// The summary written as `report.json` and shown at the end.
#[derive(Clone, Debug, serde::Serialize)]
pub struct FinalReport {
    pub model: String,
    pub epochs: usize,
    pub test_acc: f32,
    /// A language model's last validation loss (nats per token); None for image models.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub val_loss: Option<f32>,
    pub params_full: usize,
    pub params_final: usize,
    pub macs_full: usize,
    pub macs_final: usize,
    pub seconds_full_rank: f64,
    pub seconds_low_rank: f64,
    /// Cuttlefish only: the epoch (1-based) whose training ran low-rank first.
    pub switch_epoch: Option<usize>,
    /// Cuttlefish only: rank of each factorized layer.
    pub ranks: std::collections::BTreeMap<String, usize>,
    pub seconds_rank_estimation: f64,
    pub seconds_switch: f64,
    /// Cuttlefish only: whether the ranks settled and the switch happened.
    pub converged: Option<bool>,
}

pub struct Session {
    pub trainer: Trainer,
    pub cuttlefish: Option<Cuttlefish>,
    /// Where training stands; `at.step > 0` after an interruption mid-epoch.
    pub at: Position,
    pub params_full: usize,
    macs_full: usize,
    pub seconds_full_rank: f64,
    pub seconds_low_rank: f64,
    pub last_test_acc: f32,
    pub last_test_loss: f32,
    /// The switch made by a [`Session::next_epoch`] call that a stop then ended before
    /// the epoch finished: reported with that epoch's outcome unless a caller takes it
    /// first (the page shows it at once).
    pub pending_switch: Option<SwitchReport>,
}

impl Session {
    /// A fresh run: weights from `cfg.seed` and, with Cuttlefish, the stable ranks at
    /// initialisation (see [`Session::initial_ranks`]).
    pub async fn new<'a>(
        gpu: &Gpu,
        data: impl Into<Source<'a>>,
        cfg: TrainConfig,
        cf: Option<CuttlefishConfig>,
    ) -> Result<Session> {
        let trainer = Trainer::new(gpu, data, cfg)?;
        let cuttlefish = match cf {
            Some(c) => Some(Cuttlefish::new(gpu, &trainer, c).await?),
            None => None,
        };
        Ok(Self::with(trainer, cuttlefish, Position::default()))
    }

    /// A run continued from a checkpoint (`path` names it in errors), onto the factorized
    /// net if it had switched.
    pub async fn resume<'a>(
        gpu: &Gpu,
        data: impl Into<Source<'a>>,
        cfg: TrainConfig,
        cf: Option<CuttlefishConfig>,
        ck: &Checkpoint,
        path: &std::path::Path,
    ) -> Result<Session> {
        let mut trainer = Trainer::new(gpu, data, cfg)?;
        let params_full = trainer.net.graph.param_count();
        let macs_full = trainer.net.graph.macs();
        let cuttlefish = match cf {
            Some(c) => Some(Cuttlefish::resume(gpu, &mut trainer, c, ck, path).await?),
            None => None,
        };
        let at = trainer.restore(gpu, ck, path)?;
        let mut s = Self::with(trainer, cuttlefish, at);
        (s.params_full, s.macs_full) = (params_full, macs_full);
        let f = ck.run(path)?.figures;
        (s.seconds_full_rank, s.seconds_low_rank) = (f.seconds_full_rank, f.seconds_low_rank);
        (s.last_test_acc, s.last_test_loss) = (f.last_test_acc, f.last_test_loss);
        if let Some(cf) = s.cuttlefish.as_mut() {
            cf.estimate_seconds = f.seconds_rank_estimation;
        }
        Ok(s)
    }

    fn with(trainer: Trainer, cuttlefish: Option<Cuttlefish>, at: Position) -> Session {
        Session {
            params_full: trainer.net.graph.param_count(),
            macs_full: trainer.net.graph.macs(),
            trainer,
            cuttlefish,
            at,
            seconds_full_rank: 0.0,
            seconds_low_rank: 0.0,
            last_test_acc: 0.0,
            last_test_loss: 0.0,
            pending_switch: None,
        }
    }

    /// Stable ranks measured at initialisation (Cuttlefish only).
    pub fn initial_ranks(&self) -> Option<Vec<f64>> {
        self.cuttlefish.as_ref().map(|c| c.tracker.layers.iter().map(|l| l.history[0]).collect())
    }

    pub fn done(&self) -> bool {
        self.at.epochs_done >= self.trainer.cfg.epochs
    }

    /// Runs the next epoch (switching to low rank first when the ranks have settled),
    /// stopping at each stable-rank check inside it. Returns `None` when `stop()` ended it
    /// early; `self.at` is then where training stands (mid-epoch, or still at the epoch's
    /// start), ready to checkpoint or to continue with another call.
    ///
    /// `stop()` is asked before anything runs (so a stop asked during the previous
    /// epoch's evaluation or rank estimate acts before this epoch's first step), after a
    /// switch, and before every training step but a call's first. A switch that a stop
    /// then cuts short is kept in `pending_switch`, never lost.
    pub async fn next_epoch(
        &mut self,
        gpu: &Gpu,
        progress: &mut dyn FnMut(usize, usize, Totals),
        stop: &dyn Fn() -> bool,
    ) -> Result<Option<EpochOutcome>> {
        if stop() {
            return Ok(None);
        }
        let epoch = self.at.epochs_done;
        let mut switch = None;
        if let (true, Some(cf)) = (self.switch_due(), self.cuttlefish.as_mut()) {
            switch = Some(cf.switch(gpu, &mut self.trainer, epoch).await?.clone());
            if stop() {
                self.pending_switch = switch;
                return Ok(None);
            }
        }
        let switch = switch.or_else(|| self.pending_switch.take());
        let (from, steps) = (self.at, self.trainer.steps_per_epoch);
        let t0 = Instant::now();
        let mut checking = 0.0;
        let mut stable_ranks = None;
        let mut at = from;
        while at.step < steps {
            if at.step > from.step && stop() {
                self.at = at;
                self.pending_switch = switch;
                return Ok(None);
            }
            let watching = self.cuttlefish.as_ref().filter(|c| c.watching());
            let until = watching.map_or(steps, |c| c.checks.next_after(at.step));
            let totals = match self.trainer.train_epoch(gpu, at, until, progress, stop).await? {
                Ok(t) => t,
                Err(stopped) => {
                    self.at = stopped;
                    self.pending_switch = switch;
                    return Ok(None);
                }
            };
            at = Position { epochs_done: epoch, step: until, totals };
            if let Some(cf) = self.cuttlefish.as_mut().filter(|c| c.watching()) {
                let c0 = Instant::now();
                let check = cf.checks.at(epoch, until).expect("trained up to a check");
                let s = cf.observe(gpu, check).await?;
                checking += c0.elapsed().as_secs_f64();
                stable_ranks = (until == steps).then_some(s);
            }
        }
        let train_secs = t0.elapsed().as_secs_f64() - checking;
        let report = self.trainer.end_epoch(gpu, from, at.totals, train_secs, t0).await?;
        self.at = Position { epochs_done: epoch + 1, ..Default::default() };
        if self.switched() {
            self.seconds_low_rank += report.seconds as f64;
        } else {
            self.seconds_full_rank += report.seconds as f64;
        }
        self.last_test_acc = report.test_acc;
        self.last_test_loss = report.test_loss;
        Ok(Some(EpochOutcome { switch, report, stable_ranks }))
    }

    /// Whether the next [`Session::next_epoch`] begins with the switch: every tracked layer
    /// is stable and training stands at an epoch boundary (a run resumed mid-epoch whose
    /// layers all became stable at a check before the interruption switches where the
    /// uninterrupted run did, at the next boundary).
    pub fn switch_due(&self) -> bool {
        self.at.step == 0 && self.cuttlefish.as_ref().is_some_and(|c| c.ready())
    }

    /// True once the Cuttlefish switch has happened.
    pub fn switched(&self) -> bool {
        self.cuttlefish.as_ref().is_some_and(|c| c.switched.is_some())
    }

    /// Everything needed to continue exactly from `self.at`.
    pub async fn checkpoint(&self, gpu: &Gpu) -> Result<Checkpoint> {
        let mut ck = self.trainer.checkpoint(gpu, self.at).await?;
        if let Some(cf) = &self.cuttlefish {
            cf.checkpoint_into(gpu, &mut ck).await?;
        }
        if let Some(run) = ck.meta.run.as_mut() {
            run.figures = crate::train::checkpoint::RunFigures {
                seconds_full_rank: self.seconds_full_rank,
                seconds_low_rank: self.seconds_low_rank,
                seconds_rank_estimation: self.cuttlefish.as_ref().map_or(0.0, |c| c.estimate_seconds),
                last_test_acc: self.last_test_acc,
                last_test_loss: self.last_test_loss,
            };
        }
        Ok(ck)
    }

    pub fn final_report(&self) -> FinalReport {
        let g = &self.trainer.net.graph;
        let sw = self.cuttlefish.as_ref().and_then(|c| c.switched.as_ref());
        FinalReport {
            model: self.trainer.cfg.model.clone(),
            epochs: self.trainer.cfg.epochs,
            test_acc: self.last_test_acc,
            val_loss: self.trainer.cfg.text.map(|_| self.last_test_loss),
            params_full: self.params_full,
            params_final: g.param_count(),
            macs_full: self.macs_full,
            macs_final: g.macs(),
            seconds_full_rank: self.seconds_full_rank,
            seconds_low_rank: self.seconds_low_rank,
            switch_epoch: sw.map(|s| s.epoch + 1),
            ranks: sw
                .map(|s| s.decisions.iter().filter(|d| d.factorized).map(|d| (d.layer.clone(), d.rank)).collect())
                .unwrap_or_default(),
            seconds_rank_estimation: self.cuttlefish.as_ref().map_or(0.0, |c| c.estimate_seconds),
            seconds_switch: sw.map_or(0.0, |s| s.seconds),
            converged: self.cuttlefish.as_ref().map(|c| c.switched.is_some()),
        }
    }
}
