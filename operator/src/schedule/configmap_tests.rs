use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use serde_json::{Value, json};

use super::*;

type Handle = tower_test::mock::Handle<Request<Body>, Response<Body>>;

const PATH: &str = "/api/v1/namespaces/flint-system/configmaps";

fn cm(rv: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
        "metadata": {"name": TICKS_CONFIGMAP, "namespace": "flint-system", "resourceVersion": rv},
        "data": data})
}

/// Answers the next request, checking its method and path; returns its body.
async fn answer(
    handle: &mut Handle,
    method: Method,
    path: &str,
    status: StatusCode,
    body: Value,
) -> Value {
    let (req, send) = handle.next_request().await.expect("a request");
    assert_eq!(req.method(), method);
    assert!(
        req.uri().to_string().starts_with(path),
        "{} does not start with {path}",
        req.uri()
    );
    let sent = req.into_body().collect_bytes().await.unwrap();
    let sent = if sent.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&sent).unwrap()
    };
    let resp = Response::builder()
        .status(status)
        .body(Body::from(serde_json::to_vec(&body).unwrap()))
        .unwrap();
    send.send_response(resp);
    sent
}

fn status(code: u16, reason: &str) -> Value {
    json!({"kind": "Status", "apiVersion": "v1", "status": "Failure", "message": reason, "reason": reason, "code": code})
}

/// Ticks kept in flint-system, whose requests go to the returned handle.
fn mocked_ticks() -> (ConfigMapTicks, Handle) {
    let (svc, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    let ticks = ConfigMapTicks::new(kube::Client::new(svc, "default"), "flint-system");
    (ticks, handle)
}

/// The path of the ticks ConfigMap itself.
fn named() -> String {
    format!("{PATH}/{TICKS_CONFIGMAP}")
}

/// Answers the next request, which must read the ticks ConfigMap, with the
/// ConfigMap at version `rv` holding `data`.
async fn serve_read(handle: &mut Handle, rv: &str, data: Value) {
    answer(handle, Method::GET, &named(), StatusCode::OK, cm(rv, data)).await;
}

#[tokio::test]
async fn losing_a_race_rereads_and_does_not_fire() {
    let (ticks, mut handle) = mocked_ticks();
    let server = tokio::spawn(async move {
        serve_read(&mut handle, "1", json!({"default.tick.0": "100"})).await;
        // Another replica wrote first: our write, made at version 1, conflicts.
        let sent = answer(
            &mut handle,
            Method::PUT,
            &named(),
            StatusCode::CONFLICT,
            status(409, "Conflict"),
        )
        .await;
        assert_eq!(sent["metadata"]["resourceVersion"], "1");
        assert_eq!(sent["data"]["default.tick.0"], "160");
        serve_read(&mut handle, "2", json!({"default.tick.0": "160"})).await;
    });
    assert!(!ticks.claim("default.tick.0", 160).await.unwrap());
    server.await.unwrap();
}

#[tokio::test]
async fn first_claim_creates_the_configmap_and_later_ticks_update_it() {
    let (ticks, mut handle) = mocked_ticks();
    let server = tokio::spawn(async move {
        answer(
            &mut handle,
            Method::GET,
            &named(),
            StatusCode::NOT_FOUND,
            status(404, "NotFound"),
        )
        .await;
        let sent = answer(
            &mut handle,
            Method::POST,
            PATH,
            StatusCode::CREATED,
            cm("1", json!({"default.tick.0": "100"})),
        )
        .await;
        assert_eq!(sent["data"], json!({"default.tick.0": "100"}));
        serve_read(&mut handle, "1", json!({"default.tick.0": "100"})).await;
        let both = json!({"default.tick.0": "100", "default.tick.1": "160"});
        let sent = answer(
            &mut handle,
            Method::PUT,
            &named(),
            StatusCode::OK,
            cm(
                "2",
                json!({"default.tick.0": "160", "default.tick.1": "160"}),
            ),
        )
        .await;
        assert_eq!(sent["data"], both);
        serve_read(&mut handle, "2", both).await;
    });
    assert!(ticks.claim("default.tick.0", 100).await.unwrap());
    assert!(ticks.claim("default.tick.1", 160).await.unwrap());
    assert!(
        !ticks.claim("default.tick.1", 160).await.unwrap(),
        "a tick already recorded is not claimed again"
    );
    server.await.unwrap();
}
