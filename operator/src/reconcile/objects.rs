//! Builders of the Kubernetes objects of one revision: its Deployment and its
//! ClusterIP Service. Pure; every default is filled in here, so what is
//! rendered is exactly what is applied.

use std::collections::BTreeMap;

use flint_api::names::{
    ANNOTATION_CONCURRENCY, ANNOTATION_PROTOCOL, ANNOTATION_SCALE, ANNOTATION_SPEC_HASH,
    ANNOTATION_TIMEOUT_SECONDS, API_VERSION, KIND, LABEL_FUNCTION, LABEL_GENERATION,
    LABEL_MANAGED_BY, LABEL_REVISION, MANAGED_BY,
};
use flint_api::{FunctionSpec, FunctionVolume};
use k8s_openapi::api::apps::v1::{Deployment, DeploymentSpec};
use k8s_openapi::api::core::v1::{
    Container, ContainerPort, EnvVar, Lifecycle, LifecycleHandler, PodSpec, PodTemplateSpec, Probe,
    Service, ServicePort, ServiceSpec, SleepAction, TCPSocketAction, Volume, VolumeMount,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta, OwnerReference};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::security;

/// Seconds a terminating pod keeps serving before it is signalled (preStop
/// sleep): long enough for the gateway to see the endpoint turn terminating
/// and stop sending it requests.
pub const DRAIN_SECONDS: u32 = 5;
/// Name of the function's container in every revision pod.
pub const CONTAINER_NAME: &str = flint_api::names::CONTAINER_NAME;
/// Name of the container port (and the Service's target port).
pub const PORT_NAME: &str = "http";
/// Port the revision's Service listens on.
pub const SERVICE_PORT: i32 = 80;

/// The Function a revision belongs to, as its objects need it.
#[derive(Debug, Clone, Copy)]
pub struct Owner<'a> {
    /// Function name.
    pub name: &'a str,
    /// Function namespace.
    pub namespace: &'a str,
    /// Function uid (for the owner reference).
    pub uid: &'a str,
    /// Function generation the revision is cut at.
    pub generation: i64,
}

impl Owner<'_> {
    fn reference(&self) -> OwnerReference {
        OwnerReference {
            api_version: API_VERSION.to_owned(),
            kind: KIND.to_owned(),
            name: self.name.to_owned(),
            uid: self.uid.to_owned(),
            controller: Some(true),
            block_owner_deletion: Some(true),
        }
    }

    fn labels(&self, revision: &str) -> BTreeMap<String, String> {
        BTreeMap::from([
            (LABEL_FUNCTION.to_owned(), self.name.to_owned()),
            (LABEL_REVISION.to_owned(), revision.to_owned()),
            (LABEL_GENERATION.to_owned(), self.generation.to_string()),
            (LABEL_MANAGED_BY.to_owned(), MANAGED_BY.to_owned()),
        ])
    }

    fn metadata(&self, revision: &str) -> ObjectMeta {
        ObjectMeta {
            name: Some(revision.to_owned()),
            namespace: Some(self.namespace.to_owned()),
            labels: Some(self.labels(revision)),
            owner_references: Some(vec![self.reference()]),
            ..ObjectMeta::default()
        }
    }
}

/// The selector of a revision's pods.
fn selector(revision: &str) -> BTreeMap<String, String> {
    BTreeMap::from([(LABEL_REVISION.to_owned(), revision.to_owned())])
}

/// The serving settings a revision is created with, as annotations of its
/// Deployment. A revision's pods are built for them, so they stay with the
/// revision (Deployments are never re-applied) and the gateway routes to it
/// with them, even after the spec moves on to a newer revision. Next to them,
/// the `scale` it is created with, as compact JSON: not part of the revision
/// (the latest revision follows the spec's current `scale`), only a durable
/// record of where it started, which an older revision falls back to when
/// the status no longer says which `scale` it last followed (see
/// [`super::status`] and docs/autoscaling.md).
pub fn serving_annotations(spec: &FunctionSpec) -> Vec<(String, String)> {
    let mut annotations = vec![
        (
            ANNOTATION_CONCURRENCY.to_owned(),
            spec.concurrency.to_string(),
        ),
        (
            ANNOTATION_TIMEOUT_SECONDS.to_owned(),
            spec.timeout_seconds.to_string(),
        ),
        (
            ANNOTATION_PROTOCOL.to_owned(),
            spec.protocol.as_str().to_owned(),
        ),
    ];
    // Serializing a ScaleSpec cannot fail (strings and numbers only); were
    // it to, the revision would follow the spec's scale, as an unrecorded one.
    if let Ok(scale) = serde_json::to_string(&spec.scale) {
        annotations.push((ANNOTATION_SCALE.to_owned(), scale));
    }
    annotations
}

/// The Deployment of a new revision. `replicas` is `scale.initial`: the only
/// time the reconciler sets it; afterwards the autoscaler owns it. Its
/// annotations carry the spec hash and the serving settings
/// ([`serving_annotations`]).
pub fn deployment(
    owner: Owner<'_>,
    revision: &str,
    spec_hash: &str,
    spec: &FunctionSpec,
) -> Deployment {
    let mut metadata = owner.metadata(revision);
    let mut annotations = BTreeMap::from([(ANNOTATION_SPEC_HASH.to_owned(), spec_hash.to_owned())]);
    annotations.extend(serving_annotations(spec));
    metadata.annotations = Some(annotations);
    Deployment {
        metadata,
        spec: Some(DeploymentSpec {
            replicas: Some(i32::try_from(spec.scale.initial).unwrap_or(i32::MAX)),
            selector: LabelSelector {
                match_labels: Some(selector(revision)),
                match_expressions: None,
            },
            template: PodTemplateSpec {
                metadata: Some(pod_metadata(owner, revision, spec_hash, spec)),
                spec: Some(pod_spec(spec)),
            },
            ..DeploymentSpec::default()
        }),
        status: None,
    }
}

/// The pod template's metadata: the Function's `podLabels` and
/// `podAnnotations` with Flint's own labels and spec hash over them
/// (validation refuses a Function that sets Flint's keys).
fn pod_metadata(
    owner: Owner<'_>,
    revision: &str,
    spec_hash: &str,
    spec: &FunctionSpec,
) -> ObjectMeta {
    let mut labels = spec.pod_labels.clone();
    labels.extend(owner.labels(revision));
    let mut annotations = spec.pod_annotations.clone();
    annotations.insert(ANNOTATION_SPEC_HASH.to_owned(), spec_hash.to_owned());
    ObjectMeta {
        labels: Some(labels),
        annotations: Some(annotations),
        ..ObjectMeta::default()
    }
}

/// How a volume is mounted into the function's container: Secret,
/// ConfigMap and projected volumes read-only, an emptyDir writable, a
/// PersistentVolumeClaim as its `readOnly` says.
fn volume_mount(v: &FunctionVolume) -> VolumeMount {
    let read_only = match &v.persistent_volume_claim {
        Some(claim) => claim.read_only.unwrap_or(false),
        None => v.empty_dir.is_none(),
    };
    VolumeMount {
        name: v.name.clone(),
        mount_path: v.mount_path.clone(),
        read_only: Some(read_only),
        ..VolumeMount::default()
    }
}

fn volume(v: &FunctionVolume) -> Volume {
    Volume {
        name: v.name.clone(),
        secret: v.secret.clone(),
        config_map: v.config_map.clone(),
        projected: v.projected.clone(),
        empty_dir: v.empty_dir.clone(),
        persistent_volume_claim: v.persistent_volume_claim.clone(),
        ..Volume::default()
    }
}

/// A sidecar or init container as the Function gives it, with Flint's
/// default security context under its own (see [`security`]).
fn extra_container(c: &Container) -> Container {
    Container {
        security_context: Some(security::container(
            &security::default_container(),
            c.security_context.as_ref(),
        )),
        ..c.clone()
    }
}

/// `Some(items)` unless empty: a pod spec leaves unused lists out.
fn non_empty<T: Clone>(items: &[T]) -> Option<Vec<T>> {
    (!items.is_empty()).then(|| items.to_vec())
}

fn app_container(spec: &FunctionSpec) -> Container {
    let port = i32::from(spec.port);
    let mut env = vec![EnvVar {
        name: "PORT".to_owned(),
        value: Some(spec.port.to_string()),
        value_from: None,
    }];
    env.extend(spec.env.iter().filter(|e| e.name != "PORT").cloned());
    let readiness = spec
        .readiness_probe
        .as_deref()
        .cloned()
        .unwrap_or_else(|| Probe {
            tcp_socket: Some(TCPSocketAction {
                port: IntOrString::Int(port),
                host: None,
            }),
            period_seconds: Some(1),
            failure_threshold: Some(3),
            ..Probe::default()
        });
    let volume_mounts: Vec<VolumeMount> = spec.volumes.iter().map(volume_mount).collect();
    Container {
        name: CONTAINER_NAME.to_owned(),
        image: Some(spec.image.clone()),
        image_pull_policy: spec.image_pull_policy.map(|p| p.as_str().to_owned()),
        command: spec.command.clone(),
        args: spec.args.clone(),
        working_dir: spec.working_dir.clone(),
        env: Some(env),
        env_from: non_empty(&spec.env_from),
        ports: Some(vec![ContainerPort {
            name: Some(PORT_NAME.to_owned()),
            container_port: port,
            protocol: Some("TCP".to_owned()),
            ..ContainerPort::default()
        }]),
        resources: spec.resources.as_deref().cloned(),
        readiness_probe: Some(readiness),
        liveness_probe: spec.liveness_probe.as_deref().cloned(),
        startup_probe: spec.startup_probe.as_deref().cloned(),
        lifecycle: Some(Lifecycle {
            pre_stop: Some(LifecycleHandler {
                sleep: Some(SleepAction {
                    seconds: i64::from(DRAIN_SECONDS),
                }),
                ..LifecycleHandler::default()
            }),
            ..Lifecycle::default()
        }),
        security_context: Some(security::container(
            &security::default_container(),
            spec.security_context.as_deref(),
        )),
        volume_mounts: non_empty(&volume_mounts),
        ..Container::default()
    }
}

fn pod_spec(spec: &FunctionSpec) -> PodSpec {
    let volumes: Vec<Volume> = spec.volumes.iter().map(volume).collect();
    // The function's container first: it serves `port`; sidecars follow.
    let mut containers = vec![app_container(spec)];
    containers.extend(spec.sidecars.iter().map(extra_container));
    let init_containers: Vec<Container> =
        spec.init_containers.iter().map(extra_container).collect();
    PodSpec {
        containers,
        init_containers: non_empty(&init_containers),
        termination_grace_period_seconds: Some(
            i64::from(spec.timeout_seconds) + i64::from(DRAIN_SECONDS),
        ),
        service_account_name: spec.service_account_name.clone(),
        // A function that names no account gets no API credential: least
        // privilege, and a cold start without the token request and the
        // projected volume the kubelet would mount before the sandbox.
        automount_service_account_token: Some(spec.service_account_name.is_some()),
        image_pull_secrets: non_empty(&spec.image_pull_secrets),
        volumes: non_empty(&volumes),
        security_context: Some(security::pod(spec.pod_security_context.as_deref())),
        node_selector: (!spec.node_selector.is_empty()).then(|| spec.node_selector.clone()),
        tolerations: non_empty(&spec.tolerations),
        affinity: spec.affinity.as_deref().cloned(),
        topology_spread_constraints: non_empty(&spec.topology_spread_constraints),
        runtime_class_name: spec.runtime_class_name.clone(),
        priority_class_name: spec.priority_class_name.clone(),
        // A function gets $PORT, not one variable per Service in the namespace.
        enable_service_links: Some(false),
        // The pod's sandbox process is PID 1, not the function: a process
        // that is PID 1 ignores SIGTERM unless it handles it (most HTTP
        // servers do not), and would hold every scale-down and rollout for
        // its whole termination grace period before being killed.
        share_process_namespace: Some(true),
        ..PodSpec::default()
    }
}

/// The ClusterIP Service of a revision. It carries the revision's labels, which
/// the EndpointSlice controller copies onto the revision's EndpointSlices: the
/// gateway finds a revision's pods by `flint.dev/revision` on those slices.
/// It depends only on the revision's name (the target port is the named
/// container port), so it can be re-applied for old revisions at any time.
pub fn service(owner: Owner<'_>, revision: &str) -> Service {
    Service {
        metadata: owner.metadata(revision),
        spec: Some(ServiceSpec {
            type_: Some("ClusterIP".to_owned()),
            selector: Some(selector(revision)),
            ports: Some(vec![ServicePort {
                name: Some(PORT_NAME.to_owned()),
                port: SERVICE_PORT,
                target_port: Some(IntOrString::String(PORT_NAME.to_owned())),
                protocol: Some("TCP".to_owned()),
                ..ServicePort::default()
            }]),
            ..ServiceSpec::default()
        }),
        status: None,
    }
}
