//! Flint's control plane: the reconciler that turns Functions into revisions,
//! the autoscaler that is the only writer of replica counts, and the trace
//! simulator that replays invocation traces through the autoscaler.
//! [`process`] assembles them into `flint operator`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod autoscaler;
pub mod image;
pub mod leader;
pub mod process;
pub mod reconcile;
pub mod schedule;
pub mod sim;
pub mod telemetry;
