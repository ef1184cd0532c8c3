//! The `cuttle` command line: train, info, bench, eval, export, sample, serve.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cli::config::TrainArgs;
use cli::rundir::RunDir;
use cuttle::cuttlefish::{CuttlefishConfig, SwitchReport};
use cuttle::data::{self, DataSpec, Source, TextData};
use cuttle::gpu::{list_adapters, Gpu, GpuOptions};
use cuttle::nn::models::{self, is_language_model, model_by_name};
use cuttle::session::{EpochOutcome, Session};
use cuttle::train::checkpoint::{self, Checkpoint};
use cuttle::train::{RunConfig, TrainConfig};
use std::io::IsTerminal;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};

mod cli;
use cli::bench;

#[derive(Parser)]
#[command(name = "cuttle", version, about = "A portable WebGPU training engine (Cuttlefish low-rank training on wgpu)")]
struct Cli {
    /// Pick the adapter whose name contains this (case-insensitive); also CUTTLE_ADAPTER.
    /// WGPU_BACKEND=vulkan|metal|dx12|gl restricts the backends searched.
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Without a subcommand: the main job, Cuttlefish training of ResNet-6 on the
    /// Fashion-MNIST subset that ships inside cuttle (`train --cuttlefish` with defaults).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and evaluate it on the test split every epoch.
    Train(Box<TrainArgs>),
    /// List every adapter (backend, type, limits, features), or describe a model.
    Info {
        /// Print the parameters and multiply-adds of this model instead.
        #[arg(long)]
        model: Option<String>,
        /// Classes of the model's head, or a language model's vocabulary (with --model)
        /// [default: 10, or 65 (Tiny Shakespeare's characters) for a language model].
        #[arg(long)]
        classes: Option<usize>,
    },
    /// Benchmarks printing JSON lines: `matmul` (GFLOP/s), `train` (images/s), `srank`.
    Bench(bench::BenchArgs),
    /// Test accuracy of a run's last checkpoint.
    Eval {
        /// The run directory.
        run: std::path::PathBuf,
        /// Data to evaluate on [default: the run's own].
        #[arg(long)]
        data: Option<String>,
    },
    /// Serve the browser demo (web/, built by `bash web/build.sh`) on 127.0.0.1.
    Serve(cli::serve::ServeArgs),
    /// Write a run's model (weights and BatchNorm statistics, PyTorch names) to a
    /// safetensors file that `safetensors.torch.load_file` reads.
    Export {
        run: std::path::PathBuf,
        #[arg(long)]
        to: std::path::PathBuf,
    },
    /// Text from a language model run's last checkpoint (deterministic for a seed).
    Sample(cli::sample::SampleArgs),
}

/// Says what choosing GEMM tiles by measurement cost, when it measured anything: the
/// first run on an adapter is slower to start, later runs read the choices back.
fn report_tuning(gpu: &Gpu, since: std::time::Instant) {
    let Some(tiles) = cuttle::ops::tune::cache_of(gpu) else { return };
    let measured = tiles.measured();
    if measured > 0 {
        let kept = tiles.path().map(|p| format!(", kept in {}", p.display())).unwrap_or_default();
        eprintln!(
            "tiles: measured {measured} GEMM shapes on this adapter in {:.1} s (once{kept}; CUTTLE_TUNE=0 skips)",
            since.elapsed().as_secs_f64()
        );
    }
}

/// The device `--adapter` or `CUTTLE_ADAPTER` names, with GEMM tiles by shape.
fn untuned_gpu(adapter: &Option<String>) -> Result<Gpu, cuttle::Error> {
    let mut opts = GpuOptions::from_env();
    if adapter.is_some() {
        opts.name = adapter.clone();
    }
    Ok(pollster::block_on(Gpu::new(&opts))?)
}

/// The device the command line runs on: `--adapter` or `CUTTLE_ADAPTER`, with GEMM tiles
/// tuned by measurement unless `CUTTLE_TUNE=0`.
fn gpu(adapter: &Option<String>) -> Result<Gpu, cuttle::Error> {
    let gpu = untuned_gpu(adapter)?;
    if cuttle::ops::tune::wanted_by_cli() {
        cuttle::ops::tune::attach(&gpu, cuttle::ops::tune::TileCache::open(gpu.adapter()));
    }
    Ok(gpu)
}

/// A run's data in memory: image splits, or a language model's text.
pub enum Loaded {
    Images(data::Splits),
    Text(TextData),
}

impl Loaded {
    fn source(&self) -> Source<'_> {
        match self {
            Loaded::Images(s) => Source::Images(s),
            Loaded::Text(t) => Source::Text(t),
        }
    }

    /// Training samples the batch must fit in: images, or window starts.
    fn train_count(&self, c: &RunConfig) -> usize {
        match self {
            Loaded::Images(s) => s.train.n,
            Loaded::Text(t) => t.train.len().saturating_sub(c.resolved().context.unwrap_or(0)),
        }
    }
}

/// The data set `c` names, with the requested class-balanced subsets; a language model's
/// text over `vocab` (a run's own, saved in its directory) when given.
fn load_data(c: &RunConfig, vocab: Option<Vec<char>>) -> Result<(DataSpec, Loaded), cuttle::Error> {
    let spec: DataSpec = c.data().parse().map_err(cuttle::Error::Config)?;
    if is_language_model(&c.model) {
        if c.train_subset.is_some() || c.test_subset.is_some() {
            return Err(cuttle::Error::Config("--train-subset and --test-subset are for images: a language model draws windows (--steps, --eval-batches)".into()));
        }
        let text = match (vocab, &spec) {
            (Some(v), DataSpec::Text(p)) => TextData::load_with_vocab(p, v)?,
            _ => data::load_text(&spec)?,
        };
        return Ok((spec, Loaded::Text(text)));
    }
    for (flag, n) in [("--train-subset", c.train_subset), ("--test-subset", c.test_subset)] {
        if n == Some(0) {
            return Err(cuttle::Error::Config(format!("{flag} must be at least 1 (0 would leave that split empty)")));
        }
    }
    let mut splits = data::load(&spec)?;
    if let Some(n) = c.train_subset {
        splits.train = splits.train.subset(n);
    }
    if let Some(n) = c.test_subset {
        splits.test = splits.test.subset(n);
    }
    // An empty split would train nothing or report figures of no images.
    for (split, d) in [("training", &splits.train), ("test", &splits.test)] {
        if d.n == 0 {
            return Err(cuttle::Error::Config(format!("{spec}: the {split} split has no images")));
        }
    }
    Ok((spec, Loaded::Images(splits)))
}

/// The vocabulary a language model run saved (`vocab.json`), if any.
fn run_vocab(dir: &std::path::Path) -> Result<Option<Vec<char>>, cuttle::Error> {
    let path = dir.join(cli::sample::VOCAB_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => cli::sample::parse_vocab(&text)
            .map(Some)
            .map_err(|e| cuttle::Error::Config(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(cuttle::Error::Config(format!("{}: {e}", path.display()))),
    }
}

/// Set by Ctrl-C: the training loop stops after the current step and checkpoints.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

/// A run's data and checked settings, before any GPU work.
struct Plan {
    spec: DataSpec,
    data: Loaded,
    cfg: TrainConfig,
    cf: Option<CuttlefishConfig>,
}

/// Loads the data and checks every setting, the model and its layer names, so that a
/// typo fails at once on any machine.
fn plan(c: &RunConfig, vocab: Option<Vec<char>>) -> Result<Plan, cuttle::Error> {
    let (spec, data) = load_data(c, vocab)?;
    let (cfg, cf) = c.settings(data.train_count(c))?;
    let graph = match &data {
        Loaded::Images(s) => {
            let t = &s.train;
            model_by_name(&c.model, [t.channels, t.height, t.width], t.classes)
        }
        Loaded::Text(t) => {
            t.check_context(cfg.text.map_or(0, |x| x.context))?;
            models::language_model(&c.model, c.context, t.vocab.len())
        }
    }
    .map_err(cuttle::Error::Config)?;
    if let Some(cf) = &cf {
        cuttle::cuttlefish::run::check_layers(&graph, &cf.factorize)?;
    }
    Ok(Plan { spec, data, cfg, cf })
}

fn train(cli_adapter: &Option<String>, a: TrainArgs) -> Result<(), cuttle::Error> {
    let (json, resuming) = (a.json, a.resume.is_some());
    // The model's defaults filled in once, so config.toml and the header show what trains.
    let c = match &a.resume {
        Some(dir) => cli::config::from_run_dir(dir)?,
        None => a.run,
    }
    .resolved();
    let vocab = if resuming { run_vocab(&cli::config::run_dir(&c))? } else { None };
    let Plan { spec, data, cfg, cf } = plan(&c, vocab)?;
    // Only once every setting is known good: --force deletes the earlier run's files.
    let out = if resuming { cli::config::run_dir(&c) } else { fresh_run_dir(&c, a.force)? };
    let checkpoint = if resuming {
        let (ck, path) = run_checkpoint(&out, Some(&c.model))?;
        let run = ck.run(&path)?;
        if run.epochs_done >= cfg.epochs {
            // Nothing to train: the run's files (its report above all) stay as they are.
            eprintln!(
                "{} has finished: {} of {} {} trained; nothing to do (its results are in {})",
                out.display(),
                run.epochs_done,
                cfg.epochs,
                if cfg.text.is_some() { "evaluation intervals" } else { "epochs" },
                out.join("report.json").display()
            );
            return Ok(());
        }
        Some((ck, path))
    } else {
        None
    };
    let mut run = RunDir::create(&out, resuming)?;
    if !resuming {
        run.write(cli::config::FILE, &cli::config::to_toml(&c))?;
        if let Loaded::Text(t) = &data {
            run.write(cli::sample::VOCAB_FILE, &cli::sample::vocab_json(&t.vocab))?;
        }
    }

    let gpu = gpu(cli_adapter)?;
    eprintln!("adapter: {}", gpu.adapter());
    let planning = std::time::Instant::now();
    let mut session = match &checkpoint {
        Some((ck, path)) => {
            let s = pollster::block_on(Session::resume(&gpu, data.source(), cfg, cf, ck, path))?;
            if let Some(cf) = &s.cuttlefish {
                cf.check_continuable(s.at, path)?;
            }
            s
        }
        None => pollster::block_on(Session::new(&gpu, data.source(), cfg, cf))?,
    };
    report_tuning(&gpu, planning);
    describe(&session, &spec, &data);
    if resuming {
        let at = session.at;
        eprintln!("resuming {} after epoch {}, step {}", out.display(), at.epochs_done, at.step);
    } else if let Some(cf) = &session.cuttlefish {
        let s0 = session.initial_ranks().unwrap_or_default();
        run.ranks_header(&cf.tracker.names())?;
        run.ranks_row(0, &s0)?;
        if !json {
            print_ranks(&cf.tracker, &s0);
        }
    }
    // Ctrl-C: finish the step in flight, checkpoint, exit; a second Ctrl-C exits at once.
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            std::process::exit(130);
        }
    });
    while !session.done() {
        let Some(o) = epoch(&gpu, &mut session, json)? else {
            // A switch that Ctrl-C cut short is in the checkpoint: record it too.
            if let Some(sw) = session.pending_switch.take() {
                record_switch(&mut run, &sw, json)?;
            }
            return interrupted(&gpu, &session, &out);
        };
        record_epoch(&mut run, &session, &o, json)?;
        let ck = pollster::block_on(session.checkpoint(&gpu))?;
        ck.save(&out)?;
        run.plots()?;
        if session.done() {
            // The final model alone, as `cuttle export` writes it.
            ck.model_only().write_atomic(&out.join("model.safetensors"))?;
        }
    }
    finish(&run, &session, &spec, &gpu, json)
}

/// The directory of a new run. One that already holds a run is never reused silently:
/// a default name (no --out, no --name) moves on to `NAME-2`, `NAME-3`, ...; a name the
/// user gave needs `--force`, which deletes the old run's files first.
fn fresh_run_dir(c: &RunConfig, force: bool) -> Result<std::path::PathBuf, cuttle::Error> {
    let dir = cli::config::run_dir(c);
    if !RunDir::holds_run(&dir) {
        return Ok(dir);
    }
    if force {
        RunDir::clear(&dir)?;
        eprintln!("--force: deleted the earlier run's files in {}", dir.display());
        return Ok(dir);
    }
    if c.out.is_some() || c.name.is_some() {
        return Err(cuttle::Error::Config(format!(
            "{} already holds a run; continue it with `cuttle train --resume {}`, replace it with --force, or choose another --out/--name",
            dir.display(),
            dir.display()
        )));
    }
    let free = (2..)
        .map(|k| {
            let mut name = dir.as_os_str().to_owned();
            name.push(format!("-{k}"));
            std::path::PathBuf::from(name)
        })
        .find(|d| !RunDir::holds_run(d))
        .expect("some name is free");
    eprintln!("{} holds an earlier run; this one goes to {}", dir.display(), free.display());
    Ok(free)
}

/// What the run trains, and (with Cuttlefish) when the ranks count as settled.
fn describe(session: &Session, spec: &DataSpec, data: &Loaded) {
    let trainer = &session.trainer;
    let sizes = match data {
        Loaded::Images(s) => format!("{} train / {} test images", s.train.n, s.test.n),
        Loaded::Text(t) => format!(
            "{} train / {} validation characters, vocabulary {}, {} validation windows",
            t.train.len(),
            t.val.len(),
            t.vocab.len(),
            trainer.eval_samples()
        ),
    };
    eprintln!(
        "model {} ({} parameters), data {spec} ({sizes}), {} steps per {}, {} dispatches per step",
        trainer.cfg.model,
        session.params_full,
        trainer.steps_per_epoch,
        if trainer.cfg.text.is_some() { "evaluation" } else { "epoch" },
        trainer.dispatches_per_step()
    );
    eprintln!("training: {}", trainer.cfg.summary());
    if let Some(cf) = &session.cuttlefish {
        let (d, c) = (cf.detector, cf.checks);
        let looser: Vec<String> = d
            .looser
            .iter()
            .map(
                |(lo, hi, t)| {
                    if lo == hi {
                        format!("{t:.3} with {lo} left")
                    } else {
                        format!("{t:.3} with {lo}-{hi} left")
                    }
                },
            )
            .collect();
        let unit = if trainer.cfg.text.is_some() { "evaluation interval" } else { "epoch" };
        eprintln!(
            "cuttlefish: tracking {} layers; stable ranks checked {} times per {unit} (every {:.1} steps, {} checks in the run)",
            cf.tracker.layers.len(),
            c.per_epoch,
            c.steps as f64 / c.per_epoch as f64,
            c.total(trainer.cfg.epochs),
        );
        let wait = if d.earliest > d.p {
            format!(", the end of the learning-rate warm-up (P = {})", d.p)
        } else {
            String::new()
        };
        eprintln!(
            "  a layer is stable from check {}{wait} once its mean |d srank / d check| over the last {} is <= {:.3} ({})",
            d.earliest,
            d.m,
            d.thr,
            looser.join(", ")
        );
    }
}

/// The next epoch, with a progress bar on a terminal (nothing mid-epoch when logging to a
/// file or with --json). `None` when Ctrl-C stopped it.
fn epoch(gpu: &Gpu, session: &mut Session, json: bool) -> Result<Option<EpochOutcome>, cuttle::Error> {
    let bar = (!json && std::io::stderr().is_terminal()).then(|| {
        let b = indicatif::ProgressBar::new(session.trainer.steps_per_epoch as u64);
        b.set_style(
            indicatif::ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg} ({eta})")
                .expect("valid template")
                .progress_chars("=> "),
        );
        b.set_prefix((session.at.epochs_done + 1).to_string());
        b
    });
    let mut progress = |s: usize, _n: usize, t: cuttle::train::trainer::Totals| {
        if let Some(b) = &bar {
            b.set_position(s as u64);
            b.set_message(format!("loss {:.4} acc {:.2}%", t.mean_loss(), 100.0 * t.accuracy()));
        }
    };
    let stop = || INTERRUPTED.load(Ordering::SeqCst);
    let r = pollster::block_on(session.next_epoch(gpu, &mut progress, &stop));
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    r
}

/// Prints the switch to low rank and appends it to the run's metrics.
fn record_switch(run: &mut RunDir, sw: &SwitchReport, json: bool) -> Result<(), cuttle::Error> {
    let line = serde_json::json!({"event": "switch", "epoch": sw.epoch + 1, "report": sw});
    run.metric(&line)?;
    if json {
        println!("{line}");
    } else {
        print_switch(sw);
    }
    Ok(())
}

/// Prints an epoch's switch, figures and stable ranks, and appends them to the run's files.
fn record_epoch(run: &mut RunDir, session: &Session, o: &EpochOutcome, json: bool) -> Result<(), cuttle::Error> {
    if let Some(sw) = &o.switch {
        record_switch(run, sw, json)?;
    }
    let r = &o.report;
    let mut line = serde_json::to_value(r).expect("report serialises");
    if let (Some(tps), Some(t)) = (r.tokens_per_s, session.trainer.cfg.text) {
        line["step"] = (r.epoch * t.eval_every).into();
        if !json {
            eprintln!(
                "step {:>5}  train loss {:.4}  val loss {:.4} nats/char  {:.0} tokens/s  {:.1}s",
                r.epoch * t.eval_every,
                r.train_loss,
                r.test_loss,
                tps,
                r.seconds
            );
        }
    } else if !json {
        eprintln!(
            "epoch {:>3}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  {:.0} img/s  {:.1}s",
            r.epoch,
            r.train_loss,
            100.0 * r.train_acc,
            r.test_loss,
            100.0 * r.test_acc,
            r.images_per_s,
            r.seconds
        );
    }
    if let (Some(s), Some(cf)) = (&o.stable_ranks, &session.cuttlefish) {
        run.ranks_row(r.epoch, s)?;
        let layers = &cf.tracker.layers;
        let map = |f: &dyn Fn(usize) -> serde_json::Value| -> serde_json::Value {
            layers.iter().enumerate().map(|(i, l)| (l.name.clone(), f(i))).collect::<serde_json::Map<_, _>>().into()
        };
        line["stable_ranks"] = map(&|i| serde_json::json!(s[i]));
        line["rank_change"] = map(&|i| serde_json::json!(layers[i].statistic(&cf.detector)));
        line["stable_at_check"] = map(&|i| serde_json::json!(layers[i].stable_at));
        line["threshold"] = cf.tracker.last_threshold(&cf.detector).into();
        if !json {
            print_ranks(&cf.tracker, s);
            print_change(cf);
        }
    }
    run.metric(&line)?;
    if json {
        println!("{line}");
    }
    Ok(())
}

/// Ctrl-C: checkpoints mid-epoch and says how to continue.
fn interrupted(gpu: &Gpu, session: &Session, out: &std::path::Path) -> Result<(), cuttle::Error> {
    pollster::block_on(session.checkpoint(gpu))?.save(out)?;
    let at = session.at;
    eprintln!(
        "interrupted: checkpointed epoch {} at step {}; continue with `cuttle train --resume {}`",
        at.epochs_done + 1,
        at.step,
        out.display()
    );
    Err(cuttle::Error::Interrupted)
}

/// The final report: written to the run directory and printed.
fn finish(run: &RunDir, session: &Session, spec: &DataSpec, gpu: &Gpu, json: bool) -> Result<(), cuttle::Error> {
    let report = session.final_report();
    run.report(&report)?;
    let mut value = serde_json::to_value(&report).expect("report serialises");
    value["event"] = "final".into();
    value["data"] = spec.to_string().into();
    value["adapter"] = gpu.adapter().name.clone().into();
    if json {
        println!("{value}");
    } else {
        print_final(&report);
    }
    eprintln!("run directory: {}", run.dir.display());
    Ok(())
}

/// Stable ranks `s` (one per tracked layer), stable layers starred.
fn print_ranks(tracker: &cuttle::cuttlefish::tracker::Tracker, s: &[f64]) {
    let cells: Vec<String> = tracker
        .layers
        .iter()
        .zip(s)
        .map(|(l, v)| format!("{}{} {v:.1}", short_name(&l.name), if l.stable { "*" } else { "" }))
        .collect();
    for chunk in cells.chunks(6) {
        eprintln!("  srank  {}", chunk.join("  "));
    }
}

/// Each tracked layer's convergence statistic next to the threshold the next check applies
/// (a stable layer shows the check at which it became stable).
fn print_change(cf: &cuttle::cuttlefish::Cuttlefish) {
    let d = &cf.detector;
    let cells: Vec<String> = cf
        .tracker
        .layers
        .iter()
        .map(|l| {
            let n = short_name(&l.name);
            match l.stable_at {
                Some(c) => format!("{n} stable@{c}"),
                None => format!("{n} {:.3}", l.statistic(d)),
            }
        })
        .collect();
    let t = &cf.tracker;
    let note = if t.all_stable() {
        "every layer stable: the switch comes before the next epoch".to_string()
    } else {
        format!("threshold {:.3} at check {}", t.last_threshold(d), t.len() - 1)
    };
    for (i, chunk) in cells.chunks(6).enumerate() {
        let tail = if i == 0 { format!("   ({note})") } else { String::new() };
        eprintln!("  change {}{tail}", chunk.join("  "));
    }
}

/// `layer2.0.conv1` as `L2.0.c1`, for the per-epoch tables.
fn short_name(name: &str) -> String {
    name.replace(".conv", ".c").replace("layer", "L").replace("transformer.h.", "h")
}

fn print_switch(r: &cuttle::cuttlefish::SwitchReport) {
    eprintln!("cuttlefish: switch to low rank before epoch {} ({:.2}s)", r.epoch + 1, r.seconds);
    for d in &r.decisions {
        let timing = match (d.full_ms, d.factorized_ms) {
            (Some(f), Some(l)) => format!(" (median of {}: full {f:.2} ms, factorized {l:.2} ms)", d.samples),
            _ => String::new(),
        };
        eprintln!(
            "  {:<22} rank {:>4} / {:<4} {}: {}{timing}",
            d.layer,
            d.rank,
            d.full_rank,
            if d.factorized { "factorized" } else { "kept full-rank" },
            d.reason
        );
    }
    eprintln!(
        "  parameters {} -> {} ({:.2}x smaller), forward MACs/image {:.1}M -> {:.1}M",
        r.params_before,
        r.params_after,
        r.params_before as f64 / r.params_after as f64,
        r.macs_before as f64 / 1e6,
        r.macs_after as f64 / 1e6
    );
}

fn print_final(r: &cuttle::session::FinalReport) {
    match r.val_loss {
        Some(l) => eprintln!("final: validation loss {l:.4} nats per character"),
        None => eprintln!("final: test accuracy {:.2}%", 100.0 * r.test_acc),
    }
    eprintln!("  parameters {} -> {}", r.params_full, r.params_final);
    if let Some(converged) = r.converged {
        match r.switch_epoch {
            Some(e) if converged && r.ranks.is_empty() => eprintln!(
                "  stable ranks settled before epoch {e}, but no layer was worth factorizing (see the switch): the model stayed full-rank"
            ),
            Some(e) if converged => eprintln!("  switched to low rank at epoch {e}; ranks {:?}", r.ranks),
            _ => eprintln!("  stable ranks did not settle: training stayed full-rank"),
        }
        eprintln!(
            "  time: full-rank {:.1}s, low-rank {:.1}s, rank estimation {:.2}s, switch {:.2}s",
            r.seconds_full_rank, r.seconds_low_rank, r.seconds_rank_estimation, r.seconds_switch
        );
    }
}

/// A run directory's checkpoint (the previous one, with the warning printed, when the
/// live one is missing or damaged) and the file it came from; with `model`, refused at
/// once when it is another model's than the run's `config.toml` names.
fn run_checkpoint(
    dir: &std::path::Path,
    model: Option<&str>,
) -> Result<(Checkpoint, std::path::PathBuf), cuttle::Error> {
    let (ck, path, warning) = Checkpoint::load_run(dir)?;
    if let Some(w) = warning {
        eprintln!("{w}");
    }
    match model {
        Some(m) if ck.meta.model != m => Err(cuttle::Error::Config(format!(
            "{} holds a {} checkpoint but the run's {} says model {m}",
            path.display(),
            ck.meta.model,
            cli::config::FILE
        ))),
        _ => Ok((ck, path)),
    }
}

/// The session of a run directory with its last checkpoint loaded (the factorized net if
/// the run switched), on `data` instead of the run's own data if given.
fn load_run(
    adapter: &Option<String>,
    dir: &std::path::Path,
    data: Option<String>,
) -> Result<(Gpu, Session, Loaded), cuttle::Error> {
    let own = cli::config::from_run_dir(dir)?.resolved();
    let mut c = own.clone();
    let other = data.is_some();
    if let Some(d) = data {
        c.data = Some(d);
    }
    let (ck, path) = run_checkpoint(dir, Some(&own.model))?;
    let (_, data) = load_data(&c, run_vocab(dir)?)?;
    let n = data.train_count(&c);
    c.batch = c.batch.map(|b| b.min(n));
    let (mut cfg, cf) = c.settings(n)?;
    // Images are normalised as the run normalised them, whatever data they come from.
    if let Loaded::Images(_) = &data {
        if !ck.meta.normalize.is_empty() {
            cfg.normalize = Some(ck.meta.normalize.clone());
        } else if other {
            // A checkpoint from before the normalisation was recorded: recompute the
            // run's own from its training split.
            let meta = described_by_run_data(&own, dir)?;
            eprintln!(
                "note: {} does not record the run's input normalisation (an older cuttle); recomputed it from the run's own training split",
                path.display()
            );
            cfg.normalize = Some(meta.normalize);
        }
    }
    let gpu = gpu(adapter)?;
    let session = pollster::block_on(Session::resume(&gpu, data.source(), cfg, cf, &ck, &path))?;
    Ok((gpu, session, data))
}

fn eval(adapter: &Option<String>, dir: &std::path::Path, data: Option<String>) -> Result<(), cuttle::Error> {
    let (gpu, mut session, _) = load_run(adapter, dir, data)?;
    let t = pollster::block_on(session.trainer.evaluate(&gpu))?;
    let (epochs, trainer) = (session.at.epochs_done, &session.trainer);
    let parameters = trainer.net.graph.param_count();
    let line = match trainer.cfg.text {
        Some(x) => serde_json::json!({"run": dir.display().to_string(), "steps_trained": epochs * x.eval_every,
            "val_loss": t.mean_loss(), "tokens": t.rows, "parameters": parameters}),
        None => {
            serde_json::json!({"run": dir.display().to_string(), "epochs_trained": epochs, "test_acc": t.accuracy(),
            "test_loss": t.mean_loss(), "images": t.rows, "parameters": parameters,
            "normalize": short_decimals(trainer.normalisation())})
        }
    };
    println!("{line}");
    Ok(())
}

/// (mean, std) pairs as JSON numbers in the f32s' shortest decimals (0.29132345, not
/// the widened 0.2913234531879425).
fn short_decimals(pairs: &[(f32, f32)]) -> Vec<[f64; 2]> {
    let short = |x: f32| x.to_string().parse::<f64>().unwrap_or(f64::NAN);
    pairs.iter().map(|&(m, s)| [short(m), short(s)]).collect()
}

/// What a run's model reads (input shape, normalisation, classes), worked out from its
/// `config.toml` and data as training did: for checkpoints written before they were
/// recorded.
fn described_by_run_data(c: &RunConfig, dir: &std::path::Path) -> Result<checkpoint::Meta, cuttle::Error> {
    let (_, data) = load_data(c, run_vocab(dir)?)?;
    let graph = match &data {
        Loaded::Images(s) => {
            let t = &s.train;
            model_by_name(&c.model, [t.channels, t.height, t.width], t.classes)
        }
        Loaded::Text(t) => models::language_model(&c.model, c.context, t.vocab.len()),
    }
    .map_err(cuttle::Error::Config)?;
    let (normalize, class_names) = match &data {
        Loaded::Images(s) => (s.train.channel_mean_std(), s.train.class_names.clone()),
        Loaded::Text(_) => (vec![], vec![]),
    };
    Ok(checkpoint::Meta {
        model: c.model.clone(),
        input_shape: graph.shape(cuttle::nn::Graph::INPUT).0.clone(),
        normalize,
        class_names,
        classes: graph.classes,
        ..Default::default()
    })
}

/// `cuttle export --to` may not name a file the run itself keeps (its checkpoints,
/// config, metrics, report): exporting over `checkpoint.safetensors` would lose the run.
/// Its `model.safetensors` is an export already, so writing it again is allowed.
fn refuse_run_file(dir: &std::path::Path, to: &std::path::Path) -> Result<(), cuttle::Error> {
    if to.is_dir() {
        return Err(cuttle::Error::Config(format!(
            "export --to {}: a directory; name the file to write",
            to.display()
        )));
    }
    let canonical = |p: &std::path::Path| std::fs::canonicalize(p).ok();
    let (Some(run), Some(name)) = (canonical(dir), to.file_name()) else { return Ok(()) };
    let parent = to.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    if canonical(parent).as_deref() == Some(run.as_path()) && RunDir::is_run_file(name) {
        return Err(cuttle::Error::Config(format!(
            "export --to {}: that is one of the run's own files; write the export elsewhere (e.g. {})",
            to.display(),
            dir.join("model.safetensors").display()
        )));
    }
    Ok(())
}

/// `cuttle export`: the model alone, and its description printed (what a PyTorch user
/// needs besides the weights).
fn export(dir: &std::path::Path, to: &std::path::Path) -> Result<(), cuttle::Error> {
    refuse_run_file(dir, to)?;
    let (mut ck, path) = run_checkpoint(dir, None)?;
    if ck.meta.lacks_input() {
        let described = cli::config::from_run_dir(dir).and_then(|c| described_by_run_data(&c.resolved(), dir));
        match described {
            Ok(d) if d.model == ck.meta.model => {
                eprintln!(
                    "note: {} is from an older cuttle without the input description; recomputed it from the run's config and data",
                    path.display()
                );
                ck.meta = checkpoint::Meta { run: ck.meta.run.take(), ..d };
            }
            Ok(d) => eprintln!(
                "note: the run's config names model {}, its checkpoint {}: no input description",
                d.model, ck.meta.model
            ),
            Err(e) => {
                eprintln!("note: {} has no input description and the run's data cannot give it: {e}", path.display())
            }
        }
    }
    let model = ck.model_only();
    model.write_atomic(to)?;
    eprintln!("wrote {} tensors to {}", model.tensors.len(), to.display());
    for line in model.meta.describe() {
        println!("{line}");
    }
    Ok(())
}

/// `cuttle sample`: the run's network at batch 1, fed its own output.
fn sample(adapter: &Option<String>, a: cli::sample::SampleArgs) -> Result<(), cuttle::Error> {
    let (gpu, session, data) = load_run(adapter, &a.run, None)?;
    let Loaded::Text(text) = data else {
        return Err(cuttle::Error::Config(format!("{} is not a language model run", a.run.display())));
    };
    let prompt = text
        .encode(&a.prompt)
        .map_err(|c| cuttle::Error::Config(format!("--prompt: character {c:?} is not in the run's vocabulary")))?;
    let mut sampler = cuttle::sample::Sampler::new(&gpu, &session.trainer.net.graph)?;
    sampler.load_weights(&gpu, &session.trainer.net);
    let ids = pollster::block_on(sampler.generate(&gpu, &prompt, a.tokens, a.temperature, a.seed))?;
    println!("{}{}", a.prompt, text.decode(&ids));
    Ok(())
}

fn info(model: Option<String>, classes: Option<usize>) -> Result<(), cuttle::Error> {
    if let Some(m) = model {
        let (g, per) = if is_language_model(&m) {
            let vocab = classes.unwrap_or(65);
            let g = models::language_model(&m, None, vocab).map_err(cuttle::Error::Config)?;
            let t = g.shape(cuttle::nn::Graph::INPUT).0[0];
            (g, format!("forward of a {t}-token window, vocabulary {vocab}"))
        } else {
            let input = cuttle::nn::models::default_input(&m);
            let g = model_by_name(&m, input, classes.unwrap_or(10)).map_err(cuttle::Error::Config)?;
            let [c, h, w] = input;
            (g, format!("{h}x{w}x{c} image forward"))
        };
        println!("{m}: {} parameters, {:.4} GMAC per {per}", g.param_count(), g.macs() as f64 / 1e9);
        for p in &g.params {
            println!("  {:<40} {:?}", p.name, p.shape);
        }
        return Ok(());
    }
    let adapters = pollster::block_on(list_adapters());
    if adapters.is_empty() {
        return Err(cuttle::gpu::GpuError::NoAdapter(String::new()).into());
    }
    for a in adapters {
        println!("{a}");
        println!("  features: {}", a.features);
        let tiles = cuttle::ops::tune::TileCache::open(&a);
        match tiles.path() {
            Some(p) => println!("  GEMM tiles measured: {} shapes ({})", tiles.len(), p.display()),
            None => println!("  GEMM tiles: no cache folder (set CUTTLE_CACHE_DIR or HOME)"),
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let command = cli.command.unwrap_or_else(|| {
        eprintln!(
            "main job: Cuttlefish training on the built-in Fashion-MNIST subset (`cuttle train --help` for more)"
        );
        Command::Train(Box::new(TrainArgs::main_job()))
    });
    let r = match command {
        Command::Train(a) => match matches.subcommand_matches("train") {
            Some(m) => (*a).with_config_file(m).and_then(|a| train(&cli.adapter, a)),
            None => train(&cli.adapter, *a),
        },
        Command::Info { model, classes } => info(model, classes),
        Command::Bench(b) => bench::run(&cli.adapter, b),
        Command::Eval { run, data } => eval(&cli.adapter, &run, data),
        Command::Export { run, to } => export(&run, &to),
        Command::Sample(a) => sample(&cli.adapter, a),
        Command::Serve(a) => cli::serve::run(a),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(cuttle::Error::Interrupted) => ExitCode::from(130),
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
