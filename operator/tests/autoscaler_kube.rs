//! The Kubernetes actuator against a mocked API server (tower-test): the
//! exact requests of a scale-up and of a scale-down that marks pods first.

use flint_api::backend::{RevisionKey, ScaleActuator};
use flint_operator::autoscaler::kube_actuator::KubeActuator;
use http::{Method, Request, Response};
use kube::client::Body;
use serde_json::{Value, json};

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

fn key() -> RevisionKey {
    RevisionKey::new("default", "hello", "hello-00001")
}

fn deployment(replicas: i32, ready: i32) -> Value {
    json!({
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "hello-00001", "namespace": "default"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"flint.dev/revision": "hello-00001"}},
                 "template": {"spec": {"containers": []}}},
        "status": {"readyReplicas": ready}
    })
}

fn pod(name: &str, created: &str, ready: bool) -> Value {
    json!({
        "metadata": {"name": name, "namespace": "default", "creationTimestamp": created},
        "status": {"conditions": [{"type": "Ready", "status": if ready { "True" } else { "False" }}]}
    })
}

/// Answers the next request after checking its method and path (with query).
async fn expect(handle: &mut Handle, method: Method, path: &str, reply: Value) -> Value {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method(), method);
    let uri = req.uri().to_string();
    assert_eq!(uri, path);
    let body = req.into_body().collect_bytes().await.unwrap();
    let sent = if body.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&body).unwrap()
    };
    send.send_response(
        Response::builder()
            .body(Body::from(serde_json::to_vec(&reply).unwrap()))
            .unwrap(),
    );
    sent
}

/// An actuator whose API server is the returned handle.
fn mock() -> (KubeActuator, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (
        KubeActuator::new(kube::Client::new(svc, "default"), None),
        handle,
    )
}

/// Answers the next request, which must read the revision's Deployment, with
/// `replicas` desired and `ready` ready.
async fn expect_deployment(handle: &mut Handle, replicas: i32, ready: i32) {
    expect(
        handle,
        Method::GET,
        "/apis/apps/v1/namespaces/default/deployments/hello-00001",
        deployment(replicas, ready),
    )
    .await;
}

fn scale_reply(replicas: i32) -> Value {
    json!({"apiVersion": "autoscaling/v1", "kind": "Scale",
           "metadata": {"name": "hello-00001", "namespace": "default"},
           "spec": {"replicas": replicas}, "status": {"replicas": replicas}})
}

/// Answers the next request, which must patch the revision's scale
/// subresource to exactly `replicas`.
async fn expect_scale(handle: &mut Handle, replicas: i32) {
    let sent = expect(
        handle,
        Method::PATCH,
        "/apis/apps/v1/namespaces/default/deployments/hello-00001/scale?",
        scale_reply(replicas),
    )
    .await;
    assert_eq!(sent, json!({"spec": {"replicas": replicas}}));
}

#[tokio::test]
async fn scale_up_patches_the_scale_subresource() {
    let (actuator, mut handle) = mock();
    let server = tokio::spawn(async move {
        expect_deployment(&mut handle, 1, 1).await;
        expect_scale(&mut handle, 4).await;
    });
    actuator.scale(&key(), 4).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn scale_down_marks_not_ready_then_youngest_pods_first() {
    let (actuator, mut handle) = mock();
    let server = tokio::spawn(async move {
        expect_deployment(&mut handle, 4, 3).await;
        expect(
            &mut handle,
            Method::GET,
            "/api/v1/namespaces/default/pods?&labelSelector=flint.dev%2Frevision%3Dhello-00001",
            json!({"apiVersion": "v1", "kind": "PodList", "metadata": {}, "items": [
                pod("old", "2025-01-01T00:00:00Z", true),
                pod("young", "2025-01-03T00:00:00Z", true),
                pod("middle", "2025-01-02T00:00:00Z", true),
                pod("starting", "2025-01-01T00:00:00Z", false),
            ]}),
        )
        .await;
        for name in ["starting", "young"] {
            let sent = expect(
                &mut handle,
                Method::PATCH,
                &format!("/api/v1/namespaces/default/pods/{name}?"),
                pod(name, "2025-01-01T00:00:00Z", true),
            )
            .await;
            assert_eq!(
                sent,
                json!({"metadata": {"annotations": {"controller.kubernetes.io/pod-deletion-cost": "-1000"}}})
            );
        }
        expect_scale(&mut handle, 2).await;
    });
    actuator.scale(&key(), 2).await.unwrap();
    server.await.unwrap();
}

#[tokio::test]
async fn replicas_reads_desired_and_ready() {
    let (actuator, mut handle) = mock();
    let server = tokio::spawn(async move {
        expect_deployment(&mut handle, 5, 2).await;
    });
    let r = actuator.replicas(&key()).await.unwrap();
    assert_eq!((r.desired, r.ready), (5, 2));
    server.await.unwrap();
}
