//! The pure side of image pinning in the reconciler: a desired state's new
//! revision pinned to a digest, a new revision held back when its image
//! cannot be resolved, and the status and Events of a held revision.

use flint_api::{Function, FunctionStatus};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::notices::transitions;
use flint_operator::reconcile::status::{
    StatusInput, WHY_MAX_BYTES, compute_status, with_image_failure,
};
use flint_operator::reconcile::{DesiredState, ExistingRevision, desired_objects};
use k8s_openapi::jiff::Timestamp;
use serde_json::{Value, json};

const PINNED: &str =
    "reg.example/hello@sha256:00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff";

fn function(spec: Value, generation: i64, status: Option<Value>) -> Function {
    let mut f = json!({
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "u", "generation": generation},
        "spec": spec
    });
    if let Some(s) = status {
        f["status"] = s;
    }
    serde_json::from_value(f).unwrap()
}

/// Revision `n`, cut from `spec`, ready, running `image`.
fn revision(n: u32, spec: Value, image: &str) -> ExistingRevision {
    let mut r = ExistingRevision::new(
        format!("hello-{n:05}"),
        n,
        spec_hash(&function(spec, 1, None).spec),
    );
    r.image = Some(image.to_owned());
    r.ready_replicas = 1;
    r
}

fn images(d: &DesiredState) -> Vec<String> {
    let pod = d
        .deployment
        .as_ref()
        .unwrap()
        .spec
        .as_ref()
        .unwrap()
        .template
        .spec
        .as_ref()
        .unwrap();
    pod.containers
        .iter()
        .chain(pod.init_containers.iter().flatten())
        .map(|c| format!("{}={}", c.name, c.image.as_deref().unwrap_or_default()))
        .collect()
}

fn status(f: &Function, desired: &DesiredState, revisions: &[ExistingRevision]) -> FunctionStatus {
    compute_status(StatusInput {
        function: f,
        desired,
        revisions,
        domain: "example.com",
        domain_conflicts: &[],
        now: Timestamp::from_second(1_000).unwrap(),
    })
}

#[test]
fn pinning_changes_the_function_container_only() {
    let spec = json!({
        "image": "reg.example/hello:1",
        "sidecars": [{"name": "log", "image": "reg.example/log:2"}],
        "initContainers": [{"name": "init", "image": "reg.example/init:3"}],
    });
    let f = function(spec, 1, None);
    let mut desired = desired_objects(&f, &[]).unwrap();
    let hash = desired.latest.spec_hash.clone();
    desired.pin_image(PINNED);
    assert_eq!(
        images(&desired),
        [
            format!("app={PINNED}"),
            "log=reg.example/log:2".to_owned(),
            "init=reg.example/init:3".to_owned(),
        ]
    );
    assert_eq!(desired.new_image(), Some(PINNED));
    // The revision's identity is the spec's, not the digest's.
    assert_eq!(desired.latest.spec_hash, hash);
    let s = status(&f, &desired, &[]);
    assert_eq!(
        serde_json::to_value(&s.images).unwrap(),
        json!([{"revision": "hello-00001", "image": PINNED}])
    );
}

#[test]
fn a_held_revision_is_not_cut_and_the_newest_existing_stays_latest() {
    let v1 = json!({"image": "reg.example/hello:1"});
    let existing = [revision(1, v1, PINNED)];
    let f = function(json!({"image": "reg.example/hello:2"}), 2, None);
    let desired = desired_objects(&f, &existing).unwrap();
    assert!(desired.latest.created);
    let held = desired.hold(&existing);
    assert!(!held.latest.created);
    assert_eq!(held.latest.name, "hello-00001");
    assert!(held.deployment.is_none());
    let services: Vec<_> = held
        .services
        .iter()
        .map(|s| s.metadata.name.clone().unwrap())
        .collect();
    assert_eq!(services, ["hello-00001"]);
    assert!(held.delete.is_empty());
    assert_eq!(held.latest_ready.as_deref(), Some("hello-00001"));
}

#[test]
fn holding_what_cuts_nothing_changes_nothing() {
    let v1 = json!({"image": "reg.example/hello:1"});
    let existing = [revision(1, v1.clone(), PINNED)];
    let f = function(v1, 1, None);
    let desired = desired_objects(&f, &existing).unwrap();
    assert_eq!(desired.clone().hold(&existing), desired);
}

#[test]
fn a_held_status_says_why_and_keeps_the_old_revision_serving() {
    let v1 = json!({"image": "reg.example/hello:1"});
    let existing = [revision(1, v1, PINNED)];
    let f = function(json!({"image": "reg.example/hello:2"}), 2, None);
    let held = desired_objects(&f, &existing).unwrap().hold(&existing);
    let now = Timestamp::from_second(1_000).unwrap();
    let s = with_image_failure(
        status(&f, &held, &existing),
        &f,
        "the registry said no",
        now,
    );
    let conds: Vec<(String, String, String)> = s
        .conditions
        .iter()
        .map(|c| (c.type_.clone(), c.status.clone(), c.reason.clone()))
        .collect();
    let own = |t: &str, st: &str, r: &str| (t.to_owned(), st.to_owned(), r.to_owned());
    assert_eq!(
        conds,
        [
            own("Ready", "False", "ImageResolutionFailed"),
            own("ConfigurationsReady", "False", "ImageResolutionFailed"),
            own("RoutesReady", "True", "TrafficResolved"),
        ]
    );
    assert_eq!(
        s.conditions[1].message,
        "no revision was cut for generation 2: the registry said no; revision hello-00001 keeps serving; retried with backoff"
    );
    assert_eq!(s.latest_created_revision.as_deref(), Some("hello-00001"));
    assert_eq!(s.traffic[0].revision_name, "hello-00001");

    // The Warning Event: once per generation.
    let notices = transitions(None, &s, &held);
    assert_eq!(
        notices.iter().map(|n| n.reason).collect::<Vec<_>>(),
        ["RevisionReady", "ImageResolutionFailed"]
    );
    assert!(notices[1].warning);
    let again = transitions(Some(&s), &s, &held);
    assert!(again.iter().all(|n| n.reason != "ImageResolutionFailed"));
}

#[test]
fn a_held_first_revision_reports_no_latest_created_revision() {
    let f = function(json!({"image": "reg.example/hello:1"}), 1, None);
    let held = desired_objects(&f, &[]).unwrap().hold(&[]);
    assert!(held.deployment.is_none() && held.services.is_empty());
    let now = Timestamp::from_second(1_000).unwrap();
    let s = with_image_failure(status(&f, &held, &[]), &f, "no such tag", now);
    assert_eq!(s.latest_created_revision, None);
    assert!(s.revisions.is_empty() && s.images.is_empty());
    assert_eq!(s.conditions[0].reason, "ImageResolutionFailed");
    assert_eq!(
        s.conditions[0].message,
        "no revision was cut for generation 1: no such tag; retried with backoff"
    );
}

#[test]
fn a_held_condition_keeps_its_transition_time_across_retries() {
    let previous = json!({"conditions": [
        {"type": "ConfigurationsReady", "status": "False", "reason": "ImageResolutionFailed",
         "message": "earlier", "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 1},
    ]});
    let f = function(json!({"image": "reg.example/hello:1"}), 1, Some(previous));
    let held = desired_objects(&f, &[]).unwrap().hold(&[]);
    let later = Timestamp::from_second(2_000_000_000).unwrap();
    let s = with_image_failure(status(&f, &held, &[]), &f, "still no such tag", later);
    let configurations = s
        .conditions
        .iter()
        .find(|c| c.type_ == "ConfigurationsReady")
        .unwrap();
    assert_eq!(
        configurations.last_transition_time.0.to_string(),
        "2026-01-01T00:00:00Z"
    );
    let ready = s.conditions.iter().find(|c| c.type_ == "Ready").unwrap();
    assert_eq!(ready.last_transition_time.0, later);
}

#[test]
fn a_long_registry_answer_is_clipped_to_fit_an_event() {
    let f = function(json!({"image": "reg.example/hello:1"}), 1, None);
    let held = desired_objects(&f, &[]).unwrap().hold(&[]);
    let now = Timestamp::from_second(1_000).unwrap();
    let why = "é".repeat(5_000);
    let s = with_image_failure(status(&f, &held, &[]), &f, &why, now);
    let message = &s.conditions[0].message;
    assert!(message.len() <= 1024, "{} bytes", message.len());
    // Cut on a character boundary ("é" is two bytes), and marked.
    let kept = "é".repeat(WHY_MAX_BYTES / 2);
    assert!(
        message.contains(&format!(": {kept}…; retried")),
        "{message}"
    );
}
