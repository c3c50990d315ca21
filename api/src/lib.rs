//! Flint's API: the `Function` custom resource, its defaults and validation,
//! and the names every component shares (labels, metrics, hosts, the
//! scale-from-zero poke). This crate does no I/O; the operator, the runtime
//! and `flint dev` all build on it.
#![forbid(unsafe_code)]
#![warn(missing_docs)]
#![cfg_attr(
    not(test),
    deny(clippy::unwrap_used, clippy::expect_used, clippy::panic)
)]

pub mod backend;
pub mod crd;
pub mod defaults;
pub mod domains;
pub mod drain;
pub mod duration;
pub mod function;
pub mod manifest;
pub mod metrics;
pub mod names;
pub mod pod;
pub mod poke;
pub mod rbac;
pub mod revision_plan;
pub mod sync;
pub mod validate;

/// The Kubernetes API types a Function embeds (containers, probes,
/// environment sources), for code that reads those fields.
pub use k8s_openapi;

pub use duration::Duration;
pub use function::{
    AsyncSpec, Function, FunctionSpec, FunctionStatus, FunctionVolume, KeepAlive, KeepAliveStatus,
    Protocol, RevisionImage, RevisionStatus, ScaleMetric, ScaleSpec, Schedule, ScheduleMethod,
    TrafficStatus, TrafficTarget,
};
pub use manifest::{ManifestError, parse_functions};
pub use revision_plan::{PlanError, PlanRevision, PlanSpec, RevisionPlan, plan_revisions};
pub use validate::{FieldError, ValidationErrors, validate};
