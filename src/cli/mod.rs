//! The parts of the `cuttle` binary beyond argument dispatch: train options and config
//! files, run directories and their plots, benchmarks.

pub mod bench;
pub mod config;
pub mod rundir;
