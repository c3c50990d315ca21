//! A settled Function costs the API server no write: the reconciler reads
//! its objects, finds the Services it would apply already stamped with the
//! same content and the status it computes equal to the one the Function
//! has, and writes nothing. A change still writes, and only what changed.
//!
//! Each scenario reconciles twice against the mocked API server: the first
//! pass records what the reconciler wrote (the Service and the status), the
//! second starts from a cluster holding exactly that.

// The failure helpers are used elsewhere (reconcile_api.rs).
#[allow(dead_code)]
#[path = "support/api_server.rs"]
mod api_server;
#[path = "support/mock_serve.rs"]
mod mock_serve;

use std::sync::{Arc, Mutex};

use api_server::{
    BY_FN, Exchange, FN_URL, NS, SSA, exchange, mocked_client, reconcile_context,
    reconcile_context_owned,
};
use flint_api::Function;
use flint_operator::reconcile::controller::{REQUEUE_PENDING, REQUEUE_SETTLED};
use flint_operator::reconcile::hash::spec_hash;
use flint_operator::reconcile::reconcile;
use http::Method;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::Service;
use kube::runtime::controller::Action;
use serde_json::{Value, json};

/// Reconciles `function` once against `script` (every request checked, no
/// other allowed) and returns the action.
async fn reconcile_once(function: Value, script: Vec<Exchange>) -> Action {
    let (client, verifier) = mocked_client();
    let ctx = reconcile_context(client);
    let function: Function = serde_json::from_value(function).unwrap();
    verifier
        .check(script, reconcile(Arc::new(function), ctx))
        .await
        .unwrap()
}

fn function(spec: Value, generation: i64, status: Value) -> Value {
    json!({
        "apiVersion": "flint.dev/v1alpha1", "kind": "Function",
        "metadata": {"name": "hello", "namespace": "ns", "uid": "uid-1", "generation": generation,
                     "resourceVersion": "10"},
        "spec": spec,
        "status": status,
    })
}

/// The ready Deployment of revision `name`, cut from `spec`.
fn deployment(name: &str, spec: &Value) -> Value {
    let f: Function = serde_json::from_value(function(spec.clone(), 1, json!({}))).unwrap();
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {
            "name": name, "namespace": "ns", "uid": "d1",
            "labels": {"flint.dev/function": "hello", "flint.dev/revision": name, "flint.dev/generation": "1"},
            "annotations": {"flint.dev/spec-hash": spec_hash(&f.spec)},
            "ownerReferences": [{"apiVersion": "flint.dev/v1alpha1", "kind": "Function", "name": "hello", "uid": "uid-1", "controller": true}]
        },
        "spec": {"replicas": 1, "selector": {"matchLabels": {"flint.dev/revision": name}}, "template": {}},
        "status": {"availableReplicas": 1, "readyReplicas": 1, "replicas": 1}
    })
}

fn list(kind: &str, api_version: &str, items: Vec<Value>) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "metadata": {"resourceVersion": "1"}, "items": items})
}

/// The three reads every reconcile makes: Deployments, pods, Services.
fn reads(deployments: Vec<Value>, services: Vec<Value>) -> Vec<Exchange> {
    vec![
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
            list("ServiceList", "v1", services),
        ),
    ]
}

fn apply(path: String, slot: &Arc<Mutex<Value>>) -> Exchange {
    exchange(Method::PATCH, format!("{path}{SSA}"), None, Value::Null).recording(slot.clone())
}

fn apply_service(name: &str, slot: &Arc<Mutex<Value>>) -> Exchange {
    apply(format!("/api/v1{NS}/services/{name}"), slot)
}

/// The status apply; the server answers with the Function.
fn apply_status(slot: &Arc<Mutex<Value>>) -> Exchange {
    let reply = function(json!({"image": "reg/hello:1"}), 1, json!({}));
    exchange(Method::PATCH, format!("{FN_URL}/status{SSA}"), None, reply).recording(slot.clone())
}

fn event(reason: &str) -> Exchange {
    exchange(
        Method::POST,
        "/apis/events.k8s.io/v1/namespaces/ns/events?",
        Some(json!({"reason": reason, "regarding": {"kind": "Function", "name": "hello"}})),
        Value::Null,
    )
}

/// A Service as the API server returns it after `applied` was applied:
/// the applied content plus what the server adds.
fn as_stored(applied: &Value, uid: &str) -> Value {
    let mut stored = applied.clone();
    stored["metadata"]["uid"] = json!(uid);
    stored["metadata"]["resourceVersion"] = json!("5");
    stored["spec"]["clusterIP"] = json!("10.0.0.7");
    stored["spec"]["sessionAffinity"] = json!("None");
    stored
}

fn slot() -> Arc<Mutex<Value>> {
    Arc::new(Mutex::new(Value::Null))
}

/// A Function at reg/hello:1 whose revision hello-00001 just became ready:
/// the first reconcile stamps its Service and writes its status. Returns
/// the Service and the status as written.
async fn settle(spec: &Value) -> (Value, Value) {
    let (service, status) = (slot(), slot());
    let deploying = json!({"revisions": [{"name": "hello-00001", "ready": false, "reason": "RevisionDeploying"}]});
    let mut script = reads(vec![deployment("hello-00001", spec)], vec![]);
    script.extend([
        apply_service("hello-00001", &service),
        apply_status(&status),
        event("RevisionReady"),
    ]);
    let action = reconcile_once(function(spec.clone(), 1, deploying), script).await;
    assert_eq!(action, Action::requeue(REQUEUE_SETTLED));
    let service = service.lock().unwrap().clone();
    let status = status.lock().unwrap()["status"].clone();
    assert!(
        service["metadata"]["annotations"]["flint.dev/applied-hash"].is_string(),
        "{service}"
    );
    (service, status)
}

#[tokio::test]
async fn a_settled_function_is_read_and_never_written() {
    let spec = json!({"image": "reg/hello:1"});
    let (service, mut status) = settle(&spec).await;
    // The autoscaler's part of the status is its own: not compared.
    status["keepAlive"] =
        json!([{"revision": "hello-00001", "policy": "fixed", "message": "kept"}]);
    let script = reads(
        vec![deployment("hello-00001", &spec)],
        vec![as_stored(&service, "s1")],
    );
    // Three reads; no PATCH, POST, PUT or DELETE (the verifier refuses any
    // request past the script).
    assert!(script.len() == 3);
    let action = reconcile_once(function(spec.clone(), 1, status.clone()), script).await;
    assert_eq!(action, Action::requeue(REQUEUE_SETTLED));

    // And again: nothing moved, nothing written.
    let script = reads(
        vec![deployment("hello-00001", &spec)],
        vec![as_stored(&service, "s1")],
    );
    let action = reconcile_once(function(spec, 1, status), script).await;
    assert_eq!(action, Action::requeue(REQUEUE_SETTLED));
}

/// With the controller's cache (its watches' objects, trimmed as they are
/// kept), a settled Function costs no request at all: not even the reads.
#[tokio::test]
async fn a_settled_function_read_from_the_cache_sends_no_request() {
    use flint_operator::reconcile::cache::{Cache, trim_deployment, trim_service};
    let spec = json!({"image": "reg/hello:1"});
    let (service, status) = settle(&spec).await;
    let mut deployment: Deployment =
        serde_json::from_value(deployment("hello-00001", &spec)).unwrap();
    trim_deployment(&mut deployment);
    let mut service: Service = serde_json::from_value(as_stored(&service, "s1")).unwrap();
    trim_service(&mut service);
    for _ in 0..2 {
        let (client, verifier) = mocked_client();
        let cache = Cache::holding(&[deployment.clone()], &[], &[service.clone()]);
        let ctx = Arc::new(reconcile_context_owned(client).with_cache(cache));
        let function: Function =
            serde_json::from_value(function(spec.clone(), 1, status.clone())).unwrap();
        // An empty script: the verifier refuses any request.
        let action = verifier
            .check(vec![], reconcile(Arc::new(function), ctx))
            .await
            .unwrap();
        assert_eq!(action, Action::requeue(REQUEUE_SETTLED));
    }
}

/// With the cache, a Function whose Service is missing gets it applied,
/// and only that: the reads still come from the cache.
#[tokio::test]
async fn a_missing_service_in_the_cache_is_applied_without_a_read() {
    use flint_operator::reconcile::cache::{Cache, trim_deployment};
    let spec = json!({"image": "reg/hello:1"});
    let (_, status) = settle(&spec).await;
    let mut deployment: Deployment =
        serde_json::from_value(deployment("hello-00001", &spec)).unwrap();
    trim_deployment(&mut deployment);
    let (client, verifier) = mocked_client();
    let ctx = Arc::new(reconcile_context_owned(client).with_cache(Cache::holding(
        &[deployment],
        &[],
        &[],
    )));
    let function: Function = serde_json::from_value(function(spec, 1, status)).unwrap();
    let script = vec![apply_service("hello-00001", &slot())];
    let action = verifier
        .check(script, reconcile(Arc::new(function), ctx))
        .await
        .unwrap();
    assert_eq!(action, Action::requeue(REQUEUE_SETTLED));
}

#[tokio::test]
async fn a_changed_spec_still_writes_what_changed() {
    let spec = json!({"image": "reg/hello:1"});
    let (service, status) = settle(&spec).await;
    let next = json!({"image": "reg/hello:2"});
    let (deployment_body, new_service, new_status) = (slot(), slot(), slot());
    let mut script = reads(
        vec![deployment("hello-00001", &spec)],
        vec![as_stored(&service, "s1")],
    );
    // The new revision's Deployment and Service are applied; hello-00001's
    // Service is already right and is not.
    script.extend([
        apply(
            format!("/apis/apps/v1{NS}/deployments/hello-00002"),
            &deployment_body,
        ),
        apply_service("hello-00002", &new_service),
        apply_status(&new_status),
        event("RevisionCreated"),
    ]);
    let action = reconcile_once(function(next, 2, status), script).await;
    assert_eq!(action, Action::requeue(REQUEUE_PENDING));
    let deployment_body = deployment_body.lock().unwrap().clone();
    // The stamp is on the Deployment's own metadata, never on its pod
    // template: stamping rolls no pod.
    assert!(deployment_body["metadata"]["annotations"]["flint.dev/applied-hash"].is_string());
    assert!(
        deployment_body["spec"]["template"]["metadata"]["annotations"]
            .get("flint.dev/applied-hash")
            .is_none(),
        "{deployment_body}"
    );
    assert_eq!(
        new_status.lock().unwrap()["status"]["latestCreatedRevision"],
        "hello-00002"
    );
}

#[tokio::test]
async fn a_scale_edit_writes_the_status_alone() {
    let spec = json!({"image": "reg/hello:1"});
    let (service, status) = settle(&spec).await;
    let scaled = json!({"image": "reg/hello:1", "scale": {"min": 1, "max": 7}});
    let new_status = slot();
    let mut script = reads(
        vec![deployment("hello-00001", &spec)],
        vec![as_stored(&service, "s1")],
    );
    script.push(apply_status(&new_status));
    let action = reconcile_once(function(scaled, 2, status), script).await;
    assert_eq!(action, Action::requeue(REQUEUE_SETTLED));
    let written = new_status.lock().unwrap()["status"].clone();
    assert_eq!(written["observedGeneration"], 2);
    assert_eq!(written["revisions"][0]["scale"]["max"], 7);
}

#[tokio::test]
async fn a_service_edited_away_from_what_was_applied_is_applied_again() {
    // A Service from an earlier operator (no stamp), or one stamped for
    // other content, is applied; so is one that is gone.
    let spec = json!({"image": "reg/hello:1"});
    let (service, status) = settle(&spec).await;
    let mut unstamped = as_stored(&service, "s1");
    unstamped["metadata"]["annotations"]
        .as_object_mut()
        .unwrap()
        .remove("flint.dev/applied-hash");
    let mut stale = as_stored(&service, "s1");
    stale["metadata"]["annotations"]["flint.dev/applied-hash"] = json!("0000000000000000");
    for observed in [vec![unstamped], vec![stale], vec![]] {
        let again = slot();
        let mut script = reads(vec![deployment("hello-00001", &spec)], observed);
        script.push(apply_service("hello-00001", &again));
        let action = reconcile_once(function(spec.clone(), 1, status.clone()), script).await;
        assert_eq!(action, Action::requeue(REQUEUE_SETTLED));
        assert_eq!(
            *again.lock().unwrap(),
            service,
            "the same content as before"
        );
    }
}
