//! `cuttle train`: a run from its checked options to its report, through its run
//! directory (created, resumed or refused), its epochs, its checkpoints and its switch.

use super::config::TrainArgs;
use super::load::{plan, run_checkpoint, run_vocab, Loaded, Plan, Vocab};
use super::progress::{print_change, print_final, print_ranks, print_switch};
use super::rundir::RunDir;
use crate::{cli, gpu, report_tuning};
use cuttle::cuttlefish::SwitchReport;
use cuttle::data::DataSpec;
use cuttle::gpu::Gpu;
use cuttle::session::{EpochOutcome, Session};
use cuttle::train::checkpoint::Checkpoint;
use cuttle::train::train_config::count;
use cuttle::train::RunConfig;
use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by Ctrl-C: the training loop stops after the current step and checkpoints.
pub static INTERRUPTED: AtomicBool = AtomicBool::new(false);
pub fn train(cli_adapter: &Option<String>, a: TrainArgs) -> Result<(), cuttle::Error> {
    let (json, resuming) = (a.json, a.resume.is_some());
    // The model's defaults filled in once, so config.toml and the header show what trains.
    let c = match &a.resume {
        Some(dir) => cli::config::from_run_dir(dir)?,
        None => a.run,
    }
    .resolved();
    // A resumed run's checkpoint first: its vocabulary gives the text its ids.
    let checkpoint = match resuming {
        true => Some(run_checkpoint(&cli::config::run_dir(&c), Some(&c.model))?),
        false => None,
    };
    let vocab = match &checkpoint {
        Some((ck, _)) => run_vocab(ck, &cli::config::run_dir(&c))?.map(|chars| Vocab { chars, exact: true }),
        None => None,
    };
    let Plan { spec, data, cfg, cf } = plan(&c, vocab)?;
    let data_crc32 = data.crc32();
    // Only once every setting is known good: --force deletes the earlier run's files.
    let (out, _lock) = match resuming {
        true => {
            let out = cli::config::run_dir(&c);
            let lock = RunDir::lock(&out)?;
            (out, lock)
        }
        false => fresh_run_dir(&c, a.force)?,
    };
    if let Some((ck, path)) = &checkpoint {
        let run = ck.run(path)?;
        if let Some(then) = run.data_crc32.filter(|then| *then != data_crc32) {
            return Err(cuttle::Error::Config(format!(
                "{spec} is not the data {} was trained on (CRC-32 {then:08x} in its checkpoint, {data_crc32:08x} now): resuming on other data would not continue the same run; restore the data, or start a new run",
                out.display()
            )));
        }
        if run.epochs_done >= cfg.epochs {
            let missing: Vec<&str> = FINAL_FILES.into_iter().filter(|f| !out.join(f).exists()).collect();
            let unit = if cfg.text.is_some() { "evaluation intervals" } else { "epochs" };
            if missing.is_empty() {
                // Nothing to do: the run's files (its report above all) stay as they are.
                eprintln!(
                    "{} has finished: {} of {} {unit} trained; nothing to do (its results are in {})",
                    out.display(),
                    run.epochs_done,
                    cfg.epochs,
                    out.join("report.json").display()
                );
                return Ok(());
            }
            // Stopped after its last checkpoint and before its final files: the loop
            // below trains nothing and writes them.
            eprintln!(
                "{} trained all {} {unit} but stopped before writing {}; writing it from the last checkpoint",
                out.display(),
                cfg.epochs,
                missing.join(" and ")
            );
        }
        let switched = run.cuttlefish.as_ref().is_some_and(|c| c.switched.is_some());
        let dropped = RunDir::repair(&out, run.epochs_done, switched)?;
        if dropped > 0 {
            eprintln!("{}: dropped {dropped} metrics lines written after its last checkpoint, or torn by the kill (the epochs they describe train again)", out.display());
        }
    }
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
    // The checkpoint of where the session stands (the final model is written from it).
    let mut last = checkpoint.map(|(ck, _)| ck);
    while !session.done() {
        let Some(o) = epoch(&gpu, &mut session, json)? else {
            // A switch that Ctrl-C cut short is in the checkpoint: record it too.
            if let Some(sw) = session.pending_switch.take() {
                record_switch(&mut run, &sw, session.trainer.cfg.text.map(|t| t.eval_every), json)?;
            }
            return interrupted(&gpu, &session, &out, data_crc32);
        };
        record_epoch(&mut run, &session, &o, json)?;
        let ck = with_data_crc(pollster::block_on(session.checkpoint(&gpu))?, data_crc32);
        ck.save(&out)?;
        run.plots()?;
        last = Some(ck);
    }
    // The final model alone, as `cuttle export` writes it, then the report: a run is
    // finished once both exist (each written whole or not at all).
    let ck = last.expect("a finished run has a checkpoint: the one resumed from, or its last epoch's");
    ck.model_only().write_atomic(&out.join("model.safetensors"))?;
    finish(&run, &session, &spec, &gpu, json)
}

/// The files a finished run has besides its checkpoints: a run missing either is resumed
/// to write them.
const FINAL_FILES: [&str; 2] = ["model.safetensors", "report.json"];

/// The directory of a new run. One that already holds a run is never reused silently:
/// a default name (no --out, no --name) moves on to `NAME-2`, `NAME-3`, ...; a name the
/// user gave needs `--force`, which deletes the old run's files first. Returns it with its
/// lock held (`RunDir::lock`).
pub fn fresh_run_dir(c: &RunConfig, force: bool) -> Result<(std::path::PathBuf, std::fs::File), cuttle::Error> {
    let dir = RunDir::resolve(&cli::config::run_dir(c));
    if let Some(name) = c.name.as_deref().filter(|_| c.out.is_none()) {
        // `runs/` itself or a folder above it would mix the run's files with other runs'.
        let whole = |p: &std::path::Path| std::path::absolute(p).map(|a| RunDir::resolve(&a)).ok();
        let both = whole(std::path::Path::new("runs")).zip(whole(&dir));
        if both.is_some_and(|(runs, d)| runs.starts_with(d)) {
            return Err(cuttle::Error::Config(format!(
                "--name {name:?} names {}, which is runs/ or a folder above it, not a folder of its own under runs/; give the run a name (or a directory with --out)",
                dir.display()
            )));
        }
    }
    if !RunDir::holds_run(&dir) {
        let lock = RunDir::lock(&dir)?;
        return Ok((dir, lock));
    }
    if force {
        // Not while another process trains there.
        let lock = RunDir::lock(&dir)?;
        RunDir::clear(&dir)?;
        eprintln!("--force: deleted the earlier run's files in {}", dir.display());
        return Ok((dir, lock));
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
    let lock = RunDir::lock(&free)?;
    Ok((free, lock))
}

/// What the run trains, and (with Cuttlefish) when the ranks count as settled.
pub fn describe(session: &Session, spec: &DataSpec, data: &Loaded) {
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
        "model {} ({} parameters), data {spec} ({sizes}), {} per {}, {} dispatches per step",
        trainer.cfg.model,
        session.params_full,
        count(trainer.steps_per_epoch, "step"),
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
            "cuttlefish: tracking {}; stable ranks checked {} per {unit} (every {:.1} steps, {} checks in the run)",
            count(cf.tracker.layers.len(), "layer"),
            count(c.per_epoch, "time"),
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
pub fn epoch(gpu: &Gpu, session: &mut Session, json: bool) -> Result<Option<EpochOutcome>, cuttle::Error> {
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

/// A rate with three significant figures at most but never fewer than one: a one-step
/// epoch of one image in 2 s is "0.5 img/s", not "0 img/s".
fn rate(x: f32) -> String {
    match x {
        x if x >= 100.0 => format!("{x:.0}"),
        x if x >= 10.0 => format!("{x:.1}"),
        x => format!("{x:.2}"),
    }
}

/// Prints the switch to low rank and appends it to the run's metrics.
pub fn record_switch(
    run: &mut RunDir,
    sw: &SwitchReport,
    eval_every: Option<usize>,
    json: bool,
) -> Result<(), cuttle::Error> {
    let line = serde_json::json!({"event": "switch", "epoch": sw.epoch + 1, "report": sw});
    run.metric(&line)?;
    if json {
        println!("{line}");
    } else {
        print_switch(sw, eval_every);
    }
    Ok(())
}

/// Prints an epoch's switch, figures and stable ranks, and appends them to the run's files.
pub fn record_epoch(run: &mut RunDir, session: &Session, o: &EpochOutcome, json: bool) -> Result<(), cuttle::Error> {
    if let Some(sw) = &o.switch {
        record_switch(run, sw, session.trainer.cfg.text.map(|t| t.eval_every), json)?;
    }
    let r = &o.report;
    let mut line = serde_json::to_value(r).expect("report serialises");
    if let (Some(tps), Some(t)) = (r.tokens_per_s, session.trainer.cfg.text) {
        line["step"] = (r.epoch * t.eval_every).into();
        if !json {
            eprintln!(
                "step {:>5}  train loss {:.4}  val loss {:.4} nats/char  {} tokens/s  {:.1}s",
                r.epoch * t.eval_every,
                r.train_loss,
                r.test_loss,
                rate(tps),
                r.seconds
            );
        }
    } else if !json {
        eprintln!(
            "epoch {:>3}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  {} img/s  {:.1}s",
            r.epoch,
            r.train_loss,
            100.0 * r.train_acc,
            r.test_loss,
            100.0 * r.test_acc,
            rate(r.images_per_s),
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
            print_change(cf, session.trainer.cfg.text.is_some());
        }
    }
    run.metric(&line)?;
    if json {
        println!("{line}");
    }
    Ok(())
}

/// A run checkpoint with the CRC-32 of the data it trains on (`Loaded::crc32`).
fn with_data_crc(mut ck: Checkpoint, data_crc32: u32) -> Checkpoint {
    if let Some(run) = ck.meta.run.as_mut() {
        run.data_crc32 = Some(data_crc32);
    }
    ck
}

/// Ctrl-C: checkpoints mid-epoch and says how to continue.
pub fn interrupted(gpu: &Gpu, session: &Session, out: &std::path::Path, data_crc32: u32) -> Result<(), cuttle::Error> {
    with_data_crc(pollster::block_on(session.checkpoint(gpu))?, data_crc32).save(out)?;
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
pub fn finish(run: &RunDir, session: &Session, spec: &DataSpec, gpu: &Gpu, json: bool) -> Result<(), cuttle::Error> {
    let report = session.final_report();
    run.report(&report)?;
    let mut value = serde_json::to_value(&report).expect("report serialises");
    value["event"] = "final".into();
    value["data"] = spec.to_string().into();
    value["adapter"] = gpu.adapter().name.clone().into();
    if json {
        println!("{value}");
    } else {
        print_final(&report, session.trainer.cfg.text.map(|t| t.eval_every));
    }
    eprintln!("run directory: {}", run.dir.display());
    Ok(())
}
