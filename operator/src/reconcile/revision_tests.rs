//! Tables for reading revision health from Deployments and pods.

use super::*;
use serde_json::json;

fn deployment(name: &str, replicas: i32, status: serde_json::Value) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {
            "name": name,
            "labels": {"flint.dev/generation": "3"},
            "annotations": {"flint.dev/spec-hash": "abc"}
        },
        "spec": {"replicas": replicas, "selector": {}, "template": {}},
        "status": status
    }))
    .unwrap()
}

fn pod(revision: &str, status: serde_json::Value) -> Pod {
    serde_json::from_value(json!({
        "metadata": {"name": format!("{revision}-pod"), "labels": {"flint.dev/revision": revision}},
        "status": status
    }))
    .unwrap()
}

fn waiting(reason: &str) -> serde_json::Value {
    json!({"containerStatuses": [{
        "name": "app", "image": "reg/img:1", "imageID": "", "ready": false, "restartCount": 4,
        "state": {"waiting": {"reason": reason, "message": "detail"}},
        "lastState": {"terminated": {"exitCode": 3, "reason": "Error"}}
    }]})
}

fn one(d: Deployment, pods: &[Pod], previous: Option<&FunctionStatus>) -> ExistingRevision {
    let revs = observe_revisions("f", &[d], pods, previous);
    assert_eq!(revs.len(), 1);
    revs.into_iter().next().unwrap()
}

fn failed(r: &ExistingRevision) -> (String, String) {
    match &r.health {
        RevisionHealth::Failed { reason, message } => (reason.clone(), message.clone()),
        other => panic!("expected a failure, got {other:?}"),
    }
}

/// Revision f-00001 (one replica wanted, none available) next to one pod
/// of `pod_revision` whose container is waiting for `reason`.
fn with_waiting_pod(
    pod_revision: &str,
    reason: &str,
    previous: Option<&FunctionStatus>,
) -> ExistingRevision {
    one(
        deployment("f-00001", 1, json!({})),
        &[pod(pod_revision, waiting(reason))],
        previous,
    )
}

/// `r` failed for `reason`, with a message that starts with `message`.
fn assert_failed(r: &ExistingRevision, reason: &str, message: &str) {
    let (why, said) = failed(r);
    assert_eq!(why, reason);
    assert!(said.starts_with(message), "{said}");
}

#[test]
fn reads_number_hash_generation_and_replicas() {
    let r = one(
        deployment(
            "f-00002",
            3,
            json!({"availableReplicas": 2, "readyReplicas": 2}),
        ),
        &[],
        None,
    );
    assert_eq!(
        (
            r.name.as_str(),
            r.number,
            r.spec_hash.as_str(),
            r.generation
        ),
        ("f-00002", 2, "abc", 3)
    );
    assert_eq!((r.desired_replicas, r.ready_replicas), (3, 2));
    assert_eq!(r.health, RevisionHealth::Ready);
}

#[test]
fn skips_deployments_that_are_not_revisions() {
    let mut other = deployment("g-00001", 1, json!({}));
    let no_hash = {
        let mut d = deployment("f-00001", 1, json!({}));
        d.metadata.annotations = None;
        d
    };
    other.metadata.name = Some("g-00001".into());
    assert!(observe_revisions("f", &[other, no_hash], &[], None).is_empty());
}

#[test]
fn image_pull_failure_names_the_image() {
    for reason in ["ImagePullBackOff", "ErrImagePull", "InvalidImageName"] {
        assert_failed(
            &with_waiting_pod("f-00001", reason, None),
            "ImagePullBackOff",
            "image \"reg/img:1\" cannot be pulled",
        );
    }
}

#[test]
fn crash_loop_reports_the_exit_code() {
    assert_failed(
        &with_waiting_pod("f-00001", "CrashLoopBackOff", None),
        "RevisionFailed",
        "container \"app\" exited with code 3 (Error)",
    );
}

#[test]
fn other_revisions_pods_do_not_count() {
    let r = with_waiting_pod("f-00002", "CrashLoopBackOff", None);
    assert_eq!(r.health, RevisionHealth::Deploying);
}

#[test]
fn quota_and_deadline_failures_come_from_the_deployment() {
    let quota = deployment(
        "f-00001",
        1,
        json!({"conditions": [{"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate",
            "message": "pods \"x\" is forbidden: exceeded quota: q, requested: cpu=1"}]}),
    );
    assert_eq!(failed(&one(quota, &[], None)).0, "QuotaExceeded");
    let deadline = deployment(
        "f-00001",
        1,
        json!({"conditions": [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded", "message": "m"}]}),
    );
    assert_eq!(
        failed(&one(deadline, &[], None)).0,
        "ProgressDeadlineExceeded"
    );
}

#[test]
fn unschedulable_pods_fail_the_revision() {
    let status = json!({"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable", "message": "0/3 nodes"}]});
    let r = one(
        deployment("f-00001", 1, json!({})),
        &[pod("f-00001", status)],
        None,
    );
    assert_eq!(
        failed(&r),
        (
            "Unschedulable".into(),
            "no node can run the pod: 0/3 nodes".into()
        )
    );
}

#[test]
fn readiness_is_proven_once_and_kept_at_zero() {
    let available = json!({"conditions": [{"type": "Available", "status": "True"}]});
    // Created at zero (scale.initial: 0) and available: ready without a pod.
    let at_zero = one(deployment("f-00001", 0, available.clone()), &[], None);
    assert_eq!(at_zero.health, RevisionHealth::Ready);
    // Scaling up from zero, no pod ready yet: not proven unless it was before.
    let waking = deployment("f-00001", 1, json!({}));
    assert_eq!(
        one(waking.clone(), &[], None).health,
        RevisionHealth::Deploying
    );
    let previous: FunctionStatus = serde_json::from_value(
        json!({"revisions": [{"name": "f-00001", "ready": true, "replicas": 0}]}),
    )
    .unwrap();
    assert_eq!(
        one(waking, &[], Some(&previous)).health,
        RevisionHealth::Ready
    );
    // A failure now outweighs readiness proven before...
    let crashing = with_waiting_pod("f-00001", "CrashLoopBackOff", Some(&previous));
    assert_eq!(failed(&crashing).0, "RevisionFailed");
    // ...but a serving replica outweighs a crashing one.
    let serving = one(
        deployment("f-00001", 2, json!({"availableReplicas": 1})),
        &[pod("f-00001", waiting("CrashLoopBackOff"))],
        None,
    );
    assert_eq!(serving.health, RevisionHealth::Ready);
}

#[test]
fn reads_serving_settings_from_annotations() {
    let with = |annotations: serde_json::Value| {
        let mut d = deployment("f-00001", 1, json!({}));
        let mut all: BTreeMap<String, String> = serde_json::from_value(annotations).unwrap();
        all.insert(ANNOTATION_SPEC_HASH.to_owned(), "abc".to_owned());
        d.metadata.annotations = Some(all);
        one(d, &[], None).serving
    };
    let scaled = ScaleSpec {
        min: 1,
        max: 7,
        keep_alive: flint_api::KeepAlive::Learned,
        ..ScaleSpec::default()
    };
    let table = [
        (
            json!({"flint.dev/concurrency": "1", "flint.dev/timeout-seconds": "30",
                   "flint.dev/protocol": "h2c",
                   "flint.dev/scale": r#"{"min":1,"max":7,"keepAlive":"learned"}"#}),
            ServingSettings {
                concurrency: Some(1),
                timeout_seconds: Some(30),
                protocol: Some(Protocol::H2c),
                scale: Some(scaled.clone()),
            },
        ),
        (
            json!({"flint.dev/concurrency": "0", "flint.dev/timeout-seconds": "3600",
                   "flint.dev/protocol": "http1",
                   "flint.dev/scale": serde_json::to_string(&ScaleSpec::default()).unwrap()}),
            ServingSettings {
                concurrency: Some(0),
                timeout_seconds: Some(3600),
                protocol: Some(Protocol::Http1),
                scale: Some(ScaleSpec::default()),
            },
        ),
        // Created by an operator that did not record them.
        (json!({}), ServingSettings::default()),
        // Unreadable values are left empty, one by one.
        (
            json!({"flint.dev/concurrency": "-1", "flint.dev/timeout-seconds": "ten",
                   "flint.dev/protocol": "H2C", "flint.dev/scale": "{\"max\": -1}"}),
            ServingSettings::default(),
        ),
        (
            json!({"flint.dev/timeout-seconds": "5", "flint.dev/scale": "max: 7"}),
            ServingSettings {
                timeout_seconds: Some(5),
                ..ServingSettings::default()
            },
        ),
        (
            json!({"flint.dev/scale": r#"{"min":1,"max":7,"keepAlive":"learned"}"#}),
            ServingSettings {
                scale: Some(scaled),
                ..ServingSettings::default()
            },
        ),
    ];
    for (annotations, want) in table {
        assert_eq!(with(annotations.clone()), want, "{annotations}");
    }
}
