//! Small element-wise passes (`shaders/elementwise.wgsl`): ReLU and GELU and their
//! gradients, the sum of two tensors (a standalone residual connection), adding one tensor
//! into another (merging the gradients of two branches). The split-K slice sum
//! and bias column sums live in the same shader and are built by `ops::gemm`.

pub use super::gemm::EwParams as Params;
use super::ACCUMULATE;
use crate::gpu::{grid_1d, Dispatch, Gpu, Tensor};

fn params(len: usize, accumulate: bool) -> Params {
    Params { len: len as u32, rows: 0, flags: if accumulate { ACCUMULATE } else { 0 }, _pad: 0 }
}

/// y = max(x, 0).   x, y: same length
pub fn relu(gpu: &Gpu, label: &str, x: &Tensor, y: &Tensor) -> Dispatch {
    Dispatch::new(gpu, label, ("elementwise", "relu"), &[], &params(x.len(), false), &[x, y], grid_1d(x.len(), 256))
}

/// dx (+)= dy · [y > 0], from the saved ReLU output y.
pub fn relu_backward(gpu: &Gpu, label: &str, y: &Tensor, dy: &Tensor, dx: &Tensor, accumulate: bool) -> Dispatch {
    let p = params(y.len(), accumulate);
    Dispatch::new(gpu, label, ("elementwise", "relu_backward"), &[], &p, &[y, dx, dy], grid_1d(y.len(), 256))
}

/// y = GELU(x) = x·Φ(x) = 0.5·x·(1 + erf(x/√2)), the exact (erf) form, PyTorch's default.
/// x, y: same length. In WGSL Φ comes from Numerical Recipes' `erfcc` Chebyshev fit,
/// relative error < 1.2e-7 for all x (also in the negative tail; see the shader).
pub fn gelu(gpu: &Gpu, label: &str, x: &Tensor, y: &Tensor) -> Dispatch {
    Dispatch::new(gpu, label, ("elementwise", "gelu"), &[], &params(x.len(), false), &[x, y], grid_1d(x.len(), 256))
}

/// dx (+)= dy · GELU'(x), from the saved input x, with GELU'(x) = Φ(x) + x·φ(x) (the same Φ
/// as the forward, the exact density φ).   x, dy, dx: same length
pub fn gelu_backward(gpu: &Gpu, label: &str, x: &Tensor, dy: &Tensor, dx: &Tensor, accumulate: bool) -> Dispatch {
    let p = params(x.len(), accumulate);
    Dispatch::new(gpu, label, ("elementwise", "gelu_backward"), &[], &p, &[x, dx, dy], grid_1d(x.len(), 256))
}

/// y (+)= x.
pub fn add(gpu: &Gpu, label: &str, x: &Tensor, y: &Tensor, accumulate: bool) -> Dispatch {
    let p = params(x.len(), accumulate);
    Dispatch::new(gpu, label, ("elementwise", "add"), &[], &p, &[x, y], grid_1d(x.len(), 256))
}

/// y = a + b.   a, b, y: same length
pub fn add_two(gpu: &Gpu, label: &str, a: &Tensor, b: &Tensor, y: &Tensor) -> Dispatch {
    let p = params(a.len(), false);
    Dispatch::new(gpu, label, ("elementwise", "add_two"), &[], &p, &[a, y, b], grid_1d(a.len(), 256))
}

/// f64 references. erf and erfc are computed here (no libm dependency): the positive-term
/// series erf(x) = 2/√π·e^(−x²)·Σₙ (2x²)ⁿ·x / (1·3·…·(2n+1)) (no cancellation) for |x| < 1,
/// and the Laplace continued fraction erfc(x) = e^(−x²)/√π · 1/(x + ½/(x + 1/(x + (3/2)/(x + …))))
/// evaluated bottom-up from depth 300 for x ≥ 1. Against 40-digit values (mpmath, x in
/// steps of 0.001): |erf error| ≤ 5e-16; erfc relative error ≤ 2e-15 for x ≤ 5 and ≤ 6e-14
/// out to x = 26 (where erfc leaves the normal f64 range), that growth being the rounding
/// of x² in e^(−x²), inherent to f64 input. The unit tests pin tabulated values.
pub mod cpu {
    use std::f64::consts::{FRAC_1_SQRT_2, PI};

    const TWO_OVER_SQRT_PI: f64 = std::f64::consts::FRAC_2_SQRT_PI;

    /// erf(x) by the positive-term series; used for |x| < 1 (≤ 25 terms).
    fn erf_series(x: f64) -> f64 {
        let x2 = x * x;
        let (mut term, mut sum) = (x, x);
        let mut n = 0.0;
        while term.abs() > 1e-17 * sum.abs() {
            n += 1.0;
            term *= 2.0 * x2 / (2.0 * n + 1.0);
            sum += term;
        }
        TWO_OVER_SQRT_PI * (-x2).exp() * sum
    }

    /// erfc(x) for x ≥ 1 by the continued fraction (depth 300 is converged to 5e-16 there).
    fn erfc_cf(x: f64) -> f64 {
        let mut f = x;
        for k in (1..=300).rev() {
            f = x + (k as f64 / 2.0) / f;
        }
        (-x * x).exp() / (PI.sqrt() * f)
    }

    pub fn erf(x: f64) -> f64 {
        if x.is_nan() {
            x
        } else if x.abs() < 1.0 {
            erf_series(x)
        } else {
            (1.0 - erfc_cf(x.abs())).copysign(x)
        }
    }

    /// 1 − erf(x), accurate relative to its own size in the tail.
    pub fn erfc(x: f64) -> f64 {
        if x.is_nan() {
            x
        } else if x >= 1.0 {
            erfc_cf(x)
        } else if x > -1.0 {
            1.0 - erf_series(x)
        } else {
            2.0 - erfc_cf(-x)
        }
    }

    /// Φ(x), the standard normal CDF.
    pub fn normal_cdf(x: f64) -> f64 {
        0.5 * erfc(-x * FRAC_1_SQRT_2)
    }

    /// GELU(x) = x·Φ(x).
    pub fn gelu(x: f64) -> f64 {
        x * normal_cdf(x)
    }

    /// GELU'(x) = Φ(x) + x·φ(x).
    pub fn gelu_grad(x: f64) -> f64 {
        normal_cdf(x) + x * (-0.5 * x * x).exp() / (2.0 * PI).sqrt()
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn erf_and_erfc_match_tabulated_values() {
            // (x, erf x, erfc x) to 17 digits.
            let table = [
                (0.5, 0.520_499_877_813_046_5, 0.479_500_122_186_953_5),
                (1.0, 0.842_700_792_949_714_9, 0.157_299_207_050_285_1),
                (1.5, 0.966_105_146_475_310_7, 0.033_894_853_524_689_27),
                (2.0, 0.995_322_265_018_952_7, 0.004_677_734_981_047_266),
                (3.0, 0.999_977_909_503_001_4, 2.209_049_699_858_544e-5),
                (5.0, 0.999_999_999_998_462_5, 1.537_459_794_428_035e-12),
                (10.0, 1.0, 2.088_487_583_762_545e-45),
            ];
            for (x, e, c) in table {
                assert!((erf(x) - e).abs() <= 1e-15, "erf({x}) = {} want {e}", erf(x));
                assert!((erf(-x) + e).abs() <= 1e-15, "erf(-{x})");
                assert!((erfc(x) - c).abs() <= 1e-14 * c, "erfc({x}) = {} want {c}", erfc(x));
                assert!((erfc(-x) - (2.0 - c)).abs() <= 1e-15, "erfc(-{x})");
            }
            // The two branches meet at 1 without a step: across it erfc moves by its slope
            // −2/√π·e^(−1) times the distance, to within rounding.
            let d = 1e-9;
            let slope = -TWO_OVER_SQRT_PI * (-1.0f64).exp();
            assert!((erfc(1.0 - d) - erfc(1.0) + slope * d).abs() < 5e-16, "step at 1");
            assert!((erf(1.0 - d) - erf(1.0) - slope * d).abs() < 5e-16, "step at 1");
            assert!(erf(f64::NAN).is_nan() && erfc(f64::NAN).is_nan());
        }

        #[test]
        fn gelu_hand_values() {
            assert_eq!(gelu(0.0), 0.0);
            assert!((gelu(1.0) - 0.841_344_746_068_542_9).abs() < 1e-15);
            assert!((gelu(-1.0) + 0.158_655_253_931_457_05).abs() < 1e-15);
            assert!((gelu_grad(0.0) - 0.5).abs() < 1e-15);
        }
    }
}
