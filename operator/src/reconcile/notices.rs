//! Which Kubernetes Events a reconcile publishes on the Function: one per
//! user-visible transition (revision created, ready, failed, deleted; traffic
//! target missing; scaled to zero), found by comparing the previous status
//! with the new one. Pure; the controller publishes them.

use flint_api::FunctionStatus;

use super::condition::{ConditionStatus, ConditionType, Reason};
use super::desired::DesiredState;

/// One Event to publish on the Function.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notice {
    /// Warning (true) or Normal.
    pub warning: bool,
    /// PascalCase reason shown by `kubectl describe`.
    pub reason: &'static str,
    /// What the operator did or saw (PascalCase).
    pub action: &'static str,
    /// The sentence shown to the user.
    pub note: String,
}

fn normal(reason: &'static str, action: &'static str, note: String) -> Notice {
    Notice {
        warning: false,
        reason,
        action,
        note,
    }
}

/// The Events for the change from `previous` to `next`.
pub fn transitions(
    previous: Option<&FunctionStatus>,
    next: &FunctionStatus,
    desired: &DesiredState,
) -> Vec<Notice> {
    let mut out = Vec::new();
    if desired.latest.created {
        out.push(normal(
            "RevisionCreated",
            "CreateRevision",
            format!("created revision {}", desired.latest.name),
        ));
    }
    let before = |name: &str| previous.and_then(|p| p.revisions.iter().find(|r| r.name == name));
    for rev in next.revisions.iter().rev() {
        let old = before(&rev.name);
        if rev.ready && !old.is_some_and(|o| o.ready) {
            out.push(normal(
                "RevisionReady",
                "ObserveRevision",
                format!("revision {} is ready", rev.name),
            ));
        }
        let failed = !rev.ready
            && rev
                .reason
                .as_deref()
                .is_some_and(|r| !Reason::RevisionDeploying.is(r));
        if failed && old.is_none_or(|o| o.reason != rev.reason) {
            out.push(Notice {
                warning: true,
                reason: "RevisionFailed",
                action: "ObserveRevision",
                note: format!(
                    "revision {} failed ({}): {}",
                    rev.name,
                    rev.reason.as_deref().unwrap_or_default(),
                    rev.message.as_deref().unwrap_or_default()
                ),
            });
        }
    }
    for name in &desired.delete {
        out.push(normal(
            "RevisionDeleted",
            "DeleteRevision",
            format!(
                "deleted revision {name}: it carries no traffic and is beyond revisionHistoryLimit"
            ),
        ));
    }
    let routes_false = |s: &FunctionStatus| {
        s.conditions
            .iter()
            .find(|c| {
                c.type_ == ConditionType::RoutesReady.as_str()
                    && c.status == ConditionStatus::False.as_str()
            })
            .map(|c| (c.reason.clone(), c.message.clone()))
    };
    if let Some((reason, message)) = routes_false(next)
        && previous.and_then(routes_false).map(|p| p.0) != Some(reason.clone())
    {
        out.push(Notice {
            warning: true,
            reason: if Reason::TrafficTargetNotFound.is(&reason) {
                Reason::TrafficTargetNotFound.as_str()
            } else {
                Reason::NoReadyRevision.as_str()
            },
            action: "ResolveTraffic",
            note: message,
        });
    }
    // A new revision held back because its image could not be resolved:
    // once per generation, not on every retry.
    let held = |s: &FunctionStatus| {
        s.conditions
            .iter()
            .find(|c| {
                c.type_ == ConditionType::ConfigurationsReady.as_str()
                    && Reason::ImageResolutionFailed.is(&c.reason)
            })
            .map(|c| (c.observed_generation, c.message.clone()))
    };
    if let Some((generation, message)) = held(next)
        && previous.and_then(held).map(|p| p.0) != Some(generation)
    {
        out.push(Notice {
            warning: true,
            reason: Reason::ImageResolutionFailed.as_str(),
            action: "ResolveImage",
            note: message,
        });
    }
    let was_up = previous.and_then(|p| p.replicas).is_some_and(|n| n > 0);
    if was_up && next.replicas == Some(0) {
        out.push(normal(
            "ScaledToZero",
            "ObserveScale",
            "no replica is running; the next request starts one".to_owned(),
        ));
    }
    out
}
