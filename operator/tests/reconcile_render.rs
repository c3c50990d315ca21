//! `flint render` of the every-field manifest: the objects come out with
//! valid names at the longest Function name (scripts/test validates the
//! same output against the Kubernetes schemas).

use flint_api::names::{MAX_FUNCTION_NAME_LEN, is_dns1035_label};
use flint_operator::reconcile::render::render_manifest;
use serde::Deserialize;
use serde_json::json;

#[test]
fn every_field_manifest_renders_with_valid_names() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reconcile_every_field.yaml"
    );
    let yaml = render_manifest(&std::fs::read_to_string(path).unwrap()).unwrap();
    let docs: Vec<serde_yaml::Value> = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde_yaml::Value::deserialize(d).unwrap())
        .collect();
    let kinds: Vec<&str> = docs.iter().map(|d| d["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, ["Deployment", "Service"]);
    for doc in &docs {
        let name = doc["metadata"]["name"].as_str().unwrap();
        assert_eq!(name.len(), MAX_FUNCTION_NAME_LEN + 6);
        assert!(is_dns1035_label(name), "{name}");
        for (_, value) in doc["metadata"]["labels"].as_mapping().unwrap() {
            assert!(value.as_str().unwrap().len() <= 63);
        }
    }
    let pod = &docs[0]["spec"]["template"]["spec"];
    assert_eq!(pod["volumes"].as_sequence().unwrap().len(), 5);
    assert_eq!(pod["terminationGracePeriodSeconds"].as_i64(), Some(65));
}

/// Every pod-template field of the every-field manifest reaches the
/// revision's Deployment, next to what Flint sets itself.
#[test]
fn every_pod_template_field_reaches_the_deployment() {
    let path = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reconcile_every_field.yaml"
    );
    let yaml = render_manifest(&std::fs::read_to_string(path).unwrap()).unwrap();
    let doc: serde_json::Value = serde_yaml::Deserializer::from_str(&yaml)
        .map(|d| serde_json::Value::deserialize(d).unwrap())
        .next()
        .unwrap();
    let template = &doc["spec"]["template"];
    let meta = &template["metadata"];
    assert_eq!(meta["labels"]["team"], "payments");
    assert_eq!(meta["labels"]["example.com/tier"], "web");
    assert_eq!(meta["labels"]["app.kubernetes.io/managed-by"], "flint");
    assert!(meta["labels"]["flint.dev/revision"].is_string());
    assert_eq!(meta["annotations"]["prometheus.io/scrape"], "true");
    assert!(meta["annotations"]["flint.dev/spec-hash"].is_string());

    let pod = &template["spec"];
    assert_eq!(pod["nodeSelector"], json!({"kubernetes.io/arch": "amd64"}));
    assert_eq!(pod["tolerations"].as_array().unwrap().len(), 2);
    assert_eq!(pod["tolerations"][1]["tolerationSeconds"], 30);
    assert_eq!(
        pod["affinity"]["podAntiAffinity"]["preferredDuringSchedulingIgnoredDuringExecution"][0]["weight"],
        100
    );
    assert_eq!(
        pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
            [0]["matchExpressions"][0]["key"],
        "kubernetes.io/os"
    );
    assert_eq!(
        pod["topologySpreadConstraints"][0]["whenUnsatisfiable"],
        "ScheduleAnyway"
    );
    assert_eq!(pod["runtimeClassName"], "gvisor");
    assert_eq!(pod["priorityClassName"], "high-priority");
    // The Function's pod security context over the default seccomp profile.
    assert_eq!(
        pod["securityContext"],
        json!({"fsGroup": 2000, "runAsNonRoot": true, "seccompProfile": {"type": "RuntimeDefault"}})
    );

    let app = &pod["containers"][0];
    assert_eq!(app["name"], "app");
    assert_eq!(app["imagePullPolicy"], "IfNotPresent");
    assert_eq!(app["workingDir"], "/srv");
    assert_eq!(app["livenessProbe"]["httpGet"]["path"], "/healthz");
    assert_eq!(app["startupProbe"]["failureThreshold"], 30);
    assert_eq!(app["readinessProbe"]["httpGet"]["path"], "/healthz");
    // The Function's fields replace the default's; the rest stay.
    assert_eq!(
        app["securityContext"],
        json!({"allowPrivilegeEscalation": false, "runAsNonRoot": true, "runAsUser": 65532,
               "readOnlyRootFilesystem": true,
               "capabilities": {"drop": ["ALL"], "add": ["NET_BIND_SERVICE"]}})
    );
    let mounts: Vec<(&str, bool)> = app["volumeMounts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["name"].as_str().unwrap(),
                m["readOnly"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        mounts,
        [
            ("cfg", true),
            ("sec", true),
            ("logs", false),
            ("data", false),
            ("bundle", true)
        ]
    );
    let volumes = pod["volumes"].as_array().unwrap();
    assert_eq!(volumes[2]["emptyDir"]["sizeLimit"], "64Mi");
    assert_eq!(volumes[3]["persistentVolumeClaim"]["claimName"], "data");
    assert_eq!(
        volumes[4]["projected"]["sources"][2]["serviceAccountToken"]["audience"],
        "api"
    );

    // The sidecar follows the function's container; every extra container
    // gets the default security context under its own.
    let containers = pod["containers"].as_array().unwrap();
    assert_eq!(containers.len(), 2);
    let sidecar = &containers[1];
    assert_eq!(sidecar["name"], "shipper");
    assert_eq!(sidecar["ports"][0]["containerPort"], 9901);
    assert_eq!(sidecar["volumeMounts"][0]["name"], "logs");
    assert_eq!(
        sidecar["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]},
               "readOnlyRootFilesystem": true})
    );
    let init = &pod["initContainers"][0];
    assert_eq!(init["name"], "migrate");
    assert_eq!(init["command"], json!(["migrate", "up"]));
    assert_eq!(
        init["securityContext"],
        json!({"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}})
    );
}
