//! Multi-head attention, forward + backward, two ways on the default adapter: the layer's
//! GEMM chain (`nn::layers::attention`: permute, batched GEMMs, softmax, permute) and the
//! fused kernels (`ops::attention`). One JSON line per (shape, path): milliseconds per
//! forward, backward and both, the dispatch counts, and the bytes each path allocates
//! beyond the layer's input, output and their gradients; then the largest difference
//! between the two outputs and input gradients.
//!
//!     cargo run --release --example attention_bench [-- B,T,H,d[,causal] ...]

use cuttle::gpu::{read_f32, Dispatch, Gpu, GpuOptions, Tensor};
use cuttle::nn::graph::{Attention, Op, Shape};
use cuttle::nn::layers::{Epilogue, GradOut, Io, Layer, Steps};
use cuttle::nn::params::ParamStore;
use cuttle::ops::attention::{self as attn, AttnShape};

fn ms(gpu: &Gpu, ds: &[Dispatch]) -> f64 {
    pollster::block_on(gpu.seconds_per_run(ds, 1)); // warm-up (pipelines, caches)
                                                    // About half a second of runs, at least 3.
    let once = pollster::block_on(gpu.seconds_per_run(ds, 1));
    let reps = ((0.5 / once.max(1e-6)) as usize).clamp(3, 1000);
    pollster::block_on(gpu.seconds_per_run(ds, reps)) * 1e3
}

fn read(gpu: &Gpu, t: &Tensor) -> Vec<f32> {
    pollster::block_on(read_f32(gpu, &[t])).unwrap().remove(0)
}

fn max_diff(a: &[f32], b: &[f32]) -> f64 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs() as f64).fold(0.0, f64::max)
}

fn bench(gpu: &Gpu, s: AttnShape) -> Result<(), cuttle::Error> {
    let (b, t, d) = (s.batch, s.tokens, s.dim());
    let mut seed = 1u64;
    let mut rand = |n: usize| -> Vec<f32> {
        (0..n)
            .map(|_| {
                seed = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                ((seed >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
            })
            .collect()
    };
    let x = Tensor::from_slice(gpu, "qkv", &[b, t, 3 * d], &rand(s.qkv_len()))?;
    let dy = Tensor::from_slice(gpu, "dy", &[b, t, d], &rand(s.out_len()))?;
    let (y_gemm, dx_gemm) = (Tensor::zeros(gpu, "y", &[b, t, d])?, Tensor::zeros(gpu, "dx", &[b, t, 3 * d])?);
    let (y_fused, dx_fused) = (Tensor::zeros(gpu, "y", &[b, t, d])?, Tensor::zeros(gpu, "dx", &[b, t, 3 * d])?);
    let line = |path: &str, bytes: u64, f: &[Dispatch], bw: &[Dispatch]| {
        let both: Vec<Dispatch> = f.iter().chain(bw).cloned().collect();
        let (fwd, step) = (ms(gpu, f), ms(gpu, &both));
        let bwd = ms(gpu, bw);
        let j = serde_json::json!({
            "path": path, "B": b, "T": t, "H": s.heads, "d": s.head_dim, "causal": s.causal,
            "forward_ms": fwd, "backward_ms": bwd, "step_ms": step,
            "dispatches_forward": f.len(), "dispatches_backward": bw.len(), "bytes": bytes,
            "adapter": gpu.adapter().name,
        });
        println!("{j}");
    };

    // The GEMM chain, planned as the network plans it.
    let params = ParamStore::new(gpu, &[])?;
    let shape = Shape(vec![t, 3 * d]);
    let io = Io {
        gpu,
        name: "attn",
        batch: b,
        params: &params,
        x: vec![(&x, &shape)],
        y: &y_gemm,
        dy: &dy,
        dx: vec![Some(GradOut { t: &dx_gemm, accumulate: false })],
        accumulate_params: vec![],
    };
    let before = gpu.allocated_bytes();
    let mut steps = Steps::default();
    let op = Op::Attention(Attention { heads: s.heads, causal: s.causal });
    Layer::plan(&io, &op, Epilogue::default(), &mut steps)?;
    let gemm_bytes = gpu.allocated_bytes() - before;
    line("gemm", gemm_bytes, &steps.train, &steps.backward);

    // Fused: probs kept from forward to backward, one dS scratch (shareable between layers).
    let before = gpu.allocated_bytes();
    let probs = Tensor::zeros(gpu, "probs", &[b, s.heads, t, t])?;
    let scratch = Tensor::zeros(gpu, "ds", &[b, s.heads, t, t])?;
    let fused_bytes = gpu.allocated_bytes() - before;
    let f = vec![attn::forward(gpu, "attn", s, &x, &y_fused, &probs)];
    let bw = attn::backward(gpu, "attn.backward", s, &x, &probs, &dy, &dx_fused, false, &scratch);
    line("fused", fused_bytes, &f, &bw);

    gpu.run(steps.train.iter().chain(&steps.backward).chain(&f).chain(&bw));
    let j = serde_json::json!({
        "check": "fused vs gemm", "B": b, "T": t, "H": s.heads, "d": s.head_dim,
        "out_max_abs_diff": max_diff(&read(gpu, &y_gemm), &read(gpu, &y_fused)),
        "dqkv_max_abs_diff": max_diff(&read(gpu, &dx_gemm), &read(gpu, &dx_fused)),
    });
    println!("{j}");
    Ok(())
}

fn main() -> Result<(), cuttle::Error> {
    let gpu = pollster::block_on(Gpu::new(&GpuOptions::from_env()))?;
    let args: Vec<String> = std::env::args().skip(1).collect();
    // B,T,H,d with an optional 5th field 1 for causal attention (a language model's).
    let shapes: Vec<[usize; 5]> = if args.is_empty() {
        vec![[64, 17, 4, 16, 0], [8, 65, 3, 64, 0], [32, 64, 4, 16, 1]]
    } else {
        args.iter()
            .map(|a| {
                let v: Vec<usize> = a.split(',').map(|n| n.parse().expect("B,T,H,d[,causal]")).collect();
                assert!(v.len() == 4 || v.len() == 5, "B,T,H,d[,causal]: {a}");
                [v[0], v[1], v[2], v[3], v.get(4).copied().unwrap_or(0)]
            })
            .collect()
    };
    for [batch, tokens, heads, head_dim, causal] in shapes {
        bench(&gpu, AttnShape { batch, tokens, heads, head_dim, causal: causal == 1 })?;
    }
    Ok(())
}
