//! Cluster mode: the gateway's routes from watching Functions, its replicas
//! from watching the EndpointSlices labelled `flint.dev/revision`, and the
//! other gateways from its own admin Service's EndpointSlices, and the
//! Secrets Functions name for their auth and TLS.

pub(crate) mod cluster;
pub mod peers;
pub mod secrets;
pub mod translate;
mod watch;

pub use cluster::{ClusterError, ClusterOptions, run_cluster};
pub use watch::{WatchError, run};
