//! The Function's status, computed from the desired state and the observed
//! revisions. Pure: the clock comes in as `now`. Conditions keep their
//! `lastTransitionTime` while their status does not change.

use flint_api::domains::Conflict;
use flint_api::names::{function_host, tagged_host};
use flint_api::{Function, FunctionStatus, RevisionImage, RevisionStatus, ScaleSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{Condition, Time};
use k8s_openapi::jiff::Timestamp;

use super::condition::{ConditionStatus, ConditionType, Reason};
use super::desired::DesiredState;
use super::revision::{ExistingRevision, RevisionHealth, ServingSettings};
use super::traffic::TrafficError;

/// What the status is computed from.
#[derive(Debug, Clone, Copy)]
pub struct StatusInput<'a> {
    /// The Function (its previous status keeps condition transition times).
    pub function: &'a Function,
    /// The desired state computed for it.
    pub desired: &'a DesiredState,
    /// The revisions that exist.
    pub revisions: &'a [ExistingRevision],
    /// Cluster domain of Function hosts.
    pub domain: &'a str,
    /// The custom domains this Function asked for but does not get
    /// ([`flint_api::domains::claims`]).
    pub domain_conflicts: &'a [Conflict],
    /// The current time.
    pub now: Timestamp,
}

/// A condition before its transition time is settled.
struct Cond {
    type_: ConditionType,
    status: ConditionStatus,
    /// A reason the reconciler names, or a failed revision's own.
    reason: String,
    message: String,
}

/// Computes the Function's status.
pub fn compute_status(input: StatusInput<'_>) -> FunctionStatus {
    let StatusInput {
        function,
        desired,
        revisions,
        domain,
        domain_conflicts,
        now,
    } = input;
    let name = function.metadata.name.as_deref().unwrap_or_default();
    let namespace = function.metadata.namespace.as_deref().unwrap_or_default();
    let latest = &desired.latest;

    let mut statuses: Vec<RevisionStatus> = revisions
        .iter()
        .filter(|r| !desired.delete.contains(&r.name))
        .map(|r| RevisionStatus {
            scale: revision_scale(function, &latest.name, r),
            ..revision_status(r)
        })
        .collect();
    if latest.created {
        // The spec the Deployment being created is built from; later
        // reconciles read the same values back from its annotations.
        let serving = ServingSettings::of(&function.spec);
        statuses.push(RevisionStatus {
            name: latest.name.clone(),
            ready: false,
            replicas: 0,
            reason: Some(Reason::RevisionDeploying.as_str().to_owned()),
            message: Some("the revision was just created".to_owned()),
            concurrency: serving.concurrency,
            timeout_seconds: serving.timeout_seconds,
            protocol: serving.protocol,
            scale: serving.scale,
        });
    }
    statuses.sort_by(|a, b| b.name.cmp(&a.name));

    let latest_health = revisions
        .iter()
        .find(|r| r.name == latest.name)
        .map_or(RevisionHealth::Deploying, |r| r.health.clone());
    let configurations = configurations_ready(&latest.name, &latest_health);
    let routes = routes_ready(&desired.resolved, &latest_health);
    let ready = overall(&configurations, &routes);
    let previous = function.status.as_ref();
    let generation = function.metadata.generation;
    let domains = (!function.spec.domains.is_empty()).then(|| domains_ready(domain_conflicts));
    let conditions = [Some(ready), Some(configurations), Some(routes), domains]
        .into_iter()
        .flatten()
        .map(|c| settle(c, previous, generation, now))
        .collect();
    let scheme = if function.spec.tls.is_some() {
        "https"
    } else {
        "http"
    };

    let traffic = desired
        .traffic
        .iter()
        .cloned()
        .map(|mut t| {
            t.url = t
                .tag
                .as_deref()
                .map(|tag| format!("{scheme}://{}", tagged_host(tag, name, namespace, domain)));
            t
        })
        .collect();
    let kept = revisions
        .iter()
        .filter(|r| !desired.delete.contains(&r.name));
    let mut images: Vec<RevisionImage> = kept
        .clone()
        .filter_map(|r| {
            Some(RevisionImage {
                revision: r.name.clone(),
                image: r.image.clone()?,
            })
        })
        .collect();
    if latest.created
        && let Some(image) = desired.new_image()
    {
        images.push(RevisionImage {
            revision: latest.name.clone(),
            image: image.to_owned(),
        });
    }
    images.sort_by(|a, b| b.revision.cmp(&a.revision));
    FunctionStatus {
        observed_generation: generation,
        conditions,
        url: Some(format!(
            "{scheme}://{}",
            function_host(name, namespace, domain)
        )),
        latest_created_revision: Some(latest.name.clone()),
        latest_ready_revision: desired.latest_ready.clone(),
        traffic,
        revisions: statuses,
        replicas: Some(kept.clone().map(|r| r.ready_replicas).sum()),
        desired_replicas: Some(kept.map(|r| r.desired_replicas).sum()),
        images,
        // The autoscaler's, under its own field manager: left out here so
        // that this apply neither claims nor clears it.
        keep_alive: Vec::new(),
    }
}

/// The status while the new revision of the Function's spec is held back
/// because its image could not be resolved (`why`): `status`, computed from
/// the held desired state (see [`DesiredState::hold`]), with
/// ConfigurationsReady and Ready False for reason
/// [`Reason::ImageResolutionFailed`], and no latest created revision when none
/// exists. The revisions that exist, and the traffic, are as they were.
pub fn with_image_failure(
    mut status: FunctionStatus,
    function: &Function,
    why: &str,
    now: Timestamp,
) -> FunctionStatus {
    let generation = function.metadata.generation;
    let serving = status
        .latest_ready_revision
        .as_deref()
        .map_or_else(String::new, |r| format!("; revision {r} keeps serving"));
    let message = format!(
        "no revision was cut for generation {}: {}{serving}; retried with backoff",
        generation.unwrap_or_default(),
        clip(why, WHY_MAX_BYTES)
    );
    let previous = function.status.as_ref();
    for type_ in [ConditionType::Ready, ConditionType::ConfigurationsReady] {
        let condition = settle(
            Cond {
                type_,
                status: ConditionStatus::False,
                reason: Reason::ImageResolutionFailed.as_str().to_owned(),
                message: message.clone(),
            },
            previous,
            generation,
            now,
        );
        match status
            .conditions
            .iter_mut()
            .find(|c| c.type_ == type_.as_str())
        {
            Some(slot) => *slot = condition,
            None => status.conditions.push(condition),
        }
    }
    if status.revisions.is_empty() {
        status.latest_created_revision = None;
    }
    status
}

/// The longest reason a held revision's message quotes, in bytes: the
/// reason carries the registry's own words, and the message must fit an
/// Event's note (at most 1024 bytes) as well as the condition.
pub const WHY_MAX_BYTES: usize = 700;

/// `text` cut to at most `max` bytes on a character boundary, marked with
/// `…` when cut.
fn clip(text: &str, max: usize) -> String {
    if text.len() <= max {
        return text.to_owned();
    }
    let end = (0..=max)
        .rev()
        .find(|&i| text.is_char_boundary(i))
        .unwrap_or(0);
    format!("{}…", &text[..end])
}

fn revision_status(r: &ExistingRevision) -> RevisionStatus {
    let (reason, message) = match &r.health {
        RevisionHealth::Ready => (None, None),
        RevisionHealth::Deploying => (
            Some(Reason::RevisionDeploying.as_str().to_owned()),
            Some("waiting for a replica to become ready".to_owned()),
        ),
        RevisionHealth::Failed { reason, message } => (Some(reason.clone()), Some(message.clone())),
    };
    RevisionStatus {
        name: r.name.clone(),
        ready: r.is_ready(),
        replicas: r.ready_replicas,
        reason,
        message,
        concurrency: r.serving.concurrency,
        timeout_seconds: r.serving.timeout_seconds,
        protocol: r.serving.protocol,
        scale: r.serving.scale.clone(),
    }
}

/// The `scale` revision `r` is scaled with, reported in its
/// `status.revisions[].scale` (the autoscaler reads it there). The latest
/// created revision follows the spec: its `scale` is the spec's current one,
/// so editing `spec.scale` takes effect without a new revision. Any other
/// revision keeps the `scale` it last followed: the one the previous status
/// reported for it (set while it was the latest), else the one it was created
/// with (its Deployment's annotation, should the status have lost it). `None`
/// when neither is known, for a revision created before `scale` was
/// recorded: the autoscaler then uses the spec's current `scale`.
fn revision_scale(function: &Function, latest: &str, r: &ExistingRevision) -> Option<ScaleSpec> {
    if r.name == latest {
        return Some(function.spec.scale.clone());
    }
    function
        .status
        .as_ref()
        .and_then(|s| s.revisions.iter().find(|p| p.name == r.name))
        .and_then(|p| p.scale.clone())
        .or_else(|| r.serving.scale.clone())
}

fn configurations_ready(latest: &str, health: &RevisionHealth) -> Cond {
    let (status, reason, message) = match health {
        RevisionHealth::Ready => (
            ConditionStatus::True,
            Reason::RevisionReady.as_str().to_owned(),
            format!("revision {latest} is ready"),
        ),
        RevisionHealth::Deploying => (
            ConditionStatus::Unknown,
            Reason::RevisionDeploying.as_str().to_owned(),
            format!("waiting for revision {latest} to become ready"),
        ),
        RevisionHealth::Failed { reason, message } => (
            ConditionStatus::False,
            reason.clone(),
            format!("revision {latest}: {message}"),
        ),
    };
    Cond {
        type_: ConditionType::ConfigurationsReady,
        status,
        reason,
        message,
    }
}

fn routes_ready(
    resolved: &Result<Vec<flint_api::TrafficStatus>, TrafficError>,
    latest: &RevisionHealth,
) -> Cond {
    let (status, reason, message) = match (resolved, latest) {
        (Ok(_), _) => (
            ConditionStatus::True,
            Reason::TrafficResolved,
            "every traffic target resolves to a revision".to_owned(),
        ),
        (Err(e @ TrafficError::TargetNotFound(_)), _) => (
            ConditionStatus::False,
            Reason::TrafficTargetNotFound,
            format!(
                "{e}; name an existing revision (see status.revisions) or use latestRevision: true"
            ),
        ),
        (Err(e @ TrafficError::NoReadyRevision), RevisionHealth::Failed { .. }) => (
            ConditionStatus::False,
            Reason::NoReadyRevision,
            format!("{e}, and the latest revision failed (see ConfigurationsReady)"),
        ),
        (Err(e @ TrafficError::NoReadyRevision), _) => (
            ConditionStatus::Unknown,
            Reason::RevisionDeploying,
            e.to_string(),
        ),
    };
    Cond {
        type_: ConditionType::RoutesReady,
        status,
        reason: reason.as_str().to_owned(),
        message,
    }
}

/// Ready is True when both others are; otherwise it carries the first
/// condition that is False, else the first that is Unknown.
/// DomainsReady: True when every custom domain is routed here, else False
/// naming each domain and who has it. Not folded into Ready: the Function
/// still serves at its own host.
fn domains_ready(conflicts: &[Conflict]) -> Cond {
    let (status, reason, message) = if conflicts.is_empty() {
        (
            ConditionStatus::True,
            Reason::DomainsClaimed,
            "every domain in spec.domains is routed to this function".to_owned(),
        )
    } else {
        let each: Vec<String> = conflicts.iter().map(ToString::to_string).collect();
        (
            ConditionStatus::False,
            Reason::DomainConflict,
            format!("{}; those requests are not routed here", each.join("; ")),
        )
    };
    Cond {
        type_: ConditionType::DomainsReady,
        status,
        reason: reason.as_str().to_owned(),
        message,
    }
}

fn overall(configurations: &Cond, routes: &Cond) -> Cond {
    let pick = [configurations, routes]
        .into_iter()
        .find(|c| c.status == ConditionStatus::False)
        .or_else(|| {
            [configurations, routes]
                .into_iter()
                .find(|c| c.status != ConditionStatus::True)
        });
    match pick {
        None => Cond {
            type_: ConditionType::Ready,
            status: ConditionStatus::True,
            reason: Reason::Ready.as_str().to_owned(),
            message: "the latest revision is ready and every route resolves".to_owned(),
        },
        Some(c) => Cond {
            type_: ConditionType::Ready,
            status: c.status,
            reason: c.reason.clone(),
            message: c.message.clone(),
        },
    }
}

fn settle(
    c: Cond,
    previous: Option<&FunctionStatus>,
    generation: Option<i64>,
    now: Timestamp,
) -> Condition {
    let since = previous
        .and_then(|s| s.conditions.iter().find(|p| p.type_ == c.type_.as_str()))
        .filter(|p| p.status == c.status.as_str())
        .map_or(Time(now), |p| p.last_transition_time.clone());
    Condition {
        type_: c.type_.as_str().to_owned(),
        status: c.status.as_str().to_owned(),
        reason: c.reason,
        message: c.message,
        last_transition_time: since,
        observed_generation: generation,
    }
}
