//! Cluster mode: the gateway's routes from watching Functions, its replicas
//! from watching the EndpointSlices labelled `flint.dev/revision`.

pub mod translate;
mod watch;

pub use watch::{WatchError, run};
