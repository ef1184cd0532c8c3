//! `cuttle bench`: benchmarks that print one JSON object per measurement on stdout.
//! - `matmul`: f32 GFLOP/s of the tiled GEMM on square and low-rank shapes, median of
//!   repeated runs after a warm-up, with sampled entries checked against an f64 CPU dot.
//! - `train`: images/s and step time of a model's whole training step (batch build,
//!   forward, loss, backward, the model's optimizer) on synthetic CIFAR-shaped data, and
//!   the bytes the memory plan allocates.
//!
//! Part of the binary, not the library: it only drives public APIs.

use crate::gpu;
use cuttle::cuttlefish::factorize::fixed_lowrank;
use cuttle::data::{Dataset, Splits};
use cuttle::gpu::{read_f32, Gpu, Tensor};
use cuttle::nn::graph::Graph;
use cuttle::nn::models::{default_input, is_language_model, model_by_name};
use cuttle::ops::gemm::{self, Layout};
use cuttle::rng::SplitMix64;
use cuttle::train::{AugmentKind, Schedule, TrainConfig, Trainer};
use std::time::Instant;

#[derive(clap::Args)]
pub struct BenchArgs {
    #[command(subcommand)]
    what: Bench,
}

#[derive(clap::Subcommand)]
enum Bench {
    /// GFLOP/s of C = A·B for each shape.
    Matmul {
        /// Shapes as MxKxN, comma-separated. Default: 1024, 2048, 4096 squares and the
        /// low-rank shapes 8192x4608x128, 8192x128x512, 16384x1152x256, the shapes of
        /// `torch_baseline.py` (256, 512, 1024 squares on a CPU
        /// adapter, where the large ones take minutes).
        #[arg(long, value_delimiter = ',')]
        shapes: Vec<String>,
        /// Timed repetitions per shape (the median is reported).
        #[arg(long, default_value_t = 5)]
        reps: usize,
        #[arg(long)]
        json: bool,
    },
    /// Cost of one stable-rank estimate of every factorizable layer (cold and warm-started)
    /// against the time of a CIFAR-10 epoch (50,000 images) at the measured images/s.
    Srank {
        #[arg(long, default_value = "resnet18")]
        model: String,
        /// Batch of the training steps timed for the epoch estimate.
        #[arg(long, default_value_t = 64)]
        batch: usize,
        #[arg(long)]
        json: bool,
    },
    /// Images/s of a model's training step.
    Train {
        #[arg(long, default_value = "resnet18")]
        model: String,
        #[arg(long, default_value_t = 256)]
        batch: usize,
        /// Timed steps (after 3 warm-up steps).
        #[arg(long, default_value_t = 20)]
        steps: usize,
        /// Also time each dispatch of one step on its own and print the slowest.
        #[arg(long)]
        profile: bool,
        /// Train a fixed low-rank variant instead: every layer of the reference's
        /// factorization (ResNet-18: the 3x3 convs of stages 2-4) as a k x k conv to
        /// c_out/DIV channels then a 1x1 conv, as `torch_baseline.py`'s low-rank model.
        #[arg(long, value_name = "DIV")]
        lowrank: Option<usize>,
        /// Plan only: print the memory plan's size and run no step (sizes a large batch on
        /// a slow adapter).
        #[arg(long)]
        plan_only: bool,
        #[arg(long)]
        json: bool,
    },
}

/// `what` holds `floats` f32 values (None: more than a usize counts): an error naming it
/// unless they fit one storage binding of the adapter, checked before anything the size
/// of the claim is allocated on the host.
fn fits(gpu: &Gpu, what: &str, floats: Option<usize>, hint: &str) -> Result<(), cuttle::Error> {
    let max = gpu.adapter().max_storage_binding;
    match floats.and_then(|f| f.checked_mul(4)) {
        Some(bytes) if bytes as u64 <= max => Ok(()),
        bytes => Err(cuttle::Error::Config(format!(
            "{what} takes {} bytes, more than this adapter's largest storage binding ({max} bytes){hint}",
            bytes.map_or("more than 2^64".to_string(), |b| b.to_string())
        ))),
    }
}

/// One batch of `graph`'s input (images, or a language model's token ids) must fit a
/// storage binding, or the host would allocate the claim for its synthetic data first.
fn batch_fits(gpu: &Gpu, graph: &Graph, batch: usize) -> Result<(), cuttle::Error> {
    let input = &graph.shape(Graph::INPUT).0;
    let per: usize = input.iter().product();
    let most = gpu.adapter().max_storage_binding as usize / (4 * per);
    let what = format!("--batch {batch} of {}'s {input:?} input", graph.name);
    fits(gpu, &what, batch.checked_mul(per), &format!("; at most --batch {most}"))
}

fn parse_shape(s: &str) -> Result<(usize, usize, usize), cuttle::Error> {
    let v: Vec<usize> =
        s.split('x').map(|t| t.trim().parse::<usize>()).collect::<Result<_, _>>().map_err(|_| bad_shape(s))?;
    match v[..] {
        [m, k, n] if m > 0 && k > 0 && n > 0 => Ok((m, k, n)),
        [s] if s > 0 => Ok((s, s, s)),
        _ => Err(bad_shape(s)),
    }
}

fn bad_shape(s: &str) -> cuttle::Error {
    cuttle::Error::Config(format!("bad shape {s:?}: expected MxKxN or a single size, e.g. 1024 or 8192x4608x128"))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

pub fn run(adapter: &Option<String>, a: BenchArgs) -> Result<(), cuttle::Error> {
    // Bad shapes, counts and models fail before any GPU work.
    let at_least_one = |flag: &str, n: usize, or: &str| match n {
        0 => Err(cuttle::Error::Config(format!("{flag} must be at least 1{or}"))),
        _ => Ok(()),
    };
    match &a.what {
        Bench::Matmul { shapes, reps, .. } => {
            at_least_one("--reps", *reps, "")?;
            for s in shapes {
                parse_shape(s)?;
            }
        }
        Bench::Train { model, lowrank, batch, steps, plan_only, .. } => {
            at_least_one("--batch", *batch, "")?;
            if !plan_only {
                at_least_one("--steps", *steps, " (--plan-only plans without stepping)")?;
            }
            drop(bench_graph(model, *lowrank)?)
        }
        Bench::Srank { batch, .. } => at_least_one("--batch", *batch, "")?,
    }
    // A plan-only run measures memory, not speed: choosing tiles by timing (minutes for
    // gpt-char's shapes on a CPU adapter) would only delay it; the plan is the same.
    let plan_only = matches!(a.what, Bench::Train { plan_only: true, .. });
    let gpu = if plan_only { crate::untuned_gpu(adapter)? } else { gpu(adapter)? };
    eprintln!("adapter: {}", gpu.adapter());
    match a.what {
        Bench::Matmul { shapes, reps, json } => matmul(&gpu, shapes, reps, json),
        Bench::Srank { model, batch, json } => srank(&gpu, model, batch, json),
        Bench::Train { model, batch, steps, profile, lowrank, plan_only, json } => {
            let steps = if plan_only { 0 } else { steps };
            train(&gpu, model, batch, steps, profile, lowrank, json)
        }
    }
}

fn matmul(gpu: &Gpu, shapes: Vec<String>, reps: usize, json: bool) -> Result<(), cuttle::Error> {
    let shapes: Vec<String> = if !shapes.is_empty() {
        shapes
    } else if gpu.adapter().is_cpu() {
        vec!["256".into(), "512".into(), "1024".into()]
    } else {
        ["1024", "2048", "4096", "8192x4608x128", "8192x128x512", "16384x1152x256"]
            .iter()
            .map(|s| s.to_string())
            .collect()
    };
    let mut rng = SplitMix64::new(1);
    for s in shapes {
        let (m, k, n) = parse_shape(&s)?;
        for (name, rows, cols) in [("A", m, k), ("B", k, n), ("C", m, n)] {
            fits(gpu, &format!("bench matmul {s}: {name} ({rows}x{cols})"), rows.checked_mul(cols), "")?;
        }
        let av: Vec<f32> = (0..m * k).map(|_| rng.uniform() as f32 - 0.5).collect();
        let bv: Vec<f32> = (0..k * n).map(|_| rng.uniform() as f32 - 0.5).collect();
        let a = Tensor::from_slice(gpu, "A", &[m, k], &av)?;
        let b = Tensor::from_slice(gpu, "B", &[k, n], &bv)?;
        let c = Tensor::zeros(gpu, "C", &[m, n])?;
        let ds = gemm::matmul(gpu, "bench", Layout::AB, (m, k, n), &a, &b, None, &c, false)?;
        // Enough back-to-back products per timing to last ~20 ms: a skinny product takes a
        // fraction of a millisecond on a large GPU, less than the submit itself.
        let time = |runs| pollster::block_on(gpu.seconds_per_run(&ds, runs));
        let first = time(1);
        let runs = ((0.02 / first.max(1e-6)) as usize).clamp(1, 200);
        let secs = median((0..reps).map(|_| time(runs)).collect());
        let gflops = 2.0 * (m * k * n) as f64 / secs / 1e9;
        // Check 64 sampled entries against an f64 dot product.
        let got = pollster::block_on(read_f32(gpu, &[&c]))?.remove(0);
        let mut max_rel = 0.0f64;
        for _ in 0..64 {
            let (i, j) = (rng.below(m as u64) as usize, rng.below(n as u64) as usize);
            let want: f64 = (0..k).map(|l| av[i * k + l] as f64 * bv[l * n + j] as f64).sum();
            let err = (got[i * n + j] as f64 - want).abs() / (1e-3 * (k as f64).sqrt()).max(want.abs());
            max_rel = if err.is_finite() { max_rel.max(err) } else { f64::INFINITY };
        }
        let ok = max_rel < 1e-3;
        if json {
            println!(
                "{}",
                serde_json::json!({"bench": "matmul", "m": m, "k": k, "n": n, "gflops": gflops, "ms": secs * 1e3,
                    "checked": ok, "max_rel_err": max_rel, "adapter": gpu.adapter().name, "backend": gpu.adapter().backend})
            );
        } else {
            println!(
                "matmul {m}x{k}x{n}: {gflops:.1} GFLOP/s ({:.2} ms), check {}",
                secs * 1e3,
                if ok { "ok" } else { "FAILED" }
            );
        }
        if !ok {
            return Err(cuttle::Error::Config(format!(
                "matmul {m}x{k}x{n}: sampled entries differ from the CPU (rel {max_rel:.2e})"
            )));
        }
    }
    Ok(())
}

/// Synthetic data of the model's usual image shape (`models::default_input`: CIFAR's
/// 32x32 RGB, or 28x28 grayscale for `vit-mini`; the step does not depend on pixel
/// values): two batches.
fn synthetic(batch: usize, [c, h, w]: [usize; 3]) -> Splits {
    let n = batch * 2;
    let mut rng = SplitMix64::new(2);
    let make = |name: &str, rng: &mut SplitMix64| Dataset {
        name: name.into(),
        images: (0..n * c * h * w).map(|_| rng.below(256) as u8).collect(),
        labels: (0..n).map(|i| (i % 10) as u32).collect(),
        n,
        channels: c,
        height: h,
        width: w,
        classes: 10,
        class_names: (0..10).map(|i| i.to_string()).collect(),
    };
    Splits { train: make("synthetic/train", &mut rng), test: make("synthetic/test", &mut rng) }
}

fn srank(gpu: &Gpu, model: String, batch: usize, json: bool) -> Result<(), cuttle::Error> {
    use cuttle::cuttlefish::{Cuttlefish, CuttlefishConfig};
    let graph = model_by_name(&model, default_input(&model), 10).map_err(cuttle::Error::Config)?;
    batch_fits(gpu, &graph, batch)?;
    let splits = synthetic(batch, default_input(&model));
    let cfg = TrainConfig {
        model: model.clone(),
        epochs: 300,
        batch,
        lr: 0.01,
        schedule: Schedule::Constant,
        report_every: usize::MAX,
        ..Default::default()
    };
    let mut trainer = Trainer::new(gpu, &splits, cfg)?;
    // Cold: the estimate at initialisation, from random start vectors.
    let t0 = Instant::now();
    let mut cf =
        pollster::block_on(Cuttlefish::new(gpu, &trainer, CuttlefishConfig::for_schedule(Schedule::Constant)))?;
    let cold = t0.elapsed().as_secs_f64();
    let cold_iters = cf.last_iterations;
    // Warm: after some training moved the weights, from last estimate's vectors.
    pollster::block_on(trainer.bench_steps(gpu, 2))?;
    let t0 = Instant::now();
    pollster::block_on(cf.observe(gpu, 1))?;
    let warm = t0.elapsed().as_secs_f64();
    let t0 = Instant::now();
    pollster::block_on(trainer.bench_steps(gpu, 2))?;
    let images_per_s = (2 * batch) as f64 / t0.elapsed().as_secs_f64();
    let epoch_s = 50_000.0 / images_per_s;
    let layers = cf.tracker.layers.len();
    if json {
        println!(
            "{}",
            serde_json::json!({"bench": "srank", "model": model, "layers": layers, "cold_ms": cold * 1e3, "cold_iterations": cold_iters,
                "warm_ms": warm * 1e3, "warm_iterations": cf.last_iterations, "train_images_per_s": images_per_s,
                "cifar_epoch_s": epoch_s, "warm_share_of_epoch": warm / epoch_s, "adapter": gpu.adapter().name})
        );
    } else {
        println!(
            "srank {model}: {layers} layers, cold {:.1} ms ({cold_iters} iterations), warm {:.1} ms ({} iterations); a 50,000-image epoch at {images_per_s:.1} images/s takes {epoch_s:.0} s: warm estimate = {:.4}% of it",
            cold * 1e3,
            warm * 1e3,
            cf.last_iterations,
            100.0 * warm / epoch_s
        );
    }
    Ok(())
}

/// Random token ids over a vocabulary of 65 (Tiny Shakespeare's size), for a language
/// model's step (which does not depend on the text).
fn synthetic_text(context: usize) -> cuttle::data::TextData {
    let mut rng = SplitMix64::new(3);
    let mut ids = |n: usize| (0..n).map(|_| rng.below(65) as u32).collect::<Vec<u32>>();
    cuttle::data::TextData {
        name: "synthetic-text".into(),
        path: "synthetic-text".into(),
        vocab: (0..65).map(|i| char::from_u32(48 + i).expect("ASCII")).collect(),
        train: ids(context * 64),
        val: ids(context * 64),
    }
}

/// The model `bench train` times: the zoo's, or its fixed low-rank variant (ranks c_out/div).
fn bench_graph(model: &str, lowrank: Option<usize>) -> Result<Graph, cuttle::Error> {
    let g = if is_language_model(model) {
        cuttle::nn::models::language_model(model, None, 65)
    } else {
        model_by_name(model, default_input(model), 10)
    }
    .map_err(cuttle::Error::Config)?;
    match lowrank {
        None => Ok(g),
        Some(div) => fixed_lowrank(&g, div).map_err(|e| cuttle::Error::Config(format!("--lowrank {div}: {e}"))),
    }
}

fn train(
    gpu: &Gpu,
    model: String,
    batch: usize,
    steps: usize,
    profile: bool,
    lowrank: Option<usize>,
    json: bool,
) -> Result<(), cuttle::Error> {
    let graph = bench_graph(&model, lowrank)?;
    let params = graph.param_count();
    batch_fits(gpu, &graph, batch)?;
    let before = gpu.allocated_bytes();
    // The model's own optimizer and loss (AdamW and label smoothing for a transformer),
    // at a constant rate.
    let cfg = TrainConfig {
        model: model.clone(),
        epochs: 1,
        batch,
        lr: 0.01,
        schedule: Schedule::Constant,
        warmup_epochs: 0.0,
        augment: AugmentKind::CropFlip,
        report_every: usize::MAX,
        ..cuttle::train::RunConfig { model: model.clone(), ..Default::default() }.train_config()
    };
    let context = graph.shape(Graph::INPUT).0[0];
    let tokens_per_sample = if is_language_model(&model) { context } else { 1 };
    let mut trainer = if is_language_model(&model) {
        Trainer::with_graph(gpu, &synthetic_text(context), cfg, graph)?
    } else {
        Trainer::with_graph(gpu, &synthetic(batch, default_input(&model)), cfg, graph)?
    };
    let plan_bytes = gpu.allocated_bytes() - before;
    if steps == 0 {
        let mib = plan_bytes as f64 / 1048576.0;
        match json {
            true => println!(
                "{}",
                serde_json::json!({"bench": "plan", "model": model, "lowrank": lowrank, "params": params, "batch": batch,
                    "plan_bytes": plan_bytes, "adapter": gpu.adapter().name})
            ),
            false => println!("plan {model} ({params} parameters) batch {batch}: {mib:.1} MiB"),
        }
        return Ok(());
    }
    let mut run = |steps: usize| -> Result<f64, cuttle::Error> {
        let t0 = Instant::now();
        pollster::block_on(trainer.bench_steps(gpu, steps))?;
        Ok(t0.elapsed().as_secs_f64())
    };
    run(3)?;
    let secs = run(steps)?;
    // Everything is allocated at plan time: the count after the timed steps shows it.
    let after_bytes = gpu.allocated_bytes() - before;
    if profile {
        let (prof, timestamps) = pollster::block_on(trainer.profile_step(gpu))?;
        print_profile(&prof, timestamps, json);
    }
    let images_per_s = (steps * batch) as f64 / secs;
    let tokens_per_s = (tokens_per_sample > 1).then_some(images_per_s * tokens_per_sample as f64);
    let tuned = cuttle::ops::tune::cache_of(gpu).is_some_and(|c| c.enabled());
    let tiles = if tuned { "tuned" } else { "by shape" };
    if json {
        println!(
            "{}",
            serde_json::json!({"bench": "train", "model": model, "lowrank": lowrank, "params": params, "batch": batch, "steps": steps, "images_per_s": images_per_s, "tokens_per_s": tokens_per_s,
                "step_ms": secs * 1e3 / steps as f64, "plan_bytes": plan_bytes, "allocated_after_steps_bytes": after_bytes, "tiles": tiles, "adapter": gpu.adapter().name, "backend": gpu.adapter().backend})
        );
    } else {
        println!(
            "train {model}{} ({params} parameters) batch {batch}: {images_per_s:.1} {}/s{}, {:.1} ms/step, plan {:.1} MiB, tiles {tiles}",
            lowrank.map(|d| format!(" low-rank c_out/{d}")).unwrap_or_default(),
            if tokens_per_sample > 1 { "windows" } else { "images" },
            tokens_per_s.map(|t| format!(" ({t:.0} tokens/s)")).unwrap_or_default(),
            secs * 1e3 / steps as f64,
            plan_bytes as f64 / 1048576.0
        );
    }
    Ok(())
}

/// The profile of one training step: the slowest dispatches, then the time per layer (a
/// node's forward and backward dispatches together) and per kernel kind.
fn print_profile(prof: &[(&cuttle::gpu::Dispatch, f64)], timestamps: bool, json: bool) {
    let total: f64 = prof.iter().map(|p| p.1).sum();
    let method = if timestamps { "GPU timestamps" } else { "submit and wait per dispatch" };
    let group = |key: &dyn Fn(&cuttle::gpu::Dispatch) -> String| {
        let mut sums: Vec<(String, f64)> = Vec::new();
        for (d, t) in prof {
            let k = key(d);
            match sums.iter_mut().find(|s| s.0 == k) {
                Some(s) => s.1 += t,
                None => sums.push((k, *t)),
            }
        }
        sums.sort_by(|a, b| b.1.total_cmp(&a.1));
        sums
    };
    // A node's dispatches are labelled NAME, NAME.backward, NAME.backward.sum-slices, ...
    let layer = |d: &cuttle::gpu::Dispatch| d.label.split(".backward").next().unwrap_or(&d.label).to_string();
    let mut slowest: Vec<(String, f64)> = prof.iter().map(|(d, t)| (format!("{} [{}]", d.label, d.kind), *t)).collect();
    slowest.sort_by(|a, b| b.1.total_cmp(&a.1));
    let sections = [
        ("dispatch", slowest.into_iter().take(15).collect::<Vec<_>>()),
        ("layer", group(&layer).into_iter().take(20).collect()),
        ("kind", group(&|d| d.kind.clone())),
    ];
    if !json {
        println!("profile of one step ({method}): {:.2} ms in {} dispatches", total * 1e3, prof.len());
    }
    for (what, rows) in sections {
        if !json {
            println!("  by {what}:");
        }
        for (name, t) in rows {
            if json {
                println!(
                    "{}",
                    serde_json::json!({"bench": "profile", "by": what, "name": name, "ms": t * 1e3,
                        "share": t / total, "timestamps": timestamps})
                );
            } else {
                println!("  {:>9.3} ms {:>5.1}%  {name}", t * 1e3, 100.0 * t / total);
            }
        }
    }
}
