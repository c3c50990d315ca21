//! Status and Events computed from a desired state: conditions with
//! actionable reasons, stable transition times, URLs and transitions.

use flint_api::names::ANNOTATION_SPEC_HASH;
use flint_api::{Function, FunctionStatus, Protocol};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::notices::transitions;
use flint_operator::reconcile::status::{StatusInput, compute_status};
use flint_operator::reconcile::{
    ExistingRevision, RevisionHealth, desired_objects, observe_revisions,
};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

fn function(spec: Value, status: Option<Value>) -> Function {
    let mut f = json!({
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "u", "generation": 7},
        "spec": spec
    });
    if let Some(s) = status {
        f["status"] = s;
    }
    serde_json::from_value(f).unwrap()
}

fn rev(f: &Function, n: u32, health: RevisionHealth, ready_replicas: i32) -> ExistingRevision {
    let mut r = ExistingRevision::new(format!("hello-{n:05}"), n, spec_hash(&f.spec));
    r.health = health;
    r.ready_replicas = ready_replicas;
    r.desired_replicas = ready_replicas;
    r
}

fn at(secs: i64) -> Timestamp {
    Timestamp::from_second(secs).unwrap()
}

fn status(f: &Function, revisions: &[ExistingRevision], now: Timestamp) -> FunctionStatus {
    let desired = desired_objects(f, revisions).unwrap();
    compute_status(StatusInput {
        function: f,
        desired: &desired,
        revisions,
        domain: "example.com",
        domain_conflicts: &[],
        now,
    })
}

/// `s` has exactly the conditions Ready, ConfigurationsReady and
/// RoutesReady, in that order, with these [status, reason] each.
#[track_caller]
fn assert_conditions(
    s: &FunctionStatus,
    ready: [&str; 2],
    configurations: [&str; 2],
    routes: [&str; 2],
) {
    let got: Vec<[&str; 3]> = s
        .conditions
        .iter()
        .map(|c| [c.type_.as_str(), c.status.as_str(), c.reason.as_str()])
        .collect();
    let [ready, configurations, routes] = [
        ("Ready", ready),
        ("ConfigurationsReady", configurations),
        ("RoutesReady", routes),
    ]
    .map(|(type_, [status, reason])| [type_, status, reason]);
    assert_eq!(got, [ready, configurations, routes]);
}

#[test]
fn ready_function_with_tagged_traffic() {
    let f = function(
        json!({"image": "a:1", "traffic": [{"latestRevision": true, "percent": 100, "tag": "current"}]}),
        None,
    );
    let revisions = [rev(&f, 1, RevisionHealth::Ready, 2)];
    let s = status(&f, &revisions, at(1000));
    assert_conditions(
        &s,
        ["True", "Ready"],
        ["True", "RevisionReady"],
        ["True", "TrafficResolved"],
    );
    assert!(
        s.conditions
            .iter()
            .all(|c| c.observed_generation == Some(7))
    );
    assert_eq!(s.observed_generation, Some(7));
    assert_eq!(s.url.as_deref(), Some("http://hello.ns.example.com"));
    assert_eq!(s.latest_created_revision.as_deref(), Some("hello-00001"));
    assert_eq!(s.latest_ready_revision.as_deref(), Some("hello-00001"));
    assert_eq!(
        s.traffic[0].url.as_deref(),
        Some("http://current-hello.ns.example.com")
    );
    assert_eq!((s.replicas, s.desired_replicas), (Some(2), Some(2)));
}

#[test]
fn crash_loop_makes_configurations_and_ready_false_with_the_exit_code() {
    let f = function(json!({"image": "a:1"}), None);
    let failed = RevisionHealth::Failed {
        reason: "RevisionFailed".into(),
        message: "container \"app\" exited with code 1 (Error) and keeps restarting".into(),
    };
    let s = status(&f, &[rev(&f, 1, failed, 0)], at(1000));
    assert_conditions(
        &s,
        ["False", "RevisionFailed"],
        ["False", "RevisionFailed"],
        ["False", "NoReadyRevision"],
    );
    assert_eq!(
        s.conditions[1].message,
        "revision hello-00001: container \"app\" exited with code 1 (Error) and keeps restarting"
    );
    assert!(s.traffic.is_empty());
}

#[test]
fn transition_times_are_kept_while_the_status_holds() {
    let f = function(json!({"image": "a:1"}), None);
    let revisions = [rev(&f, 1, RevisionHealth::Ready, 1)];
    let first = status(&f, &revisions, at(1000));
    let f2 = function(
        json!({"image": "a:1"}),
        Some(serde_json::to_value(&first).unwrap()),
    );
    let second = status(&f2, &revisions, at(2000));
    assert!(
        second
            .conditions
            .iter()
            .all(|c| c.last_transition_time.0 == at(1000))
    );
    // A change of status moves the time.
    let failed = RevisionHealth::Failed {
        reason: "ImagePullBackOff".into(),
        message: "m".into(),
    };
    let third = status(&f2, &[rev(&f, 1, failed, 0)], at(3000));
    let times: Vec<(String, Timestamp)> = third
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.last_transition_time.0))
        .collect();
    assert_eq!(
        times,
        [
            ("Ready".into(), at(3000)),
            ("ConfigurationsReady".into(), at(3000)),
            ("RoutesReady".into(), at(3000)),
        ]
    );
}

#[test]
fn events_for_created_ready_failed_deleted_and_scaled_to_zero() {
    let f = function(json!({"image": "a:1"}), None);
    let created = desired_objects(&f, &[]).unwrap();
    let s0 = status(&f, &[], at(1));
    let reasons = |v: Vec<flint_operator::reconcile::notices::Notice>| {
        v.into_iter()
            .map(|n| (n.reason, n.warning))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        reasons(transitions(None, &s0, &created)),
        [("RevisionCreated", false)]
    );

    let f1 = function(
        json!({"image": "a:1"}),
        Some(serde_json::to_value(&s0).unwrap()),
    );
    let up = [rev(&f, 1, RevisionHealth::Ready, 1)];
    let s1 = status(&f1, &up, at(2));
    let d1 = desired_objects(&f1, &up).unwrap();
    assert_eq!(
        reasons(transitions(Some(&s0), &s1, &d1)),
        [("RevisionReady", false)]
    );
    // Nothing changed: no event.
    assert_eq!(reasons(transitions(Some(&s1), &s1, &d1)), []);

    let down = [rev(&f, 1, RevisionHealth::Ready, 0)];
    let s2 = status(&f1, &down, at(3));
    assert_eq!(
        reasons(transitions(Some(&s1), &s2, &d1)),
        [("ScaledToZero", false)]
    );

    let failed = [rev(
        &f,
        1,
        RevisionHealth::Failed {
            reason: "QuotaExceeded".into(),
            message: "m".into(),
        },
        0,
    )];
    let s3 = status(&f1, &failed, at(4));
    let d3 = desired_objects(&f1, &failed).unwrap();
    assert_eq!(
        reasons(transitions(Some(&s2), &s3, &d3)),
        [("RevisionFailed", true), ("NoReadyRevision", true)]
    );
}

/// (name, concurrency, timeoutSeconds, protocol) of a `status.revisions[]` entry.
type Serving = (String, Option<u32>, Option<u32>, Option<Protocol>);

/// The serving settings of each `status.revisions[]` entry.
fn serving(s: &FunctionStatus) -> Vec<Serving> {
    s.revisions
        .iter()
        .map(|r| (r.name.clone(), r.concurrency, r.timeout_seconds, r.protocol))
        .collect()
}

#[test]
fn revisions_report_the_serving_settings_of_their_deployments() {
    // hello-00001 was created at concurrency 1; the spec now asks for 10
    // and a 42 s timeout, which cuts hello-00002.
    let first = function(json!({"image": "a:1", "concurrency": 1}), None);
    let mut deployment = desired_objects(&first, &[]).unwrap().deployment.unwrap();
    deployment.status = Some(serde_json::from_value(json!({"availableReplicas": 1})).unwrap());
    let now = function(
        json!({"image": "a:1", "concurrency": 10, "timeoutSeconds": 42}),
        None,
    );
    let revisions = observe_revisions("hello", &[deployment.clone()], &[], None);
    let s = status(&now, &revisions, at(1000));
    assert_eq!(
        serving(&s),
        [
            // Just created: the settings of the Deployment being created.
            (
                "hello-00002".into(),
                Some(10),
                Some(42),
                Some(Protocol::Http1)
            ),
            // Its own settings, not the spec's.
            (
                "hello-00001".into(),
                Some(1),
                Some(300),
                Some(Protocol::Http1)
            ),
        ]
    );

    // A Deployment created before the settings were recorded: left empty,
    // and absent from the written status.
    let hash = deployment.metadata.annotations.as_ref().unwrap()[ANNOTATION_SPEC_HASH].clone();
    deployment.metadata.annotations = Some([(ANNOTATION_SPEC_HASH.to_owned(), hash)].into());
    let revisions = observe_revisions("hello", &[deployment], &[], None);
    let s = status(&now, &revisions, at(1000));
    assert_eq!(s.revisions[1].name, "hello-00001");
    assert_eq!(serving(&s)[1], ("hello-00001".into(), None, None, None));
    assert_eq!(
        serde_json::to_value(&s.revisions[1]).unwrap(),
        json!({"name": "hello-00001", "ready": true, "replicas": 0})
    );
}

#[test]
fn a_status_written_without_serving_settings_still_parses() {
    let f = function(
        json!({"image": "a:1"}),
        Some(json!({"revisions": [{"name": "hello-00001", "ready": true, "replicas": 2}]})),
    );
    let old = &f.status.unwrap().revisions[0];
    assert_eq!(
        (old.concurrency, old.timeout_seconds, old.protocol),
        (None, None, None)
    );
}

/// (name, min, max) of each `status.revisions[].scale`, `None` when absent.
fn scales(s: &FunctionStatus) -> Vec<(String, Option<(u32, u32)>)> {
    s.revisions
        .iter()
        .map(|r| (r.name.clone(), r.scale.as_ref().map(|x| (x.min, x.max))))
        .collect()
}

#[test]
fn revisions_report_the_scale_they_are_scaled_with() {
    // Three revisions, each cut by an image change, each Deployment
    // recording the scale it was created with: max 5, then 100, then 100.
    let mut deployments = Vec::new();
    for (image, scale) in [
        ("a:1", json!({"max": 5})),
        ("a:2", json!({})),
        ("a:3", json!({})),
    ] {
        let f = function(json!({"image": image, "scale": scale}), None);
        let existing = observe_revisions("hello", &deployments, &[], None);
        let mut d = desired_objects(&f, &existing).unwrap().deployment.unwrap();
        d.status = Some(serde_json::from_value(json!({"availableReplicas": 1})).unwrap());
        deployments.push(d);
    }
    // hello-00002 followed an edit to max 40 while it was the latest (the
    // previous status says so); the spec now asks for min 1, max 9.
    let previous = json!({"revisions": [
        {"name": "hello-00003", "ready": true, "scale": {"max": 100}},
        {"name": "hello-00002", "ready": true, "scale": {"max": 40}},
        {"name": "hello-00001", "ready": true},
    ]});
    let now = function(
        json!({"image": "a:3", "scale": {"min": 1, "max": 9}}),
        Some(previous),
    );
    let revisions = observe_revisions("hello", &deployments, &[], now.status.as_ref());
    let s = status(&now, &revisions, at(1000));
    assert_eq!(s.latest_created_revision.as_deref(), Some("hello-00003"));
    assert_eq!(
        scales(&s),
        [
            // The latest follows the spec: the edit applies without a new
            // revision, over both its annotation and the previous status.
            ("hello-00003".into(), Some((1, 9))),
            // The scale it last followed, over the one it was created with.
            ("hello-00002".into(), Some((0, 40))),
            // Nothing in the previous status: the one it was created with.
            ("hello-00001".into(), Some((0, 5))),
        ]
    );
    assert_eq!(s.revisions[0].scale.as_ref(), Some(&now.spec.scale));
    let written = serde_json::to_value(&s.revisions[2]).unwrap();
    assert_eq!(written["scale"]["max"], 5);
    assert_eq!(written["scale"]["stableWindow"], "1m");

    // The next image cuts hello-00004, which starts with the spec's scale;
    // hello-00003 keeps the one it followed until now.
    let next = function(
        json!({"image": "a:4", "scale": {"min": 1, "max": 9}}),
        Some(serde_json::to_value(&s).unwrap()),
    );
    let s = status(&next, &revisions, at(2000));
    assert_eq!(
        scales(&s),
        [
            ("hello-00004".into(), Some((1, 9))),
            ("hello-00003".into(), Some((1, 9))),
            ("hello-00002".into(), Some((0, 40))),
            ("hello-00001".into(), Some((0, 5))),
        ]
    );
}
