//! The `cuttle` command line: train, info, bench.

use clap::{Args, Parser, Subcommand};
use cuttle::data::{self, DataSpec};
use cuttle::gpu::{list_adapters, Gpu, GpuOptions};
use cuttle::nn::models::{model_by_name, MODELS};
use cuttle::ops::sgd::SgdConfig;
use cuttle::train::{AugmentKind, Schedule, TrainConfig, Trainer};
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
    #[command(subcommand)]
    command: Command,
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
    /// Benchmarks printing JSON lines: `matmul` (GFLOP/s) or `train` (images/s).
    Bench(bench::BenchArgs),
}

#[derive(Args)]
struct TrainArgs {
    /// Model: resnet18, resnet8, vgg19 or cnn.
    #[arg(long, default_value = "resnet8")]
    model: String,
    /// Data: cifar10:DIR, cifar100:DIR, folder:DIR (train/ and test/ of class folders),
    /// mnist:DIR or fashion-mnist:DIR.
    #[arg(long)]
    data: String,
    #[arg(long, default_value_t = 10)]
    epochs: usize,
    #[arg(long, default_value_t = 128)]
    batch: usize,
    /// Peak learning rate.
    #[arg(long, default_value_t = 0.1)]
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
    /// One JSON object per epoch on stdout instead of text.
    #[arg(long)]
    json: bool,
}

fn gpu(adapter: &Option<String>) -> Result<Gpu, cuttle::Error> {
    let mut opts = GpuOptions::from_env();
    if adapter.is_some() {
        opts.name = adapter.clone();
    }
    Ok(pollster::block_on(Gpu::new(&opts))?)
}

fn train(cli_adapter: &Option<String>, a: TrainArgs) -> Result<(), cuttle::Error> {
    let spec: DataSpec = a.data.parse().map_err(cuttle::Error::Config)?;
    let mut splits = data::load(&spec)?;
    if let Some(n) = a.train_subset {
        splits.train = splits.train.subset(n);
    }
    if let Some(n) = a.test_subset {
        splits.test = splits.test.subset(n);
    }
    let cfg = TrainConfig {
        model: a.model,
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
    let gpu = gpu(cli_adapter)?;
    eprintln!("adapter: {}", gpu.adapter);
    let mut trainer = Trainer::new(&gpu, &splits, cfg)?;
    eprintln!(
        "model {} ({} parameters), {} train / {} test images, {} steps per epoch, {} dispatches per step",
        trainer.cfg.model,
        trainer.net.graph.param_count(),
        splits.train.n,
        splits.test.n,
        trainer.steps_per_epoch,
        trainer.dispatches_per_step()
    );
    for epoch in 0..trainer.cfg.epochs {
        let json = a.json;
        let mut progress = |s: usize, n: usize, t: cuttle::train::trainer::Totals| {
            if !json {
                eprint!(
                    "\repoch {:>3} step {s:>5}/{n}  loss {:.4}  acc {:.2}%   ",
                    epoch + 1,
                    t.mean_loss(),
                    100.0 * t.accuracy()
                );
            }
        };
        let r = pollster::block_on(trainer.run_epoch(&gpu, epoch, &mut progress))?;
        if a.json {
            println!("{}", serde_json::to_string(&r).expect("report serialises"));
        } else {
            eprintln!(
                "\repoch {:>3}  train loss {:.4} acc {:.2}%  test loss {:.4} acc {:.2}%  {:.0} img/s  {:.1}s",
                r.epoch,
                r.train_loss,
                100.0 * r.train_acc,
                r.test_loss,
                100.0 * r.test_acc,
                r.images_per_s,
                r.seconds
            );
        }
    }
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
    let r = match cli.command {
        Command::Train(a) => train(&cli.adapter, a),
        Command::Info { model, classes } => info(&cli.adapter, model, classes),
        Command::Bench(b) => bench::run(&cli.adapter, b),
    };
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
