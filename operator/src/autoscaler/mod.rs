//! The autoscaler: metrics sources, the pure `decide()`, keep-alive policies
//! and the runner that ticks every revision and writes through the actuator.

pub mod backlog;
pub mod cluster;
pub mod decide;
pub mod dormant;
pub mod drain;
pub mod explain;
pub mod keepalive;
pub mod kube_actuator;
pub mod metrics;
pub mod runner;
pub mod snapshot;
pub mod source;
pub mod state;
pub mod status_writer;
pub mod window;

pub use backlog::{Backlog, BacklogRoute};
pub use decide::{DecideConfig, Decision, Observation, Reason, ScaleState, decide};
pub use runner::{
    Autoscaler, AutoscalerConfig, AutoscalerError, AutoscalerHandle, KeepAliveReport, poke_router,
};
pub use window::{Sample, Window};
