//! The parts of the `cuttle` binary beyond argument dispatch: `train` (its options and
//! config files, its run directory and plots, what it prints), loading a run back for
//! `--resume`, `eval`, `export` and `sample`, benchmarks, the demo page's server.

pub mod bench;
pub mod config;
pub mod inspect;
pub mod load;
pub mod progress;
pub mod rundir;
pub mod sample;
pub mod serve;
pub mod train;
