//! Every backward reference against central finite differences of its forward, in f64.
//! The GPU backward kernels are then held to these references (tests/ops_*.rs).
//! Inputs keep away from kinks (ReLU at 0, ties in max-pool).

mod common;
use common::Rng;
use cuttle::ops::batchnorm::{cpu as bn, BnShape};
use cuttle::ops::gemm::{cpu as gemm, ConvShape, Layout};
use cuttle::ops::loss::cpu as loss;
use cuttle::ops::pool::cpu as pool;

const H: f64 = 1e-6;

/// Checks d/dx of L(x) = Σ f(x)·dy against `analytic` at every coordinate of x.
fn check(what: &str, x: &[f64], dy: &[f64], f: impl Fn(&[f64]) -> Vec<f64>, analytic: &[f64]) {
    let mut xp = x.to_vec();
    for i in 0..x.len() {
        xp[i] = x[i] + H;
        let lp: f64 = f(&xp).iter().zip(dy).map(|(a, b)| a * b).sum();
        xp[i] = x[i] - H;
        let lm: f64 = f(&xp).iter().zip(dy).map(|(a, b)| a * b).sum();
        xp[i] = x[i];
        let num = (lp - lm) / (2.0 * H);
        let err = (num - analytic[i]).abs();
        assert!(
            err <= 1e-6 + 1e-5 * num.abs(),
            "{what}: d/dx[{i}] numeric {num} analytic {} (error {err})",
            analytic[i]
        );
    }
}

#[test]
fn conv_backward_matches_finite_differences() {
    let mut rng = Rng(1);
    for s in [
        ConvShape { batch: 2, c_in: 2, h_in: 5, w_in: 4, c_out: 3, kh: 3, kw: 3, stride: 1, pad: 1 },
        ConvShape { batch: 1, c_in: 3, h_in: 6, w_in: 5, c_out: 2, kh: 3, kw: 2, stride: 2, pad: 1 },
        ConvShape { batch: 2, c_in: 2, h_in: 4, w_in: 4, c_out: 3, kh: 1, kw: 1, stride: 2, pad: 0 },
    ] {
        let x = rng.vec(s.input_shape().iter().product());
        let w = rng.vec(s.weight_shape().iter().product());
        let dy = rng.vec(s.output_shape().iter().product());
        let (dx, dw) = gemm::conv_backward(&s, &x, &w, &dy);
        check("conv dx", &x, &dy, |x| gemm::conv_forward(&s, x, &w), &dx);
        check("conv dw", &w, &dy, |w| gemm::conv_forward(&s, &x, w), &dw);
    }
}

#[test]
fn linear_backward_matches_finite_differences() {
    // y (B,out) = x (B,in) · Wᵀ + b; dx = dy·W, dW = dyᵀ·x, db = Σ_rows dy.
    let mut rng = Rng(2);
    let (b, i, o) = (3, 5, 4);
    let (x, w, bias, dy) = (rng.vec(b * i), rng.vec(o * i), rng.vec(o), rng.vec(b * o));
    let fwd = |x: &[f64], w: &[f64], bias: &[f64]| gemm::matmul(Layout::ABt, (b, i, o), x, w, Some(bias));
    let dx = gemm::matmul(Layout::AB, (b, o, i), &dy, &w, None);
    let dw = gemm::matmul(Layout::AtB, (o, b, i), &dy, &x, None);
    let db: Vec<f64> = (0..o).map(|j| (0..b).map(|r| dy[r * o + j]).sum()).collect();
    check("linear dx", &x, &dy, |x| fwd(x, &w, &bias), &dx);
    check("linear dw", &w, &dy, |w| fwd(&x, w, &bias), &dw);
    check("linear db", &bias, &dy, |bb| fwd(&x, &w, bb), &db);
}

#[test]
fn batchnorm_backward_matches_finite_differences() {
    let mut rng = Rng(3);
    let s = BnShape { batch: 3, channels: 2, hw: 5 };
    let x = rng.vec(30);
    let (gamma, beta, dy) = (rng.vec(2), rng.vec(2), rng.vec(30));
    let (dx, dg, db) = bn::backward(s, &x, &gamma, &dy);
    check("bn dx", &x, &dy, |x| bn::forward(s, x, &gamma, &beta).0, &dx);
    check("bn dgamma", &gamma, &dy, |g| bn::forward(s, &x, g, &beta).0, &dg);
    check("bn dbeta", &beta, &dy, |b| bn::forward(s, &x, &gamma, b).0, &db);
}

#[test]
fn pools_backward_match_finite_differences() {
    let mut rng = Rng(4);
    let shape = (3, 4, 6);
    // Distinct values, far apart relative to H: no ties inside a window.
    let mut x: Vec<f64> = (0..72).map(|i| i as f64 * 0.01).collect();
    for i in (1..x.len()).rev() {
        x.swap(i, rng.below(i + 1));
    }
    let dy = rng.vec(3 * 2 * 3);
    check("maxpool dx", &x, &dy, |x| pool::max_forward(shape, x), &pool::max_backward(shape, &x, &dy));
    let dy = rng.vec(3);
    check("avgpool dx", &x, &dy, |x| pool::avg_forward(shape, x), &pool::avg_backward(shape, &dy));
}

#[test]
fn cross_entropy_gradient_matches_finite_differences() {
    let mut rng = Rng(5);
    let (b, k) = (4, 5);
    let logits: Vec<f64> = rng.vec(b * k).iter().map(|v| v * 3.0).collect();
    let labels = [0u32, 4, 2, 2];
    // Plain, and with PyTorch's label smoothing (target (1-ε)·onehot + ε/K).
    for (valid, eps) in [(4, 0.0), (3, 0.0), (4, 0.1), (3, 0.3)] {
        let (_, _, d) = loss::cross_entropy(k, valid, eps, &logits, &labels);
        let f = |l: &[f64]| vec![loss::cross_entropy(k, valid, eps, l, &labels).0];
        check(&format!("cross-entropy (ε = {eps})"), &logits, &[1.0], f, &d);
    }
}
