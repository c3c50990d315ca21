//! A mocked API server (the kube-rs `ApiServerVerifier` pattern): a script
//! lists the exact requests a client must make, in order, with the replies
//! the server gives; every request is checked against its step.

use std::future::Future;
use std::sync::{Arc, Mutex};

use http::{Method, Request, Response, StatusCode};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

use crate::mock_serve::{Handle, serve_while};

/// The scripts' URL parts for the Function `ns/hello`: its namespace's
/// path segment, its own URL, the operator's server-side apply query and
/// the selector of its objects.
#[allow(dead_code)]
pub const NS: &str = "/namespaces/ns";
#[allow(dead_code)]
pub const FN_URL: &str = "/apis/flint.dev/v1alpha1/namespaces/ns/functions/hello";
#[allow(dead_code)]
pub const SSA: &str = "?&force=true&fieldManager=flint-operator";
#[allow(dead_code)]
pub const BY_FN: &str = "?&labelSelector=flint.dev%2Ffunction%3Dhello";

/// The reconciler's context over `client`, as the operator makes it (its
/// reporter, fresh metrics, the domain `example.com`).
#[allow(dead_code)]
pub fn reconcile_context(client: Client) -> Arc<flint_operator::reconcile::Context> {
    Arc::new(reconcile_context_owned(client))
}

/// [`reconcile_context`] before it is shared, for a test to add to it
/// (`with_cache`).
#[allow(dead_code)]
pub fn reconcile_context_owned(client: Client) -> flint_operator::reconcile::Context {
    let reporter = kube::runtime::events::Reporter {
        controller: "flint-operator".into(),
        instance: Some("test".into()),
    };
    let registry = prometheus::Registry::new();
    let metrics = flint_operator::reconcile::metrics::ReconcileMetrics::register(&registry)
        .expect("fresh registry");
    flint_operator::reconcile::Context::new(client, reporter, metrics, "example.com".into())
}

/// One request the client must make and the server's reply.
pub struct Exchange {
    method: Method,
    uri: String,
    /// Checks on the request body (a JSON subset that must match).
    body: Option<Value>,
    status: StatusCode,
    /// The reply body; `Value::Null` echoes the request body back.
    reply: Value,
    /// Where the request body is kept, for a later step of the test.
    record: Option<Arc<Mutex<Value>>>,
}

/// A step answered with 200 OK and `reply` (`Value::Null`: the request body
/// echoed back, as the server does for applies and events).
pub fn exchange(
    method: Method,
    uri: impl Into<String>,
    body: Option<Value>,
    reply: Value,
) -> Exchange {
    Exchange {
        method,
        uri: uri.into(),
        body,
        status: StatusCode::OK,
        reply,
        record: None,
    }
}

/// A step the server fails with `code` and a `Status` body, as it would.
pub fn failing(method: Method, uri: impl Into<String>, code: u16) -> Exchange {
    let status = StatusCode::from_u16(code).unwrap();
    Exchange {
        method,
        uri: uri.into(),
        body: None,
        status,
        reply: json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                      "message": "injected", "reason": status.canonical_reason(), "code": code}),
        record: None,
    }
}

impl Exchange {
    /// The same step, also checking that the request body contains `body`.
    pub fn expecting(mut self, body: Value) -> Self {
        self.body = Some(body);
        self
    }

    /// The same step, keeping the request body (JSON) in `slot`.
    #[allow(dead_code)]
    pub fn recording(mut self, slot: Arc<Mutex<Value>>) -> Self {
        self.record = Some(slot);
        self
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

/// The server end of a mocked `kube::Client`.
pub struct ApiServerVerifier(Handle);

/// A client whose every request goes to the returned verifier.
pub fn mocked_client() -> (Client, ApiServerVerifier) {
    let (service, handle) = tower_test::mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServerVerifier(handle))
}

impl ApiServerVerifier {
    /// Runs `client` while answering `script` in order, checking every
    /// request, and makes sure no further request arrives.
    pub async fn check<T>(self, script: Vec<Exchange>, client: impl Future<Output = T>) -> T {
        serve_while(self.0, |handle| Self(handle).run(script), client).await
    }

    /// Answers `script` in order, checking every request; returns the
    /// handle so the caller can make sure no further request arrives.
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
            if let Some(slot) = &step.record {
                *slot.lock().unwrap() = serde_json::from_slice(&bytes).unwrap();
            }
            let reply = if step.reply.is_null() {
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
