//! The Kubernetes actuator: writes a revision's replica count to its
//! Deployment's scale subresource (the Deployment is named after the
//! revision). Before a scale-down it marks the pods to go first with
//! `controller.kubernetes.io/pod-deletion-cost`, so the ReplicaSet removes
//! the least useful pods: not ready ones first, then the youngest (the least
//! warmed up, and the ones the gateway has sent the least traffic to).

use flint_api::backend::{Replicas, RevisionKey, ScaleActuator, ScaleError};
use flint_api::names::{ANNOTATION_POD_DELETION_COST, LABEL_REVISION};
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};

/// Deletion cost given to the pods chosen to go first (others have 0).
pub const VICTIM_COST: &str = "-1000";

/// Scales Deployments through the Kubernetes API.
#[derive(Clone)]
pub struct KubeActuator {
    client: kube::Client,
}

impl std::fmt::Debug for KubeActuator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KubeActuator").finish_non_exhaustive()
    }
}

/// The `count` pods to remove first: not ready before ready, then youngest
/// first; ties by name so the choice is deterministic. Pure.
pub fn pick_victims(pods: &[Pod], count: usize) -> Vec<String> {
    let mut ranked: Vec<(bool, Option<&k8s_openapi::jiff::Timestamp>, String)> = pods
        .iter()
        .filter(|p| p.metadata.deletion_timestamp.is_none())
        .map(|p| {
            let ready = p
                .status
                .as_ref()
                .and_then(|s| s.conditions.as_ref())
                .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"));
            let created = p.metadata.creation_timestamp.as_ref().map(|t| &t.0);
            (ready, created, p.metadata.name.clone().unwrap_or_default())
        })
        .collect();
    // Not ready first; among equals, newest first; then by name.
    ranked.sort_by(|a, b| a.0.cmp(&b.0).then(b.1.cmp(&a.1)).then(a.2.cmp(&b.2)));
    ranked.into_iter().take(count).map(|(_, _, n)| n).collect()
}

impl KubeActuator {
    /// An actuator using `client`.
    pub fn new(client: kube::Client) -> Self {
        Self { client }
    }

    fn fail(revision: &RevisionKey, err: impl std::fmt::Display) -> ScaleError {
        ScaleError {
            revision: revision.clone(),
            reason: err.to_string(),
        }
    }

    async fn mark_victims(&self, revision: &RevisionKey, count: usize) -> Result<(), ScaleError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &revision.namespace);
        let selector = format!("{LABEL_REVISION}={}", revision.revision);
        let list = pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Self::fail(revision, e))?;
        for name in pick_victims(&list.items, count) {
            let patch = serde_json::json!({
                "metadata": {"annotations": {ANNOTATION_POD_DELETION_COST: VICTIM_COST}}
            });
            pods.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Self::fail(revision, e))?;
        }
        Ok(())
    }
}

impl ScaleActuator for KubeActuator {
    async fn scale(&self, revision: &RevisionKey, replicas: u32) -> Result<(), ScaleError> {
        let current = self.replicas(revision).await?;
        if replicas < current.desired {
            let victims = usize::try_from(current.desired - replicas).unwrap_or(usize::MAX);
            // Best effort: a failed annotation must not block the scale-down.
            if let Err(err) = self.mark_victims(revision, victims).await {
                tracing::warn!(revision = %revision, error = %err, "marking pods for deletion failed");
            }
        }
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &revision.namespace);
        let patch = serde_json::json!({"spec": {"replicas": replicas}});
        deployments
            .patch_scale(
                &revision.revision,
                &PatchParams::default(),
                &Patch::Merge(&patch),
            )
            .await
            .map_err(|e| Self::fail(revision, e))?;
        Ok(())
    }

    async fn replicas(&self, revision: &RevisionKey) -> Result<Replicas, ScaleError> {
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &revision.namespace);
        let d = deployments
            .get(&revision.revision)
            .await
            .map_err(|e| Self::fail(revision, e))?;
        let count = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
        Ok(Replicas {
            desired: count(d.spec.as_ref().and_then(|s| s.replicas)),
            ready: count(d.status.as_ref().and_then(|s| s.ready_replicas)),
        })
    }
}
