//! Models: a graph description (`graph`), the model zoo (`models`), the flat parameter
//! store (`params`) and the GPU plan that runs a graph forward and backward (`net`).

pub mod graph;
pub mod layers;
pub mod models;
pub mod net;
pub mod params;

pub use graph::Graph;
pub use net::Net;
