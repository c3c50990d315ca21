//! The `Function` custom resource (`functions.flint.dev/v1alpha1`): the
//! resource and its spec (container, pod template, volumes, traffic). The
//! spec's larger parts and the status live in their own modules and are
//! re-exported here, so every type stays `flint_api::function::X`: the
//! autoscaling knobs ([`ScaleSpec`]), asynchronous invocations and schedules
//! ([`AsyncSpec`], [`Schedule`]), and the observed state ([`FunctionStatus`]).
//!
//! Every field's doc comment becomes its CRD description (what `kubectl
//! explain function.spec...` prints). Cross-field rules are CEL
//! (`x-kubernetes-validations`) so the API server refuses bad manifests; the
//! same rules run in Rust in [`crate::validate`] for `flint dev`.

mod access;
mod events;
mod scale;
mod status;

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    LocalObjectReference, PersistentVolumeClaimVolumeSource, PodSecurityContext, Probe,
    ProjectedVolumeSource, ResourceRequirements, SecretVolumeSource, SecurityContext, Toleration,
    TopologySpreadConstraint,
};
use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::pod::{self, ImagePullPolicy};

pub use access::{
    ApiKeyAuth, AuthSpec, ClaimName, JwtAlgorithm, JwtAuth, KeySource, RequiredClaim, TlsSpec,
    UnknownVisibility, Visibility,
};
pub use events::{AsyncSpec, CRON_PATTERN, Schedule, ScheduleMethod, timezone_names};
pub use scale::{KeepAlive, ScaleMetric, ScaleSpec};
pub use status::{FunctionStatus, KeepAliveStatus, RevisionImage, RevisionStatus, TrafficStatus};

/// A function: an HTTP workload that Flint runs as immutable revisions,
/// routes traffic to, and scales from zero to many and back on request load.
#[derive(CustomResource, KubeSchema, Serialize, Deserialize, Clone, Debug, PartialEq)]
#[kube(
    group = "flint.dev",
    version = "v1alpha1",
    kind = "Function",
    plural = "functions",
    singular = "function",
    shortname = "fn",
    category = "flint",
    namespaced,
    status = "FunctionStatus",
    derive = "PartialEq",
    doc = "A Flint Function: an HTTP workload run as immutable revisions, routed by host or path, scaled from zero to many and back on request load.",
    printcolumn(name = "URL", type_ = "string", json_path = ".status.url"),
    printcolumn(name = "Ready", type_ = "string", json_path = ".status.conditions[?(@.type==\"Ready\")].status"),
    printcolumn(name = "Replicas", type_ = "integer", json_path = ".status.replicas"),
    printcolumn(name = "Latest", type_ = "string", json_path = ".status.latestReadyRevision"),
    printcolumn(name = "Age", type_ = "date", json_path = ".metadata.creationTimestamp"),
    validation = Rule::new("size(self.metadata.name) <= 57").message("metadata.name: must be at most 57 characters, so that revision names (<name>-00001) stay valid DNS labels"),
    validation = Rule::new("self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$')").message("metadata.name: must be a DNS label: lowercase letters, digits and '-', starting with a letter"),
    // Compared by length and substring rather than startsWith(name + '-'): the API server
    // bounds CEL's cost by the longest value a field may hold, and metadata.name has no
    // maxLength in the schema, so a per-target startsWith exceeds the budget.
    validation = Rule::new("!has(self.spec.traffic) || self.spec.traffic.all(t, !has(t.revision) || (size(t.revision) > size(self.metadata.name) && t.revision.substring(0, size(self.metadata.name)) == self.metadata.name && t.revision.charAt(size(self.metadata.name)) == '-'))").message("spec.traffic: a revision must be one of this function's (<name>-NNNNN)"),
    validation = Rule::new("!has(self.spec.traffic) || self.spec.traffic.all(t, !has(t.tag) || size(t.tag) + size(self.metadata.name) <= 62)").message("spec.traffic: tag plus function name must be at most 62 characters, so that the tagged host <tag>-<name> stays a valid DNS label"),
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!(self.port in [8012, 8022, 9091])").message("port: 8012, 8022 and 9091 are reserved by the platform").field_path(".port"))]
#[x_kube(validation = Rule::new("!has(self.traffic) || size(self.traffic) == 0 || self.traffic.map(t, t.percent).sum() == 100").message("traffic: percents must sum to 100").field_path(".traffic"))]
#[x_kube(validation = Rule::new("!has(self.env) || self.env.all(e, size(e.name) > 0 && !e.name.contains('='))").message("env: every name must be non-empty and without '='").field_path(".env"))]
#[x_kube(validation = Rule::new("(!has(self.sidecars) || self.sidecars.all(c, !has(c.ports) || c.ports.all(p, p.containerPort != self.port))) && (!has(self.initContainers) || self.initContainers.all(c, !has(c.ports) || c.ports.all(p, p.containerPort != self.port)))").message("sidecars: a sidecar or init container must not use the function's port").field_path(".sidecars"))]
#[x_kube(validation = Rule::new("!has(self.initContainers) || !has(self.sidecars) || self.initContainers.all(i, self.sidecars.all(c, c.name != i.name))").message("initContainers: a name is already used by a sidecar").field_path(".initContainers"))]
pub struct FunctionSpec {
    /// Container image that serves the function on a cluster (ignored by `flint dev`, which runs `command` locally). When a revision is cut, its tag is resolved to a digest that the revision keeps (status.images).
    #[schemars(length(min = 1, max = 1024))]
    pub image: String,

    /// Entrypoint to run instead of the image's; `flint dev` runs it as a local process in the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 64))]
    #[x_kube(validation = Rule::new("size(self) > 0 && size(self[0]) > 0").message("must name a program when set"))]
    pub command: Option<Vec<String>>,

    /// Arguments passed to the entrypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 256))]
    pub args: Option<Vec<String>>,

    /// Environment variables for the function's container (at most 256; names at most 1024 characters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = crate::crd::ENV_MAX_ENTRIES))]
    pub env: Vec<EnvVar>,

    /// Sources (Secrets, ConfigMaps) whose keys become environment variables.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_from: Vec<EnvFromSource>,

    /// TCP port the function listens on; it is also passed as $PORT.
    #[serde(default = "defaults::port")]
    #[schemars(range(min = 1, max = 65535))]
    pub port: u16,

    /// Protocol spoken to the function: http1, or h2c (HTTP/2 without TLS, e.g. for gRPC).
    #[serde(default)]
    pub protocol: Protocol,

    /// CPU and memory requests and limits of the function's container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<Box<ResourceRequirements>>,

    /// Readiness probe; defaults to a TCP probe on `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(pod::PROBE_HANDLER_RULE).message(pod::PROBE_HANDLER_MESSAGE))]
    pub readiness_probe: Option<Box<Probe>>,

    /// Liveness probe: the kubelet restarts the function's container when it fails. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(pod::PROBE_HANDLER_RULE).message(pod::PROBE_HANDLER_MESSAGE))]
    #[x_kube(validation = Rule::new(pod::PROBE_SUCCESS_RULE).message(pod::PROBE_SUCCESS_MESSAGE))]
    pub liveness_probe: Option<Box<Probe>>,

    /// Startup probe: the readiness and liveness probes wait until it has succeeded once; for functions that start slowly. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(pod::PROBE_HANDLER_RULE).message(pod::PROBE_HANDLER_MESSAGE))]
    #[x_kube(validation = Rule::new(pod::PROBE_SUCCESS_RULE).message(pod::PROBE_SUCCESS_MESSAGE))]
    pub startup_probe: Option<Box<Probe>>,

    /// When the image is pulled: Always, IfNotPresent or Never. Unset, Kubernetes decides (Always for a `:latest` or untagged image, else IfNotPresent). Ignored by `flint dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_policy: Option<ImagePullPolicy>,

    /// Working directory of the function's container (an absolute path); unset, the image's. `flint dev` reads it under the manifest's directory (which stands for the image's root) and refuses a path that leaves it; unset, it runs `command` in the manifest's directory.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 4096), regex(pattern = "^/"))]
    pub working_dir: Option<String>,

    /// Security context of the function's container. Flint's default (allowPrivilegeEscalation: false, capabilities: drop ALL; the same for every sidecar and init container) passes the Pod Security "restricted" level except for runAsNonRoot, which is set only when asked for here or in podSecurityContext. Each field given here replaces the default's field of the same name (a whole `capabilities` replaces the default's); fields left out keep the default. Sidecars and init containers take their own securityContext the same way. Ignored by `flint dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("!(has(self.privileged) && self.privileged && has(self.allowPrivilegeEscalation) && !self.allowPrivilegeEscalation)").message("allowPrivilegeEscalation must not be false for a privileged container"))]
    pub security_context: Option<Box<SecurityContext>>,

    /// Security context of the revision's pods. Flint's default sets seccompProfile: RuntimeDefault; each field given here replaces the default's field of the same name. Ignored by `flint dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<Box<PodSecurityContext>>,

    /// Longest time a single request may take, in seconds; the gateway answers 504 past it.
    #[serde(default = "defaults::timeout_seconds")]
    #[schemars(range(min = 1, max = 3600))]
    pub timeout_seconds: u32,

    /// Hard limit of requests in flight per replica; extra requests wait in the gateway. 0 means no limit.
    #[serde(default)]
    #[schemars(range(max = 10000))]
    pub concurrency: u32,

    /// Service account the function's pods run as. Only a function that names
    /// one gets its API token mounted; without it the pods carry no API credential.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 253))]
    pub service_account_name: Option<String>,

    /// Secrets used to pull the image.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub image_pull_secrets: Vec<LocalObjectReference>,

    /// Volumes mounted into the function's container: Secret, ConfigMap and projected ones read-only, emptyDir and persistentVolumeClaim ones writable (unless the claim says readOnly). Sidecars and init containers mount them by name in their own volumeMounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    pub volumes: Vec<FunctionVolume>,

    /// Labels added to the revision's pods (the pod template's metadata.labels). Flint's own keys (flint.dev/function, flint.dev/revision, flint.dev/generation, app.kubernetes.io/managed-by, ...) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod::label_map_schema")]
    #[x_kube(validation = Rule::new(pod::reserved_keys_rule()).message(pod::reserved_keys_message().as_str()))]
    pub pod_labels: BTreeMap<String, String>,

    /// Annotations added to the revision's pods (the pod template's metadata.annotations). Flint's own keys (flint.dev/spec-hash, controller.kubernetes.io/pod-deletion-cost, ...) are refused.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod::annotation_map_schema")]
    #[x_kube(validation = Rule::new(pod::reserved_keys_rule()).message(pod::reserved_keys_message().as_str()))]
    pub pod_annotations: BTreeMap<String, String>,

    /// Node labels a node must carry to run the function's pods. Not applied by `flint dev`, which notes it at startup.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(schema_with = "pod::label_map_schema")]
    pub node_selector: BTreeMap<String, String>,

    /// Taints the function's pods tolerate. Not applied by `flint dev`, which notes it at startup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(t, !has(t.operator) || t.operator != 'Exists' || !has(t.value) || size(t.value) == 0)").message("a toleration with operator Exists must not have a value"))]
    pub tolerations: Vec<Toleration>,

    /// Node affinity, pod affinity and pod anti-affinity of the function's pods. Not applied by `flint dev`, which notes it at startup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub affinity: Option<Box<Affinity>>,

    /// How the function's pods spread across zones, nodes or other topology domains. Not applied by `flint dev`, which notes it at startup.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub topology_spread_constraints: Vec<TopologySpreadConstraint>,

    /// RuntimeClass the pods run with (e.g. a sandboxed runtime such as gVisor or Kata). Not applied by `flint dev`, which notes it at startup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::names::DNS1123_SUBDOMAIN_PATTERN))]
    pub runtime_class_name: Option<String>,

    /// PriorityClass of the pods, for scheduling order and preemption. Not applied by `flint dev`, which notes it at startup.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 253), regex(pattern = crate::names::DNS1123_SUBDOMAIN_PATTERN))]
    pub priority_class_name: Option<String>,

    /// Containers run to completion, in order, before the function's container starts (at most 8). Names must be unique across init containers and sidecars and not `app`. Not run by `flint dev`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = pod::MAX_EXTRA_CONTAINERS))]
    #[x_kube(validation = Rule::new(pod::not_app_rule()).message(pod::not_app_message().as_str()))]
    #[x_kube(validation = Rule::new("self.all(c, self.filter(d, d.name == c.name).size() == 1)").message("names must be unique"))]
    #[x_kube(validation = Rule::new("self.all(c, has(c.image) && size(c.image) > 0)").message("every container needs an image"))]
    pub init_containers: Vec<Container>,

    /// Extra containers run next to the function's container in every pod (at most 8), e.g. a log shipper or a local proxy. The function's container (named `app`) stays the one serving `port`: a sidecar may not use that port or the name `app`. Not run by `flint dev`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = pod::MAX_EXTRA_CONTAINERS))]
    #[x_kube(validation = Rule::new(pod::not_app_rule()).message(pod::not_app_message().as_str()))]
    #[x_kube(validation = Rule::new("self.all(c, self.filter(d, d.name == c.name).size() == 1)").message("names must be unique"))]
    #[x_kube(validation = Rule::new("self.all(c, has(c.image) && size(c.image) > 0)").message("every container needs an image"))]
    pub sidecars: Vec<Container>,

    /// How many old revisions that carry no traffic are kept (at zero replicas) before deletion.
    #[serde(default = "defaults::revision_history_limit")]
    #[schemars(range(max = 100))]
    pub revision_history_limit: u32,

    /// Autoscaling: bounds, signal, target and windows.
    #[serde(default)]
    pub scale: ScaleSpec,

    /// How traffic is split between revisions. Empty means 100% to the latest ready revision.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 32))]
    #[x_kube(validation = Rule::new("self.all(t, !has(t.tag) || self.filter(u, has(u.tag) && u.tag == t.tag).size() == 1)").message("tags must be unique"))]
    pub traffic: Vec<TrafficTarget>,

    /// Fire-and-forget invocations: retries, age limit and in-flight limit.
    #[serde(default, rename = "async")]
    pub async_: AsyncSpec,

    /// Cron triggers, each delivered as an asynchronous invocation.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 16))]
    pub schedules: Vec<Schedule>,

    /// Where the Function answers: `public` (on the gateway's public listener) or `cluster-local` (only on its in-cluster listener; 404 on the public one). Unset, the gateway's default (the chart's `gateway.defaultVisibility`, public unless changed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub visibility: Option<Visibility>,

    /// Who may call the Function: API keys, JWTs or both. Unset, anyone who reaches its hosts.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<AuthSpec>,

    /// Custom hosts routed to the Function besides `<name>.<namespace>.<domain>`, each optionally with a path prefix (`api.example.com`, `example.com/orders`). A domain another Function claimed first is not routed here and is reported on this Function's status (condition DomainsReady); it is never silently shadowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    // Each entry's length is bounded in the schema, not only in the rule:
    // the API server prices the rules by the longest string a field may
    // hold, and refuses the CRD when an unbounded one makes them too dear.
    #[schemars(length(max = 32), inner(length(max = 512)))]
    #[x_kube(validation = Rule::new("self.all(d, size(d) <= 512 && d.matches(\"^([a-z0-9]([-a-z0-9]*[a-z0-9])?\\\\.)+[a-z]([-a-z0-9]*[a-z0-9])?(/[A-Za-z0-9._~-]+)*/?$\") && !d.matches('/[.]+(/|$)'))").message("every domain must be a lowercase DNS name of at least two labels, optionally followed by a path prefix without '.' or '..' segments"))]
    #[x_kube(validation = Rule::new("self.all(d, self.filter(e, e == d).size() == 1)").message("domains must be unique"))]
    pub domains: Vec<String>,

    /// TLS at the gateway for the Function's hosts. With it, `status.url` is https.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<TlsSpec>,
}

/// Protocol spoken between the gateway and the function.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 (with upgrades such as WebSocket).
    #[default]
    Http1,
    /// HTTP/2 over cleartext, e.g. for gRPC.
    H2c,
}

impl Protocol {
    /// The protocol as spelled in the Function spec and in a revision's
    /// annotation (the serde name).
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Http1 => "http1",
            Self::H2c => "h2c",
        }
    }
}

/// A protocol name that is not one of the spec's.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown protocol {0:?}: expected \"http1\" or \"h2c\"")]
pub struct UnknownProtocol(pub String);

impl std::str::FromStr for Protocol {
    type Err = UnknownProtocol;

    /// Parses the spec's spelling (see [`Protocol::as_str`]).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        [Self::Http1, Self::H2c]
            .into_iter()
            .find(|p| p.as_str() == s)
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

/// A volume mounted into the function's container: a Secret, a ConfigMap, a
/// projected volume, an emptyDir or a PersistentVolumeClaim.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new(VOLUME_SOURCE_RULE).message(VOLUME_SOURCE_MESSAGE))]
pub struct FunctionVolume {
    /// Volume name, unique within the Function.
    #[schemars(length(min = 1, max = 63))]
    pub name: String,
    /// Absolute path the volume is mounted at.
    #[schemars(length(min = 1, max = 1024), regex(pattern = "^/"))]
    pub mount_path: String,
    /// The Secret to mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub secret: Option<SecretVolumeSource>,
    /// The ConfigMap to mount.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub config_map: Option<ConfigMapVolumeSource>,
    /// A projected volume (Secrets, ConfigMaps, the downward API and service account tokens in one directory), mounted read-only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub projected: Option<ProjectedVolumeSource>,
    /// A scratch directory that lives as long as the pod, mounted writable; shared with sidecars that mount it too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub empty_dir: Option<EmptyDirVolumeSource>,
    /// A PersistentVolumeClaim in the Function's namespace, mounted writable unless `readOnly` is set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub persistent_volume_claim: Option<PersistentVolumeClaimVolumeSource>,
}

/// CEL rule of a volume: exactly one source.
pub const VOLUME_SOURCE_RULE: &str = "(has(self.secret) ? 1 : 0) + (has(self.configMap) ? 1 : 0) + (has(self.projected) ? 1 : 0) + (has(self.emptyDir) ? 1 : 0) + (has(self.persistentVolumeClaim) ? 1 : 0) == 1";
/// Message of [`VOLUME_SOURCE_RULE`], also `validate()`'s.
pub const VOLUME_SOURCE_MESSAGE: &str =
    "exactly one of secret, configMap, projected, emptyDir or persistentVolumeClaim must be set";

/// One traffic target: a share of requests for a revision or for the latest ready revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.revision) != (has(self.latestRevision) && self.latestRevision)").message("exactly one of revision or latestRevision: true must be set"))]
pub struct TrafficTarget {
    /// A named revision, e.g. hello-00001.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(min = 1, max = 63))]
    pub revision: Option<String>,
    /// Follow the latest ready revision.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_revision: Option<bool>,
    /// Percent of requests sent to this target.
    #[schemars(range(max = 100))]
    pub percent: u32,
    /// Also expose this target at <tag>-<function>.<namespace>.<domain>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(
        length(min = 1, max = 61),
        regex(pattern = "^[a-z]([-a-z0-9]*[a-z0-9])?$")
    )]
    pub tag: Option<String>,
}
