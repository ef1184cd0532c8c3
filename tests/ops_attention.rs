//! The fused attention kernels (`ops::attention`): the f64 CPU backward against central
//! finite differences of the CPU forward; the CPU forward against the layer's own f64
//! reference; the GPU forward (output and probabilities) and backward (accumulate on and
//! off) against the CPU at the sequence lengths vision transformers use and at shapes that
//! are not multiples of the workgroup; bit-identical reruns; NaN propagation.

mod common;
use common::*;
use cuttle::gpu::{read_f32, test_gpu, Gpu, Tensor};
use cuttle::nn::layers::attention as layer;
use cuttle::ops::attention::{self as attn, AttnShape};

fn t(gpu: &Gpu, name: &str, v: &[f64]) -> Tensor {
    Tensor::from_slice(gpu, name, &[v.len()], &f32s(v)).unwrap()
}
fn z(gpu: &Gpu, name: &str, n: usize) -> Tensor {
    Tensor::zeros(gpu, name, &[n]).unwrap()
}
fn read(gpu: &Gpu, x: &Tensor) -> Vec<f32> {
    pollster::block_on(read_f32(gpu, &[x])).unwrap().remove(0)
}
fn shape(batch: usize, tokens: usize, heads: usize, head_dim: usize, causal: bool) -> AttnShape {
    AttnShape { batch, tokens, heads, head_dim, causal }
}
/// Inputs in [-1.5, 1.5): scores of a few units, probabilities far from one-hot.
fn qkv_for(rng: &mut Rng, s: AttnShape) -> Vec<f64> {
    rng.vec(s.qkv_len()).iter().map(|v| 1.5 * v).collect()
}
fn assert_close64(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let err = |i: usize| (got[i] - want[i]).abs();
    let bad =
        (0..got.len()).find(|&i| !got[i].is_finite() || !want[i].is_finite() || err(i) > atol + rtol * want[i].abs());
    if let Some(i) = bad {
        let worst = (0..got.len()).max_by(|&a, &b| err(a).total_cmp(&err(b))).unwrap();
        panic!(
            "{what}: mismatch at index {i}: got {} want {}; largest error {} at {worst}",
            got[i],
            want[i],
            err(worst)
        );
    }
}

// ---------------------------------------------------------------- CPU references

#[test]
fn reference_backward_matches_finite_differences() {
    let mut rng = Rng(11);
    for s in [shape(1, 5, 2, 3, false), shape(2, 4, 1, 4, true), shape(1, 1, 1, 2, false), shape(1, 6, 2, 2, true)] {
        let qkv = qkv_for(&mut rng, s);
        let dout = rng.vec(s.out_len());
        let loss = |x: &[f64]| attn::cpu::forward(s, x).0.iter().zip(&dout).map(|(a, b)| a * b).sum::<f64>();
        let h = 1e-5;
        let mut x = qkv.clone();
        let num: Vec<f64> = (0..x.len())
            .map(|i| {
                let x0 = x[i];
                x[i] = x0 + h;
                let lp = loss(&x);
                x[i] = x0 - h;
                let lm = loss(&x);
                x[i] = x0;
                (lp - lm) / (2.0 * h)
            })
            .collect();
        let got = attn::cpu::backward(s, &qkv, &dout);
        assert_close64(&format!("{s:?} dqkv vs FD"), &got, &num, 1e-8, 1e-6);
    }
}

#[test]
fn reference_forward_matches_the_layer_reference() {
    let mut rng = Rng(12);
    for s in [shape(2, 7, 3, 5, false), shape(2, 7, 3, 5, true), shape(1, 17, 4, 16, true)] {
        let qkv = qkv_for(&mut rng, s);
        let (out, probs) = attn::cpu::forward(s, &qkv);
        let want = layer::cpu::forward(s.batch, s.tokens, s.heads, s.head_dim, s.causal, &qkv);
        assert_close64(&format!("{s:?} out"), &out, &want, 1e-12, 1e-12);
        // Every probability row sums to one; masked entries are zero.
        for (r, row) in probs.chunks(s.tokens).enumerate() {
            let sum: f64 = row.iter().sum();
            assert!((sum - 1.0).abs() < 1e-12, "{s:?} row {r} sums to {sum}");
            let i = r % s.tokens;
            assert!(!s.causal || row[i + 1..].iter().all(|&p| p == 0.0), "{s:?} row {r}: masked entry");
        }
    }
}

#[test]
fn fits_bounds() {
    assert!(attn::fused_fits(shape(64, 17, 4, 16, false)));
    assert!(attn::fused_fits(shape(8, 197, 3, 64, true)));
    assert!(attn::fused_fits(shape(1, 1024, 1, 1, false)));
    assert!(!attn::fused_fits(shape(1, 17, 4, 65, false)));
    assert!(!attn::fused_fits(shape(1, 1025, 4, 16, false)));
    assert!(!attn::fused_fits(shape(0, 17, 4, 16, false)));
}

// ---------------------------------------------------------------- GPU against the CPU

/// T covers 1, primes, the ViT lengths (17, 65, 197) and 257 (past a multiple of the
/// 64-row workgroup); d covers odd and the 64 maximum.
const SHAPES: &[(usize, usize, usize, usize, bool)] = &[
    (1, 1, 1, 4, false),
    (2, 1, 3, 5, true),
    (3, 7, 3, 5, false),
    (2, 7, 4, 4, true),
    (3, 17, 4, 16, false),
    (1, 17, 3, 16, true),
    (1, 65, 3, 64, false),
    (2, 65, 1, 5, true),
    (1, 197, 1, 16, false),
    (1, 197, 3, 4, true),
    (1, 257, 1, 64, true),
    (1, 257, 4, 5, false),
];

#[test]
fn gpu_forward_matches_references() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(13);
    for &(b, tk, h, d, causal) in SHAPES {
        let s = shape(b, tk, h, d, causal);
        let qkv = qkv_for(&mut rng, s);
        let x = t(&gpu, "qkv", &qkv);
        let (out, probs) = (z(&gpu, "out", s.out_len()), t(&gpu, "probs", &vec![f64::NAN; s.probs_len()]));
        gpu.run([&attn::forward(&gpu, "attn", s, &x, &out, &probs)]);
        let (want_out, want_probs) = attn::cpu::forward(s, &qkv);
        // Sums of up to 257 products of f32s: a few ulps of the largest terms.
        assert_close(&format!("{s:?} out"), &read(&gpu, &out), &want_out, 2e-5, 1e-4);
        // Every entry, masked ones too (the buffer started as NaN), is written.
        assert_close(&format!("{s:?} probs"), &read(&gpu, &probs), &want_probs, 1e-6, 1e-4);
        let want = layer::cpu::forward(b, tk, h, d, causal, &qkv);
        assert_close(&format!("{s:?} out vs layer reference"), &read(&gpu, &out), &want, 2e-5, 1e-4);
    }
}

#[test]
fn gpu_backward_matches_reference() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(14);
    for (n, &(b, tk, h, d, causal)) in SHAPES.iter().enumerate() {
        let s = shape(b, tk, h, d, causal);
        let accumulate = n % 2 == 1;
        let qkv = qkv_for(&mut rng, s);
        let dout = rng.vec(s.out_len());
        let init = rng.vec(s.qkv_len());
        let x = t(&gpu, "qkv", &qkv);
        let (out, probs) = (z(&gpu, "out", s.out_len()), z(&gpu, "probs", s.probs_len()));
        let g = t(&gpu, "dout", &dout);
        let dx = if accumulate { t(&gpu, "dqkv", &init) } else { t(&gpu, "dqkv", &vec![f64::NAN; s.qkv_len()]) };
        let scratch = t(&gpu, "scratch", &vec![f64::NAN; s.probs_len()]);
        let mut ds = vec![attn::forward(&gpu, "attn", s, &x, &out, &probs)];
        ds.extend(attn::backward(&gpu, "attn.backward", s, &x, &probs, &g, &dx, accumulate, &scratch));
        gpu.run(&ds);
        let mut want = attn::cpu::backward(s, &qkv, &dout);
        if accumulate {
            want.iter_mut().zip(&init).for_each(|(w, i)| *w += i);
        }
        // dS sums to zero over each row: dq and dk are differences of terms of about one,
        // so the absolute error is that of the terms, not of the (smaller) result.
        assert_close(&format!("{s:?} accumulate {accumulate} dqkv"), &read(&gpu, &dx), &want, 5e-5, 1e-3);
    }
}

#[test]
fn gpu_reruns_are_bit_identical() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(15);
    let s = shape(2, 65, 3, 16, false);
    let x = t(&gpu, "qkv", &qkv_for(&mut rng, s));
    let g = t(&gpu, "dout", &rng.vec(s.out_len()));
    let run = || {
        let (out, probs) = (z(&gpu, "out", s.out_len()), z(&gpu, "probs", s.probs_len()));
        let (dx, scratch) = (z(&gpu, "dqkv", s.qkv_len()), z(&gpu, "scratch", s.probs_len()));
        let mut ds = vec![attn::forward(&gpu, "attn", s, &x, &out, &probs)];
        ds.extend(attn::backward(&gpu, "attn.backward", s, &x, &probs, &g, &dx, false, &scratch));
        gpu.run(&ds);
        [read(&gpu, &out), read(&gpu, &probs), read(&gpu, &dx)]
            .map(|v| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>())
    };
    assert!(run() == run(), "two runs differ");
}

#[test]
fn gpu_nan_propagates() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(16);
    let s = shape(1, 9, 2, 4, false);
    let mut qkv = qkv_for(&mut rng, s);
    // K of token 3, head 0: every score of head 0 sees it; head 1 does not.
    qkv[(3 * 3 + 1) * s.dim()] = f64::NAN;
    let x = t(&gpu, "qkv", &qkv);
    let (out, probs) = (z(&gpu, "out", s.out_len()), z(&gpu, "probs", s.probs_len()));
    let g = t(&gpu, "dout", &rng.vec(s.out_len()));
    let (dx, scratch) = (z(&gpu, "dqkv", s.qkv_len()), z(&gpu, "scratch", s.probs_len()));
    let mut ds = vec![attn::forward(&gpu, "attn", s, &x, &out, &probs)];
    ds.extend(attn::backward(&gpu, "attn.backward", s, &x, &probs, &g, &dx, false, &scratch));
    gpu.run(&ds);
    let (o, dq) = (read(&gpu, &out), read(&gpu, &dx));
    for tk in 0..s.tokens {
        let row = &o[tk * s.dim()..][..s.dim()];
        assert!(row[..4].iter().all(|v| v.is_nan()), "token {tk}: head 0 output not NaN: {row:?}");
        assert!(row[4..].iter().all(|v| v.is_finite()), "token {tk}: head 1 output not finite: {row:?}");
        // The gradient of head 0's Q of every token is NaN.
        assert!(dq[tk * 3 * s.dim()].is_nan(), "token {tk}: dQ of head 0 not NaN");
    }
}
