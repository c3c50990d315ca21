//! The identity of a revision: a stable hash of the pod-shaping part of a
//! Function's spec. Two specs that would run the same pods hash the same, so
//! re-reconciling (or restarting the operator) finds the revision it already
//! made instead of cutting a duplicate; a change to scale or traffic alone
//! leaves the hash, and so the revision, unchanged.

use std::collections::BTreeMap;

use flint_api::FunctionSpec;
use flint_api::pod::ImagePullPolicy;
use k8s_openapi::api::core::v1::{
    Affinity, Container, PodSecurityContext, Probe, SecurityContext, Toleration,
    TopologySpreadConstraint,
};
use serde::Serialize;
use serde_json::Value;

/// The fields of a Function's spec that shape its pods. Changing any of them
/// makes a new revision; no other field does.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct PodShape<'a> {
    image: &'a str,
    command: &'a Option<Vec<String>>,
    args: &'a Option<Vec<String>>,
    env: &'a [k8s_openapi::api::core::v1::EnvVar],
    env_from: &'a [k8s_openapi::api::core::v1::EnvFromSource],
    port: u16,
    protocol: flint_api::Protocol,
    resources: &'a Option<Box<k8s_openapi::api::core::v1::ResourceRequirements>>,
    readiness_probe: &'a Option<Box<k8s_openapi::api::core::v1::Probe>>,
    timeout_seconds: u32,
    concurrency: u32,
    service_account_name: &'a Option<String>,
    image_pull_secrets: &'a [k8s_openapi::api::core::v1::LocalObjectReference],
    volumes: &'a [flint_api::FunctionVolume],
    // Fields added later are left out while unset, so that a spec that does
    // not use them hashes as it did before they existed: an operator upgrade
    // must not cut a new revision of every Function.
    #[serde(skip_serializing_if = "Option::is_none")]
    liveness_probe: Option<&'a Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    startup_probe: Option<&'a Probe>,
    #[serde(skip_serializing_if = "Option::is_none")]
    image_pull_policy: Option<ImagePullPolicy>,
    #[serde(skip_serializing_if = "Option::is_none")]
    working_dir: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_context: Option<&'a SecurityContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_security_context: Option<&'a PodSecurityContext>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_labels: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pod_annotations: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    node_selector: Option<&'a BTreeMap<String, String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tolerations: Option<&'a [Toleration]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    affinity: Option<&'a Affinity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    topology_spread_constraints: Option<&'a [TopologySpreadConstraint]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    runtime_class_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    priority_class_name: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    init_containers: Option<&'a [Container]>,
    #[serde(skip_serializing_if = "Option::is_none")]
    sidecars: Option<&'a [Container]>,
}

/// `Some(list)` unless it is empty.
fn listed<T>(items: &[T]) -> Option<&[T]> {
    (!items.is_empty()).then_some(items)
}

/// `Some(map)` unless it is empty.
fn mapped(map: &BTreeMap<String, String>) -> Option<&BTreeMap<String, String>> {
    (!map.is_empty()).then_some(map)
}

/// The spec hash of `spec`: 16 lowercase hex digits of FNV-1a (64 bit) over
/// the canonical JSON (keys sorted, no whitespace) of its pod-shaping fields.
/// FNV-1a is fixed by its definition, so the value never changes between
/// builds or Rust versions — it is stored on Deployments and must not drift.
pub fn spec_hash(spec: &FunctionSpec) -> String {
    let shape = PodShape {
        image: &spec.image,
        command: &spec.command,
        args: &spec.args,
        env: &spec.env,
        env_from: &spec.env_from,
        port: spec.port,
        protocol: spec.protocol,
        resources: &spec.resources,
        readiness_probe: &spec.readiness_probe,
        timeout_seconds: spec.timeout_seconds,
        concurrency: spec.concurrency,
        service_account_name: &spec.service_account_name,
        image_pull_secrets: &spec.image_pull_secrets,
        volumes: &spec.volumes,
        liveness_probe: spec.liveness_probe.as_deref(),
        startup_probe: spec.startup_probe.as_deref(),
        image_pull_policy: spec.image_pull_policy,
        working_dir: spec.working_dir.as_deref(),
        security_context: spec.security_context.as_deref(),
        pod_security_context: spec.pod_security_context.as_deref(),
        pod_labels: mapped(&spec.pod_labels),
        pod_annotations: mapped(&spec.pod_annotations),
        node_selector: mapped(&spec.node_selector),
        tolerations: listed(&spec.tolerations),
        affinity: spec.affinity.as_deref(),
        topology_spread_constraints: listed(&spec.topology_spread_constraints),
        runtime_class_name: spec.runtime_class_name.as_deref(),
        priority_class_name: spec.priority_class_name.as_deref(),
        init_containers: listed(&spec.init_containers),
        sidecars: listed(&spec.sidecars),
    };
    // Serializing plain data structures to a Value cannot fail; a failure
    // would hash as null and still be deterministic.
    content_hash(&serde_json::to_value(&shape).unwrap_or(Value::Null))
}

/// 16 lowercase hex digits of FNV-1a (64 bit) over the canonical JSON (keys
/// sorted, no whitespace) of `value`: the same digest as [`spec_hash`], for
/// any serialized object (see [`super::applied`]).
pub fn content_hash(value: &Value) -> String {
    let mut canonical = String::new();
    write_canonical(value, &mut canonical);
    format!("{:016x}", fnv1a64(canonical.as_bytes()))
}

/// Writes `value` as JSON with object keys sorted, whatever map type serde_json uses.
fn write_canonical(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (i, key) in keys.into_iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(v) = map.get(key) {
                    write_canonical(v, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_canonical(item, out);
            }
            out.push(']');
        }
        other => out.push_str(&other.to_string()),
    }
}

/// FNV-1a, 64 bit.
fn fnv1a64(bytes: &[u8]) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    bytes
        .iter()
        .fold(OFFSET, |h, b| (h ^ u64::from(*b)).wrapping_mul(PRIME))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> FunctionSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    #[test]
    fn fnv_matches_reference_vectors() {
        assert_eq!(fnv1a64(b""), 0xcbf29ce484222325);
        assert_eq!(fnv1a64(b"a"), 0xaf63dc4c8601ec8c);
        assert_eq!(fnv1a64(b"foobar"), 0x85944171f73967e8);
    }

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let v = serde_json::json!({"b": 1, "a": {"z": [true, null], "y": "s"}});
        let mut out = String::new();
        write_canonical(&v, &mut out);
        assert_eq!(out, r#"{"a":{"y":"s","z":[true,null]},"b":1}"#);
    }

    /// The hash of a spec that uses none of the later fields is the one it
    /// had before they existed: upgrading the operator cuts no revisions.
    #[test]
    fn specs_without_the_later_fields_keep_their_hash() {
        assert_eq!(spec_hash(&spec("image: a:1")), "f7fab2c80c23ab3d");
        assert_eq!(
            spec_hash(&spec(
                "image: a:1\nvolumes: [{name: v, mountPath: /v, secret: {secretName: s}}]"
            )),
            "1c678b2b85863b5b"
        );
    }

    #[test]
    fn scale_and_traffic_do_not_change_the_hash() {
        let base = spec("image: a:1");
        let scaled = spec(
            "image: a:1\nscale: {min: 1, max: 3, initial: 2}\ntraffic: [{latestRevision: true, percent: 100}]\nrevisionHistoryLimit: 2",
        );
        assert_eq!(spec_hash(&base), spec_hash(&scaled));
        assert_eq!(spec_hash(&base).len(), 16);
    }

    #[test]
    fn every_pod_shaping_field_changes_the_hash() {
        let base = spec_hash(&spec("image: a:1"));
        for changed in [
            "image: a:2",
            "image: a:1\ncommand: [x]",
            "image: a:1\nargs: [x]",
            "image: a:1\nenv: [{name: A, value: b}]",
            "image: a:1\nenvFrom: [{secretRef: {name: s}}]",
            "image: a:1\nport: 9000",
            "image: a:1\nprotocol: h2c",
            "image: a:1\nresources: {requests: {cpu: 100m}}",
            "image: a:1\nreadinessProbe: {httpGet: {path: /, port: 8080}}",
            "image: a:1\ntimeoutSeconds: 10",
            "image: a:1\nconcurrency: 4",
            "image: a:1\nserviceAccountName: sa",
            "image: a:1\nimagePullSecrets: [{name: reg}]",
            "image: a:1\nvolumes: [{name: v, mountPath: /v, secret: {secretName: s}}]",
            "image: a:1\nvolumes: [{name: v, mountPath: /v, emptyDir: {}}]",
            "image: a:1\nvolumes: [{name: v, mountPath: /v, persistentVolumeClaim: {claimName: c}}]",
            "image: a:1\nvolumes: [{name: v, mountPath: /v, projected: {sources: []}}]",
            "image: a:1\nlivenessProbe: {httpGet: {path: /, port: 8080}}",
            "image: a:1\nstartupProbe: {tcpSocket: {port: 8080}}",
            "image: a:1\nimagePullPolicy: Always",
            "image: a:1\nworkingDir: /srv",
            "image: a:1\nsecurityContext: {runAsNonRoot: true}",
            "image: a:1\npodSecurityContext: {fsGroup: 2000}",
            "image: a:1\npodLabels: {team: a}",
            "image: a:1\npodAnnotations: {note: a}",
            "image: a:1\nnodeSelector: {disk: ssd}",
            "image: a:1\ntolerations: [{key: k, operator: Exists}]",
            "image: a:1\naffinity: {nodeAffinity: {}}",
            "image: a:1\ntopologySpreadConstraints: [{maxSkew: 1, topologyKey: zone, whenUnsatisfiable: DoNotSchedule}]",
            "image: a:1\nruntimeClassName: gvisor",
            "image: a:1\npriorityClassName: high",
            "image: a:1\ninitContainers: [{name: init, image: b:1}]",
            "image: a:1\nsidecars: [{name: proxy, image: b:1}]",
        ] {
            assert_ne!(spec_hash(&spec(changed)), base, "{changed}");
        }
    }
}
