//! Models: a graph description (`graph`), the model zoo (`models`), the flat parameter
//! store (`params`), one file per planned layer kind (`layers`) and the GPU plan that
//! groups a graph's nodes into layers and runs them forward and backward (`net`).

pub mod graph;
pub mod layers;
pub mod models;
pub mod net;
pub mod params;

pub use graph::Graph;
pub use net::Net;
