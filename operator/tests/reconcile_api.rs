//! The reconcile loop against a mocked API server (the kube-rs
//! `ApiServerVerifier` pattern): each scenario lists the exact requests the
//! reconciler must make, in order, with the replies the server gives.

use std::sync::Arc;
use std::time::Duration;

use flint_api::Function;
use flint_operator::reconcile::controller::{REQUEUE_PENDING, REQUEUE_SETTLED, error_policy};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::metrics::ReconcileMetrics;
use flint_operator::reconcile::{Context, Error, reconcile};
use futures::FutureExt;
use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const NS: &str = "/namespaces/ns";
const FN_URL: &str = "/apis/flint.dev/v1alpha1/namespaces/ns/functions/hello";
const SSA: &str = "?&force=true&fieldManager=flint-operator";
const BY_FN: &str = "?&labelSelector=flint.dev%2Ffunction%3Dhello";

/// One request the reconciler must make and the server's reply.
struct Exchange {
    method: Method,
    uri: String,
    /// Checks on the request body (a JSON subset that must match).
    body: Option<Value>,
    status: StatusCode,
    reply: Value,
}

fn exchange(method: Method, uri: impl Into<String>, body: Option<Value>, reply: Value) -> Exchange {
    Exchange {
        method,
        uri: uri.into(),
        body,
        status: StatusCode::OK,
        reply,
    }
}

fn failing(method: Method, uri: impl Into<String>, code: u16) -> Exchange {
    let status = StatusCode::from_u16(code).unwrap();
    Exchange {
        method,
        uri: uri.into(),
        body: None,
        status,
        reply: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "injected", "reason": status.canonical_reason(), "code": code}),
    }
}

/// `expected` is contained in `actual`: objects by key, arrays element-wise.
fn assert_subset(actual: &Value, expected: &Value, path: &str) {
    match (actual, expected) {
        (Value::Object(a), Value::Object(e)) => {
            for (k, v) in e {
                let got = a.get(k).unwrap_or(&Value::Null);
                assert_subset(got, v, &format!("{path}.{k}"));
            }
        }
        (Value::Array(a), Value::Array(e)) => {
            assert_eq!(a.len(), e.len(), "length of {path}: {actual}");
            for (i, (x, y)) in a.iter().zip(e).enumerate() {
                assert_subset(x, y, &format!("{path}[{i}]"));
            }
        }
        _ => assert_eq!(actual, expected, "at {path}"),
    }
}

struct ApiServerVerifier(Handle);

impl ApiServerVerifier {
    /// Answers `script` in order, checking every request, then makes sure
    /// no further request arrives before the reconcile is over.
    async fn run(mut self, script: Vec<Exchange>) -> Handle {
        for (i, step) in script.into_iter().enumerate() {
            let (request, send) =
                self.0.next_request().await.unwrap_or_else(|| {
                    panic!("request {i} ({} {}) never came", step.method, step.uri)
                });
            assert_eq!(
                (request.method(), request.uri().to_string()),
                (&step.method, step.uri.clone()),
                "request {i}"
            );
            let bytes = request.into_body().collect_bytes().await.unwrap();
            if let Some(expected) = &step.body {
                let actual: Value = serde_json::from_slice(&bytes).unwrap();
                assert_subset(&actual, expected, &format!("request {i} body"));
            }
            let reply = if step.reply.is_null() {
                // Echo: apply and event requests answer with what was sent.
                bytes.to_vec()
            } else {
                serde_json::to_vec(&step.reply).unwrap()
            };
            send.send_response(
                Response::builder()
                    .status(step.status)
                    .body(Body::from(reply))
                    .unwrap(),
            );
        }
        self.0
    }
}

fn context() -> (Arc<Context>, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let client = Client::new(service, "default");
    let registry = prometheus::Registry::new();
    let reporter = Reporter {
        controller: "flint-operator".into(),
        instance: Some("test".into()),
    };
    let metrics = ReconcileMetrics::register(&registry).unwrap();
    let ctx = Context::new(client, reporter, metrics, "example.com".into());
    (Arc::new(ctx), ApiServerVerifier(handle))
}

/// Runs one reconcile of `function` against `script`; returns its result
/// after checking every scripted request was made and no other.
async fn run(function: Function, script: Vec<Exchange>) -> (Result<Action, Error>, Arc<Context>) {
    let (ctx, verifier) = context();
    let server = tokio::spawn(verifier.run(script));
    let result = tokio::time::timeout(
        Duration::from_secs(10),
        reconcile(Arc::new(function), ctx.clone()),
    )
    .await
    .expect("reconcile hung: it made a request the scenario does not expect");
    let mut handle = tokio::time::timeout(Duration::from_secs(10), server)
        .await
        .expect("scenario incomplete")
        .unwrap();
    assert!(
        handle.next_request().now_or_never().is_none(),
        "an unexpected extra request"
    );
    (result, ctx)
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

fn ready_revision(name: &str) -> Value {
    json!({"name": name, "ready": true, "replicas": 1})
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

fn list_pods(items: Vec<Value>) -> Exchange {
    exchange(
        Method::GET,
        format!("/api/v1{NS}/pods{BY_FN}"),
        None,
        list("PodList", "v1", items),
    )
}

fn apply_deployment(name: &str, body: Value) -> Exchange {
    exchange(
        Method::PATCH,
        format!("/apis/apps/v1{NS}/deployments/{name}{SSA}"),
        Some(body),
        Value::Null,
    )
}

fn apply_service(name: &str) -> Exchange {
    exchange(
        Method::PATCH,
        format!("/api/v1{NS}/services/{name}{SSA}"),
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
        Fixture::function(spec("reg/hello:1")).finalized().0,
    )
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

fn condition(type_: &str, status: &str, reason: &str) -> Value {
    json!({"type": type_, "status": status, "reason": reason})
}

// ---- scenarios --------------------------------------------------------------

#[tokio::test]
async fn a_new_function_first_gets_the_finalizer() {
    let f = Fixture::function(spec("reg/hello:1")).build();
    let script = vec![exchange(
        Method::PATCH,
        format!("{FN_URL}?"),
        Some(json!([
            {"op": "test", "path": "/metadata/finalizers", "value": null},
            {"op": "add", "path": "/metadata/finalizers", "value": ["functions.flint.dev/finalizer"]}
        ])),
        Fixture::function(spec("reg/hello:1")).finalized().0,
    )];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn create_cuts_the_first_revision_and_reports_it_deploying() {
    let f = Fixture::function(spec("reg/hello:1")).finalized().build();
    let script = vec![
        list_deployments(vec![]),
        list_pods(vec![]),
        apply_deployment(
            "hello-00001",
            json!({"apiVersion": "apps/v1", "kind": "Deployment",
                   "metadata": {"name": "hello-00001", "annotations": {
                       "flint.dev/spec-hash": spec_hash(&f.spec), "flint.dev/concurrency": "0",
                       "flint.dev/timeout-seconds": "300", "flint.dev/protocol": "http1"}},
                   "spec": {"replicas": 1, "template": {"spec": {"containers": [{"image": "reg/hello:1"}]}}}}),
        ),
        apply_service("hello-00001"),
        apply_status(json!({
            "observedGeneration": 1,
            "url": "http://hello.ns.example.com",
            "latestCreatedRevision": "hello-00001",
            "conditions": [
                condition("Ready", "Unknown", "RevisionDeploying"),
                condition("ConfigurationsReady", "Unknown", "RevisionDeploying"),
                condition("RoutesReady", "Unknown", "RevisionDeploying"),
            ],
            "revisions": [{"name": "hello-00001", "ready": false, "reason": "RevisionDeploying",
                           "concurrency": 0, "timeoutSeconds": 300, "protocol": "http1"}],
            "replicas": 0,
        })),
        event("RevisionCreated", "Normal"),
    ];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_PENDING));
}

#[tokio::test]
async fn a_ready_revision_takes_all_traffic() {
    let f = Fixture::function(spec("reg/hello:1"))
        .finalized()
        .status(json!({"revisions": [{"name": "hello-00001", "ready": false, "reason": "RevisionDeploying"}]}))
        .build();
    let script = vec![
        list_deployments(vec![deployment("hello-00001", "reg/hello:1", available())]),
        list_pods(vec![]),
        apply_service("hello-00001"),
        apply_status(json!({
            "latestCreatedRevision": "hello-00001",
            "latestReadyRevision": "hello-00001",
            "conditions": [
                condition("Ready", "True", "Ready"),
                condition("ConfigurationsReady", "True", "RevisionReady"),
                condition("RoutesReady", "True", "TrafficResolved"),
            ],
            "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}],
            "replicas": 1,
            "desiredReplicas": 1,
        })),
        event("RevisionReady", "Normal"),
    ];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_SETTLED));
}

#[tokio::test]
async fn update_cuts_a_new_revision_while_the_old_keeps_traffic() {
    let f = Fixture::function(spec("reg/hello:2"))
        .finalized()
        .generation(2)
        .status(json!({"revisions": [ready_revision("hello-00001")],
                       "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}]}))
        .build();
    let script = vec![
        list_deployments(vec![deployment("hello-00001", "reg/hello:1", available())]),
        list_pods(vec![]),
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
            "conditions": [
                condition("Ready", "Unknown", "RevisionDeploying"),
                condition("ConfigurationsReady", "Unknown", "RevisionDeploying"),
                condition("RoutesReady", "True", "TrafficResolved"),
            ],
            "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}],
            // hello-00001's Deployment records no serving settings (an older
            // operator created it): they stay absent, and the gateway falls
            // back to the spec for it.
            "revisions": [
                {"name": "hello-00002", "concurrency": 0, "timeoutSeconds": 300, "protocol": "http1"},
                {"name": "hello-00001", "ready": true,
                 "concurrency": null, "timeoutSeconds": null, "protocol": null},
            ],
        })),
        event("RevisionCreated", "Normal"),
    ];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_PENDING));
}

#[tokio::test]
async fn a_failing_revision_never_receives_traffic() {
    let f = Fixture::function(spec("reg/hello:2"))
        .finalized()
        .generation(2)
        .status(json!({"revisions": [
            {"name": "hello-00002", "ready": false, "reason": "RevisionDeploying"},
            ready_revision("hello-00001")
        ]}))
        .build();
    let pull_failure = json!({
        "apiVersion": "v1", "kind": "Pod",
        "metadata": {"name": "hello-00002-abc", "labels": {"flint.dev/revision": "hello-00002"}},
        "status": {"containerStatuses": [{"name": "app", "image": "reg/hello:2", "imageID": "", "ready": false,
            "restartCount": 0, "state": {"waiting": {"reason": "ImagePullBackOff", "message": "not found"}}}]}
    });
    let script = vec![
        list_deployments(vec![
            deployment("hello-00001", "reg/hello:1", available()),
            deployment("hello-00002", "reg/hello:2", json!({})),
        ]),
        list_pods(vec![pull_failure]),
        apply_service("hello-00001"),
        apply_service("hello-00002"),
        apply_status(json!({
            "latestCreatedRevision": "hello-00002",
            "latestReadyRevision": "hello-00001",
            "conditions": [
                condition("Ready", "False", "ImagePullBackOff"),
                condition("ConfigurationsReady", "False", "ImagePullBackOff"),
                condition("RoutesReady", "True", "TrafficResolved"),
            ],
            "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}],
            "revisions": [
                {"name": "hello-00002", "ready": false, "reason": "ImagePullBackOff"},
                {"name": "hello-00001", "ready": true},
            ],
        })),
        event("RevisionFailed", "Warning"),
    ];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_PENDING));
}

#[tokio::test]
async fn a_missing_traffic_target_is_reported_and_old_traffic_kept() {
    let f = Fixture::function(json!({"image": "reg/hello:1", "traffic": [{"revision": "hello-00007", "percent": 100}]}))
        .finalized()
        .status(json!({"revisions": [ready_revision("hello-00001")],
                       "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}]}))
        .build();
    let script = vec![
        list_deployments(vec![deployment("hello-00001", "reg/hello:1", available())]),
        list_pods(vec![]),
        apply_service("hello-00001"),
        apply_status(json!({
            "conditions": [
                condition("Ready", "False", "TrafficTargetNotFound"),
                condition("ConfigurationsReady", "True", "RevisionReady"),
                condition("RoutesReady", "False", "TrafficTargetNotFound"),
            ],
            "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}],
        })),
        event("TrafficTargetNotFound", "Warning"),
    ];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_PENDING));
}

#[tokio::test]
async fn deletion_releases_everything_then_the_finalizer() {
    let f = Fixture::function(spec("reg/hello:1"))
        .finalized()
        .deleting()
        .build();
    let service = json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "hello-00001", "namespace": "ns"}});
    let status_ok =
        json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success"});
    let script = vec![
        list_deployments(vec![deployment("hello-00001", "reg/hello:1", available())]),
        exchange(
            Method::DELETE,
            format!("/apis/apps/v1{NS}/deployments/hello-00001?"),
            Some(json!({"propagationPolicy": "Background"})),
            status_ok.clone(),
        ),
        exchange(
            Method::GET,
            format!("/api/v1{NS}/services{BY_FN}"),
            None,
            list("ServiceList", "v1", vec![service]),
        ),
        exchange(
            Method::DELETE,
            format!("/api/v1{NS}/services/hello-00001?"),
            Some(json!({"propagationPolicy": "Background"})),
            status_ok,
        ),
        exchange(
            Method::PATCH,
            format!("{FN_URL}?"),
            Some(json!([
                {"op": "test", "path": "/metadata/finalizers/0", "value": "functions.flint.dev/finalizer"},
                {"op": "remove", "path": "/metadata/finalizers/0"}
            ])),
            Fixture::function(spec("reg/hello:1")).deleting().0,
        ),
    ];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::await_change());
}

#[tokio::test]
async fn a_conflict_on_the_deployment_stops_before_anything_else_and_requeues() {
    let f = Fixture::function(spec("reg/hello:1")).finalized().build();
    let script = vec![
        list_deployments(vec![]),
        list_pods(vec![]),
        failing(
            Method::PATCH,
            format!("/apis/apps/v1{NS}/deployments/hello-00001{SSA}"),
            409,
        ),
    ];
    let (result, ctx) = run(f.clone(), script).await;
    let error = result.unwrap_err();
    assert!(
        matches!(&error, Error::Apply { kind: "Deployment", name, .. } if name == "hello-00001"),
        "{error}"
    );
    // No Service, no status written: the next attempt starts from scratch.
    let f = Arc::new(f);
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
    let f = Fixture::function(spec("reg/hello:1")).finalized().build();
    let script = vec![
        list_deployments(vec![]),
        list_pods(vec![]),
        apply_deployment("hello-00001", json!({"metadata": {"name": "hello-00001"}})),
        failing(
            Method::PATCH,
            format!("/api/v1{NS}/services/hello-00001{SSA}"),
            500,
        ),
    ];
    let (result, _) = run(f, script).await;
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
    let f = Fixture::function(spec("reg/hello:1")).finalized().build();
    let script = vec![
        list_deployments(vec![deployment("hello-00001", "reg/hello:1", json!({}))]),
        list_pods(vec![]),
        apply_service("hello-00001"),
        apply_status(json!({"latestCreatedRevision": "hello-00001"})),
    ];
    let (result, _) = run(f, script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_PENDING));
}

#[tokio::test]
async fn a_server_error_listing_requeues_without_writing() {
    let f = Fixture::function(spec("reg/hello:1")).finalized().build();
    let script = vec![failing(
        Method::GET,
        format!("/apis/apps/v1{NS}/deployments{BY_FN}"),
        500,
    )];
    let (result, _) = run(f, script).await;
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
