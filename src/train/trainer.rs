//! The training loop. A step (`step.rs`: named phases) is one command encoder and one
//! submit, or two with a gradient hook between backward and the update: build the batch on the
//! GPU (augmented images, or a language model's text windows), forward, loss, backward, the optimizer (optional gradient clipping, then SGD or
//! AdamW; `super::optimizer`). The host writes 32 bytes of step state before each
//! submit and nothing else; loss and accuracy totals accumulate on the GPU and are copied
//! out every `report_every` steps (and at the end of an epoch) into one persistent staging
//! buffer. Nothing is allocated inside the step loop.

use super::checkpoint::{self, Checkpoint, Meta, RunState};
use super::optimizer;
use super::step::{GradientHook, Phase, TrainStep};
use crate::data::{epoch_permutation, text, Source, Splits};
use crate::gpu::{Dispatch, Gpu, Readback, Tensor};
use crate::nn::{models, models::model_by_name, Graph, Net};
use crate::ops::augment::{self, Augment, DeviceData};
use crate::ops::clip::GradClip;
use crate::ops::{loss, tokens, StepState};
use crate::{Error, Result};
use web_time::Instant;

pub use super::train_config::{AugmentKind, TextConfig, TrainConfig};

/// One epoch's figures, as printed and written to metrics.jsonl.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EpochReport {
    pub epoch: usize,
    pub train_loss: f32,
    pub train_acc: f32,
    pub test_loss: f32,
    pub test_acc: f32,
    pub lr: f32,
    pub images_per_s: f32,
    /// A language model's training tokens per second (windows/s x context).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_per_s: Option<f32>,
    pub seconds: f32,
}

/// Loss/accuracy totals as `loss.wgsl` accumulates them on the GPU (four f32s in this
/// order, so a readback is a byte copy).
#[repr(C)]
#[derive(
    Clone, Copy, Debug, Default, PartialEq, bytemuck::Pod, bytemuck::Zeroable, serde::Serialize, serde::Deserialize,
)]
pub struct Totals {
    /// Σ cross-entropy over the rows counted.
    pub loss_sum: f32,
    /// Rows whose arg-max is the label.
    pub correct: f32,
    /// Rows counted (images, or a language model's predicted tokens).
    pub rows: f32,
    /// Batches counted.
    pub batches: f32,
}

/// The highest mean cross-entropy a training run may report before it counts as
/// diverged: ten times a uniform guess's over `classes` outputs (ln 10 = 2.3 for ten
/// classes, so 23). Learning starts near ln(classes) and falls; a loss ten times that is a
/// run whose weights have blown up (at `--lr 100` ResNet-6 reports 5e15), not a slow
/// start, and every epoch trained after it would be wasted.
pub fn loss_limit(classes: usize) -> f32 {
    10.0 * (classes.max(2) as f32).ln()
}

/// Where training stands: `epochs_done` whole epochs, then `step` steps of the next one
/// (non-zero only after an interruption) whose loss totals so far are `totals`.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Position {
    pub epochs_done: usize,
    pub step: usize,
    pub totals: Totals,
}

/// How a call to [`Trainer::run_epoch`] ended.
#[derive(Clone, Debug, PartialEq)]
pub enum EpochEnd {
    Done(EpochReport),
    /// `stop` asked to end early; the trainer is at this position (mid-epoch).
    Stopped(Position),
}

impl Totals {
    pub fn mean_loss(&self) -> f32 {
        self.loss_sum / self.rows.max(1.0)
    }
    pub fn accuracy(&self) -> f32 {
        self.correct / self.rows.max(1.0)
    }
}

/// Where batches come from, on the GPU. One per trainer, so the size gap between the
/// variants costs nothing.
#[allow(clippy::large_enum_variant)]
enum Batches {
    /// Both image splits, this epoch's order and the test order (the identity).
    Images { train: DeviceData, test: DeviceData, perm: Tensor, test_order: Tensor },
    /// Both text splits as (n,) u32 ids, and the evaluation windows' stride.
    Text { train: Tensor, val: Tensor, cfg: TextConfig, eval_stride: usize },
}

pub struct Trainer {
    pub cfg: TrainConfig,
    pub net: Net,
    batches: Batches,
    step_state: Tensor,
    totals: Tensor,
    staging: Readback,
    train_step: TrainStep,
    eval_step: Vec<Dispatch>,
    /// Runs between backward and the update of every training step (`set_gradient_hook`).
    hook: Option<Box<dyn GradientHook>>,
    /// Gradient clipping's buffers (with `cfg.clip_grad`), kept with the step that binds them.
    clip: Option<GradClip>,
    /// Optimizer steps taken since the optimizer was created (AdamW's t of the last step):
    /// reset at the Cuttlefish switch, saved in checkpoints.
    pub optimizer_steps: u64,
    pub steps_per_epoch: usize,
    pub augment: Augment,
    plain: Augment,
    /// Multiplies the scheduled rate per epoch (the learning-rate re-warm after the
    /// Cuttlefish switch); 1 when absent.
    pub lr_scale: Vec<(usize, f32)>,
    /// The epoch whose order the permutation buffer holds (an epoch trained in several
    /// calls, between stable-rank checks, uploads it once).
    permutation_of: Option<usize>,
    /// The name of each class id (image data; empty for text), for the checkpoint.
    pub class_names: Vec<String>,
    /// A language model's characters in id order (empty for images), for the checkpoint.
    vocab: String,
}

impl Trainer {
    /// Plans the model and uploads both splits (images, or text for a language model).
    /// Weights are initialised from `cfg.seed`.
    pub fn new<'a>(gpu: &Gpu, data: impl Into<Source<'a>>, cfg: TrainConfig) -> Result<Trainer> {
        let data = data.into();
        let graph = match data {
            Source::Images(s) => {
                let d = &s.train;
                model_by_name(&cfg.model, [d.channels, d.height, d.width], d.classes)
            }
            Source::Text(t) => models::language_model(&cfg.model, cfg.text.map(|c| c.context), t.vocab.len()),
        }
        .map_err(Error::Config)?;
        Trainer::with_graph(gpu, data, cfg, graph)
    }

    /// As `new`, for a graph built by the caller (a fixed low-rank model for benchmarks);
    /// `cfg.model` is then only a name.
    pub fn with_graph<'a>(gpu: &Gpu, data: impl Into<Source<'a>>, cfg: TrainConfig, graph: Graph) -> Result<Trainer> {
        match data.into() {
            // An empty split would report the figures of no images (0/0 read as 0%).
            Source::Images(s) if s.train.n == 0 || s.test.n == 0 => Err(Error::Config(format!(
                "data set {}: the {} split has no images",
                s.train.name,
                if s.train.n == 0 { "training" } else { "test" }
            ))),
            Source::Images(s) => Self::on_images(gpu, s, cfg, graph),
            Source::Text(t) => Self::on_text(gpu, t, cfg, graph),
        }
    }

    /// A language model on text: batches of random windows, evaluation on fixed ones.
    fn on_text(gpu: &Gpu, data: &text::TextData, cfg: TrainConfig, graph: Graph) -> Result<Trainer> {
        let Some(tc) = cfg.text else {
            return Err(Error::Config(format!(
                "{} is text: it trains a language model (gpt-mini, gpt-char)",
                data.name
            )));
        };
        if !graph.reads_tokens() {
            return Err(Error::Config(format!("model {} reads images, not the text {}", graph.name, data.name)));
        }
        let context = graph.shape(Graph::INPUT).0[0];
        data.check_context(context)?;
        if graph.classes < data.vocab.len() {
            return Err(Error::Config(format!(
                "{}: {} distinct characters, more than the model's table of {}",
                data.name,
                data.vocab.len(),
                graph.classes
            )));
        }
        cfg.validate(data.train.len() - context)?;
        data.check_eval_windows(context, tc.eval_batches, cfg.batch)?;
        let net = Net::new(gpu, graph, cfg.batch)?;
        net.params.initialise(gpu, cfg.seed);
        let windows = tc.eval_batches * cfg.batch;
        let batches = Batches::Text {
            train: Tensor::from_slice(gpu, "text-train", &[data.train.len()], &data.train)?,
            val: Tensor::from_slice(gpu, "text-val", &[data.val.len()], &data.val)?,
            cfg: tc,
            eval_stride: text::eval_stride(data.val.len(), context, windows),
        };
        let mut t = Self::with_batches(gpu, cfg, net, batches, tc.eval_every, Augment::none(), Augment::none())?;
        t.vocab = data.vocab.iter().collect();
        Ok(t)
    }

    fn on_images(gpu: &Gpu, data: &Splits, cfg: TrainConfig, graph: Graph) -> Result<Trainer> {
        if graph.reads_tokens() {
            return Err(Error::Config(format!(
                "model {} is a language model: it trains on text (--data builtin-text or text:FILE), not {}",
                graph.name, data.train.name
            )));
        }
        cfg.validate(data.train.n)?;
        let d = &data.train;
        if d.channels > 4 {
            return Err(Error::Config(format!("{} has {} channels; at most 4 are supported", d.name, d.channels)));
        }
        if (data.test.channels, data.test.height, data.test.width) != (d.channels, d.height, d.width) {
            return Err(Error::Config(format!("{} and {} have different image shapes", d.name, data.test.name)));
        }
        if graph.shape(Graph::INPUT).0 != [d.channels, d.height, d.width] || graph.classes != d.classes {
            return Err(Error::Config(format!(
                "model {} expects {:?} inputs and {} classes; {} has {:?} and {}",
                graph.name,
                graph.shape(Graph::INPUT).0,
                graph.classes,
                d.name,
                [d.channels, d.height, d.width],
                d.classes
            )));
        }
        let net = Net::new(gpu, graph, cfg.batch)?;
        net.params.initialise(gpu, cfg.seed);
        let crop_flip = match cfg.augment {
            AugmentKind::Auto => d.channels == 3,
            AugmentKind::CropFlip => true,
            AugmentKind::None => false,
        };
        let mean_std = match &cfg.normalize {
            None => d.channel_mean_std(),
            Some(n) if n.len() != d.channels => {
                return Err(Error::Config(format!(
                    "the run's input normalisation has {} channels; {} has {}",
                    n.len(),
                    d.name,
                    d.channels
                )))
            }
            Some(n) => {
                checkpoint::check_normalize(n).map_err(|e| Error::Config(format!("input normalisation: {e}")))?;
                n.clone()
            }
        };
        let augment = Augment { pad: if crop_flip { 4 } else { 0 }, flip: crop_flip, mean_std: mean_std.clone() };
        let plain = Augment { pad: 0, flip: false, mean_std };
        let ident: Vec<u32> = (0..data.test.n as u32).collect();
        let batches = Batches::Images {
            train: DeviceData::upload(gpu, "train", &data.train)?,
            test: DeviceData::upload(gpu, "test", &data.test)?,
            perm: Tensor::zeros(gpu, "permutation", &[d.n])?,
            test_order: Tensor::from_slice(gpu, "test-order", &[ident.len()], &ident)?,
        };
        let steps_per_epoch = d.n / cfg.batch;
        let mut t = Self::with_batches(gpu, cfg, net, batches, steps_per_epoch, augment, plain)?;
        t.class_names = d.class_names.clone();
        Ok(t)
    }

    fn with_batches(
        gpu: &Gpu,
        cfg: TrainConfig,
        net: Net,
        batches: Batches,
        steps_per_epoch: usize,
        augment: Augment,
        plain: Augment,
    ) -> Result<Trainer> {
        let mut t = Trainer {
            steps_per_epoch,
            batches,
            step_state: Tensor::zeros(gpu, "step-state", &[8])?,
            totals: Tensor::zeros(gpu, "totals", &[4])?,
            staging: Readback::new(gpu, "totals-readback", 16),
            cfg,
            net,
            train_step: TrainStep::default(),
            eval_step: vec![],
            hook: None,
            clip: None,
            optimizer_steps: 0,
            augment,
            plain,
            lr_scale: vec![],
            permutation_of: None,
            class_names: vec![],
            vocab: String::new(),
        };
        t.build_steps(gpu, vec![])?;
        Ok(t)
    }

    /// Swaps in another network (the factorized one at the Cuttlefish switch) and rebuilds
    /// the step. `regularisers` run after backward and before the optimizer (Frobenius
    /// decay).
    ///
    /// The optimizer is rebuilt as the reference rebuilds it at the switch (a new
    /// `torch.optim.SGD` / `AdamW` over the new parameters): momentum or first moment and
    /// second moment start at zero — the new net's buffers are freshly allocated zeros —
    /// and AdamW's step count goes back to 0, so the first low-rank step is t = 1 with
    /// full bias correction. (A resumed run then loads both from its checkpoint.)
    pub fn replace_net(&mut self, gpu: &Gpu, net: Net, regularisers: Vec<Dispatch>) -> Result<()> {
        assert_eq!(net.batch, self.cfg.batch, "replacement net batch size");
        self.net = net;
        self.optimizer_steps = 0;
        self.build_steps(gpu, regularisers)
    }

    /// Plans the training and evaluation steps of `self.net` (plan time: allocates the
    /// optimizer's buffers for this net, once).
    fn build_steps(&mut self, gpu: &Gpu, regularisers: Vec<Dispatch>) -> Result<()> {
        let (optimizer_step, clip) =
            optimizer::plan(gpu, self.cfg.optimizer, self.cfg.clip_grad, &mut self.net.params, &self.step_state)?;
        let net = &self.net;
        let (b, k, per) = (self.cfg.batch, net.graph.classes, net.graph.targets_per_sample());
        let (x, labels, st) = (net.input(), &net.labels, &self.step_state);
        let eps = self.cfg.label_smoothing;
        let (train_batch, eval_batch) = match &self.batches {
            Batches::Images { train, test, perm, test_order } => (
                augment::batch(gpu, "batch", train, &self.augment, b, perm, st, x, labels),
                augment::batch(gpu, "eval-batch", test, &self.plain, b, test_order, st, x, labels),
            ),
            Batches::Text { train, val, cfg, eval_stride } => (
                tokens::text_windows(gpu, "batch", (b, cfg.context), None, train, st, x, labels),
                tokens::text_windows(gpu, "eval-batch", (b, cfg.context), Some(*eval_stride), val, st, x, labels),
            ),
        };
        let (logits, dlogits) = (net.logits(), net.dlogits());
        let ce = loss::cross_entropy(gpu, "loss", (b, per, k), true, eps, logits, labels, st, dlogits, &self.totals);
        let backward = net.backward.iter().cloned().chain(regularisers).collect();
        let train_step =
            TrainStep::new([vec![train_batch], net.forward_train.clone(), vec![ce], backward, optimizer_step]);

        let mut eval_step = vec![eval_batch];
        eval_step.extend(net.forward_eval.iter().cloned());
        // Evaluation: plain cross-entropy (ε = 0) whatever the training loss smooths.
        let ce = loss::cross_entropy(
            gpu,
            "eval-loss",
            (b, per, k),
            false,
            0.0,
            net.logits(),
            labels,
            st,
            net.dlogits(),
            &self.totals,
        );
        eval_step.push(ce);
        self.train_step = train_step;
        self.eval_step = eval_step;
        self.clip = clip;
        Ok(())
    }

    /// Weights, optimizer state (momentum or both AdamW moments, and the step count),
    /// BatchNorm running statistics and the re-warm state, at `at`.
    pub async fn checkpoint(&self, gpu: &Gpu, at: Position) -> Result<Checkpoint> {
        let mut ck = Checkpoint::default();
        let p = &self.net.params;
        for (name, shape, v) in p.read(gpu).await? {
            ck.tensors.insert(name, (shape, v));
        }
        for (name, shape, v) in p.read_buffer(gpu, &p.momentum).await? {
            ck.tensors.insert(format!("momentum.{name}"), (shape, v));
        }
        if let Some(second) = &p.second_moment {
            for (name, shape, v) in p.read_buffer(gpu, second).await? {
                ck.tensors.insert(format!("second_moment.{name}"), (shape, v));
            }
        }
        let running: Vec<&Tensor> = self.net.bn_states().map(|b| &b.running).collect();
        for (b, v) in self.net.bn_states().zip(crate::gpu::read_f32(gpu, &running).await?) {
            let c = v.len() / 2;
            ck.tensors.insert(format!("{}.running_mean", b.prefix), (vec![c], v[..c].to_vec()));
            ck.tensors.insert(format!("{}.running_var", b.prefix), (vec![c], v[c..].to_vec()));
        }
        let g = &self.net.graph;
        ck.meta = Meta {
            model: g.name.clone(),
            input_shape: g.shape(Graph::INPUT).0.to_vec(),
            normalize: self.normalisation().to_vec(),
            class_names: self.class_names.clone(),
            classes: g.classes,
            // One character per output (a head wider than the text's vocabulary, built by
            // hand, has outputs no character names: such a run keeps only vocab.json).
            vocab: if self.vocab.chars().count() == g.classes { self.vocab.clone() } else { String::new() },
            ranks: Default::default(),
            run: Some(RunState {
                epochs_done: at.epochs_done,
                step_in_epoch: at.step,
                epoch_totals: at.totals,
                lr_scale: self.lr_scale.clone(),
                optimizer_steps: self.optimizer_steps,
                cuttlefish: None,
                data_crc32: None,
                figures: Default::default(),
            }),
        };
        Ok(ck)
    }

    /// Loads a checkpoint into this trainer's net (which must have the same parameters:
    /// after a Cuttlefish switch, rebuild the factorized net first). Returns where it was
    /// taken.
    pub fn restore(&mut self, gpu: &Gpu, ck: &Checkpoint, path: &std::path::Path) -> Result<Position> {
        let bad = |what: String| Error::Config(format!("checkpoint {}: {what}", path.display()));
        if ck.meta.model != self.net.graph.name {
            return Err(bad(format!("it is for model {:?}, not {:?}", ck.meta.model, self.net.graph.name)));
        }
        let run = ck.run(path)?;
        let p = &self.net.params;
        let mut flat = vec![0.0f32; p.weights.len()];
        let mut mom = vec![0.0f32; p.momentum.len()];
        let mut second = p.second_moment.as_ref().map(|t| vec![0.0f32; t.len()]);
        if second.is_some() && !ck.tensors.keys().any(|n| n.starts_with("second_moment.")) {
            return Err(
                bad("it has no AdamW second moments (`second_moment.*`): was the run trained with SGD?".into()),
            );
        }
        for stored in p.all() {
            let (spec, off) = (&stored.spec, stored.offset);
            let mut buffers = vec![(spec.name.clone(), &mut flat), (format!("momentum.{}", spec.name), &mut mom)];
            if let Some(s) = second.as_mut() {
                buffers.push((format!("second_moment.{}", spec.name), s));
            }
            for (name, dst) in buffers {
                let (shape, v) = ck.tensor(path, &name)?;
                if *shape != spec.shape {
                    return Err(bad(format!("tensor `{name}` has shape {shape:?}, the model needs {:?}", spec.shape)));
                }
                dst[off..off + spec.len()].copy_from_slice(v);
            }
        }
        p.weights.write(gpu, &flat);
        p.momentum.write(gpu, &mom);
        if let (Some(t), Some(v)) = (&p.second_moment, &second) {
            t.write(gpu, v);
        }
        self.optimizer_steps = run.optimizer_steps;
        for b in self.net.bn_states() {
            let (_, m) = ck.tensor(path, &format!("{}.running_mean", b.prefix))?;
            let (_, v) = ck.tensor(path, &format!("{}.running_var", b.prefix))?;
            if m.len() * 2 != b.running.len() || v.len() != m.len() {
                return Err(bad(format!("running statistics of `{}` have the wrong size", b.prefix)));
            }
            let both: Vec<f32> = m.iter().chain(v).copied().collect();
            b.running.write(gpu, &both);
        }
        self.lr_scale = run.lr_scale.clone();
        let at = Position { epochs_done: run.epochs_done, step: run.step_in_epoch, totals: run.epoch_totals };
        if at.step >= self.steps_per_epoch.max(1) || at.epochs_done > self.cfg.epochs {
            return Err(bad(format!(
                "position {at:?} does not fit this run's {} steps per epoch",
                self.steps_per_epoch
            )));
        }
        Ok(at)
    }

    /// The per-channel (mean, std) this trainer normalises images with (training and
    /// evaluation alike); empty for text.
    pub fn normalisation(&self) -> &[(f32, f32)] {
        &self.plain.mean_std
    }

    /// Kernel dispatches per training step.
    pub fn dispatches_per_step(&self) -> usize {
        self.train_step.all().len()
    }

    /// The per-step state; the optimizer's terms are those of its step `optimizer_steps`.
    fn state(&self, step: usize, epoch: usize, valid: usize, lr: f32) -> StepState {
        let (step_size, bc2_sqrt) = self.cfg.optimizer.step_terms(lr, self.optimizer_steps);
        StepState {
            step: step as u32,
            epoch: epoch as u32,
            valid: valid as u32,
            lr,
            seed_lo: self.cfg.seed as u32,
            seed_hi: (self.cfg.seed >> 32) as u32,
            step_size,
            bc2_sqrt,
        }
    }

    /// Records and submits one step; with `read`, also copies the totals out.
    fn submit(&self, gpu: &Gpu, dispatches: &[Dispatch], st: StepState, read: bool) {
        self.step_state.write_struct(gpu, &st);
        gpu.submit(dispatches, read.then_some((&self.totals, &self.staging)));
    }

    /// One training step: one submit, or with a gradient hook two, the hook between.
    fn submit_train_step(&mut self, gpu: &Gpu, st: StepState, read: bool) -> Result<()> {
        let Some(mut hook) = self.hook.take() else {
            self.submit(gpu, self.train_step.all(), st, read);
            return Ok(());
        };
        self.submit(gpu, self.train_step.until_update(), st, false);
        let r = hook.after_backward(gpu, &self.net.params.grads);
        self.hook = Some(hook);
        r?;
        gpu.submit(self.train_step.phase(Phase::Update), read.then_some((&self.totals, &self.staging)));
        Ok(())
    }

    /// Runs `hook` between backward and the update of every training step from now on
    /// (None: none, one submit per step). See [`GradientHook`].
    pub fn set_gradient_hook(&mut self, hook: Option<Box<dyn GradientHook>>) {
        self.hook = hook;
    }

    async fn read_totals(&self, gpu: &Gpu) -> Result<Totals> {
        let mut t = Totals::default();
        self.staging.read_into(gpu, std::slice::from_mut(&mut t)).await?;
        Ok(t)
    }

    fn reset_totals(&self, gpu: &Gpu) {
        self.totals.write(gpu, &[0.0f32; 4]);
    }

    /// The rate used at step `step` of epoch `epoch`.
    pub fn lr_at(&self, epoch: usize, step: usize) -> f32 {
        let scale = self.lr_scale.iter().find(|(e, _)| *e == epoch).map_or(1.0, |s| s.1);
        let c = &self.cfg;
        scale * c.schedule.lr(c.lr, epoch, step, c.epochs, self.steps_per_epoch, c.warmup_epochs)
    }

    /// Trains epoch `at.epochs_done` (0-based) from step `at.step` up to step `until`
    /// (exclusive; at most the epoch's end) with the totals so far, and reads the totals
    /// at `until`. `progress(step, steps, totals)` is called at every readback; `stop()` is
    /// asked before every step but the first and ends the call early (the totals are read
    /// once more so the position can be checkpointed). Stops with `Error::Diverged` as
    /// soon as a readback shows a non-finite loss.
    pub async fn train_epoch(
        &mut self,
        gpu: &Gpu,
        at: Position,
        until: usize,
        progress: &mut dyn FnMut(usize, usize, Totals),
        stop: &dyn Fn() -> bool,
    ) -> Result<std::result::Result<Totals, Position>> {
        let epoch = at.epochs_done;
        if self.permutation_of != Some(epoch) {
            self.write_permutation(gpu, epoch);
        }
        self.totals.write_struct(gpu, &at.totals);
        let steps = self.steps_per_epoch;
        let until = until.min(steps);
        let mut totals = at.totals;
        // The first step since the last readback.
        let mut window = at.step;
        for s in at.step..until {
            if s > at.step && stop() {
                gpu.submit([], Some((&self.totals, &self.staging)));
                let totals = self.read_totals(gpu).await?;
                return Ok(Err(Position { epochs_done: epoch, step: s, totals }));
            }
            let read = (s + 1) % self.cfg.report_every.max(1) == 0 || s + 1 == until;
            self.optimizer_steps += 1;
            let st = self.state(s, epoch, self.cfg.batch, self.lr_at(epoch, s));
            self.submit_train_step(gpu, st, read)?;
            if read {
                let before = std::mem::replace(&mut totals, self.read_totals(gpu).await?);
                // The mean loss of the steps since the last readback, so one bad stretch is
                // not averaged away by the good steps before it.
                let rows = totals.rows - before.rows;
                let mean = (totals.loss_sum - before.loss_sum) / rows.max(1.0);
                let limit = loss_limit(self.net.graph.classes);
                if !(totals.loss_sum.is_finite() && mean <= limit) {
                    let what = format!(
                        "the mean training loss of steps {}-{} is {mean} (the limit is 10 x ln {} = {limit:.2}, ten times a uniform guess's)",
                        window + 1,
                        s + 1,
                        self.net.graph.classes
                    );
                    let steps_per_interval = self.cfg.text.map(|t| t.eval_every);
                    return Err(Error::Diverged { epoch: epoch + 1, step: s + 1, steps_per_interval, what });
                }
                window = s + 1;
                progress(s + 1, steps, totals);
            }
        }
        Ok(Ok(totals))
    }

    /// Runs `steps` training steps of epoch 0 back to back, then waits for the GPU once
    /// (benchmarks: no readback between steps).
    pub async fn bench_steps(&mut self, gpu: &Gpu, steps: usize) -> Result<Totals> {
        self.write_permutation(gpu, 0);
        for s in 0..steps {
            self.optimizer_steps += 1;
            let st = self.state(s % self.steps_per_epoch, 0, self.cfg.batch, self.cfg.lr);
            self.submit_train_step(gpu, st, s + 1 == steps)?;
        }
        self.read_totals(gpu).await
    }

    /// Times every dispatch of one training step, for `cuttle bench train --profile`:
    /// (dispatch, seconds) in step order, and whether GPU timestamps measured them
    /// (`Gpu::profile`).
    pub async fn profile_step(&mut self, gpu: &Gpu) -> Result<(Vec<(&Dispatch, f64)>, bool)> {
        let st = self.state(0, 0, self.cfg.batch, self.cfg.lr);
        self.step_state.write_struct(gpu, &st);
        let (secs, timestamps) = gpu.profile(self.train_step.all()).await?;
        Ok((self.train_step.all().iter().zip(secs).collect(), timestamps))
    }

    /// An image run's order of epoch `epoch` (a text run draws its windows on the GPU).
    fn write_permutation(&mut self, gpu: &Gpu, epoch: usize) {
        if let Batches::Images { train, perm, .. } = &self.batches {
            perm.write(gpu, &epoch_permutation(train.n, self.cfg.seed, epoch as u64));
        }
        self.permutation_of = Some(epoch);
    }

    /// Samples one evaluation covers: the test images, or a language model's evaluation
    /// windows (`eval_batches` full batches).
    pub fn eval_samples(&self) -> usize {
        match &self.batches {
            Batches::Images { test, .. } => test.n,
            Batches::Text { cfg, .. } => cfg.eval_batches * self.cfg.batch,
        }
    }

    /// Loss and accuracy on the whole test split (BatchNorm in eval mode), or a language
    /// model's validation windows (loss in nats per token).
    pub async fn evaluate(&mut self, gpu: &Gpu) -> Result<Totals> {
        self.evaluate_into(gpu, None).await
    }

    /// The test evaluation with every test image's logits, in the split's order:
    /// `(totals, logits)`, logits `(test images, classes)` row-major. One readback per
    /// evaluation batch: for `cuttle eval --predictions`, comparing with another framework,
    /// not for training.
    pub async fn evaluate_with_logits(&mut self, gpu: &Gpu) -> Result<(Totals, Vec<f32>)> {
        if self.cfg.text.is_some() {
            return Err(Error::Config("per-image logits are for image models; a language model is sampled".into()));
        }
        let mut logits = Vec::with_capacity(self.eval_samples() * self.net.graph.classes);
        let totals = self.evaluate_into(gpu, Some(&mut logits)).await?;
        Ok((totals, logits))
    }

    /// The evaluation's batches, one submit each, the totals read once at the end; with
    /// `logits`, each batch's valid rows of logits appended to it.
    async fn evaluate_into(&mut self, gpu: &Gpu, mut logits: Option<&mut Vec<f32>>) -> Result<Totals> {
        self.reset_totals(gpu);
        let (n, b, k) = (self.eval_samples(), self.cfg.batch, self.net.graph.classes);
        let steps = n.div_ceil(b);
        for s in 0..steps {
            let rows = b.min(n - s * b);
            self.submit(gpu, &self.eval_step, self.state(s, 0, rows, 0.0), s + 1 == steps);
            if let Some(out) = logits.as_deref_mut() {
                let batch = crate::gpu::read_f32(gpu, &[self.net.logits()]).await?.remove(0);
                out.extend_from_slice(&batch[..rows * k]);
            }
        }
        self.read_totals(gpu).await
    }

    /// Predicted classes of the first `min(count, batch, test images)` test images (BatchNorm
    /// in eval mode), for showing predictions next to the images.
    pub async fn predict(&mut self, gpu: &Gpu, count: usize) -> Result<Vec<u32>> {
        if self.cfg.text.is_some() {
            return Err(Error::Config("a language model predicts text: sample it instead".into()));
        }
        let n = count.min(self.cfg.batch).min(self.eval_samples());
        self.submit(gpu, &self.eval_step, self.state(0, 0, n, 0.0), false);
        let logits = crate::gpu::read_f32(gpu, &[self.net.logits()]).await?.remove(0);
        let k = self.net.graph.classes;
        Ok(logits
            .chunks_exact(k)
            .take(n)
            .map(|row| (0..k).max_by(|&a, &b| row[a].total_cmp(&row[b])).unwrap_or(0) as u32)
            .collect())
    }

    /// One epoch of training (from `at`, see [`Trainer::train_epoch`]) and a test
    /// evaluation, timed; images/s counts the steps run in this call.
    pub async fn run_epoch(
        &mut self,
        gpu: &Gpu,
        at: Position,
        progress: &mut dyn FnMut(usize, usize, Totals),
        stop: &dyn Fn() -> bool,
    ) -> Result<EpochEnd> {
        let t0 = Instant::now();
        let train = match self.train_epoch(gpu, at, self.steps_per_epoch, progress, stop).await? {
            Ok(t) => t,
            Err(p) => return Ok(EpochEnd::Stopped(p)),
        };
        let train_secs = t0.elapsed().as_secs_f64();
        Ok(EpochEnd::Done(self.end_epoch(gpu, at, train, train_secs, t0).await?))
    }

    /// The test evaluation closing epoch `from.epochs_done`, trained from step `from.step`
    /// to its end in `train_secs` seconds (the samples/s), and its report; `t0` is when
    /// the epoch began (its `seconds`).
    pub async fn end_epoch(
        &mut self,
        gpu: &Gpu,
        from: Position,
        train: Totals,
        train_secs: f64,
        t0: Instant,
    ) -> Result<EpochReport> {
        let test = self.evaluate(gpu).await?;
        let epoch = from.epochs_done;
        // The evaluation counts too: a step can leave weights whose training loss was
        // still in range but which no longer predict (gpt-mini at lr 100: training loss
        // 4.6, validation loss 243,402). Stopping here keeps the last good checkpoint live.
        // Its limit is ten times the training loss's: a model overfitted to a few images
        // can be confidently wrong on the test split (a CNN on 10 images at batch 1: 37
        // nats), which is a poor run, not a diverged one.
        let limit = 10.0 * loss_limit(self.net.graph.classes);
        if !(test.loss_sum.is_finite() && test.mean_loss() <= limit) {
            let what = format!(
                "the {} loss is {} (the limit is 100 x ln {} = {limit:.1}, a hundred times a uniform guess's)",
                if self.cfg.text.is_some() { "validation" } else { "test" },
                test.mean_loss(),
                self.net.graph.classes
            );
            let steps_per_interval = self.cfg.text.map(|t| t.eval_every);
            return Err(Error::Diverged { epoch: epoch + 1, step: self.steps_per_epoch, steps_per_interval, what });
        }
        let samples_per_s = ((self.steps_per_epoch - from.step) * self.cfg.batch) as f64 / train_secs.max(1e-9);
        let samples_per_s = samples_per_s as f32;
        Ok(EpochReport {
            epoch: epoch + 1,
            train_loss: train.mean_loss(),
            train_acc: train.accuracy(),
            test_loss: test.mean_loss(),
            test_acc: test.accuracy(),
            lr: self.lr_at(epoch, self.steps_per_epoch.saturating_sub(1)),
            images_per_s: samples_per_s,
            tokens_per_s: self.cfg.text.map(|t| samples_per_s * t.context as f32),
            seconds: t0.elapsed().as_secs_f32(),
        })
    }
}
