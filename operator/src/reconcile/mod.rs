//! The reconciler: Function → revisions, Deployments, Services and status.
//!
//! Pure parts — [`hash`] (revision identity), [`revision`] (reading what
//! exists), [`desired`] (`desired_objects`), [`traffic`], [`status`] (with the
//! condition types and reasons of [`condition`]),
//! [`notices`] (which Events), [`objects`] and [`security`] (a revision's
//! Deployment and Service, its pods' security contexts) — are separate from the I/O in [`controller`],
//! which reads what exists ([`observe`], from the watches' index in
//! [`cache`]), applies with server-side apply (field manager
//! `flint-operator`) what is not already right ([`applied`]), writes the
//! status when it changed and publishes Events; [`cleanup`]
//! deletes old revisions, only objects the Function owns; [`pin`] resolves a
//! new revision's image tag to a digest before it is cut. [`render`]
//! prints what would be created, for schema validation. The process
//! that runs the reconciler is `crate::process`.

pub mod applied;
pub mod backoff;
pub mod cache;
pub mod cleanup;
pub mod condition;
pub mod controller;
pub mod desired;
pub mod error;
pub mod hash;
pub mod metrics;
pub mod notices;
pub mod objects;
pub mod observe;
pub mod pin;
pub mod render;
pub mod revision;
pub mod security;
pub mod status;
pub mod traffic;

pub use controller::{Context, reconcile, run_controller};
pub use desired::{DesiredError, DesiredState, LatestRevision, desired_objects};
pub use error::Error;
pub use revision::{ExistingRevision, RevisionHealth, ServingSettings, observe_revisions};
