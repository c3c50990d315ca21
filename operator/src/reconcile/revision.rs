//! What a revision looks like from the cluster: its number, spec hash, replica
//! counts and health, read from its Deployment and pods. Pure: the caller
//! lists the objects, this module only interprets them.

use std::collections::BTreeMap;

use flint_api::names::{
    ANNOTATION_CONCURRENCY, ANNOTATION_PROTOCOL, ANNOTATION_SCALE, ANNOTATION_SPEC_HASH,
    ANNOTATION_TIMEOUT_SECONDS, CONTAINER_NAME, LABEL_GENERATION, LABEL_REVISION, revision_number,
};
use flint_api::{FunctionSpec, FunctionStatus, Protocol, ScaleSpec};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Container, Pod};

/// One revision that exists on the cluster (its Deployment exists).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingRevision {
    /// Revision name, e.g. `hello-00002`.
    pub name: String,
    /// The number in the name (2 for `hello-00002`).
    pub number: u32,
    /// Hash of the pod-shaping spec it was cut from (see [`super::hash`]).
    pub spec_hash: String,
    /// The Function generation it was cut at (its `flint.dev/generation` label).
    pub generation: i64,
    /// Replicas asked for (the autoscaler's last write).
    pub desired_replicas: i32,
    /// Replicas ready to serve.
    pub ready_replicas: i32,
    /// Whether it can take traffic.
    pub health: RevisionHealth,
    /// The serving settings it was created with (its Deployment's annotations).
    pub serving: ServingSettings,
    /// The image its function container runs (the `app` container of its
    /// Deployment): pinned by digest when the tag was resolved as it was cut.
    pub image: Option<String>,
}

/// The serving settings a revision was created with, read back from its
/// Deployment's annotations (see [`super::objects::serving_annotations`]).
/// Each is `None` when its annotation is missing or unreadable, e.g. on a
/// Deployment created before they were recorded.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServingSettings {
    /// `concurrency` at creation.
    pub concurrency: Option<u32>,
    /// `timeoutSeconds` at creation.
    pub timeout_seconds: Option<u32>,
    /// `protocol` at creation.
    pub protocol: Option<Protocol>,
    /// `scale` at creation. Not part of the revision: the latest revision
    /// follows the spec's current `scale`, and an older one keeps the
    /// `scale` it last followed, falling back to this (see [`super::status`]).
    pub scale: Option<ScaleSpec>,
}

impl ServingSettings {
    /// The settings a revision created now from `spec` gets.
    pub fn of(spec: &FunctionSpec) -> Self {
        Self {
            concurrency: Some(spec.concurrency),
            timeout_seconds: Some(spec.timeout_seconds),
            protocol: Some(spec.protocol),
            scale: Some(spec.scale.clone()),
        }
    }

    /// Reads the settings from a Deployment's annotations.
    pub fn from_annotations(annotations: Option<&BTreeMap<String, String>>) -> Self {
        let get = |key: &str| annotations.and_then(|a| a.get(key)).map(String::as_str);
        Self {
            concurrency: get(ANNOTATION_CONCURRENCY).and_then(|v| v.parse().ok()),
            timeout_seconds: get(ANNOTATION_TIMEOUT_SECONDS).and_then(|v| v.parse().ok()),
            protocol: get(ANNOTATION_PROTOCOL).and_then(|v| v.parse().ok()),
            scale: get(ANNOTATION_SCALE).and_then(|v| serde_json::from_str(v).ok()),
        }
    }
}

/// Whether a revision can take traffic, and if not, why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RevisionHealth {
    /// Proven: a replica became ready (or it was created at zero replicas and
    /// the Deployment is available). Stays ready while scaled to zero.
    Ready,
    /// Not proven yet: pods are starting.
    Deploying,
    /// It cannot serve, for a reason a person can act on.
    Failed {
        /// One word, e.g. `ImagePullBackOff`, `RevisionFailed`, `QuotaExceeded`.
        reason: String,
        /// A sentence naming what failed and how.
        message: String,
    },
}

impl ExistingRevision {
    /// A revision with the given name, number and hash, cut at generation
    /// `number`, healthy and at zero replicas: a starting point for callers
    /// and tests, which then set the fields they care about.
    pub fn new(name: impl Into<String>, number: u32, spec_hash: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            number,
            spec_hash: spec_hash.into(),
            generation: i64::from(number),
            desired_replicas: 0,
            ready_replicas: 0,
            health: RevisionHealth::Ready,
            serving: ServingSettings::default(),
            image: None,
        }
    }

    /// Whether the revision can take traffic.
    pub fn is_ready(&self) -> bool {
        self.health == RevisionHealth::Ready
    }
}

/// Reads the revisions of Function `function` from its Deployments and pods.
/// Deployments that are not named like this Function's revisions, or carry
/// no spec hash, are not revisions and are skipped. `previous` is the
/// Function's last written status: a revision once proven ready stays ready
/// while it scales to zero and back, unless it is failing now. Sorted by
/// number, oldest first.
pub fn observe_revisions(
    function: &str,
    deployments: &[Deployment],
    pods: &[Pod],
    previous: Option<&FunctionStatus>,
) -> Vec<ExistingRevision> {
    let mut revisions: Vec<ExistingRevision> = deployments
        .iter()
        .filter_map(|deployment| {
            let name = deployment.metadata.name.as_deref()?;
            let number = revision_number(function, name)?;
            let spec_hash = deployment
                .metadata
                .annotations
                .as_ref()?
                .get(ANNOTATION_SPEC_HASH)?
                .clone();
            let was_ready = previous
                .is_some_and(|status| status.revisions.iter().any(|r| r.name == name && r.ready));
            let own_pods: Vec<&Pod> = pods
                .iter()
                .filter(|p| {
                    p.metadata
                        .labels
                        .as_ref()
                        .and_then(|l| l.get(LABEL_REVISION))
                        .is_some_and(|r| r == name)
                })
                .collect();
            let status = deployment.status.as_ref();
            let generation = deployment
                .metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(LABEL_GENERATION))
                .and_then(|g| g.parse().ok())
                .unwrap_or(0);
            Some(ExistingRevision {
                name: name.to_owned(),
                number,
                spec_hash,
                generation,
                desired_replicas: deployment
                    .spec
                    .as_ref()
                    .and_then(|s| s.replicas)
                    .unwrap_or(1),
                ready_replicas: status.and_then(|s| s.ready_replicas).unwrap_or(0),
                health: health(deployment, &own_pods, was_ready),
                serving: ServingSettings::from_annotations(
                    deployment.metadata.annotations.as_ref(),
                ),
                image: app_image(deployment),
            })
        })
        .collect();
    revisions.sort_by_key(|r| r.number);
    revisions
}

/// The image of a revision Deployment's function container.
fn app_image(deployment: &Deployment) -> Option<String> {
    app_container(deployment)?.image.clone()
}

/// A revision Deployment's function container (the one named
/// [`CONTAINER_NAME`], beside any sidecars).
pub fn app_container(deployment: &Deployment) -> Option<&Container> {
    deployment
        .spec
        .as_ref()?
        .template
        .spec
        .as_ref()?
        .containers
        .iter()
        .find(|c| c.name == CONTAINER_NAME)
}

/// The health of one revision: serving replicas win; then a failure found in
/// the pods or the Deployment; then readiness proven earlier or at zero.
fn health(deployment: &Deployment, pods: &[&Pod], was_ready: bool) -> RevisionHealth {
    let status = deployment.status.as_ref();
    if status.and_then(|s| s.available_replicas).unwrap_or(0) > 0 {
        return RevisionHealth::Ready;
    }
    if let Some(failure) = pods.iter().find_map(|p| pod_failure(p)) {
        return failure;
    }
    if let Some(failure) = deployment_failure(deployment) {
        return failure;
    }
    let desired = deployment
        .spec
        .as_ref()
        .and_then(|s| s.replicas)
        .unwrap_or(1);
    if was_ready || (desired == 0 && condition_true(deployment, "Available")) {
        return RevisionHealth::Ready;
    }
    RevisionHealth::Deploying
}

fn condition_true(deployment: &Deployment, kind: &str) -> bool {
    deployment
        .status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == kind && c.status == "True"))
}

/// A failure of the Deployment itself: pods it cannot create (quota) or a
/// rollout that never finished.
fn deployment_failure(deployment: &Deployment) -> Option<RevisionHealth> {
    let conditions = deployment.status.as_ref()?.conditions.as_ref()?;
    conditions.iter().find_map(|c| {
        let message = c.message.clone().unwrap_or_default();
        match (c.type_.as_str(), c.status.as_str(), c.reason.as_deref()) {
            ("ReplicaFailure", "True", _) if message.contains("exceeded quota") => {
                Some(RevisionHealth::Failed {
                    reason: "QuotaExceeded".to_owned(),
                    message: format!(
                        "pods cannot be created: {message}; raise the namespace's ResourceQuota or lower spec.resources"
                    ),
                })
            }
            ("ReplicaFailure", "True", reason) => Some(RevisionHealth::Failed {
                reason: reason.unwrap_or("ReplicaFailure").to_owned(),
                message: format!("pods cannot be created: {message}"),
            }),
            ("Progressing", "False", Some("ProgressDeadlineExceeded")) => {
                Some(RevisionHealth::Failed {
                    reason: "ProgressDeadlineExceeded".to_owned(),
                    message: format!("no replica became ready in time: {message}"),
                })
            }
            _ => None,
        }
    })
}

/// A failure visible on a pod: an image that cannot be pulled, a container
/// that keeps exiting, a configuration error, or a pod that fits no node.
fn pod_failure(pod: &Pod) -> Option<RevisionHealth> {
    let status = pod.status.as_ref()?;
    for container in status.container_statuses.iter().flatten() {
        let waiting = container.state.as_ref().and_then(|s| s.waiting.as_ref());
        let reason = waiting.and_then(|w| w.reason.as_deref()).unwrap_or("");
        let detail = waiting.and_then(|w| w.message.clone()).unwrap_or_default();
        match reason {
            "ImagePullBackOff" | "ErrImagePull" | "InvalidImageName" => {
                return Some(RevisionHealth::Failed {
                    reason: "ImagePullBackOff".to_owned(),
                    message: format!(
                        "image {:?} cannot be pulled ({reason}): {detail}; check the image name and spec.imagePullSecrets",
                        container.image
                    ),
                });
            }
            "CrashLoopBackOff" => {
                let terminated = container
                    .last_state
                    .as_ref()
                    .and_then(|s| s.terminated.as_ref());
                let code = terminated.map_or(-1, |t| t.exit_code);
                let why = terminated
                    .and_then(|t| t.reason.clone())
                    .unwrap_or_else(|| "Error".to_owned());
                return Some(RevisionHealth::Failed {
                    reason: "RevisionFailed".to_owned(),
                    message: format!(
                        "container {:?} exited with code {code} ({why}) and keeps restarting; see kubectl logs --previous on pod {:?}",
                        container.name,
                        pod.metadata.name.as_deref().unwrap_or_default()
                    ),
                });
            }
            "CreateContainerConfigError" | "CreateContainerError" => {
                return Some(RevisionHealth::Failed {
                    reason: "ContainerConfigError".to_owned(),
                    message: format!("container {:?} cannot start: {detail}", container.name),
                });
            }
            _ => {}
        }
    }
    status
        .conditions
        .iter()
        .flatten()
        .find(|c| {
            c.type_ == "PodScheduled"
                && c.status == "False"
                && c.reason.as_deref() == Some("Unschedulable")
        })
        .map(|c| RevisionHealth::Failed {
            reason: "Unschedulable".to_owned(),
            message: format!(
                "no node can run the pod: {}",
                c.message.as_deref().unwrap_or_default()
            ),
        })
}

#[cfg(test)]
#[path = "revision_tests.rs"]
mod tests;
