//! The parts of the `cuttle` binary beyond argument dispatch: train options and config
//! files, run directories and their plots, benchmarks, the demo page's server.

pub mod bench;
pub mod config;
pub mod rundir;
pub mod sample;
pub mod serve;
