//! The `cuttle` command line: train, info, bench.

use clap::{Args, Parser, Subcommand};
use cuttle::cuttlefish::{Cuttlefish, CuttlefishConfig};
use cuttle::data::{self, DataSpec};
use cuttle::gpu::{list_adapters, Gpu, GpuOptions};
use cuttle::nn::models::{model_by_name, MODELS};
use cuttle::ops::sgd::SgdConfig;
use cuttle::train::{AugmentKind, Schedule, TrainConfig, Trainer};
use std::io::IsTerminal;
use std::process::ExitCode;

#[path = "bench.rs"]
mod bench;

#[derive(Parser)]
#[command(name = "cuttle", version, about = "A portable WebGPU training engine (Cuttlefish low-rank training on wgpu)")]
struct Cli {
    /// Pick the adapter whose name contains this (case-insensitive); also CUTTLE_ADAPTER.
    /// WGPU_BACKEND=vulkan|metal|dx12|gl restricts the backends searched.
    #[arg(long, global = true)]
    adapter: Option<String>,
    /// Without a subcommand: the main job, Cuttlefish training of the small CNN on the
    /// Fashion-MNIST subset that ships inside cuttle (`train --cuttlefish` with defaults).
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Train a model and evaluate it on the test split every epoch.
    Train(TrainArgs),
    /// List every adapter (backend, type, limits, features), or describe a model.
    Info {
        /// Print the parameters and multiply-adds of this model instead.
        #[arg(long)]
        model: Option<String>,
        /// Classes of the model's head (with --model).
        #[arg(long, default_value_t = 10)]
        classes: usize,
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
    /// Write a run's model (weights and BatchNorm statistics, PyTorch names) to a
    /// safetensors file that `safetensors.torch.load_file` reads.
    Export {
        run: std::path::PathBuf,
        #[arg(long)]
        to: std::path::PathBuf,
    },
}

#[derive(Args)]
struct TrainArgs {
    /// Model: resnet18, resnet8, vgg19 or cnn.
    #[arg(long, default_value = "cnn")]
    model: String,
    /// Data: cifar10:DIR, cifar100:DIR, folder:DIR (train/ and test/ of class folders),
    /// mnist:DIR, fashion-mnist:DIR, or builtin (the Fashion-MNIST subset inside cuttle).
    #[arg(long, default_value = "builtin")]
    data: String,
    #[arg(long, default_value_t = 6)]
    epochs: usize,
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.05)]
    lr: f32,
    /// constant, multistep (x0.1 at 50% and 75%) or onecycle.
    #[arg(long, default_value = "onecycle")]
    schedule: Schedule,
    #[arg(long, default_value_t = 0.9)]
    momentum: f32,
    #[arg(long, default_value_t = 5e-4)]
    weight_decay: f32,
    #[arg(long)]
    nesterov: bool,
    /// auto (crop+flip for RGB), none or crop-flip.
    #[arg(long, default_value = "auto")]
    augment: AugmentKind,
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Use only this many training images (class-balanced), for quick runs.
    #[arg(long)]
    train_subset: Option<usize>,
    /// Use only this many test images (class-balanced).
    #[arg(long)]
    test_subset: Option<usize>,
    /// One JSON object per epoch (and a final report) on stdout instead of text.
    #[arg(long)]
    json: bool,
    /// Run directory for metrics.jsonl, ranks.csv and report.json [default: runs/MODEL-seedSEED].
    #[arg(long)]
    out: Option<std::path::PathBuf>,
    /// Cuttlefish: train full-rank while watching stable ranks, then factorize.
    #[arg(long)]
    cuttlefish: bool,
    /// Which layers to factorize: auto (time each on this adapter, keep what pays),
    /// reference (the paper's fixed choice) or a comma-separated list of conv names.
    #[arg(long, default_value = "auto")]
    factorize: cuttle::cuttlefish::FactorizeMode,
    /// Frobenius decay on factor pairs (0 disables; exclusive with --extra-bn).
    #[arg(long, default_value_t = 1e-4)]
    frobenius_decay: f32,
    /// A BatchNorm between the two factors instead of Frobenius decay.
    #[arg(long)]
    extra_bn: bool,
    /// Lower bound on each rank as a fraction of full rank.
    #[arg(long, default_value_t = 0.0)]
    rank_floor: f64,
    /// Epochs of learning-rate re-warm after the switch [default: 5 with multistep, else 0].
    #[arg(long)]
    rewarm_epochs: Option<usize>,
    /// Continue the run in this directory from its last checkpoint, with its own settings
    /// (other options are ignored). The result is bit-identical to an uninterrupted run.
    #[arg(long)]
    resume: Option<std::path::PathBuf>,
}

fn gpu(adapter: &Option<String>) -> Result<Gpu, cuttle::Error> {
    let mut opts = GpuOptions::from_env();
    if adapter.is_some() {
        opts.name = adapter.clone();
    }
    Ok(pollster::block_on(Gpu::new(&opts))?)
}

/// The data set the arguments name, with the requested class-balanced subsets.
fn load_data(a: &TrainArgs) -> Result<(DataSpec, data::Splits), cuttle::Error> {
    let spec: DataSpec = a.data.parse().map_err(cuttle::Error::Config)?;
    let mut splits = data::load(&spec)?;
    if let Some(n) = a.train_subset {
        splits.train = splits.train.subset(n);
    }
    if let Some(n) = a.test_subset {
        splits.test = splits.test.subset(n);
    }
    Ok((spec, splits))
}

/// The Cuttlefish settings the arguments ask for (defaults scaled to the schedule).
fn cuttlefish_config(a: &TrainArgs) -> CuttlefishConfig {
    let mut c = CuttlefishConfig::for_schedule(a.epochs, a.schedule);
    c.factorize = a.factorize.clone();
    c.frobenius_decay = (a.frobenius_decay > 0.0).then_some(a.frobenius_decay);
    c.extra_bn = a.extra_bn;
    c.rank_floor = a.rank_floor;
    if let Some(r) = a.rewarm_epochs {
        c.rewarm_epochs = r;
    }
    c
}

/// The `train` arguments of a run directory, saved as `args.json` when it started.
fn resumed_args(dir: &std::path::Path) -> Result<TrainArgs, cuttle::Error> {
    let path = dir.join("args.json");
    let bad = |what: String| cuttle::Error::Config(format!("cannot resume from {}: {what}", path.display()));
    let text = std::fs::read_to_string(&path).map_err(|e| bad(e.to_string()))?;
    let args: Vec<String> = serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?;
    let cli = Cli::try_parse_from(std::iter::once("cuttle".to_string()).chain(args)).map_err(|e| bad(e.to_string()))?;
    match cli.command {
        Some(Command::Train(mut a)) => {
            a.resume = Some(dir.to_path_buf());
            a.out = Some(dir.to_path_buf());
            Ok(a)
        }
        _ => Err(bad("not the arguments of a training run".into())),
    }
}

fn train(cli_adapter: &Option<String>, a: TrainArgs) -> Result<(), cuttle::Error> {
    let a = match &a.resume {
        Some(dir) => resumed_args(dir)?,
        None => a,
    };
    let (spec, splits) = load_data(&a)?;
    let cfg = TrainConfig {
        model: a.model.clone(),
        epochs: a.epochs,
        batch: a.batch,
        lr: a.lr,
        schedule: a.schedule,
        sgd: SgdConfig { momentum: a.momentum, weight_decay: a.weight_decay, nesterov: a.nesterov },
        seed: a.seed,
        augment: a.augment,
        report_every: 20,
    };
    cfg.validate(splits.train.n)?;
    let cf_cfg = cuttlefish_config(&a);
    // Model and layer names are checked before any GPU work, so a typo fails at once on
    // any machine.
    let t = &splits.train;
    let graph = model_by_name(&a.model, [t.channels, t.height, t.width], t.classes).map_err(cuttle::Error::Config)?;
    if a.cuttlefish {
        cf_cfg.validate()?;
        cuttle::cuttlefish::run::check_layers(&graph, &cf_cfg.factorize)?;
    }
    let out = a.out.clone().unwrap_or_else(|| format!("runs/{}-seed{}", a.model, a.seed).into());
    let resume = a.resume.is_some();
    let checkpoint = if resume {
        let path = out.join(cuttle::train::checkpoint::FILE);
        Some((cuttle::train::checkpoint::Checkpoint::load(&path)?, path))
    } else {
        None
    };
    let mut run = RunDir::create(&out, resume)?;
    if !resume {
        // The arguments as given (the main job's are those of `train --cuttlefish`).
        let mut argv: Vec<String> = std::env::args().skip(1).collect();
        if argv.is_empty() {
            argv = vec!["train".into(), "--cuttlefish".into()];
        }
        if let Some(i) = argv.iter().position(|x| x == "train") {
            argv.drain(..i);
        }
        run.write("args.json", &serde_json::to_string(&argv).expect("serialises"))?;
    }

    let gpu = gpu(cli_adapter)?;
    eprintln!("adapter: {}", gpu.adapter);
    let mut trainer = Trainer::new(&gpu, &splits, cfg)?;
    let params_full = trainer.net.graph.param_count();
    eprintln!(
        "model {} ({} parameters), data {} ({} train / {} test images), {} steps per epoch, {} dispatches per step",
        trainer.cfg.model,
        params_full,
        spec,
        splits.train.n,
        splits.test.n,
        trainer.steps_per_epoch,
        trainer.dispatches_per_step()
    );
    let mut first_epoch = 0;
    let mut cf = if let (true, Some((ck, path))) = (a.cuttlefish, &checkpoint) {
        let cf = pollster::block_on(Cuttlefish::resume(&gpu, &mut trainer, cf_cfg, ck, path))?;
        Some(cf)
    } else if a.cuttlefish {
        let cf = pollster::block_on(Cuttlefish::new(&gpu, &trainer, cf_cfg))?;
        let d = cf.cfg.detector;
        eprintln!(
            "cuttlefish: tracking {} layers; stable after >= {} epochs when the mean |d srank/dt| over {} epochs <= {:.3} ({:.3} with two left, {:.3} with one)",
            cf.tracker.names.len(),
            d.p,
            d.m,
            d.thr,
            d.thr_two,
            d.thr_one
        );
        run.ranks_header(&cf.tracker.names)?;
        let s0: Vec<f64> = cf.tracker.history.iter().map(|h| h[0]).collect();
        run.ranks_row(0, &s0)?;
        if !a.json {
            print_ranks(&cf.tracker.names, &s0, &cf.tracker.stable);
        }
        Some(cf)
    } else {
        None
    };

    if let Some((ck, path)) = &checkpoint {
        first_epoch = trainer.restore(&gpu, ck, path)?;
        eprintln!("resuming {} after epoch {first_epoch}", out.display());
    }

    let (mut full_secs, mut low_secs) = (0.0f64, 0.0f64);
    let mut last_acc = 0.0;
    for epoch in first_epoch..trainer.cfg.epochs {
        if let Some(cf) = cf.as_mut().filter(|c| c.ready()) {
            let r = pollster::block_on(cf.switch(&gpu, &mut trainer, epoch))?;
            let line = serde_json::json!({"event": "switch", "epoch": epoch + 1, "report": r});
            run.metric(&line)?;
            if a.json {
                println!("{line}");
            } else {
                print_switch(r);
            }
        }
        // A progress bar on a terminal; nothing mid-epoch when logging to a file or with --json.
        let bar = (!a.json && std::io::stderr().is_terminal()).then(|| {
            let b = indicatif::ProgressBar::new(trainer.steps_per_epoch as u64);
            b.set_style(
                indicatif::ProgressStyle::with_template("epoch {prefix:>3} [{bar:30}] {pos}/{len} {msg} ({eta})")
                    .expect("valid template")
                    .progress_chars("=> "),
            );
            b.set_prefix((epoch + 1).to_string());
            b
        });
        let mut progress = |s: usize, _n: usize, t: cuttle::train::trainer::Totals| {
            if let Some(b) = &bar {
                b.set_position(s as u64);
                b.set_message(format!("loss {:.4} acc {:.2}%", t.mean_loss(), 100.0 * t.accuracy()));
            }
        };
        let r = pollster::block_on(trainer.run_epoch(&gpu, epoch, &mut progress));
        if let Some(b) = &bar {
            b.finish_and_clear();
        }
        let r = r?;
        if cf.as_ref().is_some_and(|c| c.switched.is_some()) {
            low_secs += r.seconds as f64;
        } else {
            full_secs += r.seconds as f64;
        }
        last_acc = r.test_acc;
        let mut line = serde_json::to_value(&r).expect("report serialises");
        if !a.json {
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
        if let Some(cf) = cf.as_mut() {
            let s = pollster::block_on(cf.observe(&gpu, epoch + 1))?;
            if !s.is_empty() {
                run.ranks_row(epoch + 1, &s)?;
                let map: serde_json::Map<String, serde_json::Value> =
                    cf.tracker.names.iter().zip(&s).map(|(n, v)| (n.clone(), serde_json::json!(v))).collect();
                line["stable_ranks"] = serde_json::Value::Object(map);
                if !a.json {
                    print_ranks(&cf.tracker.names, &s, &cf.tracker.stable);
                }
            }
        }
        run.metric(&line)?;
        if a.json {
            println!("{line}");
        }
        let mut ck = pollster::block_on(trainer.checkpoint(&gpu, epoch + 1))?;
        if let Some(cf) = &cf {
            pollster::block_on(cf.checkpoint_into(&gpu, &mut ck))?;
        }
        ck.save(&out)?;
    }

    let params_final = trainer.net.graph.param_count();
    let mut report = serde_json::json!({
        "event": "final",
        "model": a.model,
        "data": spec.to_string(),
        "epochs": trainer.cfg.epochs,
        "test_acc": last_acc,
        "params_full": params_full,
        "params_final": params_final,
        "macs_final": trainer.net.graph.macs(),
        "seconds_full_rank": full_secs,
        "seconds_low_rank": low_secs,
        "adapter": gpu.adapter.name,
    });
    if let Some(cf) = &cf {
        let sw = cf.switched.as_ref();
        report["switch_epoch"] = sw.map_or(serde_json::Value::Null, |s| serde_json::json!(s.epoch + 1));
        report["ranks"] = sw.map_or(serde_json::json!({}), |s| {
            serde_json::Value::Object(
                s.decisions
                    .iter()
                    .filter(|d| d.factorized)
                    .map(|d| (d.layer.clone(), serde_json::json!(d.rank)))
                    .collect(),
            )
        });
        report["macs_full"] =
            sw.map_or(serde_json::json!(trainer.net.graph.macs()), |s| serde_json::json!(s.macs_before));
        report["seconds_rank_estimation"] = serde_json::json!(cf.estimate_seconds);
        report["seconds_switch"] = sw.map_or(serde_json::json!(0.0), |s| serde_json::json!(s.seconds));
        report["converged"] = serde_json::json!(sw.is_some());
    }
    run.report(&report)?;
    if a.json {
        println!("{report}");
    } else {
        print_final(&report);
    }
    eprintln!("run directory: {}", out.display());
    Ok(())
}

/// A run's files: metrics.jsonl (one object per epoch and event), ranks.csv (stable rank
/// per tracked layer per epoch), report.json (the final summary).
struct RunDir {
    dir: std::path::PathBuf,
    metrics: std::fs::File,
    ranks: Option<std::fs::File>,
}

impl RunDir {
    /// Creates the directory, or with `append` continues its files (resume).
    fn create(dir: &std::path::Path, append: bool) -> Result<RunDir, cuttle::Error> {
        let err = |e: std::io::Error| cuttle::Error::Config(format!("run directory {}: {e}", dir.display()));
        std::fs::create_dir_all(dir).map_err(err)?;
        let metrics = std::fs::OpenOptions::new()
            .create(true)
            .append(append)
            .write(true)
            .truncate(!append)
            .open(dir.join("metrics.jsonl"))
            .map_err(err)?;
        let ranks =
            if append { std::fs::OpenOptions::new().append(true).open(dir.join("ranks.csv")).ok() } else { None };
        Ok(RunDir { dir: dir.to_path_buf(), metrics, ranks })
    }
    fn write(&self, name: &str, text: &str) -> Result<(), cuttle::Error> {
        std::fs::write(self.dir.join(name), text).map_err(|e| self.io(e))
    }
    fn io(&self, e: std::io::Error) -> cuttle::Error {
        cuttle::Error::Config(format!("writing to {}: {e}", self.dir.display()))
    }
    fn metric(&mut self, v: &serde_json::Value) -> Result<(), cuttle::Error> {
        use std::io::Write;
        writeln!(self.metrics, "{v}").map_err(|e| self.io(e))
    }
    fn ranks_header(&mut self, names: &[String]) -> Result<(), cuttle::Error> {
        use std::io::Write;
        let mut f = std::fs::File::create(self.dir.join("ranks.csv")).map_err(|e| self.io(e))?;
        writeln!(f, "epoch,{}", names.join(",")).map_err(|e| self.io(e))?;
        self.ranks = Some(f);
        Ok(())
    }
    fn ranks_row(&mut self, epoch: usize, s: &[f64]) -> Result<(), cuttle::Error> {
        use std::io::Write;
        let row: Vec<String> = s.iter().map(|v| format!("{v:.4}")).collect();
        let r = self.ranks.as_mut().map(|f| writeln!(f, "{epoch},{}", row.join(",")));
        r.unwrap_or(Ok(())).map_err(|e| self.io(e))
    }
    fn report(&self, v: &serde_json::Value) -> Result<(), cuttle::Error> {
        let text = serde_json::to_string_pretty(v).expect("report serialises");
        std::fs::write(self.dir.join("report.json"), text).map_err(|e| self.io(e))
    }
}

fn print_ranks(names: &[String], s: &[f64], stable: &[bool]) {
    let cells: Vec<String> = names
        .iter()
        .zip(s)
        .zip(stable)
        .map(|((n, v), st)| {
            format!("{}{} {v:.1}", n.replace(".conv", ".c").replace("layer", "L"), if *st { "*" } else { "" })
        })
        .collect();
    for chunk in cells.chunks(6) {
        eprintln!("  srank  {}", chunk.join("  "));
    }
}

fn print_switch(r: &cuttle::cuttlefish::SwitchReport) {
    eprintln!("cuttlefish: switch to low rank before epoch {} ({:.2}s)", r.epoch + 1, r.seconds);
    for d in &r.decisions {
        let timing = match (d.full_ms, d.factorized_ms) {
            (Some(f), Some(l)) => format!("  full {f:.2} ms vs factorized {l:.2} ms"),
            _ => String::new(),
        };
        eprintln!(
            "  {:<22} rank {:>4} / {:<4} {}{timing}",
            d.layer,
            d.rank,
            d.full_rank,
            if d.factorized { "factorized" } else { "kept full-rank" }
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

fn print_final(r: &serde_json::Value) {
    eprintln!("final: test accuracy {:.2}%", 100.0 * r["test_acc"].as_f64().unwrap_or(0.0));
    eprintln!("  parameters {} -> {}", r["params_full"], r["params_final"]);
    if r.get("converged").is_some() {
        match r["switch_epoch"].as_u64() {
            Some(e) => eprintln!("  switched to low rank at epoch {e}; ranks {}", r["ranks"]),
            None => eprintln!("  stable ranks did not settle: training stayed full-rank"),
        }
        eprintln!(
            "  time: full-rank {:.1}s, low-rank {:.1}s, rank estimation {:.2}s, switch {:.2}s",
            r["seconds_full_rank"].as_f64().unwrap_or(0.0),
            r["seconds_low_rank"].as_f64().unwrap_or(0.0),
            r["seconds_rank_estimation"].as_f64().unwrap_or(0.0),
            r["seconds_switch"].as_f64().unwrap_or(0.0)
        );
    }
}

/// The trainer of a run directory with its last checkpoint loaded (the factorized net if
/// the run switched).
fn load_run(
    adapter: &Option<String>,
    dir: &std::path::Path,
    data: Option<String>,
) -> Result<(Gpu, Trainer, usize), cuttle::Error> {
    let mut a = resumed_args(dir)?;
    if let Some(d) = data {
        a.data = d;
    }
    let path = dir.join(cuttle::train::checkpoint::FILE);
    let ck = cuttle::train::checkpoint::Checkpoint::load(&path)?;
    let (_, splits) = load_data(&a)?;
    let batch = a.batch.min(splits.train.n);
    let cfg = TrainConfig { model: a.model.clone(), epochs: a.epochs, batch, seed: a.seed, ..Default::default() };
    let gpu = gpu(adapter)?;
    let mut trainer = Trainer::new(&gpu, &splits, cfg)?;
    if a.cuttlefish {
        pollster::block_on(Cuttlefish::resume(&gpu, &mut trainer, cuttlefish_config(&a), &ck, &path))?;
    }
    let epochs = trainer.restore(&gpu, &ck, &path)?;
    Ok((gpu, trainer, epochs))
}

fn eval(adapter: &Option<String>, dir: &std::path::Path, data: Option<String>) -> Result<(), cuttle::Error> {
    let (gpu, mut trainer, epochs) = load_run(adapter, dir, data)?;
    let t = pollster::block_on(trainer.evaluate(&gpu))?;
    println!(
        "{}",
        serde_json::json!({"run": dir.display().to_string(), "epochs_trained": epochs, "test_acc": t.accuracy(),
            "test_loss": t.mean_loss(), "images": t.0[2], "parameters": trainer.net.graph.param_count()})
    );
    Ok(())
}

fn export(dir: &std::path::Path, to: &std::path::Path) -> Result<(), cuttle::Error> {
    let ck = cuttle::train::checkpoint::Checkpoint::load(&dir.join(cuttle::train::checkpoint::FILE))?;
    let model = ck.model_only();
    model.write_atomic(to)?;
    eprintln!("wrote {} tensors to {}", model.tensors.len(), to.display());
    Ok(())
}

fn info(adapter: &Option<String>, model: Option<String>, classes: usize) -> Result<(), cuttle::Error> {
    if let Some(m) = model {
        let g = model_by_name(&m, [3, 32, 32], classes).map_err(cuttle::Error::Config)?;
        println!("{m}: {} parameters, {:.3} GMAC per 32x32x3 image forward", g.param_count(), g.macs() as f64 / 1e9);
        for p in &g.params {
            println!("  {:<32} {:?}", p.name, p.shape);
        }
        return Ok(());
    }
    let _ = adapter;
    let adapters = pollster::block_on(list_adapters());
    if adapters.is_empty() {
        return Err(cuttle::gpu::GpuError::NoAdapter(String::new()).into());
    }
    for a in adapters {
        println!("{a}");
        println!("  features: {:?}", a.features);
    }
    let _ = MODELS;
    Ok(())
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let command = cli.command.unwrap_or_else(|| {
        eprintln!(
            "main job: Cuttlefish training on the built-in Fashion-MNIST subset (`cuttle train --help` for more)"
        );
        match Cli::parse_from(["cuttle", "train", "--cuttlefish"]).command {
            Some(c) => c,
            None => unreachable!("`train` parses to a command"),
        }
    });
    let r = match command {
        Command::Train(a) => train(&cli.adapter, a),
        Command::Info { model, classes } => info(&cli.adapter, model, classes),
        Command::Bench(b) => bench::run(&cli.adapter, b),
        Command::Eval { run, data } => eval(&cli.adapter, &run, data),
        Command::Export { run, to } => export(&run, &to),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
