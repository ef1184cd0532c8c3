//! Cuttlefish low-rank training (Wang et al., MLSys 2023): stable ranks on the GPU
//! (`srank`), the convergence test and rank rule (`tracker`), and the switch to factorized
//! layers (`factorize`). `run` ties them to the trainer.

pub mod factorize;
pub mod run;
pub mod srank;
pub mod tracker;

pub use run::{Cuttlefish, CuttlefishConfig, FactorizeMode, SwitchReport};
