//! Helpers shared by the integration tests: a seeded generator and the tolerance check.
#![allow(dead_code)]

/// SplitMix64: tiny, seeded, the same on every platform.
pub struct Rng(pub u64);

impl Rng {
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in [-1, 1).
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0
    }
    pub fn vec(&mut self, n: usize) -> Vec<f64> {
        (0..n).map(|_| self.uniform()).collect()
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn f32s(v: &[f64]) -> Vec<f32> {
    v.iter().map(|&x| x as f32).collect()
}

pub fn f64s(v: &[f32]) -> Vec<f64> {
    v.iter().map(|&x| x as f64).collect()
}

/// Passes when |got - want| <= atol + rtol*|want| everywhere; NaN or Inf always fails.
/// On failure names the index, both values and the largest error.
pub fn assert_close(what: &str, got: &[f32], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    let mut worst = (0usize, 0.0f64);
    let mut first_bad = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let g = g as f64;
        let err = (g - w).abs();
        if !g.is_finite() || !w.is_finite() || err > atol + rtol * w.abs() {
            first_bad.get_or_insert(i);
        }
        // NaN compares false: make it the worst.
        if err.is_nan() || err > worst.1 {
            worst = (i, err);
        }
    }
    if let Some(i) = first_bad {
        panic!(
            "{what}: mismatch at index {i}: got {} want {}; largest error {} at index {} (got {} want {})",
            got[i], want[i], worst.1, worst.0, got[worst.0], want[worst.0]
        );
    }
}
