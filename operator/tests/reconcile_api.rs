//! The reconcile loop against a mocked API server (the kube-rs
//! `ApiServerVerifier` pattern): each scenario lists the exact requests the
//! reconciler must make, in order, with the replies the server gives.

#[path = "support/api_server.rs"]
mod api_server;
#[path = "support/mock_serve.rs"]
mod mock_serve;

use std::sync::Arc;
use std::time::Duration;

use api_server::{
    BY_FN, Exchange, FN_URL, NS, SSA, exchange, failing, mocked_client, reconcile_context,
};
use flint_api::Function;
use flint_operator::reconcile::controller::{REQUEUE_PENDING, REQUEUE_SETTLED, error_policy};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::{Context, Error, reconcile};
use http::Method;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

/// Runs one reconcile of `function` against `script`; returns its result
/// after checking every scripted request was made and no other.
async fn run(function: Function, script: Vec<Exchange>) -> (Result<Action, Error>, Arc<Context>) {
    let (client, verifier) = mocked_client();
    let ctx = reconcile_context(client);
    let result = verifier
        .check(script, reconcile(Arc::new(function), ctx.clone()))
        .await;
    (result, ctx)
}

/// Runs one reconcile of `function` against `script` and checks that it
/// succeeds with `action`.
async fn expect_action(function: Function, script: Vec<Exchange>, action: Action) {
    let (result, _) = run(function, script).await;
    assert_eq!(result.unwrap(), action);
}

// ---- fixtures -------------------------------------------------------------

fn spec(image: &str) -> Value {
    json!({"image": image})
}

struct Fixture(Value);

impl Fixture {
    fn function(spec: Value) -> Self {
        Fixture(json!({
            "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
            "metadata": {"name": "hello", "namespace": "ns", "uid": "uid-1", "generation": 1},
            "spec": spec
        }))
    }
    fn finalized(mut self) -> Self {
        self.0["metadata"]["finalizers"] = json!(["functions.flint.dev/finalizer"]);
        self
    }
    fn generation(mut self, g: i64) -> Self {
        self.0["metadata"]["generation"] = json!(g);
        self
    }
    fn deleting(mut self) -> Self {
        self.0["metadata"]["deletionTimestamp"] = json!("2026-01-01T00:00:00Z");
        self
    }
    fn status(mut self, status: Value) -> Self {
        self.0["status"] = status;
        self
    }
    fn build(self) -> Function {
        serde_json::from_value(self.0).unwrap()
    }
}

/// A Function running reg/hello:1 with no status yet.
fn finalized_function() -> Function {
    Fixture::function(spec("reg/hello:1")).build()
}

/// The Function moved to reg/hello:2 (generation 2) with `status` from before.
fn second_generation(status: Value) -> Function {
    Fixture::function(spec("reg/hello:2"))
        .generation(2)
        .status(status)
        .build()
}

/// The `flint.dev/scale` annotation of a revision created with the default
/// `scale`: the whole ScaleSpec as compact JSON.
const DEFAULT_SCALE_ANNOTATION: &str = r#"{"min":0,"max":100,"initial":1,"metric":"concurrency","target":100,"targetUtilization":70,"stableWindow":"1m","panicWindowPercent":10,"panicThresholdPercent":200,"scaleDownDelay":"0s","keepAlive":"fixed","scaleToZeroGracePeriod":"30s"}"#;

/// The default `scale` as `status.revisions[].scale` reports it.
fn default_scale() -> Value {
    json!({"min": 0, "max": 100, "initial": 1, "metric": "concurrency", "target": 100,
           "targetUtilization": 70, "stableWindow": "1m", "panicWindowPercent": 10,
           "panicThresholdPercent": 200, "scaleDownDelay": "0s", "keepAlive": "fixed",
           "scaleToZeroGracePeriod": "30s"})
}

fn ready_revision(name: &str) -> Value {
    json!({"name": name, "ready": true, "replicas": 1})
}

/// `status.traffic` sending everything to `name` as the latest revision.
fn all_traffic_to(name: &str) -> Value {
    json!([{"revisionName": name, "percent": 100, "latestRevision": true}])
}

/// A revision Deployment as the API server returns it.
fn deployment(name: &str, image: &str, status: Value) -> Value {
    let hash = spec_hash(&Fixture::function(spec(image)).build().spec);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": "ns",
            "labels": {"flint.dev/function": "hello", "flint.dev/revision": name, "flint.dev/generation": "1"},
            "annotations": {"flint.dev/spec-hash": hash},
            "ownerReferences": [{"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "name": "hello", "uid": "uid-1", "controller": true}]
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"flint.dev/revision": name}}, "template": {}},
        "status": status
    })
}

fn available() -> Value {
    json!({"availableReplicas": 1, "readyReplicas": 1, "replicas": 1})
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

fn list_deployments(items: Vec<Value>) -> Exchange {
    exchange(
        Method::GET,
        format!("/apis/apps/v1{NS}/deployments{BY_FN}"),
        None,
        list("DeploymentList", "apps/v1", items),
    )
}

/// The reconciler's first reads, the Function's Deployments, its pods and
/// its Services (none), followed by the `rest` of the script.
fn after_listing(
    deployments: Vec<Value>,
    pods: Vec<Value>,
    rest: impl IntoIterator<Item = Exchange>,
) -> Vec<Exchange> {
    after_listing_all(deployments, pods, vec![], rest)
}

/// The reconciler's first reads, the Function's Deployments, its pods and
/// its Services, followed by the `rest` of the script.
fn after_listing_all(
    deployments: Vec<Value>,
    pods: Vec<Value>,
    services: Vec<Value>,
    rest: impl IntoIterator<Item = Exchange>,
) -> Vec<Exchange> {
    let mut script = vec![
        list_deployments(deployments),
        exchange(
            Method::GET,
            format!("/api/v1{NS}/pods{BY_FN}"),
            None,
            list("PodList", "v1", pods),
        ),
        list_services(services),
    ];
    script.extend(rest);
    script
}

/// Where the server-side apply of the Deployment `name` goes.
fn deployment_apply_uri(name: &str) -> String {
    format!("/apis/apps/v1{NS}/deployments/{name}{SSA}")
}

/// Where the server-side apply of the Service `name` goes.
fn service_apply_uri(name: &str) -> String {
    format!("/api/v1{NS}/services/{name}{SSA}")
}

fn apply_deployment(name: &str, body: Value) -> Exchange {
    exchange(
        Method::PATCH,
        deployment_apply_uri(name),
        Some(body),
        Value::Null,
    )
}

fn apply_service(name: &str) -> Exchange {
    exchange(
        Method::PATCH,
        service_apply_uri(name),
        Some(
            json!({"kind": "Service", "metadata": {"name": name}, "spec": {"selector": {"flint.dev/revision": name}}}),
        ),
        Value::Null,
    )
}

fn apply_status(status: Value) -> Exchange {
    exchange(
        Method::PATCH,
        format!("{FN_URL}/status{SSA}"),
        Some(json!({"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "status": status})),
        Fixture::function(spec("reg/hello:1")).0,
    )
}

/// A merge patch of the Function's finalizers: `body` must be sent, `reply`
/// is the Function the server returns.
fn patch_finalizers(body: Value, reply: Fixture) -> Exchange {
    exchange(Method::PATCH, format!("{FN_URL}?"), Some(body), reply.0)
}

fn event(reason: &str, kind: &str) -> Exchange {
    exchange(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/ns/events?",
        Some(
            json!({"reason": reason, "type": kind, "regarding": {"kind": "Function", "name": "hello"}}),
        ),
        Value::Null,
    )
}

/// `status.conditions`: the (status, reason) of Ready, ConfigurationsReady
/// and RoutesReady, in that order.
fn conditions(ready: [&str; 2], configurations: [&str; 2], routes: [&str; 2]) -> Value {
    let condition = |type_: &str, [status, reason]: [&str; 2]| json!({"type": type_, "status": status, "reason": reason});
    json!([
        condition("Ready", ready),
        condition("ConfigurationsReady", configurations),
        condition("RoutesReady", routes),
    ])
}

const DEPLOYING: [&str; 2] = ["Unknown", "RevisionDeploying"];

// ---- scenarios --------------------------------------------------------------

#[tokio::test]
async fn the_finalizer_of_earlier_versions_is_removed_first() {
    // Others' finalizers stay; the patch carries the resource version, so a
    // concurrent change is refused rather than overwritten.
    let mut f = Fixture::function(spec("reg/hello:1")).finalized();
    f.0["metadata"]["finalizers"] = json!(["other.example/keep", "functions.flint.dev/finalizer"]);
    f.0["metadata"]["resourceVersion"] = json!("41");
    let script = vec![patch_finalizers(
        json!({"metadata": {"resourceVersion": "41", "finalizers": ["other.example/keep"]}}),
        Fixture::function(spec("reg/hello:1")),
    )];
    expect_action(f.build(), script, Action::await_change()).await;
}

#[tokio::test]
async fn create_cuts_the_first_revision_and_reports_it_deploying() {
    let f = finalized_function();
    let hash = spec_hash(&f.spec);
    let script = after_listing(
        vec![],
        vec![],
        [
            apply_deployment(
                "hello-00001",
                json!({"apiVersion": "apps/v1", "kind": "Deployment",
                       "metadata": {"name": "hello-00001", "annotations": {
                           "flint.dev/spec-hash": hash, "flint.dev/concurrency": "0",
                           "flint.dev/timeout-seconds": "300", "flint.dev/protocol": "http1",
                           "flint.dev/scale": DEFAULT_SCALE_ANNOTATION}},
                       "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "reg/hello:1"}]}}}}),
            ),
            apply_service("hello-00001"),
            apply_status(json!({
                "observedGeneration": 1,
                "url": "http://hello.ns.example.com",
                "latestCreatedRevision": "hello-00001",
                "conditions": conditions(DEPLOYING, DEPLOYING, DEPLOYING),
                "revisions": [{"name": "hello-00001", "ready": false, "reason": "RevisionDeploying",
                               "concurrency": 0, "timeoutSeconds": 300, "protocol": "http1",
                               "scale": default_scale()}],
                "replicas": 0,
            })),
            event("RevisionCreated", "Normal"),
        ],
    );
    expect_action(f, script, Action::requeue(REQUEUE_PENDING)).await;
}

#[tokio::test]
async fn a_ready_revision_takes_all_traffic() {
    let f = Fixture::function(spec("reg/hello:1"))
        .status(json!({"revisions": [{"name": "hello-00001", "ready": false, "reason": "RevisionDeploying"}]}))
        .build();
    let script = after_listing(
        vec![deployment("hello-00001", "reg/hello:1", available())],
        vec![],
        [
            apply_service("hello-00001"),
            apply_status(json!({
                "latestCreatedRevision": "hello-00001",
                "latestReadyRevision": "hello-00001",
                "conditions": conditions(
                    ["True", "Ready"],
                    ["True", "RevisionReady"],
                    ["True", "TrafficResolved"],
                ),
                "traffic": all_traffic_to("hello-00001"),
                "replicas": 1,
                "desiredReplicas": 1,
            })),
            event("RevisionReady", "Normal"),
        ],
    );
    expect_action(f, script, Action::requeue(REQUEUE_SETTLED)).await;
}

#[tokio::test]
async fn a_scale_edit_reaches_the_latest_revision_without_a_new_one() {
    // Generation 2 changed only `scale`: no Deployment is applied, and the
    // status reports the new scale for the revision that follows the spec.
    let f = Fixture::function(json!({"image": "reg/hello:1", "scale": {"min": 1, "max": 7}}))
        .generation(2)
        .status(json!({
            "latestCreatedRevision": "hello-00001",
            "latestReadyRevision": "hello-00001",
            "revisions": [{"name": "hello-00001", "ready": true, "replicas": 1,
                           "scale": default_scale()}],
            "traffic": all_traffic_to("hello-00001"),
        }))
        .build();
    let mut scale = default_scale();
    scale["min"] = json!(1);
    scale["max"] = json!(7);
    let script = after_listing(
        vec![deployment("hello-00001", "reg/hello:1", available())],
        vec![],
        [
            apply_service("hello-00001"),
            apply_status(json!({
                "observedGeneration": 2,
                "latestCreatedRevision": "hello-00001",
                "traffic": all_traffic_to("hello-00001"),
                "revisions": [{"name": "hello-00001", "ready": true, "scale": scale}],
            })),
        ],
    );
    expect_action(f, script, Action::requeue(REQUEUE_SETTLED)).await;
}

#[tokio::test]
async fn update_cuts_a_new_revision_while_the_old_keeps_traffic() {
    let f = second_generation(json!({
        "revisions": [ready_revision("hello-00001")],
        "traffic": all_traffic_to("hello-00001"),
    }));
    let script = after_listing(
        vec![deployment("hello-00001", "reg/hello:1", available())],
        vec![],
        [
            apply_deployment(
                "hello-00002",
                json!({"metadata": {"name": "hello-00002", "labels": {"flint.dev/generation": "2"}},
                       "spec": {"template": {"spec": {"containers": [{"image": "reg/hello:2"}]}}}}),
            ),
            apply_service("hello-00001"),
            apply_service("hello-00002"),
            apply_status(json!({
                "observedGeneration": 2,
                "latestCreatedRevision": "hello-00002",
                "latestReadyRevision": "hello-00001",
                "conditions": conditions(DEPLOYING, DEPLOYING, ["True", "TrafficResolved"]),
                "traffic": all_traffic_to("hello-00001"),
                // hello-00001's Deployment records no serving settings (an older
                // operator created it) and the previous status no scale: they
                // stay absent, and the gateway and the autoscaler fall back to
                // the spec for it.
                "revisions": [
                    {"name": "hello-00002", "concurrency": 0, "timeoutSeconds": 300, "protocol": "http1",
                     "scale": default_scale()},
                    {"name": "hello-00001", "ready": true,
                     "concurrency": null, "timeoutSeconds": null, "protocol": null, "scale": null},
                ],
            })),
            event("RevisionCreated", "Normal"),
        ],
    );
    expect_action(f, script, Action::requeue(REQUEUE_PENDING)).await;
}

#[tokio::test]
async fn a_failing_revision_never_receives_traffic() {
    let f = second_generation(json!({"revisions": [
        {"name": "hello-00002", "ready": false, "reason": "RevisionDeploying"},
        ready_revision("hello-00001")
    ]}));
    let pull_failure = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hello-00002-abc", "labels": {"flint.dev/revision": "hello-00002"}},
        "status": {"containerStatuses": [{"name": "app", "image": "reg/hello:2", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}
    });
    let script = after_listing(
        vec![
            deployment("hello-00001", "reg/hello:1", available()),
            deployment("hello-00002", "reg/hello:2", json!({})),
        ],
        vec![pull_failure],
        [
            apply_service("hello-00001"),
            apply_service("hello-00002"),
            apply_status(json!({
                "latestCreatedRevision": "hello-00002",
                "latestReadyRevision": "hello-00001",
                "conditions": conditions(
                    ["False", "ImagePullBackOff"],
                    ["False", "ImagePullBackOff"],
                    ["True", "TrafficResolved"],
                ),
                "traffic": all_traffic_to("hello-00001"),
                "revisions": [
                    {"name": "hello-00002", "ready": false, "reason": "ImagePullBackOff"},
                    {"name": "hello-00001", "ready": true},
                ],
            })),
            event("RevisionFailed", "Warning"),
        ],
    );
    expect_action(f, script, Action::requeue(REQUEUE_PENDING)).await;
}

#[tokio::test]
async fn a_missing_traffic_target_is_reported_and_old_traffic_kept() {
    let f = Fixture::function(
        json!({"image": "reg/hello:1", "traffic": [{"revision": "hello-00007", "percent": 100}]}),
    )
    .status(json!({"revisions": [ready_revision("hello-00001")],
                       "traffic": all_traffic_to("hello-00001")}))
    .build();
    let script = after_listing(
        vec![deployment("hello-00001", "reg/hello:1", available())],
        vec![],
        [
            apply_service("hello-00001"),
            apply_status(json!({
                "conditions": conditions(
                    ["False", "TrafficTargetNotFound"],
                    ["True", "RevisionReady"],
                    ["False", "TrafficTargetNotFound"],
                ),
                "traffic": all_traffic_to("hello-00001"),
            })),
            event("TrafficTargetNotFound", "Warning"),
        ],
    );
    expect_action(f, script, Action::requeue(REQUEUE_PENDING)).await;
}

#[tokio::test]
async fn a_deleted_function_is_left_to_the_garbage_collector() {
    // Its revisions' objects carry owner references: nothing to request.
    let f = Fixture::function(spec("reg/hello:1")).deleting().build();
    expect_action(f, vec![], Action::await_change()).await;
}

#[tokio::test]
async fn a_deleted_function_holding_the_old_finalizer_is_released() {
    let mut f = Fixture::function(spec("reg/hello:1"))
        .finalized()
        .deleting();
    f.0["metadata"]["resourceVersion"] = json!("7");
    let script = vec![patch_finalizers(
        json!({"metadata": {"resourceVersion": "7", "finalizers": null}}),
        Fixture::function(spec("reg/hello:1")).deleting(),
    )];
    expect_action(f.build(), script, Action::await_change()).await;
}

#[tokio::test]
async fn a_conflict_on_the_deployment_stops_before_anything_else_and_requeues() {
    let script = after_listing(
        vec![],
        vec![],
        [failing(
            Method::PATCH,
            deployment_apply_uri("hello-00001"),
            409,
        )],
    );
    let (result, ctx) = run(finalized_function(), script).await;
    let error = result.unwrap_err();
    assert!(
        matches!(&error, Error::Apply { kind: "Deployment", name, .. } if name == "hello-00001"),
        "{error}"
    );
    // No Service, no status written: the next attempt starts from scratch.
    let f = Arc::new(finalized_function());
    assert_eq!(
        error_policy(f.clone(), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        error_policy(f, &error, ctx),
        Action::requeue(Duration::from_secs(2)),
        "backoff doubles per Function"
    );
}

#[tokio::test]
async fn a_server_error_on_a_service_leaves_the_status_alone() {
    let script = after_listing(
        vec![],
        vec![],
        [
            apply_deployment("hello-00001", json!({"metadata": {"name": "hello-00001"}})),
            failing(Method::PATCH, service_apply_uri("hello-00001"), 500),
        ],
    );
    let (result, _) = run(finalized_function(), script).await;
    assert!(
        matches!(
            result,
            Err(Error::Apply {
                kind: "Service",
                ..
            })
        ),
        "{result:?}"
    );
}

#[tokio::test]
async fn after_a_failed_attempt_the_retry_reuses_the_revision() {
    // The Deployment of hello-00001 was created before a failure: the retry
    // finds it by its spec hash and creates no second revision.
    let script = after_listing(
        vec![deployment("hello-00001", "reg/hello:1", json!({}))],
        vec![],
        [
            apply_service("hello-00001"),
            apply_status(json!({"latestCreatedRevision": "hello-00001"})),
        ],
    );
    expect_action(
        finalized_function(),
        script,
        Action::requeue(REQUEUE_PENDING),
    )
    .await;
}

#[tokio::test]
async fn a_server_error_listing_requeues_without_writing() {
    let script = vec![failing(
        Method::GET,
        format!("/apis/apps/v1{NS}/deployments{BY_FN}"),
        500,
    )];
    let (result, _) = run(finalized_function(), script).await;
    assert!(
        matches!(
            result,
            Err(Error::List {
                kind: "deployments",
                ..
            })
        ),
        "{result:?}"
    );
}

// ---- deleting old revisions: only what the Function owns --------------------

/// A Function at reg/hello:3 keeping no idle revision, all traffic on
/// hello-00003.
fn keeping_no_history() -> Function {
    Fixture::function(json!({"image": "reg/hello:3", "revisionHistoryLimit": 0}))
        .generation(3)
        .status(json!({
            "revisions": [ready_revision("hello-00003"), ready_revision("hello-00001")],
            "traffic": all_traffic_to("hello-00003"),
        }))
        .build()
}

/// `object` with `metadata.uid` set, as the API server returns it.
fn with_uid(mut object: Value, uid: &str) -> Value {
    object["metadata"]["uid"] = json!(uid);
    object
}

/// `object` without owner references: matching labels, someone else's.
fn unowned(mut object: Value) -> Value {
    object["metadata"]
        .as_object_mut()
        .unwrap()
        .remove("ownerReferences");
    object
}

/// A revision Service as the API server returns it, owned by the Function.
fn service(name: &str, uid: &str) -> Value {
    json!({
        "apiVersion": "v1", "kind": "Service",
        "metadata": {
            "name": name, "namespace": "ns", "uid": uid,
            "labels": {"flint.dev/function": "hello", "flint.dev/revision": name},
            "ownerReferences": [{"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "name": "hello", "uid": "uid-1", "controller": true}]
        },
        "spec": {"selector": {"flint.dev/revision": name}}
    })
}

fn list_services(items: Vec<Value>) -> Exchange {
    exchange(
        Method::GET,
        format!("/api/v1{NS}/services{BY_FN}"),
        None,
        list("ServiceList", "v1", items),
    )
}

/// A background delete of `path` allowed only while the object has `uid`.
fn delete_if_uid(path: String, uid: &str) -> Exchange {
    exchange(
        Method::DELETE,
        format!("{path}?"),
        Some(json!({"propagationPolicy": "Background", "preconditions": {"uid": uid}})),
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"}),
    )
}

#[tokio::test]
async fn an_old_revision_is_deleted_only_in_the_objects_the_function_owns() {
    // hello-00002's Deployment and Service carry the Function's labels but
    // no owner reference (someone else made them): never deleted. The owned
    // hello-00001 goes, each delete pinned to the uid that was listed.
    let script = after_listing_all(
        vec![
            with_uid(deployment("hello-00003", "reg/hello:3", available()), "d3"),
            with_uid(deployment("hello-00001", "reg/hello:1", json!({})), "d1"),
            with_uid(
                unowned(deployment("hello-00002", "reg/hello:2", json!({}))),
                "d2",
            ),
        ],
        vec![],
        vec![
            service("hello-00003", "s3"),
            service("hello-00001", "s1"),
            unowned(service("hello-00002", "s2")),
        ],
        [
            apply_service("hello-00003"),
            delete_if_uid(format!("/apis/apps/v1{NS}/deployments/hello-00001"), "d1"),
            delete_if_uid(format!("/api/v1{NS}/services/hello-00001"), "s1"),
            apply_status(json!({
                "latestReadyRevision": "hello-00003",
                "revisions": [{"name": "hello-00003"}],
            })),
            event("RevisionDeleted", "Normal"),
        ],
    );
    expect_action(
        keeping_no_history(),
        script,
        Action::requeue(REQUEUE_SETTLED),
    )
    .await;
}

#[tokio::test]
async fn a_service_named_like_an_old_revision_but_not_owned_is_left_alone() {
    // The revision's own Service is gone; one of the same name with the
    // Function's labels, made by someone else, stays.
    let script = after_listing_all(
        vec![
            with_uid(deployment("hello-00003", "reg/hello:3", available()), "d3"),
            with_uid(deployment("hello-00001", "reg/hello:1", json!({})), "d1"),
        ],
        vec![],
        vec![
            service("hello-00003", "s3"),
            unowned(service("hello-00001", "foreign")),
        ],
        [
            apply_service("hello-00003"),
            delete_if_uid(format!("/apis/apps/v1{NS}/deployments/hello-00001"), "d1"),
            apply_status(json!({"latestReadyRevision": "hello-00003"})),
            event("RevisionDeleted", "Normal"),
        ],
    );
    expect_action(
        keeping_no_history(),
        script,
        Action::requeue(REQUEUE_SETTLED),
    )
    .await;
}

#[tokio::test]
async fn a_revision_object_replaced_before_its_delete_is_not_deleted() {
    // Between the list and the delete, hello-00001's Deployment was replaced
    // by another object of the same name: the uid precondition fails (409),
    // which is no error, and the reconcile goes on.
    let mut conflict = failing(
        Method::DELETE,
        format!("/apis/apps/v1{NS}/deployments/hello-00001?"),
        409,
    );
    conflict = conflict.expecting(json!({"preconditions": {"uid": "d1"}}));
    let script = after_listing_all(
        vec![
            with_uid(deployment("hello-00003", "reg/hello:3", available()), "d3"),
            with_uid(deployment("hello-00001", "reg/hello:1", json!({})), "d1"),
        ],
        vec![],
        vec![service("hello-00003", "s3")],
        [
            apply_service("hello-00003"),
            conflict,
            apply_status(json!({"latestReadyRevision": "hello-00003"})),
            event("RevisionDeleted", "Normal"),
        ],
    );
    expect_action(
        keeping_no_history(),
        script,
        Action::requeue(REQUEUE_SETTLED),
    )
    .await;
}
