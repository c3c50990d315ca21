//! What others read of `flint dev`'s state: the gateway's routing table and
//! the status page's summary of each function, its revisions and traffic.

use flint_api::TrafficStatus;
use flint_api::backend::{FunctionAccess, FunctionRoute, RevisionKey, RevisionRoute};
use flint_operator::reconcile::RevisionHealth;

use super::{DevState, key};

impl DevState {
    /// The gateway's routing table.
    pub fn routes(&self) -> Vec<FunctionRoute> {
        self.functions
            .iter()
            .map(|((ns, name), state)| FunctionRoute {
                namespace: ns.clone(),
                name: name.clone(),
                revisions: state
                    .revisions
                    .iter()
                    .map(|r| RevisionRoute {
                        name: r.existing.name.clone(),
                        concurrency: r.serving.concurrency,
                        timeout_seconds: r.serving.timeout_seconds,
                        protocol: r.serving.protocol,
                        // The reason alone: the gateway's answer names the
                        // revision itself.
                        failure: match &r.existing.health {
                            RevisionHealth::Failed { message, .. } => Some(message.clone()),
                            _ => None,
                        },
                        // Local replicas are given to the gateway once their
                        // own probe passed.
                        probe_starting: false,
                    })
                    .collect(),
                traffic: state.traffic.clone(),
                access: FunctionAccess {
                    visibility: state.spec.visibility,
                    auth: state.spec.auth.clone(),
                    domains: state.spec.domains.clone(),
                    tls: state.spec.tls.clone(),
                    created: Some(state.created.clone()),
                },
            })
            .collect()
    }

    /// One line per function and revision, for the status page.
    pub fn describe(&self) -> Vec<FunctionSummary> {
        self.functions
            .iter()
            .map(|((ns, name), state)| FunctionSummary {
                namespace: ns.clone(),
                name: name.clone(),
                traffic: describe(&state.traffic),
                traffic_error: state.traffic_error.clone(),
                revisions: state
                    .revisions
                    .iter()
                    .map(|r| {
                        let health = match &r.existing.health {
                            RevisionHealth::Ready => "ready".to_owned(),
                            RevisionHealth::Deploying => "deploying".to_owned(),
                            RevisionHealth::Failed { message, .. } => format!("failed: {message}"),
                        };
                        (key(ns, &r.existing.name), health)
                    })
                    .collect(),
            })
            .collect()
    }
}

/// A function as the status page shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FunctionSummary {
    /// Namespace.
    pub namespace: String,
    /// Name.
    pub name: String,
    /// The traffic split, e.g. `90% hello-00002, 10% hello-00001 (previous)`.
    pub traffic: String,
    /// Why the split could not be updated, if so.
    pub traffic_error: Option<String>,
    /// Each revision and its health.
    pub revisions: Vec<(RevisionKey, String)>,
}

/// A traffic split in words, e.g. `90% hello-00002, 10% hello-00001 (previous)`.
pub(super) fn describe(traffic: &[TrafficStatus]) -> String {
    if traffic.is_empty() {
        return "none".into();
    }
    traffic
        .iter()
        .map(|t| match &t.tag {
            Some(tag) => format!("{}% {} ({tag})", t.percent, t.revision_name),
            None => format!("{}% {}", t.percent, t.revision_name),
        })
        .collect::<Vec<_>>()
        .join(", ")
}
