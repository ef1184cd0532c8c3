//! The one pseudo-random generator of the host side: SplitMix64 (Steele, Lea and Flood
//! 2014). Integer-only, so shuffles and weight initialisations are identical on every
//! platform for the same seed. (GPU-side randomness, for augmentation, is a counter-based
//! hash in augment.wgsl.)

/// SplitMix64's output function: a bijective avalanche mix of 64 bits.
pub fn mix64(mut z: u64) -> u64 {
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

pub struct SplitMix64 {
    pub state: u64,
}

impl SplitMix64 {
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        mix64(self.state)
    }

    /// Uniform in [0, bound), without modulo bias: Lemire's multiply-shift with
    /// rejection (Lemire 2019, "Fast random integer generation in an interval").
    pub fn below(&mut self, bound: u64) -> u64 {
        debug_assert!(bound > 0);
        let threshold = bound.wrapping_neg() % bound;
        loop {
            let m = self.next_u64() as u128 * bound as u128;
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    /// Uniform in [0, 1) with 53 random bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}
