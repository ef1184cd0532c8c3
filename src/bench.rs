//! `cuttle bench`: benchmarks that print one JSON object per measurement.
//! - `matmul`: f32 GFLOP/s of the tiled GEMM on square and low-rank shapes, median of
//!   repeated runs after warm-up, with sampled entries checked against the CPU.
//! - `train`: images/s and step time of a model's full training step on synthetic data,
//!   plus the GPU memory the plan allocates.
//!
//! (Part of the binary, not the library: it only drives public APIs.)

pub fn run(_adapter: &Option<String>, _a: BenchArgs) -> Result<(), cuttle::Error> {
    Err(cuttle::Error::Config("bench: not built yet".into()))
}

#[derive(clap::Args)]
pub struct BenchArgs {}
