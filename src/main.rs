//! The `cuttle` command line: train, info, bench, eval, export, sample, serve.

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use cli::config::TrainArgs;
use cli::inspect::{eval, export};
use cli::sample::sample;
use cli::train::train;
use cuttle::gpu::{list_adapters, Gpu, GpuOptions};
use cuttle::nn::models::{self, is_language_model, model_by_name};
use std::process::ExitCode;

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
        /// Also write every test image's label, prediction and logits to this CSV file
        /// (image models), to compare with another framework image by image.
        #[arg(long, value_name = "FILE")]
        predictions: Option<std::path::PathBuf>,
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
pub fn report_tuning(gpu: &Gpu, since: std::time::Instant) {
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
pub fn untuned_gpu(adapter: &Option<String>) -> Result<Gpu, cuttle::Error> {
    let mut opts = GpuOptions::from_env();
    if adapter.is_some() {
        opts.name = adapter.clone();
    }
    Ok(pollster::block_on(Gpu::new(&opts))?)
}

/// The device the command line runs on: `--adapter` or `CUTTLE_ADAPTER`, with GEMM tiles
/// tuned by measurement unless `CUTTLE_TUNE=0`.
pub fn gpu(adapter: &Option<String>) -> Result<Gpu, cuttle::Error> {
    let gpu = untuned_gpu(adapter)?;
    if cuttle::ops::tune::wanted_by_cli() {
        let tiles = cuttle::ops::tune::TileCache::open(gpu.adapter()).with_progress(|done, secs| match done {
            0 => eprintln!(
                "tiles: timing GEMM tiles for this model's shapes on this adapter (once; later runs read them back; CUTTLE_TUNE=0 skips)..."
            ),
            _ => eprintln!("tiles: {done} GEMM shapes timed so far, {secs:.0} s"),
        });
        cuttle::ops::tune::attach(&gpu, tiles);
    }
    Ok(gpu)
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

/// Mesa's implicit Vulkan layer `VK_LAYER_MESA_device_select` connects to a Wayland
/// display to find the default GPU; with no `XDG_RUNTIME_DIR` (a headless machine, CI, a
/// container) libwayland prints "error: XDG_RUNTIME_DIR is invalid or not set in the
/// environment." twice on every command that opens the GPU, though nothing failed. cuttle
/// needs no display and picks its adapter itself (`--adapter`), so there the layer is
/// turned off with the switch its manifest declares, `NODEVICE_SELECT=1`, unless the
/// user set that or chose a device through the layer (`MESA_VK_DEVICE_SELECT`).
fn quiet_headless_vulkan() {
    let unset = |k: &str| std::env::var_os(k).is_none();
    if unset("XDG_RUNTIME_DIR") && unset("NODEVICE_SELECT") && unset("MESA_VK_DEVICE_SELECT") {
        // At the start of main, before any thread exists that could read the environment.
        std::env::set_var("NODEVICE_SELECT", "1");
    }
}

fn main() -> ExitCode {
    quiet_headless_vulkan();
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
        Command::Eval { run, data, predictions } => eval(&cli.adapter, &run, data, predictions.as_deref()),
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
