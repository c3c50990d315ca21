//! Image tag resolution in the reconcile loop, against a mocked API server
//! (the requests pinned as in reconcile_api.rs): a new revision's image is
//! resolved before its Deployment is created; when it cannot be, no revision
//! is cut, the previous one keeps its traffic, and the status and an Event
//! say why. A registry is never reached here: the failures are a missing or
//! wrong Secret (before any network) and a closed loopback port. The
//! Function's ServiceAccount is read for its imagePullSecrets once the
//! Function's own are read. Resolution
//! against a real registry: tests/image_registry.rs.

#[path = "support/api_server.rs"]
mod api_server;
#[path = "support/mock_serve.rs"]
mod mock_serve;

use std::sync::Arc;
use std::time::Duration;

use api_server::{BY_FN, Exchange, FN_URL, NS, SSA, exchange, failing, mocked_client};
use flint_api::Function;
use flint_operator::image::{RegistryList, Resolver};
use flint_operator::reconcile::controller::{REQUEUE_PENDING, error_policy};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::metrics::ReconcileMetrics;
use flint_operator::reconcile::pin::{ImagePinning, PinError};
use flint_operator::reconcile::{Context, Error, reconcile};
use http::Method;
use kube::runtime::controller::Action;
use kube::runtime::events::Reporter;
use serde_json::{Value, json};

const DIGEST: &str = "sha256:5e2a6bd7c4b1f2e0a9d8c7b6a5f4e3d2c1b0a9f8e7d6c5b4a3f2e1d0c9b8a7f6";
/// A registry address where nothing listens: the connection is refused at once.
const CLOSED: &str = "127.0.0.1:1";

/// A context resolving tags with the default skip list, plain HTTP to the
/// closed loopback port.
fn context(client: kube::Client, registry: &prometheus::Registry) -> Arc<Context> {
    let reporter = Reporter {
        controller: "flint-operator".into(),
        instance: Some("test".into()),
    };
    let metrics = ReconcileMetrics::register(registry).unwrap();
    let pinning = ImagePinning {
        skip: RegistryList::default_skip(),
        resolver: Resolver::new(RegistryList::new([CLOSED]), Duration::from_secs(3)),
    };
    Arc::new(
        Context::new(client, reporter, metrics, "example.com".into()).with_image_pinning(pinning),
    )
}

async fn run(function: Function, script: Vec<Exchange>) -> (Result<Action, Error>, Arc<Context>) {
    let (result, ctx, _) = run_measured(function, script).await;
    (result, ctx)
}

/// As [`run`], also giving the count of `flint_image_resolutions_total`
/// by outcome afterwards.
async fn run_measured(
    function: Function,
    script: Vec<Exchange>,
) -> (Result<Action, Error>, Arc<Context>, Vec<(String, u64)>) {
    let (client, verifier) = mocked_client();
    let registry = prometheus::Registry::new();
    let ctx = context(client, &registry);
    let result = verifier
        .check(script, reconcile(Arc::new(function), ctx.clone()))
        .await;
    let outcomes = registry
        .gather()
        .iter()
        .filter(|f| f.name() == "flint_image_resolutions_total")
        .flat_map(|f| f.get_metric().to_vec())
        .map(|m| {
            (
                m.get_label()[0].value().to_owned(),
                m.get_counter().get_value() as u64,
            )
        })
        .collect();
    (result, ctx, outcomes)
}

/// A Function `hello` in `ns` at `generation` with `spec` and `status`.
fn function(spec: Value, generation: i64, status: Value) -> Function {
    serde_json::from_value(json!({
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "uid-1", "generation": generation},
        "spec": spec,
        "status": status,
    }))
    .unwrap()
}

/// Revision `name` as the API server lists it: cut from `spec`, running
/// `image` (pinned), available.
fn deployment(name: &str, spec: Value, image: &str) -> Value {
    let hash = spec_hash(&function(spec, 1, Value::Null).spec);
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": "ns",
            "labels": {"flint.dev/function": "hello", "flint.dev/revision": name, "flint.dev/generation": "1"},
            "annotations": {"flint.dev/spec-hash": hash},
            "ownerReferences": [{"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "name": "hello", "uid": "uid-1", "controller": true}]
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"flint.dev/revision": name}},
                 "template": {"spec": {"containers": [{"name": "app", "image": image}]}}},
        "status": {"availableReplicas": 1, "readyReplicas": 1, "replicas": 1}
    })
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// The reconciler's first reads, then `rest`.
fn after_listing(
    deployments: Vec<Value>,
    rest: impl IntoIterator<Item = Exchange>,
) -> Vec<Exchange> {
    let mut script = vec![
        exchange(
            Method::GET,
            format!("/apis/apps/v1{NS}/deployments{BY_FN}"),
            None,
            list("DeploymentList", "apps/v1", deployments),
        ),
        exchange(
            Method::GET,
            format!("/api/v1{NS}/pods{BY_FN}"),
            None,
            list("PodList", "v1", vec![]),
        ),
        exchange(
            Method::GET,
            format!("/api/v1{NS}/services{BY_FN}"),
            None,
            list("ServiceList", "v1", vec![]),
        ),
    ];
    script.extend(rest);
    script
}

/// The Function's ServiceAccount `default` is read for its imagePullSecrets;
/// here it names none.
fn default_account() -> Exchange {
    exchange(
        Method::GET,
        format!("/api/v1{NS}/serviceaccounts/default"),
        None,
        json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": "default", "namespace": "ns"}}),
    )
}

fn get_secret(name: &str, secret: Value) -> Exchange {
    exchange(
        Method::GET,
        format!("/api/v1{NS}/secrets/{name}"),
        None,
        secret,
    )
}

fn apply_service(name: &str) -> Exchange {
    exchange(
        Method::PATCH,
        format!("/api/v1{NS}/services/{name}{SSA}"),
        Some(json!({"kind": "Service", "metadata": {"name": name}})),
        Value::Null,
    )
}

fn apply_deployment(name: &str, image: &str) -> Exchange {
    exchange(
        Method::PATCH,
        format!("/apis/apps/v1{NS}/deployments/{name}{SSA}"),
        Some(json!({"kind": "Deployment", "metadata": {"name": name},
                    "spec": {"template": {"spec": {"containers": [{"name": "app", "image": image}]}}}})),
        Value::Null,
    )
}

fn apply_status(status: Value) -> Exchange {
    exchange(
        Method::PATCH,
        format!("{FN_URL}/status{SSA}"),
        Some(json!({"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "status": status})),
        serde_json::to_value(function(
            json!({"image": "reg.example/hello:1"}),
            1,
            Value::Null,
        ))
        .unwrap(),
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

/// The spec of generation 1, its revision hello-00001 running `v1_image`,
/// and the status it settled with.
fn first_revision(v1_image: &str) -> (Value, Value) {
    let v1 = json!({"image": "reg.example/hello:1"});
    let status = json!({
        "observedGeneration": 1,
        "latestCreatedRevision": "hello-00001", "latestReadyRevision": "hello-00001",
        "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}],
        "revisions": [{"name": "hello-00001", "ready": true, "replicas": 1}],
    });
    (deployment("hello-00001", v1, v1_image), status)
}

fn pinned_v1() -> String {
    format!("reg.example/hello@{DIGEST}")
}

#[tokio::test]
async fn a_missing_pull_secret_holds_the_new_revision_and_the_old_keeps_serving() {
    let (v1, status) = first_revision(&pinned_v1());
    let spec = json!({"image": "reg.example/hello:2", "imagePullSecrets": [{"name": "regcred"}]});
    let f = function(spec, 2, status);
    let message = "no revision was cut for generation 2: imagePullSecret \"regcred\" does not exist in namespace \"ns\"; revision hello-00001 keeps serving; retried with backoff";
    let script = after_listing(
        vec![v1],
        [
            failing(Method::GET, format!("/api/v1{NS}/secrets/regcred"), 404),
            // Only the existing revision's Service: no Deployment, no hello-00002.
            apply_service("hello-00001"),
            apply_status(json!({
                "observedGeneration": 2,
                "latestCreatedRevision": "hello-00001",
                "latestReadyRevision": "hello-00001",
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ImageResolutionFailed", "message": message, "observedGeneration": 2},
                    {"type": "ConfigurationsReady", "status": "False", "reason": "ImageResolutionFailed", "message": message},
                    condition("RoutesReady", "True", "TrafficResolved"),
                ],
                "traffic": [{"revisionName": "hello-00001", "percent": 100, "latestRevision": true}],
                "revisions": [{"name": "hello-00001", "ready": true}],
                "images": [{"revision": "hello-00001", "image": pinned_v1()}],
            })),
            event("ImageResolutionFailed", "Warning").expecting(json!({"note": message})),
        ],
    );
    let (result, ctx, outcomes) = run_measured(f.clone(), script).await;
    assert_eq!(outcomes, [("failed".to_owned(), 1)]);
    let error = result.unwrap_err();
    assert_eq!(error.metric_label(), "image_resolution");
    let Error::Image { source, .. } = &error else {
        panic!("{error:?}");
    };
    assert!(
        matches!(&**source, PinError::SecretMissing { secret, .. } if secret == "regcred"),
        "{source:?}"
    );
    // Retried with the Function's backoff: 1 s, then 2 s.
    assert_eq!(
        error_policy(Arc::new(f.clone()), &error, ctx.clone()),
        Action::requeue(Duration::from_secs(1))
    );
    assert_eq!(
        error_policy(Arc::new(f), &error, ctx),
        Action::requeue(Duration::from_secs(2))
    );
}

#[tokio::test]
async fn a_pull_secret_of_the_wrong_type_is_named_in_the_status() {
    let (v1, status) = first_revision(&pinned_v1());
    let spec = json!({"image": "reg.example/hello:2", "imagePullSecrets": [{"name": "token"}]});
    let message = "no revision was cut for generation 2: imagePullSecret \"token\" has type \"Opaque\"; only kubernetes.io/dockerconfigjson Secrets hold registry credentials; revision hello-00001 keeps serving; retried with backoff";
    let script = after_listing(
        vec![v1],
        [
            get_secret(
                "token",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "ns"},
                       "type": "Opaque", "data": {"token": "eA=="}}),
            ),
            default_account(),
            apply_service("hello-00001"),
            apply_status(json!({
                "latestCreatedRevision": "hello-00001",
                "conditions": [
                    {"type": "Ready", "status": "False", "reason": "ImageResolutionFailed", "message": message},
                    {"type": "ConfigurationsReady", "status": "False", "reason": "ImageResolutionFailed", "message": message},
                    condition("RoutesReady", "True", "TrafficResolved"),
                ],
            })),
            event("ImageResolutionFailed", "Warning"),
        ],
    );
    let (result, _) = run(function(spec, 2, status), script).await;
    let Err(Error::Image { source, .. }) = result else {
        panic!("{result:?}");
    };
    assert!(matches!(*source, PinError::Credentials(_)), "{source:?}");
}

#[tokio::test]
async fn an_unreachable_registry_holds_the_first_revision() {
    let image = format!("{CLOSED}/hello:1");
    let script = after_listing(
        vec![],
        [
            failing(
                Method::GET,
                format!("/api/v1{NS}/serviceaccounts/default"),
                404,
            ),
            apply_status(json!({
                "observedGeneration": 1,
                "latestCreatedRevision": null,
                "revisions": null,
                "images": null,
                "conditions": [
                    condition("Ready", "False", "ImageResolutionFailed"),
                    condition("ConfigurationsReady", "False", "ImageResolutionFailed"),
                    condition("RoutesReady", "Unknown", "RevisionDeploying"),
                ],
            })),
            event("ImageResolutionFailed", "Warning"),
        ],
    );
    let (result, _) = run(function(json!({"image": image}), 1, Value::Null), script).await;
    let Err(Error::Image { source, .. }) = result else {
        panic!("{result:?}");
    };
    let text = source.describe();
    assert!(text.contains("127.0.0.1:1/hello:1"), "{text}");
    assert!(text.to_lowercase().contains("connection refused"), "{text}");
}

#[tokio::test]
async fn a_service_accounts_stale_pull_secrets_are_skipped_as_the_kubelet_skips_them() {
    // The ServiceAccount names a Secret that is gone and one that is no
    // Docker config: neither stops the resolution, which then fails on the
    // registry (closed port) and says so.
    let image = format!("{CLOSED}/hello:1");
    let spec = json!({"image": image, "serviceAccountName": "builder"});
    let script = after_listing(
        vec![],
        [
            exchange(
                Method::GET,
                format!("/api/v1{NS}/serviceaccounts/builder"),
                None,
                json!({"apiVersion": "v1", "kind": "ServiceAccount",
                       "metadata": {"name": "builder", "namespace": "ns"},
                       "imagePullSecrets": [{"name": "gone"}, {"name": "token"}]}),
            ),
            failing(Method::GET, format!("/api/v1{NS}/secrets/gone"), 404),
            get_secret(
                "token",
                json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": "token", "namespace": "ns"},
                       "type": "Opaque", "data": {"token": "eA=="}}),
            ),
            apply_status(json!({"conditions": [
                condition("Ready", "False", "ImageResolutionFailed"),
                condition("ConfigurationsReady", "False", "ImageResolutionFailed"),
                condition("RoutesReady", "Unknown", "RevisionDeploying"),
            ]})),
            event("ImageResolutionFailed", "Warning"),
        ],
    );
    let (result, _) = run(function(spec, 1, Value::Null), script).await;
    let Err(Error::Image { source, .. }) = result else {
        panic!("{result:?}");
    };
    assert!(matches!(*source, PinError::Resolve(_)), "{source:?}");
}

#[tokio::test]
async fn a_retry_of_the_same_generation_publishes_no_second_event() {
    let (v1, mut status) = first_revision(&pinned_v1());
    status["observedGeneration"] = json!(2);
    status["conditions"] = json!([
        {"type": "Ready", "status": "False", "reason": "ImageResolutionFailed", "message": "earlier",
         "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2},
        {"type": "ConfigurationsReady", "status": "False", "reason": "ImageResolutionFailed", "message": "earlier",
         "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2},
    ]);
    let spec = json!({"image": "reg.example/hello:2", "imagePullSecrets": [{"name": "regcred"}]});
    let script = after_listing(
        vec![v1],
        [
            failing(Method::GET, format!("/api/v1{NS}/secrets/regcred"), 404),
            apply_service("hello-00001"),
            // The condition keeps its transition time; no Event follows.
            apply_status(json!({"conditions": [
                {"type": "Ready", "reason": "ImageResolutionFailed", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "ConfigurationsReady", "reason": "ImageResolutionFailed", "lastTransitionTime": "2026-01-01T00:00:00Z"},
                {"type": "RoutesReady"},
            ]})),
        ],
    );
    let (result, _) = run(function(spec, 2, status), script).await;
    assert!(result.is_err());
}

#[tokio::test]
async fn a_resolved_retry_cuts_the_revision_and_clears_the_condition() {
    // The registry answers this time: here, the image is given by digest,
    // so nothing is asked, and the revision is cut with it as written.
    let (v1, mut status) = first_revision(&pinned_v1());
    status["conditions"] = json!([
        {"type": "ConfigurationsReady", "status": "False", "reason": "ImageResolutionFailed", "message": "earlier",
         "lastTransitionTime": "2026-01-01T00:00:00Z", "observedGeneration": 2},
    ]);
    let image = format!("reg.example/hello@{DIGEST}");
    let spec = json!({"image": image, "imagePullSecrets": [{"name": "regcred"}]});
    let script = after_listing(
        vec![v1],
        [
            apply_deployment("hello-00002", &image),
            apply_service("hello-00001"),
            apply_service("hello-00002"),
            apply_status(json!({
                "latestCreatedRevision": "hello-00002",
                "conditions": [
                    condition("Ready", "Unknown", "RevisionDeploying"),
                    condition("ConfigurationsReady", "Unknown", "RevisionDeploying"),
                    condition("RoutesReady", "True", "TrafficResolved"),
                ],
                "images": [{"revision": "hello-00002", "image": image}, {"revision": "hello-00001", "image": pinned_v1()}],
            })),
            event("RevisionCreated", "Normal"),
        ],
    );
    let (result, _) = run(function(spec, 2, status), script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_PENDING));
}

#[tokio::test]
async fn an_image_in_a_skipped_registry_runs_with_its_tag() {
    // localhost: images loaded straight into the nodes (the cluster tests'
    // `ctr import`); no Secret is read and no registry asked.
    let spec = json!({"image": "localhost/flint-examples/hello:dev", "imagePullSecrets": [{"name": "regcred"}]});
    let script = after_listing(
        vec![],
        [
            apply_deployment("hello-00001", "localhost/flint-examples/hello:dev"),
            apply_service("hello-00001"),
            apply_status(json!({
                "latestCreatedRevision": "hello-00001",
                "images": [{"revision": "hello-00001", "image": "localhost/flint-examples/hello:dev"}],
            })),
            event("RevisionCreated", "Normal"),
        ],
    );
    let (result, _, outcomes) = run_measured(function(spec, 1, Value::Null), script).await;
    assert_eq!(result.unwrap(), Action::requeue(REQUEUE_PENDING));
    assert_eq!(outcomes, [("as_written".to_owned(), 1)]);
}

#[tokio::test]
async fn an_existing_revision_is_never_resolved_again() {
    // The spec still names the tag hello-00001 was cut from: nothing to cut,
    // nothing to resolve (no Secret read, no registry asked), and the
    // revision keeps the digest it was pinned to.
    let (v1, status) = first_revision(&pinned_v1());
    let spec = json!({"image": "reg.example/hello:1", "imagePullSecrets": [{"name": "regcred"}]});
    let hash_spec = function(spec.clone(), 1, Value::Null).spec;
    let mut v1 = v1;
    v1["metadata"]["annotations"]["flint.dev/spec-hash"] = json!(spec_hash(&hash_spec));
    let script = after_listing(
        vec![v1],
        [
            apply_service("hello-00001"),
            apply_status(json!({
                "latestCreatedRevision": "hello-00001",
                "images": [{"revision": "hello-00001", "image": pinned_v1()}],
                "conditions": [
                    condition("Ready", "True", "Ready"),
                    condition("ConfigurationsReady", "True", "RevisionReady"),
                    condition("RoutesReady", "True", "TrafficResolved"),
                ],
            })),
        ],
    );
    let (result, _, outcomes) = run_measured(function(spec, 1, status), script).await;
    assert!(result.is_ok(), "{result:?}");
    assert!(outcomes.is_empty(), "{outcomes:?}");
}
