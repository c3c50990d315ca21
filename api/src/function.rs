//! The `Function` custom resource (`functions.flint.dev/v1alpha1`).
//!
//! Every field's doc comment becomes its CRD description (what `kubectl
//! explain function.spec...` prints). Cross-field rules are CEL
//! (`x-kubernetes-validations`) so the API server refuses bad manifests; the
//! same rules run in Rust in [`crate::validate`] for `flint dev`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::{
    Affinity, ConfigMapVolumeSource, Container, EmptyDirVolumeSource, EnvFromSource, EnvVar,
    LocalObjectReference, PersistentVolumeClaimVolumeSource, PodSecurityContext, Probe,
    ProjectedVolumeSource, ResourceRequirements, SecretVolumeSource, SecurityContext, Toleration,
    TopologySpreadConstraint,
};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::CustomResource;
use kube::KubeSchema;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::defaults;
use crate::duration::Duration;
use crate::pod::{self, ImagePullPolicy};

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
    pub resources: Option<ResourceRequirements>,

    /// Readiness probe; defaults to a TCP probe on `port`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(pod::PROBE_HANDLER_RULE).message(pod::PROBE_HANDLER_MESSAGE))]
    pub readiness_probe: Option<Probe>,

    /// Liveness probe: the kubelet restarts the function's container when it fails. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(pod::PROBE_HANDLER_RULE).message(pod::PROBE_HANDLER_MESSAGE))]
    #[x_kube(validation = Rule::new(pod::PROBE_SUCCESS_RULE).message(pod::PROBE_SUCCESS_MESSAGE))]
    pub liveness_probe: Option<Probe>,

    /// Startup probe: the readiness and liveness probes wait until it has succeeded once; for functions that start slowly. None by default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new(pod::PROBE_HANDLER_RULE).message(pod::PROBE_HANDLER_MESSAGE))]
    #[x_kube(validation = Rule::new(pod::PROBE_SUCCESS_RULE).message(pod::PROBE_SUCCESS_MESSAGE))]
    pub startup_probe: Option<Probe>,

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
    pub security_context: Option<SecurityContext>,

    /// Security context of the revision's pods. Flint's default sets seccompProfile: RuntimeDefault; each field given here replaces the default's field of the same name. Ignored by `flint dev`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pod_security_context: Option<PodSecurityContext>,

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
    pub affinity: Option<Affinity>,

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

/// The autoscaling knobs (Knative KPA semantics). Defaults suit most HTTP functions.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("self.min <= self.max").message("min must not exceed max").field_path(".min"))]
#[x_kube(validation = Rule::new("self.initial >= self.min && self.initial <= self.max").message("initial must lie between min and max").field_path(".initial"))]
#[x_kube(validation = Rule::new("duration(self.stableWindow) >= duration('6s') && duration(self.stableWindow) <= duration('1h')").message("stableWindow must be between 6s and 1h").field_path(".stableWindow"))]
#[x_kube(validation = Rule::new("duration(self.scaleDownDelay) <= duration('1h')").message("scaleDownDelay must be at most 1h").field_path(".scaleDownDelay"))]
#[x_kube(validation = Rule::new("duration(self.scaleToZeroGracePeriod) >= duration('1s') && duration(self.scaleToZeroGracePeriod) <= duration('1h')").message("scaleToZeroGracePeriod must be between 1s and 1h").field_path(".scaleToZeroGracePeriod"))]
pub struct ScaleSpec {
    /// Fewest replicas; 0 lets the function scale to zero when idle.
    #[serde(default)]
    #[schemars(range(max = 1000))]
    pub min: u32,
    /// Most replicas.
    #[serde(default = "defaults::max_scale")]
    #[schemars(range(min = 1, max = 1000))]
    pub max: u32,
    /// Replicas a new revision starts with (between min and max).
    #[serde(default = "defaults::initial_scale")]
    #[schemars(range(max = 1000))]
    pub initial: u32,
    /// Signal to scale on: concurrency (requests in flight) or rps (requests per second).
    #[serde(default)]
    pub metric: ScaleMetric,
    /// Soft target of the metric per replica.
    #[serde(default = "defaults::target")]
    #[schemars(range(min = 1, max = 100000))]
    pub target: u32,
    /// Percent of `target` actually aimed at, leaving headroom for bursts.
    #[serde(default = "defaults::target_utilization")]
    #[schemars(range(min = 1, max = 100))]
    pub target_utilization: u32,
    /// Window the stable (non-panic) average is taken over.
    #[serde(default = "defaults::stable_window")]
    pub stable_window: Duration,
    /// Panic window as a percent of the stable window.
    #[serde(default = "defaults::panic_window_percent")]
    #[schemars(range(min = 1, max = 100))]
    pub panic_window_percent: u32,
    /// Enter panic mode when the panic-window demand reaches this percent of current capacity.
    #[serde(default = "defaults::panic_threshold_percent")]
    #[schemars(range(min = 110, max = 1000))]
    pub panic_threshold_percent: u32,
    /// How long demand must stay low before scaling down takes effect.
    #[serde(default = "defaults::scale_down_delay")]
    pub scale_down_delay: Duration,
    /// Keep-alive policy for the last replica: fixed (the grace period) or adaptive (learned from idle times).
    #[serde(default)]
    pub keep_alive: KeepAlive,
    /// How long a revision with no traffic keeps its last replica before scaling to zero.
    #[serde(default = "defaults::scale_to_zero_grace_period")]
    pub scale_to_zero_grace_period: Duration,
}

/// The per-replica signal the autoscaler scales on.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ScaleMetric {
    /// Average requests in flight.
    #[default]
    Concurrency,
    /// Requests per second.
    Rps,
}

/// Keep-alive policy for a revision's last replica.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum KeepAlive {
    /// Keep the last replica for `scaleToZeroGracePeriod` after the last request.
    #[default]
    Fixed,
    /// Learn the function's idle-time histogram; keep or pre-warm the last replica accordingly.
    Adaptive,
    /// Choose keep and pre-warm windows that minimise expected cold starts plus the price of idle
    /// time, from the function's idle times and a population prior; rarely called functions are
    /// kept longer, timer-driven ones pre-warmed.
    Learned,
}

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

/// Fire-and-forget invocation settings.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("duration(self.maxAge) >= duration('1s') && duration(self.maxAge) <= duration('168h')").message("maxAge must be between 1s and 168h").field_path(".maxAge"))]
pub struct AsyncSpec {
    /// Retries after the first attempt before an invocation is dead-lettered.
    #[serde(default = "defaults::async_max_retries")]
    #[schemars(range(max = 100))]
    pub max_retries: u32,
    /// Oldest an invocation may get before it is dead-lettered without further retries.
    #[serde(default = "defaults::async_max_age")]
    pub max_age: Duration,
    /// Asynchronous deliveries in flight at once for this function.
    #[serde(default = "defaults::async_max_in_flight")]
    #[schemars(range(min = 1, max = 10000))]
    pub max_in_flight: u32,
    /// Store the caller's Authorization and Cookie headers with each asynchronous invocation and deliver them to the function. Off by default: invocations are kept on disk and replayed later, so credentials are dropped unless the function needs them. Proxy-Authorization is never stored.
    #[serde(default)]
    pub store_credentials: bool,
}

/// The schema pattern of a five-field cron expression (numbers in range,
/// `*`, ranges, lists, steps, month and weekday names).
pub const CRON_PATTERN: &str = "^((\\*|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]*)?(,(\\*|([0-5]?[0-9])(-([0-5]?[0-9]))?)(/[1-9][0-9]*)?)*) +((\\*|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]*)?(,(\\*|([01]?[0-9]|2[0-3])(-([01]?[0-9]|2[0-3]))?)(/[1-9][0-9]*)?)*) +((\\*|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]*)?(,(\\*|(0?[1-9]|[12][0-9]|3[01])(-(0?[1-9]|[12][0-9]|3[01]))?)(/[1-9][0-9]*)?)*) +((\\*|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC))?)(/[1-9][0-9]*)?(,(\\*|(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC)(-(0?[1-9]|1[0-2]|jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec|JAN|FEB|MAR|APR|MAY|JUN|JUL|AUG|SEP|OCT|NOV|DEC))?)(/[1-9][0-9]*)?)*) +((\\*|([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT)(-([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT))?)(/[1-9][0-9]*)?(,(\\*|([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT)(-([0-7]|sun|mon|tue|wed|thu|fri|sat|SUN|MON|TUE|WED|THU|FRI|SAT))?)(/[1-9][0-9]*)?)*)$";

/// A cron trigger, delivered as an asynchronous invocation.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct Schedule {
    /// Five-field cron expression (minute hour day-of-month month day-of-week).
    #[schemars(length(min = 9, max = 128), regex(pattern = CRON_PATTERN))]
    pub cron: String,
    /// IANA time zone the expression is read in.
    #[serde(default = "defaults::timezone")]
    #[schemars(schema_with = "timezone_schema")]
    pub timezone: String,
    /// Request path sent to the function.
    #[serde(default = "defaults::schedule_path")]
    #[schemars(length(min = 1, max = 2048), regex(pattern = "^/"))]
    pub path: String,
    /// HTTP method of the invocation.
    #[serde(default)]
    pub method: ScheduleMethod,
    /// Request body sent with each invocation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 65536))]
    pub body: Option<String>,
}

/// Every IANA time zone name the scheduler's database (chrono-tz) knows,
/// sorted, so that the generated CRD is the same on every run.
pub fn timezone_names() -> Vec<&'static str> {
    let mut names: Vec<&'static str> = chrono_tz::TZ_VARIANTS.iter().map(|tz| tz.name()).collect();
    names.sort_unstable();
    names.dedup();
    names
}

/// Schema of `schedules[].timezone`: a string out of [`timezone_names`], so
/// the API server refuses a well-formed but unknown zone (`Mars/Olympus`)
/// exactly as [`crate::validate`] does.
fn timezone_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
    schemars::json_schema!({
        "type": "string",
        "enum": timezone_names(),
    })
}

/// HTTP method of a scheduled invocation.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq, Hash, Default, JsonSchema)]
#[serde(rename_all = "UPPERCASE")]
pub enum ScheduleMethod {
    /// GET
    Get,
    /// POST
    #[default]
    Post,
    /// PUT
    Put,
    /// PATCH
    Patch,
    /// DELETE
    Delete,
}

/// Observed state of a Function, written by the operator.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Default, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    /// The generation the status was computed from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub observed_generation: Option<i64>,
    /// Ready, ConfigurationsReady and RoutesReady, with reasons a person can act on.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["type"]))]
    pub conditions: Vec<Condition>,
    /// Where the function is reached: http://<name>.<namespace>.<domain>.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The newest revision created.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_created_revision: Option<String>,
    /// The newest revision that became ready.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latest_ready_revision: Option<String>,
    /// Traffic split resolved to concrete revisions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub traffic: Vec<TrafficStatus>,
    /// The revisions that exist, newest first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub revisions: Vec<RevisionStatus>,
    /// Ready replicas across all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub replicas: Option<i32>,
    /// Replicas the autoscaler wants across all revisions.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub desired_replicas: Option<i32>,
    /// The image each kept revision runs, as its Deployment has it: pinned
    /// by digest (`repo@sha256:…`) when the tag was resolved as the
    /// revision was cut, so a later push of the tag does not change it.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["revision"]))]
    pub images: Vec<RevisionImage>,
    /// Per revision: why the keep-alive policy keeps, pre-warms or releases
    /// the last replica, and what it has learned (written by the autoscaler,
    /// read back by the next operator leader).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(extend("x-kubernetes-list-type" = "map", "x-kubernetes-list-map-keys" = ["revision"]))]
    pub keep_alive: Vec<KeepAliveStatus>,
}

/// The image one revision runs.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionImage {
    /// The revision.
    pub revision: String,
    /// Its image: `spec.image` with the tag resolved to a digest, or as
    /// written (given by digest, or in a registry the operator skips).
    pub image: String,
}

/// The keep-alive policy's view of one revision. Written by the autoscaler
/// under its own field manager; the reconciler never touches it.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct KeepAliveStatus {
    /// The revision.
    pub revision: String,
    /// The policy in force (`scale.keepAlive`).
    pub policy: KeepAlive,
    /// Why the last replica is kept, pre-warmed or released, in words, e.g.
    /// "learned from 12 idle times, periodic: released at 14:30 UTC; next call expected 14:58-15:01 UTC, pre-warming from 14:58 UTC".
    pub message: String,
    /// What the policy has learned (idle-time histogram, last activity),
    /// compactly encoded: opaque, at most 1 KiB. Lets a new operator leader
    /// make the decisions the previous one would have made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 1024))]
    pub learned: Option<String>,
}

/// A traffic target resolved to a concrete revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct TrafficStatus {
    /// The revision receiving this share.
    pub revision_name: String,
    /// Percent of requests.
    pub percent: u32,
    /// Whether this entry follows the latest ready revision.
    #[serde(default)]
    pub latest_revision: bool,
    /// The tag, if the target has one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tag: Option<String>,
    /// The tagged URL, if the target has a tag.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
}

/// The observed state of one revision.
#[derive(Serialize, Deserialize, Clone, Debug, PartialEq, Eq, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RevisionStatus {
    /// Revision name, e.g. hello-00002.
    pub name: String,
    /// Whether at least one replica is ready (or the revision is healthy at zero).
    pub ready: bool,
    /// Ready replicas.
    #[serde(default)]
    pub replicas: i32,
    /// Why the revision is not ready, in one word (e.g. ImagePullBackOff).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// A sentence a person can act on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// The `concurrency` the revision was created with; the gateway limits
    /// its replicas to this, whatever the spec says now. Empty for a
    /// revision created before it was recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<u32>,
    /// The `timeoutSeconds` the revision was created with; the gateway times
    /// its requests out by this. Empty for a revision created before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    /// The `protocol` the revision was created with; the gateway speaks it to
    /// the revision's replicas. Empty for a revision created before it was
    /// recorded.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<Protocol>,
    /// The `scale` settings the autoscaler scales the revision with (except
    /// `min`, which only revisions taking traffic hold). The latest created
    /// revision follows the spec's current `scale`; every other revision
    /// keeps the `scale` it had when it stopped being the latest (else the
    /// one it was created with). Empty for a revision created before it was
    /// recorded, which follows the spec's current `scale`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(schema_with = "revision_scale_schema")]
    pub scale: Option<ScaleSpec>,
}

/// Schema of `status.revisions[].scale`: the `ScaleSpec` schema without its
/// CEL rules. The operator writes it from a valid spec, and the API server
/// prices a rule inside a list by the most entries the list could hold: in
/// this unbounded list, the rules would eat into the CRD's CEL cost budget.
fn revision_scale_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut schema = ScaleSpec::json_schema(generator);
    schema.remove("x-kubernetes-validations");
    schema.insert("nullable".to_owned(), serde_json::Value::Bool(true));
    schema
}

impl Default for ScaleSpec {
    fn default() -> Self {
        Self {
            min: 0,
            max: defaults::max_scale(),
            initial: defaults::initial_scale(),
            metric: ScaleMetric::default(),
            target: defaults::target(),
            target_utilization: defaults::target_utilization(),
            stable_window: defaults::stable_window(),
            panic_window_percent: defaults::panic_window_percent(),
            panic_threshold_percent: defaults::panic_threshold_percent(),
            scale_down_delay: defaults::scale_down_delay(),
            keep_alive: KeepAlive::default(),
            scale_to_zero_grace_period: defaults::scale_to_zero_grace_period(),
        }
    }
}

impl Default for AsyncSpec {
    fn default() -> Self {
        Self {
            max_retries: defaults::async_max_retries(),
            max_age: defaults::async_max_age(),
            max_in_flight: defaults::async_max_in_flight(),
            store_credentials: false,
        }
    }
}

impl ScaleSpec {
    /// The per-replica value the autoscaler aims at: `target × targetUtilization%`.
    pub fn effective_target(&self) -> f64 {
        f64::from(self.target) * f64::from(self.target_utilization) / 100.0
    }

    /// The panic window: `panicWindowPercent` of the stable window, at least one second.
    pub fn panic_window(&self) -> Duration {
        let ms =
            self.stable_window.as_std().as_millis() * u128::from(self.panic_window_percent) / 100;
        Duration::from_millis(u64::try_from(ms).unwrap_or(u64::MAX).max(1_000))
    }
}
