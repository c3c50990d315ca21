//! Cluster mode: the gateway's routes from watching Functions, its replicas
//! from watching the EndpointSlices labelled `flint.dev/revision`.

pub(crate) mod cluster;
pub mod translate;
mod watch;

pub use cluster::{ClusterError, ClusterOptions, run_cluster};
pub use watch::{WatchError, run};
