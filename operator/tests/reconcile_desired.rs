//! `desired_objects`: which revision a spec maps to, the objects it gets,
//! traffic resolution and garbage collection — pure, table-like tests.

use flint_api::names::{MAX_FUNCTION_NAME_LEN, MAX_REVISION_NUMBER, is_dns1035_label};
use flint_api::{Function, TrafficStatus};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::traffic::TrafficError;
use flint_operator::reconcile::{DesiredError, ExistingRevision, RevisionHealth, desired_objects};
use serde_json::{Value, json};

fn function(name: &str, spec: Value) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "flint.dev/v1alpha1",
        "kind": "Function",
        "metadata": {"name": name, "namespace": "ns", "uid": "uid-1", "generation": 4},
        "spec": spec
    }))
    .unwrap()
}

fn revision(f: &Function, n: u32, spec: Option<Value>) -> ExistingRevision {
    let name = f.metadata.name.clone().unwrap();
    let hash = match spec {
        Some(s) => spec_hash(&function(&name, s).spec),
        None => spec_hash(&f.spec),
    };
    ExistingRevision::new(format!("{name}-{n:05}"), n, hash)
}

/// The `flint.dev/scale` annotation of a revision created with the default
/// `scale`: the whole ScaleSpec, compact, in field order.
const DEFAULT_SCALE_ANNOTATION: &str = r#"{"min":0,"max":100,"initial":1,"metric":"concurrency","target":100,"targetUtilization":70,"stableWindow":"1m","panicWindowPercent":10,"panicThresholdPercent":200,"scaleDownDelay":"0s","keepAlive":"fixed","scaleToZeroGracePeriod":"30s"}"#;

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap()
}

fn traffic(name: &str, percent: u32, latest: bool, tag: Option<&str>) -> TrafficStatus {
    TrafficStatus {
        revision_name: name.into(),
        percent,
        latest_revision: latest,
        tag: tag.map(str::to_owned),
        url: None,
    }
}

#[test]
fn first_revision_gets_a_deployment_and_a_service() {
    let f = function("hello", json!({"image": "reg/hello:1"}));
    let d = desired_objects(&f, &[]).unwrap();
    assert_eq!(d.latest.name, "hello-00001");
    assert_eq!(d.latest.number, 1);
    assert!(d.latest.created);
    assert_eq!(d.latest.spec_hash, spec_hash(&f.spec));
    let deployment = to_json(d.deployment.as_ref().unwrap());
    assert_eq!(deployment["metadata"]["name"], "hello-00001");
    assert_eq!(deployment["metadata"]["namespace"], "ns");
    assert_eq!(
        deployment["metadata"]["labels"],
        json!({"flint.dev/function": "hello", "flint.dev/revision": "hello-00001",
               "flint.dev/generation": "4", "app.kubernetes.io/managed-by": "flint"})
    );
    assert_eq!(
        deployment["metadata"]["annotations"],
        json!({"flint.dev/spec-hash": d.latest.spec_hash, "flint.dev/concurrency": "0",
               "flint.dev/timeout-seconds": "300", "flint.dev/protocol": "http1",
               "flint.dev/scale": DEFAULT_SCALE_ANNOTATION})
    );
    assert_eq!(
        deployment["metadata"]["ownerReferences"],
        json!([{"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "name": "hello",
                "uid": "uid-1", "controller": true, "blockOwnerDeletion": true}])
    );
    assert_eq!(
        deployment["spec"]["selector"],
        json!({"matchLabels": {"flint.dev/revision": "hello-00001"}})
    );
    assert_eq!(d.services.len(), 1);
    let service = to_json(&d.services[0]);
    assert_eq!(service["metadata"]["name"], "hello-00001");
    assert_eq!(
        service["metadata"]["labels"],
        deployment["metadata"]["labels"]
    );
    assert_eq!(
        service["spec"],
        json!({"type": "ClusterIP", "selector": {"flint.dev/revision": "hello-00001"},
               "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}]})
    );
    // No revision is ready yet: traffic cannot resolve, nothing is routed.
    assert_eq!(d.resolved, Err(TrafficError::NoReadyRevision));
    assert!(d.traffic.is_empty());
    assert!(d.delete.is_empty());
}

#[test]
fn every_default_is_filled() {
    let f = function("hello", json!({"image": "reg/hello:1"}));
    let d = desired_objects(&f, &[]).unwrap();
    let spec = &to_json(d.deployment.as_ref().unwrap())["spec"];
    assert_eq!(spec["replicas"], 1, "scale.initial defaults to 1");
    let pod = &spec["template"]["spec"];
    assert_eq!(
        pod,
        &json!({
            "containers": [{
                "name": "app",
                "image": "reg/hello:1",
                "env": [{"name": "PORT", "value": "8080"}],
                "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
                "readinessProbe": {"tcpSocket": {"port": 8080}, "periodSeconds": 1, "failureThreshold": 3},
                "lifecycle": {"preStop": {"sleep": {"seconds": 5}}},
                // Pod Security "restricted", all but runAsNonRoot (images may run as root).
                "securityContext": {"allowPrivilegeEscalation": false, "capabilities": {"drop": ["ALL"]}}
            }],
            "securityContext": {"seccompProfile": {"type": "RuntimeDefault"}},
            "terminationGracePeriodSeconds": 305,
            "automountServiceAccountToken": false,
            "enableServiceLinks": false,
            "shareProcessNamespace": true
        })
    );
    assert_eq!(
        spec["template"]["metadata"]["labels"]["flint.dev/revision"],
        "hello-00001"
    );
}

#[test]
fn user_settings_reach_the_pod() {
    let f = function(
        "hello",
        json!({
            "image": "reg/hello:1", "command": ["python3", "h.py"], "args": ["-v"],
            "env": [{"name": "PORT", "value": "1"}, {"name": "A", "value": "b"}],
            "envFrom": [{"secretRef": {"name": "s"}}],
            "port": 9000, "timeoutSeconds": 30,
            "resources": {"requests": {"cpu": "50m"}},
            "readinessProbe": {"httpGet": {"path": "/healthz", "port": 9000}},
            "serviceAccountName": "sa", "imagePullSecrets": [{"name": "reg"}],
            "volumes": [{"name": "cfg", "mountPath": "/etc/cfg", "configMap": {"name": "c"}}],
            "scale": {"min": 0, "max": 5, "initial": 0}
        }),
    );
    let d = desired_objects(&f, &[]).unwrap();
    let spec = &to_json(d.deployment.as_ref().unwrap())["spec"];
    assert_eq!(spec["replicas"], 0);
    let pod = &spec["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(c["command"], json!(["python3", "h.py"]));
    assert_eq!(c["args"], json!(["-v"]));
    // PORT is the platform's: a user value for it is dropped.
    assert_eq!(
        c["env"],
        json!([{"name": "PORT", "value": "9000"}, {"name": "A", "value": "b"}])
    );
    assert_eq!(c["envFrom"], json!([{"secretRef": {"name": "s"}}]));
    assert_eq!(c["ports"][0]["containerPort"], 9000);
    assert_eq!(c["resources"], json!({"requests": {"cpu": "50m"}}));
    assert_eq!(
        c["readinessProbe"],
        json!({"httpGet": {"path": "/healthz", "port": 9000}})
    );
    assert_eq!(
        c["volumeMounts"],
        json!([{"name": "cfg", "mountPath": "/etc/cfg", "readOnly": true}])
    );
    assert_eq!(
        pod["volumes"],
        json!([{"name": "cfg", "configMap": {"name": "c"}}])
    );
    assert_eq!(pod["serviceAccountName"], "sa");
    assert_eq!(
        pod["automountServiceAccountToken"], true,
        "a named account brings its token"
    );
    assert_eq!(pod["imagePullSecrets"], json!([{"name": "reg"}]));
    assert_eq!(pod["terminationGracePeriodSeconds"], 35);
}

#[test]
fn unchanged_spec_creates_nothing_and_routes_the_ready_revision() {
    let f = function("hello", json!({"image": "reg/hello:1"}));
    let existing = [revision(&f, 1, None)];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(d.latest.name, "hello-00001");
    assert!(!d.latest.created);
    assert!(
        d.deployment.is_none(),
        "existing Deployments are never re-applied"
    );
    assert_eq!(
        d.services.len(),
        1,
        "Services are re-applied to repair drift"
    );
    assert_eq!(d.latest_ready.as_deref(), Some("hello-00001"));
    assert_eq!(d.traffic, [traffic("hello-00001", 100, true, None)]);
}

#[test]
fn template_change_creates_the_next_revision_which_waits_for_readiness() {
    let old = json!({"image": "reg/hello:1"});
    let f = function("hello", json!({"image": "reg/hello:2"}));
    let existing = [revision(&f, 1, Some(old))];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(d.latest.name, "hello-00002");
    assert!(d.latest.created);
    let deployment = to_json(d.deployment.as_ref().unwrap());
    assert_eq!(deployment["metadata"]["name"], "hello-00002");
    assert_eq!(
        deployment["spec"]["template"]["spec"]["containers"][0]["image"],
        "reg/hello:2"
    );
    let names: Vec<String> = d
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["hello-00001", "hello-00002"]);
    // The new revision is not ready: the old one keeps all the traffic.
    assert_eq!(d.traffic, [traffic("hello-00001", 100, true, None)]);
}

#[test]
fn scale_only_change_creates_no_revision() {
    let before = json!({"image": "reg/hello:1"});
    let f = function(
        "hello",
        json!({"image": "reg/hello:1", "scale": {"min": 2, "max": 9, "initial": 3}, "revisionHistoryLimit": 1}),
    );
    let existing = [revision(&f, 1, Some(before))];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(d.latest.name, "hello-00001");
    assert!(!d.latest.created);
    assert!(d.deployment.is_none());
}

/// A new revision's Deployment records the whole `scale` it is created with
/// (compact JSON in `flint.dev/scale`), read back as the same settings; the
/// pod template does not carry it, so a scale edit never rolls pods.
#[test]
fn a_new_revision_records_the_scale_it_is_created_with() {
    let scale = json!({"min": 2, "max": 9, "initial": 3, "metric": "rps", "target": 50,
                       "targetUtilization": 80, "stableWindow": "2m", "panicWindowPercent": 20,
                       "panicThresholdPercent": 300, "scaleDownDelay": "5m",
                       "keepAlive": "learned", "scaleToZeroGracePeriod": "1m30s"});
    let f = function("hello", json!({"image": "reg/hello:1", "scale": scale}));
    let d = desired_objects(&f, &[]).unwrap();
    let deployment = d.deployment.as_ref().unwrap();
    let annotations = deployment.metadata.annotations.as_ref().unwrap();
    assert_eq!(
        annotations["flint.dev/scale"],
        r#"{"min":2,"max":9,"initial":3,"metric":"rps","target":50,"targetUtilization":80,"stableWindow":"2m","panicWindowPercent":20,"panicThresholdPercent":300,"scaleDownDelay":"5m","keepAlive":"learned","scaleToZeroGracePeriod":"1m30s"}"#
    );
    let serving = flint_operator::reconcile::ServingSettings::from_annotations(Some(annotations));
    assert_eq!(serving.scale.as_ref(), Some(&f.spec.scale));
    let pod_annotations = to_json(deployment)
        .pointer("/spec/template/metadata/annotations")
        .cloned();
    assert_eq!(
        pod_annotations,
        Some(json!({"flint.dev/spec-hash": d.latest.spec_hash}))
    );
}

/// A pod-template field cuts the next revision; the same spec with only
/// its scale changed as well stays on the revision it has.
#[test]
fn pod_template_change_names_the_next_revision_and_scale_does_not() {
    let before = json!({"image": "reg/hello:1"});
    let changes = [
        json!({"sidecars": [{"name": "proxy", "image": "reg/proxy:1"}]}),
        json!({"initContainers": [{"name": "init", "image": "reg/init:1"}]}),
        json!({"securityContext": {"runAsNonRoot": true}}),
        json!({"podSecurityContext": {"runAsUser": 1000}}),
        json!({"podLabels": {"team": "a"}}),
        json!({"podAnnotations": {"note": "a"}}),
        json!({"livenessProbe": {"tcpSocket": {"port": 8080}}}),
        json!({"startupProbe": {"tcpSocket": {"port": 8080}}}),
        json!({"nodeSelector": {"disk": "ssd"}}),
        json!({"tolerations": [{"key": "k", "operator": "Exists"}]}),
        json!({"affinity": {"nodeAffinity": {}}}),
        json!({"topologySpreadConstraints": [{"maxSkew": 1, "topologyKey": "zone", "whenUnsatisfiable": "DoNotSchedule"}]}),
        json!({"runtimeClassName": "gvisor"}),
        json!({"priorityClassName": "high"}),
        json!({"imagePullPolicy": "Always"}),
        json!({"workingDir": "/srv"}),
        json!({"volumes": [{"name": "tmp", "mountPath": "/tmp", "emptyDir": {}}]}),
    ];
    for change in changes {
        let mut spec = before.clone();
        spec.as_object_mut()
            .unwrap()
            .extend(change.as_object().unwrap().clone());
        let f = function("hello", spec.clone());
        let existing = [revision(&f, 1, Some(before.clone()))];
        let d = desired_objects(&f, &existing).unwrap();
        assert_eq!(d.latest.name, "hello-00002", "{change}");
        assert!(d.latest.created, "{change}");

        // The changed spec, now revision 1, with only its scale changed.
        let mut scaled = spec.clone();
        scaled["scale"] = json!({"min": 1, "max": 4, "initial": 2});
        let f = function("hello", scaled);
        let existing = [revision(&f, 1, Some(spec))];
        let d = desired_objects(&f, &existing).unwrap();
        assert_eq!(d.latest.name, "hello-00001", "{change}");
        assert!(!d.latest.created, "{change}");
    }
}

#[test]
fn return_to_an_older_spec_is_a_new_revision() {
    let a = json!({"image": "reg/hello:1"});
    let b = json!({"image": "reg/hello:2"});
    let f = function("hello", a.clone());
    let existing = [revision(&f, 1, Some(a)), revision(&f, 2, Some(b))];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(d.latest.name, "hello-00003");
    assert!(d.latest.created);
}

#[test]
fn failing_new_revision_never_takes_traffic() {
    let f = function("hello", json!({"image": "reg/hello:2"}));
    let mut new = revision(&f, 2, None);
    new.health = RevisionHealth::Failed {
        reason: "ImagePullBackOff".into(),
        message: "m".into(),
    };
    let existing = [revision(&f, 1, Some(json!({"image": "reg/hello:1"}))), new];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(d.latest.name, "hello-00002");
    assert_eq!(d.latest_ready.as_deref(), Some("hello-00001"));
    assert_eq!(d.traffic, [traffic("hello-00001", 100, true, None)]);
}

#[test]
fn traffic_split_across_two_revisions_with_tags() {
    let f = function(
        "hello",
        json!({"image": "reg/hello:2", "traffic": [
            {"latestRevision": true, "percent": 90, "tag": "current"},
            {"revision": "hello-00001", "percent": 10, "tag": "previous"}
        ]}),
    );
    let existing = [
        revision(&f, 1, Some(json!({"image": "reg/hello:1"}))),
        revision(&f, 2, None),
    ];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(
        d.traffic,
        [
            traffic("hello-00002", 90, true, Some("current")),
            traffic("hello-00001", 10, false, Some("previous")),
        ]
    );
    assert_eq!(d.resolved, Ok(d.traffic.clone()));
}

#[test]
fn rollback_to_an_old_revision_by_name() {
    let f = function(
        "hello",
        json!({"image": "reg/hello:3", "revisionHistoryLimit": 0,
               "traffic": [{"revision": "hello-00001", "percent": 100}]}),
    );
    let existing = [
        revision(&f, 1, Some(json!({"image": "reg/hello:1"}))),
        revision(&f, 2, Some(json!({"image": "reg/hello:2"}))),
        revision(&f, 3, None),
    ];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(d.traffic, [traffic("hello-00001", 100, false, None)]);
    // 00001 carries traffic and 00003 is the latest: both stay; 00002 is idle
    // and beyond a history of 0.
    assert_eq!(d.delete, ["hello-00002"]);
    let names: Vec<String> = d
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(names, ["hello-00001", "hello-00003"]);
}

#[test]
fn missing_traffic_target_keeps_the_previous_traffic() {
    let mut f = function(
        "hello",
        json!({"image": "reg/hello:1", "traffic": [{"revision": "hello-00009", "percent": 100}]}),
    );
    f.status = Some(flint_api::FunctionStatus {
        traffic: vec![traffic("hello-00001", 100, true, None)],
        ..Default::default()
    });
    let existing = [revision(&f, 1, None)];
    let d = desired_objects(&f, &existing).unwrap();
    assert_eq!(
        d.resolved,
        Err(TrafficError::TargetNotFound(vec!["hello-00009".into()]))
    );
    assert_eq!(d.traffic, [traffic("hello-00001", 100, true, None)]);
}

#[test]
fn idle_revisions_beyond_the_history_limit_are_deleted_oldest_first() {
    let f = function(
        "hello",
        json!({"image": "reg/hello:9", "revisionHistoryLimit": 2}),
    );
    let mut existing: Vec<ExistingRevision> = (1..=5)
        .map(|n| revision(&f, n, Some(json!({"image": format!("reg/hello:{n}")}))))
        .collect();
    existing.push(revision(&f, 6, None));
    let d = desired_objects(&f, &existing).unwrap();
    // 6 is latest and routed; of the idle 5,4,3,2,1 the two newest stay.
    assert_eq!(d.delete, ["hello-00003", "hello-00002", "hello-00001"]);
    assert_eq!(d.services.len(), 3);
}

#[test]
fn generated_names_stay_valid_for_the_longest_function_name() {
    let name = "a".repeat(MAX_FUNCTION_NAME_LEN);
    let f = function(&name, json!({"image": "reg/x:1"}));
    let mut last = revision(
        &f,
        MAX_REVISION_NUMBER - 1,
        Some(json!({"image": "reg/x:0"})),
    );
    last.name = format!("{name}-{:05}", MAX_REVISION_NUMBER - 1);
    let d = desired_objects(&f, std::slice::from_ref(&last)).unwrap();
    assert_eq!(d.latest.number, MAX_REVISION_NUMBER);
    let deployment = d.deployment.unwrap();
    for object_name in [
        deployment.metadata.name.as_deref().unwrap(),
        d.services[1].metadata.name.as_deref().unwrap(),
    ] {
        assert_eq!(object_name.len(), 63);
        assert!(is_dns1035_label(object_name), "{object_name}");
    }
    // Label values are limited to 63 characters too.
    for value in deployment.metadata.labels.unwrap().values() {
        assert!(value.len() <= 63, "{value}");
    }
    // One more revision would not fit: the operator refuses instead of
    // producing an invalid name.
    let mut full = revision(&f, MAX_REVISION_NUMBER, Some(json!({"image": "reg/x:0"})));
    full.name = format!("{name}-{MAX_REVISION_NUMBER:05}");
    assert_eq!(
        desired_objects(&f, &[full]),
        Err(DesiredError::RevisionNumbersExhausted(name))
    );
}

#[test]
fn functions_not_read_from_the_api_server_are_refused() {
    let mut f = function("hello", json!({"image": "reg/x:1"}));
    f.metadata.uid = None;
    assert_eq!(
        desired_objects(&f, &[]),
        Err(DesiredError::MissingUid("hello".into()))
    );
}

#[test]
fn a_new_revision_records_its_serving_settings() {
    // Revision 1 was cut at concurrency 1; raising it to 10 cuts revision 2,
    // whose Deployment carries the new settings. Revision 1's Deployment is
    // not re-applied, so its annotations keep concurrency 1.
    let f = function(
        "hello",
        json!({"image": "reg/hello:1", "concurrency": 10, "timeoutSeconds": 42, "protocol": "h2c"}),
    );
    let old = revision(
        &f,
        1,
        Some(json!({"image": "reg/hello:1", "concurrency": 1})),
    );
    let d = desired_objects(&f, &[old]).unwrap();
    assert_eq!(d.latest.name, "hello-00002");
    let deployment = to_json(d.deployment.as_ref().unwrap());
    assert_eq!(
        deployment["metadata"]["annotations"],
        json!({"flint.dev/spec-hash": d.latest.spec_hash, "flint.dev/concurrency": "10",
               "flint.dev/timeout-seconds": "42", "flint.dev/protocol": "h2c",
               "flint.dev/scale": DEFAULT_SCALE_ANNOTATION})
    );
    // The pod template carries only the hash: changing it would roll pods.
    assert_eq!(
        deployment["spec"]["template"]["metadata"]["annotations"],
        json!({"flint.dev/spec-hash": d.latest.spec_hash})
    );
}
