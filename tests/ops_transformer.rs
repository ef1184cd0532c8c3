//! The vision-transformer kernels: LayerNorm, softmax (plain and causal) and GELU.
//! Each f64 CPU backward against central finite differences of its CPU forward; the GPU
//! against the CPU on hand-checkable cases and on seeded shapes that are not multiples of
//! the workgroup or per-row invocation counts, accumulate on and off; each GPU backward
//! against a finite difference of the GPU forward; NaN propagation; LayerNorm's parameter
//! gradients bit-identical across reruns; one grid past 65,535 workgroups.

mod common;
use common::*;
use cuttle::gpu::{read_f32, test_gpu, Gpu, Tensor};
use cuttle::ops::elementwise::{self, cpu as ew_cpu};
use cuttle::ops::layernorm::{self as ln, LnShape};
use cuttle::ops::softmax;

fn t(gpu: &Gpu, name: &str, v: &[f64]) -> Tensor {
    Tensor::from_slice(gpu, name, &[v.len()], &f32s(v)).unwrap()
}
fn z(gpu: &Gpu, name: &str, n: usize) -> Tensor {
    Tensor::zeros(gpu, name, &[n]).unwrap()
}
fn read(gpu: &Gpu, x: &Tensor) -> Vec<f32> {
    pollster::block_on(read_f32(gpu, &[x])).unwrap().remove(0)
}
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}
/// Central differences of `loss` at `x`, one coordinate at a time (f64).
fn fd(x: &[f64], h: f64, loss: impl Fn(&[f64]) -> f64) -> Vec<f64> {
    let mut x = x.to_vec();
    (0..x.len())
        .map(|i| {
            let x0 = x[i];
            x[i] = x0 + h;
            let lp = loss(&x);
            x[i] = x0 - h;
            let lm = loss(&x);
            x[i] = x0;
            (lp - lm) / (2.0 * h)
        })
        .collect()
}
/// `assert_close` for f64 results (the CPU references): |got − want| ≤ atol + rtol·|want|,
/// NaN or Inf fails, a failure names the index, both values and the largest error.
fn assert_close64(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let err = |i: usize| (got[i] - want[i]).abs();
    let bad =
        (0..got.len()).find(|&i| !got[i].is_finite() || !want[i].is_finite() || err(i) > atol + rtol * want[i].abs());
    if let Some(i) = bad {
        let worst = (0..got.len()).max_by(|&a, &b| err(a).total_cmp(&err(b))).unwrap();
        panic!(
            "{what}: mismatch at index {i}: got {} want {}; largest error {} at index {worst}",
            got[i],
            want[i],
            err(worst)
        );
    }
}
/// Inputs of a directional finite difference on the GPU: x ± h·v rounded to f32, and the
/// exact step (x₊ − x₋)/2 between the rounded values, so rounding the inputs adds no error.
fn plus_minus(x: &[f64], v: &[f64], h: f64) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
    let p: Vec<f64> = x.iter().zip(v).map(|(a, b)| (a + h * b) as f32 as f64).collect();
    let m: Vec<f64> = x.iter().zip(v).map(|(a, b)| (a - h * b) as f32 as f64).collect();
    let step = p.iter().zip(&m).map(|(a, b)| (a - b) / 2.0).collect();
    (p, m, step)
}

// ---------------------------------------------------------------- CPU references vs FD

#[test]
fn gelu_reference_grad_matches_finite_differences() {
    let mut rng = Rng(1);
    let xs: Vec<f64> = (0..200).map(|_| rng.uniform() * 6.0).chain([0.0, -6.0, 6.0, 1e-3, -8.0]).collect();
    for x in xs {
        let h = 1e-5;
        let want = (ew_cpu::gelu(x + h) - ew_cpu::gelu(x - h)) / (2.0 * h);
        let got = ew_cpu::gelu_grad(x);
        assert!((got - want).abs() <= 1e-9, "gelu'({x}) = {got}, finite difference {want}");
    }
}

#[test]
fn softmax_reference_grad_matches_finite_differences() {
    let mut rng = Rng(2);
    for (rows, n, causal) in [(4, 7, false), (7, 7, true), (10, 4, true), (3, 1, false), (2, 1, true)] {
        let x: Vec<f64> = rng.vec(rows * n).iter().map(|v| 3.0 * v).collect();
        let dy = rng.vec(rows * n);
        let y = softmax::cpu::forward(rows, n, causal, &x);
        let dx = softmax::cpu::backward(rows, n, &y, &dy);
        let num = fd(&x, 1e-5, |x| dot(&softmax::cpu::forward(rows, n, causal, x), &dy));
        assert_close64(&format!("softmax ({rows},{n}) causal={causal} dx vs FD"), &dx, &num, 1e-9, 1e-7);
    }
}

#[test]
fn layernorm_reference_grads_match_finite_differences() {
    let mut rng = Rng(3);
    let eps = 1e-5;
    for s in [LnShape { rows: 3, dim: 7 }, LnShape { rows: 2, dim: 2 }, LnShape { rows: 4, dim: 13 }] {
        let x: Vec<f64> = rng.vec(s.rows * s.dim).iter().map(|v| 2.0 * v + 0.5).collect();
        let (g, b, dy) = (rng.vec(s.dim), rng.vec(s.dim), rng.vec(s.rows * s.dim));
        let (dx, dg, db) = ln::cpu::backward(s, eps, &x, &g, &dy);
        let loss = |x: &[f64], g: &[f64], b: &[f64]| dot(&ln::cpu::forward(s, eps, x, g, b).0, &dy);
        let what = format!("layernorm {s:?}");
        assert_close64(&format!("{what} dx vs FD"), &dx, &fd(&x, 1e-5, |x| loss(x, &g, &b)), 1e-8, 1e-6);
        assert_close64(&format!("{what} dgamma vs FD"), &dg, &fd(&g, 1e-5, |g| loss(&x, g, &b)), 1e-8, 1e-6);
        assert_close64(&format!("{what} dbeta vs FD"), &db, &fd(&b, 1e-5, |b| loss(&x, &g, b)), 1e-8, 1e-6);
    }
}

/// The shader's Φ (Numerical Recipes' `erfcc` fit) mirrored in f64: its relative error
/// against the f64 erfc stays under the 1.2e-7 the shader comment claims, over the whole
/// range where erfc(z) is a normal f64.
#[test]
fn gelu_shader_erfc_fit_is_within_its_stated_error() {
    let fit = |z: f64| {
        let t = 1.0 / (1.0 + 0.5 * z);
        let c = [
            -1.26551223,
            1.00002368,
            0.37409196,
            0.09678418,
            -0.18628806,
            0.27886807,
            -1.13520398,
            1.48851587,
            -0.82215223,
            0.17087277,
        ];
        let q = c.iter().rev().fold(0.0, |acc, &ci| acc * t + ci);
        t * (q - z * z).exp()
    };
    let mut worst = 0.0f64;
    for i in 0..=26_000 {
        let z = i as f64 * 1e-3;
        let e = ew_cpu::erfc(z);
        worst = worst.max((fit(z) - e).abs() / e);
    }
    assert!(worst < 1.2e-7, "erfcc fit: relative error {worst}");
}

// ---------------------------------------------------------------- GELU on the GPU

#[test]
fn gelu_hand_values() {
    let Some(gpu) = test_gpu() else { return };
    // Φ(1) = 0.8413447460685429, Φ(2) = 0.9772498680518208, Φ(-3) = 0.0013498980316301
    let x = [0.0, 1.0, -1.0, 2.0, -3.0];
    let want = [0.0, 0.8413447460685429, -0.15865525393145707, 2.0 * 0.9772498680518208, -3.0 * 0.0013498980316301];
    let (tx, ty, tdx, tdy) = (t(&gpu, "x", &x), z(&gpu, "y", 5), z(&gpu, "dx", 5), t(&gpu, "dy", &[1.0; 5]));
    gpu.run(&[
        elementwise::gelu(&gpu, "gelu", &tx, &ty),
        elementwise::gelu_backward(&gpu, "gelu-bwd", &tx, &tdy, &tdx, false),
    ]);
    assert_close("gelu hand", &read(&gpu, &ty), &want, 1e-7, 1e-6);
    // GELU'(0) = 1/2; GELU'(1) = Φ(1) + φ(1) = 0.8413447 + 0.2419707
    let dwant = [0.5, 0.8413447460685429 + 0.24197072451914337, 0.15865525393145707 - 0.24197072451914337];
    assert_close("gelu' hand", &read(&gpu, &tdx)[..3], &dwant, 1e-7, 1e-6);
}

#[test]
fn gelu_gpu_matches_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(4);
    for len in [1, 1000, 70_001] {
        let x: Vec<f64> = rng.vec(len).iter().map(|v| 6.0 * v).collect();
        let dy = rng.vec(len);
        let prior = rng.vec(len);
        let y: Vec<f64> = x.iter().map(|&v| ew_cpu::gelu(v)).collect();
        let dx: Vec<f64> = x.iter().zip(&dy).map(|(&v, g)| g * ew_cpu::gelu_grad(v)).collect();
        let (tx, tdy, ty, tdx, tacc) =
            (t(&gpu, "x", &x), t(&gpu, "dy", &dy), z(&gpu, "y", len), z(&gpu, "dx", len), t(&gpu, "acc", &prior));
        gpu.run(&[
            elementwise::gelu(&gpu, "gelu", &tx, &ty),
            elementwise::gelu_backward(&gpu, "gelu-bwd", &tx, &tdy, &tdx, false),
            elementwise::gelu_backward(&gpu, "gelu-bwd-acc", &tx, &tdy, &tacc, true),
        ]);
        assert_close(&format!("gelu y ({len})"), &read(&gpu, &ty), &y, 1e-6, 1e-5);
        assert_close(&format!("gelu dx ({len})"), &read(&gpu, &tdx), &dx, 1e-6, 1e-5);
        let acc: Vec<f64> = prior.iter().zip(&dx).map(|(a, b)| a + b).collect();
        assert_close(&format!("gelu dx accumulated ({len})"), &read(&gpu, &tacc), &acc, 1e-6, 1e-5);
    }
}

// ---------------------------------------------------------------- softmax on the GPU

#[test]
fn softmax_hand_values() {
    let Some(gpu) = test_gpu() else { return };
    let (l2, l3) = (2f64.ln(), 3f64.ln());
    let x = [0.0, l2, l3, 0.0, l2, l3, 0.0, l2, l3];
    let tx = t(&gpu, "x", &x);
    let (ty, tyc) = (z(&gpu, "y", 9), z(&gpu, "y-causal", 9));
    // y = [1/6, 1/3, 1/2], dy = [1, 0, 0]: Σ y·dy = 1/6, dx = y ⊙ (dy − 1/6).
    let ty1 = t(&gpu, "y1", &[1.0 / 6.0, 1.0 / 3.0, 0.5]);
    let (tdy, tdx) = (t(&gpu, "dy", &[1.0, 0.0, 0.0]), z(&gpu, "dx", 3));
    gpu.run(&[
        softmax::forward(&gpu, "sm", (3, 3), false, &tx, &ty),
        softmax::forward(&gpu, "sm-causal", (3, 3), true, &tx, &tyc),
        softmax::backward(&gpu, "sm-bwd", (1, 3), &ty1, &tdy, &tdx, false),
    ]);
    let y = [1.0 / 6.0, 1.0 / 3.0, 0.5];
    assert_close("softmax [0, ln 2, ln 3]", &read(&gpu, &ty), &[y, y, y].concat(), 1e-7, 1e-6);
    let yc = [1.0, 0.0, 0.0, 1.0 / 3.0, 2.0 / 3.0, 0.0, 1.0 / 6.0, 1.0 / 3.0, 0.5];
    assert_close("causal softmax [0, ln 2, ln 3]", &read(&gpu, &tyc), &yc, 1e-7, 1e-6);
    assert_close("softmax backward", &read(&gpu, &tdx), &[5.0 / 36.0, -1.0 / 18.0, -1.0 / 12.0], 1e-7, 1e-6);
}

#[test]
fn softmax_gpu_matches_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(5);
    for n in [1, 7, 65, 197, 300] {
        // Rows not a multiple of the rows per workgroup, and several causal blocks.
        let rows = 2 * n + 1 + rng.below(5);
        for causal in [false, true] {
            let what = format!("softmax ({rows},{n}) causal={causal}");
            let x: Vec<f64> = rng.vec(rows * n).iter().map(|v| 4.0 * v + 1.0).collect();
            let (dy, prior) = (rng.vec(rows * n), rng.vec(rows * n));
            let y = softmax::cpu::forward(rows, n, causal, &x);
            let dx = softmax::cpu::backward(rows, n, &y, &dy);
            let (tx, ty, tdy) = (t(&gpu, "x", &x), z(&gpu, "y", rows * n), t(&gpu, "dy", &dy));
            let (ty_ref, tdx, tacc) = (t(&gpu, "y-ref", &y), z(&gpu, "dx", rows * n), t(&gpu, "acc", &prior));
            gpu.run(&[
                softmax::forward(&gpu, "sm", (rows, n), causal, &tx, &ty),
                // The backward from the reference y (rounded to f32), so it is checked alone.
                softmax::backward(&gpu, "sm-bwd", (rows, n), &ty_ref, &tdy, &tdx, false),
                softmax::backward(&gpu, "sm-bwd-acc", (rows, n), &ty_ref, &tdy, &tacc, true),
            ]);
            assert_close(&format!("{what} y"), &read(&gpu, &ty), &y, 1e-6, 1e-4);
            assert_close(&format!("{what} dx"), &read(&gpu, &tdx), &dx, 1e-6, 1e-4);
            let acc: Vec<f64> = prior.iter().zip(&dx).map(|(a, b)| a + b).collect();
            assert_close(&format!("{what} dx accumulated"), &read(&gpu, &tacc), &acc, 1e-6, 1e-4);
        }
    }
}

// ---------------------------------------------------------------- LayerNorm on the GPU

/// Runs forward then backward (accumulate off, and on into `prior`); returns
/// (y, stats, dx, dx accumulated, dgamma, dbeta). γ, β and dγ, dβ are views at aligned
/// offsets inside one flat parameter and one flat gradient buffer, as the engine keeps them.
#[allow(clippy::type_complexity)]
fn ln_gpu(
    gpu: &Gpu,
    s: LnShape,
    eps: f32,
    (x, g, b, dy, prior): (&[f64], &[f64], &[f64], &[f64], &[f64]),
) -> (Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
    let n = s.rows * s.dim;
    let align = gpu.storage_offset_alignment() as usize / 4;
    let stride = s.dim.div_ceil(align) * align;
    let mut flat = vec![0.0; align + 2 * stride];
    flat[align..align + s.dim].copy_from_slice(g);
    flat[align + stride..align + stride + s.dim].copy_from_slice(b);
    let params = t(gpu, "params", &flat);
    let (tg, tb) = (params.slice("gamma", &[s.dim], align), params.slice("beta", &[s.dim], align + stride));
    // dgamma, dbeta start as garbage: they must be overwritten, not added to.
    let grads = t(gpu, "grads", &vec![7.0; flat.len()]);
    let (tdg, tdb) = (grads.slice("dgamma", &[s.dim], align), grads.slice("dbeta", &[s.dim], align + stride));
    let (tx, tdy, tacc) = (t(gpu, "x", x), t(gpu, "dy", dy), t(gpu, "acc", prior));
    let (ty, tst, tdx) = (z(gpu, "y", n), z(gpu, "stats", 2 * s.rows), z(gpu, "dx", n));
    let mut ds = vec![ln::forward(gpu, "ln", s, eps, &tx, &tg, &tb, &ty, &tst)];
    ds.extend(ln::backward(gpu, "ln-bwd", s, &tx, &tg, &tst, &tdy, &tdx, false, &tdg, &tdb).unwrap());
    ds.extend(ln::backward(gpu, "ln-bwd-acc", s, &tx, &tg, &tst, &tdy, &tacc, true, &tdg, &tdb).unwrap());
    gpu.run(&ds);
    let mut r = pollster::block_on(read_f32(gpu, &[&ty, &tst, &tdx, &tacc, &tdg, &tdb])).unwrap().into_iter();
    let mut next = || r.next().unwrap();
    (next(), next(), next(), next(), next(), next())
}

#[test]
fn layernorm_hand_values() {
    let Some(gpu) = test_gpu() else { return };
    // x = [1, 2, 3], eps = 0: mean 2, var 2/3, rstd = √1.5, x̂ = [−√1.5, 0, √1.5].
    // dy = [1, 0, 0], γ = 1: g = dy, mean(g) = 1/3, mean(g·x̂) = −√1.5/3,
    // dx = √1.5·(g − 1/3 + x̂·√1.5/3) = √1.5·[1/6, −1/3, 1/6]; dγ = dy·x̂, dβ = dy.
    let s = LnShape { rows: 1, dim: 3 };
    let r = 1.5f64.sqrt();
    let (y, st, dx, acc, dg, db) =
        ln_gpu(&gpu, s, 0.0, (&[1.0, 2.0, 3.0], &[1.0; 3], &[0.5; 3], &[1.0, 0.0, 0.0], &[1.0; 3]));
    assert_close("ln y", &y, &[0.5 - r, 0.5, 0.5 + r], 1e-6, 1e-6);
    assert_close("ln stats", &st, &[2.0, r], 1e-6, 1e-6);
    let dxw = [r / 6.0, -r / 3.0, r / 6.0];
    assert_close("ln dx", &dx, &dxw, 1e-6, 1e-6);
    assert_close("ln dx accumulated", &acc, &dxw.map(|v| v + 1.0), 1e-6, 1e-6);
    assert_close("ln dgamma", &dg, &[-r, 0.0, 0.0], 1e-6, 1e-6);
    assert_close("ln dbeta", &db, &[1.0, 0.0, 0.0], 1e-6, 1e-6);
}

#[test]
fn layernorm_gpu_matches_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(6);
    let eps = ln::EPS;
    for (rows, dim) in [(1, 1), (3, 7), (37, 65), (130, 193), (600, 3)] {
        let s = LnShape { rows, dim };
        let n = rows * dim;
        let x: Vec<f64> = rng.vec(n).iter().map(|v| 2.0 * v + 0.5).collect();
        let (g, b, dy, prior) = (rng.vec(dim), rng.vec(dim), rng.vec(n), rng.vec(n));
        let (y, mean, rstd) = ln::cpu::forward(s, eps as f64, &x, &g, &b);
        let (dx, dg, db) = ln::cpu::backward(s, eps as f64, &x, &g, &dy);
        let (gy, gst, gdx, gacc, gdg, gdb) = ln_gpu(&gpu, s, eps, (&x, &g, &b, &dy, &prior));
        let what = format!("layernorm {s:?}");
        assert_close(&format!("{what} y"), &gy, &y, 1e-5, 1e-4);
        let st: Vec<f64> = mean.iter().zip(&rstd).flat_map(|(m, r)| [*m, *r]).collect();
        assert_close(&format!("{what} stats"), &gst, &st, 1e-5, 1e-4);
        assert_close(&format!("{what} dx"), &gdx, &dx, 1e-5, 1e-4);
        let acc: Vec<f64> = prior.iter().zip(&dx).map(|(a, b)| a + b).collect();
        assert_close(&format!("{what} dx accumulated"), &gacc, &acc, 1e-5, 1e-4);
        // Column sums over up to 600 rows of O(1) terms: a few more ulps of the total.
        assert_close(&format!("{what} dgamma"), &gdg, &dg, 1e-4, 1e-4);
        assert_close(&format!("{what} dbeta"), &gdb, &db, 1e-4, 1e-4);
    }
}

#[test]
fn layernorm_backward_is_bit_identical_across_runs() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(7);
    let s = LnShape { rows: 301, dim: 37 };
    let n = s.rows * s.dim;
    let (x, g, b, dy) = (rng.vec(n), rng.vec(s.dim), rng.vec(s.dim), rng.vec(n));
    let first = ln_gpu(&gpu, s, ln::EPS, (&x, &g, &b, &dy, &vec![0.0; n]));
    let second = ln_gpu(&gpu, s, ln::EPS, (&x, &g, &b, &dy, &vec![0.0; n]));
    let bits = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
    assert_eq!(bits(&first.4), bits(&second.4), "dgamma differs between runs");
    assert_eq!(bits(&first.5), bits(&second.5), "dbeta differs between runs");
    assert_eq!(bits(&first.2), bits(&second.2), "dx differs between runs");
}

// ---------------------------------------------------------------- GPU backward vs GPU forward

#[test]
fn gpu_backwards_match_finite_differences_of_gpu_forwards() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(8);
    let h = 1e-2;

    // GELU, elementwise: (y(x₊) − y(x₋)) / (x₊ − x₋) against dx with dy = 1.
    let x: Vec<f64> = rng.vec(500).iter().map(|v| 6.0 * v).collect();
    let (xp, xm, step) = plus_minus(&x, &vec![1.0; 500], h);
    let (txp, txm, tx) = (t(&gpu, "x+", &xp), t(&gpu, "x-", &xm), t(&gpu, "x", &x));
    let (typ, tym, tdy, tdx) = (z(&gpu, "y+", 500), z(&gpu, "y-", 500), t(&gpu, "dy", &[1.0; 500]), z(&gpu, "dx", 500));
    gpu.run(&[
        elementwise::gelu(&gpu, "gelu+", &txp, &typ),
        elementwise::gelu(&gpu, "gelu-", &txm, &tym),
        elementwise::gelu_backward(&gpu, "gelu-bwd", &tx, &tdy, &tdx, false),
    ]);
    let (yp, ym) = (f64s(&read(&gpu, &typ)), f64s(&read(&gpu, &tym)));
    let num: Vec<f64> = (0..500).map(|i| (yp[i] - ym[i]) / (2.0 * step[i])).collect();
    // f32 outputs of size ≤ 6 differenced over 2h = 0.02: ~1e-5 of rounding, h² truncation.
    assert_close("gelu dx vs GPU finite differences", &read(&gpu, &tdx), &num, 3e-4, 1e-3);

    // Softmax (causal), along a random direction v: L(x₊) − L(x₋) ≈ Σ dx·(x₊ − x₋), L = Σ dy·y.
    let (rows, n) = (3 * 9 + 4, 9);
    let x: Vec<f64> = rng.vec(rows * n).iter().map(|v| 2.0 * v).collect();
    let (v, dy) = (rng.vec(rows * n), rng.vec(rows * n));
    let (xp, xm, step) = plus_minus(&x, &v, h);
    let (txp, txm, ty) = (t(&gpu, "x+", &xp), t(&gpu, "x-", &xm), z(&gpu, "y", rows * n));
    let (typ, tym) = (z(&gpu, "y+", rows * n), z(&gpu, "y-", rows * n));
    let (tx, tdy, tdx) = (t(&gpu, "x", &x), t(&gpu, "dy", &dy), z(&gpu, "dx", rows * n));
    gpu.run(&[
        softmax::forward(&gpu, "sm+", (rows, n), true, &txp, &typ),
        softmax::forward(&gpu, "sm-", (rows, n), true, &txm, &tym),
        softmax::forward(&gpu, "sm", (rows, n), true, &tx, &ty),
        softmax::backward(&gpu, "sm-bwd", (rows, n), &ty, &tdy, &tdx, false),
    ]);
    let num = (dot(&f64s(&read(&gpu, &typ)), &dy) - dot(&f64s(&read(&gpu, &tym)), &dy)) / 2.0;
    let ana = dot(&f64s(&read(&gpu, &tdx)), &step);
    assert!((num - ana).abs() <= 1e-3 * ana.abs() + 1e-6, "softmax: directional FD {num} vs backward {ana}");

    // LayerNorm along random directions of x, γ and β together.
    let s = LnShape { rows: 11, dim: 29 };
    let m = s.rows * s.dim;
    let x: Vec<f64> = rng.vec(m).iter().map(|v| 2.0 * v + 0.5).collect();
    let (g, b, dy) = (rng.vec(s.dim), rng.vec(s.dim), rng.vec(m));
    let (vx, vg, vb) = (rng.vec(m), rng.vec(s.dim), rng.vec(s.dim));
    let ((xp, xm, sx), (gp, gm, sg), (bp, bm, sb)) =
        (plus_minus(&x, &vx, h), plus_minus(&g, &vg, h), plus_minus(&b, &vb, h));
    let loss = |x: &[f64], g: &[f64], b: &[f64]| {
        let (tx, tg, tb) = (t(&gpu, "x", x), t(&gpu, "g", g), t(&gpu, "b", b));
        let (ty, tst) = (z(&gpu, "y", m), z(&gpu, "stats", 2 * s.rows));
        gpu.run(&[ln::forward(&gpu, "ln", s, ln::EPS, &tx, &tg, &tb, &ty, &tst)]);
        dot(&f64s(&read(&gpu, &ty)), &dy)
    };
    let num = (loss(&xp, &gp, &bp) - loss(&xm, &gm, &bm)) / 2.0;
    let (_, _, dx, _, dg, db) = ln_gpu(&gpu, s, ln::EPS, (&x, &g, &b, &dy, &vec![0.0; m]));
    let ana = dot(&f64s(&dx), &sx) + dot(&f64s(&dg), &sg) + dot(&f64s(&db), &sb);
    assert!((num - ana).abs() <= 1e-3 * ana.abs() + 1e-5, "layernorm: directional FD {num} vs backward {ana}");
}

// ---------------------------------------------------------------- NaN, big grids

#[test]
fn nan_in_the_input_reaches_the_output() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(9);
    // GELU: only the NaN element.
    let mut x = rng.vec(300);
    x[123] = f64::NAN;
    let (tx, ty) = (t(&gpu, "x", &x), z(&gpu, "y", 300));
    gpu.run(&[elementwise::gelu(&gpu, "gelu", &tx, &ty)]);
    let y = read(&gpu, &ty);
    assert!(y[123].is_nan(), "gelu(NaN) = {}", y[123]);
    assert!(y.iter().enumerate().all(|(i, v)| i == 123 || v.is_finite()));

    // Softmax: a NaN at (row 9, column 2) spoils its whole row (through the max and the sum),
    // causal: only the unmasked part; masked entries stay 0 and the other rows stay finite.
    let (rows, n) = (20, 8);
    let mut x = rng.vec(rows * n);
    x[9 * n + 2] = f64::NAN; // row 9 is query 1 of its block: column 2 masked when causal
    x[4 * n + 3] = f64::NAN; // row 4 is query 4: column 3 unmasked
    for causal in [false, true] {
        let (tx, ty) = (t(&gpu, "x", &x), z(&gpu, "y", rows * n));
        gpu.run(&[softmax::forward(&gpu, "sm", (rows, n), causal, &tx, &ty)]);
        let y = read(&gpu, &ty);
        for r in 0..rows {
            for j in 0..n {
                let v = y[r * n + j];
                let masked = causal && j > r % n;
                let nan_row = if causal { r == 4 } else { r == 4 || r == 9 };
                if masked {
                    assert_eq!(v, 0.0, "causal={causal}: masked ({r},{j}) = {v}");
                } else if nan_row {
                    assert!(v.is_nan(), "causal={causal}: ({r},{j}) = {v}, want NaN");
                } else {
                    assert!(v.is_finite(), "causal={causal}: ({r},{j}) = {v}");
                }
            }
        }
    }

    // LayerNorm: the row with the NaN, its statistics, nothing else.
    let s = LnShape { rows: 5, dim: 33 };
    let mut x = rng.vec(s.rows * s.dim);
    x[2 * s.dim + 7] = f64::NAN;
    let (tx, tg, tb) = (t(&gpu, "x", &x), t(&gpu, "g", &rng.vec(s.dim)), t(&gpu, "b", &rng.vec(s.dim)));
    let (ty, tst) = (z(&gpu, "y", s.rows * s.dim), z(&gpu, "stats", 2 * s.rows));
    gpu.run(&[ln::forward(&gpu, "ln", s, ln::EPS, &tx, &tg, &tb, &ty, &tst)]);
    let (y, st) = (read(&gpu, &ty), read(&gpu, &tst));
    for r in 0..s.rows {
        let row = &y[r * s.dim..(r + 1) * s.dim];
        if r == 2 {
            assert!(row.iter().all(|v| v.is_nan()) && st[4].is_nan() && st[5].is_nan(), "layernorm NaN row");
        } else {
            assert!(row.iter().all(|v| v.is_finite()) && st[2 * r].is_finite(), "layernorm row {r}");
        }
    }
}

/// Past 65,535 workgroups the row kernels fold their grid into y. Softmax over rows of
/// length 1 packs 256 rows per workgroup, the cheapest way there (16.8 M rows, 67 MB):
/// every row must come out 1 (the output starts at 0, so a row no workgroup reached shows).
/// LayerNorm uses the same row grid (`softmax::row_grid`).
#[test]
fn row_grid_folds_past_65535_workgroups() {
    let Some(gpu) = test_gpu() else { return };
    let rows = 65_535 * 256 + 300;
    let tx = Tensor::from_slice(&gpu, "x", &[rows], &vec![0.25f32; rows]).unwrap();
    let ty = z(&gpu, "y", rows);
    let d = softmax::forward(&gpu, "sm", (rows, 1), false, &tx, &ty);
    assert!(d.groups.y > 1, "grid {} does not fold", d.groups);
    gpu.run(&[d]);
    let y = read(&gpu, &ty);
    let bad = y.iter().position(|&v| v != 1.0);
    assert!(bad.is_none(), "row {:?} = {}", bad, bad.map_or(0.0, |i| y[i]));
}
