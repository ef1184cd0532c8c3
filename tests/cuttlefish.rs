//! Cuttlefish pieces against exact references: the GPU stable rank against faer's SVD, and
//! the factorization (full rank reproduces the layer; rank r loses exactly the truncated
//! singular values).

mod common;
use common::*;
use cuttle::cuttlefish::factorize::{singular_values, svd_factors};
use cuttle::cuttlefish::srank::{RankProbe, Watched};
use cuttle::gpu::{read_f32, record_all, test_gpu, Tensor};
use cuttle::ops::gemm::{self, ConvShape};

/// A rows x cols matrix with singular values `s` (len = min(rows, cols)): Q1 diag(s) Q2ᵀ
/// with random orthonormal Q1, Q2 from QR.
fn with_singular_values(rng: &mut Rng, rows: usize, cols: usize, s: &[f64]) -> Vec<f32> {
    let k = rows.min(cols);
    let q = |n: usize, rng: &mut Rng| {
        let a = faer::Mat::<f64>::from_fn(n, k, |_, _| rng.uniform());
        a.qr().compute_thin_Q()
    };
    let (q1, q2) = (q(rows, rng), q(cols, rng));
    let mut w = vec![0.0f32; rows * cols];
    for i in 0..rows {
        for j in 0..cols {
            w[i * cols + j] = (0..k).map(|t| q1[(i, t)] * s[t] * q2[(j, t)]).sum::<f64>() as f32;
        }
    }
    w
}

#[test]
fn gpu_stable_rank_matches_exact_svd_within_one_percent() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(31);
    let mut mats: Vec<(String, usize, usize, Vec<f32>)> = Vec::new();
    // Random Gaussian-like (uniform) matrices of conv and linear shapes, some ragged.
    for &(r, c) in &[(16, 144), (32, 288), (64, 576), (10, 64), (37, 23), (128, 1152)] {
        mats.push((format!("random {r}x{c}"), r, c, rng.vec(r * c).iter().map(|&v| v as f32).collect()));
    }
    // Known spectra: a clear gap, a slow decay, and two nearly equal top values.
    let spectra: Vec<(usize, usize, Vec<f64>)> = vec![
        (20, 50, (0..20).map(|i| if i == 0 { 10.0 } else { 1.0 }).collect()),
        (40, 90, (0..40).map(|i| 1.0 / (1.0 + i as f64)).collect()),
        (30, 30, (0..30).map(|i| [5.0, 4.9][i.min(1)] * 0.97f64.powi(i as i32)).collect()),
    ];
    for (r, c, s) in spectra {
        let w = with_singular_values(&mut rng, r, c, &s);
        mats.push((format!("spectrum {r}x{c}"), r, c, w));
    }
    let mut flat = Vec::new();
    let mut watched = Vec::new();
    for (name, r, c, w) in &mats {
        watched.push(Watched { name: name.clone(), offset: flat.len(), rows: *r, cols: *c });
        flat.extend(w);
        flat.extend(std::iter::repeat_n(0.0, 7)); // offsets need not be aligned
    }
    let weights = Tensor::from_slice(&gpu, "weights", &[flat.len()], &flat).unwrap();
    let probe = RankProbe::new(&gpu, &weights, watched, 1).unwrap();
    let est = pollster::block_on(probe.estimate(&gpu, 1e-5, 2000)).unwrap();
    for ((name, r, c, w), e) in mats.iter().zip(&est) {
        let s = singular_values(w, *r, *c);
        let exact = s.iter().map(|x| x * x).sum::<f64>() / (s[0] * s[0]);
        let got = e.stable_rank();
        eprintln!("{name}: exact srank {exact:.4}, GPU {got:.4} after {} iterations", e.iterations);
        assert!((got - exact).abs() <= 0.01 * exact, "{name}: srank {got} vs exact {exact}");
    }
    // Warm start: a second call on unchanged weights settles in one or two rounds.
    let again = pollster::block_on(probe.estimate(&gpu, 1e-5, 2000)).unwrap();
    assert!(again[0].iterations <= 2 * cuttle::cuttlefish::srank::ROUND, "warm start took {}", again[0].iterations);
}

#[test]
fn factors_at_full_rank_reproduce_the_conv_and_truncation_loses_the_tail() {
    let Some(gpu) = test_gpu() else { return };
    let mut rng = Rng(32);
    let s = ConvShape { batch: 2, c_in: 5, h_in: 7, w_in: 6, c_out: 8, kh: 3, kw: 3, stride: 2, pad: 1 };
    let (rows, cols) = (s.c_out, s.c_in * 9);
    let w: Vec<f32> = rng.vec(rows * cols).iter().map(|&v| v as f32).collect();
    let x: Vec<f32> = rng.vec(s.input_shape().iter().product()).iter().map(|&v| v as f32).collect();
    let sv = singular_values(&w, rows, cols);
    for r in [rows, 3] {
        let (first, second) = svd_factors(&w, rows, cols, r).unwrap();
        // Weight level: ||W - second·first||_F² = Σ_{i>=r} σ_i².
        let mut err2 = 0.0;
        for i in 0..rows {
            for j in 0..cols {
                let p: f64 = (0..r).map(|k| second[i * r + k] as f64 * first[k * cols + j] as f64).sum();
                err2 += (w[i * cols + j] as f64 - p).powi(2);
            }
        }
        let tail: f64 = sv[r..].iter().map(|v| v * v).sum();
        assert!((err2 - tail).abs() <= 1e-5 * sv[0] * sv[0], "rank {r}: error² {err2} vs tail {tail}");
        // Output level on the GPU: conv(x, W) against conv1x1(conv(x, first), second).
        let su = ConvShape { c_out: r, ..s };
        let sv2 = ConvShape { c_in: r, h_in: s.h_out(), w_in: s.w_out(), kh: 1, kw: 1, stride: 1, pad: 0, ..s };
        let tx = Tensor::from_slice(&gpu, "x", &[x.len()], &x).unwrap();
        let tw = Tensor::from_slice(&gpu, "w", &[w.len()], &w).unwrap();
        let tf = Tensor::from_slice(&gpu, "first", &[first.len()], &first).unwrap();
        let ts = Tensor::from_slice(&gpu, "second", &[second.len()], &second).unwrap();
        let y_len: usize = s.output_shape().iter().product();
        let (y, h, y2) = (
            Tensor::zeros(&gpu, "y", &[y_len]).unwrap(),
            Tensor::zeros(&gpu, "h", &[su.output_shape().iter().product()]).unwrap(),
            Tensor::zeros(&gpu, "y2", &[y_len]).unwrap(),
        );
        let mut ds = gemm::conv_forward(&gpu, "full", &s, &tx, &tw, &y).unwrap();
        ds.extend(gemm::conv_forward(&gpu, "u", &su, &tx, &tf, &h).unwrap());
        ds.extend(gemm::conv_forward(&gpu, "v", &sv2, &h, &ts, &y2).unwrap());
        let mut enc = gpu.encoder("t");
        record_all(&mut enc, &ds);
        gpu.submit_and_wait(enc);
        let out = pollster::block_on(read_f32(&gpu, &[&y, &y2])).unwrap();
        let norm = out[0].iter().map(|v| (*v as f64).powi(2)).sum::<f64>().sqrt();
        let diff = out[0].iter().zip(&out[1]).map(|(a, b)| (*a as f64 - *b as f64).powi(2)).sum::<f64>().sqrt();
        if r == rows {
            assert!(diff / norm < 1e-4, "full-rank factors: relative output error {}", diff / norm);
        } else {
            assert!(diff / norm > 1e-3, "a truncated factorization must change the output");
        }
    }
}
