//! The identity of a revision: a stable hash of the pod-shaping part of a
//! Function's spec. Two specs that would run the same pods hash the same, so
//! re-reconciling (or restarting the operator) finds the revision it already
//! made instead of cutting a duplicate; a change to scale or traffic alone
//! leaves the hash, and so the revision, unchanged.

use flint_api::FunctionSpec;
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
    resources: &'a Option<k8s_openapi::api::core::v1::ResourceRequirements>,
    readiness_probe: &'a Option<k8s_openapi::api::core::v1::Probe>,
    timeout_seconds: u32,
    concurrency: u32,
    service_account_name: &'a Option<String>,
    image_pull_secrets: &'a [k8s_openapi::api::core::v1::LocalObjectReference],
    volumes: &'a [flint_api::FunctionVolume],
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
    };
    // Serializing plain data structures to a Value cannot fail; a failure
    // would hash as null and still be deterministic.
    let value = serde_json::to_value(&shape).unwrap_or(Value::Null);
    let mut canonical = String::new();
    write_canonical(&value, &mut canonical);
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
        ] {
            assert_ne!(spec_hash(&spec(changed)), base, "{changed}");
        }
    }
}
