//! The Kubernetes actuator: writes a revision's replica count to its
//! Deployment's scale subresource (the Deployment is named after the
//! revision). Before a scale-down it marks the pods to go first with
//! `controller.kubernetes.io/pod-deletion-cost`, so the ReplicaSet removes
//! the least useful pods: not ready ones first, then the youngest (the least
//! warmed up, and the ones the gateway has sent the least traffic to).
//!
//! With a [`Drainer`] and the gateways' admin URLs, a scale-down first
//! drains those pods: every gateway takes them out of rotation and waits
//! until nothing runs on them (at most the revision's request timeout), and
//! only then is the scale written, so no request is cut short however long
//! it runs. The drain runs in the background: the autoscaler's other
//! decisions do not wait for it, and a later decision for the same revision
//! calls it off (the pods go back into rotation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use flint_api::backend::{Replicas, RevisionKey, ScaleActuator, ScaleError, Standing};
use flint_api::drain::DrainRequest;
use flint_api::names::{ANNOTATION_POD_DELETION_COST, LABEL_REVISION};
use flint_api::sync::lock;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Pod;
use kube::api::{Api, ListParams, Patch, PatchParams};
use tokio::sync::watch;

use super::drain::Drainer;
use crate::reconcile::revision::ServingSettings;

/// Deletion cost given to the pods chosen to go first (others have 0).
pub const VICTIM_COST: &str = "-1000";

/// Draining before scale-downs: how to ask, and whom.
#[derive(Clone, Debug)]
pub struct DrainSetup {
    /// Posts the drains.
    pub drainer: Drainer,
    /// The gateways' `/metrics` URLs on their admin port, kept current
    /// (drains go to the same port).
    pub gateways: watch::Receiver<Vec<String>>,
}

impl DrainSetup {
    /// Base URLs of the gateways' admin endpoints.
    fn admin_urls(&self) -> Vec<String> {
        self.gateways
            .borrow()
            .iter()
            .map(|u| u.trim_end_matches("/metrics").to_owned())
            .collect()
    }
}

/// Scales Deployments through the Kubernetes API.
#[derive(Clone)]
pub struct KubeActuator {
    client: kube::Client,
    drain: Option<DrainSetup>,
    /// Per revision, the number of the latest scale call: a background
    /// drain whose number is no longer the latest was called off.
    calls: Arc<Mutex<HashMap<RevisionKey, watch::Sender<u64>>>>,
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
    /// An actuator using `client`, draining through `drain` when given.
    pub fn new(client: kube::Client, drain: Option<DrainSetup>) -> Self {
        Self {
            client,
            drain,
            calls: Arc::new(Mutex::new(HashMap::new())),
        }
    }

    /// Numbers a new scale call for `revision`; returns its number and a
    /// receiver that sees later calls.
    fn new_call(&self, revision: &RevisionKey) -> (u64, watch::Receiver<u64>) {
        let mut calls = lock(&self.calls);
        let sender = calls
            .entry(revision.clone())
            .or_insert_with(|| watch::channel(0).0);
        let mut number = 0;
        sender.send_modify(|n| {
            *n += 1;
            number = *n;
        });
        (number, sender.subscribe())
    }

    async fn deployment(&self, revision: &RevisionKey) -> Result<Deployment, ScaleError> {
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &revision.namespace);
        deployments
            .get(&revision.revision)
            .await
            .map_err(|e| Self::fail(revision, e))
    }

    async fn write_scale(&self, revision: &RevisionKey, replicas: u32) -> Result<(), ScaleError> {
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

    async fn list_pods(&self, revision: &RevisionKey) -> Result<Vec<Pod>, ScaleError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &revision.namespace);
        let selector = format!("{LABEL_REVISION}={}", revision.revision);
        Ok(pods
            .list(&ListParams::default().labels(&selector))
            .await
            .map_err(|e| Self::fail(revision, e))?
            .items)
    }

    /// Drains `victims` on every gateway, then (unless a later scale call
    /// came meanwhile) marks them and writes `replicas`.
    async fn drain_then_scale(
        self,
        revision: RevisionKey,
        replicas: u32,
        victims: Vec<String>,
        timeout_seconds: u32,
        call: (u64, watch::Receiver<u64>),
        setup: DrainSetup,
    ) {
        let (number, mut later) = call;
        let gateways = setup.admin_urls();
        let req = DrainRequest {
            namespace: revision.namespace.clone(),
            function: revision.function.clone(),
            revision: revision.revision.clone(),
            pods: victims.clone(),
            timeout_seconds,
        };
        let started = std::time::Instant::now();
        let called_off = async {
            let _ = later.wait_for(|n| *n != number).await;
        };
        tokio::select! {
            in_flight = setup.drainer.drain_all(&gateways, &req) => {
                tracing::info!(
                    revision = %revision, pods = ?victims, in_flight,
                    waited_ms = started.elapsed().as_millis() as u64,
                    "replicas drained"
                );
            }
            () = called_off => {
                tracing::info!(revision = %revision, pods = ?victims, "scale-down called off; releasing drained replicas");
                setup.drainer.release_all(&gateways, &req).await;
                return;
            }
        }
        if *later.borrow() != number {
            setup.drainer.release_all(&gateways, &req).await;
            return;
        }
        if let Err(err) = self.mark(&revision, &victims).await {
            tracing::warn!(revision = %revision, error = %err, "marking pods for deletion failed");
        }
        if let Err(err) = self.write_scale(&revision, replicas).await {
            tracing::warn!(revision = %revision, error = %err, "scale write after drain failed; releasing");
            setup.drainer.release_all(&gateways, &req).await;
        }
    }

    fn fail(revision: &RevisionKey, err: impl std::fmt::Display) -> ScaleError {
        ScaleError {
            revision: revision.clone(),
            reason: err.to_string(),
        }
    }

    async fn mark(&self, revision: &RevisionKey, names: &[String]) -> Result<(), ScaleError> {
        let pods: Api<Pod> = Api::namespaced(self.client.clone(), &revision.namespace);
        for name in names {
            let patch = serde_json::json!({
                "metadata": {"annotations": {ANNOTATION_POD_DELETION_COST: VICTIM_COST}}
            });
            pods.patch(name, &PatchParams::default(), &Patch::Merge(&patch))
                .await
                .map_err(|e| Self::fail(revision, e))?;
        }
        Ok(())
    }
}

impl ScaleActuator for KubeActuator {
    async fn scale(&self, revision: &RevisionKey, replicas: u32) -> Result<(), ScaleError> {
        let call = self.new_call(revision);
        let deployment = self.deployment(revision).await?;
        let current = replicas_of(&deployment);
        if replicas >= current.desired {
            return self.write_scale(revision, replicas).await;
        }
        let count = usize::try_from(current.desired - replicas).unwrap_or(usize::MAX);
        let victims = match self.list_pods(revision).await {
            Ok(pods) => pick_victims(&pods, count),
            Err(err) => {
                // Best effort: the scale-down goes ahead unmarked and undrained.
                tracing::warn!(revision = %revision, error = %err, "listing pods to remove failed");
                Vec::new()
            }
        };
        let drain = self
            .drain
            .clone()
            .filter(|d| !victims.is_empty() && !d.gateways.borrow().is_empty());
        let Some(setup) = drain else {
            if let Err(err) = self.mark(revision, &victims).await {
                tracing::warn!(revision = %revision, error = %err, "marking pods for deletion failed");
            }
            return self.write_scale(revision, replicas).await;
        };
        let timeout = timeout_of(&deployment);
        tokio::spawn(self.clone().drain_then_scale(
            revision.clone(),
            replicas,
            victims,
            timeout,
            call,
            setup,
        ));
        Ok(())
    }

    async fn replicas(&self, revision: &RevisionKey) -> Result<Replicas, ScaleError> {
        Ok(replicas_of(&self.deployment(revision).await?))
    }

    async fn standing(&self, revision: &RevisionKey) -> Result<Option<Standing>, ScaleError> {
        let deployments: Api<Deployment> =
            Api::namespaced(self.client.clone(), &revision.namespace);
        let found = deployments
            .get_opt(&revision.revision)
            .await
            .map_err(|e| Self::fail(revision, e))?;
        // Not created yet (or no creation time): a new revision.
        Ok(found.and_then(|d| {
            let created = d.metadata.creation_timestamp.as_ref()?.0;
            let age = k8s_openapi::jiff::Timestamp::now().duration_since(created);
            let age = std::time::Duration::try_from(age).ok()?;
            Some(Standing {
                age,
                replicas: replicas_of(&d),
            })
        }))
    }
}

fn replicas_of(d: &Deployment) -> Replicas {
    let count = |n: Option<i32>| u32::try_from(n.unwrap_or(0)).unwrap_or(0);
    Replicas {
        desired: count(d.spec.as_ref().and_then(|s| s.replicas)),
        ready: count(d.status.as_ref().and_then(|s| s.ready_replicas)),
    }
}

/// The request timeout the revision was created with (its Deployment's
/// annotation, else the default): no request on its pods runs longer.
fn timeout_of(d: &Deployment) -> u32 {
    ServingSettings::from_annotations(d.metadata.annotations.as_ref())
        .timeout_seconds
        .unwrap_or_else(flint_api::defaults::timeout_seconds)
}
